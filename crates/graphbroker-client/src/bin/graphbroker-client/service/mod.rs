//! `graphbroker-client service install | uninstall | status`: runs graphbrokerd under the user's service manager
//! (systemd user units, or a launchd agent on macOS) so that nobody edits paths by hand.
//!
//! The unit files are the ones in the repository's `systemd/` directory, embedded in this binary, and the plist is
//! built to match the one in `launchd/` (`launchd_plist.rs`); installing fills in the daemon's real path (found
//! as autostart finds it) and hands the socket to the service manager, which starts the daemon on the first
//! connection. Once a service manager owns the socket, autostart stands aside (see [`managed_socket`]).

#[cfg(target_os = "macos")]
mod launchd;
pub mod launchd_plist;
#[cfg(not(target_os = "macos"))]
mod systemd;

#[cfg(target_os = "macos")]
use launchd as platform;
#[cfg(not(target_os = "macos"))]
use systemd as platform;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Subcommand;

use crate::daemon_program::{DAEMON_PROGRAM_ENV, find_daemon_program, is_executable};
use crate::exit_status::{ExitStatus, Failure};
use crate::ui::Ui;

/// The placeholder the templates carry where the daemon's absolute path goes.
#[cfg_attr(target_os = "macos", allow(dead_code, reason = "the launchd plist is built as a value, not filled in"))]
const DAEMON_PLACEHOLDER: &str = "@GRAPHBROKERD@";

/// How long a daemon started outside the service manager gets to exit after SIGTERM before install gives up: the
/// daemon itself allows in-flight requests 10 s.
const UNMANAGED_STOP_DEADLINE: Duration = Duration::from_secs(15);

/// How often the socket is probed while such a daemon stops.
const STOP_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ServiceAction {
    /// Install graphbrokerd as a user service started on the first request, and start listening now
    Install,
    /// Stop the service and remove what `service install` wrote
    Uninstall,
    /// Show what is installed and running
    Status,
}

/// Runs a `service` subcommand. `client_socket` is the socket the user named (flag or environment), if any: the
/// service listens at its own fixed place, which install points out when the two differ.
pub fn run(action: ServiceAction, client_socket: Option<&Path>, ui: &Ui) -> Result<(), Failure> {
    match action {
        ServiceAction::Install => {
            let program = service_program()?;
            platform::install(&program)?;
            if let (Some(chosen), Some(service)) = (client_socket, platform::service_socket())
                && chosen != service
            {
                ui.note(&format!(
                    "the service listens on {}, but this shell points clients at {} (--socket or \
                     GRAPHBROKER_SOCKET); unset it to use the service",
                    service.display(),
                    chosen.display()
                ));
            }
            Ok(())
        }
        ServiceAction::Uninstall => platform::uninstall(),
        ServiceAction::Status => platform::status(),
    }
}

/// Why autostart must not start a daemon for `socket`: a service manager owns it. The text says how to start the
/// service; `None` when no installed service listens there (autostart goes ahead).
pub fn managed_socket(socket: &Path) -> Option<String> {
    platform::managed_socket(socket)
}

/// The daemon the service runs: found as autostart finds it, made absolute (a service manager needs an absolute
/// path and runs with another working directory) but not resolved through symlinks, so that a package manager's
/// `/usr/local/bin/graphbrokerd` link keeps pointing at the current version after an upgrade.
fn service_program() -> Result<PathBuf, Failure> {
    let program = find_daemon_program().ok_or_else(|| {
        Failure::new(
            ExitStatus::Other,
            format!(
                "graphbrokerd was not found next to graphbroker-client or on PATH; install it, or name it with \
                 {DAEMON_PROGRAM_ENV}"
            ),
        )
    })?;
    let program = std::path::absolute(&program).map_err(|error| {
        Failure::new(ExitStatus::Other, format!("could not make {} absolute: {error}", program.display()))
    })?;
    if !is_executable(&program) {
        return Err(Failure::new(
            ExitStatus::Other,
            format!("{} is not an executable file; point {DAEMON_PROGRAM_ENV} at graphbrokerd", program.display()),
        ));
    }
    Ok(program)
}

/// `template` with the daemon's path put in, `program` already written in the template's own syntax.
#[cfg_attr(target_os = "macos", allow(dead_code, reason = "the launchd plist is built as a value, not filled in"))]
fn render(template: &str, program: &str) -> String {
    template.replace(DAEMON_PLACEHOLDER, program)
}

/// What writing a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileChange {
    Created,
    Updated,
    Unchanged,
}

impl FileChange {
    fn verb(self) -> &'static str {
        match self {
            Self::Created => "wrote",
            Self::Updated => "updated",
            Self::Unchanged => "kept (already up to date)",
        }
    }
}

/// Writes `content` to `path` (mode 0644) unless it is already there, through a temporary file and a rename so
/// that the service manager never reads half a file.
fn write_file(path: &Path, content: &str) -> Result<FileChange, Failure> {
    let change = match std::fs::read_to_string(path) {
        Ok(existing) if existing == content => return Ok(FileChange::Unchanged),
        Ok(_) => FileChange::Updated,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => FileChange::Created,
        Err(error) => return Err(file_failure("read", path, &error)),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| file_failure("create", dir, &error))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, content)
        .and_then(|()| std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            file_failure("write", path, &error)
        })?;
    Ok(change)
}

/// Removes `path`; true when there was a file to remove.
fn remove_file(path: &Path) -> Result<bool, Failure> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(file_failure("remove", path, &error)),
    }
}

fn file_failure(action: &str, path: &Path, error: &std::io::Error) -> Failure {
    Failure::new(ExitStatus::Other, format!("could not {action} {}: {error}", path.display()))
}

/// The user's home directory, for the per-user files of the service manager.
fn home_dir() -> Result<PathBuf, Failure> {
    std::env::var_os("HOME")
        .filter(|home| Path::new(home).is_absolute())
        .map(PathBuf::from)
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|user| user.dir))
        .ok_or_else(|| Failure::new(ExitStatus::Other, "could not tell the home directory; set HOME"))
}

/// One line of what the command did or found, on stdout: it is the command's output.
fn say(line: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::new(ExitStatus::Other, format!("could not write to stdout: {error}")))
}

/// A finished run of a service-manager tool.
#[derive(Debug)]
struct ToolRun {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args…` to completion. A missing program fails with `missing`, a sentence saying what that means.
fn run_tool(program: &str, args: &[&str], missing: &str) -> Result<ToolRun, Failure> {
    let output = Command::new(program).args(args).stdin(std::process::Stdio::null()).output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            Failure::new(ExitStatus::Other, missing)
        } else {
            Failure::new(ExitStatus::Other, format!("could not run {program}: {error}"))
        }
    })?;
    Ok(ToolRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Stops a graphbrokerd that answers on `socket` although no service manager started it (autostart, or by hand):
/// left running, it would keep a listener nobody reaches once the service manager binds the path again, and on
/// exit it would remove the service manager's socket file. Only a daemon of this user is stopped.
fn stop_unmanaged_daemon(socket: &Path) -> Result<(), Failure> {
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else { return Ok(()) };
    let (uid, pid) = listener_of(&stream).map_err(|error| {
        Failure::new(
            ExitStatus::Other,
            format!("could not tell who listens on {} ({error}); stop it, then install again", socket.display()),
        )
    })?;
    drop(stream);
    if uid != nix::unistd::getuid().as_raw() || pid <= 0 {
        return Err(Failure::new(
            ExitStatus::Other,
            format!("another user's program listens on {}; remove it, then install again", socket.display()),
        ));
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).map_err(|error| {
        Failure::new(ExitStatus::Other, format!("could not stop the graphbrokerd (pid {pid}) on the socket: {error}"))
    })?;
    let deadline = Instant::now() + UNMANAGED_STOP_DEADLINE;
    while std::os::unix::net::UnixStream::connect(socket).is_ok() {
        if Instant::now() >= deadline {
            return Err(Failure::new(
                ExitStatus::Other,
                format!(
                    "the graphbrokerd (pid {pid}) on {} did not stop within {}s; stop it, then install again",
                    socket.display(),
                    UNMANAGED_STOP_DEADLINE.as_secs()
                ),
            ));
        }
        std::thread::sleep(STOP_POLL);
    }
    say(&format!("stopped the graphbrokerd (pid {pid}) that was started outside the service manager"))
}

/// The user and process id of whoever listens at the other end of `stream`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn listener_of(stream: &std::os::unix::net::UnixStream) -> nix::Result<(u32, i32)> {
    let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok((peer.uid(), peer.pid()))
}

/// The user and process id of whoever listens at the other end of `stream`.
#[cfg(target_os = "macos")]
fn listener_of(stream: &std::os::unix::net::UnixStream) -> nix::Result<(u32, i32)> {
    use nix::sys::socket::{getsockopt, sockopt};
    Ok((getsockopt(stream, sockopt::LocalPeerCred)?.uid(), getsockopt(stream, sockopt::LocalPeerPid)?))
}

/// Other systems: not known how to ask, so the caller asks the user to stop the daemon.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn listener_of(_stream: &std::os::unix::net::UnixStream) -> nix::Result<(u32, i32)> {
    Err(nix::errno::Errno::ENOTSUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_tells_created_updated_and_unchanged_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("units").join("graphbroker.socket");
        assert_eq!(write_file(&path, "a").unwrap(), FileChange::Created);
        assert_eq!(write_file(&path, "a").unwrap(), FileChange::Unchanged);
        assert_eq!(write_file(&path, "b").unwrap(), FileChange::Updated);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
        assert!(remove_file(&path).unwrap());
        assert!(!remove_file(&path).unwrap());
    }

    #[test]
    fn every_placeholder_is_filled() {
        assert_eq!(render("ExecStart=@GRAPHBROKERD@\n", "/usr/bin/graphbrokerd"), "ExecStart=/usr/bin/graphbrokerd\n");
    }
}

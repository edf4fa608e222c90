//! A launchd agent: launchd holds the socket (the plist's `Sockets` entry) and starts graphbrokerd on the first
//! connection; the daemon takes the socket with `launch_activate_socket("Listeners")`.
//!
//! This file is compiled on macOS only and cannot be exercised on the Linux machines the tests run on; the plist
//! it installs is built by `launchd_plist.rs`, which every platform compiles and tests, the `launchctl` calls
//! are not.

use std::path::{Path, PathBuf};

use graphbroker_client::protocol::{SOCKET_ENV, resolve_socket_path};

use super::launchd_plist::{self, LABEL, LOG_FILE};
use super::{FileChange, ToolRun, home_dir, remove_file, run_tool, say, stop_unmanaged_daemon, write_file};
use crate::exit_status::{ExitStatus, Failure};

const NO_LAUNCHCTL: &str = "launchctl was not found; it comes with macOS at /bin/launchctl, check PATH";

fn plist_path() -> Result<PathBuf, Failure> {
    Ok(home_dir()?.join("Library").join("LaunchAgents").join(format!("{LABEL}.plist")))
}

/// `~/Library/Logs/graphbroker`, where Console.app looks for a user's logs.
fn log_dir() -> Result<PathBuf, Failure> {
    Ok(home_dir()?.join("Library").join("Logs").join("graphbroker"))
}

/// The socket the agent listens on: where clients look when `GRAPHBROKER_SOCKET` is not set (on macOS the per-user
/// `$TMPDIR`, unless `XDG_RUNTIME_DIR` is set). `None` when there is no private directory for it.
pub fn service_socket() -> Option<PathBuf> {
    resolved_service_socket().ok()
}

fn resolved_service_socket() -> Result<PathBuf, graphbroker_client::protocol::NoSocketPath> {
    let env = |name: &str| if name == SOCKET_ENV { None } else { std::env::var_os(name) };
    resolve_socket_path(env, nix::unistd::getuid().as_raw())
}

/// `gui/UID`, the launchd domain of the logged-in user's agents.
fn domain() -> String {
    format!("gui/{}", nix::unistd::getuid().as_raw())
}

fn service_target() -> String {
    format!("{}/{LABEL}", domain())
}

pub fn install(program: &Path) -> Result<(), Failure> {
    let plist = plist_path()?;
    let logs = log_dir()?;
    let socket =
        resolved_service_socket().map_err(|error| Failure::new(ExitStatus::UnsafeSocket, error.to_string()))?;
    let content = launchd_plist::agent_xml(program, &socket, &logs)?;
    let loaded = is_loaded()?;
    if !loaded {
        stop_unmanaged_daemon(&socket)?;
    }
    // launchd creates neither the log directory nor (as far as its documentation says) the socket's directory.
    create_private_dir(&logs)?;
    if let Some(dir) = socket.parent() {
        create_private_dir(dir)?;
    }
    let change = write_file(&plist, &content)?;
    say(&format!("{} {} (ProgramArguments {})", change.verb(), plist.display(), program.display()))?;
    if loaded && change == FileChange::Unchanged {
        say(&format!("{LABEL} is already loaded"))?;
    } else {
        if loaded {
            // A loaded agent keeps the plist it was loaded with: unload it so the new one takes effect.
            launchctl(&["bootout", &service_target()])?;
        }
        // A `launchctl disable` recorded earlier would make bootstrap fail; installing means wanting it enabled.
        launchctl(&["enable", &service_target()])?;
        launchctl(&["bootstrap", &domain(), &plist.to_string_lossy()])?;
    }
    say(&format!(
        "graphbrokerd starts on the first request to {}; its log: {}",
        socket.display(),
        logs.join(LOG_FILE).display()
    ))
}

pub fn uninstall() -> Result<(), Failure> {
    let plist = plist_path()?;
    if is_loaded()? {
        launchctl(&["bootout", &service_target()])?;
    }
    let socket = installed_socket(&plist);
    if remove_file(&plist)? {
        say(&format!("removed {}", plist.display()))?;
    } else {
        say(&format!("no {LABEL} agent in {}", plist.parent().unwrap_or(&plist).display()))?;
    }
    // launchd may leave the socket file behind; nobody answers on it any more.
    if let Some(socket) = socket
        && std::os::unix::net::UnixStream::connect(&socket).is_err()
        && remove_file(&socket)?
    {
        say(&format!("removed {}", socket.display()))?;
    }
    Ok(())
}

pub fn status() -> Result<(), Failure> {
    let plist = plist_path()?;
    match launchd_plist::read_installed(&plist) {
        Some(installed) => {
            let program = installed.program.unwrap_or_else(|| "?".into());
            say(&format!("{}: installed, runs {program}", plist.display()))?;
        }
        None if !plist.exists() => say(&format!("{}: not installed", plist.display()))?,
        None => say(&format!("{}: unreadable (not a plist dictionary)", plist.display()))?,
    }
    let run = run_launchctl(&["print", &service_target()])?;
    if run.success {
        let field = |name: &str| {
            run.stdout.lines().find_map(|line| line.trim().strip_prefix(name)?.trim().strip_prefix("= ")).map(str::trim)
        };
        let state = field("state").unwrap_or("unknown");
        match field("pid") {
            Some(pid) => say(&format!("{LABEL}: loaded, {state} (pid {pid})"))?,
            None => say(&format!("{LABEL}: loaded, {state}"))?,
        }
    } else {
        say(&format!("{LABEL}: not loaded"))?;
    }
    match installed_socket(&plist).or_else(service_socket) {
        Some(socket) => {
            let present = if socket.exists() { "present" } else { "absent" };
            say(&format!("socket: {} ({present})", socket.display()))?;
        }
        None => say("socket: unknown")?,
    }
    say(&format!("log: {}", log_dir()?.join(LOG_FILE).display()))
}

/// What autostart needs to know: the agent is installed and its socket is `socket`.
pub fn managed_socket(socket: &Path) -> Option<String> {
    let plist = plist_path().ok()?;
    (installed_socket(&plist).as_deref() == Some(socket)).then(|| {
        format!(
            "launchd manages that socket ({LABEL} is installed); load it with `launchctl bootstrap {} {}`, and see \
             ~/Library/Logs/graphbroker/graphbrokerd.log if it stops again",
            domain(),
            plist.display()
        )
    })
}

/// The socket path of the installed plist, if there is one.
fn installed_socket(plist: &Path) -> Option<PathBuf> {
    launchd_plist::read_installed(plist)?.socket
}

fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(error) => Err(Failure::new(ExitStatus::Other, format!("could not create {}: {error}", dir.display()))),
    }
}

fn run_launchctl(args: &[&str]) -> Result<ToolRun, Failure> {
    run_tool("launchctl", args, NO_LAUNCHCTL)
}

/// Runs `launchctl ARGS`, which must succeed, and says so.
fn launchctl(args: &[&str]) -> Result<(), Failure> {
    let run = run_launchctl(args)?;
    let command = format!("launchctl {}", args.join(" "));
    if !run.success {
        let reason = [run.stderr.as_str(), run.stdout.as_str()].into_iter().find(|text| !text.is_empty());
        return Err(Failure::new(
            ExitStatus::Other,
            format!("{command} failed: {}", reason.unwrap_or("no message").lines().next().unwrap_or("")),
        ));
    }
    say(&format!("ran {command}"))
}

/// Whether the agent is loaded in the user's GUI domain. `launchctl print` fails for an unknown service, and also
/// when there is no GUI domain (an ssh session without a login): then bootstrap would fail too, so say so now.
fn is_loaded() -> Result<bool, Failure> {
    let run = run_launchctl(&["print", &domain()])?;
    if !run.success {
        return Err(Failure::new(
            ExitStatus::Other,
            format!(
                "there is no launchd session for this user ({}); install the service from a logged-in session",
                domain()
            ),
        ));
    }
    Ok(run_launchctl(&["print", &service_target()])?.success)
}

//! A launchd agent: launchd holds the socket (the plist's `Sockets` entry) and starts graphbrokerd on the first
//! connection; the daemon takes the socket with `launch_activate_socket("Listeners")`.
//!
//! This file is compiled on macOS only and cannot be exercised on the Linux machines the tests run on; the plist
//! it installs is checked there (`tests/service.rs`), the `launchctl` calls are not.

use std::path::{Path, PathBuf};

use graphbroker_client::protocol::{SOCKET_ENV, resolve_socket_path};

use super::{FileChange, ToolRun, home_dir, remove_file, render, run_tool, say, stop_unmanaged_daemon, write_file};
use crate::exit_status::{ExitStatus, Failure};

/// The agent's label, which is also the plist's file name.
const LABEL: &str = "io.github.graphbroker.graphbrokerd";

const PLIST_TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../launchd/io.github.graphbroker.graphbrokerd.plist"));

/// Placeholders beside the daemon's: launchd expands neither `~` nor variables, so the plist gets absolute paths.
const SOCKET_PLACEHOLDER: &str = "@SOCKET@";
const LOG_DIR_PLACEHOLDER: &str = "@LOG_DIR@";

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
    let content = render_plist(program, &socket, &logs)?;
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
        logs.join("graphbrokerd.log").display()
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
    match std::fs::read_to_string(&plist) {
        Ok(text) => {
            let program = string_after_key(&text, "ProgramArguments").unwrap_or_else(|| "?".into());
            say(&format!("{}: installed, runs {program}", plist.display()))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            say(&format!("{}: not installed", plist.display()))?;
        }
        Err(error) => say(&format!("{}: unreadable ({error})", plist.display()))?,
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
    say(&format!("log: {}", log_dir()?.join("graphbrokerd.log").display()))
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

fn render_plist(program: &Path, socket: &Path, logs: &Path) -> Result<String, Failure> {
    Ok(render(PLIST_TEMPLATE, &xml_text(program)?)
        .replace(SOCKET_PLACEHOLDER, &xml_text(socket)?)
        .replace(LOG_DIR_PLACEHOLDER, &xml_text(logs)?))
}

/// A path as plist string content.
fn xml_text(path: &Path) -> Result<String, Failure> {
    let text = path.to_str().ok_or_else(|| {
        Failure::new(
            ExitStatus::Other,
            format!("{} is not UTF-8 and cannot be written into a plist; use a plainer path", path.display()),
        )
    })?;
    Ok(text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"))
}

/// The socket path of the installed plist, if there is one.
fn installed_socket(plist: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(plist).ok()?;
    string_after_key(&text, "SockPathName").map(PathBuf::from)
}

/// The first `<string>` after `<key>KEY</key>`, unescaped: enough for the plist this module writes.
fn string_after_key(plist: &str, key: &str) -> Option<String> {
    let after_key = &plist[plist.find(&format!("<key>{key}</key>"))?..];
    let start = after_key.find("<string>")? + "<string>".len();
    let length = after_key[start..].find("</string>")?;
    let raw = &after_key[start..start + length];
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plist_gets_absolute_escaped_paths() {
        let plist = render_plist(
            Path::new("/Users/a&b/bin/graphbrokerd"),
            Path::new("/var/folders/xy/T/graphbroker-501/graphbroker.sock"),
            Path::new("/Users/a&b/Library/Logs/graphbroker"),
        )
        .unwrap();
        assert!(!plist.contains('@'), "{plist}");
        assert_eq!(string_after_key(&plist, "ProgramArguments").unwrap(), "/Users/a&b/bin/graphbrokerd");
        assert_eq!(
            string_after_key(&plist, "SockPathName").unwrap(),
            "/var/folders/xy/T/graphbroker-501/graphbroker.sock"
        );
        assert!(plist.contains("<string>/Users/a&amp;b/Library/Logs/graphbroker/graphbrokerd.log</string>"));
    }
}

//! Starting graphbrokerd when nothing listens on the socket, so that the first `token` of a session just works.
//!
//! The daemon is started detached (its own process group, standard streams on /dev/null) so that it outlives
//! this command and a Ctrl-C in the terminal does not reach it; readiness is `GET /healthz` answering, polled
//! with a deadline.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use graphbroker_client::Client;
use tokio::time::Instant;

use crate::exit_status::{ExitStatus, Failure};
use crate::ui::Ui;

/// The daemon's program name.
const DAEMON_PROGRAM: &str = "graphbrokerd";

/// Environment variable naming the daemon program outright, for installs that put it somewhere unusual.
pub const DAEMON_PROGRAM_ENV: &str = "GRAPHBROKERD_PATH";

/// How long a freshly started daemon has to answer `/healthz`. It binds its socket at once but serves only after
/// loading accounts from the keychain, which on a desktop may first wake the Secret Service over D-Bus; that can
/// take seconds, never ten.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// How often readiness is polled while the daemon starts.
const READINESS_POLL: Duration = Duration::from_millis(25);

/// How long one readiness probe may take: a daemon that accepted the connection answers `/healthz` at once.
const PROBE_MARGIN: Duration = Duration::from_secs(2);

/// Makes sure a daemon answers on the client's socket, starting one when nothing listens there.
/// `explicit_socket` is the socket the user chose (flag or environment), passed on to the daemon.
pub async fn ensure_daemon(client: &Client, explicit_socket: Option<&Path>, ui: &Ui) -> Result<(), Failure> {
    let probe = client.clone().with_answer_margin(PROBE_MARGIN);
    match probe.healthz().await {
        Ok(()) => return Ok(()),
        Err(error) if error.is_unreachable() => {}
        Err(error) => return Err(Failure::from(error)),
    }
    let program = find_daemon_program().ok_or_else(|| {
        Failure::new(
            ExitStatus::Unreachable,
            format!(
                "graphbrokerd is not running and was not found next to graphbroker-client or on PATH; install it, \
                 set {DAEMON_PROGRAM_ENV}, or start it yourself"
            ),
        )
    })?;
    ui.note(&format!("starting {}", program.display()));
    let mut child = spawn_detached(&program, explicit_socket).map_err(|error| {
        Failure::new(
            ExitStatus::Unreachable,
            format!("could not start {}: {error}; start graphbrokerd yourself", program.display()),
        )
    })?;
    wait_until_ready(&probe, &mut child, &program).await
}

async fn wait_until_ready(probe: &Client, child: &mut Child, program: &Path) -> Result<(), Failure> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        // Any failure here (not yet listening, or listening but not yet serving) means "not ready yet".
        if probe.healthz().await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::new(
                ExitStatus::Unreachable,
                format!("{} stopped as it started ({status}); run it in a terminal to see why", program.display()),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                ExitStatus::Unreachable,
                format!(
                    "{} did not answer within {}s of starting; run it in a terminal to see why",
                    program.display(),
                    STARTUP_DEADLINE.as_secs()
                ),
            ));
        }
        tokio::time::sleep(READINESS_POLL).await;
    }
}

fn spawn_detached(program: &Path, explicit_socket: Option<&Path>) -> std::io::Result<Child> {
    let mut command = Command::new(program);
    if let Some(socket) = explicit_socket {
        command.arg("--socket").arg(socket);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    command.spawn()
}

/// `$GRAPHBROKERD_PATH`, else `graphbrokerd` beside this program (an unpacked release or `target/debug`), else
/// the first on `PATH`.
fn find_daemon_program() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os(DAEMON_PROGRAM_ENV).filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(named));
    }
    let beside_us = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(DAEMON_PROGRAM)));
    beside_us
        .filter(|path| is_executable(path))
        .or_else(|| find_on_path(DAEMON_PROGRAM, std::env::var_os("PATH").as_deref()?))
}

fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_first_executable_on_path_wins() {
        let root = tempfile::tempdir().unwrap();
        let (plain, first, second) = (root.path().join("a"), root.path().join("b"), root.path().join("c"));
        for dir in [&plain, &first, &second] {
            fs::create_dir(dir).unwrap();
        }
        // Not executable: skipped.
        fs::write(plain.join(DAEMON_PROGRAM), "").unwrap();
        for dir in [&first, &second] {
            let program = dir.join(DAEMON_PROGRAM);
            fs::write(&program, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([&plain, &first, &second]).unwrap();
        assert_eq!(find_on_path(DAEMON_PROGRAM, &path), Some(first.join(DAEMON_PROGRAM)));
        let path = std::env::join_paths([&plain]).unwrap();
        assert_eq!(find_on_path(DAEMON_PROGRAM, &path), None);
    }
}

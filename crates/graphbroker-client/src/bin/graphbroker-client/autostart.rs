//! Starting graphbrokerd when nothing listens on the socket, so that the first `token` of a session just works.
//!
//! The daemon is started detached (its own process group, standard streams on /dev/null) so that it outlives
//! this command and a Ctrl-C in the terminal does not reach it; readiness is `GET /healthz` answering, polled
//! with a deadline. Its log goes to `--log-file`, `graphbroker_protocol::default_log_path` (in
//! `$XDG_STATE_HOME/graphbroker/`), where `status` points and where a start that fails sends the user.
//!
//! The probe is an ordinary request, so it passes the client's checks first: a socket directory that is not the
//! user's alone, or a listener of another user, is refused rather than taken for a running daemon.
//!
//! Autostart is for machines without a service manager. When systemd or launchd owns the socket (`service
//! install`), it is the one to start the daemon: the first request does, and autostart only waits for the answer.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use graphbroker_client::Client;
use tokio::time::Instant;

use crate::daemon_program::{DAEMON_PROGRAM_ENV, find_daemon_program};
use crate::exit_status::{ExitStatus, Failure};
use crate::service::managed_socket;
use crate::ui::Ui;

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
    if let Some(start_hint) = managed_socket(client.socket_path()) {
        return ensure_service_answers(client, &start_hint).await;
    }
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
    let log_file = graphbroker_client::protocol::default_log_path();
    let mut child = spawn_detached(&program, explicit_socket, log_file.as_deref()).map_err(|error| {
        Failure::new(
            ExitStatus::Unreachable,
            format!("could not start {}: {error}; start graphbrokerd yourself", program.display()),
        )
    })?;
    let see = match &log_file {
        Some(path) => format!("see its log {}, or run it in a terminal", path.display()),
        None => "run it in a terminal to see why".to_owned(),
    };
    wait_until_ready(&probe, &mut child, &program, &see).await
}

/// The socket belongs to a service manager, which starts the daemon on this first connection; the answer can take
/// as long as a start. Nothing answering means the service manager stopped listening: say how to restart it.
async fn ensure_service_answers(client: &Client, start_hint: &str) -> Result<(), Failure> {
    let probe = client.clone().with_answer_margin(STARTUP_DEADLINE);
    match probe.healthz().await {
        Ok(()) => Ok(()),
        Err(error) if error.is_unreachable() || matches!(error, graphbroker_client::Error::Timeout { .. }) => {
            Err(Failure::new(
                ExitStatus::Unreachable,
                format!("graphbrokerd does not answer on {}: {start_hint}", client.socket_path().display()),
            ))
        }
        Err(error) => Err(Failure::from(error)),
    }
}

/// `see` says where to look when the daemon does not come up.
async fn wait_until_ready(probe: &Client, child: &mut Child, program: &Path, see: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        // A failure here (not yet listening, or listening but not yet serving) means "not ready yet" — except a
        // socket the client refuses to trust: whatever answers there is not the daemon just started.
        match probe.healthz().await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_untrusted_socket() => return Err(Failure::from(error)),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::new(
                ExitStatus::Unreachable,
                format!("{} stopped as it started ({status}); {see}", program.display()),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                ExitStatus::Unreachable,
                format!(
                    "{} did not answer within {}s of starting; {see}",
                    program.display(),
                    STARTUP_DEADLINE.as_secs()
                ),
            ));
        }
        tokio::time::sleep(READINESS_POLL).await;
    }
}

fn spawn_detached(program: &Path, explicit_socket: Option<&Path>, log_file: Option<&Path>) -> std::io::Result<Child> {
    let mut command = Command::new(program);
    if let Some(socket) = explicit_socket {
        command.arg("--socket").arg(socket);
    }
    if let Some(log_file) = log_file {
        command.arg("--log-file").arg(log_file);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    command.spawn()
}

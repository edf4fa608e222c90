//! Autostart: with nothing listening on the socket, `graphbroker-client` starts the daemon program detached,
//! waits for `/healthz`, then asks it for the token.
//!
//! The daemon started here is a stand-in: this test binary itself, re-run with only [`stand_in_daemon`] selected,
//! serving the scripted mock on the socket it was given and leaving once it has answered a token.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use support::{ACCESS_TOKEN, Reply, token_body};

/// Tells a re-run of this binary to act as the daemon, on this socket.
const STAND_IN_SOCKET_ENV: &str = "GRAPHBROKER_CLIENT_TEST_STAND_IN_SOCKET";

/// How long the stand-in lives at most, should the client never ask it for a token.
const STAND_IN_LIFETIME: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_daemon_that_is_not_running_is_started_then_asked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("graphbroker.sock");
    let program = dir.path().join("graphbrokerd");
    // The client passes `--socket PATH` because the test names the socket explicitly.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --socket ] || exit 64\nmkdir -m 700 -p \"$(dirname \"$2\")\"\n\
         exec env {STAND_IN_SOCKET_ENV}=\"$2\" '{}' --exact stand_in_daemon --ignored --quiet\n",
        std::env::current_exe().unwrap().display()
    );
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_graphbroker-client"))
        .arg("--socket")
        .arg(&socket)
        .args(["token", "--scopes", "User.Read"])
        .env("GRAPHBROKERD_PATH", &program)
        .env_remove("GRAPHBROKER_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{ACCESS_TOKEN}\n"), "stdout is the token alone");
    assert!(stderr.contains("starting"), "stderr: {stderr}");
}

/// Not a test of its own: the daemon stand-in the test above starts. Does nothing unless started that way.
#[test]
#[ignore = "run by a_daemon_that_is_not_running_is_started_then_asked as its stand-in daemon"]
fn stand_in_daemon() {
    let Some(socket) = std::env::var_os(STAND_IN_SOCKET_ENV) else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let token_served = Arc::new(tokio::sync::Notify::new());
        let notify = token_served.clone();
        let (_requests, stop, served) = support::serve_on(std::path::Path::new(&socket), move |request, _| {
            if request.path == "/v1/token" {
                notify.notify_one();
            }
            Reply::ok(token_body())
        });
        let _ = tokio::time::timeout(STAND_IN_LIFETIME, token_served.notified()).await;
        // Graceful: the answer being written completes, then the serving task ends when the client hangs up.
        let _ = stop.send(());
        let _ = tokio::time::timeout(STAND_IN_LIFETIME, served).await;
    });
}

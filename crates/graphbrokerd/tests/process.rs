//! The daemon as a process on its socket, end to end: a client of another uid refused, no keychain as a clear
//! error, SIGTERM, a second daemon on a live socket, a stale socket file. The real daemon binary, the fake identity
//! platform; each test starts its own.

mod support;

use std::time::Duration;

use graphbroker_protocol::ErrorCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_uid_is_refused() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipping a_client_of_another_uid_is_refused: needs root to run the daemon as another user");
        return;
    }
    let fake = fake();
    // The daemon runs as `nobody`; this test process (root) is then another user to it. Root can open the
    // 0600 socket anyway, so only the daemon's peer check stands between them.
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("user nobody");
    let daemon = Daemon::start_as(&config(&fake, "memory", &unique_service("uid"), ""), &nobody);
    let (status, body) = raw_get(&daemon.socket, "/v1/token?scopes=User.Read").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = raw_get(&daemon.socket, "/v1/status").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(fake.stats().devicecode, 0, "nothing reached the platform");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keychain_that_cannot_be_reached_is_a_clear_error_not_a_file() {
    let fake = fake();
    let daemon = Daemon::start_with(&config(&fake, "keyring", &unique_service("nobus"), ""), |command| {
        command.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    });
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::KeychainUnavailable), "{error}");
    let status = client.status().await.expect("status");
    assert!(status.profiles[0].store_error.is_some(), "status says why: {:?}", status.profiles[0]);
    assert_eq!(fake.stats().devicecode, 0, "no sign-in starts that could not be kept");
    let written: Vec<_> = walk(daemon.dir.path()).into_iter().filter(|p| !p.ends_with("daemon.log")).collect();
    assert!(
        written
            .iter()
            .all(|p| p.ends_with("config.toml") || p.ends_with("graphbroker.sock") || p.ends_with("audit.jsonl")),
        "nothing but the config, the socket and the audit log in the daemon's directory: {written:?}"
    );
    // The audit log records the refusal, and holds no secret.
    let audit = std::fs::read_to_string(daemon.dir.path().join("state/graphbroker/audit.jsonl")).unwrap_or_default();
    assert!(!audit.contains("refresh_token") && !audit.contains("eyJ"), "{audit}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_waiting_requests_exits_zero_and_removes_the_socket() {
    let fake = fake();
    let mut daemon = Daemon::start(&config(&fake, "memory", &unique_service("term"), ""));
    let client = daemon.client();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.token(&with_wait("User.Read", 600)).await }
    });
    // The request is held once the sign-in's prompt exists.
    while client.status().await.expect("status").profiles[0].signin.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "exit status {status}:\n{}", daemon.log());
    let answer = waiting.await.expect("task").expect_err("no token: the daemon stopped");
    assert_eq!(answer.code(), Some(ErrorCode::DaemonStopping), "{answer}");
    assert!(!daemon.socket.exists(), "the socket is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_live_socket_refuses_to_start_and_says_why() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("twice"), ""));
    let second = std::process::Command::new(graphbrokerd_bin())
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("--socket")
        .arg(&daemon.socket)
        .output()
        .expect("run");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("already answering on") && stderr.contains(&daemon.socket.display().to_string()),
        "{stderr}"
    );
    // The first daemon is unharmed.
    daemon.client().version().await.expect("first daemon still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_replaced() {
    let fake = fake();
    let mut daemon = Daemon::unstarted(&config(&fake, "memory", &unique_service("stale"), ""));
    std::fs::create_dir_all(daemon.socket.parent().unwrap()).unwrap();
    // Private, as the daemon would have made it: it refuses a directory open to others.
    std::fs::set_permissions(daemon.socket.parent().unwrap(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    // Binding and dropping a listener leaves the file with nobody listening: what a crashed daemon leaves.
    drop(std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap());
    daemon.spawn(|_| {});
    daemon.client().version().await.expect("the new daemon answers on the replaced socket");
    assert!(daemon.log().contains("replacing a stale socket"), "{}", daemon.log());
}

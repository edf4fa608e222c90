//! The `graphbroker-client` command line against the real daemon: what a person at a terminal gets.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Reads `stderr` lines until one holds a device code, returns it.
fn user_code_from(stderr: impl std::io::Read) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("stderr line");
        if let Some(rest) = line.split("enter the code ").nth(1) {
            return rest.split_whitespace().next().expect("code").to_owned();
        }
        assert!(Instant::now() < deadline, "no device code on stderr");
    }
    panic!("stderr ended without a device code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_autostarts_the_daemon_signs_in_and_prints_only_the_token_on_stdout() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config(&fake, "memory", &unique_service("cli"), "")).unwrap();
    let socket = dir.path().join("run/graphbroker.sock");

    let mut child = Command::new(client_bin())
        .args(["token", "--scopes", "User.Read", "--timeout", "60"])
        .env("GRAPHBROKER_SOCKET", &socket)
        .env("GRAPHBROKER_CONFIG", &config_path)
        .env("GRAPHBROKERD_PATH", graphbrokerd_bin())
        // The autostarted daemon's log and audit log go to the test's directory, never the tester's.
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client");
    let stderr = child.stderr.take().unwrap();
    let code = tokio::task::spawn_blocking(move || user_code_from(stderr)).await.unwrap();
    fake.approve_device(&code, ALICE).expect("approve");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();

    let autostarted = pids_mentioning(&socket.display().to_string());
    for pid in &autostarted {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGTERM);
    }
    assert!(output.status.success(), "exit {:?}", output.status);
    assert_eq!(autostarted.len(), 1, "the client started one daemon");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert_eq!(stdout.lines().count(), 1, "stdout is the token alone");
    assert!(fake.issued_secrets().iter().any(|s| s == token), "stdout is a token the platform issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_prints_a_curl_ready_line_and_no_wait_exits_4_with_the_prompt() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("cli2"), ""));
    let run = |args: &[&str]| {
        Command::new(client_bin())
            .args(["--no-autostart", "--socket"])
            .arg(&daemon.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("client")
    };

    let no_wait = run(&["header", "--scopes", "User.Read", "--no-wait"]);
    assert_eq!(no_wait.status.code(), Some(4));
    assert!(no_wait.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&no_wait.stderr);
    let code = user_code_from(stderr.as_bytes());
    fake.approve_device(&code, ALICE).expect("approve");

    // The sign-in completes in the daemon whether or not a client waits for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let header = loop {
        let out = run(&["header", "--scopes", "User.Read", "--no-wait"]);
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "sign-in did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token = header.trim_end().strip_prefix("Authorization: Bearer ").expect("an Authorization header line");
    assert!(fake.issued_secrets().iter().any(|s| s == token));

    let unknown = run(&["token", "--scopes", "User.Read", "--profile", "nope"]);
    assert_eq!(unknown.status.code(), Some(8));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("graphbroker-client: ") && stderr.contains("nope"), "{stderr}");
}

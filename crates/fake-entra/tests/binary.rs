//! The `fake-entra` binary: first stdout line, flags, clean exit on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child if a test fails before it exits on its own.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-entra"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Running(child), line)
}

#[tokio::test]
async fn prints_listening_line_serves_and_exits_cleanly_on_sigterm() {
    let (mut running, line) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--client-id",
        "11111111-2222-3333-4444-555555555555",
        "--user",
        "carol@contoso.com",
        "--device-interval",
        "1",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    ]);
    let base = line.strip_prefix("listening on ").unwrap().trim_end().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line:?}");

    let client = reqwest::Client::new();
    let users: serde_json::Value =
        client.get(format!("{base}/_control/users")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users[0]["email"], "carol@contoso.com");
    let flow: serde_json::Value = client
        .post(format!("{base}/common/oauth2/v2.0/devicecode"))
        .form(&[("client_id", "11111111-2222-3333-4444-555555555555"), ("scope", "User.Read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(flow["interval"], 1);
    let default_client = client
        .post(format!("{base}/common/oauth2/v2.0/devicecode"))
        .form(&[("client_id", fake_entra::DEFAULT_CLIENT_ID), ("scope", "User.Read")])
        .send()
        .await
        .unwrap();
    assert_eq!(default_client.status(), 400, "an explicit --client-id replaces the default");

    let pid = running.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn default_client_id_when_none_given() {
    let (_running, line) = spawn(&[]);
    let base = line.strip_prefix("listening on ").unwrap().trim_end().to_owned();
    let reply = reqwest::Client::new()
        .post(format!("{base}/common/oauth2/v2.0/devicecode"))
        .form(&[("client_id", fake_entra::DEFAULT_CLIENT_ID), ("scope", "User.Read")])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

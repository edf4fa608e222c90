//! `graphbroker-client graph` against the real daemon and the stand-in's Graph: the body on stdout, uploads
//! from a file, Graph's errors with exit status 10.

mod support;

use std::process::Output;

use sha2::{Digest, Sha256};
use support::*;

fn run(daemon: &Daemon, args: &[&str]) -> Output {
    std::process::Command::new(client_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--no-autostart")
        .args(args)
        .env_remove("GRAPHBROKER_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run graphbroker-client")
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn graph_get_prints_the_answer_and_an_error_exits_10() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("cli-graph"), ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;

    let me = stdout_json(&run(&daemon, &["graph", "GET", "/me"]));
    assert_eq!(me["userPrincipalName"], ALICE);
    let beta = stdout_json(&run(&daemon, &["graph", "get", "me", "--beta"]));
    assert!(beta["@odata.context"].as_str().unwrap().contains("/beta/"), "{beta}");

    let included = run(&daemon, &["graph", "GET", "/v1.0/me", "-i"]);
    let text = String::from_utf8(included.stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\n"), "{text}");
    assert!(text.contains("\ngraphbroker-upstream: graph\n"), "{text}");

    let missing = run(&daemon, &["graph", "GET", "/me/nothing/here"]);
    assert_eq!(missing.status.code(), Some(10));
    let body: serde_json::Value = serde_json::from_slice(&missing.stdout).expect("Graph's error on stdout");
    assert_eq!(body["error"]["code"], "BadRequest");
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(stderr.contains("Microsoft Graph answered HTTP 400"), "{stderr}");
    assert!(!stderr.contains("Bearer"), "{stderr}");

    let bad = run(&daemon, &["graph", "GET", "/me", "-H", "no colon"]);
    assert_eq!(bad.status.code(), Some(2), "a malformed header is a usage error");
}

#[tokio::test]
async fn graph_put_streams_a_file_and_the_digest_comes_back() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("cli-upload"), ""));
    fake.grant_consent(ALICE, CLIENT_ID, &["Files.ReadWrite"]).unwrap();
    sign_in(&daemon.client(), &fake, "Files.ReadWrite", ALICE).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let at_file = format!("@{}", file.display());
    let args =
        ["graph", "PUT", "/me/drive/root:/report.bin:/content", "--scopes", "Files.ReadWrite", "--data", &at_file];
    let item = stdout_json(&run(&daemon, &args));
    let digest: String = Sha256::digest(&data).iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(item["file"]["hashes"]["sha256Hash"], digest);
    assert_eq!(item["size"], data.len());
    assert_eq!(fake.uploads()[0].name, "report.bin");
}

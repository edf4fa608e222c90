//! The Graph proxy and a config reload: a proxied call is sent to the Graph of the same configuration its token
//! came from, even when a reload changes the profile's `graph_url` while the call is under way.
//!
//! The interleaving is made deterministic with `Expect: 100-continue`: the daemon says `100 Continue` only once the
//! proxy starts reading the request body, that is once the call is past its header checks and before any token is
//! fetched. The test holds the body back there, reloads the config (the new `graph_url` is a second stand-in that
//! records what it is sent), waits until the daemon reports the new config, and only then sends the body.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// A second Graph stand-in on loopback: it answers every request `200 {"from":"second"}` and keeps each request
/// head it was sent.
async fn second_graph() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the second Graph");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = stream.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while request.len() < head_end + length {
                    let Ok(n) = stream.read(&mut buffer).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                }
                kept.lock().unwrap().push(head);
                let body = r#"{"from":"second"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, heads)
}

/// Reads from `stream` until `needle` has arrived; returns all that was read.
async fn read_until(stream: &mut UnixStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buffer).await.expect("read from the daemon");
        assert!(n > 0, "the daemon closed the connection before {needle:?}: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&seen).to_string()
}

#[tokio::test]
async fn a_reload_during_a_proxied_call_sends_it_to_the_graph_of_its_tokens_config() {
    let fake = fake();
    let (second, heads) = second_graph().await;
    let text = config(&fake, "memory", &unique_service("proxy-reload"), "");
    let daemon = Daemon::start(&text);
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let refreshes_before = fake.stats().token.refresh_token;

    // The call, its body held back until the proxy asks for it.
    let mut call = UnixStream::connect(&daemon.socket).await.expect("connect");
    let head = "POST /graph/v1.0/me/sendMail HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    call.write_all(head.as_bytes()).await.expect("send the head");
    let interim = read_until(&mut call, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "the proxy did not ask for the body: {interim}");

    // The reload: the same sign-in (the account carries over), another Graph.
    let graph_line = format!("graph_url = \"{}\"", fake.base_url());
    assert!(text.contains(&graph_line), "{text}");
    write_config(&daemon.config_path, &text.replace(&graph_line, &format!("graph_url = \"{second}\"")));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut reloaded = false;
    for _ in 0..400 {
        let shown = serde_json::to_string(&client.config().await.expect("config")).unwrap();
        if shown.contains(&second) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reloaded, "the reload never showed:\n{}", daemon.log());

    call.write_all(b"{}").await.expect("send the body");
    let mut answer = Vec::new();
    call.read_to_end(&mut answer).await.expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);

    // The token came from the reloaded config (its cached tokens were dropped, so it was refreshed after the
    // reload), and so the call went to that config's Graph, not the one in effect when the call arrived.
    assert_eq!(fake.stats().token.refresh_token, refreshes_before + 1, "a token of the new config: {answer}");
    assert_eq!(fake.stats().graph.requests, 0, "the old config's Graph was sent the new config's token: {answer}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "the new config's Graph got the call: {answer}");
    assert!(heads[0].starts_with("POST /v1.0/me/sendMail "), "{}", heads[0]);
    assert!(heads[0].to_ascii_lowercase().contains("authorization: bearer "), "sent with the token");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"from":"second"}"#), "{answer}");
}

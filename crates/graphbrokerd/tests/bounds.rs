//! Bounds on what one connection can make the daemon hold, end to end: the real daemon binary on its real
//! socket. A peer of another user is refused before its request is read, a request head that does not arrive in
//! time loses its connection, and connections over the cap wait for a free slot instead of being served at once
//! or starving.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Half a request head: the request line and one header, never the blank line that ends the head.
const HALF_A_HEAD: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n";

/// Reads until the daemon closes the connection, for at most `limit`; `None` if it is still open by then. A
/// reset after the answer counts as closed (the daemon closes without reading what was sent).
async fn read_until_closed(stream: &mut UnixStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

/// A connection that has made one request and is now idle (HTTP keep-alive), holding one of the daemon's slots.
async fn idle_connection(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    stream.write_all(b"GET /v1/version HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"protocol\"") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("an answer to the first request")
            .expect("read");
        assert!(n > 0, "the daemon closed the connection: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    stream
}

fn start_with_flags(test: &str, flags: &'static [&'static str]) -> (fake_entra::FakeEntra, Daemon) {
    let fake = fake();
    let daemon = Daemon::start_with(&config(&fake, "memory", &unique_service(test), ""), |command| {
        command.args(flags);
    });
    (fake, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_does_not_arrive_in_time_loses_its_connection() {
    let (_fake, daemon) = start_with_flags("head_timeout", &["--header-read-timeout-ms", "300"]);
    let mut slow = UnixStream::connect(&daemon.socket).await.expect("connect");
    slow.write_all(HALF_A_HEAD).await.expect("write");
    let answer = read_until_closed(&mut slow, Duration::from_secs(20)).await;
    let answer = answer.expect("the daemon still holds a connection whose request head never came");
    assert!(!answer.contains("200 OK"), "a half-sent request was answered: {answer}");

    // A connection that says nothing at all is cut too, and whoever sends a whole request is still served.
    let mut silent = UnixStream::connect(&daemon.socket).await.expect("connect");
    assert!(read_until_closed(&mut silent, Duration::from_secs(20)).await.is_some(), "a silent connection stays");
    let (status, body) = raw_get(&daemon.socket, "/v1/version").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_slot_and_are_served_once_one_frees() {
    let (_fake, daemon) = start_with_flags("cap", &["--max-connections", "2", "--header-read-timeout-ms", "120000"]);
    let first = idle_connection(&daemon.socket).await;
    let _second = idle_connection(&daemon.socket).await;

    let socket = daemon.socket.clone();
    let mut third = tokio::spawn(async move { raw_get(&socket, "/v1/version").await });
    // Not a timing assertion: with both slots held nothing can answer the third connection, however long this
    // waits; it only bounds how long the test looks for a cap that does not hold.
    let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    assert!(early.is_err(), "a connection over the cap was served while both slots were held: {early:?}");

    drop(first);
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(20), third).await.expect("served once a slot freed").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_user_is_refused_before_its_request_is_read() {
    if !root_available("a_peer_of_another_user_is_refused_before_its_request_is_read") {
        return;
    }
    let fake = fake();
    // The daemon runs as `nobody`; this test process (root) is another user to it and can open the 0600 socket.
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("user nobody");
    let daemon = Daemon::start_as(&config(&fake, "memory", &unique_service("early_peer"), ""), &nobody);
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    stream.write_all(HALF_A_HEAD).await.expect("write");
    // The head is never completed: only a refusal that does not wait for it answers. (Refused after reading,
    // the connection would instead be closed without an answer when the head's time limit ran out.)
    let answer = read_until_closed(&mut stream, Duration::from_secs(30)).await.expect("the refusal closes");
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("start your own graphbrokerd"), "{body}");
    assert!(daemon.log().contains("before reading its request"), "{}", daemon.log());
}

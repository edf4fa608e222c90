//! Bounds on what one connection can make the daemon hold, end to end: the real daemon binary on its real
//! socket. A peer of another user is refused before its request is read, a request head that does not arrive in
//! time loses its connection, connections over the cap wait for a free slot instead of being served at once
//! or starving, and requests waiting on a sign-in give up their slots (within the waiting room's bound).

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
    let answer = read_one_answer(&mut stream).await;
    assert!(answer.contains("\"protocol\""), "not the version answer: {answer}");
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

/// A token request that waits up to 600 s for the sign-in, sent on a connection of its own and not read yet.
/// Connected in order: the daemon accepts its listen backlog first come, first served.
async fn waiting_token_request(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    stream
        .write_all(b"GET /v1/token?scopes=User.Read&wait=600 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    stream
}

/// Starts the sign-in with a `wait=0` request (its connection closed after the answer) and returns its code.
async fn started_signin(socket: &Path) -> String {
    for _ in 0..400 {
        let (status, body) = raw_get(socket, "/v1/token?scopes=User.Read").await;
        assert_eq!(status, 401, "{body}");
        if let Some(code) = body["error"]["signin"]["user_code"].as_str() {
            return code.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no device code after 400 requests");
}

/// The answer a waiting request got once the sign-in finished: it must be a token, on a connection the daemon
/// closes after it.
async fn token_answer(mut stream: UnixStream) {
    let answer = read_until_closed(&mut stream, Duration::from_secs(60)).await.expect("the answer, then the close");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.to_ascii_lowercase().contains("\r\nconnection: close"), "{head}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
}

/// One whole answer (head and `Content-Length` body) read from `stream`, which stays open.
async fn read_one_answer(stream: &mut UnixStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "the daemon closed the connection: {text}");
        answer.extend_from_slice(&buffer[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_sign_in_give_up_their_slots_so_status_is_still_served() {
    let (fake, daemon) = start_with_flags("waiting", &["--max-connections", "2", "--header-read-timeout-ms", "120000"]);
    let code = started_signin(&daemon.socket).await;
    // Two requests that wait on the sign-in, then a third: with both slots held by the waits, nothing could
    // answer the status request until the user finished the sign-in.
    let first = waiting_token_request(&daemon.socket).await;
    let second = waiting_token_request(&daemon.socket).await;
    let third = waiting_token_request(&daemon.socket).await;
    // Not a timing assertion: without the waiting room the status request is not answered however long this
    // waits (the waits hold for 600 s); the bound only keeps the test from hanging.
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), raw_get(&daemon.socket, "/v1/status"))
        .await
        .expect("status answered while requests wait on the sign-in");
    assert_eq!(status, 200, "{body}");
    assert!(body["profiles"][0]["signin"].is_object(), "the sign-in is still under way: {body}");

    fake.approve_device(&code, ALICE).expect("approve the device code");
    for stream in [first, second, third] {
        token_answer(stream).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_waiting_rooms_bound_a_waiting_request_keeps_its_slot() {
    let (fake, daemon) = start_with_flags(
        "waiting_bound",
        &["--max-connections", "1", "--max-waiting", "1", "--header-read-timeout-ms", "120000"],
    );
    let code = started_signin(&daemon.socket).await;
    // The first wait takes the waiting room's one place; the second finds it full and keeps the one slot.
    let first = waiting_token_request(&daemon.socket).await;
    let second = waiting_token_request(&daemon.socket).await;
    let socket = daemon.socket.clone();
    let mut status = tokio::spawn(async move { raw_get(&socket, "/v1/status").await });
    // Not a timing assertion: with the slot held by the second wait nothing can answer the status request before
    // the sign-in ends, however long this waits; it only bounds how long the test looks for a bound that fails.
    let early = tokio::time::timeout(Duration::from_secs(1), &mut status).await;
    assert!(early.is_err(), "a connection was served past both bounds: {early:?}");

    fake.approve_device(&code, ALICE).expect("approve the device code");
    token_answer(first).await;
    // The second kept its serving slot: its connection stays open (keep-alive) after the answer, so the status
    // request is served only once it closes.
    let mut second = second;
    let answer = read_one_answer(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("\r\nconnection: close"), "{answer}");
    drop(second);
    let (code, body) =
        tokio::time::timeout(Duration::from_secs(60), status).await.expect("served once the slot freed").unwrap();
    assert_eq!(code, 200, "{body}");
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
    // docs/api.md: every answer, the peer check's refusal included, carries the protocol version.
    let head = answer.split_once("\r\n\r\n").map_or("", |(h, _)| h).to_ascii_lowercase();
    let version = format!("\r\n{}: {}", graphbroker_protocol::PROTOCOL_HEADER, graphbroker_protocol::PROTOCOL_VERSION);
    assert!(head.contains(&version), "no {version:?} in the refusal: {answer}");
    let body: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b))
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("start your own graphbrokerd"), "{body}");
    assert!(daemon.log().contains("before reading its request"), "{}", daemon.log());
}

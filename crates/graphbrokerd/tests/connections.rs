//! HTTP/1.1 on one connection, as clients use it, against the real daemon on its real socket. A connection
//! answers the token routes itself and hands the first request of any other kind, with what it read ahead, to
//! hyper: these tests hold the two to the same answers, in order, under the same connection rules (the head's
//! time limit, `Connection: close`, a stopping daemon).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// One answer as it came on the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lowercased names; values as sent.
    headers: BTreeMap<String, String>,
    body: serde_json::Value,
}

/// Reads `n` answers from `stream`, each by its `content-length`, then whether the daemon closed the connection
/// after them (`true`) or kept it open (`false`, seen as nothing more within a short wait).
async fn read_answers(stream: &mut UnixStream, n: usize) -> (Vec<Answer>, bool) {
    let mut bytes = Vec::new();
    let mut answers = Vec::new();
    let mut chunk = [0u8; 4096];
    while answers.len() < n {
        if let Some(answer) = take_answer(&mut bytes) {
            answers.push(answer);
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await;
        let read = read.expect("an answer within 20 s").expect("read");
        assert!(read > 0, "the connection closed after {} of {n} answers: {answers:?}", answers.len());
        bytes.extend_from_slice(&chunk[..read]);
    }
    assert!(bytes.is_empty(), "more than {n} answers: {}", String::from_utf8_lossy(&bytes));
    let closed = match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(more)) => panic!("bytes after the answers: {}", String::from_utf8_lossy(&chunk[..more])),
        Err(_) => false,
    };
    (answers, closed)
}

/// The first whole answer in `bytes`, removed from them.
fn take_answer(bytes: &mut Vec<u8>) -> Option<Answer> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().expect("a status code");
    let headers: BTreeMap<String, String> = lines
        .map(|line| line.split_once(": ").expect("a header line"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    let length: usize = headers.get("content-length").expect("every answer has a content-length").parse().unwrap();
    if rest.len() < length {
        return None;
    }
    let body = serde_json::from_str(&rest[..length]).unwrap_or(serde_json::Value::String(rest[..length].into()));
    let used = head.len() + 4 + length;
    bytes.drain(..used);
    Some(Answer { status, headers, body })
}

/// Reads the next answer from `stream`, without waiting to see whether more comes.
async fn next_answer(stream: &mut UnixStream) -> Answer {
    let (mut bytes, mut chunk) = (Vec::new(), [0u8; 4096]);
    loop {
        if let Some(answer) = take_answer(&mut bytes) {
            assert!(bytes.is_empty(), "more than one answer: {}", String::from_utf8_lossy(&bytes));
            return answer;
        }
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await;
        let read = read.expect("an answer within 20 s").expect("read");
        assert!(read > 0, "the connection closed before its answer");
        bytes.extend_from_slice(&chunk[..read]);
    }
}

async fn signed_in(test: &str, flags: &'static [&'static str]) -> (fake_entra::FakeEntra, Daemon) {
    let fake = fake();
    let daemon = Daemon::start_with(&config(&fake, "memory", &unique_service(test), ""), |command| {
        command.args(flags);
    });
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    (fake, daemon)
}

fn get(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_off_to_hyper() {
    let (_fake, daemon) = signed_in("pipelined", &[]).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    let requests = [
        get("/v1/token?scopes=User.Read", ""),
        get("/v1/header?scopes=User.Read", ""),
        get("/v1/version", ""),
        get("/v1/token?scopes=User.Read", "Connection: close\r\n"),
    ];
    stream.write_all(requests.concat().as_bytes()).await.expect("write");
    let (answers, closed) = read_answers(&mut stream, 4).await;
    assert!(closed, "`Connection: close` was not honoured");
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    let token = answers[0].body["access_token"].as_str().expect("a token answer first").to_owned();
    assert_eq!(answers[1].body["Authorization"], format!("Bearer {token}"), "{:?}", answers[1]);
    assert!(answers[2].body["protocol"].is_number(), "the version answer third: {:?}", answers[2]);
    assert_eq!(answers[3].body["access_token"], token.as_str(), "the token again, from hyper this time");
    for answer in &answers {
        for header in ["graphbroker-protocol", "date", "content-type"] {
            assert!(answer.headers.contains_key(header), "no {header}: {answer:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_route_answers_the_same_before_and_after_the_hand_off() {
    let (_fake, daemon) = signed_in("same_answers", &[]).await;
    for target in [
        "/v1/token?scopes=User.Read",
        "/v1/header?scopes=User.Read",
        "/v1/token?scopes=User.Read&scopes=x",
        "/v1/header?profile=nope",
        "/v1/token?x=1",
    ] {
        // A fresh connection answers it itself; after a status request, hyper and the router do.
        let mut direct = UnixStream::connect(&daemon.socket).await.expect("connect");
        direct.write_all(get(target, "").as_bytes()).await.expect("write");
        let (mut direct, _) = read_answers(&mut direct, 1).await;
        let mut handed = UnixStream::connect(&daemon.socket).await.expect("connect");
        handed.write_all((get("/v1/healthz", "") + &get(target, "")).as_bytes()).await.expect("write");
        let (mut handed, _) = read_answers(&mut handed, 2).await;
        let (direct, handed) = (direct.remove(0), handed.remove(1));
        assert_eq!(direct.status, handed.status, "{target}: {direct:?} / {handed:?}");
        assert_eq!(direct.body, handed.body, "{target}");
        let names = |a: &Answer| a.headers.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&direct), names(&handed), "{target}: the same headers");
        for (name, value) in &direct.headers {
            if name != "date" {
                assert_eq!(Some(value), handed.headers.get(name), "{target}: {name}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_answered_and_an_http_1_0_one_by_hyper() {
    let (_fake, daemon) = signed_in("byte_at_a_time", &[]).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    for byte in get("/v1/token?scopes=User.Read", "").bytes() {
        stream.write_all(&[byte]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (answers, closed) = read_answers(&mut stream, 1).await;
    assert_eq!(answers[0].status, 200, "{answers:?}");
    assert!(!closed, "a keep-alive connection was closed after its answer");

    let (status, body) =
        raw_request(&daemon.socket, "GET /v1/token?scopes=User.Read HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("access_token"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_token_request_head_and_an_idle_connection_lose_their_connections() {
    let (_fake, daemon) = signed_in("direct_head_timeout", &["--header-read-timeout-ms", "300"]).await;
    let mut half = UnixStream::connect(&daemon.socket).await.expect("connect");
    half.write_all(b"GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: localhost\r\n").await.expect("write");
    let mut idle = UnixStream::connect(&daemon.socket).await.expect("connect");
    idle.write_all(get("/v1/token?scopes=User.Read", "").as_bytes()).await.expect("write");
    let (answers, _) = read_answers(&mut idle, 1).await;
    assert_eq!(answers[0].status, 200);
    for (what, stream) in [("half a head", &mut half), ("an idle keep-alive connection", &mut idle)] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the daemon still holds {what} past the head's time limit");
        assert!(rest.is_empty(), "{what} was answered: {}", String::from_utf8_lossy(&rest));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_closes_an_idle_connection_at_once() {
    // With a head limit of two minutes, only the stop can end this connection before the shutdown's grace.
    let (_fake, mut daemon) = signed_in("direct_stop", &["--header-read-timeout-ms", "120000"]).await;
    let mut idle = UnixStream::connect(&daemon.socket).await.expect("connect");
    idle.write_all(get("/v1/token?scopes=User.Read", "").as_bytes()).await.expect("write");
    let (answers, closed) = read_answers(&mut idle, 1).await;
    assert_eq!(answers[0].status, 200);
    assert!(!closed);
    let stopped = tokio::task::spawn_blocking(move || {
        let status = daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
        (status, daemon.log())
    });
    let (status, log) = stopped.await.expect("stop");
    assert!(status.success(), "the daemon did not exit cleanly:\n{log}");
    // Past its grace period the daemon exits anyway, saying so: the idle connection must not have held it.
    assert!(!log.contains("did not finish within"), "an idle connection held the stopping daemon:\n{log}");
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.expect("read");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_repeat_or_change_their_query_on_one_connection_are_answered_as_fresh_ones() {
    // A connection keeps its last token query parsed while the next ones repeat it: a change of query or of the
    // terminal header between them, and a query that is refused, must still get what a fresh connection gets.
    let (_fake, daemon) = signed_in("repeated_query", &[]).await;
    let terminal = format!("{}: 1\r\n", graphbroker_protocol::TERMINAL_HEADER);
    let asks = [
        ("/v1/token?scopes=User.Read", ""),
        ("/v1/token?scopes=User.Read&min_valid=999999", ""),
        ("/v1/token?scopes=User.Read", ""),
        ("/v1/token?scopes=User.Read", terminal.as_str()),
        ("/v1/header?scopes=User.Read", ""),
        ("/v1/token?profile=nope", ""),
        ("/v1/token?profile=nope", ""),
        ("/v1/token?scopes=User.Read", ""),
        ("/v1/token?scopes=User.Read&min_valid=999999", ""),
    ];
    let mut fresh = Vec::new();
    for (target, extra) in asks {
        let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
        stream.write_all(get(target, extra).as_bytes()).await.expect("write");
        fresh.push(next_answer(&mut stream).await);
    }
    let mut one = UnixStream::connect(&daemon.socket).await.expect("connect");
    let mut sequential = Vec::new();
    for (target, extra) in asks {
        one.write_all(get(target, extra).as_bytes()).await.expect("write");
        sequential.push(next_answer(&mut one).await);
    }
    let statuses: Vec<u16> = fresh.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 400, 200, 200, 200, 404, 404, 200, 400], "{fresh:?}");
    for (i, ((target, _), (fresh, again))) in asks.iter().zip(fresh.iter().zip(&sequential)).enumerate() {
        assert_eq!(fresh.status, again.status, "request {i} ({target}): {fresh:?} / {again:?}");
        let same = |a: &Answer| match a.status {
            200 => a.body.get("access_token").or(a.body.get("Authorization")).cloned().expect("a token"),
            _ => a.body.clone(),
        };
        assert_eq!(same(fresh), same(again), "request {i} ({target})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_asking_outlives_the_head_limit_and_one_that_stops_does_not() {
    // The head limit runs from each answer: requests 100 ms apart for three times the limit are all answered;
    // then, idle, the connection is closed.
    let (_fake, daemon) = signed_in("head_limit_rolls", &["--header-read-timeout-ms", "300"]).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    for i in 0..10 {
        stream.write_all(get("/v1/token?scopes=User.Read", "").as_bytes()).await.expect("write");
        let answer = next_answer(&mut stream).await;
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the daemon still holds the idle connection past the head's time limit");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

//! Attack B: proxied calls whose bodies never arrive, or arrive a byte at a time, and callers that stop reading
//! a large answer. None of them may hold the daemon's serving slots: a stalled body is answered `408
//! request_timeout` once it has paused for the idle limit, a trickle once the whole-body deadline passes, and a
//! caller that does not read loses its connection once a write has waited for the write limit.
//!
//! Timing: the test asserts outcomes, never speed. "Still answers" is a liveness bound (a 10 s client timeout):
//! without the defence those requests do not answer at all while the stalled calls hold every slot.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use support::*;

/// As many stalled calls as the daemon serves connections at once.
const STALLED: usize = 64;

/// The liveness bound of a request made under attack (see the module docs).
const LIVENESS: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_proxy_bodies_leave_the_daemon_serving_and_are_answered_408() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-bounds"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;

    // 64 PUTs announcing 100 bytes of body, and sending none.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
        stream
            .write_all(
                b"PUT /graph/v1.0/me/drive/root:/x.txt:/content HTTP/1.1\r\nHost: localhost\r\n\
                  Content-Length: 100\r\nContent-Type: text/plain\r\n\r\n",
            )
            .await
            .expect("write");
        stalled.push(stream);
    }
    // The daemon still answers everything else.
    tokio::time::timeout(LIVENESS, client.healthz()).await.expect("healthz answers").expect("healthz");
    tokio::time::timeout(LIVENESS, client.status()).await.expect("status answers").expect("status");
    let cached = tokio::time::timeout(LIVENESS, client.token(&query("User.Read"))).await.expect("token answers");
    assert_eq!(cached.expect("a cached token").account.username, ALICE);

    // Each stalled call is answered 408 and its connection closed; nothing reached Graph.
    for stream in &mut stalled {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("the stalled call is answered")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
    }
    assert_eq!(fake.stats().me, 0);
}

/// A byte every four seconds never trips the 10 s pause limit; the 30 s limit on the whole kept body cuts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_body_that_trickles_is_answered_408_at_the_body_deadline() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-trickle"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
    stream
        .write_all(
            b"PATCH /graph/v1.0/me HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\
              Content-Type: application/json\r\n\r\n",
        )
        .await
        .expect("write");
    let (mut reader, mut writer) = stream.into_split();
    // A byte every four seconds, never the whole 100, for as long as no answer came; the answer must come
    // within 60 s (the deadline is 30 s; without it the trickle would go on for 400 s).
    let trickle = async move {
        for _ in 0..99 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    };
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer));
    tokio::select! {
        read = read => { read.expect("the trickling call is answered within 60 s").expect("read"); }
        () = trickle => panic!("the trickle ran to its end without an answer"),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert_eq!(fake.stats().me, 0, "nothing reached Graph");
}

/// Callers that ask for a large download and never read it. With two serving slots, two such callers would hold
/// both for as long as they like; the write limit (shortened here to one second) closes their connections, and
/// `healthz` and a cached token are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_stop_reading_a_large_answer_free_their_slots() {
    let fake = fake();
    let daemon = Daemon::start_with(&config(&fake, "memory", &unique_service("proxy-unread"), ""), |command| {
        command.args(["--max-connections", "2", "--write-idle-timeout-ms", "1000"]);
    });
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &["Mail.Read"]).unwrap();
    sign_in(&client, &fake, "Mail.Read", ALICE).await;
    // Far more than the socket buffers on both sides hold, so the daemon's writes must wait for the reader.
    let attachment = fake.add_attachment(ALICE, 64 * 1024 * 1024).unwrap();
    let request = format!(
        "GET /graph/v1.0/me/messages/{}/attachments/{}/$value HTTP/1.1\r\nHost: localhost\r\n\
         X-Graphbroker-Scopes: Mail.Read\r\n\r\n",
        attachment.message_id, attachment.attachment_id
    );
    let mut unread = Vec::new();
    for _ in 0..2 {
        let mut stream = UnixStream::connect(&daemon.socket).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        unread.push(stream);
    }
    // Both slots are taken (one perhaps by the sign-in's pooled connection, until its idle limit); fresh
    // connections are served again only once the unread answers are cut.
    let (status, _) = tokio::time::timeout(LIVENESS, raw_get(&daemon.socket, "/healthz")).await.expect("healthz");
    assert_eq!(status, 200);
    let (status, token) =
        tokio::time::timeout(LIVENESS, raw_get(&daemon.socket, "/v1/token?scopes=Mail.Read")).await.expect("token");
    assert_eq!((status, token["account"]["username"].as_str()), (200, Some(ALICE)), "{token}");
    // At least the one served first was cut short; one that waited for its slot may have been served since.
    let mut cut = 0;
    for mut stream in unread {
        let mut received = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received += n as u64,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the daemon kept a connection open");
        cut += usize::from(received < 64 * 1024 * 1024);
    }
    assert!(cut >= 1, "every caller that did not read got the whole answer");
}

/// A listener on a loopback port run by uid 65534, which appends whatever each connection sends to a file.
struct ForeignListener {
    child: std::process::Child,
    port: u16,
    seen: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ForeignListener {
    fn start() -> Self {
        let dir = private_tempdir();
        let seen = dir.path().join("seen");
        std::fs::write(&seen, "").unwrap();
        std::os::unix::fs::chown(&seen, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let program = format!(
            "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port}))\ns.listen(16)\nprint('ready', flush=True)\nwhile True:\n    c, _ = s.accept()\n    \
             c.settimeout(2)\n    try:\n        d = c.recv(65536)\n    except OSError:\n        d = b''\n    \
             open('{}', 'ab').write(d)\n    c.close()\n",
            seen.display()
        );
        let mut child = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &program])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv and python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Self { child, port, seen, _dir: dir }
    }

    /// Stops the listener and gives what it received.
    fn received(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.seen).unwrap()
    }
}

/// Attack C: a loopback `graph_url` whose port another user (uid 65534) listens on gets no bearer token: the
/// daemon checks the owner of the accepted socket before it writes the request, and answers 502 saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_upstream_of_another_user_gets_no_token() {
    if !root_available("a_loopback_upstream_of_another_user_gets_no_token") {
        return;
    }
    let fake = fake();
    let listener = ForeignListener::start();
    let text = config(&fake, "memory", &unique_service("proxy-foreign"), "").replace(
        &format!("graph_url = \"{}\"", fake.base_url()),
        &format!("graph_url = \"http://127.0.0.1:{}\"", listener.port),
    );
    let daemon = Daemon::start(&text);
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let (status, body) = raw_get(&daemon.socket, "/graph/v1.0/me").await;
    let received = listener.received();
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("graph_unavailable")), "{body}");
    assert!(!received.contains("Bearer"), "the other user's listener got the token: {received}");
    assert!(daemon.log().contains("loopback upstream of another user"), "the refusal is logged");
}

/// Attack C, the identity platform's side: a loopback `authority` whose port another user listens on is sent
/// nothing, not even the device-code request, and the caller gets an error that says the platform is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_authority_of_another_user_is_sent_nothing() {
    if !root_available("a_loopback_authority_of_another_user_is_sent_nothing") {
        return;
    }
    let fake = fake();
    let listener = ForeignListener::start();
    let text = config(&fake, "memory", &unique_service("authority-foreign"), "").replace(
        &format!("authority = \"{}\"", fake.authority("common")),
        &format!("authority = \"http://127.0.0.1:{}/common\"", listener.port),
    );
    let daemon = Daemon::start(&text);
    // A caller that waits for the sign-in hears how its start ended, after the daemon's usual few tries.
    let answer = raw_get(&daemon.socket, "/v1/token?scopes=User.Read&wait=60").await;
    let received = listener.received();
    assert!(received.is_empty(), "the other user's listener was sent: {received}");
    let (status, body) = answer;
    assert!(status >= 500, "{status} {body}\n{}", daemon.log());
    assert!(daemon.log().contains("loopback upstream of another user"), "the refusal is logged");
}

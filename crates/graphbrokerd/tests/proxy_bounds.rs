//! Attack B: proxied calls whose bodies never arrive. They must not hold the daemon's serving slots, and each
//! is answered `408 request_timeout` once its body has stalled for the idle limit.
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

/// Attack C: a loopback `graph_url` whose port another user (uid 65534) listens on gets no bearer token: the
/// daemon checks the owner of the accepted socket before it writes the request, and answers 502 saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_upstream_of_another_user_gets_no_token() {
    if !root_available("a_loopback_upstream_of_another_user_gets_no_token") {
        return;
    }
    let fake = fake();
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
    let mut listener = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &program])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv and python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(listener.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let text = config(&fake, "memory", &unique_service("proxy-foreign"), "")
        .replace(&format!("graph_url = \"{}\"", fake.base_url()), &format!("graph_url = \"http://127.0.0.1:{port}\""));
    let daemon = Daemon::start(&text);
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let (status, body) = raw_get(&daemon.socket, "/graph/v1.0/me").await;
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("graph_unavailable")), "{body}");
    let received = std::fs::read_to_string(&seen).unwrap();
    assert!(!received.contains("Bearer"), "the other user's listener got the token: {received}");
    assert!(daemon.log().contains("loopback upstream of another user"), "the refusal is logged");
}

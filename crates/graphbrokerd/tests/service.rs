//! graphbrokerd under socket activation, as `systemd-socket-activate` performs it: the activator creates and holds
//! the socket file, execs the daemon on the first connection with the listener as fd 3 (`LISTEN_FDS`), and the
//! daemon serves there without binding, chmod-ing or unlinking anything of its own. Readiness and shutdown reach
//! `NOTIFY_SOCKET` as `READY=1` and `STOPPING=1`.
//!
//! Skipped with a printed reason where `systemd-socket-activate` is not installed, unless
//! `GRAPHBROKER_TEST_SERVICE=required` (set by scripts/test) makes that a failure.

mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{ALICE, config, fake, graphbrokerd_bin, private_tempdir, query, sign_in, unique_service, write_config};

fn systemd_socket_activate_available(test: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join("systemd-socket-activate").is_file()) {
        return true;
    }
    if std::env::var("GRAPHBROKER_TEST_SERVICE").as_deref() == Ok("required") {
        panic!("{test}: systemd-socket-activate is not installed, but GRAPHBROKER_TEST_SERVICE=required");
    }
    eprintln!("skipping {test}: systemd-socket-activate (package systemd) is not installed");
    false
}

/// The activator (then the daemon, which it becomes by exec); SIGKILLed if a failed test leaves it running.
struct Activated(Child);

impl Drop for Activated {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads notifications until one satisfies `wanted`, within `limit`; all the ones read, in order.
fn notifications_until(notify: &UnixDatagram, limit: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        notify
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        let Ok(length) = notify.recv(&mut buffer) else { break };
        let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
        let done = message.lines().any(&wanted);
        seen.push(message);
        if done {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_socket_passed_by_systemd_socket_activate() {
    if !systemd_socket_activate_available("serves_on_a_socket_passed_by_systemd_socket_activate") {
        return;
    }
    let fake = fake();
    let dir = private_tempdir();
    let config_path = dir.path().join("config.toml");
    write_config(&config_path, &config(&fake, "memory", &unique_service("activation"), ""));
    let socket = dir.path().join("graphbroker.sock");
    // Given to --socket to show it is not used: the passed listener wins.
    let own_socket = dir.path().join("own").join("graphbroker.sock");
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let mut activated = Activated(
        Command::new("systemd-socket-activate")
            .arg("--listen")
            .arg(&socket)
            .args(["--fdname=graphbroker", "--setenv=RUST_LOG=debug"])
            .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
            .arg(graphbrokerd_bin())
            .arg("--config")
            .arg(&config_path)
            .arg("--socket")
            .arg(&own_socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The activator binds at once; the daemon does not exist before the first connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "systemd-socket-activate did not bind:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = std::fs::metadata(&socket).unwrap();
    let pid = activated.0.id();

    let client = graphbroker_client::Client::new(&socket);
    client.healthz().await.unwrap_or_else(|error| panic!("{error}\n{}", read_log()));
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, Path::new(graphbrokerd_bin()), "the activator execs the daemon in its place");
    let ready = notifications_until(&notify, Duration::from_secs(10), |line| line == "READY=1");
    assert!(ready.iter().any(|message| message.lines().any(|line| line == "READY=1")), "{ready:?}");

    // Repeated requests, a sign-in included, all served by the one process on the passed socket.
    let version = client.version().await.unwrap();
    assert_eq!(version.protocol, graphbroker_client::PROTOCOL_VERSION);
    let token = sign_in(&client, &fake, "User.Read", ALICE).await;
    let again = client.token(&query("User.Read")).await.unwrap();
    assert!(again.access_token == token.access_token, "the cached token, from the same daemon");
    assert!(activated.0.try_wait().unwrap().is_none(), "the daemon exited:\n{}", read_log());

    // The socket is the activator's: not replaced, not re-moded, and the daemon bound nothing of its own.
    let after = std::fs::metadata(&socket).unwrap();
    assert_eq!((after.ino(), after.mode()), (before.ino(), before.mode()), "the daemon touched the socket file");
    assert!(!own_socket.exists() && !own_socket.parent().unwrap().exists(), "the daemon bound --socket too");

    // SIGTERM: STOPPING=1, a clean exit, and the socket file left to whoever passed it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = notifications_until(&notify, Duration::from_secs(20), |line| line == "STOPPING=1");
    assert!(stopping.iter().any(|message| message.lines().any(|line| line == "STOPPING=1")), "{stopping:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = activated.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "graphbrokerd did not exit after SIGTERM:\n{}", read_log());
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "graphbrokerd exited with {status}:\n{}", read_log());
    assert!(socket.exists(), "the daemon removed the socket it was passed");
}

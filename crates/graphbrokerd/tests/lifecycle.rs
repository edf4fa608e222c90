//! Lifecycle under a service manager's eyes: readiness and status notifications, SIGHUP reload, idle exit
//! under socket activation.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graphbroker_protocol::ErrorCode;
use support::*;

/// A stand-in for systemd's notification socket: collects what the daemon sends.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { socket, path, _dir: dir }
    }

    /// Reads messages until one contains `wanted`; returns everything read.
    fn wait_for(&self, wanted: &str) -> String {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains(wanted) {
            let n = self.socket.recv(&mut buf).unwrap_or_else(|e| panic!("no {wanted} (got {seen:?}): {e}"));
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_status_and_stopping_are_notified() {
    let fake = fake();
    let notify = NotifySocket::new();
    let mut daemon = Daemon::start_with(&config(&fake, "memory", &unique_service("notify"), ""), |command| {
        command.env("NOTIFY_SOCKET", &notify.path);
    });
    let first = notify.wait_for("READY=1");
    assert!(first.contains("STATUS=no account signed in"), "{first}");

    // A pending sign-in shows in the status line, then the account.
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    notify.wait_for("sign-in pending for work");
    fake.approve_device(&device_code_of(&error), ALICE).unwrap();
    client.token(&with_wait("User.Read", 30)).await.expect("token");
    notify.wait_for(&format!("STATUS=work: {ALICE}"));

    let status = daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success());
    notify.wait_for("STOPPING=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_profiles_keeping_accounts_whose_tenant_and_client_are_unchanged() {
    let fake = fake();
    let service = unique_service("reload");
    let daemon = Daemon::start(&config(&fake, "memory", &service, ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let reload = |text: String| {
        std::fs::write(&daemon.config_path, text).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::Signal::SIGHUP)
            .unwrap();
    };
    let wait_for_profiles = |count: usize| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let status = client.status().await.expect("status");
                if status.profiles.len() == count {
                    return status;
                }
                assert!(Instant::now() < deadline, "reload not applied: {status:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Same authority and client id, another min_valid, one more profile: the account stays, its tokens go.
    let extra = "min_valid = 120\n\n[profiles.mail]\nscopes = [\"Mail.Read\"]\nstore = \"memory\"\n";
    reload(config(&fake, "memory", &service, extra));
    let status = wait_for_profiles(2).await;
    let work = status.profiles.iter().find(|p| p.name == "work").unwrap();
    assert_eq!(work.account.as_ref().map(|a| a.username.as_str()), Some(ALICE), "the account stays");
    assert!(work.tokens.is_empty(), "cached tokens of the changed profile are dropped");
    let before = fake.stats();
    client.token(&query("User.Read")).await.expect("served without a sign-in");
    assert_eq!(fake.stats().devicecode, before.devicecode, "no new sign-in");
    assert_eq!(fake.stats().token.refresh_token, before.token.refresh_token + 1);

    // A config that does not load changes nothing.
    reload("this is [not toml".into());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = client.status().await.expect("still answering");
    assert_eq!(status.profiles.len(), 2, "the old config stays");
    assert!(daemon.log().contains("the configuration was not reloaded"), "{}", daemon.log());

    // Another client id: the account does not carry over.
    let other_client = config(&fake, "memory", &service, "").replace(CLIENT_ID, "00000000-0000-0000-0000-00000000beef");
    reload(other_client);
    let status = wait_for_profiles(1).await;
    assert!(status.profiles[0].account.is_none(), "a profile that now names another app starts over");
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_ne!(error.code(), Some(ErrorCode::Internal), "{error}");
}

/// `systemd-socket-activate`, which passes a listening socket the way systemd does.
fn socket_activate_available(test: &str) -> bool {
    let found = Command::new("systemd-socket-activate")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("GRAPHBROKER_TEST_SERVICE").as_deref() == Ok("required") {
            panic!("{test}: systemd-socket-activate is missing but GRAPHBROKER_TEST_SERVICE=required");
        }
        eprintln!("skipping {test}: systemd-socket-activate not installed (scripts/test installs systemd)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_socket_activation_an_idle_daemon_exits_only_with_nothing_to_lose() {
    if !socket_activate_available("idle_exit") {
        return;
    }
    let fake = fake();
    let daemon = Daemon::unstarted(&config(&fake, "memory", &unique_service("idle"), ""));
    std::fs::create_dir_all(daemon.socket.parent().unwrap()).unwrap();
    // Private, as systemd's DirectoryMode=0700 makes it: the client refuses a socket directory open to others.
    std::fs::set_permissions(daemon.socket.parent().unwrap(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let log = std::fs::File::create(&daemon.log_path).unwrap();
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&daemon.socket)
        .args(["-E", "RUST_LOG=debug", "--"])
        .arg(graphbrokerd_bin())
        .arg("--config")
        .arg(&daemon.config_path)
        .args(["--idle-exit", "1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("systemd-socket-activate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.socket.exists() {
        assert!(Instant::now() < deadline, "socket never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first connection starts the daemon on the passed socket. A memory-only account is state to lose.
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(activator.try_wait().unwrap().is_none(), "exited with a memory-only account:\n{}", daemon.log());

    // Signed out, nothing is lost by exiting: it goes once idle.
    client.signout(None).await.expect("signout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = activator.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = activator.kill();
            panic!("the idle daemon did not exit:\n{}", daemon.log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(daemon.log().contains("idle for"), "{}", daemon.log());
    assert!(daemon.socket.exists(), "the passed socket belongs to the service manager and stays");
}

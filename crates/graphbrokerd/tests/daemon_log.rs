//! The log of a daemon that `graphbroker-client` started: it goes to `$XDG_STATE_HOME/graphbroker/graphbrokerd.log`
//! (0600, in a 0700 directory), a warning of the daemon can be read there, and `status` says where it is.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Stops the daemons started by the test's client (they mention its socket), whatever happens.
struct StopAutostarted(String);

impl Drop for StopAutostarted {
    fn drop(&mut self) {
        for pid in pids_mentioning(&self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Linux only: the fallback to the kernel keyring, whose warning this reads, exists only there.
#[cfg(target_os = "linux")]
#[test]
fn an_autostarted_daemon_logs_its_warnings_to_the_state_directory() {
    let fake = fake();
    let dir = private_tempdir();
    let config_path = dir.path().join("config.toml");
    // `store = "auto"` with no session bus: the daemon falls back to the kernel keyring and warns that a reboot
    // loses the sign-in, a warning the user must be able to find.
    write_config(&config_path, &config(&fake, "auto", &unique_service("daemon-log"), ""));
    let socket = dir.path().join("run/graphbroker.sock");
    let state = dir.path().join("state");
    let _stop = StopAutostarted(socket.display().to_string());
    let client = |args: &[&str]| -> Output {
        Command::new(client_bin())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("GRAPHBROKER_CONFIG", &config_path)
            .env("GRAPHBROKERD_PATH", graphbrokerd_bin())
            .env("XDG_STATE_HOME", &state)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("RUST_LOG")
            .env_remove("GRAPHBROKER_SOCKET")
            .stdin(Stdio::null())
            .output()
            .expect("client")
    };

    // Started by a `token` that cannot be answered yet (no one is signed in and it does not wait).
    let token = client(&["token", "--scopes", "User.Read", "--no-wait"]);
    let stderr = String::from_utf8_lossy(&token.stderr);
    assert_eq!(token.status.code(), Some(4), "signin_required; stderr: {stderr}");
    assert!(stderr.contains("starting"), "the client started the daemon: {stderr}");

    let log_dir = state.join("graphbroker");
    let log_path = log_dir.join("graphbrokerd.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("storing refresh tokens in the kernel keyring") {
            break log;
        }
        assert!(Instant::now() < deadline, "the warning is not in {}:\n{log}", log_path.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(log.contains("WARN"), "logged as a warning:\n{log}");
    assert!(!log.contains("\u{1b}["), "no terminal colours in a file:\n{log}");
    assert_eq!(mode(&log_path), 0o600);
    assert_eq!(mode(&log_dir), 0o700);

    let status = client(&["--no-autostart", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "status: {}", String::from_utf8_lossy(&status.stderr));
    assert!(text.contains(&format!("\nlog {} (and ", log_path.display())), "status says where the log is:\n{text}");
    let json = client(&["--no-autostart", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status --json");
    assert_eq!(json["log"], serde_json::json!({"to": "file", "path": log_path.display().to_string()}));
}

#[test]
fn a_daemon_started_by_hand_logs_to_stderr_and_status_says_so() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("daemon-log-stderr"), ""));
    let status = Command::new(client_bin())
        .args(["--no-autostart", "--socket"])
        .arg(&daemon.socket)
        .arg("status")
        .output()
        .expect("client");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\nlog to graphbrokerd's standard error\n"), "{text}");
    assert!(daemon.log().contains("ready"), "the harness reads the daemon's stderr:\n{}", daemon.log());
    assert!(!daemon.dir.path().join("state/graphbroker/graphbrokerd.log").exists(), "no file without --log-file");
}

#[test]
fn a_daemon_that_stops_as_it_starts_says_why_in_the_log_the_client_names() {
    let dir = private_tempdir();
    let config_path = dir.path().join("config.toml");
    write_config(&config_path, "default_profile = \"work\"\nno_such_key = 1\n");
    let socket = dir.path().join("run/graphbroker.sock");
    let state = dir.path().join("state");
    let _stop = StopAutostarted(socket.display().to_string());
    let output = Command::new(client_bin())
        .arg("--socket")
        .arg(&socket)
        .args(["token", "--scopes", "User.Read", "--no-wait"])
        .env("GRAPHBROKER_CONFIG", &config_path)
        .env("GRAPHBROKERD_PATH", graphbrokerd_bin())
        .env("XDG_STATE_HOME", &state)
        .env_remove("GRAPHBROKER_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let log_path = state.join("graphbroker/graphbrokerd.log");
    assert_eq!(output.status.code(), Some(3), "unreachable: {stderr}");
    assert!(stderr.contains(&format!("see its log {}", log_path.display())), "{stderr}");
    let log = std::fs::read_to_string(&log_path).expect("the log file");
    assert!(log.contains("ERROR") && log.contains("no_such_key"), "why, in the log:\n{log}");
}

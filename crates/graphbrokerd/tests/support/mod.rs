//! Test harness: the real `graphbrokerd` binary on a real socket, against the in-process fake identity platform.
//!
//! `Daemon` starts the binary with its own config, runtime dir and log file, waits until the socket answers
//! (a connect loop with a deadline, never a fixed sleep), and stops it on drop.

#![allow(dead_code)] // reason: each test file uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod suspend;

use graphbroker_client::Client;
use graphbroker_protocol::{SignInPrompt, TokenQuery};

pub const CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
pub const ALICE: &str = "alice@contoso.com";

/// Whether the keychain tests can run: a session bus must be present. Under `scripts/test`
/// (`GRAPHBROKER_TEST_KEYCHAIN=required`) its absence is a failure, elsewhere a skip with a printed reason.
pub fn keychain_available(test: &str) -> bool {
    let present = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
    if present {
        return true;
    }
    if std::env::var("GRAPHBROKER_TEST_KEYCHAIN").as_deref() == Ok("required") {
        panic!("{test}: no Secret Service (DBUS_SESSION_BUS_ADDRESS unset) but GRAPHBROKER_TEST_KEYCHAIN=required");
    }
    eprintln!("skipping {test}: no Secret Service here (run it through scripts/test)");
    false
}

/// A keychain service name no other test uses, so parallel daemons never see each other's accounts.
pub fn unique_service(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("graphbroker-test-{}-{}-{test}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Keychain items stored under `service`, as `secret-tool` sees them (independent of the daemon's code).
pub fn keychain_items(service: &str) -> usize {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", service])
        .output()
        .expect("secret-tool (libsecret-tools) must be installed; scripts/test installs it");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines().filter(|l| l.starts_with("attribute.service = ")).count()
}

/// The secret of the keychain item of `profile` under `service`, as `secret-tool` reads it.
pub fn keychain_secret(service: &str, profile: &str) -> String {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", profile])
        .output()
        .expect("secret-tool (libsecret-tools) must be installed; scripts/test installs it");
    assert!(out.status.success(), "secret-tool lookup: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 secret")
}

pub fn graphbrokerd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_graphbrokerd")
}

/// A started fake identity platform with the defaults these tests want (1 s polling interval).
pub fn fake() -> fake_entra::FakeEntra {
    fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .device_interval(Duration::from_secs(1))
        .start()
        .expect("fake identity platform starts")
}

/// The config for one profile `work` against the fake.
pub fn config(fake: &fake_entra::FakeEntra, store: &str, service: &str, extra: &str) -> String {
    format!(
        r#"default_profile = "work"
keyring_service = "{service}"
http_timeout = 5

[profiles.work]
authority = "{authority}"
graph_url = "{graph}"
client_id = "{CLIENT_ID}"
flow = "device"
scopes = ["User.Read"]
store = "{store}"
{extra}
"#,
        authority = fake.authority("common"),
        graph = fake.base_url(),
    )
}

/// A fresh temporary directory with mode 0700. tempfile's follow the umask; a socket directly inside one would be
/// refused by the client as open to others.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod temp dir");
    dir
}

/// Writes a config file with mode 0600, whatever the umask: the daemon refuses one writable by group or others.
pub fn write_config(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
}

/// A running daemon. Dropped: SIGTERM, then SIGKILL if it does not exit in time.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// A copy of the binary, when the daemon runs as another user.
    binary: Option<PathBuf>,
}

impl Daemon {
    /// Starts the daemon with `config` in a fresh directory.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, |_| {})
    }

    /// Starts the daemon, letting the caller adjust the command (environment, uid) first.
    pub fn start_with(config: &str, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let mut daemon = Self::unstarted(config);
        daemon.spawn(adjust);
        daemon
    }

    /// A daemon's directory and config, not started yet (see [`Daemon::spawn`]).
    pub fn unstarted(config: &str) -> Daemon {
        let dir = private_tempdir();
        let config_path = dir.path().join("config.toml");
        write_config(&config_path, config);
        let socket = dir.path().join("run").join("graphbroker.sock");
        let log_path = dir.path().join("daemon.log");
        Daemon { child: None, dir, socket, config_path, log_path, binary: None }
    }

    /// Starts the daemon as another user: its directory and a copy of the binary are handed to that user, so
    /// that nothing depends on the permissions of the build directory.
    pub fn start_as(config: &str, user: &nix::unistd::User) -> Daemon {
        let dir = private_tempdir();
        let config_path = dir.path().join("config.toml");
        write_config(&config_path, config);
        let binary = dir.path().join("graphbrokerd");
        std::fs::copy(graphbrokerd_bin(), &binary).expect("copy binary");
        for path in [dir.path(), config_path.as_path(), binary.as_path()] {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).expect("chown");
        }
        let socket = dir.path().join("run").join("graphbroker.sock");
        let log_path = dir.path().join("daemon.log");
        let mut daemon = Daemon { child: None, dir, socket, config_path, log_path, binary: Some(binary) };
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        daemon.spawn(move |command| {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid).env("HOME", "/nonexistent");
        });
        daemon
    }

    /// Starts the binary and waits until its socket answers.
    pub fn spawn(&mut self, adjust: impl FnOnce(&mut Command)) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let binary = self.binary.clone().unwrap_or_else(|| PathBuf::from(graphbrokerd_bin()));
        let mut command = Command::new(binary);
        command.arg("--config").arg(&self.config_path).arg("--socket").arg(&self.socket);
        daemon_environment(&mut command, log);
        // The audit log goes to the daemon's own directory, never the tester's.
        command.env("XDG_STATE_HOME", self.dir.path().join("state"));
        adjust(&mut command);
        self.child = Some(spawn_retrying(&mut command));
        self.wait_ready();
    }

    /// Starts `program`, a wrapper that runs the daemon (e.g. `unshare`), with the daemon's environment and log,
    /// and waits until the socket answers; `adjust` gives it its arguments.
    pub fn spawn_program(&mut self, program: &str, adjust: impl FnOnce(&mut Command)) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("log file");
        let mut command = Command::new(program);
        daemon_environment(&mut command, log);
        adjust(&mut command);
        self.child = Some(command.spawn().unwrap_or_else(|e| panic!("{program} starts: {e}")));
        self.wait_ready();
    }

    /// Waits until the socket accepts connections, or the daemon exits (then panics with its log).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("graphbrokerd exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "graphbrokerd did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The audit log's lines so far (the daemon's `XDG_STATE_HOME` is `state/` in its directory).
    pub fn audit_lines(&self) -> Vec<graphbroker_protocol::AuditEntry> {
        let path = self.dir.path().join("state/graphbroker/audit.jsonl");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("an audit line is an AuditEntry")).collect()
    }

    /// Waits until the audit log holds at least `n` lines (it is written off the request path), and returns them.
    pub fn audit_wait(&self, n: usize) -> Vec<graphbroker_protocol::AuditEntry> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.audit_lines();
            if lines.len() >= n {
                return lines;
            }
            assert!(Instant::now() < deadline, "the audit log has {} lines, not {n}: {lines:?}", lines.len());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` and waits (bounded) for the exit status.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("graphbrokerd did not exit after {signal}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the daemon and starts it again on the same config and socket.
    pub fn restart(&mut self) {
        let status = self.stop_with(nix::sys::signal::Signal::SIGTERM);
        assert!(status.success(), "graphbrokerd exited with {status}:\n{}", self.log());
        self.spawn(|_| {});
    }
}

/// The daemon's environment in every test: trace logging to `log`, no socket or config from the test's own
/// environment, no stdin.
fn daemon_environment(command: &mut Command, log: std::fs::File) {
    command
        .env("RUST_LOG", "trace")
        .env_remove("GRAPHBROKER_SOCKET")
        .env_remove("GRAPHBROKER_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn query(scopes: &str) -> TokenQuery {
    TokenQuery { scopes: Some(scopes.into()), ..TokenQuery::default() }
}

pub fn with_wait(scopes: &str, wait: u64) -> TokenQuery {
    TokenQuery { scopes: Some(scopes.into()), wait: Some(wait), ..TokenQuery::default() }
}

/// The answer to a token request that needs a sign-in, once it carries the prompt. `wait=0` is answered at once,
/// even before the platform has handed out the device code ("being prepared": `signin_required` without a
/// prompt, with `retry_after`); then this asks again, a bounded number of times. Any other answer is returned as
/// it came.
pub async fn needing_signin(client: &Client, query: &TokenQuery) -> graphbroker_client::Error {
    for _ in 0..400 {
        let error = client.token(query).await.expect_err("a token request that needs a sign-in");
        let preparing = error.code() == Some(graphbroker_protocol::ErrorCode::SigninRequired)
            && error.signin_prompt().is_none()
            && error.detail().is_some_and(|d| d.retry_after.is_some());
        if !preparing {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no sign-in prompt after 400 requests");
}

/// The browser prompt's URL of a `signin_required` error.
pub fn browser_url(error: &graphbroker_client::Error) -> String {
    match error.signin_prompt() {
        Some(SignInPrompt::Browser { url, .. }) => url.clone(),
        other => panic!("expected a browser prompt, got {other:?} from {error}"),
    }
}

/// The URL of a browser prompt (e.g. `POST /v1/signin`'s).
pub fn prompt_url(prompt: Option<&SignInPrompt>) -> String {
    match prompt {
        Some(SignInPrompt::Browser { url, .. }) => url.clone(),
        other => panic!("expected a browser prompt, got {other:?}"),
    }
}

/// The value of query parameter `name` in `url` (which must have it).
pub fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

/// The device prompt of a `signin_required` error.
pub fn device_code_of(error: &graphbroker_client::Error) -> String {
    match error.signin_prompt() {
        Some(SignInPrompt::Device { user_code, .. }) => user_code.clone(),
        other => panic!("expected a device sign-in prompt, got {other:?} from {error}"),
    }
}

/// Signs `user` in through the device flow: asks (gets the prompt), approves at the fake, waits for the token.
pub async fn sign_in(
    client: &Client,
    fake: &fake_entra::FakeEntra,
    scopes: &str,
    user: &str,
) -> graphbroker_protocol::TokenResponse {
    let error = needing_signin(client, &query(scopes)).await;
    assert_eq!(error.code(), Some(graphbroker_protocol::ErrorCode::SigninRequired), "{error}");
    fake.approve_device(&device_code_of(&error), user).expect("approve the device code");
    client.token(&with_wait(scopes, 30)).await.expect("token after sign-in")
}

/// Sends raw bytes over the socket (for malformed requests) and returns (status, body).
pub async fn raw_request(socket: &Path, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A GET through the raw socket with `Connection: close`.
pub async fn raw_get(socket: &Path, target: &str) -> (u16, serde_json::Value) {
    let (status, body) =
        raw_request(socket, &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
}

/// The client binary, built next to graphbrokerd (a no-op when `cargo test --workspace` built it already).
pub fn client_bin() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "graphbroker-client", "--bin", "graphbroker-client"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .status()
        .expect("cargo build");
    assert!(status.success(), "building graphbroker-client failed");
    PathBuf::from(graphbrokerd_bin()).with_file_name("graphbroker-client")
}

/// Processes whose command line mentions `needle` (to stop what a test's programs started on their own).
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a test that needs root (to run a process as another uid) can run. Under `scripts/test`
/// (`GRAPHBROKER_TEST_ROOT=required`, as CI runs as root) its absence is a failure, elsewhere a skip with a
/// printed reason.
pub fn root_available(test: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
        panic!("{test}: needs root to run a process as another user, but GRAPHBROKER_TEST_ROOT=required");
    }
    eprintln!("skipping {test}: needs root to run a process as another user");
    false
}

/// `command` spawned, tried again while exec says "text file busy": a binary just copied (`Daemon::start_as`) can
/// still be open for writing in a child that another test thread forked meanwhile, until that child execs.
fn spawn_retrying(command: &mut Command) -> Child {
    for _ in 0..100 {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => std::thread::sleep(Duration::from_millis(20)),
            other => return other.expect("graphbrokerd starts"),
        }
    }
    command.spawn().expect("graphbrokerd starts")
}

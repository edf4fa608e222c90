//! The daemon under test: the release `graphbrokerd` on a socket of its own, its sign-in through the device flow,
//! the cached-token round trip and the size of one token exchange.

use anyhow::{Context as _, bail, ensure};
use graphbroker_client::{Client, ErrorCode, SignInPrompt, TokenQuery};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream as BlockingUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::RoundTrip;
use crate::{CLIENT_ID, SCOPES, USER};

/// Signs the user in through the device flow: ask, approve at the stand-in, ask again and wait.
pub(crate) async fn sign_in(client: &Client, fake: &fake_entra::FakeEntra) -> anyhow::Result<()> {
    let query = TokenQuery { scopes: Some(SCOPES.into()), ..TokenQuery::default() };
    // Through the library's waiting logic with no time to wait: it asks again while the daemon is still getting
    // the device code (`signin_required` without a prompt yet), then hands over the prompt.
    let mut shown = None;
    let error = match client.token_with_signin(&query, Duration::ZERO, |prompt, _| shown = Some(prompt.clone())).await {
        Ok(_) => bail!("the daemon served a token before anyone signed in"),
        Err(error) => error,
    };
    ensure!(error.code() == Some(ErrorCode::SigninRequired), "expected signin_required, got {error}");
    let Some(SignInPrompt::Device { user_code, .. }) = shown else {
        bail!("expected a device-code prompt, got {error}");
    };
    fake.approve_device(&user_code, USER)?;
    client.token(&TokenQuery { wait: Some(30), ..query }).await?;
    Ok(())
}

/// The sizes of a token request as the library sends it and of the daemon's whole answer (headers and body).
pub(crate) fn token_exchange_size(socket: &Path) -> anyhow::Result<(usize, usize)> {
    let request =
        format!("GET /v1/token?scopes={SCOPES} HTTP/1.1\r\naccept: application/json\r\nhost: localhost\r\n\r\n");
    let mut stream = BlockingUnixStream::connect(socket)?;
    stream.write_all(request.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    ensure!(response.starts_with(b"HTTP/1.1 200"), "token request failed: {}", String::from_utf8_lossy(&response));
    Ok((request.len(), response.len()))
}

/// A cached token through the library client (clones share its connection pool).
pub(crate) struct CachedToken {
    pub(crate) client: Client,
    pub(crate) query: TokenQuery,
}

impl RoundTrip for CachedToken {
    async fn round_trip(&mut self) -> Result<(), String> {
        self.client.token(&self.query).await.map(drop).map_err(|e| e.to_string())
    }
}

/// The release daemon on a socket of its own, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) socket: PathBuf,
    pub(crate) log_path: PathBuf,
}

impl Daemon {
    pub(crate) fn start(bin: &Path, fake: &fake_entra::FakeEntra, workers: Option<usize>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("config.toml");
        let config = format!(
            r#"default_profile = "bench"
keyring_service = "graphbroker-bench-{pid}"

[profiles.bench]
authority = "{authority}"
client_id = "{CLIENT_ID}"
flow = "device"
scopes = ["{SCOPES}"]
store = "memory"
"#,
            pid = std::process::id(),
            authority = fake.authority("common"),
        );
        std::fs::write(&config_path, config)?;
        let socket = dir.path().join("run").join("graphbroker.sock");
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(bin);
        match workers {
            Some(workers) => command.env("TOKIO_WORKER_THREADS", workers.to_string()),
            None => command.env_remove("TOKIO_WORKER_THREADS"),
        };
        let child = command
            .arg("--config")
            .arg(&config_path)
            .arg("--socket")
            .arg(&socket)
            .args(["--log-level", "warn"])
            .env_remove("RUST_LOG")
            .env_remove("GRAPHBROKER_SOCKET")
            .env_remove("GRAPHBROKER_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        let mut daemon = Daemon { child, dir, socket, log_path };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// A connect loop with a deadline: ready when the socket accepts.
    pub(crate) fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if BlockingUnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("graphbrokerd exited early ({status}):\n{}", self.log());
            }
            ensure!(Instant::now() < deadline, "graphbrokerd did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

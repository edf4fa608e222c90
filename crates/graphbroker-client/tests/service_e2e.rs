//! `graphbroker-client service` under a real `systemd --user` manager in a private mount namespace
//! (`service_e2e.sh`): install, a token through the installed units, uninstall. Skipped (with the reason printed)
//! without systemd or root, unless `GRAPHBROKER_TEST_SERVICE=required`.

mod service_support;

use graphbroker_client::{Client, ErrorCode, SignInPrompt, TokenQuery};
use service_support::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

const CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "alice@contoso.com";

/// How long the script gets for one step (start the manager, install, check…), and the test for one request.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// The graphbrokerd that `service install` finds beside the client, when it is there and no newer than its Rust
/// sources (else the reason it is not usable). This crate cannot depend on the daemon's binary, so a plain
/// `cargo test -p graphbroker-client` may find an old one; scripts/test builds every binary first.
fn fresh_daemon() -> Result<PathBuf, String> {
    let daemon = Path::new(client_bin()).with_file_name("graphbrokerd");
    let built = std::fs::metadata(&daemon)
        .and_then(|meta| meta.modified())
        .map_err(|_| format!("{} is not built (cargo build -p graphbrokerd)", daemon.display()))?;
    let root = repo_root();
    let sources = ["crates/graphbrokerd/src", "crates/graphbroker-protocol/src", "crates/graphbroker-store/src"];
    let newest = sources.iter().map(|dir| newest_change(&root.join(dir))).max().unwrap_or(SystemTime::UNIX_EPOCH);
    if newest > built {
        return Err(format!("{} is older than its sources (cargo build -p graphbrokerd)", daemon.display()));
    }
    Ok(daemon)
}

fn newest_change(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            entry.metadata().and_then(|meta| meta.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        } else {
            continue;
        };
        newest = newest.max(time);
    }
    newest
}

/// Why the end-to-end test cannot run here, if it cannot.
fn e2e_obstacle() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("creating a mount namespace (unshare -m) needs root".into());
    }
    let missing: Vec<&str> = ["unshare", "systemctl", "dbus-daemon", "dbus-send", "gnome-keyring-daemon"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed", missing.join(", ")));
    }
    if !Path::new("/lib/systemd/systemd").is_file() {
        return Some("/lib/systemd/systemd (the manager) is not installed".into());
    }
    match Command::new("unshare").args(["-m", "--propagation", "private", "true"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => return Some(format!("unshare -m fails: {}", String::from_utf8_lossy(&output.stderr).trim())),
        Err(error) => return Some(format!("unshare does not run: {error}")),
    }
    None
}

/// The script, running; stopped (SIGTERM, so that it stops what it started, then SIGKILL) when dropped.
struct Script {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Script {
    /// The next line the script prints, within [`STEP_DEADLINE`].
    fn expect(&mut self, line: &str) {
        match self.lines.recv_timeout(STEP_DEADLINE) {
            Ok(got) if got == line => {}
            Ok(got) => panic!("the script said {got:?}, expected {line:?}\n{}", self.logs()),
            Err(_) => panic!("the script did not say {line:?} in time (or ended)\n{}", self.logs()),
        }
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).unwrap();
    }

    fn logs(&self) -> String {
        ["script.log", "daemon.log", "manager.log", "dbus.log", "keyring.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            wait_bounded(&mut self.child, Duration::from_secs(30));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_runs_under_a_real_systemd_user_manager() {
    const TEST: &str = "service_runs_under_a_real_systemd_user_manager";
    if let Some(obstacle) = e2e_obstacle() {
        return skip(TEST, &obstacle);
    }
    let daemon_built = match fresh_daemon() {
        Ok(daemon) => daemon,
        Err(reason) => return skip(TEST, &reason),
    };
    let fake = fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .device_interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let dir = test_dir();
    let config_file = dir.path().join("config/graphbroker/config.toml");
    std::fs::create_dir_all(config_file.parent().unwrap()).unwrap();
    std::fs::write(
        &config_file,
        format!(
            "default_profile = \"work\"\nkeyring_service = \"graphbroker-e2e-{}\"\nhttp_timeout = 5\n\n\
             [profiles.work]\nauthority = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nflow = \"device\"\n\
             scopes = [\"User.Read\"]\nstore = \"keyring\"\n",
            std::process::id(),
            // By name: resolving it goes through the resolver under RestrictAddressFamilies= and the syscall filter.
            fake.authority("common").replace("127.0.0.1", "localhost")
        ),
    )
    .unwrap();

    // The service runs the daemon from where install finds it, beside the client: copies in the test's
    // directory, which the service can see wherever the checkout is.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (client, daemon) = (bin.join("graphbroker-client"), bin.join("graphbrokerd"));
    std::fs::copy(client_bin(), &client).unwrap();
    std::fs::copy(&daemon_built, &daemon).unwrap();
    let script_log = std::fs::File::create(dir.path().join("script.log")).unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/service_e2e.sh"))
        .env("E2E_DIR", dir.path())
        .env("CLIENT", &client)
        .env("DAEMON", &daemon)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(script_log)
        .spawn()
        .unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut script = Script { child, lines, dir: dir.path().to_owned() };

    // Installed and listening; the first request starts the daemon, which needs a sign-in.
    script.expect("PAUSE signin");
    let client = Client::new(dir.path().join("runtime/graphbroker/graphbroker.sock"));
    let query = TokenQuery { scopes: Some("User.Read".into()), ..TokenQuery::default() };
    // `wait=0` is answered at once, before the device code may be there: ask again until the prompt is.
    let mut error = client.token(&query).await.expect_err("no account yet");
    for _ in 0..400 {
        if error.signin_prompt().is_some() || error.code() != Some(ErrorCode::SigninRequired) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        error = client.token(&query).await.expect_err("no account yet");
    }
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}\n{}", script.logs());
    let Some(SignInPrompt::Device { user_code, .. }) = error.signin_prompt() else {
        panic!("no device prompt: {error}")
    };
    fake.approve_device(user_code, ALICE).unwrap();
    let waited = TokenQuery { wait: Some(30), ..query.clone() };
    let token = client.token(&waited).await.unwrap_or_else(|error| panic!("{error}\n{}", script.logs()));
    assert_eq!(token.account.username, ALICE);
    script.go();

    // The service was stopped: this request starts it again, and the account comes back from the keychain.
    script.expect("PAUSE restart");
    let again = Client::new(client.socket_path()).token(&query).await;
    let again = again.unwrap_or_else(|error| panic!("{error}\n{}", script.logs()));
    assert_eq!(again.account.username, ALICE);
    script.go();

    script.expect("DONE");
    let status = wait_bounded(&mut script.child, STEP_DEADLINE);
    assert!(status.is_some_and(|status| status.success()), "script: {status:?}\n{}", script.logs());
}

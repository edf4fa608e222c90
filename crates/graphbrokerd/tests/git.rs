//! git for Azure DevOps: `graphbroker-client git-credential` as git's credential helper, and the real `git clone`
//! over smart HTTP from a stand-in server (`git http-backend` behind Basic auth, support/git_server.py) that
//! accepts only the access token the stand-in identity platform issued for the Azure DevOps resource.
//!
//! The stand-in server is on loopback, so the test-only `GRAPHBROKER_TEST_GIT_HOSTS` names it as an Azure DevOps
//! host (over http); no real host is ever asked.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use support::*;

const ADO_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
const TEST_HOSTS_ENV: &str = "GRAPHBROKER_TEST_GIT_HOSTS";

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("git (install it)")
}

fn git_ok(dir: &Path, args: &[&str]) {
    let output = git(dir, args);
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A bare repository `project.git` under `root` with one commit holding `README`.
fn repository(root: &Path) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git_ok(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), "served through the broker\n").unwrap();
    git_ok(&work, &["add", "README"]);
    git_ok(&work, &["-c", "user.name=Tester", "-c", "user.email=t@example.com", "commit", "-q", "-m", "first"]);
    git_ok(root, &["clone", "-q", "--bare", "work", "project.git"]);
}

/// The stand-in Azure DevOps server; answers `host:port`. Killed on drop.
struct GitServer {
    child: Child,
    host: String,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git_server(root: &Path, password: &str) -> GitServer {
    let expected = root.join("expected");
    std::fs::write(&expected, password).unwrap();
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/git_server.py"))
        .env("GIT_PROJECT_ROOT", root)
        .env("EXPECTED_PASSWORD_FILE", &expected)
        .env("SEEN_FILE", root.join("seen"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    GitServer { child, host: format!("127.0.0.1:{}", port.trim()) }
}

/// Runs the helper as git would: `description` on stdin.
fn helper(daemon: &Daemon, args: &[&str], description: &str, test_hosts: Option<&str>) -> Output {
    let mut command = Command::new(client_bin());
    command.args(["--no-autostart", "--socket"]).arg(&daemon.socket).arg("git-credential").args(args);
    command.env_remove(TEST_HOSTS_ENV).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(hosts) = test_hosts {
        command.env(TEST_HOSTS_ENV, hosts);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(description.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn git_clone_authenticates_with_the_brokers_azure_devops_token() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("git"), ""));
    let token = sign_in(&daemon.client(), &fake, ADO_SCOPE, ALICE).await;
    assert!(token.scopes.iter().any(|s| s.starts_with("499b84ac-1321-427f-aa17-267ca6975798/")), "{:?}", token.scopes);
    let dir = private_tempdir();
    repository(dir.path());
    let server = git_server(dir.path(), &token.access_token);
    let helper_command =
        format!("!{} --no-autostart --socket {} git-credential", client_bin().display(), daemon.socket.display());
    let url = format!("http://{}/project.git", server.host);
    let (root, host) = (dir.path().to_path_buf(), server.host.clone());
    let clone = tokio::task::spawn_blocking(move || {
        Command::new("git")
            .args(["-c", "credential.helper="])
            .arg("-c")
            .arg(format!("credential.http://{host}.helper={helper_command}"))
            .args(["clone", "-q", &url, "cloned"])
            .current_dir(&root)
            .env("HOME", &root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env(TEST_HOSTS_ENV, &host)
            .stdin(Stdio::null())
            .output()
            .expect("git")
    })
    .await
    .unwrap();
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap_or_default();
    assert!(clone.status.success(), "git clone: {} (server saw: {seen:?})", String::from_utf8_lossy(&clone.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("cloned/README")).unwrap(), "served through the broker\n");
    assert_eq!(seen.lines().next(), Some("refused"), "the server first demanded a credential: {seen:?}");
    assert!(seen.lines().any(|l| l == "ok"), "{seen:?}");
    assert_eq!(fake.stats().token.refresh_token, 0, "git's credential came from the cache");
}

#[tokio::test]
async fn the_helper_answers_only_the_protocol_and_only_for_azure_devops() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("git-only"), ""));
    let token = sign_in(&daemon.client(), &fake, ADO_SCOPE, ALICE).await;

    // Azure DevOps: exactly two lines on stdout, nothing else.
    let asked = helper(&daemon, &["get"], "protocol=https\nhost=dev.azure.com\npath=contoso/_git/x\n\n", None);
    assert!(asked.status.success(), "{}", String::from_utf8_lossy(&asked.stderr));
    assert_eq!(
        String::from_utf8(asked.stdout).unwrap(),
        format!("username={ALICE}\npassword={}\n", token.access_token)
    );

    // Any other host, or Azure DevOps over plain http: an empty answer and success, so git moves on.
    for description in [
        "protocol=https\nhost=github.com\n\n",
        "protocol=http\nhost=dev.azure.com\n\n",
        "protocol=https\nhost=dev.azure.com.evil.example\n\n",
    ] {
        let asked = helper(&daemon, &["get"], description, None);
        assert!(asked.status.success(), "{description:?}: {}", String::from_utf8_lossy(&asked.stderr));
        assert!(asked.stdout.is_empty(), "{description:?} got an answer");
    }
    // `store` and `erase` print nothing.
    for action in ["store", "erase"] {
        let asked = helper(&daemon, &[action], "protocol=https\nhost=dev.azure.com\nusername=a\npassword=b\n\n", None);
        assert!(asked.status.success(), "{action}: {}", String::from_utf8_lossy(&asked.stderr));
        assert!(asked.stdout.is_empty(), "{action} printed on stdout");
    }
}

#[tokio::test]
async fn a_sign_in_prompt_never_reaches_gits_stdout() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("git-prompt"), ""));
    let asked = helper(&daemon, &["get", "--timeout", "0"], "protocol=https\nhost=contoso.visualstudio.com\n\n", None);
    assert_eq!(asked.status.code(), Some(4), "sign-in required: {}", String::from_utf8_lossy(&asked.stderr));
    assert!(asked.stdout.is_empty(), "stdout: {:?}", String::from_utf8_lossy(&asked.stdout));
    // The prompt of the sign-in the helper started, which a second request joins, was shown on stderr.
    let error = needing_signin(&daemon.client(), &query(ADO_SCOPE)).await;
    let instruction = error.signin_prompt().expect("a prompt").instruction();
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(stderr.contains(&instruction), "no prompt on stderr: {stderr}");
}

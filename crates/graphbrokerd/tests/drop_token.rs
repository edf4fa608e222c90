//! `DELETE /v1/token` over the real socket: the cached access token of one scope set is dropped, so that the next
//! request refreshes (the stand-in counts its refresh grants), while the account, its refresh token and the other
//! scope sets' tokens stay; the policy guards it as it guards the token; `git-credential erase` calls it for
//! Azure DevOps hosts only.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use graphbroker_protocol::{DropTokenQuery, ErrorCode};
use support::*;

const ADO_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

fn drop_query(scopes: &str) -> DropTokenQuery {
    DropTokenQuery { profile: None, scopes: Some(scopes.into()) }
}

fn refreshes(fake: &fake_entra::FakeEntra) -> u64 {
    fake.stats().token.refresh_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_token_is_refreshed_at_the_next_request_and_nothing_else_is_lost() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("drop"), ""));
    let client = daemon.client();
    let first = sign_in(&client, &fake, "User.Read", ALICE).await;
    fake.grant_consent(ALICE, CLIENT_ID, &["User.Read", "Mail.Read"]).expect("consent");
    let mail = client.token(&query("Mail.Read")).await.expect("a second scope set");
    let before = refreshes(&fake);
    assert_eq!(client.token(&query("User.Read")).await.unwrap().access_token, first.access_token, "cached");
    assert_eq!(refreshes(&fake), before, "served from the cache");

    let dropped = client.drop_token(&drop_query("User.Read")).await.expect("drop");
    assert!(dropped.dropped);
    assert_eq!(dropped.profile, "work");
    assert_eq!(dropped.scopes, first.scopes, "the normalized scope set, as the token answer names it");

    // The next request refreshes (no sign-in: the refresh token stayed) and gets another token.
    let renewed = client.token(&query("User.Read")).await.expect("refreshed, not a sign-in");
    assert_eq!(refreshes(&fake), before + 1, "one refresh for the dropped token");
    assert!(renewed.access_token != first.access_token, "the dropped token again");
    // The other scope set's token is still cached; the account is still signed in.
    assert_eq!(client.token(&query("Mail.Read")).await.unwrap().access_token, mail.access_token);
    assert_eq!(refreshes(&fake), before + 1);
    let status = client.status().await.unwrap();
    assert_eq!(status.profiles[0].account.as_ref().map(|a| a.username.as_str()), Some(ALICE));

    // Nothing cached for a scope set: no error, `dropped` false.
    let nothing = client.drop_token(&drop_query("Calendars.Read")).await.expect("drop of nothing");
    assert!(!nothing.dropped);

    // Bad input is answered like the token route's.
    let unknown = DropTokenQuery { profile: Some("nope".into()), scopes: None };
    assert_eq!(client.drop_token(&unknown).await.unwrap_err().code(), Some(ErrorCode::UnknownProfile));
    let (status, body) = raw_request(
        &daemon.socket,
        "DELETE /v1/token?scopes=User.Read&wait=5 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_request") && body.contains("wait"), "{body}");
    let overlong = format!("{}/.default", "x".repeat(5000));
    assert_eq!(client.drop_token(&drop_query(&overlong)).await.unwrap_err().code(), Some(ErrorCode::InvalidScopes));

    // Its own metrics label.
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("graphbroker_requests_total{route=\"token_drop\",outcome=\"ok\"} 2\n"), "{metrics}");
    assert!(metrics.contains("graphbroker_requests_total{route=\"token_drop\",outcome=\"error\"} 3\n"), "{metrics}");
}

/// `program` (a curl) sends `DELETE target` to the daemon: (status, body).
fn curl_delete(program: &Path, socket: &Path, target: &str) -> (u16, String) {
    let out = Command::new(program)
        .args(["-s", "-X", "DELETE", "--unix-socket"])
        .arg(socket)
        .args(["-w", "\n%{http_code}", &format!("http://localhost{target}")])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("a status"), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_refuses_a_drop_to_a_program_it_refuses_the_token() {
    let fake = fake();
    let bin = private_tempdir();
    let other = bin.path().join("other-curl");
    std::fs::copy("/usr/bin/curl", &other).expect("copy curl");
    let this_test = std::env::current_exe().unwrap().display().to_string();
    let policy = format!("\n[policy]\ndefault = \"deny\"\n\n[[policy.rules]]\nprogram = \"{this_test}\"\n");
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("drop-policy"), &policy));
    let client = daemon.client();
    let first = sign_in(&client, &fake, "User.Read", ALICE).await;
    let before = refreshes(&fake);

    // A program the policy denies the token cannot make others refresh it either.
    let (status, body) = curl_delete(&other, &daemon.socket, "/v1/token?scopes=User.Read");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("policy_denied"), "{body}");
    assert_eq!(client.token(&query("User.Read")).await.unwrap().access_token, first.access_token, "still cached");
    assert_eq!(refreshes(&fake), before);
    // The allowed program may.
    assert!(client.drop_token(&drop_query("User.Read")).await.expect("allowed").dropped);
}

/// Runs `git-credential ACTION` as git would, with `description` on stdin.
fn helper(daemon: &Daemon, action: &str, description: &str) -> Output {
    let mut child = Command::new(client_bin())
        .args(["--no-autostart", "--socket"])
        .arg(&daemon.socket)
        .args(["git-credential", action])
        .env_remove("GRAPHBROKER_TEST_GIT_HOSTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(description.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_erase_drops_the_azure_devops_token_so_the_next_get_is_new() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("git-erase"), ""));
    let client = daemon.client();
    let first = sign_in(&client, &fake, ADO_SCOPE, ALICE).await;
    fake.grant_consent(ALICE, CLIENT_ID, &["User.Read"]).expect("consent");
    let graph = client.token(&query("User.Read")).await.unwrap();
    let before = refreshes(&fake);

    // Another host: nothing dropped.
    let erased = helper(&daemon, "erase", "protocol=https\nhost=github.com\nusername=a\npassword=b\n\n");
    assert!(erased.status.success() && erased.stdout.is_empty(), "{}", String::from_utf8_lossy(&erased.stderr));
    assert_eq!(client.token(&query(ADO_SCOPE)).await.unwrap().access_token, first.access_token);
    assert_eq!(refreshes(&fake), before);

    // Azure DevOps refused the password: erase, then the next get answers a new token.
    let description =
        format!("protocol=https\nhost=dev.azure.com\nusername={ALICE}\npassword={}\n\n", first.access_token);
    let erased = helper(&daemon, "erase", &description);
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    assert!(erased.stdout.is_empty(), "erase prints nothing");
    let got = helper(&daemon, "get", "protocol=https\nhost=dev.azure.com\n\n");
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    let answer = String::from_utf8(got.stdout).unwrap();
    let password = answer.lines().find_map(|l| l.strip_prefix("password=")).expect("a password").to_owned();
    assert!(password != first.access_token, "the same token again after erase");
    assert!(fake.issued_secrets().contains(&password), "issued by the stand-in");
    assert_eq!(refreshes(&fake), before + 1, "one refresh, no sign-in");
    // Graph's token was not touched.
    assert_eq!(client.token(&query("User.Read")).await.unwrap().access_token, graph.access_token);
    assert_eq!(refreshes(&fake), before + 1);
}

#[test]
fn git_erase_starts_no_daemon_when_none_runs() {
    let dir = private_tempdir();
    let socket = dir.path().join("run/graphbroker.sock");
    let mut child = Command::new(client_bin())
        .arg("--socket")
        .arg(&socket)
        .args(["git-credential", "erase"])
        .env("GRAPHBROKERD_PATH", graphbrokerd_bin())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env_remove("GRAPHBROKER_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"protocol=https\nhost=dev.azure.com\n\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let started = pids_mentioning(&socket.display().to_string());
    for pid in &started {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGTERM);
    }
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stdout.is_empty());
    assert!(started.is_empty(), "erase started a daemon to drop nothing");
}

//! Browser sign-in against an untrusted machine: what another user can see and send, and what the daemon's own
//! browser command leaves behind. An HTTP client plays the browser; `setpriv` plays another user (root only).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use graphbroker_protocol::ErrorCode;
use support::*;

/// The uid another user's requests run as.
const NOBODY: u32 = 65534;

/// A profile that signs in through the browser; the "browser" records every argument it was given, one a line,
/// and exits at once.
fn browser_config(fake: &fake_entra::FakeEntra, opened: &std::path::Path) -> String {
    let base =
        config(fake, "memory", &unique_service("browser-trust"), "").replace("flow = \"device\"", "flow = \"browser\"");
    let top = format!(
        "browser_command = [\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$@\\\" >> {}\", \"recorder\"]\nbrowser_timeout = 300\n",
        opened.display()
    );
    base.replacen("default_profile", &format!("{top}default_profile"), 1)
}

/// The browser's side: fetch a URL without following redirects; (status, Location, body).
async fn browse(url: &str) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(url).send().await.expect("browser request");
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), location, response.text().await.unwrap_or_default())
}

/// What the browser command was run with, once it has run.
async fn recorded_arguments(opened: &std::path::Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(opened).unwrap_or_default();
        if !text.is_empty() {
            return text.lines().map(str::to_owned).collect();
        }
        assert!(Instant::now() < deadline, "the browser command was not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the other-user tests can run: they need root to become `nobody`. Under `scripts/test`
/// (`GRAPHBROKER_TEST_SERVICE=required`, which already means "root is here") a missing root is a failure.
fn root_available(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("GRAPHBROKER_TEST_SERVICE").as_deref() == Ok("required") {
        panic!("{test}: needs root to act as uid {NOBODY}, but GRAPHBROKER_TEST_SERVICE=required");
    }
    eprintln!("skipping {test}: needs root to act as another user (uid {NOBODY})");
    false
}

/// `GET url` as uid 65534 with curl, not following redirects: (status, Location); status 0 when no HTTP answer
/// came (the connection was closed).
fn get_as_nobody(url: &str) -> (u16, String) {
    let output = Command::new("setpriv")
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()])
        .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", url])
        .output()
        .expect("setpriv and curl are installed");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
    (status.parse().unwrap_or_else(|_| panic!("curl as nobody: {text} {output:?}")), location.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_command_never_sees_the_authorize_url_yet_reaches_it() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&browser_config(&fake, &opened));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let state = query_param(&url, "state");
    let challenge = query_param(&url, "code_challenge");

    let arguments = recorded_arguments(&opened).await;
    for argument in &arguments {
        assert!(
            !argument.contains(&state) && !argument.contains(&challenge) && !argument.contains(fake.base_url()),
            "the command line carries the authorize request: {argument}"
        );
    }
    // What it was given still gets the browser to the sign-in page.
    let opened_url = arguments.last().expect("an argument");
    let (status, location, _) = browse(opened_url).await;
    assert_eq!((status, location.as_deref()), (303, Some(url.as_str())), "{opened_url}");
    assert_eq!(browse(&url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&state, ALICE).expect("approve");
    assert_eq!(browse(&redirect).await.0, 200);
    client.token(&with_wait("User.Read", 30)).await.expect("token");
}

/// The children of `pid` that are zombies.
fn zombie_children(pid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid …`; comm may hold spaces, so parse after the last ')'.
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
            fields.first() == Some(&"Z") && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_command_that_exits_at_once_leaves_no_zombie() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&browser_config(&fake, &opened));
    let client = daemon.client();
    needing_signin(&client, &query("User.Read")).await;
    recorded_arguments(&opened).await;
    // The recorder has written its line and exits; the daemon must reap it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let zombies = zombie_children(daemon.pid());
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon left its browser command a zombie: {zombies:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_is_served_on_both_loopback_addresses() {
    let test = "the_redirect_is_served_on_both_loopback_addresses";
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping {test}: this host has no IPv6 loopback (the daemon then serves 127.0.0.1 only)");
        return;
    }
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened")));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let redirect_uri = query_param(&url, "redirect_uri");
    let port = redirect_uri.trim_start_matches("http://localhost:");
    // Both addresses `localhost` may resolve to answer, on the same port.
    assert_eq!(browse(&format!("http://127.0.0.1:{port}/favicon.ico")).await.0, 404);
    assert_eq!(browse(&format!("http://[::1]:{port}/favicon.ico")).await.0, 404);

    assert_eq!(browse(&url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    let over_ipv6 = redirect.replacen("http://localhost:", "http://[::1]:", 1);
    let (status, _, page) = browse(&over_ipv6).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");
    client.token(&with_wait("User.Read", 30)).await.expect("token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_redirect_and_launch_page_requests_are_refused() {
    let test = "another_users_redirect_and_launch_page_requests_are_refused";
    if !root_available(test) {
        return;
    }
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened")));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);

    // Another user cannot learn the authorize URL from the launch page: its connection is closed unread…
    let launch = recorded_arguments(&dir.path().join("opened")).await.pop().expect("the launch page");
    let (status, location) = tokio::task::block_in_place(|| get_as_nobody(&launch));
    assert_eq!((status, location.as_str()), (0, ""), "the launch page answered another user");
    // …nor deliver a redirect, even one with the right state and a good code.
    assert_eq!(browse(&url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    let (status, _) = tokio::task::block_in_place(|| get_as_nobody(&redirect));
    assert_eq!(status, 0, "another user's redirect got an answer");
    assert_eq!(fake.stats().token.authorization_code, 0, "nothing was redeemed");
    assert!(daemon.log().contains("another user (uid 65534)"), "the refusal is logged");

    // The sign-in still waits for its own user.
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired));
    assert_eq!(browser_url(&error), url);
    let (status, location, _) = browse(&launch).await;
    assert_eq!((status, location.as_deref()), (303, Some(url.as_str())));
    let (status, _, page) = browse(&redirect).await;
    assert_eq!(status, 200, "{page}");
    client.token(&with_wait("User.Read", 30)).await.expect("token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_redeeming_the_code_is_retried() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened")));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    assert_eq!(browse(&url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    // The token endpoint is down for the first two tries of the redeem.
    fake.inject_fault(fake_entra::Endpoint::Token, 2, fake_entra::Fault::status(503, None));
    let (status, _, page) = browse(&redirect).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in"), "{page}");
    assert_eq!(fake.stats().faults_fired.get("token"), Some(&2), "both faults were met");
    assert_eq!(fake.stats().token.authorization_code, 1);
    let token = client.token(&with_wait("User.Read", 30)).await.expect("token");
    assert_eq!(token.account.username, ALICE);
}

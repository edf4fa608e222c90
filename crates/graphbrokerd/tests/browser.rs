//! Browser sign-in (authorization code + PKCE, loopback redirect), with an HTTP client playing the browser.

mod support;

use std::time::{Duration, Instant};

use graphbroker_protocol::{ErrorCode, SignInFlow, SignInPrompt, SignInReason};
use support::*;

/// A profile that signs in through the browser; the "browser" is a command that records the URL it was given.
fn browser_config(fake: &fake_entra::FakeEntra, opened: &std::path::Path, timeout: u64) -> String {
    let base =
        config(fake, "memory", &unique_service("browser"), "").replace("flow = \"device\"", "flow = \"browser\"");
    let top = format!(
        "browser_command = [\"sh\", \"-c\", \"printf '%s\\\\n' \\\"$0\\\" >> {}\"]\nbrowser_timeout = {timeout}\n",
        opened.display()
    );
    base.replacen("default_profile", &format!("{top}default_profile"), 1)
}

/// The browser's side: fetch a URL without following redirects.
async fn browse(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(url).send().await.expect("browser request");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// The user opens the sign-in page and accepts; returns where the platform sends the browser next.
async fn user_signs_in(fake: &fake_entra::FakeEntra, url: &str) -> String {
    assert_eq!(browse(url).await.0, 200, "the platform's sign-in page");
    fake.approve_browser(&query_param(url, "state"), ALICE).expect("approve")
}

fn port_is_closed(redirect_uri: &str) -> bool {
    let port: u16 = redirect_uri.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

async fn wait_until_closed(redirect_uri: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_is_closed(redirect_uri) {
        assert!(Instant::now() < deadline, "the loopback listener stayed open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_with_pkce_serves_a_token_and_closes_its_port() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let daemon = Daemon::start(&browser_config(&fake, &opened, 300));
    let client = daemon.client();

    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired));
    assert_eq!(error.signin_reason(), Some(SignInReason::NoAccount));
    let url = browser_url(&error);
    let redirect_uri = query_param(&url, "redirect_uri");
    assert!(redirect_uri.starts_with("http://localhost:"), "{redirect_uri}");
    assert_eq!(query_param(&url, "code_challenge_method"), "S256");
    assert!(url.starts_with(&fake.authority("common")), "{url}");
    // The daemon opened the browser itself, on its launch page, which sends the browser to the same URL it gave
    // the client.
    let port = redirect_uri.trim_start_matches("http://localhost:");
    let prefix = format!("http://127.0.0.1:{port}/start/");
    let deadline = Instant::now() + Duration::from_secs(10);
    let launch = loop {
        let opened = std::fs::read_to_string(&opened).unwrap_or_default().trim().to_owned();
        if opened.starts_with(&prefix) {
            break opened;
        }
        assert!(Instant::now() < deadline, "the browser command was not run with the launch page: {opened:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = no_redirects.get(&launch).send().await.expect("launch page");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"].to_str().unwrap(), url);

    // The user signs in at the platform, which sends the browser to the loopback redirect.
    let (status, page) = browse(&url).await;
    assert_eq!(status, 200, "the platform's sign-in page: {page}");
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    assert!(redirect.starts_with(&redirect_uri), "{redirect}");
    let (status, page) = browse(&redirect).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in") && page.contains("close this tab"), "{page}");

    let token = client.token(&with_wait("User.Read", 30)).await.expect("token");
    assert_eq!(token.account.username, ALICE);
    assert_eq!(fake.stats().token.authorization_code, 1);
    wait_until_closed(&redirect_uri).await;
    // The redirect cannot be replayed: the listener is gone.
    assert!(reqwest::get(&redirect).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_requests_and_a_wrong_state_do_not_consume_the_sign_in() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened"), 300));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let redirect_uri = query_param(&url, "redirect_uri");
    let state = query_param(&url, "state");

    let (status, page) = browse(&format!("{redirect_uri}/?code=forged&state=not-the-state")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("does not belong"), "{page}");
    let (status, _) = browse(&format!("{redirect_uri}/favicon.ico")).await;
    assert_eq!(status, 404);
    let (status, page) = browse(&format!("{redirect_uri}/?state={state}")).await;
    assert_eq!(status, 400, "a redirect without a code: {page}");
    assert_eq!(fake.stats().token.authorization_code, 0, "nothing was redeemed");

    // The real redirect still completes the sign-in.
    let redirect = user_signs_in(&fake, &url).await;
    assert_eq!(browse(&redirect).await.0, 200);
    client.token(&with_wait("User.Read", 30)).await.expect("token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_browser_sign_in_answers_signin_declined() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened"), 300));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.token(&with_wait("User.Read", 30)).await }
    });
    assert_eq!(browse(&url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.decline_browser(&query_param(&url, "state")).expect("decline");
    assert!(redirect.contains("error=access_denied"), "{redirect}");
    let (status, page) = browse(&redirect).await;
    assert_eq!(status, 200);
    assert!(page.contains("Sign-in failed") && page.contains("cancelled"), "{page}");
    let error = waiting.await.unwrap().expect_err("declined");
    assert_eq!(error.code(), Some(ErrorCode::SigninDeclined), "{error}");
    wait_until_closed(&query_param(&url, "redirect_uri")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_nobody_completes_times_out_and_frees_its_port() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened"), 10));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let error = client.token(&with_wait("User.Read", 60)).await.expect_err("timed out");
    assert_eq!(error.code(), Some(ErrorCode::SigninExpired), "{error}");
    wait_until_closed(&query_param(&url, "redirect_uri")).await;
    // The next request starts a fresh sign-in on a new URL.
    let again = browser_url(&needing_signin(&client, &query("User.Read")).await);
    assert_ne!(query_param(&again, "state"), query_param(&url, "state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_joins_the_same_browser_sign_in_and_one_cancelling_does_not_stop_it() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened"), 300));
    let first = daemon.client();
    let second = daemon.client();
    let url = browser_url(&needing_signin(&first, &query("User.Read")).await);
    // A client that gives up: its wait is cut short by its own timeout.
    let impatient = first.token(&with_wait("User.Read", 1)).await.expect_err("gave up");
    assert_eq!(impatient.code(), Some(ErrorCode::SigninTimeout));
    // Another client, asking for the sign-in explicitly, gets the same URL, not a new flow.
    let joined = second.signin(None, Some(SignInFlow::Device)).await.expect("signin");
    match joined.signin {
        Some(SignInPrompt::Browser { url: joined_url, .. }) => assert_eq!(joined_url, url),
        other => panic!("expected the same browser sign-in, got {other:?}"),
    }
    let redirect = user_signs_in(&fake, &url).await;
    assert_eq!(browse(&redirect).await.0, 200);
    second.token(&with_wait("User.Read", 30)).await.expect("the sign-in went on for the others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_can_choose_the_flow_per_request() {
    let fake = fake();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&browser_config(&fake, &dir.path().join("opened"), 300));
    let response = daemon.client().signin(None, Some(SignInFlow::Device)).await.expect("signin");
    assert!(matches!(response.signin, Some(SignInPrompt::Device { .. })), "{response:?}");
    assert_eq!(fake.stats().devicecode, 1);
}

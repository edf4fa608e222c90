//! A sign-in that brings back another account than the profile's: refused with `account_mismatch` when a token
//! request started it, taken when the user asked for it with `signin`. Both flows, against the stand-in.

mod support;

use std::time::Duration;

use graphbroker_protocol::{ErrorCode, SignInReason};
use support::*;

const BOB: &str = "bob@contoso.com";

/// The stand-in with two users, so that the "wrong" one can sign in.
fn two_user_fake() -> fake_entra::FakeEntra {
    fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .user(BOB)
        .device_interval(Duration::from_secs(1))
        .start()
        .expect("fake identity platform starts")
}

async fn browse(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(url).send().await.expect("browser request");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// Plays the user at the browser: the sign-in page, then the redirect back, signed in as `user`. Returns the
/// page the loopback listener answered.
async fn browser_signs_in(fake: &fake_entra::FakeEntra, url: &str, user: &str) -> String {
    assert_eq!(browse(url).await.0, 200, "the platform's sign-in page");
    let redirect = fake.approve_browser(&query_param(url, "state"), user).expect("approve");
    browse(&redirect).await.1
}

/// A request held for the device sign-in under way, sent after the daemon's first poll (so that the approval
/// that follows cannot end the sign-in before the request joins it; see core.rs's decline test).
async fn hold_for_device_signin(
    client: &graphbroker_client::Client,
    fake: &fake_entra::FakeEntra,
    polls_before: u64,
) -> tokio::task::JoinHandle<Result<graphbroker_protocol::TokenResponse, graphbroker_client::Error>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.stats().token.device_code == polls_before {
        assert!(std::time::Instant::now() < deadline, "the daemon never polled the device code");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = client.clone();
    tokio::spawn(async move { client.token(&with_wait("User.Read", 30)).await })
}

fn assert_mismatch(error: &graphbroker_client::Error, expected: &str, returned: &str) {
    assert_eq!(error.code(), Some(ErrorCode::AccountMismatch), "{error}");
    let message = &error.detail().expect("a daemon error").message;
    assert!(message.contains(expected) && message.contains(returned), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_as_another_account_than_the_login_hint_is_refused_unless_asked_for() {
    let fake = two_user_fake();
    let config = config(&fake, "memory", &unique_service("mismatch-hint"), &format!("login_hint = \"{ALICE}\""))
        .replace("flow = \"device\"", "flow = \"browser\"");
    let config = format!("browser_command = [\"true\"]\n{config}");
    let daemon = Daemon::start(&config);
    let client = daemon.client();

    let error = needing_signin(&client, &query("User.Read")).await;
    let url = browser_url(&error);
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.token(&with_wait("User.Read", 30)).await }
    });
    let page = browser_signs_in(&fake, &url, BOB).await;
    assert!(page.contains("Sign-in failed") && page.contains(BOB), "the tab says what happened: {page}");
    let error = waiting.await.unwrap().expect_err("another account");
    assert_mismatch(&error, ALICE, BOB);
    let again = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(again.code(), Some(ErrorCode::SigninRequired), "{again}");

    // `signin` is the user choosing: the same account is then taken.
    let started = client.signin(None, None).await.expect("signin");
    let url = prompt_url(started.signin.as_ref());
    let page = browser_signs_in(&fake, &url, BOB).await;
    assert!(page.contains("Signed in"), "{page}");
    let token = client.token(&with_wait("User.Read", 30)).await.expect("token");
    assert_eq!(token.account.username, BOB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_session_ends_a_device_sign_in_must_bring_back_the_same_account() {
    let fake = two_user_fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("mismatch-expired"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;

    fake.revoke_user(ALICE).expect("revoke");
    let mut forced = query("User.Read");
    forced.min_valid = Some(86_400); // longer than any cached token: the refresh token is redeemed
    let polls = fake.stats().token.device_code;
    let error = needing_signin(&client, &forced).await;
    assert_eq!(error.signin_reason(), Some(SignInReason::SessionExpired), "{error}");
    let waiting = hold_for_device_signin(&client, &fake, polls).await;
    fake.approve_device(&device_code_of(&error), BOB).expect("approve as bob");
    let error = waiting.await.unwrap().expect_err("another account");
    assert_mismatch(&error, ALICE, BOB);

    // The same account is taken.
    let token = sign_in(&client, &fake, "User.Read", ALICE).await;
    assert_eq!(token.account.username, ALICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mfa_sign_in_as_another_account_keeps_the_signed_in_one() {
    let fake = two_user_fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("mismatch-mfa"), ""));
    let client = daemon.client();
    fake.set_access_token_lifetime(Duration::from_secs(100));
    sign_in(&client, &fake, "User.Read", ALICE).await;

    fake.require_mfa(ALICE, "https://graph.microsoft.com", true).expect("mfa");
    let polls = fake.stats().token.device_code;
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.signin_reason(), Some(SignInReason::InteractionRequired), "{error}");
    let waiting = hold_for_device_signin(&client, &fake, polls).await;
    fake.approve_device(&device_code_of(&error), BOB).expect("approve as bob");
    let error = waiting.await.unwrap().expect_err("another account");
    assert_mismatch(&error, ALICE, BOB);
    let status = client.status().await.expect("status");
    assert_eq!(status.profiles[0].account.as_ref().map(|a| a.username.as_str()), Some(ALICE));
}

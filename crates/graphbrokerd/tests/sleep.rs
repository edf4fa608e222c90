//! A laptop that sleeps, and a platform that sends hostile numbers, against the real daemon.
//!
//! The suspend: the daemon runs with `support::suspend` (an `LD_PRELOAD` shim over `clock_gettime`), whose wall and
//! boot clocks the test moves forward while its monotonic clock stands still, as a suspend moves them on Linux; the
//! stand-in's clock is moved by the same amount, since the identity platform and Graph do not sleep with the
//! laptop.
//!
//! The numbers: the stand-in's `override` fault writes `expires_in`, `interval` and friends over its real answers,
//! and its `status` fault sends an endless `Retry-After`; after each, the daemon is up, no sign-in is stuck, and a
//! new sign-in works.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use fake_entra::{Endpoint, Fault};
use graphbroker_protocol::{ErrorCode, SignInPrompt, TokenQuery};
use support::suspend::Suspend;
use support::*;

const HOUR: Duration = Duration::from_secs(3600);
/// The longest a token is trusted for, whatever the platform says (`idp::bounds::MAX_TOKEN_LIFETIME`).
const MAX_TOKEN_LIFETIME_S: u64 = 28 * 3600;

fn graph_me(daemon: &Daemon) -> Output {
    Command::new(client_bin())
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--no-autostart")
        .args(["graph", "GET", "/me"])
        .env_remove("GRAPHBROKER_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run graphbroker-client")
}

/// A daemon for `fake` whose clocks `Suspend` moves.
fn sleepy_daemon(fake: &fake_entra::FakeEntra, test: &str) -> (Daemon, Suspend) {
    let mut daemon = Daemon::unstarted(&config(fake, "memory", &unique_service(test), ""));
    let suspend = Suspend::new(daemon.dir.path());
    daemon.spawn(|command| suspend.apply(command));
    (daemon, suspend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_suspend_the_token_served_is_valid_by_the_wall_clock_and_graph_takes_it() {
    let fake = fake();
    let (daemon, mut suspend) = sleepy_daemon(&fake, "suspend-token");
    let client = daemon.client();
    let before = sign_in(&client, &fake, "User.Read", ALICE).await;
    assert!(before.expires_in > 3000, "{before:?}");

    // The lid closes for two hours: the daemon's wall and boot clocks jump, its monotonic clock does not.
    suspend.sleep(2 * HOUR);
    fake.advance_clock(2 * HOUR);

    let after = client.token(&query("User.Read")).await.expect("a token after the wake-up");
    // Compared, never printed: a token has no place in a test's output.
    assert!(after.access_token != before.access_token, "the token the laptop slept past was handed out again");
    let min_valid = Duration::from_secs(300);
    let wall_now = SystemTime::now() + suspend.slept();
    assert!(
        after.expires_at.to_system_time() >= wall_now + min_valid,
        "served a token valid until {:?}, not min_valid past the wall clock's {wall_now:?}",
        after.expires_at.to_system_time()
    );
    assert!(after.expires_in >= min_valid.as_secs(), "{after:?}");

    // And Graph, whose clock moved too, takes what the proxy sends.
    let me = graph_me(&daemon);
    assert!(me.status.success(), "graph GET /me after the wake-up: {}", String::from_utf8_lossy(&me.stderr));
    let body: serde_json::Value = serde_json::from_slice(&me.stdout).expect("JSON from Graph");
    assert_eq!(body["userPrincipalName"], ALICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_pending_across_a_suspend_is_not_offered_again() {
    // A slow polling interval keeps the daemon from learning of the expiry from the stand-in first.
    let fake = fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .device_interval(Duration::from_secs(5))
        .start()
        .expect("fake identity platform starts");
    let (daemon, mut suspend) = sleepy_daemon(&fake, "suspend-signin");
    let client = daemon.client();
    let first = device_code_of(&needing_signin(&client, &query("User.Read")).await);

    suspend.sleep(2 * HOUR);
    fake.advance_clock(2 * HOUR);

    let again = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(again.code(), Some(ErrorCode::SigninRequired), "{again}");
    let second = device_code_of(&again);
    assert_ne!(second, first, "the code the laptop slept past was offered again");
    let status = client.status().await.expect("status");
    let shown = status.profiles[0].signin.clone();
    assert!(
        matches!(&shown, Some(SignInPrompt::Device { user_code, .. }) if *user_code == second),
        "status shows {shown:?}"
    );
    // The new code works.
    fake.approve_device(&second, ALICE).expect("approve the new code");
    client.token(&with_wait("User.Read", 30)).await.expect("the new sign-in completes");
}

/// A token request that must go to the platform: the cached token has less than this left.
fn renewing() -> TokenQuery {
    TokenQuery { min_valid: Some(7200), ..query("User.Read") }
}

async fn no_signin_stuck(client: &graphbroker_client::Client) {
    client.healthz().await.expect("the daemon is up");
    let status = client.status().await.expect("status answers");
    assert!(status.profiles[0].signin.is_none(), "a sign-in is stuck: {:?}", status.profiles[0].signin);
}

/// A signed-in daemon against a fresh stand-in.
async fn signed_in(test: &str) -> (fake_entra::FakeEntra, Daemon) {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service(test), ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    (fake, daemon)
}

fn endless_lifetime() -> Fault {
    Fault::override_fields(
        serde_json::json!({"expires_in": u64::MAX, "ext_expires_in": u64::MAX, "refresh_in": u64::MAX}),
    )
}

fn no_panic(daemon: &Daemon) {
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_retry_after_is_told_bounded() {
    let (fake, daemon) = signed_in("hostile-retry-after").await;
    let client = daemon.client();
    fake.inject_fault(Endpoint::Token, 4, Fault::status(503, Some(u64::MAX)));
    let error = client.token(&renewing()).await.expect_err("the platform is down");
    assert_eq!(error.code(), Some(ErrorCode::IdentityProviderUnavailable), "{error}");
    let retry_after = error.detail().and_then(|d| d.retry_after).expect("retry_after is told");
    assert!(retry_after <= 3600, "Retry-After believed: {retry_after} s");
    fake.clear_faults();
    no_signin_stuck(&client).await;
    client.token(&renewing()).await.expect("a refresh once the platform is back");
    no_panic(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_lifetime_is_trusted_only_to_the_bound_on_a_refresh_and_a_sign_in() {
    let (fake, daemon) = signed_in("hostile-lifetime").await;
    let client = daemon.client();
    fake.inject_fault(Endpoint::Token, 1, endless_lifetime());
    let refreshed = client.token(&renewing()).await.expect("a token from a refresh answered with an endless lifetime");
    assert!(refreshed.expires_in <= MAX_TOKEN_LIFETIME_S, "{refreshed:?}");
    no_signin_stuck(&client).await;

    client.signout(None).await.expect("sign out");
    let code = device_code_of(&needing_signin(&client, &query("User.Read")).await);
    // Pending polls pass through unchanged (errors are not overridden); the answer that carries the token is.
    fake.inject_fault(Endpoint::Token, 100, endless_lifetime());
    fake.approve_device(&code, ALICE).expect("approve");
    let signed_in = client.token(&with_wait("User.Read", 30)).await.expect("the sign-in completes");
    assert!(signed_in.expires_in <= MAX_TOKEN_LIFETIME_S, "{signed_in:?}");
    fake.clear_faults();
    no_signin_stuck(&client).await;
    no_panic(&daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_code_whose_interval_outlives_it_is_still_polled_and_its_life_bounded() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("hostile-interval"), ""));
    let client = daemon.client();
    fake.inject_fault(
        Endpoint::Devicecode,
        1,
        Fault::override_fields(serde_json::json!({"interval": u64::MAX, "expires_in": u64::MAX})),
    );
    let error = needing_signin(&client, &query("User.Read")).await;
    let prompt_expiry = match error.signin_prompt() {
        Some(SignInPrompt::Device { expires_at, .. }) => expires_at.to_system_time(),
        other => panic!("expected a device prompt, got {other:?}"),
    };
    assert!(prompt_expiry <= SystemTime::now() + 2 * HOUR, "the code's life was believed: {prompt_expiry:?}");
    fake.approve_device(&device_code_of(&error), ALICE).expect("approve");
    client.token(&with_wait("User.Read", 60)).await.expect("the approval is seen within the bounded interval");
    no_signin_stuck(&client).await;
    no_panic(&daemon);
}

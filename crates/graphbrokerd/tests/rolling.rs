//! The rolling refresh end to end: the real daemon against the stand-in, whose clock moves 80 and then 100 days
//! while the daemon's account sits unused.
//!
//! How the two clocks meet: the stand-in's clock is the identity platform's, and it alone decides when a refresh
//! token has been inactive for 90 days. The daemon's clock is not moved (no test-only hook in the daemon): the
//! profile's `rolling_refresh` is set to one second instead, so that "idle past rolling_refresh" is true a second
//! after the sign-in, while the platform believes 80 days went by. A second profile with the rolling refresh off
//! is the control: the same 100 days end its session.

mod support;

use std::time::{Duration, Instant};

use graphbroker_protocol::{ErrorCode, RefreshIdleOutcome, TokenQuery, WarningKind};
use support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A token request that must go to the platform: no cached token is valid for two hours more.
fn renewing(profile: &str) -> TokenQuery {
    TokenQuery { profile: Some(profile.into()), min_valid: Some(7200), ..TokenQuery::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_refresh_keeps_an_idle_account_signed_in_past_the_inactivity_limit() {
    let fake = fake();
    let extra = "rolling_refresh = 1\n\n[profiles.off]\nauthority = \"AUTHORITY\"\nclient_id = \"CLIENT\"\n\
                 flow = \"device\"\nstore = \"memory\"\nrolling_refresh = 0\n"
        .replace("AUTHORITY", fake.authority("common").as_str())
        .replace("CLIENT", CLIENT_ID);
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("rolling"), &extra));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let off = TokenQuery { profile: Some("off".into()), ..TokenQuery::default() };
    let error = needing_signin(&client, &off).await;
    fake.approve_device(&device_code_of(&error), ALICE).unwrap();
    client.token(&TokenQuery { wait: Some(30), ..off.clone() }).await.expect("the control profile signs in");

    fake.advance_clock(80 * DAY);
    let refreshes = fake.stats().token.refresh_token;
    // Asked until the account has been idle for rolling_refresh on the daemon's clock; until then the check
    // must leave it alone.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let answer = client.refresh_idle().await.expect("refresh-idle answers");
        let work = answer.profiles.iter().find(|p| p.profile == "work").unwrap();
        if work.outcome == RefreshIdleOutcome::Refreshed {
            break answer;
        }
        assert_eq!(work.outcome, RefreshIdleOutcome::NotDue, "{answer:?}");
        assert!(Instant::now() < deadline, "no rolling refresh: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let control = answer.profiles.iter().find(|p| p.profile == "off").unwrap();
    assert_eq!(control.outcome, RefreshIdleOutcome::Off);
    assert_eq!(fake.stats().token.refresh_token, refreshes + 1, "exactly one refresh, for the idle account");

    // 100 days after the sign-in: the renewed account still gets a token without a sign-in; the control's
    // session has ended, and status says so with what to do.
    fake.advance_clock(20 * DAY);
    let token = client.token(&renewing("work")).await.expect("a token without a new sign-in");
    assert_eq!(token.account.username, ALICE);
    let ended = client.token(&renewing("off")).await.expect_err("the control's session ended");
    assert_eq!(ended.code(), Some(ErrorCode::SigninRequired), "{ended}");
    let status = client.status().await.unwrap();
    let work = status.profiles.iter().find(|p| p.name == "work").unwrap();
    assert_eq!(work.warning, None, "{work:?}");
    assert!(work.refreshed_at.is_some());
    let warning = status.profiles.iter().find(|p| p.name == "off").unwrap().warning.clone().expect("a warning");
    assert_eq!(warning.kind, WarningKind::SessionEnded);
    assert_eq!(warning.error_codes, [700_082]);
    assert!(warning.message.contains("graphbroker-client signin --profile off"), "{}", warning.message);
}

//! The rolling refresh, the status warnings about refresh tokens, and desktop notifications of prompts, on a
//! wall clock the test moves.

use std::time::Duration;

use graphbroker_protocol::{EpochSeconds, RefreshIdleOutcome, RefreshIdleResponse, WarningKind};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn outcome(response: &RefreshIdleResponse) -> RefreshIdleOutcome {
    response.profiles.iter().find(|p| p.profile == PROFILE).expect("the default profile").outcome
}

fn now(h: &Harness) -> EpochSeconds {
    EpochSeconds::from_system_time(h.clock.now())
}

fn refresh_idle(h: &Harness) -> tokio::task::JoinHandle<RefreshIdleResponse> {
    let broker = h.broker.clone();
    tokio::spawn(async move { broker.refresh_idle().await })
}

/// Rule: an account unused for longer than `rolling_refresh` gets exactly one refresh from the check, with the
/// profile's default scopes, and the rotated refresh token is stored with the time it was used.
#[tokio::test(start_paused = true)]
async fn an_account_idle_past_rolling_refresh_is_refreshed_once_and_the_new_token_stored() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    h.clock.advance(2 * DAY);
    let check = refresh_idle(&h);
    let refresh = h.platform.next().await;
    assert!(matches!(&refresh.asked, Asked::Refresh { scopes, .. } if scopes.contains("user.read")), "{refresh:?}");
    assert_eq!(refresh.refresh_token(), "rt-0");
    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let response = check.await.unwrap();
    assert_eq!(outcome(&response), RefreshIdleOutcome::Refreshed);
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-1"));
    assert_eq!(h.store.record(PROFILE).unwrap().refreshed_at, Some(now(&h)));
    assert_eq!(h.broker.status().profiles[0].refreshed_at, Some(now(&h)));

    // Just refreshed: the next check has nothing to do.
    let again = refresh_idle(&h).await.unwrap();
    assert_eq!(outcome(&again), RefreshIdleOutcome::NotDue);
    assert!(h.platform.try_next().is_none(), "a second refresh was sent");
}

/// Rule: an account used more recently than `rolling_refresh` is left alone.
#[tokio::test(start_paused = true)]
async fn an_account_not_yet_idle_gets_no_refresh() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    h.clock.advance(DAY - Duration::from_secs(60));
    let response = refresh_idle(&h).await.unwrap();
    assert_eq!(outcome(&response), RefreshIdleOutcome::NotDue);
    assert!(h.platform.try_next().is_none(), "a refresh was sent for an account in use");
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-0"));
}

/// Rule: `rolling_refresh = 0` turns the check off for the profile, however long the account was idle.
#[tokio::test(start_paused = true)]
async fn rolling_refresh_zero_turns_the_check_off() {
    let mut h = harness(&config("rolling_refresh = 0"), false, true);
    h.clock.advance(60 * DAY);
    assert_eq!(outcome(&refresh_idle(&h).await.unwrap()), RefreshIdleOutcome::Off);
    assert!(h.platform.try_next().is_none());
}

/// Rule: a client's refresh counts as use: the token it rotated is stored with the time, and the check that
/// follows finds nothing to do.
#[tokio::test(start_paused = true)]
async fn a_client_refresh_counts_as_use() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    h.clock.advance(2 * DAY);
    let request = h.request(0);
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-1");
    assert_eq!(h.store.record(PROFILE).unwrap().refreshed_at, Some(now(&h)));
    assert_eq!(outcome(&refresh_idle(&h).await.unwrap()), RefreshIdleOutcome::NotDue);
    assert!(h.platform.try_next().is_none());
}

/// Rule: when the platform refuses the rolling refresh for good (AADSTS700082, inactivity), status warns with
/// what to do, and the account is kept in the store marked ended — after a restart status still says so.
#[tokio::test(start_paused = true)]
async fn a_refused_rolling_refresh_warns_and_keeps_the_account_record() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    h.clock.advance(2 * DAY);
    let check = refresh_idle(&h);
    h.platform
        .next()
        .await
        .tokens(Err(PlatformError::AccountDead { detail: "AADSTS700082".into(), codes: vec![700_082] }));
    let response = check.await.unwrap();
    assert_eq!(outcome(&response), RefreshIdleOutcome::SigninNeeded);
    let message = response.profiles[0].message.as_deref().unwrap();
    assert!(message.contains("graphbroker-client signin --profile default"), "{message}");

    let status = h.broker.status().profiles.remove(0);
    assert_eq!(status.account, None);
    let warning = status.warning.expect("a warning");
    assert_eq!(warning.kind, WarningKind::SessionEnded);
    assert_eq!(warning.error_codes, [700_082]);
    assert_eq!(warning.account.as_deref(), Some(USER));
    assert!(warning.message.contains("graphbroker-client signin --profile default"), "{}", warning.message);

    let kept = h.store.record(PROFILE).expect("the account record is kept");
    assert_eq!(kept.username, USER);
    assert_eq!(kept.session_ended.as_ref().map(|e| e.error_codes.clone()), Some(vec![700_082]));

    // A restart reads the entry back as ended: no refresh with the dead token, the same warning.
    let (platform, mut script) = ScriptedPlatform::new();
    let stores = ScriptedStores { keyring: h.store.clone(), memory: ScriptedStore::open(StoreKind::Memory) };
    let config = config("rolling_refresh = 86400");
    let restarted = Broker::with_seams(
        &config,
        platform,
        Arc::new(stores),
        Arc::default(),
        h.clock.clone(),
        Arc::new(RecordingNotifier::default()),
    );
    restarted.load_accounts().await;
    let warning = restarted.status().profiles.remove(0).warning.expect("the warning survives a restart");
    assert_eq!(warning.kind, WarningKind::SessionEnded);
    assert_eq!(outcome(&restarted.refresh_idle().await), RefreshIdleOutcome::SigninNeeded);
    assert!(script.try_next().is_none(), "the dead refresh token was sent again");
}

/// Rule: a refresh refused until the user acts (MFA) keeps the account and makes status say what to do; the next
/// refresh that succeeds clears it.
#[tokio::test(start_paused = true)]
async fn a_rolling_refresh_that_wants_the_user_warns_until_a_refresh_succeeds() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    h.clock.advance(2 * DAY);
    let check = refresh_idle(&h);
    h.platform.next().await.tokens(Err(PlatformError::NeedsUser {
        reason: SignInReason::InteractionRequired,
        claims: None,
        detail: "AADSTS50076".into(),
        codes: vec![50_076],
    }));
    assert_eq!(outcome(&check.await.unwrap()), RefreshIdleOutcome::SigninNeeded);
    let warning = h.broker.status().profiles.remove(0).warning.expect("a warning");
    assert_eq!(warning.kind, WarningKind::Refused);
    assert!(warning.message.contains("AADSTS50076"), "{}", warning.message);
    assert_eq!(h.account().as_deref(), Some(USER));
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-0"));

    let check = refresh_idle(&h);
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(outcome(&check.await.unwrap()), RefreshIdleOutcome::Refreshed);
    assert_eq!(h.broker.status().profiles[0].warning, None);
}

/// Rule: status warns two weeks before the inactivity limit when nothing renewed the refresh token, and not
/// before; the limit is 90 days after its last use.
#[tokio::test(start_paused = true)]
async fn status_warns_when_the_refresh_token_nears_the_inactivity_limit() {
    let h = harness(&config("rolling_refresh = 0"), false, true);
    h.broker.load_accounts().await;
    let signed_in = now(&h);
    let status = h.broker.status().profiles.remove(0);
    assert_eq!(status.refresh_token_expires_at, Some(EpochSeconds(signed_in.0 + 90 * 86_400)));
    h.clock.advance(75 * DAY);
    assert_eq!(h.broker.status().profiles[0].warning, None);
    h.clock.advance(2 * DAY);
    let warning = h.broker.status().profiles.remove(0).warning.expect("a warning 13 days before");
    assert_eq!(warning.kind, WarningKind::ExpiresSoon);
    assert!(warning.message.contains("13 days"), "{}", warning.message);
    assert!(warning.message.contains("graphbroker-client token --profile default"), "{}", warning.message);
}

fn notifying_config(profiles: &str) -> Config {
    Config::parse(&format!("notifications = true\n{profiles}"), std::path::Path::new("/test/config.toml")).unwrap()
}

/// Rule: with notifications on, the prompt of a sign-in no terminal shows (a background program's request) goes
/// to the desktop, with the device code's URL and code.
#[tokio::test(start_paused = true)]
async fn a_prompt_no_terminal_shows_is_notified() {
    let mut h = harness(&notifying_config("[profiles.default]\nflow = \"device\"\n"), false, false);
    let request = h.request(0);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    assert_eq!(request.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
    h.settle(|h| !h.notifier.notices().is_empty()).await;
    let notices = h.notifier.notices();
    assert_eq!(notices.len(), 1);
    assert!(notices[0].body.contains("CODE-1"), "{notices:?}");
    assert!(notices[0].body.contains("https://login.invalid/device"), "{notices:?}");
}

/// Rule: a prompt a terminal shows is not notified; notices go out in order, so the one that follows (another
/// profile's, from a background request) is the first to arrive.
#[tokio::test(start_paused = true)]
async fn a_prompt_a_terminal_shows_is_not_notified() {
    let config = notifying_config("[profiles.default]\nflow = \"device\"\n[profiles.other]\nflow = \"device\"\n");
    let mut h = harness(&config, false, false);
    let broker = h.broker.clone();
    let attended =
        tokio::spawn(async move { broker.token(&TokenRequest { attended: true, ..Default::default() }).await });
    h.platform.next().await.device(Ok(device_code("TERMINAL")));
    assert_eq!(attended.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
    let broker = h.broker.clone();
    let background = tokio::spawn(async move {
        broker.token(&TokenRequest { profile: Some("other".into()), ..Default::default() }).await
    });
    // The first sign-in polls meanwhile; its polls are held unanswered.
    let mut polls = Vec::new();
    let start = loop {
        let call = h.platform.next().await;
        match call.asked {
            Asked::PollDevice { .. } => polls.push(call),
            _ => break call,
        }
    };
    start.device(Ok(device_code("BACKGROUND")));
    assert_eq!(background.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
    h.settle(|h| !h.notifier.notices().is_empty()).await;
    let notices = h.notifier.notices();
    assert!(notices[0].body.contains("BACKGROUND"), "the terminal's prompt was notified: {notices:?}");
    assert!(!notices.iter().any(|n| n.body.contains("TERMINAL")), "{notices:?}");
}

/// Rule: notifications are off unless the config turns them on.
#[tokio::test(start_paused = true)]
async fn no_notification_when_notifications_are_off() {
    let mut h = harness(&config(""), false, false);
    let request = h.request(0);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    assert_eq!(request.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(h.notifier.notices().is_empty(), "{:?}", h.notifier.notices());
}

/// Rule: with notifications on, a rolling refresh that finds the session ended starts the sign-in, and its
/// prompt goes to the desktop (nobody is at a terminal for a timer's check).
#[tokio::test(start_paused = true)]
async fn a_rolling_refresh_that_needs_a_sign_in_notifies_the_prompt() {
    let config = notifying_config("[profiles.default]\nflow = \"device\"\nrolling_refresh = 86400\n");
    let mut h = harness(&config, false, true);
    h.clock.advance(2 * DAY);
    let check = refresh_idle(&h);
    h.platform
        .next()
        .await
        .tokens(Err(PlatformError::AccountDead { detail: "AADSTS700082".into(), codes: vec![700_082] }));
    assert_eq!(outcome(&check.await.unwrap()), RefreshIdleOutcome::SigninNeeded);
    h.platform.next().await.device(Ok(device_code("CODE-2")));
    h.settle(|h| !h.notifier.notices().is_empty()).await;
    assert!(h.notifier.notices()[0].body.contains("CODE-2"));
}

/// Rule: a profile nobody signed in to is skipped, and says so.
#[tokio::test(start_paused = true)]
async fn a_profile_without_an_account_is_skipped() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, false);
    h.clock.advance(2 * DAY);
    assert_eq!(outcome(&refresh_idle(&h).await.unwrap()), RefreshIdleOutcome::NoAccount);
    assert!(h.platform.try_next().is_none());
}

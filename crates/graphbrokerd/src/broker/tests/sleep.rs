//! Sleep, wake-up and clock steps: the machine suspended while tokio's clock stands still (`ManualClock::sleep`),
//! and the wall clock stepped either way, as a laptop and NTP do. Also what ends the sign-in and refresh-ahead
//! tasks unexpectedly (a panic in the platform client), and lifetimes at the extreme.

use super::*;
use crate::broker::WAKE_TICK;
use crate::clock::WAKE_CHECK;
use crate::idp::bounds::MAX_TOKEN_LIFETIME;

const HOUR: Duration = Duration::from_secs(3600);

/// A signed-in harness whose cache holds `at-1` (an hour's token) for the default scopes.
async fn with_cached_token(config_extra: &str) -> Harness {
    let mut h = harness(&config(config_extra), false, true);
    let first = h.request(0);
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(token_value(first.await.unwrap()), "at-1");
    h
}

/// Rule: a token the machine slept past is never handed out: the request refreshes instead, and what it is told
/// is valid by the wall clock.
#[tokio::test(start_paused = true)]
async fn after_a_sleep_longer_than_the_tokens_life_a_fresh_token_is_served() {
    let mut h = with_cached_token("").await;
    h.clock.sleep(2 * HOUR);
    let request = h.request(0);
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-1", "the expired token was not refreshed");
    refresh.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    let served = request.await.unwrap().unwrap();
    assert_eq!(served.access_token().expose_secret(), "at-2");
    let min_valid = Duration::from_secs(300);
    assert!(served.expires_at >= h.clock.now() + min_valid, "served a token not valid for min_valid by the wall clock");
}

/// Rule: after a wake-up, the tokens that came due while asleep are refreshed in the background within a tick,
/// before anyone asks.
#[tokio::test(start_paused = true)]
async fn after_a_wake_up_due_tokens_are_refreshed_in_the_background() {
    let mut h = with_cached_token("").await;
    tokio::spawn(h.broker.clone().watch_clocks());
    tokio::time::advance(Duration::from_secs(1)).await;
    // Due for refresh ahead at 3180 s, still valid: slept 3300 s.
    h.clock.sleep(Duration::from_secs(3300));
    let background = tokio::time::timeout(WAKE_TICK * 2, h.platform.next())
        .await
        .expect("no refresh within two ticks of the wake-up");
    assert_eq!(background.refresh_token(), "rt-1");
    background.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    h.settle(|h| h.cached_token().as_deref() == Some("at-2")).await;
    assert!(h.platform.try_next().is_none(), "one refresh per scope set");
}

/// Rule: a wake-up runs the rolling refresh: an account that went idle past `rolling_refresh` while asleep is
/// refreshed without waiting for a day of tokio's clock.
#[tokio::test(start_paused = true)]
async fn a_wake_up_runs_the_rolling_refresh() {
    let mut h = harness(&config("rolling_refresh = 86400"), false, true);
    tokio::spawn(h.broker.clone().watch_clocks());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(h.platform.try_next().is_none(), "nothing was idle at start");
    h.clock.sleep(Duration::from_secs(2 * 86_400));
    // Within two ticks of tokio's clock, not at the end of a day of it.
    let refresh =
        tokio::time::timeout(WAKE_TICK * 2, h.platform.next()).await.expect("no rolling refresh at the wake-up");
    assert_eq!(refresh.refresh_token(), "rt-0", "the idle account was not refreshed after the wake-up");
    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    h.settle(|h| h.store.refresh_token(PROFILE).as_deref() == Some("rt-1")).await;
}

/// Rule: a wall clock stepped by NTP is not a wake-up: the watcher starts no refresh for it.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_step_is_not_taken_for_a_wake_up() {
    let mut h = with_cached_token("").await;
    tokio::spawn(h.broker.clone().watch_clocks());
    tokio::time::advance(Duration::from_secs(1)).await;
    h.clock.step_back(HOUR);
    tokio::time::advance(WAKE_TICK * 4).await;
    assert!(h.platform.try_next().is_none(), "a refresh was started for a clock step");
}

/// Rule: a sign-in pending while the machine slept past its code's life ends as `signin_expired` for its
/// waiters within moments of the wake-up, and status no longer shows the dead code.
#[tokio::test(start_paused = true)]
async fn a_sign_in_pending_across_a_sleep_ends_expired() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(900);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let _poll = h.platform.next().await;
    h.clock.sleep(2 * HOUR);
    tokio::time::advance(WAKE_CHECK).await;
    let error = held.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninExpired, "{error:?}");
    assert!(error.0.message.contains("asleep"), "{}", error.0.message);
    assert!(!h.signin_pending(), "the dead sign-in is still shown");
}

/// Rule: a request that comes right after the wake-up, before the sign-in noticed, is not handed the dead code:
/// the old sign-in ends (its waiters told `signin_expired`) and a new one starts.
#[tokio::test(start_paused = true)]
async fn a_request_right_after_the_wake_up_starts_a_new_sign_in() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(900);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let _poll = h.platform.next().await;
    h.clock.sleep(2 * HOUR);
    let fresh = h.request(0);
    let start = h.platform.next().await;
    assert!(matches!(start.asked, Asked::StartDevice { .. }), "{start:?}");
    start.device(Ok(device_code("CODE-2")));
    fresh.await.unwrap().unwrap_err();
    // The new code's first poll shows its prompt is out.
    let _poll = h.platform.next().await;
    let prompt = h.request(0).await.unwrap().unwrap_err();
    assert!(
        matches!(prompt.0.signin, Some(graphbroker_protocol::SignInPrompt::Device { ref user_code, .. }) if user_code == "CODE-2"),
        "{prompt:?}"
    );
    assert_eq!(held.await.unwrap().unwrap_err().code(), ErrorCode::SigninExpired);
}

/// Rule: a wall clock stepped forward makes a token look due once: one refresh, and the new token is served from
/// the cache after it — no burst.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_forward_costs_one_refresh() {
    let mut h = with_cached_token("").await;
    h.clock.advance(Duration::from_secs(3400));
    let request = h.request(0);
    h.platform.next().await.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-2");
    for _ in 0..5 {
        assert_eq!(token_value(h.request(0).await.unwrap()), "at-2");
    }
    assert!(h.platform.try_next().is_none(), "the step started more than one refresh");
}

/// Rule: a wall clock stepped back never stretches a token: its life is still counted down on the boot clock.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_back_does_not_stretch_a_token() {
    let mut h = with_cached_token("").await;
    h.clock.step_back(HOUR);
    tokio::time::advance(HOUR - Duration::from_secs(299)).await;
    let request = h.request(0);
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-1", "299 s left: below min_valid, whatever the wall clock says");
    refresh.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-2");
}

/// Rule: a lifetime beyond any the platform documents is trusted only up to the bound, without overflowing.
#[tokio::test(start_paused = true)]
async fn an_endless_lifetime_is_trusted_only_to_the_bound() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    let mut endless = tokens("at-1", Some("rt-1"), USER);
    endless.expires_in = Duration::MAX;
    endless.refresh_in = Some(Duration::MAX);
    h.platform.next().await.tokens(Ok(endless));
    let served = request.await.unwrap().unwrap();
    assert!(served.expires_in <= MAX_TOKEN_LIFETIME, "{:?}", served.expires_in);
    h.clock.sleep(MAX_TOKEN_LIFETIME);
    let again = h.request(0);
    assert_eq!(h.platform.next().await.refresh_token(), "rt-1", "trusted past the bound");
    drop(again);
}

/// Rule: a sign-in task that panics still tells its waiters and clears the pending sign-in, so the next request
/// starts a new one instead of joining a dead one.
#[tokio::test(start_paused = true)]
async fn a_sign_in_task_that_panics_tells_its_waiters_and_clears_the_sign_in() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(900);
    h.platform.next().await.panic();
    let error = held.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::Internal, "{error:?}");
    h.settle(|h| !h.signin_pending()).await;
    let next = h.request(0);
    let start = h.platform.next().await;
    assert!(matches!(start.asked, Asked::StartDevice { .. }), "{start:?}");
    start.device(Ok(device_code("CODE-2")));
    assert_eq!(next.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
}

/// Rule: a refresh ahead whose task panics releases its claim: the next hit that finds the token due starts
/// another one.
#[tokio::test(start_paused = true)]
async fn a_refresh_ahead_that_panics_releases_its_claim() {
    let mut h = with_cached_token("").await;
    tokio::time::advance(HOUR - Duration::from_secs(420)).await;
    assert_eq!(token_value(h.request(0).await.unwrap()), "at-1");
    h.platform.next().await.panic();
    // Let the panicked task unwind and drop its claim.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(token_value(h.request(0).await.unwrap()), "at-1");
    let again = h.platform.next().await;
    assert_eq!(again.refresh_token(), "rt-1", "no second refresh ahead after the panic");
    again.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    h.settle(|h| h.cached_token().as_deref() == Some("at-2")).await;
}

//! The per-scope-set map's rules, on tokio's paused clock with the test clocks (`testing::ManualClock`): tokio's
//! time is the machine running, `sleep` a suspend, `advance`/`step_back` the wall clock stepped.

use super::*;
use crate::testing::ManualClock;

/// A token issued now on `clock`, living `lifetime` seconds, for a `min_valid` of 300 s.
fn token_on(clock: &ManualClock, lifetime: u64) -> CachedToken {
    CachedToken::issued(
        SecretString::from("at"),
        vec!["s".into()],
        Duration::from_secs(lifetime),
        None,
        Duration::from_secs(300),
        clock.read(),
    )
}

#[test]
fn answers_are_made_once_per_second_and_shared() {
    let answers = SharedAnswers::default();
    let mut made = 0;
    let mut make = |text: &'static str| {
        made += 1;
        Ok::<_, ()>(Bytes::from_static(text.as_bytes()))
    };
    let first = answers.token_answer((3599, 0), || make("a")).unwrap();
    let again = answers.token_answer((3599, 0), || make("b")).unwrap();
    assert_eq!((&first[..], &again[..]), (&b"a"[..], &b"a"[..]));
    assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a copy");
    let next_second = answers.token_answer((3598, 0), || make("c")).unwrap();
    assert_eq!(&next_second[..], b"c");
    assert_eq!(&answers.header_answer(|| make("h")).unwrap()[..], b"h");
    assert_eq!(&answers.header_answer(|| make("i")).unwrap()[..], b"h");
    assert_eq!(made, 3);
    assert_eq!(format!("{answers:?}"), "SharedAnswers { token: true, header: true }");
    // A failure to make one keeps nothing.
    assert_eq!(SharedAnswers::default().token_answer((1, 0), || Err::<Bytes, _>("no")), Err("no"));
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_comes_before_min_valid_is_reached() {
    let clock = ManualClock::new();
    let hour = token_on(&clock, 3600);
    // Due at 3600 - (300 + 120) = 3180 s.
    tokio::time::advance(Duration::from_secs(3179)).await;
    assert!(!hour.refresh_due(clock.read()));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(hour.refresh_due(clock.read()));
}

#[tokio::test(start_paused = true)]
async fn short_tokens_are_refreshed_ahead_at_half_life_and_refresh_in_wins_when_sooner() {
    let clock = ManualClock::new();
    let short = token_on(&clock, 400);
    tokio::time::advance(Duration::from_secs(199)).await;
    assert!(!short.refresh_due(clock.read()), "not on every hit");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(short.refresh_due(clock.read()));

    let advised = CachedToken::issued(
        SecretString::from("at"),
        vec![],
        Duration::from_secs(3600),
        Some(Duration::from_secs(1800)),
        Duration::from_secs(300),
        clock.read(),
    );
    tokio::time::advance(Duration::from_secs(1800)).await;
    assert!(advised.refresh_due(clock.read()));
}

#[tokio::test(start_paused = true)]
async fn served_while_min_valid_remains() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 3600));
    let min_valid = Duration::from_secs(300);
    assert!(entries.token("k", min_valid).is_some());
    tokio::time::advance(Duration::from_secs(3299)).await;
    assert!(entries.token("k", min_valid).is_some(), "301 s left is enough");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(entries.token("k", min_valid).is_none(), "299 s left is not");
    assert!(entries.token("k", Duration::from_secs(60)).is_some(), "a smaller min_valid still gets it");
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_are_dropped() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 10));
    assert_eq!(entries.live_tokens(clock.read()).count(), 1);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(entries.live_tokens(clock.read()).count(), 0);
    assert!(entries.token("k", Duration::ZERO).is_none());
    assert_eq!(entries.clear_tokens(), 0);
    assert!(entries.is_empty(), "an idle entry without a token is pruned");
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("a", token_on(&clock, 3600));
    assert!(entries.token("b", Duration::ZERO).is_none());
    assert!(entries.token("a", Duration::ZERO).is_some());
}

#[tokio::test(start_paused = true)]
async fn the_map_is_bounded_and_evicts_the_least_recently_used() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::with_capacity(3, clock.clone());
    for key in ["a", "b", "c"] {
        entries.insert_token(key, token_on(&clock, 3600));
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert!(entries.token("a", Duration::ZERO).is_some(), "a is now the most recently used");
    entries.insert_token("d", token_on(&clock, 3600));
    assert_eq!(entries.len(), 3);
    assert!(entries.token("b", Duration::ZERO).is_none(), "b was the least recently used");
    for key in ["a", "c", "d"] {
        assert!(entries.token(key, Duration::ZERO).is_some(), "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_entry_under_refresh_is_never_evicted() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::with_capacity(1, clock.clone());
    let held = entries.flight("busy");
    let _guard = held.lock().await;
    entries.insert_token("other", token_on(&clock, 3600));
    assert_eq!(entries.len(), 2, "the busy entry stays even past capacity");
    assert!(Arc::ptr_eq(&held, &entries.flight("busy")), "the same lock is handed out while it is held");
    drop(_guard);
    drop(held);
    entries.insert_token("third", token_on(&clock, 3600));
    assert_eq!(entries.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn clearing_keeps_entries_a_refresh_holds_and_prunes_the_rest() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("a", token_on(&clock, 3600));
    entries.insert_token("b", token_on(&clock, 3600));
    let held = entries.flight("b");
    assert_eq!(entries.clear_tokens(), 2);
    assert_eq!(entries.len(), 1);
    assert!(Arc::ptr_eq(&held, &entries.flight("b")));
    assert!(entries.token("b", Duration::ZERO).is_none());
}

#[tokio::test(start_paused = true)]
async fn one_background_refresh_is_claimed_per_due_token() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 400));
    assert!(!entries.claim_refresh_ahead("k"), "not due yet");
    tokio::time::advance(Duration::from_secs(200)).await;
    assert!(entries.claim_refresh_ahead("k"));
    assert!(!entries.claim_refresh_ahead("k"), "claimed once");
    entries.release_refresh_ahead("k");
    assert!(entries.claim_refresh_ahead("k"), "claimable again once released");
    assert!(!entries.claim_refresh_ahead("missing"));
}

#[tokio::test(start_paused = true)]
async fn a_hit_claims_the_due_refresh_once_and_judges_on_one_reading() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 400));
    let (token, now, claimed) = entries.hit("k", Duration::ZERO).unwrap();
    assert!(!claimed, "not due yet");
    assert_eq!(token.remaining(now), Duration::from_secs(400));
    tokio::time::advance(Duration::from_secs(200)).await;
    let (_, now, claimed) = entries.hit("k", Duration::ZERO).unwrap();
    assert!(claimed);
    assert_eq!(now, clock.read());
    assert!(!entries.hit("k", Duration::ZERO).unwrap().2, "claimed once");
    assert!(entries.hit("k", Duration::from_secs(300)).is_none(), "200 s left is less than 300");
    entries.release_refresh_ahead("k");
    assert!(entries.hit("k", Duration::ZERO).unwrap().2, "claimable again once released");
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert!(entries.hit("k", Duration::ZERO).is_none(), "expired while asleep");
    assert!(entries.live_tokens(clock.read()).next().is_none(), "and dropped");
    assert!(entries.hit("missing", Duration::ZERO).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_token_is_not_served_after_the_machine_slept_past_its_life() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 3600));
    clock.sleep(Duration::from_secs(2 * 3600));
    // tokio's clock has not moved: only a clock that counts the suspend knows the token is gone.
    assert!(entries.token("k", Duration::ZERO).is_none(), "an expired token was served after a suspend");
    assert_eq!(entries.live_tokens(clock.read()).count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_short_sleep_leaves_a_token_served_with_the_time_it_really_has_left() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 3600));
    clock.sleep(Duration::from_secs(3200));
    let min_valid = Duration::from_secs(300);
    let served = entries.token("k", min_valid).expect("400 s left is more than min_valid");
    let now = clock.read();
    assert_eq!(served.remaining(now), Duration::from_secs(400));
    assert_eq!(served.expires_at(now), now.wall + Duration::from_secs(400));
    assert!(served.refresh_due(now), "it came due for the refresh ahead (at 3180 s) while asleep");
    clock.sleep(Duration::from_secs(101));
    assert!(entries.token("k", min_valid).is_none(), "299 s left is not enough");
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_back_never_stretches_a_token() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 3600));
    clock.step_back(Duration::from_secs(3600));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(entries.token("k", Duration::ZERO).is_none(), "the boot clock still counted its life down");
    // And what a client is told follows its own (stepped) wall clock.
    entries.insert_token("j", token_on(&clock, 3600));
    clock.step_back(Duration::from_secs(600));
    let now = clock.read();
    let served = entries.token("j", Duration::ZERO).unwrap();
    assert_eq!(served.expires_at(now), now.wall + Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_forward_makes_a_token_due_once_not_a_burst() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    entries.insert_token("k", token_on(&clock, 3600));
    clock.advance(Duration::from_secs(3400));
    assert!(entries.token("k", Duration::from_secs(300)).is_none(), "200 s left by the wall clock is too little");
    assert!(entries.claim_refresh_ahead("k"));
    // The token that replaces it is reckoned from the new wall clock: fully valid, not due.
    entries.insert_token("k", token_on(&clock, 3600));
    entries.release_refresh_ahead("k");
    assert!(entries.token("k", Duration::from_secs(300)).is_some());
    assert!(!entries.claim_refresh_ahead("k"), "no second refresh");
}

#[tokio::test(start_paused = true)]
async fn a_lifetime_at_the_bound_does_not_overflow_a_deadline() {
    let clock = ManualClock::new();
    let mut entries = ScopeEntries::new(clock.clone());
    let endless = CachedToken::issued(
        SecretString::from("at"),
        vec![],
        Duration::MAX,
        Some(Duration::MAX),
        Duration::MAX,
        clock.read(),
    );
    entries.insert_token("k", endless);
    assert!(entries.token("k", Duration::ZERO).is_some());
}

//! The broker's transitions, driven through its public methods.

use super::*;

/// Rule: concurrent misses for one scope set make one refresh, and every request gets its token.
#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_refresh() {
    let mut h = harness(&config(""), false, true);
    let requests: Vec<_> = (0..20).map(|_| h.request(0)).collect();
    let refresh = h.platform.next().await;
    h.settle(|_| true).await;
    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    for request in requests {
        assert_eq!(token_value(request.await.unwrap()), "at-1");
    }
    assert!(h.platform.try_next().is_none(), "one refresh only");
    let counters = h.broker.status().counters;
    assert_eq!((counters.requests, counters.refreshes, counters.cache_hits), (20, 1, 19));
}

/// Rule: a request arriving while a completed sign-in is being written joins that sign-in: it makes no refresh of
/// its own, and gets the sign-in's token once the store has the account.
#[tokio::test(start_paused = true)]
async fn a_request_during_the_sign_ins_write_joins_it() {
    let mut h = harness(&config(""), true, false);
    let first = h.request(900);
    h.release(StoreOp::Load).await;
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let save = h.gate().next().await;
    let second = h.request(900);
    h.settle(|_| true).await;
    assert!(h.platform.try_next().is_none(), "no refresh while the sign-in's write is under way");
    save.release();
    assert_eq!(token_value(first.await.unwrap()), "at-1");
    assert_eq!(token_value(second.await.unwrap()), "at-1");
    assert!(h.platform.try_next().is_none());
}

/// Rule: the rotated refresh token is in the store before its access token is handed out.
#[tokio::test(start_paused = true)]
async fn the_rotated_refresh_token_is_stored_before_the_token_is_served() {
    let mut h = harness(&config(""), true, true);
    let request = h.request(0);
    h.release(StoreOp::Load).await;
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let save = h.gate().next().await;
    h.settle(|_| true).await;
    assert!(!request.is_finished(), "no answer while the write is under way");
    save.release();
    assert_eq!(token_value(request.await.unwrap()), "at-1");
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-1"));
}

/// Rule: when the store cannot take a rotated refresh token, the request fails with `keychain_unavailable`,
/// nothing is lost, and no token is served until a later write succeeds.
#[tokio::test(start_paused = true)]
async fn a_failed_write_is_retried_before_anything_is_served() {
    let mut h = harness(&config(""), true, true);
    let first = h.request(0);
    h.release(StoreOp::Load).await;
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    h.gate().next().await.fail(StoreError::Unavailable { message: "the keychain is locked".into() });
    assert_eq!(first.await.unwrap().unwrap_err().code(), ErrorCode::KeychainUnavailable);
    assert!(h.broker.status().profiles[0].store_error.as_deref().unwrap().contains("locked"));
    assert!(h.broker.has_state_to_lose(), "an unsaved refresh token would be lost");

    let second = h.request(0);
    h.release(StoreOp::Save("rt-1".into())).await;
    // The earlier refresh's token was not cached (it was never served), so this one refreshes with rt-1.
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-1");
    refresh.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    h.release(StoreOp::Save("rt-2".into())).await;
    assert_eq!(token_value(second.await.unwrap()), "at-2");
    assert_eq!(h.broker.status().profiles[0].store_error, None);
    assert!(!h.broker.has_state_to_lose());
}

/// Rule: a dead grant forgets the account in memory, keeps its record in the store marked ended (so status can
/// tell the user why, after a restart too), and starts a sign-in whose reason says so.
#[tokio::test(start_paused = true)]
async fn a_dead_grant_forgets_the_account_and_asks_for_a_sign_in() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    h.platform.next().await.tokens(Err(PlatformError::AccountDead { detail: "revoked".into(), codes: vec![50173] }));
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let error = request.await.unwrap().unwrap_err();
    assert_eq!(error.0.reason, Some(SignInReason::SessionExpired));
    let kept = h.store.record(PROFILE).expect("the record is kept");
    assert_eq!(kept.session_ended.map(|e| e.error_codes), Some(vec![50173]));
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some(""), "the dead refresh token is not kept");
    assert_eq!(h.account(), None);
}

/// Rule: consent or MFA needed for one request keeps the account for everything else.
#[tokio::test(start_paused = true)]
async fn a_request_that_needs_the_user_keeps_the_account() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    h.platform.next().await.tokens(Err(PlatformError::NeedsUser {
        reason: SignInReason::ConsentRequired,
        claims: None,
        detail: "AADSTS65001".into(),
        codes: vec![65001],
    }));
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let error = request.await.unwrap().unwrap_err();
    assert_eq!(error.0.reason, Some(SignInReason::ConsentRequired));
    assert_eq!(h.account().as_deref(), Some(USER));
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-0"));
}

/// Rule: while the user is being asked to sign in for some scopes (their refresh wanted the user), requests for
/// those scopes join that sign-in instead of refreshing again into the same refusal — a client polling with
/// `wait=0` costs the platform nothing.
#[tokio::test(start_paused = true)]
async fn requests_for_scopes_the_user_is_asked_for_join_without_refreshing() {
    let mut h = harness(&config(""), false, true);
    let first = h.request(0);
    h.platform.next().await.tokens(Err(PlatformError::NeedsUser {
        reason: SignInReason::InteractionRequired,
        claims: None,
        detail: "AADSTS70043".into(),
        codes: vec![70043],
    }));
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let poll = h.platform.next().await;
    first.await.unwrap().unwrap_err();
    for _ in 0..3 {
        let again = h.request(0).await.unwrap().unwrap_err();
        assert_eq!(again.0.reason, Some(SignInReason::InteractionRequired));
        assert!(again.0.signin.is_some(), "the pending sign-in's prompt");
    }
    assert!(h.platform.try_next().is_none(), "no further refresh while the sign-in is pending");
    poll.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    h.settle(|h| !h.signin_pending()).await;
    assert_eq!(token_value(h.request(0).await.unwrap()), "at-1");
}

/// Rule: a transient platform failure is retried (after a backoff) before the request is answered.
#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    h.platform.next().await.tokens(Err(transient("HTTP 503")));
    let again = h.platform.next().await;
    assert_eq!(again.refresh_token(), "rt-0");
    again.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-1");
}

/// Rule: a request held with `wait` gets its token once the sign-in completes; one without `wait` gets the
/// prompt at once.
#[tokio::test(start_paused = true)]
async fn waiting_requests_get_the_token_of_the_sign_in_they_joined() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(900);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    // The first poll shows the prompt is out.
    let poll = h.platform.next().await;
    let prompt = h.request(0).await.unwrap().unwrap_err();
    assert_eq!(prompt.code(), ErrorCode::SigninRequired);
    assert!(
        matches!(prompt.0.signin, Some(graphbroker_protocol::SignInPrompt::Device { ref user_code, .. }) if user_code == "CODE-1")
    );
    poll.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(token_value(held.await.unwrap()), "at-1");
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-1"));
    assert_eq!(h.broker.status().counters.signins, 1);
}

/// Rule: a request whose `wait` runs out is answered `signin_timeout`, and the sign-in goes on.
#[tokio::test(start_paused = true)]
async fn a_wait_that_runs_out_leaves_the_sign_in_going() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(10);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let poll = h.platform.next().await;
    let error = held.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninTimeout);
    assert!(h.signin_pending());
    poll.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    h.settle(|h| h.account().is_some()).await;
}

/// Rule: a token due for refresh ahead is still served from the cache, and one background refresh replaces it.
#[tokio::test(start_paused = true)]
async fn a_token_due_is_served_and_refreshed_once_in_the_background() {
    let mut h = harness(&config(""), false, true);
    let first = h.request(0);
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    assert_eq!(token_value(first.await.unwrap()), "at-1");
    // An hour's token with min_valid 300 is due for refresh ahead at 3600 - 420 s.
    tokio::time::advance(Duration::from_secs(3600 - 420)).await;
    let hits: Vec<_> = (0..3).map(|_| h.request(0)).collect();
    for hit in hits {
        assert_eq!(token_value(hit.await.unwrap()), "at-1", "served from the cache meanwhile");
    }
    let background = h.platform.next().await;
    assert_eq!(background.refresh_token(), "rt-1");
    background.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    h.settle(|h| h.cached_token().as_deref() == Some("at-2")).await;
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-2"));
    assert!(h.platform.try_next().is_none(), "one background refresh");
    let next = h.request(0);
    assert_eq!(token_value(next.await.unwrap()), "at-2");
}

/// Rule: a sign-out cancels the sign-in under way and tells the waiting requests.
#[tokio::test(start_paused = true)]
async fn a_sign_out_cancels_a_pending_sign_in() {
    let mut h = harness(&config(""), false, false);
    let held = h.request(900);
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let _poll = h.platform.next().await;
    h.signout().await.unwrap().unwrap();
    assert_eq!(held.await.unwrap().unwrap_err().code(), ErrorCode::SigninDeclined);
    assert!(!h.signin_pending());
}

/// Rule: a reload that removes a profile makes it unknown, and retires its slot.
#[tokio::test(start_paused = true)]
async fn a_removed_profile_is_unknown_after_the_reload() {
    let h = harness(&config(""), false, true);
    let text = "default_profile = \"work\"\n[profiles.work]\nflow = \"device\"\n";
    let other = Config::parse(text, std::path::Path::new("/test/config.toml")).unwrap();
    let (platform, _script) = ScriptedPlatform::new();
    let summary = h.broker.reload(&other, platform);
    assert_eq!((summary.removed, summary.added), (vec![PROFILE.to_owned()], vec!["work".to_owned()]));
    let request = TokenRequest { profile: Some(PROFILE.into()), ..TokenRequest::default() };
    assert_eq!(h.broker.token(&request).await.unwrap_err().code(), ErrorCode::UnknownProfile);
}

/// Rule: a sign-out is only acknowledged once the store has forgotten the account too. A delete the keychain
/// refuses is an error that says so (the account would come back at the next start), and a second sign-out
/// deletes it.
#[tokio::test(start_paused = true)]
async fn a_sign_out_the_keychain_refuses_is_an_error_and_can_be_repeated() {
    let mut h = harness(&config(""), true, true);
    let loaded = h.request(0);
    h.release(StoreOp::Load).await;
    h.platform.next().await.tokens(Ok(tokens("at-1", None, USER)));
    assert_eq!(token_value(loaded.await.unwrap()), "at-1");

    let refused = h.signout();
    let call = h.gate().next().await;
    assert_eq!(call.op, StoreOp::Delete);
    call.fail(StoreError::Unavailable { message: "the keychain is locked".into() });
    let error = refused.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::KeychainUnavailable, "{error:?}");
    assert!(error.to_string().contains("sign out again"), "{error}");
    assert_eq!(h.account(), None, "forgotten in memory all the same");
    assert!(h.store.refresh_token(PROFILE).is_some(), "still in the keychain");

    let again = h.signout();
    h.release(StoreOp::Delete).await;
    again.await.unwrap().unwrap();
    assert_eq!(h.store.refresh_token(PROFILE), None);
}

/// Rule: a sign-in the platform refuses to start (an unknown app) answers the requests of the next few seconds with
/// its error, even those that wait for nothing and were told "being prepared" while it started; it is not started
/// again for each of them. After that, or when a sign-in is asked for, one starts anew.
#[tokio::test(start_paused = true)]
async fn a_sign_in_that_failed_to_start_answers_the_requests_after_it() {
    let mut h = harness(&config(""), false, false);
    let refused =
        || PlatformError::Refused { detail: "AADSTS700016: no such app".into(), codes: vec![700016], hint: None };
    let first = h.request(0);
    let start = h.platform.next().await;
    assert!(matches!(start.asked, Asked::StartDevice { .. }), "{:?}", start.asked);
    let error = first.await.unwrap().unwrap_err();
    assert!(error.0.message.contains("being prepared"), "{error:?}");
    start.device(Err(refused()));
    h.settle(|_| true).await;

    for _ in 0..3 {
        let error = h.request(0).await.unwrap().unwrap_err();
        assert!(error.0.message.contains("AADSTS700016"), "the refusal, not another start: {error:?}");
    }
    assert!(h.platform.try_next().is_none(), "no sign-in started again");

    tokio::time::sleep(crate::broker::lifecycle::FAILED_START_KEPT).await;
    let later = h.request(0);
    let again = h.platform.next().await;
    assert!(matches!(again.asked, Asked::StartDevice { .. }), "{:?}", again.asked);
    again.device(Ok(device_code("CODE-1")));
    assert_eq!(later.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);
}

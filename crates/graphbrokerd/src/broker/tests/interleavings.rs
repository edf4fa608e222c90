//! The interleavings: concurrent work finishing in the orders that matter, each test stating its rule.

use super::*;

/// Rule: a refresh that finishes after a sign-out writes nothing back — not into the signed-out profile, and
/// not into the account of a newer sign-in — and its token is not handed out.
#[tokio::test(start_paused = true)]
async fn a_refresh_finishing_after_a_sign_out_cannot_resurrect_the_account() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-0");

    let signed_out = h.signout().await.unwrap().unwrap();
    assert_eq!(signed_out.account.unwrap().username, USER);
    assert_eq!(h.store.refresh_token(PROFILE), None);

    // Someone else signs in before the old refresh comes back (`POST /v1/signin`: a token request would queue
    // behind the old refresh's single flight).
    let broker = h.broker.clone();
    let signin = tokio::spawn(async move { broker.signin(None, None, false).await });
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    assert_eq!(signin.await.unwrap().unwrap().state, graphbroker_protocol::SignInState::Pending);
    h.platform.next().await.tokens(Ok(tokens("at-bob", Some("rt-bob"), "bob@contoso.com")));
    h.settle(|h| h.account().as_deref() == Some("bob@contoso.com") && !h.signin_pending()).await;

    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    // The old request asks again of the current account, and is served bob's cached token, not at-1.
    assert_eq!(token_value(request.await.unwrap()), "at-bob");
    assert_eq!(h.account().as_deref(), Some("bob@contoso.com"));
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-bob"), "{:?}", h.store.done());
    assert!(!h.store.done().contains(&StoreOp::Save("rt-1".into())), "{:?}", h.store.done());

    // And bob's refresh token in memory is still his.
    let broker = h.broker.clone();
    let fresh = tokio::spawn(async move {
        let request = TokenRequest { scopes: Some(vec!["Mail.Read".into()]), ..TokenRequest::default() };
        broker.token(&request).await
    });
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-bob");
    refresh.tokens(Ok(tokens("at-mail", Some("rt-bob-2"), "bob@contoso.com")));
    assert_eq!(token_value(fresh.await.unwrap()), "at-mail");
}

/// Rule: a sign-out's delete reaches the store after every write queued before it, whatever order the store
/// calls would otherwise finish in — so the store never ends up holding a signed-out account.
#[tokio::test(start_paused = true)]
async fn a_delete_queued_after_a_write_lands_after_it() {
    let mut h = harness(&config(""), true, true);
    let request = h.request(0);
    h.release(StoreOp::Load).await;
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let save = h.gate().next().await;
    assert_eq!(save.op, StoreOp::Save("rt-1".into()));

    // The sign-out happens in memory at once; its delete must wait for the write under way.
    let signout = h.signout();
    h.settle(|h| h.account().is_none()).await;
    if let Some(raced) = racing_store_call(h.gate()).await {
        // Only a delete that skipped the queue gets here; letting it finish first is the race the rule forbids.
        raced.release();
    }
    save.release();
    // The request's write went through but its account is gone by now: it asks again, and a sign-in starts.
    h.release(StoreOp::Delete).await;
    signout.await.unwrap().unwrap();
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    assert_eq!(request.await.unwrap().unwrap_err().code(), ErrorCode::SigninRequired);

    assert_eq!(h.store.refresh_token(PROFILE), None, "the store ends without the account: {:?}", h.store.done());
    assert_eq!(h.store.done(), [StoreOp::Load, StoreOp::Save("rt-1".into()), StoreOp::Delete]);
}

/// Rule: a write still queued when its account is signed out is dropped, not written: the store never holds a
/// refresh token of an account that was already gone when the write's turn came.
#[tokio::test(start_paused = true)]
async fn a_queued_write_of_a_signed_out_account_is_dropped() {
    let mut h = harness(&config(""), true, true);
    let user_read = h.request(0);
    h.release(StoreOp::Load).await;
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let first_write = h.gate().next().await;
    assert_eq!(first_write.op, StoreOp::Save("rt-1".into()));

    // A second scope set's refresh queues its write behind the first.
    let broker = h.broker.clone();
    let mail = tokio::spawn(async move {
        let request = TokenRequest { scopes: Some(vec!["Mail.Read".into()]), ..TokenRequest::default() };
        broker.token(&request).await
    });
    let refresh = h.platform.next().await;
    assert_eq!(refresh.refresh_token(), "rt-1", "the first refresh's token is in memory already");
    refresh.tokens(Ok(tokens("at-mail", Some("rt-2"), USER)));
    h.settle(|_| true).await;

    let signout = h.signout();
    h.settle(|h| h.account().is_none()).await;
    first_write.release();
    // rt-2's write comes up after the sign-out: dropped. The delete is next.
    h.release(StoreOp::Delete).await;
    signout.await.unwrap().unwrap();
    // Both requests ask again and find no account: they share one new sign-in.
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    for request in [user_read, mail] {
        let error = request.await.unwrap().unwrap_err();
        assert_eq!(error.code(), ErrorCode::SigninRequired, "no token of the signed-out account is served");
    }
    assert_eq!(h.store.done(), [StoreOp::Load, StoreOp::Save("rt-1".into()), StoreOp::Delete]);
    assert_eq!(h.store.refresh_token(PROFILE), None);
}

/// Rule: a refresh that finishes after a reload replaced the profile (another client id) is neither served nor
/// written; the request is answered from the profile's current slot, which does not have the old account.
#[tokio::test(start_paused = true)]
async fn a_refresh_finishing_after_a_reload_that_replaced_the_profile_is_dropped() {
    let old = config("");
    let mut h = harness(&old, false, true);
    let request = h.request(0);
    let refresh = h.platform.next().await;
    let (platform, mut reloaded) = ScriptedPlatform::new();
    let summary = h.broker.reload(&config("client_id = \"another-app\""), platform);
    assert_eq!(summary.replaced, [PROFILE]);
    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));

    // The new slot reads the store: the account there belongs to the old client id, so it signs in anew.
    let start = reloaded.next().await;
    assert!(matches!(start.asked, Asked::StartDevice { .. }), "{:?}", start.asked);
    start.device(Ok(device_code("CODE-1")));
    let error = request.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninRequired, "{error:?}");
    assert_eq!(error.0.reason, Some(SignInReason::NoAccount));
    assert!(h.platform.try_next().is_none(), "nothing more went to the old platform");
    assert!(!h.store.done().contains(&StoreOp::Save("rt-1".into())), "{:?}", h.store.done());
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-0"));
}

/// Rule: a refresh that finishes after a reload changed only other settings is dropped too (its token may not
/// suit the new settings); the request asks again of the new slot, which kept the account.
#[tokio::test(start_paused = true)]
async fn a_refresh_finishing_after_a_reload_that_kept_the_account_is_asked_again_of_the_new_slot() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    let refresh = h.platform.next().await;
    let (platform, mut reloaded) = ScriptedPlatform::new();
    let summary = h.broker.reload(&config("min_valid = 60"), platform);
    assert_eq!(summary.changed, [PROFILE]);
    refresh.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));

    let again = reloaded.next().await;
    assert_eq!(again.refresh_token(), "rt-0", "the new slot has the account as it was carried over");
    again.tokens(Ok(tokens("at-2", Some("rt-2"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-2");
    assert_eq!(h.store.refresh_token(PROFILE).as_deref(), Some("rt-2"));
    assert!(!h.store.done().contains(&StoreOp::Save("rt-1".into())), "{:?}", h.store.done());
}

/// Rule: a sign-out always wins over a sign-in completing at the same moment: afterwards neither memory nor the
/// store holds the account, and the request waiting for the sign-in does not get its token.
#[tokio::test(start_paused = true)]
async fn a_sign_out_during_sign_in_completion_wins() {
    let mut h = harness(&config(""), true, false);
    let request = h.request(900);
    h.release(StoreOp::Load).await;
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let poll = h.platform.next().await;
    assert_eq!(poll.asked, Asked::PollDevice { user_code: "CODE-1".into() });
    poll.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
    let save = h.gate().next().await;
    assert_eq!(save.op, StoreOp::Save("rt-1".into()), "the completed sign-in is being written");
    assert_eq!(h.account(), None, "not the profile's account before the store has it");
    assert!(h.signin_pending(), "requests arriving now join the sign-in");

    let signout = h.signout();
    h.settle(|h| h.account().is_none() && !h.signin_pending()).await;
    if let Some(raced) = racing_store_call(h.gate()).await {
        raced.release();
    }
    save.release();
    h.release(StoreOp::Delete).await;
    signout.await.unwrap().unwrap();

    let error = request.await.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninDeclined, "{error:?}");
    assert_eq!(h.account(), None);
    assert_eq!(h.store.refresh_token(PROFILE), None, "{:?}", h.store.done());
}

/// Rule: a claims request asked again of a new slot (a reload carried the account over while its refresh ran)
/// counts the challenges that slot has answered from then on, not those of the slot it left: it joins the new
/// slot's refresh for the same challenge instead of going to the platform once more.
#[tokio::test(start_paused = true)]
async fn a_claims_request_asked_again_after_a_reload_joins_the_new_slots_answer() {
    let mut h = harness(&config(""), false, true);
    let ask = |h: &Harness, nbf: u64| {
        let broker = h.broker.clone();
        let claims = format!(r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{nbf}"}}}}}}"#);
        let claims = crate::idp::ClaimsChallenge::parse(&claims).unwrap();
        let request = TokenRequest { claims, ..TokenRequest::default() };
        tokio::spawn(async move { broker.token(&request).await })
    };
    // Two challenges answered on the first slot: its count is 2.
    for i in 0..2 {
        let request = ask(&h, 1_700_000_000 + i);
        h.platform.next().await.tokens(Ok(tokens(&format!("at-{i}"), Some(&format!("rt-{i}")), USER)));
        request.await.unwrap().unwrap();
    }
    let first = ask(&h, 1_700_000_100);
    let stale = h.platform.next().await;
    let (platform, mut reloaded) = ScriptedPlatform::new();
    assert_eq!(h.broker.reload(&config("min_valid = 60"), platform).changed, [PROFILE]);
    // The same challenge on the new slot: its refresh holds that slot's single flight.
    let second = ask(&h, 1_700_000_100);
    let refresh = reloaded.next().await;
    // The first refresh lands on the retired slot and is dropped; the request asks the new slot and queues.
    stale.tokens(Ok(tokens("at-old", Some("rt-old"), USER)));
    tokio::time::sleep(Duration::from_millis(1)).await;
    refresh.tokens(Ok(tokens("at-new", Some("rt-new"), USER)));
    assert_eq!(token_value(second.await.unwrap()), "at-new");
    let first =
        tokio::time::timeout(Duration::from_secs(600), first).await.expect("answered by the new slot's refresh");
    assert_eq!(token_value(first.unwrap()), "at-new");
    assert!(reloaded.try_next().is_none(), "one refresh on the new slot answered both");
}

//! Bounds on what one client can make the broker hold or do: answers that never wait on the platform when they
//! were asked not to, per-scope-set state that does not grow, and the limit on cache-bypassing `claims`
//! requests.

use super::*;
use crate::broker::entries::MAX_SCOPE_SETS;
use crate::broker::{CLAIMS_BURST, CLAIMS_REFILL};
use crate::idp::ClaimsChallenge;

/// How long, on the paused clock, a request that should answer promptly is given before the test fails (instead
/// of hanging until the watchdog).
const PATIENCE: Duration = Duration::from_secs(600);

/// Rule: a request with `wait=0` is answered at once (no time passes, not even on the paused clock) even while the sign-in's device-code call
/// hangs — `signin_required` without a prompt — and a request with `wait` within its wait; once the prompt is
/// there, the next answer carries it.
#[tokio::test(start_paused = true)]
async fn requests_are_answered_while_the_device_code_is_still_being_fetched() {
    let mut h = harness(&config(""), false, false);
    let started = tokio::time::Instant::now();
    let request = h.request(0);
    let start = h.platform.next().await;
    assert!(matches!(start.asked, Asked::StartDevice { .. }), "{:?}", start.asked);

    let answer = tokio::time::timeout(PATIENCE, request).await.expect("answered without the device code").unwrap();
    let error = answer.unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninRequired, "{error:?}");
    assert_eq!(error.0.reason, Some(SignInReason::NoAccount));
    assert!(error.0.signin.is_none(), "no prompt yet");
    assert_eq!(error.0.retry_after, Some(1), "ask again in a moment");
    assert_eq!(started.elapsed(), Duration::ZERO, "held {:?}", started.elapsed());

    let waiting = h.request(30);
    let error = tokio::time::timeout(PATIENCE, waiting).await.expect("answered within its wait").unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::SigninTimeout, "{error:?}");
    assert!(error.0.signin.is_none());

    start.device(Ok(device_code("CODE-1")));
    let poll = h.platform.next().await;
    assert!(matches!(poll.asked, Asked::PollDevice { .. }), "{:?}", poll.asked);
    let error = h.request(0).await.unwrap().unwrap_err();
    match error.0.signin {
        Some(graphbroker_protocol::SignInPrompt::Device { user_code, .. }) => assert_eq!(user_code, "CODE-1"),
        other => panic!("expected the device prompt, got {other:?}"),
    }
}

/// Rule: per-scope-set state does not grow with the scope sets a client invents: entries whose refresh failed
/// are pruned, and cached tokens stay within [`MAX_SCOPE_SETS`].
#[tokio::test(start_paused = true)]
async fn invented_scope_sets_do_not_grow_the_profiles_state() {
    let mut h = harness(&config(""), false, true);
    let ask = |h: &Harness, i: usize| {
        let broker = h.broker.clone();
        let request = TokenRequest { scopes: Some(vec![format!("api://app/scope{i}")]), ..TokenRequest::default() };
        tokio::spawn(async move { broker.token(&request).await })
    };
    let refused = || PlatformError::Refused { detail: "invalid_scope".into(), codes: vec![70011], hint: None };
    for i in 0..MAX_SCOPE_SETS + 50 {
        let request = ask(&h, i);
        h.platform.next().await.tokens(Err(refused()));
        assert_eq!(request.await.unwrap().unwrap_err().code(), ErrorCode::IdentityProviderError);
        assert!(h.entries() <= 1, "after {i}: {} entries for failed refreshes", h.entries());
    }
    for i in 0..MAX_SCOPE_SETS + 50 {
        let request = ask(&h, i);
        h.platform.next().await.tokens(Ok(tokens(&format!("at-{i}"), Some(&format!("rt-{i}")), USER)));
        request.await.unwrap().unwrap();
    }
    assert_eq!(h.entries(), MAX_SCOPE_SETS, "tokens are kept for at most {MAX_SCOPE_SETS} scope sets");
}

/// Rule: `claims` requests, which bypass the cache, are limited per profile: a burst of [`CLAIMS_BURST`], then
/// one per [`CLAIMS_REFILL`]; over the limit the answer is `rate_limited` with `Retry-After`, and nothing
/// reaches the platform.
#[tokio::test(start_paused = true)]
async fn claims_requests_are_rate_limited_per_profile() {
    let mut h = harness(&config(""), false, true);
    // A new challenge each time: the same one would be answered from the token its first refresh cached.
    let asked = std::sync::atomic::AtomicU64::new(0);
    let ask = |h: &Harness| {
        let broker = h.broker.clone();
        let nbf = 1_700_000_000 + asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let claims = format!(r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{nbf}"}}}}}}"#);
        let request = TokenRequest { claims: ClaimsChallenge::parse(&claims).unwrap(), ..TokenRequest::default() };
        tokio::spawn(async move { broker.token(&request).await })
    };
    for i in 0..CLAIMS_BURST {
        let request = ask(&h);
        let refresh = h.platform.next().await;
        assert!(matches!(&refresh.asked, Asked::Refresh { claims: Some(_), .. }), "{:?}", refresh.asked);
        refresh.tokens(Ok(tokens(&format!("at-{i}"), Some(&format!("rt-{i}")), USER)));
        request.await.unwrap().unwrap();
    }
    let over = tokio::time::timeout(PATIENCE, ask(&h)).await.expect("answered without the platform");
    let error = over.unwrap().unwrap_err();
    assert_eq!(error.code(), ErrorCode::RateLimited, "{error:?}");
    assert_eq!(error.0.retry_after, Some(CLAIMS_REFILL.as_secs()));
    assert!(error.0.message.contains("retry after"), "{}", error.0.message);
    assert!(h.platform.try_next().is_none(), "nothing reached the platform");
    // Requests without claims are served from the cache meanwhile.
    h.request(0).await.unwrap().unwrap();

    tokio::time::advance(CLAIMS_REFILL).await;
    let request = ask(&h);
    h.platform.next().await.tokens(Ok(tokens("at-late", Some("rt-late"), USER)));
    assert_eq!(token_value(request.await.unwrap()), "at-late");
    assert_eq!(ask(&h).await.unwrap().unwrap_err().code(), ErrorCode::RateLimited);
}

/// Rule: single flight covers claims requests. Requests with the same challenge for the same scopes that queue
/// behind one refresh share its token: one refresh, one spend from the budget. A request that comes after that
/// refresh ended shares it only if it names the token it was challenged with and that is another (as the proxy
/// does): the same challenge for the renewed token itself, or from a tool that cannot say, is a new refresh.
#[tokio::test(start_paused = true)]
async fn the_same_challenge_for_the_same_scopes_causes_one_refresh() {
    let mut h = harness(&config(""), false, true);
    let ask = |h: &Harness, nbf: &str, challenged: Option<&str>| {
        let broker = h.broker.clone();
        let claims = format!(r#"{{"access_token":{{"nbf":{{"essential":true,"value":"{nbf}"}}}}}}"#);
        let request = TokenRequest {
            claims: ClaimsChallenge::parse(&claims).unwrap(),
            challenged: challenged.map(secrecy::SecretString::from),
            ..TokenRequest::default()
        };
        tokio::spawn(async move { broker.token(&request).await })
    };
    let together: Vec<_> = (0..6).map(|_| ask(&h, "1700000000", None)).collect();
    let refresh = h.platform.next().await;
    match &refresh.asked {
        Asked::Refresh { claims: Some(claims), .. } => assert!(claims.contains("1700000000"), "{claims}"),
        other => panic!("expected a refresh with the claims, got {other:?}"),
    }
    // Let every request reach the single-flight lock before the refresh answers.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    refresh.tokens(Ok(tokens("at-answer", Some("rt-2"), USER)));
    for request in together {
        let answer = tokio::time::timeout(PATIENCE, request).await.expect("answered by the one refresh");
        assert_eq!(token_value(answer.unwrap()), "at-answer");
    }
    assert!(h.platform.try_next().is_none(), "one refresh answered all six");

    // Late, naming the old token it was challenged with: the renewed token, nothing asked of the platform.
    let late = tokio::time::timeout(PATIENCE, ask(&h, "1700000000", Some("at-before"))).await;
    assert_eq!(token_value(late.expect("answered from the cache").unwrap()), "at-answer");
    assert!(h.platform.try_next().is_none(), "the late request was answered without a refresh");
    // The renewed token itself challenged the same way, or a tool that cannot say which token: a new refresh.
    for (challenged, token) in [(Some("at-answer"), "at-again"), (None, "at-third")] {
        let request = ask(&h, "1700000000", challenged);
        h.platform.next().await.tokens(Ok(tokens(token, Some(&format!("rt-{token}")), USER)));
        assert_eq!(token_value(request.await.unwrap()), token);
    }
    // Three refreshes spent three of the burst: the fourth still goes through, the fifth is refused.
    let request = ask(&h, "1700000100", None);
    h.platform.next().await.tokens(Ok(tokens("at-4", Some("rt-4"), USER)));
    request.await.unwrap().unwrap();
    assert_eq!(ask(&h, "1700000101", None).await.unwrap().unwrap_err().code(), ErrorCode::RateLimited);
}

//! In-process tests of the broker: a scripted platform and scripted stores whose calls wait until the test
//! answers them, on tokio's paused clock. The interleaving tests each state the rule they check.

use std::sync::Arc;
use std::time::Duration;

use graphbroker_protocol::{ErrorCode, SignInReason, StoreKind};
use graphbroker_store::StoreError;
use secrecy::ExposeSecret;

use super::{Broker, IssuedToken, TokenRequest};
use crate::config::Config;
use crate::error::ApiError;
use crate::idp::PlatformError;
use crate::testing::{
    Asked, PlatformScript, ScriptedPlatform, ScriptedStore, ScriptedStores, StoreOp, StoreScript, Watchdog,
    device_code, record, tokens, transient,
};

const PROFILE: &str = "default";
const USER: &str = "adele@contoso.com";

fn config(profile_extra: &str) -> Config {
    let text = format!("[profiles.default]\nflow = \"device\"\n{profile_extra}\n");
    Config::parse(&text, std::path::Path::new("/test/config.toml")).unwrap()
}

struct Harness {
    broker: Arc<Broker>,
    platform: PlatformScript,
    store: Arc<ScriptedStore>,
    /// Present when the keyring store is gated.
    gate: Option<StoreScript>,
    _watchdog: Watchdog,
}

/// A broker on `config` with a scripted platform; the keyring store is gated when `gated`, and holds an account
/// signed in with `rt-0` when `signed_in`.
fn harness(config: &Config, gated: bool, signed_in: bool) -> Harness {
    let (platform, script) = ScriptedPlatform::new();
    let (store, gate) = if gated {
        let (store, gate) = ScriptedStore::gated(StoreKind::Keyring);
        (store, Some(gate))
    } else {
        (ScriptedStore::open(StoreKind::Keyring), None)
    };
    if signed_in {
        store.put(PROFILE, "rt-0", record(&config.profiles[PROFILE], USER));
    }
    let stores = ScriptedStores { keyring: store.clone(), memory: ScriptedStore::open(StoreKind::Memory) };
    let broker = Broker::new(config, platform, Arc::new(stores));
    Harness { broker, platform: script, store, gate, _watchdog: Watchdog::new("broker::tests") }
}

impl Harness {
    /// A token request of the default profile and scopes, running in the background.
    fn request(&self, wait: u64) -> tokio::task::JoinHandle<Result<IssuedToken, ApiError>> {
        let broker = self.broker.clone();
        let request = TokenRequest { wait: Duration::from_secs(wait), ..TokenRequest::default() };
        tokio::spawn(async move { broker.token(&request).await })
    }

    fn signout(&self) -> tokio::task::JoinHandle<Result<graphbroker_protocol::SignoutResponse, ApiError>> {
        let broker = self.broker.clone();
        tokio::spawn(async move { broker.signout(None).await })
    }

    fn gate(&mut self) -> &mut StoreScript {
        self.gate.as_mut().expect("a gated store")
    }

    /// Lets the next store call through, checking it is `op`.
    async fn release(&mut self, op: StoreOp) {
        let call = self.gate().next().await;
        assert_eq!(call.op, op);
        call.release();
    }

    fn account(&self) -> Option<String> {
        self.broker.status().profiles[0].account.as_ref().map(|a| a.username.clone())
    }

    /// The access token cached for the default scopes, if any.
    fn cached_token(&self) -> Option<String> {
        let slot = self.broker.profile_set().slots[PROFILE].clone();
        let mut state = slot.state.lock().unwrap();
        let key = "https://graph.microsoft.com/user.read";
        state.entries.token(key, Duration::ZERO).map(|t| t.access_token.expose_secret().to_owned())
    }

    fn signin_pending(&self) -> bool {
        self.broker.status().profiles[0].signin.is_some()
    }

    /// Runs other tasks until `done` holds (each step lets every ready task run once).
    async fn settle(&self, done: impl Fn(&Self) -> bool) {
        for _ in 0..1000 {
            if done(self) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the broker did not get there");
    }
}

/// Gives a store call racing on another thread a moment to reach the gate. Only the race the rule forbids
/// would use it: with the ordered queue nothing arrives, and the test goes on after the window. Not a timing
/// assertion: nothing depends on how long the window is, only on what arrived in it.
async fn racing_store_call(gate: &mut StoreScript) -> Option<crate::testing::StoreCall> {
    for _ in 0..50 {
        if let Some(call) = gate.try_next() {
            return Some(call);
        }
        std::thread::sleep(Duration::from_millis(4));
        tokio::task::yield_now().await;
    }
    None
}

fn token_value(result: Result<IssuedToken, ApiError>) -> String {
    result.unwrap().access_token.expose_secret().to_owned()
}

// ---- the four interleavings -------------------------------------------------------------------------------

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
    let signin = tokio::spawn(async move { broker.signin(None, None).await });
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

// ---- transitions through the broker -----------------------------------------------------------------------

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

/// Rule: a dead grant forgets the account (memory and store) and starts a sign-in whose reason says so.
#[tokio::test(start_paused = true)]
async fn a_dead_grant_forgets_the_account_and_asks_for_a_sign_in() {
    let mut h = harness(&config(""), false, true);
    let request = h.request(0);
    h.platform.next().await.tokens(Err(PlatformError::AccountDead { detail: "revoked".into(), codes: vec![50173] }));
    h.platform.next().await.device(Ok(device_code("CODE-1")));
    let error = request.await.unwrap().unwrap_err();
    assert_eq!(error.0.reason, Some(SignInReason::SessionExpired));
    assert_eq!(h.store.refresh_token(PROFILE), None);
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
    let start = h.platform.next().await;
    let quick = h.request(0);
    start.device(Ok(device_code("CODE-1")));
    let prompt = quick.await.unwrap().unwrap_err();
    assert_eq!(prompt.code(), ErrorCode::SigninRequired);
    assert!(
        matches!(prompt.0.signin, Some(graphbroker_protocol::SignInPrompt::Device { ref user_code, .. }) if user_code == "CODE-1")
    );
    h.platform.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), USER)));
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

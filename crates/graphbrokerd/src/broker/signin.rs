//! Sign-in on first demand: one sign-in per profile at a time, joined by every request that needs the user.
//!
//! A sign-in is a task ([`run`]) that asks the platform for a prompt (a device code, or a browser URL with its
//! loopback listener), publishes it on a watch channel for every waiting request, waits for the user, checks that
//! the account is the one expected (`expected.rs`), writes it to the store, then makes it the profile's through
//! `ProfileState::complete_signin` and caches its first token — only if the sign-in was not cancelled meanwhile.
//! A browser tab waiting on the loopback redirect is told the outcome only then.
//!
//! The prompt's life is kept on both clocks (`clock.rs`): a sign-in pending while the laptop slept past its code's
//! expiry ends as `signin_expired`, within [`crate::clock::WAKE_CHECK`] of the wake-up, and a request that comes
//! before that ends it itself instead of being handed the dead code ([`SignIn::expired`]). However the task ends
//! (done, cancelled, or a panic in it), its `TaskEnd` guard (`signin_end.rs`) clears the pending sign-in and tells
//! every waiter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use graphbroker_protocol::{EpochSeconds, ErrorCode, SignInFlow, SignInPrompt, SignInReason};
use graphbroker_store::{AccountRecord, StoreError, StoredAccount};
use tokio::sync::watch;

use super::entries::CachedToken;
use super::expected::ExpectedAccount;
use super::persist::{Persisted, StillWanted};
use super::signin_end::{TaskEnd, UserPart, before};
use super::signin_handle::{EndCount, Phase, SignIn, expired_error};
use super::slot::ProfileSlot;
use crate::browser::{self, BrowserSettings, BrowserTab};
use crate::clock::Clock;
use crate::clock::{Deadline, Now};
use crate::error::ApiError;
use crate::idp::{Platform, Tokens};
use crate::metrics::Metrics;
use crate::notify::{Notice, NoticeQueue};
use crate::retry::{DEVICE_POLL, PLATFORM_CALL, retry};
use crate::scopes::ScopeSet;

/// Everything a sign-in task needs.
pub(super) struct Job {
    pub platform: Arc<dyn Platform>,
    pub slot: Arc<ProfileSlot>,
    pub id: u64,
    pub reason: SignInReason,
    pub scopes: ScopeSet,
    pub claims: Option<String>,
    pub flow: SignInFlow,
    pub browser: BrowserSettings,
    /// Started by `POST /v1/signin`: see [`SignIn::make_deliberate`].
    pub deliberate: bool,
    /// Started by a request that shows the prompt on a terminal: see [`SignIn::attend`].
    pub attended: bool,
    /// Where the prompt goes when no terminal shows it; `None` when notifications are off.
    pub notices: Option<NoticeQueue>,
    pub clock: Arc<dyn Clock>,
    /// Told whenever the sign-in ends (for status notifications).
    pub changes: watch::Sender<u64>,
    pub metrics: Arc<Metrics>,
}

/// Starts the sign-in task for `job`; the caller installs the returned handle in the profile's state.
pub(super) fn spawn(job: Job) -> Arc<SignIn> {
    let (tx, rx) = watch::channel(Phase::Starting);
    let tx = Arc::new(tx);
    let (id, reason, scopes_key) = (job.id, job.reason, job.scopes.key().to_owned());
    let deliberate = Arc::new(AtomicBool::new(job.deliberate));
    let ending =
        Arc::new(EndCount { flow: job.flow.into(), metrics: job.metrics.clone(), counted: AtomicBool::new(false) });
    let attended = Arc::new(AtomicBool::new(job.attended));
    let expires = Arc::new(std::sync::OnceLock::new());
    let task =
        tokio::spawn(run(job, deliberate.clone(), attended.clone(), tx.clone(), ending.clone(), expires.clone()));
    Arc::new(SignIn {
        id,
        reason,
        scopes_key,
        phase: rx,
        deliberate,
        attended,
        announce: tx,
        task: task.abort_handle(),
        ending,
        expires,
    })
}

/// The sign-in task: the prompt for the waiting clients, the user's part, then the account is stored and the
/// first token cached.
async fn run(
    job: Job,
    deliberate: Arc<AtomicBool>,
    attended: Arc<AtomicBool>,
    phase: Arc<watch::Sender<Phase>>,
    ending: Arc<EndCount>,
    expires: Arc<std::sync::OnceLock<Deadline>>,
) {
    let slot = job.slot.clone();
    let mut end = TaskEnd {
        slot: slot.clone(),
        id: job.id,
        phase: phase.clone(),
        ending,
        changes: job.changes.clone(),
        result: None,
    };
    let result = async {
        let (tokens, tab) = user_part(&job, &phase, &attended, &expires).await.map_err(|e| match e {
            UserPart::Platform(e) => ApiError::from_platform(e, &slot.profile.name),
            UserPart::Expired => expired_error(),
        })?;
        let now = job.clock.read();
        let result = complete(&slot, job.id, &job.scopes, tokens, &deliberate, now).await;
        if let Some(tab) = tab {
            tab.answer(result.as_ref().map(|_| ()).map_err(|e| e.0.message.clone()));
        }
        result
    }
    .await;
    match &result {
        Ok(()) => tracing::info!(profile = %slot.profile.name, "sign-in complete"),
        Err(e) => tracing::warn!(profile = %slot.profile.name, "sign-in failed: {}", e.0.message),
    }
    end.result = Some(result);
}

/// The prompt and the user's part of the flow, up to the tokens (and, for a browser sign-in, the tab waiting to
/// be told how it ended).
async fn user_part(
    job: &Job,
    phase: &watch::Sender<Phase>,
    attended: &AtomicBool,
    expires: &std::sync::OnceLock<Deadline>,
) -> Result<(Tokens, Option<BrowserTab>), UserPart> {
    let profile = &job.slot.profile;
    // The notification is decided (and queued) before the prompt is published, so that once a request sees the
    // prompt, whether it went to the desktop is settled.
    let publish = |prompt: SignInPrompt, deadline: Deadline| {
        let _ = expires.set(deadline);
        if let Some(notices) = &job.notices {
            if attended.load(Ordering::SeqCst) {
                tracing::debug!(profile = %profile.name, "a terminal shows the prompt; no notification");
            } else {
                notices.push(Notice::signin(&profile.name, &prompt));
            }
        }
        phase.send_replace(Phase::Prompt(prompt));
    };
    let platform = job.platform.as_ref();
    let claims = job.claims.as_deref();
    match job.flow {
        SignInFlow::Browser => {
            let signin = browser::start(platform, profile, &job.scopes, claims, &job.browser).await?;
            let deadline = job.clock.read().deadline(job.browser.timeout);
            publish(SignInPrompt::Browser { url: signin.url.clone(), expires_at: wall_expiry(deadline) }, deadline);
            tracing::info!(profile = %profile.name, port = signin.port, "waiting for the browser sign-in");
            browser::open_browser(&signin.launch_url, &job.browser);
            let (tokens, tab) = before(&*job.clock, deadline, signin.finish(platform, profile, &job.scopes)).await?;
            Ok((tokens, Some(tab)))
        }
        SignInFlow::Device | SignInFlow::Auto => {
            let code = retry(PLATFORM_CALL, || platform.start_device(profile, &job.scopes, claims)).await?;
            // `expires_in` is bounded (`idp::bounds`), so is this deadline.
            let deadline = job.clock.read().deadline(code.expires_in);
            publish(
                SignInPrompt::Device {
                    verification_uri: code.verification_uri.clone(),
                    user_code: code.user_code.clone(),
                    message: code.message.clone(),
                    expires_at: wall_expiry(deadline),
                },
                deadline,
            );
            tracing::info!(profile = %profile.name, verification_uri = %code.verification_uri, "waiting for the user to complete the sign-in");
            // An outage while the user is signing in must not cost the sign-in: poll again while the code lives,
            // and not past its life on either clock (a laptop may sleep through it).
            let poll = retry(DEVICE_POLL.within(code.expires_in), || platform.poll_device(profile, &code));
            let tokens = before(&*job.clock, deadline, poll).await?;
            Ok((tokens, None))
        }
    }
}

/// A prompt's `expires_at`: the wall-clock side of its deadline.
fn wall_expiry(deadline: Deadline) -> EpochSeconds {
    EpochSeconds::from_system_time(deadline.wall)
}

/// Makes the signed-in account the profile's, if it is the account expected (or the sign-in is `deliberate`):
/// written to the store, then in memory (if the sign-in is still the profile's), then its first token cached.
async fn complete(
    slot: &Arc<ProfileSlot>,
    signin_id: u64,
    scopes: &ScopeSet,
    tokens: Tokens,
    deliberate: &AtomicBool,
    now: Now,
) -> Result<(), ApiError> {
    let Some(refresh_token) = tokens.refresh_token else {
        return Err(ApiError::new(
            ErrorCode::IdentityProviderError,
            "the identity platform issued no refresh token (offline_access was refused); check the app registration's permissions",
        ));
    };
    let profile = &slot.profile;
    {
        let state = slot.state.lock().expect("state lock");
        if !deliberate.load(Ordering::SeqCst) {
            let expected =
                ExpectedAccount { stored: state.expected_record(), login_hint: profile.login_hint.as_deref() };
            if let Err(refused) = expected.check(tokens.identity.as_ref()) {
                tracing::warn!(profile = %profile.name, "{}", refused.0.message);
                return Err(refused);
            }
        }
    }
    let identity = tokens.identity.unwrap_or(crate::idp::Identity {
        username: "unknown".into(),
        home_account_id: String::new(),
        tenant_id: String::new(),
    });
    let granted = scopes.granted_from_response(&tokens.granted, &profile.graph_resource);
    let record = AccountRecord {
        username: identity.username,
        home_account_id: identity.home_account_id,
        tenant_id: identity.tenant_id,
        authority: profile.authority.to_string(),
        client_id: profile.client_id.clone(),
        granted_scopes: granted.clone(),
        refreshed_at: Some(EpochSeconds::from_system_time(now.wall)),
        session_ended: None,
    };
    let first =
        CachedToken::issued(tokens.access_token, granted, tokens.expires_in, tokens.refresh_in, profile.min_valid, now);
    let cancelled = || {
        ApiError::new(
            ErrorCode::SigninDeclined,
            "the sign-in was cancelled before it completed; ask again to start a new one",
        )
    };
    let account = StoredAccount { refresh_token, account: record };
    // Written first, queued while the sign-in is still the profile's: a sign-out that cancels it meanwhile queues
    // its delete after this write (or finds the write dropped, if its turn had not come).
    let written = {
        let state = slot.state.lock().expect("state lock");
        if !state.signin_is(signin_id) {
            return Err(cancelled());
        }
        slot.persistence.save(&profile.name, account.clone(), signin_still_current(slot, signin_id))
    };
    let result = written
        .await
        .unwrap_or_else(|_| Some(Err(StoreError::Failed { message: "the keychain queue stopped".into() })));
    let Some(result) = result else { return Err(cancelled()) };
    let persisted = match &result {
        Ok(()) => Persisted::Saved,
        Err(e) => Persisted::Failed { error: e.to_string() },
    };
    let mut state = slot.state.lock().expect("state lock");
    if !state.complete_signin(signin_id, account, persisted) {
        return Err(cancelled());
    }
    match result {
        Ok(()) => {
            let generation = state.generation;
            state.cache(generation, scopes.key(), first);
            Ok(())
        }
        Err(e) => {
            // The account is kept in memory, unsaved: nothing is served until a write succeeds.
            tracing::error!(profile = %profile.name, "could not save the refresh token: {e}");
            Err(ApiError::new(ErrorCode::KeychainUnavailable, e.to_string()))
        }
    }
}

/// A check for the store queue: is `signin_id` still the sign-in of `slot`?
fn signin_still_current(slot: &Arc<ProfileSlot>, signin_id: u64) -> StillWanted {
    let slot = Arc::downgrade(slot);
    Box::new(move || slot.upgrade().is_some_and(|slot| slot.state.lock().expect("state lock").signin_is(signin_id)))
}

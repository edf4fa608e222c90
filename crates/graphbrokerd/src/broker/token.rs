//! The request path of `GET /v1/token` and `/v1/header`: the cache, the single flight per scope set, the
//! refresh, the refresh ahead of expiry, and the sign-in when the silent path cannot get a token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use graphbroker_protocol::{AccountInfo, AuditOutcome, EpochSeconds, ErrorCode, SignInReason};
use graphbroker_store::AccountRecord;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::entries::CachedToken;
use super::lifecycle::{RefreshGrant, Refusal, Stale};
use super::slot::ProfileSlot;
use super::{Broker, SignInRequest};
use crate::clock::Now;
use crate::config::Profile;
use crate::error::ApiError;
use crate::idp::{ClaimsChallenge, PlatformError, Tokens, request_claims};
use crate::metrics::RefreshOutcome;
use crate::retry::{PLATFORM_CALL, retry};
use crate::scopes::ScopeSet;

/// The longest a request may be held waiting for a sign-in: a device code lives 15 minutes.
pub const MAX_WAIT: Duration = Duration::from_secs(900);
/// How many rounds one request may go through: a first sign-in, then consent for its own scopes, and a retry
/// after its refresh came back for an account that had changed meanwhile.
const MAX_ROUNDS: usize = 3;

/// A token request, validated: what the server hands the broker.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The profile; the default profile when `None`.
    pub profile: Option<String>,
    /// The scopes asked for, split; the profile's default scopes when `None`.
    pub scopes: Option<Vec<String>>,
    /// How long the token must still be valid; the profile's `min_valid` when `None`.
    pub min_valid: Option<Duration>,
    /// How long to hold the request while a sign-in is needed or under way (at most [`MAX_WAIT`]).
    pub wait: Duration,
    /// A claims challenge from a resource: bypasses the cache, and goes to the platform with the request.
    pub claims: Option<ClaimsChallenge>,
    /// The access token the resource challenged, when the asker knows it (the Graph proxy does): a token
    /// fetched for the same challenge that is not this one answers it without another refresh.
    pub challenged: Option<SecretString>,
    /// The asker shows a sign-in's prompt on a terminal (`graphbroker_protocol::TERMINAL_HEADER`), so it needs no
    /// desktop notification.
    pub attended: bool,
}

/// A token ready to hand out: the cached token itself, shared with the cache and every other hit (never
/// copied), with its time left as of the request.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token, its scopes, and its serialized answers (`SharedAnswers`, made by the server's first hit).
    pub token: Arc<CachedToken>,
    pub expires_at: SystemTime,
    pub expires_in: Duration,
    /// The profile as configured when the token was issued: its name, and its `graph_url` for the proxy, from the
    /// same configuration as the token (a reload meanwhile does not pair one config's Graph with another's token).
    pub profile: Arc<Profile>,
    /// The account the token belongs to, shared with the profile's state as it was when the token was issued.
    pub record: Arc<AccountRecord>,
}

impl IssuedToken {
    pub fn access_token(&self) -> &SecretString {
        &self.token.access_token
    }

    /// What the answer says of the account the token belongs to.
    pub fn account(&self) -> AccountInfo {
        super::account_info(&self.record)
    }

    /// The account's sign-in name.
    pub fn username(&self) -> &str {
        &self.record.username
    }

    /// The resource-qualified scopes the token carries.
    pub fn scopes(&self) -> &[String] {
        &self.token.scopes
    }
}

/// What the silent path (cache, then refresh token) came to.
pub(super) enum SilentOutcome {
    /// A token; `refresh_ahead` when it came from the cache and is due for a background refresh (this request
    /// has claimed that refresh).
    Token {
        token: IssuedToken,
        refresh_ahead: bool,
    },
    NeedSignIn {
        reason: SignInReason,
        claims: Option<String>,
    },
    /// The account changed (sign-out, new sign-in, reload) while a refresh ran; its result was dropped.
    /// Asking again uses the current account.
    Stale,
    /// A rolling refresh found the refresh token used since it decided to refresh: nothing to do.
    NotDue,
}

impl From<Stale> for SilentOutcome {
    fn from(Stale: Stale) -> Self {
        SilentOutcome::Stale
    }
}

/// Which token the silent path may answer with: a cached one, a new one, one fetched for a claims challenge, or
/// (the rolling refresh) a new one only if nobody refreshed meanwhile.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wanted<'a> {
    /// A cached token with `min_valid` left will do.
    Cached,
    /// A new token, fetched now (the refresh ahead of expiry).
    Renew,
    /// A token fetched for this claims challenge: the one a refresh for the same challenge cached since this
    /// request arrived (`seen` answers before), or that is not the `challenged` token (single flight for claims),
    /// else a new one.
    Challenge { seen: u64, challenged: Option<&'a str> },
    /// The rolling refresh: a new token, unless the refresh token has been used after `idle_since` (by a request
    /// that refreshed while this one waited for the single flight).
    Idle { idle_since: SystemTime },
}

/// What one request resolves to against the profile slot it is served from.
struct Resolved {
    slot: Arc<ProfileSlot>,
    scopes: Arc<ScopeSet>,
    min_valid: Duration,
    /// With a claims challenge, how many challenges this slot had answered when the request resolved to it
    /// (`Wanted::Challenge`): read from the same slot it is later compared on, a reloaded one included.
    challenges_seen: u64,
}

impl Broker {
    /// Serves `GET /v1/token` and `/v1/header`.
    pub async fn token(self: &Arc<Self>, request: &TokenRequest) -> Result<IssuedToken, ApiError> {
        // Errors are counted where they are answered (the server), by their code.
        self.metrics.token_request();
        let result = self.token_inner(request).await;
        self.audit(request, &result);
        result
    }

    /// The request against the profile's current slot.
    fn resolve(&self, request: &TokenRequest) -> Result<Resolved, ApiError> {
        let slot = self.slot(request.profile.as_deref())?;
        let profile = &slot.profile;
        let requested = request.scopes.as_deref().unwrap_or(&profile.scopes);
        let scopes = slot
            .recent_scopes
            .normalize(requested)
            .map_err(|e| ApiError::new(ErrorCode::InvalidScopes, e.to_string()))?;
        let min_valid = request.min_valid.unwrap_or(profile.min_valid);
        let challenges_seen = match request.claims {
            Some(_) => slot.state.lock().expect("state lock").entries.challenges_answered(),
            None => 0,
        };
        Ok(Resolved { slot, scopes, min_valid, challenges_seen })
    }

    /// The request, top to bottom: the profile's slot and the scopes, the policy, then the cache; only a miss (or
    /// a claims challenge, which bypasses the cache) goes on to [`Broker::fetch`].
    async fn token_inner(self: &Arc<Self>, request: &TokenRequest) -> Result<IssuedToken, ApiError> {
        let started = Instant::now();
        let resolved = self.resolve(request)?;
        self.authorize(&resolved.slot.profile, &resolved.scopes).await?;
        if request.claims.is_none() {
            let Resolved { slot, scopes, min_valid, .. } = &resolved;
            self.ensure_loaded(slot).await?;
            self.ensure_saved(slot).await?;
            if let Some((token, refresh_ahead)) = self.cached(slot, scopes, *min_valid) {
                if refresh_ahead {
                    self.refresh_ahead(slot.clone(), scopes.clone());
                }
                return Ok(token);
            }
        }
        // Boxed: the slow path's state (the refresh, the sign-in's wait) is large, and a hit should not move it.
        Box::pin(self.fetch(request, resolved, started)).await
    }

    /// A miss: the single flight, the refresh, and the sign-in when the refresh cannot do, each round against the
    /// profile's current slot.
    async fn fetch(
        self: &Arc<Self>,
        request: &TokenRequest,
        mut resolved: Resolved,
        started: Instant,
    ) -> Result<IssuedToken, ApiError> {
        let challenged = request.challenged.as_ref().map(|t| t.expose_secret());
        // After a sign-in, the token it cached answers the request (and the challenge's claims, which it sent).
        let mut signed_in = false;
        for _ in 0..MAX_ROUNDS {
            let Resolved { slot, scopes, min_valid, challenges_seen } = &resolved;
            // The `claims` parameter for the platform (the challenge merged with `cp1`): made on a miss only, a
            // cache hit never sends it.
            let platform_claims = request_claims(request.claims.as_ref(), slot.profile.cae);
            let wanted = match request.claims {
                Some(_) if !signed_in => Wanted::Challenge { seen: *challenges_seen, challenged },
                _ => Wanted::Cached,
            };
            match self.silent(slot, scopes, *min_valid, platform_claims.as_deref(), wanted).await? {
                SilentOutcome::Token { token, refresh_ahead } => {
                    if refresh_ahead {
                        self.refresh_ahead(slot.clone(), scopes.clone());
                    }
                    return Ok(token);
                }
                // The profile may have been reloaded: ask again of its current slot.
                SilentOutcome::Stale | SilentOutcome::NotDue => resolved = self.resolve(request)?,
                SilentOutcome::NeedSignIn { reason, claims } => {
                    let signin_claims = match claims {
                        Some(platform) => {
                            let challenge = ClaimsChallenge::parse(&platform).ok().flatten();
                            request_claims(challenge.as_ref(), slot.profile.cae)
                        }
                        None => platform_claims.clone(),
                    };
                    let ask = SignInRequest {
                        reason,
                        scopes,
                        claims: signin_claims,
                        flow: None,
                        deliberate: false,
                        attended: request.attended,
                    };
                    match self.start_or_join_signin(slot, ask)? {
                        Some(signin) => {
                            let remaining = request.wait.saturating_sub(started.elapsed());
                            signin.wait(remaining, self.shutdown.subscribe()).await?;
                            crate::policy::context::note(AuditOutcome::SignedIn);
                            signed_in = true;
                        }
                        None => resolved = self.resolve(request)?,
                    }
                }
            }
        }
        Err(ApiError::internal("the sign-in completed but no token could be issued for these scopes; ask again"))
    }

    /// Cache, then refresh token. Never starts a sign-in itself.
    pub(super) async fn silent(
        &self,
        slot: &Arc<ProfileSlot>,
        scopes: &ScopeSet,
        min_valid: Duration,
        claims: Option<&str>,
        wanted: Wanted<'_>,
    ) -> Result<SilentOutcome, ApiError> {
        self.ensure_loaded(slot).await?;
        self.ensure_saved(slot).await?;
        // A hit before the flight is `token_inner`'s: here the cache is read once the flight is held.
        let from_cache = matches!(wanted, Wanted::Cached);
        let flight = slot.state.lock().expect("state lock").entries.flight(scopes.key());
        let _flight = flight.lock().await;
        if from_cache && let Some((token, refresh_ahead)) = self.cached(slot, scopes, min_valid) {
            return Ok(SilentOutcome::Token { token, refresh_ahead });
        }
        if let Wanted::Idle { idle_since } = wanted {
            let state = slot.state.lock().expect("state lock");
            let used = state.record().and_then(|r| r.refreshed_at).is_some_and(|at| at.to_system_time() > idle_since);
            if used {
                return Ok(SilentOutcome::NotDue);
            }
        }
        let challenge = match wanted {
            Wanted::Challenge { seen, challenged } => claims.map(|claims| (claims, seen, challenged)),
            Wanted::Cached | Wanted::Renew | Wanted::Idle { .. } => None,
        };
        if let Some((claims, seen, challenged)) = challenge {
            if let Some(token) = self.answered(slot, scopes, claims, seen, challenged, min_valid) {
                return Ok(SilentOutcome::Token { token, refresh_ahead: false });
            }
            // Only a request that goes to the platform spends from the budget: those that joined a refresh
            // for the same challenge cost the platform nothing.
            let spent = slot.claims_budget.lock().expect("claims budget lock").take();
            spent.map_err(|retry_after| ApiError::claims_rate_limited(&slot.profile.name, retry_after))?;
        }
        let (grant, pending) = {
            let state = slot.state.lock().expect("state lock");
            let pending = state.signin.as_ref().filter(|s| s.scopes_key == scopes.key()).map(|s| s.reason);
            (state.grant(), pending)
        };
        // The user is already being asked for these scopes (the last refresh for them wanted the user): join
        // that sign-in. Refreshing again would only fetch the same refusal, once per waiting client's poll.
        if let (Some(reason), RefreshGrant::Ready { .. }) = (pending, &grant) {
            return Ok(SilentOutcome::NeedSignIn { reason, claims: None });
        }
        let (refresh_token, generation) = match grant {
            RefreshGrant::Ready { refresh_token, generation } => (refresh_token, generation),
            RefreshGrant::NeedSignIn(reason) => return Ok(SilentOutcome::NeedSignIn { reason, claims: None }),
            RefreshGrant::Retired => return Ok(SilentOutcome::Stale),
        };
        tracing::debug!(profile = %slot.profile.name, scopes = %scopes, "refreshing access token");
        let platform = self.platform();
        let outcome = retry(PLATFORM_CALL, || platform.refresh(&slot.profile, &refresh_token, scopes, claims)).await;
        self.metrics.refreshed(match &outcome {
            Ok(_) => RefreshOutcome::Ok,
            Err(PlatformError::AccountDead { .. } | PlatformError::NeedsUser { .. }) => RefreshOutcome::SigninNeeded,
            Err(PlatformError::Transient { .. }) => RefreshOutcome::Unavailable,
            Err(_) => RefreshOutcome::Error,
        });
        match outcome {
            Ok(tokens) => {
                let answered = challenge.map(|(claims, ..)| claims);
                self.save_and_cache(slot, scopes, tokens, generation, answered).await
            }
            Err(PlatformError::AccountDead { detail, codes }) => {
                tracing::info!(profile = %slot.profile.name, "refresh token is no longer valid ({detail}); signing in again");
                self.end_session(slot, generation, codes).await;
                Ok(SilentOutcome::NeedSignIn { reason: SignInReason::SessionExpired, claims: None })
            }
            Err(PlatformError::NeedsUser { reason, claims, detail, codes }) => {
                tracing::info!(profile = %slot.profile.name, scopes = %scopes, "the platform wants the user: {detail}");
                let mut state = slot.state.lock().expect("state lock");
                if state.generation == generation {
                    let at = EpochSeconds::from_system_time(self.clock.now());
                    state.refusal = Some(Refusal { at, reason, error_codes: codes });
                }
                drop(state);
                Ok(SilentOutcome::NeedSignIn { reason, claims })
            }
            Err(other) => Err(ApiError::from_platform(other, &slot.profile.name)),
        }
    }

    /// The token a refresh for the same challenge cached (see `ScopeEntries::answered`).
    fn answered(
        &self,
        slot: &ProfileSlot,
        scopes: &ScopeSet,
        claims: &str,
        seen: u64,
        challenged: Option<&str>,
        min_valid: Duration,
    ) -> Option<IssuedToken> {
        let mut state = slot.state.lock().expect("state lock");
        let token = state.entries.answered(scopes.key(), claims, seen, challenged, min_valid)?;
        let now = state.entries.now();
        let issued = issued(&slot.profile, state.shared_record()?, token, now);
        self.metrics.cache_hit();
        Some(issued)
    }

    /// A cache hit, and whether this caller should start the token's background refresh.
    fn cached(&self, slot: &ProfileSlot, scopes: &ScopeSet, min_valid: Duration) -> Option<(IssuedToken, bool)> {
        let mut state = slot.state.lock().expect("state lock");
        let (token, now, refresh_ahead) = state.entries.hit(scopes.key(), min_valid)?;
        // The account is read in place under the lock: a hit copies only what the answer says of it.
        let issued = issued(&slot.profile, state.shared_record()?, token, now);
        drop(state);
        self.metrics.cache_hit();
        crate::policy::context::note(AuditOutcome::Cache);
        Some((issued, refresh_ahead))
    }

    /// Refreshes a token that is still being served, so that a hot client never waits on the network. The caller
    /// has claimed the refresh (`ScopeEntries::claim_refresh_ahead`); the claim is released however the task ends
    /// ([`RefreshAheadClaim`]). Failures are left to the next request that needs a refresh, which reports them.
    pub(super) fn refresh_ahead(self: &Arc<Self>, slot: Arc<ProfileSlot>, scopes: Arc<ScopeSet>) {
        let broker = self.clone();
        tokio::spawn(async move {
            let _claim = RefreshAheadClaim { slot: slot.clone(), key: scopes.key().to_owned() };
            tracing::debug!(profile = %slot.profile.name, scopes = %scopes, "refreshing ahead of expiry");
            let claims = request_claims(None, slot.profile.cae);
            let outcome = broker.silent(&slot, &scopes, Duration::ZERO, claims.as_deref(), Wanted::Renew).await;
            match outcome {
                Ok(SilentOutcome::Token { .. } | SilentOutcome::Stale | SilentOutcome::NotDue) => {}
                Ok(SilentOutcome::NeedSignIn { reason, .. }) => {
                    tracing::info!(profile = %slot.profile.name, ?reason, "refresh ahead found that a sign-in is needed")
                }
                Err(e) => tracing::warn!(profile = %slot.profile.name, "refresh ahead failed: {}", e.0.message),
            }
        });
    }

    /// Persists the rotated refresh token (`ProfileState::accept_refresh`, then the write), then caches and returns
    /// the access token. `answered`: the platform claims of the challenge this refresh answered.
    async fn save_and_cache(
        &self,
        slot: &Arc<ProfileSlot>,
        scopes: &ScopeSet,
        tokens: Tokens,
        generation: u64,
        answered: Option<&str>,
    ) -> Result<SilentOutcome, ApiError> {
        let profile = &slot.profile;
        let granted = scopes.granted_from_response(&tokens.granted, &profile.graph_resource);
        let now = self.clock.read();
        let token = Arc::new(CachedToken::issued(
            tokens.access_token,
            granted,
            tokens.expires_in,
            tokens.refresh_in,
            profile.min_valid,
            now,
        ));
        let queued = {
            let mut state = slot.state.lock().expect("state lock");
            match state.accept_refresh(generation, tokens.refresh_token, self.clock.now()) {
                Err(stale) => return Ok(stale.into()),
                Ok(write) => write.map(|write| slot.queue_write(write)),
            }
        };
        if let Some(queued) = queued {
            slot.finish_write(queued).await?;
        }
        let mut state = slot.state.lock().expect("state lock");
        if state.record().is_none() || !state.cache(generation, scopes.key(), token.clone()) {
            return Ok(SilentOutcome::Stale);
        }
        if let Some(claims) = answered {
            state.entries.note_answered(scopes.key(), claims);
        }
        let Some(record) = state.shared_record() else { return Ok(SilentOutcome::Stale) };
        let token = issued(profile, record, token, now);
        crate::policy::context::note(AuditOutcome::Refreshed);
        Ok(SilentOutcome::Token { token, refresh_ahead: false })
    }
}

/// A claimed background refresh of one scope set, released when dropped: when the refresh ends, and also when its
/// task panics or is dropped, so that the scope set is refreshed ahead again later.
struct RefreshAheadClaim {
    slot: Arc<ProfileSlot>,
    key: String,
}

impl Drop for RefreshAheadClaim {
    fn drop(&mut self) {
        // A panic elsewhere may have poisoned the lock; releasing the mark is still right.
        let mut state = self.slot.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.entries.release_refresh_ahead(&self.key);
    }
}

/// The token as handed out at `now`: its time left and expiry as of then (`CachedToken::expires_at`).
fn issued(profile: &Arc<Profile>, record: &Arc<AccountRecord>, token: Arc<CachedToken>, now: Now) -> IssuedToken {
    IssuedToken {
        expires_in: token.remaining(now),
        expires_at: token.expires_at(now),
        token,
        profile: profile.clone(),
        record: record.clone(),
    }
}

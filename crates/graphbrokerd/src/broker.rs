//! The broker: per-profile token lifecycle — cache, single-flight refresh, sign-in on first demand, persistence.
//!
//! # State machine of one profile
//!
//! [`ProfileState`] holds:
//! - `account`: [`AccountState::Unloaded`] until the store has been read (or while it cannot be),
//!   [`AccountState::Empty`] when no one is signed in, [`AccountState::Active`] with the refresh token (memory
//!   copy of the keychain entry) and the account record.
//! - `signin`: the sign-in under way, if any. It runs beside `Active` too (consent or MFA for one request keeps
//!   the account for everything else). All requests that need the user join the one sign-in.
//! - `cache`: access tokens by scope set.
//! - `generation`: bumped whenever the account changes (sign-in completes, sign-out, dead grant). A refresh
//!   that started under an older generation does not write its result back, so a refresh finishing after a
//!   sign-out cannot resurrect the account.
//! - `unsaved`: the refresh token in memory has not reached the store (the keychain was unavailable). No token
//!   is served until it has, so a restart never loses a sign-in the user was told succeeded.
//!
//! Ordering rule: a rotated refresh token is written to the store before the access token that came with it is
//! handed out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use graphbroker_protocol::{
    AccountInfo, CachedTokenStatus, Counters, ErrorCode, ProfileStatus, SignInFlow, SignInPrompt, SignInReason,
    SignInResponse, SignInState, SignoutResponse, StatusResponse, StoreKind, TokenQuery,
};
use graphbroker_store::{AccountRecord, KeyringStore, MemoryStore, SecretStore, StoreError, StoredAccount};
use secrecy::SecretString;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::browser::{self, BrowserSettings};
use crate::cache::{CachedToken, TokenCache};
use crate::config::{Config, Profile};
use crate::error::ApiError;
use crate::idp::{Failure, IdentityPlatform, Tokens, request_claims};
use crate::scopes::ScopeSet;

/// The longest a request may be held waiting for a sign-in: a device code lives 15 minutes.
pub const MAX_WAIT: Duration = Duration::from_secs(900);
/// How many transient failures a device-code poll rides out before the sign-in is given up.
const MAX_TRANSIENT_POLLS: u64 = 5;
/// How many sign-in rounds one request may go through (first sign-in, then consent for its own scopes).
const MAX_ROUNDS: usize = 3;

/// A token ready to hand out.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: SecretString,
    pub scopes: Vec<String>,
    pub expires_at: SystemTime,
    pub expires_in: Duration,
    pub profile: String,
    pub account: AccountInfo,
}

/// Where the account of a profile stands. See the module docs.
#[derive(Debug)]
enum AccountState {
    Unloaded,
    Empty,
    Active { refresh_token: SecretString, record: AccountRecord },
}

#[derive(Debug)]
struct ProfileState {
    generation: u64,
    account: AccountState,
    cache: TokenCache,
    signin: Option<Arc<SignIn>>,
    store_error: Option<String>,
    unsaved: bool,
}

/// One configured profile and its live state.
#[derive(Debug)]
struct ProfileSlot {
    profile: Profile,
    store: Arc<dyn SecretStore>,
    state: Mutex<ProfileState>,
    /// Single-flight locks per scope-set key: concurrent misses for one key make one platform request.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Scope-set keys with a background refresh under way, so a hot key starts one, not one per hit.
    refreshing_ahead: Mutex<std::collections::HashSet<String>>,
}

impl ProfileSlot {
    fn new(profile: Profile, keyring: &Arc<dyn SecretStore>, memory: &Arc<dyn SecretStore>) -> Self {
        let store = match profile.store {
            StoreKind::Keyring => keyring.clone(),
            StoreKind::Memory => memory.clone(),
        };
        Self {
            profile,
            store,
            state: Mutex::new(ProfileState {
                generation: 0,
                account: AccountState::Unloaded,
                cache: TokenCache::default(),
                signin: None,
                store_error: None,
                unsaved: false,
            }),
            flights: Mutex::new(HashMap::new()),
            refreshing_ahead: Mutex::new(Default::default()),
        }
    }

    /// A slot for `profile` (same identity as this one) that keeps this slot's account and drops its cached
    /// tokens, which may have been issued under settings that no longer hold. A sign-in under way is cancelled:
    /// its result would land in the old slot.
    fn carry_over(&self, profile: Profile) -> Self {
        self.cancel_signin();
        let mut old = self.state.lock().expect("state lock");
        let account = match &old.account {
            AccountState::Active { refresh_token, record } => {
                AccountState::Active { refresh_token: refresh_token.clone(), record: record.clone() }
            }
            AccountState::Empty => AccountState::Empty,
            AccountState::Unloaded => AccountState::Unloaded,
        };
        // Requests still holding the old slot must not write a refresh result back into it as if current.
        old.generation += 1;
        Self {
            profile,
            store: self.store.clone(),
            state: Mutex::new(ProfileState {
                generation: old.generation,
                account,
                cache: TokenCache::default(),
                signin: None,
                store_error: old.store_error.clone(),
                unsaved: old.unsaved,
            }),
            flights: Mutex::new(HashMap::new()),
            refreshing_ahead: Mutex::new(Default::default()),
        }
    }

    /// Stops the sign-in under way; the requests waiting for it are told it was cancelled.
    fn cancel_signin(&self) {
        if let Some(signin) = self.state.lock().expect("state lock").signin.take() {
            signin.task.abort();
            signin.announce.send_replace(Phase::Done(Err(ApiError::new(
                ErrorCode::SigninDeclined,
                "the sign-in was cancelled (signed out, or the profile's settings changed); ask again to start a new one",
            ))));
        }
    }
}

/// Whether two versions of a profile sign in to the same place as the same app, so an account carries over.
fn same_identity(a: &Profile, b: &Profile) -> bool {
    a.authority == b.authority && a.client_id == b.client_id && a.store == b.store
}

/// A sign-in under way; every request that needs the user waits on `phase`.
#[derive(Debug)]
struct SignIn {
    id: u64,
    reason: SignInReason,
    phase: watch::Receiver<Phase>,
    /// The task's sender too, so that cancelling can still tell the waiting requests why.
    announce: Arc<watch::Sender<Phase>>,
    task: tokio::task::AbortHandle,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Asking the platform for a device code.
    Starting,
    /// Waiting for the user.
    Prompt(SignInPrompt),
    /// Over: the account is signed in, or why not.
    Done(Result<(), ApiError>),
}

/// What the silent path (cache, then refresh token) came to.
enum Silent {
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
}

#[derive(Debug, Default)]
struct AtomicCounters {
    requests: AtomicU64,
    cache_hits: AtomicU64,
    refreshes: AtomicU64,
    signins: AtomicU64,
    errors: AtomicU64,
}

/// The configured profiles, replaced as a whole when the config is reloaded.
#[derive(Debug)]
struct ProfileSet {
    default_profile: String,
    slots: BTreeMap<String, Arc<ProfileSlot>>,
    keyring: Arc<dyn SecretStore>,
    memory: Arc<dyn SecretStore>,
    keyring_service: String,
    browser: BrowserSettings,
}

/// The broker shared by every connection.
#[derive(Debug)]
pub struct Broker {
    profiles: std::sync::RwLock<Arc<ProfileSet>>,
    idp: std::sync::RwLock<IdentityPlatform>,
    counters: AtomicCounters,
    next_signin: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Bumped whenever an account or a sign-in changes, for whoever reports the daemon's state (sd_notify).
    changes: watch::Sender<u64>,
}

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Settings changed; the account stays (same tenant and client id), cached tokens are dropped.
    pub changed: Vec<String>,
    /// Tenant, authority, client id or store changed: the profile starts over (its stored account is read again
    /// and used only if it matches).
    pub replaced: Vec<String>,
}

impl Broker {
    /// A broker for `config`. Accounts are read from the stores by [`Broker::load_accounts`].
    pub fn new(config: &Config, idp: IdentityPlatform) -> Arc<Self> {
        let keyring: Arc<dyn SecretStore> = Arc::new(KeyringStore::new(config.keyring_service.clone()));
        let memory: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
        let slots = config
            .profiles
            .iter()
            .map(|(name, profile)| (name.clone(), Arc::new(ProfileSlot::new(profile.clone(), &keyring, &memory))))
            .collect();
        let profiles = ProfileSet {
            default_profile: config.default_profile.clone(),
            slots,
            keyring,
            memory,
            keyring_service: config.keyring_service.clone(),
            browser: browser_settings(config),
        };
        Arc::new(Self {
            profiles: std::sync::RwLock::new(Arc::new(profiles)),
            idp: std::sync::RwLock::new(idp),
            counters: AtomicCounters::default(),
            next_signin: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            changes: watch::Sender::new(0),
        })
    }

    fn profile_set(&self) -> Arc<ProfileSet> {
        self.profiles.read().expect("profiles lock").clone()
    }

    fn idp(&self) -> IdentityPlatform {
        self.idp.read().expect("idp lock").clone()
    }

    /// Subscribes to state changes (accounts signed in or out, sign-ins started or ended, reloads).
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Applies a reloaded config. Profiles whose tenant, authority, client id and store are unchanged keep their
    /// account (and a sign-in under way); changed settings drop their cached tokens. Profiles whose identity
    /// changed start over: their pending sign-in is cancelled and the stored account is read again.
    pub fn reload(&self, config: &Config, idp: IdentityPlatform) -> ReloadSummary {
        let old = self.profile_set();
        let same_keyring = old.keyring_service == config.keyring_service;
        let keyring: Arc<dyn SecretStore> = if same_keyring {
            old.keyring.clone()
        } else {
            Arc::new(KeyringStore::new(config.keyring_service.clone()))
        };
        let mut summary = ReloadSummary::default();
        let mut slots = BTreeMap::new();
        for (name, profile) in &config.profiles {
            let slot = match old.slots.get(name) {
                Some(existing) if existing.profile == *profile && same_keyring => existing.clone(),
                Some(existing) if same_identity(&existing.profile, profile) && same_keyring => {
                    summary.changed.push(name.clone());
                    Arc::new(existing.carry_over(profile.clone()))
                }
                Some(existing) => {
                    summary.replaced.push(name.clone());
                    existing.cancel_signin();
                    Arc::new(ProfileSlot::new(profile.clone(), &keyring, &old.memory))
                }
                None => {
                    summary.added.push(name.clone());
                    Arc::new(ProfileSlot::new(profile.clone(), &keyring, &old.memory))
                }
            };
            slots.insert(name.clone(), slot);
        }
        for (name, slot) in &old.slots {
            if !config.profiles.contains_key(name) {
                summary.removed.push(name.clone());
                slot.cancel_signin();
            }
        }
        let set = ProfileSet {
            default_profile: config.default_profile.clone(),
            slots,
            keyring,
            memory: old.memory.clone(),
            keyring_service: config.keyring_service.clone(),
            browser: browser_settings(config),
        };
        *self.profiles.write().expect("profiles lock") = Arc::new(set);
        *self.idp.write().expect("idp lock") = idp;
        self.changed();
        summary
    }

    /// Whether stopping now would lose nothing: no sign-in under way, no account that lives only in memory or
    /// that the store has not taken yet, no cached token of a memory-only account.
    pub fn has_state_to_lose(&self) -> bool {
        self.profile_set().slots.values().any(|slot| {
            let state = slot.state.lock().expect("state lock");
            state.signin.is_some()
                || state.unsaved
                || (slot.store.kind() == StoreKind::Memory && matches!(state.account, AccountState::Active { .. }))
        })
    }

    /// One line for a service manager's status: accounts signed in, sign-ins pending.
    pub fn status_line(&self) -> String {
        let set = self.profile_set();
        let mut accounts = Vec::new();
        let mut pending = Vec::new();
        for (name, slot) in &set.slots {
            let state = slot.state.lock().expect("state lock");
            if let AccountState::Active { record, .. } = &state.account {
                accounts.push(format!("{name}: {}", record.username));
            }
            if state.signin.is_some() {
                pending.push(name.clone());
            }
        }
        let accounts = if accounts.is_empty() { "no account signed in".to_owned() } else { accounts.join(", ") };
        if pending.is_empty() { accounts } else { format!("{accounts}; sign-in pending for {}", pending.join(", ")) }
    }

    /// Reads every profile's account from its store, once, at start. A store that cannot be read is recorded
    /// (and reported in status); it is read again when a request needs it.
    pub async fn load_accounts(&self) {
        for slot in self.profile_set().slots.values() {
            if let Err(e) = self.ensure_loaded(slot).await {
                tracing::error!(profile = %slot.profile.name, "the account store cannot be read: {}", e.0.message);
            }
        }
    }

    /// Answers waiting requests and stops new waits: the daemon is stopping.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    fn slot(&self, name: Option<&str>) -> Result<Arc<ProfileSlot>, ApiError> {
        let set = self.profile_set();
        let name = name.unwrap_or(&set.default_profile);
        set.slots.get(name).cloned().ok_or_else(|| {
            let known = set.slots.keys().cloned().collect::<Vec<_>>().join(", ");
            ApiError::new(
                ErrorCode::UnknownProfile,
                format!("no profile named {name:?} is configured (known: {known}); add it to the config file"),
            )
        })
    }

    /// Serves `GET /v1/token` and `/v1/header`.
    pub async fn token(self: &Arc<Self>, query: &TokenQuery) -> Result<IssuedToken, ApiError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.token_inner(query).await;
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn token_inner(self: &Arc<Self>, query: &TokenQuery) -> Result<IssuedToken, ApiError> {
        let started = Instant::now();
        let slot = self.slot(query.profile.as_deref())?;
        let profile = &slot.profile;
        // No scopes, or an empty list, means the profile's default scopes.
        let requested = query
            .scopes
            .as_deref()
            .map(graphbroker_protocol::split_scopes)
            .filter(|list| !list.is_empty())
            .unwrap_or_else(|| profile.scopes.clone());
        let scopes = ScopeSet::normalize(&requested, &profile.graph_resource)
            .map_err(|e| ApiError::new(ErrorCode::InvalidScopes, e.to_string()))?;
        let min_valid = match query.min_valid.map(Duration::from_secs) {
            Some(asked) if asked > crate::config::MAX_MIN_VALID => {
                return Err(ApiError::bad_request(format!(
                    "min_valid may be at most {} seconds; no token lives longer than a day",
                    crate::config::MAX_MIN_VALID.as_secs()
                )));
            }
            Some(asked) => asked,
            None => profile.min_valid,
        };
        let wait = query.wait.map(Duration::from_secs).unwrap_or_default().min(MAX_WAIT);
        let claims = query.claims.as_deref();
        let platform_claims = request_claims(claims, profile.cae)
            .map_err(|e| ApiError::bad_request(format!("{e}: pass the claims challenge as sent by the resource")))?;
        let bypass_cache = claims.is_some();

        for _ in 0..MAX_ROUNDS {
            match self.silent(&slot, &scopes, min_valid, platform_claims.as_deref(), bypass_cache).await? {
                Silent::Token { token, refresh_ahead } => {
                    if refresh_ahead {
                        self.refresh_ahead(slot.clone(), scopes.clone());
                    }
                    return Ok(token);
                }
                Silent::Stale => continue,
                Silent::NeedSignIn { reason, claims } => {
                    let signin_claims = match claims {
                        Some(platform) => request_claims(Some(&platform), profile.cae).ok().flatten(),
                        None => platform_claims.clone(),
                    };
                    let signin = self.start_or_join_signin(&slot, reason, &scopes, signin_claims, None);
                    let remaining = wait.saturating_sub(started.elapsed());
                    self.wait_signin(&signin, remaining).await?;
                }
            }
        }
        Err(ApiError::internal("the sign-in completed but no token could be issued for these scopes; ask again"))
    }

    /// Waits for `signin` to finish, up to `wait`. Answers `signin_required` at once when `wait` is zero.
    async fn wait_signin(&self, signin: &SignIn, wait: Duration) -> Result<(), ApiError> {
        let mut phase = signin.phase.clone();
        // The prompt first: it is what every error below carries.
        let prompt = loop {
            match phase.borrow_and_update().clone() {
                Phase::Prompt(prompt) => break prompt,
                Phase::Done(result) => return result,
                Phase::Starting => {}
            }
            if phase.changed().await.is_err() {
                return Err(ApiError::internal("the sign-in stopped unexpectedly; ask again to start a new one"));
            }
        };
        if wait.is_zero() {
            return Err(ApiError::signin_required(signin.reason, prompt));
        }
        let mut shutdown = self.shutdown.subscribe();
        let done = async {
            loop {
                if let Phase::Done(result) = phase.borrow_and_update().clone() {
                    return result;
                }
                if phase.changed().await.is_err() {
                    return Err(ApiError::internal("the sign-in stopped unexpectedly; ask again to start a new one"));
                }
            }
        };
        tokio::select! {
            result = done => result,
            _ = tokio::time::sleep(wait) => {
                let mut error = ApiError::new(
                    ErrorCode::SigninTimeout,
                    format!("the sign-in is still waiting for you: {}; ask again to keep waiting", crate::error::prompt_action(&prompt)),
                );
                error.0.reason = Some(signin.reason);
                error.0.signin = Some(prompt);
                Err(error)
            }
            _ = shutdown.wait_for(|stopping| *stopping) => {
                Err(ApiError::new(ErrorCode::DaemonStopping, "the daemon is stopping; ask again once it is back").with_retry_after(Some(1)))
            }
        }
    }

    /// Cache, then refresh token. Never starts a sign-in itself.
    async fn silent(
        &self,
        slot: &ProfileSlot,
        scopes: &ScopeSet,
        min_valid: Duration,
        claims: Option<&str>,
        bypass_cache: bool,
    ) -> Result<Silent, ApiError> {
        self.ensure_loaded(slot).await?;
        self.ensure_saved(slot).await?;
        if !bypass_cache && let Some((token, refresh_ahead)) = self.cached(slot, scopes, min_valid) {
            return Ok(Silent::Token { token, refresh_ahead });
        }
        let flight = {
            let mut flights = slot.flights.lock().expect("flights lock");
            flights.entry(scopes.key().to_owned()).or_default().clone()
        };
        let _guard = flight.lock().await;
        if !bypass_cache && let Some((token, refresh_ahead)) = self.cached(slot, scopes, min_valid) {
            return Ok(Silent::Token { token, refresh_ahead });
        }
        let (refresh_token, generation) = {
            let state = slot.state.lock().expect("state lock");
            match &state.account {
                AccountState::Active { refresh_token, .. } => (refresh_token.clone(), state.generation),
                _ => {
                    let reason = if state.signin.is_some() {
                        state.signin.as_ref().map(|s| s.reason).unwrap_or(SignInReason::NoAccount)
                    } else {
                        SignInReason::NoAccount
                    };
                    return Ok(Silent::NeedSignIn { reason, claims: None });
                }
            }
        };
        self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(profile = %slot.profile.name, scopes = %scopes, "refreshing access token");
        match self.idp().refresh(&slot.profile, &refresh_token, scopes, claims).await {
            Ok(tokens) => self
                .accept_refresh(slot, scopes, tokens, generation)
                .await
                .map(|token| token.map_or(Silent::Stale, |token| Silent::Token { token, refresh_ahead: false })),
            Err(Failure::AccountDead { detail, .. }) => {
                tracing::info!(profile = %slot.profile.name, "refresh token is no longer valid ({detail}); signing in again");
                self.forget_account(slot, Some(generation)).await;
                Ok(Silent::NeedSignIn { reason: SignInReason::SessionExpired, claims: None })
            }
            Err(Failure::NeedsUser { reason, claims, detail, .. }) => {
                tracing::info!(profile = %slot.profile.name, scopes = %scopes, "the platform wants the user: {detail}");
                Ok(Silent::NeedSignIn { reason, claims })
            }
            Err(failure) => Err(failure_to_api(failure, &slot.profile)),
        }
    }

    /// A cache hit, and whether this caller should start the token's background refresh.
    fn cached(&self, slot: &ProfileSlot, scopes: &ScopeSet, min_valid: Duration) -> Option<(IssuedToken, bool)> {
        let mut state = slot.state.lock().expect("state lock");
        let token = state.cache.get(scopes.key(), min_valid)?;
        let AccountState::Active { record, .. } = &state.account else { return None };
        self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        let refresh_ahead = token.refresh_due()
            && slot.refreshing_ahead.lock().expect("refreshing lock").insert(scopes.key().to_owned());
        Some((issued(&slot.profile, record, token), refresh_ahead))
    }

    /// Refreshes a token that is still being served, so that a hot client never waits on the network.
    /// Failures are left to the next request that needs a refresh, which reports them.
    fn refresh_ahead(self: &Arc<Self>, slot: Arc<ProfileSlot>, scopes: ScopeSet) {
        let broker = self.clone();
        tokio::spawn(async move {
            tracing::debug!(profile = %slot.profile.name, scopes = %scopes, "refreshing ahead of expiry");
            let claims = request_claims(None, slot.profile.cae).ok().flatten();
            let outcome = broker.silent(&slot, &scopes, Duration::ZERO, claims.as_deref(), true).await;
            slot.refreshing_ahead.lock().expect("refreshing lock").remove(scopes.key());
            match outcome {
                Ok(Silent::Token { .. } | Silent::Stale) => {}
                Ok(Silent::NeedSignIn { reason, .. }) => {
                    tracing::info!(profile = %slot.profile.name, ?reason, "refresh ahead found that a sign-in is needed")
                }
                Err(e) => tracing::warn!(profile = %slot.profile.name, "refresh ahead failed: {}", e.0.message),
            }
        });
    }

    /// Persists the rotated refresh token, then caches and returns the access token.
    async fn accept_refresh(
        &self,
        slot: &ProfileSlot,
        scopes: &ScopeSet,
        tokens: Tokens,
        generation: u64,
    ) -> Result<Option<IssuedToken>, ApiError> {
        let granted = scopes.granted_from_response(&tokens.granted, &slot.profile.graph_resource);
        let token = CachedToken::issued_now(
            tokens.access_token,
            granted,
            tokens.expires_in,
            tokens.refresh_in,
            slot.profile.min_valid,
        );
        let to_save = {
            let mut state = slot.state.lock().expect("state lock");
            let current = state.generation == generation;
            // Signed out or signed in anew while this refresh ran: its refresh token belongs to the past.
            let AccountState::Active { refresh_token, record } = &mut state.account else { return Ok(None) };
            if !current {
                return Ok(None);
            }
            if let Some(rotated) = tokens.refresh_token {
                *refresh_token = rotated;
            }
            StoredAccount { refresh_token: refresh_token.clone(), account: record.clone() }
        };
        self.save(slot, to_save).await?;
        let mut state = slot.state.lock().expect("state lock");
        if state.generation != generation {
            return Ok(None);
        }
        let AccountState::Active { record, .. } = &state.account else { return Ok(None) };
        let out = issued(&slot.profile, record, token.clone());
        state.cache.insert(scopes.key().to_owned(), token);
        Ok(Some(out))
    }

    /// Writes `account` to the profile's store; on failure marks the state unsaved and answers
    /// `keychain_unavailable` (the refresh token stays in memory, so nothing is lost).
    async fn save(&self, slot: &ProfileSlot, account: StoredAccount) -> Result<(), ApiError> {
        let result = write_to_store(slot, account).await?;
        slot.state.lock().expect("state lock").record_save(&slot.profile.name, result)
    }

    /// Retries writing a refresh token that could not be saved before.
    async fn ensure_saved(&self, slot: &ProfileSlot) -> Result<(), ApiError> {
        let pending = {
            let state = slot.state.lock().expect("state lock");
            match (&state.account, state.unsaved) {
                (AccountState::Active { refresh_token, record }, true) => {
                    Some(StoredAccount { refresh_token: refresh_token.clone(), account: record.clone() })
                }
                _ => None,
            }
        };
        match pending {
            Some(account) => self.save(slot, account).await,
            None => Ok(()),
        }
    }

    /// Reads the profile's account from its store unless already read.
    async fn ensure_loaded(&self, slot: &ProfileSlot) -> Result<(), ApiError> {
        if !matches!(slot.state.lock().expect("state lock").account, AccountState::Unloaded) {
            return Ok(());
        }
        let store = slot.store.clone();
        let name = slot.profile.name.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load(&name))
            .await
            .map_err(|e| ApiError::internal(format!("the keychain task failed: {e}")))?;
        let mut state = slot.state.lock().expect("state lock");
        if !matches!(state.account, AccountState::Unloaded) {
            return Ok(());
        }
        match loaded {
            Ok(Some(stored)) if account_matches(&slot.profile, &stored.account) => {
                tracing::info!(profile = %slot.profile.name, account = %stored.account.username, "account loaded from the store");
                state.account = AccountState::Active { refresh_token: stored.refresh_token, record: stored.account };
                state.store_error = None;
                Ok(())
            }
            Ok(Some(stored)) => {
                tracing::warn!(
                    profile = %slot.profile.name,
                    "the stored account was signed in with another client id or authority ({} at {}); it will be replaced at the next sign-in",
                    stored.account.client_id,
                    stored.account.authority
                );
                state.account = AccountState::Empty;
                state.store_error = None;
                Ok(())
            }
            Ok(None) => {
                state.account = AccountState::Empty;
                state.store_error = None;
                Ok(())
            }
            Err(StoreError::Corrupt { message, .. }) => {
                tracing::warn!(profile = %slot.profile.name, "the stored account is unreadable ({message}); it will be replaced at the next sign-in");
                state.account = AccountState::Empty;
                Ok(())
            }
            Err(e) => {
                let error = store_error_to_api(&e);
                state.store_error = Some(error.0.message.clone());
                Err(error)
            }
        }
    }

    /// Forgets the account (memory and store). With `only_generation`, only if nothing changed since.
    async fn forget_account(&self, slot: &ProfileSlot, only_generation: Option<u64>) -> (Option<AccountInfo>, usize) {
        let (record, dropped) = {
            let mut state = slot.state.lock().expect("state lock");
            if only_generation.is_some_and(|g| g != state.generation) {
                return (None, 0);
            }
            state.generation += 1;
            state.unsaved = false;
            let dropped = state.cache.clear();
            let record = match std::mem::replace(&mut state.account, AccountState::Empty) {
                AccountState::Active { record, .. } => Some(record),
                _ => None,
            };
            (record, dropped)
        };
        let store = slot.store.clone();
        let name = slot.profile.name.clone();
        match tokio::task::spawn_blocking(move || store.delete(&name)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(profile = %slot.profile.name, "could not delete the stored account: {e}"),
            Err(e) => tracing::error!(profile = %slot.profile.name, "the keychain task failed: {e}"),
        }
        self.changed();
        (record.map(|r| account_info(&r)), dropped)
    }

    /// Joins the profile's sign-in, or starts one for `scopes`.
    fn start_or_join_signin(
        &self,
        slot: &Arc<ProfileSlot>,
        reason: SignInReason,
        scopes: &ScopeSet,
        claims: Option<String>,
        flow: Option<SignInFlow>,
    ) -> Arc<SignIn> {
        let mut state = slot.state.lock().expect("state lock");
        if let Some(existing) = &state.signin {
            // Joiners see the sign-in under way, whatever flow they would have chosen.
            return existing.clone();
        }
        let flow = match flow.unwrap_or(slot.profile.flow) {
            SignInFlow::Auto if browser::graphical_session(|name| std::env::var_os(name)) => SignInFlow::Browser,
            SignInFlow::Auto => SignInFlow::Device,
            chosen => chosen,
        };
        let id = self.next_signin.fetch_add(1, Ordering::Relaxed);
        self.counters.signins.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Phase::Starting);
        let tx = Arc::new(tx);
        let task = tokio::spawn(run_signin(
            SignInJob {
                idp: self.idp(),
                slot: slot.clone(),
                id,
                scopes: scopes.clone(),
                claims,
                flow,
                browser: self.profile_set().browser.clone(),
            },
            tx.clone(),
            self.changes.clone(),
        ));
        let signin = Arc::new(SignIn { id, reason, phase: rx, announce: tx, task: task.abort_handle() });
        tracing::info!(profile = %slot.profile.name, ?reason, ?flow, scopes = %scopes, "starting a sign-in");
        state.signin = Some(signin.clone());
        drop(state);
        self.changed();
        signin
    }

    /// Serves `POST /v1/signin`: starts (or joins) a sign-in for the profile's default scopes, with the
    /// profile's flow unless `flow` overrides it. A profile already signed in answers `signed_in`.
    pub async fn signin(&self, profile: Option<&str>, flow: Option<SignInFlow>) -> Result<SignInResponse, ApiError> {
        let slot = self.slot(profile)?;
        self.ensure_loaded(&slot).await?;
        let scopes = ScopeSet::normalize(&slot.profile.scopes, &slot.profile.graph_resource)
            .map_err(|e| ApiError::new(ErrorCode::InvalidScopes, e.to_string()))?;
        {
            // Already signed in (and nothing under way): say so, as `gh auth login` would; signing in as someone
            // else starts with a sign-out.
            let state = slot.state.lock().expect("state lock");
            if let (AccountState::Active { record, .. }, None) = (&state.account, &state.signin) {
                return Ok(SignInResponse {
                    profile: slot.profile.name.clone(),
                    state: SignInState::SignedIn,
                    signin: None,
                    account: Some(account_info(record)),
                });
            }
        }
        let reason = SignInReason::NoAccount;
        let claims = request_claims(None, slot.profile.cae).ok().flatten();
        let signin = self.start_or_join_signin(&slot, reason, &scopes, claims, flow);
        match self.wait_signin(&signin, Duration::ZERO).await {
            Err(ApiError(detail)) if detail.code == ErrorCode::SigninRequired => Ok(SignInResponse {
                profile: slot.profile.name.clone(),
                state: SignInState::Pending,
                signin: detail.signin,
                account: None,
            }),
            Err(e) => Err(e),
            Ok(()) => Ok(SignInResponse {
                profile: slot.profile.name.clone(),
                state: SignInState::SignedIn,
                signin: None,
                account: self.account_of(&slot),
            }),
        }
    }

    fn account_of(&self, slot: &ProfileSlot) -> Option<AccountInfo> {
        match &slot.state.lock().expect("state lock").account {
            AccountState::Active { record, .. } => Some(account_info(record)),
            _ => None,
        }
    }

    /// Serves `POST /v1/signout`: cancels a pending sign-in, drops cached tokens and deletes the stored account.
    pub async fn signout(&self, profile: Option<&str>) -> Result<SignoutResponse, ApiError> {
        let slot = self.slot(profile)?;
        slot.cancel_signin();
        let (account, tokens_dropped) = self.forget_account(&slot, None).await;
        tracing::info!(profile = %slot.profile.name, "signed out");
        Ok(SignoutResponse { profile: slot.profile.name.clone(), account, tokens_dropped })
    }

    /// Serves `GET /v1/status`. Never includes a token value.
    pub fn status(&self) -> StatusResponse {
        let set = self.profile_set();
        let profiles = set
            .slots
            .values()
            .map(|slot| {
                let state = slot.state.lock().expect("state lock");
                let prompt = state.signin.as_ref().and_then(|s| match &*s.phase.borrow() {
                    Phase::Prompt(p) => Some(p.clone()),
                    _ => None,
                });
                let mut tokens: Vec<CachedTokenStatus> = state
                    .cache
                    .live()
                    .map(|t| CachedTokenStatus { scopes: t.scopes.clone(), expires_at: rfc3339(t.expires_at) })
                    .collect();
                tokens.sort_by(|a, b| a.scopes.cmp(&b.scopes));
                ProfileStatus {
                    name: slot.profile.name.clone(),
                    authority: slot.profile.authority.to_string(),
                    client_id: slot.profile.client_id.clone(),
                    flow: slot.profile.flow,
                    store: slot.store.kind(),
                    store_error: state.store_error.clone(),
                    account: match &state.account {
                        AccountState::Active { record, .. } => Some(account_info(record)),
                        _ => None,
                    },
                    signin: prompt,
                    tokens,
                }
            })
            .collect();
        let c = &self.counters;
        StatusResponse {
            protocol: graphbroker_protocol::PROTOCOL_VERSION,
            daemon: env!("CARGO_PKG_VERSION").into(),
            default_profile: set.default_profile.clone(),
            profiles,
            counters: Counters {
                requests: c.requests.load(Ordering::Relaxed),
                cache_hits: c.cache_hits.load(Ordering::Relaxed),
                refreshes: c.refreshes.load(Ordering::Relaxed),
                signins: c.signins.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
            },
        }
    }
}

/// Everything a sign-in task needs.
struct SignInJob {
    idp: IdentityPlatform,
    slot: Arc<ProfileSlot>,
    id: u64,
    scopes: ScopeSet,
    claims: Option<String>,
    flow: SignInFlow,
    browser: BrowserSettings,
}

/// The sign-in task: the prompt (device code or browser URL) for the waiting clients, the user's part, then
/// the account is stored and the first token cached.
async fn run_signin(job: SignInJob, phase: Arc<watch::Sender<Phase>>, changes: watch::Sender<u64>) {
    let SignInJob { idp, slot, id, scopes, claims, flow, browser } = job;
    let profile = &slot.profile;
    let result = async {
        let tokens = match flow {
            SignInFlow::Browser => {
                let signin = browser::start(&idp, profile, &scopes, claims.as_deref(), &browser)
                    .await
                    .map_err(|f| failure_to_api(f, profile))?;
                phase.send_replace(Phase::Prompt(SignInPrompt::Browser {
                    url: signin.url.clone(),
                    expires_at: rfc3339(SystemTime::now() + browser.timeout),
                }));
                tracing::info!(profile = %profile.name, port = signin.port, "waiting for the browser sign-in");
                browser::open_browser(&signin.url, &browser);
                signin.finish(&idp, profile, &scopes).await.map_err(|f| failure_to_api(f, profile))?
            }
            SignInFlow::Device | SignInFlow::Auto => {
                let start = idp
                    .start_device(profile, &scopes, claims.as_deref())
                    .await
                    .map_err(|f| failure_to_api(f, profile))?;
                phase.send_replace(Phase::Prompt(SignInPrompt::Device {
                    verification_uri: start.verification_uri(),
                    user_code: start.user_code(),
                    message: start.message(),
                    expires_at: rfc3339(SystemTime::now() + start.expires_in()),
                }));
                tracing::info!(profile = %profile.name, verification_uri = %start.verification_uri(), "waiting for the user to complete the sign-in");
                let expires = tokio::time::Instant::now() + start.expires_in();
                let mut transient = 0;
                loop {
                    match idp.poll_device(profile, &start).await {
                        // An outage while the user is signing in must not cost the sign-in: poll again while
                        // the code lives.
                        Err(Failure::Transient { detail, .. })
                            if transient < MAX_TRANSIENT_POLLS && tokio::time::Instant::now() < expires =>
                        {
                            transient += 1;
                            tracing::warn!(profile = %profile.name, "polling failed transiently ({detail}); polling on");
                            tokio::time::sleep(Duration::from_secs(2 * transient)).await;
                        }
                        other => break other.map_err(|f| failure_to_api(f, profile))?,
                    }
                }
            }
        };
        complete_signin(&slot, &scopes, tokens).await
    }
    .await;
    match &result {
        Ok(()) => tracing::info!(profile = %slot.profile.name, "sign-in complete"),
        Err(e) => tracing::warn!(profile = %slot.profile.name, "sign-in failed: {}", e.0.message),
    }
    {
        let mut state = slot.state.lock().expect("state lock");
        if state.signin.as_ref().is_some_and(|s| s.id == id) {
            state.signin = None;
        }
    }
    phase.send_replace(Phase::Done(result));
    changes.send_modify(|n| *n += 1);
}

/// Makes the signed-in account the profile's: stored first, then in memory with its first token cached.
async fn complete_signin(slot: &ProfileSlot, scopes: &ScopeSet, tokens: Tokens) -> Result<(), ApiError> {
    let Some(refresh_token) = tokens.refresh_token else {
        return Err(ApiError::new(
            ErrorCode::IdentityProviderError,
            "the identity platform issued no refresh token (offline_access was refused); check the app registration's permissions",
        ));
    };
    let identity = tokens.identity.unwrap_or(crate::idp::Identity {
        username: "unknown".into(),
        home_account_id: String::new(),
        tenant_id: String::new(),
    });
    let granted = scopes.granted_from_response(&tokens.granted, &slot.profile.graph_resource);
    let record = AccountRecord {
        username: identity.username,
        home_account_id: identity.home_account_id,
        tenant_id: identity.tenant_id,
        authority: slot.profile.authority.to_string(),
        client_id: slot.profile.client_id.clone(),
        granted_scopes: granted.clone(),
    };
    let stored = StoredAccount { refresh_token: refresh_token.clone(), account: record.clone() };
    let saved = write_to_store(slot, stored).await?;
    let mut state = slot.state.lock().expect("state lock");
    state.generation += 1;
    state.cache.clear();
    state.account = AccountState::Active { refresh_token, record };
    state.cache.insert(
        scopes.key().to_owned(),
        CachedToken::issued_now(
            tokens.access_token,
            granted,
            tokens.expires_in,
            tokens.refresh_in,
            slot.profile.min_valid,
        ),
    );
    state.record_save(&slot.profile.name, saved)
}

/// Writes the account to the slot's store on a blocking thread (the keychain is a D-Bus round trip).
async fn write_to_store(slot: &ProfileSlot, account: StoredAccount) -> Result<Result<(), StoreError>, ApiError> {
    let store = slot.store.clone();
    let name = slot.profile.name.clone();
    tokio::task::spawn_blocking(move || store.save(&name, &account))
        .await
        .map_err(|e| ApiError::internal(format!("the keychain task failed: {e}")))
}

impl ProfileState {
    /// Records how writing the account to the store went. On failure the refresh token stays in memory, marked
    /// unsaved, and the answer is `keychain_unavailable`: nothing is lost, and no token is served until the store
    /// takes it (see `Broker::ensure_saved`).
    fn record_save(&mut self, profile: &str, result: Result<(), StoreError>) -> Result<(), ApiError> {
        match result {
            Ok(()) => {
                self.unsaved = false;
                self.store_error = None;
                Ok(())
            }
            Err(e) => {
                self.unsaved = true;
                let error = store_error_to_api(&e);
                self.store_error = Some(error.0.message.clone());
                tracing::error!(profile, "could not save the refresh token: {e}");
                Err(error)
            }
        }
    }
}

fn browser_settings(config: &Config) -> BrowserSettings {
    BrowserSettings { command: config.browser_command.clone(), timeout: config.browser_timeout }
}

fn account_matches(profile: &Profile, record: &AccountRecord) -> bool {
    record.client_id == profile.client_id
        && record.authority.trim_end_matches('/') == profile.authority.as_str().trim_end_matches('/')
}

fn account_info(record: &AccountRecord) -> AccountInfo {
    AccountInfo {
        username: record.username.clone(),
        home_account_id: record.home_account_id.clone(),
        tenant_id: record.tenant_id.clone(),
    }
}

fn issued(profile: &Profile, record: &AccountRecord, token: CachedToken) -> IssuedToken {
    IssuedToken {
        expires_in: token.remaining(),
        access_token: token.access_token,
        scopes: token.scopes,
        expires_at: token.expires_at,
        profile: profile.name.clone(),
        account: account_info(record),
    }
}

/// RFC 3339 UTC, whole seconds.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn store_error_to_api(error: &StoreError) -> ApiError {
    ApiError::new(ErrorCode::KeychainUnavailable, error.to_string())
}

/// What a platform failure means for the client.
fn failure_to_api(failure: Failure, profile: &Profile) -> ApiError {
    match failure {
        Failure::Declined => {
            ApiError::new(ErrorCode::SigninDeclined, "the sign-in was declined; ask again to start a new sign-in")
        }
        Failure::Expired => ApiError::new(
            ErrorCode::SigninExpired,
            "the sign-in expired before it was completed; ask again to start a new one",
        ),
        Failure::Transient { retry_after, detail } => ApiError::new(
            ErrorCode::IdentityProviderUnavailable,
            format!("the identity platform is unavailable ({detail}); try again later"),
        )
        .with_retry_after(retry_after.map(|d| d.as_secs().max(1))),
        Failure::Refused { detail, codes, hint } => {
            let action = hint.map(|h| format!("; {h} (profile {:?})", profile.name)).unwrap_or_default();
            ApiError::new(ErrorCode::IdentityProviderError, format!("the identity platform refused: {detail}{action}"))
                .with_error_codes(codes)
        }
        Failure::AccountDead { detail, codes } => ApiError::new(
            ErrorCode::IdentityProviderError,
            format!("the identity platform refused the sign-in: {detail}; ask again to sign in anew"),
        )
        .with_error_codes(codes),
        Failure::NeedsUser { detail, codes, .. } => ApiError::new(
            ErrorCode::IdentityProviderError,
            format!("the identity platform wants more from the user: {detail}; ask again to sign in anew"),
        )
        .with_error_codes(codes),
    }
}

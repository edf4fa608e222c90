//! The broker: per-profile token lifecycle — cache, single-flight refresh, sign-in on first demand, persistence.
//!
//! It is built from seams, so that every rule below can be driven in-process: the identity platform is a
//! [`Platform`] trait object and the stores come from a [`StoreFactory`]; tests put scripted ones in their place.
//!
//! - `lifecycle.rs`: one profile's state machine (`Unloaded | Empty | Active | Retired`, a sign-in beside it, a
//!   generation number) — its diagram and every transition.
//! - `entries.rs`: the bounded per-scope-set map (cached token, refresh lock, refresh-ahead mark).
//! - `token.rs`: the request path — cache, single flight, refresh, refresh ahead.
//! - `signin.rs`: the sign-in task, joined by every request that needs the user; `signin_handle.rs`: the `SignIn`
//!   handle they wait on; `expected.rs`: the account it must bring back unless the user asked for the sign-in.
//! - `persist.rs`: one ordered queue of store operations per profile.
//! - `reload.rs`: applying a reloaded config. `status.rs`: what `status` and the service manager are told.
//! - `rolling.rs`: the rolling refresh of idle accounts, before the platform's inactivity limit ends them.
//! - `wake.rs`: noticing a suspend (and the daily rolling refresh) on the boot clock.
//!
//! Ordering rules: a rotated refresh token is written to the store before the access token that came with it is
//! handed out; store operations of one profile happen in the order its state changed; a result computed for an
//! older generation is never written back.

mod claims_budget;
mod drop_token;
mod entries;
mod expected;
mod lifecycle;
mod persist;
mod reload;
mod rolling;
mod signin;
mod signin_end;
mod signin_handle;
mod slot;
mod status;
mod stores;
mod token;
mod wake;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use graphbroker_protocol::{
    AccountInfo, ErrorCode, SignInFlow, SignInReason, SignInResponse, SignInState, SignoutResponse,
};
use graphbroker_store::{AccountRecord, StoreError};
use tokio::sync::watch;

pub use claims_budget::{CLAIMS_BURST, CLAIMS_REFILL};
pub use entries::{CachedToken, MAX_SCOPE_SETS, REFRESH_AHEAD};
pub use reload::ReloadSummary;
pub use stores::{StoreFactory, SystemStores};
pub use token::{IssuedToken, MAX_WAIT, TokenRequest};
pub use wake::{ROLLING_CHECK_INTERVAL, WAKE_SLACK, WAKE_TICK};

use self::lifecycle::ProfileState;
use self::signin_handle::SignIn;
use self::slot::ProfileSlot;
use self::stores::StoreSet;
use crate::browser::{self, BrowserSettings};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::ApiError;
use crate::idp::{ClaimsChallenge, Platform, request_claims};
use crate::metrics::Metrics;
use crate::notify::{DesktopNotifier, NoticeQueue, Notifier};
use crate::scopes::ScopeSet;

/// The configured profiles, replaced as a whole when the config is reloaded.
#[derive(Debug)]
struct ProfileSet {
    default_profile: String,
    slots: BTreeMap<String, Arc<ProfileSlot>>,
    stores: StoreSet,
    browser: BrowserSettings,
    /// Whether a prompt no terminal shows goes to the desktop as a notification (`notifications`).
    notifications: bool,
}

/// What a request that needs the user asks of [`Broker::start_or_join_signin`].
struct SignInRequest<'a> {
    /// Why the user is asked (shown in the prompt and the status).
    reason: SignInReason,
    /// The scopes a new sign-in asks consent for.
    scopes: &'a ScopeSet,
    /// The platform `claims` a new sign-in sends.
    claims: Option<String>,
    /// The flow, when the asker chose one; else the profile's.
    flow: Option<SignInFlow>,
    /// Asked for by `POST /v1/signin`, so any account may sign in (`expected.rs`).
    deliberate: bool,
    /// The asker shows the prompt on a terminal (see `SignIn::attend`).
    attended: bool,
}

/// The broker shared by every connection.
#[derive(Debug)]
pub struct Broker {
    profiles: RwLock<Arc<ProfileSet>>,
    /// The configuration in effect, as loaded (with the line of each key), for `GET /v1/config`.
    config: RwLock<Arc<Config>>,
    platform: RwLock<Arc<dyn Platform>>,
    stores: Arc<dyn StoreFactory>,
    /// Every counter, the status route's included (`status.rs` reads them from here).
    metrics: Arc<Metrics>,
    next_signin: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Bumped whenever an account or a sign-in changes, for whoever reports the daemon's state (sd_notify).
    changes: watch::Sender<u64>,
    /// The date and time, for when refresh tokens were last used.
    pub(crate) clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
    /// Started on first use, inside the runtime.
    notices: OnceLock<NoticeQueue>,
    /// The policy's state: the audit log, the asks waiting (`crate::policy`).
    pub(crate) guard: crate::policy::guard::Guard,
}

impl Broker {
    /// A broker for `config`, asking `platform` for tokens and keeping accounts in `stores`. Accounts are read
    /// from the stores by [`Broker::load_accounts`] (or on first use).
    pub fn new(config: &Config, platform: Arc<dyn Platform>, stores: Arc<dyn StoreFactory>) -> Arc<Self> {
        Self::with_metrics(config, platform, stores, Arc::default())
    }

    /// [`Broker::new`], counting into `metrics` (which the platform's HTTP layer may share, see
    /// [`crate::idp::EntraPlatform::with_latency`]).
    pub fn with_metrics(
        config: &Config,
        platform: Arc<dyn Platform>,
        stores: Arc<dyn StoreFactory>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Self::with_seams(config, platform, stores, metrics, Arc::new(SystemClock), Arc::new(DesktopNotifier))
    }

    /// [`Broker::with_metrics`] with the wall clock and the desktop's notifications replaced (tests).
    pub fn with_seams(
        config: &Config,
        platform: Arc<dyn Platform>,
        stores: Arc<dyn StoreFactory>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
    ) -> Arc<Self> {
        let store_set = StoreSet::open(&*stores, &config.keyring_service, None);
        let slots = config
            .profiles
            .iter()
            .map(|(name, profile)| {
                let state = ProfileState::new(clock.clone());
                let slot = ProfileSlot::new(profile.clone(), store_set.for_kind(profile.store), state);
                (name.clone(), Arc::new(slot))
            })
            .collect();
        let profiles = ProfileSet {
            default_profile: config.default_profile.clone(),
            slots,
            stores: store_set,
            browser: browser_settings(config),
            notifications: config.notifications,
        };
        Arc::new(Self {
            profiles: RwLock::new(Arc::new(profiles)),
            config: RwLock::new(Arc::new(config.clone())),
            platform: RwLock::new(platform),
            stores,
            metrics,
            next_signin: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            changes: watch::Sender::new(0),
            clock,
            notifier,
            notices: OnceLock::new(),
            guard: Default::default(),
        })
    }

    /// Where a sign-in sends its prompt when no terminal shows it; `None` unless notifications are on.
    fn notices(&self) -> Option<NoticeQueue> {
        if !self.profile_set().notifications {
            return None;
        }
        Some(self.notices.get_or_init(|| NoticeQueue::start(self.notifier.clone())).clone())
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn profile_set(&self) -> Arc<ProfileSet> {
        self.profiles.read().expect("profiles lock").clone()
    }

    pub(crate) fn platform(&self) -> Arc<dyn Platform> {
        self.platform.read().expect("platform lock").clone()
    }

    /// Subscribes to state changes (accounts signed in or out, sign-ins started or ended, reloads).
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
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

    /// The configuration in effect: the one given to [`Broker::new`], or to the last [`Broker::reload`].
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }

    /// The current slot of the profile `name` (the default profile for `None`).
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

    /// Forgets the account in memory and deletes it from the store (the delete queued under the same lock). With
    /// `only_generation`, only if the account is still that one. Returns what was forgotten with the delete's
    /// outcome (a refused delete leaves the account to come back at the next start); `None` when nothing was.
    async fn forget_account(
        &self,
        slot: &ProfileSlot,
        only_generation: Option<u64>,
    ) -> Option<(lifecycle::Forgotten, Result<(), String>)> {
        let (forgotten, deleted) = {
            let mut state = slot.state.lock().expect("state lock");
            let forgotten = state.forget(only_generation)?;
            (forgotten, slot.persistence.delete(&slot.profile.name))
        };
        let deleted = match deleted.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the keychain queue stopped before the delete".to_owned()),
        };
        if let Err(e) = &deleted {
            tracing::error!(profile = %slot.profile.name, "could not delete the stored account: {e}");
        }
        self.changed();
        Some((forgotten, deleted))
    }

    /// Joins the profile's sign-in, or starts one as `request` says. `Ok(None)` when the slot was retired by a
    /// reload; the error of a sign-in that failed to start moments ago (`ProfileState::failed_start`).
    fn start_or_join_signin(
        &self,
        slot: &Arc<ProfileSlot>,
        request: SignInRequest<'_>,
    ) -> Result<Option<Arc<SignIn>>, ApiError> {
        let SignInRequest { reason, scopes, claims, flow, deliberate, attended } = request;
        let mut state = slot.state.lock().expect("state lock");
        if matches!(state.account, lifecycle::AccountState::Retired) {
            return Ok(None);
        }
        if let Some(existing) = state.signin.take_if(|s| s.expired(self.clock.read())) {
            // Its prompt's life is over (the machine slept through it): its waiters are told, and this request
            // starts a new one rather than being handed a dead code.
            tracing::info!(profile = %slot.profile.name, "the pending sign-in expired; starting a new one");
            existing.expire();
        }
        // A sign-in that just failed to start answers the requests after it, rather than another that would fail
        // the same way; one asked for (`POST /v1/signin`) starts anew.
        if !deliberate
            && state.signin.is_none()
            && let Some((error, _)) =
                state.failed_start.as_ref().filter(|(_, at)| at.elapsed() < lifecycle::FAILED_START_KEPT)
        {
            return Err(error.clone());
        }
        state.failed_start = None;
        if let Some(existing) = &state.signin {
            // Joiners see the sign-in under way, whatever flow they would have chosen.
            if deliberate {
                existing.make_deliberate();
            }
            if attended {
                existing.attend();
            }
            return Ok(Some(existing.clone()));
        }
        let flow = match flow.unwrap_or(slot.profile.flow) {
            SignInFlow::Auto if browser::graphical_session(|name| std::env::var_os(name)) => SignInFlow::Browser,
            SignInFlow::Auto => SignInFlow::Device,
            chosen => chosen,
        };
        let id = self.next_signin.fetch_add(1, Ordering::Relaxed);
        self.metrics.signin_started(flow.into());
        let signin = signin::spawn(signin::Job {
            platform: self.platform(),
            slot: slot.clone(),
            id,
            reason,
            scopes: scopes.clone(),
            claims,
            flow,
            browser: self.profile_set().browser.clone(),
            deliberate,
            attended,
            notices: self.notices(),
            clock: self.clock.clone(),
            changes: self.changes.clone(),
            metrics: self.metrics.clone(),
        });
        tracing::info!(profile = %slot.profile.name, ?reason, ?flow, scopes = %scopes, "starting a sign-in");
        state.signin = Some(signin.clone());
        drop(state);
        self.changed();
        Ok(Some(signin))
    }

    /// Serves `POST /v1/signin`: starts (or joins) a sign-in for the profile's default scopes, with the
    /// profile's flow unless `flow` overrides it. A profile already signed in answers `signed_in`.
    /// `attended`: the asker shows the prompt on a terminal.
    pub async fn signin(
        &self,
        profile: Option<&str>,
        flow: Option<SignInFlow>,
        attended: bool,
    ) -> Result<SignInResponse, ApiError> {
        let slot = self.slot(profile)?;
        self.ensure_loaded(&slot).await?;
        let scopes = ScopeSet::normalize(&slot.profile.scopes, &slot.profile.graph_resource)
            .map_err(|e| ApiError::new(ErrorCode::InvalidScopes, e.to_string()))?;
        let signed_in = |account| SignInResponse {
            profile: slot.profile.name.clone(),
            state: SignInState::SignedIn,
            signin: None,
            account,
        };
        {
            // Already signed in (and nothing under way): say so, as `gh auth login` would; signing in as someone
            // else starts with a sign-out.
            let state = slot.state.lock().expect("state lock");
            if let (Some(record), None) = (state.record(), &state.signin) {
                return Ok(signed_in(Some(account_info(record))));
            }
        }
        let claims = request_claims(None::<&ClaimsChallenge>, slot.profile.cae);
        let request = SignInRequest {
            reason: SignInReason::NoAccount,
            scopes: &scopes,
            claims,
            flow,
            deliberate: true,
            attended,
        };
        let Some(signin) = self.start_or_join_signin(&slot, request)? else {
            return Err(ApiError::new(
                ErrorCode::SigninDeclined,
                "the profile's settings changed as the sign-in started; ask again to start a new one",
            ));
        };
        match signin.prompt(self.shutdown.subscribe()).await {
            Err(ApiError(detail)) if detail.code == ErrorCode::SigninRequired => Ok(SignInResponse {
                profile: slot.profile.name.clone(),
                state: SignInState::Pending,
                signin: detail.signin,
                account: None,
            }),
            Err(e) => Err(e),
            Ok(()) => Ok(signed_in(slot.state.lock().expect("state lock").record().map(account_info))),
        }
    }

    /// Serves `POST /v1/signout`: cancels a pending sign-in, drops cached tokens and deletes the stored account.
    pub async fn signout(&self, profile: Option<&str>) -> Result<SignoutResponse, ApiError> {
        let slot = self.slot(profile)?;
        slot.cancel_signin("signed out");
        let forgotten = match self.forget_account(&slot, None).await {
            Some((_, Err(e))) => {
                // Acknowledging this sign-out would be a lie: the account would be back at the next start.
                return Err(ApiError::new(
                    ErrorCode::KeychainUnavailable,
                    format!(
                        "signed out in memory, but the keychain kept the account ({e}); unlock the keychain and \
                         sign out again, or it comes back when graphbrokerd restarts"
                    ),
                ));
            }
            Some((forgotten, Ok(()))) => Some(forgotten),
            None => None,
        };
        tracing::info!(profile = %slot.profile.name, "signed out");
        Ok(SignoutResponse {
            profile: slot.profile.name.clone(),
            account: forgotten.as_ref().and_then(|f| f.record.as_ref()).map(account_info),
            tokens_dropped: forgotten.map_or(0, |f| f.tokens_dropped),
        })
    }
}

fn browser_settings(config: &Config) -> BrowserSettings {
    BrowserSettings { command: config.browser_command.clone(), timeout: config.browser_timeout }
}

fn account_info(record: &AccountRecord) -> AccountInfo {
    AccountInfo {
        username: record.username.clone(),
        home_account_id: record.home_account_id.clone(),
        tenant_id: record.tenant_id.clone(),
    }
}

fn store_error_to_api(error: &StoreError) -> ApiError {
    ApiError::new(ErrorCode::KeychainUnavailable, error.to_string())
}

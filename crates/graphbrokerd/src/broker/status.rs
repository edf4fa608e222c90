//! What the daemon tells about itself: `GET /v1/status`, `GET /metrics`, the service manager's one-line status,
//! and whether stopping now would lose anything. Never a token value.

use std::time::SystemTime;

use graphbroker_protocol::{
    CachedTokenStatus, EpochSeconds, ProfileStatus, SignInWarning, StatusResponse, StoreKind, WarningKind,
};

use super::lifecycle::{AccountState, ProfileState};
use super::persist::Persisted;
use super::signin_handle::Phase;
use super::{Broker, account_info};
use crate::config::{EXPIRY_WARNING, REFRESH_TOKEN_INACTIVITY};
use crate::metrics::ProfileTokens;

impl Broker {
    /// Serves `GET /v1/status`. Never includes a token value.
    pub fn status(&self) -> StatusResponse {
        let set = self.profile_set();
        let now = self.clock.now();
        let profiles = set
            .slots
            .values()
            .map(|slot| {
                let state = slot.state.lock().expect("state lock");
                let refreshed_at = state.record().and_then(|r| r.refreshed_at);
                let refresh_token_expires_at = refreshed_at
                    .map(|at| EpochSeconds::from_system_time(at.to_system_time() + REFRESH_TOKEN_INACTIVITY));
                let prompt = state.signin.as_ref().and_then(|s| match &*s.phase.borrow() {
                    Phase::Prompt(p) => Some(p.clone()),
                    _ => None,
                });
                let clocks = state.entries.now();
                let mut tokens: Vec<CachedTokenStatus> = state
                    .entries
                    .live_tokens(clocks)
                    .map(|t| CachedTokenStatus {
                        scopes: t.scopes.clone(),
                        expires_at: EpochSeconds::from_system_time(t.expires_at(clocks)),
                    })
                    .collect();
                tokens.sort_by(|a, b| a.scopes.cmp(&b.scopes));
                let store = slot.persistence.in_use(&slot.profile.name);
                ProfileStatus {
                    name: slot.profile.name.clone(),
                    authority: slot.profile.authority.to_string(),
                    client_id: slot.profile.client_id.clone(),
                    flow: slot.profile.flow,
                    store: store.kind,
                    store_error: state.store_error().map(str::to_owned),
                    account: state.record().map(account_info),
                    signin: prompt,
                    tokens,
                    store_reason: store.reason,
                    refreshed_at,
                    refresh_token_expires_at,
                    warning: warning(&slot.profile.name, &state, refresh_token_expires_at, now),
                }
            })
            .collect();
        StatusResponse {
            protocol: graphbroker_protocol::PROTOCOL_VERSION,
            daemon: env!("CARGO_PKG_VERSION").into(),
            default_profile: set.default_profile.clone(),
            profiles,
            counters: self.metrics.counters(),
            log: crate::logging::destination(),
        }
    }

    /// Serves `GET /metrics`: the counters, then each profile's cached tokens (how many, and the life left to
    /// the one that expires first). Never a scope, an account or a token.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let profiles: Vec<ProfileTokens> = self
            .profile_set()
            .slots
            .values()
            .map(|slot| {
                let state = slot.state.lock().expect("state lock");
                let now = state.entries.now();
                let remaining: Vec<_> = state.entries.live_tokens(now).map(|t| t.remaining(now)).collect();
                let (cached, soonest) = (remaining.len(), remaining.iter().min().copied());
                ProfileTokens { profile: slot.profile.name.clone(), cached, soonest }
            })
            .collect();
        self.metrics.encode(&profiles)
    }

    /// One line for a service manager's status: accounts signed in, sign-ins pending.
    pub fn status_line(&self) -> String {
        let set = self.profile_set();
        let mut accounts = Vec::new();
        let mut pending = Vec::new();
        for (name, slot) in &set.slots {
            let state = slot.state.lock().expect("state lock");
            if let Some(record) = state.record() {
                accounts.push(format!("{name}: {}", record.username));
            }
            if state.signin.is_some() {
                pending.push(name.clone());
            }
        }
        let accounts = if accounts.is_empty() { "no account signed in".to_owned() } else { accounts.join(", ") };
        if pending.is_empty() { accounts } else { format!("{accounts}; sign-in pending for {}", pending.join(", ")) }
    }

    /// Whether stopping now would lose something: a sign-in under way, a refresh token the store does not hold
    /// yet, or an account that lives in memory only.
    pub fn has_state_to_lose(&self) -> bool {
        self.profile_set().slots.values().any(|slot| {
            let state = slot.state.lock().expect("state lock");
            let memory_only = slot.persistence.kind() == StoreKind::Memory;
            state.signin.is_some()
                || match &state.account {
                    AccountState::Active { persisted, .. } => memory_only || *persisted != Persisted::Saved,
                    _ => false,
                }
        })
    }
}

/// What `status` warns about for one profile, most urgent first: a session the platform ended, a refresh it
/// refused until the user acts, a refresh token near its inactivity limit.
fn warning(
    profile: &str,
    state: &ProfileState,
    expires_at: Option<EpochSeconds>,
    now: SystemTime,
) -> Option<SignInWarning> {
    if state.record().is_none()
        && let Some(ended) = &state.ended_account
        && let Some(session) = &ended.session_ended
    {
        let why = ended_because(&session.error_codes);
        return Some(SignInWarning {
            kind: WarningKind::SessionEnded,
            message: format!(
                "the identity platform ended the session of {} ({why}): sign in again with \
                 `graphbroker-client signin --profile {profile}`",
                ended.username
            ),
            account: Some(ended.username.clone()),
            at: Some(session.at),
            error_codes: session.error_codes.clone(),
        });
    }
    let record = state.record()?;
    if let Some(refusal) = &state.refusal {
        return Some(SignInWarning {
            kind: WarningKind::Refused,
            message: format!(
                "the identity platform refused the last refresh until you sign in ({}): run \
                 `graphbroker-client token --profile {profile}` in a terminal and follow its prompt",
                codes(&refusal.error_codes).unwrap_or_else(|| "it wants the user".to_owned())
            ),
            account: Some(record.username.clone()),
            at: Some(refusal.at),
            error_codes: refusal.error_codes.clone(),
        });
    }
    let expires_at = expires_at?;
    if expires_at.left_after(now) > EXPIRY_WARNING {
        return None;
    }
    let message = if expires_at.left_after(now).is_zero() {
        format!(
            "the refresh token has not been used for {} days, so the identity platform has probably ended the \
             session: run `graphbroker-client token --profile {profile}`, and sign in if it asks",
            REFRESH_TOKEN_INACTIVITY.as_secs() / 86_400
        )
    } else {
        format!(
            "the refresh token expires in {} days unless it is used, and no rolling refresh has renewed it (is the \
             refresh timer installed? `graphbroker-client service install`): run \
             `graphbroker-client token --profile {profile}` to renew it now",
            expires_at.left_after(now).as_secs().div_ceil(86_400)
        )
    };
    Some(SignInWarning {
        kind: WarningKind::ExpiresSoon,
        message,
        account: Some(record.username.clone()),
        at: Some(expires_at),
        error_codes: Vec::new(),
    })
}

/// `AADSTS700082, 50173` for a message, `None` without codes.
fn codes(codes: &[u64]) -> Option<String> {
    (!codes.is_empty()).then(|| codes.iter().map(|c| format!("AADSTS{c}")).collect::<Vec<_>>().join(", "))
}

/// Why a session ended, in words, from the platform's codes (classify.rs lists them).
fn ended_because(error_codes: &[u64]) -> String {
    let words = if error_codes.contains(&700_082) {
        "the refresh token went unused for too long"
    } else if error_codes.contains(&50_173) {
        "the sign-in was revoked, e.g. after a password change"
    } else if error_codes.contains(&70_043) {
        "the organization's sign-in frequency policy"
    } else {
        "the refresh token is no longer valid"
    };
    match codes(error_codes) {
        Some(codes) => format!("{codes}: {words}"),
        None => words.to_owned(),
    }
}

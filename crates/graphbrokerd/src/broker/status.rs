//! What the daemon tells about itself: `GET /v1/status`, `GET /metrics`, the service manager's one-line status,
//! and whether stopping now would lose anything. Never a token value.

use graphbroker_protocol::{CachedTokenStatus, EpochSeconds, ProfileStatus, StatusResponse, StoreKind};

use super::lifecycle::{AccountState, Persisted};
use super::signin::Phase;
use super::{Broker, account_info};
use crate::metrics::ProfileTokens;

impl Broker {
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
                    .entries
                    .live_tokens()
                    .map(|t| CachedTokenStatus {
                        scopes: t.scopes.clone(),
                        expires_at: EpochSeconds::from_system_time(t.expires_at),
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
                }
            })
            .collect();
        StatusResponse {
            protocol: graphbroker_protocol::PROTOCOL_VERSION,
            daemon: env!("CARGO_PKG_VERSION").into(),
            default_profile: set.default_profile.clone(),
            profiles,
            counters: self.metrics.counters(),
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
                let remaining: Vec<_> = state.entries.live_tokens().map(|t| t.remaining()).collect();
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

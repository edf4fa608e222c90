//! The rolling refresh: an account nobody has used for the profile's `rolling_refresh` has its refresh token
//! redeemed (for the profile's default scopes) and the rotated one stored, long before the identity platform's
//! 90-day inactivity limit ends the session (AADSTS700082).
//!
//! It goes through the request path's single flight (`Broker::silent` with `Wanted::Idle`), so it never
//! races a client's refresh: if one refreshed while the check waited its turn, the check finds the token used
//! and does nothing. Under socket activation the daemon is not running most of the time, so the check is
//! triggered from outside: `POST /v1/refresh-idle`, which the service manager's daily timer calls; a daemon that
//! runs for days also runs it once a day by itself (`main.rs`).
//!
//! When the platform ends a session anyway (a dead grant, found by any refresh), `end_session` keeps the account
//! in the store marked ended, so that `status` can say so and what to do, after a restart too.

use std::sync::Arc;
use std::time::Duration;

use graphbroker_protocol::{EpochSeconds, ErrorCode, RefreshIdleOutcome, RefreshIdleProfile, RefreshIdleResponse};

use super::slot::{ProfileSlot, still_current};
use super::token::{SilentOutcome, Wanted};
use super::{Broker, SignInRequest};
use graphbroker_store::SessionEnded;

use crate::error::ApiError;
use crate::idp::request_claims;
use crate::scopes::ScopeSet;

impl Broker {
    /// The platform ended the session of `generation` for good: the account leaves memory and is kept in the store
    /// marked ended (`ProfileState::end_session`), so that status tells the user after a restart too.
    pub(super) async fn end_session(&self, slot: &Arc<ProfileSlot>, generation: u64, error_codes: Vec<u64>) {
        let at = EpochSeconds::from_system_time(self.clock.now());
        let written = {
            let mut state = slot.state.lock().expect("state lock");
            let Some((_, account)) = state.end_session(generation, SessionEnded { at, error_codes }) else { return };
            slot.persistence.save(&slot.profile.name, account, still_current(slot, state.generation))
        };
        if let Ok(Some(Err(e))) = written.await {
            tracing::error!(profile = %slot.profile.name, "could not mark the stored account's session ended: {e}");
        }
        self.changed();
    }

    /// Serves `POST /v1/refresh-idle`: the rolling refresh of every profile, one after the other.
    pub async fn refresh_idle(self: &Arc<Self>) -> RefreshIdleResponse {
        let set = self.profile_set();
        let mut profiles = Vec::with_capacity(set.slots.len());
        for slot in set.slots.values() {
            profiles.push(self.refresh_idle_profile(slot).await);
        }
        RefreshIdleResponse { profiles }
    }

    async fn refresh_idle_profile(self: &Arc<Self>, slot: &Arc<ProfileSlot>) -> RefreshIdleProfile {
        let name = slot.profile.name.clone();
        let answer = |outcome, message: Option<String>| RefreshIdleProfile {
            profile: name.clone(),
            outcome,
            message,
            refreshed_at: slot.state.lock().expect("state lock").record().and_then(|r| r.refreshed_at),
        };
        let Some(idle) = slot.profile.rolling_refresh else { return answer(RefreshIdleOutcome::Off, None) };
        if let Err(ApiError(e)) = self.ensure_loaded(slot).await {
            return answer(RefreshIdleOutcome::Failed, Some(e.message));
        }
        let now = self.clock.now();
        let idle_since = now.checked_sub(idle).unwrap_or(std::time::UNIX_EPOCH);
        // Read under the lock, answered after it (`answer` takes the lock again).
        let (signed_in, last_used, ended) = {
            let state = slot.state.lock().expect("state lock");
            let record = state.record();
            (record.is_some(), record.and_then(|r| r.refreshed_at), state.ended_account.is_some())
        };
        match (signed_in, ended) {
            (true, _) => {}
            (false, true) => {
                let message = format!("sign in again with `graphbroker-client signin --profile {name}`");
                return answer(RefreshIdleOutcome::SigninNeeded, Some(message));
            }
            (false, false) => return answer(RefreshIdleOutcome::NoAccount, None),
        }
        // An entry stored before the time was recorded counts as idle: one refresh records it.
        if last_used.is_some_and(|at| at.to_system_time() > idle_since) {
            return answer(RefreshIdleOutcome::NotDue, None);
        }
        let idle_for = last_used.map(|at| now.duration_since(at.to_system_time()).unwrap_or(Duration::ZERO));
        tracing::info!(profile = %name, idle_days = idle_for.map(|d| d.as_secs() / 86_400), "rolling refresh of an idle account");
        let scopes = match ScopeSet::normalize(&slot.profile.scopes, &slot.profile.graph_resource) {
            Ok(scopes) => scopes,
            Err(e) => return answer(RefreshIdleOutcome::Failed, Some(e.to_string())),
        };
        let claims = request_claims(None, slot.profile.cae);
        let outcome = self.silent(slot, &scopes, Duration::ZERO, claims.as_deref(), Wanted::Idle { idle_since }).await;
        match outcome {
            Ok(SilentOutcome::Token { .. }) => answer(RefreshIdleOutcome::Refreshed, None),
            Ok(SilentOutcome::NotDue | SilentOutcome::Stale) => answer(RefreshIdleOutcome::NotDue, None),
            Ok(SilentOutcome::NeedSignIn { reason, claims }) => {
                tracing::warn!(profile = %name, ?reason, "the rolling refresh found that a sign-in is needed");
                // Nobody is at a terminal for this: with notifications on, the sign-in starts and its prompt
                // goes to the desktop. Without them it waits for the user's next request, as status says.
                if self.notices().is_some() {
                    let claims = claims.or_else(|| request_claims(None, slot.profile.cae));
                    let ask = SignInRequest {
                        reason,
                        scopes: &scopes,
                        claims,
                        flow: None,
                        deliberate: false,
                        attended: false,
                    };
                    // A sign-in that failed to start moments ago is not started again; the warning below stands.
                    if let Err(e) = self.start_or_join_signin(slot, ask) {
                        tracing::debug!(profile = %name, "no sign-in started: {}", e.0.message);
                    }
                }
                let warning = self.status().profiles.into_iter().find(|p| p.name == name).and_then(|p| p.warning);
                let message = warning.map(|w| w.message).unwrap_or_else(|| {
                    format!("run `graphbroker-client token --profile {name}` in a terminal and follow its prompt")
                });
                answer(RefreshIdleOutcome::SigninNeeded, Some(message))
            }
            Err(ApiError(e)) if e.code == ErrorCode::SigninRequired => {
                answer(RefreshIdleOutcome::SigninNeeded, Some(e.message))
            }
            Err(ApiError(e)) => {
                tracing::warn!(profile = %name, "the rolling refresh failed: {}", e.message);
                answer(RefreshIdleOutcome::Failed, Some(e.message))
            }
        }
    }
}

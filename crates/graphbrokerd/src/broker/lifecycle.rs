//! The lifecycle of one profile's account, as a state machine with its transitions as methods.
//!
//! ```text
//!                    load: none, unreadable, or another app's
//!   ┌──────────┐ ─────────────────────────────────────────────► ┌───────┐
//!   │ Unloaded │                                                │ Empty │ ◄──────────────┐
//!   └──────────┘ ───────────────┐                               └───────┘                │
//!     │ ▲ load failed           │ load: an account               │ sign-in completes     │ sign-out,
//!     └─┘ (error kept)          ▼                                ▼                       │ dead grant
//!                          ┌──────────────────────────────────────────┐                  │
//!                          │ Active { refresh_token, record, persisted }│ ────────────────┘
//!                          └──────────────────────────────────────────┘
//!                               ▲ │ refresh rotates the token: persisted = Writing
//!                               └─┘ write done: Saved (or Failed: nothing served until a write succeeds)
//!
//!   any state ── reload replaced or removed the profile, or moved its account to a new slot ──► Retired
//! ```
//!
//! Beside the account, a profile may have one sign-in under way ([`ProfileState::signin`]): from `Empty` (the first
//! sign-in) and from `Active` too (consent or MFA for one request keeps the account for everything else). Its
//! completion is a transition of its own, taken only while that same sign-in is still the profile's.
//!
//! **Generations.** `generation` counts account changes: it is bumped by every transition that replaces or drops
//! the account (a completed sign-in, sign-out, a dead grant, retirement). A refresh or a write remembers the
//! generation it started under and is dropped if it no longer matches, so a refresh finishing after a sign-out
//! cannot bring the account back, and a write of an old sign-in cannot mark the new one saved.
//!
//! Writes to the store are handed out by the transitions as [`Write`]s and queued by the caller **while the state
//! lock is still held**, so the store sees writes and deletes in the order the state changed (see
//! `persist.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use graphbroker_protocol::EpochSeconds;
use graphbroker_protocol::SignInReason;
use graphbroker_store::{AccountRecord, SessionEnded, StoreError, StoredAccount};
use secrecy::SecretString;

use super::entries::ScopeEntries;
use super::persist::{Persisted, Write};
use super::signin_handle::SignIn;
use crate::config::Profile;

/// How long a sign-in that failed before its prompt answers the requests after it ([`ProfileState::failed_start`]):
/// longer than the one second a "being prepared" answer tells its client to wait before it asks again.
pub const FAILED_START_KEPT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a profile's account stands. See the module docs for the diagram.
#[derive(Debug)]
pub enum AccountState {
    /// The store has not been read yet. `error`: why the last read failed (reported in status), if one did.
    Unloaded { error: Option<String> },
    /// Nobody is signed in.
    Empty,
    /// Signed in: the refresh token (the memory copy of the store's), the account it belongs to, and whether the
    /// store holds this very token.
    Active { refresh_token: SecretString, record: Arc<AccountRecord>, persisted: Persisted },
    /// This profile slot was replaced by a reload; requests still holding it ask the broker for the current one.
    Retired,
}

/// What a refresh needs, taken from the state before the platform is asked.
#[derive(Debug)]
pub enum RefreshGrant {
    /// Redeem this refresh token; the result belongs to `generation`.
    Ready { refresh_token: SecretString, generation: u64 },
    /// No account: a sign-in is needed, for this reason.
    NeedSignIn(SignInReason),
    /// The slot was retired by a reload.
    Retired,
}

/// The account changed (sign-out, a new sign-in, a reload) while a refresh ran: its result was dropped, and
/// asking again uses the current account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

/// What a sign-out or a dead grant dropped.
#[derive(Debug)]
pub struct Forgotten {
    pub record: Option<AccountRecord>,
    pub tokens_dropped: usize,
}

/// A refresh the platform refused because it wants the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub at: EpochSeconds,
    pub reason: SignInReason,
    pub error_codes: Vec<u64>,
}

/// One profile's live state. Only the broker's transitions below change it.
#[derive(Debug)]
pub struct ProfileState {
    /// Bumped on every account change; see the module docs.
    pub generation: u64,
    pub account: AccountState,
    /// The sign-in under way, if any; every request that needs the user joins it.
    pub signin: Option<Arc<SignIn>>,
    /// Cached tokens, refresh locks and refresh-ahead marks by scope set.
    pub entries: ScopeEntries,
    /// The account whose session the platform ended (a dead grant), kept while the profile is `Empty` so that the
    /// sign-in that follows is checked to bring the same account back (`expected.rs`). A sign-out and a
    /// completed sign-in clear it.
    pub ended_account: Option<AccountRecord>,
    /// The platform's last refusal of a refresh that wanted the user (MFA, consent, Conditional Access) while the
    /// account was kept; cleared by the next refresh that succeeds. Shown by `status`.
    pub refusal: Option<Refusal>,
    /// Why the last sign-in failed before it had a prompt to show (the platform refused to start it: an unknown
    /// app, a wrong tenant), and when: the requests of the next [`FAILED_START_KEPT`] get this answer instead of
    /// starting another sign-in that would fail the same way. A request that waits for nothing was answered
    /// "being prepared" before the failure came, and would otherwise never see it.
    pub failed_start: Option<(crate::error::ApiError, tokio::time::Instant)>,
    /// The number the next write will carry.
    next_write: u64,
}

impl Default for ProfileState {
    fn default() -> Self {
        Self::new(Arc::new(crate::clock::SystemClock))
    }
}

impl ProfileState {
    /// A profile not yet read from its store, judging its tokens' validity on `clock`.
    pub fn new(clock: Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            generation: 0,
            account: AccountState::Unloaded { error: None },
            signin: None,
            entries: ScopeEntries::new(clock),
            ended_account: None,
            refusal: None,
            failed_start: None,
            next_write: 1,
        }
    }
}

/// Whether a stored account belongs to this profile: signed in at the same authority, by the same app.
pub fn account_matches(profile: &Profile, record: &AccountRecord) -> bool {
    record.client_id == profile.client_id
        && record.authority.trim_end_matches('/') == profile.authority.as_str().trim_end_matches('/')
}

impl ProfileState {
    /// `Unloaded` → `Active`, `Empty`, or `Unloaded` with the error: the store's answer to a read. Any other state
    /// is left alone (another request's read got there first).
    pub fn loaded(
        &mut self,
        profile: &Profile,
        result: Result<Option<StoredAccount>, StoreError>,
    ) -> Result<(), StoreError> {
        if !matches!(self.account, AccountState::Unloaded { .. }) {
            return Ok(());
        }
        let name = &profile.name;
        self.account = match result {
            Ok(Some(stored)) if account_matches(profile, &stored.account) && stored.account.session_ended.is_some() => {
                // The platform ended this session before; kept so that status says so, and the sign-in that
                // follows is checked to bring the same account back.
                tracing::info!(profile = %name, account = %stored.account.username, "the stored account's session has ended; a sign-in is needed");
                self.ended_account = Some(stored.account);
                AccountState::Empty
            }
            Ok(Some(stored)) if account_matches(profile, &stored.account) => {
                tracing::info!(profile = %name, account = %stored.account.username, "account loaded from the store");
                AccountState::Active {
                    refresh_token: stored.refresh_token,
                    record: Arc::new(stored.account),
                    persisted: Persisted::Saved,
                }
            }
            Ok(Some(stored)) => {
                tracing::warn!(
                    profile = %name,
                    "the stored account was signed in with another client id or authority ({} at {}); it will be \
                     replaced at the next sign-in",
                    stored.account.client_id,
                    stored.account.authority
                );
                AccountState::Empty
            }
            Ok(None) => AccountState::Empty,
            Err(StoreError::Corrupt { message, .. }) => {
                tracing::warn!(profile = %name, "the stored account is unreadable ({message}); it will be replaced at the next sign-in");
                AccountState::Empty
            }
            Err(e) => {
                self.account = AccountState::Unloaded { error: Some(e.to_string()) };
                return Err(e);
            }
        };
        Ok(())
    }

    /// What a refresh needs now.
    pub fn grant(&self) -> RefreshGrant {
        match &self.account {
            AccountState::Active { refresh_token, .. } => {
                RefreshGrant::Ready { refresh_token: refresh_token.clone(), generation: self.generation }
            }
            AccountState::Retired => RefreshGrant::Retired,
            AccountState::Unloaded { .. } | AccountState::Empty => {
                RefreshGrant::NeedSignIn(self.signin.as_ref().map_or(SignInReason::NoAccount, |s| s.reason))
            }
        }
    }

    /// A refresh started under `generation` came back with `rotated` (Entra sends a new refresh token every time):
    /// the memory copy is replaced and the write that persists it handed out (`None`: no new token, nothing to
    /// write). `Err(Stale)` when the account changed meanwhile: the result belongs to the past and is dropped.
    /// `now`: when the platform accepted the token, recorded in the account (the inactivity limit counts from it).
    pub fn accept_refresh(
        &mut self,
        generation: u64,
        rotated: Option<SecretString>,
        now: SystemTime,
    ) -> Result<Option<Write>, Stale> {
        if self.generation != generation {
            return Err(Stale);
        }
        let AccountState::Active { refresh_token, record, persisted } = &mut self.account else { return Err(Stale) };
        self.refusal = None;
        Arc::make_mut(record).refreshed_at = Some(EpochSeconds::from_system_time(now));
        let Some(rotated) = rotated else {
            // Nothing new to keep; the store already has (or is getting) this token.
            return Ok(None);
        };
        *refresh_token = rotated;
        let seq = self.next_write;
        self.next_write += 1;
        *persisted = Persisted::Writing { seq };
        Ok(Some(Write {
            generation,
            seq,
            account: StoredAccount { refresh_token: refresh_token.clone(), account: AccountRecord::clone(record) },
        }))
    }

    /// A new write of the current token after an earlier one failed; `None` unless the state is `Failed`.
    pub fn retry_write(&mut self) -> Option<Write> {
        let AccountState::Active { refresh_token, record, persisted } = &mut self.account else { return None };
        if !matches!(persisted, Persisted::Failed { .. }) {
            return None;
        }
        let seq = self.next_write;
        self.next_write += 1;
        *persisted = Persisted::Writing { seq };
        Some(Write {
            generation: self.generation,
            seq,
            account: StoredAccount { refresh_token: refresh_token.clone(), account: AccountRecord::clone(record) },
        })
    }

    /// The store finished write `seq` of `generation` (`None`: it dropped the write as stale). `Saved` is set
    /// only when that write carried the token memory holds now; a failure marks the state `Failed` unless a
    /// newer write is already on its way. Writes of another generation change nothing.
    pub fn write_finished(&mut self, generation: u64, seq: u64, result: Option<&Result<(), StoreError>>) {
        if self.generation != generation {
            return;
        }
        let AccountState::Active { persisted, .. } = &mut self.account else { return };
        let latest = *persisted == Persisted::Writing { seq };
        match result {
            Some(Ok(())) if latest => *persisted = Persisted::Saved,
            Some(Err(e)) if latest => {
                *persisted = Persisted::Failed { error: e.to_string() };
            }
            _ => {}
        }
    }

    /// Whether a token may be served: no refresh token lives only in memory after a failed write.
    pub fn write_failed(&self) -> Option<&str> {
        match &self.account {
            AccountState::Active { persisted: Persisted::Failed { error }, .. } => Some(error),
            _ => None,
        }
    }

    /// Caches `token` for `key` if the account is still the one of `generation`; `false` if not (dropped).
    pub fn cache(&mut self, generation: u64, key: &str, token: impl Into<Arc<super::entries::CachedToken>>) -> bool {
        if self.generation != generation || !matches!(self.account, AccountState::Active { .. }) {
            return false;
        }
        self.entries.insert_token(key, token);
        true
    }

    /// `Active` (or any loaded state) → `Empty`: sign-out, or a dead grant. With `only_generation`, only if the
    /// account is still that one (a dead grant of an old refresh token must not sign out a newer sign-in).
    /// `None` when nothing was done. The caller queues the store delete under the same lock.
    pub fn forget(&mut self, only_generation: Option<u64>) -> Option<Forgotten> {
        if only_generation.is_some_and(|g| g != self.generation) || matches!(self.account, AccountState::Retired) {
            return None;
        }
        self.generation += 1;
        let tokens_dropped = self.entries.clear_tokens();
        let record = match std::mem::replace(&mut self.account, AccountState::Empty) {
            AccountState::Active { record, .. } => Some(Arc::unwrap_or_clone(record)),
            _ => None,
        };
        // A dead grant is not the user leaving: the next sign-in is expected to be the same account.
        self.ended_account =
            if only_generation.is_some() { record.clone().or(self.ended_account.take()) } else { None };
        Some(Forgotten { record, tokens_dropped })
    }

    /// `Active` → `Empty` because the platform refused the refresh token of `generation` for good: [`forget`] of
    /// that generation, but the account is to be kept in the store marked `session_ended` (returned for the caller
    /// to queue under the same lock), so that the reason survives a restart and `status` can tell the user.
    /// The entry written keeps no refresh token: the platform will not take it again, and a credential nobody can
    /// use has no business in the keychain.
    ///
    /// [`forget`]: ProfileState::forget
    pub fn end_session(&mut self, generation: u64, ended: SessionEnded) -> Option<(Forgotten, StoredAccount)> {
        if !matches!(self.account, AccountState::Active { .. }) {
            return None;
        }
        let refresh_token = SecretString::from(String::new());
        let mut forgotten = self.forget(Some(generation))?;
        let mut record = forgotten.record.take()?;
        record.session_ended = Some(Box::new(ended));
        self.ended_account = Some(record.clone());
        self.refusal = None;
        forgotten.record = Some(record.clone());
        Some((forgotten, StoredAccount { refresh_token, account: record }))
    }

    /// Whether `signin_id` is still the profile's sign-in (not cancelled by a sign-out or a reload).
    pub fn signin_is(&self, signin_id: u64) -> bool {
        self.signin.as_ref().is_some_and(|s| s.id == signin_id) && !matches!(self.account, AccountState::Retired)
    }

    /// A sign-in completed with `account`, whose write to the store went as `persisted` says (`Saved`, or
    /// `Failed`): it becomes the profile's account, in a new generation with no cached tokens — but only if
    /// `signin_id` is still the profile's sign-in. A sign-in cancelled by a sign-out or a reload completes into
    /// nothing (`false`).
    ///
    /// The write comes first (see `signin.rs`), so that the account never becomes `Active` before the store
    /// has it: a request arriving meanwhile still joins the sign-in rather than refreshing on its own.
    pub fn complete_signin(&mut self, signin_id: u64, account: StoredAccount, persisted: Persisted) -> bool {
        if !self.signin_is(signin_id) {
            return false;
        }
        self.generation += 1;
        self.entries.clear_tokens();
        self.ended_account = None;
        self.refusal = None;
        self.account =
            AccountState::Active { refresh_token: account.refresh_token, record: Arc::new(account.account), persisted };
        true
    }

    /// Any state → `Retired` (a reload replaced or removed the profile). Returns the sign-in under way, for the
    /// caller to cancel.
    pub fn retire(&mut self) -> Option<Arc<SignIn>> {
        self.generation += 1;
        self.entries.clear_tokens();
        self.account = AccountState::Retired;
        self.signin.take()
    }

    /// The state for a new slot of the same identity (a reload changed other settings): the account moves over in
    /// a new generation without cached tokens (they may have been issued under settings that no longer hold), and
    /// this slot is `Retired`. The sign-in under way is returned for the caller to cancel: its result would land
    /// in the old slot.
    pub fn carry_over(&mut self) -> (ProfileState, Option<Arc<SignIn>>) {
        let account = std::mem::replace(&mut self.account, AccountState::Retired);
        let account = match account {
            // A write under way for the old slot cannot mark the new one saved: count it as failed, so the new
            // slot writes the token again before it serves.
            AccountState::Active { refresh_token, record, persisted: Persisted::Writing { .. } } => {
                AccountState::Active {
                    refresh_token,
                    record,
                    persisted: Persisted::Failed { error: "not yet saved when the configuration was reloaded".into() },
                }
            }
            other => other,
        };
        self.generation += 1;
        self.entries.clear_tokens();
        let next = ProfileState {
            generation: self.generation,
            account,
            signin: None,
            entries: ScopeEntries::new(self.entries.clock()),
            ended_account: self.ended_account.take(),
            refusal: self.refusal.take(),
            // The settings changed: the next sign-in may start where the last one could not.
            failed_start: None,
            next_write: self.next_write,
        };
        (next, self.signin.take())
    }

    /// The account a sign-in of this profile is expected to return: the signed-in one, or the one whose session
    /// ended.
    pub fn expected_record(&self) -> Option<&AccountRecord> {
        self.record().or(self.ended_account.as_ref())
    }

    /// The signed-in account's record.
    pub fn record(&self) -> Option<&AccountRecord> {
        self.shared_record().map(|record| &**record)
    }

    /// [`ProfileState::record`] as shared: what a cache hit hands out (the account's strings are not copied).
    pub fn shared_record(&self) -> Option<&Arc<AccountRecord>> {
        match &self.account {
            AccountState::Active { record, .. } => Some(record),
            _ => None,
        }
    }

    /// Why the store is not working, if it is not: a failed read or a failed write.
    pub fn store_error(&self) -> Option<&str> {
        match &self.account {
            AccountState::Unloaded { error } => error.as_deref(),
            _ => self.write_failed(),
        }
    }

    /// Whether the store has been read (successfully).
    pub fn is_loaded(&self) -> bool {
        !matches!(self.account, AccountState::Unloaded { .. })
    }
}

#[cfg(test)]
mod tests;

//! One configured profile's slot: its profile, its store queue and its state, the writes queued from it, and the
//! reads and rewrites of its account that a request may have to wait for first.

use std::sync::{Arc, Mutex};

use graphbroker_store::StoreError;

use super::claims_budget::ClaimsBudget;
use super::lifecycle::ProfileState;
use super::persist::{Persistence, StillWanted, Write};
use super::{Broker, store_error_to_api};
use crate::config::Profile;
use crate::error::ApiError;
use crate::scopes::RecentScopes;

/// One configured profile and its live state.
#[derive(Debug)]
pub(super) struct ProfileSlot {
    /// Shared with every token issued from this slot, so a token carries the settings it was issued under.
    pub(super) profile: Arc<Profile>,
    pub(super) persistence: Arc<Persistence>,
    pub(super) state: Mutex<ProfileState>,
    /// How many cache-bypassing `claims` requests the profile may still make.
    pub(super) claims_budget: Mutex<ClaimsBudget>,
    /// The scope lists last asked of this profile, normalized for its cloud.
    pub(super) recent_scopes: RecentScopes,
}

/// A write queued in the profile's store queue, to be awaited.
pub(super) struct QueuedWrite {
    generation: u64,
    seq: u64,
    done: tokio::sync::oneshot::Receiver<Option<Result<(), StoreError>>>,
}

impl ProfileSlot {
    pub(super) fn new(profile: Profile, persistence: Arc<Persistence>, state: ProfileState) -> Self {
        let recent_scopes = RecentScopes::new(&profile.graph_resource);
        Self {
            profile: Arc::new(profile),
            persistence,
            state: Mutex::new(state),
            claims_budget: Mutex::default(),
            recent_scopes,
        }
    }

    /// Queues `write`. Call it while still holding the state lock that produced the write, so that the store sees
    /// writes and deletes in the order the state changed.
    pub(super) fn queue_write(self: &Arc<Self>, write: Write) -> QueuedWrite {
        let Write { generation, seq, account } = write;
        let done = self.persistence.save(&self.profile.name, account, still_current(self, generation));
        QueuedWrite { generation, seq, done }
    }

    /// Waits for a queued write and records how it went. A failure answers `keychain_unavailable`: the refresh
    /// token stays in memory, marked unsaved, and no token is served until the store takes it.
    pub(super) async fn finish_write(&self, queued: QueuedWrite) -> Result<(), ApiError> {
        let result = queued
            .done
            .await
            .unwrap_or_else(|_| Some(Err(StoreError::Failed { message: "the keychain queue stopped".into() })));
        self.state.lock().expect("state lock").write_finished(queued.generation, queued.seq, result.as_ref());
        match result {
            Some(Err(e)) => {
                tracing::error!(profile = %self.profile.name, "could not save the refresh token: {e}");
                Err(store_error_to_api(&e))
            }
            Some(Ok(())) | None => Ok(()),
        }
    }

    /// Stops the sign-in under way, if any; the requests waiting for it are told `why`.
    pub(super) fn cancel_signin(&self, why: &str) {
        let signin = self.state.lock().expect("state lock").signin.take();
        if let Some(signin) = signin {
            signin.cancel(why);
        }
    }
}

/// A check for the store queue: is `generation` still the account of `slot`?
pub(super) fn still_current(slot: &Arc<ProfileSlot>, generation: u64) -> StillWanted {
    let slot = Arc::downgrade(slot);
    Box::new(move || slot.upgrade().is_some_and(|slot| slot.state.lock().expect("state lock").generation == generation))
}

impl Broker {
    /// Reads the profile's account from its store unless already read.
    pub(super) async fn ensure_loaded(&self, slot: &ProfileSlot) -> Result<(), ApiError> {
        if slot.state.lock().expect("state lock").is_loaded() {
            return Ok(());
        }
        let result = slot
            .persistence
            .load(&slot.profile.name)
            .await
            .unwrap_or_else(|_| Err(StoreError::Failed { message: "the keychain queue stopped".into() }));
        slot.state.lock().expect("state lock").loaded(&slot.profile, result).map_err(|e| store_error_to_api(&e))
    }

    /// Writes a refresh token again whose earlier write failed; no token is served until one succeeds.
    pub(super) async fn ensure_saved(&self, slot: &Arc<ProfileSlot>) -> Result<(), ApiError> {
        let queued = {
            let mut state = slot.state.lock().expect("state lock");
            state.retry_write().map(|write| slot.queue_write(write))
        };
        match queued {
            Some(queued) => slot.finish_write(queued).await,
            None => Ok(()),
        }
    }
}

//! How a sign-in task ends: the deadline its user's part runs under (both clocks, `clock.rs`) and the guard that
//! clears the pending sign-in and tells every waiter however the task stops.

use std::sync::Arc;

use tokio::sync::watch;

use super::signin_handle::{EndCount, Phase};
use super::slot::ProfileSlot;
use crate::clock::Deadline;
use crate::error::ApiError;
use crate::idp::PlatformError;
use crate::metrics::SigninOutcome;

/// The end of one sign-in task, whatever ends it: the result it came to, or — when the task is dropped first (a
/// panic in it, or it was aborted) — "stopped unexpectedly". On drop it clears the profile's pending sign-in if it
/// is still this one, tells every waiter (unless `cancel`/`expire` already did), counts the outcome once and
/// reports the change.
pub(super) struct TaskEnd {
    pub slot: Arc<ProfileSlot>,
    pub id: u64,
    pub phase: Arc<watch::Sender<Phase>>,
    pub ending: Arc<EndCount>,
    pub changes: watch::Sender<u64>,
    pub result: Option<Result<(), ApiError>>,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        // `cancel` and `expire` announce the end before the task is dropped; anything else is unexpected.
        let announced = matches!(&*self.phase.borrow(), Phase::Done(_));
        // The task came to its own result (rather than being dropped or panicking).
        let concluded = self.result.is_some();
        let result = self.result.take().unwrap_or_else(|| {
            if !announced {
                tracing::error!(profile = %self.slot.profile.name, "the sign-in task stopped unexpectedly");
            }
            Err(ApiError::internal("the sign-in stopped unexpectedly; ask again to start a new one"))
        });
        self.ending.count(result.as_ref().map_or_else(|e| SigninOutcome::of_error(e.code()), |()| SigninOutcome::Ok));
        {
            // A panic elsewhere may have poisoned the lock; the state it guards is still what it was.
            let mut state = self.slot.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.signin.as_ref().is_some_and(|s| s.id == self.id) {
                state.signin = None;
                // It failed before it had a prompt: the next requests are told why (`ProfileState::failed_start`).
                // One that stopped unexpectedly is not kept: the next request starts anew.
                if let (true, Err(error), Phase::Starting) = (concluded, &result, &*self.phase.borrow()) {
                    state.failed_start = Some((error.clone(), tokio::time::Instant::now()));
                }
            }
        }
        self.phase.send_if_modified(|phase| {
            if matches!(phase, Phase::Done(_)) {
                return false;
            }
            *phase = Phase::Done(result);
            true
        });
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Why the user's part ended without tokens.
pub(super) enum UserPart {
    Platform(PlatformError),
    /// The prompt's life ran out on the boot or the wall clock.
    Expired,
}

impl From<PlatformError> for UserPart {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::Expired => UserPart::Expired,
            other => UserPart::Platform(other),
        }
    }
}

/// `work`, unless `deadline` passes first on either clock (see `clock::sleep_until`).
pub(super) async fn before<T>(
    clock: &dyn crate::clock::Clock,
    deadline: Deadline,
    work: impl std::future::Future<Output = Result<T, PlatformError>>,
) -> Result<T, UserPart> {
    tokio::select! {
        result = work => result.map_err(UserPart::from),
        () = crate::clock::sleep_until(clock, deadline) => Err(UserPart::Expired),
    }
}

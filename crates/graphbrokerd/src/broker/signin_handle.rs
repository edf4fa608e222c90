//! A sign-in under way, as the requests that need the user see it: the `SignIn` handle a profile's state holds
//! (`ProfileState::signin`) and every waiting request waits on, its `Phase`, and how it is cancelled or expired.
//! It names no other part of the broker; the task that drives it is `signin.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use graphbroker_protocol::{ErrorCode, SignInPrompt, SignInReason};
use tokio::sync::watch;

use crate::clock::{Deadline, Now};
use crate::error::ApiError;
use crate::metrics::{Flow, Metrics, SigninOutcome};

/// How long `POST /v1/signin` waits for the prompt it answers with. Handing out a device code is one platform
/// call, retried with [`PLATFORM_CALL`]'s budget (30 s); a prompt later than this is not coming.
pub const PROMPT_PATIENCE: Duration = Duration::from_secs(45);

/// A sign-in under way. Every request that needs the user waits on `phase`.
#[derive(Debug)]
pub struct SignIn {
    /// Tells this sign-in from a later one of the same profile.
    pub id: u64,
    /// Why it was started, for the prompt every waiting request gets.
    pub reason: SignInReason,
    /// The cache key of the scopes it signs in for: a request for them joins it rather than refreshing again
    /// into the same refusal.
    pub scopes_key: String,
    pub phase: watch::Receiver<Phase>,
    /// Whether `POST /v1/signin` asked for it (or joined it): the user is choosing an account, so whichever
    /// account signs in is taken. Otherwise it must be the profile's (`expected.rs`).
    pub(super) deliberate: Arc<AtomicBool>,
    /// Whether a request that joined shows the prompt on a terminal (see [`SignIn::attend`]).
    pub(super) attended: Arc<AtomicBool>,
    /// The task's sender too, so that cancelling can still tell the waiting requests why.
    pub(super) announce: Arc<watch::Sender<Phase>>,
    pub(super) task: tokio::task::AbortHandle,
    /// Counts how the sign-in ended, once: by the task, or by `cancel` when that stops the task first.
    pub(super) ending: Arc<EndCount>,
    /// When the prompt stops being any use (the device code's life, the browser sign-in's timeout), on both
    /// clocks; set when the prompt is published.
    pub(super) expires: Arc<std::sync::OnceLock<Deadline>>,
}

/// The `graphbroker_signins_total` count of one sign-in, made by whichever of its task and its cancellation ends
/// it first.
#[derive(Debug)]
pub(super) struct EndCount {
    pub(super) flow: Flow,
    pub(super) metrics: Arc<Metrics>,
    pub(super) counted: AtomicBool,
}

impl EndCount {
    pub(super) fn count(&self, outcome: SigninOutcome) {
        if !self.counted.swap(true, Ordering::SeqCst) {
            self.metrics.signin_ended(self.flow, outcome);
        }
    }
}

/// Where a sign-in stands.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Asking the platform for a device code, or opening the loopback listener.
    Starting,
    /// Waiting for the user.
    Prompt(SignInPrompt),
    /// Over: the account is signed in, or why not.
    Done(Result<(), ApiError>),
}

impl SignIn {
    /// An explicit `POST /v1/signin` joined this sign-in: any account it returns is taken.
    pub fn make_deliberate(&self) {
        self.deliberate.store(true, Ordering::SeqCst);
    }

    /// A request that shows the prompt on a terminal joined (the CLI says so with
    /// `graphbroker_protocol::TERMINAL_HEADER`). "No terminal is waiting" means no such request had joined when
    /// the prompt came: only then does it go to the desktop as a notification, if those are on. A rolling refresh
    /// and a request from a program that does not say it shows the prompt are not terminals.
    pub fn attend(&self) {
        self.attended.store(true, Ordering::SeqCst);
    }

    /// Stops the sign-in; the requests waiting for it are told `why` it was cancelled.
    pub fn cancel(&self, why: &str) {
        self.task.abort();
        self.ending.count(SigninOutcome::Declined);
        self.announce.send_replace(Phase::Done(Err(ApiError::new(
            ErrorCode::SigninDeclined,
            format!("the sign-in was cancelled ({why}); ask again to start a new one"),
        ))));
    }

    /// Whether its prompt's life is over at `now` (the machine may have slept through it).
    pub fn expired(&self, now: Now) -> bool {
        self.expires.get().is_some_and(|deadline| deadline.passed(now))
    }

    /// Ends a sign-in whose prompt's life is over: every waiter is told `signin_expired`.
    pub fn expire(&self) {
        self.task.abort();
        self.ending.count(SigninOutcome::Expired);
        self.announce.send_replace(Phase::Done(Err(expired_error())));
    }

    /// Waits for the sign-in to finish, up to `wait`; `signin_required` with the prompt at once when `wait` is
    /// zero. `stopping` ends the wait when the daemon stops.
    ///
    /// Every wait is bounded, the prompt's too: a `wait=0` request is answered at once, with the prompt when the
    /// sign-in has one, else `signin_required` without it ("being prepared", `retry_after: 1`) while the
    /// platform is still handing out the device code; a request with `wait` is held no longer than `wait`.
    pub async fn wait(&self, wait: Duration, stopping: watch::Receiver<bool>) -> Result<(), ApiError> {
        self.wait_with_patience(wait, wait, stopping).await
    }

    /// For `POST /v1/signin`, whose answer is the prompt: waits up to [`PROMPT_PATIENCE`] for it, then answers
    /// like [`SignIn::wait`] with a zero wait.
    pub async fn prompt(&self, stopping: watch::Receiver<bool>) -> Result<(), ApiError> {
        self.wait_with_patience(Duration::ZERO, PROMPT_PATIENCE, stopping).await
    }

    /// [`SignIn::wait`], holding up to `patience` for the prompt (at least `wait`).
    async fn wait_with_patience(
        &self,
        wait: Duration,
        patience: Duration,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<(), ApiError> {
        let mut phase = self.phase.clone();
        let stopped_unexpectedly =
            || ApiError::internal("the sign-in stopped unexpectedly; ask again to start a new one");
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        // The prompt first: it is what every error below carries.
        let prompt = async {
            loop {
                match phase.borrow_and_update().clone() {
                    Phase::Prompt(prompt) => return Ok(prompt),
                    Phase::Done(result) => return Err(result),
                    Phase::Starting => {}
                }
                if phase.changed().await.is_err() {
                    return Err(Err(stopped_unexpectedly()));
                }
            }
        };
        let prompt = tokio::select! {
            // Biased: a prompt (or outcome) already there wins over a zero wait that has run out.
            biased;
            prompt = prompt => prompt,
            _ = tokio::time::sleep_until(started + patience.max(wait)) => {
                Err(Err(ApiError::signin_preparing(self.reason, wait)))
            }
            _ = stopping.wait_for(|stopping| *stopping) => Err(Err(ApiError::daemon_stopping())),
        };
        let prompt = match prompt {
            Ok(prompt) => prompt,
            Err(result) => return result,
        };
        if wait.is_zero() {
            return Err(ApiError::signin_required(self.reason, prompt));
        }
        // From here on the request waits for the user, perhaps for minutes: its connection's slot is freed.
        crate::waiting::waiting_on_user();
        let done = async {
            loop {
                if let Phase::Done(result) = phase.borrow_and_update().clone() {
                    return result;
                }
                if phase.changed().await.is_err() {
                    return Err(stopped_unexpectedly());
                }
            }
        };
        tokio::select! {
            result = done => result,
            _ = tokio::time::sleep_until(deadline) => Err(ApiError::signin_timeout(self.reason, prompt)),
            _ = stopping.wait_for(|stopping| *stopping) => Err(ApiError::daemon_stopping()),
        }
    }
}

/// What the waiters of a sign-in whose code's life ran out are told.
pub(super) fn expired_error() -> ApiError {
    ApiError::new(
        ErrorCode::SigninExpired,
        "the sign-in expired before it was completed (its code lives a few minutes, and the machine may have been \
         asleep); ask again to start a new one",
    )
}

#[cfg(test)]
impl SignIn {
    /// A sign-in that runs nothing, for transition tests (needs a runtime).
    pub fn idle(id: u64, reason: SignInReason) -> Arc<Self> {
        let (tx, rx) = watch::channel(Phase::Starting);
        let task = tokio::spawn(std::future::pending::<()>());
        let deliberate = Arc::new(AtomicBool::new(false));
        let scopes_key = String::new();
        Arc::new(SignIn {
            id,
            reason,
            scopes_key,
            phase: rx,
            deliberate,
            attended: Arc::new(AtomicBool::new(false)),
            announce: Arc::new(tx),
            task: task.abort_handle(),
            ending: Arc::new(EndCount { flow: Flow::Device, metrics: Arc::default(), counted: AtomicBool::new(false) }),
            expires: Arc::default(),
        })
    }
}

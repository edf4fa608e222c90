//! Persistence: every store operation of one profile — read, write, delete — goes through one ordered queue,
//! worked off by one task, so the store sees them in the order the profile's state changed.
//!
//! Why a queue and not a `spawn_blocking` per call: a write of a rotated refresh token and the delete of a
//! sign-out that follows it would otherwise race on two threads, and the write could land last — an account
//! back in the keychain after the user signed out. Here the delete, queued after the write (both are queued
//! under the profile's state lock), always runs after it. A write also carries a check of its own generation,
//! run just before it is carried out: a write whose account has been signed out, replaced by a newer sign-in, or
//! retired by a reload is dropped rather than written.
//!
//! Store calls block (the Secret Service is a D-Bus round trip and may wait on an unlock prompt), so the task
//! runs each on the blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use graphbroker_protocol::StoreKind;
use graphbroker_store::{SecretStore, StoreError, StoredAccount};
use tokio::sync::{mpsc, oneshot};

/// Whether the store holds the refresh token kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persisted {
    /// It does.
    Saved,
    /// Write number `seq` of this token is queued or under way.
    Writing { seq: u64 },
    /// The last write failed (`error` says why, for status): the token lives only in memory, and no token is
    /// served until a write succeeds, so a restart never loses a sign-in the user was told succeeded.
    Failed { error: String },
}

/// A store write a transition asks for: the account as it now is, tagged with what it belongs to.
#[derive(Debug)]
pub struct Write {
    pub generation: u64,
    pub seq: u64,
    pub account: StoredAccount,
}

/// Decides, just before a write is carried out, whether it is still wanted.
pub type StillWanted = Box<dyn Fn() -> bool + Send>;

enum Job {
    Load(oneshot::Sender<Result<Option<StoredAccount>, StoreError>>),
    /// Answers `None` when the write was dropped as no longer wanted.
    Save {
        account: StoredAccount,
        wanted: StillWanted,
        done: oneshot::Sender<Option<Result<(), StoreError>>>,
    },
    Delete(oneshot::Sender<Result<bool, StoreError>>),
}

/// Which store holds a profile's account, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub kind: StoreKind,
    pub reason: Option<String>,
}

/// One store, with an ordered queue per profile.
#[derive(Debug)]
pub struct Persistence {
    store: Arc<dyn SecretStore>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
}

impl Persistence {
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Self { store, queues: Mutex::new(HashMap::new()) }
    }

    pub fn kind(&self) -> StoreKind {
        self.store.kind()
    }

    /// The store `profile`'s account is kept in, and why: the choice of `store = "auto"` once made, else the
    /// configured store.
    pub fn in_use(&self, profile: &str) -> InUse {
        match self.store.chosen(profile) {
            Some(choice) => InUse { kind: choice.kind, reason: Some(choice.reason) },
            None if self.store.kind() == StoreKind::Auto => InUse {
                kind: StoreKind::Auto,
                reason: Some("auto: not chosen yet; chosen when the account is first read".to_owned()),
            },
            None => InUse { kind: self.store.kind(), reason: Some("configured".to_owned()) },
        }
    }

    /// Queues a read of `profile`'s account.
    pub fn load(&self, profile: &str) -> oneshot::Receiver<Result<Option<StoredAccount>, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(profile, Job::Load(tx));
        rx
    }

    /// Queues a write of `account`, carried out only if `wanted()` still says so when its turn comes.
    pub fn save(
        &self,
        profile: &str,
        account: StoredAccount,
        wanted: StillWanted,
    ) -> oneshot::Receiver<Option<Result<(), StoreError>>> {
        let (done, rx) = oneshot::channel();
        self.enqueue(profile, Job::Save { account, wanted, done });
        rx
    }

    /// Queues the delete of `profile`'s account.
    pub fn delete(&self, profile: &str) -> oneshot::Receiver<Result<bool, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(profile, Job::Delete(tx));
        rx
    }

    /// Must be called from within the runtime: the profile's task is started on first use.
    fn enqueue(&self, profile: &str, job: Job) {
        let mut queues = self.queues.lock().expect("queues lock");
        let queue = queues.entry(profile.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(work_off(self.store.clone(), profile.to_owned(), rx));
            tx
        });
        if let Err(mpsc::error::SendError(job)) = queue.send(job) {
            // The task is gone (it only ends when its queue closes, so this is a panic in a store call): start
            // a new one rather than lose the operation.
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(work_off(self.store.clone(), profile.to_owned(), rx));
            let _ = tx.send(job);
            *queue = tx;
        }
    }
}

/// The task behind one profile's queue: one operation at a time, in queue order.
async fn work_off(store: Arc<dyn SecretStore>, profile: String, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = queue.recv().await {
        let store = store.clone();
        let name = profile.clone();
        match job {
            Job::Load(reply) => {
                let result = blocking(move || store.load(&name)).await;
                let _ = reply.send(result);
            }
            Job::Save { account, wanted, done } => {
                if !wanted() {
                    tracing::debug!(profile = %profile, "dropped a store write whose account is gone");
                    let _ = done.send(None);
                    continue;
                }
                let result = blocking(move || store.save(&name, &account)).await;
                let _ = done.send(Some(result));
            }
            Job::Delete(reply) => {
                let result = blocking(move || store.delete(&name)).await;
                let _ = reply.send(result);
            }
        }
    }
}

/// Runs a store call on the blocking pool; a panic in it becomes a store error.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(StoreError::Failed { message: format!("the keychain task failed: {e}") }))
}

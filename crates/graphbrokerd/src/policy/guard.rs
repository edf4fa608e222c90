//! The state the broker keeps for the policy (`Broker::guard`): the audit log's writer and the asks waiting for
//! an answer. It names nothing of the broker, so the broker can own it; what the policy does with it is in
//! `mod.rs` and `ask.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use graphbroker_protocol::PendingAsk;
use tokio::sync::oneshot;

use crate::audit::AuditLog;

/// The policy's state beside the config: the audit log, the asks waiting for an answer.
#[derive(Debug, Default)]
pub struct Guard {
    pub(super) audit: OnceLock<AuditLog>,
    pub(crate) approvals: Approvals,
    /// Serializes edits of the config file.
    pub(super) editing: std::sync::Mutex<()>,
}

impl Guard {
    /// Writes every later decision to `log`. Once; later calls are ignored.
    pub fn start_audit(&self, log: AuditLog) {
        let _ = self.audit.set(log);
    }
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Once,
    Always,
    Deny,
}

impl Answer {
    /// The notification action keys.
    pub fn from_action(key: &str) -> Option<Self> {
        match key {
            "allow" => Some(Self::Once),
            "always" => Some(Self::Always),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

struct Pending {
    info: PendingAsk,
    asker: Option<i32>,
    answer: oneshot::Sender<Answer>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("info", &self.info).finish_non_exhaustive()
    }
}

/// The asks waiting for an answer, by id.
#[derive(Debug, Default)]
pub struct Approvals {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, Pending>>,
}

impl Approvals {
    pub fn list(&self) -> Vec<PendingAsk> {
        self.pending.lock().expect("approvals lock").values().map(|p| p.info.clone()).collect()
    }

    /// Answers ask `id` on behalf of process `answerer`. The asking process cannot answer its own ask.
    pub fn answer(&self, id: u64, answer: Answer, answerer: Option<i32>) -> Result<(), String> {
        let mut pending = self.pending.lock().expect("approvals lock");
        let Some(ask) = pending.get(&id) else {
            return Err(format!("no request is waiting with id {id}: see `graphbroker-client policy list`"));
        };
        if answerer.is_some() && ask.asker == answerer {
            return Err("a program cannot answer its own request".into());
        }
        let ask = pending.remove(&id).expect("present");
        let _ = ask.answer.send(answer);
        Ok(())
    }

    pub(super) fn open(
        &self,
        info: impl FnOnce(u64) -> PendingAsk,
        asker: Option<i32>,
    ) -> (u64, oneshot::Receiver<Answer>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("approvals lock").insert(id, Pending { info: info(id), asker, answer: tx });
        (id, rx)
    }

    pub(super) fn close(&self, id: u64) {
        self.pending.lock().expect("approvals lock").remove(&id);
    }
}

//! The audit log: one JSON line per token decision (`graphbroker_protocol::AuditEntry`), never a token or a code.
//!
//! Off the hot path: a request hands its entry to a bounded channel ([`AuditLog::record`] never blocks) and one
//! writer thread appends it. The file is created 0600 in a 0700 directory; past [`MAX_BYTES`] it is rotated to
//! `audit.jsonl.1` (and `.1` to `.2`, the oldest dropped), so the log never grows without bound. When the
//! channel is full (the disk stalls) lines are dropped and counted, and the count is logged: a request is never
//! held for the log.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use graphbroker_protocol::AuditEntry;

/// The size past which the log is rotated.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP: u32 = 2;
/// Lines that may wait for the writer.
const QUEUE: usize = 4096;

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: SyncSender<AuditEntry>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn start(path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut writer = Writer { file: open(&path)?, path, max_bytes };
        let (tx, rx) = sync_channel::<AuditEntry>(QUEUE);
        std::thread::Builder::new().name("audit".into()).spawn(move || {
            while let Ok(entry) = rx.recv() {
                // Serialized here, on the writer's thread: the request only moved the entry into the channel.
                let Ok(mut line) = serde_json::to_string(&entry) else { continue };
                line.push('\n');
                if let Err(e) = writer.append(&line) {
                    tracing::warn!("could not write the audit log {}: {e}", writer.path.display());
                }
            }
        })?;
        Ok(Self { tx, dropped: Arc::default() })
    }

    /// Queues `entry`; never waits.
    pub fn record(&self, entry: AuditEntry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!("the audit log's writer is behind: {dropped} lines dropped so far");
                }
            }
            Err(TrySendError::Disconnected(_)) => tracing::warn!("the audit log's writer stopped; a line was lost"),
        }
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    max_bytes: u64,
}

impl Writer {
    fn append(&mut self, line: &str) -> std::io::Result<()> {
        let size = self.file.metadata()?.len();
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..KEEP).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        fs::rename(&self.path, numbered(1))?;
        self.file = open(&self.path)?;
        Ok(())
    }
}

/// Opens `path` for appending, created 0600; an existing file is made 0600 too.
fn open(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_protocol::{AuditOutcome, AuditRoute, CallerInfo, EpochSeconds};

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            time: EpochSeconds(n),
            profile: Some("default".into()),
            account: None,
            resource: None,
            scopes: vec!["https://graph.microsoft.com/User.Read".into()],
            route: AuditRoute::Token,
            program: CallerInfo::default(),
            outcome: AuditOutcome::Cache,
            error: None,
            decided_by: None,
        }
    }

    #[test]
    fn the_log_is_private_and_rotated_past_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.jsonl");
        let mut writer = Writer {
            file: open(&{
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                path.clone()
            })
            .unwrap(),
            path: path.clone(),
            max_bytes: 400,
        };
        for n in 0..20 {
            writer.append(&(serde_json::to_string(&entry(n)).unwrap() + "\n")).unwrap();
        }
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(fs::metadata(&path).unwrap().len() <= 400);
        assert!(path.with_extension("jsonl.1").exists());
        assert!(path.with_extension("jsonl.2").exists());
        assert!(!path.with_extension("jsonl.3").exists());
        let last: AuditEntry =
            serde_json::from_str(fs::read_to_string(&path).unwrap().lines().last().unwrap()).unwrap();
        assert_eq!(last.time, EpochSeconds(19));
    }
}

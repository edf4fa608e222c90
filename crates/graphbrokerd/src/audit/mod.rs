//! The audit log: one JSON line per token decision (`graphbroker_protocol::AuditEntry`), never a token or a code.
//!
//! Off the hot path: a request hands its entry to a bounded queue ([`AuditLog::record`] never blocks) and one
//! writer thread appends what has queued up, in one write, keeping the file's size in memory. The queue holds at
//! most [`QUEUE`] lines and takes memory only for the lines in it: a channel allocated at its bound would keep
//! 4,096 entries' room (1.5 MiB) resident for the daemon's life (docs/performance.md, "Idle RSS, broken down"). A connection's
//! repeated cache hits are folded ([`Fold`]): the first is a line of its own, the ones like it that follow on
//! the same connection are counted and written as one line with `repeats` (when a different decision comes,
//! the run is a minute old, or the connection closes). So a program asking in a loop costs the request path a
//! compare and an add, not a line, and cannot push other programs' lines out of the capped log. The file is created 0600 in a 0700 directory; past [`MAX_BYTES`] it is rotated to
//! `audit.jsonl.1` (and `.1` to `.2`, the oldest dropped), so the log never grows without bound. When the
//! queue is full (the disk stalls) lines are dropped and counted, and the count is logged: a request is never
//! held for the log.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use graphbroker_protocol::{AuditEntry, AuditRoute, EpochSeconds};

/// The size past which the log is rotated.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP: u32 = 2;
/// Lines that may wait for the writer; past this many a line is dropped and counted.
pub const QUEUE: usize = 4096;
/// The most the writer gathers into one write.
const BATCH_BYTES: usize = 64 * 1024;
/// The longest a run of folded repeats is held before its count is written (see [`Fold`]).
pub const FOLD_SECONDS: u64 = 60;

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    /// Unbounded as a channel (it allocates as lines come, a block of a few dozen at a time, and frees the blocks
    /// the writer is done with); `queued` is the bound.
    tx: Sender<AuditEntry>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn start(path: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = open(&path)?;
        let size = file.metadata()?.len();
        let mut writer = Writer { file, path, max_bytes, size };
        let (log, taken) = Self::queue();
        std::thread::Builder::new().name("audit".into()).spawn(move || {
            let mut batch = Vec::new();
            while let Some(entry) = taken.recv() {
                // Serialized here, on the writer's thread: the request only moved the entry into the channel.
                // Whatever queued up meanwhile goes in the same write.
                batch.clear();
                let mut next = Some(entry);
                while let Some(entry) = next.take() {
                    let start = batch.len();
                    match serde_json::to_writer(&mut batch, &entry) {
                        Ok(()) => batch.push(b'\n'),
                        Err(_) => batch.truncate(start),
                    }
                    if batch.len() < BATCH_BYTES {
                        next = taken.try_recv();
                    }
                }
                if let Err(e) = writer.append(&batch) {
                    tracing::warn!("could not write the audit log {}: {e}", writer.path.display());
                }
            }
        })?;
        Ok(log)
    }

    /// The queue's two ends, empty.
    fn queue() -> (Self, Taken) {
        let (tx, rx) = channel::<AuditEntry>();
        let queued = Arc::new(AtomicUsize::new(0));
        (Self { tx, queued: queued.clone(), dropped: Arc::default() }, Taken { rx, queued })
    }

    /// Queues `entry`; never waits. With [`QUEUE`] lines waiting already, the line is dropped and counted.
    pub fn record(&self, entry: AuditEntry) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!("the audit log's writer is behind: {dropped} lines dropped so far");
            }
            return;
        }
        if self.tx.send(entry).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("the audit log's writer stopped; a line was lost");
        }
    }
}

/// The writer's end of the queue: each line taken frees its place.
struct Taken {
    rx: Receiver<AuditEntry>,
    queued: Arc<AtomicUsize>,
}

impl Taken {
    /// The next line, waiting for one; `None` once every sender is gone.
    fn recv(&self) -> Option<AuditEntry> {
        let entry = self.rx.recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(entry)
    }

    /// The next line if one is waiting.
    fn try_recv(&self) -> Option<AuditEntry> {
        let entry = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(entry)
    }
}

/// What makes a cache hit the same decision as the last one of its connection (the program is the connection's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldKey {
    pub profile: String,
    pub account: String,
    pub scopes: Vec<String>,
    pub route: AuditRoute,
    pub decided_by: Option<Cow<'static, str>>,
}

/// A connection's run of identical cache hits (see the module docs). Held by the connection; dropping it writes
/// the count still owed.
#[derive(Debug, Default)]
pub struct Fold(Mutex<Option<Run>>);

#[derive(Debug)]
struct Run {
    log: AuditLog,
    key: FoldKey,
    /// The run's first line, already written; the folded line repeats it with `repeats` and the last time.
    line: AuditEntry,
    repeats: u64,
    since: EpochSeconds,
    last: EpochSeconds,
}

impl Run {
    fn write_repeats(&mut self) {
        if self.repeats > 0 {
            let mut line = self.line.clone();
            line.time = self.last;
            line.repeats = Some(self.repeats);
            self.log.record(line);
            self.repeats = 0;
        }
    }
}

impl Fold {
    /// Counts a decision at `now` into the run when `same` says it is the run's; `false` (nothing counted) when
    /// there is no run or it is another decision, which then needs a line of its own. A run a minute old writes
    /// its count and goes on.
    pub fn repeat(&self, now: EpochSeconds, same: impl FnOnce(&FoldKey) -> bool) -> bool {
        let mut run = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(run) = run.as_mut().filter(|run| same(&run.key)) else { return false };
        run.repeats += 1;
        run.last = now;
        if now.0.saturating_sub(run.since.0) >= FOLD_SECONDS {
            run.write_repeats();
            run.since = now;
        }
        true
    }

    /// Ends the run, writing the count it owes: call before writing another decision's line, so the log stays
    /// in order.
    pub fn end(&self) {
        if let Some(mut run) = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            run.write_repeats();
        }
    }

    /// Starts a run after `line` (just written to `log`) for decisions like `key`.
    pub fn start(&self, log: &AuditLog, key: FoldKey, line: AuditEntry) {
        let since = line.time;
        let mut run = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = run.as_mut() {
            old.write_repeats();
        }
        *run = Some(Run { log: log.clone(), key, line, repeats: 0, since, last: since });
    }
}

impl Drop for Fold {
    fn drop(&mut self) {
        self.end();
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    max_bytes: u64,
    /// The file's size, kept here rather than asked of the file system for each write.
    size: u64,
}

impl Writer {
    fn append(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(lines)?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..KEEP).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        fs::rename(&self.path, numbered(1))?;
        self.file = open(&self.path)?;
        self.size = 0;
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
            repeats: None,
        }
    }

    #[test]
    fn the_queue_holds_at_most_its_bound_and_a_line_taken_frees_a_place() {
        let (log, taken) = AuditLog::queue();
        for n in 0..QUEUE as u64 + 3 {
            log.record(entry(n));
        }
        assert_eq!(log.queued.load(Ordering::Acquire), QUEUE);
        assert_eq!(log.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(taken.try_recv().map(|e| e.time), Some(EpochSeconds(0)));
        log.record(entry(99_999));
        assert_eq!((log.queued.load(Ordering::Acquire), log.dropped.load(Ordering::Relaxed)), (QUEUE, 3));
        let mut last = None;
        while let Some(entry) = taken.try_recv() {
            last = Some(entry.time);
        }
        assert_eq!((last, log.queued.load(Ordering::Acquire)), (Some(EpochSeconds(99_999)), 0));
        drop(taken);
        log.record(entry(1));
        assert_eq!(log.queued.load(Ordering::Acquire), 0, "a line the stopped writer cannot take holds no place");
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
            size: 0,
        };
        for n in 0..20 {
            writer.append((serde_json::to_string(&entry(n)).unwrap() + "\n").as_bytes()).unwrap();
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

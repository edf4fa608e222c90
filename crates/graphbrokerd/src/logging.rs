//! The daemon's own log: to standard error (a terminal, or the journal under systemd), or with `--log-file` to a
//! size-capped file, which is what a daemon autostarted by `graphbroker-client` gets instead of `/dev/null`.
//!
//! The file is created 0600; a directory created for it is 0700, and so is the default directory
//! (`graphbroker_protocol::default_state_dir`), which is the daemon's own. Past [`MAX_BYTES`] the file is renamed
//! to `PATH.1` (replacing the previous one) and a new one started, so at most twice the cap is kept.
//! `tracing-appender` rotates by time only, so this small writer does it by size.
//!
//! Where the log goes is recorded once at start ([`destination`]) for `GET /v1/status`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use graphbroker_protocol::LogDestination;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The size past which the log file is rotated.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

static DESTINATION: OnceLock<LogDestination> = OnceLock::new();

/// Where this process's log goes; `None` before [`init`] (in-process tests).
pub fn destination() -> Option<LogDestination> {
    DESTINATION.get().cloned()
}

/// Installs the global subscriber: to `log_file` when given and it can be opened, else to standard error.
/// Returns why the file could not be used, for the caller to report once logging works.
pub fn init(filter: EnvFilter, log_file: Option<&Path>) -> Option<String> {
    let (writer, destination, problem, ansi) = match log_file.map(|path| (path, CappedLog::open(path, MAX_BYTES))) {
        Some((path, Ok(log))) => {
            let shown = LogDestination::File { path: path.display().to_string() };
            (BoxMakeWriter::new(Arc::new(log)), shown, None, false)
        }
        other => {
            let problem = other.and_then(|(path, opened)| {
                opened
                    .err()
                    .map(|e| format!("the log file {} could not be opened ({e}); logging to stderr", path.display()))
            });
            let journal = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
            let shown = if journal { LogDestination::Journal } else { LogDestination::Stderr };
            // Colours only on a terminal: journald and log files would keep the escape codes.
            let ansi = io::IsTerminal::is_terminal(&io::stderr());
            (BoxMakeWriter::new(io::stderr), shown, problem, ansi)
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer).init();
    let _ = DESTINATION.set(destination);
    problem
}

/// A log file capped at `max_bytes`, with one rotated copy. Every tracing event is one `write` of its whole line
/// (the formatter buffers it), so a line is never split across the two files.
pub struct CappedLog {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CappedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CappedLog").field("path", &inner.path).field("written", &inner.written).finish()
    }
}

struct Inner {
    file: File,
    path: PathBuf,
    written: u64,
    max_bytes: u64,
}

impl CappedLog {
    /// Opens (or creates) the log at `path` for appending.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            prepare_directory(dir)?;
        }
        let file = open(path)?;
        let written = file.metadata()?.len();
        Ok(Self { inner: Mutex::new(Inner { file, path: path.to_path_buf(), written, max_bytes }) })
    }
}

impl Write for &CappedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.written > 0 && inner.written + buf.len() as u64 > inner.max_bytes {
            inner.rotate();
        }
        let n = inner.file.write(buf)?;
        inner.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).file.flush()
    }
}

impl Inner {
    /// `PATH` becomes `PATH.1` and a new `PATH` is started. Should that fail, the file is emptied instead: the cap
    /// holds either way.
    fn rotate(&mut self) {
        let rotated = PathBuf::from(format!("{}.1", self.path.display()));
        let renewed = fs::rename(&self.path, &rotated).and_then(|()| open(&self.path));
        match renewed {
            Ok(file) => self.file = file,
            Err(_) => {
                let _ = self.file.set_len(0);
            }
        }
        self.written = 0;
    }
}

/// Creates `dir` 0700 if missing. The default state directory is the daemon's own and is made 0700 even when it
/// exists; a directory the user named is left as it is.
fn prepare_directory(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    if graphbroker_protocol::default_state_dir().is_some_and(|own| own == dir) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens `path` for appending, created 0600; an existing file is made 0600 too.
fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_log_is_capped_with_one_rotated_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("new/dir/graphbrokerd.log");
        let log = CappedLog::open(&path, 100).unwrap();
        for n in 0..30 {
            (&log).write_all(format!("line {n:02} of the log\n").as_bytes()).unwrap(); // 19 bytes each
        }
        let current = fs::read_to_string(&path).unwrap();
        let rotated = fs::read_to_string(root.path().join("new/dir/graphbrokerd.log.1")).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100, "{current:?} / {rotated:?}");
        // Whole lines only, the newest last, and the rotated file holds the lines just before.
        assert!(current.ends_with("line 29 of the log\n"), "{current:?}");
        assert!(current.starts_with("line "), "{current:?}");
        assert!(rotated.ends_with(&format!("line {:02} of the log\n", 29 - current.lines().count())), "{rotated:?}");
        assert!(!root.path().join("new/dir/graphbrokerd.log.2").exists());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("new/dir/graphbrokerd.log.1")), 0o600);
        assert_eq!(mode(&root.path().join("new/dir")), 0o700);
        assert_eq!(mode(&root.path().join("new")), 0o700);
    }

    #[test]
    fn a_reopened_log_counts_what_it_already_holds() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("graphbrokerd.log");
        fs::write(&path, "x".repeat(90)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let log = CappedLog::open(&path, 100).unwrap();
        assert_eq!(mode(&path), 0o600, "an existing file is made private");
        (&log).write_all(b"one more line\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one more line\n");
        assert_eq!(fs::read_to_string(root.path().join("graphbrokerd.log.1")).unwrap(), "x".repeat(90));
    }
}

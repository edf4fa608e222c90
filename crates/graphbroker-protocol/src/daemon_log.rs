//! Where the daemon's own log goes: the file an autostarted daemon writes, and how `GET /v1/status` says so.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The daemon's log file name, in [`default_state_dir`]; the rotated copy adds `.1`.
pub const LOG_FILE_NAME: &str = "graphbrokerd.log";

/// The directory of the daemon's files that are neither config nor runtime (its log, the audit log):
/// `$XDG_STATE_HOME/graphbroker/` (else `~/.local/state/graphbroker/`); on macOS `~/Library/Logs/graphbroker/`.
/// `None` without a home.
pub fn default_state_dir() -> Option<PathBuf> {
    let absolute = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let dir = if cfg!(target_os = "macos") {
        absolute("HOME")?.join("Library/Logs")
    } else {
        absolute("XDG_STATE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".local/state")))?
    };
    Some(dir.join("graphbroker"))
}

/// The log file a daemon started by `graphbroker-client` (autostart) writes: [`LOG_FILE_NAME`] in
/// [`default_state_dir`]. `None` without a home.
pub fn default_log_path() -> Option<PathBuf> {
    Some(default_state_dir()?.join(LOG_FILE_NAME))
}

/// Where the daemon's log goes, in `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum LogDestination {
    /// A size-capped file (`--log-file`), with one rotated copy beside it (`PATH.1`).
    File { path: String },
    /// Standard error, which the service manager connected to the journal (`JOURNAL_STREAM` was set).
    Journal,
    /// Standard error, wherever whoever started the daemon sent it (a terminal, launchd's log file).
    Stderr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_tagged() {
        let file = LogDestination::File { path: "/s/graphbrokerd.log".into() };
        let json = serde_json::to_string(&file).unwrap();
        assert_eq!(json, r#"{"to":"file","path":"/s/graphbrokerd.log"}"#);
        assert_eq!(serde_json::from_str::<LogDestination>(&json).unwrap(), file);
        assert_eq!(serde_json::to_string(&LogDestination::Journal).unwrap(), r#"{"to":"journal"}"#);
    }
}

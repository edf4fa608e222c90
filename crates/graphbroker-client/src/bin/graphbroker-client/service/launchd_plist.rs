//! The launchd agent's property list: built as a `plist` value and written (and read back) by the `plist` crate.
//!
//! Kept apart from `launchd.rs`, which only macOS compiles, so that every platform builds and tests it: the unit
//! tests below hold it to `launchd/io.github.graphbroker.graphbrokerd.plist`, and `__generate launchd-plist`
//! lets the integration tests parse what it writes.

use std::path::{Path, PathBuf};

use plist::{Dictionary, Value};

use crate::exit_status::{ExitStatus, Failure};

/// The agent's label, which is also the plist's file name.
pub const LABEL: &str = "io.github.graphbroker.graphbrokerd";

/// The name graphbrokerd passes to `launch_activate_socket` (crates/graphbrokerd/src/activation.rs).
const LISTENERS: &str = "Listeners";

/// The socket's mode, 0600: plists have no octal, so the file shows 384.
const SOCKET_MODE: i64 = 0o600;

/// The log file's name inside the log directory (`~/Library/Logs/graphbroker`).
pub const LOG_FILE: &str = "graphbrokerd.log";

/// The agent: launchd holds a Unix stream socket at `socket` and starts `program` on the first connection, not
/// at login; after an exit (idle, or a crash) the next connection starts it again, so it is not kept alive.
/// launchd expands neither `~` nor variables, so every path must be absolute (install passes absolute ones).
pub fn agent(program: &Path, socket: &Path, log_dir: &Path) -> Result<Value, Failure> {
    let log = log_dir.join(LOG_FILE);
    let mut listener = Dictionary::new();
    listener.insert("SockPathName".into(), string(socket)?);
    listener.insert("SockPathMode".into(), Value::Integer(SOCKET_MODE.into()));
    listener.insert("SockType".into(), Value::String("stream".into()));
    let mut sockets = Dictionary::new();
    sockets.insert(LISTENERS.into(), Value::Dictionary(listener));

    let mut agent = Dictionary::new();
    agent.insert("Label".into(), Value::String(LABEL.into()));
    agent.insert("ProgramArguments".into(), Value::Array(vec![string(program)?]));
    agent.insert("Sockets".into(), Value::Dictionary(sockets));
    agent.insert("RunAtLoad".into(), Value::Boolean(false));
    agent.insert("KeepAlive".into(), Value::Boolean(false));
    // Also started daily (at noon, or at wake when asleep then): the daemon runs the rolling refresh of idle
    // accounts at every start, then exits when idle; launchd's counterpart of graphbroker-refresh.timer.
    let mut daily = Dictionary::new();
    daily.insert("Hour".into(), Value::Integer(12.into()));
    daily.insert("Minute".into(), Value::Integer(0.into()));
    agent.insert("StartCalendarInterval".into(), Value::Dictionary(daily));
    agent.insert("StandardOutPath".into(), string(&log)?);
    agent.insert("StandardErrorPath".into(), string(&log)?);
    Ok(Value::Dictionary(agent))
}

/// The agent as the XML file launchd reads.
pub fn agent_xml(program: &Path, socket: &Path, log_dir: &Path) -> Result<String, Failure> {
    let mut xml = Vec::new();
    agent(program, socket, log_dir)?
        .to_writer_xml(&mut xml)
        .map_err(|error| Failure::new(ExitStatus::Other, format!("could not write the launchd plist: {error}")))?;
    xml.push(b'\n');
    String::from_utf8(xml)
        .map_err(|error| Failure::new(ExitStatus::Other, format!("the launchd plist is not UTF-8: {error}")))
}

/// What an installed plist says: the program it runs and the socket launchd holds for it, where present.
#[derive(Debug, Default, PartialEq, Eq)]
#[cfg_attr(not(target_os = "macos"), allow(dead_code, reason = "read back by the macOS `service status` only"))]
pub struct Installed {
    pub program: Option<String>,
    pub socket: Option<PathBuf>,
}

/// Reads back the plist at `path`; `None` when it is missing or not a plist dictionary.
#[cfg_attr(not(target_os = "macos"), allow(dead_code, reason = "read back by the macOS `service status` only"))]
pub fn read_installed(path: &Path) -> Option<Installed> {
    installed(&Value::from_file(path).ok()?)
}

#[cfg_attr(not(target_os = "macos"), allow(dead_code, reason = "read back by the macOS `service status` only"))]
fn installed(plist: &Value) -> Option<Installed> {
    let agent = plist.as_dictionary()?;
    let program = agent
        .get("ProgramArguments")
        .and_then(Value::as_array)
        .and_then(|arguments| arguments.first())
        .and_then(Value::as_string)
        .map(str::to_owned);
    let socket = agent
        .get("Sockets")
        .and_then(Value::as_dictionary)
        .and_then(|sockets| sockets.get(LISTENERS))
        .and_then(Value::as_dictionary)
        .and_then(|listener| listener.get("SockPathName"))
        .and_then(Value::as_string)
        .map(PathBuf::from);
    Some(Installed { program, socket })
}

/// A path as a plist string; the format has no room for bytes that are not UTF-8.
fn string(path: &Path) -> Result<Value, Failure> {
    let text = path.to_str().ok_or_else(|| {
        Failure::new(
            ExitStatus::Other,
            format!("{} is not UTF-8 and cannot be written into a plist; use a plainer path", path.display()),
        )
    })?;
    Ok(Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOSITORY_PLIST: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../launchd/io.github.graphbroker.graphbrokerd.plist"));

    fn parse(xml: &str) -> Value {
        Value::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap()
    }

    #[test]
    fn the_repository_plist_is_what_install_writes_with_its_placeholders() {
        let built = agent(Path::new("@GRAPHBROKERD@"), Path::new("@SOCKET@"), Path::new("@LOG_DIR@")).unwrap();
        assert_eq!(parse(REPOSITORY_PLIST), built, "launchd/{LABEL}.plist and the code disagree; update the file");
    }

    #[test]
    fn paths_are_escaped_and_read_back_as_written() {
        let (program, socket, logs) = (
            Path::new("/Users/a&b <c>/bin/graphbrokerd"),
            Path::new("/var/folders/xy/T/graphbroker-501/graphbroker.sock"),
            Path::new("/Users/a&b <c>/Library/Logs/graphbroker"),
        );
        let xml = agent_xml(program, socket, logs).unwrap();
        assert!(xml.contains("<string>/Users/a&amp;b &lt;c&gt;/Library/Logs/graphbroker/graphbrokerd.log</string>"));
        let read = installed(&parse(&xml)).unwrap();
        assert_eq!(read.program.as_deref(), program.to_str());
        assert_eq!(read.socket.as_deref(), Some(socket));
    }

    #[test]
    fn a_plist_of_another_shape_reads_as_nothing_installed() {
        assert_eq!(installed(&Value::Array(Vec::new())), None);
        assert_eq!(installed(&Value::Dictionary(Dictionary::new())), Some(Installed::default()));
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused_with_a_reason() {
        use std::os::unix::ffi::OsStrExt;
        let program = Path::new(std::ffi::OsStr::from_bytes(b"/opt/\xff/graphbrokerd"));
        let failure = agent(program, Path::new("/s.sock"), Path::new("/logs")).unwrap_err();
        assert!(failure.message.contains("not UTF-8"), "{}", failure.message);
    }
}

//! systemd user units: `graphbroker.socket` holds the socket at `%t/graphbroker/graphbroker.sock` and
//! `graphbroker.service` runs graphbrokerd on the first connection, handing it the listener;
//! `graphbroker-refresh.timer` starts `graphbroker-refresh.service` daily, which asks for the rolling refresh.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use graphbroker_client::protocol::{SOCKET_DIR_NAME, SOCKET_FILE_NAME};

use super::{FileChange, ToolRun, home_dir, remove_file, render, run_tool, say, stop_unmanaged_daemon, write_file};
use crate::exit_status::{ExitStatus, Failure};

const SOCKET_UNIT: &str = "graphbroker.socket";
const SERVICE_UNIT: &str = "graphbroker.service";
const REFRESH_UNIT: &str = "graphbroker-refresh.service";
const TIMER_UNIT: &str = "graphbroker-refresh.timer";

/// The units as the repository has them; `systemd/graphbroker.service` carries the daemon placeholder.
const SOCKET_TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../systemd/graphbroker.socket"));
const SERVICE_TEMPLATE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../systemd/graphbroker.service"));
/// `graphbroker-refresh.service` carries the client placeholder ([`CLIENT_PLACEHOLDER`]).
const REFRESH_TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../systemd/graphbroker-refresh.service"));
const TIMER_TEMPLATE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../systemd/graphbroker-refresh.timer"));

/// Where `graphbroker-refresh.service` names this client's absolute path.
const CLIENT_PLACEHOLDER: &str = "@GRAPHBROKER_CLIENT@";

/// The refresh service as installed for the client at `client` (an `ExecStart=` path, escaped).
fn render_refresh(client: &str) -> String {
    REFRESH_TEMPLATE.replace(CLIENT_PLACEHOLDER, client)
}

/// This client's path as an `ExecStart=` command, for the refresh service.
fn client_exec() -> Result<String, Failure> {
    let program = std::env::current_exe().map_err(|error| {
        Failure::new(ExitStatus::Other, format!("cannot tell where graphbroker-client is installed: {error}"))
    })?;
    exec_path(&program)
}

const NO_SYSTEMD: &str = "systemctl was not found, so there is no systemd here to run the service; \
                          graphbroker-client starts graphbrokerd by itself when it is needed, no service required";

/// Where `service install` puts the units, as systemd looks for them: `$XDG_CONFIG_HOME/systemd/user`, else
/// `~/.config/systemd/user`.
fn unit_dir() -> Result<PathBuf, Failure> {
    Ok(unit_dir_in(std::env::var_os("XDG_CONFIG_HOME"), &home_dir()?))
}

fn unit_dir_in(config_home: Option<OsString>, home: &Path) -> PathBuf {
    // The XDG base directory spec says to ignore a relative value, and so does systemd.
    let config_home = config_home.map(PathBuf::from).filter(|dir| dir.is_absolute());
    config_home.unwrap_or_else(|| home.join(".config")).join("systemd").join("user")
}

/// The socket graphbroker.socket listens on: `%t` is the user manager's `$XDG_RUNTIME_DIR`, which is also the
/// first place clients look (after `GRAPHBROKER_SOCKET`).
pub fn service_socket() -> Option<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty())?;
    Some(PathBuf::from(runtime).join(SOCKET_DIR_NAME).join(SOCKET_FILE_NAME))
}

pub fn install(program: &Path) -> Result<(), Failure> {
    let exec = exec_path(program)?;
    if [Path::new("/tmp"), Path::new("/var/tmp")].iter().any(|tmp| program.starts_with(tmp)) {
        return Err(Failure::new(
            ExitStatus::Other,
            format!(
                "{} is under a temporary directory, which the service cannot see (PrivateTmp=yes); install \
                 graphbrokerd elsewhere",
                program.display()
            ),
        ));
    }
    // Asking first also finds out early whether a user manager answers at all.
    let socket_was_active = status_word("is-active", SOCKET_UNIT)? == "active";
    if !socket_was_active && let Some(socket) = service_socket() {
        stop_unmanaged_daemon(&socket)?;
    }

    let dir = unit_dir()?;
    let socket_change = write_file(&dir.join(SOCKET_UNIT), SOCKET_TEMPLATE)?;
    say(&format!("{} {}", socket_change.verb(), dir.join(SOCKET_UNIT).display()))?;
    let service_change = write_file(&dir.join(SERVICE_UNIT), &render(SERVICE_TEMPLATE, &exec))?;
    say(&format!("{} {} (ExecStart={exec})", service_change.verb(), dir.join(SERVICE_UNIT).display()))?;
    let client = client_exec()?;
    let refresh_change = write_file(&dir.join(REFRESH_UNIT), &render_refresh(&client))?;
    say(&format!("{} {}", refresh_change.verb(), dir.join(REFRESH_UNIT).display()))?;
    let timer_change = write_file(&dir.join(TIMER_UNIT), TIMER_TEMPLATE)?;
    say(&format!("{} {}", timer_change.verb(), dir.join(TIMER_UNIT).display()))?;

    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", "--now", SOCKET_UNIT])?;
    systemctl(&["enable", "--now", TIMER_UNIT])?;
    // A running daemon keeps the unit it started with; a changed unit takes effect on a restart. Restarting the
    // socket stops the service too (it requires the socket), and the next request starts it again.
    if socket_change == FileChange::Updated && socket_was_active {
        systemctl(&["restart", SOCKET_UNIT])?;
    } else if service_change == FileChange::Updated && status_word("is-active", SERVICE_UNIT)? == "active" {
        systemctl(&["restart", SERVICE_UNIT])?;
    }
    let socket = service_socket().map_or_else(|| "%t/graphbroker/graphbroker.sock".to_owned(), display);
    say(&format!("graphbrokerd starts on the first request to {socket}; its log: journalctl --user -u graphbroker"))
}

pub fn uninstall() -> Result<(), Failure> {
    let dir = unit_dir()?;
    let files = [dir.join(SOCKET_UNIT), dir.join(SERVICE_UNIT), dir.join(TIMER_UNIT), dir.join(REFRESH_UNIT)];
    if files.iter().any(|file| file.exists()) {
        systemctl(&["disable", "--now", SOCKET_UNIT, SERVICE_UNIT, TIMER_UNIT, REFRESH_UNIT])?;
    } else {
        say(&format!("no graphbroker units in {}", dir.display()))?;
    }
    let mut removed = false;
    for file in &files {
        if remove_file(file)? {
            say(&format!("removed {}", file.display()))?;
            removed = true;
        }
    }
    if removed {
        systemctl(&["daemon-reload"])?;
    }
    // Forget a failed state so that `systemctl --user --failed` does not keep listing a unit that is gone.
    let _ = run_systemctl(&["reset-failed", SOCKET_UNIT, SERVICE_UNIT, TIMER_UNIT, REFRESH_UNIT]);
    Ok(())
}

pub fn status() -> Result<(), Failure> {
    let dir = unit_dir()?;
    say(&format!("unit directory: {}", dir.display()))?;
    let refresh = client_exec().map(|client| render_refresh(&client)).unwrap_or_default();
    let units = [
        (SOCKET_UNIT, SOCKET_TEMPLATE),
        (SERVICE_UNIT, SERVICE_TEMPLATE),
        (TIMER_UNIT, TIMER_TEMPLATE),
        (REFRESH_UNIT, refresh.as_str()),
    ];
    for (unit, template) in units {
        let installed = match std::fs::read_to_string(dir.join(unit)) {
            Ok(text) if unit == REFRESH_UNIT => {
                if text == template {
                    "installed".to_owned()
                } else {
                    file_state(&text, template)
                }
            }
            Ok(text) => file_state(&text, template),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => "not installed".to_owned(),
            Err(error) => format!("unreadable ({error})"),
        };
        let states = match (status_word("is-enabled", unit), status_word("is-active", unit)) {
            (Ok(enabled), Ok(active)) => format!("is-enabled {enabled}, is-active {active}"),
            (Err(failure), _) | (_, Err(failure)) => failure.message,
        };
        say(&format!("{unit}: {installed}; {states}"))?;
    }
    match service_socket() {
        Some(socket) => {
            let present = if socket.exists() { "present" } else { "absent" };
            say(&format!("socket: {} ({present})", socket.display()))
        }
        None => say("socket: unknown, XDG_RUNTIME_DIR is not set (the service listens in the user manager's)"),
    }
}

/// Whether an installed unit is the one this client would write, and which daemon it runs.
fn file_state(installed: &str, template: &str) -> String {
    let exec = installed.lines().find_map(|line| line.strip_prefix("ExecStart="));
    let current = match exec {
        Some(exec) => installed == render(template, exec),
        None => installed == template,
    };
    let freshness = if current {
        "installed"
    } else {
        "installed but not as this graphbroker-client writes it (`graphbroker-client service install` rewrites it)"
    };
    match exec {
        Some(exec) => format!("{freshness}, runs {exec}"),
        None => freshness.to_owned(),
    }
}

/// What autostart needs to know: graphbroker.socket is installed and listens on `socket`.
pub fn managed_socket(socket: &Path) -> Option<String> {
    let installed = unit_dir().ok()?.join(SOCKET_UNIT).is_file();
    (installed && service_socket().as_deref() == Some(socket)).then(|| {
        "systemd manages that socket (graphbroker.socket is installed); start it with `systemctl --user start \
         graphbroker.socket`, and see `journalctl --user -u graphbroker` if it stops again"
            .to_owned()
    })
}

/// The daemon's path as an `ExecStart=` command: `%` (specifiers) and `$` (variables) doubled, and quoted when it
/// holds a space, a quote or a backslash.
fn exec_path(program: &Path) -> Result<String, Failure> {
    let text = program.to_str().filter(|text| !text.contains(['\n', '\r'])).ok_or_else(|| {
        Failure::new(
            ExitStatus::Other,
            format!("{} cannot be written into a unit file; move graphbrokerd to a plainer path", program.display()),
        )
    })?;
    let escaped = text.replace('%', "%%").replace('$', "$$");
    if escaped.contains([' ', '\t', '"', '\'', '\\']) {
        Ok(format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\"")))
    } else {
        Ok(escaped)
    }
}

fn display(path: PathBuf) -> String {
    path.display().to_string()
}

fn run_systemctl(args: &[&str]) -> Result<ToolRun, Failure> {
    let mut full = vec!["--user"];
    full.extend_from_slice(args);
    run_tool("systemctl", &full, NO_SYSTEMD)
}

/// Runs `systemctl --user ARGS`, which must succeed, and says so.
fn systemctl(args: &[&str]) -> Result<(), Failure> {
    let run = run_systemctl(args)?;
    let command = format!("systemctl --user {}", args.join(" "));
    if !run.success {
        return Err(Failure::new(ExitStatus::Other, format!("{command} failed: {}", one_line(&run.stderr))));
    }
    say(&format!("ran {command}"))
}

/// `systemctl --user is-active|is-enabled UNIT`'s answer, which comes with a non-zero status for every answer but
/// the positive one; a failure when systemctl could not answer at all (no user manager).
fn status_word(question: &str, unit: &str) -> Result<String, Failure> {
    let run = run_systemctl(&[question, unit])?;
    match run.stdout.lines().next() {
        Some(word) if !word.is_empty() => Ok(word.to_owned()),
        // is-enabled says nothing on stdout for a unit it has no file for.
        _ if question == "is-enabled" && run.stderr.contains("No such file") => Ok("not-found".to_owned()),
        _ => Err(Failure::new(
            ExitStatus::Other,
            format!(
                "systemctl --user {question} {unit} failed: {}; is a systemd user manager running for this user \
                 (log in, or `loginctl enable-linger`)?",
                one_line(&run.stderr)
            ),
        )),
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("no message");
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_go_under_the_config_home() {
        let home = Path::new("/home/adele");
        assert_eq!(unit_dir_in(None, home), Path::new("/home/adele/.config/systemd/user"));
        assert_eq!(unit_dir_in(Some("/cfg".into()), home), Path::new("/cfg/systemd/user"));
        // Relative (or empty) values are ignored, as the XDG spec says.
        assert_eq!(unit_dir_in(Some("cfg".into()), home), Path::new("/home/adele/.config/systemd/user"));
        assert_eq!(unit_dir_in(Some("".into()), home), Path::new("/home/adele/.config/systemd/user"));
    }

    #[test]
    fn exec_paths_are_escaped_for_systemd() {
        let exec = |path: &str| exec_path(Path::new(path)).unwrap();
        assert_eq!(exec("/usr/bin/graphbrokerd"), "/usr/bin/graphbrokerd");
        assert_eq!(exec("/opt/100%/$HOME/graphbrokerd"), "/opt/100%%/$$HOME/graphbrokerd");
        assert_eq!(exec("/opt/My Apps/graphbrokerd"), "\"/opt/My Apps/graphbrokerd\"");
        assert_eq!(exec(r#"/opt/a"b\c/graphbrokerd"#), r#""/opt/a\"b\\c/graphbrokerd""#);
        assert!(exec_path(Path::new("/opt/a\nb/graphbrokerd")).is_err());
    }

    #[test]
    fn the_service_template_has_one_placeholder_in_exec_start() {
        assert_eq!(SERVICE_TEMPLATE.matches(super::super::DAEMON_PLACEHOLDER).count(), 1);
        assert!(SERVICE_TEMPLATE.lines().any(|line| line == "ExecStart=@GRAPHBROKERD@"));
        assert!(!SOCKET_TEMPLATE.contains('@'), "the socket unit needs no substitution");
        assert!(!TIMER_TEMPLATE.contains('@'), "the timer needs no substitution");
    }

    #[test]
    fn the_refresh_service_runs_this_client_and_the_timer_is_daily_and_persistent() {
        assert_eq!(REFRESH_TEMPLATE.matches(CLIENT_PLACEHOLDER).count(), 1);
        let unit = render_refresh("/usr/bin/graphbroker-client");
        assert!(unit.lines().any(|line| line == "ExecStart=/usr/bin/graphbroker-client --no-autostart refresh-idle"));
        assert!(unit.lines().any(|line| line == "Type=oneshot"));
        assert!(TIMER_TEMPLATE.lines().any(|line| line == "OnCalendar=daily"));
        assert!(TIMER_TEMPLATE.lines().any(|line| line == "Persistent=true"));
        assert!(TIMER_TEMPLATE.lines().any(|line| line == "WantedBy=timers.target"));
    }

    #[test]
    fn installed_units_are_compared_with_the_embedded_ones() {
        let installed = render(SERVICE_TEMPLATE, "/usr/bin/graphbrokerd");
        assert_eq!(file_state(&installed, SERVICE_TEMPLATE), "installed, runs /usr/bin/graphbrokerd");
        let edited = installed.replace("UMask=0077", "UMask=0022");
        assert!(file_state(&edited, SERVICE_TEMPLATE).starts_with("installed but not as"));
        assert_eq!(file_state(SOCKET_TEMPLATE, SOCKET_TEMPLATE), "installed");
    }
}

//! `graphbroker-client service`: the units and the plist it installs, checked as files (`systemd-analyze verify`,
//! a plist parser, the plist the client generates); its commands against a stand-in `systemctl`; autostart standing aside for an installed socket;
//! and the whole thing under a real `systemd --user` manager in a private mount namespace (`service_e2e.sh`).
//!
//! Tests that need a tool this machine lacks (systemd, root for `unshare -m`) print why and pass, unless
//! `GRAPHBROKER_TEST_SERVICE=required` (set by scripts/test) makes a skip a failure.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use graphbroker_client::{Client, ErrorCode, SignInPrompt, TokenQuery};

const SERVICE_TEMPLATE: &str = include_str!("../../../systemd/graphbroker.service");
const SOCKET_TEMPLATE: &str = include_str!("../../../systemd/graphbroker.socket");
const REFRESH_TEMPLATE: &str = include_str!("../../../systemd/graphbroker-refresh.service");
const TIMER_TEMPLATE: &str = include_str!("../../../systemd/graphbroker-refresh.timer");
const PLIST_NAME: &str = "io.github.graphbroker.graphbrokerd.plist";

/// Re-run of this binary acting as a graphbrokerd started outside systemd, listening on this socket.
const STAND_IN_SOCKET_ENV: &str = "GRAPHBROKER_CLIENT_TEST_UNMANAGED_SOCKET";

fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_graphbroker-client")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Skips a test for want of `what`, printing why; a failure under `GRAPHBROKER_TEST_SERVICE=required`.
fn skip(test: &str, what: &str) {
    if std::env::var("GRAPHBROKER_TEST_SERVICE").as_deref() == Ok("required") {
        panic!("{test}: {what}, but GRAPHBROKER_TEST_SERVICE=required");
    }
    eprintln!("skipping {test}: {what}");
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

fn write_executable(path: &Path, script: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory for one test, outside /tmp: the units run with PrivateTmp=yes, which hides /tmp from the service.
/// Cargo's target tmp dir, unless the checkout itself lies under a temporary directory (a CI clone may); then a
/// directory under `$HOME/.cache`.
fn test_dir() -> tempfile::TempDir {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let base = if [Path::new("/tmp"), Path::new("/var/tmp")].iter().any(|tmp| target_tmp.starts_with(tmp)) {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        let base = home.join(".cache/graphbroker-tests");
        std::fs::create_dir_all(&base).unwrap();
        base
    } else {
        target_tmp.to_owned()
    };
    let dir = tempfile::Builder::new().prefix("service-").tempdir_in(base).unwrap();
    // Private, as a runtime directory is: the client refuses a socket in a directory open to others.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `systemd-analyze verify --user` on unit files; every line it prints (warnings come with exit status 0) fails.
fn assert_units_verify(units: &[PathBuf]) {
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--user"])
        .args(units)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .expect("systemd-analyze runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && stdout.is_empty() && stderr.is_empty(),
        "systemd-analyze verify --user {units:?}: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

#[test]
fn the_repository_units_pass_systemd_analyze_verify_silently() {
    if !on_path("systemd-analyze") {
        return skip("the_repository_units_pass_systemd_analyze_verify_silently", "systemd-analyze is not installed");
    }
    let dir = test_dir();
    // A missing ExecStart binary is a fatal verify error, so the placeholder becomes a program that exists.
    let socket = dir.path().join("graphbroker.socket");
    let service = dir.path().join("graphbroker.service");
    std::fs::write(&socket, SOCKET_TEMPLATE).unwrap();
    std::fs::write(&service, SERVICE_TEMPLATE.replace("@GRAPHBROKERD@", client_bin())).unwrap();
    let refresh = dir.path().join("graphbroker-refresh.service");
    let timer = dir.path().join("graphbroker-refresh.timer");
    std::fs::write(&refresh, REFRESH_TEMPLATE.replace("@GRAPHBROKER_CLIENT@", client_bin())).unwrap();
    std::fs::write(&timer, TIMER_TEMPLATE).unwrap();
    assert_units_verify(&[socket, service, refresh, timer]);
}

#[test]
fn the_units_listen_where_clients_look_with_the_promised_modes() {
    let socket_lines: Vec<&str> = SOCKET_TEMPLATE.lines().collect();
    for line in ["ListenStream=%t/graphbroker/graphbroker.sock", "SocketMode=0600", "DirectoryMode=0700"] {
        assert!(socket_lines.contains(&line), "graphbroker.socket lacks {line}");
    }
    let service_lines: Vec<&str> = SERVICE_TEMPLATE.lines().collect();
    for line in ["Type=notify", "ExecStart=@GRAPHBROKERD@", "Restart=on-failure", "Requires=graphbroker.socket"] {
        assert!(service_lines.contains(&line), "graphbroker.service lacks {line}");
    }
}

#[test]
fn the_launchd_plist_has_what_launchd_and_the_daemon_need() {
    let path = repo_root().join("launchd").join(PLIST_NAME);
    let plist = plist::Value::from_file(&path).unwrap().into_dictionary().expect("a dictionary at the top");
    let string = |value: Option<&plist::Value>| value.and_then(plist::Value::as_string).map(str::to_owned);

    assert_eq!(string(plist.get("Label")).as_deref(), Some(PLIST_NAME.trim_end_matches(".plist")));
    let arguments = plist.get("ProgramArguments").and_then(plist::Value::as_array).expect("ProgramArguments");
    assert_eq!(arguments.len(), 1, "the daemon takes no flags under launchd");
    assert_eq!(arguments[0].as_string(), Some("@GRAPHBROKERD@"));

    // The socket: a Unix stream socket at the client's path, mode 0600 (plists have no octal: 384).
    let sockets = plist.get("Sockets").and_then(plist::Value::as_dictionary).expect("Sockets");
    assert_eq!(sockets.len(), 1);
    // The name is the one the daemon passes to launch_activate_socket.
    let (name, socket) = sockets.iter().next().unwrap();
    let activation = std::fs::read_to_string(repo_root().join("crates/graphbrokerd/src/activation.rs")).unwrap();
    assert!(activation.contains(&format!("activate_socket(\"{name}\")")), "graphbrokerd does not ask for {name:?}");
    let socket = socket.as_dictionary().expect("a socket dictionary");
    assert_eq!(string(socket.get("SockPathName")).as_deref(), Some("@SOCKET@"));
    assert_eq!(socket.get("SockPathMode").and_then(plist::Value::as_signed_integer), Some(0o600));
    assert_eq!(string(socket.get("SockType")).as_deref(), Some("stream"));

    // Started by the first connection, not at login, and not kept alive.
    assert_eq!(plist.get("RunAtLoad").and_then(plist::Value::as_boolean), Some(false));
    assert_eq!(plist.get("KeepAlive").and_then(plist::Value::as_boolean), Some(false));
    for key in ["StandardOutPath", "StandardErrorPath"] {
        assert_eq!(string(plist.get(key)).as_deref(), Some("@LOG_DIR@/graphbrokerd.log"), "{key}");
    }

    // What install writes (built by the plist crate, on every platform) is this file, placeholders and all.
    let generated = generated_plist("@GRAPHBROKERD@", "@SOCKET@", "@LOG_DIR@");
    assert_eq!(generated, plist::Value::Dictionary(plist.clone()), "the generated plist differs from {path:?}");

    // With the paths install passes, every path is absolute and the result parses.
    let filled = generated_plist(
        "/Users/adele/.cargo/bin/graphbrokerd",
        "/var/folders/xy/abc/T/graphbroker-501/graphbroker.sock",
        "/Users/adele/Library/Logs/graphbroker",
    );
    let filled = filled.as_dictionary().unwrap();
    let program = filled.get("ProgramArguments").and_then(plist::Value::as_array).unwrap()[0].as_string();
    assert_eq!(program, Some("/Users/adele/.cargo/bin/graphbrokerd"));
    let socket_path = filled
        .get("Sockets")
        .and_then(plist::Value::as_dictionary)
        .and_then(|sockets| sockets.get(name))
        .and_then(plist::Value::as_dictionary)
        .and_then(|socket| socket.get("SockPathName"))
        .and_then(plist::Value::as_string)
        .unwrap();
    // macOS limits a socket path to 104 bytes.
    assert!(Path::new(socket_path).is_absolute() && socket_path.len() < 104);
    assert!(Path::new(filled.get("StandardErrorPath").and_then(plist::Value::as_string).unwrap()).is_absolute());
}

/// The agent plist `service install` writes on macOS for these paths (`__generate launchd-plist`), parsed.
fn generated_plist(program: &str, socket: &str, log_dir: &str) -> plist::Value {
    let output = Command::new(client_bin())
        .args(["__generate", "launchd-plist", "--program", program, "--socket", socket, "--log-dir", log_dir])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    plist::Value::from_reader(std::io::Cursor::new(output.stdout)).unwrap()
}

/// A home for the client with a stand-in `systemctl` that logs its arguments and answers "inactive".
struct Sandbox {
    dir: tempfile::TempDir,
    daemon: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = test_dir();
        let systemctl = dir.path().join("fakebin").join("systemctl");
        write_executable(
            &systemctl,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$FAKE_SYSTEMCTL_LOG\"\ncase \"$2\" in\n  \
             is-active) echo inactive; exit 3;;\n  is-enabled) echo disabled; exit 1;;\nesac\nexit 0\n",
        );
        // A space in the path: ExecStart must quote it.
        let daemon = dir.path().join("opt dir").join("graphbrokerd");
        write_executable(&daemon, "#!/bin/sh\nexit 0\n");
        for sub in ["home", "config", "runtime"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir, daemon }
    }

    fn units(&self) -> PathBuf {
        self.dir.path().join("config/systemd/user")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("runtime/graphbroker/graphbroker.sock")
    }

    fn systemctl_calls(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("systemctl.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(client_bin());
        command
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("runtime"))
            .env("PATH", format!("{}:/usr/bin:/bin", self.dir.path().join("fakebin").display()))
            .env("FAKE_SYSTEMCTL_LOG", self.dir.path().join("systemctl.log"))
            .env("GRAPHBROKERD_PATH", &self.daemon)
            .env_remove("GRAPHBROKER_SOCKET")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        stdout_of(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn install_writes_the_units_with_the_daemon_path_and_enables_the_socket() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["service", "install"]);
    assert_success(&output);

    let units = sandbox.units();
    assert_eq!(std::fs::read_to_string(units.join("graphbroker.socket")).unwrap(), SOCKET_TEMPLATE);
    let exec = format!("\"{}\"", sandbox.daemon.display());
    assert_eq!(
        std::fs::read_to_string(units.join("graphbroker.service")).unwrap(),
        SERVICE_TEMPLATE.replace("@GRAPHBROKERD@", &exec)
    );
    assert_eq!(std::fs::read_to_string(units.join("graphbroker-refresh.timer")).unwrap(), TIMER_TEMPLATE);
    let refresh = std::fs::read_to_string(units.join("graphbroker-refresh.service")).unwrap();
    let client = std::fs::canonicalize(client_bin()).unwrap();
    assert!(
        refresh.lines().any(|line| line == format!("ExecStart={} --no-autostart refresh-idle", client.display())
            || line == format!("ExecStart={} --no-autostart refresh-idle", client_bin())),
        "{refresh}"
    );
    assert_eq!(
        sandbox.systemctl_calls(),
        [
            "--user is-active graphbroker.socket",
            "--user daemon-reload",
            "--user enable --now graphbroker.socket",
            "--user enable --now graphbroker-refresh.timer"
        ]
    );
    let stdout = stdout_of(&output);
    for said in [
        format!("wrote {}", units.join("graphbroker.socket").display()),
        format!("wrote {} (ExecStart={exec})", units.join("graphbroker.service").display()),
        "ran systemctl --user daemon-reload".to_owned(),
        "ran systemctl --user enable --now graphbroker.socket".to_owned(),
        format!("graphbrokerd starts on the first request to {}", sandbox.socket().display()),
    ] {
        assert!(stdout.contains(&said), "{said:?} missing from:\n{stdout}");
    }

    // What install wrote is a valid unit, quoted path included.
    if on_path("systemd-analyze") {
        assert_units_verify(&[
            units.join("graphbroker.socket"),
            units.join("graphbroker.service"),
            units.join("graphbroker-refresh.service"),
            units.join("graphbroker-refresh.timer"),
        ]);
    }

    // Installing again rewrites nothing.
    let again = sandbox.run(&["service", "install"]);
    assert_success(&again);
    assert_eq!(stdout_of(&again).matches("kept (already up to date)").count(), 4, "{}", stdout_of(&again));
}

#[test]
fn uninstall_stops_disables_and_removes_the_units() {
    let sandbox = Sandbox::new();
    assert_success(&sandbox.run(&["service", "install"]));
    let output = sandbox.run(&["service", "uninstall"]);
    assert_success(&output);
    assert!(!sandbox.units().join("graphbroker.socket").exists());
    assert!(!sandbox.units().join("graphbroker.service").exists());
    assert!(!sandbox.units().join("graphbroker-refresh.timer").exists());
    assert!(!sandbox.units().join("graphbroker-refresh.service").exists());
    let calls = sandbox.systemctl_calls();
    let units = "graphbroker.socket graphbroker.service graphbroker-refresh.timer graphbroker-refresh.service";
    assert_eq!(
        calls[4..],
        [
            format!("--user disable --now {units}"),
            "--user daemon-reload".to_owned(),
            format!("--user reset-failed {units}")
        ]
    );
    let stdout = stdout_of(&output);
    assert!(stdout.contains(&format!("removed {}", sandbox.units().join("graphbroker.service").display())));

    // Nothing installed: nothing to do, and no error.
    let again = sandbox.run(&["service", "uninstall"]);
    assert_success(&again);
    assert!(stdout_of(&again).contains("no graphbroker units in"), "{}", stdout_of(&again));
}

#[test]
fn status_reports_unit_files_their_states_and_the_socket() {
    let sandbox = Sandbox::new();
    let before = sandbox.run(&["service", "status"]);
    assert_success(&before);
    let stdout = stdout_of(&before);
    assert!(stdout.contains("graphbroker.socket: not installed; is-enabled disabled, is-active inactive"), "{stdout}");
    assert!(stdout.contains(&format!("socket: {} (absent)", sandbox.socket().display())), "{stdout}");

    assert_success(&sandbox.run(&["service", "install"]));
    let after = stdout_of(&sandbox.run(&["service", "status"]));
    assert!(after.contains(&format!("unit directory: {}", sandbox.units().display())), "{after}");
    assert!(after.contains("graphbroker.socket: installed; is-enabled"), "{after}");
    let runs = format!("graphbroker.service: installed, runs \"{}\";", sandbox.daemon.display());
    assert!(after.contains(&runs), "{after}");

    // A unit edited by hand is pointed out.
    let service = sandbox.units().join("graphbroker.service");
    let edited = std::fs::read_to_string(&service).unwrap().replace("UMask=0077", "UMask=0022");
    std::fs::write(&service, edited).unwrap();
    let edited = stdout_of(&sandbox.run(&["service", "status"]));
    assert!(edited.contains("graphbroker.service: installed but not as this graphbroker-client writes it"), "{edited}");
}

#[test]
fn install_without_systemd_says_autostart_does_the_job() {
    let sandbox = Sandbox::new();
    let output = sandbox.command(&["service", "install"]).env("PATH", "/nonexistent").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("systemctl was not found"), "{stderr}");
    assert!(stderr.contains("starts graphbrokerd by itself"), "{stderr}");
    assert!(!sandbox.units().exists(), "nothing written");
}

#[test]
fn install_refuses_a_daemon_the_service_could_not_see() {
    let sandbox = Sandbox::new();
    let hidden = tempfile::tempdir_in("/tmp").unwrap();
    let daemon = hidden.path().join("graphbrokerd");
    write_executable(&daemon, "#!/bin/sh\n");
    let output = sandbox.command(&["service", "install"]).env("GRAPHBROKERD_PATH", &daemon).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PrivateTmp"));
    let missing = sandbox.command(&["service", "install"]).env("GRAPHBROKERD_PATH", "/nonexistent/gbd").output();
    assert!(String::from_utf8_lossy(&missing.unwrap().stderr).contains("is not an executable file"));
}

#[test]
fn install_stops_a_daemon_started_outside_systemd_first() {
    let sandbox = Sandbox::new();
    let socket = sandbox.socket();
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(socket.parent().unwrap(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut stand_in = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unmanaged_stand_in", "--ignored", "--quiet"])
        .env(STAND_IN_SOCKET_ENV, &socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the stand-in did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }

    let output = sandbox.run(&["service", "install"]);
    let status = wait_bounded(&mut stand_in, Duration::from_secs(20));
    assert_success(&output);
    assert!(status.is_some(), "the daemon started outside systemd is still running");
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&format!("stopped the graphbrokerd (pid {}) that was started outside", stand_in.id())),
        "{stdout}"
    );
}

/// Waits for `child` at most `limit`; kills it if it is still running then.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Not a test of its own: the daemon started outside systemd that the test above stops. It listens until it is
/// killed (SIGTERM's default action) or a minute has passed.
#[test]
#[ignore = "run by install_stops_a_daemon_started_outside_systemd_first as its stand-in daemon"]
fn unmanaged_stand_in() {
    let Some(socket) = std::env::var_os(STAND_IN_SOCKET_ENV) else { return };
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn autostart_stands_aside_when_systemd_owns_the_socket() {
    let sandbox = Sandbox::new();
    assert_success(&sandbox.run(&["service", "install"]));
    // Were autostart to run the daemon, this one would leave a mark.
    let marker = sandbox.dir.path().join("daemon-started");
    let daemon = sandbox.dir.path().join("marking").join("graphbrokerd");
    write_executable(&daemon, &format!("#!/bin/sh\ntouch '{}'\n", marker.display()));

    let output =
        sandbox.command(&["token", "--scopes", "User.Read"]).env("GRAPHBROKERD_PATH", &daemon).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "unreachable");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("systemctl --user start graphbroker.socket"), "{stderr}");
    assert!(stderr.contains(&sandbox.socket().display().to_string()), "{stderr}");
    assert!(!marker.exists(), "autostart started a daemon although systemd owns the socket");

    // A socket of the user's own choosing is not systemd's: autostart goes ahead there.
    let elsewhere = sandbox.dir.path().join("elsewhere.sock");
    let output = sandbox
        .command(&["--socket", elsewhere.to_str().unwrap(), "token"])
        .env("GRAPHBROKERD_PATH", &daemon)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(marker.exists(), "autostart did not try the daemon for a socket systemd does not own");
}

// ---------------------------------------------------------------------------------------------------------------
// The real thing: systemd --user in a private mount namespace.

const CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "alice@contoso.com";

/// How long the script gets for one step (start the manager, install, check…), and the test for one request.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// The graphbrokerd that `service install` finds beside the client, when it is there and no newer than its Rust
/// sources (else the reason it is not usable). This crate cannot depend on the daemon's binary, so a plain
/// `cargo test -p graphbroker-client` may find an old one; scripts/test builds every binary first.
fn fresh_daemon() -> Result<PathBuf, String> {
    let daemon = Path::new(client_bin()).with_file_name("graphbrokerd");
    let built = std::fs::metadata(&daemon)
        .and_then(|meta| meta.modified())
        .map_err(|_| format!("{} is not built (cargo build -p graphbrokerd)", daemon.display()))?;
    let root = repo_root();
    let sources = ["crates/graphbrokerd/src", "crates/graphbroker-protocol/src", "crates/graphbroker-store/src"];
    let newest = sources.iter().map(|dir| newest_change(&root.join(dir))).max().unwrap_or(SystemTime::UNIX_EPOCH);
    if newest > built {
        return Err(format!("{} is older than its sources (cargo build -p graphbrokerd)", daemon.display()));
    }
    Ok(daemon)
}

fn newest_change(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            entry.metadata().and_then(|meta| meta.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        } else {
            continue;
        };
        newest = newest.max(time);
    }
    newest
}

/// Why the end-to-end test cannot run here, if it cannot.
fn e2e_obstacle() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("creating a mount namespace (unshare -m) needs root".into());
    }
    let missing: Vec<&str> = ["unshare", "systemctl", "dbus-daemon", "dbus-send", "gnome-keyring-daemon"]
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed", missing.join(", ")));
    }
    if !Path::new("/lib/systemd/systemd").is_file() {
        return Some("/lib/systemd/systemd (the manager) is not installed".into());
    }
    match Command::new("unshare").args(["-m", "--propagation", "private", "true"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => return Some(format!("unshare -m fails: {}", String::from_utf8_lossy(&output.stderr).trim())),
        Err(error) => return Some(format!("unshare does not run: {error}")),
    }
    None
}

/// The script, running; stopped (SIGTERM, so that it stops what it started, then SIGKILL) when dropped.
struct Script {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Script {
    /// The next line the script prints, within [`STEP_DEADLINE`].
    fn expect(&mut self, line: &str) {
        match self.lines.recv_timeout(STEP_DEADLINE) {
            Ok(got) if got == line => {}
            Ok(got) => panic!("the script said {got:?}, expected {line:?}\n{}", self.logs()),
            Err(_) => panic!("the script did not say {line:?} in time (or ended)\n{}", self.logs()),
        }
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").and_then(|()| stdin.flush()).unwrap();
    }

    fn logs(&self) -> String {
        ["script.log", "daemon.log", "manager.log", "dbus.log", "keyring.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            wait_bounded(&mut self.child, Duration::from_secs(30));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_runs_under_a_real_systemd_user_manager() {
    const TEST: &str = "service_runs_under_a_real_systemd_user_manager";
    if let Some(obstacle) = e2e_obstacle() {
        return skip(TEST, &obstacle);
    }
    let daemon_built = match fresh_daemon() {
        Ok(daemon) => daemon,
        Err(reason) => return skip(TEST, &reason),
    };
    let fake = fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .device_interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let dir = test_dir();
    let config_file = dir.path().join("config/graphbroker/config.toml");
    std::fs::create_dir_all(config_file.parent().unwrap()).unwrap();
    std::fs::write(
        &config_file,
        format!(
            "default_profile = \"work\"\nkeyring_service = \"graphbroker-e2e-{}\"\nhttp_timeout = 5\n\n\
             [profiles.work]\nauthority = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nflow = \"device\"\n\
             scopes = [\"User.Read\"]\nstore = \"keyring\"\n",
            std::process::id(),
            // By name: resolving it goes through the resolver under RestrictAddressFamilies= and the syscall filter.
            fake.authority("common").replace("127.0.0.1", "localhost")
        ),
    )
    .unwrap();

    // The service runs the daemon from where install finds it, beside the client: copies in the test's
    // directory, which the service can see wherever the checkout is.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (client, daemon) = (bin.join("graphbroker-client"), bin.join("graphbrokerd"));
    std::fs::copy(client_bin(), &client).unwrap();
    std::fs::copy(&daemon_built, &daemon).unwrap();
    let script_log = std::fs::File::create(dir.path().join("script.log")).unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/service_e2e.sh"))
        .env("E2E_DIR", dir.path())
        .env("CLIENT", &client)
        .env("DAEMON", &daemon)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(script_log)
        .spawn()
        .unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut script = Script { child, lines, dir: dir.path().to_owned() };

    // Installed and listening; the first request starts the daemon, which needs a sign-in.
    script.expect("PAUSE signin");
    let client = Client::new(dir.path().join("runtime/graphbroker/graphbroker.sock"));
    let query = TokenQuery { scopes: Some("User.Read".into()), ..TokenQuery::default() };
    // `wait=0` is answered at once, before the device code may be there: ask again until the prompt is.
    let mut error = client.token(&query).await.expect_err("no account yet");
    for _ in 0..400 {
        if error.signin_prompt().is_some() || error.code() != Some(ErrorCode::SigninRequired) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        error = client.token(&query).await.expect_err("no account yet");
    }
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}\n{}", script.logs());
    let Some(SignInPrompt::Device { user_code, .. }) = error.signin_prompt() else {
        panic!("no device prompt: {error}")
    };
    fake.approve_device(user_code, ALICE).unwrap();
    let waited = TokenQuery { wait: Some(30), ..query.clone() };
    let token = client.token(&waited).await.unwrap_or_else(|error| panic!("{error}\n{}", script.logs()));
    assert_eq!(token.account.username, ALICE);
    script.go();

    // The service was stopped: this request starts it again, and the account comes back from the keychain.
    script.expect("PAUSE restart");
    let again = Client::new(client.socket_path()).token(&query).await;
    let again = again.unwrap_or_else(|error| panic!("{error}\n{}", script.logs()));
    assert_eq!(again.account.username, ALICE);
    script.go();

    script.expect("DONE");
    let status = wait_bounded(&mut script.child, STEP_DEADLINE);
    assert!(status.is_some_and(|status| status.success()), "script: {status:?}\n{}", script.logs());
}

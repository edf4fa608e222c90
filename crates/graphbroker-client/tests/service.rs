//! `graphbroker-client service`: the units and the plist it installs, checked as files (`systemd-analyze verify`,
//! a plist parser, the plist the client generates); its commands against a stand-in `systemctl`; autostart standing aside for an installed socket;
//! the whole thing under a real `systemd --user` manager is `service_e2e.rs`.
//!
//! Tests that need a tool this machine lacks (systemd, root for `unshare -m`) print why and pass, unless
//! `GRAPHBROKER_TEST_SERVICE=required` (set by scripts/test) makes a skip a failure.

mod service_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use service_support::*;

const SERVICE_TEMPLATE: &str = include_str!("../../../systemd/graphbroker.service");
const SOCKET_TEMPLATE: &str = include_str!("../../../systemd/graphbroker.socket");
const REFRESH_TEMPLATE: &str = include_str!("../../../systemd/graphbroker-refresh.service");
const TIMER_TEMPLATE: &str = include_str!("../../../systemd/graphbroker-refresh.timer");
const PLIST_NAME: &str = "io.github.graphbroker.graphbrokerd.plist";

/// Re-run of this binary acting as a graphbrokerd started outside systemd, listening on this socket.
const STAND_IN_SOCKET_ENV: &str = "GRAPHBROKER_CLIENT_TEST_UNMANAGED_SOCKET";

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

//! `graphbroker-client config init`, `config show` and `status --json` against the real daemon: the file init
//! writes is the one the daemon starts with, show names the line each value came from (also after a SIGHUP
//! reload), and the JSON status is the status route's answer.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use graphbroker_client::config_file::TEMPLATE;
use graphbroker_protocol::{ConfigEntry, ConfigOrigin, ConfigResponse, StatusResponse};
use support::*;

/// Runs the client with `args` and `env`, with no socket, config or daemon path inherited from the test's own
/// environment.
fn client(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(client_bin());
    command
        .args(args)
        .env_remove("GRAPHBROKER_SOCKET")
        .env_remove("GRAPHBROKER_CONFIG")
        .env_remove("GRAPHBROKERD_PATH")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("graphbroker-client runs")
}

/// Runs the client against `socket`, without starting a daemon.
fn ask(socket: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--no-autostart", "--socket", socket.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = client(&all, &[]);
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The 1-based line of `text` that starts with `start`.
fn line_starting(text: &str, start: &str) -> u32 {
    let index = text.lines().position(|line| line.starts_with(start)).unwrap_or_else(|| panic!("no {start:?}"));
    u32::try_from(index + 1).unwrap()
}

fn entry<'a>(answer: &'a ConfigResponse, key: &str) -> &'a ConfigEntry {
    answer.entries.iter().find(|entry| entry.key == key).unwrap_or_else(|| panic!("no {key} in {answer:?}"))
}

/// `config show`'s line for `key`.
fn shown_line(stdout: &str, key: &str) -> String {
    let needle = format!("  {key} ");
    stdout.lines().find(|line| line.contains(&needle)).unwrap_or_else(|| panic!("no {key} in:\n{stdout}")).to_owned()
}

/// A daemon started without `--config`, with `xdg` as its `XDG_CONFIG_HOME`: it reads the default location.
fn daemon_at_default_location(xdg: &Path) -> Daemon {
    let mut daemon = Daemon::unstarted("");
    let socket = daemon.socket.clone();
    let (xdg, home) = (xdg.to_path_buf(), daemon.dir.path().to_path_buf());
    daemon.spawn_program(graphbrokerd_bin(), move |command| {
        command.arg("--socket").arg(&socket).env("XDG_CONFIG_HOME", &xdg).env("HOME", &home);
    });
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_init_writes_a_private_file_at_the_default_location_that_the_daemon_starts_with() {
    let dir = private_tempdir();
    let xdg = dir.path().join("xdg");
    let env = [("XDG_CONFIG_HOME", xdg.as_path()), ("HOME", dir.path())];
    let written: PathBuf = xdg.join("graphbroker").join("config.toml");

    let output = client(&["config", "init"], &env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(written.to_str().unwrap()), "{}", text(&output.stdout));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), TEMPLATE);
    assert_eq!(mode(&written), 0o600);
    assert_eq!(mode(written.parent().unwrap()), 0o700);

    // An existing file is left alone without --force, replaced with it.
    std::fs::write(&written, "# mine\n").unwrap();
    let output = client(&["config", "init"], &env);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("exists already"), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "# mine\n");
    let output = client(&["config", "init", "--force"], &env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), TEMPLATE);
    assert_eq!(mode(&written), 0o600);
    let leftovers: Vec<_> =
        std::fs::read_dir(written.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, ["config.toml"], "no temporary file left behind");

    // Uncomment one line (the store, so that the test needs no keychain) and start the daemon on the default
    // location: it reads that file, and config show names the line.
    let edited = TEMPLATE.replacen("#store = \"auto\"", "store = \"memory\"", 1);
    assert_ne!(edited, TEMPLATE);
    std::fs::write(&written, &edited).unwrap();
    let store_line = line_starting(&edited, "store = ");
    let daemon = daemon_at_default_location(&xdg);

    let answer: ConfigResponse = serde_json::from_slice(&ask(&daemon.socket, &["config", "show", "--json"]).stdout)
        .expect("config show --json is the route's JSON");
    assert_eq!(answer, daemon.client().config().await.unwrap());
    assert_eq!(answer.file.as_deref(), written.to_str());
    let store = entry(&answer, "profiles.default.store");
    assert_eq!((store.origin, store.line), (ConfigOrigin::File, Some(store_line)));
    let in_file: Vec<&str> =
        answer.entries.iter().filter(|e| e.origin == ConfigOrigin::File).map(|e| e.key.as_str()).collect();
    assert_eq!(in_file, ["profiles.default.store"], "every other value is a default");

    let shown = text(&ask(&daemon.socket, &["config", "show"]).stdout);
    let line = shown_line(&shown, "profiles.default.store");
    assert!(line.starts_with(&format!("{}:{store_line} ", written.display())), "{line}");
    assert!(line.ends_with("= \"memory\""), "{line}");
    assert!(shown_line(&shown, "http_timeout").starts_with("default "), "{shown}");
}

#[test]
fn config_init_writes_where_the_flag_or_the_environment_says_as_the_daemon_reads() {
    let dir = private_tempdir();
    let named = dir.path().join("by-env").join("graphbrokerd.toml");
    let flagged = dir.path().join("by-flag.toml");
    let output = client(&["config", "init"], &[("GRAPHBROKER_CONFIG", &named), ("HOME", dir.path())]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&named).unwrap(), TEMPLATE);
    let args = ["config", "init", "--config", flagged.to_str().unwrap()];
    let output = client(&args, &[("GRAPHBROKER_CONFIG", &named), ("HOME", dir.path())]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&flagged).unwrap(), TEMPLATE, "the flag wins over the environment");
    assert_eq!(mode(&flagged), 0o600);
    // Nothing was written at the default location.
    assert!(!dir.path().join(".config").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_without_a_file_reports_every_value_as_a_default() {
    let dir = private_tempdir();
    let daemon = daemon_at_default_location(&dir.path().join("empty-xdg"));
    let answer = daemon.client().config().await.unwrap();
    assert_eq!(answer.file, None);
    assert!(answer.entries.iter().all(|e| e.origin == ConfigOrigin::Default && e.line.is_none()), "{answer:?}");
    assert_eq!(entry(&answer, "profiles.default.tenant").value, Some("common".into()));
    let shown = text(&ask(&daemon.socket, &["config", "show"]).stdout);
    assert!(shown.starts_with("# graphbrokerd read no config file"), "{shown}");
    assert!(shown.lines().skip(1).all(|line| line.starts_with("default  ")), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_names_the_line_of_each_value_and_follows_a_reload() {
    let fake = fake();
    let text_before = config(&fake, "memory", &unique_service("config-show"), "");
    let daemon = Daemon::start(&text_before);
    let timeout_line = line_starting(&text_before, "http_timeout = ");

    let shown = text(&ask(&daemon.socket, &["config", "show"]).stdout);
    let path = daemon.config_path.display();
    let line = shown_line(&shown, "http_timeout");
    assert!(line.starts_with(&format!("{path}:{timeout_line} ")), "{line}");
    assert!(line.ends_with("= 5"), "{line}");
    let line = shown_line(&shown, "profiles.work.min_valid");
    assert!(line.starts_with("default ") && line.ends_with("= 300"), "{line}");
    let line = shown_line(&shown, "profiles.work.flow");
    assert!(line.starts_with(&format!("{path}:{} ", line_starting(&text_before, "flow = "))), "{line}");

    // Move the key down two lines and change it; after SIGHUP the daemon reports the new file.
    let text_after = text_before.replacen("http_timeout = 5", "# two lines\n# further down\nhttp_timeout = 7", 1);
    write_config(&daemon.config_path, &text_after);
    let moved_line = line_starting(&text_after, "http_timeout = ");
    assert_eq!(moved_line, timeout_line + 2);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut reloaded = None;
    for _ in 0..400 {
        let answer = daemon.client().config().await.unwrap();
        if entry(&answer, "http_timeout").value == Some(7.into()) {
            reloaded = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let answer = reloaded.unwrap_or_else(|| panic!("the reload never showed:\n{}", daemon.log()));
    assert_eq!(entry(&answer, "http_timeout").line, Some(moved_line));
    let shown = text(&ask(&daemon.socket, &["config", "show"]).stdout);
    assert!(shown_line(&shown, "http_timeout").starts_with(&format!("{path}:{moved_line} ")), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_the_status_routes_answer() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("status-json"), ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    let output = ask(&daemon.socket, &["status", "--json"]);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status --json prints JSON");
    let status: StatusResponse = serde_json::from_value(printed.clone()).expect("a StatusResponse");
    assert_eq!(status, daemon.client().status().await.unwrap());
    assert_eq!(printed["profiles"][0]["account"]["username"], ALICE);
    assert_eq!(printed["default_profile"], "work");
    assert!(!text(&output.stdout).contains("eyJ"), "no token in the status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_show_names_a_file_given_to_the_daemon_by_the_environment() {
    let dir = private_tempdir();
    let named = dir.path().join("named.toml");
    write_config(&named, "# set by GRAPHBROKER_CONFIG\nhttp_timeout = 30\n\n[profiles.default]\nstore = \"memory\"\n");
    let mut daemon = Daemon::unstarted("");
    let socket = daemon.socket.clone();
    let env_named = named.clone();
    daemon.spawn_program(graphbrokerd_bin(), move |command| {
        command.arg("--socket").arg(&socket).env("GRAPHBROKER_CONFIG", &env_named);
    });
    let answer = daemon.client().config().await.unwrap();
    assert_eq!(answer.file.as_deref(), named.to_str());
    let timeout = entry(&answer, "http_timeout");
    assert_eq!((timeout.value.clone(), timeout.line), (Some(30.into()), Some(2)));
    assert_eq!(entry(&answer, "profiles.default.store").line, Some(5));
    let shown = text(&ask(&daemon.socket, &["config", "show"]).stdout);
    assert!(shown.starts_with(&format!("# graphbrokerd's configuration, read from {}\n", named.display())), "{shown}");
}

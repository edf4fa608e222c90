//! What the daemon refuses to start on: a socket directory that is a symlink, another user's, or open to others
//! (left exactly as found), and a config file that others could have written. The real binary, run to its exit.
//!
//! Tests that need another uid run when the tests run as root (as CI does) and skip with a printed reason
//! otherwise; `GRAPHBROKER_TEST_ROOT=required` (set by scripts/test) makes such a skip a failure.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{graphbrokerd_bin, private_tempdir};

/// Whether a test that needs root can run; see the module docs.
fn running_as_root(test: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
        panic!("{test}: needs root, but GRAPHBROKER_TEST_ROOT=required");
    }
    eprintln!("skipping {test}: needs root to make files of another user");
    false
}

/// Runs graphbrokerd on `socket` with the config at `config`; returns once it exits.
fn run_daemon(config: &Path, socket: &Path) -> Output {
    let mut command = daemon_command(config);
    command.arg("--socket").arg(socket);
    run_to_exit(command)
}

fn daemon_command(config: &Path) -> Command {
    let mut command = Command::new(graphbrokerd_bin());
    command.arg("--config").arg(config).env_remove("GRAPHBROKER_SOCKET").env_remove("GRAPHBROKER_CONFIG");
    command
}

/// Runs `command` to its exit. A daemon that starts serves until stopped: the bounded wait makes that a failure.
fn run_to_exit(mut command: Command) -> Output {
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("graphbrokerd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("graphbrokerd did not refuse; it ran:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A private test directory with an empty, private config file in it.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = private_tempdir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, config)
}

fn refusal(output: &Output) -> String {
    assert!(!output.status.success(), "graphbrokerd started");
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_loose_socket_directory_is_refused_and_keeps_its_mode() {
    let (dir, config) = setup();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = refusal(&run_daemon(&config, &run.join("graphbroker.sock")));
    let expected = format!("the socket directory {} has mode 0755, open to other users", run.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(mode_of(&run), 0o755, "the daemon never changes a directory it did not create");
    assert!(!run.join("graphbroker.sock").exists());
}

#[test]
fn a_symlinked_socket_directory_is_refused_even_when_it_points_somewhere_private() {
    let (dir, config) = setup();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("run");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let stderr = refusal(&run_daemon(&config, &link.join("graphbroker.sock")));
    assert!(stderr.contains(&format!("the socket directory {} is a symbolic link", link.display())), "{stderr}");
    assert!(!real.join("graphbroker.sock").exists(), "nothing bound through the link");
}

#[test]
fn a_socket_directory_of_another_user_is_refused_and_left_alone() {
    if !running_as_root("a_socket_directory_of_another_user_is_refused_and_left_alone") {
        return;
    }
    let (dir, config) = setup();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    let stderr = refusal(&run_daemon(&config, &run.join("graphbroker.sock")));
    let expected = format!("the socket directory {} is owned by uid 65534, not by you (uid 0)", run.display());
    assert!(stderr.contains(&expected), "{stderr}");
    let meta = std::fs::symlink_metadata(&run).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o700));
}

#[test]
fn a_group_writable_config_is_refused_naming_the_file_and_its_mode() {
    let (dir, config) = setup();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let stderr = refusal(&run_daemon(&config, &dir.path().join("run").join("graphbroker.sock")));
    let expected = format!("bad owner or permissions on config file {}: owned by uid", config.display());
    assert!(stderr.contains(&expected) && stderr.contains("with mode 0664"), "{stderr}");
}

#[test]
fn a_config_of_another_user_is_refused() {
    if !running_as_root("a_config_of_another_user_is_refused") {
        return;
    }
    let (dir, config) = setup();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    let stderr = refusal(&run_daemon(&config, &dir.path().join("run").join("graphbroker.sock")));
    let expected =
        format!("bad owner or permissions on config file {}: owned by uid 65534 with mode 0600", config.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn with_no_runtime_dir_the_daemon_refuses_to_guess_a_shared_tmp_path() {
    let (_dir, config) = setup();
    let mut command = daemon_command(&config);
    command.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", "/tmp");
    let output = run_to_exit(command);
    let stderr = refusal(&output);
    assert!(stderr.contains("no private directory for graphbrokerd's socket: XDG_RUNTIME_DIR is not set"), "{stderr}");
    assert!(stderr.contains("TMPDIR (/tmp) is not a directory only you can use"), "{stderr}");
    assert!(stderr.contains("set GRAPHBROKER_SOCKET"), "{stderr}");
}

//! Helpers shared by `service.rs` and `service_e2e.rs`: the client binary, the repository, skipping for want of a
//! tool, scripts on disk, a test directory outside /tmp, a bounded wait.

#![allow(dead_code, reason = "each test binary uses its own part of the support code")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_graphbroker-client")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Skips a test for want of `what`, printing why; a failure under `GRAPHBROKER_TEST_SERVICE=required`.
pub fn skip(test: &str, what: &str) {
    if std::env::var("GRAPHBROKER_TEST_SERVICE").as_deref() == Ok("required") {
        panic!("{test}: {what}, but GRAPHBROKER_TEST_SERVICE=required");
    }
    eprintln!("skipping {test}: {what}");
}

pub fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

pub fn write_executable(path: &Path, script: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory for one test, outside /tmp: the units run with PrivateTmp=yes, which hides /tmp from the service.
/// Cargo's target tmp dir, unless the checkout itself lies under a temporary directory (a CI clone may); then a
/// directory under `$HOME/.cache`.
pub fn test_dir() -> tempfile::TempDir {
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

/// Waits for `child` at most `limit`; kills it if it is still running then.
pub fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
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

//! Where the graphbrokerd program is: the one lookup shared by autostart and `service install`, so that the
//! daemon a service runs is the one autostart would have started.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The daemon's program name.
pub const DAEMON_PROGRAM: &str = "graphbrokerd";

/// Environment variable naming the daemon program outright, for installs that put it somewhere unusual.
pub const DAEMON_PROGRAM_ENV: &str = "GRAPHBROKERD_PATH";

/// `$GRAPHBROKERD_PATH`, else `graphbrokerd` beside this program (an unpacked release or `target/debug`), else
/// the first on `PATH`.
pub fn find_daemon_program() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os(DAEMON_PROGRAM_ENV).filter(|value| !value.is_empty()) {
        return Some(PathBuf::from(named));
    }
    let beside_us = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(DAEMON_PROGRAM)));
    beside_us
        .filter(|path| is_executable(path))
        .or_else(|| find_on_path(DAEMON_PROGRAM, std::env::var_os("PATH").as_deref()?))
}

fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit set (following symlinks).
pub fn is_executable(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn the_first_executable_on_path_wins() {
        let root = tempfile::tempdir().unwrap();
        let (plain, first, second) = (root.path().join("a"), root.path().join("b"), root.path().join("c"));
        for dir in [&plain, &first, &second] {
            fs::create_dir(dir).unwrap();
        }
        // Not executable: skipped.
        fs::write(plain.join(DAEMON_PROGRAM), "").unwrap();
        for dir in [&first, &second] {
            let program = dir.join(DAEMON_PROGRAM);
            fs::write(&program, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([&plain, &first, &second]).unwrap();
        assert_eq!(find_on_path(DAEMON_PROGRAM, &path), Some(first.join(DAEMON_PROGRAM)));
        let path = std::env::join_paths([&plain]).unwrap();
        assert_eq!(find_on_path(DAEMON_PROGRAM, &path), None);
    }
}

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

/// The first executable `program` in a directory of `path`. Entries that are not absolute (an empty entry, `.`,
/// `bin`) are skipped: they name a directory relative to wherever the command happens to run, so a file dropped
/// in such a directory would be started as the daemon — and installed as the service.
fn find_on_path(program: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
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

    #[test]
    fn relative_path_entries_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let (relative, absolute) = (root.path().join("bin"), root.path().join("abs"));
        for dir in [&relative, &absolute] {
            fs::create_dir(dir).unwrap();
            let program = dir.join(DAEMON_PROGRAM);
            fs::write(&program, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Entries relative to the working directory: the empty entry and "." (both mean "here"), and a relative
        // spelling of `relative` ("../../…/bin"), which holds an executable graphbrokerd and must still be skipped.
        let here = std::env::current_dir().unwrap();
        let up = "../".repeat(here.components().count() - 1);
        let relative_spelling = PathBuf::from(up).join(relative.strip_prefix("/").unwrap());
        assert!(is_executable(&relative_spelling.join(DAEMON_PROGRAM)), "the relative entry does name the program");
        let path =
            std::env::join_paths([PathBuf::new(), PathBuf::from("."), relative_spelling, absolute.clone()]).unwrap();
        assert_eq!(find_on_path(DAEMON_PROGRAM, &path), Some(absolute.join(DAEMON_PROGRAM)));
    }
}

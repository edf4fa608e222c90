//! Where the daemon's socket lives, resolved the same way by the daemon and every client, and the one rule both
//! apply to the socket's directory before trusting it.
//!
//! The directory is the trust anchor: whoever can write to it can replace the socket. So it must be a real
//! directory (not a symbolic link), owned by the user, and closed to group and others — the rule ssh applies to
//! `~/.ssh`. There is deliberately no shared `/tmp` fallback: a predictable `/tmp/graphbroker-UID` can be
//! created first by another user, who then owns the path every client would connect to.

use std::ffi::OsString;
use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// Environment variable that names the socket path outright.
pub const SOCKET_ENV: &str = "GRAPHBROKER_SOCKET";
/// The directory under the runtime dir that holds the socket (mode 0700).
pub const SOCKET_DIR_NAME: &str = "graphbroker";
/// The socket's file name (mode 0600).
pub const SOCKET_FILE_NAME: &str = "graphbroker.sock";

/// Resolves the socket path, in order:
/// 1. `GRAPHBROKER_SOCKET`, when set and not empty;
/// 2. `$XDG_RUNTIME_DIR/graphbroker/graphbroker.sock` (the systemd/logind user runtime dir on Linux);
/// 3. `$TMPDIR/graphbroker-<uid>/graphbroker.sock`, but only when `$TMPDIR` is itself a directory private to the
///    user (macOS gives every user such a directory under `/var/folders`);
/// 4. otherwise [`NoSocketPath`]: a shared temporary directory such as `/tmp` is never used, because another user
///    could create the predictable per-user directory there first.
///
/// `env` reads a variable (pass `std::env::var_os`); `uid` is the calling user's id. Both are parameters so the
/// rule can be tested without touching the process environment. Step 3 looks at `$TMPDIR` on disk (`lstat`).
pub fn resolve_socket_path(env: impl Fn(&str) -> Option<OsString>, uid: u32) -> Result<PathBuf, NoSocketPath> {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = non_empty(SOCKET_ENV) {
        return Ok(PathBuf::from(path));
    }
    if let Some(runtime) = non_empty("XDG_RUNTIME_DIR") {
        return Ok(PathBuf::from(runtime).join(SOCKET_DIR_NAME).join(SOCKET_FILE_NAME));
    }
    let Some(tmp) = non_empty("TMPDIR").map(PathBuf::from) else {
        return Err(NoSocketPath { tmpdir: None });
    };
    match std::fs::symlink_metadata(&tmp) {
        Ok(meta) if private_directory_problem(&meta, uid).is_none() => {
            Ok(tmp.join(format!("{SOCKET_DIR_NAME}-{uid}")).join(SOCKET_FILE_NAME))
        }
        _ => Err(NoSocketPath { tmpdir: Some(tmp) }),
    }
}

/// What makes a directory unfit to hold the socket, or `None` when it is fit: a real directory (`meta` must
/// come from `lstat`, i.e. [`std::fs::symlink_metadata`]), owned by `uid`, with no permission bits for group or
/// others.
pub fn private_directory_problem(meta: &Metadata, uid: u32) -> Option<DirectoryProblem> {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        Some(DirectoryProblem::Symlink)
    } else if !file_type.is_dir() {
        Some(DirectoryProblem::NotADirectory { socket: file_type.is_socket() })
    } else if meta.uid() != uid {
        Some(DirectoryProblem::Owner { found: meta.uid(), expected: uid })
    } else if meta.mode() & 0o077 != 0 {
        Some(DirectoryProblem::Mode { mode: meta.mode() & 0o7777 })
    } else {
        None
    }
}

/// Why a directory may not hold the socket. See [`private_directory_problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryProblem {
    /// It is a symbolic link: whoever controls the link's target controls the socket.
    Symlink,
    /// It is not a directory at all (`socket`: it is a socket, i.e. the path named a directory by mistake).
    NotADirectory { socket: bool },
    /// It belongs to another user, who could replace the socket in it.
    Owner { found: u32, expected: u32 },
    /// It is open to group or others (`mode` is the permission bits found).
    Mode { mode: u32 },
}

/// A socket directory that failed [`private_directory_problem`], for the messages of daemon and clients alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeDirectory {
    pub path: PathBuf,
    pub problem: DirectoryProblem,
}

impl fmt::Display for UnsafeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match self.problem {
            DirectoryProblem::Symlink => write!(
                f,
                "the socket directory {path} is a symbolic link; remove the link (graphbrokerd creates the \
                 directory itself) or choose another socket path"
            ),
            DirectoryProblem::NotADirectory { socket: true } => {
                write!(f, "the socket directory {path} is a socket, not a directory; check the socket path")
            }
            DirectoryProblem::NotADirectory { socket: false } => {
                write!(f, "the socket directory {path} is not a directory; move it away or choose another socket path")
            }
            DirectoryProblem::Owner { found, expected } => write!(
                f,
                "the socket directory {path} is owned by uid {found}, not by you (uid {expected}); another user \
                 could replace the socket: remove the directory or choose another socket path"
            ),
            DirectoryProblem::Mode { mode } => write!(
                f,
                "the socket directory {path} has mode {mode:04o}, open to other users; make it private with \
                 `chmod 700 {path}`"
            ),
        }
    }
}

impl std::error::Error for UnsafeDirectory {}

/// No private place for the socket: no `GRAPHBROKER_SOCKET`, no `XDG_RUNTIME_DIR`, and no `TMPDIR` private to
/// the user (`tmpdir` is the one found unfit, if one was set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSocketPath {
    pub tmpdir: Option<PathBuf>,
}

impl fmt::Display for NoSocketPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no private directory for graphbrokerd's socket: XDG_RUNTIME_DIR is not set")?;
        if let Some(tmp) = &self.tmpdir {
            write!(f, " and TMPDIR ({}) is not a directory only you can use", tmp.display())?;
        }
        write!(
            f,
            "; log in through a systemd/logind session (which sets XDG_RUNTIME_DIR), or set {SOCKET_ENV} to a \
             socket path in a directory only you can use (mode 0700)"
        )
    }
}

impl std::error::Error for NoSocketPath {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |k| map.get(k).cloned()
    }

    /// This process's uid, as the owner of a directory it creates (this crate has no `nix` to ask).
    fn uid() -> u32 {
        std::fs::metadata(private_dir().path()).unwrap().uid()
    }

    fn private_dir() -> PrivateDir {
        let path = std::env::temp_dir().join(format!("graphbroker-protocol-test-{}-{}", std::process::id(), next()));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        PrivateDir(path)
    }

    fn next() -> u32 {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// A directory removed on drop (this crate has no tempfile dependency).
    struct PrivateDir(PathBuf);

    impl PrivateDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for PrivateDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn explicit_variable_wins() {
        let env = env_of(&[("GRAPHBROKER_SOCKET", "/x/y.sock"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(resolve_socket_path(env, 1000), Ok(PathBuf::from("/x/y.sock")));
    }

    #[test]
    fn runtime_dir_is_next() {
        let env = env_of(&[("GRAPHBROKER_SOCKET", ""), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(resolve_socket_path(env, 1000), Ok(PathBuf::from("/run/user/1000/graphbroker/graphbroker.sock")));
    }

    #[test]
    fn without_a_runtime_dir_there_is_no_shared_tmp_fallback() {
        let error = resolve_socket_path(env_of(&[]), 1000).unwrap_err();
        assert_eq!(error, NoSocketPath { tmpdir: None });
        let message = error.to_string();
        assert!(message.contains("XDG_RUNTIME_DIR is not set"), "{message}");
        assert!(message.contains("set GRAPHBROKER_SOCKET"), "{message}");
        assert!(!message.contains("/tmp"), "{message}");
    }

    #[test]
    fn a_private_tmpdir_is_used_and_a_shared_one_refused() {
        let uid = uid();
        let private = private_dir();
        let tmpdir = private.path().to_str().unwrap();
        assert_eq!(
            resolve_socket_path(env_of(&[("TMPDIR", tmpdir)]), uid),
            Ok(private.path().join(format!("graphbroker-{uid}")).join("graphbroker.sock"))
        );
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let error = resolve_socket_path(env_of(&[("TMPDIR", tmpdir)]), uid).unwrap_err();
        assert_eq!(error.tmpdir.as_deref(), Some(private.path()));
        assert!(error.to_string().contains("is not a directory only you can use"), "{error}");
        // Another user's private directory is not ours either.
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(resolve_socket_path(env_of(&[("TMPDIR", tmpdir)]), uid.wrapping_add(1)).is_err());
    }

    #[test]
    fn a_directory_must_be_real_ours_and_closed() {
        let uid = uid();
        let dir = private_dir();
        let lstat = |path: &Path| std::fs::symlink_metadata(path).unwrap();
        assert_eq!(private_directory_problem(&lstat(dir.path()), uid), None);
        assert_eq!(
            private_directory_problem(&lstat(dir.path()), uid + 1),
            Some(DirectoryProblem::Owner { found: uid, expected: uid + 1 })
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert_eq!(private_directory_problem(&lstat(&link), uid), Some(DirectoryProblem::Symlink));
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            private_directory_problem(&lstat(&file), uid),
            Some(DirectoryProblem::NotADirectory { socket: false })
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(private_directory_problem(&lstat(dir.path()), uid), Some(DirectoryProblem::Mode { mode: 0o750 }));
    }

    #[test]
    fn messages_name_the_path_and_what_was_found() {
        let unsafe_dir = |problem| UnsafeDirectory { path: "/run/x".into(), problem }.to_string();
        let owner = unsafe_dir(DirectoryProblem::Owner { found: 65534, expected: 1000 });
        assert!(owner.contains("/run/x is owned by uid 65534, not by you (uid 1000)"), "{owner}");
        let mode = unsafe_dir(DirectoryProblem::Mode { mode: 0o755 });
        assert!(mode.contains("/run/x has mode 0755") && mode.contains("chmod 700 /run/x"), "{mode}");
        assert!(unsafe_dir(DirectoryProblem::Symlink).contains("/run/x is a symbolic link"));
    }
}

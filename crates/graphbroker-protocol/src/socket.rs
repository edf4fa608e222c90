//! Where the daemon's socket lives, resolved the same way by the daemon and every client.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variable that names the socket path outright.
pub const SOCKET_ENV: &str = "GRAPHBROKER_SOCKET";
/// The directory under the runtime dir that holds the socket (mode 0700).
pub const SOCKET_DIR_NAME: &str = "graphbroker";
/// The socket's file name (mode 0600).
pub const SOCKET_FILE_NAME: &str = "graphbroker.sock";

/// Resolves the socket path, in order:
/// 1. `GRAPHBROKER_SOCKET`, when set and not empty;
/// 2. `$XDG_RUNTIME_DIR/graphbroker/graphbroker.sock` (the systemd user runtime dir on Linux);
/// 3. `$TMPDIR/graphbroker-<uid>/graphbroker.sock`, else `/tmp/graphbroker-<uid>/graphbroker.sock` — a per-user
///    directory the daemon creates 0700 and refuses to use when another user owns it.
///
/// `env` reads a variable (pass `std::env::var_os`); `uid` is the calling user's id. Both are parameters so the
/// rule can be tested without touching the process environment.
pub fn resolve_socket_path(env: impl Fn(&str) -> Option<OsString>, uid: u32) -> PathBuf {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = non_empty(SOCKET_ENV) {
        return PathBuf::from(path);
    }
    if let Some(runtime) = non_empty("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join(SOCKET_DIR_NAME).join(SOCKET_FILE_NAME);
    }
    let tmp = non_empty("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    tmp.join(format!("{SOCKET_DIR_NAME}-{uid}")).join(SOCKET_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn explicit_variable_wins() {
        let env = env_of(&[("GRAPHBROKER_SOCKET", "/x/y.sock"), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(resolve_socket_path(env, 1000), PathBuf::from("/x/y.sock"));
    }

    #[test]
    fn runtime_dir_is_next() {
        let env = env_of(&[("GRAPHBROKER_SOCKET", ""), ("XDG_RUNTIME_DIR", "/run/user/1000")]);
        assert_eq!(resolve_socket_path(env, 1000), PathBuf::from("/run/user/1000/graphbroker/graphbroker.sock"));
    }

    #[test]
    fn per_user_temp_dir_is_the_fallback() {
        assert_eq!(resolve_socket_path(env_of(&[]), 1000), PathBuf::from("/tmp/graphbroker-1000/graphbroker.sock"));
        assert_eq!(
            resolve_socket_path(env_of(&[("TMPDIR", "/var/folders/ab/T")]), 501),
            PathBuf::from("/var/folders/ab/T/graphbroker-501/graphbroker.sock")
        );
    }
}

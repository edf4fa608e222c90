//! Binding the daemon's socket safely: a private directory (0700, ours), a private socket (0600), a stale
//! socket replaced, a live one left alone.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another graphbrokerd is already answering on {0}; stop it first (or use --socket for a second daemon)")]
    AlreadyRunning(PathBuf),
    #[error("{0} exists and is not a socket; move it away or choose another path with --socket")]
    NotASocket(PathBuf),
    #[error("the socket directory {0} belongs to another user; remove it or choose another path with --socket")]
    ForeignDirectory(PathBuf),
    #[error("could not prepare {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BindError + '_ {
    move |source| BindError::Io { path: path.to_owned(), source }
}

/// Makes the socket's parent directory private to this user: creates it 0700, or tightens an existing one
/// that we own. A directory owned by someone else is refused — they could swap the socket under us.
pub fn prepare_directory(dir: &Path) -> Result<(), BindError> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
    if meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(BindError::ForeignDirectory(dir.to_owned()));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    }
    Ok(())
}

/// Binds `path` (mode 0600). A socket file nobody answers on is stale and replaced; one that answers means
/// another daemon runs, and is left alone.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_directory(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(BindError::NotASocket(path.to_owned())),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::AlreadyRunning(path.to_owned())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "replacing a stale socket");
                std::fs::remove_file(path).map_err(io_error(path))?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_error(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_private_and_refuses_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/graphbroker.sock");
        let listener = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        assert!(matches!(bind(&path), Err(BindError::AlreadyRunning(_))));
        drop(listener);
        // Dropping the listener leaves the file behind: a stale socket, which is replaced.
        assert!(path.exists());
        let _again = bind(&path).unwrap();
    }

    #[test]
    fn refuses_a_regular_file_and_tightens_a_loose_directory() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = loose.join("graphbroker.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(matches!(bind(&file), Err(BindError::NotASocket(_))));
        assert_eq!(std::fs::metadata(&loose).unwrap().mode() & 0o777, 0o700);
    }
}

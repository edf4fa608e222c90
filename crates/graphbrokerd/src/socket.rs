//! Binding the daemon's socket safely: a private directory (0700, ours, not a symlink), a private socket (0600),
//! a stale socket replaced, a live one left alone.
//!
//! A directory that already exists is checked, never repaired: it was made by someone, and changing the mode of a
//! directory the daemon did not create would hide that someone else could have been inside it. The rule is the
//! one every client applies before it connects ([`graphbroker_protocol::private_directory_problem`]), so a
//! directory the daemon accepts is one its clients accept.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use graphbroker_protocol::{UnsafeDirectory, private_directory_problem};
use tokio::net::UnixListener;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another graphbrokerd is already answering on {0}; stop it first (or use --socket for a second daemon)")]
    AlreadyRunning(PathBuf),
    #[error("{0} exists and is not a socket; move it away or choose another path with --socket")]
    NotASocket(PathBuf),
    /// The socket's directory is a symlink, not ours, or open to others.
    #[error(transparent)]
    UnsafeDirectory(#[from] UnsafeDirectory),
    #[error("could not prepare {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BindError + '_ {
    move |source| BindError::Io { path: path.to_owned(), source }
}

/// Makes sure the socket's parent directory is private to this user: creates it 0700 (with any missing parents)
/// when it is missing, and otherwise requires it to be a real directory (`lstat`: a symlink is refused), owned by
/// this user and closed to group and others. An existing directory is never chmod-ed.
pub fn prepare_directory(dir: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io_error(parent))?;
            }
            // Not recursive: if someone creates the directory first, this fails with AlreadyExists and their
            // directory is checked below like any other.
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(dir)(e)),
            }
            std::fs::symlink_metadata(dir).map_err(io_error(dir))?
        }
        Err(e) => return Err(io_error(dir)(e)),
    };
    match private_directory_problem(&meta, nix::unistd::getuid().as_raw()) {
        None => Ok(()),
        Some(problem) => Err(UnsafeDirectory { path: dir.to_owned(), problem }.into()),
    }
}

/// The directory that holds `path`: its parent, or the working directory for a bare file name.
fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Binds `path` (mode 0600). A socket file nobody answers on is stale and replaced; one that answers means
/// another daemon runs, and is left alone.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    prepare_directory(directory_of(path))?;
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
    use graphbroker_protocol::DirectoryProblem;
    use std::os::unix::fs::MetadataExt;

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn problem_of(result: Result<UnixListener, BindError>) -> DirectoryProblem {
        match result {
            Err(BindError::UnsafeDirectory(found)) => found.problem,
            other => panic!("expected an unsafe directory, got {:?}", other.map(|_| "a listener")),
        }
    }

    #[tokio::test]
    async fn binds_private_and_refuses_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/graphbroker.sock");
        let listener = bind(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().unwrap()), 0o700);
        assert!(matches!(bind(&path), Err(BindError::AlreadyRunning(_))));
        drop(listener);
        // Dropping the listener leaves the file behind: a stale socket, which is replaced.
        assert!(path.exists());
        let _again = bind(&path).unwrap();
    }

    #[test]
    fn refuses_a_regular_file_in_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        // tempfile's directories follow the umask; the socket's must be private before anything else is looked at.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = dir.path().join("graphbroker.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(matches!(bind(&file), Err(BindError::NotASocket(_))));
    }

    #[test]
    fn refuses_a_loose_directory_and_leaves_its_mode_alone() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = bind(&loose.join("graphbroker.sock"));
        assert_eq!(problem_of(error), DirectoryProblem::Mode { mode: 0o755 });
        assert_eq!(mode_of(&loose), 0o755, "a directory the daemon did not create keeps its mode");
        assert!(!loose.join("graphbroker.sock").exists(), "nothing bound in it");
    }

    #[test]
    fn refuses_a_symlinked_directory_even_to_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let error = bind(&link.join("graphbroker.sock"));
        assert_eq!(problem_of(error), DirectoryProblem::Symlink);
        assert!(!real.join("graphbroker.sock").exists(), "nothing bound through the link");
    }

    #[test]
    fn refuses_a_directory_of_another_user_and_leaves_it_alone() {
        if !nix::unistd::getuid().is_root() {
            let test = "refuses_a_directory_of_another_user_and_leaves_it_alone";
            if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
                panic!("{test}: not root, but GRAPHBROKER_TEST_ROOT=required");
            }
            eprintln!("skipping {test}: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let error = bind(&foreign.join("graphbroker.sock"));
        assert_eq!(problem_of(error), DirectoryProblem::Owner { found: 65534, expected: 0 });
        let meta = std::fs::symlink_metadata(&foreign).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o700), "owner and mode untouched");
        assert!(!foreign.join("graphbroker.sock").exists(), "nothing bound in it");
    }
}

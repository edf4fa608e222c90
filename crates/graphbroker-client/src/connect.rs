//! Connecting to the socket only once it is known who is there: nothing is written to a connection before its
//! directory and its listener have been checked.
//!
//! Two checks, both before the first byte of a request:
//! 1. the socket's directory, by `lstat`, is a real directory owned by the caller and closed to everyone else —
//!    the rule the daemon applies when it binds (`graphbroker_protocol::private_directory_problem`);
//! 2. the listener's uid, from the kernel (`SO_PEERCRED`, or `LOCAL_PEERCRED` on macOS, through tokio's
//!    `peer_cred`), is the caller's. This one holds even if the directory is swapped between the check and the
//!    connect: it is a fact about the connected socket, not about a path.
//!
//! A failure is a [`ConnectError`], which [`crate::Client`] turns into the matching [`crate::Error`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use graphbroker_protocol::{UnsafeDirectory, private_directory_problem};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

/// Why a connection was not made, or made and dropped unused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The socket's directory is a symlink, another user's, or open to others.
    #[error("{0}")]
    Directory(UnsafeDirectory),
    /// The listener runs as another user (`uid`), or the kernel could not say who it is (`None`).
    #[error("the listener's uid is {uid:?}")]
    Listener { uid: Option<u32> },
    /// Connecting failed (no socket, nobody listening, no permission, …).
    #[error(transparent)]
    Io(io::Error),
}

/// hyper's connector for [`crate::Client`]: every new connection goes to one socket path and passes both checks.
/// The request's URI is ignored; the client is bound to its socket when it is made.
#[derive(Debug, Clone)]
pub(crate) struct CheckedConnector {
    socket: Arc<PathBuf>,
    uid: u32,
}

impl CheckedConnector {
    /// A connector to `socket` that trusts only `uid` (the calling user).
    pub(crate) fn new(socket: Arc<PathBuf>, uid: u32) -> Self {
        Self { socket, uid }
    }
}

impl tower_service::Service<Uri> for CheckedConnector {
    type Response = CheckedStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<CheckedStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (socket, uid) = (self.socket.clone(), self.uid);
        Box::pin(async move { connect_checked(&socket, uid).await.map(|stream| CheckedStream(TokioIo::new(stream))) })
    }
}

/// Connects to `socket` for user `uid`, checking the directory before and the listener after connecting.
pub(crate) async fn connect_checked(socket: &Path, uid: u32) -> Result<tokio::net::UnixStream, ConnectError> {
    check_directory(socket, uid)?;
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(ConnectError::Io)?;
    let listener = stream.peer_cred().ok().map(|cred| cred.uid());
    match listener {
        Some(found) if trusted_listener(found, uid) => Ok(stream),
        // Dropped here, unused: not a byte of the request was written.
        uid => Err(ConnectError::Listener { uid }),
    }
}

/// Check 1: the directory that holds `socket` is the user's alone (or missing).
pub(crate) fn check_directory(socket: &Path, uid: u32) -> Result<(), ConnectError> {
    let dir = directory_of(socket);
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => match private_directory_problem(&meta, uid) {
            Some(problem) => Err(ConnectError::Directory(UnsafeDirectory { path: dir.to_owned(), problem })),
            None => Ok(()),
        },
        // No directory, so no socket: connecting reports that as "not running", which autostart can fix (the
        // daemon creates the directory private).
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ConnectError::Io(error)),
    }
}

/// The directory that holds `socket`: its parent, or the working directory for a bare file name.
fn directory_of(socket: &Path) -> &Path {
    socket.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Whether a listener running as `listener` may be the caller's daemon. On macOS launchd, which runs as root,
/// creates and listens on an agent's socket itself, and the kernel reports the uid of whoever called `listen`;
/// root could read everything of the user's anyway, so accepting it there gives nothing away. Elsewhere only the
/// caller's own uid is accepted (a systemd user manager runs as the user).
pub(crate) fn trusted_listener(listener: u32, caller: u32) -> bool {
    listener == caller || (cfg!(target_os = "macos") && listener == 0)
}

/// A connection that passed the checks, in the shape hyper's client wants.
#[derive(Debug)]
pub(crate) struct CheckedStream(TokioIo<tokio::net::UnixStream>);

impl Connection for CheckedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for CheckedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for CheckedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[tokio::test]
    async fn a_loose_directory_is_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("graphbroker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = connect_checked(&socket, uid()).await.unwrap_err();
        assert!(matches!(&error, ConnectError::Directory(found) if found.path == dir.path()), "{error:?}");
        // Not even a connection was made.
        let accepted = tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "the client connected to a socket in a loose directory");
    }

    #[test]
    fn only_the_callers_uid_is_trusted_off_macos() {
        assert!(trusted_listener(1000, 1000));
        assert!(!trusted_listener(65534, 1000));
        assert_eq!(trusted_listener(0, 1000), cfg!(target_os = "macos"));
    }
}

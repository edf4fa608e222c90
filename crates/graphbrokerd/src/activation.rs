//! Service-manager integration: a listener inherited through socket activation (systemd's `LISTEN_FDS`,
//! launchd's `launch_activate_socket`) and readiness/status notifications (`sd_notify`).
//!
//! [`inherited_listener`] must run before the async runtime starts any thread: reading `LISTEN_FDS` also
//! clears it (so children do not inherit it), and changing the environment is only sound single-threaded.

use std::io;
use std::os::unix::net::UnixListener;

/// Who handed us the listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Systemd,
    Launchd,
}

/// The listener passed by the service manager, if the daemon was socket-activated.
#[cfg(not(target_os = "macos"))]
pub fn inherited_listener() -> io::Result<Option<(UnixListener, Activation)>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    match fds.take_unix_listener(0)? {
        Some(listener) => Ok(Some((listener, Activation::Systemd))),
        None => Err(io::Error::new(io::ErrorKind::InvalidInput, "LISTEN_FDS is set but fd 3 is not a Unix socket")),
    }
}

/// The listener passed by launchd, if the agent's plist declared the `Listeners` socket.
#[cfg(target_os = "macos")]
#[allow(unsafe_code)] // reason: launchd hands out raw fds; taking ownership of the one it gave us is the only way
pub fn inherited_listener() -> io::Result<Option<(UnixListener, Activation)>> {
    use std::os::fd::FromRawFd;
    match raunch::activate_socket("Listeners") {
        Ok(fds) if !fds.is_empty() => {
            // SAFETY: launchd transfers these descriptors to us; nothing else in the process holds them.
            let mut owned: Vec<UnixListener> =
                fds.into_iter().map(|fd| unsafe { UnixListener::from_raw_fd(fd) }).collect();
            Ok(Some((owned.swap_remove(0), Activation::Launchd)))
        }
        // Not started by launchd (or no such socket): bind our own.
        _ => Ok(None),
    }
}

/// Tells the service manager something, if one listens (`NOTIFY_SOCKET`); a no-op otherwise.
pub fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

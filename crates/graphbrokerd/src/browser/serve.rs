//! Serving the loopback listener: every connection is bounded before it can cost anything.
//!
//! Any user of the machine can connect to a loopback port, so the listener is built like the socket's accept
//! loop (`server/accept.rs`), not with `axum::serve`:
//!
//! - **Owner first.** Right after `accept()` the peer's socket is looked up (`crate::tcp_owner`, one exact
//!   sock_diag lookup on Linux) and a connection of another user is closed at once, before a byte of it is
//!   read. It costs the daemon one file descriptor for a few microseconds, however many are opened.
//! - **A cap** of [`MAX_CONNECTIONS`] connections of the user's own browser at once. At the cap the loop stops
//!   accepting: new connections wait in the kernel's backlog until one closes.
//! - **A time limit on the request head** ([`HEAD_TIMEOUT`]), which also ends an idle keep-alive connection.
//! - **Nothing outlives the sign-in.** When the sign-in ends, the listeners close and each connection is asked
//!   to finish: an idle or half-sent one closes at once, one that waits for the sign-in's outcome (the redirect's
//!   tab) gets its page, and after [`CLOSE_GRACE`] any that is still open is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::tcp_owner;

/// How many connections of the user's own browser are served at once. A browser opens a few to one origin
/// (six at most, by custom); sixteen leaves room while bounding what one user can tie up.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a connection may take to send a whole request head, or stay idle between requests. A browser sends
/// its head at once.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may go on once the sign-in has ended: the redirect's tab waits for the account to be
/// checked and stored, which takes moments.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How long the loop pauses after `accept()` fails for want of resources, so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listeners` until `stopped` turns `true` (or its sender is dropped).
pub(super) fn spawn(listeners: Vec<TcpListener>, app: Router, stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The first refusal of a sign-in is logged as a warning, the rest at debug: a flood must not flood the log.
    let warned = Arc::new(AtomicBool::new(false));
    for listener in listeners {
        tokio::spawn(accept_loop(listener, app.clone(), slots.clone(), warned.clone(), stopped.clone()));
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    slots: Arc<Semaphore>,
    warned: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            () = ended(&mut stopped) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("the browser redirect listener could not accept a connection: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = ended(&mut stopped) => break,
        };
        let checked = stream
            .local_addr()
            .map_err(|e| tcp_owner::PeerRefusal::Unidentified { detail: format!("no local address: {e}") })
            .and_then(|local| tcp_owner::check(peer, local));
        if let Err(refusal) = checked {
            drop(stream); // closed unread
            if warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(%peer, "closed a connection to the browser sign-in listener unread: {refusal}");
            } else {
                tracing::warn!(%peer, "closed a connection to the browser sign-in listener unread: {refusal}");
            }
            continue;
        }
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = ended(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(CLOSE_GRACE, connection).await.unwrap_or(Ok(()))
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "a browser redirect connection ended: {e}");
            }
        });
    }
}

/// Completes when the sign-in has ended: `true` was sent, or the sender is gone.
async fn ended(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

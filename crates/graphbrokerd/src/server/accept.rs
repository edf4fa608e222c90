//! The accept loop: who gets a connection, how many at once, and how long one may take to say what it wants.
//!
//! - **Peer first.** `SO_PEERCRED` is checked right after `accept()`, before a byte of the request is read: a
//!   peer of another user gets one canned `403 forbidden` answer and the connection is closed, so it cannot
//!   hold a connection open or make the daemon parse anything. (The router's peer middleware stays as a second
//!   line of defence.)
//! - **A cap on open connections** ([`MAX_CONNECTIONS`]). At the cap the loop stops accepting: new connections
//!   wait in the kernel's listen backlog and are served, in order, as others close. Nothing is refused, so a
//!   burst of requests from one program only queues; and a slot cannot be held for nothing for long, because
//!   of the next rule.
//! - **A waiting room for requests that wait on the user** ([`MAX_WAITING`]): a request about to wait for a
//!   sign-in gives up its connection's slot (see `crate::waiting`), so that requests held for minutes by a
//!   sign-in never keep `status` or `signout` out; its answer closes the connection.
//! - **A time limit on the request head** ([`HEADER_READ_TIMEOUT`]): a connection that has not sent a whole
//!   request head in time — a half-sent request, or an idle keep-alive connection between requests — is
//!   closed, freeing its slot. Requests held by `wait` are past their head and are not cut.
//! - **A time limit on a stalled answer** ([`WRITE_IDLE_TIMEOUT`]): a caller that stops reading (a large proxied
//!   download it never drains, or a program stopped with Ctrl-Z) makes the daemon's writes wait; once a write has
//!   waited that long the connection is closed, freeing its slot. A slow reader that keeps reading is not cut:
//!   the limit is on a pause, not on the whole answer.
//!
//! Shutdown: once the `shutdown` future completes the listener is closed, every connection is asked to finish
//! (idle ones close at once, in-flight requests run to their answer), and [`accept_loop`] returns when the
//! last one has closed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use graphbroker_protocol::{ErrorBody, ErrorCode, ErrorDetail};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;

use super::direct::{Connection, Direct, Ended, Stream};
use super::peer::{FORBIDDEN_MESSAGE, Peer, PeerPolicy};
use crate::metrics::Metrics;
use crate::policy::{self, context::RequestContext};
use crate::waiting::{self, Slot};

/// How long a connection may take to send a whole request head (and how long an idle keep-alive connection is
/// kept). Local programs send theirs in microseconds; ten seconds leaves room for a loaded machine while a
/// connection that sends nothing gives up its slot soon.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one write of an answer may wait for the caller to read (see the module docs). Thirty seconds is
/// an age for a local program that reads what it asked for, and short for a slot held by one that does not.
pub const WRITE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections are served at once. One user's programs rarely hold more than a few; 64 leaves room for
/// a build running many in parallel, and bounds the memory and tasks one misbehaving program can tie up.
pub const MAX_CONNECTIONS: usize = 64;

/// How many connections waiting on the user (a sign-in) may be held besides the [`MAX_CONNECTIONS`] served.
/// Each costs a task and a file descriptor; a waiting connection past this keeps its serving slot.
pub const MAX_WAITING: usize = 256;

/// How long a refused connection is kept open, unread, after its answer: a client that writes its request after
/// connecting then still reads the `403` rather than failing on a closed socket. Nothing it sends is read.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How many refused connections may linger at once; past it they are closed at once, so another user cannot
/// tie up tasks by connecting in a loop.
const MAX_LINGERING_REFUSALS: usize = 16;

/// How long the loop pauses after `accept()` fails for want of resources (e.g. out of file descriptors), so that
/// it does not spin while connections close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The bounds [`accept_loop`] applies to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`WRITE_IDLE_TIMEOUT`].
    pub write_idle_timeout: Duration,
    /// See [`MAX_CONNECTIONS`]; at least 1.
    pub max_connections: usize,
    /// See [`MAX_WAITING`]; 0 keeps every waiting connection in its serving slot.
    pub max_waiting: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_idle_timeout: WRITE_IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_waiting: MAX_WAITING,
        }
    }
}

/// Serves `app` on `listener` within `limits`, and the token routes through `direct`, refusing peers `policy`
/// does not allow, until `shutdown` completes and the connections still open have finished.
pub(super) async fn accept_loop(
    listener: UnixListener,
    app: Router,
    direct: Arc<Direct>,
    policy: PeerPolicy,
    metrics: Arc<Metrics>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let waiting_room = Arc::new(Semaphore::new(limits.max_waiting));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    // `true` asks every connection to finish; each holds a receiver until it has closed.
    let (stopping, stop_signal) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let peer = Peer::of(&stream);
        if !policy.allows(&peer) {
            metrics.peer_refused();
            refuse(stream, &peer, &lingering);
            continue;
        }
        let process = Arc::new(crate::caller::PeerProcess::of(&stream, peer.pid));
        let slot = Slot::new(slot, waiting_room.clone());
        let (app, direct, builder) = (app.clone(), direct.clone(), builder.clone());
        // hyper and the direct phase bound the reads (the request head's limit); the wrapper bounds how long a
        // write may wait.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_idle_timeout));
        let mut stream: Stream = Box::pin(stream);
        let mut stop = stop_signal.clone();
        let head_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // The token routes first, answered by the connection itself (`direct/`); the first request that
            // is anything else hands the connection to hyper and the router.
            let connection =
                Connection { direct: &direct, peer, process: &process, slot: &slot, head_timeout, stop: &stop };
            // Between requests it closes when the daemon stops; a request in flight is answered first.
            let ended = connection.serve(&mut stream).await;
            let Ended::HandOff(read_ahead) = ended else { return };
            let held = slot.clone();
            let app = TowerToHyperService::new(app);
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let slot = held.clone();
                let context = RequestContext::new(process.clone(), request.method().as_str(), request.uri().path());
                request.extensions_mut().insert(ConnectInfo(peer));
                let answer = app.call(request);
                async move {
                    let mut response = waiting::scope(slot.clone(), policy::context::scope(context, answer)).await?;
                    if slot.is_waiting() {
                        // It gave up its serving slot: it ends with this answer (hyper closes it once written).
                        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let connection = builder.serve_connection(TokioIo::new(read_ahead.with(stream)), service);
            let _slot = slot;
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts of the request head and of stalled writes land here, as do clients that hang up
                // mid-request.
                tracing::debug!(peer = ?peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    drop(stop_signal);
    stopping.send_replace(true);
    stopping.closed().await;
    Ok(())
}

/// Answers a peer of another user without reading its request: one canned `403 forbidden`, the write side shut,
/// and the connection closed after [`REFUSAL_LINGER`] (at once when too many linger). The write cannot block the
/// loop: the answer fits in a fresh socket's buffer, and what does not fit is dropped.
fn refuse(stream: UnixStream, peer: &Peer, lingering: &Arc<Semaphore>) {
    tracing::warn!(peer = ?peer, "refused a connection from another user before reading its request");
    let body = ErrorBody { error: ErrorDetail::new(ErrorCode::Forbidden, FORBIDDEN_MESSAGE) };
    let body = serde_json::to_string(&body).unwrap_or_default();
    // The protocol version, as on every other answer (docs/api.md, "Versioning").
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len(),
        graphbroker_protocol::PROTOCOL_HEADER,
        graphbroker_protocol::PROTOCOL_VERSION,
    );
    let _ = stream.try_write(answer.as_bytes());
    let Ok(stream) = stream.into_std() else { return };
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if let Ok(linger) = lingering.clone().try_acquire_owned() {
        tokio::spawn(async move {
            tokio::time::sleep(REFUSAL_LINGER).await;
            drop((stream, linger));
        });
    }
}

/// Logs a failed `accept()`, pausing when the cause is a lack of resources rather than one connection.
async fn accept_failed(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {
            tracing::debug!("accept failed for one connection: {error}");
        }
        _ => {
            tracing::warn!("could not accept a connection ({error}); trying again shortly");
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
        }
    }
}

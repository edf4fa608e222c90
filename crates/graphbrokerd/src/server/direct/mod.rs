//! The routes asked most, `GET /v1/token` and `GET /v1/header`, read and answered by the connection itself:
//! neither hyper's per-request work (the request and header maps, the boxed futures, the timer allocated for
//! each head) nor the router's (the route lookup, the middleware, the extractors' copies). A cached token costs
//! a parse of the head (`httparse`, the parser hyper itself uses, `head.rs`), the same handler and gate as the
//! router's route ([`Gate::admit`], [`Gate::answered`]), and one `writev` of the head and the shared answer bytes (`write.rs`).
//!
//! A connection starts here. The first request that is anything else (another route or method, a body, an
//! upgrade, `Expect`, HTTP/1.0, a head this reading does not take, or one larger than [`READ_BUFFER`]) hands the
//! connection, with the bytes already read, to hyper and the router for the rest of its life
//! ([`Ended::HandOff`]). So nothing that needs HTTP's corners is answered by this code: when in doubt, it hands
//! off, and hyper gives the answer it always gave.
//!
//! The connection rules of `accept.rs` hold here too: the head of each request must arrive within the head
//! limit (idle keep-alive connections included), writes are bounded by the stream's write limit, a request that
//! gave up its serving slot ends its connection, and a stopping daemon closes the connection between requests.

mod head;
mod prefixed;
mod write;

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use self::head::{Head, head};
pub(super) use self::prefixed::Prefixed;
use self::write::write_answer;
use super::peer::Peer;
use super::request::token_query;
use super::{Gate, TokenRoute, issue_answer};
use crate::broker::{Broker, TokenRequest};
use crate::caller::PeerProcess;
use crate::error::ApiError;
use crate::metrics::Route;
use crate::policy::{self, context::RequestContext};
use crate::waiting::{self, Slot};
use graphbroker_protocol::routes;

/// The bytes a connection reads ahead: a head that does not fit is handed to hyper, whose limits apply.
pub(super) const READ_BUFFER: usize = 8 * 1024;

/// What the direct routes need: the gate's state and the broker.
#[derive(Debug)]
pub(super) struct Direct {
    pub gate: Gate,
    pub broker: Arc<Broker>,
}

/// How a connection's direct phase ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The connection is done: closed by the peer, asked to close, timed out, failed, or the daemon is stopping.
    Closed,
    /// The next request is hyper's: these bytes were read and not answered.
    HandOff(Prefixed),
}

/// A connection's own part in answering: who it is and what it holds.
pub(super) struct Connection<'a> {
    pub direct: &'a Direct,
    pub peer: Peer,
    pub process: &'a Arc<PeerProcess>,
    pub slot: &'a Arc<Slot>,
    pub head_timeout: Duration,
    /// Turns `true` when the daemon is stopping: the connection closes between requests.
    pub stop: &'a tokio::sync::watch::Receiver<bool>,
}

/// What a connection keeps from one request for the next, so that a program asking in a loop on one connection
/// pays for one parse and one request context, not one per request.
#[derive(Default)]
struct Kept {
    /// The last token query, parsed: the next request with the same query bytes and terminal header is not
    /// parsed again (the parse is a function of those alone).
    query: Option<LastQuery>,
    /// The last request context of each route (`RequestContext::again`).
    contexts: [Option<Arc<RequestContext>>; 2],
}

struct LastQuery {
    raw: Vec<u8>,
    attended: bool,
    request: TokenRequest,
}

/// The stream a connection is served on.
pub(super) type Stream = Pin<Box<tokio_io_timeout::TimeoutStream<tokio::net::UnixStream>>>;

impl Connection<'_> {
    /// Serves the direct requests at the start of `stream`, until it closes or a request is hyper's.
    pub(super) async fn serve(&self, stream: &mut Stream) -> Ended {
        let mut buffer = vec![0; READ_BUFFER];
        let (mut start, mut end) = (0, 0);
        let mut answer_head = Vec::with_capacity(256);
        let mut kept = Kept::default();
        // The head limit: the next head is due by `due`. The timer is moved only when it fires early (a request
        // was answered since it was set), not at every request: a reset moves it in the runtime's timer wheel.
        let mut deadline = pin!(tokio::time::sleep(self.head_timeout));
        let mut due = deadline.deadline();
        // Polled once, by the first read that waits, so that the stop wakes this task; after that each read only
        // asks the receiver whether the value changed (see `stopping`), not the channel's waiter list again.
        let mut waiter = self.stop.clone();
        let mut stop_wakes = pin!(async move { drop(waiter.changed().await) });
        let mut registered = false;
        loop {
            match head(&buffer[start..end]) {
                Head::Direct { len, route, query, attended, close } => {
                    let query = query.map_or(&[][..], |range| &buffer[start + range.start..start + range.end]);
                    let answer = self.answer(route, attended, query, &mut kept).await;
                    let close = close || self.slot.is_waiting() || self.stopping();
                    if let Err(e) = write_answer(stream, answer, close, &mut answer_head).await {
                        tracing::debug!(peer = ?self.peer, "connection ended while answering: {e}");
                        return Ended::Closed;
                    }
                    if close {
                        return Ended::Closed;
                    }
                    start += len;
                    if start == end {
                        (start, end) = (0, 0);
                    }
                    due = Instant::now() + self.head_timeout;
                }
                Head::Other => return Ended::HandOff(Prefixed::new(buffer, start..end)),
                Head::Partial => {
                    if end == buffer.len() {
                        if start == 0 {
                            return Ended::HandOff(Prefixed::new(buffer, start..end));
                        }
                        buffer.copy_within(start..end, 0);
                        (start, end) = (0, end - start);
                    }
                    let wakes = (!registered).then_some(stop_wakes.as_mut());
                    registered = true;
                    match self.read(stream, &mut buffer[end..], deadline.as_mut(), due, wakes).await {
                        Ok(0) => return Ended::Closed,
                        Ok(n) => end += n,
                        Err(e) => {
                            // The head limit and stopping land here, as do peers that hang up mid-head.
                            tracing::debug!(peer = ?self.peer, "connection ended: {e}");
                            return Ended::Closed;
                        }
                    }
                }
            }
        }
    }

    /// Whether the daemon is stopping (or its accept loop is gone).
    fn stopping(&self) -> bool {
        self.stop.has_changed().unwrap_or(true)
    }

    /// One read into `into`, unless the head is not whole by `due` (`deadline`, a timer at or before it) or the
    /// daemon stops first. `stop_wakes`, when given, is polled along to register this task for the stop's wake-up
    /// (it stays registered afterwards).
    async fn read(
        &self,
        stream: &mut Stream,
        into: &mut [u8],
        mut deadline: Pin<&mut tokio::time::Sleep>,
        due: Instant,
        mut stop_wakes: Option<Pin<&mut (impl Future<Output = ()> + ?Sized)>>,
    ) -> io::Result<usize> {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            if let Some(wakes) = stop_wakes.as_mut() {
                // Ready only once the stop has come, which `stopping` then says too.
                let _ = wakes.as_mut().poll(cx);
            }
            if self.stopping() {
                return Poll::Ready(Err(io::Error::other("the daemon is stopping")));
            }
            let mut read = ReadBuf::new(into);
            match stream.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(result) => Poll::Ready(result.map(|()| read.filled().len())),
                Poll::Pending => loop {
                    match deadline.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) if deadline.deadline() >= due => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no whole request head within the time limit",
                            )));
                        }
                        // Set for an earlier head: wait on until this one's.
                        Poll::Ready(()) => deadline.as_mut().reset(due),
                    }
                },
            }
        })
        .await
    }

    /// The answer to one direct request: the token answer's JSON, or any other answer whole (a refusal, an
    /// error), through the gate ([`Gate::admit`], [`Gate::answered`]), in the same scopes (the waiting room, the policy's
    /// context) as the accept loop runs hyper's requests in.
    async fn answer(&self, route: TokenRoute, attended: bool, raw: &[u8], kept: &mut Kept) -> Result<Bytes, Response> {
        let gate = &self.direct.gate;
        let _counted = gate.admit(self.peer)?;
        let (path, counted_as) = match route {
            TokenRoute::Token => (routes::TOKEN, Route::Token),
            TokenRoute::Header => (routes::HEADER, Route::Header),
        };
        let Kept { query: last, contexts } = kept;
        let request = match last {
            Some(last) if last.attended == attended && last.raw == raw => Ok(&last.request),
            // `head` took the target's bytes as ASCII, so the query is text.
            _ => std::str::from_utf8(raw)
                .map_err(|_| ApiError::bad_request("the query is not UTF-8 text: percent-encode it; see docs/api.md"))
                .and_then(|query| token_query(Some(query)))
                .map(|request| {
                    let request = TokenRequest { attended, ..request };
                    &last.insert(LastQuery { raw: raw.to_vec(), attended, request }).request
                }),
        };
        let context = match &mut contexts[route as usize] {
            Some(context) => RequestContext::again(context),
            none => none.insert(RequestContext::new(self.process.clone(), "GET", path)).clone(),
        };
        let answer = async { issue_answer(&self.direct.broker, route, request?).await };
        gate.answered(counted_as, waiting::scope(self.slot.clone(), policy::context::scope(context, answer)).await)
    }
}

//! The routes asked most, `GET /v1/token` and `GET /v1/header`, read and answered by the connection itself:
//! neither hyper's per-request work (the request and header maps, the boxed futures, the timer allocated for
//! each head) nor the router's (the route lookup, the middleware, the extractors' copies). A cached token costs
//! a parse of the head (`httparse`, the parser hyper itself uses), the same handler and [`Gate::pass`] as the
//! router's route, and one `writev` of the head and the shared answer bytes.
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

use std::future::Future;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use graphbroker_protocol::{PROTOCOL_HEADER, TERMINAL_HEADER, routes};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::time::Instant;

use super::activity::CountedRequest;
use super::answer::secret_answer;
use super::peer::Peer;
use super::{Gate, PROTOCOL_VALUE, TokenRoute, token_answer};
use crate::broker::Broker;
use crate::caller::PeerProcess;
use crate::metrics::Route;
use crate::policy::{self, context::RequestContext};
use crate::waiting::{self, Slot};

/// The bytes a connection reads ahead: a head that does not fit is handed to hyper, whose limits apply.
pub(super) const READ_BUFFER: usize = 8 * 1024;

/// Headers a direct head may have; a head with more is handed to hyper (which takes up to 100).
const MAX_HEADERS: usize = 32;

/// What the direct routes need: the gate's state and the broker.
#[derive(Debug)]
pub(super) struct Direct {
    pub gate: Gate,
    pub broker: Arc<Broker>,
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Head {
    /// A whole head of a token-route request, `len` bytes long.
    Direct {
        len: usize,
        route: TokenRoute,
        /// Where the raw query is in the bytes, if the target has one.
        query: Option<Range<usize>>,
        /// The terminal header says `1` (its first value, as a header map's `get` reads it).
        attended: bool,
        /// `Connection: close`: the connection ends with this answer.
        close: bool,
    },
    /// Not a whole head yet, and nothing so far says it is not a direct one.
    Partial,
    /// For hyper: see the module docs.
    Other,
}

/// Reads the head at the start of `bytes`.
pub(super) fn head(bytes: &[u8]) -> Head {
    if bytes.is_empty() {
        return Head::Partial;
    }
    // Left uninitialized: httparse writes the headers it finds, and only those are read.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let Ok(status) = request.parse_with_uninit_headers(bytes, &mut headers) else { return Head::Other };
    let (Some(method), Some(target)) = (request.method, request.path) else { return Head::Partial };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let route = match path {
        routes::TOKEN => TokenRoute::Token,
        routes::HEADER => TokenRoute::Header,
        _ => return Head::Other,
    };
    if method != "GET" || !target.bytes().all(plain_target_byte) {
        return Head::Other;
    }
    let httparse::Status::Complete(len) = status else { return Head::Partial };
    if request.version != Some(1) {
        return Head::Other;
    }
    let (mut attended, mut close) = (None, false);
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case(TERMINAL_HEADER) {
            attended.get_or_insert(value == b"1");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if !value.eq_ignore_ascii_case(b"keep-alive") {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.trim_ascii() != b"0" {
                return Head::Other;
            }
        } else if ["transfer-encoding", "upgrade", "expect"].iter().any(|other| name.eq_ignore_ascii_case(other)) {
            return Head::Other;
        }
    }
    let query = query.map(|query| {
        let start = query.as_ptr() as usize - bytes.as_ptr() as usize;
        start..start + query.len()
    });
    Head::Direct { len, route, query, attended: attended.unwrap_or(false), close }
}

/// The bytes a direct target may hold: RFC 3986's path and query characters. Anything else goes to hyper, whose
/// URI parser decides what it means.
fn plain_target_byte(byte: u8) -> bool {
    PLAIN_TARGET_BYTES[usize::from(byte)]
}

/// [`plain_target_byte`]'s table, made at compile time: a lookup per byte of the target.
static PLAIN_TARGET_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric();
        byte += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

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

/// The stream a connection is served on.
pub(super) type Stream = Pin<Box<tokio_io_timeout::TimeoutStream<tokio::net::UnixStream>>>;

impl Connection<'_> {
    /// Serves the direct requests at the start of `stream`, until it closes or a request is hyper's.
    pub(super) async fn serve(&self, stream: &mut Stream) -> Ended {
        let mut buffer = vec![0; READ_BUFFER];
        let (mut start, mut end) = (0, 0);
        let mut answer_head = Vec::with_capacity(256);
        let mut deadline = pin!(tokio::time::sleep(self.head_timeout));
        // Polled once, by the first read that waits, so that the stop wakes this task; after that each read only
        // asks the receiver whether the value changed (see `stopping`), not the channel's waiter list again.
        let mut waiter = self.stop.clone();
        let mut stop_wakes = pin!(async move { drop(waiter.changed().await) });
        let mut registered = false;
        loop {
            match head(&buffer[start..end]) {
                Head::Direct { len, route, query, attended, close } => {
                    // `head` took the target's bytes as ASCII, so the query is text.
                    let query = query.map(|range| std::str::from_utf8(&buffer[start + range.start..start + range.end]));
                    let Ok(query) = query.transpose() else {
                        return Ended::HandOff(Prefixed::new(buffer, start..end));
                    };
                    let answer = self.answer(route, attended, query).await;
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
                    deadline.as_mut().reset(Instant::now() + self.head_timeout);
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
                    match self.read(stream, &mut buffer[end..], deadline.as_mut(), wakes).await {
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

    /// One read into `into`, unless the head's `deadline` passes or the daemon stops first. `stop_wakes`, when
    /// given, is polled along to register this task for the stop's wake-up (it stays registered afterwards).
    async fn read(
        &self,
        stream: &mut Stream,
        into: &mut [u8],
        mut deadline: Pin<&mut tokio::time::Sleep>,
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
                Poll::Pending => match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no whole request head within the time limit",
                    ))),
                    Poll::Pending => Poll::Pending,
                },
            }
        })
        .await
    }

    /// The answer to one direct request: the token answer's JSON, or any other answer whole (a refusal, an
    /// error). The same peer check, counting and protocol header as the router's [`Gate::pass`], in the same
    /// scopes (the waiting room, the policy's context) as the accept loop runs hyper's requests in.
    async fn answer(&self, route: TokenRoute, attended: bool, query: Option<&str>) -> Result<Bytes, Response> {
        let gate = &self.direct.gate;
        if let Some(mut refusal) = gate.peers.refusal_of(Some(self.peer)) {
            refusal.headers_mut().insert(PROTOCOL_HEADER, PROTOCOL_VALUE.clone());
            return Err(refusal);
        }
        let (path, counted_as) = match route {
            TokenRoute::Token => (routes::TOKEN, Route::Token),
            TokenRoute::Header => (routes::HEADER, Route::Header),
        };
        let _counted = CountedRequest::start(&gate.activity);
        let context = RequestContext::new(self.process.clone(), "GET", path);
        let answer = token_answer(&self.direct.broker, route, attended, query);
        match waiting::scope(self.slot.clone(), policy::context::scope(context, answer)).await {
            Ok(json) => {
                gate.metrics.answered(counted_as, false, None);
                Ok(json)
            }
            Err(error) => {
                let mut response = error.into_response();
                gate.counted(counted_as, &response);
                response.headers_mut().insert(PROTOCOL_HEADER, PROTOCOL_VALUE.clone());
                Err(response)
            }
        }
    }
}

/// A token answer's status line and headers, as the router's route gives them (`secret_answer` and the
/// protocol header): made once, from the same functions.
static TOKEN_HEAD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut response = secret_answer(Bytes::new());
    response.headers_mut().insert(PROTOCOL_HEADER, PROTOCOL_VALUE.clone());
    let mut head = Vec::new();
    status_and_headers(&mut head, &response.into_parts().0);
    head
});

/// Writes the answer to a direct request: a token answer's `json` after its made head, or `other` whole. The
/// body is written from its own bytes: a token answer is never copied, so it stays only in its wiped buffer.
async fn write_answer(
    stream: &mut Stream,
    answer: Result<Bytes, Response>,
    close: bool,
    head: &mut Vec<u8>,
) -> io::Result<()> {
    head.clear();
    let (body, rest) = match answer {
        Ok(json) => {
            head.extend_from_slice(&TOKEN_HEAD);
            (json, Vec::new())
        }
        Err(response) => {
            let (parts, mut body) = response.into_parts();
            status_and_headers(head, &parts);
            let (mut first, mut rest) = (Bytes::new(), Vec::new());
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                    if first.is_empty() {
                        first = data;
                    } else {
                        rest.push(data);
                    }
                }
            }
            (first, rest)
        }
    };
    let length = body.len() + rest.iter().map(Bytes::len).sum::<usize>();
    end_of_head(head, length, close);

    let mut slices = [IoSlice::new(head), IoSlice::new(&body)];
    let mut unwritten = &mut slices[..];
    while !unwritten.is_empty() {
        let n = stream.write_vectored(unwritten).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut unwritten, n);
    }
    for data in rest {
        stream.write_all(&data).await?;
    }
    Ok(())
}

/// The status line and headers of `parts`, less the ones [`end_of_head`] writes.
fn status_and_headers(head: &mut Vec<u8>, parts: &axum::http::response::Parts) {
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION, header::DATE].contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// The end of a head: the body's length, the date, `Connection: close` if this answer ends the connection.
fn end_of_head(head: &mut Vec<u8>, length: usize, close: bool) {
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    head.extend_from_slice(b"\r\ndate: ");
    head.extend_from_slice(&http_date());
    head.extend_from_slice(if close { b"\r\nconnection: close\r\n\r\n" } else { b"\r\n\r\n" });
}

/// The `Date` header's value now (RFC 9110 §6.6.1), formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    DATE.with(|date| {
        let (cached, text) = date.get();
        if cached == second {
            return text;
        }
        let mut text = [0; 29];
        let formatted = httpdate::fmt_http_date(now);
        text.copy_from_slice(&formatted.as_bytes()[..29]);
        date.set((second, text));
        text
    })
}

/// A connection handed to hyper: the bytes read ahead first, then the stream.
pub(super) struct Prefixed {
    buffer: Vec<u8>,
    unread: Range<usize>,
    stream: Option<Stream>,
}

impl std::fmt::Debug for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed").field("unread", &self.unread.len()).finish_non_exhaustive()
    }
}

impl Prefixed {
    fn new(buffer: Vec<u8>, unread: Range<usize>) -> Self {
        Self { buffer, unread, stream: None }
    }

    /// These bytes, then `stream`.
    pub(super) fn with(mut self, stream: Stream) -> Self {
        self.stream = Some(stream);
        self
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(|| io::Error::other("a handed-off connection without its stream"))
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, into: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(into.remaining());
            into.put_slice(&this.buffer[this.unread.start..this.unread.start + n]);
            this.unread.start += n;
            if this.unread.is_empty() {
                this.buffer = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        this.stream()?.as_mut().poll_read(cx, into)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.as_mut().poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(raw: &str) -> (TokenRoute, Option<String>, bool, bool, usize) {
        match head(raw.as_bytes()) {
            Head::Direct { len, route, query, attended, close } => {
                (route, query.map(|q| raw[q].to_owned()), attended, close, len)
            }
            other => panic!("{raw:?} read as {other:?}"),
        }
    }

    #[test]
    fn token_heads_are_read_with_their_query_and_flags() {
        let raw = "GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/status";
        assert_eq!(direct(raw), (TokenRoute::Token, Some("scopes=User.Read".into()), false, false, raw.len() - 14));
        let raw =
            "GET /v1/header HTTP/1.1\r\ngraphbroker-terminal: 1\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(direct(raw), (TokenRoute::Header, None, true, true, raw.len()));
        // The first terminal header counts, as `HeaderMap::get` reads it.
        let raw = "GET /v1/token?x HTTP/1.1\r\nGraphbroker-Terminal: 0\r\nGraphbroker-Terminal: 1\r\n\r\n";
        assert!(!direct(raw).2, "the first terminal header says 0");
    }

    #[test]
    fn heads_are_partial_until_whole_unless_their_request_line_is_someone_elses() {
        for partial in ["", "GE", "GET /v1/tok", "GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: loc"] {
            assert_eq!(head(partial.as_bytes()), Head::Partial, "{partial:?}");
        }
        for other in ["GET /v1/status HTTP/1.1\r\nHo", "DELETE /v1/token?scopes=a HTTP/1.1\r\n", "POST /v1/token "] {
            assert_eq!(head(other.as_bytes()), Head::Other, "{other:?}");
        }
    }

    #[test]
    fn anything_with_http_corners_goes_to_hyper() {
        let others = [
            "GET /v1/token HTTP/1.0\r\n\r\n",
            "HEAD /v1/token HTTP/1.1\r\n\r\n",
            "GET http://localhost/v1/token HTTP/1.1\r\n\r\n",
            "GET /v1/token?scopes=\"a\" HTTP/1.1\r\n\r\n",
            "GET /v1/token#x HTTP/1.1\r\n\r\n",
            "GET /v1/token/ HTTP/1.1\r\n\r\n",
            "GET /v1/%74oken HTTP/1.1\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "GET /v1/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET\t/v1/token HTTP/1.1\r\n\r\n",
        ];
        for other in others {
            assert_eq!(head(other.as_bytes()), Head::Other, "{other:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        assert_eq!(head(format!("GET /v1/token HTTP/1.1\r\n{many}\r\n").as_bytes()), Head::Other);
    }

    #[test]
    fn the_plain_target_bytes_are_rfc_3986s_path_and_query_characters() {
        let plain: Vec<u8> = (0..=255u8).filter(|b| plain_target_byte(*b)).collect();
        let mut want: Vec<u8> = (b'0'..=b'9').chain(b'A'..=b'Z').chain(b'a'..=b'z').collect();
        want.extend_from_slice(b"-._~!$&'()*+,;=:@/?%");
        want.sort_unstable();
        assert_eq!(plain, want);
    }

    #[tokio::test]
    async fn a_handed_off_connection_reads_what_was_read_ahead_first() {
        use tokio::io::AsyncReadExt as _;
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        theirs.write_all(b" and then the stream").await.unwrap();
        drop(theirs);
        let stream: Stream = Box::pin(tokio_io_timeout::TimeoutStream::new(ours));
        let mut buffer = vec![0; 16];
        buffer[..9].copy_from_slice(b"xxread ah");
        let mut prefixed = Prefixed::new(buffer, 2..9).with(stream);
        let mut all = String::new();
        prefixed.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "read ah and then the stream");
    }
}

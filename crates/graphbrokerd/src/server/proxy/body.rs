//! The body of a proxied request: kept whole when small, so that a call answered with a claims challenge can be
//! sent again, and streamed otherwise, so that a large upload never sits in the daemon's memory.
//!
//! Bounded in time as well as in size: each piece must arrive within [`BODY_IDLE_TIMEOUT`] of the one before,
//! and the part that is kept within [`BODY_DEADLINE`] of the start, else the call is answered `408
//! request_timeout` before any token was fetched. A streamed rest has the same limit per piece; one that stalls
//! breaks off the upload. A caller that sends half a body and stops thus frees what it holds soon.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use graphbroker_protocol::ErrorCode;

use crate::error::ApiError;

/// How long a request body may pause between two pieces. A local program writes its body as fast as it reads
/// it from disk; ten seconds is far beyond a loaded machine's pause and short for a slot held by nothing.
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the kept part of a body (up to [`REPLAY_LIMIT`]) may take in all: 1 MiB over a local socket takes
/// milliseconds, so a trickle of a byte every few seconds is cut here.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// The rest of a body, pieces as they arrive.
type Pieces = BoxStream<'static, Result<Bytes, axum::Error>>;

/// The largest body kept for a second attempt. Graph calls a claims challenge can hit are mostly small JSON
/// (`$batch` requests are at most 20 calls); a larger upload is streamed and, if challenged, answered with the
/// challenge after the token was renewed (see [`graphbroker_protocol::proxy::CLAIMS_HEADER`]).
pub(crate) const REPLAY_LIMIT: usize = 1024 * 1024;

/// A request body as it will be sent.
pub(super) enum Outgoing {
    /// The whole body (possibly empty): it can be sent again.
    Whole(Bytes),
    /// The part read so far, then the rest as it arrives: it can be sent once.
    Streamed { head: Vec<Bytes>, rest: Pieces },
}

impl Outgoing {
    /// Reads `body` until it ends or passes [`REPLAY_LIMIT`], within [`BODY_IDLE_TIMEOUT`] a piece and
    /// [`BODY_DEADLINE`] in all.
    pub(super) async fn read(body: Body) -> Result<Self, ApiError> {
        let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
        let mut rest = body.into_data_stream();
        let mut head = Vec::new();
        let mut size = 0;
        loop {
            let by = deadline.min(tokio::time::Instant::now() + BODY_IDLE_TIMEOUT);
            let Some(chunk) = tokio::time::timeout_at(by, rest.next()).await.map_err(|_| too_slow(size))? else {
                break;
            };
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
            size += chunk.len();
            head.push(chunk);
            if size > REPLAY_LIMIT {
                return Ok(Self::Streamed { head, rest: idle_limited(rest) });
            }
        }
        let mut whole = BytesMut::with_capacity(size);
        head.iter().for_each(|chunk| whole.extend_from_slice(chunk));
        Ok(Self::Whole(whole.freeze()))
    }

    /// The body for one attempt, and whether there is a body to send again afterwards.
    pub(super) fn attempt(&mut self) -> (reqwest::Body, bool) {
        match self {
            Self::Whole(bytes) => (reqwest::Body::from(bytes.clone()), true),
            Self::Streamed { head, rest } => {
                let head = futures_util::stream::iter(std::mem::take(head).into_iter().map(Ok::<_, axum::Error>));
                let rest = std::mem::replace(rest, futures_util::stream::empty().boxed());
                (reqwest::Body::wrap_stream(head.chain(rest)), false)
            }
        }
    }
}

/// The `408` of a body that stalled or trickled, after `size` bytes.
fn too_slow(size: usize) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request body stopped arriving after {size} bytes (each piece must follow within {} s, the first \
             MiB within {} s); the call was not sent: send it again with its whole body",
            BODY_IDLE_TIMEOUT.as_secs(),
            BODY_DEADLINE.as_secs()
        ),
    )
}

/// `rest`, ending with an error when a piece does not follow within [`BODY_IDLE_TIMEOUT`].
fn idle_limited<S>(rest: S) -> Pieces
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin + 'static,
{
    futures_util::stream::unfold(Some(rest), |rest| async move {
        let mut rest = rest?;
        match tokio::time::timeout(BODY_IDLE_TIMEOUT, rest.next()).await {
            Ok(Some(piece)) => Some((piece, Some(rest))),
            Ok(None) => None,
            Err(_) => {
                let stalled = std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body stalled");
                Some((Err(axum::Error::new(stalled)), None))
            }
        }
    })
    .boxed()
}

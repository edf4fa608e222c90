//! The body of a proxied request: kept whole when small, so that a call answered with a claims challenge can be
//! sent again, and streamed otherwise, so that a large upload never sits in the daemon's memory.

use axum::body::{Body, BodyDataStream};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use crate::error::ApiError;

/// The largest body kept for a second attempt. Graph calls a claims challenge can hit are mostly small JSON
/// (`$batch` requests are at most 20 calls); a larger upload is streamed and, if challenged, answered with the
/// challenge after the token was renewed (see [`graphbroker_protocol::proxy::CLAIMS_HEADER`]).
pub(crate) const REPLAY_LIMIT: usize = 1024 * 1024;

/// A request body as it will be sent.
pub(super) enum Outgoing {
    /// The whole body (possibly empty): it can be sent again.
    Whole(Bytes),
    /// The part read so far, then the rest as it arrives: it can be sent once.
    Streamed { head: Vec<Bytes>, rest: BodyDataStream },
}

impl Outgoing {
    /// Reads `body` until it ends or passes [`REPLAY_LIMIT`].
    pub(super) async fn read(body: Body) -> Result<Self, ApiError> {
        let mut rest = body.into_data_stream();
        let mut head = Vec::new();
        let mut size = 0;
        while let Some(chunk) = rest.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
            size += chunk.len();
            head.push(chunk);
            if size > REPLAY_LIMIT {
                return Ok(Self::Streamed { head, rest });
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
                let rest = std::mem::replace(rest, Body::empty().into_data_stream());
                (reqwest::Body::wrap_stream(head.chain(rest)), false)
            }
        }
    }
}

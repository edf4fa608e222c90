//! Deterministic pseudo-random content, generated in chunks as a response body streams out so a large
//! download is never held in memory, and the records of the attachments and uploads Graph serves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Bytes generated per body frame: small enough to keep memory flat, large enough to keep up.
const CHUNK: usize = 64 * 1024;

/// An attachment created with [`crate::FakeEntra::add_attachment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeAttachment {
    pub message_id: String,
    pub attachment_id: String,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// A file Graph accepted on `PUT /v1.0/me/drive/root:/{name}:/content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeUpload {
    /// The driveItem id, for `GET /v1.0/me/drive/items/{id}/content`.
    pub id: String,
    pub name: String,
    pub size: u64,
    /// SHA-256 of the bytes received, lowercase hex (the response's `sha256Hash` is the same, uppercase).
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredAttachment {
    pub(crate) oid: String,
    pub(crate) seed: u64,
    pub(crate) info: FakeAttachment,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredUpload {
    pub(crate) oid: String,
    pub(crate) info: FakeUpload,
}

/// Where a pre-authenticated download URL leads, and until when.
#[derive(Debug, Clone)]
pub(crate) struct TempAuth {
    pub(crate) item_id: String,
    pub(crate) expires_at: SystemTime,
}

/// The per-user message counts.
pub(crate) type Messages = HashMap<String, usize>;

/// The Graph-side data the fake holds.
#[derive(Debug, Default)]
pub(crate) struct GraphData {
    pub(crate) attachments: Vec<StoredAttachment>,
    pub(crate) uploads: Vec<StoredUpload>,
    /// Keyed by the `tempauth` query value.
    pub(crate) tempauth: HashMap<String, TempAuth>,
    /// How many messages each user (by object id) has in `GET /v1.0/me/messages`.
    pub(crate) messages: Messages,
}

/// SplitMix64: each 8-byte word is a pure function of (seed, index), so any chunk can be produced
/// without generating what came before it.
fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the content at `offset`, which must be a multiple of 8.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let first = offset / 8;
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let bytes = word(seed, first + i as u64).to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// SHA-256 (lowercase hex) of the `size` bytes generated from `seed`, computed chunk by chunk.
pub(crate) fn digest(seed: u64, size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < size {
        let len = usize::try_from((size - offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        fill(seed, offset, &mut buf[..len]);
        hasher.update(&buf[..len]);
        offset += len as u64;
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A response body producing the generated content one chunk per frame, with an exact size hint.
#[derive(Debug)]
struct GeneratedBody {
    seed: u64,
    offset: u64,
    size: u64,
}

impl http_body::Body for GeneratedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.offset >= self.size {
            return Poll::Ready(None);
        }
        let len = usize::try_from((self.size - self.offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = vec![0u8; len];
        fill(self.seed, self.offset, &mut buf);
        self.offset += len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.size
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size - self.offset)
    }
}

/// 200 `application/octet-stream` with `Content-Length`, streaming the content of `seed`.
pub(crate) fn streamed(seed: u64, size: u64) -> Response {
    let mut response = (StatusCode::OK, Body::new(GeneratedBody { seed, offset: 0, size })).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_offset_addressable() {
        let mut whole = vec![0u8; 100];
        fill(7, 0, &mut whole);
        let mut tail = vec![0u8; 36];
        fill(7, 64, &mut tail);
        assert_eq!(&whole[64..], &tail[..]);
        let mut other = vec![0u8; 100];
        fill(8, 0, &mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn digest_matches_one_shot_hash() {
        let size = CHUNK as u64 * 2 + 13;
        let mut all = vec![0u8; usize::try_from(size).unwrap()];
        fill(42, 0, &mut all);
        assert_eq!(digest(42, size), hex(&Sha256::digest(&all)));
        assert_eq!(digest(42, 0), hex(&Sha256::digest(b"")));
    }
}

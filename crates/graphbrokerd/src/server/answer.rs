//! Answers that carry a token: serialized once, into a buffer of exactly the right size that is zeroized when
//! the last holder is done with it (the cache entry and the connections sending it), so that no served token
//! lingers in freed memory.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroizing;

use graphbroker_protocol::{EpochSeconds, HeaderResponse, TokenResponse};
use secrecy::ExposeSecret;
use zeroize::Zeroize;

use crate::broker::IssuedToken;
use crate::error::ApiError;

/// The `/v1/token` answer of `issued`: the bytes its cached token keeps for the same `expires_in` and `expires_at`
/// (one serialization per second of a token's life, shared by every hit in it), else made now and kept.
pub(super) fn token_json(issued: &IssuedToken) -> Result<Bytes, ApiError> {
    let times = (issued.expires_in.as_secs(), EpochSeconds::from_system_time(issued.expires_at).0);
    issued.token.answers.token_answer(times, || {
        let mut body = TokenResponse {
            token_type: "Bearer".into(),
            access_token: issued.access_token().expose_secret().to_owned(),
            expires_at: EpochSeconds::from_system_time(issued.expires_at),
            expires_in: issued.expires_in.as_secs(),
            scopes: issued.scopes().to_vec(),
            profile: issued.profile.name.clone(),
            account: issued.account(),
        };
        let json = secret_bytes(&body);
        body.access_token.zeroize();
        json
    })
}

/// The `/v1/header` answer of `issued`: made once per cached token, which keeps it.
pub(super) fn header_json(issued: &IssuedToken) -> Result<Bytes, ApiError> {
    issued.token.answers.header_answer(|| {
        let mut body = HeaderResponse {
            // Moved out of its wiping buffer whole (no copy); it is wiped below, after serializing.
            authorization: std::mem::take(&mut *bearer(issued.access_token().expose_secret())),
            content_type: "application/json".into(),
        };
        let json = secret_bytes(&body);
        body.authorization.zeroize();
        json
    })
}

/// `value` as JSON in shared bytes that are wiped when the last clone goes (the cache keeps one clone while
/// the token is cached, see `broker/entries.rs`; each answer in flight holds another).
fn secret_bytes(value: &impl Serialize) -> Result<Bytes, ApiError> {
    // Measured first, so the buffer never grows: a reallocation would leave a copy behind in the old block.
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(serialize_failure)?;
    let mut buffer = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buffer, value).map_err(serialize_failure)?;
    // The bytes are handed over without a copy; when the last reference goes, `Zeroizing` wipes them.
    Ok(Bytes::from_owner(buffer))
}

/// A `200 application/json` answer of `json` (from [`secret_bytes`]), marked `no-store`: token answers must not
/// be kept by anything between (RFC 6749 §5.1 asks the same of token endpoints).
pub(super) fn secret_answer(json: Bytes) -> Response {
    let mut response = Response::new(Body::from(json));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `Bearer <token>` in a string of exactly its size, wiped when dropped: growing it would leave a copy of the token
/// behind. The header answer's `authorization` and the Graph proxy's `Authorization` are both made here.
pub(super) fn bearer(token: &str) -> Zeroizing<String> {
    let mut value = Zeroizing::new(String::with_capacity("Bearer ".len() + token.len()));
    value.push_str("Bearer ");
    value.push_str(token);
    value
}

fn serialize_failure(error: serde_json::Error) -> ApiError {
    ApiError::internal(format!("could not write the answer: {error}"))
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_answer_is_the_json_with_no_store() {
        let response = secret_answer(secret_bytes(&serde_json::json!({"access_token": "t", "n": 1})).unwrap());
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"access_token":"t","n":1}"#);
    }
}

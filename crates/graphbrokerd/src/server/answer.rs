//! Answers that carry a token: serialized once, into a buffer of exactly the right size that is zeroized when
//! the connection is done with it, so that no served token lingers in freed memory.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// A `200 application/json` answer with `value`, marked `no-store`: token answers must not be kept by anything
/// between (RFC 6749 §5.1 asks the same of token endpoints).
pub(super) fn secret_json(value: &impl Serialize) -> Result<Response, ApiError> {
    // Measured first, so the buffer never grows: a reallocation would leave a copy behind in the old block.
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(serialize_failure)?;
    let mut buffer = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *buffer, value).map_err(serialize_failure)?;
    // The bytes are handed over without a copy; when the last reference goes, `Zeroizing` wipes them.
    let mut response = Response::new(Body::from(Bytes::from_owner(buffer)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
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
        let response = secret_json(&serde_json::json!({"access_token": "t", "n": 1})).unwrap();
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"access_token":"t","n":1}"#);
    }
}

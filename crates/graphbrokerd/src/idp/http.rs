//! The HTTP stack under `oauth2`: reqwest with no redirects and a timeout, plus two Entra quirks handled at the
//! byte level — 429/5xx become [`HttpError::Status`] with their `Retry-After` (oauth2 would lose the header), and
//! an error body sent with HTTP 200 (seen on `/devicecode`) is given a 400 so oauth2 parses it as an error.
//! An answer is read only up to [`MAX_ANSWER_BYTES`]: one that is larger is dropped unread, never buffered whole.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

use crate::metrics::{IdpCall, IdpLatency};

/// The most of an answer the daemon reads. Entra's token responses are a few KiB (an access token with many
/// groups can reach 10–20 KiB), so 1 MiB is far beyond any real answer and still small to hold in memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why an HTTP exchange with the platform did not produce a response oauth2 should parse.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the identity platform answered HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("could not reach the identity platform: {0}")]
    Network(String),
    /// The answer was longer than [`MAX_ANSWER_BYTES`]; the rest of it was not read.
    #[error("the identity platform's answer was larger than {} KiB and was not read", MAX_ANSWER_BYTES / 1024)]
    TooLarge,
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: oauth2::reqwest::Client,
    /// Where each exchange's duration goes, when the daemon keeps metrics.
    latency: Option<IdpLatency>,
}

impl Http {
    /// `timeout` bounds each exchange (connect + answer).
    pub(crate) fn new(timeout: Duration) -> Result<Self, oauth2::reqwest::Error> {
        let client = oauth2::reqwest::ClientBuilder::new()
            // Following redirects would open the door to SSRF-style surprises; Entra's token endpoints never
            // redirect (oauth2's own advice).
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            // A loopback authority gets a refresh token only from a listener of the daemon's own user.
            .connector_layer(crate::upstream_owner::OwnerCheckLayer)
            .build()?;
        Ok(Self { client, latency: None })
    }

    pub(crate) fn observed_by(mut self, latency: IdpLatency) -> Self {
        self.latency = Some(latency);
        self
    }

    /// One exchange, its duration observed whatever its outcome (a timeout is a latency too).
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let Some(latency) = &self.latency else { return self.exchange(request).await };
        let call = IdpCall::of(request.uri().path(), request.body());
        let started = std::time::Instant::now();
        let result = self.exchange(request).await;
        latency.observe(call, started.elapsed());
        result
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = oauth2::reqwest::Request::try_from(request).map_err(|e| HttpError::Network(e.to_string()))?;
        let response = self.client.execute(request).await.map_err(|e| HttpError::Network(describe_reqwest(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(oauth2::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(HttpError::Status { status: status.as_u16(), retry_after });
        }
        let headers = response.headers().clone();
        let body = read_bounded(response, MAX_ANSWER_BYTES).await?;
        let status =
            if status.as_u16() == 200 && body_is_error(&body) { oauth2::http::StatusCode::BAD_REQUEST } else { status };
        let mut out = HttpResponse::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The answer's body, if it is at most `limit` bytes. A `Content-Length` over the limit is refused before any of
/// the body is read; a body without one is read chunk by chunk and dropped as soon as it passes the limit.
async fn read_bounded(mut response: oauth2::reqwest::Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(HttpError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Network(describe_reqwest(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's messages name the URL, which carries no secret (tokens travel in bodies), and the cause.
pub(crate) fn describe_reqwest(error: &oauth2::reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn body_is_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(|e| e.is_string()) && v.get("access_token").is_none())
}

/// `Retry-After` in seconds (decimals seen from Graph are rounded up), bounded (`idp::bounds::retry_after`); HTTP
/// dates are not used by Entra.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    let bound = super::bounds::MAX_RETRY_AFTER.as_secs_f64();
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs(seconds.min(bound).ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_seconds_and_decimals() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("2.128"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    /// Answers one request with a chunked 200 of `bytes` bytes (no `Content-Length`, so only the reader's own count
    /// can stop it), and returns the URL to ask.
    async fn chunked_answer(bytes: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < bytes {
                let piece = &chunk[..chunk.len().min(bytes - sent)];
                let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
                if stream.write_all(&framed).await.is_err() {
                    return; // the reader stopped early
                }
                sent += piece.len();
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        });
        url
    }

    async fn ask(url: &str) -> Result<HttpResponse, HttpError> {
        let request = oauth2::http::Request::builder().method("POST").uri(url).body(Vec::new()).unwrap();
        Http::new(Duration::from_secs(20)).unwrap().send(request).await
    }

    #[tokio::test]
    async fn an_answer_past_the_limit_is_dropped_unread_and_one_within_it_is_read() {
        let too_large = ask(&chunked_answer(MAX_ANSWER_BYTES + 1).await).await;
        let outcome = too_large.as_ref().map(|answer| answer.body().len());
        assert!(matches!(outcome, Err(HttpError::TooLarge)), "{outcome:?}");
        let message = HttpError::TooLarge.to_string();
        assert!(message.contains("larger than 1024 KiB"), "{message}");
        let within = ask(&chunked_answer(MAX_ANSWER_BYTES).await).await.unwrap();
        assert_eq!(within.body().len(), MAX_ANSWER_BYTES);
    }

    #[test]
    fn errors_with_http_200_are_recognised() {
        assert!(body_is_error(br#"{"error":"authorization_pending"}"#));
        assert!(!body_is_error(br#"{"device_code":"x","user_code":"y"}"#));
        assert!(!body_is_error(b"not json"));
    }
}

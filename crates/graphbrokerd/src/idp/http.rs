//! The HTTP stack under `oauth2`: reqwest with no redirects and a timeout, plus two Entra quirks handled at the
//! byte level — 429/5xx become [`HttpError::Status`] with their `Retry-After` (oauth2 would lose the header), and
//! an error body sent with HTTP 200 (seen on `/devicecode`) is given a 400 so oauth2 parses it as an error.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Why an HTTP exchange with the platform did not produce a response oauth2 should parse.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the identity platform answered HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("could not reach the identity platform: {0}")]
    Network(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: oauth2::reqwest::Client,
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
            .build()?;
        Ok(Self { client })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
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
        let body = response.bytes().await.map_err(|e| HttpError::Network(describe_reqwest(&e)))?.to_vec();
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

/// reqwest's messages name the URL, which carries no secret (tokens travel in bodies), and the cause.
fn describe_reqwest(error: &oauth2::reqwest::Error) -> String {
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

/// `Retry-After` in seconds (decimals seen from Graph are rounded up); HTTP dates are not used by Entra.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs(seconds.ceil() as u64))
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

    #[test]
    fn errors_with_http_200_are_recognised() {
        assert!(body_is_error(br#"{"error":"authorization_pending"}"#));
        assert!(!body_is_error(br#"{"device_code":"x","user_code":"y"}"#));
        assert!(!body_is_error(b"not json"));
    }
}

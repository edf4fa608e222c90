//! The daemon's error policy, in one place.
//!
//! - Everything a client can see is an [`ApiError`]: a stable `ErrorCode` from graphbroker-protocol plus one
//!   lowercase sentence that says what to do. It becomes the JSON envelope with the code's HTTP status.
//! - Internal modules use their own `thiserror` enums with context (`ScopeError`, `idp::Failure`,
//!   `StoreError`, `ConfigError`) and convert at the broker boundary, where the meaning for the user is known.
//! - No error text ever carries a token, refresh token or device code: the identity platform's bodies are parsed
//!   into typed fields and only their descriptions and AADSTS numbers are kept.
//! - The binary (`main.rs`) uses `anyhow` with `.context("failed to …")` for start-up failures.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use graphbroker_protocol::{ErrorBody, ErrorCode, ErrorDetail, SignInPrompt, SignInReason};

/// An error answered to a client. Boxed: it travels in every `Result` of the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub Box<ErrorDetail>);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(Box::new(ErrorDetail::new(code, message)))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `signin_required` carrying the prompt of the sign-in under way.
    pub fn signin_required(reason: SignInReason, prompt: SignInPrompt) -> Self {
        let why = match reason {
            SignInReason::NoAccount => "no account is signed in for this profile",
            SignInReason::SessionExpired => "the account's session has ended",
            SignInReason::ConsentRequired => "these scopes need your consent",
            SignInReason::InteractionRequired => "your organization requires you to sign in again (MFA or policy)",
        };
        let mut detail = ErrorDetail::new(
            ErrorCode::SigninRequired,
            format!("{why}: {}, then ask again (or pass wait=SECONDS to hold the request)", prompt_action(&prompt)),
        );
        detail.reason = Some(reason);
        detail.signin = Some(prompt);
        Self(Box::new(detail))
    }

    pub fn with_retry_after(mut self, retry_after: Option<u64>) -> Self {
        self.0.retry_after = retry_after;
        self
    }

    pub fn with_error_codes(mut self, codes: Vec<u64>) -> Self {
        if !codes.is_empty() {
            self.0.error_codes = Some(codes);
        }
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

/// What the user does with a prompt, in a few words.
pub fn prompt_action(prompt: &SignInPrompt) -> String {
    match prompt {
        SignInPrompt::Device { verification_uri, user_code, .. } => {
            format!("open {verification_uri} and enter the code {user_code}")
        }
        SignInPrompt::Browser { url, .. } => format!("open {url} in a browser and sign in"),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(ErrorBody { error: (*self.0).clone() })).into_response();
        if let Some(seconds) = self.0.retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

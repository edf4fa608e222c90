//! The daemon's error policy, in one place.
//!
//! - Everything a client can see is an [`ApiError`]: a stable `ErrorCode` from graphbroker-protocol plus one
//!   lowercase sentence that says what to do. It becomes the JSON envelope with the code's HTTP status.
//! - Internal modules use their own `thiserror` enums with context (`ScopeError`, `ClaimsError`, `StoreError`,
//!   `ConfigError`) or, for the identity platform, `idp::PlatformError`, classified by what the daemon must do.
//!   They become an `ApiError` at the broker or server boundary, where the meaning for the user is known; the
//!   mapping of `PlatformError` is [`ApiError::from_platform`], here.
//! - Failures on this machine (a port that cannot be bound, a URL that cannot be built, a keychain task that
//!   died) are `internal`, never "the identity platform refused".
//! - No error text ever carries a token, refresh token or device code: the identity platform's bodies are parsed
//!   into typed fields and only their descriptions and AADSTS numbers are kept.
//! - The binary (`main.rs`) uses `anyhow` with `.context("failed to …")` for start-up failures.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use graphbroker_protocol::{ErrorBody, ErrorCode, ErrorDetail, SignInPrompt, SignInReason};

use crate::idp::PlatformError;

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
            format!("{why}: {}, then ask again (or pass wait=SECONDS to hold the request)", prompt.action()),
        );
        detail.reason = Some(reason);
        detail.signin = Some(prompt);
        Self(Box::new(detail))
    }

    /// `signin_timeout`: the request's `wait` ran out while the sign-in goes on.
    pub fn signin_timeout(reason: SignInReason, prompt: SignInPrompt) -> Self {
        let mut error = Self::new(
            ErrorCode::SigninTimeout,
            format!("the sign-in is still waiting for you: {}; ask again to keep waiting", prompt.action()),
        );
        error.0.reason = Some(reason);
        error.0.signin = Some(prompt);
        error
    }

    /// `signin_required` (or, for a request that waited, `signin_timeout`) without a prompt: the sign-in is still
    /// asking the identity platform for one.
    pub fn signin_preparing(reason: SignInReason, waited: std::time::Duration) -> Self {
        let (code, message) = if waited.is_zero() {
            (
                ErrorCode::SigninRequired,
                "a sign-in is being prepared (the identity platform has not handed out its prompt yet); ask again in a moment for the prompt",
            )
        } else {
            (
                ErrorCode::SigninTimeout,
                "the sign-in is still being prepared (the identity platform is slow to answer); ask again to keep waiting",
            )
        };
        let mut error = Self::new(code, message).with_retry_after(Some(1));
        error.0.reason = Some(reason);
        error
    }

    /// `rate_limited`: the profile's `claims` requests are spent for now.
    pub fn claims_rate_limited(profile: &str, retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        Self::new(
            ErrorCode::RateLimited,
            format!(
                "too many claims requests for profile {profile:?}: each one bypasses the cache and goes to the identity \
                 platform; retry after {seconds} s, and pass claims only with a challenge a resource has just sent"
            ),
        )
        .with_retry_after(Some(seconds))
    }

    pub fn daemon_stopping() -> Self {
        Self::new(ErrorCode::DaemonStopping, "the daemon is stopping; ask again once it is back")
            .with_retry_after(Some(1))
    }

    /// What a platform failure means for the client of profile `profile`.
    pub fn from_platform(error: PlatformError, profile: &str) -> Self {
        match error {
            PlatformError::Declined => {
                Self::new(ErrorCode::SigninDeclined, "the sign-in was declined; ask again to start a new sign-in")
            }
            PlatformError::Expired => Self::new(
                ErrorCode::SigninExpired,
                "the sign-in expired before it was completed; ask again to start a new one",
            ),
            PlatformError::Transient { retry_after, detail } => Self::new(
                ErrorCode::IdentityProviderUnavailable,
                format!("the identity platform is unavailable ({detail}); try again later"),
            )
            .with_retry_after(retry_after.map(|d| d.as_secs().max(1))),
            PlatformError::Refused { detail, codes, hint } => {
                let action = hint.map(|h| format!("; {h} (profile {profile:?})")).unwrap_or_default();
                Self::new(ErrorCode::IdentityProviderError, format!("the identity platform refused: {detail}{action}"))
                    .with_error_codes(codes)
            }
            PlatformError::AccountDead { detail, codes } => Self::new(
                ErrorCode::IdentityProviderError,
                format!("the identity platform refused the sign-in: {detail}; ask again to sign in anew"),
            )
            .with_error_codes(codes),
            PlatformError::NeedsUser { detail, codes, .. } => Self::new(
                ErrorCode::IdentityProviderError,
                format!("the identity platform wants more from the user: {detail}; ask again to sign in anew"),
            )
            .with_error_codes(codes),
            PlatformError::Local { detail } => Self::internal(format!(
                "this machine could not complete the request: {detail}; see the daemon's log, and report it if it repeats"
            )),
        }
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
        // For the server's metrics layer, which counts error answers by code.
        response.extensions_mut().insert(self.0.code);
        if let Some(seconds) = self.0.retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

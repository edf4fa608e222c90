//! The error envelope every non-2xx answer carries, and the stable codes a program may branch on.

use serde::{Deserialize, Serialize};

use crate::messages::{SignInPrompt, SignInReason};

/// `{"error": {...}}`: the body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// One error: a stable [`ErrorCode`], one sentence saying what to do, and fields that only some codes carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// One sentence for a person; it says what to do next. Never contains a token value.
    pub message: String,
    /// With `signin_required`: why a sign-in is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SignInReason>,
    /// With `signin_required`: the sign-in under way, for the user to complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<SignInPrompt>,
    /// With `identity_provider_error`: the platform's AADSTS numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_codes: Option<Vec<u64>>,
    /// With `*_unavailable` and `rate_limited`: seconds after which a retry may succeed, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorDetail {
    /// An error with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), reason: None, signin: None, error_codes: None, retry_after: None }
    }
}

/// The stable error codes. Programs branch on these, never on `message`.
///
/// `Unknown` absorbs codes a newer daemon may add, so an older client still reads the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: a bad parameter, body or value.
    BadRequest,
    /// The scopes cannot make one token: empty, malformed, or naming more than one resource.
    InvalidScopes,
    /// The user must sign in (or consent, or pass MFA); `signin` says how.
    SigninRequired,
    /// The peer is another user, or policy refuses the request.
    Forbidden,
    /// The profile named is not configured.
    UnknownProfile,
    /// No such route.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request's body did not arrive in time (a piece of it stalled, or the whole took too long); send it
    /// again. Only the Graph proxy reads request bodies.
    RequestTimeout,
    /// The user declined the sign-in.
    SigninDeclined,
    /// The sign-in expired before the user completed it.
    SigninExpired,
    /// `wait` ran out while the sign-in goes on; ask again to keep waiting.
    SigninTimeout,
    /// A sign-in that was not asked for explicitly returned another account than the profile's (its stored
    /// account or `login_hint`); nothing was stored.
    AccountMismatch,
    /// Too many requests of a kind the daemon limits (`claims` requests, which bypass the cache and go to the
    /// identity platform each time); `retry_after` says when to ask again.
    RateLimited,
    /// The identity platform refused for a reason that is neither a sign-in nor transient (e.g. a bad client id).
    IdentityProviderError,
    /// The identity platform could not be reached or kept failing; retry later.
    IdentityProviderUnavailable,
    /// Microsoft Graph could not be reached through the proxy, or broke off its answer; retry later.
    GraphUnavailable,
    /// The OS keychain is locked or absent.
    KeychainUnavailable,
    /// The policy (`[policy]` in the config) refuses this program the token; the message names the program and
    /// the command that allows it.
    PolicyDenied,
    /// The daemon is stopping; ask again once it is back (a service manager restarts it on demand).
    DaemonStopping,
    /// A fault inside the daemon; its log says more.
    Internal,
    /// A code this version of the protocol does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code, in declaration order (so `ALL[code as usize] == code`), `Unknown` last.
    pub const ALL: [ErrorCode; 21] = [
        Self::BadRequest,
        Self::InvalidScopes,
        Self::SigninRequired,
        Self::Forbidden,
        Self::UnknownProfile,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::SigninDeclined,
        Self::SigninExpired,
        Self::SigninTimeout,
        Self::AccountMismatch,
        Self::RateLimited,
        Self::IdentityProviderError,
        Self::IdentityProviderUnavailable,
        Self::GraphUnavailable,
        Self::KeychainUnavailable,
        Self::PolicyDenied,
        Self::DaemonStopping,
        Self::Internal,
        Self::Unknown,
    ];

    /// The HTTP status the daemon answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidScopes => 400,
            Self::SigninRequired | Self::SigninDeclined | Self::SigninExpired => 401,
            Self::Forbidden | Self::PolicyDenied => 403,
            Self::UnknownProfile | Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::SigninTimeout | Self::RequestTimeout => 408,
            Self::AccountMismatch => 409,
            Self::RateLimited => 429,
            Self::IdentityProviderError | Self::GraphUnavailable => 502,
            Self::IdentityProviderUnavailable | Self::KeychainUnavailable | Self::DaemonStopping => 503,
            Self::Internal | Self::Unknown => 500,
        }
    }

    /// The code as it is spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidScopes => "invalid_scopes",
            Self::SigninRequired => "signin_required",
            Self::Forbidden => "forbidden",
            Self::UnknownProfile => "unknown_profile",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::SigninDeclined => "signin_declined",
            Self::SigninExpired => "signin_expired",
            Self::SigninTimeout => "signin_timeout",
            Self::AccountMismatch => "account_mismatch",
            Self::RateLimited => "rate_limited",
            Self::IdentityProviderError => "identity_provider_error",
            Self::IdentityProviderUnavailable => "identity_provider_unavailable",
            Self::GraphUnavailable => "graph_unavailable",
            Self::KeychainUnavailable => "keychain_unavailable",
            Self::PolicyDenied => "policy_denied",
            Self::DaemonStopping => "daemon_stopping",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_with_their_wire_spelling() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn all_lists_every_code_at_its_place() {
        // A variant added before `Unknown` but not to ALL moves `Unknown` past the array's end.
        assert_eq!(ErrorCode::ALL.len(), ErrorCode::Unknown as usize + 1);
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i, "{code:?}");
        }
    }

    #[test]
    fn an_unknown_code_from_a_newer_daemon_still_parses() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"quota_exceeded","message":"try tomorrow"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::Unknown);
        assert_eq!(body.error.message, "try tomorrow");
    }

    #[test]
    fn optional_fields_are_left_out_when_absent() {
        let body = ErrorBody { error: ErrorDetail::new(ErrorCode::UnknownProfile, "no profile named x") };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"unknown_profile","message":"no profile named x"}}"#
        );
    }

    #[test]
    fn statuses_follow_the_design() {
        assert_eq!(ErrorCode::InvalidScopes.http_status(), 400);
        assert_eq!(ErrorCode::SigninRequired.http_status(), 401);
        assert_eq!(ErrorCode::Forbidden.http_status(), 403);
        assert_eq!(ErrorCode::PolicyDenied.http_status(), 403);
        assert_eq!(ErrorCode::UnknownProfile.http_status(), 404);
        assert_eq!(ErrorCode::SigninTimeout.http_status(), 408);
        assert_eq!(ErrorCode::AccountMismatch.http_status(), 409);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
        assert_eq!(ErrorCode::IdentityProviderError.http_status(), 502);
        assert_eq!(ErrorCode::KeychainUnavailable.http_status(), 503);
    }
}

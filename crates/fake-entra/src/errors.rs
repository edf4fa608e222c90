//! Error responses in the shapes clients parse: Entra's OAuth error body (protocol notes §5), Graph's
//! OData error (§7), the control API's JSON error, and the HTML error page for non-redirectable authorize errors.

use std::time::SystemTime;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::ids::random_guid;
use crate::pages;

/// Token and device-code responses, successes included, carry these (RFC 6749 §5.1; Entra adds Pragma).
pub(crate) fn no_store_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `YYYY-MM-DD HH:MM:SSZ`, Entra's timestamp format in error bodies.
pub(crate) fn entra_timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string().replace('T', " ")
}

/// An OAuth error from the identity platform.
#[derive(Debug, Clone)]
pub(crate) struct EntraError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) code: u32,
    pub(crate) message: String,
    pub(crate) suberror: Option<String>,
    pub(crate) claims: Option<String>,
}

impl EntraError {
    pub(crate) fn new(error: &str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.to_owned(),
            code,
            message: message.into(),
            suberror: None,
            claims: None,
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn with_suberror(mut self, suberror: &str) -> Self {
        self.suberror = Some(suberror.to_owned());
        self
    }

    pub(crate) fn with_claims(mut self, claims: String) -> Self {
        self.claims = Some(claims);
        self
    }

    /// The description alone (`AADSTSnnnn: message`), as the authorize redirect and error page carry it.
    pub(crate) fn short_description(&self) -> String {
        format!("AADSTS{}: {}", self.code, self.message)
    }

    pub(crate) fn body(&self, at: SystemTime) -> serde_json::Value {
        let trace_id = random_guid();
        let correlation_id = random_guid();
        let timestamp = entra_timestamp(at);
        let description = format!(
            "{}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.short_description()
        );
        let mut body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let Some(suberror) = &self.suberror {
            body["suberror"] = json!(suberror);
        }
        if let Some(claims) = &self.claims {
            body["claims"] = json!(claims);
        }
        body
    }

    // Constructors for errors raised from more than one place.

    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub(crate) fn unknown_tenant(segment: &str) -> Self {
        Self::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud. Check with your subscription administrator, this may happen if there are no \
                 active subscriptions for the tenant."
            ),
        )
    }

    pub(crate) fn unknown_client(client_id: &str, tenant_id: &str) -> Self {
        Self::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant_id}'. This can \
                 happen if the application has not been installed by the administrator of the tenant or consented \
                 to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub(crate) fn invalid_scope(code: u32, message: impl Into<String>) -> Self {
        Self::new("invalid_scope", code, message)
    }

    pub(crate) fn from_scope_error(error: &crate::scopes::ScopeError, raw: &str) -> Self {
        use crate::scopes::ScopeError;
        match error {
            ScopeError::MultipleResources => Self::invalid_scope(
                28000,
                format!(
                    "Provided value for the input parameter scope is not valid because it contains more than one \
                     resource. Scope {raw} is not valid."
                ),
            ),
            ScopeError::DefaultMixed(resource) => Self::invalid_scope(
                70011,
                format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input \
                     parameter 'scope' is not valid. The scope {raw} is not valid. static scope limit exceeded: \
                     '{resource}/.default' cannot be combined with resource-specific scopes."
                ),
            ),
            ScopeError::Malformed(scope) => Self::invalid_scope(
                70011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ),
        }
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body(SystemTime::now()))).into_response();
        no_store_headers(&mut response);
        response
    }
}

/// The error page Entra shows in the browser when it cannot trust the redirect URI or client.
pub(crate) fn authorize_error_page(error: &EntraError) -> Response {
    (error.status, Html(pages::error_page(&error.error, &error.short_description()))).into_response()
}

/// Graph's challenge on every ordinary 401 (protocol notes §7).
pub(crate) const GRAPH_WWW_AUTHENTICATE: &str = "Bearer realm=\"\", \
    authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
    client_id=\"00000003-0000-0000-c000-000000000000\"";

/// Graph's OData error body.
pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let request_id = random_guid();
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                "request-id": request_id,
                "client-request-id": request_id,
            }
        }
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(GRAPH_WWW_AUTHENTICATE));
    }
    response
}

/// Why a control call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown user '{0}': add it with --user or FakeEntraBuilder::user")]
    UnknownUser(String),
    #[error("unknown client '{0}': register it with --client-id or FakeEntraBuilder::client")]
    UnknownClient(String),
    #[error("no device flow with user code '{0}'")]
    UnknownUserCode(String),
    #[error("device code for user code '{0}' has expired")]
    ExpiredUserCode(String),
    #[error("device flow for user code '{0}' was already approved or declined")]
    AlreadyHandled(String),
    #[error("no pending authorize request with state '{0}'; see GET /_control/browser/pending")]
    UnknownState(String),
    #[error("invalid scope '{0}'")]
    InvalidScope(String),
    #[error("invalid control request: {0}")]
    BadRequest(String),
}

impl ControlError {
    fn status(&self) -> StatusCode {
        match self {
            Self::UnknownUserCode(_) | Self::UnknownState(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::UnknownUser(_) => "unknown_user",
            Self::UnknownClient(_) => "unknown_client",
            Self::UnknownUserCode(_) => "unknown_user_code",
            Self::ExpiredUserCode(_) => "expired_user_code",
            Self::AlreadyHandled(_) => "already_handled",
            Self::UnknownState(_) => "unknown_state",
            Self::InvalidScope(_) => "invalid_scope",
            Self::BadRequest(_) => "bad_request",
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(json!({"error": self.kind(), "message": self.to_string()}))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn body_has_entra_shape() {
        let at = UNIX_EPOCH + Duration::from_secs(1_694_686_421);
        let body = EntraError::missing_parameter("client_id").with_suberror("x").body(at);
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["error_codes"], json!([900144]));
        assert_eq!(body["timestamp"], "2023-09-14 10:13:41Z");
        assert_eq!(body["suberror"], "x");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description
                .starts_with("AADSTS900144: The request body must contain the following parameter: 'client_id'.")
        );
        let trace = body["trace_id"].as_str().unwrap();
        let correlation = body["correlation_id"].as_str().unwrap();
        assert!(description.ends_with(&format!(
            "\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: 2023-09-14 10:13:41Z"
        )));
        assert!(body.get("claims").is_none());
    }
}

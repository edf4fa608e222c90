//! Fault injection: make the next N requests to an endpoint fail, stall or answer nonsense, so clients'
//! retry and error paths can be exercised.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::endpoints::Endpoint;
use crate::errors::{EntraError, authorize_error_page};
use crate::ids::random_guid;

/// What an injected fault does. In JSON (the control API) each variant is recognised by its field:
/// `{"status":503,"retry_after":2}`, `{"delay_ms":500}`, `{"garbage":true}`, `{"error_200":"temporarily_unavailable"}`,
/// `{"aadsts":70043,"error":"interaction_required"}`, `{"huge_body":2097152}`,
/// `{"override":{"expires_in":18446744073709551615}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fault {
    /// Answer with this HTTP status and an endpoint-shaped error body (Entra's `temporarily_unavailable`
    /// for the OAuth endpoints, Graph's OData error for Graph: `TooManyRequests` with its `innerError` for
    /// 429), or `body` verbatim (a JSON string is sent raw).
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
    },
    /// Sleep, then answer normally.
    Delay { delay_ms: u64 },
    /// HTTP 200 with a body that is not JSON.
    Garbage { garbage: bool },
    /// HTTP 200 carrying an error body with this `error`; Entra has been seen doing this on /devicecode.
    Error200 { error_200: String },
    /// HTTP 400 with Entra's full error body for AADSTS number `aadsts` (`error`, `error_description` starting
    /// `AADSTSnnnn:` with the trace, correlation and timestamp lines, `error_codes`, ids, `suberror`), as a
    /// refresh refused by policy or for a dead grant looks.
    Aadsts {
        aadsts: u32,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suberror: Option<String>,
    },
    /// HTTP 200 with a JSON body of this many bytes (an error padded with whitespace): an answer no client should
    /// buffer whole.
    HugeBody { huge_body: usize },
    /// Answer normally (the code is issued, the token minted, the refresh token rotated), then replace these
    /// top-level fields of the JSON answer: a platform that misreports its numbers (`expires_in` past any lifetime,
    /// an `interval` longer than the code lives). The stand-in still enforces its real lifetimes and interval.
    Override {
        #[serde(rename = "override")]
        fields: serde_json::Map<String, serde_json::Value>,
    },
}

impl Fault {
    /// An HTTP error status with the endpoint's usual body and an optional `Retry-After` in seconds.
    pub fn status(status: u16, retry_after: Option<u64>) -> Self {
        Self::Status { status, retry_after, body: None }
    }

    pub fn delay(delay: Duration) -> Self {
        Self::Delay { delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX) }
    }

    pub fn garbage() -> Self {
        Self::Garbage { garbage: true }
    }

    pub fn error_200(error: &str) -> Self {
        Self::Error200 { error_200: error.to_owned() }
    }

    /// Entra's error body for AADSTS `code` with OAuth `error` (e.g. `invalid_grant`) and an optional suberror.
    pub fn aadsts(code: u32, error: &str, suberror: Option<&str>) -> Self {
        Self::Aadsts { aadsts: code, error: error.to_owned(), suberror: suberror.map(str::to_owned) }
    }

    /// An HTTP 200 answer of `bytes` bytes.
    pub fn huge_body(bytes: usize) -> Self {
        Self::HugeBody { huge_body: bytes }
    }

    /// The normal answer with `fields` (a JSON object) written over it.
    pub fn override_fields(fields: serde_json::Value) -> Self {
        Self::Override { fields: fields.as_object().cloned().unwrap_or_default() }
    }
}

/// A fault armed for the next `remaining` requests to `endpoint`.
#[derive(Debug, Clone)]
pub(crate) struct FaultRule {
    pub(crate) endpoint: Endpoint,
    pub(crate) remaining: u32,
    pub(crate) fault: Fault,
}

pub(crate) fn take_fault(faults: &mut Vec<FaultRule>, endpoint: Endpoint) -> Option<Fault> {
    let index = faults.iter().position(|rule| rule.endpoint == endpoint && rule.remaining > 0)?;
    let rule = &mut faults[index];
    rule.remaining -= 1;
    let fault = rule.fault.clone();
    if rule.remaining == 0 {
        faults.remove(index);
    }
    Some(fault)
}

/// AADSTS90024 "A transient error has occurred" stands in for whatever code Entra puts on an outage.
const TRANSIENT_CODE: u32 = 90024;

/// `answer` with `fields` written over its top-level JSON object; an answer that is not one is passed on as it came
/// (an error stays the error it was).
pub(crate) async fn overridden(answer: Response, fields: serde_json::Map<String, serde_json::Value>) -> Response {
    let (parts, body) = answer.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut json = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(json)) if parts.status.is_success() => json,
        _ => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    json.extend(fields);
    let mut response = (parts.status, axum::Json(json)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

pub(crate) fn render(endpoint: Endpoint, fault: Fault) -> Response {
    match fault {
        Fault::Status { status, retry_after, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = match body {
                Some(serde_json::Value::String(raw)) => (status, raw).into_response(),
                Some(json) => (status, axum::Json(json)).into_response(),
                None => error_body(endpoint, status, "temporarily_unavailable"),
            };
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Fault::Garbage { .. } => {
            Html("<!DOCTYPE html><html><body><h1>Service Unavailable</h1>this is not JSON</body></html>")
                .into_response()
        }
        Fault::Error200 { error_200 } => error_body(endpoint, StatusCode::OK, &error_200),
        Fault::Aadsts { aadsts, error, suberror } => {
            let mut entra = EntraError::new(&error, aadsts, aadsts_message(aadsts));
            if let Some(suberror) = suberror {
                entra = entra.with_suberror(&suberror);
            }
            entra.into_response()
        }
        Fault::HugeBody { huge_body } => {
            let head = r#"{"error":"temporarily_unavailable","padding":""#;
            let tail = r#""}"#;
            let padding = " ".repeat(huge_body.saturating_sub(head.len() + tail.len()));
            let mut response = format!("{head}{padding}{tail}").into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Fault::Delay { .. } | Fault::Override { .. } => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The description Entra sends with an AADSTS number (Microsoft's AADSTS error reference), for the numbers tests
/// inject; others get a generic sentence.
fn aadsts_message(code: u32) -> &'static str {
    match code {
        70008 => {
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
        }
        700082 => {
            "The refresh token has expired due to inactivity. The token was issued on 2025-01-01T00:00:00Z and was inactive for 90.00:00:00."
        }
        50173 => {
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."
        }
        70000 => "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
        700084 => {
            "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited lifetime of 1.00:00:00, which cannot be extended."
        }
        54005 => {
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."
        }
        70043 => {
            "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on 2025-01-01T00:00:00Z and the maximum allowed lifetime for this request is 3600."
        }
        50089 => {
            "Authentication failed due to flow token expired. Expected - auth codes, refresh tokens, and sessions expire over time or are revoked by the user or an admin. The app will request a new login from the user."
        }
        9002313 => "Invalid request. Request is malformed or invalid.",
        _ => "The request was refused.",
    }
}

fn error_body(endpoint: Endpoint, status: StatusCode, error: &str) -> Response {
    match endpoint {
        Endpoint::Graph => graph_outage(status),
        Endpoint::Authorize => {
            let entra = EntraError::new(error, TRANSIENT_CODE, "A transient error has occurred. Try again.")
                .with_status(status);
            authorize_error_page(&entra)
        }
        Endpoint::Token | Endpoint::Devicecode | Endpoint::Discovery => {
            EntraError::new(error, TRANSIENT_CODE, "A transient error has occurred. Try again.")
                .with_status(status)
                .into_response()
        }
    }
}

/// Graph's throttling and outage bodies (protocol notes §7): the inner error repeats the status.
fn graph_outage(status: StatusCode) -> Response {
    let (code, message, inner_message) = match status {
        StatusCode::TOO_MANY_REQUESTS => ("TooManyRequests", "Please retry again later.", "Please retry after"),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later.", "Please retry after")
        }
        _ => ("generalException", "An unexpected error occurred. Please retry later.", "Unexpected error"),
    };
    let request_id = random_guid();
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "code": status.as_u16().to_string(),
                "date": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                "message": inner_message,
                "request-id": request_id,
                "client-request-id": request_id,
                "status": status.as_u16().to_string(),
            }
        }
    });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_shapes() {
        let parse = |s: &str| serde_json::from_str::<Fault>(s).unwrap();
        assert_eq!(parse(r#"{"status":503,"retry_after":2}"#), Fault::status(503, Some(2)));
        assert_eq!(parse(r#"{"delay_ms":250}"#), Fault::delay(Duration::from_millis(250)));
        assert_eq!(parse(r#"{"garbage":true}"#), Fault::garbage());
        assert_eq!(parse(r#"{"error_200":"temporarily_unavailable"}"#), Fault::error_200("temporarily_unavailable"));
        assert_eq!(
            parse(r#"{"aadsts":70043,"error":"interaction_required"}"#),
            Fault::aadsts(70043, "interaction_required", None)
        );
        assert_eq!(
            parse(r#"{"aadsts":70000,"error":"invalid_grant","suberror":"bad_token"}"#),
            Fault::aadsts(70000, "invalid_grant", Some("bad_token"))
        );
        assert_eq!(parse(r#"{"huge_body":2048}"#), Fault::huge_body(2048));
        assert_eq!(
            parse(r#"{"override":{"expires_in":18446744073709551615}}"#),
            Fault::override_fields(serde_json::json!({"expires_in": u64::MAX}))
        );
        assert_eq!(serde_json::from_str::<Endpoint>(r#""me""#).unwrap(), Endpoint::Graph);
        assert_eq!(serde_json::from_str::<Endpoint>(r#""graph""#).unwrap(), Endpoint::Graph);
    }

    #[test]
    fn faults_fire_count_times_in_order() {
        let mut faults = vec![
            FaultRule { endpoint: Endpoint::Token, remaining: 2, fault: Fault::garbage() },
            FaultRule { endpoint: Endpoint::Graph, remaining: 1, fault: Fault::status(503, None) },
        ];
        assert_eq!(take_fault(&mut faults, Endpoint::Token), Some(Fault::garbage()));
        assert_eq!(take_fault(&mut faults, Endpoint::Token), Some(Fault::garbage()));
        assert_eq!(take_fault(&mut faults, Endpoint::Token), None);
        assert_eq!(faults.len(), 1);
    }
}

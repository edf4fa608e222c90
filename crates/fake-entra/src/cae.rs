//! Continuous access evaluation: reading the `claims` request parameter (the cp1 capability and
//! challenge answers), and the policy-change and revocation events after which Graph challenges
//! CAE-capable access tokens (protocol notes §6).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::errors::{EntraError, graph_error};

/// What a request's `claims` parameter said, as far as the fake cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RequestClaims {
    /// `access_token.xms_cc.values` contains `cp1` (any case): the client handles claims challenges.
    pub(crate) cp1: bool,
    /// The claims carry something besides the capability, i.e. the answer to a challenge.
    pub(crate) challenge: bool,
}

/// Parses `claims`. Absent means no capability; present, it must be a JSON object (OIDC Core §5.5).
pub(crate) fn parse_claims(raw: Option<&str>) -> Result<RequestClaims, EntraError> {
    let Some(raw) = raw else {
        return Ok(RequestClaims::default());
    };
    let object = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(object)) => object,
        _ => return Err(malformed()),
    };
    let access_token = match object.get("access_token") {
        None => None,
        Some(Value::Object(access_token)) => Some(access_token),
        Some(_) => return Err(malformed()),
    };
    let cp1 = access_token
        .and_then(|at| at.get("xms_cc"))
        .and_then(|cc| cc.get("values"))
        .and_then(Value::as_array)
        .is_some_and(|values| values.iter().filter_map(Value::as_str).any(|v| v.eq_ignore_ascii_case("cp1")));
    let challenge =
        object.keys().any(|k| k != "access_token") || access_token.is_some_and(|at| at.keys().any(|k| k != "xms_cc"));
    Ok(RequestClaims { cp1, challenge })
}

fn malformed() -> EntraError {
    EntraError::new(
        "invalid_request",
        90100,
        "The 'claims' parameter is not valid: it must be a JSON object, such as \
         {\"access_token\":{\"xms_cc\":{\"values\":[\"cp1\"]}}}.",
    )
}

/// Why Graph re-evaluated a user's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaeKind {
    /// A Conditional Access policy change, such as a location change.
    PolicyChange,
    /// The user's refresh tokens were revoked (password reset, admin action).
    Revocation,
}

impl CaeKind {
    /// The code Graph names at the end of its challenge message.
    fn code(self) -> &'static str {
        match self {
            Self::PolicyChange => "TokenCreatedWithOutdatedPolicies",
            Self::Revocation => "TokenIssuedBeforeRevocationTimestamp",
        }
    }
}

/// A critical event for one user, at the fake's clock.
#[derive(Debug, Clone)]
pub(crate) struct CaeEvent {
    pub(crate) oid: String,
    pub(crate) at: SystemTime,
    pub(crate) kind: CaeKind,
}

impl CaeEvent {
    /// `{"access_token":{"nbf":{"essential":true,"value":"<event epoch seconds>"}}}`: a token minted
    /// no earlier than the event satisfies it.
    pub(crate) fn claims(&self) -> String {
        let seconds = self.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        json!({"access_token": {"nbf": {"essential": true, "value": seconds.to_string()}}}).to_string()
    }
}

/// Graph's claims challenge: 401 with `error="insufficient_claims"` and the base64 claims.
pub(crate) fn challenge_response(base_url: &str, event: &CaeEvent) -> Response {
    let message = format!(
        "Continuous access evaluation resulted in challenge with result: InteractionRequired and code: {}",
        event.kind.code()
    );
    let mut response = graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &message);
    let value = format!(
        "Bearer realm=\"\", authorization_uri=\"{base_url}/common/oauth2/authorize\", \
         error=\"insufficient_claims\", claims=\"{}\"",
        STANDARD.encode(event.claims())
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_parameter_shapes() {
        assert_eq!(parse_claims(None).unwrap(), RequestClaims::default());
        let cp1 = parse_claims(Some(r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#)).unwrap();
        assert_eq!(cp1, RequestClaims { cp1: true, challenge: false });
        let merged = parse_claims(Some(
            r#"{"access_token":{"xms_cc":{"values":["cp1"]},"nbf":{"essential":true,"value":"1"}}}"#,
        ))
        .unwrap();
        assert_eq!(merged, RequestClaims { cp1: true, challenge: true });
        let other = parse_claims(Some(r#"{"access_token":{"xms_cc":{"values":["cp2"]}}}"#)).unwrap();
        assert_eq!(other, RequestClaims::default());
        for bad in ["not json", "[1]", "\"x\"", r#"{"access_token":3}"#] {
            assert_eq!(parse_claims(Some(bad)).unwrap_err().error, "invalid_request", "{bad}");
        }
    }

    #[test]
    fn event_claims_name_the_event_second() {
        let event = CaeEvent {
            oid: "o".to_owned(),
            at: UNIX_EPOCH + std::time::Duration::from_millis(1_604_106_651_900),
            kind: CaeKind::Revocation,
        };
        assert_eq!(event.claims(), r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#);
    }
}

//! The sliver of Microsoft Graph: bearer-token validation the way Graph does it (continuous access
//! evaluation included), `GET /v1.0/me` and `/beta/me`, and the route names the stats count by.
//! Mail attachments are in `mail.rs`, drive uploads and downloads in `drive.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::cae::{CaeEvent, challenge_response};
use crate::endpoints::is_graph_path;
use crate::errors::graph_error;
use crate::scopes::GRAPH_RESOURCE;
use crate::state::{AccessTokenRecord, Shared};

/// Delegated permissions that allow reading the signed-in user (Graph `user-get` permission table).
const PERMISSIONS_FOR_ME: &[&str] = &[
    "User.Read",
    "User.ReadWrite",
    "User.ReadBasic.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
];

fn unauthorized(message: &str) -> Response {
    graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
}

/// The bearer token of a request, if it has a non-empty one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Validates the request's access token for Graph and checks it carries one of `allowed`. Returns the
/// caller's object id, or the response Graph would send instead: 401 for a missing, unknown, expired or
/// foreign token and for a CAE challenge, 403 for a missing permission (boxed: it is the rare path).
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap, allowed: &[&str]) -> Result<String, Box<Response>> {
    let Some(token) = bearer(headers) else {
        return Err(Box::new(unauthorized("Access token is empty.")));
    };
    let mut state = shared.lock();
    let Some(record) = state.access_tokens.get(token) else {
        return Err(Box::new(if token.split('.').count() == 3 {
            unauthorized("Access token validation failure. Invalid signature.")
        } else {
            unauthorized("CompactToken parsing failed with error code: 80049217")
        }));
    };
    if state.now() >= record.expires_at {
        return Err(Box::new(unauthorized("Lifetime validation failed, the token is expired.")));
    }
    if record.resource != GRAPH_RESOURCE {
        return Err(Box::new(unauthorized("Access token validation failure. Invalid audience.")));
    }
    if let Some(event) = outdating_event(&state.cae_events, record) {
        let response = challenge_response(&shared.config.base_url, event);
        state.stats.graph.challenges += 1;
        return Err(Box::new(response));
    }
    if !record.permissions.iter().any(|p| allowed.iter().any(|a| a.eq_ignore_ascii_case(p))) {
        return Err(Box::new(graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )));
    }
    Ok(record.oid.clone())
}

/// `GET /v1.0/me` and `GET /beta/me`.
pub(crate) async fn me(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let oid = match authenticate(&shared, &headers, PERMISSIONS_FOR_ME) {
        Ok(oid) => oid,
        Err(response) => return *response,
    };
    let Some(user) = shared.config.user_by_oid(&oid) else {
        return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", "Resource does not exist.");
    };
    let version = if uri.path().starts_with("/beta/") { "beta" } else { "v1.0" };
    axum::Json(json!({
        "@odata.context": format!("https://graph.microsoft.com/{version}/$metadata#users/$entity"),
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": user.given_name,
        "jobTitle": null,
        "mail": user.email,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-US",
        "surname": user.surname,
        "userPrincipalName": user.email,
        "id": user.oid,
    }))
    .into_response()
}

/// What Graph answers for a path it has no resource for; outside Graph, a bare 404.
pub(crate) async fn unknown_path(uri: Uri) -> Response {
    let path = uri.path();
    if !is_graph_path(path) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let segment = path.trim_start_matches('/').split('/').nth(1).unwrap_or_default();
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Resource not found for the segment '{segment}'."))
}

/// The latest event that outdates `record`. Only CAE-capable tokens are re-evaluated; the others keep
/// working until they expire, as in Entra. Strictly-before on full precision: a token minted later in
/// the event's own second is current.
pub(crate) fn outdating_event<'e>(events: &'e [CaeEvent], record: &AccessTokenRecord) -> Option<&'e CaeEvent> {
    if !record.cae {
        return None;
    }
    events.iter().rev().find(|event| event.oid == record.oid && record.issued_at < event.at)
}

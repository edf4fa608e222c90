//! The sliver of Microsoft Graph: `GET /v1.0/me`, validating the bearer token the way Graph does.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::graph_error;
use crate::scopes::GRAPH_RESOURCE;
use crate::state::Shared;

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

pub(crate) async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return unauthorized("Access token is empty.");
    };
    let state = shared.lock();
    let Some(record) = state.access_tokens.get(token) else {
        return if token.split('.').count() == 3 {
            unauthorized("Access token validation failure. Invalid signature.")
        } else {
            unauthorized("CompactToken parsing failed with error code: 80049217")
        };
    };
    if state.now() >= record.expires_at {
        return unauthorized("Lifetime validation failed, the token is expired.");
    }
    if record.resource != GRAPH_RESOURCE {
        return unauthorized("Access token validation failure. Invalid audience.");
    }
    if !record.permissions.iter().any(|p| PERMISSIONS_FOR_ME.iter().any(|allowed| allowed.eq_ignore_ascii_case(p))) {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let Some(user) = shared.config.user_by_oid(&record.oid) else {
        return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", "Resource does not exist.");
    };
    axum::Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
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

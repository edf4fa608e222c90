//! OpenID Connect discovery and the small endpoints it points at (JWKS, logout).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::state::{Shared, TenantSegment};

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`, shaped like Entra's (protocol notes §1) with
/// every endpoint on the fake's own base URL.
pub(crate) async fn openid_configuration(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    let resolved = match shared.config.tenant_segment(&tenant) {
        Ok(resolved) => resolved,
        Err(error) => return error.into_response(),
    };
    let base = &shared.config.base_url;
    let authority = format!("{base}/{tenant}");
    let body = json!({
        "token_endpoint": format!("{authority}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{authority}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("https://login.microsoftonline.com/{}/v2.0", shared.config.issuer_tenant(resolved)),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{authority}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{authority}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{authority}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
            "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid",
            "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{authority}/kerberos"),
        "tenant_region_scope": if matches!(resolved, TenantSegment::Tenant(_)) { json!("WW") } else { json!(null) },
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=86400, private"));
    response
}

/// The fake signs nothing verifiably, so its key set is empty.
pub(crate) async fn keys() -> Response {
    axum::Json(json!({"keys": []})).into_response()
}

pub(crate) async fn logout() -> Html<&'static str> {
    Html("<!DOCTYPE html><html><body><h1>You signed out of your account</h1></body></html>")
}

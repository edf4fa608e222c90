//! `POST /{tenant}/oauth2/v2.0/token`: the device-code, authorization-code and refresh-token grants,
//! with Entra's checks and error codes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::cae::{RequestClaims, parse_claims};
use crate::endpoints::DEVICE_CODE_GRANT;
use crate::errors::{EntraError, entra_timestamp, no_store_headers};
use crate::form::Params;
use crate::issue::{Issuance, issue, resolve_grant};
use crate::pkce;
use crate::scopes::{GRAPH_RESOURCE, RequestedScopes};
use crate::state::{DeviceStatus, Shared, TenantSegment};

/// RFC 8628 §3.5: each `slow_down` adds 5 seconds to the polling interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The Conditional Access policy id the fake names in its MFA claims challenge.
const MFA_POLICY_ID: &str = "8a5e5a5c-6c3c-4b0b-9d3e-2f1f0c8e7d61";

pub(crate) async fn token(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let claims = parse_claims(params.get("claims"));
    let result = claims.clone().and_then(|claims| handle(&shared, &tenant, &params, claims));
    let mut state = shared.lock();
    state.stats.count_grant(params.get("grant_type"));
    state.stats.last_token_claims = params.get("claims").map(str::to_owned);
    if let Ok(claims) = &claims {
        state.stats.token.cae_capable += u64::from(claims.cp1);
        state.stats.token.with_challenge += u64::from(claims.challenge);
    }
    match result {
        Ok(body) => {
            drop(state);
            let mut response = axum::Json(body).into_response();
            no_store_headers(&mut response);
            response
        }
        Err(error) => {
            state.stats.count_token_error(&error.error);
            drop(state);
            tracing::debug!(error = %error.error, code = error.code, "token request refused");
            error.into_response()
        }
    }
}

fn handle(shared: &Shared, tenant: &str, params: &Params, claims: RequestClaims) -> Result<Value, EntraError> {
    let tenant = shared.config.tenant_segment(tenant)?;
    let grant_type = params.get("grant_type").ok_or_else(|| EntraError::missing_parameter("grant_type"))?;
    let client_id = params.get("client_id").ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    shared.config.client(client_id)?;
    if params.has("client_secret") || params.has("client_assertion") {
        return Err(EntraError::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
        .with_status(StatusCode::UNAUTHORIZED));
    }
    let request = Request { client_id, client_info: params.get("client_info") == Some("1"), cae: claims.cp1 };
    match grant_type {
        DEVICE_CODE_GRANT => device_code_grant(shared, tenant, &request, params),
        "authorization_code" => authorization_code_grant(shared, tenant, &request, params),
        "refresh_token" => refresh_token_grant(shared, &request, params),
        other => Err(EntraError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// What every grant needs from the request besides its own parameters.
struct Request<'a> {
    client_id: &'a str,
    client_info: bool,
    /// This token request's `claims` declared cp1.
    cae: bool,
}

fn invalid_grant(code: u32, message: impl Into<String>) -> EntraError {
    EntraError::new("invalid_grant", code, message)
}

fn parse_scopes(raw: &str) -> Result<RequestedScopes, EntraError> {
    RequestedScopes::parse(raw).map_err(|e| EntraError::from_scope_error(&e, raw))
}

fn device_code_grant(
    shared: &Shared,
    tenant: TenantSegment,
    request: &Request<'_>,
    params: &Params,
) -> Result<Value, EntraError> {
    let Request { client_id, client_info, .. } = *request;
    let device_code = params.get("device_code").ok_or_else(|| EntraError::missing_parameter("device_code"))?;
    let mut state = shared.lock();
    let now = state.now();
    let flow = state
        .device_flows
        .get_mut(device_code)
        .ok_or_else(|| EntraError::new("bad_verification_code", 70018, "Invalid verification code entered."))?;
    if flow.client_id != client_id {
        return Err(invalid_grant(70000, "The provided device code was issued to a different client."));
    }
    if flow.tenant != tenant {
        return Err(invalid_grant(
            700005,
            "Provided device code is intended to use against other tenant, thus rejected.",
        ));
    }
    if flow.status == DeviceStatus::Redeemed {
        return Err(invalid_grant(
            70000,
            "The provided value for the input parameter 'device_code' is not valid. The device code has already \
             been redeemed.",
        ));
    }
    if now >= flow.expires_at {
        return Err(EntraError::new("expired_token", 70020, "This device code has expired."));
    }
    let too_soon = flow.last_poll.is_some_and(|last| now < last + flow.interval);
    flow.last_poll = Some(now);
    if too_soon {
        flow.interval += SLOW_DOWN_STEP;
        return Err(EntraError::new(
            "slow_down",
            50196,
            format!(
                "The client is polling too frequently. Wait at least {} seconds between polls.",
                flow.interval.as_secs()
            ),
        ));
    }
    let oid = match &flow.status {
        DeviceStatus::Pending => {
            return Err(EntraError::new(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            ));
        }
        DeviceStatus::Declined => {
            return Err(EntraError::new(
                "authorization_declined",
                70000,
                "The user declined the authorization request.",
            ));
        }
        DeviceStatus::Redeemed => unreachable!("checked above"),
        DeviceStatus::Approved { oid } => oid.clone(),
    };
    let flow = flow.clone();
    let user = shared.config.user_by_oid(&oid).ok_or_else(|| invalid_grant(70000, "The user no longer exists."))?;
    let cae = flow.cae || request.cae;
    let issuance =
        Issuance { user, client_id, scope: &flow.scope, scopes: &flow.scopes, nonce: None, client_info, cae };
    let grant = resolve_grant(&state, &issuance)?;
    let body = issue(&mut state, &issuance, grant);
    if let Some(flow) = state.device_flows.get_mut(device_code) {
        flow.status = DeviceStatus::Redeemed;
    }
    Ok(body)
}

fn authorization_code_grant(
    shared: &Shared,
    tenant: TenantSegment,
    request: &Request<'_>,
    params: &Params,
) -> Result<Value, EntraError> {
    let Request { client_id, client_info, .. } = *request;
    let code = params.get("code").ok_or_else(|| EntraError::missing_parameter("code"))?;
    let redirect_uri = params.get("redirect_uri").ok_or_else(|| EntraError::missing_parameter("redirect_uri"))?;
    let scope = params.get("scope").filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        EntraError::invalid_scope(
            28003,
            "Provided value for the input parameter scope cannot be empty when requesting an access token using the \
             provided authorization code. Please specify a valid scope.",
        )
    })?;
    let scopes = parse_scopes(scope)?;

    let mut state = shared.lock();
    let now = state.now();
    let record = state
        .auth_codes
        .get(code)
        .cloned()
        .ok_or_else(|| invalid_grant(9002313, "Invalid request. Request is malformed or invalid."))?;
    if record.client_id != client_id {
        return Err(invalid_grant(70000, "The provided authorization code was issued to a different client."));
    }
    if record.tenant != tenant {
        return Err(invalid_grant(
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ));
    }
    if record.redeemed {
        return Err(invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing \
             refresh token.",
        ));
    }
    if now >= record.expires_at {
        return Err(invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive \
             authorization request for this user and resource.",
        ));
    }
    if redirect_uri != record.redirect_uri {
        return Err(invalid_grant(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI '{}' \
                 used to obtain the authorization code.",
                record.redirect_uri
            ),
        ));
    }
    let verifier = params.get("code_verifier").ok_or_else(|| {
        invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request. No \
             code_verifier was sent.",
        )
    })?;
    if !pkce::is_well_formed(verifier) {
        return Err(EntraError::new(
            "invalid_request",
            501491,
            "Invalid size of Code_Verifier parameter. It must be 43 to 128 characters of [A-Za-z0-9-._~].",
        ));
    }
    if !pkce::verifier_matches(record.method, &record.challenge, verifier) {
        return Err(invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ));
    }
    let user =
        shared.config.user_by_oid(&record.oid).ok_or_else(|| invalid_grant(70000, "The user no longer exists."))?;
    let cae = record.cae || request.cae;
    let nonce = record.nonce.as_deref();
    let issuance = Issuance { user, client_id, scope, scopes: &scopes, nonce, client_info, cae };
    let grant = resolve_grant(&state, &issuance)?;
    let body = issue(&mut state, &issuance, grant);
    if let Some(record) = state.auth_codes.get_mut(code) {
        record.redeemed = true;
    }
    Ok(body)
}

fn refresh_token_grant(shared: &Shared, request: &Request<'_>, params: &Params) -> Result<Value, EntraError> {
    let Request { client_id, client_info, cae } = *request;
    let refresh_token = params.get("refresh_token").ok_or_else(|| EntraError::missing_parameter("refresh_token"))?;
    let scope = params.get("scope").ok_or_else(|| EntraError::missing_parameter("scope"))?;
    let scopes = parse_scopes(scope)?;

    let mut state = shared.lock();
    let now = state.now();
    let lifetime = shared.config.refresh_token_lifetime;
    let record = state
        .refresh_tokens
        .get(refresh_token)
        .cloned()
        .ok_or_else(|| invalid_grant(9002313, "Invalid request. Request is malformed or invalid."))?;
    if record.client_id != client_id {
        return Err(invalid_grant(70000, "The refresh token was issued to a different client."));
    }
    if record.revoked {
        return Err(invalid_grant(
            50173,
            format!(
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might \
                 have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date \
                 (before which tokens are not valid) for this user is '{}'.",
                entra_timestamp(record.issued_at),
                entra_timestamp(now)
            ),
        ));
    }
    if now >= record.last_used + lifetime {
        return Err(invalid_grant(
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {}.",
                entra_timestamp(record.issued_at),
                dotnet_timespan(lifetime)
            ),
        )
        .with_suberror("bad_token"));
    }
    let resource = match scopes.single_resource() {
        Ok(Some(group)) => group.resource.clone(),
        Ok(None) => GRAPH_RESOURCE.to_owned(),
        Err(e) => return Err(EntraError::from_scope_error(&e, scope)),
    };
    if state.mfa_required.contains(&(record.oid.clone(), resource.clone())) {
        let claims = json!({"access_token": {"capolids": {"essential": true, "values": [MFA_POLICY_ID]}}});
        return Err(EntraError::new(
            "interaction_required",
            50076,
            format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, \
                 you must use multi-factor authentication to access '{resource}'."
            ),
        )
        .with_suberror("basic_action")
        .with_claims(claims.to_string()));
    }
    let user =
        shared.config.user_by_oid(&record.oid).ok_or_else(|| invalid_grant(70000, "The user no longer exists."))?;
    let issuance = Issuance { user, client_id, scope, scopes: &scopes, nonce: None, client_info, cae };
    let grant = resolve_grant(&state, &issuance)?;
    let body = issue(&mut state, &issuance, grant);
    // The presented token stays valid (Entra does not revoke on rotation); using it resets its inactivity clock.
    if let Some(record) = state.refresh_tokens.get_mut(refresh_token) {
        record.last_used = now;
    }
    Ok(body)
}

/// .NET `TimeSpan` text (`90.00:00:00`), as Entra prints the inactivity period in AADSTS700082.
fn dotnet_timespan(span: Duration) -> String {
    let secs = span.as_secs();
    format!("{}.{:02}:{:02}:{:02}", secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespan_matches_entra_text() {
        assert_eq!(dotnet_timespan(Duration::from_secs(90 * 86_400)), "90.00:00:00");
        assert_eq!(dotnet_timespan(Duration::from_secs(3661)), "0.01:01:01");
    }
}

//! The device authorization grant's front half: `POST /{tenant}/oauth2/v2.0/devicecode`, the
//! `/devicelogin` page where the user types the code, and approving or declining a pending flow.
//! Polling lives with the other grants in `tokens.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::cae::parse_claims;
use crate::errors::{ControlError, EntraError, no_store_headers};
use crate::form::Params;
use crate::ids::{normalize_user_code, random_b64url, user_code};
use crate::pages;
use crate::scopes::RequestedScopes;
use crate::state::{DeviceFlow, DeviceStatus, Shared, State as FakeState};

/// A device flow waiting for the user, as the control API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingDeviceCode {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
}

pub(crate) async fn devicecode(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    match start_flow(&shared, &tenant, &params) {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            no_store_headers(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}

fn start_flow(shared: &Shared, tenant: &str, params: &Params) -> Result<serde_json::Value, EntraError> {
    let tenant = shared.config.tenant_segment(tenant)?;
    let client_id = params.get("client_id").ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    shared.config.client(client_id)?;
    let scope = params.get("scope").ok_or_else(|| EntraError::missing_parameter("scope"))?;
    let scopes = RequestedScopes::parse(scope).map_err(|e| EntraError::from_scope_error(&e, scope))?;
    if scopes.is_empty() {
        return Err(EntraError::missing_parameter("scope"));
    }
    // The token this flow ends in can be for one resource only, so refuse a multi-resource request
    // now rather than at the first poll (the stand-in's choice; see README).
    scopes.single_resource().map_err(|e| EntraError::from_scope_error(&e, scope))?;
    let claims = parse_claims(params.get("claims"))?;

    let config = &shared.config;
    let mut state = shared.lock();
    let now = state.now();
    let device_code = format!("DAQABIQEAAAD{}", random_b64url(96));
    let user_code = user_code();
    state.device_flows.insert(
        device_code.clone(),
        DeviceFlow {
            user_code: user_code.clone(),
            client_id: client_id.to_owned(),
            tenant,
            scope: scope.to_owned(),
            scopes,
            created_at: now,
            expires_at: now + config.device_code_lifetime,
            interval: config.device_interval,
            last_poll: None,
            status: DeviceStatus::Pending,
            cae: claims.cp1,
        },
    );
    let verification_uri = format!("{}/devicelogin", config.base_url);
    Ok(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": whole_seconds(config.device_code_lifetime),
        "interval": whole_seconds(config.device_interval),
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."
        ),
    }))
}

/// Seconds rounded up, so a client honouring the advertised interval is never early.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

pub(crate) async fn login_page(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(pages::device_login(&shared.config.users, None))
}

pub(crate) async fn login_submit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let user_code = params.get("user_code").unwrap_or_default();
    let approve = params.get("action") != Some("decline");
    let result = if approve {
        approve_device(&shared, user_code, params.get("user").unwrap_or_default())
    } else {
        decline_device(&shared, user_code)
    };
    match result {
        Ok(()) => Html(pages::device_result(approve)).into_response(),
        Err(error) => {
            (StatusCode::BAD_REQUEST, Html(pages::device_login(&shared.config.users, Some(&error.to_string()))))
                .into_response()
        }
    }
}

fn pending_flow<'s>(state: &'s mut FakeState, user_code: &str) -> Result<&'s mut DeviceFlow, ControlError> {
    let wanted = normalize_user_code(user_code);
    let now = state.now();
    let flow = state
        .device_flows
        .values_mut()
        .filter(|f| f.user_code == wanted)
        .max_by_key(|f| f.created_at)
        .ok_or_else(|| ControlError::UnknownUserCode(user_code.to_owned()))?;
    if now >= flow.expires_at {
        return Err(ControlError::ExpiredUserCode(user_code.to_owned()));
    }
    if flow.status != DeviceStatus::Pending {
        return Err(ControlError::AlreadyHandled(user_code.to_owned()));
    }
    Ok(flow)
}

pub(crate) fn approve_device(shared: &Shared, user_code: &str, user: &str) -> Result<(), ControlError> {
    let user = shared.config.user(user)?;
    let mut state = shared.lock();
    let flow = pending_flow(&mut state, user_code)?;
    shared.config.admit(flow.tenant, user)?;
    flow.status = DeviceStatus::Approved { oid: user.oid.clone() };
    let (client_id, scopes) = (flow.client_id.clone(), flow.scopes.clone());
    state.record_interactive_sign_in(&user.oid, &client_id, &scopes);
    tracing::info!(user = %user.email, user_code, "device flow approved");
    Ok(())
}

pub(crate) fn decline_device(shared: &Shared, user_code: &str) -> Result<(), ControlError> {
    let mut state = shared.lock();
    pending_flow(&mut state, user_code)?.status = DeviceStatus::Declined;
    tracing::info!(user_code, "device flow declined");
    Ok(())
}

pub(crate) fn pending_device_codes(shared: &Shared) -> Vec<PendingDeviceCode> {
    let state = shared.lock();
    let now = state.now();
    let mut flows: Vec<&DeviceFlow> =
        state.device_flows.values().filter(|f| f.status == DeviceStatus::Pending && now < f.expires_at).collect();
    flows.sort_by_key(|f| f.created_at);
    flows
        .into_iter()
        .map(|f| PendingDeviceCode {
            user_code: f.user_code.clone(),
            client_id: f.client_id.clone(),
            scope: f.scope.clone(),
        })
        .collect()
}

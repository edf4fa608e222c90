//! The control API under `/_control/`: the operations tests and the demo script use to play the user,
//! the administrator and the outage. The same functions back the HTTP routes and [`crate::FakeEntra`]'s methods.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::authorize::{approve_browser, decline_browser, pending_authorizations};
use crate::cae::{CaeEvent, CaeKind};
use crate::device::{approve_device, decline_device, pending_device_codes};
use crate::endpoints::Endpoint;
use crate::errors::ControlError;
use crate::faults::{Fault, FaultRule};
use crate::scopes::{self, RequestedScopes};
use crate::state::{Shared, UserInfo};
use crate::stats::Stats;

impl Shared {
    /// Records a critical event for `user` now.
    pub(crate) fn record_cae_event(&self, user: &str, kind: CaeKind) -> Result<(), ControlError> {
        let oid = self.config.user(user)?.oid.clone();
        let mut state = self.lock();
        let at = state.now();
        state.cae_events.push(CaeEvent { oid, at, kind });
        tracing::info!(user, ?kind, "critical event recorded for continuous access evaluation");
        Ok(())
    }

    pub(crate) fn revoke_user(&self, user: &str) -> Result<usize, ControlError> {
        let oid = self.config.user(user)?.oid.clone();
        let mut state = self.lock();
        let mut revoked = 0;
        for record in state.refresh_tokens.values_mut().filter(|r| r.oid == oid && !r.revoked) {
            record.revoked = true;
            revoked += 1;
        }
        drop(state);
        tracing::info!(user, revoked, "refresh tokens revoked");
        self.record_cae_event(user, CaeKind::Revocation)?;
        Ok(revoked)
    }

    pub(crate) fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.lock().access_token_lifetime = lifetime;
    }

    pub(crate) fn require_mfa(&self, user: &str, resource: &str, required: bool) -> Result<(), ControlError> {
        let key = (self.config.user(user)?.oid.clone(), scopes::canonical_resource(resource));
        let mut state = self.lock();
        if required {
            state.mfa_required.insert(key);
        } else {
            state.mfa_required.remove(&key);
        }
        Ok(())
    }

    pub(crate) fn grant_consent(&self, user: &str, client_id: &str, granted: &[String]) -> Result<(), ControlError> {
        let oid = self.config.user(user)?.oid.clone();
        if !self.config.clients.contains_key(client_id) {
            return Err(ControlError::UnknownClient(client_id.to_owned()));
        }
        let parsed =
            RequestedScopes::parse(&granted.join(" ")).map_err(|e| ControlError::InvalidScope(format!("{e:?}")))?;
        if let Some(group) = parsed.resources.iter().find(|g| g.is_default()) {
            return Err(ControlError::InvalidScope(format!("{}/.default names no permission", group.resource)));
        }
        let mut state = self.lock();
        for group in &parsed.resources {
            for permission in &group.permissions {
                state.consent(&oid, client_id, &group.resource, permission);
            }
        }
        Ok(())
    }

    pub(crate) fn inject_fault(&self, endpoint: Endpoint, count: u32, fault: Fault) {
        self.lock().faults.push(FaultRule { endpoint, remaining: count, fault });
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by;
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_control/device/approve", post(device_approve))
        .route("/_control/device/decline", post(device_decline))
        .route("/_control/device/pending", get(device_pending))
        .route("/_control/browser/approve", post(browser_approve))
        .route("/_control/browser/decline", post(browser_decline))
        .route("/_control/browser/pending", get(browser_pending))
        .route("/_control/revoke", post(revoke))
        .route("/_control/change-policy", post(change_policy))
        .route("/_control/change_policy", post(change_policy))
        .route("/_control/attachment", post(attachment))
        .route("/_control/uploads", get(uploads))
        .route("/_control/access-token-lifetime", post(access_token_lifetime))
        .route("/_control/mfa", post(mfa))
        .route("/_control/consent", post(consent))
        .route("/_control/faults", post(faults).delete(clear_faults))
        .route("/_control/clock/advance", post(clock_advance))
        .route("/_control/stats", get(stats))
        .route("/_control/users", get(users))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::BadRequest(e.to_string()))
}

fn ok_or_error(result: Result<serde_json::Value, ControlError>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct DeviceDecision {
    user_code: String,
    #[serde(default)]
    user: Option<String>,
}

async fn device_approve(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<DeviceDecision>(&body).and_then(|d| {
        let user = d.user.ok_or_else(|| ControlError::BadRequest("missing field `user`".to_owned()))?;
        approve_device(&shared, &d.user_code, &user).map(|()| json!({"approved": d.user_code}))
    }))
}

async fn device_decline(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(
        parse::<DeviceDecision>(&body)
            .and_then(|d| decline_device(&shared, &d.user_code).map(|()| json!({"declined": d.user_code}))),
    )
}

async fn device_pending(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(pending_device_codes(&shared)).into_response()
}

#[derive(Deserialize)]
struct BrowserDecision {
    state: String,
    #[serde(default)]
    user: Option<String>,
}

async fn browser_approve(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<BrowserDecision>(&body).and_then(|d| {
        let user = d.user.ok_or_else(|| ControlError::BadRequest("missing field `user`".to_owned()))?;
        approve_browser(&shared, &d.state, &user).map(|redirect| json!({"redirect": redirect}))
    }))
}

async fn browser_decline(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(
        parse::<BrowserDecision>(&body)
            .and_then(|d| decline_browser(&shared, &d.state).map(|redirect| json!({"redirect": redirect}))),
    )
}

async fn browser_pending(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(pending_authorizations(&shared)).into_response()
}

#[derive(Deserialize)]
struct UserOnly {
    user: String,
}

async fn revoke(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<UserOnly>(&body).and_then(|u| shared.revoke_user(&u.user)).map(|n| json!({"revoked": n})))
}

async fn change_policy(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(
        parse::<UserOnly>(&body)
            .and_then(|u| shared.record_cae_event(&u.user, CaeKind::PolicyChange).map(|()| json!({"changed": u.user}))),
    )
}

#[derive(Deserialize)]
struct AttachmentRequest {
    user: String,
    size: u64,
}

async fn attachment(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request = match parse::<AttachmentRequest>(&body) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    // Hashing a large attachment takes a while; keep the server's one thread free meanwhile.
    let created = tokio::task::spawn_blocking(move || shared.add_attachment(&request.user, request.size)).await;
    ok_or_error(
        created
            .map_err(|e| ControlError::BadRequest(e.to_string()))
            .and_then(|created| created)
            .and_then(|a| serde_json::to_value(a).map_err(|e| ControlError::BadRequest(e.to_string()))),
    )
}

async fn uploads(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.uploads()).into_response()
}

#[derive(Deserialize)]
struct Seconds {
    seconds: u64,
}

async fn access_token_lifetime(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<Seconds>(&body).map(|s| {
        shared.set_access_token_lifetime(Duration::from_secs(s.seconds));
        json!({"seconds": s.seconds})
    }))
}

async fn clock_advance(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<Seconds>(&body).map(|s| {
        shared.advance_clock(Duration::from_secs(s.seconds));
        json!({"advanced": s.seconds})
    }))
}

#[derive(Deserialize)]
struct MfaRule {
    user: String,
    resource: String,
    required: bool,
}

async fn mfa(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<MfaRule>(&body).and_then(|r| {
        shared.require_mfa(&r.user, &r.resource, r.required)?;
        Ok(json!({"user": r.user, "resource": r.resource, "required": r.required}))
    }))
}

#[derive(Deserialize)]
struct ConsentGrant {
    user: String,
    client_id: String,
    scopes: Vec<String>,
}

async fn consent(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<ConsentGrant>(&body).and_then(|c| {
        shared.grant_consent(&c.user, &c.client_id, &c.scopes)?;
        Ok(json!({"granted": c.scopes}))
    }))
}

#[derive(Deserialize)]
struct FaultRequest {
    endpoint: Endpoint,
    count: u32,
    fault: Fault,
}

async fn faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    ok_or_error(parse::<FaultRequest>(&body).map(|f| {
        shared.inject_fault(f.endpoint, f.count, f.fault);
        json!({"armed": f.count})
    }))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.clear_faults();
    axum::Json(json!({"cleared": true})).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

async fn users(State(shared): State<Arc<Shared>>) -> Response {
    let users: &[UserInfo] = &shared.config.users;
    axum::Json(users).into_response()
}

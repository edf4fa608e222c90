//! The policy routes: `GET /v1/policy`, `POST /v1/policy/rules`, `/v1/policy/approve`, `/v1/policy/deny`.
//!
//! Changing the policy or answering an ask is refused to a sandboxed or unknown caller: the policy is what stops
//! those. A same-user program outside a sandbox can edit the config file anyway (docs/security.md).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use graphbroker_protocol::{
    AnswerQuery, ErrorCode, PolicyChangeResponse, PolicyResponse, PolicyRuleInfo, RuleQuery, split_scopes,
};

use super::{Answer, NewRule, RuleAction};
use crate::broker::Broker;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::server::request::parse_query;

/// The routes, on the broker's state.
pub(crate) fn policy_routes() -> Router<Arc<Broker>> {
    use graphbroker_protocol::routes;
    Router::new()
        .route(routes::POLICY, get(list))
        .route(routes::POLICY_RULES, post(add))
        .route(routes::POLICY_APPROVE, post(approve))
        .route(routes::POLICY_DENY, post(deny))
}

async fn list(State(broker): State<Arc<Broker>>) -> Response {
    let config = broker.config();
    let rules = config
        .policy
        .rules
        .iter()
        .map(|rule| PolicyRuleInfo {
            action: rule.action.as_str().to_owned(),
            matches: rule.selector.key().to_owned(),
            value: rule.selector.value().to_owned(),
            profiles: rule.profiles.clone(),
            scopes: rule.scopes.clone(),
            line: rule.line,
        })
        .collect();
    Json(PolicyResponse {
        default: config.policy.default.as_str().to_owned(),
        rules,
        pending: broker.guard.approvals.list(),
        file: config.source.as_ref().or(crate::config::default_path().as_ref()).map(|p| p.display().to_string()),
    })
    .into_response()
}

/// The caller of this request, if it may change the policy.
fn manager() -> Result<Arc<Caller>, ApiError> {
    let caller = super::context::current()
        .map(|context| context.peer.caller())
        .unwrap_or_else(|| Arc::new(Caller::unknown(None, "not asked over the socket")));
    match caller.program() {
        Some(program) if program.sandbox.is_none() => Ok(caller),
        _ => Err(ApiError::new(
            ErrorCode::PolicyDenied,
            format!("{} may not change the policy: run graphbroker-client outside any sandbox", caller.describe()),
        )),
    }
}

async fn add(State(broker): State<Arc<Broker>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    manager()?;
    let query: RuleQuery = parse_query(raw.as_deref())?;
    let action = match query.action.as_str() {
        "allow" => RuleAction::Allow,
        "deny" => RuleAction::Deny,
        other => return Err(ApiError::bad_request(format!("action must be allow or deny, not {other:?}"))),
    };
    let (key, value) = match (query.program, query.unit, query.sandbox) {
        (Some(v), None, None) => ("program", v),
        (None, Some(v), None) => ("unit", v),
        (None, None, Some(v)) => ("sandbox", v),
        _ => return Err(ApiError::bad_request("name exactly one of program, unit or sandbox")),
    };
    let words = |text: Option<String>| text.map(|t| split_scopes(&t)).filter(|list: &Vec<String>| !list.is_empty());
    let rule = NewRule { action, key, value, profiles: words(query.profiles), scopes: words(query.scopes) };
    let line = broker.add_rule(rule).await?;
    Ok(Json(PolicyChangeResponse { message: format!("rule written at line {line} and applied"), line: Some(line) })
        .into_response())
}

async fn approve(State(broker): State<Arc<Broker>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: AnswerQuery = parse_query(raw.as_deref())?;
    answer(&broker, query.id, if query.always { Answer::Always } else { Answer::Once })
}

async fn deny(State(broker): State<Arc<Broker>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: AnswerQuery = parse_query(raw.as_deref())?;
    answer(&broker, query.id, Answer::Deny)
}

fn answer(broker: &Broker, id: u64, answer: Answer) -> Result<Response, ApiError> {
    let caller = manager()?;
    broker.guard.approvals.answer(id, answer, caller.pid()).map_err(|e| ApiError::new(ErrorCode::NotFound, e))?;
    Ok(Json(PolicyChangeResponse { message: format!("request {id} answered"), line: None }).into_response())
}

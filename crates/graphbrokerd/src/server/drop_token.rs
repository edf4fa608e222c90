//! `DELETE /v1/token`: parsed like `GET /v1/token`'s profile and scopes, served by `Broker::drop_token`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use graphbroker_protocol::{DropTokenQuery, TokenQuery};

use super::AppState;
use super::request::{parse_query, token_request};
use crate::error::ApiError;

pub(super) async fn drop_token(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: DropTokenQuery = parse_query(raw.as_deref())?;
    let request = token_request(TokenQuery { profile: query.profile, scopes: query.scopes, ..TokenQuery::default() })?;
    Ok(Json(app.broker.drop_token(&request).await?).into_response())
}

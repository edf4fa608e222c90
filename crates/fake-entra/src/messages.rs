//! A paged collection: `GET /v1.0/me/messages` (and beta) with `$top` and `$skiptoken`, each page ending in an
//! `@odata.nextLink` on the fake's own base URL until the last, the way Graph pages a collection.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::{ControlError, graph_error};
use crate::graph::authenticate;
use crate::state::Shared;

/// Delegated permissions that allow listing the signed-in user's mail (Graph `user-list-messages`).
const PERMISSIONS_FOR_MAIL: &[&str] = &["Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"];
/// Graph's page size for messages when `$top` is not given.
const DEFAULT_TOP: usize = 10;
/// The largest `$top` Graph accepts for messages.
const MAX_TOP: usize = 1000;
/// `$skiptoken` values are opaque to clients; the fake's carry the offset behind a prefix, and anything else is
/// refused as Graph refuses a token it did not issue.
const SKIPTOKEN_PREFIX: &str = "fake-skip-";

impl Shared {
    /// Gives `user` `count` messages (replacing any), numbered from 1, newest first as Graph lists them.
    pub(crate) fn set_messages(&self, user: &str, count: usize) -> Result<(), ControlError> {
        let oid = self.config.user(user)?.oid.clone();
        self.lock().graph.messages.insert(oid, count);
        Ok(())
    }
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let oid = match authenticate(&shared, &headers, PERMISSIONS_FOR_MAIL) {
        Ok(oid) => oid,
        Err(response) => return *response,
    };
    let (top, skip) = match paging(query.as_deref().unwrap_or_default()) {
        Ok(paging) => paging,
        Err(message) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    let total = shared.lock().graph.messages.get(&oid).copied().unwrap_or_default();
    let version = if uri.path().starts_with("/beta/") { "beta" } else { "v1.0" };
    let end = total.min(skip.saturating_add(top));
    let value: Vec<_> = (skip..end)
        .map(|i| {
            let n = total - i;
            json!({"id": format!("AAMkAG-message-{n}"), "subject": format!("Message {n}"), "isRead": false})
        })
        .collect();
    let mut page = json!({
        "@odata.context": format!("https://graph.microsoft.com/{version}/$metadata#users('{oid}')/messages"),
        "value": value,
    });
    if end < total {
        let next = format!(
            "{}/{version}/me/messages?%24top={top}&%24skiptoken={SKIPTOKEN_PREFIX}{end}",
            shared.config.base_url
        );
        page["@odata.nextLink"] = next.into();
    }
    ([(axum::http::header::CONTENT_TYPE, "application/json;odata.metadata=minimal;charset=utf-8")], page.to_string())
        .into_response()
}

/// `$top` and the offset of `$skiptoken` from the query; any other parameter is refused, so a client that sends
/// what the fake does not implement finds out.
fn paging(query: &str) -> Result<(usize, usize), String> {
    let mut top = DEFAULT_TOP;
    let mut skip = 0;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "$top" => {
                top = value
                    .parse()
                    .ok()
                    .filter(|top| (1..=MAX_TOP).contains(top))
                    .ok_or_else(|| format!("Invalid value '{value}' for $top: give 1 to {MAX_TOP}."))?;
            }
            "$skiptoken" => {
                skip = value
                    .strip_prefix(SKIPTOKEN_PREFIX)
                    .and_then(|offset| offset.parse().ok())
                    .ok_or_else(|| "Invalid $skiptoken: it was not issued for this collection.".to_owned())?;
            }
            other => return Err(format!("Query option '{other}' is not supported by this stand-in.")),
        }
    }
    Ok((top, skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters() {
        assert_eq!(paging(""), Ok((DEFAULT_TOP, 0)));
        assert_eq!(paging("%24top=2&%24skiptoken=fake-skip-4"), Ok((2, 4)));
        assert_eq!(paging("$top=3"), Ok((3, 0)));
        assert!(paging("$top=0").is_err());
        assert!(paging("$top=1001").is_err());
        assert!(paging("$skiptoken=4").is_err());
        assert!(paging("$filter=x").is_err());
    }
}

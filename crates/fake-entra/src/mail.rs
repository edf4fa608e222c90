//! Mail attachments: creating one for a user (control), and Graph's streamed download of its raw
//! bytes, `GET /v1.0/me/messages/{message_id}/attachments/{attachment_id}/$value`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::Rng as _;

use crate::content::{self, FakeAttachment, StoredAttachment};
use crate::errors::{ControlError, graph_error};
use crate::graph::authenticate;
use crate::ids::random_b64url;
use crate::state::Shared;

/// Delegated permissions that allow reading the signed-in user's mail (Graph `attachment-get`).
const PERMISSIONS_FOR_MAIL: &[&str] = &["Mail.Read", "Mail.ReadWrite"];

impl Shared {
    /// Creates an attachment of `size` bytes on a new message of `user`. The digest is computed here,
    /// by generating the content once, outside the state lock.
    pub(crate) fn add_attachment(&self, user: &str, size: u64) -> Result<FakeAttachment, ControlError> {
        let oid = self.config.user(user)?.oid.clone();
        let seed: u64 = rand::rng().random();
        let info = FakeAttachment {
            // Graph's mail ids are long base64 strings; base64url keeps them path-safe.
            message_id: format!("AAMkAG{}", random_b64url(48)),
            attachment_id: format!("AAMkAG{}", random_b64url(48)),
            size,
            sha256: content::digest(seed, size),
        };
        self.lock().graph.attachments.push(StoredAttachment { oid, seed, info: info.clone() });
        tracing::info!(user, size, "attachment created");
        Ok(info)
    }
}

pub(crate) async fn attachment_value(
    State(shared): State<Arc<Shared>>,
    Path((message_id, attachment_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let oid = match authenticate(&shared, &headers, PERMISSIONS_FOR_MAIL) {
        Ok(oid) => oid,
        Err(response) => return *response,
    };
    let found = shared
        .lock()
        .graph
        .attachments
        .iter()
        .find(|a| a.oid == oid && a.info.message_id == message_id && a.info.attachment_id == attachment_id)
        .map(|a| (a.seed, a.info.size));
    match found {
        Some((seed, size)) => content::streamed(seed, size),
        // Another user's attachment is indistinguishable from a missing one, as in Exchange.
        None => {
            graph_error(StatusCode::NOT_FOUND, "ErrorItemNotFound", "The specified object was not found in the store.")
        }
    }
}

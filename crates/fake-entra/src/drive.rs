//! OneDrive: the simple upload `PUT /v1.0/me/drive/root:/{name}:/content`, hashed as the body
//! arrives (never buffered), and the download `GET /v1.0/me/drive/items/{id}/content`, which answers
//! 302 to a pre-authenticated `/_content/{id}?tempauth=…` URL as Graph does. Clients must follow that
//! redirect **without** their bearer token; the fake counts those that do not.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::content::{self, FakeUpload, StoredUpload, TempAuth};
use crate::errors::graph_error;
use crate::graph::authenticate;
use crate::ids::random_b64url;
use crate::state::Shared;

/// Delegated permissions that allow writing the user's files (Graph `driveitem-put-content`).
const PERMISSIONS_TO_WRITE: &[&str] = &["Files.ReadWrite", "Files.ReadWrite.All"];
/// Delegated permissions that allow reading them (Graph `driveitem-get-content`).
const PERMISSIONS_TO_READ: &[&str] = &["Files.Read", "Files.ReadWrite", "Files.Read.All", "Files.ReadWrite.All"];
/// How long a pre-authenticated download URL stays usable (the real ones last about an hour).
const TEMPAUTH_LIFETIME: Duration = Duration::from_secs(3600);

impl Shared {
    pub(crate) fn uploads(&self) -> Vec<FakeUpload> {
        self.lock().graph.uploads.iter().map(|u| u.info.clone()).collect()
    }
}

fn item_not_found() -> Response {
    graph_error(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found.")
}

/// `/v1.0/me/drive/{*rest}`: one wildcard, because `root:/{name}:/content` is not a path-segment shape.
pub(crate) async fn drive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(path) = rest.strip_prefix("root:/").and_then(|r| r.strip_suffix(":/content")) {
        return match method {
            Method::PUT => upload(&shared, path, &headers, body).await,
            _ => method_not_allowed(),
        };
    }
    let item = rest.strip_prefix("items/").and_then(|r| r.strip_suffix("/content")).filter(|id| !id.contains('/'));
    if let Some(id) = item {
        return match method {
            Method::GET => item_content(&shared, id, &headers),
            _ => method_not_allowed(),
        };
    }
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Resource not found for the segment '{rest}'."))
}

fn method_not_allowed() -> Response {
    graph_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest",
        "The HTTP method is not allowed on this resource: upload with PUT, download with GET.",
    )
}

async fn upload(shared: &Shared, path: &str, headers: &HeaderMap, body: Body) -> Response {
    let oid = match authenticate(shared, headers, PERMISSIONS_TO_WRITE) {
        Ok(oid) => oid,
        Err(response) => {
            // The refusal is sent after the body has been read, as a front end with lingering close does: a
            // server that closes on unread data resets the connection, and the client may lose the answer
            // (whether Graph itself reads the body first is [UNVERIFIED]).
            drain(body).await;
            return *response;
        }
    };
    let name = path.rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "The file name is empty: PUT …/root:/{name}:/content.",
        );
    }
    let mut body = body;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hasher.update(data);
                    size += data.len() as u64;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "upload body broke off");
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "invalidRequest",
                    "The request body ended early; send it again.",
                );
            }
        }
    }
    let sha256 = content::hex(&hasher.finalize());
    let info = FakeUpload { id: drive_item_id(), name: name.to_owned(), size, sha256 };
    shared.lock().graph.uploads.push(StoredUpload { oid, info: info.clone() });
    tracing::info!(name, size, "upload received");
    let body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('me')/drive/root/$entity",
        "id": info.id,
        "name": info.name,
        "size": info.size,
        "file": {
            "mimeType": "application/octet-stream",
            "hashes": {"sha256Hash": info.sha256.to_ascii_uppercase()},
        },
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Reads and drops the rest of a body that will not be used.
async fn drain(mut body: Body) {
    while let Some(Ok(_)) = body.frame().await {}
}

/// OneDrive item ids look like `01BYE5RZ…`: 34 upper-case alphanumerics.
fn drive_item_id() -> String {
    let raw: String = random_b64url(32).chars().filter(char::is_ascii_alphanumeric).collect();
    format!("01{}", raw.to_ascii_uppercase().chars().take(32).collect::<String>())
}

fn item_content(shared: &Shared, id: &str, headers: &HeaderMap) -> Response {
    let oid = match authenticate(shared, headers, PERMISSIONS_TO_READ) {
        Ok(oid) => oid,
        Err(response) => return *response,
    };
    let mut state = shared.lock();
    if !state.graph.uploads.iter().any(|u| u.oid == oid && u.info.id == id) {
        return item_not_found();
    }
    let tempauth = random_b64url(48);
    let expires_at = state.now() + TEMPAUTH_LIFETIME;
    state.graph.tempauth.insert(tempauth.clone(), TempAuth { item_id: id.to_owned(), expires_at });
    let location = format!("{}/_content/{id}?tempauth={tempauth}", shared.config.base_url);
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct TempAuthQuery {
    tempauth: Option<String>,
}

/// `GET /_content/{id}?tempauth=…`: the pre-authenticated download. The URL is the credential.
pub(crate) async fn preauthenticated(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<TempAuthQuery>,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.lock();
    *state.stats.graph.by_route.entry("content".to_owned()).or_default() += 1;
    if headers.contains_key(header::AUTHORIZATION) {
        // A proxy that forwards the bearer here leaks a Graph token to a storage host.
        state.stats.graph.preauthenticated_with_authorization += 1;
    }
    let now = state.now();
    let valid = query
        .tempauth
        .as_deref()
        .and_then(|t| state.graph.tempauth.get(t))
        .is_some_and(|t| t.item_id == id && now < t.expires_at);
    let size = state.graph.uploads.iter().find(|u| u.info.id == id).map(|u| u.info.size);
    drop(state);
    match (valid, size) {
        (true, Some(size)) => content::streamed(seed_for(&id), size),
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": "unauthenticated", "message": "The tempauth token is missing, expired or not for this item; get a new download URL from Graph."}})),
        )
            .into_response(),
    }
}

/// The served bytes are a pattern of the recorded size, not the uploaded bytes (which were never kept).
pub(crate) fn seed_for(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

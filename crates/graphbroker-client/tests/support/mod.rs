//! A scripted stand-in for graphbrokerd on a real Unix socket: it records every request and answers each with
//! whatever the test's script says, so tests exercise the client's real HTTP and socket code.

#![allow(dead_code, reason = "each test binary uses its own part of the support code")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One request the mock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, as the client encoded it.
    pub query: String,
}

impl Recorded {
    /// The value of one query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&self.query).unwrap();
        pairs.into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }
}

/// An answer: a status and a JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Seconds to hold the answer, as a daemon honouring `wait` does.
    pub hold_secs: u64,
    /// The protocol header's value (`None`: no header), graphbrokerd's own version unless a test says otherwise.
    pub protocol: Option<String>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self::error(200, body)
    }

    pub fn error(status: u16, body: Value) -> Self {
        Self { status, body, hold_secs: 0, protocol: Some(graphbroker_client::PROTOCOL_VERSION.to_string()) }
    }

    /// The same answer with another protocol header (`None`: none at all).
    pub fn speaking(mut self, protocol: Option<&str>) -> Self {
        self.protocol = protocol.map(str::to_owned);
        self
    }

    pub fn held_for(mut self, seconds: u64) -> Self {
        self.hold_secs = seconds;
        self
    }
}

type Script = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct MockState {
    script: Script,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

/// The running mock; stops serving when dropped.
pub struct MockDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl MockDaemon {
    /// Binds a socket in a fresh directory and serves `script(request, index)`, where `index` counts the
    /// requests other than `/healthz` (which always answers `ok`). Ready as soon as this returns: the socket is
    /// bound before it does.
    pub fn start(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let dir = private_tempdir();
        let socket = dir.path().join("graphbroker.sock");
        let (requests, stop, _served) = serve_on(&socket, script);
        Self { _dir: dir, socket, requests, stop: Some(stop) }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request but `/healthz`, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockDaemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A fresh temporary directory with mode 0700, as a socket's directory must be (tempfile's follow the umask, which
/// leaves them readable by others; the client refuses a socket there).
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Serves the script on `socket` until the returned sender fires (or is dropped); the task ends once the open
/// connections have closed.
pub fn serve_on(
    socket: &Path,
    script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static,
) -> (Arc<Mutex<Vec<Recorded>>>, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let state = MockState { script: Arc::new(script), requests: requests.clone() };
    let app = Router::new().fallback(answer).with_state(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (requests, stop, served)
}

async fn answer(State(state): State<MockState>, method: Method, uri: Uri) -> Response {
    if uri.path() == "/healthz" {
        return Response::builder()
            .header(graphbroker_client::protocol::PROTOCOL_HEADER, graphbroker_client::PROTOCOL_VERSION)
            .body(Body::from("ok"))
            .unwrap();
    }
    let request =
        Recorded { method: method.to_string(), path: uri.path().to_owned(), query: uri.query().unwrap_or("").into() };
    let index = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(request.clone());
        requests.len() - 1
    };
    let reply = (state.script)(&request, index);
    if reply.hold_secs > 0 {
        tokio::time::sleep(std::time::Duration::from_secs(reply.hold_secs)).await;
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(protocol) = &reply.protocol {
        response = response.header(graphbroker_client::protocol::PROTOCOL_HEADER, protocol.as_str());
    }
    response.body(Body::from(reply.body.to_string())).unwrap()
}

/// The access token every scripted token answer carries.
pub const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.mock-access-token.sig";

/// The device-code sentence of the scripted prompt.
pub const DEVICE_MESSAGE: &str =
    "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD1234";

pub fn token_body() -> Value {
    json!({
        "token_type": "Bearer",
        "access_token": ACCESS_TOKEN,
        "expires_at": 4_099_999_999u64,
        "expires_in": 3541,
        "scopes": ["https://graph.microsoft.com/User.Read"],
        "profile": "work",
        "account": {"username": "adele@contoso.com", "home_account_id": "u.t", "tenant_id": "t"},
    })
}

pub fn header_body() -> Value {
    json!({"Authorization": format!("Bearer {ACCESS_TOKEN}"), "Content-Type": "application/json"})
}

pub fn device_prompt() -> Value {
    json!({
        "flow": "device",
        "verification_uri": "https://microsoft.com/devicelogin",
        "user_code": "ABCD1234",
        "message": DEVICE_MESSAGE,
        "expires_at": 4_099_999_999u64,
    })
}

pub fn signin_required() -> Reply {
    Reply::error(
        401,
        json!({"error": {
            "code": "signin_required",
            "message": "sign in to continue; open the page shown and enter the code",
            "reason": "no_account",
            "signin": device_prompt(),
        }}),
    )
}

pub fn daemon_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::error(status, json!({"error": {"code": code, "message": message}}))
}

pub fn signin_timeout() -> Reply {
    daemon_error(408, "signin_timeout", "the sign-in is still waiting for you; ask again to keep waiting")
}

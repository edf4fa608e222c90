//! The HTTP/1.1 API on the Unix socket: routes, the peer check, and the JSON error envelope.
//!
//! `router` builds the whole app and can be driven without a socket (tower's `oneshot`); `serve` runs it on a
//! listener until the `shutdown` future completes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{RawQuery, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use graphbroker_protocol::{
    ErrorCode, HeaderResponse, PROTOCOL_VERSION, SignInFlow, TokenQuery, TokenResponse, VersionResponse, routes,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::net::UnixListener;

use crate::broker::{Broker, IssuedToken, rfc3339};
use crate::error::ApiError;

/// The credentials of the process at the other end of a connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `None` when the kernel could not tell (then the peer is refused).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Peer { uid: Some(cred.uid()), pid: cred.pid() },
            Err(_) => Peer { uid: None, pid: None },
        }
    }
}

/// Who may talk to the daemon: the user it runs as, as with ssh-agent. The socket's 0600 mode keeps others
/// out already; this check also refuses root's processes and anything that got hold of the file some other way.
#[derive(Debug, Clone, Copy)]
pub struct PeerPolicy {
    pub allowed_uid: u32,
}

impl PeerPolicy {
    /// Allows only the daemon's own user.
    pub fn current_user() -> Self {
        Self { allowed_uid: nix::unistd::getuid().as_raw() }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    broker: Arc<Broker>,
}

/// Requests in flight and the time of the last one, for exiting when idle under socket activation.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { in_flight: AtomicUsize::new(0), last: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }
}

impl Activity {
    /// How long no request has been in flight (zero while one is).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return std::time::Duration::ZERO;
        }
        self.last.lock().expect("activity lock").elapsed()
    }

    fn touch(&self) {
        *self.last.lock().expect("activity lock") = tokio::time::Instant::now();
    }
}

/// Counts a request in and out, whatever its outcome.
struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn track(State(activity): State<Arc<Activity>>, request: Request, next: Next) -> Response {
    activity.in_flight.fetch_add(1, Ordering::SeqCst);
    activity.touch();
    let _guard = InFlight(&activity);
    next.run(request).await
}

/// The whole API. Connections must carry [`Peer`] info (`into_make_service_with_connect_info::<Peer>()`);
/// without it every request is refused.
pub fn router(broker: Arc<Broker>, policy: PeerPolicy) -> Router {
    router_with_activity(broker, policy, Arc::new(Activity::default()))
}

/// [`router`], counting requests in `activity`.
pub fn router_with_activity(broker: Arc<Broker>, policy: PeerPolicy, activity: Arc<Activity>) -> Router {
    Router::new()
        .route(routes::VERSION, get(version))
        .route(routes::TOKEN, get(token))
        .route(routes::HEADER, get(header))
        .route(routes::SIGNIN, post(signin))
        .route(routes::SIGNOUT, post(signout))
        .route(routes::STATUS, get(status))
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route: see docs/api.md for the routes") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method: see docs/api.md")
        })
        // Inner layer: only requests that passed the peer check count as activity.
        .layer(middleware::from_fn_with_state(activity, track))
        .layer(middleware::from_fn_with_state(policy, peer_check))
        .with_state(AppState { broker })
}

/// Runs the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: UnixListener,
    broker: Arc<Broker>,
    policy: PeerPolicy,
    activity: Arc<Activity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with_activity(broker, policy, activity).into_make_service_with_connect_info::<Peer>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn peer_check(State(policy): State<PeerPolicy>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    match peer {
        Some(Peer { uid: Some(uid), .. }) if uid == policy.allowed_uid => next.run(request).await,
        other => {
            tracing::warn!(peer = ?other, "refused a connection from another user");
            ApiError::new(
                ErrorCode::Forbidden,
                "this daemon serves only the user it runs as; start your own graphbrokerd",
            )
            .into_response()
        }
    }
}

/// Parses a query string strictly: unknown parameters and bad values are a `bad_request` naming the problem,
/// not axum's plain-text rejection.
fn parse_query<T: for<'de> Deserialize<'de> + Default>(raw: Option<String>) -> Result<T, ApiError> {
    match raw.as_deref() {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::bad_request(format!("bad query parameter: {e}; see docs/api.md"))),
    }
}

async fn version() -> Json<VersionResponse> {
    Json(VersionResponse { protocol: PROTOCOL_VERSION, daemon: env!("CARGO_PKG_VERSION").into() })
}

async fn token(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: TokenQuery = parse_query(raw)?;
    let issued = app.broker.token(&query).await?;
    Ok(no_store(Json(token_response(issued)).into_response()))
}

async fn header(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: TokenQuery = parse_query(raw)?;
    let issued = app.broker.token(&query).await?;
    let body = HeaderResponse {
        authorization: format!("Bearer {}", issued.access_token.expose_secret()),
        content_type: "application/json".into(),
    };
    Ok(no_store(Json(body).into_response()))
}

fn token_response(issued: IssuedToken) -> TokenResponse {
    TokenResponse {
        token_type: "Bearer".into(),
        access_token: issued.access_token.expose_secret().to_owned(),
        expires_at: rfc3339(issued.expires_at),
        expires_in: issued.expires_in.as_secs(),
        scopes: issued.scopes,
        profile: issued.profile,
        account: issued.account,
    }
}

/// Token answers must not be kept by anything between (RFC 6749 §5.1 asks the same of token endpoints).
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInQuery {
    profile: Option<String>,
    flow: Option<SignInFlow>,
}

async fn signin(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: SignInQuery = parse_query(raw)?;
    Ok(Json(app.broker.signin(query.profile.as_deref(), query.flow).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    profile: Option<String>,
}

async fn signout(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: ProfileQuery = parse_query(raw)?;
    Ok(Json(app.broker.signout(query.profile.as_deref()).await?).into_response())
}

async fn status(State(app): State<AppState>) -> Response {
    Json(app.broker.status()).into_response()
}

//! The HTTP/1.1 API on the Unix socket: routes, the peer check, and the JSON error envelope.
//!
//! `router` builds the whole app and can be driven without a socket (tower's `oneshot`, with the peer injected
//! as a `ConnectInfo<Peer>` extension); `serve` runs it on a listener until the `shutdown` future completes.
//!
//! - `accept.rs`: the accept loop — the peer check before a request is read, the connection cap, the time limit
//!   on request heads, graceful shutdown. `peer.rs`: who may talk to the daemon. `request.rs`: query strings (and
//!   the proxy's headers) → validated domain requests. `direct/`: the token routes, answered without the
//!   router. `activity.rs`: requests and streaming answers in flight, for idle exit. `answer.rs`: token answers in wiped buffers, and the one `Bearer` value. `proxy/`: the Graph
//!   proxy, with its own route and state; it imports its siblings, not this module.

mod accept;
mod activity;
mod answer;
mod direct;
mod drop_token;
mod peer;
pub(crate) mod proxy;
pub(crate) mod request;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use graphbroker_protocol::{
    ErrorCode, PROTOCOL_HEADER, PROTOCOL_VERSION, ProfileQuery, SignInQuery, VersionResponse, routes,
};
use tokio::net::UnixListener;

pub use self::accept::{ConnectionLimits, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_WAITING, WRITE_IDLE_TIMEOUT};
pub use self::activity::Activity;
use self::activity::CountedRequest;
use self::answer::{header_json, secret_answer, token_json};
use self::direct::Direct;
use self::peer::PeerCheck;
pub use self::peer::{Peer, PeerPolicy};
use self::request::{attended, parse_query, token_query};
use crate::broker::{Broker, TokenRequest};
use crate::error::ApiError;
use crate::metrics::{self, Metrics, Route};

#[derive(Debug, Clone)]
struct AppState {
    broker: Arc<Broker>,
}

/// What the gate checks and counts into: who may talk, activity for idle exit, and the metrics.
#[derive(Debug, Clone)]
struct Gate {
    peers: PeerCheck,
    activity: Arc<Activity>,
    metrics: Arc<Metrics>,
}

/// [`PROTOCOL_VERSION`] as a header value, made once: each answer shares it instead of formatting the number.
static PROTOCOL_VALUE: std::sync::LazyLock<axum::http::HeaderValue> =
    std::sync::LazyLock::new(|| axum::http::HeaderValue::from(PROTOCOL_VERSION));

/// The one middleware every request goes through, so the cached-token path pays for one layer, not three:
/// - the peer check (the accept loop's second line, `peer.rs`): another user's request is refused before any
///   route runs, and is neither activity nor a route's answer in the metrics;
/// - counting a request in and out (activity) and its answer by route, outcome and error code (metrics; atomic
///   adds on series looked up by index, see `crate::metrics`);
/// - [`PROTOCOL_HEADER`] on every answer, a refusal included, which clients check.
///
/// The connections' direct token requests (`direct/`) go through the same checks and counting without the
/// router ([`Gate::admit`], [`Gate::answered`]).
async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let refusal = gate.peers.refusal(&request);
    let route = Route::of_request(request.method(), request.uri().path());
    gate.pass(refusal, route, next.run(request)).await
}

impl Gate {
    /// `refusal` if there is one, else `answer` counted in activity and in the metrics under `route`; either way
    /// with [`PROTOCOL_HEADER`].
    async fn pass(&self, refusal: Option<Response>, route: Route, answer: impl Future<Output = Response>) -> Response {
        let response = match refusal {
            Some(refusal) => refusal,
            None => {
                let _guard = CountedRequest::start(&self.activity);
                let response = answer.await;
                self.counted(route, &response);
                response
            }
        };
        with_protocol(response)
    }

    /// [`Gate::pass`]'s first half for a connection's direct token request from `peer` (`direct/`): its
    /// refusal (with [`PROTOCOL_HEADER`]), or the guard that counts it in activity while it runs.
    #[expect(
        clippy::result_large_err,
        reason = "the error is the answer itself, written next; boxing it would only add an allocation"
    )]
    fn admit(&self, peer: Peer) -> Result<CountedRequest<'_>, Response> {
        match self.peers.refusal_of(Some(peer)) {
            Some(refusal) => Err(with_protocol(refusal)),
            None => Ok(CountedRequest::start(&self.activity)),
        }
    }

    /// [`Gate::pass`]'s second half for a direct token request: `answer` counted in the metrics under `route`,
    /// the token answer's JSON kept as it is (to be written after a made head), an error as its whole answer
    /// with [`PROTOCOL_HEADER`].
    #[expect(
        clippy::result_large_err,
        reason = "the error is the answer itself, written next; boxing it would only add an allocation"
    )]
    fn answered(&self, route: Route, answer: Result<bytes::Bytes, ApiError>) -> Result<bytes::Bytes, Response> {
        match answer {
            Ok(json) => {
                self.metrics.answered(route, false, None);
                Ok(json)
            }
            Err(error) => {
                let response = error.into_response();
                self.counted(route, &response);
                Err(with_protocol(response))
            }
        }
    }

    /// Counts `response` in the metrics as an answer of `route`: failed if it is a 4xx or 5xx, under the error
    /// code it carries.
    fn counted(&self, route: Route, response: &Response) {
        let status = response.status();
        let failed = status.is_client_error() || status.is_server_error();
        self.metrics.answered(route, failed, response.extensions().get::<ErrorCode>().copied());
    }

    fn new(broker: &Broker, policy: PeerPolicy, activity: Arc<Activity>) -> Self {
        let peers = PeerCheck { policy, metrics: broker.metrics().clone() };
        Gate { peers, activity, metrics: broker.metrics().clone() }
    }
}

/// `response` with [`PROTOCOL_HEADER`], which clients check on every answer.
fn with_protocol(mut response: Response) -> Response {
    response.headers_mut().insert(PROTOCOL_HEADER, PROTOCOL_VALUE.clone());
    response
}

/// The whole API. Connections must carry [`Peer`] info (`into_make_service_with_connect_info::<Peer>()`);
/// without it every request is refused.
pub fn router(broker: Arc<Broker>, policy: PeerPolicy) -> Router {
    router_with_activity(broker, policy, Arc::new(Activity::default()))
}

/// [`router`], counting requests in `activity`.
pub fn router_with_activity(broker: Arc<Broker>, policy: PeerPolicy, activity: Arc<Activity>) -> Router {
    let gate = Gate::new(&broker, policy, activity.clone());
    router_with_gate(broker, gate, activity)
}

fn router_with_gate(broker: Arc<Broker>, gate: Gate, activity: Arc<Activity>) -> Router {
    Router::new()
        .route(routes::VERSION, get(version))
        .route(routes::TOKEN, get(token).delete(drop_token::drop_token))
        .route(routes::HEADER, get(header))
        .route(routes::SIGNIN, post(signin))
        .route(routes::SIGNOUT, post(signout))
        .route(routes::STATUS, get(status))
        .route(routes::CONFIG, get(config))
        .route(routes::REFRESH_IDLE, post(refresh_idle))
        .route(routes::HEALTHZ, get(|| async { "ok" }))
        .route(routes::METRICS, get(metrics))
        .merge(proxy::routes(broker.clone(), activity))
        .merge(crate::policy::policy_routes().with_state(broker.clone()))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route: see docs/api.md for the routes") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method: see docs/api.md")
        })
        .layer(middleware::from_fn_with_state(gate, self::gate))
        .with_state(AppState { broker })
}

/// Runs the API on `listener` with the default [`ConnectionLimits`] until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: UnixListener,
    broker: Arc<Broker>,
    policy: PeerPolicy,
    activity: Arc<Activity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, broker, policy, activity, ConnectionLimits::default(), shutdown).await
}

/// [`serve`] within `limits`. Peers `policy` refuses are answered before their request is read (see `accept.rs`).
pub async fn serve_with_limits(
    listener: UnixListener,
    broker: Arc<Broker>,
    policy: PeerPolicy,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = broker.metrics().clone();
    let gate = Gate::new(&broker, policy, activity.clone());
    let direct = Arc::new(Direct { gate: gate.clone(), broker: broker.clone() });
    let app = router_with_gate(broker, gate, activity);
    accept::accept_loop(listener, app, direct, policy, metrics, limits, shutdown).await
}

async fn version() -> Json<VersionResponse> {
    Json(VersionResponse { protocol: PROTOCOL_VERSION, daemon: env!("CARGO_PKG_VERSION").into() })
}

/// `GET /v1/token`: the broker's token, as JSON made once per second of `expires_in` and shared while the token
/// is cached (`answer::token_json`).
async fn token(State(app): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    token_route(&app.broker, TokenRoute::Token, attended(&headers), raw.as_deref()).await
}

/// `GET /v1/header`: the broker's token as ready-made headers, made once and shared while the token is cached.
async fn header(State(app): State<AppState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    token_route(&app.broker, TokenRoute::Header, attended(&headers), raw.as_deref()).await
}

/// The two routes that answer with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRoute {
    Token,
    Header,
}

/// What `GET /v1/token` and `GET /v1/header` answer, from whether the request says a user is at its terminal
/// (`request::attended`) and its raw query; shared by the router and the connections' direct routes
/// (`direct/`).
async fn token_route(broker: &Arc<Broker>, route: TokenRoute, attended: bool, query: Option<&str>) -> Response {
    match token_answer(broker, route, attended, query).await {
        Ok(json) => secret_answer(json),
        Err(error) => error.into_response(),
    }
}

/// [`token_route`]'s answer before it is a response: the JSON (in its wiped, shared buffer) or the error.
async fn token_answer(
    broker: &Arc<Broker>,
    route: TokenRoute,
    attended: bool,
    query: Option<&str>,
) -> Result<bytes::Bytes, ApiError> {
    issue_answer(broker, route, &TokenRequest { attended, ..token_query(query)? }).await
}

/// The answer to a token request already read: the JSON of the token `request` is issued (or the error).
async fn issue_answer(
    broker: &Arc<Broker>,
    route: TokenRoute,
    request: &TokenRequest,
) -> Result<bytes::Bytes, ApiError> {
    let issued = broker.token(request).await?;
    match route {
        TokenRoute::Token => token_json(&issued),
        TokenRoute::Header => header_json(&issued),
    }
}

async fn signin(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query: SignInQuery = parse_query(raw.as_deref())?;
    Ok(Json(app.broker.signin(query.profile.as_deref(), query.flow, attended(&headers)).await?).into_response())
}

async fn refresh_idle(State(app): State<AppState>) -> Response {
    Json(app.broker.refresh_idle().await).into_response()
}

async fn signout(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let query: ProfileQuery = parse_query(raw.as_deref())?;
    Ok(Json(app.broker.signout(query.profile.as_deref()).await?).into_response())
}

async fn status(State(app): State<AppState>) -> Response {
    Json(app.broker.status()).into_response()
}

/// The configuration in effect (the last one loaded, SIGHUP reloads included), with the line of each value.
async fn config(State(app): State<AppState>) -> Response {
    Json(app.broker.config().report()).into_response()
}

/// `GET /metrics`: the Prometheus text format, version 0.0.4.
async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let text = app
        .broker
        .metrics_text()
        .map_err(|_| ApiError::internal("the metrics could not be encoded; see the daemon's log"))?;
    Ok(([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

//! The routes asked most, `GET /v1/token` and `GET /v1/header`, answered by the accept loop without the router:
//! the same peer check, counting and protocol header ([`Gate::pass`]) and the same handler (`token_route`), minus
//! the router's work per request (the route lookup, the middleware's boxed futures, the extractors' copies of the
//! headers and query). Everything else, these paths with another method included, goes to the router, which
//! also keeps these two routes for routers served some other way (tests through `oneshot`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use graphbroker_protocol::routes;
use hyper::body::Incoming;

use super::peer::Peer;
use super::{Gate, TokenRoute, token_route};
use crate::broker::Broker;
use crate::metrics::Route;

/// A direct route's answer. Boxed, as the router boxes its routes' answers: hyper and the request's scopes move
/// the future they are given, and the token path's state is large.
pub(super) type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What the direct routes need: the gate's state and the broker.
#[derive(Debug)]
pub(super) struct Direct {
    pub gate: Gate,
    pub broker: Arc<Broker>,
}

impl Direct {
    /// Which direct route `request` is for, if any.
    pub(super) fn route(request: &hyper::Request<Incoming>) -> Option<TokenRoute> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, routes::TOKEN) => Some(TokenRoute::Token),
            (&Method::GET, routes::HEADER) => Some(TokenRoute::Header),
            _ => None,
        }
    }

    /// The answer to `request` from `peer`, for `route` (see [`Direct::route`]).
    pub(super) fn answer(self: &Arc<Self>, route: TokenRoute, peer: Peer, request: hyper::Request<Incoming>) -> Answer {
        let direct = self.clone();
        Box::pin(async move {
            let refusal = direct.gate.peers.refusal_of(Some(peer));
            let counted_as = Route::of_request(request.method(), request.uri().path());
            let answer = token_route(&direct.broker, route, request.headers(), request.uri().query());
            direct.gate.pass(refusal, counted_as, answer).await
        })
    }
}

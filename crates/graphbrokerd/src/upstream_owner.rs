//! A loopback upstream gets a token only from a socket its own user listens on.
//!
//! Config accepts plain `http` to a loopback host for a `graph_url` or an `authority` (the tests' stand-in, the
//! offline demo). Any user of the machine can listen on a loopback port, so a stand-in that is not running, or
//! a port another user took first, would otherwise receive the bearer token (or a refresh token, or an
//! authorization code). [`OwnerCheckLayer`] wraps the connector of every HTTP client that sends them (the Graph
//! proxy's and the identity platform's): once a connection to a loopback address is made, and before a byte of
//! the request is written, the accepted socket at its other end is looked up (`crate::tcp_owner`, the same
//! lookup the browser listener uses) and must belong to the daemon's own user; else the connection is dropped
//! and the request fails with an error saying so. Connections to other hosts pass untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `reqwest` connector layer that checks the owner of a loopback upstream (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnerCheckLayer;

impl<S> tower::Layer<S> for OwnerCheckLayer {
    type Service = OwnerCheck<S>;

    fn layer(&self, inner: S) -> OwnerCheck<S> {
        OwnerCheck(inner)
    }
}

/// A connector whose loopback connections are checked (see [`OwnerCheckLayer`]).
#[derive(Debug, Clone)]
pub struct OwnerCheck<S>(S);

impl<S, R> tower_service::Service<R> for OwnerCheck<S>
where
    S: tower_service::Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.0.call(request);
        Box::pin(async move {
            let connection = connecting.await.map_err(Into::into)?;
            check(&connection)?;
            Ok(connection)
        })
    }
}

/// Why a connection may not carry a request: its other end is on loopback and not the daemon's user's.
#[derive(Debug, thiserror::Error)]
#[error(
    "the loopback upstream {remote} is not run by this user ({refusal}); nothing was sent to it: start your own \
     stand-in there, or fix graph_url / authority in the config"
)]
pub struct ForeignUpstream {
    remote: std::net::SocketAddr,
    refusal: crate::tcp_owner::PeerRefusal,
}

fn check(connection: &impl Connection) -> Result<(), ForeignUpstream> {
    let mut extras = axum::http::Extensions::new();
    connection.connected().get_extras(&mut extras);
    let Some(info) = extras.get::<HttpInfo>() else { return Ok(()) };
    let remote = info.remote_addr();
    if !remote.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    crate::tcp_owner::check(remote, info.local_addr()).map_err(|refusal| {
        tracing::warn!(%remote, "refused to send a request to a loopback upstream of another user: {refusal}");
        ForeignUpstream { remote, refusal }
    })
}

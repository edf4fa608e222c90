//! Who may talk to the daemon: the peer's credentials from `SO_PEERCRED`, the policy, and the middleware that
//! refuses everyone else before any route runs. The accept loop (`accept.rs`) applies the same policy before a
//! request is even read; the middleware is the second line, for routers served some other way.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use graphbroker_protocol::ErrorCode;
use tokio::net::{UnixListener, UnixStream};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// The credentials of the process at the other end of a connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// `None` when the kernel could not tell (then the peer is refused).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`.
    pub fn of(stream: &UnixStream) -> Self {
        match stream.peer_cred() {
            Ok(cred) => Peer { uid: Some(cred.uid()), pid: cred.pid() },
            Err(_) => Peer { uid: None, pid: None },
        }
    }
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Peer::of(stream.io())
    }
}

/// What a refused peer is told.
pub(super) const FORBIDDEN_MESSAGE: &str = "this daemon serves only the user it runs as; start your own graphbrokerd";

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

    /// Whether `peer` may talk to the daemon; a peer whose uid the kernel could not tell may not.
    pub fn allows(&self, peer: &Peer) -> bool {
        peer.uid == Some(self.allowed_uid)
    }
}

/// The middleware's state: the policy, and the metrics that count its refusals.
#[derive(Debug, Clone)]
pub(super) struct PeerCheck {
    pub policy: PeerPolicy,
    pub metrics: Arc<Metrics>,
}

impl PeerCheck {
    /// The answer to `request` when its peer may not talk to the daemon (counted and logged); `None` to serve it.
    pub(super) fn refusal(&self, request: &Request) -> Option<Response> {
        self.refusal_of(request.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0))
    }

    /// The answer to a request from `peer` (`None`: not known) when it may not talk to the daemon; `None` to
    /// serve it.
    pub(super) fn refusal_of(&self, peer: Option<Peer>) -> Option<Response> {
        match peer {
            Some(peer) if self.policy.allows(&peer) => None,
            other => {
                tracing::warn!(peer = ?other, "refused a connection from another user");
                self.metrics.peer_refused();
                Some(ApiError::new(ErrorCode::Forbidden, FORBIDDEN_MESSAGE).into_response())
            }
        }
    }
}

//! The HTTP surface (one axum router) and the dedicated server thread that runs it, so the fake keeps
//! serving whatever runtime (or none) its caller uses.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get, post};

use crate::endpoints::Endpoint;
use crate::faults::{Fault, overridden, render, take_fault};
use crate::state::Shared;
use crate::{authorize, control, device, discovery, drive, graph, mail, messages, tokens};

/// Every route the fake serves. Unknown Graph paths get Graph's 400; other unknown paths axum's 404, wrong
/// methods its 405.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device::devicecode))
        .route("/{tenant}/oauth2/v2.0/token", post(tokens::token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/oauth2/v2.0/authorize/consent", post(authorize::consent_submit))
        .route("/{tenant}/oauth2/v2.0/logout", get(discovery::logout))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::keys))
        .route("/devicelogin", get(device::login_page).post(device::login_submit))
        .route("/v1.0/me", get(graph::me))
        .route("/beta/me", get(graph::me))
        .route("/v1.0/me/messages", get(messages::list))
        .route("/beta/me/messages", get(messages::list))
        .route("/v1.0/me/messages/{message_id}/attachments/{attachment_id}/$value", get(mail::attachment_value))
        .route("/v1.0/me/drive/{*rest}", any(drive::drive))
        .route("/_content/{id}", get(drive::preauthenticated))
        .merge(control::routes())
        .fallback(graph::unknown_path)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), fault_layer))
        .with_state(shared)
}

/// Counts every request to a known endpoint, and answers it with an armed fault if there is one.
pub(crate) async fn fault_layer(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(endpoint) = Endpoint::classify(request.uri().path()) else {
        return next.run(request).await;
    };
    let fault = {
        let mut state = shared.lock();
        state.stats.count_request(endpoint, request.uri().path());
        let fault = take_fault(&mut state.faults, endpoint);
        if fault.is_some() {
            state.stats.count_fault(endpoint);
        }
        fault
    };
    match fault {
        None | Some(Fault::Garbage { garbage: false }) => next.run(request).await,
        Some(Fault::Delay { delay_ms }) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            next.run(request).await
        }
        Some(Fault::Override { fields }) => {
            tracing::info!(endpoint = endpoint.name(), fields = ?fields.keys().collect::<Vec<_>>(), "answering with overridden fields");
            overridden(next.run(request).await, fields).await
        }
        Some(fault) => {
            tracing::info!(endpoint = endpoint.name(), ?fault, "answering with injected fault");
            render(endpoint, fault)
        }
    }
}

/// The server thread. Dropping it stops the server: open connections are cut, not drained, because a
/// test tearing the fake down must never hang on a client's idle keep-alive connection.
#[derive(Debug)]
pub(crate) struct ServerThread {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Serves `router` on `listener` from a new thread with its own current-thread runtime. Returns
    /// once the runtime is up; the listener is already bound, so clients can connect immediately.
    pub(crate) fn spawn(listener: TcpListener, router: Router) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new().name("fake-entra".to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    result = axum::serve(listener, router) => {
                        if let Err(error) = result {
                            tracing::error!(%error, "fake-entra server stopped");
                        }
                    }
                    _ = shutdown_rx => {}
                }
            });
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { shutdown: Some(shutdown), thread: Some(thread) }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(std::io::Error::other("fake-entra server thread exited before it was ready")),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

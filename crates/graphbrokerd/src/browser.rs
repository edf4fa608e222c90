//! Browser sign-in: authorization code + PKCE through the system browser and a one-shot loopback redirect.
//!
//! The daemon binds `127.0.0.1` and `[::1]` on one random port (`listen.rs`) and registers the redirect as
//! `http://localhost:PORT` — the form Entra expects of native apps (the port is ignored when matching the
//! registered `http://localhost`). Every connection is checked at `accept()` to come from the daemon's own user
//! (`crate::tcp_owner`, Linux); another user's is closed unread, and the listener is bounded in connections and
//! time (`serve.rs`). The listener then answers two things: `GET /start/<random>`, the launch page the browser is
//! opened on (`opener.rs`), which redirects to the authorize URL so that the URL never sits on a command line —
//! its path is fresh and unguessable for each sign-in, good for one redirect, and refused to a cross-site
//! request; and `GET /` carrying the sign-in's own `state`. Anything else (a favicon, a stray request, another
//! `/start`, a redirect with another state) gets a small error page with `Connection: close` and leaves the
//! sign-in waiting. The first redirect with the right state ends it — with a code, which is redeemed (retried
//! while the platform fails transiently) before the page says "signed in", or with the platform's error — and
//! the listener closes with every connection it had, as it does when the timeout runs out.

mod listen;
mod opener;
mod serve;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{oneshot, watch};
use zeroize::Zeroize as _;

pub use self::opener::{graphical_session, open_browser};
use crate::config::Profile;
use crate::idp::{AuthorizationCode, EntraError, PkceCodeVerifier, Platform, PlatformError, Tokens, classify};
use crate::retry::{PLATFORM_CALL, retry};
use crate::scopes::ScopeSet;

/// The launch page's path, followed by a fresh random part for each sign-in: the browser is opened on it, and it
/// redirects to the authorize URL, once.
const LAUNCH_PREFIX: &str = "/start/";

/// How a browser is opened for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSettings {
    /// Program and arguments; the launch page's URL is appended. `None`: the desktop's default browser.
    pub command: Option<Vec<String>>,
    /// How long the loopback listener waits for the redirect.
    pub timeout: Duration,
}

/// What the redirect brought. `Debug` does not show the code.
#[derive(Debug)]
enum Callback {
    Code(AuthorizationCode),
    Error { error: String, description: Option<String> },
}

/// The page the waiting browser tab gets once the sign-in has its outcome.
type PageReply = oneshot::Sender<Result<(), String>>;

/// The browser tab of a redeemed sign-in, waiting on the redirect to be told how the sign-in ended: it says
/// "signed in" only once the account is checked and stored.
#[derive(Debug)]
pub struct BrowserTab(PageReply);

impl BrowserTab {
    /// Answers the tab: signed in, or the sentence saying what went wrong.
    pub fn answer(self, outcome: Result<(), String>) {
        let _ = self.0.send(outcome);
    }
}

/// The redirect's channel and the PKCE verifier its code is redeemed with (oauth2's verifier type prints
/// redacted).
#[derive(Debug)]
struct Awaiting {
    delivered: oneshot::Receiver<(Callback, PageReply)>,
    verifier: PkceCodeVerifier,
    /// The `claims` of the authorize request, repeated on the redeem.
    claims: Option<String>,
}

struct Loopback {
    /// The OAuth `state` the redirect must carry.
    csrf_state: SecretString,
    /// Where the launch page sends the browser. It carries the `state` and the PKCE challenge.
    authorize_url: SecretString,
    deliver: Mutex<Option<oneshot::Sender<(Callback, PageReply)>>>,
    /// The random part of the launch page's path (`/start/<launch>`): 128 bits, fresh for each sign-in.
    launch: String,
    /// Whether the launch page has sent a browser on already: it does so once.
    launched: AtomicBool,
    /// The listener's port, for the `Host` and `Origin` a request from the user's own browser carries.
    port: u16,
}

/// A browser sign-in whose URL is ready and whose listener is waiting. `Debug` leaves out the URL's `state`.
pub struct BrowserSignIn {
    /// The authorize URL, for the waiting clients (over the socket only).
    pub url: String,
    /// The launch page (`http://127.0.0.1:PORT/start/<random>`): what the browser is opened on, once.
    pub launch_url: String,
    pub redirect_uri: String,
    pub port: u16,
    /// What the redirect is waited for with, until [`BrowserSignIn::finish`] takes it.
    awaiting: Option<Awaiting>,
    stop: Option<watch::Sender<bool>>,
    timeout: Duration,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback").finish_non_exhaustive()
    }
}

/// Binds the loopback listener and builds the authorize URL. The listener runs until [`BrowserSignIn::finish`]
/// completes (or the value is dropped).
pub async fn start(
    platform: &dyn Platform,
    profile: &Profile,
    scopes: &ScopeSet,
    claims: Option<&str>,
    settings: &BrowserSettings,
) -> Result<BrowserSignIn, PlatformError> {
    let sockets = listen::bind().await.map_err(|e| PlatformError::Local {
        detail: format!("could not open a loopback port for the browser redirect: {e}"),
    })?;
    let port = sockets.port;
    let redirect_uri = format!("http://localhost:{port}");
    let request = platform.authorize_url(profile, scopes, claims, &redirect_uri)?;
    let (deliver, delivered) = oneshot::channel();
    let launch_part: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let launch_url = format!("http://127.0.0.1:{port}{LAUNCH_PREFIX}{launch_part}");
    let loopback = Arc::new(Loopback {
        csrf_state: request.csrf_state,
        authorize_url: SecretString::from(request.url.as_str()),
        deliver: Mutex::new(Some(deliver)),
        launch: launch_part,
        launched: AtomicBool::new(false),
        port,
    });
    let app = Router::new()
        .route("/", get(redirect))
        .route(&format!("{LAUNCH_PREFIX}{{launch}}"), get(launch))
        .fallback(stray)
        .with_state(loopback);
    let (stop, stopped) = watch::channel(false);
    serve::spawn(sockets.listeners, app, stopped);
    Ok(BrowserSignIn {
        url: request.url,
        launch_url,
        redirect_uri,
        port,
        awaiting: Some(Awaiting { delivered, verifier: request.verifier, claims: claims.map(str::to_owned) }),
        stop: Some(stop),
        timeout: settings.timeout,
    })
}

impl BrowserSignIn {
    /// Waits for the redirect (up to the timeout), redeems the code, closes the listener. The browser tab is
    /// answered here when the sign-in failed, else handed back with the tokens for the caller to answer.
    pub async fn finish(
        mut self,
        platform: &dyn Platform,
        profile: &Profile,
        scopes: &ScopeSet,
    ) -> Result<(Tokens, BrowserTab), PlatformError> {
        let Some(Awaiting { delivered, verifier, claims }) = self.awaiting.take() else {
            return Err(PlatformError::Expired);
        };
        let outcome = match tokio::time::timeout(self.timeout, delivered).await {
            Err(_) => Err(PlatformError::Expired),
            Ok(Err(_)) => Err(PlatformError::Expired),
            Ok(Ok((Callback::Code(code), reply))) => {
                // A code is redeemed once; an outage answered before Entra took it (5xx, 429, no connection) leaves
                // it good, so the redeem is retried as every platform call is.
                let redirect_uri = &self.redirect_uri;
                let result = retry(PLATFORM_CALL, || {
                    let code = AuthorizationCode::new(code.secret().clone());
                    let verifier = PkceCodeVerifier::new(verifier.secret().clone());
                    platform.redeem_code(profile, scopes, code, verifier, redirect_uri, claims.as_deref())
                })
                .await;
                match result {
                    Ok(tokens) => Ok((tokens, BrowserTab(reply))),
                    Err(failure) => {
                        let _ = reply.send(Err(describe(&failure)));
                        Err(failure)
                    }
                }
            }
            Ok(Ok((Callback::Error { error, description }, reply))) => {
                let failure = if error == "access_denied" {
                    PlatformError::Declined
                } else {
                    classify(&EntraError { error, error_description: description, ..EntraError::default() })
                };
                let _ = reply.send(Err(describe(&failure)));
                Err(failure)
            }
        };
        self.close();
        outcome
    }

    fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
    }
}

impl Drop for BrowserSignIn {
    fn drop(&mut self) {
        self.close();
    }
}

/// What went wrong, for the browser tab.
fn describe(failure: &PlatformError) -> String {
    match failure {
        PlatformError::Declined => "the sign-in was cancelled. Ask graphbroker again to start a new one.".into(),
        PlatformError::Expired => "the sign-in took too long. Ask graphbroker again to start a new one.".into(),
        PlatformError::AccountDead { detail, .. }
        | PlatformError::NeedsUser { detail, .. }
        | PlatformError::Transient { detail, .. }
        | PlatformError::Refused { detail, .. }
        | PlatformError::Local { detail } => {
            format!("{detail}. Ask graphbroker again; if it repeats, check the profile.")
        }
    }
}

impl std::fmt::Debug for BrowserSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSignIn")
            .field("url", &graphbroker_protocol::redact_url(&self.url))
            .field("launch_url", &self.launch_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The redirect's query. No `Debug`: it holds the code and the state.
#[derive(Default, serde::Deserialize)]
struct RedirectQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The launch page: the user's own browser, opened on this sign-in's launch path, is sent on to the authorize URL
/// once. Another path, a second visit, or a request a web page made (cross-site, or naming another host) is 404.
async fn launch(State(loopback): State<Arc<Loopback>>, Path(given): Path<String>, headers: HeaderMap) -> Response {
    let foreign = foreign_request(&headers, loopback.port);
    if given != loopback.launch || foreign.is_some() {
        if let Some(why) = foreign {
            tracing::warn!("refused the browser sign-in's launch page to a request {why}");
        }
        return stray().await;
    }
    if loopback.launched.swap(true, Ordering::SeqCst) {
        tracing::warn!("refused the browser sign-in's launch page a second time");
        return stray().await;
    }
    let Ok(location) = axum::http::HeaderValue::from_str(loopback.authorize_url.expose_secret()) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "No sign-in page", "The sign-in URL is not valid.");
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::LOCATION, location);
    headers.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    headers.insert(axum::http::header::REFERRER_POLICY, axum::http::HeaderValue::from_static("no-referrer"));
    response
}

/// Why a request did not come from the user's own browser opened on the listener, if it did not: it names
/// another `Host` than the listener (a DNS rebinding page), carries another `Origin`, or the browser marks it as
/// made by another site (`Sec-Fetch-Site`). A browser opened on the URL sends `Sec-Fetch-Site: none`.
fn foreign_request(headers: &HeaderMap, port: u16) -> Option<&'static str> {
    let ours = |value: &str| ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| value == format!("{host}:{port}"));
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = text("host")
        && !ours(host)
    {
        return Some("for another host");
    }
    if let Some(origin) = text("origin")
        && !origin.strip_prefix("http://").is_some_and(ours)
    {
        return Some("from another origin");
    }
    match text("sec-fetch-site") {
        None | Some("none" | "same-origin") => None,
        Some(_) => Some("made by another site"),
    }
}

/// Whether `host` (a `Host` header, or an origin without its scheme) names the listener.
fn is_listener(host: &str, port: u16) -> bool {
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|name| host.strip_prefix(name) == Some(&format!(":{port}")))
}

async fn redirect(State(loopback): State<Arc<Loopback>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if !headers.get("host").is_none_or(|host| host.to_str().is_ok_and(|host| is_listener(host, loopback.port))) {
        return stray().await; // not addressed to the listener: a DNS rebinding page
    }
    let mut raw = raw.unwrap_or_default();
    let mut query: RedirectQuery = serde_urlencoded::from_str(&raw).unwrap_or_default();
    raw.zeroize(); // the code and the state, as they came
    let state_matches = query.state.as_deref() == Some(loopback.csrf_state.expose_secret());
    if let Some(state) = query.state.as_mut() {
        state.zeroize();
    }
    if !state_matches {
        // Not this sign-in's redirect (a stale tab, another program): refuse without ending the sign-in.
        return page(
            StatusCode::BAD_REQUEST,
            "Not this sign-in",
            "This page does not belong to the sign-in graphbroker is waiting for. Use the newest sign-in link.",
        );
    }
    let callback = match (query.code, query.error) {
        (_, Some(error)) => Callback::Error { error, description: query.error_description },
        (Some(code), None) if !code.is_empty() => Callback::Code(AuthorizationCode::new(code)),
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "No sign-in code",
                "The identity platform sent no code. graphbroker is still waiting: finish signing in from the link.",
            );
        }
    };
    let Some(deliver) = loopback.deliver.lock().expect("loopback lock").take() else {
        return page(StatusCode::GONE, "Already done", "This sign-in has already finished. You can close this tab.");
    };
    let (reply, outcome) = oneshot::channel();
    if deliver.send((callback, reply)).is_err() {
        return page(
            StatusCode::GONE,
            "Sign-in over",
            "This sign-in has ended. Ask graphbroker again to start a new one.",
        );
    }
    match outcome.await {
        Ok(Ok(())) => page(StatusCode::OK, "Signed in", "You are signed in to graphbroker. You can close this tab."),
        Ok(Err(message)) => page(StatusCode::OK, "Sign-in failed", &message),
        Err(_) => page(StatusCode::GONE, "Sign-in over", "This sign-in has ended. Ask graphbroker again."),
    }
}

async fn stray() -> Response {
    page(StatusCode::NOT_FOUND, "Not found", "graphbroker's sign-in listener answers only the sign-in redirect.")
}

/// A small self-contained page (no scripts, no external resources).
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>graphbroker: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}</style></head><body><h1 id=\"title\">{title}</h1><p id=\"message\">{message}</p></body></html>",
        title = escape(title),
        message = escape(message),
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    if status.is_client_error() || status.is_server_error() {
        // A refusal ends its connection: a stray client gets no kept-alive connection to try again on.
        headers.insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(escape("<b>&\"x\"</b>"), "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;");
    }
}

//! Browser sign-in: authorization code + PKCE through the system browser and a one-shot loopback redirect.
//!
//! The daemon binds `127.0.0.1` on a random port and registers the redirect as `http://localhost:PORT` — the
//! form Entra expects of native apps (the port is ignored when matching the registered `http://localhost`).
//! The listener answers only `GET /` carrying the sign-in's own `state`: anything else (a favicon, a stray
//! request, a redirect with another state) gets a small error page and leaves the sign-in waiting. The first
//! redirect with the right state ends it — with a code, which is redeemed before the page says "signed in", or
//! with the platform's error — and the listener closes, as it does when the timeout runs out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use crate::config::Profile;
use crate::idp::{AuthorizationCode, EntraError, PkceCodeVerifier, Platform, PlatformError, Tokens, classify};
use crate::scopes::ScopeSet;

/// How a browser is opened for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSettings {
    /// Program and arguments; the URL is appended. `None`: the desktop's default browser.
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

/// The redirect's channel and the PKCE verifier its code is redeemed with (oauth2's verifier type prints
/// redacted).
#[derive(Debug)]
struct Awaiting {
    delivered: oneshot::Receiver<(Callback, PageReply)>,
    verifier: PkceCodeVerifier,
}

struct Loopback {
    /// The OAuth `state` the redirect must carry.
    csrf_state: SecretString,
    deliver: Mutex<Option<oneshot::Sender<(Callback, PageReply)>>>,
}

/// A browser sign-in whose URL is ready and whose listener is waiting.
#[derive(Debug)]
pub struct BrowserSignIn {
    pub url: String,
    pub redirect_uri: String,
    pub port: u16,
    /// What the redirect is waited for with, until [`BrowserSignIn::finish`] takes it.
    awaiting: Option<Awaiting>,
    stop: Option<oneshot::Sender<()>>,
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
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| PlatformError::Local {
        detail: format!("could not open a loopback port for the browser redirect: {e}"),
    })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let redirect_uri = format!("http://localhost:{port}");
    let request = platform.authorize_url(profile, scopes, claims, &redirect_uri)?;
    let (deliver, delivered) = oneshot::channel();
    let loopback = Arc::new(Loopback { csrf_state: request.csrf_state, deliver: Mutex::new(Some(deliver)) });
    let app = Router::new().route("/", get(redirect)).fallback(stray).with_state(loopback);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serving.await {
            tracing::warn!("the browser redirect listener failed: {e}");
        }
    });
    Ok(BrowserSignIn {
        url: request.url,
        redirect_uri,
        port,
        awaiting: Some(Awaiting { delivered, verifier: request.verifier }),
        stop: Some(stop),
        timeout: settings.timeout,
    })
}

impl BrowserSignIn {
    /// Waits for the redirect (up to the timeout), redeems the code, answers the browser tab, closes the
    /// listener.
    pub async fn finish(
        mut self,
        platform: &dyn Platform,
        profile: &Profile,
        scopes: &ScopeSet,
    ) -> Result<Tokens, PlatformError> {
        let Some(Awaiting { delivered, verifier }) = self.awaiting.take() else {
            return Err(PlatformError::Expired);
        };
        let outcome = match tokio::time::timeout(self.timeout, delivered).await {
            Err(_) => Err(PlatformError::Expired),
            Ok(Err(_)) => Err(PlatformError::Expired),
            Ok(Ok((Callback::Code(code), reply))) => {
                let result = platform.redeem_code(profile, scopes, code, verifier, &self.redirect_uri).await;
                let _ = reply.send(result.as_ref().map(|_| ()).map_err(describe));
                result
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
            let _ = stop.send(());
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

#[derive(Debug, Default, serde::Deserialize)]
struct RedirectQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn redirect(State(loopback): State<Arc<Loopback>>, RawQuery(raw): RawQuery) -> Response {
    let query: RedirectQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    if query.state.as_deref() != Some(loopback.csrf_state.expose_secret()) {
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
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Opens `url` in a browser: the configured command, else the desktop's default. Failing to open is not
/// fatal — the URL also goes back to every waiting client, to be opened by hand.
pub fn open_browser(url: &str, settings: &BrowserSettings) {
    let result = match &settings.command {
        Some(command) => std::process::Command::new(&command[0])
            .args(&command[1..])
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(|_| ()),
        None => open::that_detached(url),
    };
    if let Err(e) = result {
        tracing::warn!("could not open a browser ({e}); the sign-in URL was handed to the waiting clients");
    }
}

/// Whether a graphical session is present, for `flow = "auto"`: always on macOS; on other systems when
/// `DISPLAY` or `WAYLAND_DISPLAY` is set.
pub fn graphical_session(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    cfg!(target_os = "macos") || ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| env(v).is_some_and(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_means_browser_only_with_a_display() {
        if cfg!(target_os = "macos") {
            return;
        }
        assert!(!graphical_session(|_| None));
        assert!(!graphical_session(|_| Some("".into())));
        assert!(graphical_session(|v| (v == "WAYLAND_DISPLAY").then(|| "wayland-0".into())));
        assert!(graphical_session(|v| (v == "DISPLAY").then(|| ":0".into())));
    }

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(escape("<b>&\"x\"</b>"), "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;");
    }
}

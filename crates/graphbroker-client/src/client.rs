//! The connection to graphbrokerd: one method per route, each answering a typed body or a typed [`Error`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphbroker_protocol::{
    ConfigResponse, ErrorBody, HeaderResponse, PROTOCOL_HEADER, PROTOCOL_VERSION, ProfileQuery, SignInFlow,
    SignInQuery, SignInResponse, SignoutResponse, StatusResponse, TokenQuery, TokenResponse, VersionResponse,
    resolve_socket_path, routes,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connect::{CheckedConnector, ConnectError};
use crate::error::{Error, describe_parse_failure};

/// How long the daemon may take to answer beyond any `wait` the request asked for. The daemon retries the
/// identity platform with backoff before it gives up on a transient failure, so an answer can legitimately take
/// tens of seconds; past this margin something is stuck and a script is better off with an error than a hang.
pub const DEFAULT_ANSWER_MARGIN: Duration = Duration::from_secs(90);

/// A handle on graphbrokerd's socket. Cloning is cheap and clones share one connection pool.
///
/// Every connection is checked before a request goes out on it: the socket's directory must be the user's alone
/// and the listener must run as the user (see `connect.rs`); and every answer but `/v1/version`'s must carry the
/// daemon's protocol version ([`graphbroker_protocol::PROTOCOL_HEADER`]) equal to this client's.
#[derive(Clone)]
pub struct Client {
    pub(crate) socket: Arc<PathBuf>,
    pub(crate) uid: u32,
    http: HttpClient<CheckedConnector, Full<Bytes>>,
    answer_margin: Duration,
    pub(crate) shows_prompts: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("socket", &self.socket).field("answer_margin", &self.answer_margin).finish()
    }
}

impl Client {
    /// A client of the daemon listening on `socket_path`. Nothing is connected until the first request.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        let socket = Arc::new(socket_path.into());
        let uid = nix::unistd::getuid().as_raw();
        let http = HttpClient::builder(TokioExecutor::new()).build(CheckedConnector::new(socket.clone(), uid));
        Self { socket, uid, http, answer_margin: DEFAULT_ANSWER_MARGIN, shows_prompts: false }
    }

    /// A client of the daemon at the usual place: `GRAPHBROKER_SOCKET`, else the per-user runtime directory
    /// (see [`graphbroker_protocol::resolve_socket_path`]). Fails with [`Error::NoSocketPath`] when neither is
    /// set and there is no private temporary directory: a shared `/tmp` is never used.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(resolve_socket_path(|name| std::env::var_os(name), nix::unistd::getuid().as_raw())?))
    }

    /// Sets how long the daemon may take to answer beyond a request's `wait` ([`DEFAULT_ANSWER_MARGIN`] unless
    /// set). A short margin suits liveness probes.
    pub fn with_answer_margin(mut self, margin: Duration) -> Self {
        self.answer_margin = margin;
        self
    }

    /// Says on every request that this client shows sign-in prompts to a person at a terminal
    /// ([`graphbroker_protocol::TERMINAL_HEADER`]), so the daemon does not also show them as desktop
    /// notifications. Off unless set: a program that does not show prompts should not claim to.
    pub fn showing_prompts(mut self, shows: bool) -> Self {
        self.shows_prompts = shows;
        self
    }

    /// `POST /v1/refresh-idle`: the rolling refresh of every profile's idle account (what the daily timer runs).
    pub async fn refresh_idle(&self) -> Result<graphbroker_protocol::RefreshIdleResponse, Error> {
        // Each idle account costs one refresh, retried on transient failures: allow for a few in a row.
        self.call(Method::POST, routes::REFRESH_IDLE, None, Duration::from_secs(120)).await
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/version`: the daemon's protocol and package versions. The one answer whose protocol header is
    /// not checked: the route never changes shape, so it can report a mismatch in words (see `version`).
    pub async fn version(&self) -> Result<VersionResponse, Error> {
        self.call(Method::GET, routes::VERSION, None, Duration::ZERO).await
    }

    /// `GET /v1/token`: an access token, or `signin_required` (and friends) as [`Error::Daemon`]. With
    /// `query.wait` set the daemon holds the request while a sign-in goes on; see also
    /// [`Client::token_with_signin`].
    pub async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, Error> {
        self.ask(routes::TOKEN, query).await
    }

    /// `DELETE /v1/token`: drops the cached access token of `query`'s profile and scopes, so that the next
    /// [`Client::token`] for them gets a new one (a server refused the token). The account stays signed in.
    pub async fn drop_token(
        &self,
        query: &graphbroker_protocol::DropTokenQuery,
    ) -> Result<graphbroker_protocol::DropTokenResponse, Error> {
        self.call(Method::DELETE, routes::TOKEN, Some(encode_query(query)?), Duration::ZERO).await
    }

    /// `GET /v1/header`: the headers a Microsoft Graph call needs, for the same query as [`Client::token`].
    pub async fn header(&self, query: &TokenQuery) -> Result<HeaderResponse, Error> {
        self.ask(routes::HEADER, query).await
    }

    /// `POST /v1/signin`: starts (or joins) the profile's sign-in and answers its prompt, or the account when the
    /// profile is already signed in. `None` means the daemon's default profile and the profile's flow.
    pub async fn signin(&self, profile: Option<&str>, flow: Option<SignInFlow>) -> Result<SignInResponse, Error> {
        let query = encode_query(&SignInQuery { profile: profile.map(str::to_owned), flow })?;
        self.call(Method::POST, routes::SIGNIN, Some(query), Duration::ZERO).await
    }

    /// `POST /v1/signout`: forgets the profile's account (keychain entry and cached tokens).
    pub async fn signout(&self, profile: Option<&str>) -> Result<SignoutResponse, Error> {
        let query = encode_query(&ProfileQuery { profile: profile.map(str::to_owned) })?;
        self.call(Method::POST, routes::SIGNOUT, Some(query), Duration::ZERO).await
    }

    /// `GET /v1/status`: profiles, accounts, pending sign-ins and cached token expiries (never token values).
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        self.call(Method::GET, routes::STATUS, None, Duration::ZERO).await
    }

    /// `GET /v1/config`: the configuration the daemon runs with, each value with the file line it came from.
    pub async fn config(&self) -> Result<ConfigResponse, Error> {
        self.call(Method::GET, routes::CONFIG, None, Duration::ZERO).await
    }

    /// `GET /metrics`: the daemon's metrics in the Prometheus text format, as sent (counts only: no scope,
    /// account or token is in them).
    pub async fn metrics(&self) -> Result<String, Error> {
        let (status, body) = self.send(Method::GET, routes::METRICS, None, Duration::ZERO).await?;
        if !status.is_success() {
            return decode::<serde_json::Value>(routes::METRICS, status, &body).map(|_| String::new());
        }
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Protocol(format!("{} answered a body that is not UTF-8", routes::METRICS)))
    }

    /// `GET /healthz`: succeeds when the daemon is up and answering.
    pub async fn healthz(&self) -> Result<(), Error> {
        let (status, _) = self.send(Method::GET, routes::HEALTHZ, None, Duration::ZERO).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Protocol(format!("{} answered HTTP {}", routes::HEALTHZ, status.as_u16())))
        }
    }

    /// A token or header request, allowing for the time the daemon may hold it.
    pub(crate) async fn ask<T: DeserializeOwned>(&self, route: &str, query: &TokenQuery) -> Result<T, Error> {
        let held_for = Duration::from_secs(query.wait.unwrap_or(0));
        self.call(Method::GET, route, Some(encode_query(query)?), held_for).await
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        query: Option<String>,
        held_for: Duration,
    ) -> Result<T, Error> {
        let (status, body) = self.send(method, route, query, held_for).await?;
        decode(route, status, &body)
    }

    async fn send(
        &self,
        method: Method,
        route: &str,
        query: Option<String>,
        held_for: Duration,
    ) -> Result<(StatusCode, Bytes), Error> {
        // The authority is a placeholder: the connector is bound to this client's socket.
        let uri = match query {
            Some(query) if !query.is_empty() => format!("http://localhost{route}?{query}"),
            _ => format!("http://localhost{route}"),
        };
        let mut request = Request::builder().method(method).uri(uri).header(hyper::header::ACCEPT, "application/json");
        if self.shows_prompts {
            request = request.header(graphbroker_protocol::TERMINAL_HEADER, "1");
        }
        let request = request.body(Full::new(Bytes::new())).map_err(|error| Error::Request(error.to_string()))?;
        let limit = held_for.saturating_add(self.answer_margin);
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| self.transport_error(error))?;
            if route != routes::VERSION {
                self.check_protocol(response.headers())?;
            }
            let status = response.status();
            Ok((status, self.read_body(response.into_body()).await?))
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| Error::Timeout { path: self.socket.to_path_buf(), after: limit })?
    }

    /// A whole answer body; a connection lost midway is [`Error::Connection`].
    pub(crate) async fn read_body(&self, body: hyper::body::Incoming) -> Result<Bytes, Error> {
        let collected = body.collect().await;
        let collected = collected
            .map_err(|error| Error::Connection { path: self.socket.to_path_buf(), source: Box::new(error) })?;
        Ok(collected.to_bytes())
    }

    /// The answer's protocol header must name this client's protocol.
    pub(crate) fn check_protocol(&self, headers: &hyper::HeaderMap) -> Result<(), Error> {
        let daemon = headers.get(PROTOCOL_HEADER).and_then(|value| value.to_str().ok()?.trim().parse::<u32>().ok());
        if daemon == Some(PROTOCOL_VERSION) {
            return Ok(());
        }
        Err(Error::ProtocolMismatch { path: self.socket.to_path_buf(), daemon, client: PROTOCOL_VERSION })
    }

    /// Sorts a failed exchange into "daemon not running" (the case autostart can fix), a socket the client refused
    /// to trust, and everything else.
    pub(crate) fn transport_error(&self, error: hyper_util::client::legacy::Error) -> Error {
        let path = self.socket.to_path_buf();
        let io_error = match find_error::<ConnectError>(&error) {
            Some(ConnectError::Directory(directory)) => {
                return Error::UnsafeSocketDirectory { socket: path, directory: directory.clone() };
            }
            Some(ConnectError::Listener { uid }) => {
                return Error::UntrustedListener { path, listener: *uid, expected: self.uid };
            }
            Some(ConnectError::Io(io_error)) => Some(io_error),
            None => find_error::<io::Error>(&error),
        };
        if error.is_connect()
            && let Some(io_error) = io_error
            && matches!(io_error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
        {
            let source = match io_error.raw_os_error() {
                Some(errno) => io::Error::from_raw_os_error(errno),
                None => io::Error::from(io_error.kind()),
            };
            return Error::Unreachable { path, source };
        }
        Error::Connection { path, source: Box::new(error) }
    }
}

/// The first error of type `E` in `error`'s chain of sources.
fn find_error<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

pub(crate) fn encode_query(query: &impl Serialize) -> Result<String, Error> {
    serde_urlencoded::to_string(query).map_err(|error| Error::Request(error.to_string()))
}

/// A 2xx body is the route's type; anything else should be the error envelope.
pub(crate) fn decode<T: DeserializeOwned>(route: &str, status: StatusCode, body: &[u8]) -> Result<T, Error> {
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|error| Error::Protocol(describe_parse_failure(route, &error)));
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(envelope) => Err(Error::Daemon { status: status.as_u16(), detail: Box::new(envelope.error) }),
        Err(_) => Err(Error::Protocol(format!("{route} answered HTTP {} without an error envelope", status.as_u16()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_protocol::ErrorCode;

    #[test]
    fn token_queries_leave_out_what_is_not_set() {
        let query = TokenQuery {
            scopes: Some("User.Read Mail.Read".into()),
            profile: Some("work".into()),
            wait: Some(60),
            ..TokenQuery::default()
        };
        assert_eq!(encode_query(&query).unwrap(), "scopes=User.Read+Mail.Read&profile=work&wait=60");
        assert_eq!(encode_query(&TokenQuery::default()).unwrap(), "");
    }

    #[test]
    fn signin_queries_spell_the_flow_as_the_daemon_does() {
        let query = SignInQuery { profile: Some("work".into()), flow: Some(SignInFlow::Browser) };
        assert_eq!(encode_query(&query).unwrap(), "profile=work&flow=browser");
    }

    #[test]
    fn an_error_envelope_becomes_a_typed_error() {
        let body = br#"{"error":{"code":"invalid_scopes","message":"scopes name two resources; ask for one"}}"#;
        let error = decode::<TokenResponse>("/v1/token", StatusCode::BAD_REQUEST, body).unwrap_err();
        assert!(matches!(error, Error::Daemon { status: 400, .. }), "{error:?}");
        assert_eq!(error.code(), Some(ErrorCode::InvalidScopes));
    }

    #[test]
    fn a_non_envelope_error_is_a_protocol_error() {
        let error = decode::<TokenResponse>("/v1/nope", StatusCode::NOT_FOUND, b"").unwrap_err();
        assert_eq!(
            error.to_string(),
            "could not understand graphbrokerd's answer: /v1/nope answered HTTP 404 without an error envelope; \
             compare versions with `graphbroker-client version`"
        );
    }
}

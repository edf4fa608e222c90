//! The Graph reverse proxy: `/graph/{version}/{path…}` on the socket is forwarded to the profile's Microsoft
//! Graph endpoint with the `Authorization` header attached, and a Continuous Access Evaluation challenge in
//! the answer is met with one token renewal and one retry.
//!
//! - The host is never the caller's choice: it is the profile's `graph_url`, which config only accepts as a
//!   Graph host of a cloud or a loopback stand-in. The path is checked so it cannot climb out of
//!   `/{version}/`, and redirects are passed back, never followed, so the header never goes anywhere else.
//! - Method, query, headers (but hop-by-hop ones and the caller's own `Authorization`) and bodies pass both
//!   ways; bodies are streamed. A body up to [`body::REPLAY_LIMIT`] is kept so that a challenged call can be
//!   sent again.
//! - Graph's throttling (429, 503 with `Retry-After`) passes through unchanged: the caller decides when to
//!   come back.

mod body;
pub(crate) mod challenge;
mod links;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use graphbroker_protocol::{ErrorCode, proxy as names};
use secrecy::ExposeSecret;
use url::Url;

use futures_util::StreamExt as _;

use self::body::Outgoing;
use super::activity::{Activity, Streaming};
use super::answer::bearer;
use super::request::proxy_request;
use crate::broker::{Broker, TokenRequest};
use crate::error::ApiError;
use crate::idp::ClaimsChallenge;

/// How long connecting to Graph may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Graph may stay silent, between any two pieces of an answer. Graph answers most calls in well
/// under a second; reports and large downloads stream steadily once started.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those the proxy sets itself.
const NOT_FORWARDED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "expect",
];

/// The HTTP client for Graph: no redirects followed (a 302 to a pre-authenticated download URL goes back to the
/// caller, without the bearer), no decompression (bodies pass as they are).
#[derive(Debug, Clone)]
struct GraphClient(Option<reqwest::Client>);

impl GraphClient {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .connector_layer(crate::upstream_owner::OwnerCheckLayer)
            .build();
        match client {
            Ok(client) => Self(Some(client)),
            Err(error) => {
                tracing::error!("the Graph proxy is off: its HTTP client could not be built: {error}");
                Self(None)
            }
        }
    }
}

/// What a proxied call needs: the broker for its token, the client to Graph, and the activity its streaming
/// answer counts into.
#[derive(Debug, Clone)]
struct Proxy {
    broker: Arc<Broker>,
    graph: GraphClient,
    activity: Arc<Activity>,
}

/// The proxy's route, `/graph/{version}/{path…}`, any method, with its own state.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    broker: Arc<Broker>,
    activity: Arc<Activity>,
) -> axum::Router<S> {
    let proxy = Proxy { broker, graph: GraphClient::new(), activity };
    axum::Router::new().route("/graph/{*path}", any(forward)).with_state(proxy)
}

/// Any method on `/graph/{version}/{path…}`.
async fn forward(State(app): State<Proxy>, request: Request) -> Response {
    match forward_inner(&app, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward_inner(app: &Proxy, request: Request) -> Result<Response, ApiError> {
    let Some(client) = app.graph.0.clone() else {
        return Err(ApiError::internal("the Graph proxy could not start its HTTP client; the daemon's log says why"));
    };
    let (parts, body) = request.into_parts();
    let token_request = proxy_request(&parts.headers)?;
    // Refused before any token is fetched; the URL itself is made from the token's profile (below).
    graph_path(parts.uri.path())?;
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("the request method is not one HTTP knows"))?;
    if axum::body::HttpBody::size_hint(&body).exact() != Some(0) {
        // Reading a body waits on the caller: it does so off the serving slots (see `crate::waiting`).
        crate::waiting::waiting_on_peer();
    }
    let mut outgoing = Outgoing::read(body).await?;
    let mut token = app.broker.token(&token_request).await?;

    let mut retried = false;
    loop {
        // The profile is resolved once per token, by the broker: the call goes to the Graph of the configuration
        // the token was issued under, whatever a reload changed since.
        let base = &token.profile.graph_url;
        let target = target_url(base, parts.uri.path(), parts.uri.query())?;
        let links = links::Rewrite::for_request(&parts.headers, base);
        let (body, replayable) = outgoing.attempt();
        let upstream = client
            .request(method.clone(), target.clone())
            .headers(links::uncompressed(forwarded(&parts.headers)))
            .body(body)
            .header(header::AUTHORIZATION, bearer_header(token.access_token().expose_secret())?);
        let answer = upstream.send().await.map_err(|e| unreachable(&target, e, replayable))?;
        let challenge = claims_challenge(&answer);
        let Some(challenge) = challenge.filter(|_| !retried) else {
            return Ok(passed_back(answer, None, &links, &app.activity));
        };
        tracing::info!(profile = %token.profile.name, "Graph sent a claims challenge; renewing the token");
        let challenge = ClaimsChallenge::parse(&challenge).ok().flatten().ok_or_else(|| {
            ApiError::new(
                ErrorCode::GraphUnavailable,
                "Graph sent a claims challenge that is not base64 JSON; the call was not retried",
            )
        })?;
        let challenged = Some(token.access_token().clone());
        let renewal = TokenRequest { claims: Some(challenge), challenged, ..token_request.clone() };
        token = app.broker.token(&renewal).await?;
        if !replayable {
            return Ok(passed_back(answer, Some("renewed"), &links, &app.activity));
        }
        retried = true;
    }
}

/// `{graph_url}/{version}/{path}?{query}` for the request path `/graph/{version}/{path}`, refused unless it stays
/// on the Graph host under `/{version}/`.
pub(crate) fn target_url(base: &Url, path: &str, query: Option<&str>) -> Result<Url, ApiError> {
    let (version, rest) = graph_path(path)?;
    // The base's scheme and host as they are (parsed once, with the config), and only the path and query parsed
    // here: the same URL as parsing the whole text, without parsing the host again for each call.
    let mut url = base.clone();
    url.set_path(&format!("{}/{version}/{rest}", base.path().trim_end_matches('/')));
    url.set_query(query);
    // Defence in depth: whatever the parser made of it, it must still be the Graph host and the version.
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin
        || !url.path().strip_prefix('/').and_then(|p| p.strip_prefix(version)).is_some_and(|p| p.starts_with('/'))
    {
        return Err(ApiError::bad_request(format!("{path:?} would leave the Graph endpoint; it was not sent")));
    }
    Ok(url)
}

/// The version and the rest of the request path `/graph/{version}/{path}`, refused unless the version is one of
/// Graph's and no segment of the rest could climb out of it.
fn graph_path(path: &str) -> Result<(&str, &str), ApiError> {
    let rest = path.strip_prefix(graphbroker_protocol::routes::GRAPH_PREFIX).unwrap_or_default();
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !names::VERSIONS.contains(&version) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{version:?} is not a Graph version: use /graph/v1.0/… or /graph/beta/…"),
        ));
    }
    if rest.is_empty() || rest.split('/').any(segment_refused) {
        return Err(ApiError::bad_request(format!(
            "{path:?} is not a Graph path: give /graph/{version}/ and a path without empty, . or .. segments, \\, \
             or an encoded / or \\ (%2F, %5C)"
        )));
    }
    Ok((version, rest))
}

/// Whether a path segment is refused: empty, holding a `\\`, an encoded `/` or `\\` (in any case), or one that
/// decodes to `.` or `..`. A server that decodes `%2F` before routing would otherwise see a path that climbs out of
/// `/{version}/`, whatever this daemon made of it.
fn segment_refused(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    if segment.is_empty() || segment.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return true;
    }
    let decoded = percent_decoded(segment);
    decoded == b"." || decoded == b".."
}

/// `segment` with every `%XX` decoded (a `%` not followed by two hex digits stays as it is).
fn percent_decoded(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The caller's headers minus connection-level ones, its own `Authorization` and the proxy's `X-Graphbroker-*`.
fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let connection_named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.as_str();
        let dropped = NOT_FORWARDED.contains(&lower)
            || lower == "authorization"
            || lower.starts_with("x-graphbroker-")
            || lower == graphbroker_protocol::TERMINAL_HEADER
            || connection_named.iter().any(|n| n == lower);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// `Bearer <token>` as a header value marked sensitive, in a buffer that is wiped when the value is dropped.
fn bearer_header(token: &str) -> Result<HeaderValue, ApiError> {
    let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(bearer(token)))
        .map_err(|_| ApiError::internal("the access token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The `claims` of a 401 (or a Conditional Access 403) carrying `error="insufficient_claims"`.
fn claims_challenge(answer: &reqwest::Response) -> Option<String> {
    if !matches!(answer.status().as_u16(), 401 | 403) {
        return None;
    }
    let values = answer.headers().get_all(header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
    challenge::insufficient_claims(values)
}

/// Graph's answer as the caller's: status, headers but the connection-level ones, and the body as a stream,
/// its OData links rewritten to the proxy's when it is JSON (`links.rs`).
fn passed_back(
    answer: reqwest::Response,
    claims: Option<&'static str>,
    links: &links::Rewrite,
    activity: &Arc<Activity>,
) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = forwarded_back(answer.headers());
    let rewrite = links::Rewrite::applies(answer.headers()).then(|| links.clone());
    if rewrite.is_some() {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            HeaderName::from_static(names::REWRITTEN_HEADER),
            HeaderValue::from_static(names::REWRITTEN_ODATA_LINKS),
        );
    }
    headers.insert(HeaderName::from_static(names::UPSTREAM_HEADER), HeaderValue::from_static("graph"));
    if let Some(claims) = claims {
        headers.insert(HeaderName::from_static(names::CLAIMS_HEADER), HeaderValue::from_static(claims));
    }
    // The body streams after the handler returned: it counts as activity until it is done (or dropped).
    let streaming = Streaming::start(activity);
    let body = answer.bytes_stream().map(move |chunk| {
        let _busy = &streaming;
        chunk
    });
    let body = match rewrite {
        Some(rewrite) => Body::from_stream(links::rewritten(body, rewrite)),
        None => Body::from_stream(body),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Graph's answer headers minus connection-level ones and any `Graphbroker-*`: those are the daemon's own
/// (`graphbroker-upstream`, `graphbroker-claims`), and an upstream must not be able to speak for it.
fn forwarded_back(headers: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !NOT_FORWARDED.contains(&name.as_str()) && !name.as_str().starts_with("graphbroker-") {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The message names the host only: the full URL (its query) is the caller's business, not the log's.
fn unreachable(target: &Url, error: reqwest::Error, replayable: bool) -> ApiError {
    let host = target.host_str().unwrap_or("Graph");
    let error = error.without_url();
    let why =
        if error.is_timeout() { "it did not answer in time".to_owned() } else { crate::idp::describe_reqwest(&error) };
    let message = if error.is_body() || (!replayable && error.is_request()) {
        format!(
            "the connection to Microsoft Graph at {host} broke off while the body was being sent ({why}); Graph may \
             have refused the call before reading it all: send it again"
        )
    } else {
        format!("could not reach Microsoft Graph at {host} ({why}); retry later")
    };
    ApiError::new(ErrorCode::GraphUnavailable, message)
}

#[cfg(test)]
mod tests;

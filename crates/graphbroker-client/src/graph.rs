//! Calls to Microsoft Graph through the daemon's proxy (`/graph/{version}/{path…}`): the daemon attaches the
//! token, answers a claims challenge, and streams both bodies; this side only builds the request and tells the
//! daemon's own refusals (sign-in needed, bad scopes) from Graph's answers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use graphbroker_protocol::{proxy, routes};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming};
use hyper::{HeaderMap, Method, Request, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, ReadBuf};

use crate::client::{Client, decode};
use crate::connect::CheckedConnector;
use crate::error::Error;

/// A request body for [`Client::graph`]: any stream of bytes.
pub type GraphBody = BoxBody<Bytes, io::Error>;

/// A call to Graph, as [`Client::graph`] sends it.
#[derive(Debug)]
pub struct GraphRequest {
    pub method: Method,
    /// The Graph path with its version, `/v1.0/me` or `/beta/me/drive`, and any query (see [`graph_path`]).
    pub path: String,
    /// Scopes of the token to attach; the profile's when `None`.
    pub scopes: Option<String>,
    pub profile: Option<String>,
    /// Seconds the daemon may hold the call while a sign-in it needs goes on.
    pub wait: Option<u64>,
    /// Headers sent on to Graph (`Content-Type`, `ConsistencyLevel`, `Prefer`…). An `Authorization` is dropped
    /// by the daemon, which sets its own.
    pub headers: HeaderMap,
    pub body: GraphBody,
}

impl GraphRequest {
    /// A bodiless request for `path`.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            scopes: None,
            profile: None,
            wait: None,
            headers: HeaderMap::new(),
            body: empty_body(),
        }
    }
}

/// An empty [`GraphBody`].
pub fn empty_body() -> GraphBody {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// A [`GraphBody`] read from `reader` as it is sent (a file, stdin), never whole in memory.
pub fn reader_body(reader: impl AsyncRead + Send + Sync + Unpin + 'static) -> GraphBody {
    ReaderBody { reader, chunk: BytesMut::new() }.boxed()
}

/// The version and path for what a person types: `/me` and `me` mean `/v1.0/me`; `/v1.0/…` and `/beta/…` are
/// kept; a whole URL (an `@odata.nextLink`, on Graph or rewritten by the proxy to `…/graph/v1.0/…`) gives its
/// Graph path and query, since the daemon picks the host anyway.
/// `beta` puts a path without a version under `/beta`.
pub fn graph_path(input: &str, beta: bool) -> String {
    let input = input.trim();
    let path = match input.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => input,
    };
    let versioned = |path: &str| proxy::VERSIONS.iter().any(|v| path == *v || path.starts_with(&format!("{v}/")));
    let path = path.trim_start_matches('/');
    // A link the proxy rewrote (`http://localhost/graph/v1.0/…`) names the proxy's route: its Graph path follows.
    let path = path.strip_prefix(routes::GRAPH_PREFIX.trim_start_matches('/')).filter(|p| versioned(p)).unwrap_or(path);
    let versioned = versioned(path);
    match (versioned, beta) {
        (true, _) => format!("/{path}"),
        (false, true) => format!("/beta/{path}"),
        (false, false) => format!("/v1.0/{path}"),
    }
}

impl Client {
    /// Sends `request` to Graph through the daemon and answers Graph's response, body unread (stream it). The
    /// daemon's own refusals come back as [`Error::Daemon`] (e.g. `signin_required` with its prompt), so any
    /// response this returns is Graph's, 4xx and 5xx included. There is no overall time limit: a download may
    /// take as long as it takes.
    pub async fn graph(&self, request: GraphRequest) -> Result<Response<Incoming>, Error> {
        let http: HttpClient<CheckedConnector, GraphBody> =
            HttpClient::builder(TokioExecutor::new()).build(CheckedConnector::new(self.socket.clone(), self.uid));
        let route = format!("{}{}", routes::GRAPH_PREFIX.trim_end_matches('/'), request.path);
        let mut builder = Request::builder().method(request.method).uri(format!("http://localhost{route}"));
        if let Some(headers) = builder.headers_mut() {
            *headers = request.headers;
            let mut set = |name: &'static str, value: Option<String>| -> Result<(), Error> {
                if let Some(value) = value {
                    let value = value.parse().map_err(|_| Error::Request(format!("{name} is not a header value")))?;
                    headers.insert(name, value);
                }
                Ok(())
            };
            set(proxy::SCOPES_HEADER, request.scopes)?;
            set(proxy::PROFILE_HEADER, request.profile)?;
            set(proxy::WAIT_HEADER, request.wait.map(|w| w.to_string()))?;
            set(graphbroker_protocol::TERMINAL_HEADER, self.shows_prompts.then(|| "1".to_owned()))?;
        }
        let request = builder.body(request.body).map_err(|error| Error::Request(error.to_string()))?;
        let response = http.request(request).await.map_err(|error| self.transport_error(error))?;
        self.check_protocol(response.headers())?;
        let from_graph = response.headers().get(proxy::UPSTREAM_HEADER).is_some_and(|v| v == "graph");
        if from_graph {
            return Ok(response);
        }
        let status = response.status();
        let body = self.read_body(response.into_body()).await?;
        match decode::<serde_json::Value>(&route, status, &body) {
            Err(error) => Err(error),
            Ok(_) => Err(Error::Protocol(format!("{route} answered HTTP {} without Graph's marker", status.as_u16()))),
        }
    }
}

/// How much a [`ReaderBody`] reads at a time.
const CHUNK: usize = 64 * 1024;

struct ReaderBody<R> {
    reader: R,
    chunk: BytesMut,
}

impl<R: AsyncRead + Unpin> Body for ReaderBody<R> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.chunk.resize(CHUNK, 0);
        let mut buf = ReadBuf::new(&mut this.chunk);
        match Pin::new(&mut this.reader).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().len();
                if filled == 0 {
                    return Poll::Ready(None);
                }
                let data = this.chunk.split_to(filled).freeze();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_paths_get_a_version() {
        assert_eq!(graph_path("/me", false), "/v1.0/me");
        assert_eq!(graph_path("me/messages?$top=2", false), "/v1.0/me/messages?$top=2");
        assert_eq!(graph_path("/me", true), "/beta/me");
        assert_eq!(graph_path("/beta/me", false), "/beta/me");
        assert_eq!(graph_path("/v1.0/me", true), "/v1.0/me");
        assert_eq!(graph_path("/v1.0", false), "/v1.0");
        assert_eq!(graph_path("/v1.0x/me", false), "/v1.0/v1.0x/me");
        assert_eq!(graph_path("http://localhost/graph/v1.0/me/messages?$top=2", false), "/v1.0/me/messages?$top=2");
        assert_eq!(graph_path("/graph/beta/me", false), "/beta/me");
        assert_eq!(graph_path("/graph/me", false), "/v1.0/graph/me");
        assert_eq!(
            graph_path("https://graph.microsoft.com/v1.0/me/messages?$skiptoken=X", false),
            "/v1.0/me/messages?$skiptoken=X"
        );
    }

    #[tokio::test]
    async fn a_reader_body_yields_the_reader_in_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let body = reader_body(std::io::Cursor::new(data.clone()));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], &data[..]);
    }
}

//! One token or header request without an async runtime, for a program that starts, asks once and exits.
//!
//! A command line that prints a cached token spends most of its life starting up; a Tokio runtime and hyper's
//! connection pool cost more than the exchange itself. This is the same exchange on a blocking socket: one
//! HTTP/1.1 request, the answer read by its `Content-Length`. It makes the same checks as [`crate::Client`], in
//! the same order — the socket's directory before connecting, the listener's uid (`SO_PEERCRED`) before the
//! first byte is written, the daemon's protocol header on the answer — and answers the same typed [`Error`]s.
//!
//! It does not wait for sign-ins, retry or start a daemon: an answer other than the token (say
//! `signin_required`) comes back as [`Error::Daemon`], for [`crate::Client::token_with_signin_after`] to carry
//! on from without asking again. Linux only: the listener's uid comes from `SO_PEERCRED`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use graphbroker_protocol::{HeaderResponse, PROTOCOL_HEADER, PROTOCOL_VERSION, TokenQuery, TokenResponse, routes};
use serde::de::DeserializeOwned;

use crate::client::{DEFAULT_ANSWER_MARGIN, decode, encode_query};
use crate::connect::{ConnectError, check_directory, trusted_listener};
use crate::error::Error;

/// The most a token or header answer may be, headers included. A token answer is under 4 KiB, tokens with many
/// groups a few times that; past this something that is not graphbrokerd is talking.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// `GET /v1/token` on `socket`, blocking: see the module documentation.
pub fn token(socket: &Path, query: &TokenQuery) -> Result<TokenResponse, Error> {
    ask(socket, routes::TOKEN, query, false)
}

/// `GET /v1/header` on `socket`, blocking: see the module documentation.
pub fn header(socket: &Path, query: &TokenQuery) -> Result<HeaderResponse, Error> {
    ask(socket, routes::HEADER, query, false)
}

/// [`token`], saying whether the caller shows a sign-in's prompt at a terminal (as `Client::showing_prompts`).
pub fn token_showing_prompts(socket: &Path, query: &TokenQuery, shows: bool) -> Result<TokenResponse, Error> {
    ask(socket, routes::TOKEN, query, shows)
}

/// [`header`], saying whether the caller shows a sign-in's prompt at a terminal (as `Client::showing_prompts`).
pub fn header_showing_prompts(socket: &Path, query: &TokenQuery, shows: bool) -> Result<HeaderResponse, Error> {
    ask(socket, routes::HEADER, query, shows)
}

fn ask<T: DeserializeOwned>(socket: &Path, route: &str, query: &TokenQuery, shows: bool) -> Result<T, Error> {
    let uid = nix::unistd::getuid().as_raw();
    let mut stream = connect_checked(socket, uid)?;
    let limit = Duration::from_secs(query.wait.unwrap_or(0)).saturating_add(DEFAULT_ANSWER_MARGIN);
    let broken = |error: io::Error| exchange_error(socket, limit, error);
    stream.set_read_timeout(Some(limit)).map_err(broken)?;
    stream.set_write_timeout(Some(limit)).map_err(broken)?;
    let query = encode_query(query)?;
    let target = if query.is_empty() { route.to_owned() } else { format!("{route}?{query}") };
    let terminal = if shows { format!("{}: 1\r\n", graphbroker_protocol::TERMINAL_HEADER) } else { String::new() };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{terminal}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(broken)?;
    let answer = read_answer(&mut stream).map_err(broken)?;
    let (status, protocol, body) = parse_answer(route, &answer)?;
    if protocol != Some(PROTOCOL_VERSION) {
        return Err(Error::ProtocolMismatch { path: socket.to_owned(), daemon: protocol, client: PROTOCOL_VERSION });
    }
    let status = hyper::StatusCode::from_u16(status)
        .map_err(|_| Error::Protocol(format!("{route} answered HTTP {status}, which is not a status")))?;
    decode(route, status, body)
}

/// Connects with both of the client's checks; an error is the one [`crate::Client`] would answer.
fn connect_checked(socket: &Path, uid: u32) -> Result<UnixStream, Error> {
    let path = socket.to_owned();
    match check_directory(socket, uid) {
        Ok(()) => {}
        Err(ConnectError::Directory(directory)) => {
            return Err(Error::UnsafeSocketDirectory { socket: path, directory });
        }
        Err(ConnectError::Io(source)) => return Err(Error::Connection { path, source: Box::new(source) }),
        Err(ConnectError::Listener { uid: listener }) => {
            return Err(Error::UntrustedListener { path, listener, expected: uid });
        }
    }
    let stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::Unreachable { path: path.clone(), source },
        _ => Error::Connection { path: path.clone(), source: Box::new(source) },
    })?;
    let listener =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok().map(|cred| cred.uid());
    match listener {
        Some(found) if trusted_listener(found, uid) => Ok(stream),
        // Dropped here, unused: not a byte of the request was written.
        listener => Err(Error::UntrustedListener { path, listener, expected: uid }),
    }
}

fn exchange_error(socket: &Path, limit: Duration, error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout { path: socket.to_owned(), after: limit },
        _ => Error::Connection { path: socket.to_owned(), source: Box::new(error) },
    }
}

/// Reads one answer: its head, then as many body bytes as `Content-Length` says (or up to the end, as the
/// request asked the daemon to close).
fn read_answer(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(expected) = expected_length(&answer)
            && answer.len() >= expected
        {
            return Ok(answer);
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(answer);
        }
        answer.extend_from_slice(&chunk[..read]);
        if answer.len() > MAX_ANSWER_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the answer is larger than any token answer"));
        }
    }
}

/// The whole answer's length once its head is in and names a `Content-Length`.
fn expected_length(answer: &[u8]) -> Option<usize> {
    let head = Head::parse(answer).ok()??;
    let length: usize = head.header("content-length")?.parse().ok()?;
    Some(head.length.saturating_add(length))
}

/// An answer's status line and headers. Read by hand rather than with `httparse`: its SIMD paths detect the
/// CPU's features on first use, which in a VM (each `cpuid` traps to the hypervisor) costs more than the rest of
/// the parse, once per process.
struct Head<'a> {
    status: u16,
    headers: Vec<(&'a str, &'a str)>,
    /// The head's length, blank line included.
    length: usize,
}

impl<'a> Head<'a> {
    /// The head, `None` until it is all there, or why it is not HTTP.
    fn parse(answer: &'a [u8]) -> Result<Option<Self>, &'static str> {
        let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") else { return Ok(None) };
        let text = std::str::from_utf8(&answer[..end]).map_err(|_| "a head that is not text")?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut words = status_line.split(' ');
        let (Some(version), Some(code)) = (words.next(), words.next()) else { return Err("no status line") };
        if !version.starts_with("HTTP/1.") || code.len() != 3 {
            return Err("no HTTP/1 status line");
        }
        let status = code.parse().map_err(|_| "a status that is not a number")?;
        let headers = lines
            .map(|line| {
                line.split_once(':').map(|(name, value)| (name.trim(), value.trim())).ok_or("a bad header line")
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Self { status, headers, length: end + 4 }))
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(found, _)| found.eq_ignore_ascii_case(name)).map(|(_, value)| *value)
    }
}

/// The status, the protocol version the daemon named, and the body.
fn parse_answer<'a>(route: &str, answer: &'a [u8]) -> Result<(u16, Option<u32>, &'a [u8]), Error> {
    let garbled = |what: &str| Error::Protocol(format!("{route} answered {what}"));
    let head = match Head::parse(answer) {
        Ok(Some(head)) => head,
        Ok(None) => return Err(garbled("an incomplete HTTP answer")),
        Err(problem) => return Err(garbled(&format!("something that is not HTTP ({problem})"))),
    };
    if head.header("transfer-encoding").is_some() {
        return Err(garbled("a body in a transfer encoding (graphbrokerd sends a Content-Length)"));
    }
    let body = &answer[head.length..];
    if let Some(length) = head.header("content-length")
        && length.parse::<usize>().ok() != Some(body.len())
    {
        return Err(garbled("a body shorter or longer than its Content-Length"));
    }
    let protocol = head.header(PROTOCOL_HEADER).and_then(|value| value.parse::<u32>().ok());
    Ok((head.status, protocol, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_at_its_content_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ngraphbroker-protocol: 1\r\n\r\n";
        assert_eq!(expected_length(b"HTTP/1.1 200 OK\r\ncontent-le"), None);
        assert_eq!(expected_length(head), Some(head.len() + 2));
        let whole = [&head[..], b"{}"].concat();
        let (status, protocol, body) = parse_answer("/v1/token", &whole).unwrap();
        assert_eq!((status, protocol, body), (200, Some(1), &b"{}"[..]));
    }

    #[test]
    fn a_short_body_or_a_chunked_one_is_refused() {
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}";
        assert!(matches!(parse_answer("/v1/token", short), Err(Error::Protocol(_))));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert!(matches!(parse_answer("/v1/token", chunked), Err(Error::Protocol(_))));
        assert!(matches!(parse_answer("/v1/token", b"SSH-2.0-OpenSSH\r\n\r\n"), Err(Error::Protocol(_))));
        assert!(matches!(parse_answer("/v1/token", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"), Err(Error::Protocol(_))));
        assert!(matches!(parse_answer("/v1/token", b"HTTP/1.1 200 OK\r\n"), Err(Error::Protocol(_))));
    }
}

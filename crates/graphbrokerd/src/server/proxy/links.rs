//! Paging through the proxy: in a JSON answer, an `@odata.nextLink` or `@odata.deltaLink` that points at the
//! profile's Graph endpoint is rewritten to the proxy's own URL (`http://` + the caller's `Host` + `/graph/…`),
//! so that an SDK's page iterator, which follows the link as it is, comes back through the socket.
//!
//! The body is rewritten as it streams: a byte-level scanner that keeps only the string it is inside of, and
//! only while that string may still be a link name (at most 16 bytes) or the value after one (at most
//! [`LINK_LIMIT`]). Anything longer passes through unchanged, as does every answer that is not uncompressed
//! JSON. The answer says it was scanned with `Graphbroker-Rewritten: odata-links`.

use std::pin::Pin;

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use url::Url;

/// The OData annotations whose value is a URL the client follows.
const LINK_NAMES: [&[u8]; 2] = [b"@odata.nextLink", b"@odata.deltaLink"];
/// The longest link value rewritten; Graph's skip and delta tokens are far shorter.
pub(super) const LINK_LIMIT: usize = 16 * 1024;
/// The longest `Host` the proxy puts into a link.
const HOST_LIMIT: usize = 255;

/// What a link on the Graph endpoint is rewritten to, for one request.
#[derive(Debug, Clone)]
pub(super) struct Rewrite {
    /// `{graph_url}/`, compared without regard to ASCII case.
    from: Vec<u8>,
    /// `http://{Host}/graph/`.
    to: Vec<u8>,
}

impl Rewrite {
    /// The rewrite for a request with these headers to the Graph endpoint `base`. A `Host` with anything but
    /// the characters of a host name, an IP address and a port is replaced by `localhost`, so that the caller's
    /// header cannot put JSON syntax into the answer.
    pub(super) fn for_request(headers: &HeaderMap, base: &Url) -> Self {
        let host = headers
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .filter(|host| {
                !host.is_empty()
                    && host.len() <= HOST_LIMIT
                    && host.iter().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(b))
            })
            .unwrap_or(b"localhost");
        let mut to = b"http://".to_vec();
        to.extend_from_slice(host);
        to.extend_from_slice(graphbroker_protocol::routes::GRAPH_PREFIX.as_bytes());
        let from = format!("{}/", base.as_str().trim_end_matches('/')).into_bytes();
        Self { from, to }
    }

    /// Whether an answer with these headers is scanned: JSON, not compressed.
    pub(super) fn applies(answer: &reqwest::header::HeaderMap) -> bool {
        let json = answer
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
        let plain = answer
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .all(|v| v.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity")));
        json && plain
    }

    /// `link` rewritten if it is on the Graph endpoint under a version the proxy serves.
    fn link(&self, link: &[u8], out: &mut Vec<u8>) {
        let on_graph = link.len() > self.from.len() && link[..self.from.len()].eq_ignore_ascii_case(&self.from);
        let rest = &link[self.from.len().min(link.len())..];
        let versioned = graphbroker_protocol::proxy::VERSIONS
            .iter()
            .any(|version| rest.strip_prefix(version.as_bytes()).is_some_and(|after| after.starts_with(b"/")));
        if on_graph && versioned {
            out.extend_from_slice(&self.to);
            out.extend_from_slice(rest);
        } else {
            out.extend_from_slice(link);
        }
    }
}

/// Where the scanner is in the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Between tokens.
    Outside,
    /// Just after a string that is a link name: a `:` makes the next string its value.
    AfterName,
    /// After a link name and its `:`.
    BeforeValue,
    /// Inside a string; `kept` while its bytes are held back in the buffer.
    InString { escaped: bool, kept: bool, value: bool },
}

/// The streaming scanner of one answer.
pub(super) struct Scanner {
    rewrite: Rewrite,
    place: Place,
    held: Vec<u8>,
}

impl Scanner {
    pub(super) fn new(rewrite: Rewrite) -> Self {
        Self { rewrite, place: Place::Outside, held: Vec::new() }
    }

    /// The rewritten text of the next piece of the body. Runs the scanner's steps a span at a time where they
    /// cannot change its place: between tokens up to the next `"`, and inside a string up to the next `"` or `\\`
    /// (held back while the string is kept, up to its limit). Every other byte takes [`Scanner::step`].
    pub(super) fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len() + self.held.len());
        let mut rest = chunk;
        while !rest.is_empty() {
            let plain = match self.place {
                Place::Outside => memchr::memchr(b'"', rest),
                Place::InString { escaped: false, .. } => memchr::memchr2(b'"', b'\\', rest),
                _ => Some(0),
            }
            .unwrap_or(rest.len());
            let (span, after) = rest.split_at(plain);
            rest = after;
            match self.place {
                Place::InString { kept: true, value, .. } if !span.is_empty() => {
                    let limit = Self::limit(value);
                    // As many as the held string takes before it passes its limit; the rest are stepped.
                    let taken = span.len().min(limit + 1 - self.held.len().min(limit + 1));
                    self.held.extend_from_slice(&span[..taken]);
                    if self.held.len() > limit {
                        out.append(&mut self.held);
                        self.place = Place::InString { escaped: false, kept: false, value };
                    }
                    out.extend_from_slice(&span[taken..]);
                }
                _ => out.extend_from_slice(span),
            }
            if let Some((&byte, after)) = rest.split_first() {
                self.step(byte, &mut out);
                rest = after;
            }
        }
        Bytes::from(out)
    }

    /// One byte of the body through the scanner.
    fn step(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.place = match self.place {
            Place::InString { escaped, kept, value } => self.in_string(byte, escaped, kept, value, out),
            place => {
                out.push(byte);
                match byte {
                    b'"' => {
                        self.held.clear();
                        Place::InString { escaped: false, kept: true, value: place == Place::BeforeValue }
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => place,
                    b':' if place == Place::AfterName => Place::BeforeValue,
                    _ => Place::Outside,
                }
            }
        };
    }

    /// How long a kept string may grow: a link's value, or the longest link name.
    fn limit(value: bool) -> usize {
        if value { LINK_LIMIT } else { LINK_NAMES.iter().map(|n| n.len()).max().unwrap_or(0) }
    }

    fn in_string(&mut self, byte: u8, escaped: bool, kept: bool, value: bool, out: &mut Vec<u8>) -> Place {
        if byte == b'"' && !escaped {
            if !kept {
                out.push(byte);
                return Place::Outside;
            }
            if value {
                self.rewrite.link(&self.held, out);
            } else {
                out.extend_from_slice(&self.held);
            }
            out.push(byte);
            let name = !value && LINK_NAMES.contains(&self.held.as_slice());
            self.held.clear();
            return if name { Place::AfterName } else { Place::Outside };
        }
        let escaped = !escaped && byte == b'\\';
        if !kept {
            out.push(byte);
            return Place::InString { escaped, kept, value };
        }
        self.held.push(byte);
        if self.held.len() > Self::limit(value) {
            out.append(&mut self.held);
            return Place::InString { escaped, kept: false, value };
        }
        Place::InString { escaped, kept, value }
    }

    /// What is still held back when the body ends early (a truncated answer), unchanged.
    pub(super) fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.held))
    }
}

/// The answer's body stream, rewritten.
pub(super) fn rewritten<S>(body: S, rewrite: Rewrite) -> impl Stream<Item = Result<Bytes, reqwest::Error>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let body: Pin<Box<S>> = Box::pin(body);
    futures_util::stream::unfold(Some((body, Scanner::new(rewrite))), |state| async move {
        let (mut body, mut scanner) = state?;
        match body.next().await {
            Some(Ok(chunk)) => Some((Ok(scanner.feed(&chunk)), Some((body, scanner)))),
            Some(Err(error)) => Some((Err(error), None)),
            None => {
                let rest = scanner.finish();
                (!rest.is_empty()).then_some((Ok(rest), None))
            }
        }
    })
}

/// The caller's headers as sent to Graph when links may be rewritten: no `Accept-Encoding`, so Graph answers
/// uncompressed JSON the scanner can read (the socket is local; compression would only save the Graph leg).
pub(super) fn uncompressed(mut headers: HeaderMap) -> HeaderMap {
    headers.remove(header::ACCEPT_ENCODING);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(host: &str) -> Rewrite {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        Rewrite::for_request(&headers, &Url::parse("https://graph.microsoft.com").unwrap())
    }

    /// `text` fed in pieces of `size` bytes.
    fn scan(text: &str, size: usize, host: &str) -> String {
        let mut scanner = Scanner::new(rewrite(host));
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(size) {
            out.extend_from_slice(&scanner.feed(piece));
        }
        out.extend_from_slice(&scanner.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn next_and_delta_links_on_graph_are_rewritten_in_any_split() {
        let text = r#"{"value":[{"subject":"a \"@odata.nextLink\": x"}],
            "@odata.nextLink" : "https://graph.microsoft.com/v1.0/me/messages?$skiptoken=X",
            "@odata.deltaLink":"HTTPS://GRAPH.microsoft.com/beta/me/delta?token=Y"}"#;
        let want = r#"{"value":[{"subject":"a \"@odata.nextLink\": x"}],
            "@odata.nextLink" : "http://localhost/graph/v1.0/me/messages?$skiptoken=X",
            "@odata.deltaLink":"http://localhost/graph/beta/me/delta?token=Y"}"#;
        for size in [1, 2, 3, 7, 16, 1000] {
            assert_eq!(scan(text, size, "localhost"), want, "pieces of {size}");
        }
    }

    #[test]
    fn other_strings_hosts_and_versions_pass_unchanged() {
        for text in [
            r#"{"@odata.nextLink":"https://evil.example/v1.0/me"}"#,
            r#"{"@odata.nextLink":"https://graph.microsoft.com.evil.example/v1.0/me"}"#,
            r#"{"@odata.nextLink":"https://graph.microsoft.com/v2.0/me"}"#,
            r#"{"next":"https://graph.microsoft.com/v1.0/me"}"#,
            r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#users"}"#,
            r#"["@odata.nextLink","https://graph.microsoft.com/v1.0/me"]"#,
            r#"{"@odata.nextLink":"https://graph.microsoft.com/v1.0/me"#,
        ] {
            assert_eq!(scan(text, 3, "localhost"), text);
        }
    }

    #[test]
    fn a_hostile_host_header_cannot_break_the_json() {
        let text = r#"{"@odata.nextLink":"https://graph.microsoft.com/v1.0/me"}"#;
        assert_eq!(scan(text, 5, "127.0.0.1:8080"), r#"{"@odata.nextLink":"http://127.0.0.1:8080/graph/v1.0/me"}"#);
        assert_eq!(scan(text, 5, r#"x"},"a":"#), r#"{"@odata.nextLink":"http://localhost/graph/v1.0/me"}"#);
    }

    #[test]
    fn a_link_longer_than_the_limit_passes_whole() {
        let long =
            format!(r#"{{"@odata.nextLink":"https://graph.microsoft.com/v1.0/me?x={}"}}"#, "a".repeat(LINK_LIMIT));
        assert_eq!(scan(&long, 4096, "localhost"), long);
        let name = format!(r#"{{"{}":"https://graph.microsoft.com/v1.0/me"}}"#, "b".repeat(100));
        assert_eq!(scan(&name, 7, "localhost"), name);
    }

    #[test]
    fn spans_give_what_the_bytes_one_at_a_time_give() {
        // Pseudo-random JSON-ish text of quotes, escapes, colons, link names and long strings, cut at random.
        let parts = [
            "\"",
            "\\",
            ":",
            " ",
            "{",
            ",",
            "@odata.nextLink",
            "@odata.deltaLink",
            "https://graph.microsoft.com/",
            "v1.0/me",
            "beta/x",
            "a",
            &"z".repeat(20),
            &"y".repeat(LINK_LIMIT / 3),
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..300 {
            let text: String = (0..next(60)).map(|_| parts[next(parts.len())]).collect();
            let mut bytewise = Scanner::new(rewrite("localhost"));
            let mut want = Vec::new();
            for &byte in text.as_bytes() {
                bytewise.step(byte, &mut want);
            }
            want.extend_from_slice(&bytewise.finish());
            let mut spans = Scanner::new(rewrite("localhost"));
            let mut got = Vec::new();
            let mut rest = text.as_bytes();
            while !rest.is_empty() {
                let (piece, after) = rest.split_at(next(rest.len()) + 1);
                got.extend_from_slice(&spans.feed(piece));
                rest = after;
            }
            got.extend_from_slice(&spans.finish());
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "{text:?}");
        }
    }

    #[test]
    fn only_uncompressed_json_is_scanned() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = reqwest::header::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(Rewrite::applies(&headers(&[("content-type", "application/json;odata.metadata=minimal")])));
        assert!(!Rewrite::applies(&headers(&[("content-type", "application/json"), ("content-encoding", "gzip")])));
        assert!(!Rewrite::applies(&headers(&[("content-type", "application/octet-stream")])));
        assert!(!Rewrite::applies(&headers(&[])));
    }
}

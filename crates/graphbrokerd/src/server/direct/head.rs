//! Reading a request head: whether it is a token-route request the connection answers itself, not yet whole,
//! or hyper's.

use std::ops::Range;

use graphbroker_protocol::{TERMINAL_HEADER, routes};

use crate::server::TokenRoute;

/// Headers a direct head may have; a head with more is handed to hyper (which takes up to 100).
const MAX_HEADERS: usize = 32;

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// A whole head of a token-route request, `len` bytes long.
    Direct {
        len: usize,
        route: TokenRoute,
        /// Where the raw query is in the bytes, if the target has one.
        query: Option<Range<usize>>,
        /// The terminal header says `1` (its first value, as a header map's `get` reads it).
        attended: bool,
        /// `Connection: close`: the connection ends with this answer.
        close: bool,
    },
    /// Not a whole head yet, and nothing so far says it is not a direct one.
    Partial,
    /// For hyper: see the module docs.
    Other,
}

/// Reads the head at the start of `bytes`.
pub(crate) fn head(bytes: &[u8]) -> Head {
    if bytes.is_empty() {
        return Head::Partial;
    }
    // Left uninitialized: httparse writes the headers it finds, and only those are read.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let Ok(status) = request.parse_with_uninit_headers(bytes, &mut headers) else { return Head::Other };
    let (Some(method), Some(target)) = (request.method, request.path) else { return Head::Partial };
    let (path, query) = match memchr::memchr(b'?', target.as_bytes()) {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    };
    let route = match path {
        routes::TOKEN => TokenRoute::Token,
        routes::HEADER => TokenRoute::Header,
        _ => return Head::Other,
    };
    if method != "GET" || !target.bytes().all(plain_target_byte) {
        return Head::Other;
    }
    let httparse::Status::Complete(len) = status else { return Head::Partial };
    if request.version != Some(1) {
        return Head::Other;
    }
    let (mut attended, mut close) = (None, false);
    for header in request.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case(TERMINAL_HEADER) {
            attended.get_or_insert(value == b"1");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if !value.eq_ignore_ascii_case(b"keep-alive") {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.trim_ascii() != b"0" {
                return Head::Other;
            }
        } else if ["transfer-encoding", "upgrade", "expect"].iter().any(|other| name.eq_ignore_ascii_case(other)) {
            return Head::Other;
        }
    }
    let query = query.map(|query| {
        let start = query.as_ptr() as usize - bytes.as_ptr() as usize;
        start..start + query.len()
    });
    Head::Direct { len, route, query, attended: attended.unwrap_or(false), close }
}

/// The bytes a direct target may hold: RFC 3986's path and query characters. Anything else goes to hyper, whose
/// URI parser decides what it means.
fn plain_target_byte(byte: u8) -> bool {
    PLAIN_TARGET_BYTES[usize::from(byte)]
}

/// [`plain_target_byte`]'s table, made at compile time: a lookup per byte of the target.
static PLAIN_TARGET_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric();
        byte += 1;
    }
    let others = b"-._~!$&'()*+,;=:@/?%";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(raw: &str) -> (TokenRoute, Option<String>, bool, bool, usize) {
        match head(raw.as_bytes()) {
            Head::Direct { len, route, query, attended, close } => {
                (route, query.map(|q| raw[q].to_owned()), attended, close, len)
            }
            other => panic!("{raw:?} read as {other:?}"),
        }
    }

    #[test]
    fn token_heads_are_read_with_their_query_and_flags() {
        let raw = "GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/status";
        assert_eq!(direct(raw), (TokenRoute::Token, Some("scopes=User.Read".into()), false, false, raw.len() - 14));
        let raw =
            "GET /v1/header HTTP/1.1\r\ngraphbroker-terminal: 1\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(direct(raw), (TokenRoute::Header, None, true, true, raw.len()));
        // The first terminal header counts, as `HeaderMap::get` reads it.
        let raw = "GET /v1/token?x HTTP/1.1\r\nGraphbroker-Terminal: 0\r\nGraphbroker-Terminal: 1\r\n\r\n";
        assert!(!direct(raw).2, "the first terminal header says 0");
    }

    #[test]
    fn heads_are_partial_until_whole_unless_their_request_line_is_someone_elses() {
        for partial in ["", "GE", "GET /v1/tok", "GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: loc"] {
            assert_eq!(head(partial.as_bytes()), Head::Partial, "{partial:?}");
        }
        for other in ["GET /v1/status HTTP/1.1\r\nHo", "DELETE /v1/token?scopes=a HTTP/1.1\r\n", "POST /v1/token "] {
            assert_eq!(head(other.as_bytes()), Head::Other, "{other:?}");
        }
    }

    #[test]
    fn anything_with_http_corners_goes_to_hyper() {
        let others = [
            "GET /v1/token HTTP/1.0\r\n\r\n",
            "HEAD /v1/token HTTP/1.1\r\n\r\n",
            "GET http://localhost/v1/token HTTP/1.1\r\n\r\n",
            "GET /v1/token?scopes=\"a\" HTTP/1.1\r\n\r\n",
            "GET /v1/token#x HTTP/1.1\r\n\r\n",
            "GET /v1/token/ HTTP/1.1\r\n\r\n",
            "GET /v1/%74oken HTTP/1.1\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "GET /v1/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
            "GET /v1/token HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET\t/v1/token HTTP/1.1\r\n\r\n",
        ];
        for other in others {
            assert_eq!(head(other.as_bytes()), Head::Other, "{other:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        assert_eq!(head(format!("GET /v1/token HTTP/1.1\r\n{many}\r\n").as_bytes()), Head::Other);
    }

    #[test]
    fn the_plain_target_bytes_are_rfc_3986s_path_and_query_characters() {
        let plain: Vec<u8> = (0..=255u8).filter(|b| plain_target_byte(*b)).collect();
        let mut want: Vec<u8> = (b'0'..=b'9').chain(b'A'..=b'Z').chain(b'a'..=b'z').collect();
        want.extend_from_slice(b"-._~!$&'()*+,;=:@/?%");
        want.sort_unstable();
        assert_eq!(plain, want);
    }
}

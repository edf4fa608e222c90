//! Writing a direct request's answer: a token answer's head made once, any other answer's head from its
//! parts, and the body from its own bytes.

use std::io::{self, IoSlice};
use std::sync::LazyLock;
use std::time::SystemTime;

use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use graphbroker_protocol::PROTOCOL_HEADER;
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;

use super::Stream;
use crate::server::PROTOCOL_VALUE;
use crate::server::answer::secret_answer;

/// A token answer's status line and headers, as the router's route gives them (`secret_answer` and the
/// protocol header): made once, from the same functions.
static TOKEN_HEAD: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut response = secret_answer(Bytes::new());
    response.headers_mut().insert(PROTOCOL_HEADER, PROTOCOL_VALUE.clone());
    let mut head = Vec::new();
    status_and_headers(&mut head, &response.into_parts().0);
    head
});

/// Writes the answer to a direct request: a token answer's `json` after its made head, or `other` whole. The
/// body is written from its own bytes: a token answer is never copied, so it stays only in its wiped buffer.
pub(super) async fn write_answer(
    stream: &mut Stream,
    answer: Result<Bytes, Response>,
    close: bool,
    head: &mut Vec<u8>,
) -> io::Result<()> {
    head.clear();
    let (body, rest) = match answer {
        Ok(json) => {
            head.extend_from_slice(&TOKEN_HEAD);
            (json, Vec::new())
        }
        Err(response) => {
            let (parts, mut body) = response.into_parts();
            status_and_headers(head, &parts);
            let (mut first, mut rest) = (Bytes::new(), Vec::new());
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                    if first.is_empty() {
                        first = data;
                    } else {
                        rest.push(data);
                    }
                }
            }
            (first, rest)
        }
    };
    let length = body.len() + rest.iter().map(Bytes::len).sum::<usize>();
    end_of_head(head, length, close);

    let mut slices = [IoSlice::new(head), IoSlice::new(&body)];
    let mut unwritten = &mut slices[..];
    while !unwritten.is_empty() {
        let n = stream.write_vectored(unwritten).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut unwritten, n);
    }
    for data in rest {
        stream.write_all(&data).await?;
    }
    Ok(())
}

/// The status line and headers of `parts`, less the ones [`end_of_head`] writes.
fn status_and_headers(head: &mut Vec<u8>, parts: &axum::http::response::Parts) {
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION, header::DATE].contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// The end of a head: the body's length, the date, `Connection: close` if this answer ends the connection.
fn end_of_head(head: &mut Vec<u8>, length: usize, close: bool) {
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    head.extend_from_slice(b"\r\ndate: ");
    head.extend_from_slice(&http_date());
    head.extend_from_slice(if close { b"\r\nconnection: close\r\n\r\n" } else { b"\r\n\r\n" });
}

/// The `Date` header's value now (RFC 9110 §6.6.1), formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    DATE.with(|date| {
        let (cached, text) = date.get();
        if cached == second {
            return text;
        }
        let mut text = [0; 29];
        let formatted = httpdate::fmt_http_date(now);
        text.copy_from_slice(&formatted.as_bytes()[..29]);
        date.set((second, text));
        text
    })
}

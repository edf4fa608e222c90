//! A connection handed to hyper, with the bytes the direct phase read ahead.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Stream;

/// A connection handed to hyper: the bytes read ahead first, then the stream.
pub(crate) struct Prefixed {
    buffer: Vec<u8>,
    unread: Range<usize>,
    stream: Option<Stream>,
}

impl std::fmt::Debug for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed").field("unread", &self.unread.len()).finish_non_exhaustive()
    }
}

impl Prefixed {
    pub(super) fn new(buffer: Vec<u8>, unread: Range<usize>) -> Self {
        Self { buffer, unread, stream: None }
    }

    /// These bytes, then `stream`.
    pub(crate) fn with(mut self, stream: Stream) -> Self {
        self.stream = Some(stream);
        self
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream.as_mut().ok_or_else(|| io::Error::other("a handed-off connection without its stream"))
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, into: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(into.remaining());
            into.put_slice(&this.buffer[this.unread.start..this.unread.start + n]);
            this.unread.start += n;
            if this.unread.is_empty() {
                this.buffer = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        this.stream()?.as_mut().poll_read(cx, into)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.as_mut().poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|stream| stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_handed_off_connection_reads_what_was_read_ahead_first() {
        use tokio::io::AsyncReadExt as _;
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        theirs.write_all(b" and then the stream").await.unwrap();
        drop(theirs);
        let stream: Stream = Box::pin(tokio_io_timeout::TimeoutStream::new(ours));
        let mut buffer = vec![0; 16];
        buffer[..9].copy_from_slice(b"xxread ah");
        let mut prefixed = Prefixed::new(buffer, 2..9).with(stream);
        let mut all = String::new();
        prefixed.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "read ah and then the stream");
    }
}

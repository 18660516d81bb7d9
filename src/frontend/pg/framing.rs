//! The message size limit, enforced on the byte stream before pgwire's decoder buffers a
//! message: [`LimitedStream`] follows the protocol's framing (length words only, no meaning)
//! and fails the read at the header of a message longer than `max_message_bytes`, so a client
//! announcing a 1 GiB message never makes the server allocate it. The connection then gets a
//! FATAL 54000 and is closed (the rest of such a message cannot be skipped reliably).
//!
//! It sits directly under the framed codec, on plaintext: with TLS it wraps the TLS stream,
//! starting again in the untyped phase for the startup packet.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// SSLRequest and GSSENCRequest codes: an untyped packet the server answers with one byte,
/// after which another untyped packet (the startup) follows.
const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;

/// A frontend message larger than the limit.
#[derive(Debug, thiserror::Error)]
#[error("message of {length} bytes exceeds the limit of {limit} bytes (max_message_bytes)")]
pub struct MessageTooLarge {
    pub length: usize,
    pub limit: usize,
}

/// Where in the frontend's byte stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Startup-phase packets: a 4-byte length then a 4-byte code, no type byte.
    Untyped,
    /// Every later message: a type byte then a 4-byte length.
    Typed,
}

/// Wraps the client socket; reads pass through unchanged until a message is too large.
pub struct LimitedStream<S> {
    inner: S,
    limit: usize,
    phase: Phase,
    header: [u8; 8],
    header_len: usize,
    body_remaining: usize,
    failed: Option<MessageTooLarge>,
}

impl<S> LimitedStream<S> {
    pub fn new(inner: S, max_message_bytes: usize) -> LimitedStream<S> {
        LimitedStream {
            inner,
            limit: max_message_bytes,
            phase: Phase::Untyped,
            header: [0; 8],
            header_len: 0,
            body_remaining: 0,
            failed: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream (to upgrade it to TLS).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Follows the framing over newly read bytes; returns the offset of the header of the
    /// first oversized message in `data`, if any (0 if its header began in an earlier read).
    fn scan(&mut self, data: &[u8]) -> Option<(usize, MessageTooLarge)> {
        let mut i = 0;
        while i < data.len() {
            if self.body_remaining > 0 {
                let n = self.body_remaining.min(data.len() - i);
                self.body_remaining -= n;
                i += n;
                continue;
            }
            let header_size = match self.phase {
                Phase::Untyped => 8,
                Phase::Typed => 5,
            };
            self.header[self.header_len] = data[i];
            self.header_len += 1;
            i += 1;
            if self.header_len < header_size {
                continue;
            }
            let header_start = i.saturating_sub(header_size);
            self.header_len = 0;
            let word = |at: usize| {
                i32::from_be_bytes([
                    self.header[at],
                    self.header[at + 1],
                    self.header[at + 2],
                    self.header[at + 3],
                ])
            };
            // The length word counts itself; a nonsensical one is left for pgwire to refuse.
            let (length, consumed) = match self.phase {
                Phase::Untyped => {
                    if !matches!(word(4), SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) {
                        self.phase = Phase::Typed;
                    }
                    (word(0), 8)
                }
                Phase::Typed => (word(1), 4),
            };
            let length = usize::try_from(length).unwrap_or(0);
            let body = length.saturating_sub(consumed);
            if length.saturating_sub(4) > self.limit {
                return Some((
                    header_start,
                    MessageTooLarge {
                        length,
                        limit: self.limit,
                    },
                ));
            }
            self.body_remaining = body;
        }
        None
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(too_large) = this.failed.take() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, too_large)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let filled = buf.filled().len();
        let scanned = this.scan(&buf.filled()[before..filled]);
        if let Some((offset, too_large)) = scanned {
            if offset == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, too_large)));
            }
            // Hand over the complete messages before it; fail on the next read.
            buf.set_filled(before + offset);
            this.failed = Some(too_large);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: usize) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body + 4) as i32).to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body));
        m
    }

    fn startup() -> Vec<u8> {
        let mut m = 9i32.to_be_bytes().to_vec();
        m.extend_from_slice(&196_608i32.to_be_bytes());
        m.push(0);
        m
    }

    #[test]
    fn passes_messages_within_the_limit_and_stops_at_the_first_too_large() {
        let mut guard = LimitedStream::new((), 100);
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        assert!(guard.scan(&ssl).is_none());
        assert_eq!(guard.phase, Phase::Untyped, "startup follows an SSLRequest");
        let mut stream = startup();
        stream.extend(typed(b'Q', 100));
        let ok_len = stream.len();
        stream.extend(typed(b'Q', 101));
        // Byte by byte and in one go, the violation is found at the same message.
        let (offset, e) = guard.scan(&stream).expect("too large");
        assert_eq!((offset, e.length, e.limit), (ok_len, 105, 100));
        let mut guard = LimitedStream::new((), 100);
        let found: Vec<usize> = stream
            .iter()
            .enumerate()
            .filter_map(|(i, b)| guard.scan(std::slice::from_ref(b)).map(|_| i))
            .collect();
        assert_eq!(found.first(), Some(&(ok_len + 4)));
    }
}

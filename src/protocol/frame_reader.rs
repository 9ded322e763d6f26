//! Reads size-prefixed frames (requests on the broker's side, responses on a broker-to-broker
//! connection) through one small buffer per connection.
//!
//! Reading the 4-byte size and then the body with two exact reads costs three `recv` calls per
//! frame: the size, the body, and one more that finds the socket empty (an exact read leaves
//! the runtime believing more may be waiting). One read into a buffer usually takes the whole
//! frame, and the runtime learns from the short read that the socket is drained. Small frames
//! are copied out of the buffer, so nothing a request decodes into (topic names, member
//! metadata kept by a group) pins the buffer; a large frame gets its own allocation of exactly
//! its size, filled straight from the socket after what was already buffered.
//!
//! What the buffer may hold beyond the current frame (a pipelining client's next request) is
//! at most [`BUFFER_BYTES`] per connection, so memory stays bounded by the connection limits.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from the socket at a time for frames that fit.
pub const BUFFER_BYTES: usize = 16 * 1024;

/// A connection's read side.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// Waits until the next frame's size prefix is buffered and returns it (unchecked: the
    /// caller decides what sizes it accepts). `Ok(None)` when the peer closed the connection
    /// between frames. Cancel-safe: bytes already read stay buffered.
    ///
    /// # Errors
    /// I/O errors, and `UnexpectedEof` when the peer closed in the middle of a size prefix.
    pub async fn read_size<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> std::io::Result<Option<i32>> {
        while self.buf.len() < 4 {
            self.buf.reserve(BUFFER_BYTES);
            if stream.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} bytes of a size prefix",
                        self.buf.len()
                    ),
                ));
            }
        }
        let size = [self.buf[0], self.buf[1], self.buf[2], self.buf[3]];
        Ok(Some(i32::from_be_bytes(size)))
    }

    /// Reads the body of the frame whose size [`read_size`](Self::read_size) returned.
    ///
    /// # Errors
    /// I/O errors, and `UnexpectedEof` when the peer closed before the body was complete.
    pub async fn read_body<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        size: usize,
    ) -> std::io::Result<Bytes> {
        self.buf.advance(4);
        if size <= BUFFER_BYTES {
            while self.buf.len() < size {
                self.buf.reserve(BUFFER_BYTES);
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed {} bytes into a {size}-byte frame",
                            self.buf.len()
                        ),
                    ));
                }
            }
            let body = Bytes::copy_from_slice(&self.buf[..size]);
            self.buf.advance(size);
            return Ok(body);
        }
        // A large frame: what is buffered is its start, the rest goes straight into place.
        let have = self.buf.len().min(size);
        let mut body = BytesMut::zeroed(size);
        body[..have].copy_from_slice(&self.buf[..have]);
        self.buf.advance(have);
        stream.read_exact(&mut body[have..]).await?;
        Ok(body.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    async fn read_all(bytes: Vec<u8>, chunk: usize) -> std::io::Result<Vec<Bytes>> {
        let (mut tx, mut rx) = tokio::io::duplex(chunk);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in bytes.chunks(chunk) {
                tx.write_all(piece).await?;
            }
            tx.shutdown().await
        });
        let mut reader = FrameReader::default();
        let mut frames = Vec::new();
        while let Some(size) = reader.read_size(&mut rx).await? {
            frames.push(reader.read_body(&mut rx, size as usize).await?);
        }
        writer.await.map_err(std::io::Error::other)??;
        Ok(frames)
    }

    #[tokio::test]
    async fn frames_come_out_whole_however_the_bytes_arrive() {
        let large = vec![7u8; BUFFER_BYTES * 3 + 5];
        let bodies: Vec<&[u8]> = vec![b"one", b"", &large, b"two", &large[..BUFFER_BYTES]];
        for chunk in [1, 3, 4, 5, 100, BUFFER_BYTES - 1, BUFFER_BYTES * 8] {
            let frames = read_all(framed(&bodies), chunk).await.unwrap();
            let got: Vec<&[u8]> = frames.iter().map(|b| b.as_ref()).collect();
            assert_eq!(got, bodies, "delivered {chunk} bytes at a time");
        }
    }

    #[tokio::test]
    async fn a_close_inside_a_size_or_a_body_is_an_error_and_between_frames_is_not() {
        assert!(read_all(Vec::new(), 8).await.unwrap().is_empty());
        let cut_size = read_all(vec![0, 0], 8).await.unwrap_err();
        assert_eq!(cut_size.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut cut_body = framed(&[b"hello"]);
        cut_body.truncate(6);
        let e = read_all(cut_body, 8).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut cut_large = framed(&[&vec![1u8; BUFFER_BYTES * 2]]);
        cut_large.truncate(BUFFER_BYTES + 100);
        let e = read_all(cut_large, 1000).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_small_frame_does_not_pin_the_read_buffer() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        tx.write_all(&framed(&[b"abc", b"defg"])).await.unwrap();
        let mut reader = FrameReader::default();
        let size = reader.read_size(&mut rx).await.unwrap().unwrap();
        let first = reader.read_body(&mut rx, size as usize).await.unwrap();
        // A copy: its allocation is its own, and the next frame is still buffered.
        assert!(first.is_unique());
        let size = reader.read_size(&mut rx).await.unwrap().unwrap();
        assert_eq!(
            &reader.read_body(&mut rx, size as usize).await.unwrap()[..],
            b"defg"
        );
    }
}

//! Framing: every Kafka request and response is an `i32` big-endian length followed by that many
//! bytes. The length is untrusted, so it is bounded before anything is allocated.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection's byte stream cannot be read as frames; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame's body. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_size: usize,
) -> Result<Option<BytesMut>, FrameError> {
    match read_frame_size(reader, max_size).await? {
        Some(size) => read_frame_body(reader, size).await.map(Some),
        None => Ok(None),
    }
}

/// Reads a frame's length prefix, bounded by `max_size`. `Ok(None)` is a clean end of stream.
/// The caller may wait (for request memory) before reading the body with [`read_frame_body`].
pub async fn read_frame_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_size: usize,
) -> Result<Option<usize>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len);
    let size = usize::try_from(len).map_err(|_| FrameError::NegativeLength(len))?;
    if size > max_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_size,
        });
    }
    Ok(Some(size))
}

/// Reads the `size` bytes of a frame's body (after [`read_frame_size`]).
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> Result<BytesMut, FrameError> {
    let mut body = BytesMut::zeroed(size);
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(body),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Starts a frame in `buf`: a length placeholder that [`finish_frame`] fills in.
pub fn start_frame(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Writes the length of the frame begun at `start`.
pub fn finish_frame(buf: &mut BytesMut, start: usize) {
    let body_len = buf.len() - start - 4;
    // Responses are built from bounded requests; a body over i32::MAX cannot be produced, but
    // clamping keeps a bug from turning into a wrapped length on the wire.
    let len = i32::try_from(body_len).unwrap_or(i32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_frame_and_then_clean_eof() {
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        let frame = read_frame(&mut input, 100).await.unwrap().unwrap();
        assert_eq!(&frame[..], b"abc");
        assert!(read_frame(&mut input, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_and_negative_lengths_are_refused_before_allocating() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 1024).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(
            read_frame(&mut negative, 1024).await,
            Err(FrameError::NegativeLength(-2))
        ));
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_truncated() {
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(
            read_frame(&mut input, 100).await,
            Err(FrameError::Truncated)
        ));
    }
}

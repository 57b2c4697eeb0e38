//! Reading a request body into memory, never holding more than its
//! [`Reservation`] covers.
//!
//! Both receivers read through [`BodyReader`]: HTTP reads to the end into a
//! buffer of the declared length (or, without one, into equal segments,
//! each reserved first), gRPC reads its 5-byte message prefix and
//! then exactly the message. [`decompress_reserving`] inflates in steps,
//! reserving each step before the output grows. A body that stalls is cut
//! off by the connection's idle timeout ([`super::idle`]), which surfaces
//! here as a body error.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use super::decompress::{DecompressError, Encoding, Inflater};
use super::{ReceiveError, RefusalReason, Reservation, ingest_bytes};

/// The buffers a body of unknown length is read into.
pub const SEGMENT: usize = 1024 * 1024;

/// Why a body could not be read into memory.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body (or what it inflates to) is over the size limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No room in memory in time ([`ReceiveError::MemoryLimit`]).
    #[error(transparent)]
    Memory(#[from] ReceiveError),
    /// The body ended before its declared length.
    #[error("request body ended after {got} of {want} bytes")]
    Truncated {
        /// Bytes read.
        got: usize,
        /// Bytes declared.
        want: usize,
    },
    /// The connection failed or timed out while the body was read.
    #[error("cannot read request body: {0}")]
    Body(String),
    /// The compressed body is corrupt.
    #[error(transparent)]
    Corrupt(DecompressError),
}

impl From<DecompressError> for ReadError {
    fn from(e: DecompressError) -> Self {
        match e {
            DecompressError::TooLarge { limit } => ReadError::TooLarge { limit },
            e @ DecompressError::Corrupt { .. } => ReadError::Corrupt(e),
        }
    }
}

impl ReadError {
    /// The bounded refusal reason.
    pub const fn reason(&self) -> RefusalReason {
        match self {
            ReadError::TooLarge { .. } => RefusalReason::TooLarge,
            ReadError::Memory(e) => e.reason(),
            ReadError::Truncated { .. } | ReadError::Body(_) => RefusalReason::BodyRead,
            ReadError::Corrupt(_) => RefusalReason::BadEncoding,
        }
    }
}

/// A request body read chunk by chunk, with what was read past the last
/// `read_exact` kept for the next.
pub struct BodyReader<B> {
    body: Pin<Box<B>>,
    pending: Bytes,
}

impl<B> std::fmt::Debug for BodyReader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

// === impl BodyReader ===

impl<B> BodyReader<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    /// Reads `body`; nothing is polled until asked.
    pub fn new(body: B) -> Self {
        Self {
            body: Box::pin(body),
            pending: Bytes::new(),
        }
    }

    /// The next bytes of the body; `None` at its end (trailers are skipped).
    async fn chunk(&mut self) -> Option<Result<Bytes, ReadError>> {
        if !self.pending.is_empty() {
            return Some(Ok(std::mem::take(&mut self.pending)));
        }
        loop {
            match self.body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => return Some(Ok(data)),
                    Err(_trailers) => {}
                },
                Err(e) => return Some(Err(ReadError::Body(e.to_string()))),
            }
        }
    }

    /// Reads exactly `n` bytes into a buffer of that capacity; `Ok(None)`
    /// when the body ends before its first byte.
    ///
    /// # Errors
    /// [`ReadError::Truncated`] when it ends later, [`ReadError::Body`].
    pub async fn read_exact(&mut self, n: usize) -> Result<Option<BytesMut>, ReadError> {
        let mut buf = BytesMut::with_capacity(n);
        while buf.len() < n {
            let Some(chunk) = self.chunk().await else {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Err(ReadError::Truncated {
                    got: buf.len(),
                    want: n,
                });
            };
            let mut chunk = chunk?;
            let take = chunk.len().min(n - buf.len());
            buf.extend_from_slice(&chunk[..take]);
            chunk.advance(take);
            self.pending = chunk;
        }
        Ok(Some(buf))
    }

    /// Reads and discards up to `max` more bytes (cheap: nothing is kept).
    pub async fn drain(&mut self, max: usize) {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = self.chunk().await {
            seen += chunk.len();
            if seen > max {
                break;
            }
        }
    }

    /// Reads to the end, at most `limit` bytes. `reservation` already covers
    /// the declared length, if any, which sizes the one buffer. Without one
    /// (or past it) the body goes into [`SEGMENT`]-sized buffers, each
    /// reserved before it is allocated, joined at the end (the join reserves
    /// the copy first). Equal segments, not a doubling buffer: the allocator
    /// reuses freed segments, where a doubling buffer's freed steps fit no
    /// later step and stay resident.
    ///
    /// # Errors
    /// [`ReadError::TooLarge`] past `limit`, [`ReadError::Memory`] when a
    /// segment finds no room in time, [`ReadError::Body`].
    pub async fn read_to_end(
        &mut self,
        declared: Option<u64>,
        limit: usize,
        reservation: &mut Reservation,
    ) -> Result<Bytes, ReadError> {
        let first = declared.map_or(0, |d| usize::try_from(d).unwrap_or(limit).min(limit));
        let mut segments = vec![BytesMut::with_capacity(first)];
        let (mut len, mut capacity) = (0usize, first);
        while let Some(chunk) = self.chunk().await {
            let mut chunk = chunk?;
            len += chunk.len();
            if len > limit {
                return Err(ReadError::TooLarge { limit });
            }
            while !chunk.is_empty() {
                let last = segments.last_mut().filter(|s| s.len() < s.capacity());
                let Some(segment) = last else {
                    reservation.grow_to((capacity + SEGMENT) as u64).await?;
                    capacity += SEGMENT;
                    segments.push(BytesMut::with_capacity(SEGMENT));
                    continue;
                };
                let take = chunk.len().min(segment.capacity() - segment.len());
                segment.extend_from_slice(&chunk[..take]);
                chunk.advance(take);
            }
        }
        segments.retain(|s| !s.is_empty());
        if segments.len() <= 1 {
            return Ok(segments.pop().unwrap_or_default().freeze());
        }
        reservation.grow_to((capacity + len) as u64).await?;
        let mut joined = BytesMut::with_capacity(len);
        for segment in segments {
            joined.extend_from_slice(&segment);
        }
        reservation.shrink_to(len as u64);
        Ok(joined.freeze())
    }
}

/// Inflates `raw` (in `encoding`) into at most `limit` bytes, growing
/// `reservation` to cover `raw` and the output before each step. Returns
/// `raw` itself for [`Encoding::Identity`]. Once `raw` is freed, the
/// reservation is shrunk to at most what ingest needs for the result.
///
/// # Errors
/// [`ReadError::TooLarge`], [`ReadError::Corrupt`], [`ReadError::Memory`].
pub async fn decompress_reserving(
    encoding: Encoding,
    raw: Bytes,
    limit: usize,
    reservation: &mut Reservation,
) -> Result<Bytes, ReadError> {
    if encoding == Encoding::Identity {
        return Ok(raw);
    }
    let out = {
        let mut inflater = Inflater::new(encoding, &raw, limit)?;
        loop {
            let step = inflater.next_step();
            reservation
                .grow_to((raw.len() + inflater.len() + step) as u64)
                .await?;
            if inflater.step(step)? {
                break inflater.finish();
            }
        }
    };
    drop(raw);
    reservation.shrink_to(ingest_bytes(out.len() as u64));
    Ok(Bytes::from(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    const MIB: usize = 1024 * 1024;

    /// An empty reservation over a budget of `budget` bytes.
    fn reservation(budget: usize) -> Reservation {
        let capacity = budget / 1024;
        Reservation {
            inflight: Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
            permit: None,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// A holder of `held` bytes of a `budget`, and an empty reservation
    /// beside it.
    async fn crowded(budget: usize, held: usize) -> (Reservation, Reservation) {
        let mut holder = reservation(budget);
        holder.grow_to(held as u64).await.unwrap();
        let fresh = Reservation {
            inflight: Arc::clone(&holder.inflight),
            capacity: holder.capacity,
            permit: None,
            metrics: Arc::clone(&holder.metrics),
        };
        (holder, fresh)
    }

    /// A body of `data` in frames of `chunk` bytes, with no length.
    fn chunked(
        data: &[u8],
        chunk: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + use<> {
        let frames: Vec<_> = data
            .chunks(chunk)
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_without_length_is_read_in_reserved_segments() {
        let data: Vec<u8> = (0..7 * MIB / 2).map(|i| (i % 251) as u8).collect();
        let mut r = reservation(16 * MIB);
        let read = BodyReader::new(chunked(&data, 100_000))
            .read_to_end(None, 8 * MIB, &mut r)
            .await
            .unwrap();
        assert_eq!(read, data);
        // What stays reserved is the joined body, no segment.
        assert_eq!(r.bytes(), data.len().div_ceil(1024) as u64 * 1024);
        // Past the limit: too large; with no room: refused in time.
        let err = BodyReader::new(chunked(&data, 100_000))
            .read_to_end(None, 2 * MIB, &mut reservation(16 * MIB))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err:?}");
        let (_holder, mut r) = crowded(16 * MIB, 14 * MIB).await;
        let err = BodyReader::new(chunked(&data, 100_000))
            .read_to_end(None, 8 * MIB, &mut r)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), RefusalReason::MemoryLimit);
        assert_eq!(r.bytes(), 2 * MIB as u64, "what it got stays until dropped");
    }

    #[tokio::test]
    async fn gzip_grows_the_reservation_to_the_inflated_body() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![7u8; 3 * MIB]).unwrap();
        let gz = Bytes::from(e.finish().unwrap());
        let mut r = reservation(16 * MIB);
        r.grow_to(gz.len() as u64).await.unwrap();
        let out = decompress_reserving(Encoding::Gzip, gz.clone(), 8 * MIB, &mut r)
            .await
            .unwrap();
        assert_eq!(out.len(), 3 * MIB);
        // The output is covered; what is left of the input's room is kept
        // up to what ingest needs (which export grows to).
        assert!((3 * MIB as u64..=ingest_bytes(3 * MIB as u64)).contains(&r.bytes()));
        // A bomb stops at the limit; a small budget stops it sooner.
        let err = decompress_reserving(Encoding::Gzip, gz.clone(), MIB, &mut reservation(16 * MIB))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err:?}");
        let (_holder, mut r) = crowded(16 * MIB, 15 * MIB).await;
        let err = decompress_reserving(Encoding::Gzip, gz, 8 * MIB, &mut r)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), RefusalReason::MemoryLimit);
    }
}

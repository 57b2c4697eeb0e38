//! The one place request bodies are decompressed, always with a cap.
//!
//! A gzip bomb inflates a few KiB into gigabytes; reading through
//! `Read::take(limit + 1)` stops after one byte past the limit, so memory
//! never exceeds the limit whatever the ratio.

use std::io::Read;

/// A body encoding this receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip (RFC 1952), possibly several members.
    Gzip,
    /// zstd.
    Zstd,
    /// zlib (RFC 1950), which is what HTTP's `deflate` means; OTel SDKs offer it.
    Deflate,
}

impl Encoding {
    /// Parses a `Content-Encoding` value.
    pub fn from_header(value: Option<&str>) -> Option<Encoding> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "identity") => Some(Encoding::Identity),
            Some("gzip" | "x-gzip") => Some(Encoding::Gzip),
            Some("zstd") => Some(Encoding::Zstd),
            Some("deflate") => Some(Encoding::Deflate),
            Some(_) => None,
        }
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The decompressed body is larger than allowed.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The compressed stream is corrupt.
    #[error("cannot decompress {encoding} body: {source}")]
    Corrupt {
        /// gzip or zstd.
        encoding: &'static str,
        /// The decoder's error.
        source: std::io::Error,
    },
}

/// The smallest step an [`Inflater`] takes; later steps double with the
/// output, so a large body costs few reallocations.
pub const MIN_STEP: usize = 1024 * 1024;

/// A decompression in steps, so that the caller can reserve memory for the
/// next step before the output grows ([`super::body::decompress_reserving`]).
pub struct Inflater<'a> {
    reader: Box<dyn Read + Send + 'a>,
    name: &'static str,
    limit: usize,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("encoding", &self.name)
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Inflater<'a> {
    /// A decoder of `body` in `encoding` ([`Encoding::Identity`] copies).
    ///
    /// # Errors
    /// [`DecompressError::Corrupt`] when a zstd stream cannot even start.
    #[allow(clippy::disallowed_types)] // this is the capped decoder the ban points to
    pub fn new(encoding: Encoding, body: &'a [u8], limit: usize) -> Result<Self, DecompressError> {
        let (name, reader): (_, Box<dyn Read + Send + 'a>) = match encoding {
            Encoding::Identity => ("identity", Box::new(body)),
            Encoding::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(body))),
            Encoding::Deflate => ("deflate", Box::new(flate2::read::ZlibDecoder::new(body))),
            Encoding::Zstd => (
                "zstd",
                Box::new(zstd::stream::read::Decoder::new(body).map_err(|source| {
                    DecompressError::Corrupt {
                        encoding: "zstd",
                        source,
                    }
                })?),
            ),
        };
        Ok(Self {
            reader,
            name,
            limit,
            out: Vec::new(),
        })
    }

    /// The size of the next step: [`MIN_STEP`], then as much as is out.
    pub fn next_step(&self) -> usize {
        self.out.len().max(MIN_STEP)
    }

    /// Bytes inflated so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing is inflated yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Inflates up to `step` more bytes (never past `limit + 1`). Returns
    /// whether the stream is finished.
    ///
    /// # Errors
    /// [`DecompressError::TooLarge`] past the limit, [`DecompressError::Corrupt`]
    /// on a bad stream.
    pub fn step(&mut self, step: usize) -> Result<bool, DecompressError> {
        let room = self.limit.saturating_add(1).saturating_sub(self.out.len());
        let want = step.min(room);
        self.out.reserve_exact(want);
        let read = (&mut self.reader)
            .take(want as u64)
            .read_to_end(&mut self.out)
            .map_err(|source| DecompressError::Corrupt {
                encoding: self.name,
                source,
            })?;
        if self.out.len() > self.limit {
            return Err(DecompressError::TooLarge { limit: self.limit });
        }
        Ok(read < want)
    }

    /// The inflated bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Decompresses `body` into at most `limit` bytes.
///
/// # Errors
/// [`DecompressError::TooLarge`] past the limit (having inflated at most
/// `limit + 1` bytes), [`DecompressError::Corrupt`] on a bad stream.
pub fn decompress(
    encoding: Encoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    if encoding == Encoding::Identity {
        if body.len() > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }
    let mut inflater = Inflater::new(encoding, body, limit)?;
    while !inflater.step(inflater.next_step())? {}
    Ok(inflater.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let err = decompress(Encoding::Gzip, &bomb, 1 << 20).unwrap_err();
        assert!(matches!(err, DecompressError::TooLarge { limit } if limit == 1 << 20));
    }

    #[test]
    fn gzip_and_zstd_round_trip_and_garbage_is_corrupt() {
        let data = b"hello otlp".repeat(100);
        assert_eq!(
            decompress(Encoding::Gzip, &gzip(&data), 1 << 20).unwrap(),
            data
        );
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(&data).unwrap();
        assert_eq!(
            decompress(Encoding::Deflate, &zl.finish().unwrap(), 1 << 20).unwrap(),
            data
        );
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(decompress(Encoding::Zstd, &z, 1 << 20).unwrap(), data);
        assert!(matches!(
            decompress(Encoding::Gzip, b"not gzip", 100),
            Err(DecompressError::Corrupt { .. })
        ));
        assert!(matches!(
            decompress(Encoding::Identity, &data, 10),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn encodings_parse() {
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some("br")), None);
    }
}

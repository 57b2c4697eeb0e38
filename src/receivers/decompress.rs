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

/// Decompresses `body` into at most `limit` bytes.
///
/// # Errors
/// [`DecompressError::TooLarge`] past the limit (having inflated at most
/// `limit + 1` bytes), [`DecompressError::Corrupt`] on a bad stream.
#[allow(clippy::disallowed_types)] // this is the capped decoder the ban points to
pub fn decompress(
    encoding: Encoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let (name, result) = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            return Ok(body.to_vec());
        }
        Encoding::Gzip => (
            "gzip",
            flate2::read::MultiGzDecoder::new(body)
                .take(cap)
                .read_to_end(&mut out),
        ),
        Encoding::Deflate => (
            "deflate",
            flate2::read::ZlibDecoder::new(body)
                .take(cap)
                .read_to_end(&mut out),
        ),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(body) {
            Ok(d) => ("zstd", d.take(cap).read_to_end(&mut out)),
            Err(source) => {
                return Err(DecompressError::Corrupt {
                    encoding: "zstd",
                    source,
                });
            }
        },
    };
    result.map_err(|source| DecompressError::Corrupt {
        encoding: name,
        source,
    })?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
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

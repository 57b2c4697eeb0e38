#![no_main]
//! The capped decompression of request bodies (`receivers::decompress`):
//! gzip, zlib (HTTP's `deflate`), zstd and identity.
//!
//! Input: byte 0 picks the encoding, the mode and a repeat count; bytes 1-2
//! the limit (little-endian, 0-65535 bytes); the rest is the body. Two modes:
//! - stream: the rest is the compressed body as a client would send it
//!   (the seeds are valid streams and bombs; the fuzzer corrupts them). A
//!   plain, uncapped decoder reads the same stream chunk by chunk as the
//!   oracle: if it ends within the limit, `decompress` returns exactly
//!   that; if it passes the limit before any error, `TooLarge`; if it fails
//!   first, `Corrupt`;
//! - round trip: the rest, repeated up to 32 times, is compressed here and
//!   must come back unchanged when it fits the limit, and `TooLarge`
//!   otherwise.
//!
//! On every input: an `Ok` body is never longer than the limit and
//! `TooLarge` reports the limit it was given.

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use seedgate::receivers::decompress::{DecompressError, Encoding, decompress};

const ENCODINGS: [Encoding; 4] = [
    Encoding::Identity,
    Encoding::Gzip,
    Encoding::Zstd,
    Encoding::Deflate,
];

fuzz_target!(|data: &[u8]| {
    let [c, lo, hi, rest @ ..] = data else {
        return;
    };
    let encoding = ENCODINGS[usize::from(c % 4)];
    let limit = usize::from(u16::from_le_bytes([*lo, *hi]));
    let round_trip = (c / 4) % 2 == 1;
    let (body, want) = if round_trip {
        let plain = rest.repeat(1 + usize::from(c / 8));
        let want = if plain.len() <= limit {
            Outcome::Fits(plain.clone())
        } else {
            Outcome::Over
        };
        (compress(encoding, &plain), want)
    } else {
        (rest.to_vec(), reference(encoding, rest, limit))
    };
    let got = decompress(encoding, &body, limit);
    match (&got, &want) {
        (Ok(out), Outcome::Fits(expected)) => {
            assert!(out.len() <= limit);
            assert!(
                out == expected,
                "{encoding:?}: the output differs from the oracle's"
            );
        }
        (Err(DecompressError::TooLarge { limit: l }), Outcome::Over) => assert_eq!(*l, limit),
        (Err(DecompressError::Corrupt { .. }), Outcome::Corrupt) => {}
        _ => panic!(
            "{encoding:?}, limit {limit}: got {:?}, the oracle says {want:?}",
            got.as_ref().map(Vec::len)
        ),
    }
});

/// What a body decompresses to, as far as the limit cares.
#[derive(Debug)]
enum Outcome {
    /// It ends within the limit, with these bytes.
    Fits(Vec<u8>),
    /// It passes the limit before any error.
    Over,
    /// The stream fails before passing the limit.
    Corrupt,
}

/// Reads `body` through an uncapped decoder in small chunks, stopping once
/// the output passes `limit`. No read asks for more than one byte past the
/// limit: a decoder's `read` that fails drops what it produced in that call
/// (zstd decodes on into the next, corrupt frame), so a larger read would
/// see `Corrupt` where the output already passed the limit.
fn reference(encoding: Encoding, body: &[u8], limit: usize) -> Outcome {
    let mut decoder: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => Box::new(body),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(body) {
            Ok(d) => Box::new(d),
            Err(_) => return Outcome::Corrupt,
        },
    };
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let want = chunk.len().min(limit + 1 - out.len());
        match decoder.read(&mut chunk[..want]) {
            Ok(0) => return Outcome::Fits(out),
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() > limit {
                    return Outcome::Over;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Corrupt,
        }
    }
}

/// `plain` compressed as a client would send it.
fn compress(encoding: Encoding, plain: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::fast();
    match encoding {
        Encoding::Identity => plain.to_vec(),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(plain).expect("gzip into memory");
            e.finish().expect("gzip into memory")
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(plain).expect("zlib into memory");
            e.finish().expect("zlib into memory")
        }
        Encoding::Zstd => zstd::encode_all(plain, 1).expect("zstd into memory"),
    }
}

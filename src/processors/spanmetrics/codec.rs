//! The little byte grammar shared by the stored series keys and aggregates:
//! LEB128 varints (protobuf's) for lengths, big-endian fixed-width numbers,
//! and one error type for every way stored bytes can be wrong.

use prost::encoding::{decode_varint, encode_varint};

/// Stored bytes that this seedgate cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No bytes at all.
    #[error("empty")]
    Empty,
    /// A format version this seedgate does not know (a newer one wrote it).
    #[error("format version {found} is unknown (this seedgate reads version {known})")]
    Version {
        /// The version byte found.
        found: u8,
        /// The version this code reads and writes.
        known: u8,
    },
    /// The bytes end in the middle of a field.
    #[error("truncated")]
    Truncated,
    /// The bytes are complete but not a valid (or not the canonical) encoding.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Appends a length-prefixed byte string.
pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint. Ingest writes several per span, nearly all one byte
/// long (lengths of names and values, bucket counts): those skip prost's
/// general loop.
#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, value: u64) {
    match u8::try_from(value) {
        Ok(byte) if byte < 0x80 => out.push(byte),
        _ => encode_varint(value, out),
    }
}

/// Reads the grammar front to back.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the leading version byte and reads what follows.
    pub(super) fn versioned(bytes: &'a [u8], known: u8) -> Result<Self, FormatError> {
        let (version, r) = Self::any_version(bytes)?;
        if version == known {
            Ok(r)
        } else {
            Err(FormatError::Version {
                found: version,
                known,
            })
        }
    }

    /// The leading version byte, and a reader of what follows (for a
    /// format that reads more than one version).
    pub(super) fn any_version(bytes: &'a [u8]) -> Result<(u8, Self), FormatError> {
        match bytes.split_first() {
            None => Err(FormatError::Empty),
            Some((v, rest)) => Ok((*v, Self { rest })),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.rest.len() {
            return Err(FormatError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, FormatError> {
        self.take(1)?.first().copied().ok_or(FormatError::Truncated)
    }

    pub(super) fn u64(&mut self) -> Result<u64, FormatError> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| FormatError::Truncated)?;
        Ok(u64::from_be_bytes(bytes))
    }

    pub(super) fn varint(&mut self) -> Result<u64, FormatError> {
        if self.rest.is_empty() {
            return Err(FormatError::Truncated);
        }
        decode_varint(&mut self.rest).map_err(|_| FormatError::Invalid("bad varint"))
    }

    /// A length-prefixed byte string.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = usize::try_from(self.varint()?).map_err(|_| FormatError::Truncated)?;
        self.take(n)
    }

    /// All must have been read.
    pub(super) fn finish(self) -> Result<(), FormatError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(FormatError::Invalid("trailing bytes"))
        }
    }
}

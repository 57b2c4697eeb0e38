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
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Reads the grammar front to back.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the leading version byte and reads what follows.
    pub(super) fn versioned(bytes: &'a [u8], known: u8) -> Result<Self, FormatError> {
        match bytes.split_first() {
            None => Err(FormatError::Empty),
            Some((v, rest)) if *v == known => Ok(Self { rest }),
            Some((v, _)) => Err(FormatError::Version { found: *v, known }),
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

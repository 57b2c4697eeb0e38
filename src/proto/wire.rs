//! The protobuf wire format, read field by field without decoding anything.
//!
//! Why this exists: the scanner in [`super`] needs tags, varints, fixed-width
//! values and length-delimited payloads as *positions* in the request
//! buffer, not as values. [`Reader`] walks one message (a `pos..end` window
//! of the whole request buffer) and yields one [`Field`] at a time.
//!
//! Invariants:
//! - A `Reader` never reads outside `pos..end`, and `end <= buf.len()`; every
//!   length-delimited payload it yields lies inside its own window, so a
//!   nested reader built from it keeps the same invariant.
//! - All offsets are absolute positions in the whole request buffer, so an
//!   error points at the byte that is wrong no matter how deep it is.
//! - Arithmetic is overflow-checked, indexing goes through `get`, nothing is
//!   allocated, nothing panics.
//! - Varint and tag rules follow prost's decoder (at most 10 bytes, the 10th
//!   at most `1`; the key fits in `u32`; field number 0 is invalid) so that
//!   what the scanner accepts prost frames the same way.

use super::ScanError;

/// Wire type of a varint field.
pub(crate) const VARINT: u8 = 0;
/// Wire type of a fixed 8-byte field.
pub(crate) const I64: u8 = 1;
/// Wire type of a length-delimited field.
pub(crate) const LEN: u8 = 2;
/// Wire type of a fixed 4-byte field.
pub(crate) const I32: u8 = 5;

/// The value part of one field, as positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// A varint's decoded value.
    Varint(u64),
    /// An 8-byte fixed-width value (not read: nothing here needs it).
    I64,
    /// A 4-byte fixed-width value (not read).
    I32,
    /// A length-delimited payload at `start..end` of the request buffer.
    Len { start: usize, end: usize },
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// Where the field's tag starts.
    pub(crate) offset: usize,
    /// The field number (`>= 1`).
    pub(crate) number: u32,
    /// Wire type as on the wire: one of the constants above.
    pub(crate) wire_type: u8,
    /// The value.
    pub(crate) value: Value,
}

// === impl Field ===

impl Field {
    /// The payload range of a length-delimited field, or
    /// [`ScanError::WrongWireType`] naming `field`.
    pub(crate) fn expect_len(&self, field: &'static str) -> Result<(usize, usize), ScanError> {
        match self.value {
            Value::Len { start, end } => Ok((start, end)),
            _ => Err(self.wrong(field, LEN)),
        }
    }

    /// Checks that the field has wire type `expected`.
    pub(crate) fn expect(&self, field: &'static str, expected: u8) -> Result<(), ScanError> {
        if self.wire_type == expected {
            Ok(())
        } else {
            Err(self.wrong(field, expected))
        }
    }

    fn wrong(&self, field: &'static str, expected: u8) -> ScanError {
        ScanError::WrongWireType {
            offset: self.offset,
            field,
            expected,
            actual: self.wire_type,
        }
    }
}

/// Walks the fields of one message inside `buf[pos..end]`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

// === impl Reader ===

impl<'a> Reader<'a> {
    /// A reader over the whole buffer (the top-level request).
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over `start..end` of the same buffer; the range comes from a
    /// [`Value::Len`] of this buffer, so it is in bounds. It is clamped
    /// anyway so that a misuse reads nothing rather than out of bounds.
    pub(crate) fn nested(&self, start: usize, end: usize) -> Reader<'a> {
        let end = end.min(self.buf.len());
        Reader {
            buf: self.buf,
            pos: start.min(end),
            end,
        }
    }

    /// Where the next field starts: after [`Reader::next_field`], the end
    /// of the field it returned.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The bytes at `start..end` of the request buffer.
    pub(crate) fn bytes(&self, start: usize, end: usize) -> &'a [u8] {
        self.buf.get(start..end).unwrap_or_default()
    }

    /// The next field, or `None` at the end of the message.
    ///
    /// # Errors
    /// Any framing error of the field: see [`ScanError`].
    #[inline]
    pub(crate) fn next_field(&mut self) -> Result<Option<Field>, ScanError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let offset = self.pos;
        let key = self.varint()?;
        // prost rejects keys wider than 32 bits and field number 0.
        let key = u32::try_from(key).map_err(|_| ScanError::InvalidTag { offset, key })?;
        let number = key >> 3;
        if number == 0 {
            return Err(ScanError::InvalidTag {
                offset,
                key: u64::from(key),
            });
        }
        // `key & 7` is at most 7: the cast cannot truncate.
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                self.skip(8)?;
                Value::I64
            }
            LEN => {
                let len_offset = self.pos;
                let len = self.varint()?;
                let available = self.end.saturating_sub(self.pos);
                let start = self.pos;
                let end = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= available)
                    .and_then(|l| start.checked_add(l))
                    .ok_or(ScanError::LengthOutOfBounds {
                        offset: len_offset,
                        len,
                        available,
                    })?;
                self.pos = end;
                Value::Len { start, end }
            }
            3 | 4 => return Err(ScanError::Group { offset, number }),
            I32 => {
                self.skip(4)?;
                Value::I32
            }
            _ => return Err(ScanError::InvalidWireType { offset, wire_type }),
        };
        Ok(Some(Field {
            offset,
            number,
            wire_type,
            value,
        }))
    }

    /// Reads varints up to the end of the window: the payload of a packed
    /// repeated varint field.
    ///
    /// # Errors
    /// A varint that overflows or runs past the end of the window.
    pub(crate) fn check_varints(&mut self) -> Result<(), ScanError> {
        while self.pos < self.end {
            self.varint()?;
        }
        Ok(())
    }

    /// Advances over `n` fixed-width bytes.
    fn skip(&mut self, n: usize) -> Result<(), ScanError> {
        let offset = self.pos;
        match self.pos.checked_add(n) {
            Some(next) if next <= self.end => {
                self.pos = next;
                Ok(())
            }
            _ => Err(ScanError::Truncated { offset }),
        }
    }

    /// Reads one varint at `pos`.
    #[inline]
    fn varint(&mut self) -> Result<u64, ScanError> {
        let offset = self.pos;
        // Fast path: most tags and small lengths are one byte.
        if self.pos < self.end
            && let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos = offset.saturating_add(1);
            return Ok(u64::from(b));
        }
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let at = offset.saturating_add(i as usize);
            if at >= self.end {
                return Err(ScanError::Truncated { offset });
            }
            let Some(&b) = self.buf.get(at) else {
                return Err(ScanError::Truncated { offset });
            };
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // The 10th byte may only carry the 64th bit.
                if i == 9 && b > 1 {
                    return Err(ScanError::VarintOverflow { offset });
                }
                self.pos = at.saturating_add(1);
                return Ok(value);
            }
        }
        Err(ScanError::VarintOverflow { offset })
    }
}

#[cfg(test)]
// Tests may panic: that is how they fail.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<Field>, ScanError> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_each_wire_type_with_positions() {
        // field 1 varint 300, field 2 fixed64, field 3 len 2 "hi", field 4 fixed32
        let buf = [
            0x08, 0xac, 0x02, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1a, 2, b'h', b'i', 0x25, 1, 2, 3, 4,
        ];
        let got = fields(&buf).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].value, Value::Varint(300));
        assert_eq!((got[1].number, got[1].value), (2, Value::I64));
        assert_eq!(got[2].value, Value::Len { start: 14, end: 16 });
        assert_eq!(got[2].offset, 12);
        assert_eq!((got[3].number, got[3].value), (4, Value::I32));
    }

    #[test]
    fn largest_varint_is_accepted_and_one_more_bit_is_not() {
        let mut max = vec![0x08];
        max.extend([0xff; 9]);
        max.push(0x01);
        assert_eq!(fields(&max).unwrap()[0].value, Value::Varint(u64::MAX));
        let mut over = vec![0x08];
        over.extend([0xff; 9]);
        over.push(0x02);
        assert_eq!(fields(&over), Err(ScanError::VarintOverflow { offset: 1 }));
    }

    #[test]
    fn nested_reader_stays_inside_its_window() {
        // field 1 len 2 containing a field whose length claims 5 bytes
        let buf = [0x0a, 0x02, 0x0a, 0x05, 0, 0, 0, 0, 0];
        let mut top = Reader::new(&buf);
        let f = top.next_field().unwrap().unwrap();
        let Value::Len { start, end } = f.value else {
            panic!("expected len");
        };
        // The top-level reader then sees the trailing zero bytes: field 0.
        let mut inner = top.nested(start, end);
        assert_eq!(
            inner.next_field(),
            Err(ScanError::LengthOutOfBounds {
                offset: 3,
                len: 5,
                available: 0
            })
        );
    }
}

//! A series' aggregate as the store keeps it, kept with its
//! [`SeriesKey`](super::SeriesKey).
//!
//! # Format, version 1
//!
//! ```text
//! stored = 0x01                          ; the version byte
//!          start_time_unix_nano          ; u64 big-endian
//!          calls                         ; u64 big-endian
//!          sum                           ; f64 bits big-endian, milliseconds
//!          varint(n) bucket_count{n}     ; u64 big-endian each, n = bounds + 1
//! ```
//!
//! `start_time_unix_nano` is written when the series is first stored and
//! never changed after, so a cumulative series keeps its start across
//! restarts; only a reset (below) moves it.

use super::codec::{FormatError, Reader};
use super::series::{Aggregate, AggregateRef};

/// The format version this code writes and reads.
pub const STORED_VERSION: u8 = 1;

/// A stored aggregate: the totals and when the series began.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAggregate {
    /// When the series was first stored (or last reset).
    pub start_time_unix_nano: u64,
    /// Calls, sum and buckets since then.
    pub totals: Aggregate,
}

impl StoredAggregate {
    /// A series that starts at `at` with `delta`.
    pub fn start(at: u64, delta: AggregateRef<'_>) -> Self {
        Self {
            start_time_unix_nano: at,
            totals: delta.to_aggregate(),
        }
    }

    /// Adds `delta`; with other buckets than the delta's (the bounds were
    /// reconfigured), the series restarts at `at` with the delta alone
    /// (see [`merge_stored`]).
    pub fn add(&mut self, delta: AggregateRef<'_>, at: u64) {
        if self.totals.bucket_counts.len() == delta.bucket_counts.len() {
            self.totals.merge(delta);
        } else {
            *self = Self::start(at, delta);
        }
    }

    /// The encoding (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let t = &self.totals;
        let mut out = Vec::with_capacity(1 + 8 * 3 + 2 + 8 * t.bucket_counts.len());
        out.push(STORED_VERSION);
        out.extend_from_slice(&self.start_time_unix_nano.to_be_bytes());
        out.extend_from_slice(&t.calls.to_be_bytes());
        out.extend_from_slice(&t.sum.to_bits().to_be_bytes());
        prost::encoding::encode_varint(t.bucket_counts.len() as u64, &mut out);
        for c in &t.bucket_counts {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out
    }
}

/// Reads a stored aggregate.
///
/// # Errors
/// An unknown version, or truncated or trailing bytes.
pub fn decode_stored(bytes: &[u8]) -> Result<StoredAggregate, FormatError> {
    let mut r = Reader::versioned(bytes, STORED_VERSION)?;
    let start_time_unix_nano = r.u64()?;
    let calls = r.u64()?;
    let sum = f64::from_bits(r.u64()?);
    let n = r.varint()?;
    // Every count takes 8 bytes: a count beyond what is left is a lie, and
    // must not size an allocation.
    let n = usize::try_from(n)
        .ok()
        .filter(|n| n.checked_mul(8).is_some_and(|b| b <= bytes.len()))
        .ok_or(FormatError::Truncated)?;
    let bucket_counts = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Ok(StoredAggregate {
        start_time_unix_nano,
        totals: Aggregate {
            calls,
            bucket_counts,
            sum,
        },
    })
}

/// Adds `delta` to the `stored` value of its series and gives the new
/// value; without a stored value (the series is new), the series starts at
/// `now_unix_nano`.
///
/// A stored value that does not decode (written by a newer seedgate, or
/// damaged), or whose buckets are not the delta's (the bucket bounds were
/// reconfigured), is not added to: the series restarts at `now_unix_nano`
/// with the delta alone, which a consumer of cumulative metrics reads as a
/// reset. Adding would send a histogram whose buckets mean nothing.
pub fn merge_stored(stored: Option<&[u8]>, delta: &Aggregate, now_unix_nano: u64) -> Vec<u8> {
    let merged = match stored.map(decode_stored) {
        Some(Ok(mut s)) => {
            s.add(delta.view(), now_unix_nano);
            s
        }
        Some(Err(_)) | None => StoredAggregate::start(now_unix_nano, delta.view()),
    };
    merged.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_aggregate_encodes_to_these_bytes_forever() {
        let s = StoredAggregate {
            start_time_unix_nano: 7,
            totals: Aggregate::of(3, &[1, 2], 1.5),
        };
        let mut want = vec![1u8];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
        want.extend_from_slice(&[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        want.push(2);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(s.encode(), want);
        assert_eq!(decode_stored(&want).unwrap(), s);
    }

    #[test]
    fn merge_starts_a_series_then_keeps_its_start_time() {
        let first = merge_stored(None, &Aggregate::of(1, &[1, 0, 0], 2.0), 100);
        let second = merge_stored(Some(&first), &Aggregate::of(2, &[0, 1, 1], 30.0), 200);
        let s = decode_stored(&second).unwrap();
        assert_eq!(s.start_time_unix_nano, 100, "the first store's time stays");
        assert_eq!(s.totals, Aggregate::of(3, &[1, 1, 1], 32.0));
    }

    #[test]
    fn merge_restarts_what_it_cannot_add_to() {
        let delta = Aggregate::of(1, &[0, 1], 5.0);
        let other_buckets = merge_stored(None, &Aggregate::of(4, &[1, 1, 2], 9.0), 100);
        for stored in [other_buckets, vec![9u8, 1, 2], Vec::new()] {
            let s = decode_stored(&merge_stored(Some(&stored), &delta, 300)).unwrap();
            assert_eq!(s.start_time_unix_nano, 300);
            assert_eq!(s.totals, delta);
        }
    }

    #[test]
    fn bad_stored_bytes_are_refused() {
        let good = StoredAggregate {
            start_time_unix_nano: 1,
            totals: Aggregate::of(1, &[1], 1.0),
        }
        .encode();
        assert_eq!(
            decode_stored(&good[..good.len() - 1]),
            Err(FormatError::Truncated)
        );
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(decode_stored(&long), Err(FormatError::Invalid(_))));
        let mut lying = good[..25].to_vec();
        prost::encoding::encode_varint(u64::MAX, &mut lying);
        assert_eq!(decode_stored(&lying), Err(FormatError::Truncated));
    }
}

//! The two entries the span metrics stage stores: a request's [`Deltas`]
//! (one entry per stored request share, on `spanmetrics/<pipeline>/deltas`)
//! and the [`Snapshot`] of every series (one entry, on
//! `spanmetrics/<pipeline>/state`). Both outlive the process that wrote
//! them, so both are versioned byte formats.
//!
//! Series keys live inside the entries' payloads (as
//! [`SeriesKey::encode`] bytes, length-prefixed), not as LMDB keys: LMDB's
//! 511-byte key limit does not apply to them.
//!
//! # Deltas, version 2
//!
//! ```text
//! deltas    = 0x02 series*                  ; the version byte, then every series, in ascending key order
//! series    = varint(shared) varint(len) suffix aggregate
//!                                           ; key = the previous series' key's first `shared` bytes, then
//!                                           ; the `len` bytes of suffix (`shared` is 0 for the first):
//!                                           ; a SeriesKey encoding (its own version byte)
//! aggregate = varint(calls)
//!             f64 bits big-endian           ; the sum of the durations, milliseconds
//!             varint(n)                     ; n = bucket bounds + 1, at most 65536
//!             varint(k) bucket{k}           ; the buckets whose count is not 0, by ascending index
//! bucket    = varint(index) varint(count)   ; index < n
//! ```
//!
//! Why: an entry is written with every request of spans, in the same
//! transaction, and read back by the flusher; version 1 (below) was a fifth
//! of the request's size. Sorted keys share most of their bytes (service,
//! kind, most of a span name) and a request's series have a few spans
//! each, so most buckets are 0: version 2 is under half the size.
//!
//! # Deltas, version 1 (read, no longer written)
//!
//! ```text
//! deltas    = 0x01 series*                  ; the version byte, then every series, in ascending key order
//! series    = varint(len) key aggregate     ; key: a SeriesKey encoding (its own version byte)
//! aggregate = varint(calls)
//!             f64 bits big-endian           ; the sum of the durations, milliseconds
//!             varint(n) varint(count){n}    ; n = bucket bounds + 1
//! ```
//!
//! # Snapshot, version 1
//!
//! ```text
//! snapshot  = 0x01
//!             last_flush_unix_nano          ; u64 big-endian, 0 before the first flush
//!             entry*                        ; in key order
//! entry     = varint(len) key               ; a SeriesKey encoding
//!             varint(len) stored            ; a StoredAggregate encoding (version 1)
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use super::codec::{FormatError, Reader, put_bytes, put_varint};
use super::key::SeriesKey;
use super::series::{AggregateRef, Deltas};
use super::stored::{StoredAggregate, decode_stored};

/// The version of the deltas format this code writes (it reads 1 too).
pub const DELTAS_VERSION: u8 = 2;

/// The version of the snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

/// The most bucket counts a series of a deltas entry has: counts that are
/// not written must not size an allocation without a bound.
const MAX_BUCKETS: usize = 1 << 16;

/// Encodes a request's deltas (see the module's documentation).
pub fn encode_deltas(deltas: &Deltas) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + deltas.len() * 64);
    out.push(DELTAS_VERSION);
    let mut previous: &[u8] = &[];
    for (key, a) in deltas {
        put_series(&mut out, previous, key.as_bytes(), a.view());
        previous = key.as_bytes();
    }
    out
}

/// Appends one series of a deltas entry: the caller writes the version
/// byte first, then the series in key order, each with the key before it.
pub(super) fn put_series(out: &mut Vec<u8>, previous: &[u8], key: &[u8], delta: AggregateRef<'_>) {
    let shared = previous.iter().zip(key).take_while(|(a, b)| a == b).count();
    put_varint(out, shared as u64);
    put_bytes(out, key.get(shared..).unwrap_or_default());
    put_varint(out, delta.calls);
    out.extend_from_slice(&delta.sum.to_bits().to_be_bytes());
    put_varint(out, delta.bucket_counts.len() as u64);
    let filled = delta.bucket_counts.iter().filter(|c| **c != 0).count();
    put_varint(out, filled as u64);
    for (i, c) in delta.bucket_counts.iter().enumerate() {
        if *c != 0 {
            put_varint(out, i as u64);
            put_varint(out, *c);
        }
    }
}

/// Reads deltas back.
///
/// # Errors
/// An unknown version, a bad key, truncated or trailing bytes.
pub fn decode_deltas(bytes: &[u8]) -> Result<Deltas, FormatError> {
    let mut view = DeltasView::default();
    view.read(bytes)?;
    let mut out = Deltas::default();
    for (key, delta) in view.iter() {
        out.add(SeriesKey::decode(key)?, &delta.to_aggregate());
    }
    Ok(out)
}

/// A deltas entry read without an allocation per series: its keys go to
/// one buffer (not checked: [`SeriesKey::decode`] does that) and its bucket
/// counts to another, so that the flusher, which adds most series to ones
/// it finds by their bytes, allocates nothing per series. One view reads
/// entry after entry, reusing its buffers.
#[derive(Debug, Default)]
pub struct DeltasView {
    series: Vec<SeriesDelta>,
    keys: Vec<u8>,
    counts: Vec<u64>,
}

#[derive(Debug)]
struct SeriesDelta {
    key: Range<usize>,
    calls: u64,
    sum: f64,
    counts: Range<usize>,
}

impl DeltasView {
    /// Reads the entry `bytes` (forgetting the one read before).
    ///
    /// # Errors
    /// An unknown version, truncated or trailing bytes, series out of key
    /// order or listed twice.
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), FormatError> {
        self.series.clear();
        self.keys.clear();
        self.counts.clear();
        let (version, mut r) = Reader::any_version(bytes)?;
        let version2 = match version {
            2 => true,
            1 => false,
            found => {
                return Err(FormatError::Version {
                    found,
                    known: DELTAS_VERSION,
                });
            }
        };
        while !r.is_empty() {
            let key = self.read_key(&mut r, version2)?;
            let calls = r.varint()?;
            let sum = f64::from_bits(r.u64()?);
            let counts = if version2 {
                self.read_sparse_counts(&mut r)?
            } else {
                self.read_dense_counts(&mut r, bytes.len())?
            };
            self.series.push(SeriesDelta {
                key,
                calls,
                sum,
                counts,
            });
        }
        r.finish()
    }

    /// A series' key, appended to `keys`; it must come after the previous
    /// one.
    fn read_key(
        &mut self,
        r: &mut Reader<'_>,
        version2: bool,
    ) -> Result<Range<usize>, FormatError> {
        let previous = self.series.last().map_or(0..0, |s| s.key.clone());
        let start = self.keys.len();
        if version2 {
            let shared = usize::try_from(r.varint()?)
                .ok()
                .filter(|n| *n <= previous.len())
                .ok_or(FormatError::Invalid(
                    "a key shares more than the key before",
                ))?;
            self.keys
                .extend_from_within(previous.start..previous.start + shared);
        }
        self.keys.extend_from_slice(r.bytes()?);
        let key = start..self.keys.len();
        if self.keys.get(previous) >= self.keys.get(key.clone()) {
            return Err(FormatError::Invalid("series out of order or listed twice"));
        }
        Ok(key)
    }

    fn read_sparse_counts(&mut self, r: &mut Reader<'_>) -> Result<Range<usize>, FormatError> {
        let n = usize::try_from(r.varint()?)
            .ok()
            .filter(|n| *n <= MAX_BUCKETS)
            .ok_or(FormatError::Invalid("too many buckets"))?;
        let start = self.counts.len();
        self.counts.resize(start + n, 0);
        for _ in 0..r.varint()? {
            let index = usize::try_from(r.varint()?)
                .ok()
                .filter(|i| *i < n)
                .ok_or(FormatError::Invalid("a bucket index past the buckets"))?;
            if let Some(c) = self.counts.get_mut(start + index) {
                *c = r.varint()?;
            }
        }
        Ok(start..self.counts.len())
    }

    fn read_dense_counts(
        &mut self,
        r: &mut Reader<'_>,
        entry_len: usize,
    ) -> Result<Range<usize>, FormatError> {
        // Every count takes at least one byte: a count beyond the bytes
        // must not size an allocation.
        let n = usize::try_from(r.varint()?)
            .ok()
            .filter(|n| *n <= entry_len)
            .ok_or(FormatError::Truncated)?;
        let start = self.counts.len();
        for _ in 0..n {
            self.counts.push(r.varint()?);
        }
        Ok(start..self.counts.len())
    }

    /// Every series' key bytes and delta, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], AggregateRef<'_>)> {
        self.series.iter().map(|s| {
            let delta = AggregateRef {
                calls: s.calls,
                bucket_counts: self.counts.get(s.counts.clone()).unwrap_or_default(),
                sum: s.sum,
            };
            (self.keys.get(s.key.clone()).unwrap_or_default(), delta)
        })
    }
}

/// Every series of a pipeline and when they were last flushed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// When the last flush happened (0: never); a delta point starts here.
    pub last_flush_unix_nano: u64,
    /// Every series: totals since its start (cumulative), or its start
    /// alone with empty totals (delta).
    pub series: BTreeMap<SeriesKey, StoredAggregate>,
}

impl Snapshot {
    /// The encoding (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.series.len() * 256);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&self.last_flush_unix_nano.to_be_bytes());
        for (key, stored) in &self.series {
            put_bytes(&mut out, key.as_bytes());
            put_bytes(&mut out, &stored.encode());
        }
        out
    }

    /// Reads a snapshot back.
    ///
    /// # Errors
    /// An unknown version, a bad key or aggregate, truncated or trailing
    /// bytes, a series listed twice.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::versioned(bytes, SNAPSHOT_VERSION)?;
        let last_flush_unix_nano = r.u64()?;
        let mut series = BTreeMap::new();
        while !r.is_empty() {
            let key = SeriesKey::decode(r.bytes()?)?;
            let stored = decode_stored(r.bytes()?)?;
            if series.insert(key, stored).is_some() {
                return Err(FormatError::Invalid("a series is listed twice"));
            }
        }
        r.finish()?;
        Ok(Self {
            last_flush_unix_nano,
            series,
        })
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

    use super::*;
    use crate::processors::spanmetrics::Aggregate;

    fn key(service: &str) -> SeriesKey {
        SeriesKey::new(vec![KeyValue {
            key: "service.name".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.to_owned())),
            }),
            ..Default::default()
        }])
    }

    #[test]
    fn deltas_encode_to_these_bytes_forever() {
        let mut d = Deltas::default();
        d.add(key("a"), &Aggregate::of(300, &[1, 299, 0], 1.5));
        d.add(key("b"), &Aggregate::of(1, &[0, 0, 1], 0.5));
        let mut want = vec![2u8];
        want.extend_from_slice(&[0, 17]);
        want.extend_from_slice(b"\x01\x0cservice.name\x01\x01a");
        want.extend_from_slice(&[0xac, 0x02]);
        want.extend_from_slice(&[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[3, 2, 0, 1, 1, 0xab, 0x02]);
        // "b" shares all but its last byte with "a".
        want.extend_from_slice(&[16, 1, b'b', 1]);
        want.extend_from_slice(&[0x3f, 0xe0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[3, 1, 2, 1]);
        assert_eq!(encode_deltas(&d), want);
        assert_eq!(decode_deltas(&want).unwrap(), d);
        assert_eq!(decode_deltas(&[2]).unwrap(), Deltas::default());
    }

    #[test]
    fn version_1_deltas_are_still_read() {
        let mut d = Deltas::default();
        d.add(key("a"), &Aggregate::of(300, &[1, 299], 1.5));
        let mut v1 = vec![1u8];
        v1.push(17);
        v1.extend_from_slice(b"\x01\x0cservice.name\x01\x01a");
        v1.extend_from_slice(&[0xac, 0x02]);
        v1.extend_from_slice(&[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        v1.extend_from_slice(&[2, 1, 0xab, 0x02]);
        assert_eq!(decode_deltas(&v1).unwrap(), d);
        assert_eq!(decode_deltas(&[1]).unwrap(), Deltas::default());
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut s = Snapshot {
            last_flush_unix_nano: 42,
            ..Snapshot::default()
        };
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            s.series.insert(
                key(name),
                StoredAggregate {
                    start_time_unix_nano: i as u64,
                    totals: Aggregate::of(2, &[1, 1, 0], 3.0),
                },
            );
        }
        s.series.insert(
            SeriesKey::overflow(),
            StoredAggregate {
                start_time_unix_nano: 9,
                totals: Aggregate::of(0, &[0, 0, 0], 0.0),
            },
        );
        let bytes = s.encode();
        assert_eq!(&bytes[..9], &[1, 0, 0, 0, 0, 0, 0, 0, 42]);
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut d = Deltas::default();
        d.add(key("a"), &Aggregate::of(1, &[1, 0], 1.0));
        let good = encode_deltas(&d);
        assert_eq!(
            decode_deltas(&good[..good.len() - 1]),
            Err(FormatError::Truncated)
        );
        let mut newer = good.clone();
        newer[0] = 3;
        assert!(matches!(
            decode_deltas(&newer),
            Err(FormatError::Version { found: 3, .. })
        ));
        let mut sharing_too_much = good.clone();
        sharing_too_much[1] = 1;
        assert!(matches!(
            decode_deltas(&sharing_too_much),
            Err(FormatError::Invalid(_))
        ));
        let mut twice = good.clone();
        twice.extend_from_slice(&good[1..]);
        assert!(matches!(
            decode_deltas(&twice),
            Err(FormatError::Invalid(_))
        ));
        let one = Aggregate::of(1, &[1, 0], 1.0);
        let (a, b) = (key("a"), key("b"));
        let mut backwards = vec![DELTAS_VERSION];
        put_series(&mut backwards, &[], b.as_bytes(), one.view());
        put_series(&mut backwards, b.as_bytes(), a.as_bytes(), one.view());
        assert!(matches!(
            decode_deltas(&backwards),
            Err(FormatError::Invalid(_))
        ));
        // The last bytes are: 2 buckets, 1 filled, index 0, count 1.
        let mut past_the_buckets = good.clone();
        let at = past_the_buckets.len() - 2;
        past_the_buckets[at] = 2;
        assert!(matches!(
            decode_deltas(&past_the_buckets),
            Err(FormatError::Invalid(_))
        ));
        let snap = Snapshot::default().encode();
        assert_eq!(Snapshot::decode(&snap[..5]), Err(FormatError::Truncated));
        assert_eq!(Snapshot::decode(&[]), Err(FormatError::Empty));
    }
}

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
//! # Deltas, version 1
//!
//! ```text
//! deltas    = 0x01 series*                  ; the version byte, then every series, in key order
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

use prost::encoding::encode_varint;

use super::aggregate::{Aggregate, Deltas};
use super::codec::{FormatError, Reader, put_bytes};
use super::key::SeriesKey;
use super::stored::{StoredAggregate, decode_stored};

/// The version of the deltas format this code writes and reads.
pub const DELTAS_VERSION: u8 = 1;

/// The version of the snapshot format this code writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Encodes a request's deltas (see the module's documentation).
pub fn encode_deltas(deltas: &Deltas) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + deltas.len() * 64);
    out.push(DELTAS_VERSION);
    for (key, a) in deltas {
        put_bytes(&mut out, key.as_bytes());
        encode_varint(a.calls, &mut out);
        out.extend_from_slice(&a.sum.to_bits().to_be_bytes());
        encode_varint(a.bucket_counts.len() as u64, &mut out);
        for c in &a.bucket_counts {
            encode_varint(*c, &mut out);
        }
    }
    out
}

/// Reads deltas back.
///
/// # Errors
/// An unknown version, a bad key, truncated or trailing bytes.
pub fn decode_deltas(bytes: &[u8]) -> Result<Deltas, FormatError> {
    let mut r = Reader::versioned(bytes, DELTAS_VERSION)?;
    let mut out = Deltas::default();
    while !r.is_empty() {
        let key = SeriesKey::decode(r.bytes()?)?;
        let calls = r.varint()?;
        let sum = f64::from_bits(r.u64()?);
        // Every count takes at least one byte: a count beyond the bytes
        // must not size an allocation.
        let n = usize::try_from(r.varint()?)
            .ok()
            .filter(|n| *n <= bytes.len())
            .ok_or(FormatError::Truncated)?;
        let bucket_counts = (0..n).map(|_| r.varint()).collect::<Result<Vec<_>, _>>()?;
        let delta = Aggregate {
            calls,
            bucket_counts,
            sum,
        };
        if out.get(&key).is_some() {
            return Err(FormatError::Invalid("a series is listed twice"));
        }
        out.add(key, &delta);
    }
    r.finish()?;
    Ok(out)
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
        d.add(key("a"), &Aggregate::of(300, &[1, 299], 1.5));
        let mut want = vec![1u8];
        want.push(17);
        want.extend_from_slice(b"\x01\x0cservice.name\x01\x01a");
        want.extend_from_slice(&[0xac, 0x02]);
        want.extend_from_slice(&[0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[2, 1, 0xab, 0x02]);
        assert_eq!(encode_deltas(&d), want);
        assert_eq!(decode_deltas(&want).unwrap(), d);
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
        newer[0] = 2;
        assert!(matches!(
            decode_deltas(&newer),
            Err(FormatError::Version { found: 2, .. })
        ));
        let mut twice = good.clone();
        twice.extend_from_slice(&good[1..]);
        assert!(matches!(
            decode_deltas(&twice),
            Err(FormatError::Invalid(_))
        ));
        let snap = Snapshot::default().encode();
        assert_eq!(Snapshot::decode(&snap[..5]), Err(FormatError::Truncated));
        assert_eq!(Snapshot::decode(&[]), Err(FormatError::Empty));
    }
}

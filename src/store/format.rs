//! The byte layout of keys and values on disk, in one place.
//!
//! Everything that turns an in-memory value into LMDB bytes (or back) lives
//! here so that the format described in the [`super`] module doc has exactly
//! one implementation. All integers are big-endian: for keys that is what
//! makes LMDB's lexicographic order equal to numeric order, and values use the
//! same convention so there is only one rule to remember.
//!
//! Invariants:
//! - an entry key is exactly [`ENTRY_KEY_LEN`] bytes: `queue_id ++ seq`;
//! - an entry value is [`HEADER_LEN`] header bytes followed by the payload,
//!   and the header's first byte is [`FORMAT_VERSION`];
//! - decoding never panics on foreign bytes: it returns `None`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Version byte written first in every entry value. Bump it, and teach
/// [`decode_header`] the old one, when the header changes.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// Bytes before the payload in an entry value: version (1), reserved (3),
/// record count (4), append time in Unix milliseconds (8).
pub(crate) const HEADER_LEN: usize = 16;

/// Length of an entry key: queue id (4) then sequence number (8).
pub(crate) const ENTRY_KEY_LEN: usize = 12;

/// `meta` key holding the next queue id to hand out (u32 BE).
pub(crate) const META_NEXT_ID: &[u8] = b"next_queue_id";

/// `meta` key rewritten after a "full" refusal so that pages freed by the
/// previous commit become reusable (LMDB reuses a freed page only two
/// transactions after the one that freed it). Its value means nothing.
pub(crate) const META_TICK: &[u8] = b"freelist_tick";

/// Prefix of `meta` keys mapping a queue name to its id (u32 BE).
pub(crate) const META_QUEUE_PREFIX: &[u8] = b"queue/";

/// Prefix of `meta` keys holding a queue's next sequence number (u64 BE),
/// followed by the queue id (u32 BE). It keeps numbering monotonic across
/// restarts even when the queue was fully drained.
pub(crate) const META_SEQ_PREFIX: &[u8] = b"seq/";

/// The key of entry `seq` in queue `queue_id`.
pub(crate) fn entry_key(queue_id: u32, seq: u64) -> [u8; ENTRY_KEY_LEN] {
    let mut key = [0u8; ENTRY_KEY_LEN];
    key[..4].copy_from_slice(&queue_id.to_be_bytes());
    key[4..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits an entry key into `(queue_id, seq)`; `None` if it is not one.
pub(crate) fn decode_entry_key(key: &[u8]) -> Option<(u32, u64)> {
    let key: &[u8; ENTRY_KEY_LEN] = key.try_into().ok()?;
    let (id, seq) = key.split_at(4);
    Some((
        u32::from_be_bytes(id.try_into().ok()?),
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

/// The `meta` key of a queue name.
pub(crate) fn queue_name_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(META_QUEUE_PREFIX.len() + name.len());
    key.extend_from_slice(META_QUEUE_PREFIX);
    key.extend_from_slice(name.as_bytes());
    key
}

/// The `meta` key of a queue's next sequence number.
pub(crate) fn queue_seq_key(queue_id: u32) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(META_SEQ_PREFIX);
    key[4..].copy_from_slice(&queue_id.to_be_bytes());
    key
}

/// The decoded header of an entry value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Log records, data points or spans in the payload.
    pub(crate) records: u32,
    /// When the entry was appended, Unix milliseconds.
    pub(crate) appended_at_ms: u64,
}

/// Encodes the header of an entry holding `records` records, stamped now.
pub(crate) fn encode_header(records: u32) -> [u8; HEADER_LEN] {
    // A clock before 1970 is a broken host, not a reason to refuse data.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut header = [0u8; HEADER_LEN];
    header[0] = FORMAT_VERSION;
    header[4..8].copy_from_slice(&records.to_be_bytes());
    header[8..16].copy_from_slice(&now_ms.to_be_bytes());
    header
}

/// Splits an entry value into its header and payload; `None` if the value is
/// too short or has a version this build does not know.
pub(crate) fn decode_value(value: &[u8]) -> Option<(Header, &[u8])> {
    if value.len() < HEADER_LEN {
        return None;
    }
    let (header, payload) = value.split_at(HEADER_LEN);
    if header[0] != FORMAT_VERSION {
        return None;
    }
    let records = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let appended_at_ms = u64::from_be_bytes(header[8..16].try_into().ok()?);
    Some((
        Header {
            records,
            appended_at_ms,
        },
        payload,
    ))
}

/// Decodes a big-endian u32 stored in `meta`.
pub(crate) fn decode_u32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// Decodes a big-endian u64 stored in `meta`.
pub(crate) fn decode_u64(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_by_queue_then_seq() {
        // The whole FIFO design rests on byte order == (queue, seq) order.
        let mut keys = [
            entry_key(2, 0),
            entry_key(1, 256),
            entry_key(1, 1),
            entry_key(1, u64::MAX),
            entry_key(0, 7),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_entry_key(k).unwrap()).collect();
        assert_eq!(
            decoded,
            vec![(0, 7), (1, 1), (1, 256), (1, u64::MAX), (2, 0)]
        );
    }

    #[test]
    fn value_roundtrip_and_rejects_garbage() {
        let mut value = encode_header(42).to_vec();
        value.extend_from_slice(b"payload");
        let (header, payload) = decode_value(&value).unwrap();
        assert_eq!(header.records, 42);
        assert!(header.appended_at_ms > 0);
        assert_eq!(payload, b"payload");

        assert!(decode_value(&value[..HEADER_LEN - 1]).is_none());
        value[0] = FORMAT_VERSION + 1;
        assert!(decode_value(&value).is_none());
        assert!(decode_entry_key(b"short").is_none());
    }
}

//! The byte layout of keys and values on disk, in one place.
//!
//! Everything that turns an in-memory value into LMDB bytes (or back) lives
//! here so that the format described in the [`super`] module doc has exactly
//! one implementation. All integers are big-endian: for keys that is what
//! makes LMDB's lexicographic order equal to numeric order, and values use the
//! same convention so there is only one rule to remember.
//!
//! Invariants:
//! - a log key is exactly [`LOG_KEY_LEN`] bytes: the entry's position, which
//!   is also its sequence number in its queue;
//! - an entry value is [`HEADER_LEN`] header bytes followed by the payload,
//!   and the header's first byte is [`FORMAT_VERSION`];
//! - format 1 (`queue_id ++ seq` keys in `entries`, 16-byte headers) is only
//!   ever read, by the migration at open;
//! - decoding never panics on foreign bytes: it returns `None`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Version byte written first in every entry value. Bump it, and teach
/// [`decode_value`] the old one, when the header changes.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// Bytes before the payload in an entry value: version (1), reserved (3),
/// record count (4), append time in Unix milliseconds (8), queue id (4).
pub(crate) const HEADER_LEN: usize = 20;

/// Length of a log key: the entry's position (8).
pub(crate) const LOG_KEY_LEN: usize = 8;

/// `meta` key holding the next queue id to hand out (u32 BE).
pub(crate) const META_NEXT_ID: &[u8] = b"next_queue_id";

/// `meta` key holding the next log position to hand out (u64 BE): above
/// every position ever written, so a sequence number is never reused even
/// when the log was swept empty.
pub(crate) const META_NEXT_SEQ: &[u8] = b"next_seq";

/// `meta` key rewritten after a "full" refusal so that pages freed by the
/// previous commit become reusable (LMDB reuses a freed page only two
/// transactions after the one that freed it). Its value means nothing.
pub(crate) const META_TICK: &[u8] = b"freelist_tick";

/// Prefix of `meta` keys mapping a queue name to its id (u32 BE).
pub(crate) const META_QUEUE_PREFIX: &[u8] = b"queue/";

/// Prefix of `meta` keys, followed by the queue id (u32 BE), holding the
/// position (u64 BE) below which every entry of that queue is consumed:
/// entries still in the log below it wait for the sweep, and are deleted at
/// open if a crash came first.
pub(crate) const META_DONE_PREFIX: &[u8] = b"done/";

/// Format 1: prefix of `meta` keys holding a queue's next sequence number;
/// deleted by the migration.
pub(crate) const V1_META_SEQ_PREFIX: &[u8] = b"seq/";

/// Format 1: version byte and header length of an `entries` value.
const V1_FORMAT_VERSION: u8 = 1;
const V1_HEADER_LEN: usize = 16;

/// The log key of the entry at `pos`.
pub(crate) fn log_key(pos: u64) -> [u8; LOG_KEY_LEN] {
    pos.to_be_bytes()
}

/// The position a log key names; `None` if it is not one.
pub(crate) fn decode_log_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Format 1: splits an `entries` key into `(queue_id, seq)`; `None` if it
/// is not one.
pub(crate) fn decode_v1_entry_key(key: &[u8]) -> Option<(u32, u64)> {
    let key: &[u8; 12] = key.try_into().ok()?;
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

/// The `meta` key of a queue's "consumed below" position.
pub(crate) fn queue_done_key(queue_id: u32) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..5].copy_from_slice(META_DONE_PREFIX);
    key[5..].copy_from_slice(&queue_id.to_be_bytes());
    key
}

/// The decoded header of an entry value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Log records, data points or spans in the payload.
    pub(crate) records: u32,
    /// When the entry was appended, Unix milliseconds.
    pub(crate) appended_at_ms: u64,
    /// The queue it belongs to.
    pub(crate) queue: u32,
}

/// Encodes the header of an entry of `queue` holding `records` records,
/// stamped now.
pub(crate) fn encode_header(queue: u32, records: u32) -> [u8; HEADER_LEN] {
    // A clock before 1970 is a broken host, not a reason to refuse data.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    encode_header_at(queue, records, now_ms)
}

fn encode_header_at(queue: u32, records: u32, appended_at_ms: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = FORMAT_VERSION;
    header[4..8].copy_from_slice(&records.to_be_bytes());
    header[8..16].copy_from_slice(&appended_at_ms.to_be_bytes());
    header[16..20].copy_from_slice(&queue.to_be_bytes());
    header
}

/// Splits an entry value into its header and payload; `None` if the value is
/// too short or has a version this build does not know.
pub(crate) fn decode_value(value: &[u8]) -> Option<(Header, &[u8])> {
    if value.len() < HEADER_LEN || value[0] != FORMAT_VERSION {
        return None;
    }
    let (header, payload) = value.split_at(HEADER_LEN);
    Some((
        Header {
            records: u32::from_be_bytes(header[4..8].try_into().ok()?),
            appended_at_ms: u64::from_be_bytes(header[8..16].try_into().ok()?),
            queue: u32::from_be_bytes(header[16..20].try_into().ok()?),
        },
        payload,
    ))
}

/// Format 1: the format 2 value of an `entries` value of queue `queue`
/// (same records, time and payload); `None` if it does not decode.
pub(crate) fn v1_value_to_v2(queue: u32, value: &[u8]) -> Option<Vec<u8>> {
    if value.len() < V1_HEADER_LEN || value[0] != V1_FORMAT_VERSION {
        return None;
    }
    let (header, payload) = value.split_at(V1_HEADER_LEN);
    let records = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let appended_at_ms = u64::from_be_bytes(header[8..16].try_into().ok()?);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&encode_header_at(queue, records, appended_at_ms));
    out.extend_from_slice(payload);
    Some(out)
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
    fn log_keys_sort_by_position() {
        // Appends go to the end of the log and the sweep deletes from its
        // start only because byte order == position order.
        let mut keys = [log_key(256), log_key(1), log_key(u64::MAX), log_key(0)];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_log_key(k).unwrap()).collect();
        assert_eq!(decoded, vec![0, 1, 256, u64::MAX]);
        assert!(decode_log_key(b"short").is_none());
    }

    #[test]
    fn value_roundtrip_and_rejects_garbage() {
        let mut value = encode_header(7, 42).to_vec();
        value.extend_from_slice(b"payload");
        let (header, payload) = decode_value(&value).unwrap();
        assert_eq!((header.queue, header.records), (7, 42));
        assert!(header.appended_at_ms > 0);
        assert_eq!(payload, b"payload");

        assert!(decode_value(&value[..HEADER_LEN - 1]).is_none());
        value[0] = FORMAT_VERSION + 1;
        assert!(decode_value(&value).is_none());
    }

    #[test]
    fn format_1_values_convert_keeping_records_time_and_payload() {
        let mut v1 = vec![1u8, 0, 0, 0];
        v1.extend_from_slice(&9u32.to_be_bytes());
        v1.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        v1.extend_from_slice(b"body");
        let v2 = v1_value_to_v2(3, &v1).unwrap();
        let (header, payload) = decode_value(&v2).unwrap();
        assert_eq!(
            header,
            Header {
                records: 9,
                appended_at_ms: 1_700_000_000_000,
                queue: 3
            }
        );
        assert_eq!(payload, b"body");
        assert!(
            v1_value_to_v2(3, &v2).is_none(),
            "a format 2 value is not format 1"
        );
        assert_eq!(
            decode_v1_entry_key(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some((5, 256))
        );
    }
}

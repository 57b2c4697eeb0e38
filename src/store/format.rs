//! The byte layout of keys and values on disk, in one place.
//!
//! Everything that turns an in-memory value into LMDB bytes (or back) lives
//! here so that the format described in the [`super`] module doc has exactly
//! one implementation. All integers are big-endian: for keys that is what
//! makes LMDB's lexicographic order equal to numeric order, and values use the
//! same convention so there is only one rule to remember.
//!
//! Invariants:
//! - a log key is exactly [`LOG_KEY_LEN`] bytes: the position of the first
//!   part of the block it holds;
//! - a block (format 3) is [`BLOCK_HEADER_LEN`] header bytes, a directory of
//!   [`SLOT_LEN`]-byte slots (one per part, deltas increasing), then the
//!   parts' payloads in slot order; a part's position is the key plus its
//!   delta, and is its sequence number in its queue;
//! - a format 2 value (one part: [`HEADER_LEN`] header bytes, then the
//!   payload) is read as a block of one part at delta 0, so a buffer
//!   written by format 2 needs no migration;
//! - format 1 (`queue_id ++ seq` keys in `entries`, 16-byte headers) is only
//!   ever read, by the migration at open;
//! - decoding never panics on foreign bytes: it returns `None`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Version byte of a format 2 value (one part). Still read; written only
/// by the format 1 migration.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// Bytes before the payload in a format 2 value: version (1), reserved
/// (3), record count (4), append time in Unix milliseconds (8), queue id
/// (4).
pub(crate) const HEADER_LEN: usize = 20;

/// Version byte of a block: every part of one commit in one value.
pub(crate) const BLOCK_VERSION: u8 = 3;

/// Bytes before a block's directory: version (1), reserved (3), slot count
/// (4), append time in Unix milliseconds (8).
pub(crate) const BLOCK_HEADER_LEN: usize = 16;

/// Bytes of one directory slot: delta from the key (4), queue id (4),
/// record count (4), payload offset in the value (4). A part ends where
/// the next one starts, the last one at the value's end.
pub(crate) const SLOT_LEN: usize = 16;

/// Length of a log key: the entry's position (8).
pub(crate) const LOG_KEY_LEN: usize = 8;

/// `meta` key holding the next queue id to hand out (u32 BE).
pub(crate) const META_NEXT_ID: &[u8] = b"next_queue_id";

/// `meta` key holding the next log position to hand out (u64 BE): above
/// every position ever written, so a sequence number is never reused even
/// when the log was swept empty.
pub(crate) const META_NEXT_SEQ: &[u8] = b"next_seq";

/// Prefix of `meta` keys, followed by a part's position (u64 BE), saying
/// that the part was consumed out of order (a tail sampling decision, a
/// re-route) while its block still holds other live parts. Deleted with
/// the block, or when the block is rewritten without it. Empty value.
pub(crate) const META_GONE_PREFIX: &[u8] = b"gone/";

/// `meta` key rewritten after a "full" refusal so that pages freed by the
/// previous commit become reusable (LMDB reuses a freed page only two
/// transactions after the one that freed it). Its value means nothing.
pub(crate) const META_TICK: &[u8] = b"freelist_tick";

/// Prefix of `meta` keys mapping a queue name to its id (u32 BE).
pub(crate) const META_QUEUE_PREFIX: &[u8] = b"queue/";

/// Prefix of `meta` keys, followed by the queue id (u32 BE), holding the
/// position (u64 BE) below which every entry of that queue is consumed
/// (`u64::MAX` once the queue is dropped): their blocks go once no live
/// part is left in them.
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

/// The `meta` key saying that the part at `pos` was consumed out of order.
pub(crate) fn gone_key(pos: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..5].copy_from_slice(META_GONE_PREFIX);
    key[5..].copy_from_slice(&pos.to_be_bytes());
    key
}

/// The position a `gone/` key names; `None` if it is not one.
pub(crate) fn decode_gone_key(key: &[u8]) -> Option<u64> {
    decode_u64(key.strip_prefix(META_GONE_PREFIX)?)
}

/// One part of a block: read from the map, or to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part<'v> {
    /// Its position minus the block's key.
    pub(crate) delta: u32,
    /// The queue it belongs to.
    pub(crate) queue: u32,
    /// Log records, data points or spans in the payload.
    pub(crate) records: u32,
    pub(crate) payload: &'v [u8],
}

/// A decoded log value: a block of parts, or a format 2 value seen as a
/// block of one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block<'v> {
    value: &'v [u8],
    /// When the block was appended, Unix milliseconds.
    pub(crate) appended_at_ms: u64,
    /// Directory slots (format 3); `None` for a format 2 value.
    slots: Option<usize>,
}

/// Reads a big-endian u32 at `at`; `None` past the end.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a log value into its parts' directory; `None` if it is too short
/// or has a version this build does not know. The slots themselves are
/// checked as they are read ([`Block::part`], [`Block::parts`]).
pub(crate) fn decode_block(value: &[u8]) -> Option<Block<'_>> {
    match *value.first()? {
        FORMAT_VERSION => {
            let (header, _) = decode_value(value)?;
            Some(Block {
                value,
                appended_at_ms: header.appended_at_ms,
                slots: None,
            })
        }
        BLOCK_VERSION => {
            let slots = usize::try_from(u32_at(value, 4)?).ok()?;
            let dir_end = slots.checked_mul(SLOT_LEN)?.checked_add(BLOCK_HEADER_LEN)?;
            (value.len() >= dir_end).then_some(())?;
            Some(Block {
                value,
                appended_at_ms: u64::from_be_bytes(value.get(8..16)?.try_into().ok()?),
                slots: Some(slots),
            })
        }
        _ => None,
    }
}

// === impl Block ===

impl<'v> Block<'v> {
    /// Parts in the value (those a rewrite left out are not counted).
    pub(crate) fn len(&self) -> usize {
        self.slots.unwrap_or(1)
    }

    /// The part in slot `i`; `None` if the slot is out of range or does not
    /// decode.
    fn slot(&self, i: usize) -> Option<Part<'v>> {
        let Some(slots) = self.slots else {
            let (header, payload) = decode_value(self.value)?;
            return (i == 0).then_some(Part {
                delta: 0,
                queue: header.queue,
                records: header.records,
                payload,
            });
        };
        (i < slots).then_some(())?;
        let at = BLOCK_HEADER_LEN + i * SLOT_LEN;
        let start = usize::try_from(u32_at(self.value, at + 12)?).ok()?;
        let end = if i + 1 < slots {
            usize::try_from(u32_at(self.value, at + SLOT_LEN + 12)?).ok()?
        } else {
            self.value.len()
        };
        let dir_end = BLOCK_HEADER_LEN + slots * SLOT_LEN;
        (dir_end <= start).then_some(())?;
        Some(Part {
            delta: u32_at(self.value, at)?,
            queue: u32_at(self.value, at + 4)?,
            records: u32_at(self.value, at + 8)?,
            payload: self.value.get(start..end)?,
        })
    }

    /// The part at `delta` from the key; `None` if the block has none
    /// there (deltas increase from slot to slot: a binary search).
    pub(crate) fn part(&self, delta: u32) -> Option<Part<'v>> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = match self.slots {
                Some(_) => u32_at(self.value, BLOCK_HEADER_LEN + mid * SLOT_LEN)?,
                None => 0,
            };
            match at.cmp(&delta) {
                std::cmp::Ordering::Equal => return self.slot(mid),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    /// Every part, in order; `None` if any slot does not decode or the
    /// deltas do not increase.
    pub(crate) fn parts(&self) -> Option<Vec<Part<'v>>> {
        let parts: Vec<Part<'v>> = (0..self.len())
            .map(|i| self.slot(i))
            .collect::<Option<_>>()?;
        parts
            .windows(2)
            .all(|w| w[0].delta < w[1].delta)
            .then_some(parts)
    }
}

/// Bytes of a block holding payloads of these lengths.
pub(crate) fn block_len(payload_lens: impl Iterator<Item = usize>) -> usize {
    payload_lens.fold(BLOCK_HEADER_LEN, |len, payload| len + SLOT_LEN + payload)
}

/// Writes a block of `parts` (deltas increasing), appended at
/// `appended_at_ms`, into `out`, which must take exactly
/// [`block_len`] bytes. Offsets are u32: the writer keeps a block far below
/// 4 GiB.
pub(crate) fn write_block(
    out: &mut impl std::io::Write,
    appended_at_ms: u64,
    parts: &[Part<'_>],
) -> std::io::Result<()> {
    let too_big = || std::io::Error::other("a block must stay below 4 GiB");
    let mut header = [0u8; BLOCK_HEADER_LEN];
    header[0] = BLOCK_VERSION;
    header[4..8].copy_from_slice(
        &u32::try_from(parts.len())
            .map_err(|_| too_big())?
            .to_be_bytes(),
    );
    header[8..16].copy_from_slice(&appended_at_ms.to_be_bytes());
    out.write_all(&header)?;
    let mut offset = BLOCK_HEADER_LEN + parts.len() * SLOT_LEN;
    for part in parts {
        let mut slot = [0u8; SLOT_LEN];
        slot[..4].copy_from_slice(&part.delta.to_be_bytes());
        slot[4..8].copy_from_slice(&part.queue.to_be_bytes());
        slot[8..12].copy_from_slice(&part.records.to_be_bytes());
        slot[12..].copy_from_slice(&u32::try_from(offset).map_err(|_| too_big())?.to_be_bytes());
        out.write_all(&slot)?;
        offset += part.payload.len();
    }
    parts
        .iter()
        .try_for_each(|part| out.write_all(part.payload))
}

/// Now, in Unix milliseconds. A clock before 1970 is a broken host, not a
/// reason to refuse data: 0.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// Encodes a format 2 header of an entry of `queue` holding `records`
/// records, stamped now.
#[cfg(test)]
pub(crate) fn encode_header(queue: u32, records: u32) -> [u8; HEADER_LEN] {
    encode_header_at(queue, records, now_ms())
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
        // Appends go to the end of the log, and a queue's entries are in
        // position order, only because byte order == position order.
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
    fn blocks_roundtrip_find_parts_by_delta_and_reject_garbage() {
        let parts = [
            Part {
                delta: 0,
                queue: 4,
                records: 2,
                payload: b"first",
            },
            Part {
                delta: 3,
                queue: 9,
                records: 0,
                payload: b"",
            },
            Part {
                delta: 7,
                queue: 4,
                records: 5,
                payload: b"third!",
            },
        ];
        let mut value = Vec::new();
        write_block(&mut value, 1_700_000_000_123, &parts).unwrap();
        assert_eq!(
            value.len(),
            block_len(parts.iter().map(|p| p.payload.len()))
        );
        let block = decode_block(&value).unwrap();
        assert_eq!(block.appended_at_ms, 1_700_000_000_123);
        assert_eq!(block.len(), 3);
        let third = block.part(7).unwrap();
        assert_eq!(
            (third.queue, third.records, third.payload),
            (4, 5, &b"third!"[..])
        );
        assert_eq!(block.part(3).unwrap().payload, b"");
        assert!(block.part(1).is_none() && block.part(8).is_none());
        let all = block.parts().unwrap();
        assert_eq!(
            all.iter().map(|p| p.delta).collect::<Vec<_>>(),
            vec![0, 3, 7]
        );
        assert_eq!(all[0].payload, b"first");

        // Truncated anywhere: no panic, and no part reads past the value.
        for len in 0..value.len() {
            if let Some(block) = decode_block(&value[..len]) {
                let _ = block.parts();
                let _ = block.part(7);
            }
        }
        // Deltas that do not increase are not a block this build wrote.
        let mut swapped = value.clone();
        swapped[BLOCK_HEADER_LEN..BLOCK_HEADER_LEN + 4].copy_from_slice(&9u32.to_be_bytes());
        assert!(decode_block(&swapped).unwrap().parts().is_none());
        value[0] = BLOCK_VERSION + 1;
        assert!(decode_block(&value).is_none());
    }

    /// Whatever bytes a log value holds (a damaged file, another
    /// program's writes), decoding never panics and never hands out a
    /// part outside the value.
    #[test]
    fn foreign_bytes_never_panic_or_escape_the_value() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000u64 {
            let len = usize::try_from(next() % 200).unwrap();
            let mut value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly plausible headers, so the slots get read too.
            if let Some(first) = value.first_mut() {
                *first = [FORMAT_VERSION, BLOCK_VERSION][usize::from(round % 2 == 0)];
            }
            if value.len() >= 8 && round % 3 == 0 {
                value[4..8].copy_from_slice(&u32::try_from(next() % 8).unwrap().to_be_bytes());
            }
            let Some(block) = decode_block(&value) else {
                continue;
            };
            let range = value.as_ptr_range();
            let inside = |part: &Part<'_>| {
                let p = part.payload.as_ptr_range();
                range.start <= p.start && p.end <= range.end
            };
            for part in block.parts().into_iter().flatten() {
                assert!(inside(&part));
            }
            for delta in 0..8 {
                assert!(block.part(delta).as_ref().is_none_or(inside));
            }
        }
    }

    #[test]
    fn format_2_values_are_blocks_of_one_part() {
        let mut value = encode_header(7, 42).to_vec();
        value.extend_from_slice(b"payload");
        let block = decode_block(&value).unwrap();
        assert_eq!(block.len(), 1);
        let part = block.part(0).unwrap();
        assert_eq!(
            (part.queue, part.records, part.payload),
            (7, 42, &b"payload"[..])
        );
        assert!(block.part(1).is_none());
        assert_eq!(block.parts().unwrap(), vec![part]);
    }

    #[test]
    fn gone_keys_name_a_position() {
        assert_eq!(decode_gone_key(&gone_key(1 << 40)), Some(1 << 40));
        assert!(decode_gone_key(b"done/1234").is_none());
        // Byte order is position order: a block's marks are one range.
        assert!(gone_key(255) < gone_key(256));
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

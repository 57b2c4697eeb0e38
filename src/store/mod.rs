//! The durable buffer: FIFO queues in one LMDB environment, written by one
//! group-commit writer thread.
//!
//! # Why
//!
//! seedgate acknowledges a client only once its data is on disk (DESIGN.md,
//! "Durable, then ack"), and keeps it there until a backend accepted it, so
//! a crash or a slow backend never loses acknowledged telemetry. One queue
//! per destination (pipeline or shoot × signal) keeps a dead backend from
//! holding up the others.
//!
//! # Constraints
//!
//! - **One fsync for many requests.** An fsync costs 0.1–10 ms; paying one
//!   per request would cap ingest at a few hundred requests a second. So a
//!   single writer thread ([`Store::spawn_writer`]) drains its channel and
//!   writes everything it found in *one* write transaction and *one* commit
//!   (group commit), then answers every request of the group.
//! - **Backpressure, not failure, when full.** A full LMDB map (or disk) is
//!   answered with [`StoreError::Full`] to the appends of that group; the
//!   deletes of the same group are still committed because they free space.
//!   Appends stop a reserve short of the end of the map and of the disk
//!   (`space`), because a delete needs a few fresh pages too: a buffer
//!   filled to the last page could never drain.
//! - **Exact accounting.** Admission control ([`Queue::try_reserve`]) runs on
//!   the receivers' threads before the writer sees the data, so a queue's
//!   `used_bytes` counts committed payload bytes *plus* reservations in
//!   flight. Every reservation ends either in a committed append (the bytes
//!   stay counted) or in a release (refusal, error, dropped queue): the
//!   writer never leaks one.
//! - **Creating a queue costs no commit.** A new queue lives in memory until
//!   its first entry; its name goes to disk in that entry's transaction, so
//!   a thousand new shoot clients ride the group commits of their first
//!   records, and a crash leaves neither a name without its entries nor
//!   entries without their name.
//!
//! # On-disk format (format version 3)
//!
//! One LMDB environment in [`StoreOptions::dir`] (`data.mdb`, `lock.mdb`)
//! with three named databases. All integers are big-endian.
//!
//! `meta`:
//!
//! | key | value | meaning |
//! | --- | --- | --- |
//! | `next_queue_id` | u32 | next queue id to hand out: above every id on disk, so an id that ever held data is never reused |
//! | `queue/<name>` | u32 | a queue's id, written in the transaction of its first entry |
//! | `next_seq` | u64 | next log position to hand out: above every position ever written |
//! | `done/` ++ id (u32) | u64 | every entry of that queue below this position is consumed (`u64::MAX`: the queue was dropped) |
//! | `gone/` ++ position (u64) | empty | the entry there was consumed out of order while its block holds live entries |
//! | `freelist_tick` | u64 | rewritten to age LMDB's freelist, see below |
//!
//! `log` (every queue's entries, in append order, a block per commit):
//!
//! | key (8 bytes) | value |
//! | --- | --- |
//! | position of the block's first part (u64) | header (16 bytes) ++ directory (16 bytes per part) ++ payloads |
//!
//! The header is: format version (u8, `3`), three reserved zero bytes, the
//! number of parts (u32) and the append time in Unix milliseconds (u64).
//! Each directory slot is: the part's delta from the key (u32), its queue
//! id (u32), its record count (u32) and its payload's offset in the value
//! (u32); a payload ends where the next one starts. A part's position (key
//! plus delta) is its sequence number in its queue. The payload is opaque
//! here; the ingest path stores concatenated OTLP resource blocks, which
//! are again a valid OTLP request body.
//!
//! A format 2 value (version `2`: a 20-byte header with the record count,
//! the append time and the queue id, then one payload) is read as a block
//! of one part at delta 0: a buffer of the previous release is read in
//! place. `entries` is format 1's per-queue layout (`id ++ seq` keys,
//! 16-byte headers): [`Store::open`] moves whatever it holds into `log` as
//! format 2 values, oldest first within each queue, in bounded
//! transactions, and drops format 1's `seq/<id>` keys.
//!
//! # Why a block per commit in one log
//!
//! With keys `queue id ++ seq` (format 1), every commit of a seed with a
//! thousand shoot queues wrote to a thousand places in the B-tree. One log
//! with a value per part (format 2) put a commit's appends together at the
//! end, but each part was still an entry of its own: about 58 per commit
//! for a thousand shoots, each a leaf node (and, above half a page, a run
//! of overflow pages) to write and later to delete, 280 KiB written in 19
//! calls per commit for 177 KiB of payload. A block holds every part of a
//! commit, so a commit writes one run of pages, as for a single
//! destination (ADR 0010 and 0011). A queue finds its entries through its
//! in-memory index of positions ([`Queue`]), rebuilt by the scan at open
//! (position, records, bytes and delta: 20 bytes per entry, plus the
//! map's overhead).
//!
//! A block is deleted in the transaction that consumes its last live part.
//! A consumer that takes a queue's oldest entries (a delivery, nearly
//! always) writes only the queue's `done/<id>` mark; entries taken from the
//! middle of a queue (a tail sampling decision, a re-route) each get a
//! `gone/` key, unless their block goes in the same transaction. So a dead
//! shoot's part does not pin everyone's payload for long: a block looked at
//! three seconds after its append, whose live parts are at most half its
//! bytes, is rewritten in place with its live parts alone (same key, same
//! deltas, so positions and marks are unaffected), and a full map rewrites
//! every block that holds a consumed part before it refuses appends.
//!
//! # Invariants
//!
//! - Sequence numbers (positions) increase in append order within a queue
//!   and are never reused, even across restarts and after the log was
//!   emptied (`next_seq` is written in the same transaction as the
//!   appends). They are shared by every queue, so a queue's are not
//!   consecutive.
//! - Every part in the log belongs to a queue named in `meta`, or is
//!   consumed (below its queue's `done/` mark, which a drop sets to
//!   `u64::MAX` and the open deletes once no block holds a part of it, or
//!   under a `gone/` key). [`Store::open`] counts and deletes anything
//!   else, with a warning, since nothing could ever read it.
//! - A block with no live part is deleted in the transaction that consumed
//!   the last one (or by the next open, if something else wrote the
//!   marks); its `gone/` keys go with it.
//! - Only the writer thread writes entries, marks and positions; queue
//!   indexes, the block table and in-memory stats ([`Queue::records`],
//!   [`Queue::entries`], [`Queue::used_bytes`]) change only after a
//!   successful commit, and are rebuilt by the scan in [`Store::open`].

//! # How acknowledgements free space
//!
//! An exporter reads a batch with [`Store::read`], sends it and, once the
//! backend accepted it, sends [`WriteOp::Delete`] for the batch's sequence
//! range. The writer holds deletes back for up to 20 ms, so that those of
//! many queues share one commit (a flush, a drop, a stop or a full buffer
//! takes them at once), then consumes them (a mark, or
//! `gone/` keys; the blocks left without a live part are deleted in the
//! same transaction, so the pages they free can be reused by later
//! appends) and, after the commit, lowers the queue's `used_bytes`, which
//! lets admission accept new data. When appends find the map full, the
//! writer commits the group's deletes alone, then rewrites every block
//! that holds a consumed part in a transaction of its own (a rewrite
//! takes fresh pages before it frees any, so it must not hold the deletes
//! back on a disk with no byte left). LMDB reuses freed
//! pages once no reader still sees them, and never earlier than two
//! transactions after the one that freed them. So when appends hit a full
//! map right after a commit that deleted entries, the writer commits a tiny
//! `freelist_tick` write and tries those appends once more before it refuses
//! them. The file never shrinks; the map size caps it. So on a full disk
//! seedgate recovers by itself either way: when something else frees disk
//! space, or when deliveries free pages inside the file. Until a delete is
//! committed the entries stay on disk and are sent again after a restart:
//! delivery is at-least-once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use crate::config::Durability;

/// Operations the writer takes from its channel at most per group commit.
pub const MAX_OPS_PER_COMMIT: usize = 4096;
/// Capacity of the channel to the writer: receivers wait (async, through the
/// commit reply) rather than grow memory when the disk is slower than the
/// network.
pub const WRITER_CHANNEL: usize = 16 * 1024;

mod format;
mod mapped;
mod metrics;
mod space;
#[cfg(test)]
mod tests;
mod writer;

pub use metrics::{ErrorKindLabels, FullLabels, StoreMetrics};

/// Longest queue name: LMDB keys are at most 511 bytes and the name is
/// stored behind a short prefix.
pub const MAX_QUEUE_NAME_LEN: usize = 400;

/// LMDB page size assumed when rounding the map size; the map must be a
/// multiple of the OS page size, which is 4 KiB on the platforms we ship.
const PAGE_SIZE: u64 = 4096;

/// Entries one transaction of the format 1 migration or of the clean-up
/// at open takes: bounded, because a transaction may dirty at most about
/// 512 MiB of pages.
const MIGRATE_PER_TXN: usize = 16 * 1024;
/// Payload bytes one transaction of the migration moves at most.
const MIGRATE_BYTES_PER_TXN: usize = 64 * 1024 * 1024;

/// Positions a read takes from a queue's index at a time.
const READ_POSITIONS: usize = 512;

/// How often a long scan in [`Store::open`] reports progress.
const SCAN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The raw LMDB database type: bytes in, bytes out; [`format`] gives meaning.
type RawDb = Database<'static, RawBytes, RawBytes>;

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Directory of the LMDB environment; created if missing.
    pub dir: PathBuf,
    /// LMDB map size in bytes: the most the buffer can hold across all
    /// queues. Rounded up to a multiple of 4 KiB.
    pub map_size: u64,
    /// Whether each group commit is fsynced.
    pub durability: Durability,
    /// Most operations one group commit takes from the channel.
    pub max_ops_per_commit: usize,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The LMDB map or the disk is full, or so nearly that the rest is kept
    /// for deletes: backpressure, not fatal. Retry after exporters have
    /// freed space (or, for the disk, someone else has).
    #[error("storage is full ({detail})")]
    Full {
        /// Which one is full.
        reason: FullReason,
        /// What was full and how big it is.
        detail: String,
    },
    /// LMDB failed for another reason than being full (corruption, too many
    /// readers, a bad transaction).
    #[error("LMDB error during {op}: {source}")]
    Lmdb {
        /// The store operation that failed, e.g. `commit` or `read`.
        op: &'static str,
        /// The error heed reported.
        source: heed::Error,
    },
    /// A file system operation of our own (not LMDB's) failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The writer thread is gone (shutting down or crashed); not acked.
    #[error("the storage writer is not running")]
    WriterGone,
    /// A queue name that cannot be stored as an LMDB key.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The name as given (possibly truncated by the caller's logs).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An entry on disk does not decode (unknown format version or too
    /// short): the file was changed behind our back or is corrupt.
    #[error("corrupt entry {seq} in queue {queue:?}: {detail}")]
    Corrupt {
        /// Name of the queue holding the entry.
        queue: String,
        /// Sequence number of the entry.
        seq: u64,
        /// What is wrong with it.
        detail: &'static str,
    },
}

/// What ran out when the store is [`StoreError::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FullReason {
    /// The LMDB map (`storage.max_size`).
    Map,
    /// The file system under `storage.data_dir`.
    Disk,
}

// === impl FullReason ===

impl FullReason {
    /// The bounded metric label: `map_full` or `disk_full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Map => "map_full",
            Self::Disk => "disk_full",
        }
    }
}

// === impl StoreError ===

impl StoreError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Full { .. } => "full",
            Self::Lmdb { .. } => "lmdb",
            Self::Io { .. } => "io",
            Self::WriterGone => "writer_gone",
            Self::InvalidQueueName { .. } => "invalid_queue_name",
            Self::Corrupt { .. } => "corrupt",
        }
    }

    /// Classifies a heed error: a full map or disk becomes [`Self::Full`]
    /// (backpressure), everything else [`Self::Lmdb`].
    fn from_heed(op: &'static str, source: heed::Error, map_size: u64) -> Self {
        match &source {
            heed::Error::Mdb(heed::MdbError::MapFull) => Self::Full {
                reason: FullReason::Map,
                detail: format!("LMDB map of {map_size} bytes is full"),
            },
            heed::Error::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) =>
            {
                Self::Full {
                    reason: FullReason::Disk,
                    detail: format!("disk: {e}"),
                }
            }
            _ => Self::Lmdb { op, source },
        }
    }

    /// A copy of this error for one more requester: one failed commit is
    /// answered to every append of the group, and heed's error is not
    /// `Clone`.
    fn duplicate(&self) -> Self {
        match self {
            Self::Full { reason, detail } => Self::Full {
                reason: *reason,
                detail: detail.clone(),
            },
            Self::Lmdb { op, source } => Self::Lmdb {
                op,
                source: duplicate_heed(source),
            },
            Self::Io { path, source } => Self::Io {
                path: path.clone(),
                source: duplicate_io(source),
            },
            Self::WriterGone => Self::WriterGone,
            Self::InvalidQueueName { name, reason } => Self::InvalidQueueName {
                name: name.clone(),
                reason,
            },
            Self::Corrupt { queue, seq, detail } => Self::Corrupt {
                queue: queue.clone(),
                seq: *seq,
                detail,
            },
        }
    }
}

/// Maps a heed error of operation `op` to a [`StoreError`].
fn lmdb_err(op: &'static str, map_size: u64) -> impl Fn(heed::Error) -> StoreError {
    move |e| StoreError::from_heed(op, e, map_size)
}

fn duplicate_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

fn duplicate_heed(e: &heed::Error) -> heed::Error {
    match e {
        heed::Error::Io(e) => heed::Error::Io(duplicate_io(e)),
        heed::Error::Mdb(e) => heed::Error::Mdb(*e),
        heed::Error::Encoding(e) => heed::Error::Encoding(e.to_string().into()),
        heed::Error::Decoding(e) => heed::Error::Decoding(e.to_string().into()),
        heed::Error::EnvAlreadyOpened => heed::Error::EnvAlreadyOpened,
    }
}

/// One logical FIFO queue (one destination × signal).
///
/// Shared between admission (reserve/release), the writer (stats, seqs) and
/// the exporter (read, `appended`). Obtained from [`Store::queue`].
#[derive(Debug)]
pub struct Queue {
    /// Stable id, written in the header of each of its entries.
    pub id: u32,
    /// The name it was created with.
    pub name: String,
    used_bytes: AtomicU64,
    records: AtomicU64,
    entries: AtomicU64,
    /// One past the last sequence number appended to it; only the writer
    /// thread changes it.
    next_seq: AtomicU64,
    /// Positions (sequence numbers) of its entries in the log, committed
    /// and not consumed: readers find its entries here, since the log
    /// interleaves every queue's. Changed only by the writer, after commit.
    index: Mutex<BTreeMap<u64, Held>>,
    /// Set once a [`WriteOp::Drop`] of this queue is committed.
    dropped: AtomicBool,
    /// Whether its name is on disk. A new queue exists in memory only
    /// until the writer commits its first entry, and its name goes in that
    /// same transaction: creating a queue costs no commit of its own, and
    /// a crash cannot leave a name without its entries or entries without
    /// their name.
    persisted: AtomicBool,
    notify: tokio::sync::Notify,
    /// While a consumer waits in [`Queue::filled_to`]: the records and the
    /// bytes from which a commit wakes it (0: every commit does).
    wake_at_records: AtomicU64,
    wake_at_bytes: AtomicU64,
}

// === impl Queue ===

impl Queue {
    fn new(id: u32, name: String) -> Self {
        Self {
            id,
            name,
            used_bytes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            index: Mutex::new(BTreeMap::new()),
            dropped: AtomicBool::new(false),
            persisted: AtomicBool::new(false),
            notify: tokio::sync::Notify::new(),
            wake_at_records: AtomicU64::new(0),
            wake_at_bytes: AtomicU64::new(0),
        }
    }

    /// Reserves `bytes` if `used + bytes <= limit`, atomically, and says
    /// whether it did. A reservation must end in an append (through the
    /// writer) or in [`Queue::release`].
    pub fn try_reserve(&self, bytes: u64, limit: u64) -> bool {
        self.used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    /// Gives back a reservation that was never appended.
    pub fn release(&self, bytes: u64) {
        sub_saturating(&self.used_bytes, bytes);
    }

    /// Payload bytes on disk plus reserved.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Acquire)
    }

    /// Records on disk.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// Entries on disk.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Acquire)
    }

    /// One past the last sequence number appended to this queue: every
    /// entry it holds has a lower one, and the next append gets this or a
    /// higher one (sequence numbers are log positions, shared by every
    /// queue: increasing within a queue, not consecutive).
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire)
    }

    fn lock_index(&self) -> MutexGuard<'_, BTreeMap<u64, Held>> {
        // Changed only whole (insert, remove) under the lock: a panic
        // cannot leave it half-updated.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `limit` of its entries from position `from` on, in order.
    fn positions(&self, from: u64, limit: usize) -> Vec<(u64, Held)> {
        self.lock_index()
            .range(from..)
            .take(limit)
            .map(|(pos, held)| (*pos, *held))
            .collect()
    }

    /// Whether the queue's name is on disk: after the commit of its first
    /// entry, or when it was resumed from disk.
    pub fn is_persisted(&self) -> bool {
        self.persisted.load(Ordering::Acquire)
    }

    /// Whether a [`WriteOp::Drop`] of this queue has been committed.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Resolves after the next commit that appended to this queue.
    ///
    /// The writer wakes every registered waiter *and* leaves one permit, so
    /// a consumer that read an empty queue and calls this just after a
    /// commit still wakes up. The price is at most one spurious wake-up:
    /// callers re-read and wait again when they find nothing new.
    pub async fn appended(&self) {
        self.notify.notified().await;
    }

    /// Resolves after a commit that appended to this queue and left it
    /// holding at least `records` records or `bytes` bytes (reservations
    /// included), or that appended before this call (the permit
    /// [`Queue::appended`] describes).
    ///
    /// For a consumer lingering over a partial batch: it only needs to look
    /// again once its batch could be full. Waking it on every commit
    /// instead cost a seed with a thousand small shoot queues a wake-up,
    /// a timer and a poll per entry (about 40,000 a second at 400k
    /// records/s). Cancelling the wait (a timeout) restores waking on every
    /// commit.
    pub async fn filled_to(&self, records: u64, bytes: u64) {
        /// Puts back "every commit wakes" however the wait ends.
        struct Reset<'a>(&'a Queue);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.wake_at_records.store(0, Ordering::Release);
                self.0.wake_at_bytes.store(0, Ordering::Release);
            }
        }
        self.wake_at_records.store(records, Ordering::Release);
        self.wake_at_bytes.store(bytes, Ordering::Release);
        let _reset = Reset(self);
        self.notify.notified().await;
    }

    /// Whether the queue holds at least `records` records or `bytes` bytes
    /// (reservations included): a batch of those limits would be full.
    pub fn holds(&self, records: u64, bytes: u64) -> bool {
        self.records() >= records || self.used_bytes() >= bytes
    }

    /// Called by the writer after a commit appended to this queue: wakes
    /// its consumer unless it waits in [`Queue::filled_to`] for more than
    /// the queue holds now.
    fn wake_if_due(&self) {
        // Both 0 outside `filled_to`: always due.
        if self.holds(
            self.wake_at_records.load(Ordering::Acquire),
            self.wake_at_bytes.load(Ordering::Acquire),
        ) {
            self.wake();
        }
    }

    /// Wakes the queue's consumer, or leaves it a permit.
    fn wake(&self) {
        // `notify_waiters` reaches every consumer already waiting but stores
        // nothing; `notify_one` stores a permit when nobody is waiting, for
        // the consumer that is between its read and its `appended().await`.
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

/// An entry read from the map: its decoded header, its payload, and the
/// bytes whose pages are its alone (its whole value when it is the only
/// part of its block, else its payload).
type Found<'t> = (format::Header, &'t [u8], Owned<'t>);

/// The map bytes an entry's read may give back (see [`mapped`]).
#[derive(Debug, Clone, Copy)]
enum Owned<'t> {
    /// A whole log value: its pages, from its first byte to its last.
    Value(&'t [u8]),
    /// A part among others: only the pages inside it.
    Part(&'t [u8]),
}

/// What a queue's index keeps of each entry: where its block is, and
/// enough to account for it when it is consumed without reading it back
/// from the map.
#[derive(Debug, Clone, Copy)]
struct Held {
    records: u32,
    /// Payload bytes (a request body is far below 4 GiB).
    bytes: u32,
    /// Its position minus its block's key.
    delta: u32,
}

impl Held {
    fn new(records: u32, payload_len: usize, delta: u32) -> Self {
        Self {
            records,
            bytes: u32::try_from(payload_len).unwrap_or(u32::MAX),
            delta,
        }
    }
}

/// What the writer keeps of each block in the log.
#[derive(Debug, Clone, Copy, Default)]
struct BlockLive {
    /// Parts not consumed yet: the block is deleted with the last one.
    live: u32,
    /// Parts in the value (a rewrite leaves consumed ones out).
    parts: u32,
    /// Payload bytes of the live parts.
    live_bytes: u64,
    /// Payload bytes of every part in the value.
    bytes: u64,
    /// `gone/` marks on disk for its parts.
    gone: u32,
    /// Positions it covers from its key on (its last part's delta + 1):
    /// where its `gone/` marks can be.
    span: u32,
    /// When it was appended, Unix milliseconds.
    appended_at_ms: u64,
}

/// Subtracts without wrapping: a double release must not turn a queue's
/// usage into 2^64 and block it forever.
fn sub_saturating(counter: &AtomicU64, n: u64) {
    // The closure always returns Some, so the update cannot fail.
    let _previous = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        Some(v.saturating_sub(n))
    });
}

/// Consecutive entries of one queue, concatenated into one request body.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Sequence number of the first entry.
    pub first: u64,
    /// Sequence number of the last entry.
    pub last: u64,
    /// How many entries.
    pub entries: usize,
    /// Records in all of them.
    pub records: u64,
    /// The concatenated payloads: a valid Export*ServiceRequest encoding.
    pub body: Bytes,
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence number in the queue.
    pub seq: u64,
    /// Records in the payload.
    pub records: u32,
    /// The bytes that were appended.
    pub payload: Bytes,
    /// When it was appended, Unix milliseconds.
    pub appended_at_ms: u64,
}

/// One part of an append: bytes already reserved on `queue`.
#[derive(Debug)]
pub struct AppendPart {
    /// Where the part goes; `payload.len()` bytes are reserved on it.
    pub queue: Arc<Queue>,
    /// Records in the payload.
    pub records: u32,
    /// The bytes to store.
    pub payload: Bytes,
}

impl AppendPart {
    /// Gives back the bytes reserved on its queue: it will not be stored.
    pub fn release(&self) {
        self.queue.release(self.payload.len() as u64);
    }
}

/// Gives back the reservations of `parts`, none of which will be stored.
pub fn release_parts(parts: &[AppendPart]) {
    parts.iter().for_each(AppendPart::release);
}

/// Where the writer sends the outcome of an operation.
pub type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// What the writer thread does. Within one group, deletes and drops are
/// applied before appends; replies are sent after the commit.
#[derive(Debug)]
pub enum WriteOp {
    /// Append every part in one transaction; reply after the commit. Parts
    /// for a dropped queue are discarded and their reservation released.
    Append {
        /// The parts, each reserved on its queue.
        parts: Vec<AppendPart>,
        /// Gets `Ok` once committed, or why not.
        reply: Reply,
    },
    /// Append `parts` and delete entries `first..=last` of `from` in one
    /// transaction: data moved between queues is never in both nor in
    /// neither, whatever crashes when. Refused as a whole if a target queue
    /// is dropped.
    Move {
        /// The parts, each reserved on its queue.
        parts: Vec<AppendPart>,
        /// The queue the entries come from.
        from: Arc<Queue>,
        /// First sequence number taken out of `from`.
        first: u64,
        /// Last sequence number taken out of `from`, inclusive.
        last: u64,
        /// Gets `Ok` once committed, or why not.
        reply: Reply,
    },
    /// Append `parts` (possibly none) and delete every range of `consumed`
    /// in one transaction: [`WriteOp::Move`] from several places (a tail
    /// sampling decision moves a trace's scattered entries). Refused as a
    /// whole if a target queue is dropped.
    Settle {
        /// The parts, each reserved on its queue.
        parts: Vec<AppendPart>,
        /// `(queue, first, last)`: entries `first..=last` of `queue`.
        consumed: Vec<(Arc<Queue>, u64, u64)>,
        /// Gets `Ok` once committed, or why not.
        reply: Reply,
    },
    /// Delete entries `first..=last` of `queue` (after a backend accepted
    /// them). Missing entries are ignored.
    Delete {
        /// The queue.
        queue: Arc<Queue>,
        /// First sequence number to delete.
        first: u64,
        /// Last sequence number to delete, inclusive.
        last: u64,
    },
    /// Delete everything in `queue` and forget its name.
    Drop {
        /// The queue.
        queue: Arc<Queue>,
        /// Gets `Ok` once committed, if given.
        reply: Option<Reply>,
    },
    /// Reply after everything before this op is committed.
    Flush {
        /// Gets `Ok` once everything sent before is committed.
        reply: Reply,
    },
    /// Commit everything before this op, then end the writer thread so that
    /// a new one may be spawned (a supervised restart). Ops sent after it
    /// stay in the channel for the next writer.
    Stop {
        /// Gets `Ok` once the writer has committed and let go of the store.
        reply: Reply,
    },
}

/// A store in `dir` for unit tests elsewhere in the crate: 64 MiB,
/// durability `none`, no writer started.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn scratch_store(dir: &std::path::Path) -> Arc<Store> {
    Store::open(StoreOptions {
        dir: dir.to_path_buf(),
        map_size: 64 << 20,
        durability: Durability::None,
        max_ops_per_commit: 1024,
    })
    .unwrap()
}

/// The LMDB environment, its databases and the live queues.
pub struct Store {
    env: Env<WithoutTls>,
    meta: RawDb,
    /// Every queue's entries, keyed by position: appends go to its end.
    log: RawDb,
    /// Format 1's per-queue `entries`, emptied into `log` at open.
    legacy: RawDb,
    /// Every block in the log, by key: how many of its parts are live.
    /// Only the writer changes it, after a commit; here and not in the
    /// writer, so that a restarted writer goes on with it.
    blocks: Mutex<BTreeMap<u64, BlockLive>>,
    /// The position the next append gets: above every position on disk.
    /// Only the writer advances it (and persists it with its appends).
    next_seq: AtomicU64,
    /// Live queues by name. Locked only briefly, and never while the writer
    /// holds a write transaction.
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// The map size actually used (rounded).
    map_size: u64,
    /// Bytes of the map and of the disk that appends leave to deletes
    /// ([`space`]).
    reserve: u64,
    durability: Durability,
    /// Where `data.mdb` is mapped: read pages are given back inside it.
    map: Option<mapped::Map>,
    max_ops_per_commit: usize,
    /// Reference point of `heartbeat_nanos`.
    started: Instant,
    /// Nanoseconds after `started` when the writer loop last ran.
    heartbeat_nanos: AtomicU64,
    /// Set by the first [`Store::spawn_writer`]: two writers would hand out
    /// the same sequence numbers.
    writer_spawned: AtomicBool,
    /// The id the next new queue gets: above every id on disk. The writer
    /// persists it with each queue's name ([`Queue::is_persisted`]).
    next_id: AtomicU32,
    /// Entries the open found unreadable or belonging to no queue, and
    /// deleted.
    discarded_at_open: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.env.path())
            .field("map_size", &self.map_size)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Per-queue stats gathered by the scan in [`Store::open`].
#[derive(Debug, Default)]
struct ScanStats {
    bytes: u64,
    records: u64,
    index: BTreeMap<u64, Held>,
}

// === impl Store ===

impl Store {
    /// Opens (or creates) the environment in `opts.dir` and resumes every
    /// queue found on disk, rebuilding its stats by a scan.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the directory cannot be created,
    /// [`StoreError::Lmdb`] if LMDB cannot open or read the environment
    /// (including when it is already open in this process),
    /// [`StoreError::Full`] if even the cleanup at open does not fit.
    pub fn open(opts: StoreOptions) -> Result<Arc<Store>, StoreError> {
        fs::create_dir_all(&opts.dir).map_err(|source| StoreError::Io {
            path: opts.dir.clone(),
            source,
        })?;
        let map_size = opts.map_size.max(PAGE_SIZE).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let lmdb = |op| lmdb_err(op, map_size);

        let mut builder = EnvOpenOptions::new().read_txn_without_tls();
        builder
            .map_size(usize::try_from(map_size).unwrap_or(usize::MAX))
            .max_dbs(3);
        if opts.durability == Durability::None {
            // SAFETY: NO_SYNC only skips the fsync after a commit. LMDB stays
            // consistent after a crash of this process (the page cache has
            // every committed page); a power loss can lose or, on file
            // systems that reorder writes, corrupt the last commits. That is
            // the documented contract of `durability: none`.
            #[allow(unsafe_code)]
            unsafe {
                builder.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the environment is a memory map of `data.mdb`. Nothing in
        // this process writes those files except through LMDB: this is the
        // only place that opens them, heed refuses a second open of the same
        // path in one process, and LMDB's lock file coordinates other
        // processes. The directory is seedgate's own (not on a network file
        // system, as the deployment docs require).
        #[allow(unsafe_code)]
        let env = unsafe { builder.open(&opts.dir) }.map_err(lmdb("open"))?;

        // A previous process killed mid-read leaves reader slots behind that
        // would pin old pages forever.
        let stale = env
            .clear_stale_readers()
            .map_err(lmdb("clear stale readers"))?;
        if stale > 0 {
            tracing::info!(
                stale,
                "Cleared stale LMDB readers left by a previous process."
            );
        }

        let wtxn = env.write_txn().map_err(lmdb("create databases"))?;
        let (meta, log, legacy): (RawDb, RawDb, RawDb) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let meta = opener.create_database::<RawBytes, RawBytes>(wtxn, Some("meta"))?;
                let log = opener.create_database::<RawBytes, RawBytes>(wtxn, Some("log"))?;
                let legacy = opener.create_database::<RawBytes, RawBytes>(wtxn, Some("entries"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((meta, log, legacy)))
            })
            .map_err(lmdb("create databases"))?
            .commit()
            .ok_or(StoreError::Lmdb {
                op: "create databases",
                source: heed::Error::Mdb(heed::MdbError::Problem),
            })?;

        let mut store = Store {
            env,
            meta,
            log,
            legacy,
            next_seq: AtomicU64::new(0),
            blocks: Mutex::new(BTreeMap::new()),
            queues: Mutex::new(HashMap::new()),
            map_size,
            reserve: space::reserve_bytes(map_size),
            durability: opts.durability,
            map: mapped::Map::find(&opts.dir.join("data.mdb")),
            max_ops_per_commit: opts.max_ops_per_commit.max(1),
            started: Instant::now(),
            heartbeat_nanos: AtomicU64::new(0),
            writer_spawned: AtomicBool::new(false),
            next_id: AtomicU32::new(0),
            discarded_at_open: 0,
        };
        store.migrate_format_1()?;
        store.discarded_at_open = store.resume()?;
        Ok(Arc::new(store))
    }

    /// Moves format 1's per-queue entries into the log, oldest first within
    /// each queue, in transactions of [`MIGRATE_PER_TXN`] entries: each
    /// entry is in exactly one of the two at every commit, so a crash
    /// half-way loses nothing and the next open goes on.
    fn migrate_format_1(&self) -> Result<(), StoreError> {
        let lmdb = |op| lmdb_err(op, self.map_size);
        let mut moved = 0u64;
        loop {
            let mut wtxn = self.env.write_txn().map_err(lmdb("migrate"))?;
            let mut next = self.stored_next_seq(&wtxn)?;
            let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut chunk_bytes = 0;
            for item in self.legacy.iter(&wtxn).map_err(lmdb("migrate"))? {
                let (key, value) = item.map_err(lmdb("migrate"))?;
                chunk_bytes += value.len();
                chunk.push((key.to_vec(), value.to_vec()));
                if chunk.len() >= MIGRATE_PER_TXN || chunk_bytes >= MIGRATE_BYTES_PER_TXN {
                    break;
                }
            }
            if chunk.is_empty() {
                if moved > 0 {
                    let seq_keys: Vec<Vec<u8>> = self
                        .meta
                        .prefix_iter(&wtxn, format::V1_META_SEQ_PREFIX)
                        .map_err(lmdb("migrate"))?
                        .map(|item| item.map(|(k, _)| k.to_vec()))
                        .collect::<Result<_, _>>()
                        .map_err(lmdb("migrate"))?;
                    for key in seq_keys {
                        self.meta.delete(&mut wtxn, &key).map_err(lmdb("migrate"))?;
                    }
                    wtxn.commit().map_err(lmdb("migrate"))?;
                    tracing::info!(entries = moved, "Moved the buffer to storage format 2.");
                }
                return Ok(());
            }
            for (key, value) in &chunk {
                // What does not decode stays behind nowhere: open would
                // have deleted it as unreadable in format 1 too.
                let converted = format::decode_v1_entry_key(key)
                    .and_then(|(id, _)| format::v1_value_to_v2(id, value));
                if let Some(v2) = converted {
                    self.log
                        .put(&mut wtxn, &format::log_key(next), &v2)
                        .map_err(lmdb("migrate"))?;
                    next += 1;
                }
                self.legacy
                    .delete(&mut wtxn, key)
                    .map_err(lmdb("migrate"))?;
            }
            self.meta
                .put(&mut wtxn, format::META_NEXT_SEQ, &next.to_be_bytes())
                .map_err(lmdb("migrate"))?;
            wtxn.commit().map_err(lmdb("migrate"))?;
            moved += chunk.len() as u64;
            tracing::info!(entries = moved, "Moving the buffer to storage format 2.");
        }
    }

    /// The `next_seq` stored in `meta` (0 when there is none).
    fn stored_next_seq(&self, txn: &heed::RoTxn<'_, WithoutTls>) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(txn, format::META_NEXT_SEQ)
            .map_err(lmdb_err("resume", self.map_size))?
            .and_then(format::decode_u64)
            .unwrap_or(0))
    }

    /// Loads queue names from `meta`, scans the log to rebuild each queue's
    /// index and stats, and deletes entries nobody could ever read (counted,
    /// returned), blocks with no live part, and marks nothing needs.
    fn resume(&self) -> Result<u64, StoreError> {
        let lmdb = |op| lmdb_err(op, self.map_size);
        let rtxn = self.env.read_txn().map_err(lmdb("resume"))?;

        let stored_next_id = self
            .meta
            .get(&rtxn, format::META_NEXT_ID)
            .map_err(lmdb("resume"))?
            .and_then(format::decode_u32)
            .unwrap_or(0);
        let mut next_seq = self.stored_next_seq(&rtxn)?;
        let mut names: HashMap<u32, String> = HashMap::new();
        for item in self
            .meta
            .prefix_iter(&rtxn, format::META_QUEUE_PREFIX)
            .map_err(lmdb("resume"))?
        {
            let (key, value) = item.map_err(lmdb("resume"))?;
            let name = String::from_utf8_lossy(&key[format::META_QUEUE_PREFIX.len()..]);
            match format::decode_u32(value) {
                Some(id) => {
                    names.insert(id, name.into_owned());
                }
                None => tracing::warn!(queue = %name, "Ignoring a queue with an undecodable id."),
            }
        }
        let mut done: HashMap<u32, u64> = HashMap::new();
        for item in self
            .meta
            .prefix_iter(&rtxn, format::META_DONE_PREFIX)
            .map_err(lmdb("resume"))?
        {
            let (key, value) = item.map_err(lmdb("resume"))?;
            if let (Some(id), Some(pos)) = (
                format::decode_u32(&key[format::META_DONE_PREFIX.len()..]),
                format::decode_u64(value),
            ) {
                done.insert(id, pos);
            }
        }

        let mut gone: HashSet<u64> = HashSet::new();
        for item in self
            .meta
            .prefix_iter(&rtxn, format::META_GONE_PREFIX)
            .map_err(lmdb("resume"))?
        {
            let (key, _) = item.map_err(lmdb("resume"))?;
            if let Some(pos) = format::decode_gone_key(key) {
                gone.insert(pos);
            }
        }

        let started = Instant::now();
        let mut last_report = started;
        let mut scanned: u64 = 0;
        let mut stats: HashMap<u32, ScanStats> = HashMap::new();
        let mut blocks: BTreeMap<u64, BlockLive> = BTreeMap::new();
        // Parts nobody could ever read: undecodable, or of no queue.
        let mut discarded: u64 = 0;
        // Keys of blocks to delete: undecodable ones...
        let mut garbage: Vec<Vec<u8>> = Vec::new();
        // ...and those with no live part left (the last run died between
        // consuming their last part and deleting them, or they hold only
        // parts nobody could read).
        let mut consumed: Vec<Vec<u8>> = Vec::new();
        // `gone/` marks of blocks that stay, and queues that still have a
        // part in one: every other mark is deleted.
        let mut gone_kept: HashSet<u64> = HashSet::new();
        let mut ids_kept: HashSet<u32> = HashSet::new();
        for item in self.log.iter(&rtxn).map_err(lmdb("resume"))? {
            let (key, value) = item.map_err(lmdb("resume"))?;
            scanned += 1;
            if scanned.is_multiple_of(4096) && last_report.elapsed() >= SCAN_PROGRESS_EVERY {
                last_report = Instant::now();
                tracing::info!(
                    scanned,
                    elapsed_secs = started.elapsed().as_secs(),
                    "Scanning the LMDB buffer to resume queues."
                );
            }
            let block = format::decode_block(value);
            let decoded_at = block.map_or(0, |b| b.appended_at_ms);
            let decoded = block.and_then(|b| b.parts());
            let (Some(first), Some(parts)) = (format::decode_log_key(key), decoded) else {
                // Not our key or value shape: no queue can ever read it.
                garbage.push(key.to_vec());
                discarded += 1;
                continue;
            };
            let mut block = BlockLive {
                parts: u32::try_from(parts.len()).unwrap_or(u32::MAX),
                appended_at_ms: decoded_at,
                ..BlockLive::default()
            };
            let mut block_gone = Vec::new();
            for part in &parts {
                let pos = first.saturating_add(u64::from(part.delta));
                next_seq = next_seq.max(pos.saturating_add(1));
                let len = part.payload.len() as u64;
                block.bytes += len;
                if gone.contains(&pos) {
                    block_gone.push(pos);
                } else if done.get(&part.queue).is_some_and(|&below| pos < below) {
                    // Consumed (a delivery's mark, or its queue was dropped).
                } else if !names.contains_key(&part.queue) {
                    discarded += 1;
                } else {
                    block.live += 1;
                    block.live_bytes += len;
                    let s = stats.entry(part.queue).or_default();
                    s.bytes += len;
                    s.records += u64::from(part.records);
                    s.index
                        .insert(pos, Held::new(part.records, part.payload.len(), part.delta));
                }
            }
            block.span = parts.last().map_or(0, |part| part.delta.saturating_add(1));
            if block.live == 0 {
                consumed.push(key.to_vec());
            } else {
                block.gone = u32::try_from(block_gone.len()).unwrap_or(u32::MAX);
                gone_kept.extend(block_gone);
                ids_kept.extend(parts.iter().map(|part| part.queue));
                blocks.insert(first, block);
            }
            self.release(Owned::Value(value));
        }
        drop(rtxn);

        if discarded > 0 {
            tracing::warn!(
                entries = discarded,
                "Deleting LMDB entries that belong to no queue or cannot be decoded."
            );
        }
        if !consumed.is_empty() {
            tracing::info!(
                blocks = consumed.len(),
                "Deleting consumed entries the last run had not deleted yet."
            );
        }
        let mut meta_garbage: Vec<Vec<u8>> = gone
            .iter()
            .filter(|pos| !gone_kept.contains(pos))
            .map(|pos| format::gone_key(*pos).to_vec())
            .collect();
        // The marks of dropped queues, once no block holds their parts.
        meta_garbage.extend(
            done.keys()
                .filter(|id| !names.contains_key(id) && !ids_kept.contains(id))
                .map(|id| format::queue_done_key(*id).to_vec()),
        );
        let cleanup = garbage
            .iter()
            .chain(&consumed)
            .map(|key| (&self.log, key))
            .chain(meta_garbage.iter().map(|key| (&self.meta, key)))
            .collect::<Vec<_>>();
        for keys in cleanup.chunks(MIGRATE_PER_TXN) {
            let mut wtxn = self.env.write_txn().map_err(lmdb("resume cleanup"))?;
            for (db, key) in keys {
                db.delete(&mut wtxn, key.as_slice())
                    .map_err(lmdb("resume cleanup"))?;
            }
            wtxn.commit().map_err(lmdb("resume cleanup"))?;
        }
        *self.lock_blocks() = blocks;

        let next_id = names
            .keys()
            .map(|id| id.saturating_add(1))
            .max()
            .unwrap_or(0)
            .max(stored_next_id);
        self.next_id.store(next_id, Ordering::Release);
        self.next_seq.store(next_seq, Ordering::Release);
        let mut queues = self.lock_queues();
        let mut total_bytes = 0u64;
        for (id, name) in names {
            let s = stats.remove(&id).unwrap_or_default();
            let queue = Queue::new(id, name.clone());
            queue.persisted.store(true, Ordering::Release);
            queue.used_bytes.store(s.bytes, Ordering::Release);
            queue.records.store(s.records, Ordering::Release);
            queue.entries.store(s.index.len() as u64, Ordering::Release);
            let after_last = s.index.last_key_value().map_or(0, |(pos, _)| pos + 1);
            let next = after_last.max(done.get(&id).copied().unwrap_or(0));
            queue.next_seq.store(next, Ordering::Release);
            *queue.lock_index() = s.index;
            total_bytes += s.bytes;
            queues.insert(name, Arc::new(queue));
        }
        tracing::info!(
            queues = queues.len(),
            entries = scanned,
            bytes = total_bytes,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "Resumed the LMDB buffer."
        );
        Ok(discarded)
    }

    fn lock_blocks(&self) -> MutexGuard<'_, BTreeMap<u64, BlockLive>> {
        // Only the writer thread (and the open) takes it, for whole inserts,
        // updates and removes.
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_queues(&self) -> MutexGuard<'_, HashMap<String, Arc<Queue>>> {
        // The map is only ever inserted into or removed from; a panic while
        // it was held cannot leave it half-updated, so poisoning is moot.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gets the queue called `name`, creating it if needed.
    ///
    /// Creating costs no transaction: the queue gets its id here and its
    /// name goes to disk with its first entry ([`Queue::is_persisted`]), so a
    /// thousand new shoot clients share the writer's group commits instead
    /// of paying one fsync each.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidQueueName`] for an empty or too long name, or
    /// when every queue id is used up.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>, StoreError> {
        if name.is_empty() {
            return Err(StoreError::InvalidQueueName {
                name: name.to_owned(),
                reason: "empty",
            });
        }
        if name.len() > MAX_QUEUE_NAME_LEN {
            return Err(StoreError::InvalidQueueName {
                name: name.chars().take(64).collect(),
                reason: "longer than 400 bytes",
            });
        }
        let mut queues = self.lock_queues();
        if let Some(queue) = queues.get(name).filter(|q| !q.is_dropped()) {
            return Ok(Arc::clone(queue));
        }
        // Under the map lock, so ids are handed out in order and once.
        let id = self.next_id.load(Ordering::Acquire);
        let next = id.checked_add(1).ok_or(StoreError::InvalidQueueName {
            name: name.to_owned(),
            reason: "all 2^32 queue ids are used up",
        })?;
        self.next_id.store(next, Ordering::Release);
        let queue = Arc::new(Queue::new(id, name.to_owned()));
        queues.insert(name.to_owned(), Arc::clone(&queue));
        tracing::debug!(queue = name, id, "Created a queue.");
        Ok(queue)
    }

    /// How many entries the open deleted because they were undecodable or
    /// belonged to no queue: zero unless something wrote the map behind
    /// the writer's back (a queue's name and its first entries are one
    /// transaction).
    pub fn discarded_at_open(&self) -> u64 {
        self.discarded_at_open
    }

    /// Every live queue, including those resumed from disk, by name.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        let mut all: Vec<_> = self.lock_queues().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Calls `f(seq, appended_at_ms, records, payload)` for the entries of
    /// `queue` from `from_seq` on, like [`Store::read`] but without copying
    /// the payloads out of the map (the tail sampling decider indexes
    /// entries by a few bytes of each); returns how many it saw.
    ///
    /// # Errors
    ///
    /// As [`Store::read`].
    pub fn scan_entries(
        &self,
        queue: &Queue,
        from_seq: u64,
        max_bytes: u64,
        mut f: impl FnMut(u64, u64, u32, &[u8]),
    ) -> Result<usize, StoreError> {
        let mut seen = 0;
        self.for_each_entry(
            queue,
            from_seq,
            max_bytes,
            u64::MAX,
            true,
            |seq, header, payload| {
                seen += 1;
                f(seq, header.appended_at_ms, header.records, payload);
            },
        )?;
        Ok(seen)
    }

    /// The entries `seqs` of `queue` (any order; missing ones are left out),
    /// in one read transaction: a tail sampling decision reads a trace's
    /// scattered entries this way.
    ///
    /// # Errors
    ///
    /// As [`Store::read`].
    pub fn read_seqs(&self, queue: &Queue, seqs: &[u64]) -> Result<Vec<Entry>, StoreError> {
        let lmdb = |op| lmdb_err(op, self.map_size);
        let held: Vec<(u64, Held)> = {
            let index = queue.lock_index();
            seqs.iter()
                .filter_map(|seq| index.get(seq).map(|held| (*seq, *held)))
                .collect()
        };
        let rtxn = self.env.read_txn().map_err(lmdb("read"))?;
        let mut out = Vec::with_capacity(held.len());
        for (seq, held) in held {
            let Some((header, payload, owned)) = self.entry(&rtxn, queue, seq, held)? else {
                continue;
            };
            out.push(Entry {
                seq,
                records: header.records,
                appended_at_ms: header.appended_at_ms,
                payload: Bytes::copy_from_slice(payload),
            });
            self.release(owned);
        }
        Ok(out)
    }

    /// Reads entries of `queue` from `from_seq` on, oldest first, stopping
    /// before the entry that would exceed `max_bytes` payload bytes or
    /// `max_records` records, but returning at least one entry if any exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::Lmdb`] if the read transaction fails,
    /// [`StoreError::Corrupt`] if an entry does not decode.
    pub fn read(
        &self,
        queue: &Queue,
        from_seq: u64,
        max_bytes: u64,
        max_records: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        self.for_each_entry(
            queue,
            from_seq,
            max_bytes,
            max_records,
            true,
            |seq, header, payload| {
                out.push(Entry {
                    seq,
                    records: header.records,
                    appended_at_ms: header.appended_at_ms,
                    // The page is only valid inside the transaction: copy it.
                    payload: Bytes::copy_from_slice(payload),
                });
            },
        )?;
        Ok(out)
    }

    /// Like [`Store::read`], but the entries come out already concatenated
    /// into one request body: one copy out of the map instead of one per
    /// entry plus one to concatenate (the export path's hot spot). `None`
    /// when the queue holds nothing from `from_seq` on. It gives the pages
    /// it read back only while the queue holds a backlog (see
    /// `store/mapped.rs`).
    ///
    /// # Errors
    ///
    /// As [`Store::read`].
    pub fn read_batch(
        &self,
        queue: &Queue,
        from_seq: u64,
        max_bytes: u64,
        max_records: u64,
    ) -> Result<Option<Batch>, StoreError> {
        let mut batch: Option<Batch> = None;
        // Sized once from the queue's counters (what it holds, at most a
        // batch's worth): grown by doubling, the body was copied about
        // twice per batch and every step faulted in fresh pages.
        let used = queue.used_bytes();
        let per_record = used / queue.records().max(1);
        let hint = used
            .min(max_bytes)
            .min(max_records.saturating_add(1).saturating_mul(per_record));
        let mut body = bytes::BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
        self.for_each_entry(
            queue,
            from_seq,
            max_bytes,
            max_records,
            Self::releases(queue),
            |seq, header, payload| {
                let records = header.records;
                body.extend_from_slice(payload);
                let b = batch.get_or_insert(Batch {
                    first: seq,
                    last: seq,
                    entries: 0,
                    records: 0,
                    body: Bytes::new(),
                });
                b.last = seq;
                b.entries += 1;
                b.records += u64::from(records);
            },
        )?;
        Ok(batch.map(|b| Batch {
            body: body.freeze(),
            ..b
        }))
    }

    /// Whether the export path's reads and deletes of `queue` give their
    /// pages back: while it holds a backlog (see [`mapped`]).
    fn releases(queue: &Queue) -> bool {
        queue.used_bytes() > mapped::BACKLOG_BYTES
    }

    /// Gives back the map pages of what was read and copied out (see
    /// [`mapped`]).
    fn release(&self, owned: Owned<'_>) {
        if let Some(map) = &self.map {
            match owned {
                Owned::Value(value) => map.release(value),
                Owned::Part(payload) => map.release_inside(payload),
            }
        }
    }

    /// Walks the entries of `queue` from `from_seq`, oldest first, stopping
    /// before the entry that would exceed `max_bytes` or `max_records`
    /// (the first entry is always taken); `release`: unmap each value's
    /// pages after `f` (see [`mapped`]).
    fn for_each_entry(
        &self,
        queue: &Queue,
        from_seq: u64,
        max_bytes: u64,
        max_records: u64,
        release: bool,
        mut f: impl FnMut(u64, &format::Header, &[u8]),
    ) -> Result<(), StoreError> {
        let lmdb = |op| lmdb_err(op, self.map_size);
        // Positions first, then the transaction: every position in the
        // index was committed before it got there, so the transaction sees
        // it unless it was consumed since (then it is skipped).
        let mut positions = queue.positions(from_seq, READ_POSITIONS);
        let rtxn = self.env.read_txn().map_err(lmdb("read"))?;
        let (mut taken, mut bytes, mut records) = (0usize, 0u64, 0u64);
        while let Some(&(last, _)) = positions.last() {
            for &(seq, held) in &positions {
                let Some((header, payload, owned)) = self.entry(&rtxn, queue, seq, held)? else {
                    continue;
                };
                let next_bytes = bytes + payload.len() as u64;
                let next_records = records + u64::from(header.records);
                if taken > 0 && (next_bytes > max_bytes || next_records > max_records) {
                    return Ok(());
                }
                (taken, bytes, records) = (taken + 1, next_bytes, next_records);
                f(seq, &header, payload);
                if release {
                    self.release(owned);
                }
            }
            positions = queue.positions(last.saturating_add(1), READ_POSITIONS);
        }
        Ok(())
    }

    /// Entry `seq` of `queue`, which its index says is `held`, as
    /// `(header, payload, the map bytes its read may give back)`; `None`
    /// when it is gone (consumed since the caller found it) or the place
    /// holds another queue's part.
    fn entry<'t>(
        &self,
        rtxn: &'t heed::RoTxn<'_, WithoutTls>,
        queue: &Queue,
        seq: u64,
        held: Held,
    ) -> Result<Option<Found<'t>>, StoreError> {
        let key = format::log_key(seq.saturating_sub(u64::from(held.delta)));
        let Some(value) = self
            .log
            .get(rtxn, &key[..])
            .map_err(lmdb_err("read", self.map_size))?
        else {
            return Ok(None);
        };
        let corrupt = |detail| StoreError::Corrupt {
            queue: queue.name.clone(),
            seq,
            detail,
        };
        let block = format::decode_block(value)
            .ok_or(corrupt("unknown format version or truncated header"))?;
        let Some(part) = block.part(held.delta) else {
            // Rewritten without it: consumed since the caller looked.
            return Ok(None);
        };
        let header = format::Header {
            records: part.records,
            appended_at_ms: block.appended_at_ms,
            queue: part.queue,
        };
        let owned = if block.len() == 1 {
            Owned::Value(value)
        } else {
            Owned::Part(part.payload)
        };
        Ok((part.queue == queue.id).then_some((header, part.payload, owned)))
    }

    /// Blocks in the log.
    #[cfg(test)]
    fn log_len(&self) -> u64 {
        let rtxn = self.env.read_txn().unwrap_or_else(|e| panic!("{e}"));
        self.log.len(&rtxn).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The last time the writer loop was alive; it wakes at least once a
    /// second while idle. Before the writer starts, the time of `open`.
    pub fn writer_heartbeat(&self) -> Instant {
        self.started + Duration::from_nanos(self.heartbeat_nanos.load(Ordering::Acquire))
    }

    fn beat(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.heartbeat_nanos.store(nanos, Ordering::Release);
    }

    /// Forces an fsync of everything committed so far (used at shutdown when
    /// durability is `none`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Lmdb`] (or [`StoreError::Full`]) if the sync fails.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.env
            .force_sync()
            .map_err(|e| StoreError::from_heed("sync", e, self.map_size))
    }
}

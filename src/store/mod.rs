//! CONTRACT STUB — replaced by the store helper. LMDB-backed queues.
#![allow(missing_docs, unused_variables, dead_code)]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::config::Durability;

mod metrics;
pub use metrics::StoreMetrics;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub map_size: u64,
    pub durability: Durability,
    /// Most operations one group commit takes from the channel.
    pub max_ops_per_commit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The LMDB map or the disk is full: backpressure, not fatal.
    #[error("storage is full ({detail})")]
    Full { detail: String },
    #[error("LMDB error during {op}: {source}")]
    Lmdb { op: &'static str, source: heed::Error },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The writer thread is gone (shutting down or crashed); not acked.
    #[error("the storage writer is not running")]
    WriterGone,
}

impl StoreError {
    pub fn kind(&self) -> &'static str { "x" }
}

/// One logical FIFO queue (one destination × signal).
#[derive(Debug)]
pub struct Queue {
    pub id: u32,
    pub name: String,
    used_bytes: AtomicU64,
    records: AtomicU64,
    entries: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Queue {
    /// Reserves `bytes` if `used + bytes <= limit`; atomic.
    pub fn try_reserve(&self, bytes: u64, limit: u64) -> bool { unimplemented!() }
    /// Gives back a reservation that was never appended.
    pub fn release(&self, bytes: u64) { unimplemented!() }
    /// Bytes on disk plus reserved.
    pub fn used_bytes(&self) -> u64 { self.used_bytes.load(Ordering::Relaxed) }
    /// Records on disk.
    pub fn records(&self) -> u64 { self.records.load(Ordering::Relaxed) }
    /// Entries on disk.
    pub fn entries(&self) -> u64 { self.entries.load(Ordering::Relaxed) }
    /// Resolves after the next commit that appended to this queue (or a clear/close).
    pub async fn appended(&self) { self.notify.notified().await }
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub records: u32,
    pub payload: Bytes,
}

/// One part of an append: bytes already reserved on `queue`.
#[derive(Debug)]
pub struct AppendPart {
    pub queue: Arc<Queue>,
    pub records: u32,
    pub payload: Bytes,
}

pub type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// What the writer thread does, in the order received.
#[derive(Debug)]
pub enum WriteOp {
    /// Append every part in one transaction; reply after the commit.
    Append { parts: Vec<AppendPart>, reply: Reply },
    /// Delete entries `first..=last` of `queue` (after a backend accepted them).
    Delete { queue: Arc<Queue>, first: u64, last: u64 },
    /// Delete everything in `queue` and forget it.
    Drop { queue: Arc<Queue>, reply: Option<Reply> },
    /// Reply after everything before this op is committed.
    Flush { reply: Reply },
}

#[derive(Debug)]
pub struct Store;

impl Store {
    pub fn open(opts: StoreOptions) -> Result<Arc<Store>, StoreError> { unimplemented!() }
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>, StoreError> { unimplemented!() }
    pub fn queues(&self) -> Vec<Arc<Queue>> { unimplemented!() }
    pub fn read(&self, queue: &Queue, from_seq: u64, max_bytes: u64, max_records: u64) -> Result<Vec<Entry>, StoreError> { unimplemented!() }
    pub fn spawn_writer(self: &Arc<Self>, rx: crossbeam_channel::Receiver<WriteOp>, metrics: Arc<StoreMetrics>) -> std::io::Result<std::thread::JoinHandle<()>> { unimplemented!() }
    pub fn writer_heartbeat(&self) -> std::time::Instant { unimplemented!() }
    pub fn sync(&self) -> Result<(), StoreError> { unimplemented!() }
}

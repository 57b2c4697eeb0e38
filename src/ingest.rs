//! From raw request bytes to a durable commit: scan, route, admit, hand to
//! the LMDB writer, wait for the commit.
//!
//! This is the hot path shared by both receivers. It never goes through an
//! actor mailbox: the request's parts go to the writer thread over a
//! crossbeam channel and the receiver awaits a oneshot reply sent *after*
//! the group commit. So an `Ok` from [`Ingest::export`] means "on disk" (with
//! durability `fsync`), and anything else means nothing of the request is
//! acknowledged.
//!
//! Admission is checked for every destination before anything is sent to
//! the writer: under `block` one full destination refuses the whole request
//! and every reservation already taken is given back, so a refused request
//! leaves no trace; under `drop_newest` only that destination's part is
//! dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::WhenFull;
use crate::metrics::{Dest, DestReason, Metrics};
use crate::proto::{self, ScanError};
use crate::routing::{Destination, Snapshot};
use crate::signal::Signal;
use crate::store::{AppendPart, StoreError, WriteOp};

/// The result of an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Records stored nowhere (no destination took them); reported to the
    /// client as `partial_success.rejected_*`.
    pub rejected: u64,
    /// Why, when `rejected > 0`.
    pub message: String,
    /// Records in the request.
    pub records: u64,
}

/// Why a request was not acknowledged. Mapped to gRPC codes and HTTP
/// statuses in one place per protocol, next to each receiver.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid Export*ServiceRequest encoding.
    #[error("malformed request: {0}")]
    Malformed(#[from] ScanError),
    /// A destination's queue is at its limit and its policy is `block`.
    #[error("destination {destination} is full ({used} of {limit} bytes queued); retry later")]
    QueueFull {
        /// The full destination.
        destination: String,
        /// Bytes it holds.
        used: u64,
        /// Its limit.
        limit: u64,
        /// Suggested delay.
        retry_after: Duration,
    },
    /// The LMDB map or the disk is full.
    #[error("storage is full; retry later")]
    StorageFull {
        /// Suggested delay.
        retry_after: Duration,
    },
    /// The store failed for another reason; nothing was acknowledged.
    #[error("storage error: {0}")]
    Store(StoreError),
    /// The process is shutting down and no longer accepts data.
    #[error("shutting down")]
    ShuttingDown,
}

impl IngestError {
    /// Bounded label for `seedgate_receiver_refused_*{reason}`.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Malformed(_) => "malformed",
            IngestError::QueueFull { .. } => "queue_full",
            IngestError::StorageFull { .. } => "storage_full",
            IngestError::Store(_) => "storage_error",
            IngestError::ShuttingDown => "shutting_down",
        }
    }

    /// The delay to suggest to the client, for refusals that are backpressure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::QueueFull { retry_after, .. }
            | IngestError::StorageFull { retry_after } => Some(*retry_after),
            IngestError::Store(_) | IngestError::ShuttingDown => Some(Duration::from_secs(1)),
            IngestError::Malformed(_) => None,
        }
    }
}

/// The shared hot path.
#[derive(Debug)]
pub struct Ingest {
    snapshot: ArcSwap<Snapshot>,
    writer: crossbeam_channel::Sender<WriteOp>,
    metrics: Arc<Metrics>,
    closed: AtomicBool,
    storage_retry_after: Duration,
}

/// One destination's share of a request, before it is admitted.
struct Part<'a> {
    destination: &'a Arc<Destination>,
    /// Indexes into the request's blocks, in request order.
    blocks: Vec<usize>,
    records: u64,
}

impl Ingest {
    /// A hot path that routes with `snapshot` and writes through `writer`.
    pub fn new(
        snapshot: Snapshot,
        writer: crossbeam_channel::Sender<WriteOp>,
        metrics: Arc<Metrics>,
        storage_retry_after: Duration,
    ) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            writer,
            metrics,
            closed: AtomicBool::new(false),
            storage_retry_after,
        }
    }

    /// The current routing snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Replaces the routing snapshot; takes effect for the next request.
    pub fn swap_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Refuse everything from now on (shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Scans, routes, admits and durably stores one export request.
    ///
    /// # Errors
    /// [`IngestError`]: nothing of the request is acknowledged. Under
    /// `block`, nothing of it is stored either.
    pub async fn export(&self, signal: Signal, body: Bytes) -> Result<Accepted, IngestError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(IngestError::ShuttingDown);
        }
        let snapshot = self.snapshot.load();
        let blocks = proto::scan(signal, &body, &snapshot.keys)?;
        let total: u64 = blocks.iter().map(|b| u64::from(b.records)).sum();

        // Group the blocks by destination, keeping request order.
        let mut parts: Vec<Part<'_>> = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            for d in snapshot.route(signal, block.key) {
                let records = u64::from(block.records);
                match parts.iter_mut().find(|p| Arc::ptr_eq(p.destination, d)) {
                    Some(p) => {
                        p.blocks.push(i);
                        p.records += records;
                    }
                    None => parts.push(Part {
                        destination: d,
                        blocks: vec![i],
                        records,
                    }),
                }
            }
        }
        let unrouted: u64 = blocks
            .iter()
            .filter(|b| snapshot.route(signal, b.key).is_empty())
            .map(|b| u64::from(b.records))
            .sum();

        // Admit: reserve every destination's bytes, or give them all back.
        let mut append = Vec::with_capacity(parts.len());
        let mut admitted: Vec<(&Arc<Destination>, u64)> = Vec::with_capacity(parts.len());
        let mut stored = vec![false; blocks.len()];
        for part in parts {
            let ranges: Vec<_> = part
                .blocks
                .iter()
                .filter_map(|&i| blocks.get(i))
                .map(|b| b.range.clone())
                .collect();
            let payload = assemble(&body, &ranges);
            let d = part.destination;
            if d.queue
                .try_reserve(payload.len() as u64, d.limits.max_bytes.0)
            {
                for &i in &part.blocks {
                    if let Some(s) = stored.get_mut(i) {
                        *s = true;
                    }
                }
                append.push(AppendPart {
                    queue: Arc::clone(&d.queue),
                    records: u32::try_from(part.records).unwrap_or(u32::MAX),
                    payload,
                });
                admitted.push((d, part.records));
                continue;
            }
            match d.limits.when_full {
                WhenFull::Block => {
                    for p in &append {
                        p.queue.release(p.payload.len() as u64);
                    }
                    return Err(IngestError::QueueFull {
                        destination: d.name.clone(),
                        used: d.queue.used_bytes(),
                        limit: d.limits.max_bytes.0,
                        retry_after: d.limits.retry_after,
                    });
                }
                WhenFull::DropNewest => {
                    self.metrics
                        .router
                        .dropped_records
                        .get_or_create(&DestReason {
                            destination: d.name.clone(),
                            signal: signal.as_str(),
                            reason: "queue_full",
                        })
                        .inc_by(part.records);
                }
            }
        }
        // Rejected: records stored nowhere, for want of a pipeline or room.
        let rejected: u64 = blocks
            .iter()
            .zip(&stored)
            .filter(|(_, stored)| !**stored)
            .map(|(b, _)| u64::from(b.records))
            .sum();
        let mut accepted = Accepted {
            rejected,
            message: String::new(),
            records: total,
        };
        if rejected > 0 {
            accepted.message = if unrouted == rejected {
                format!("{rejected} records matched no pipeline for {signal}")
            } else {
                format!("{rejected} records dropped: destination queue full")
            };
        }
        if append.is_empty() {
            return Ok(accepted);
        }

        let (reply, committed) = tokio::sync::oneshot::channel();
        if let Err(crossbeam_channel::SendError(op)) = self.writer.send(WriteOp::Append {
            parts: append,
            reply,
        }) {
            release_all(op);
            return Err(IngestError::Store(StoreError::WriterGone));
        }
        match committed.await {
            Ok(Ok(())) => {
                for (d, n) in admitted {
                    let labels = Dest {
                        destination: d.name.clone(),
                        signal: signal.as_str(),
                    };
                    self.metrics.router.records.get_or_create(&labels).inc_by(n);
                }
                Ok(accepted)
            }
            Ok(Err(StoreError::Full { .. })) => Err(IngestError::StorageFull {
                retry_after: self.storage_retry_after,
            }),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            // The writer dropped the reply without answering: it died with
            // the request; the store released nothing we can see, so this
            // is reported as not acknowledged.
            Err(_) => Err(IngestError::Store(StoreError::WriterGone)),
        }
    }
}

/// The bytes of `ranges` of `body` as one request. When the ranges are the
/// whole body in order (the common case: one destination takes every block)
/// this is a zero-copy slice.
fn assemble(body: &Bytes, ranges: &[std::ops::Range<usize>]) -> Bytes {
    let contiguous = ranges.windows(2).all(|w| w[0].end == w[1].start);
    if contiguous && let (Some(first), Some(last)) = (ranges.first(), ranges.last()) {
        return body.slice(first.start..last.end);
    }
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
    for r in ranges {
        out.extend_from_slice(&body[r.clone()]);
    }
    Bytes::from(out)
}

fn release_all(op: WriteOp) {
    if let WriteOp::Append { parts, .. } = op {
        for p in parts {
            p.queue.release(p.payload.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ranges_are_a_zero_copy_slice() {
        let body = Bytes::from_static(b"aabbccdd");
        let out = assemble(&body, &[0..2, 2..4]);
        assert_eq!(&out[..], b"aabb");
        assert_eq!(out.as_ptr(), body.as_ptr(), "no copy for contiguous ranges");
        let out = assemble(&body, &[0..2, 4..6]);
        assert_eq!(&out[..], b"aacc");
    }
}

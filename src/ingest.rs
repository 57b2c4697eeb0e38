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
use crate::metrics::{Dest, DestReason, KindState, Metrics};
use crate::proto::{self, ScanError};
use crate::routing::shoots::ShootDirectory;
use crate::routing::{Destination, DestinationKind, RouteState, Snapshot};
use crate::signal::Signal;
use crate::store::{AppendPart, FullReason, StoreError, WriteOp, release_parts};

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
    /// The body is not a valid Export*ServiceRequest encoding, or holds
    /// what a backend's decoder would refuse (see [`crate::proto::check`]).
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
    /// The LMDB map or the disk is full (down to the reserve kept for
    /// deletes): backpressure, like a full queue.
    #[error("storage is full ({}); retry later", reason.as_str())]
    StorageFull {
        /// What is full.
        reason: FullReason,
        /// Suggested delay.
        retry_after: Duration,
    },
    /// The store failed for another reason; nothing was acknowledged.
    #[error("storage error: {0}")]
    Store(StoreError),
    /// The process is shutting down and no longer accepts data.
    #[error("shutting down")]
    ShuttingDown,
    /// A destination's processor could not handle the request (not
    /// expected for a request the scan accepted; refused like malformed).
    #[error("processor: {0}")]
    Processor(String),
    /// A peer's hand-over names a queue this replica does not take (see
    /// [`crate::handoff`]); the peer keeps the data.
    #[error("hand-over: {0}")]
    HandOver(String),
}

impl IngestError {
    /// The delay to suggest to the client, for refusals that are backpressure.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::QueueFull { retry_after, .. }
            | IngestError::StorageFull { retry_after, .. } => Some(*retry_after),
            IngestError::Store(_) | IngestError::ShuttingDown => Some(Duration::from_secs(1)),
            IngestError::Malformed(_) | IngestError::Processor(_) | IngestError::HandOver(_) => {
                None
            }
        }
    }
}

/// The shared hot path.
#[derive(Debug)]
pub struct Ingest {
    snapshot: ArcSwap<Snapshot>,
    shoots: Arc<ShootDirectory>,
    writer: crossbeam_channel::Sender<WriteOp>,
    metrics: Arc<Metrics>,
    closed: AtomicBool,
    storage_retry_after: Duration,
    limits: proto::Limits,
    /// `receivers.processors`: run before routing.
    processors: crate::processors::Processors,
    /// Where a peer's hand-over is stored (absent: hand-overs are refused).
    store: Option<Arc<crate::store::Store>>,
}

/// One destination's share of a request, before it is admitted.
struct Part {
    destination: Arc<Destination>,
    /// Indexes into the request's blocks, in request order.
    blocks: Vec<usize>,
    records: u64,
}

/// A request's shares by destination, and what routing left out.
struct Routed {
    parts: Vec<Part>,
    drops: Drops,
    /// The routing table row of each block.
    states: Vec<RouteState>,
    /// Records no pipeline selected.
    unrouted: u64,
    /// For traces with a load-balanced pipeline: each span's trace ID hash,
    /// in request order (empty otherwise).
    trace_keys: Vec<u64>,
}

/// Records dropped on the way (counted only once the request's outcome is
/// known, so a refused request that the client retries is not counted twice).
#[derive(Default)]
struct Drops(Vec<(DropKind, u64)>);

#[derive(Clone, Copy)]
enum DropKind {
    /// A pipeline's queue was full under `drop_newest`.
    PipelineFull(usize),
    /// A shoot client's queue was full under `drop_newest`.
    ShootFull,
    /// The state table sends this block nowhere.
    StateExcluded,
    /// The block should go to its shoot client, and there is none.
    NoClient,
}

fn add_part(parts: &mut Vec<Part>, d: &Arc<Destination>, block: usize, records: u64) {
    match parts.iter_mut().find(|p| Arc::ptr_eq(&p.destination, d)) {
        Some(p) => {
            p.blocks.push(block);
            p.records += records;
        }
        None => parts.push(Part {
            destination: Arc::clone(d),
            blocks: vec![block],
            records,
        }),
    }
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
            shoots: Arc::default(),
            writer,
            metrics,
            closed: AtomicBool::new(false),
            storage_retry_after,
            limits: proto::Limits::DEFAULT,
            processors: crate::processors::Processors::default(),
            store: None,
        }
    }

    /// The same, running `processors` on every request before routing.
    #[must_use]
    pub fn with_processors(mut self, processors: crate::processors::Processors) -> Self {
        self.processors = processors;
        self
    }

    /// The same, refusing what exceeds `limits` (default: [`proto::Limits::DEFAULT`]).
    #[must_use]
    pub fn with_limits(mut self, limits: proto::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The same, with the shoot clients in `shoots`.
    #[must_use]
    pub fn with_shoots(mut self, shoots: Arc<ShootDirectory>) -> Self {
        self.shoots = shoots;
        self
    }

    /// The current routing snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The shoot clients.
    pub fn shoots(&self) -> &Arc<ShootDirectory> {
        &self.shoots
    }

    /// Replaces the routing snapshot; takes effect for the next request.
    pub fn swap_snapshot(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Takes peers' hand-overs into `store`'s queues.
    #[must_use]
    pub fn with_store(mut self, store: Arc<crate::store::Store>) -> Self {
        self.store = Some(store);
        self
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
        let snapshot = self.snapshot.load_full();
        let body = if self.processors.rewrites() {
            // Checked before it is rewritten, then scanned again for the
            // routing keys the processors may have set.
            proto::scan_with(signal, &body, &[], self.limits)?;
            self.processors
                .apply(body)
                .map_err(|e| IngestError::Processor(format!("receivers.processors: {e}")))?
        } else {
            body
        };
        // A load-balanced pipeline splits by the spans' trace IDs: the scan
        // hands them over, so the split need not read every span again.
        let wanted = signal == Signal::Traces && snapshot.splits_at_ingest(signal);
        // Sized for spans of ~100 bytes, so that growing it rarely copies.
        let mut trace_keys = Vec::with_capacity(if wanted { body.len() / 100 } else { 0 });
        let blocks = proto::scan_keyed(
            signal,
            &body,
            &snapshot.keys,
            self.limits,
            wanted.then_some(&mut trace_keys),
        )?;
        let total: u64 = blocks.iter().map(|b| u64::from(b.records)).sum();

        // Route every block; group the blocks by destination, keeping
        // request order.
        let mut parts: Vec<Part> = Vec::new();
        let mut drops = Drops::default();
        let mut states = Vec::with_capacity(blocks.len());
        let mut unrouted = 0u64;
        for (i, block) in blocks.iter().enumerate() {
            let records = u64::from(block.records);
            // An empty namespace names nothing: route it as no key.
            let key = block.key.filter(|k| !k.is_empty());
            let decision = snapshot.decide(signal, key);
            states.push(decision.state);
            let mut routed = false;
            if decision.seed {
                for d in snapshot.seed_destinations(signal, key) {
                    add_part(&mut parts, d, i, records);
                    routed = true;
                }
            }
            let mut no_client = false;
            if decision.shoot
                && let Some(ns) = key
            {
                match self.shoot_destination(ns, signal).await {
                    Some(d) => {
                        add_part(&mut parts, &d, i, records);
                        routed = true;
                    }
                    None => {
                        no_client = true;
                        drops.0.push((DropKind::NoClient, records));
                    }
                }
            }
            if !decision.seed && !decision.shoot {
                drops.0.push((DropKind::StateExcluded, records));
            } else if !routed && !no_client {
                unrouted += records;
            }
        }
        let routed = Routed {
            parts,
            drops,
            states,
            unrouted,
            trace_keys,
        };
        self.admit(signal, &body, &blocks, routed, total).await
    }

    /// Stores a request a peer forwarded because this replica owns its
    /// traces (the `affinity` of pipeline `pipeline`): it was routed there,
    /// so it goes only to this replica's own destination of that pipeline
    /// (its processors, its queue), never forwarded again.
    ///
    /// # Errors
    /// [`IngestError`]; [`IngestError::HandOver`] when this replica has no
    /// such pipeline.
    pub async fn export_owned(
        &self,
        signal: Signal,
        pipeline: &str,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(IngestError::ShuttingDown);
        }
        let snapshot = self.snapshot.load_full();
        let destination = snapshot
            .owned_named(signal, pipeline)
            .cloned()
            .ok_or_else(|| {
                IngestError::HandOver(format!("no {signal} pipeline {pipeline} owns traces here"))
            })?;
        let blocks = proto::scan_with(signal, &body, &snapshot.keys, self.limits)?;
        let total: u64 = blocks.iter().map(|b| u64::from(b.records)).sum();
        if total == 0 {
            // A forwarder's probe: nothing to store.
            return Ok(Accepted {
                rejected: 0,
                message: String::new(),
                records: 0,
            });
        }
        let states = blocks
            .iter()
            .map(|b| {
                snapshot
                    .decide(signal, b.key.filter(|k| !k.is_empty()))
                    .state
            })
            .collect();
        let routed = Routed {
            parts: vec![Part {
                destination,
                blocks: (0..blocks.len()).collect(),
                records: total,
            }],
            drops: Drops::default(),
            states,
            unrouted: 0,
            trace_keys: Vec::new(),
        };
        self.admit(signal, &body, &blocks, routed, total).await
    }

    /// Admits a routed request: reserves every destination's bytes (or
    /// gives them all back), stores the shares in one transaction and
    /// answers after the commit.
    async fn admit(
        &self,
        signal: Signal,
        body: &Bytes,
        blocks: &[proto::Block<'_>],
        routed: Routed,
        total: u64,
    ) -> Result<Accepted, IngestError> {
        let Routed {
            parts,
            mut drops,
            states,
            unrouted,
            trace_keys,
        } = routed;
        // Admit: reserve every destination's bytes, or give them all back.
        let mut append = Vec::with_capacity(parts.len());
        let mut admitted: Vec<Part> = Vec::with_capacity(parts.len());
        let mut stored = vec![false; blocks.len()];
        // Routes split by: held until the commit is answered.
        let mut spreads: Vec<crate::loadbalancing::router::Spreading> = Vec::new();
        for part in parts {
            let ranges: Vec<_> = part
                .blocks
                .iter()
                .filter_map(|&i| blocks.get(i))
                .map(|b| b.range.clone())
                .collect();
            let d = &part.destination;
            let records = u32::try_from(part.records).unwrap_or(u32::MAX);
            let entries = d
                .processors
                .apply(assemble(body, &ranges))
                .map_err(|e| e.to_string())
                .and_then(|payload| d.processors.parts(&d.queue, payload, records));
            let entries = match entries {
                Ok(p) => p,
                Err(e) => {
                    release_parts(&append);
                    return Err(IngestError::Processor(format!("{}: {e}", d.name)));
                }
            };
            // A load-balanced share goes straight to its backends' queues
            // (reserved there); what does not stays for the pipeline queue.
            let (entries, mut spreading) = match &d.balance {
                Some(router) => {
                    let keys = part_trace_keys(blocks, &part.blocks, &trace_keys);
                    router.spread(&d.queue, entries, keys.as_deref())
                }
                None => (entries, None),
            };
            let split_whole = spreading.as_ref().is_some_and(|s| !s.parts.is_empty())
                && !entries.iter().any(|e| Arc::ptr_eq(&e.queue, &d.queue));
            // The destination's own queue is held to its limit; a stage's
            // side entries (span metrics deltas) are small and go with it.
            let own: u64 = entries
                .iter()
                .filter(|e| Arc::ptr_eq(&e.queue, &d.queue))
                .map(|e| e.payload.len() as u64)
                .sum();
            if split_whole || d.queue.try_reserve(own, d.limits.max_bytes.0) {
                for &i in &part.blocks {
                    if let Some(s) = stored.get_mut(i) {
                        *s = true;
                    }
                }
                for e in entries {
                    if !Arc::ptr_eq(&e.queue, &d.queue) {
                        e.queue.try_reserve(e.payload.len() as u64, u64::MAX);
                    }
                    append.push(e);
                }
                if let Some(mut s) = spreading {
                    append.append(&mut s.parts);
                    spreads.push(s);
                }
                admitted.push(part);
                continue;
            }
            if let Some(s) = spreading.take() {
                s.release();
            }
            match d.limits.when_full {
                WhenFull::Block => {
                    release_parts(&append);
                    return Err(IngestError::QueueFull {
                        destination: d.name.clone(),
                        used: d.queue.used_bytes(),
                        limit: d.limits.max_bytes.0,
                        retry_after: d.limits.retry_after,
                    });
                }
                WhenFull::DropNewest => {
                    let kind = match d.kind {
                        DestinationKind::Shoot => DropKind::ShootFull,
                        DestinationKind::Pipeline | DestinationKind::Backend => {
                            DropKind::PipelineFull(admitted.len())
                        }
                    };
                    // Keep the destination around for its metric label.
                    drops.0.push((kind, part.records));
                    admitted.push(Part {
                        records: 0,
                        blocks: Vec::new(),
                        ..part
                    });
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
                format!(
                    "{rejected} records stored nowhere: no matching pipeline, no shoot client, excluded by the shoot's state, or destination queue full"
                )
            };
        }
        if append.is_empty() {
            self.count(signal, &admitted, &states, blocks, &drops);
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
                for s in spreads {
                    s.committed();
                }
                self.count(signal, &admitted, &states, blocks, &drops);
                Ok(accepted)
            }
            Ok(Err(StoreError::Full { reason, .. })) => Err(IngestError::StorageFull {
                reason,
                retry_after: self.storage_retry_after,
            }),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            // The writer dropped the reply without answering: it died with
            // the request; the store released nothing we can see, so this
            // is reported as not acknowledged.
            Err(_) => Err(IngestError::Store(StoreError::WriterGone)),
        }
    }

    /// Stores a peer's hand-over (see [`crate::handoff`]): the entries of
    /// its queue `queue`, already routed and processed there, go as they
    /// are into the same queue here (a load-balanced backend's into its
    /// pipeline's queue, a shoot's into this replica's client for that
    /// shoot), without routing or processors: they ran on the peer.
    ///
    /// # Errors
    /// [`IngestError`]: nothing is stored; [`IngestError::HandOver`] when
    /// this replica has no such pipeline or shoot client.
    pub async fn hand_over(
        &self,
        signal: Signal,
        queue: &str,
        body: Bytes,
    ) -> Result<Accepted, IngestError> {
        use crate::handoff::{Target, target_of};
        if self.closed.load(Ordering::Relaxed) {
            return Err(IngestError::ShuttingDown);
        }
        let refuse = |why: String| IngestError::HandOver(format!("{queue}: {why}"));
        let blocks = proto::scan_with(signal, &body, &[], self.limits)?;
        let records: u64 = blocks.iter().map(|b| u64::from(b.records)).sum();
        let target = match target_of(queue) {
            Some((s, t)) if s == signal => t,
            _ => return Err(refuse(format!("not a {signal} queue a peer hands over"))),
        };
        let into = match target {
            Target::Pipeline { pipeline, queue } => {
                let pipeline = crate::affinity::pipeline_of(pipeline);
                let snapshot = self.snapshot.load();
                let Some(routed) = snapshot.seed_named(signal, pipeline) else {
                    return Err(refuse(format!("no {signal} pipeline {pipeline} here")));
                };
                // Pending spans of a pipeline with affinity go to its
                // forwarder: each trace to the replica that owns it now.
                if queue.starts_with("tail/") && routed.name != pipeline {
                    Arc::clone(&routed.queue)
                } else {
                    let store = self
                        .store
                        .as_ref()
                        .ok_or_else(|| refuse("this replica takes no hand-overs".to_owned()))?;
                    store.queue(&queue).map_err(IngestError::Store)?
                }
            }
            Target::Shoot { namespace } => {
                let d = self
                    .shoot_destination(namespace, signal)
                    .await
                    .ok_or_else(|| refuse(format!("no shoot client for {namespace} here")))?;
                Arc::clone(&d.queue)
            }
        };
        // Held to no destination limit: the data is acknowledged already,
        // and the peer is going away; the store's own limits still hold.
        into.try_reserve(body.len() as u64, u64::MAX);
        let (reply, committed) = tokio::sync::oneshot::channel();
        let part = AppendPart {
            queue: into,
            records: u32::try_from(records).unwrap_or(u32::MAX),
            payload: body,
        };
        if let Err(crossbeam_channel::SendError(op)) = self.writer.send(WriteOp::Append {
            parts: vec![part],
            reply,
        }) {
            release_all(op);
            return Err(IngestError::Store(StoreError::WriterGone));
        }
        match committed.await {
            Ok(Ok(())) => Ok(Accepted {
                rejected: 0,
                message: String::new(),
                records,
            }),
            Ok(Err(StoreError::Full { reason, .. })) => Err(IngestError::StorageFull {
                reason,
                retry_after: self.storage_retry_after,
            }),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            Err(_) => Err(IngestError::Store(StoreError::WriterGone)),
        }
    }

    /// The shoot client's destination for `signal`, created on first use;
    /// `None` when there is none (the refusal is logged and counted by the
    /// manager).
    async fn shoot_destination(&self, namespace: &str, signal: Signal) -> Option<Arc<Destination>> {
        match self.shoots.get_or_create(namespace).await {
            Ok(link) => link.destination(signal).cloned(),
            Err(_) => None,
        }
    }

    /// Counts what an acknowledged request did: records per destination,
    /// routed per kind and state, dropped per reason.
    fn count(
        &self,
        signal: Signal,
        admitted: &[Part],
        states: &[RouteState],
        blocks: &[proto::Block<'_>],
        drops: &Drops,
    ) {
        let m = &self.metrics;
        let mut routed: Vec<((DestinationKind, RouteState), u64)> = Vec::new();
        // Records per series first: a request for ten shoots has ten parts
        // and one series ("shoot"), looked up once.
        let mut per_label: Vec<(&str, u64)> = Vec::with_capacity(admitted.len());
        for part in admitted.iter().filter(|p| p.records > 0) {
            let d = &part.destination;
            tally(&mut per_label, d.metrics_label(), part.records);
            for &i in &part.blocks {
                let (Some(state), Some(block)) = (states.get(i), blocks.get(i)) else {
                    continue;
                };
                tally(&mut routed, (d.kind, *state), u64::from(block.records));
            }
        }
        for (label, n) in per_label {
            m.router
                .records
                .get_or_create(&Dest {
                    destination: label.to_owned(),
                    signal: signal.as_str(),
                })
                .inc_by(n);
        }
        for ((kind, state), n) in routed {
            m.router
                .routed
                .get_or_create(&KindState {
                    kind: kind.as_str(),
                    state: state.as_str(),
                    signal: signal.as_str(),
                })
                .inc_by(n);
        }
        for &(kind, n) in &drops.0 {
            let shoot_reason = match kind {
                DropKind::PipelineFull(at) => {
                    if let Some(part) = admitted.get(at) {
                        m.router
                            .dropped_records
                            .get_or_create(&DestReason {
                                destination: part.destination.metrics_label().to_owned(),
                                signal: signal.as_str(),
                                reason: "queue_full",
                            })
                            .inc_by(n);
                    }
                    continue;
                }
                DropKind::ShootFull => "queue_full",
                DropKind::StateExcluded => "state_excluded",
                DropKind::NoClient => "no_client",
            };
            m.shoot.count_dropped(shoot_reason, signal, n);
        }
    }
}

/// Adds `n` to `key`'s count in `counts` (a few keys per request: a
/// linear search beats hashing them).
fn tally<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, c)) => *c += n,
        None => counts.push((key, n)),
    }
}

/// The trace ID hashes of the spans of `part` (indexes into `blocks`), in
/// order, out of the request's `keys`; `None` when there are none.
fn part_trace_keys<'k>(
    blocks: &[proto::Block<'_>],
    part: &[usize],
    keys: &'k [u64],
) -> Option<std::borrow::Cow<'k, [u64]>> {
    if keys.is_empty() {
        return None;
    }
    if part.len() == blocks.len() && part.iter().enumerate().all(|(i, b)| i == *b) {
        return Some(std::borrow::Cow::Borrowed(keys));
    }
    let mut starts = Vec::with_capacity(blocks.len());
    let mut at = 0usize;
    for b in blocks {
        starts.push(at);
        at = at.saturating_add(b.records as usize);
    }
    let mut out = Vec::new();
    for &i in part {
        let (Some(start), Some(block)) = (starts.get(i), blocks.get(i)) else {
            return None;
        };
        out.extend_from_slice(keys.get(*start..start.saturating_add(block.records as usize))?);
    }
    Some(std::borrow::Cow::Owned(out))
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
        release_parts(&parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parts_trace_keys_are_those_of_its_blocks_spans_in_order() {
        let block = |records| proto::Block {
            range: 0..0,
            records,
            key: None,
        };
        let blocks = [block(2), block(3), block(1)];
        let keys = [10, 11, 20, 21, 22, 30];
        let all = part_trace_keys(&blocks, &[0, 1, 2], &keys).unwrap();
        assert!(
            matches!(all, std::borrow::Cow::Borrowed(_)),
            "the whole request: no copy"
        );
        assert_eq!(&all[..], &keys);
        let some = part_trace_keys(&blocks, &[0, 2], &keys).unwrap();
        assert_eq!(&some[..], &[10, 11, 30]);
        assert_eq!(
            &part_trace_keys(&blocks, &[1], &keys).unwrap()[..],
            &[20, 21, 22]
        );
        assert!(
            part_trace_keys(&blocks, &[0], &[]).is_none(),
            "no keys taken"
        );
        assert!(
            part_trace_keys(&blocks, &[2], &keys[..5]).is_none(),
            "keys that do not fit"
        );
    }

    #[test]
    fn contiguous_ranges_are_a_zero_copy_slice() {
        let body = Bytes::from_static(b"aabbccdd");
        let out = assemble(&body, &[0..2, 2..4]);
        assert_eq!(&out[..], b"aabb");
        assert_eq!(out.as_ptr(), body.as_ptr(), "no copy for contiguous ranges");
        let out = assemble(&body, &[0..2, 4..6]);
        assert_eq!(&out[..], b"aacc");
        assert!(assemble(&body, &[]).is_empty());
    }
}

//! Span metrics in the data path, counted exactly once by the store.
//!
//! Each traces pipeline with `spanmetrics` has two queues:
//!
//! - `spanmetrics/<pipeline>/deltas`: one entry per stored request share,
//!   its deltas ([`super::entries`], from
//!   [`SpanMetrics::encoded_deltas`]), appended by ingest **in the write
//!   transaction that stores the spans** ([`Stage::deltas_part`]): a span's
//!   delta is stored if and only if the span is acknowledged;
//! - `spanmetrics/<pipeline>/state`: one entry, the [`Snapshot`] of every
//!   series (`SeriesKey -> StoredAggregate`) and the last flush time.
//!
//! Every `metrics_flush_interval` the flusher ([`Stage::run`]) reads the
//! snapshot and the delta entries, folds the deltas into the series (by
//! their key bytes, in place: only a new series decodes its key), builds
//! the metrics with [`SpanMetrics::emit`], and commits in **one**
//! [`WriteOp::Settle`]: the metrics requests appended to the metrics
//! pipeline's queue, the new snapshot appended to the state queue, the
//! folded delta entries and the old snapshot deleted. A flush that fails
//! (or a process killed at any point) changed nothing: the next one folds
//! the same entries into the same snapshot.
//!
//! # What "exactly once" covers
//!
//! Each acknowledged span is counted once in the stored aggregates: never
//! twice, never lost, across restarts and `kill -9`; a cumulative series
//! keeps its start time. The emitted metrics are data like any other once
//! in the metrics pipeline's queue: a flush whose request the backend fails
//! to take stays queued and is retried (and a backend that took a request
//! without answering may get it twice). Cumulative points make such repeats
//! harmless: each one carries the totals, not an increment.
//!
//! Two flushers of one pipeline (the old and the new stage around a
//! reload, or a restarted one) never interleave: they take a process-wide
//! lock per pipeline, and each flush first waits for the writer to commit
//! everything sent before it (a flush cancelled after sending its settle
//! still commits it before the next flush reads).
//!
//! Series never expire: a dimension set that stops appearing is still sent
//! (cumulative) or still counts toward `aggregation_cardinality_limit`
//! (both temporalities). A series stored with other buckets than configured
//! (the bounds were changed) restarts with the next delta, as
//! [`merge_stored`](super::merge_stored) does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

use super::super::StageContext;
use super::aggregate::SpanMetrics;
use super::codec::FormatError;
use super::entries::{DeltasView, Snapshot};
use super::key::SeriesKey;
use super::series::Aggregate;
use super::stored::StoredAggregate;
use crate::config::SpanMetricsConfig;
use crate::config::spanmetrics::Temporality;
use crate::metrics::spanmetrics::{PipelineLabel, global as metrics};
use crate::routing::Destination;
use crate::signal::Signal;
use crate::store::{AppendPart, Queue, Store, StoreError, WriteOp};

/// Delta bytes one flush folds at most (the rest waits for the next): a
/// bound on the settle's transaction. At 2 KiB a request of 100 spans, 5 s
/// of 2.5 M spans a second.
const MAX_FLUSH_DELTA_BYTES: u64 = 256 << 20;

/// Delta bytes read (held in memory) at a time.
const READ_DELTA_BYTES: u64 = 32 << 20;

/// Series per emitted metrics request: a backend's request size limit
/// (gRPC's default is 4 MiB) must not refuse the whole flush.
const MAX_SERIES_PER_REQUEST: usize = 500;

/// A pipeline's span metrics: its queues and its engine.
#[derive(Debug)]
pub struct Stage {
    pipeline: String,
    engine: SpanMetrics,
    /// One entry of deltas per stored request share.
    pub deltas: Arc<Queue>,
    /// The snapshot of every series.
    pub state: Arc<Queue>,
    /// The metrics pipeline's queue name (what its delivery loop reads).
    target: String,
    labels: PipelineLabel,
    /// [`SeriesKey::overflow`], built once.
    overflow: SeriesKey,
}

/// The delta entries one flush folded.
#[derive(Debug)]
struct FoldedEntries {
    first_seq: u64,
    first_appended_at_ms: u64,
    last_seq: u64,
}

/// What one flush did, for the metrics.
#[derive(Debug, Default)]
struct Flushed {
    settled: bool,
    spans: u64,
    overflow_spans: u64,
    series: usize,
}

impl Stage {
    /// Builds the stage of `pipeline`, creating its queues.
    ///
    /// # Errors
    /// A queue cannot be created.
    pub fn new(
        config: &SpanMetricsConfig,
        store: &Arc<Store>,
        pipeline: &str,
    ) -> Result<Self, String> {
        let queue = |what: &str| {
            store
                .queue(&format!("spanmetrics/{pipeline}/{what}"))
                .map_err(|e| e.to_string())
        };
        metrics().init_pipeline(pipeline);
        Ok(Self {
            pipeline: pipeline.to_owned(),
            engine: SpanMetrics::new(config),
            deltas: queue("deltas")?,
            state: queue("state")?,
            target: Destination::queue_name(&config.metrics_pipeline, Signal::Metrics),
            labels: PipelineLabel {
                pipeline: pipeline.to_owned(),
            },
            overflow: SeriesKey::overflow(),
        })
    }

    /// The deltas entry of a request of spans, to be stored with it; none
    /// when no span counts (no `service.name`).
    ///
    /// # Errors
    /// A payload that does not decode.
    pub fn deltas_part(&self, payload: &Bytes) -> Result<Option<AppendPart>, String> {
        let deltas = self
            .engine
            .encoded_deltas(payload)
            .map_err(|e| format!("span metrics: not a traces request: {e}"))?;
        if deltas.spans == 0 {
            return Ok(None);
        }
        Ok(Some(AppendPart {
            queue: Arc::clone(&self.deltas),
            records: u32::try_from(deltas.spans).unwrap_or(u32::MAX),
            payload: Bytes::from(deltas.bytes),
        }))
    }

    /// The flusher, until cancelled: one flush per `metrics_flush_interval`.
    pub async fn run(self: Arc<Self>, ctx: StageContext) {
        let lock = flush_lock(&self.deltas.name);
        let every = self.engine.flush_interval();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let _flushing = lock.lock().await;
            match self.flush(&ctx).await {
                Ok(f) => {
                    let m = metrics();
                    if f.settled {
                        m.flushes.get_or_create(&self.labels).inc();
                        m.spans.get_or_create(&self.labels).inc_by(f.spans);
                        m.overflow_spans
                            .get_or_create(&self.labels)
                            .inc_by(f.overflow_spans);
                    }
                    m.series
                        .get_or_create(&self.labels)
                        .set(i64::try_from(f.series).unwrap_or(i64::MAX));
                }
                Err(error) => {
                    metrics().flush_errors.get_or_create(&self.labels).inc();
                    tracing::error!(
                        pipeline = %self.pipeline,
                        error = %error,
                        "Could not flush span metrics; the deltas stay stored and the next flush tries again."
                    );
                }
            }
            metrics()
                .pending_delta_entries
                .get_or_create(&self.labels)
                .set(i64::try_from(self.deltas.entries()).unwrap_or(i64::MAX));
        }
    }

    /// One flush: fold, emit, settle (see the module's documentation).
    async fn flush(&self, ctx: &StageContext) -> Result<Flushed, String> {
        // Whatever an earlier flusher sent is committed before we read.
        let (reply, done) = tokio::sync::oneshot::channel();
        ctx.writer
            .send(WriteOp::Flush { reply })
            .map_err(|_| StoreError::WriterGone.to_string())?;
        // A failed delete in that group is no reason not to go on: the
        // barrier is passed either way.
        if done.await.is_err() {
            return Err(StoreError::WriterGone.to_string());
        }

        let states = ctx
            .store
            .read(&self.state, 0, u64::MAX, u64::MAX)
            .map_err(|e| e.to_string())?;
        let mut unreadable = false;
        let mut snapshot = match states.last() {
            None => Snapshot::default(),
            Some(e) => Snapshot::decode(&e.payload).unwrap_or_else(|error| {
                tracing::error!(
                    pipeline = %self.pipeline,
                    error = %error,
                    "The stored span metrics snapshot is unreadable; every series restarts."
                );
                unreadable = true;
                Snapshot::default()
            }),
        };
        let mut flushed = Flushed::default();
        let mut folded: BTreeMap<SeriesKey, StoredAggregate> = BTreeMap::new();
        let entries = self.fold_stored(&ctx.store, &mut snapshot, &mut folded, &mut flushed)?;
        let now = now_unix_nano();
        let delta_start = match (snapshot.last_flush_unix_nano, &entries) {
            (0, Some(e)) => millis_to_nanos(e.first_appended_at_ms),
            (0, None) => now,
            (last, _) => last,
        };
        let cumulative = self.engine.temporality() == Temporality::Cumulative;
        flushed.series = snapshot.series.len();

        let emitted = if cumulative {
            snapshot.series.clone()
        } else {
            folded
        };
        let target = ctx.store.queue(&self.target).map_err(|e| e.to_string())?;
        let mut parts: Vec<AppendPart> = Vec::new();
        let series: Vec<(SeriesKey, StoredAggregate)> = emitted.into_iter().collect();
        for chunk in series.chunks(MAX_SERIES_PER_REQUEST) {
            let request = self.engine.emit(chunk.iter().cloned(), now, delta_start);
            parts.push(AppendPart {
                queue: Arc::clone(&target),
                records: u32::try_from(data_points(&request)).unwrap_or(u32::MAX),
                payload: Bytes::from(request.encode_to_vec()),
            });
        }
        let mut consumed = Vec::new();
        if let Some(e) = entries {
            consumed.push((Arc::clone(&self.deltas), e.first_seq, e.last_seq));
        }
        // A new snapshot when something was folded (or dropped), when
        // leftovers are to go, or when the stored one is unreadable.
        let rewrite = !consumed.is_empty() || states.len() > 1 || unreadable;
        if rewrite {
            snapshot.last_flush_unix_nano = now;
            parts.push(AppendPart {
                queue: Arc::clone(&self.state),
                records: u32::try_from(snapshot.series.len()).unwrap_or(u32::MAX),
                payload: Bytes::from(snapshot.encode()),
            });
            if let (Some(first), Some(last)) = (states.first(), states.last()) {
                consumed.push((Arc::clone(&self.state), first.seq, last.seq));
            }
        }
        if parts.is_empty() && consumed.is_empty() {
            return Ok(flushed);
        }
        settle(&ctx.writer, parts, consumed).await?;
        flushed.settled = true;
        Ok(flushed)
    }

    /// Folds the stored delta entries, oldest first, [`READ_DELTA_BYTES`]
    /// at a time, up to [`MAX_FLUSH_DELTA_BYTES`]; an unreadable entry is
    /// dropped. Gives what was folded, if anything.
    fn fold_stored(
        &self,
        store: &Store,
        snapshot: &mut Snapshot,
        folded: &mut BTreeMap<SeriesKey, StoredAggregate>,
        flushed: &mut Flushed,
    ) -> Result<Option<FoldedEntries>, String> {
        let mut view = DeltasView::default();
        let mut done: Option<FoldedEntries> = None;
        let mut bytes = 0;
        while bytes < MAX_FLUSH_DELTA_BYTES {
            let from = done.as_ref().map_or(0, |d| d.last_seq.saturating_add(1));
            let entries = store
                .read(&self.deltas, from, READ_DELTA_BYTES, u64::MAX)
                .map_err(|e| e.to_string())?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                break;
            };
            let d = done.get_or_insert(FoldedEntries {
                first_seq: first.seq,
                first_appended_at_ms: first.appended_at_ms,
                last_seq: last.seq,
            });
            d.last_seq = last.seq;
            for e in &entries {
                bytes += e.payload.len() as u64;
                let at = millis_to_nanos(e.appended_at_ms);
                let read = view
                    .read(&e.payload)
                    .and_then(|()| self.fold(snapshot, folded, &view, at, flushed));
                if let Err(error) = read {
                    tracing::error!(
                        pipeline = %self.pipeline,
                        seq = e.seq,
                        error = %error,
                        "Dropping an unreadable span metrics deltas entry."
                    );
                }
            }
        }
        Ok(done)
    }

    /// Adds one entry's deltas to the series (and, for delta temporality,
    /// to what this flush sends); a new series once the limit is reached
    /// goes to the overflow series. Most deltas add to a series found by
    /// the key's bytes: only a new series decodes its key.
    ///
    /// # Errors
    /// A key new to the series that does not decode; the entry then adds
    /// nothing (every new key is decoded before anything is added).
    fn fold(
        &self,
        snapshot: &mut Snapshot,
        folded: &mut BTreeMap<SeriesKey, StoredAggregate>,
        entry: &DeltasView,
        at: u64,
        flushed: &mut Flushed,
    ) -> Result<(), FormatError> {
        // In key order, as the entry's keys are.
        let new_keys = entry
            .iter()
            .filter(|(key, _)| !snapshot.series.contains_key(*key))
            .map(|(key, _)| SeriesKey::decode(key))
            .collect::<Result<Vec<_>, _>>()?;
        let cumulative = self.engine.temporality() == Temporality::Cumulative;
        for (key, delta) in entry.iter() {
            flushed.spans = flushed.spans.saturating_add(delta.calls);
            // The common case, in one lookup.
            if cumulative && let Some(s) = snapshot.series.get_mut(key) {
                s.add(delta, at);
                continue;
            }
            let key = if snapshot.series.contains_key(key) {
                key
            } else if snapshot.series.len() < self.engine.cardinality_limit() {
                match new_keys.binary_search_by(|k| k.as_bytes().cmp(key)) {
                    Ok(i) => self.start(snapshot, &new_keys[i], at),
                    Err(_) => continue, // Decoded above: not reached.
                }
            } else {
                flushed.overflow_spans = flushed.overflow_spans.saturating_add(delta.calls);
                self.start(snapshot, &self.overflow, at)
            };
            // `key` is a stored series now.
            if cumulative {
                if let Some(s) = snapshot.series.get_mut(key) {
                    s.add(delta, at);
                }
            } else if let Some(s) = folded.get_mut(key) {
                s.add(delta, at);
            } else if let Some((k, _)) = snapshot.series.get_key_value(key) {
                folded.insert(k.clone(), StoredAggregate::start(at, delta));
            }
        }
        Ok(())
    }

    /// Stores series `key` with empty totals from `at` on, unless stored
    /// already; gives its bytes.
    fn start<'k>(&self, snapshot: &mut Snapshot, key: &'k SeriesKey, at: u64) -> &'k [u8] {
        if !snapshot.series.contains_key(key) {
            snapshot.series.insert(
                key.clone(),
                StoredAggregate {
                    start_time_unix_nano: at,
                    totals: Aggregate::empty(self.engine.bounds()),
                },
            );
        }
        key.as_bytes()
    }
}

/// Commits `parts` and deletes `consumed` in one transaction.
async fn settle(
    writer: &crossbeam_channel::Sender<WriteOp>,
    parts: Vec<AppendPart>,
    consumed: Vec<(Arc<Queue>, u64, u64)>,
) -> Result<(), String> {
    for p in &parts {
        // Unbounded: the limit cannot refuse what is already counted.
        p.queue.try_reserve(p.payload.len() as u64, u64::MAX);
    }
    let (reply, done) = tokio::sync::oneshot::channel();
    if let Err(crossbeam_channel::SendError(op)) = writer.send(WriteOp::Settle {
        parts,
        consumed,
        reply,
    }) {
        if let WriteOp::Settle { parts, .. } = op {
            crate::store::release_parts(&parts);
        }
        return Err(StoreError::WriterGone.to_string());
    }
    match done.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(StoreError::WriterGone.to_string()),
    }
}

/// The data points of a metrics request (its records).
fn data_points(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

/// The lock that keeps two flushers of one pipeline apart, by deltas queue.
fn flush_lock(name: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(name.to_owned()).or_default())
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn millis_to_nanos(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;

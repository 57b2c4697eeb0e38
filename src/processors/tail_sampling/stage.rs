//! Durable tail sampling in the data path.
//!
//! Why it is built this way: the Collector keeps pending traces in memory
//! and loses the whole decision window on a restart; here nothing of a
//! trace lives only in memory.
//!
//! - At ingest, a traces pipeline's share of a request is stored as it is,
//!   one entry, in the pipeline's **pending queue**, in the transaction that
//!   acknowledges the request. The client's success still means "on disk",
//!   and a request costs one entry however many traces it carries.
//! - The **decider** (one task per pipeline, supervised with its delivery
//!   loop) reads new pending entries and indexes them: trace ID → the
//!   entries holding its spans, entry → how many of its traces are still
//!   undecided (sequence numbers and counts, never spans). It decides a
//!   trace `decision_wait` after its first span was stored (the entry's
//!   append time, so the wait survives restarts), or earlier when
//!   `num_traces` or `max_pending_bytes` is reached (oldest first, counted),
//!   reading and decoding the entries that hold the trace. It reads 4 MiB of
//!   new entries at a time and decides what is due before reading more, so
//!   a backlog (the decider fell behind, or a restart) waits on disk and the
//!   index stays within the limits plus one read.
//! - An entry is **settled** once every trace in it is decided: its sampled
//!   traces' spans (split at the wire level) are appended to the pipeline's
//!   export queue and the entry is deleted. One transaction
//!   ([`WriteOp::Settle`]) per batch appends the new decisions to the
//!   **decisions queue**, the sampled spans to the export queue and deletes
//!   the settled entries. kill -9 at any point leaves each entry either
//!   pending (its traces decided again from the remembered decisions, or
//!   anew, the same way for every policy but `rate_limiting`, whose counts
//!   restart) or settled: never both, never neither.
//! - Spans that arrive after their trace was decided are stored pending like
//!   any others and follow the decision. The decisions queue is read back at
//!   start, so decisions survive a restart (bounded by `decision_cache`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::super::StageContext;
use super::Sampler;
use super::trace::TraceFacts;
use crate::config::TailSamplingConfig;
use crate::metrics::tail_sampling::{Decided, Pipeline, WithReason};
use crate::proto::span_facts::for_each_span;
use crate::proto::split::{key_hash, split};
use crate::store::{AppendPart, Queue, Store, WriteOp};

/// A trace ID (a shorter or empty one is zero-padded: the scan refuses
/// wrong lengths, so only an absent ID is empty).
pub type TraceId = [u8; 16];

/// Bytes of one persisted decision: the trace ID and 1 (sampled) or 0.
const DECISION_LEN: usize = 17;

/// Most traces decided in one transaction: bounds a commit's size and the
/// time a tick holds the decider.
const MAX_TRACES_PER_SETTLE: usize = 8_192;

/// Most pending bytes indexed (or read for a settle) at a time: bounds the
/// decider's transient memory.
const READ_BYTES_PER_TICK: u64 = 4 * 1024 * 1024;

/// A pipeline's tail sampling: its queues and configuration.
#[derive(Debug)]
pub struct Stage {
    /// Where pending spans are stored, one entry per request share.
    pub pending: Arc<Queue>,
    /// Decisions, 17 bytes each, appended with every settle.
    decisions: Arc<Queue>,
    config: TailSamplingConfig,
    pipeline: String,
}

impl Stage {
    /// Builds the stage of `pipeline`, creating its queues.
    ///
    /// # Errors
    /// The policies do not compile, or a queue cannot be created.
    pub fn new(
        config: &TailSamplingConfig,
        store: &Arc<Store>,
        pipeline: &str,
    ) -> Result<Self, String> {
        Sampler::new(config)?;
        let queue = |part: &str| {
            store
                .queue(&format!("tail/{pipeline}/{part}"))
                .map_err(|e| e.to_string())
        };
        Ok(Self {
            pending: queue("pending")?,
            decisions: queue("decisions")?,
            config: config.clone(),
            pipeline: pipeline.to_owned(),
        })
    }

    /// The decider, until cancelled. A failed read or settle is logged,
    /// counted and retried on the next tick.
    pub async fn run(self: Arc<Self>, ctx: StageContext) {
        let sampler = match Sampler::new(&self.config) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline, error = %e, "Tail sampling policies do not build; nothing is decided");
                return std::future::pending().await;
            }
        };
        ctx.metrics.tail_sampling.init(&self.pipeline);
        let mut decider = Decider::new(self, ctx, sampler);
        if let Err(e) = decider.load_decisions() {
            tracing::error!(pipeline = %decider.stage.pipeline, error = %e, "Cannot read the remembered tail sampling decisions; starting without them");
        }
        let tick = (decider.stage.config.decision_wait / 10)
            .clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            if let Err(e) = decider.tick().await {
                decider.count_error();
                tracing::warn!(pipeline = %decider.stage.pipeline, error = %e, "Tail sampling tick failed; retrying");
            }
            tokio::time::sleep(tick).await;
        }
    }
}

fn trace_id(bytes: &[u8]) -> TraceId {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

/// The distinct traces of a pending entry, in order of first appearance,
/// with the facts of their spans in it (`keys`: the attributes the policies
/// read, as [`Sampler::attribute_keys`] and shared). An entry that does not
/// frame cannot be sampled: it is one trace under the zero ID, without
/// spans, decided like any other. An entry without spans has no trace (it
/// settles at once).
fn entry_traces(
    payload: &[u8],
    keys: &[String],
    shared: &[Arc<str>],
) -> Vec<(TraceId, TraceFacts)> {
    let mut out: Vec<(TraceId, TraceFacts)> = Vec::new();
    let mut at: HashMap<TraceId, usize> = HashMap::new();
    let walked = for_each_span(payload, keys, |span| {
        let id = trace_id(span.trace_id);
        let i = *at.entry(id).or_insert_with(|| {
            out.push((id, TraceFacts::default()));
            out.len() - 1
        });
        if let Some((_, facts)) = out.get_mut(i) {
            facts.add(span, shared);
        }
    });
    if walked.is_err() {
        return vec![([0; 16], TraceFacts::default())];
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One pending entry, as the decider indexes it.
#[derive(Debug, Clone)]
struct PendingEntry {
    bytes: u64,
    spans: u32,
    /// The distinct traces in it.
    traces: Vec<TraceId>,
    /// Of those, the ones not decided yet: the entry settles at 0.
    undecided: u32,
}

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting since its first span was stored (Unix millis).
    Pending { first_ms: u64 },
    /// Decided (sampled or not); kept until its last entry settles.
    Decided(bool),
}

/// What the decider knows of a trace: where its spans are and, until it
/// is decided, what the policies read of them.
#[derive(Debug)]
struct TraceEntries {
    state: State,
    /// The pending entries holding its spans.
    entries: Vec<u64>,
    /// Until it is decided (boxed, so that the many decided traces waiting
    /// for their entries to settle cost a small map slot each).
    facts: Option<Box<TraceFacts>>,
}

/// Remembered decisions, bounded per kind, oldest forgotten first.
#[derive(Debug, Default)]
struct DecisionCache {
    map: HashMap<TraceId, bool>,
    sampled: VecDeque<TraceId>,
    dropped: VecDeque<TraceId>,
    sampled_cap: usize,
    dropped_cap: usize,
}

impl DecisionCache {
    fn insert(&mut self, id: TraceId, sampled: bool) {
        if self.map.insert(id, sampled).is_some() {
            return;
        }
        let (order, cap) = if sampled {
            (&mut self.sampled, self.sampled_cap)
        } else {
            (&mut self.dropped, self.dropped_cap)
        };
        order.push_back(id);
        while order.len() > cap {
            if let Some(old) = order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, id: &TraceId) -> Option<bool> {
        self.map.get(id).copied()
    }
}

/// Why a trace is decided now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// `decision_wait` has passed.
    Due,
    /// A limit was reached: the label of `traces_decided_early`.
    Early(&'static str),
}

/// A trace decided in a settle, for the metrics once it is committed.
struct Outcome {
    id: TraceId,
    why: Why,
    sampled: bool,
    policy: Option<Arc<str>>,
    spans: u64,
    first_ms: u64,
}

/// What one settle commits, computed before it is sent.
#[derive(Default)]
struct Plan {
    outcomes: Vec<Outcome>,
    /// Entries settled.
    settled: Vec<u64>,
    /// Sampled spans for the export queue, and how many.
    export: Vec<u8>,
    export_spans: u32,
}

struct Decider {
    stage: Arc<Stage>,
    ctx: StageContext,
    sampler: Sampler,
    /// The next pending sequence number to read.
    read_from: u64,
    traces: HashMap<TraceId, TraceEntries>,
    /// Undecided traces by the time of their first span.
    by_age: BTreeSet<(u64, TraceId)>,
    entries: BTreeMap<u64, PendingEntry>,
    /// Entries whose traces are all decided, to settle at the next tick.
    ready: BTreeSet<u64>,
    pending_bytes: u64,
    cache: DecisionCache,
    /// The decisions queue's entries: `(seq, decisions in it)`.
    decision_entries: VecDeque<(u64, usize)>,
    /// The attribute keys the policies read, as strings and shared.
    keys: (Vec<String>, Vec<Arc<str>>),
    label: Pipeline,
    /// The most traces the index has held at once: what its memory is
    /// proportional to.
    indexed_high_water: usize,
}

impl Decider {
    fn new(stage: Arc<Stage>, ctx: StageContext, sampler: Sampler) -> Self {
        let cache = DecisionCache {
            sampled_cap: usize::try_from(stage.config.decision_cache.sampled_cache_size)
                .unwrap_or(usize::MAX),
            dropped_cap: usize::try_from(stage.config.decision_cache.non_sampled_cache_size)
                .unwrap_or(usize::MAX),
            ..DecisionCache::default()
        };
        let label = Pipeline {
            pipeline: stage.pipeline.clone(),
        };
        let keys = sampler.attribute_keys().to_vec();
        let shared = keys.iter().map(|k| Arc::from(k.as_str())).collect();
        Self {
            stage,
            ctx,
            sampler,
            read_from: 0,
            traces: HashMap::new(),
            by_age: BTreeSet::new(),
            entries: BTreeMap::new(),
            ready: BTreeSet::new(),
            pending_bytes: 0,
            cache,
            decision_entries: VecDeque::new(),
            keys: (keys, shared),
            label,
            indexed_high_water: 0,
        }
    }

    fn count_error(&self) {
        self.ctx
            .metrics
            .tail_sampling
            .settle_errors
            .get_or_create(&self.label)
            .inc();
    }

    /// Reads the remembered decisions back (oldest first).
    fn load_decisions(&mut self) -> Result<(), crate::store::StoreError> {
        let entries = self
            .ctx
            .store
            .read(&self.stage.decisions, 0, u64::MAX, u64::MAX)?;
        for e in entries {
            let chunks = e.payload.chunks_exact(DECISION_LEN);
            self.decision_entries.push_back((e.seq, chunks.len()));
            for d in chunks {
                let (id, flag) = d.split_at(16);
                self.cache.insert(trace_id(id), flag.first() == Some(&1));
            }
        }
        tracing::info!(pipeline = %self.stage.pipeline, decisions = self.cache.map.len(), "Tail sampling decisions read back");
        Ok(())
    }

    /// Indexes one pending entry: `traces` from [`entry_traces`].
    fn index(
        &mut self,
        seq: u64,
        appended_at_ms: u64,
        (spans, bytes): (u32, u64),
        traces: Vec<(TraceId, TraceFacts)>,
    ) {
        let mut undecided = 0u32;
        let mut late = [0u64; 2];
        let mut ids = Vec::with_capacity(traces.len());
        for (id, facts) in traces {
            let cache = &self.cache;
            let t = self.traces.entry(id).or_insert_with(|| TraceEntries {
                state: cache.get(&id).map_or(
                    State::Pending {
                        first_ms: appended_at_ms,
                    },
                    State::Decided,
                ),
                entries: Vec::new(),
                facts: None,
            });
            match t.state {
                State::Pending { first_ms } => {
                    if t.entries.is_empty() {
                        self.by_age.insert((first_ms, id));
                    }
                    t.facts.get_or_insert_default().merge(facts);
                    undecided += 1;
                }
                State::Decided(sampled) => late[usize::from(sampled)] += facts.span_count(),
            }
            t.entries.push(seq);
            ids.push(id);
        }
        self.count_late(late);
        self.indexed_high_water = self.indexed_high_water.max(self.traces.len());
        self.pending_bytes += bytes;
        self.entries.insert(
            seq,
            PendingEntry {
                bytes,
                spans,
                traces: ids,
                undecided,
            },
        );
        if undecided == 0 {
            self.ready.insert(seq);
        }
    }

    /// Late spans, `[dropped, sampled]`: stored after their trace was
    /// decided (after a restart, also those of a decided trace whose entry
    /// had not settled yet).
    fn count_late(&self, late: [u64; 2]) {
        for (n, decision) in late.iter().zip(["dropped", "sampled"]) {
            if *n > 0 {
                self.ctx
                    .metrics
                    .tail_sampling
                    .late_spans
                    .get_or_create(&WithReason {
                        pipeline: self.label.pipeline.clone(),
                        reason: decision,
                    })
                    .inc_by(*n);
            }
        }
    }

    /// Indexes the next pending entries stored since the last read, at most
    /// [`READ_BYTES_PER_TICK`] of them; returns whether it read any.
    fn read_next(&mut self) -> Result<bool, crate::store::StoreError> {
        let mut read = Vec::new();
        let (keys, shared) = &self.keys;
        self.ctx.store.scan_entries(
            &self.stage.pending,
            self.read_from,
            READ_BYTES_PER_TICK,
            |seq, appended_at_ms, spans, payload| {
                let size = (spans, payload.len() as u64);
                read.push((
                    seq,
                    appended_at_ms,
                    size,
                    entry_traces(payload, keys, shared),
                ));
            },
        )?;
        let Some(&(last, ..)) = read.last() else {
            return Ok(false);
        };
        for (seq, at, size, traces) in read {
            self.index(seq, at, size, traces);
        }
        self.read_from = last + 1;
        Ok(true)
    }

    /// A trace's share of the pending bytes: each entry's bytes split
    /// evenly among its traces.
    fn bytes_of(&self, t: &TraceEntries) -> u64 {
        t.entries
            .iter()
            .filter_map(|seq| self.entries.get(seq))
            .map(|e| e.bytes / (e.traces.len() as u64).max(1))
            .sum()
    }

    /// The traces to decide now, oldest first, at most
    /// [`MAX_TRACES_PER_SETTLE`].
    fn due(&self, now_ms: u64) -> Vec<(TraceId, Why)> {
        let wait = u64::try_from(self.stage.config.decision_wait.as_millis()).unwrap_or(u64::MAX);
        let max_traces = usize::try_from(self.stage.config.num_traces).unwrap_or(usize::MAX);
        let max_bytes = self.stage.config.max_pending_bytes.0;
        let mut out = Vec::new();
        let (mut traces, mut bytes) = (self.by_age.len(), self.pending_bytes);
        // The entries this settle reads, and their bytes.
        let mut reading = HashSet::new();
        let mut read = 0u64;
        for (first_ms, id) in &self.by_age {
            if out.len() >= MAX_TRACES_PER_SETTLE || read > READ_BYTES_PER_TICK {
                break;
            }
            let why = if first_ms.saturating_add(wait) <= now_ms {
                Why::Due
            } else if traces > max_traces {
                Why::Early("num_traces")
            } else if bytes > max_bytes {
                Why::Early("max_pending_bytes")
            } else {
                // Younger traces are not due either.
                break;
            };
            traces -= 1;
            if let Some(t) = self.traces.get(id) {
                bytes = bytes.saturating_sub(self.bytes_of(t));
                for seq in &t.entries {
                    if reading.insert(*seq) {
                        read += self.entries.get(seq).map_or(0, |e| e.bytes);
                    }
                }
            }
            out.push((*id, why));
        }
        out
    }

    async fn tick(&mut self) -> Result<(), String> {
        // Read one chunk, then settle until nothing is due, before reading
        // the next: the index stays within the limits plus one chunk
        // however far behind the decider is (a backlog waits on disk, not
        // in memory), and the limits hold however fast spans arrive (ingest
        // waits on the same writer).
        loop {
            let read = self.read_next().map_err(|e| e.to_string())?;
            loop {
                let now = now_ms();
                let due = self.due(now);
                if due.is_empty() && self.ready.is_empty() {
                    break;
                }
                self.settle(&due, now).await?;
            }
            let m = &self.ctx.metrics.tail_sampling;
            m.traces_pending
                .get_or_create(&self.label)
                .set(i64::try_from(self.by_age.len()).unwrap_or(i64::MAX));
            m.pending_bytes
                .get_or_create(&self.label)
                .set(i64::try_from(self.pending_bytes).unwrap_or(i64::MAX));
            m.traces_indexed
                .get_or_create(&self.label)
                .set(i64::try_from(self.traces.len()).unwrap_or(i64::MAX));
            if !read {
                return Ok(());
            }
        }
    }

    /// Decides `due`, works out which entries that settles, and commits it
    /// all in one transaction; the in-memory index follows the commit.
    async fn settle(&mut self, due: &[(TraceId, Why)], now: u64) -> Result<(), String> {
        let mut plan = self.plan(due)?;
        let mut parts = Vec::new();
        let export = &self.ctx.export;
        if !plan.export.is_empty() {
            let len = plan.export.len() as u64;
            if !export.queue.try_reserve(len, export.max_bytes) {
                // The export queue is full (its backend is down): keep the
                // traces pending; ingest backpressure follows when the
                // pending queue fills in turn.
                return Err(format!(
                    "the export queue of {} is full; sampled traces stay pending",
                    export.name
                ));
            }
            parts.push(AppendPart {
                queue: Arc::clone(&export.queue),
                records: plan.export_spans,
                payload: Bytes::from(std::mem::take(&mut plan.export)),
            });
        }
        let mut new_decisions = Vec::with_capacity(plan.outcomes.len() * DECISION_LEN);
        for o in &plan.outcomes {
            new_decisions.extend_from_slice(&o.id);
            new_decisions.push(u8::from(o.sampled));
        }
        let decided_now = plan.outcomes.len();
        if decided_now > 0 {
            self.stage
                .decisions
                .try_reserve(new_decisions.len() as u64, u64::MAX);
            parts.push(AppendPart {
                queue: Arc::clone(&self.stage.decisions),
                records: u32::try_from(decided_now).unwrap_or(u32::MAX),
                payload: Bytes::from(new_decisions),
            });
        }
        let pending = &self.stage.pending;
        let mut consumed: Vec<(Arc<Queue>, u64, u64)> = Vec::new();
        for seq in &plan.settled {
            match consumed.last_mut() {
                Some((_, _, last)) if *last + 1 == *seq => *last = *seq,
                _ => consumed.push((Arc::clone(pending), *seq, *seq)),
            }
        }
        // Forget the oldest persisted decisions beyond what the cache keeps.
        let cap = self
            .cache
            .sampled_cap
            .saturating_add(self.cache.dropped_cap);
        let mut kept: usize =
            self.decision_entries.iter().map(|(_, n)| n).sum::<usize>() + decided_now;
        let mut trimmed = 0;
        for (seq, n) in &self.decision_entries {
            if kept <= cap {
                break;
            }
            consumed.push((Arc::clone(&self.stage.decisions), *seq, *seq));
            kept -= n;
            trimmed += 1;
        }
        let next_decision_seq = self.stage.decisions.next_seq();
        let (reply, committed) = tokio::sync::oneshot::channel();
        self.ctx
            .writer
            .send(WriteOp::Settle {
                parts,
                consumed,
                reply,
            })
            .map_err(|_| "the storage writer is gone".to_owned())?;
        match committed.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("settling {} traces: {e}", due.len())),
            Err(_) => return Err("the storage writer dropped the settle".to_owned()),
        }
        // Committed: now the in-memory view follows.
        self.decision_entries.drain(..trimmed);
        if decided_now > 0 {
            self.decision_entries
                .push_back((next_decision_seq, decided_now));
        }
        self.apply(&plan, now);
        Ok(())
    }

    /// What settling `due` commits: the decisions, the entries that every
    /// trace of is then decided (with the ready ones), and their sampled
    /// spans. Changes nothing.
    fn plan(&mut self, due: &[(TraceId, Why)]) -> Result<Plan, String> {
        let pending = Arc::clone(&self.stage.pending);
        // Every entry the due traces are in, and how many of its undecided
        // traces this settle decides.
        let mut deciding: BTreeMap<u64, u32> = BTreeMap::new();
        for (id, _) in due {
            for &seq in self.traces.get(id).map_or(&[][..], |t| &t.entries) {
                *deciding.entry(seq).or_default() += 1;
            }
        }
        let settling: BTreeSet<u64> = deciding
            .iter()
            .filter(|(seq, n)| self.entries.get(seq).is_some_and(|e| e.undecided <= **n))
            .map(|(seq, _)| *seq)
            .chain(self.ready.iter().copied())
            .collect();
        // An entry gone already (a settle whose reply was lost) has nothing
        // left to move.
        let wanted: Vec<u64> = settling.iter().copied().collect();
        let bodies: HashMap<u64, Bytes> = self
            .ctx
            .store
            .read_seqs(&pending, &wanted)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| (e.seq, e.payload))
            .collect();

        // Decide each due trace from the facts gathered as it was stored.
        let mut plan = Plan::default();
        let decided_at = Instant::now();
        let mut decisions: HashMap<TraceId, bool> = HashMap::with_capacity(due.len());
        for (id, why) in due {
            let Some(t) = self.traces.get(id) else {
                continue;
            };
            let State::Pending { first_ms } = t.state else {
                continue;
            };
            let facts = t.facts.as_deref().map_or_else(Cow::default, Cow::Borrowed);
            let d = self.sampler.decide_facts(&facts, decided_at);
            decisions.insert(*id, d.sampled);
            plan.outcomes.push(Outcome {
                id: *id,
                why: *why,
                sampled: d.sampled,
                policy: d.policy,
                spans: facts.span_count(),
                first_ms,
            });
        }

        // Settle: split each settled entry into what is sampled and not.
        for seq in settling {
            let Some(entry) = self.entries.get(&seq) else {
                continue;
            };
            plan.settled.push(seq);
            // An entry gone already (a settle whose reply was lost) has
            // nothing left to move.
            let Some(body) = bodies.get(&seq) else {
                continue;
            };
            let sampled_of = |id: &TraceId| {
                decisions.get(id).copied().unwrap_or_else(|| {
                    matches!(
                        self.traces.get(id).map(|t| t.state),
                        Some(State::Decided(true))
                    )
                })
            };
            let kept = entry.traces.iter().filter(|id| sampled_of(id)).count();
            if kept == entry.traces.len() {
                plan.export.extend_from_slice(body);
                plan.export_spans = plan.export_spans.saturating_add(entry.spans);
            } else if kept > 0 {
                let mut sampled_by_hash: HashMap<u64, bool> = HashMap::new();
                for id in &entry.traces {
                    let sampled = sampled_of(id);
                    sampled_by_hash.insert(key_hash(id), sampled);
                    if *id == [0; 16] {
                        // A span without a trace ID is hashed as empty.
                        sampled_by_hash.insert(key_hash(&[]), sampled);
                    }
                }
                Self::split_sampled(body, &sampled_by_hash, &mut plan)?;
            }
        }
        Ok(plan)
    }

    /// Appends the sampled spans of a partly sampled entry to the plan's
    /// export body, at the wire level.
    fn split_sampled(
        body: &[u8],
        sampled_by_hash: &HashMap<u64, bool>,
        plan: &mut Plan,
    ) -> Result<(), String> {
        // A trace ID is hashed as its 16 bytes; an absent one is the zero ID.
        let owner = |hash: u64| usize::from(!sampled_by_hash.get(&hash).copied().unwrap_or(false));
        let parts = split(
            crate::signal::Signal::Traces,
            crate::config::RoutingKey::TraceId,
            body,
            2,
            &owner,
        )
        .map_err(|e| format!("tail_sampling: splitting a settled entry: {e}"))?;
        if let Some(kept) = parts.first() {
            plan.export.extend_from_slice(&kept.body);
            plan.export_spans = plan.export_spans.saturating_add(kept.records);
        }
        Ok(())
    }

    /// The index after `plan` was committed, and the metrics.
    fn apply(&mut self, plan: &Plan, now: u64) {
        let m = &self.ctx.metrics.tail_sampling;
        for o in &plan.outcomes {
            if let Some(t) = self.traces.get_mut(&o.id) {
                t.state = State::Decided(o.sampled);
                t.facts = None;
                for seq in &t.entries {
                    if let Some(e) = self.entries.get_mut(seq) {
                        e.undecided = e.undecided.saturating_sub(1);
                        if e.undecided == 0 {
                            self.ready.insert(*seq);
                        }
                    }
                }
            }
            self.by_age.remove(&(o.first_ms, o.id));
            self.cache.insert(o.id, o.sampled);
            let decision = if o.sampled { "sampled" } else { "dropped" };
            let pipeline = self.label.pipeline.clone();
            if let Why::Early(reason) = o.why {
                m.traces_decided_early
                    .get_or_create(&WithReason {
                        pipeline: pipeline.clone(),
                        reason,
                    })
                    .inc();
            }
            m.traces_decided
                .get_or_create(&Decided {
                    pipeline: pipeline.clone(),
                    policy: o
                        .policy
                        .as_deref()
                        .map_or_else(|| "none".to_owned(), ToOwned::to_owned),
                    decision,
                })
                .inc();
            m.spans_decided
                .get_or_create(&WithReason {
                    pipeline,
                    reason: decision,
                })
                .inc_by(o.spans);
            #[allow(clippy::cast_precision_loss)]
            m.decision_latency_seconds
                .get_or_create(&self.label)
                .observe(now.saturating_sub(o.first_ms) as f64 / 1000.0);
        }
        for seq in &plan.settled {
            self.ready.remove(seq);
            let Some(e) = self.entries.remove(seq) else {
                continue;
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(e.bytes);
            for id in &e.traces {
                let gone = self.traces.get_mut(id).is_some_and(|t| {
                    t.entries.retain(|s| s != seq);
                    t.entries.is_empty() && matches!(t.state, State::Decided(_))
                });
                if gone {
                    self.traces.remove(id);
                }
            }
        }
        // A burst (a backend outage, a flood of new traces) grows the map;
        // give the memory back once it has settled.
        if self.traces.capacity() > 4 * self.traces.len() + 4096 {
            self.traces.shrink_to(2 * self.traces.len());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("s{id}"),
            ..Span::default()
        }
    }

    fn scope(name: &str, spans: Vec<Span>) -> ScopeSpans {
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.to_owned(),
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: String::new(),
        }
    }

    fn resource(svc: &str, scope_spans: Vec<ScopeSpans>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "service.name".to_owned(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                svc.to_owned(),
                            ),
                        ),
                    }),
                    ..Default::default()
                }],
                ..Resource::default()
            }),
            scope_spans,
            schema_url: "s".to_owned(),
        }
    }

    /// Traces 1 (three spans) and 2 (two), over two resources and scopes.
    fn mixed() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource(
                    "a",
                    vec![
                        scope("x", vec![span(1, 1), span(2, 2), span(1, 3)]),
                        scope("y", vec![span(2, 4)]),
                    ],
                ),
                resource("b", vec![scope("z", vec![span(1, 5)])]),
            ],
        }
    }

    #[test]
    fn an_entry_is_indexed_by_its_distinct_traces_in_order_with_their_spans() {
        let body = mixed().encode_to_vec();
        let counts = |payload: &[u8]| -> Vec<(TraceId, u64)> {
            entry_traces(payload, &[], &[])
                .into_iter()
                .map(|(id, facts)| (id, facts.span_count()))
                .collect()
        };
        assert_eq!(counts(&body), vec![([1; 16], 3), ([2; 16], 2)]);
        // What does not frame is one trace under the zero ID.
        assert_eq!(counts(&[0x0a, 0xff]), vec![([0; 16], 0)]);
        // A request without spans (a probe) has no trace.
        assert_eq!(counts(&[]), vec![]);
    }

    #[test]
    fn a_partly_sampled_entry_keeps_the_sampled_traces_spans_with_their_resources_and_scopes() {
        let body = mixed().encode_to_vec();
        let sampled: HashMap<u64, bool> =
            [(key_hash(&[1; 16]), true), (key_hash(&[2; 16]), false)].into();
        let mut plan = Plan::default();
        Decider::split_sampled(&body, &sampled, &mut plan).unwrap();
        assert_eq!(plan.export_spans, 3);
        let kept = ExportTraceServiceRequest::decode(plan.export.as_slice()).unwrap();
        let want = ExportTraceServiceRequest {
            resource_spans: vec![
                resource("a", vec![scope("x", vec![span(1, 1), span(1, 3)])]),
                resource("b", vec![scope("z", vec![span(1, 5)])]),
            ],
        };
        assert_eq!(kept, want);
    }

    #[test]
    fn the_decision_cache_forgets_the_oldest_of_each_kind() {
        let mut c = DecisionCache {
            sampled_cap: 2,
            dropped_cap: 1,
            ..DecisionCache::default()
        };
        for i in 0..3u8 {
            c.insert([i; 16], true);
        }
        c.insert([9; 16], false);
        c.insert([8; 16], false);
        assert_eq!(c.get(&[0; 16]), None);
        assert_eq!(c.get(&[1; 16]), Some(true));
        assert_eq!(c.get(&[2; 16]), Some(true));
        assert_eq!(c.get(&[9; 16]), None);
        assert_eq!(c.get(&[8; 16]), Some(false));
    }

    /// A backlog of 15,000 traces on disk (600 requests of 25 traces, each
    /// span padded to about 1 KiB), `num_traces: 100` and an hour to wait:
    /// one tick decides all but the 100 youngest early, oldest first, and
    /// the index never holds more than the limit plus one read's worth,
    /// whatever waits on disk behind it.
    #[tokio::test]
    async fn a_backlog_is_indexed_a_read_at_a_time_within_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::scratch_store(dir.path());
        let ctx = crate::processors::test_context(&store, "export");
        let config: TailSamplingConfig = serde_saphyr::from_str(
            "decision_wait: 1h\nnum_traces: 100\npolicies: [{ name: all, type: always_sample }]\n",
        )
        .unwrap();
        let stage = Arc::new(Stage::new(&config, &store, "p").unwrap());
        let (requests, per_request) = (600u32, 25u32);
        for r in 0..requests {
            let spans = (0..per_request)
                .map(|t| {
                    let trace = r * per_request + t;
                    let mut id = [0u8; 16];
                    id[12..].copy_from_slice(&trace.to_be_bytes());
                    Span {
                        trace_id: id.to_vec(),
                        span_id: vec![1; 8],
                        name: "x".repeat(1000),
                        ..Span::default()
                    }
                })
                .collect();
            let body = ExportTraceServiceRequest {
                resource_spans: vec![resource("a", vec![scope("s", spans)])],
            }
            .encode_to_vec();
            let part = AppendPart {
                queue: Arc::clone(&stage.pending),
                records: per_request,
                payload: Bytes::from(body),
            };
            crate::processors::test_append(&ctx, part).await;
        }
        let export = Arc::clone(&ctx.export.queue);
        let sampler = Sampler::new(&config).unwrap();
        let mut decider = Decider::new(Arc::clone(&stage), ctx, sampler);
        decider.tick().await.unwrap();

        let total = (requests * per_request) as usize;
        assert_eq!(decider.by_age.len(), 100, "the 100 youngest wait");
        assert_eq!(export.records(), (total - 100) as u64, "the rest went out");
        // The youngest are the last 100 traces stored.
        let youngest: Vec<u32> = decider
            .by_age
            .iter()
            .map(|(_, id)| u32::from_be_bytes(id[12..].try_into().unwrap()))
            .collect();
        assert_eq!(
            youngest,
            ((total as u32 - 100)..total as u32).collect::<Vec<_>>()
        );
        // One read is READ_BYTES_PER_TICK: about 4,000 of these traces.
        assert!(
            decider.indexed_high_water < 100 + 5_000,
            "the index held {} of {total} traces at once",
            decider.indexed_high_water
        );
    }
}

//! Durable tail sampling in the data path.
//!
//! Why it is built this way: the Collector keeps pending traces in memory
//! and loses the whole decision window on a restart; here nothing of a
//! trace lives only in memory.
//!
//! - At ingest, a traces pipeline's share of a request is split by trace
//!   ([`split_by_trace`]) and stored in the pipeline's **pending queue**, one
//!   entry per trace and request, in the transaction that acknowledges the
//!   request. The client's success still means "on disk".
//! - The **decider** (one task per pipeline, supervised with its delivery
//!   loop) reads new pending entries, indexes them by trace ID (the index
//!   holds sequence numbers and sizes, never spans), and decides a trace
//!   `decision_wait` after its first span was stored (the entry's append
//!   time, so the wait survives restarts), or earlier when `num_traces` or
//!   `max_pending_bytes` is reached (oldest first, counted).
//! - A decision is **one transaction** ([`WriteOp::Settle`]): a sampled
//!   trace's entries are appended to the pipeline's export queue, every
//!   entry of the decided traces is deleted from the pending queue, and the
//!   decisions are appended to the **decisions queue**. kill -9 at any point
//!   leaves either the trace pending (decided again, the same way for every
//!   policy but `rate_limiting`, whose counts restart) or moved: never both,
//!   never neither.
//! - Spans that arrive after their trace was decided are stored pending like
//!   any others and follow the remembered decision at the next tick. The
//!   decisions queue is read back at start, so decisions survive a restart
//!   (bounded by `decision_cache`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

use super::super::StageContext;
use super::Sampler;
use crate::config::TailSamplingConfig;
use crate::metrics::tail_sampling::{Decided, Pipeline, WithReason};
use crate::store::{AppendPart, Queue, Store, WriteOp};

/// A trace ID (a shorter or empty one is zero-padded: the scan refuses
/// wrong lengths, so only an absent ID is empty).
pub type TraceId = [u8; 16];

/// Bytes of one persisted decision: the trace ID and 1 (sampled) or 0.
const DECISION_LEN: usize = 17;

/// Most traces settled in one transaction: bounds a commit's size and the
/// time a tick holds the decider.
const MAX_TRACES_PER_SETTLE: usize = 2_000;

/// Most pending bytes read per tick when catching up.
const READ_BYTES_PER_TICK: u64 = 16 * 1024 * 1024;

/// A pipeline's tail sampling: its queues and configuration.
#[derive(Debug)]
pub struct Stage {
    /// Where pending spans are stored, one entry per trace and request.
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

    /// One entry per trace of a destination's share of a request (of
    /// `spans` spans): [`split_by_trace`].
    ///
    /// # Errors
    /// A payload that does not frame (not expected after the scan).
    pub fn split(
        &self,
        queue: &Arc<Queue>,
        payload: &Bytes,
        spans: u32,
    ) -> Result<Vec<AppendPart>, String> {
        let parts = split_by_trace(payload, spans).map_err(|e| format!("tail_sampling: {e}"))?;
        Ok(parts
            .into_iter()
            .map(|p| AppendPart {
                queue: Arc::clone(queue),
                records: p.records,
                payload: Bytes::from(p.body),
            })
            .collect())
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

/// Splits a traces request of `spans` spans into one request per trace ID,
/// in order of first appearance, at the wire level: every span keeps its
/// resource and scope; subtrees whose spans all belong to one trace are
/// copied as they are.
///
/// # Errors
/// A body whose framing is broken.
pub fn split_by_trace(
    body: &[u8],
    spans: u32,
) -> Result<Vec<crate::proto::split::Part>, crate::proto::ScanError> {
    // Each new trace ID hash gets the next part; there are at most as many
    // traces as spans.
    let owners = std::cell::RefCell::new(HashMap::<u64, usize>::new());
    let owner = |hash: u64| {
        let mut owners = owners.borrow_mut();
        let next = owners.len();
        *owners.entry(hash).or_insert(next)
    };
    let n = usize::try_from(spans).unwrap_or(usize::MAX).max(1);
    let parts = crate::proto::split::split(
        crate::signal::Signal::Traces,
        crate::config::RoutingKey::TraceId,
        body,
        n,
        &owner,
    )?;
    Ok(parts.into_iter().filter(|p| p.records > 0).collect())
}

fn trace_id(bytes: &[u8]) -> TraceId {
    let mut id = [0u8; 16];
    let n = bytes.len().min(16);
    id[..n].copy_from_slice(&bytes[..n]);
    id
}

/// The trace of a pending entry: that of its first span.
fn entry_trace(payload: &[u8]) -> Option<TraceId> {
    crate::proto::split::first_trace_id(payload).map(trace_id)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One pending entry of a trace.
#[derive(Debug, Clone, Copy)]
struct PendingEntry {
    seq: u64,
    spans: u32,
    bytes: u64,
}

/// What the decider knows of a pending trace: where its spans are.
#[derive(Debug, Default)]
struct PendingTrace {
    first_ms: u64,
    entries: Vec<PendingEntry>,
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

/// Why a trace is settled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// `decision_wait` has passed.
    Due,
    /// A limit was reached: the label of `traces_decided_early`.
    Early(&'static str),
    /// It was decided before: late spans.
    Known(bool),
}

struct Decider {
    stage: Arc<Stage>,
    ctx: StageContext,
    sampler: Sampler,
    /// The next pending sequence number to read.
    read_from: u64,
    traces: HashMap<TraceId, PendingTrace>,
    by_age: BTreeSet<(u64, TraceId)>,
    pending_bytes: u64,
    cache: DecisionCache,
    /// The decisions queue's entries: `(seq, decisions in it)`.
    decision_entries: VecDeque<(u64, usize)>,
    /// Pending traces that were decided before their entries were indexed
    /// (late spans), to settle with the remembered decision.
    late: BTreeSet<TraceId>,
    label: Pipeline,
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
        Self {
            stage,
            ctx,
            sampler,
            read_from: 0,
            traces: HashMap::new(),
            by_age: BTreeSet::new(),
            pending_bytes: 0,
            cache,
            decision_entries: VecDeque::new(),
            late: BTreeSet::new(),
            label,
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

    /// Indexes the pending entries stored since the last tick.
    fn read_new(&mut self) -> Result<(), crate::store::StoreError> {
        loop {
            let mut last = None;
            let (traces, by_age, late, cache) = (
                &mut self.traces,
                &mut self.by_age,
                &mut self.late,
                &self.cache,
            );
            let mut bytes = 0u64;
            self.ctx.store.scan_entries(
                &self.stage.pending,
                self.read_from,
                READ_BYTES_PER_TICK,
                |seq, appended_at_ms, spans, payload| {
                    last = Some(seq);
                    // An entry that does not frame cannot be sampled: it is
                    // indexed under the zero ID and decided like any trace.
                    let id = entry_trace(payload).unwrap_or_default();
                    if cache.get(&id).is_some() {
                        late.insert(id);
                    }
                    let t = traces.entry(id).or_default();
                    if t.entries.is_empty() {
                        t.first_ms = appended_at_ms;
                        by_age.insert((t.first_ms, id));
                    }
                    t.entries.push(PendingEntry {
                        seq,
                        spans,
                        bytes: payload.len() as u64,
                    });
                    bytes += payload.len() as u64;
                },
            )?;
            self.pending_bytes += bytes;
            match last {
                Some(seq) => self.read_from = seq + 1,
                None => return Ok(()),
            }
        }
    }

    /// The traces to settle now, oldest first, at most
    /// [`MAX_TRACES_PER_SETTLE`].
    fn due(&self, now_ms: u64) -> Vec<(TraceId, Why)> {
        let wait = u64::try_from(self.stage.config.decision_wait.as_millis()).unwrap_or(u64::MAX);
        let max_traces = usize::try_from(self.stage.config.num_traces).unwrap_or(usize::MAX);
        let max_bytes = self.stage.config.max_pending_bytes.0;
        let mut out = Vec::new();
        let (mut traces, mut bytes) = (self.traces.len(), self.pending_bytes);
        for (first_ms, id) in &self.by_age {
            if out.len() >= MAX_TRACES_PER_SETTLE {
                break;
            }
            let why = if let Some(known) = self.cache.get(id) {
                Why::Known(known)
            } else if first_ms.saturating_add(wait) <= now_ms {
                Why::Due
            } else if traces > max_traces {
                Why::Early("num_traces")
            } else if bytes > max_bytes {
                Why::Early("max_pending_bytes")
            } else {
                // Younger traces are not due either; known ones among them
                // are found by the scan below.
                break;
            };
            traces -= 1;
            bytes = bytes.saturating_sub(
                self.traces
                    .get(id)
                    .map_or(0, |t| t.entries.iter().map(|e| e.bytes).sum()),
            );
            out.push((*id, why));
        }
        // Late spans of decided traces, wherever they are in age order
        // (noted when their entries were indexed).
        if !self.late.is_empty() {
            let taken: std::collections::HashSet<TraceId> = out.iter().map(|(id, _)| *id).collect();
            for id in &self.late {
                if out.len() >= MAX_TRACES_PER_SETTLE {
                    break;
                }
                if let Some(known) = self.cache.get(id)
                    && self.traces.contains_key(id)
                    && !taken.contains(id)
                {
                    out.push((*id, Why::Known(known)));
                }
            }
        }
        out
    }

    async fn tick(&mut self) -> Result<(), String> {
        self.read_new().map_err(|e| e.to_string())?;
        // Settle until nothing is due: the limits hold however fast spans
        // arrive (ingest waits on the same writer).
        loop {
            let now = now_ms();
            let due = self.due(now);
            if due.is_empty() {
                break;
            }
            self.settle(&due, now).await?;
        }
        let m = &self.ctx.metrics.tail_sampling;
        m.traces_pending
            .get_or_create(&self.label)
            .set(i64::try_from(self.traces.len()).unwrap_or(i64::MAX));
        m.pending_bytes
            .get_or_create(&self.label)
            .set(i64::try_from(self.pending_bytes).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Decides `due` and commits it in one transaction.
    async fn settle(&mut self, due: &[(TraceId, Why)], now: u64) -> Result<(), String> {
        let pending = &self.stage.pending;
        let mut sampled_body = Vec::new();
        let mut sampled_spans: u32 = 0;
        let mut consumed = Vec::new();
        let mut new_decisions = Vec::new();
        let mut outcomes = Vec::with_capacity(due.len());
        for (id, why) in due {
            let Some(trace) = self.traces.get(id) else {
                continue;
            };
            let seqs: Vec<u64> = trace.entries.iter().map(|e| e.seq).collect();
            // An entry gone already (a settle whose reply was lost) has
            // nothing left to move.
            let bodies: Vec<Bytes> = self
                .ctx
                .store
                .read_seqs(pending, &seqs)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|e| e.payload)
                .collect();
            consumed.extend(seqs.iter().map(|&s| (Arc::clone(pending), s, s)));
            let (sampled, policy) = match why {
                Why::Known(sampled) => (*sampled, None),
                Why::Due | Why::Early(_) => {
                    let spans: Vec<ResourceSpans> = bodies
                        .iter()
                        .filter_map(|b| ExportTraceServiceRequest::decode(b.as_ref()).ok())
                        .flat_map(|r| r.resource_spans)
                        .collect();
                    let d = self.sampler.decide(&spans, Instant::now());
                    new_decisions.extend_from_slice(id);
                    new_decisions.push(u8::from(d.sampled));
                    (d.sampled, Some(d.policy))
                }
            };
            let spans: u32 = trace.entries.iter().map(|e| e.spans).sum();
            if sampled {
                for b in &bodies {
                    sampled_body.extend_from_slice(b);
                }
                sampled_spans = sampled_spans.saturating_add(spans);
            }
            outcomes.push((*id, *why, sampled, policy, spans, trace.first_ms));
        }
        let mut parts = Vec::new();
        let export = &self.ctx.export;
        if !sampled_body.is_empty() {
            let len = sampled_body.len() as u64;
            if !export.queue.try_reserve(len, export.limits.max_bytes.0) {
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
                records: sampled_spans,
                payload: Bytes::from(sampled_body),
            });
        }
        let decided_now = new_decisions.len() / DECISION_LEN;
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
        let m = &self.ctx.metrics.tail_sampling;
        for (id, why, sampled, policy, spans, first_ms) in outcomes {
            self.late.remove(&id);
            if let Some(trace) = self.traces.remove(&id) {
                self.by_age.remove(&(trace.first_ms, id));
                self.pending_bytes = self
                    .pending_bytes
                    .saturating_sub(trace.entries.iter().map(|e| e.bytes).sum());
            }
            let decision = if sampled { "sampled" } else { "dropped" };
            let pipeline = self.label.pipeline.clone();
            match why {
                Why::Known(_) => {
                    m.late_spans
                        .get_or_create(&WithReason {
                            pipeline,
                            reason: decision,
                        })
                        .inc_by(u64::from(spans));
                    continue;
                }
                Why::Early(reason) => {
                    m.traces_decided_early
                        .get_or_create(&WithReason {
                            pipeline: pipeline.clone(),
                            reason,
                        })
                        .inc();
                }
                Why::Due => {}
            }
            self.cache.insert(id, sampled);
            m.traces_decided
                .get_or_create(&Decided {
                    pipeline: pipeline.clone(),
                    policy: policy
                        .flatten()
                        .map_or_else(|| "none".to_owned(), |p| p.to_string()),
                    decision,
                })
                .inc();
            m.spans_decided
                .get_or_create(&WithReason {
                    pipeline,
                    reason: decision,
                })
                .inc_by(u64::from(spans));
            #[allow(clippy::cast_precision_loss)]
            m.decision_latency_seconds
                .get_or_create(&self.label)
                .observe(now.saturating_sub(first_ms) as f64 / 1000.0);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("s{id}"),
            ..Span::default()
        }
    }

    #[test]
    fn a_request_splits_into_one_request_per_trace_keeping_resources_and_scopes() {
        let scope = |name: &str, spans| ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.to_owned(),
                ..InstrumentationScope::default()
            }),
            spans,
            schema_url: String::new(),
        };
        let resource = |svc: &str, scope_spans| ResourceSpans {
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
        };
        let request = ExportTraceServiceRequest {
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
        };
        let parts = split_by_trace(&request.encode_to_vec(), 5).unwrap();
        assert_eq!(parts.len(), 2);
        let (spans, body) = (parts[0].records, &parts[0].body);
        assert_eq!((entry_trace(body).unwrap(), spans), ([1; 16], 3));
        let one = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let want = ExportTraceServiceRequest {
            resource_spans: vec![
                resource("a", vec![scope("x", vec![span(1, 1), span(1, 3)])]),
                resource("b", vec![scope("z", vec![span(1, 5)])]),
            ],
        };
        assert_eq!(one, want);
        let (spans, body) = (parts[1].records, &parts[1].body);
        assert_eq!((entry_trace(body).unwrap(), spans), ([2; 16], 2));
        let two = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let want = ExportTraceServiceRequest {
            resource_spans: vec![resource(
                "a",
                vec![scope("x", vec![span(2, 2)]), scope("y", vec![span(2, 4)])],
            )],
        };
        assert_eq!(two, want);
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
}

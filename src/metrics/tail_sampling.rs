//! Tail sampling metrics (`seedgate_tail_sampling_*`), labelled by the
//! traces pipeline.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `{pipeline}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Pipeline {
    /// The traces pipeline.
    pub pipeline: String,
}

/// `{pipeline, policy, decision}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Decided {
    /// The traces pipeline.
    pub pipeline: String,
    /// The policy that decided (`none` when no policy sampled).
    pub policy: String,
    /// `sampled` or `dropped`.
    pub decision: &'static str,
}

/// `{pipeline, reason}` / `{pipeline, decision}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WithReason {
    /// The traces pipeline.
    pub pipeline: String,
    /// Early decisions: `num_traces` or `max_pending_bytes`; late spans:
    /// `sampled` or `dropped`.
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
}

/// The tail sampling families.
#[derive(Debug)]
pub struct TailSamplingMetrics {
    /// Traces whose spans wait on disk for a decision.
    pub traces_pending: Family<Pipeline, Gauge>,
    /// Bytes of pending spans read into the decision index.
    pub pending_bytes: Family<Pipeline, Gauge>,
    /// Traces the decider holds in memory: pending ones and decided ones
    /// whose requests have not all settled.
    pub traces_indexed: Family<Pipeline, Gauge>,
    /// Traces decided, by policy and decision.
    pub traces_decided: Family<Decided, Counter>,
    /// Spans of decided traces, by decision (`reason` label).
    pub spans_decided: Family<WithReason, Counter>,
    /// Traces decided before `decision_wait` because a limit was reached.
    pub traces_decided_early: Family<WithReason, Counter>,
    /// Spans that arrived after their trace was decided, by decision.
    pub late_spans: Family<WithReason, Counter>,
    /// Seconds from a trace's first stored span to its decision.
    pub decision_latency_seconds: Family<Pipeline, Histogram, fn() -> Histogram>,
    /// Decision transactions that failed (retried on the next tick).
    pub settle_errors: Family<Pipeline, Counter>,
}

impl Default for TailSamplingMetrics {
    fn default() -> Self {
        Self {
            traces_pending: Family::default(),
            pending_bytes: Family::default(),
            traces_indexed: Family::default(),
            traces_decided: Family::default(),
            spans_decided: Family::default(),
            traces_decided_early: Family::default(),
            late_spans: Family::default(),
            decision_latency_seconds: Family::new_with_constructor(latency_histogram),
            settle_errors: Family::default(),
        }
    }
}

impl TailSamplingMetrics {
    /// Creates a pipeline's series at zero, so dashboards and alerts see
    /// them before the first decision.
    pub fn init(&self, pipeline: &str) {
        let p = Pipeline {
            pipeline: pipeline.to_owned(),
        };
        drop(self.traces_pending.get_or_create(&p));
        drop(self.pending_bytes.get_or_create(&p));
        drop(self.traces_indexed.get_or_create(&p));
        drop(self.decision_latency_seconds.get_or_create(&p));
        drop(self.settle_errors.get_or_create(&p));
        for decision in ["sampled", "dropped"] {
            let r = WithReason {
                pipeline: pipeline.to_owned(),
                reason: decision,
            };
            drop(self.spans_decided.get_or_create(&r));
            drop(self.late_spans.get_or_create(&r));
            drop(self.traces_decided.get_or_create(&Decided {
                pipeline: pipeline.to_owned(),
                policy: "none".to_owned(),
                decision,
            }));
        }
        for reason in ["num_traces", "max_pending_bytes"] {
            drop(self.traces_decided_early.get_or_create(&WithReason {
                pipeline: pipeline.to_owned(),
                reason,
            }));
        }
    }

    /// Registers every family under `r` (prefix `seedgate_tail_sampling`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "traces_pending",
            "Traces whose spans wait on disk for a decision",
            self.traces_pending.clone(),
        );
        r.register(
            "pending_bytes",
            "Bytes of pending spans read into the decision index (a backlog not read yet is the pending queue's)",
            self.pending_bytes.clone(),
        );
        r.register(
            "traces_indexed",
            "Traces the decider holds in memory: pending ones, and decided ones whose requests have not all settled",
            self.traces_indexed.clone(),
        );
        r.register(
            "traces_decided",
            "Traces decided, by the policy that decided and the decision",
            self.traces_decided.clone(),
        );
        r.register(
            "spans_decided",
            "Spans of decided traces, by decision (reason=sampled|dropped)",
            self.spans_decided.clone(),
        );
        r.register(
            "traces_decided_early",
            "Traces decided before decision_wait because num_traces or max_pending_bytes was reached",
            self.traces_decided_early.clone(),
        );
        r.register(
            "late_spans",
            "Spans that arrived after their trace was decided; they follow the decision",
            self.late_spans.clone(),
        );
        r.register(
            "decision_latency_seconds",
            "Seconds from a trace's first stored span to its decision",
            self.decision_latency_seconds.clone(),
        );
        r.register(
            "settle_errors",
            "Decision transactions that failed and are retried",
            self.settle_errors.clone(),
        );
    }
}

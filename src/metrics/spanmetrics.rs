//! Span metrics (`seedgate_spanmetrics_*`), labelled by the traces
//! `pipeline` whose spans they count.
//!
//! The flusher that sets them is built per pipeline from its configuration
//! alone, far from the [`Metrics`](super::Metrics) value, so the families
//! live in one process-wide [`SpanMetricsMetrics`] returned by [`global`]
//! (as [`super::tls`]), and every registry registers that same set.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{pipeline}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    /// The traces pipeline with `spanmetrics`.
    pub pipeline: String,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct SpanMetricsMetrics {
    /// Spans folded into the stored aggregates (each acknowledged span
    /// once, by the flush that folds it).
    pub spans: Family<PipelineLabel, Counter>,
    /// Series kept (the overflow series included), as of the last flush.
    pub series: Family<PipelineLabel, Gauge>,
    /// Spans of new series past `aggregation_cardinality_limit`, counted in
    /// the overflow series instead.
    pub overflow_spans: Family<PipelineLabel, Counter>,
    /// Flushes committed.
    pub flushes: Family<PipelineLabel, Counter>,
    /// Flushes that failed (tried again at the next interval, nothing lost).
    pub flush_errors: Family<PipelineLabel, Counter>,
    /// Delta entries stored and not folded yet, as of the last flush.
    pub pending_delta_entries: Family<PipelineLabel, Gauge>,
}

static GLOBAL: LazyLock<SpanMetricsMetrics> = LazyLock::new(SpanMetricsMetrics::default);

/// The process-wide span metrics metrics.
pub fn global() -> &'static SpanMetricsMetrics {
    &GLOBAL
}

impl SpanMetricsMetrics {
    /// Registers every metric under `seedgate_spanmetrics`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("seedgate_spanmetrics");
        r.register(
            "spans",
            "Spans folded into the stored span metrics aggregates, each acknowledged span once",
            self.spans.clone(),
        );
        r.register(
            "series",
            "Span metrics series kept (the overflow series included), as of the last flush",
            self.series.clone(),
        );
        r.register(
            "overflow_spans",
            "Spans of new series past aggregation_cardinality_limit, counted in the overflow series",
            self.overflow_spans.clone(),
        );
        r.register(
            "flushes",
            "Span metrics flushes committed",
            self.flushes.clone(),
        );
        r.register(
            "flush_errors",
            "Span metrics flushes that failed; tried again at the next interval",
            self.flush_errors.clone(),
        );
        r.register(
            "pending_delta_entries",
            "Span metrics delta entries stored and not folded yet, as of the last flush",
            self.pending_delta_entries.clone(),
        );
    }

    /// Creates a pipeline's series at zero.
    pub fn init_pipeline(&self, pipeline: &str) {
        let l = PipelineLabel {
            pipeline: pipeline.to_owned(),
        };
        self.spans.get_or_create(&l).inc_by(0);
        self.series.get_or_create(&l).set(0);
        self.overflow_spans.get_or_create(&l).inc_by(0);
        self.flushes.get_or_create(&l).inc_by(0);
        self.flush_errors.get_or_create(&l).inc_by(0);
        self.pending_delta_entries.get_or_create(&l).set(0);
    }
}

//! `processors[].spanmetrics`: the Collector's `spanmetrics` connector
//! (names, fields and defaults as its README has them), counted exactly once
//! by the store, with two seedgate additions: `metrics_pipeline` names where
//! the metrics go (a connector's place in the Collector's `service` block),
//! and `aggregation_cardinality_limit` is always on.
//!
//! The aggregation itself is [`crate::processors::spanmetrics`].
//!
//! ```yaml
//! pipelines:
//!   - name: traces
//!     signals: [traces]
//!     processors:
//!       - spanmetrics:
//!           metrics_pipeline: red
//!           histogram: { unit: ms, explicit: { buckets: [5ms, 50ms, 500ms, 5s] } }
//!           dimensions: [{ name: http.method, default: GET }, { name: k8s.namespace.name }]
//!           aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA
//!     output: { type: otlp_grpc, endpoint: http://tempo:4317 }
//!   - name: red
//!     signals: [metrics]
//!     output: { type: otlp_grpc, endpoint: http://mimir:4317 }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{PipelineConfig, Problems};
use crate::signal::Signal;

/// The dimensions every series has (the Collector's): a configured
/// dimension may not reuse them.
pub const BUILTIN_DIMENSIONS: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

/// The attribute of the series that takes the spans past
/// `aggregation_cardinality_limit` (the OpenTelemetry SDKs' and the
/// Collector's name): reserved too.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

/// The Collector's default `histogram.explicit.buckets`, in milliseconds.
pub const DEFAULT_BUCKETS_MS: [u64; 16] = [
    2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000,
];

/// The default `namespace` (the Collector's).
pub const DEFAULT_NAMESPACE: &str = "traces.span.metrics";

/// The default `aggregation_cardinality_limit`.
pub const DEFAULT_CARDINALITY_LIMIT: u32 = 10_000;

/// The default `metrics_flush_interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// `spanmetrics`: RED metrics of every span a traces pipeline acknowledges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsConfig {
    /// The pipeline that gets the metrics (required): one of `pipelines`
    /// whose `signals` include `metrics`.
    pub metrics_pipeline: String,
    /// The duration histogram (default: unit `ms`, the Collector's buckets).
    #[serde(default)]
    pub histogram: HistogramConfig,
    /// Dimensions besides `service.name`, `span.name`, `span.kind` and
    /// `status.code` (default: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<DimensionConfig>,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE` (default) or
    /// `AGGREGATION_TEMPORALITY_DELTA`.
    #[serde(default)]
    pub aggregation_temporality: Temporality,
    /// How often the metrics are sent (default 60s).
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub metrics_flush_interval: Duration,
    /// The prefix of the metric names, `<namespace>.calls` and
    /// `<namespace>.duration` (default `traces.span.metrics`; empty: no
    /// prefix, as the Collector).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// How many distinct dimension sets are kept (default 10000, at least
    /// 1); spans of any further set count in one overflow series whose only
    /// attribute is `otel.metric.overflow: true`.
    #[serde(default = "default_cardinality_limit")]
    pub aggregation_cardinality_limit: u32,
}

/// `histogram`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// The unit of the durations sent: `ms` (default) or `s`.
    pub unit: DurationUnit,
    /// The buckets.
    pub explicit: ExplicitConfig,
}

/// The unit of the `duration` histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DurationUnit {
    /// Milliseconds.
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
}

impl DurationUnit {
    /// The UCUM unit, as in the metric's `unit`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DurationUnit::Milliseconds => "ms",
            DurationUnit::Seconds => "s",
        }
    }

    /// Milliseconds per unit.
    pub const fn millis(self) -> f64 {
        match self {
            DurationUnit::Milliseconds => 1.0,
            DurationUnit::Seconds => 1000.0,
        }
    }
}

/// `histogram.explicit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplicitConfig {
    /// The upper bounds of the buckets, ascending durations such as `2ms` or
    /// `1s` (default: the Collector's, 2ms to 15s). A duration equal to a
    /// bound counts in that bound's bucket (OTLP: upper bounds are
    /// inclusive).
    pub buckets: Vec<BucketBound>,
}

impl Default for ExplicitConfig {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| BucketBound(Duration::from_millis(*ms)))
                .collect(),
        }
    }
}

/// One bucket bound: a duration written the humantime way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BucketBound(#[serde(with = "humantime_serde")] pub Duration);

/// One of `dimensions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionConfig {
    /// The attribute: the span's, else the resource's.
    pub name: String,
    /// The value when neither has it (default: none, and the dimension is
    /// left out of the series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// `aggregation_temporality`, spelled as the Collector does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Temporality {
    /// Every flush sends the totals since the series began.
    #[default]
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    /// Every flush sends what happened since the previous flush.
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

fn default_flush_interval() -> Duration {
    DEFAULT_FLUSH_INTERVAL
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

const fn default_cardinality_limit() -> u32 {
    DEFAULT_CARDINALITY_LIMIT
}

/// Checks one `spanmetrics` block at `at` against every pipeline (the
/// metrics pipeline it feeds must exist and take metrics).
pub(super) fn check(
    p: &mut Problems,
    at: &str,
    c: &SpanMetricsConfig,
    pipelines: &[PipelineConfig],
) {
    check_metrics_pipeline(
        p,
        &format!("{at}.metrics_pipeline"),
        &c.metrics_pipeline,
        pipelines,
    );
    check_buckets(
        p,
        &format!("{at}.histogram.explicit.buckets"),
        &c.histogram.explicit.buckets,
    );
    check_dimensions(p, &format!("{at}.dimensions"), &c.dimensions);
    if c.metrics_flush_interval.is_zero() {
        p.push(
            format!("{at}.metrics_flush_interval"),
            "must be greater than 0s",
        );
    }
    if c.aggregation_cardinality_limit == 0 {
        p.push(
            format!("{at}.aggregation_cardinality_limit"),
            "must be at least 1: seedgate always bounds the series it keeps",
        );
    }
}

fn check_metrics_pipeline(p: &mut Problems, at: &str, name: &str, pipelines: &[PipelineConfig]) {
    match pipelines.iter().find(|pipe| pipe.name == name) {
        None => p.push(at, format!("names pipeline {name:?}, which does not exist")),
        Some(pipe) if !pipe.signals.contains(&Signal::Metrics) => {
            let signals: Vec<&str> = pipe.signals.iter().map(|s| s.as_str()).collect();
            p.push(
                at,
                format!(
                    "pipeline {name:?} takes [{}], not metrics: add metrics to its signals",
                    signals.join(", ")
                ),
            );
        }
        Some(_) => {}
    }
}

fn check_buckets(p: &mut Problems, at: &str, buckets: &[BucketBound]) {
    if buckets.is_empty() {
        p.push(at, "must list at least one bucket");
    }
    for (i, pair) in buckets.windows(2).enumerate() {
        if let [lo, hi] = pair
            && hi <= lo
        {
            p.push(
                format!("{at}[{}]", i + 1),
                format!(
                    "{} is not above the bucket before it ({}): buckets must ascend",
                    humantime::format_duration(hi.0),
                    humantime::format_duration(lo.0)
                ),
            );
        }
    }
}

fn check_dimensions(p: &mut Problems, at: &str, dimensions: &[DimensionConfig]) {
    for (i, d) in dimensions.iter().enumerate() {
        let at = format!("{at}[{i}].name");
        if d.name.is_empty() {
            p.push(at, "must not be empty");
        } else if BUILTIN_DIMENSIONS.contains(&d.name.as_str()) {
            p.push(
                at,
                format!("{:?} is a dimension every series has already", d.name),
            );
        } else if d.name == OVERFLOW_ATTRIBUTE {
            p.push(
                at,
                format!("{:?} is reserved for the overflow series", d.name),
            );
        } else if dimensions.iter().take(i).any(|e| e.name == d.name) {
            p.push(at, format!("{:?} is listed twice", d.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ProcessorConfig, assert_problems, parse};

    /// A traces pipeline with `spanmetrics` (its block indented under the
    /// processor, from line 6) and the pipelines `red` (metrics) and `logs`.
    fn yaml(block: &str) -> String {
        let block: String = block.lines().map(|l| format!("          {l}\n")).collect();
        format!(
            "pipelines:\n  - name: traces\n    signals: [traces]\n    processors:\n      - spanmetrics:\n{block}    output: {{ type: noop }}\n  - name: red\n    signals: [metrics]\n    output: {{ type: noop }}\n  - name: logs\n    signals: [logs, traces]\n    output: {{ type: noop }}\n"
        )
    }

    fn parsed(block: &str) -> SpanMetricsConfig {
        let c = parse("c.yaml", &yaml(block)).unwrap();
        match &c.pipelines[0].processors[0] {
            ProcessorConfig::SpanMetrics(s) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_the_collectors() {
        let s = parsed("metrics_pipeline: red");
        assert_eq!(s.metrics_pipeline, "red");
        assert_eq!(s.histogram.unit, DurationUnit::Milliseconds);
        let ms: Vec<u128> = s
            .histogram
            .explicit
            .buckets
            .iter()
            .map(|b| b.0.as_millis())
            .collect();
        assert_eq!(ms, DEFAULT_BUCKETS_MS.map(u128::from));
        assert!(s.dimensions.is_empty());
        assert_eq!(s.aggregation_temporality, Temporality::Cumulative);
        assert_eq!(s.metrics_flush_interval, Duration::from_secs(60));
        assert_eq!(s.namespace, "traces.span.metrics");
        assert_eq!(s.aggregation_cardinality_limit, 10_000);
    }

    #[test]
    fn a_full_example_parses() {
        let s = parsed(
            "metrics_pipeline: red\nhistogram:\n  unit: s\n  explicit: { buckets: [100us, 5ms, 1s, 1400ms] }\ndimensions:\n  - { name: http.method, default: GET }\n  - name: k8s.namespace.name\naggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\nmetrics_flush_interval: 15s\nnamespace: red\naggregation_cardinality_limit: 500",
        );
        assert_eq!(s.histogram.unit, DurationUnit::Seconds);
        let bounds: Vec<Duration> = s.histogram.explicit.buckets.iter().map(|b| b.0).collect();
        assert_eq!(
            bounds,
            [
                Duration::from_micros(100),
                Duration::from_millis(5),
                Duration::from_secs(1),
                Duration::from_millis(1400)
            ]
        );
        assert_eq!(
            s.dimensions,
            [
                DimensionConfig {
                    name: "http.method".into(),
                    default: Some("GET".into())
                },
                DimensionConfig {
                    name: "k8s.namespace.name".into(),
                    default: None
                },
            ]
        );
        assert_eq!(s.aggregation_temporality, Temporality::Delta);
        assert_eq!(s.metrics_flush_interval, Duration::from_secs(15));
        assert_eq!(s.namespace, "red");
        assert_eq!(s.aggregation_cardinality_limit, 500);
    }

    #[test]
    fn the_metrics_pipeline_must_exist_and_take_metrics() {
        assert_problems(
            &yaml("metrics_pipeline: nope"),
            &[
                "c.yaml:6: pipelines[0].processors[0].spanmetrics.metrics_pipeline: names pipeline \"nope\", which does not exist",
            ],
        );
        assert_problems(
            &yaml("metrics_pipeline: logs"),
            &[
                "c.yaml:6: pipelines[0].processors[0].spanmetrics.metrics_pipeline: pipeline \"logs\" takes [logs, traces], not metrics: add metrics to its signals",
            ],
        );
        assert_problems(&yaml("namespace: x"), &["missing field `metrics_pipeline`"]);
    }

    #[test]
    fn buckets_must_be_listed_and_ascend() {
        assert_problems(
            &yaml("metrics_pipeline: red\nhistogram: { explicit: { buckets: [] } }"),
            &[
                "c.yaml:7: pipelines[0].processors[0].spanmetrics.histogram.explicit.buckets: must list at least one bucket",
            ],
        );
        assert_problems(
            &yaml(
                "metrics_pipeline: red\nhistogram:\n  explicit:\n    buckets:\n      - 5ms\n      - 2ms\n      - 2ms\n      - 1s",
            ),
            &[
                "c.yaml:11: pipelines[0].processors[0].spanmetrics.histogram.explicit.buckets[1]: 2ms is not above the bucket before it (5ms): buckets must ascend",
                "c.yaml:12: pipelines[0].processors[0].spanmetrics.histogram.explicit.buckets[2]: 2ms is not above the bucket before it (2ms)",
            ],
        );
        assert_problems(
            &yaml("metrics_pipeline: red\nhistogram: { unit: us }"),
            &["unknown variant `us`"],
        );
        assert_problems(
            &yaml("metrics_pipeline: red\nhistogram: { explicit: { buckets: [fast] } }"),
            &[
                "c.yaml:7:",
                "invalid value: string \"fast\", expected a duration",
            ],
        );
    }

    #[test]
    fn dimensions_must_be_new_names() {
        assert_problems(
            &yaml(
                "metrics_pipeline: red\ndimensions:\n  - name: ''\n  - name: span.kind\n  - name: region\n  - { name: region, default: eu }\n  - name: otel.metric.overflow",
            ),
            &[
                "c.yaml:8: pipelines[0].processors[0].spanmetrics.dimensions[0].name: must not be empty",
                "c.yaml:9: pipelines[0].processors[0].spanmetrics.dimensions[1].name: \"span.kind\" is a dimension every series has already",
                "c.yaml:11: pipelines[0].processors[0].spanmetrics.dimensions[3].name: \"region\" is listed twice",
                "c.yaml:12: pipelines[0].processors[0].spanmetrics.dimensions[4].name: \"otel.metric.overflow\" is reserved for the overflow series",
            ],
        );
        assert_problems(
            &yaml("metrics_pipeline: red\ndimensions: [{ name: a, value: b }]"),
            &["unknown field `value`"],
        );
    }

    #[test]
    fn interval_limit_and_temporality_are_checked() {
        assert_problems(
            &yaml(
                "metrics_pipeline: red\nmetrics_flush_interval: 0s\naggregation_cardinality_limit: 0",
            ),
            &[
                "c.yaml:7: pipelines[0].processors[0].spanmetrics.metrics_flush_interval: must be greater than 0s",
                "c.yaml:8: pipelines[0].processors[0].spanmetrics.aggregation_cardinality_limit: must be at least 1: seedgate always bounds the series it keeps",
            ],
        );
        assert_problems(
            &yaml("metrics_pipeline: red\naggregation_temporality: DELTA"),
            &[
                "c.yaml:7:",
                "unknown variant `DELTA`, expected one of AGGREGATION_TEMPORALITY_CUMULATIVE, AGGREGATION_TEMPORALITY_DELTA",
            ],
        );
        assert_problems(
            &yaml("metrics_pipeline: red\nexemplars: { enabled: true }"),
            &["unknown field `exemplars`"],
        );
    }
}

//! The Kubernetes-facing data model of the operator: the pipeline custom
//! resources, their status conditions, and the pure functions that turn a
//! pipeline into seedgate's own [`PipelineConfig`](crate::config::PipelineConfig).
//!
//! Most of it is pure: the watchers, the aggregators and the pipeline actors
//! (DESIGN.md, "Control path") call these functions with what they read and
//! write what comes back. Two modules talk to the API server: [`aggregator`]
//! (one per kind: the kind's watch, the pipeline limit, publishing, the
//! effective-config ConfigMap) and [`secret_watch`] (a pipeline's Secrets).
//!
//! - [`crds`]: `LogPipeline`, `MetricPipeline`, `TracePipeline`
//!   (`telemetry.kyma-project.io/v1beta1`, the Kyma telemetry schema) and the
//!   CRD manifests `seedgate crds` prints.
//! - [`pipeline_spec`]: [`resolve`](pipeline_spec::resolve) validates a
//!   pipeline in Kyma's check order (secret references, endpoint, TLS) with
//!   Kyma's messages, resolves its secrets and returns the `PipelineConfig`,
//!   or the [`Rejection`](pipeline_spec::Rejection) that becomes
//!   `ConfigurationGenerated=False`.
//! - [`pem_store`]: inline or secret PEM material written to files (seedgate's
//!   TLS settings take file paths), content-addressed, mode 0600, held by one
//!   lease per pipeline.
//! - [`secret_watch`]: the watches of the Secrets one pipeline references,
//!   one per Secret with a `metadata.name` field selector, and what they know.
//! - [`max_pipelines`]: which pipelines of a kind may run when there are more
//!   than the limit.
//! - [`condition_text`]: Kyma's condition types, reasons and messages,
//!   exact strings.
//! - [`conditions`]: the builders of the conditions, and the merge that
//!   keeps `lastTransitionTime`.
//! - [`pipeline_actor`]: one pipeline resource's actor (a supervised task
//!   of its aggregator): its Secret watches, resolution and status.
//! - [`pipeline_health`]: `GatewayHealthy` / `TelemetryFlowHealthy` from
//!   what delivery measures.
//! - [`lease`]: leader election; only the Lease holder writes status.
//! - [`effective_config`]: the effective-config ConfigMap of each kind.
//!
//! The module is called `operator`, not `kube`, so that `kube::…` always
//! means the kube crate, in every file of this crate.

use crate::signal::Signal;

pub mod aggregator;
pub mod condition_text;
pub mod conditions;
pub mod context;
pub mod crds;
pub mod effective_config;
mod endpoint;
pub mod lease;
pub mod max_pipelines;
pub mod pem_store;
pub mod pipeline_actor;
pub mod pipeline_health;
pub mod pipeline_spec;
pub mod secret_watch;
mod tls_material;

/// One of the three pipeline kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PipelineKind {
    /// `LogPipeline`: logs.
    Log,
    /// `MetricPipeline`: metrics.
    Metric,
    /// `TracePipeline`: traces.
    Trace,
}

impl PipelineKind {
    /// All kinds, in a stable order.
    pub const ALL: [PipelineKind; 3] =
        [PipelineKind::Log, PipelineKind::Metric, PipelineKind::Trace];

    /// The Kubernetes kind, e.g. `LogPipeline`.
    pub const fn kind(self) -> &'static str {
        match self {
            PipelineKind::Log => "LogPipeline",
            PipelineKind::Metric => "MetricPipeline",
            PipelineKind::Trace => "TracePipeline",
        }
    }

    /// The resource's singular, e.g. `logpipeline`; also the prefix of the
    /// seedgate pipeline name (`logpipeline.<name>`).
    pub const fn singular(self) -> &'static str {
        match self {
            PipelineKind::Log => "logpipeline",
            PipelineKind::Metric => "metricpipeline",
            PipelineKind::Trace => "tracepipeline",
        }
    }

    /// The resource's plural, e.g. `logpipelines`.
    pub const fn plural(self) -> &'static str {
        match self {
            PipelineKind::Log => "logpipelines",
            PipelineKind::Metric => "metricpipelines",
            PipelineKind::Trace => "tracepipelines",
        }
    }

    /// The CRD's name, e.g. `logpipelines.telemetry.kyma-project.io`.
    pub const fn crd_name(self) -> &'static str {
        match self {
            PipelineKind::Log => "logpipelines.telemetry.kyma-project.io",
            PipelineKind::Metric => "metricpipelines.telemetry.kyma-project.io",
            PipelineKind::Trace => "tracepipelines.telemetry.kyma-project.io",
        }
    }

    /// The kind whose pipelines carry `signal` (the inverse of
    /// [`PipelineKind::signal`]).
    pub const fn of_signal(signal: Signal) -> Self {
        match signal {
            Signal::Logs => PipelineKind::Log,
            Signal::Metrics => PipelineKind::Metric,
            Signal::Traces => PipelineKind::Trace,
        }
    }

    /// The one signal a pipeline of this kind carries.
    pub const fn signal(self) -> Signal {
        match self {
            PipelineKind::Log => Signal::Logs,
            PipelineKind::Metric => Signal::Metrics,
            PipelineKind::Trace => Signal::Traces,
        }
    }

    /// What Kyma's messages call the data: `logs`, `metrics`, `spans`.
    pub const fn data_word(self) -> &'static str {
        match self {
            PipelineKind::Log => "logs",
            PipelineKind::Metric => "metrics",
            PipelineKind::Trace => "spans",
        }
    }

    /// The kind of a Kubernetes kind name (`LogPipeline` → `Log`).
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

impl std::fmt::Display for PipelineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_themselves_like_kubernetes() {
        for (k, kind, plural, signal, word) in [
            (
                PipelineKind::Log,
                "LogPipeline",
                "logpipelines",
                Signal::Logs,
                "logs",
            ),
            (
                PipelineKind::Metric,
                "MetricPipeline",
                "metricpipelines",
                Signal::Metrics,
                "metrics",
            ),
            (
                PipelineKind::Trace,
                "TracePipeline",
                "tracepipelines",
                Signal::Traces,
                "spans",
            ),
        ] {
            assert_eq!(k.kind(), kind);
            assert_eq!(k.plural(), plural);
            assert_eq!(k.crd_name(), format!("{plural}.telemetry.kyma-project.io"));
            assert_eq!(k.signal(), signal);
            assert_eq!(k.data_word(), word);
            assert_eq!(PipelineKind::from_kind(kind), Some(k));
        }
        assert_eq!(PipelineKind::from_kind("Pipeline"), None);
    }
}

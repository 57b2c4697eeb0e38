//! What the operator's aggregators and pipeline actors share: the context
//! they run with and the pipeline resource types they handle. Its own
//! module so that the aggregator (which starts pipeline actors) and the
//! pipeline actor (which reports to its aggregator) do not import each
//! other for it.

use std::fmt::Debug;
use std::sync::Arc;

use kube::core::object::{HasSpec, HasStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::crds::{PipelineSpec, PipelineStatus};
use super::pem_store::DirPemStore;
use crate::actors::health::HealthState;
use crate::config::QueueConfig;
use crate::metrics::Metrics;
use crate::operator::lease::Leadership;
use crate::routing::publisher::Publisher;

/// Fault injection for tests (`admin.fault_injection`,
/// `POST /debug/pipelines/{destination}/crash`): the destination names
/// (`logpipeline.<name>`, ...) whose actor is to panic, exactly as a bug
/// would.
pub type CrashRequests = tokio::sync::broadcast::Sender<String>;

/// What every aggregator and pipeline actor shares.
#[derive(Clone)]
pub struct AggregatorCtx {
    /// A client for the API server.
    pub client: kube::Client,
    /// Where pipelines go.
    pub publisher: Arc<Publisher>,
    /// Whether this replica writes status and the ConfigMap.
    pub leadership: Arc<Leadership>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Health's verdicts on each destination (the pipelines'
    /// `GatewayHealthy` and `TelemetryFlowHealthy`).
    pub health: Arc<HealthState>,
    /// Where PEM material from Secrets is written (one lease per pipeline).
    pub pems: Arc<DirPemStore>,
    /// The file's top-level queue, which `spec.seedgate.queue` starts from.
    pub queue_defaults: QueueConfig,
    /// seedgate's namespace (the effective-config ConfigMap).
    pub namespace: String,
    /// Pipelines per kind that may run; `None`: no limit.
    pub max_pipelines: Option<usize>,
    /// Set only with `admin.fault_injection`: crash requests for pipeline
    /// actors.
    pub crash: Option<CrashRequests>,
}

impl Debug for AggregatorCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorCtx")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A pipeline resource type: what the aggregator and the pipeline actor
/// need of `LogPipeline`, `MetricPipeline` and `TracePipeline`.
pub trait PipelineResource:
    kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + HasSpec<Spec: PipelineSpec + Send + Sync>
    + HasStatus<Status = PipelineStatus>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> PipelineResource for K where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + HasSpec<Spec: PipelineSpec + Send + Sync>
        + HasStatus<Status = PipelineStatus>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static
{
}

//! The metrics registry behind `/metrics`, one struct per subsystem.
//!
//! Names follow `seedgate_<subsystem>_<what>_<unit>`; prometheus-client adds
//! `_total` to counters and the unit suffix itself, so base names are
//! registered here. Each field's doc comment is its HELP text in spirit; the
//! README's metrics reference lists them and a test compares the two.
//! Labels stay bounded: signal, transport, a closed set of reasons, and
//! destination names (pipelines; shoot series are removed with the client).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::store::StoreMetrics;

pub mod flow;
pub mod health;
pub mod kube;
pub mod lb;
pub mod memory;
pub mod shoot;
pub mod spanmetrics;
pub mod tail_sampling;
pub mod tls;

pub use kube::KubeMetrics;
pub use shoot::ShootMetrics;

/// `{signal, transport}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalTransport {
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// grpc, http.
    pub transport: &'static str,
}

/// `{signal, transport, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refusal {
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// grpc, http.
    pub transport: &'static str,
    /// A closed set: see `ingest::IngestError::kind` and the receivers.
    pub reason: &'static str,
}

/// `{destination, signal}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Dest {
    /// Pipeline name.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
}

/// `{destination, signal, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestReason {
    /// Pipeline name.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// A closed set of reasons.
    pub reason: &'static str,
}

/// `{kind, state, signal}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindState {
    /// `seed` (pipelines) or `shoot` (shoot clients).
    pub kind: &'static str,
    /// The routing table row: a shoot state, `none`, `no_cluster`, `no_client`.
    pub state: &'static str,
    /// logs, metrics, traces.
    pub signal: &'static str,
}

/// `{result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// `{actor}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabel {
    /// Actor name.
    pub actor: &'static str,
}

/// A family of latency histograms (100 µs .. ~26 s) that can be defaulted.
#[derive(Debug, Clone)]
pub struct LatencyFamily<L>(pub Family<L, Histogram, fn() -> Histogram>);

impl<L: Clone + std::hash::Hash + Eq> Default for LatencyFamily<L> {
    fn default() -> Self {
        Self(Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        }))
    }
}

impl<L> std::ops::Deref for LatencyFamily<L> {
    type Target = Family<L, Histogram, fn() -> Histogram>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What the receivers saw.
#[derive(Debug, Default)]
pub struct ReceiverMetrics {
    /// Export requests received.
    pub requests: Family<SignalTransport, Counter>,
    /// Records accepted (durable before the answer).
    pub records: Family<SignalTransport, Counter>,
    /// Request bytes received (after decompression).
    pub bytes: Family<SignalTransport, Counter>,
    /// Requests refused, by reason.
    pub refused_requests: Family<Refusal, Counter>,
    /// Records refused (when the request could be scanned), by reason.
    pub refused_records: Family<Refusal, Counter>,
    /// Records reported back as rejected in `partial_success`.
    pub rejected_records: Family<SignalTransport, Counter>,
    /// Time from request received to answer (includes the durable commit).
    pub request_duration: LatencyFamily<SignalTransport>,
    /// Request bytes held in memory right now.
    pub inflight_bytes: Gauge,
}

/// What the router decided.
#[derive(Debug, Default)]
pub struct RouterMetrics {
    /// Records routed and stored per destination.
    pub records: Family<Dest, Counter>,
    /// Records dropped before storage, by destination and reason
    /// (`queue_full` under `drop_newest`).
    pub dropped_records: Family<DestReason, Counter>,
    /// Records routed and stored per destination kind and routing state.
    pub routed: Family<KindState, Counter>,
}

/// What the exporters did.
#[derive(Debug, Default)]
pub struct ExporterMetrics {
    /// Records a backend accepted.
    pub sent_records: Family<Dest, Counter>,
    /// Requests a backend accepted.
    pub sent_requests: Family<Dest, Counter>,
    /// Request bytes a backend accepted (before compression).
    pub sent_bytes: Family<Dest, Counter>,
    /// Failed attempts, by reason.
    pub failed_requests: Family<DestReason, Counter>,
    /// Retries scheduled, by reason of the failure.
    pub retries: Family<DestReason, Counter>,
    /// Records dropped for good: `permanent` (refused alone, or for a reason
    /// not about the content), `bisect_gave_up` (in a refused part the
    /// bisection no longer split), `max_elapsed` exceeded, `rejected` by the
    /// backend's partial_success.
    pub dropped_records: Family<DestReason, Counter>,
    /// Duration of one export attempt.
    pub request_duration: LatencyFamily<Dest>,
    /// 1 while the destination's last attempt failed, else 0.
    pub failing: Family<Dest, Gauge>,
    /// 1 unless the destination's sends have failed without a success for
    /// longer than `admin.unhealthy_after` (for a load-balanced pipeline:
    /// unless every backend has); set by health.
    pub healthy: Family<Dest, Gauge>,
}

/// The queues in LMDB, refreshed from the store at every scrape.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Payload bytes queued (and reserved) per destination.
    pub bytes: Family<Dest, Gauge>,
    /// Records queued per destination.
    pub records: Family<Dest, Gauge>,
    /// The configured limit per destination.
    pub limit_bytes: Family<Dest, Gauge>,
}

/// Supervision.
#[derive(Debug, Default)]
pub struct ActorMetrics {
    /// Actor restarts after a failure.
    pub restarts: Family<ActorLabel, Counter>,
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Receivers.
    pub receiver: Arc<ReceiverMetrics>,
    /// The receivers' memory limiter and idle timeouts.
    pub memory: Arc<memory::MemoryMetrics>,
    /// Routing.
    pub router: Arc<RouterMetrics>,
    /// The LMDB writer.
    pub store: Arc<StoreMetrics>,
    /// Queues.
    pub queue: Arc<QueueMetrics>,
    /// Exporters.
    pub exporter: Arc<ExporterMetrics>,
    /// Exporter flow control (rate limits, concurrency).
    pub flow: Arc<flow::FlowMetrics>,
    /// Actors.
    pub actor: Arc<ActorMetrics>,
    /// Shoot clients and shoot routing.
    pub shoot: Arc<ShootMetrics>,
    /// Kubernetes watches.
    pub kube: Arc<KubeMetrics>,
    /// Load-balanced pipelines.
    pub lb: Arc<lb::LbMetrics>,
    /// Tail sampling.
    pub tail_sampling: Arc<tail_sampling::TailSamplingMetrics>,
    /// Probe verdicts and pipeline conditions.
    pub health: Arc<health::HealthMetrics>,
    /// Configuration reloads, by result (`ok`, `error`).
    pub config_reloads: Family<ResultLabel, Counter>,
    /// 1 if the last configuration reload succeeded (or none was tried).
    pub config_last_reload_successful: Gauge,
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let receiver = Arc::new(ReceiverMetrics::default());
        let exporter = Arc::new(ExporterMetrics::default());
        let router = Arc::new(RouterMetrics::default());
        let queue = Arc::new(QueueMetrics::default());
        let actor = Arc::new(ActorMetrics::default());
        let shoot = Arc::new(ShootMetrics::default());
        shoot.register(registry.sub_registry_with_prefix("seedgate_shoot"));
        let kube = Arc::new(KubeMetrics::default());
        kube.register(registry.sub_registry_with_prefix("seedgate_kube"));
        let lb = Arc::new(lb::LbMetrics::default());
        lb.register(registry.sub_registry_with_prefix("seedgate_lb"));
        let tail_sampling = Arc::new(tail_sampling::TailSamplingMetrics::default());
        tail_sampling.register(registry.sub_registry_with_prefix("seedgate_tail_sampling"));
        let memory = Arc::new(memory::MemoryMetrics::default());
        memory.register(registry.sub_registry_with_prefix("seedgate_receiver"));
        memory.init();
        let flow = Arc::new(flow::FlowMetrics::default());
        flow.register(registry.sub_registry_with_prefix("seedgate_exporter"));
        tls::global().register(&mut registry);
        spanmetrics::global().register(&mut registry);
        let health = Arc::new(health::HealthMetrics::default());
        health.register(registry.sub_registry_with_prefix("seedgate"));
        let config_reloads = Family::<ResultLabel, Counter>::default();
        let config_last_reload_successful = Gauge::default();
        config_last_reload_successful.set(1);
        for result in ["ok", "error"] {
            config_reloads
                .get_or_create(&ResultLabel { result })
                .inc_by(0);
        }
        let r = registry.sub_registry_with_prefix("seedgate_config");
        r.register(
            "reloads",
            "Reloads of the configuration file (clusters and routing), by result",
            config_reloads.clone(),
        );
        r.register(
            "last_reload_successful",
            "1 if the last configuration reload succeeded or none was tried",
            config_last_reload_successful.clone(),
        );

        let r = registry.sub_registry_with_prefix("seedgate_receiver");
        r.register(
            "requests",
            "Export requests received",
            receiver.requests.clone(),
        );
        r.register(
            "records",
            "Records accepted, durable before the answer",
            receiver.records.clone(),
        );
        r.register_with_unit(
            "received",
            "Request bytes received, after decompression",
            Unit::Bytes,
            receiver.bytes.clone(),
        );
        r.register(
            "refused_requests",
            "Requests refused, by reason",
            receiver.refused_requests.clone(),
        );
        r.register(
            "refused_records",
            "Records refused, by reason",
            receiver.refused_records.clone(),
        );
        r.register(
            "rejected_records",
            "Records reported rejected in partial_success",
            receiver.rejected_records.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from request to answer, including the durable commit",
            Unit::Seconds,
            receiver.request_duration.0.clone(),
        );
        r.register_with_unit(
            "inflight",
            "Request bytes held in memory",
            Unit::Bytes,
            receiver.inflight_bytes.clone(),
        );

        let r = registry.sub_registry_with_prefix("seedgate_router");
        r.register(
            "records",
            "Records routed and stored, per destination",
            router.records.clone(),
        );
        r.register(
            "dropped_records",
            "Records dropped before storage, by destination and reason",
            router.dropped_records.clone(),
        );
        r.register(
            "routed_records",
            "Records routed and stored, per destination kind (seed, shoot) and routing state",
            router.routed.clone(),
        );

        let store = StoreMetrics::register(registry.sub_registry_with_prefix("seedgate_batcher"));
        let r = registry.sub_registry_with_prefix("seedgate_batcher_queue");
        r.register_with_unit(
            "size",
            "Payload bytes queued per destination",
            Unit::Bytes,
            queue.bytes.clone(),
        );
        r.register(
            "records",
            "Records queued per destination",
            queue.records.clone(),
        );
        r.register_with_unit(
            "limit",
            "Queue limit per destination",
            Unit::Bytes,
            queue.limit_bytes.clone(),
        );

        let r = registry.sub_registry_with_prefix("seedgate_exporter");
        r.register(
            "sent_records",
            "Records a backend accepted",
            exporter.sent_records.clone(),
        );
        r.register(
            "sent_requests",
            "Requests a backend accepted",
            exporter.sent_requests.clone(),
        );
        r.register_with_unit(
            "sent",
            "Request bytes a backend accepted, before compression",
            Unit::Bytes,
            exporter.sent_bytes.clone(),
        );
        r.register(
            "failed_requests",
            "Failed export attempts, by reason",
            exporter.failed_requests.clone(),
        );
        r.register(
            "retries",
            "Retries scheduled, by reason",
            exporter.retries.clone(),
        );
        r.register(
            "dropped_records",
            "Records dropped for good, by reason",
            exporter.dropped_records.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Duration of one export attempt",
            Unit::Seconds,
            exporter.request_duration.0.clone(),
        );
        r.register(
            "failing",
            "1 while the destination's last attempt failed",
            exporter.failing.clone(),
        );
        r.register(
            "healthy",
            "1 unless the destination has failed without a success for longer than admin.unhealthy_after",
            exporter.healthy.clone(),
        );

        let r = registry.sub_registry_with_prefix("seedgate_actor");
        r.register(
            "restarts",
            "Actor restarts after a failure",
            actor.restarts.clone(),
        );

        Self {
            registry,
            receiver,
            memory,
            router,
            store,
            queue,
            exporter,
            flow,
            actor,
            shoot,
            kube,
            lb,
            tail_sampling,
            health,
            config_reloads,
            config_last_reload_successful,
        }
    }

    /// Counts one restart of `actor` (after a failure or a requested restart).
    pub fn count_restart(&self, actor: &'static str) {
        self.actor
            .restarts
            .get_or_create(&ActorLabel { actor })
            .inc();
    }

    /// Creates the restart counters of every actor at zero.
    pub fn init_actors(&self) {
        for actor in [
            "batcher",
            "exporter_pool",
            "health",
            "delivery",
            "shoot_manager",
            "shoot_client",
            "kube_watcher",
            "pipeline",
            "lb_backend",
        ] {
            self.actor
                .restarts
                .get_or_create(&ActorLabel { actor })
                .inc_by(0);
        }
    }

    /// The Prometheus text exposition.
    ///
    /// # Errors
    /// Only if formatting fails.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ErrorKindLabels;

    /// The names `/metrics` renders once every family has a sample, as users
    /// query them (`_total` on counters).
    fn rendered_names() -> std::collections::BTreeSet<String> {
        let m = Metrics::new();
        let st = SignalTransport {
            signal: "logs",
            transport: "grpc",
        };
        let rf = Refusal {
            signal: "logs",
            transport: "grpc",
            reason: "x",
        };
        let d = Dest {
            destination: "d".into(),
            signal: "logs",
        };
        let dr = DestReason {
            destination: "d".into(),
            signal: "logs",
            reason: "x",
        };
        let r = &m.receiver;
        r.requests.get_or_create(&st).inc();
        r.records.get_or_create(&st).inc();
        r.bytes.get_or_create(&st).inc();
        r.refused_requests.get_or_create(&rf).inc();
        r.refused_records.get_or_create(&rf).inc();
        r.rejected_records.get_or_create(&st).inc();
        r.request_duration.get_or_create(&st).observe(0.1);
        m.router.records.get_or_create(&d).inc();
        m.router.dropped_records.get_or_create(&dr).inc();
        m.store
            .write_errors
            .get_or_create(&ErrorKindLabels { kind: "io" })
            .inc();
        m.queue.bytes.get_or_create(&d).set(1);
        m.queue.records.get_or_create(&d).set(1);
        m.queue.limit_bytes.get_or_create(&d).set(1);
        let e = &m.exporter;
        e.sent_records.get_or_create(&d).inc();
        e.sent_requests.get_or_create(&d).inc();
        e.sent_bytes.get_or_create(&d).inc();
        e.failed_requests.get_or_create(&dr).inc();
        e.retries.get_or_create(&dr).inc();
        e.dropped_records.get_or_create(&dr).inc();
        e.request_duration.get_or_create(&d).observe(0.1);
        e.failing.get_or_create(&d).set(1);
        e.healthy.get_or_create(&d).set(1);
        m.lb.init("p", crate::signal::Signal::Traces);
        let backend = lb::Backend {
            destination: "p".into(),
            signal: "traces",
            backend: "http://b:4317".into(),
        };
        m.lb.backend_up.get_or_create(&backend).set(1);
        m.lb.backend_queue_records.get_or_create(&backend).set(1);
        m.lb.routed_records.get_or_create(&backend).inc();
        m.lb.count_resolution("p", lb::LbResult::Ok);
        m.flow.throttled_seconds.get_or_create(&d).inc_by(0.5);
        m.flow.throttled.get_or_create(&d).set(1);
        m.flow.concurrency_limit.get_or_create(&d).set(1);
        m.flow.inflight.get_or_create(&d).set(1);
        m.actor
            .restarts
            .get_or_create(&ActorLabel { actor: "batcher" })
            .inc();
        m.init_routing();
        m.kube.init();
        tls::global().touch_all();
        spanmetrics::global().init_pipeline("p");
        m.tail_sampling.init("p");
        m.shoot.set_clusters([("ready", 1)]);
        m.health.ready.set(1);
        m.health
            .set_condition("d", "logs", "GatewayHealthy", true, "GatewayReady");
        let ss = shoot::ShootSignal {
            shoot: "shoot--a--b".into(),
            signal: "logs",
        };
        m.shoot.queue_bytes.get_or_create(&ss).set(1);
        m.shoot.queue_records.get_or_create(&ss).set(1);
        m.shoot.queue_limit.get_or_create(&ss).set(1);
        m.shoot.failing.get_or_create(&ss).set(1);
        let text = m.encode().unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let mut it = l.split(' ');
                let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                }
            })
            .collect()
    }

    #[test]
    fn the_readme_metrics_reference_matches_the_registry() {
        let readme = include_str!("../../README.md");
        let start = readme.find("<!-- metrics-reference:start -->").unwrap();
        let end = readme.find("<!-- metrics-reference:end -->").unwrap();
        let documented: std::collections::BTreeSet<String> = readme[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_owned)
            .collect();
        let rendered = rendered_names();
        let undocumented: Vec<_> = rendered.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&rendered).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "undocumented: {undocumented:?}; documented but not rendered: {stale:?}"
        );
        assert!(rendered.len() >= 25);
    }
}

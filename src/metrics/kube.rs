//! The operator's view of the API server: which kinds are watched, and the
//! errors of those watches.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A Kubernetes kind: `Cluster`, `CustomResourceDefinition`, ...
    pub kind: &'static str,
}

/// Kubernetes watches.
#[derive(Debug, Default)]
pub struct KubeMetrics {
    /// 1 while a kind is watched (its CRD exists and is Established).
    pub watching: Family<KindLabel, Gauge>,
    /// Failed watch or list calls, retried with backoff.
    pub watch_errors: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// 409 Conflicts writing the effective-config ConfigMap (each retried).
    pub configmap_conflicts: Counter,
}

impl KubeMetrics {
    /// Registers under `seedgate_kube`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "watching",
            "1 while a kind is watched (its CRD exists and is Established)",
            self.watching.clone(),
        );
        r.register(
            "configmap_conflicts",
            "409 Conflicts writing the effective-config ConfigMap, each retried",
            self.configmap_conflicts.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            self.leader.clone(),
        );
        r.register(
            "watch_errors",
            "Failed watch or list calls of a kind, retried with backoff",
            self.watch_errors.clone(),
        );
    }

    /// Creates the series of the kinds seedgate watches at zero.
    pub fn init(&self) {
        for kind in [
            "Cluster",
            "CustomResourceDefinition",
            "Lease",
            "LogPipeline",
            "MetricPipeline",
            "TracePipeline",
        ] {
            self.watching.get_or_create(&KindLabel { kind }).set(0);
            self.watch_errors
                .get_or_create(&KindLabel { kind })
                .inc_by(0);
        }
    }

    /// Sets whether `kind` is watched.
    pub fn set_watching(&self, kind: &'static str, on: bool) {
        self.watching
            .get_or_create(&KindLabel { kind })
            .set(i64::from(on));
    }

    /// Counts one failed watch or list call of `kind`.
    pub fn watch_error(&self, kind: &'static str) {
        self.watch_errors.get_or_create(&KindLabel { kind }).inc();
    }
}

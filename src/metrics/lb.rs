//! Load-balancing metrics (`seedgate_lb_*`). Per-backend series carry the
//! backend's endpoint as `backend`; a load-balanced pipeline has a handful
//! of backends, and their series are removed when the backend leaves.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::signal::Signal;

/// `{destination, signal, backend}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Backend {
    /// The pipeline.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// The backend's endpoint.
    pub backend: String,
}

/// `{destination, signal, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rerouted {
    /// The pipeline.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// `removed` (the resolver dropped it), `failed` (failover) or
    /// `crashed` (its delivery loop waits for a restart).
    pub reason: &'static str,
}

/// `{destination, signal}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestSignal {
    /// The pipeline.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
}

/// `{destination, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Resolution {
    /// The pipeline.
    pub destination: String,
    /// See [`LbResult`].
    pub result: &'static str,
}

/// How a resolution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbResult {
    /// Addresses found.
    Ok,
    /// The name has no address (the last set is kept).
    Empty,
    /// The lookup failed (the last set is kept).
    Error,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct LbMetrics {
    /// 1 while the backend is in the ring (its delivery loop runs), 0 while
    /// it is out for failing or its loop waits for a restart.
    pub backend_up: Family<Backend, Gauge>,
    /// Records queued for the backend.
    pub backend_queue_records: Family<Backend, Gauge>,
    /// Records stored in the backend's queue: split there at ingest, or
    /// moved there by the balancer.
    pub routed_records: Family<Backend, Counter>,
    /// Records moved from a backend that left, failed or whose loop waits
    /// for a restart to the backends now owning their keys.
    pub rerouted_records: Family<Rerouted, Counter>,
    /// Records that were in flight to a backend when it was taken out or
    /// its delivery loop ended: sent again (re-routed, or by the loop's
    /// next run), so the backend may have taken them twice.
    pub possible_duplicates: Family<DestSignal, Counter>,
    /// Backends taken out of the ring for failing longer than
    /// `failover_after`.
    pub failovers: Family<DestSignal, Counter>,
    /// Records waiting in the pipeline's queue because no backend is in the
    /// ring or a backend's queue is full.
    pub blocked: Family<DestSignal, Gauge>,
    /// DNS resolutions by result.
    pub resolutions: Family<Resolution, Counter>,
}

impl LbMetrics {
    /// Registers every metric under `seedgate_lb`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "backend_up",
            "1 while the backend is in the ring (its delivery loop runs), 0 while it is out for failing or its loop waits for a restart",
            self.backend_up.clone(),
        );
        r.register(
            "backend_queue_records",
            "Records queued for the backend",
            self.backend_queue_records.clone(),
        );
        r.register(
            "routed_records",
            "Records stored in the backend's queue by routing key (at ingest, or moved by the balancer)",
            self.routed_records.clone(),
        );
        r.register(
            "rerouted_records",
            "Records moved from a backend that left (removed), failed (failed) or whose delivery loop waits for a restart (crashed) to the backends now owning their keys",
            self.rerouted_records.clone(),
        );
        r.register(
            "possible_duplicate_records",
            "Records in flight to a backend when it was taken out or its delivery loop ended; sent again, so a backend may have them twice",
            self.possible_duplicates.clone(),
        );
        r.register(
            "failovers",
            "Backends taken out of the ring for failing longer than failover_after",
            self.failovers.clone(),
        );
        r.register(
            "blocked",
            "1 while the balancer cannot move data on: no backend in the ring, or a backend queue full",
            self.blocked.clone(),
        );
        r.register(
            "resolutions",
            "Backend resolutions, by result (ok, empty, error)",
            self.resolutions.clone(),
        );
    }

    /// Counts one resolution of `destination`.
    pub fn count_resolution(&self, destination: &str, result: LbResult) {
        let result = match result {
            LbResult::Ok => "ok",
            LbResult::Empty => "empty",
            LbResult::Error => "error",
        };
        self.resolutions
            .get_or_create(&Resolution {
                destination: destination.to_owned(),
                result,
            })
            .inc();
    }

    /// The closed label sets of a balanced destination, at zero.
    pub fn init(&self, destination: &str, signal: Signal) {
        let ds = DestSignal {
            destination: destination.to_owned(),
            signal: signal.as_str(),
        };
        self.possible_duplicates.get_or_create(&ds).inc_by(0);
        self.failovers.get_or_create(&ds).inc_by(0);
        self.blocked.get_or_create(&ds).set(0);
        for reason in ["removed", "failed", "crashed"] {
            self.rerouted_records
                .get_or_create(&Rerouted {
                    destination: destination.to_owned(),
                    signal: signal.as_str(),
                    reason,
                })
                .inc_by(0);
        }
    }

    /// Removes the series of a backend that left.
    pub fn forget(&self, labels: &Backend) {
        self.backend_up.remove(labels);
        self.backend_queue_records.remove(labels);
        self.routed_records.remove(labels);
    }
}

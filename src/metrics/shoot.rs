//! Shoot routing metrics, named for what a Gardener operator knows from the
//! Fluent Bit plugin (`fluentbit_gardener_clients_total`,
//! `fluentbit_gardener_dropped_logs_total{reason}`, `dque_size`), with
//! seedgate's bounded labels: per-shoot series exist only for the queue
//! gauges and are removed together with the client.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::signal::Signal;

/// Why shoot-routed records were dropped.
pub const SHOOT_DROP_REASONS: [&str; 4] = [
    "no_client",
    "state_excluded",
    "queue_full",
    "client_expired",
];

/// `{reason, signal}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonSignal {
    /// One of [`SHOOT_DROP_REASONS`].
    pub reason: &'static str,
    /// logs, metrics, traces.
    pub signal: &'static str,
}

/// `{shoot, signal}`: one series per live shoot client.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShootSignal {
    /// The shoot namespace.
    pub shoot: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
}

/// `{reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// A closed set of reasons.
    pub reason: &'static str,
}

/// `{state}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// A shoot state, `no_client`.
    pub state: &'static str,
}

/// Shoot clients and shoot routing.
#[derive(Debug, Default)]
pub struct ShootMetrics {
    /// Shoot clients alive now.
    pub clients: Gauge,
    /// Shoot clients created.
    pub created: Counter,
    /// Shoot clients removed, by reason (`expired`).
    pub removed: Family<Reason, Counter>,
    /// Shoot clients not created, by reason (`at_capacity`, `build_failed`).
    pub refused: Family<Reason, Counter>,
    /// Records meant for shoot routing that went nowhere, by reason.
    pub dropped_records: Family<ReasonSignal, Counter>,
    /// Payload bytes queued per shoot client.
    pub queue_bytes: Family<ShootSignal, Gauge>,
    /// Records queued per shoot client.
    pub queue_records: Family<ShootSignal, Gauge>,
    /// Queue limit per shoot client.
    pub queue_limit: Family<ShootSignal, Gauge>,
    /// 1 while the shoot client's last export attempt failed.
    pub failing: Family<ShootSignal, Gauge>,
    /// Known clusters by state.
    pub clusters: Family<StateLabel, Gauge>,
}

impl ShootMetrics {
    /// Registers every metric under `seedgate_shoot`.
    pub fn register(&self, r: &mut Registry) {
        r.register("clients", "Shoot clients alive", self.clients.clone());
        r.register(
            "clients_created",
            "Shoot clients created",
            self.created.clone(),
        );
        r.register(
            "clients_removed",
            "Shoot clients removed, by reason",
            self.removed.clone(),
        );
        r.register(
            "clients_refused",
            "Shoot clients not created, by reason",
            self.refused.clone(),
        );
        r.register(
            "dropped_records",
            "Records of shoot namespaces that went nowhere, by reason",
            self.dropped_records.clone(),
        );
        r.register_with_unit(
            "queue_size",
            "Payload bytes queued per shoot client",
            Unit::Bytes,
            self.queue_bytes.clone(),
        );
        r.register(
            "queue_records",
            "Records queued per shoot client",
            self.queue_records.clone(),
        );
        r.register_with_unit(
            "queue_limit",
            "Queue limit per shoot client",
            Unit::Bytes,
            self.queue_limit.clone(),
        );
        r.register(
            "failing",
            "1 while the shoot client's last export attempt failed",
            self.failing.clone(),
        );
        r.register(
            "clusters",
            "Known clusters, by state",
            self.clusters.clone(),
        );
    }

    /// Counts `n` records dropped for `reason`.
    pub fn count_dropped(&self, reason: &'static str, signal: Signal, n: u64) {
        self.dropped_records
            .get_or_create(&ReasonSignal {
                reason,
                signal: signal.as_str(),
            })
            .inc_by(n);
    }

    /// Creates the closed label sets at zero.
    pub fn init(&self) {
        for signal in Signal::ALL {
            for reason in SHOOT_DROP_REASONS {
                self.count_dropped(reason, signal, 0);
            }
        }
        self.removed
            .get_or_create(&Reason { reason: "expired" })
            .inc_by(0);
        for reason in ["at_capacity", "build_failed"] {
            self.refused.get_or_create(&Reason { reason }).inc_by(0);
        }
    }

    /// Sets the per-state cluster counts (every state, zeros included).
    pub fn set_clusters(&self, counts: impl IntoIterator<Item = (&'static str, i64)>) {
        for (state, n) in counts {
            self.clusters.get_or_create(&StateLabel { state }).set(n);
        }
    }

    /// Creates a new client's failing series at zero, one per signal it
    /// carries: its delivery loops set only series that exist (see
    /// `Delivery::set_failing`), so that one of a removed client stays gone.
    pub fn init_client(&self, shoot: &str, signals: impl IntoIterator<Item = Signal>) {
        for signal in signals {
            self.failing
                .get_or_create(&ShootSignal {
                    shoot: shoot.to_owned(),
                    signal: signal.as_str(),
                })
                .set(0);
        }
    }

    /// Removes the per-shoot series of a client that is gone.
    pub fn forget(&self, shoot: &str) {
        self.forget_queues(shoot);
        for signal in Signal::ALL {
            self.failing.remove(&ShootSignal {
                shoot: shoot.to_owned(),
                signal: signal.as_str(),
            });
        }
    }

    /// Removes the queue gauges of `shoot`, which a scrape sets (and
    /// makes again for a client that still exists).
    pub fn forget_queues(&self, shoot: &str) {
        for signal in Signal::ALL {
            let labels = ShootSignal {
                shoot: shoot.to_owned(),
                signal: signal.as_str(),
            };
            self.queue_bytes.remove(&labels);
            self.queue_records.remove(&labels);
            self.queue_limit.remove(&labels);
        }
    }
}

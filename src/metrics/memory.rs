//! The receivers' memory protection: the process-wide memory limiter and the
//! idle-connection timeout, registered under `seedgate_receiver` next to the
//! receiver family (its refusals are `refused_requests{reason="memory_limiter"}`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// A `transport` label (`grpc`, `http`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TransportLabel {
    /// `grpc` or `http`.
    pub transport: &'static str,
}

/// `receivers.memory_limiter` and `receivers.idle_timeout`.
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    /// Anonymous resident memory at the last check.
    pub rss_bytes: Gauge,
    /// The memory limiter's hard limit (0: the limiter is off).
    pub limit_bytes: Gauge,
    /// Where it starts refusing: limit - spike limit (0: off).
    pub soft_limit_bytes: Gauge,
    /// 1 while new requests are refused for memory.
    pub refusing: Gauge,
    /// Connections closed because they sent nothing for `idle_timeout`.
    pub idle_timeouts: Family<TransportLabel, Counter>,
}

impl MemoryMetrics {
    /// Registers under `seedgate_receiver`.
    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "memory_rss",
            "Anonymous resident memory of the process at the memory limiter's last check",
            Unit::Bytes,
            self.rss_bytes.clone(),
        );
        r.register_with_unit(
            "memory_limit",
            "The memory limiter's hard limit (0: off)",
            Unit::Bytes,
            self.limit_bytes.clone(),
        );
        r.register_with_unit(
            "memory_soft_limit",
            "Resident memory above which new requests are refused: limit - spike limit (0: off)",
            Unit::Bytes,
            self.soft_limit_bytes.clone(),
        );
        r.register(
            "memory_limiter_refusing",
            "1 while the memory limiter refuses new requests",
            self.refusing.clone(),
        );
        r.register(
            "idle_timeouts",
            "Connections closed because they sent nothing for receivers.idle_timeout",
            self.idle_timeouts.clone(),
        );
    }

    /// The idle-timeout counter of one transport.
    pub fn idle_timeouts_of(&self, transport: &'static str) -> Counter {
        self.idle_timeouts
            .get_or_create(&TransportLabel { transport })
            .clone()
    }

    /// Creates the labelled series at zero, so dashboards see them early.
    pub fn init(&self) {
        for transport in ["grpc", "http"] {
            self.idle_timeouts
                .get_or_create(&TransportLabel { transport })
                .inc_by(0);
        }
    }
}

//! Flow control of the exporters: rate-limit waits and the concurrency
//! limit, registered under `seedgate_exporter` next to the exporter family.
//!
//! The gauges are per pipeline destination only: all shoot clients share the
//! `destination="shoot"` label, so one gauge would flip between them; the
//! throttled-seconds counter sums over them, which is meaningful.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::Dest;

/// Rate limiting and adaptive concurrency.
#[derive(Debug, Default)]
pub struct FlowMetrics {
    /// Seconds sends waited for the rate limit.
    pub throttled_seconds: Family<Dest, Counter<f64, AtomicU64>>,
    /// 1 while the destination's last send waited for the rate limit.
    pub throttled: Family<Dest, Gauge>,
    /// The concurrency limit now (fixed, or where ARC put it).
    pub concurrency_limit: Family<Dest, Gauge>,
    /// Batches holding a concurrency slot (being sent or waiting to retry).
    pub inflight: Family<Dest, Gauge>,
}

impl FlowMetrics {
    /// Registers under `seedgate_exporter`.
    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "throttled",
            "Seconds sends waited for the destination's rate limit",
            Unit::Seconds,
            self.throttled_seconds.clone(),
        );
        r.register(
            "throttled",
            "1 while the destination's last send waited for its rate limit",
            self.throttled.clone(),
        );
        r.register(
            "concurrency_limit",
            "Requests the destination may have in flight now (fixed or adaptive)",
            self.concurrency_limit.clone(),
        );
        r.register(
            "inflight_requests",
            "Batches holding a concurrency slot: being sent or waiting to retry",
            self.inflight.clone(),
        );
    }
}

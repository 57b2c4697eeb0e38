//! The exporter pool: one delivery loop per seed pipeline destination,
//! owned by the supervisor.
//!
//! The supervisor hands it the plans ([`ExporterPool::set`]: start loops
//! for new destinations, stop those for removed ones, start again those
//! whose setup changed, on the same queue), restarts its loops on every
//! check ([`ExporterPool::restart_dead`]: a loop that ended, it panicked,
//! is started again on its own, counted in
//! `seedgate_actor_restarts_total{actor="delivery"}`; the other
//! destinations are untouched), answers health's [`Heartbeats`], and drains
//! it at shutdown. Loops run on the tokio runtime; they read LMDB, send,
//! and send deletes to the writer. What survives a restart of a loop or of
//! the whole pool: everything in LMDB; in-flight sends are repeated
//! (at-least-once).

use std::sync::Arc;
use std::time::Instant;

use actix::Message;
use tokio::runtime::Handle;

use super::loops::{Task as _, Tasks};
use crate::delivery::Heartbeat;
use crate::delivery::plan::{DeliveryPlan, drain};
use crate::metrics::Metrics;
use crate::routing::Destination;

/// The unit's name: a restart of the whole pool is counted under it.
pub const NAME: &str = "exporter_pool";

/// The set of destinations changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetDestinations(pub Vec<DeliveryPlan>);

/// Heartbeats of the running loops, for health.
#[derive(Debug, Message)]
#[rtype(result = "Beats")]
pub struct Heartbeats;

/// The answer to [`Heartbeats`].
#[derive(Debug, Default)]
pub struct Beats {
    /// Each running loop's heartbeat, by `destination/signal`.
    pub heartbeats: Vec<(String, Arc<Heartbeat>)>,
    /// The destinations the loops serve (their queues' depths).
    pub destinations: Vec<Arc<Destination>>,
}

/// See the module doc: the loops' `Tasks` is the pool, its plans the
/// destinations.
#[derive(Debug)]
pub struct ExporterPool {
    loops: Tasks<DeliveryPlan>,
}

impl ExporterPool {
    /// A pool running `plans` on `rt`.
    pub fn start(rt: Handle, plans: Vec<DeliveryPlan>) -> Self {
        let mut loops = Tasks::new(rt);
        loops.set(plans);
        Self { loops }
    }

    /// Runs exactly `plans` from now on.
    pub fn set(&mut self, plans: Vec<DeliveryPlan>) {
        self.loops.set(plans);
    }

    /// Starts again the loops that ended.
    pub fn restart_dead(&mut self, metrics: &Metrics) {
        self.loops.restart_dead(metrics);
    }

    /// Stops every loop and starts them again from the oldest entry on
    /// disk, counted as a restart of the pool.
    pub fn restart(&mut self, metrics: &Metrics) {
        tracing::warn!("Restarting every delivery loop of the seed pipelines");
        metrics.count_restart(NAME);
        let plans = self.loops.plans();
        self.loops.stop_all();
        self.loops.set(plans);
    }

    /// Health's view of the loops.
    pub fn beats(&self) -> Beats {
        let plans = self.loops.plans();
        Beats {
            heartbeats: plans
                .iter()
                .map(|p| (p.key(), Arc::clone(&p.delivery.heartbeat)))
                .collect(),
            destinations: plans.into_iter().map(|p| p.delivery.destination).collect(),
        }
    }

    /// Waits until every queue is empty or `deadline` passes; what is left
    /// stays in LMDB for the next start. Returns the wait, so that the
    /// supervisor can stop the loops after it.
    pub fn drain(&self, deadline: Instant) -> impl Future<Output = ()> + use<> {
        let queues = self
            .loops
            .plans()
            .into_iter()
            .map(|p| Arc::clone(&p.delivery.destination.queue))
            .collect();
        drain(queues, deadline, "pipelines")
    }

    /// Stops every loop.
    pub fn stop_all(&mut self) {
        self.loops.stop_all();
    }
}

//! The exporter pool actor: one delivery loop per seed pipeline destination.
//!
//! In: [`SetDestinations`] (the pipelines changed: start loops for new
//! destinations, stop those for removed ones, start again those whose
//! setup changed, on the same queue), [`Restart`], [`Shutdown`]
//! (wait until every queue is empty or the deadline passes, then stop the
//! loops). Out: nothing; loops read LMDB, send, and send deletes to the
//! writer.
//!
//! Loops run on the tokio runtime, not in this actor. Every second the actor
//! checks them: a loop that ended (it panicked) is started again on its own,
//! counted in `seedgate_actor_restarts_total{actor="delivery"}`; the other
//! destinations are untouched. On a restart of the whole actor every loop is
//! aborted and started again from the oldest entry on disk. What survives a
//! restart: everything in LMDB; in-flight sends are repeated (at-least-once).

use std::sync::Arc;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, Supervised,
};
use tokio::runtime::Handle;

use super::loops::{CHECK_EVERY, DeliveryLoops, drain};
use super::{Restart, Shutdown};
use crate::delivery::Heartbeat;
use crate::metrics::Metrics;

pub use super::loops::DeliveryPlan;

/// The set of destinations changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetDestinations(pub Vec<DeliveryPlan>);

/// Heartbeats of the running loops, for the health actor.
#[derive(Debug, Message)]
#[rtype(result = "Beats")]
pub struct Heartbeats;

/// The answer to [`Heartbeats`].
#[derive(Debug, Default)]
pub struct Beats {
    /// Each running loop's heartbeat, by `destination/signal`.
    pub heartbeats: Vec<(String, Arc<Heartbeat>)>,
    /// The destinations the loops serve (their queues' depths).
    pub destinations: Vec<Arc<crate::routing::Destination>>,
}

/// See the module doc.
#[derive(Debug)]
pub struct ExporterPool {
    metrics: Arc<Metrics>,
    plans: Vec<DeliveryPlan>,
    loops: DeliveryLoops,
}

impl ExporterPool {
    /// A pool that runs loops on `rt`.
    pub fn new(rt: Handle, metrics: Arc<Metrics>, plans: Vec<DeliveryPlan>) -> Self {
        Self {
            metrics,
            plans,
            loops: DeliveryLoops::new(rt),
        }
    }
}

impl Actor for ExporterPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.loops.set(self.plans.clone());
        ctx.run_interval(CHECK_EVERY, |this, _ctx| {
            this.loops.restart_dead(&this.metrics, "delivery");
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.loops.stop_all();
    }
}

impl Supervised for ExporterPool {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics.count_restart("exporter_pool");
        self.loops.stop_all();
    }
}

impl Handler<SetDestinations> for ExporterPool {
    type Result = ();
    fn handle(&mut self, msg: SetDestinations, _ctx: &mut Self::Context) {
        self.plans = msg.0;
        self.loops.set(self.plans.clone());
    }
}

impl Handler<Heartbeats> for ExporterPool {
    type Result = actix::MessageResult<Heartbeats>;
    fn handle(&mut self, _: Heartbeats, _ctx: &mut Self::Context) -> Self::Result {
        actix::MessageResult(Beats {
            heartbeats: self.loops.heartbeats(),
            destinations: self
                .plans
                .iter()
                .map(|p| Arc::clone(&p.delivery.destination))
                .collect(),
        })
    }
}

impl Handler<Restart> for ExporterPool {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Shutdown> for ExporterPool {
    type Result = actix::ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let queues = self
            .plans
            .iter()
            .map(|p| Arc::clone(&p.delivery.destination.queue))
            .collect();
        let fut = drain(queues, msg.deadline, "pipelines");
        Box::pin(
            actix::fut::wrap_future::<_, Self>(fut).map(|(), this, _ctx| this.loops.stop_all()),
        )
    }
}

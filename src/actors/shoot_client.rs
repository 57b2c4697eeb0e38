//! A shoot client: the delivery of one shoot namespace's data to that
//! shoot's own backend.
//!
//! One actor per shoot namespace, created by the shoot manager on the first
//! record that needs it. It owns one delivery loop per signal shoot clients
//! carry, each reading the client's own LMDB queue (`shoot/<ns>/<signal>`),
//! and restarts a loop that ends on its own. Its queue limits and
//! `when_full` policy are applied by the hot path (the queue's
//! [`crate::routing::Destination`]).
//!
//! Failure isolation: a panic in one client's loop restarts that loop; a
//! panic in the actor itself ends this actor only (its loops are aborted
//! with it, see [`DeliveryLoops`]), and the manager starts a new one over
//! the same queues. Nothing queued is lost either way: it is on disk.

use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use tokio::runtime::Handle;

use super::loops::{CHECK_EVERY, DeliveryLoops, DeliveryPlan};
use crate::metrics::Metrics;

/// Stop: the client expired (its loops stop; the manager drops its queues).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopClient;

/// Fault injection for tests (`admin.fault_injection`): panic inside this
/// actor, exactly as a bug would.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Crash;

/// See the module doc.
#[derive(Debug)]
pub struct ShootClient {
    namespace: String,
    plans: Vec<DeliveryPlan>,
    loops: DeliveryLoops,
    metrics: Arc<Metrics>,
}

impl ShootClient {
    /// A client of `namespace` running `plans` on `rt`.
    pub fn new(
        namespace: String,
        plans: Vec<DeliveryPlan>,
        rt: Handle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            namespace,
            plans,
            loops: DeliveryLoops::new(rt),
            metrics,
        }
    }
}

impl Actor for ShootClient {
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

impl Handler<StopClient> for ShootClient {
    type Result = ();
    fn handle(&mut self, _: StopClient, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Crash> for ShootClient {
    type Result = ();
    #[allow(clippy::panic)] // the point of this message
    fn handle(&mut self, _: Crash, _ctx: &mut Self::Context) {
        panic!("fault injected into the shoot client of {}", self.namespace);
    }
}

//! The exporter pool actor: one delivery loop per destination.
//!
//! In: [`SetDestinations`] (the routing snapshot changed: start loops for new
//! destinations, stop those for removed ones), [`Restart`], [`Shutdown`]
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, Supervised,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::{Restart, Shutdown};
use crate::delivery::{Delivery, Heartbeat};
use crate::metrics::{ActorLabel, Metrics};
use crate::routing::Destination;

const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A destination and what its loop needs that the snapshot does not hold.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    /// The loop's whole setup.
    pub delivery: Delivery,
}

/// The set of destinations changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetDestinations(pub Vec<DeliveryPlan>);

/// Heartbeats of the running loops, for the health actor.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(String, Arc<Heartbeat>)>")]
pub struct Heartbeats;

struct Running {
    plan: DeliveryPlan,
    task: JoinHandle<()>,
}

/// See the module doc.
pub struct ExporterPool {
    rt: Handle,
    metrics: Arc<Metrics>,
    plans: Vec<DeliveryPlan>,
    running: HashMap<String, Running>,
}

impl std::fmt::Debug for ExporterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterPool")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key(d: &Destination) -> String {
    format!("{}/{}", d.name, d.signal.as_str())
}

impl ExporterPool {
    /// A pool that runs loops on `rt`.
    pub fn new(rt: Handle, metrics: Arc<Metrics>, plans: Vec<DeliveryPlan>) -> Self {
        Self {
            rt,
            metrics,
            plans,
            running: HashMap::new(),
        }
    }

    fn start_loop(&self, plan: DeliveryPlan) -> Running {
        let task = self.rt.spawn(plan.delivery.clone().run());
        Running { plan, task }
    }

    fn start_all(&mut self) {
        for plan in self.plans.clone() {
            let k = key(&plan.delivery.destination);
            if !self.running.contains_key(&k) {
                let r = self.start_loop(plan);
                self.running.insert(k, r);
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

impl Actor for ExporterPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_all();
        ctx.run_interval(CHECK_EVERY, |this, _ctx| {
            let dead: Vec<String> = this.running.iter().filter(|(_, r)| r.task.is_finished()).map(|(k, _)| k.clone()).collect();
            for k in dead {
                if let Some(old) = this.running.remove(&k) {
                    tracing::error!(destination = %k, "A delivery loop ended unexpectedly; starting it again");
                    this.metrics.actor.restarts.get_or_create(&ActorLabel { actor: "delivery" }).inc();
                    let r = this.start_loop(old.plan);
                    this.running.insert(k, r);
                }
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.stop_all();
    }
}

impl Supervised for ExporterPool {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor
            .restarts
            .get_or_create(&ActorLabel {
                actor: "exporter_pool",
            })
            .inc();
        self.stop_all();
    }
}

impl Handler<SetDestinations> for ExporterPool {
    type Result = ();
    fn handle(&mut self, msg: SetDestinations, _ctx: &mut Self::Context) {
        let wanted: HashMap<String, DeliveryPlan> = msg
            .0
            .into_iter()
            .map(|p| (key(&p.delivery.destination), p))
            .collect();
        self.running.retain(|k, r| {
            let keep = wanted.contains_key(k);
            if !keep {
                r.task.abort();
            }
            keep
        });
        self.plans = wanted.into_values().collect();
        self.start_all();
    }
}

impl Handler<Heartbeats> for ExporterPool {
    type Result = Vec<(String, Arc<Heartbeat>)>;
    fn handle(&mut self, _: Heartbeats, _ctx: &mut Self::Context) -> Self::Result {
        self.running
            .iter()
            .map(|(k, r)| (k.clone(), Arc::clone(&r.plan.delivery.heartbeat)))
            .collect()
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
        let queues: Vec<_> = self
            .plans
            .iter()
            .map(|p| Arc::clone(&p.delivery.destination.queue))
            .collect();
        let fut = async move {
            // Let the loops drain what is queued while there is time; what
            // is left stays in LMDB for the next start.
            loop {
                let left: u64 = queues.iter().map(|q| q.entries()).sum();
                if left == 0 {
                    tracing::info!("Every queue is empty");
                    break;
                }
                if std::time::Instant::now() >= msg.deadline {
                    tracing::warn!(
                        entries = left,
                        "Shutdown deadline reached; the rest stays on disk for the next start"
                    );
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        };
        Box::pin(actix::fut::wrap_future::<_, Self>(fut).map(|(), this, _ctx| this.stop_all()))
    }
}

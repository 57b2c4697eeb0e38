//! The supervisor: the root of the tree. It starts every unit, restarts a
//! failed one through the one mechanism ([`Tasks`]), and orders the
//! shutdown.
//!
//! ```text
//!                          supervisor (actor)
//!        ┌──────────────┬───────┴───────┬──────────────────┬─────────────────┐
//!     batcher      exporter pool      health         shoot manager      kube watcher
//!  (task: the LMDB  (a delivery loop  (task: reads   (actor: creates,    (actor, with --kube:
//!   writer thread)   task per seed     heartbeats,    expires clients)    CRDs, Clusters)
//!                    pipeline)         sets /healthz)       │                  │
//!                                                    shoot client × N    watch tasks, aggregator
//!                                                    (task: a delivery    × pipeline kind
//!                                                     loop per signal)         │
//!                                                                        pipeline actor × N
//!                                                                        (task: Secret watches,
//!                                                                         resolution, status)
//! ```
//!
//! A load-balanced pipeline's delivery task is its balancer, which holds a
//! delivery loop task per backend (`crate::loadbalancing`).
//!
//! Restart policy, the same at every level: each owner holds its children in
//! a [`Tasks`] and calls `restart_dead` every [`CHECK_EVERY`] (the
//! supervisor for its units and the pool's loops, the shoot manager for its
//! clients, the kube watcher for its watches and aggregators, an aggregator
//! for its pipeline actors, a balancer for its backends). A child that ended
//! (a panic, an actor that stopped) is started again alone from its plan,
//! at once the first time, then after 1 s doubling to 30 s while it keeps
//! failing, counted in `seedgate_actor_restarts_total{actor}`; its siblings
//! are untouched. An owner that stops takes its children with it, and its
//! own owner starts it again with them.
//!
//! Start order: batcher (the writer must run before anything is accepted),
//! exporter pool, health, shoot manager (when `shoots` is configured); the
//! kube watcher is adopted once the operator is set up. The receivers are
//! started by the application after these, on the tokio runtime.
//!
//! Shutdown order (after the receivers stopped accepting): flush the writer
//! (everything acknowledged is committed), let the exporter pool and the
//! shoot clients drain their queues until the deadline, hand what is left
//! over to the peers when this replica leaves the set ([`LeaveTo`]), flush
//! again (the deletes of what was sent), fsync, and stop.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message};
use tokio::runtime::Handle;

use super::exporter_pool::{self, ExporterPool, Heartbeats, SetDestinations};
use super::health::{Health, HealthState};
use super::loops::{CHECK_EVERY, Tasks};
use super::shoot_manager::{self, ShootManager, ShootManagerArgs};
use super::unit::{Mailbox, Unit};
use super::{LeaveTo, Restart, Shutdown, batcher};
use crate::delivery::plan::DeliveryPlan;
use crate::metrics::Metrics;
use crate::store::{Store, WriteOp};

/// What the supervisor needs to start its children.
#[derive(Debug)]
pub struct SupervisorArgs {
    /// The tokio runtime for delivery loops.
    pub rt: Handle,
    /// The open store.
    pub store: Arc<Store>,
    /// The writer channel (both ends: the batcher serves `rx`, shutdown
    /// sends flushes on `tx`).
    pub tx: crossbeam_channel::Sender<WriteOp>,
    /// See `tx`.
    pub rx: crossbeam_channel::Receiver<WriteOp>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// One plan per destination.
    pub plans: Vec<DeliveryPlan>,
    /// Shared health verdict.
    pub health: Arc<HealthState>,
    /// An export attempt running longer than this makes `/healthz` fail.
    pub export_stuck_after: Duration,
    /// The shoot manager's setup, when shoot clients are configured.
    pub shoots: Option<ShootManagerArgs>,
}

/// The units [`Restart`] knows.
pub const UNITS: [&str; 5] = [
    batcher::NAME,
    exporter_pool::NAME,
    super::health::NAME,
    shoot_manager::NAME,
    super::kube_watcher::NAME,
];

/// Ways in, besides the supervisor's own address.
#[derive(Debug, Clone)]
pub struct Children {
    /// The shoot manager, when shoot clients are configured.
    pub shoot_manager: Option<Mailbox<ShootManager>>,
}

/// Take `unit` into the supervisor's set: started now, restarted and
/// stopped like every other unit.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Adopt(pub Unit);

/// See the module doc.
#[derive(Debug)]
pub struct Supervisor {
    units: Tasks<Unit>,
    pool: ExporterPool,
    shoot_manager: Option<Mailbox<ShootManager>>,
    store: Arc<Store>,
    writer: crossbeam_channel::Sender<WriteOp>,
    metrics: Arc<Metrics>,
    /// Set by [`LeaveTo`]: the peers that take the queues at shutdown.
    leave_to: Option<Vec<String>>,
}

impl Supervisor {
    /// Starts the supervisor and its children, in order, in the current
    /// actix system.
    pub fn start(args: SupervisorArgs) -> (Addr<Supervisor>, Children) {
        let SupervisorArgs {
            rt,
            store,
            tx,
            rx,
            metrics,
            plans,
            health,
            export_stuck_after,
            shoots,
        } = args;
        let arbiter = actix::System::current().arbiter().clone();
        let shoot_manager = shoots.as_ref().map(|_| Mailbox::default());
        let children = Children {
            shoot_manager: shoot_manager.clone(),
        };
        let addr = Supervisor::create(|ctx| {
            let mut units = Tasks::new(rt.clone());
            units.start(batcher::unit(Arc::clone(&store), rx, Arc::clone(&metrics)));
            let pool = ExporterPool::start(rt, plans);
            units.start(
                Health::new(
                    health,
                    Arc::clone(&store),
                    ctx.address().recipient(),
                    export_stuck_after,
                    Arc::clone(&metrics),
                )
                .unit(),
            );
            if let (Some(args), Some(mailbox)) = (shoots, &shoot_manager) {
                units.start(shoot_manager_unit(args, arbiter, mailbox));
            }
            Supervisor {
                units,
                pool,
                shoot_manager,
                store,
                writer: tx,
                metrics,
                leave_to: None,
            }
        });
        (addr, children)
    }
}

/// The shoot manager as a unit; the hot path reaches it through `mailbox`
/// from now on, also across its restarts.
fn shoot_manager_unit(
    args: ShootManagerArgs,
    arbiter: ArbiterHandle,
    mailbox: &Mailbox<ShootManager>,
) -> Unit {
    args.directory
        .set_creator(shoot_manager::creator(mailbox.clone()));
    Unit::actor(shoot_manager::NAME, arbiter, mailbox.clone(), move || {
        ShootManager::new(args.clone())
    })
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(CHECK_EVERY, |this, _ctx| {
            this.units.restart_dead(&this.metrics);
            this.pool.restart_dead(&this.metrics);
        });
    }
}

impl Handler<Adopt> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: Adopt, _ctx: &mut Self::Context) {
        self.units.start(msg.0);
    }
}

impl Handler<SetDestinations> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: SetDestinations, _ctx: &mut Self::Context) {
        self.pool.set(msg.0);
    }
}

impl Handler<Heartbeats> for Supervisor {
    type Result = actix::MessageResult<Heartbeats>;
    fn handle(&mut self, _: Heartbeats, _ctx: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.pool.beats())
    }
}

impl Handler<Restart> for Supervisor {
    type Result = bool;
    fn handle(&mut self, msg: Restart, _ctx: &mut Self::Context) -> bool {
        match msg.0 {
            exporter_pool::NAME => self.pool.restart(&self.metrics),
            // Stopped, not aborted: the writer commits what it took, and
            // the next check starts a new one once the thread has ended.
            batcher::NAME => batcher::restart(&self.writer),
            unit => return self.units.abort(unit),
        }
        true
    }
}

impl Handler<LeaveTo> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: LeaveTo, _ctx: &mut Self::Context) {
        self.leave_to = Some(msg.0);
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = actix::ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let (store, writer, leave_to) = (
            Arc::clone(&self.store),
            self.writer.clone(),
            self.leave_to.take(),
        );
        let pool_drained = self.pool.drain(msg.deadline);
        let shoot_manager = self.shoot_manager.clone();
        let drained = {
            let (store, writer) = (Arc::clone(&store), writer.clone());
            async move {
                tracing::info!("Shutdown: flushing storage");
                batcher::flush(&store, &writer, msg.deadline).await;
                tracing::info!("Shutdown: draining queues until the deadline");
                let shoots = async {
                    if let Some(m) = &shoot_manager {
                        m.send(msg).await.ok();
                    }
                };
                futures::join!(pool_drained, shoots);
            }
        };
        let closed = async move {
            if let Some(peers) = leave_to {
                tracing::info!(?peers, "Shutdown: leaving the set, handing the queues over");
                match crate::handoff::hand_off(
                    &store,
                    &writer,
                    &peers,
                    crate::handoff::PEER_TIMEOUT,
                    crate::handoff::DEFAULT_BATCH_BYTES,
                )
                .await
                {
                    Ok(s) => {
                        tracing::info!(records = s.records_handed_over, left = ?s.left, "Shutdown: hand-over done")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Shutdown: hand-over failed; what is left stays on the volume")
                    }
                }
            }
            // Commit the deletes of what the drain delivered; give this its
            // own short grace so a drain that used the whole deadline still
            // leaves the store consistent (it is, either way: an uncommitted
            // delete only means a duplicate after restart).
            let grace = msg
                .deadline
                .max(std::time::Instant::now() + Duration::from_secs(2));
            batcher::flush(&store, &writer, grace).await;
            tracing::info!("Shutdown: storage closed");
        };
        // The seed pipelines' loops stop once drained, before a hand-over
        // reads their queues.
        Box::pin(
            actix::fut::wrap_future::<_, Self>(drained)
                .map(|(), this, _ctx| this.pool.stop_all())
                .then(|(), _this, _ctx| actix::fut::wrap_future(closed)),
        )
    }
}

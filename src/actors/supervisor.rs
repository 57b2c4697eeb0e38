//! The supervisor: starts the actors, restarts a failed one, orders the
//! shutdown.
//!
//! ```text
//!                 supervisor
//!        ┌────────────┼──────────────┬────────────────┐
//!     batcher    exporter pool     health        shoot manager
//!  (LMDB writer)  (a delivery loop  (reads heartbeats (creates, revives,
//!    thread)     per pipeline)      sets /healthz)   expires clients)
//!                                                         │
//!                                                   shoot client × N
//!                                                  (a delivery loop per
//!                                                   signal of one shoot)
//! ```
//!
//! With `--kube` the application starts the operator's actors beside this
//! tree, under their own `actix::Supervisor`:
//!
//! ```text
//!   kube watcher ──▶ aggregator × pipeline kind ──▶ pipeline actor × N
//!   (CRDs, Clusters)  (tokio task while the CRD     (tokio task per pipeline:
//!                      exists: limit, publishing,     its Secret watches,
//!                      effective-config ConfigMap)    resolution, status)
//! ```
//!
//! Restart policy: each child runs under an `actix::Supervisor`; when it
//! stops because something failed, it alone is restarted (its `restarting()`
//! resets what it derived) and the others keep running. Delivery loops are
//! restarted one by one by the exporter pool, pipeline actors one by one by
//! their aggregator (`super::loops::Tasks`).
//!
//! Start order: batcher (the writer must run before anything is accepted),
//! exporter pool, health, shoot manager (when `shoots` is configured). The
//! receivers are started by the application
//! after these, on the tokio runtime.
//!
//! Shutdown order (after the receivers stopped accepting): flush the writer
//! (everything acknowledged is committed), let the exporter pool drain the
//! queues until the deadline, hand what is left over to the peers when this
//! replica leaves the set ([`LeaveTo`]), flush again (the deletes of what
//! was sent), fsync, and stop.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, Supervisor as ActixSupervisor};
use tokio::runtime::Handle;

use super::batcher::Batcher;
use super::exporter_pool::{DeliveryPlan, ExporterPool};
use super::health::{Health, HealthState};
use super::shoot_manager::{self, ShootManager, ShootManagerArgs};
use super::{LeaveTo, Shutdown};
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

/// The children's addresses.
#[derive(Debug, Clone)]
pub struct Children {
    /// The batcher.
    pub batcher: Addr<Batcher>,
    /// The exporter pool.
    pub exporter_pool: Addr<ExporterPool>,
    /// Health.
    pub health: Addr<Health>,
    /// The shoot manager, when shoot clients are configured.
    pub shoot_manager: Option<Addr<ShootManager>>,
}

/// See the module doc.
#[derive(Debug)]
pub struct Supervisor {
    children: Children,
    store: Arc<Store>,
    writer: crossbeam_channel::Sender<WriteOp>,
    /// Set by [`LeaveTo`]: the peers that take the queues at shutdown.
    leave_to: Option<Vec<String>>,
}

impl Supervisor {
    /// Starts the children and the supervisor in the current actix system.
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
        let (supervisor_store, writer) = (Arc::clone(&store), tx.clone());
        let batcher = {
            let (store, metrics) = (Arc::clone(&store), Arc::clone(&metrics));
            ActixSupervisor::start(move |_| Batcher::new(store, tx, rx, metrics))
        };
        let exporter_pool = {
            let metrics = Arc::clone(&metrics);
            ActixSupervisor::start(move |_| ExporterPool::new(rt, metrics, plans))
        };
        let health = {
            let recipient = exporter_pool.clone().recipient();
            ActixSupervisor::start(move |_| {
                Health::new(health, store, recipient, export_stuck_after, metrics)
            })
        };
        let shoot_manager = shoots.map(|args| {
            let directory = Arc::clone(&args.directory);
            let addr = ActixSupervisor::start(move |_| ShootManager::new(args));
            // Set now, not when the actor first runs: the receivers may
            // take a request before that.
            directory.set_creator(shoot_manager::creator(addr.clone()));
            addr
        });
        let children = Children {
            batcher,
            exporter_pool,
            health,
            shoot_manager,
        };
        let addr = Supervisor {
            children: children.clone(),
            store: supervisor_store,
            writer,
            leave_to: None,
        }
        .start();
        (addr, children)
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<LeaveTo> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: LeaveTo, _ctx: &mut Self::Context) {
        self.leave_to = Some(msg.0);
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = actix::ResponseFuture<()>;
    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let c = self.children.clone();
        let (store, writer, leave_to) = (
            Arc::clone(&self.store),
            self.writer.clone(),
            self.leave_to.take(),
        );
        Box::pin(async move {
            tracing::info!("Shutdown: flushing storage");
            c.batcher
                .send(Shutdown {
                    deadline: msg.deadline,
                })
                .await
                .ok();
            tracing::info!("Shutdown: draining queues until the deadline");
            let shutdown = Shutdown {
                deadline: msg.deadline,
            };
            let shoots = async {
                if let Some(m) = &c.shoot_manager {
                    m.send(shutdown).await.ok();
                }
            };
            futures::join!(
                async {
                    c.exporter_pool.send(shutdown).await.ok();
                },
                shoots
            );
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
            c.batcher.send(Shutdown { deadline: grace }).await.ok();
            tracing::info!("Shutdown: storage closed");
        })
    }
}

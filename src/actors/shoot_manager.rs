//! The shoot manager: creates, restarts and expires shoot clients, and is the
//! only writer of the [`ShootDirectory`] the hot path reads.
//!
//! In:
//! - [`EnsureClient`] from the hot path on a directory miss: the client of a
//!   namespace, created now unless `shoots.max_clients` exist (then refused,
//!   counted in `seedgate_shoot_clients_refused_total{reason="at_capacity"}`
//!   and logged at most every 10 s);
//! - [`SetClusters`] when the cluster states change (reload, kube watcher):
//!   a client whose cluster is gone (or gets no client any more) starts its
//!   expiry clock; one whose cluster returns stops it;
//! - [`CrashClient`] (fault injection for tests), [`Stop`], [`Shutdown`].
//!
//! The clients are supervised tasks in the manager's [`Tasks`]: every tick
//! it starts again a client whose task ended (a panic: counted in
//! `seedgate_actor_restarts_total{actor="shoot_client"}`; the new run
//! resumes from the same queues), and removes clients whose cluster has been
//! gone for `shoots.expiry`: out of the directory first (new records no
//! longer reach them), then their task stops and their queues are dropped
//! in LMDB, the records they still held counted as
//! `seedgate_shoot_dropped_records_total{reason="client_expired"}`, and
//! their per-shoot series removed from `/metrics`.
//!
//! At start (also after a restart of the manager, whose clients end with
//! it) it empties the directory and resumes a client for every shoot queue
//! that still holds data on disk, so nothing acknowledged before a restart
//! is stranded; those whose cluster is unknown start their expiry clock at
//! once. A shoot whose queues were empty gets its client again on its next
//! record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message};
use arc_swap::ArcSwap;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::runtime::Handle;

use super::loops::{CHECK_EVERY, Tasks};
use super::shoot_client::ShootClient;
use super::unit::Mailbox;
use super::{Shutdown, Stop};
use crate::cluster_state::ClientDecision;
use crate::config::{BatchConfig, RetryConfig, ShootsConfig};
use crate::delivery::factory::{Factory, Spec};
use crate::delivery::plan::{DeliveryPlan, drain};
use crate::metrics::Metrics;
use crate::metrics::shoot::Reason;
use crate::routing::shoots::{ClientRefused, ShootCreator, ShootDirectory, ShootLink};
use crate::routing::{Clusters, Destination, DestinationKind, signal_index};
use crate::store::{Store, WriteOp};

/// The unit's name: its restarts are counted under it.
pub const NAME: &str = "shoot_manager";

/// Log a refusal at capacity at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The client of a namespace, created if needed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<ShootLink>, ClientRefused>")]
pub struct EnsureClient {
    /// The shoot namespace.
    pub namespace: String,
}

/// The cluster states changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetClusters(pub Arc<Clusters>);

/// Fault injection: make the client of a namespace panic. Answers whether
/// such a client exists.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct CrashClient {
    /// The shoot namespace.
    pub namespace: String,
}

/// What the manager needs to build clients.
#[derive(Debug, Clone)]
pub struct ShootManagerArgs {
    /// The `shoots` block.
    pub config: ShootsConfig,
    /// Effective batching of shoot clients.
    pub batch: BatchConfig,
    /// Effective retry of shoot clients.
    pub retry: RetryConfig,
    /// Builds each client's destinations.
    pub factory: Factory,
    /// The store (queues are created in it).
    pub store: Arc<Store>,
    /// The writer channel (deletes, drops).
    pub writer: crossbeam_channel::Sender<WriteOp>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The runtime delivery loops and exporters run on.
    pub rt: Handle,
    /// The map the hot path reads.
    pub directory: Arc<ShootDirectory>,
    /// The cluster states at start.
    /// The cluster states: those at start, then the latest
    /// [`SetClusters`] (shared, so that a restarted manager knows them).
    pub clusters: Arc<ArcSwap<Clusters>>,
}

/// The drop of an expired client's queues, until LMDB committed it.
type PendingDrop = futures::future::Shared<BoxFuture<'static, ()>>;

struct Managed {
    client: ShootClient,
    link: Arc<ShootLink>,
    /// When its cluster was last seen gone; `None` while it exists.
    gone_since: Option<Instant>,
}

/// See the module doc.
pub struct ShootManager {
    args: ShootManagerArgs,
    clients: HashMap<String, Managed>,
    /// The clients' tasks, by namespace.
    tasks: Tasks<ShootClient>,
    /// Expired clients whose queues are being dropped: a new client of the
    /// same namespace waits for this, or it would get the old queue.
    dropping: HashMap<String, PendingDrop>,
    last_refusal_log: Option<Instant>,
}

impl std::fmt::Debug for ShootManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShootManager")
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ShootManager {
    /// A manager with no clients yet.
    pub fn new(args: ShootManagerArgs) -> Self {
        let tasks = Tasks::new(args.rt.clone());
        Self {
            args,
            clients: HashMap::new(),
            tasks,
            dropping: HashMap::new(),
            last_refusal_log: None,
        }
    }

    fn tick_every(&self) -> Duration {
        (self.args.config.expiry / 4).clamp(Duration::from_millis(50), CHECK_EVERY)
    }

    fn cluster_is_gone(&self, namespace: &str) -> bool {
        !matches!(
            self.args.clusters.load().get(namespace),
            Some(ClientDecision::Client(_))
        )
    }

    fn set_gauge(&self) {
        self.args
            .metrics
            .shoot
            .clients
            .set(i64::try_from(self.clients.len()).unwrap_or(i64::MAX));
    }

    fn refuse(&mut self, namespace: &str, refused: ClientRefused) -> ClientRefused {
        self.args
            .metrics
            .shoot
            .refused
            .get_or_create(&Reason {
                reason: refused.kind(),
            })
            .inc();
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY)
        {
            self.last_refusal_log = Some(now);
            tracing::warn!(shoot = namespace, error = %refused, "No shoot client; this shoot's data for its own backend is dropped (further refusals are counted in seedgate_shoot_clients_refused_total)");
        }
        refused
    }

    fn build(&self, namespace: &str) -> Result<(Arc<ShootLink>, Vec<DeliveryPlan>), String> {
        let a = &self.args;
        let output = a.config.output_for(namespace);
        let mut destinations: [Option<Arc<Destination>>; 3] = Default::default();
        let mut plans = Vec::new();
        for &signal in &a.config.signals {
            let plan = a
                .factory
                .build(Spec {
                    name: namespace,
                    kind: DestinationKind::Shoot,
                    signal,
                    output: &output,
                    queue: a.config.queue,
                    batch: a.batch,
                    retry: a.retry,
                    loadbalancing: None,
                    processors: &[],
                })
                .map_err(|e| format!("{e:#}"))?;
            destinations[signal_index(signal)] = Some(Arc::clone(&plan.delivery.destination));
            plans.push(plan);
        }
        let link = Arc::new(ShootLink {
            namespace: namespace.to_owned(),
            destinations,
        });
        Ok((link, plans))
    }

    fn ensure(&mut self, namespace: &str) -> Result<Arc<ShootLink>, ClientRefused> {
        if let Some(m) = self.clients.get(namespace) {
            return Ok(Arc::clone(&m.link));
        }
        let max = self.args.config.max_clients;
        if self.clients.len() >= max {
            return Err(self.refuse(namespace, ClientRefused::AtCapacity { max }));
        }
        let (link, plans) = match self.build(namespace) {
            Ok(built) => built,
            Err(e) => return Err(self.refuse(namespace, ClientRefused::Build(e))),
        };
        self.args
            .metrics
            .shoot
            .init_client(namespace, link.all().map(|d| d.signal));
        let client = ShootClient::new(namespace, plans);
        self.tasks.start(client.clone());
        let gone_since = self.cluster_is_gone(namespace).then(Instant::now);
        self.args.directory.insert(Arc::clone(&link));
        self.clients.insert(
            namespace.to_owned(),
            Managed {
                client,
                link: Arc::clone(&link),
                gone_since,
            },
        );
        self.args.metrics.shoot.created.inc();
        self.set_gauge();
        tracing::info!(
            shoot = namespace,
            endpoint = %self.args.config.endpoint_for(namespace),
            clients = self.clients.len(),
            "Created a shoot client"
        );
        Ok(link)
    }

    /// Clients for shoot queues that still hold data from before a restart.
    fn resume(&mut self) {
        let mut namespaces: Vec<String> = self
            .args
            .store
            .queues()
            .iter()
            .filter(|q| q.entries() > 0)
            .filter_map(|q| Destination::shoot_of_queue(&q.name).map(str::to_owned))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        for ns in namespaces {
            match self.ensure(&ns) {
                Ok(_) => tracing::info!(shoot = %ns, "Resumed a shoot client for data on disk"),
                Err(e) => {
                    tracing::error!(shoot = %ns, error = %e, "Cannot resume the shoot client of data on disk; it stays on disk");
                }
            }
        }
    }

    fn expire(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let expiry = self.args.config.expiry;
        let expired: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, m)| {
                m.gone_since
                    .is_some_and(|t| now.duration_since(t) >= expiry)
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in expired {
            let Some(m) = self.clients.remove(&ns) else {
                continue;
            };
            self.args.directory.remove(&ns);
            self.tasks.stop(&ns);
            let mut held = 0;
            let mut replies = Vec::new();
            for d in m.link.all() {
                let records = d.queue.records();
                held += records;
                let (reply, done) = tokio::sync::oneshot::channel();
                let op = WriteOp::Drop {
                    queue: Arc::clone(&d.queue),
                    reply: Some(reply),
                };
                if self.args.writer.send(op).is_err() {
                    tracing::error!(shoot = %ns, "The storage writer is gone; the expired client's queue stays on disk");
                    continue;
                }
                replies.push((d.signal, records, done));
            }
            let metrics = Arc::clone(&self.args.metrics);
            let dropped: BoxFuture<'static, ()> = Box::pin(async move {
                for (signal, records, done) in replies {
                    if let Ok(Ok(())) = done.await {
                        metrics
                            .shoot
                            .count_dropped("client_expired", signal, records);
                    }
                }
            });
            let dropped = dropped.shared();
            self.dropping.insert(ns.clone(), dropped.clone());
            let finished = ns.clone();
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(dropped).map(move |(), this, _ctx| {
                    this.dropping.remove(&finished);
                }),
            );
            // A send still finishing (its abort takes effect at its next
            // yield) cannot bring the series back: it sets only series
            // that exist (see `Delivery::set_failing`).
            self.args.metrics.shoot.forget(&ns);
            self.args
                .metrics
                .shoot
                .removed
                .get_or_create(&Reason { reason: "expired" })
                .inc();
            self.set_gauge();
            tracing::info!(shoot = %ns, dropped_records = held, expiry_s = expiry.as_secs_f64(), "Removed an expired shoot client: its cluster is gone");
        }
    }

    fn set_clusters(&mut self, clusters: Arc<Clusters>) {
        self.args.clusters.store(clusters);
        let now = Instant::now();
        let gone: Vec<(String, bool)> = self
            .clients
            .keys()
            .map(|ns| (ns.clone(), self.cluster_is_gone(ns)))
            .collect();
        for (ns, is_gone) in gone {
            if let Some(m) = self.clients.get_mut(&ns) {
                match (is_gone, m.gone_since) {
                    (true, None) => {
                        tracing::info!(shoot = %ns, "The shoot's cluster is gone; its client expires unless it returns");
                        m.gone_since = Some(now);
                    }
                    (false, Some(_)) => {
                        tracing::info!(shoot = %ns, "The shoot's cluster is back; its client stays");
                        m.gone_since = None;
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Actor for ShootManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Links of an earlier run of the manager lead to clients that ended
        // with it: the next record of such a shoot asks for a new one.
        self.args.directory.clear();
        self.set_gauge();
        self.resume();
        ctx.run_interval(self.tick_every(), |this, ctx| {
            this.tasks.restart_dead(&this.args.metrics);
            this.expire(Instant::now(), ctx);
        });
    }
}

impl Handler<EnsureClient> for ShootManager {
    type Result = actix::ResponseActFuture<Self, Result<Arc<ShootLink>, ClientRefused>>;
    fn handle(&mut self, msg: EnsureClient, _ctx: &mut Self::Context) -> Self::Result {
        // A client of a namespace whose old client is still being dropped is
        // created once the drop is committed, over fresh queues.
        let pending = self.dropping.get(&msg.namespace).cloned();
        let wait: BoxFuture<'static, ()> = match pending {
            Some(dropped) => Box::pin(dropped),
            None => Box::pin(std::future::ready(())),
        };
        Box::pin(
            actix::fut::wrap_future::<_, Self>(wait)
                .map(move |(), this, _ctx| this.ensure(&msg.namespace)),
        )
    }
}

impl Handler<SetClusters> for ShootManager {
    type Result = ();
    fn handle(&mut self, msg: SetClusters, _ctx: &mut Self::Context) {
        self.set_clusters(msg.0);
    }
}

impl Handler<CrashClient> for ShootManager {
    type Result = bool;
    fn handle(&mut self, msg: CrashClient, _ctx: &mut Self::Context) -> bool {
        match self.clients.get(&msg.namespace) {
            Some(m) => {
                m.client.crash();
                true
            }
            None => false,
        }
    }
}

impl Handler<Stop> for ShootManager {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Shutdown> for ShootManager {
    type Result = actix::ResponseFuture<()>;
    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let queues = self
            .clients
            .values()
            .flat_map(|m| m.link.all().map(|d| Arc::clone(&d.queue)))
            .collect();
        Box::pin(drain(queues, msg.deadline, "shoot clients"))
    }
}

/// The hot path's way to ask the manager for a client: through its
/// mailbox, which outlives a restart of the manager.
pub fn creator(manager: Mailbox<ShootManager>) -> Arc<dyn ShootCreator> {
    Arc::new(ManagerCreator(manager))
}

#[derive(Debug)]
struct ManagerCreator(Mailbox<ShootManager>);

impl ShootCreator for ManagerCreator {
    fn create(
        &self,
        namespace: String,
    ) -> BoxFuture<'static, Result<Arc<ShootLink>, ClientRefused>> {
        let addr = self.0.clone();
        Box::pin(async move {
            addr.send(EnsureClient { namespace })
                .await
                .unwrap_or(Err(ClientRefused::NotRunning))
        })
    }
}

//! The load-balancing exporter: one pipeline, a set of backends, every
//! record on the backend that owns its routing key.
//!
//! ```text
//! ingest ─(split by key, router::Route)──────────────▶ backend queue ─▶ delivery loop ─▶ backend
//!    └─(no ring yet, or a backend queue full)─▶ pipeline queue ─▶ balancer ─(split, Move)─┘
//! ```
//!
//! Ingest splits the pipeline's share of each request by routing key
//! ([`crate::proto::split`]) over the ring ([`ring::Ring`]) the balancer
//! published ([`router`]) and appends each part to its backend's LMDB queue
//! in the transaction that acknowledges the request: each record is
//! written and read once, as for one destination. The pipeline's own queue
//! takes a request only while there is no ring (before the resolver's
//! first answer, or with every backend out) or when a backend queue has no
//! room; the balancer reads it, splits each batch and moves the parts into
//! the backend queues with a single [`WriteOp::Move`] (the append to the
//! backend queues and the delete from the pipeline queue commit in one
//! transaction). Each backend queue has an ordinary delivery loop
//! (batching, retries, TLS, auth: the output block is shared).
//!
//! Membership comes from the resolver ([`resolver`]: a static list, DNS,
//! or a Kubernetes Service's EndpointSlices)
//! and from health: a backend whose sends have failed without a success for
//! `failover_after` leaves the ring (unless it is the last one), is probed
//! with an empty export request every `probe_interval`, and rejoins on the
//! first success.
//!
//! # The guarantee when a backend leaves or fails
//!
//! When a backend is removed by the resolver or taken out for failing, its
//! delivery loop is stopped and the ring without it is published; once no
//! request split by the old ring is still uncommitted
//! ([`router::Router::quiesce`]), everything still in its queue is split
//! again over the new ring and moved, entry by entry, into the queues of
//! the backends that now own those keys (again one transaction per move).
//! Therefore:
//! - **nothing acknowledged is lost**: an entry is in exactly one queue at
//!   every instant, across crashes too (a restart finds it in the old
//!   backend's queue, which is adopted and re-routed once the resolver has
//!   answered);
//! - **batches the old backend accepted are not sent again**: a delivery
//!   loop deletes an entry only after the backend accepted it, and the
//!   re-route reads the queue after the loop has stopped and the writer has
//!   committed its deletes, so an accepted batch is never there any more;
//! - **the one window for duplicates** is a batch that was in flight when
//!   the loop was stopped: the backend may have taken it without us hearing
//!   the answer. Those records are re-routed too and counted in
//!   `seedgate_lb_possible_duplicate_records_total` (an upper bound: it
//!   counts every in-flight record, answered or not);
//! - keys move only for data not yet delivered: when a backend joins, data
//!   already queued for the old owners of its keys stays with them.
//!
//! # Supervision of the backend loops
//!
//! The backend loops are supervised tasks like every other delivery loop
//! ([`crate::actors::loops::Tasks`], checked on every round of the
//! balancer): a loop that ends or panics is started again with the same
//! backoff (at once, then 1 s doubling to 30 s), counted in
//! `seedgate_actor_restarts_total{actor="lb_backend"}`, the panic message
//! logged. What its share of the keys does meanwhile is decided by the
//! restart's delay:
//! - **restarted at once** (its first failure after a stable run): the
//!   backend keeps its place and its queue. It is down for less than one
//!   round of the balancer; re-routing would move its keys to other backends
//!   (breaking the trace affinity load balancing exists for) and re-send
//!   its in-flight batches elsewhere, for nothing;
//! - **restart delayed** (it failed again within a minute of its start, so
//!   it waits 1 s to 30 s): the backend leaves the ring and its queue is
//!   re-routed, exactly as for a failover (`reason="crashed"`), so its share
//!   neither strands behind a loop that is not running nor, with a full
//!   queue, blocks the whole pipeline; it rejoins the ring when its new run
//!   starts. The restart waits in the task set rather than in a sleeping
//!   task, so no run can start while its queue is being re-routed.
//!
//! Either way a backend counts as up (`seedgate_lb_backend_up`, the ring,
//! the pipeline's health) only while its loop runs, and what the dead run
//! had in flight is counted in `seedgate_lb_possible_duplicate_records_total`:
//! it is sent again, by the new run or by the backend its keys moved to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::actors::loops::{Task, TaskState, Tasks};
use crate::config::{LoadBalancingConfig, OutputConfig};
use crate::delivery::{Delivery, FlowControl};
use crate::exporters::{ExportError, Exporter, Outcome};
use crate::metrics::lb::{Backend as BackendLabels, DestSignal, Rerouted};
use crate::proto::split::split;
use crate::routing::{Destination, DestinationKind};
use crate::store::{AppendPart, Queue, Reply, StoreError, WriteOp};

pub mod faults;
pub mod resolver;
pub mod ring;
pub mod router;

use faults::{Faults, LoopFault, Registration};
use ring::Ring;
use router::{Member, Route, Router};

/// How often the balancer looks at health and membership when idle.
const TICK: Duration = Duration::from_millis(250);

/// The `actor` label of a backend loop's restarts.
const RESTART_ACTOR: &str = "lb_backend";

/// What makes a pipeline load-balanced: its `loadbalancing` block and the
/// output every backend shares.
#[derive(Debug, Clone)]
pub struct Balance {
    /// The pipeline's `loadbalancing` block.
    pub config: LoadBalancingConfig,
    /// The output; its endpoint is replaced per backend.
    pub output: OutputConfig,
    /// Set with `admin.fault_injection`: where the backend loops register
    /// their crash switch.
    pub faults: Option<Arc<Faults>>,
}

impl Balance {
    /// The output of the backend at `endpoint`.
    fn output_for(&self, endpoint: &str) -> OutputConfig {
        let mut output = self.output.clone();
        output.endpoint = Some(endpoint.to_owned());
        output
    }

    /// Builds the exporter of every backend the config names (or of one
    /// stand-in for a DNS name) so that bad settings fail at start, not at
    /// the first resolution.
    ///
    /// # Errors
    /// The first exporter that cannot be built.
    pub fn check(&self, signal: crate::signal::Signal, label: &str) -> Result<(), ExportError> {
        let r = &self.config.resolver;
        let endpoints: Vec<String> = match (&r.static_endpoints, &r.dns) {
            (Some(list), _) => list.clone(),
            (None, Some(dns)) => vec![format!("{}://{}:{}", dns.scheme, dns.hostname, dns.port)],
            (None, None) => Vec::new(),
        };
        for ep in endpoints {
            Exporter::build(&self.output_for(&ep), signal, label)?;
        }
        Ok(())
    }
}

/// The LMDB queue name of a backend of `destination`.
fn backend_queue_name(destination: &Destination, endpoint: &str) -> String {
    let name = format!("{}@{endpoint}", destination.name);
    Destination::queue_name_of(DestinationKind::Backend, &name, destination.signal)
}

/// A task aborted when its handle is dropped: the resolver ends with its
/// balancer (the backend loops do too: dropping their [`Tasks`] aborts
/// them, so a restarted balancer never finds a second loop on a queue).
struct Owned(JoinHandle<()>);

impl Drop for Owned {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One backend of the set.
struct Backend {
    /// Its queue, exporter and heartbeat.
    delivery: Delivery,
    /// When it was last probed (while out for failing).
    probed: Instant,
    /// Its loop's crash switch, with fault injection.
    fault: Option<Registration>,
}

impl Backend {
    fn queue(&self) -> &Arc<Queue> {
        &self.delivery.destination.queue
    }

    /// Its loop's key in the balancer's [`Tasks`]: `<pipeline>@<endpoint>`.
    fn key(&self) -> &str {
        &self.delivery.destination.name
    }

    fn plan(&self) -> BackendLoop {
        BackendLoop {
            delivery: self.delivery.clone(),
            fault: self.fault.as_ref().map(Registration::fault),
        }
    }
}

/// A backend's delivery loop, as a supervised task.
#[derive(Debug, Clone)]
struct BackendLoop {
    delivery: Delivery,
    fault: Option<Arc<LoopFault>>,
}

impl Task for BackendLoop {
    fn key(&self) -> String {
        self.delivery.destination.name.clone()
    }

    /// A backend gets a new heartbeat each time it (re)joins from outside
    /// the set; a restart runs the same plan.
    fn same_plan(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.delivery.heartbeat, &other.delivery.heartbeat)
    }

    fn actor(&self) -> &'static str {
        RESTART_ACTOR
    }

    async fn run(self) {
        match self.fault {
            Some(fault) => {
                let name = self.delivery.destination.name.clone();
                fault.guard(&name, self.delivery.run()).await;
            }
            None => self.delivery.run().await,
        }
    }
}

/// Why a backend's queue is re-routed: the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Removed,
    Failed,
    Crashed,
}

impl Why {
    const fn as_str(self) -> &'static str {
        match self {
            Why::Removed => "removed",
            Why::Failed => "failed",
            Why::Crashed => "crashed",
        }
    }
}

/// Runs the balancer of `input` (the pipeline's destination and delivery
/// settings) until aborted.
pub async fn run(input: Delivery, balance: Arc<Balance>) {
    let (tx, rx) = watch::channel(None);
    let label: Arc<str> = Arc::from(input.destination.metrics_label());
    let resolver = Owned(tokio::spawn(resolver::run(
        balance.config.resolver.clone(),
        Arc::clone(&label),
        tx,
        Arc::clone(&input.metrics),
    )));
    input.metrics.lb.init(&label, input.destination.signal);
    // A pipeline whose ingest does not split (tail sampling feeds its
    // queue) still gets a router of its own; no one reads it.
    let router = input.destination.balance.clone().unwrap_or_default();
    let token = router.take_over();
    let mut balancer = Balancer {
        input,
        balance,
        label,
        backends: BTreeMap::new(),
        loops: Tasks::new(tokio::runtime::Handle::current()),
        ring: Ring::default(),
        resolved: rx,
        probes: JoinSet::new(),
        orphans: Vec::new(),
        router,
        token,
        _resolver: resolver,
    };
    balancer.run().await;
}

struct Balancer {
    input: Delivery,
    balance: Arc<Balance>,
    label: Arc<str>,
    backends: BTreeMap<String, Backend>,
    /// The backends' delivery loops, supervised.
    loops: Tasks<BackendLoop>,
    ring: Ring,
    resolved: watch::Receiver<resolver::Backends>,
    probes: JoinSet<(String, bool)>,
    /// Queues of backends that left, still holding data.
    orphans: Vec<Arc<Queue>>,
    /// Where the ring is published for ingest to split by.
    router: Arc<Router>,
    /// This balancer's right to publish there.
    token: u64,
    _resolver: Owned,
}

impl Drop for Balancer {
    /// Ingest falls back to the pipeline queue until the next balancer
    /// publishes.
    fn drop(&mut self) {
        self.router.publish(self.token, None);
    }
}

impl Balancer {
    async fn run(&mut self) {
        // Backend queues left by an earlier run: their data goes out again
        // once the first resolution says who the backends are.
        let prefix = backend_queue_name(&self.input.destination, "");
        let left: Vec<Arc<Queue>> = self
            .input
            .store
            .queues()
            .into_iter()
            .filter(|q| q.name.starts_with(&prefix))
            .collect();
        // Whatever an earlier balancer of this pipeline published is
        // withdrawn (`take_over`); what ingest still splits by it commits
        // before those queues are read.
        self.router.quiesce().await;
        while self.resolved.borrow().is_none() {
            self.input.heartbeat.beat();
            if tokio::time::timeout(TICK, self.resolved.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return;
            }
        }
        self.apply_membership().await;
        for queue in left {
            let endpoint = queue.name.get(prefix.len()..).unwrap_or_default();
            if !self.backends.contains_key(endpoint) {
                tracing::info!(destination = %self.label, backend = endpoint, records = queue.records(), "Re-routing what a backend of an earlier run left");
                self.orphans.push(queue);
            }
        }
        loop {
            self.input.heartbeat.beat();
            self.supervise().await;
            if self.resolved.has_changed().unwrap_or(false) {
                self.apply_membership().await;
            }
            self.adopt_orphans().await;
            self.check_health().await;
            self.record_health();
            self.refresh_gauges();
            if self.distribute().await {
                tokio::task::yield_now().await;
                continue;
            }
            let queue = Arc::clone(&self.input.destination.queue);
            // `changed()` marks the value seen, so its arm applies it.
            let mut membership = false;
            tokio::select! {
                r = self.resolved.changed() => membership = r.is_ok(),
                _ = tokio::time::timeout(TICK, queue.appended()) => {}
                Some(done) = self.probes.join_next() => {
                    if let Ok((endpoint, ok)) = done {
                        self.probed(&endpoint, ok);
                    }
                }
            }
            if membership {
                self.apply_membership().await;
            }
        }
    }

    fn labels(&self, endpoint: &str) -> BackendLabels {
        BackendLabels {
            destination: self.label.to_string(),
            signal: self.input.destination.signal.as_str(),
            backend: endpoint.to_owned(),
        }
    }

    fn dest_signal(&self) -> DestSignal {
        DestSignal {
            destination: self.label.to_string(),
            signal: self.input.destination.signal.as_str(),
        }
    }

    /// Adds the backends the resolver now names, removes the others; their
    /// queues become orphans, re-routed over the new ring once their loops
    /// are gone.
    async fn apply_membership(&mut self) {
        let wanted: BTreeSet<String> = self
            .resolved
            .borrow_and_update()
            .clone()
            .unwrap_or_default();
        let gone: Vec<String> = self
            .backends
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for endpoint in wanted {
            if !self.backends.contains_key(&endpoint) {
                self.add(endpoint);
            }
        }
        let mut stopped = Vec::new();
        for endpoint in gone {
            if let Some(backend) = self.backends.remove(&endpoint) {
                tracing::info!(destination = %self.label, backend = %endpoint, queued = backend.queue().records(), "Backend removed; re-routing its queue");
                stopped.push(self.stop(&endpoint, &backend));
                self.input.metrics.lb.forget(&self.labels(&endpoint));
                self.orphans.push(Arc::clone(backend.queue()));
            }
        }
        self.rebuild_ring();
        if !stopped.is_empty() {
            futures::future::join_all(stopped).await;
            self.settle().await;
        }
    }

    /// Supervises the backend loops (see "Supervision" in the module doc):
    /// counts what a loop that ended had in flight, starts it again through
    /// [`Tasks::restart_dead`], and brings the ring in line with which loops
    /// run: a backend whose loop waits for its restart leaves it and its
    /// queue is re-routed; one whose new run started rejoins.
    async fn supervise(&mut self) {
        let mut ended = false;
        for b in self.backends.values() {
            if self.loops.state(b.key()) == Some(TaskState::Ended) {
                self.count_possible_duplicates(b);
                ended = true;
            }
        }
        if ended {
            // The dead run's deletes of what its backend accepted commit
            // before anything reads its queue again.
            self.settle().await;
        }
        self.loops.restart_dead(&self.input.metrics);
        let (mut down, mut back) = (Vec::new(), Vec::new());
        for (endpoint, b) in &self.backends {
            let in_ring = self.ring.members().any(|m| m == endpoint);
            match (in_ring, self.up(b)) {
                (true, false) => down.push(endpoint.clone()),
                (false, true) => back.push(endpoint.clone()),
                _ => {}
            }
        }
        if down.is_empty() && back.is_empty() {
            return;
        }
        for endpoint in &back {
            tracing::info!(destination = %self.label, backend = %endpoint, "The backend's delivery loop runs again; back in the ring");
            self.set_up(endpoint, true);
        }
        for endpoint in &down {
            tracing::warn!(destination = %self.label, backend = %endpoint, "The backend's delivery loop waits for its restart; taking the backend out of the ring and re-routing its queue");
            self.set_up(endpoint, false);
        }
        self.rebuild_ring();
        if down.is_empty() {
            return;
        }
        // Also for a loop that ended since the check above.
        self.settle().await;
        for endpoint in down {
            if let Some(queue) = self.backends.get(&endpoint).map(|b| Arc::clone(b.queue())) {
                self.reroute(&queue, Why::Crashed).await;
            }
        }
    }

    /// Whether the backend's loop runs: only then is it in the ring.
    fn up(&self, backend: &Backend) -> bool {
        self.loops.state(backend.key()) == Some(TaskState::Running)
    }

    /// Re-routes the queues of backends that left, and drops each once it
    /// is empty; those no backend can take yet wait for the next round.
    async fn adopt_orphans(&mut self) {
        if self.ring.is_empty() {
            return;
        }
        let orphans = std::mem::take(&mut self.orphans);
        for queue in orphans {
            self.reroute(&queue, Why::Removed).await;
            if queue.entries() == 0 {
                self.drop_queue(&queue).await;
            } else {
                self.orphans.push(queue);
            }
        }
    }

    /// Creates the queue, exporter and loop of a new backend.
    fn add(&mut self, endpoint: String) {
        let d = &self.input.destination;
        let queue = match self.input.store.queue(&backend_queue_name(d, &endpoint)) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(destination = %self.label, backend = %endpoint, error = %e, "Cannot create the backend's queue; skipping it");
                return;
            }
        };
        let exporter = match Exporter::build(
            &self.balance.output_for(&endpoint),
            d.signal,
            &self.label,
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(destination = %self.label, backend = %endpoint, error = %e, "Cannot build the backend's exporter; skipping it");
                return;
            }
        };
        let mut delivery = self.input.clone();
        delivery.destination = Arc::new(Destination {
            name: format!("{}@{endpoint}", self.label),
            kind: DestinationKind::Backend,
            signal: d.signal,
            queue,
            limits: d.limits,
            // The pipeline's processors ran before its queue.
            processors: Arc::default(),
            balance: None,
        });
        delivery.exporter = Arc::new(exporter);
        // Concurrency and rate limits are per backend: a dead backend's
        // retries must not hold the permits of the live ones.
        delivery.flow = Arc::new(FlowControl::new(
            &self.input.batch,
            self.balance.output.rate_limit.as_ref(),
        ));
        let fault = self
            .balance
            .faults
            .as_ref()
            .map(|f| f.register(&self.label, d.signal.as_str(), &endpoint));
        let mut backend = Backend {
            delivery,
            probed: Instant::now(),
            fault,
        };
        self.start(&endpoint, &mut backend);
        tracing::info!(destination = %self.label, backend = %endpoint, "Backend added");
        self.backends.insert(endpoint, backend);
    }

    /// Starts a backend's delivery loop with a fresh heartbeat (its failure
    /// history starts again).
    fn start(&mut self, endpoint: &str, backend: &mut Backend) {
        backend.delivery.heartbeat = Arc::default();
        self.loops.start(backend.plan());
        self.set_up(endpoint, true);
    }

    /// Stops a backend's delivery loop; what it had in flight may have
    /// reached the backend and is counted as possibly duplicated. The
    /// future resolves once the loop is gone.
    fn stop(&mut self, endpoint: &str, backend: &Backend) -> impl Future<Output = ()> + use<> {
        // A waiting loop's dead run was counted when it ended.
        if matches!(
            self.loops.state(backend.key()),
            Some(TaskState::Running | TaskState::Ended)
        ) {
            self.count_possible_duplicates(backend);
        }
        self.set_up(endpoint, false);
        self.loops.stop_and_wait(backend.key())
    }

    /// Counts what the backend's loop has in flight as possibly sent twice.
    fn count_possible_duplicates(&self, backend: &Backend) {
        let inflight = backend.delivery.heartbeat.inflight_records();
        if inflight > 0 {
            self.input
                .metrics
                .lb
                .possible_duplicates
                .get_or_create(&self.dest_signal())
                .inc_by(inflight);
        }
    }

    fn set_up(&self, endpoint: &str, up: bool) {
        self.input
            .metrics
            .lb
            .backend_up
            .get_or_create(&self.labels(endpoint))
            .set(i64::from(up));
    }

    /// Rebuilds the ring from the backends whose loops run and publishes
    /// it for ingest.
    fn rebuild_ring(&mut self) {
        let up: Vec<String> = self
            .backends
            .iter()
            .filter(|(_, b)| self.up(b))
            .map(|(e, _)| e.clone())
            .collect();
        self.ring = Ring::new(up);
        let members: Option<Vec<Member>> = self
            .ring
            .members()
            .map(|m| {
                self.backends.get(m).map(|b| Member {
                    queue: Arc::clone(b.queue()),
                    routed: self
                        .input
                        .metrics
                        .lb
                        .routed_records
                        .get_or_create(&self.labels(m))
                        .clone(),
                })
            })
            .collect();
        let route = members.filter(|m| !m.is_empty()).map(|members| {
            Route::new(
                self.input.destination.signal,
                self.balance.config.routing_key,
                self.ring.clone(),
                members,
                self.input.destination.limits.max_bytes.0,
            )
        });
        self.router.publish(self.token, route);
    }

    /// Takes out backends failing for too long; probes those that are out.
    async fn check_health(&mut self) {
        let after = self.balance.config.failover_after;
        if !after.is_zero() {
            let failing: Vec<String> = self
                .backends
                .iter()
                .filter(|(_, b)| {
                    self.up(b)
                        && b.delivery
                            .heartbeat
                            .failing_for()
                            .is_some_and(|f| f >= after)
                })
                .map(|(e, _)| e.clone())
                .collect();
            for endpoint in failing {
                // The last backend stays: moving its data nowhere helps no one.
                if self.ring.len() <= 1 {
                    break;
                }
                let Some(mut backend) = self.backends.remove(&endpoint) else {
                    continue;
                };
                tracing::warn!(destination = %self.label, backend = %endpoint, failing_for = ?after, queued = backend.queue().records(), "Backend failing for too long; taking it out and re-routing its queue");
                self.input
                    .metrics
                    .lb
                    .failovers
                    .get_or_create(&self.dest_signal())
                    .inc();
                let stopped = self.stop(&endpoint, &backend);
                backend.probed = Instant::now();
                let queue = Arc::clone(backend.queue());
                self.backends.insert(endpoint, backend);
                self.rebuild_ring();
                stopped.await;
                self.settle().await;
                self.reroute(&queue, Why::Failed).await;
            }
        }
        let every = self.balance.config.probe_interval;
        let output_timeout = self.balance.output.timeout;
        for (endpoint, backend) in &mut self.backends {
            // Only a backend out for failing has no loop in the set.
            if self.loops.state(backend.key()).is_some() || backend.probed.elapsed() < every {
                continue;
            }
            backend.probed = Instant::now();
            let exporter = Arc::clone(&backend.delivery.exporter);
            let endpoint = endpoint.clone();
            self.probes.spawn(async move {
                let probe = exporter.send(Bytes::new(), 0);
                let ok = matches!(
                    tokio::time::timeout(output_timeout, probe).await,
                    Ok(Outcome::Accepted { .. })
                );
                (endpoint, ok)
            });
        }
    }

    /// A probe's answer: a backend that answers rejoins the ring.
    fn probed(&mut self, endpoint: &str, ok: bool) {
        if !ok {
            return;
        }
        let Some(mut backend) = self.backends.remove(endpoint) else {
            return;
        };
        if self.loops.state(backend.key()).is_none() {
            tracing::info!(destination = %self.label, backend = %endpoint, "Backend answers again; back in the ring");
            self.start(endpoint, &mut backend);
        }
        self.backends.insert(endpoint.to_owned(), backend);
        self.rebuild_ring();
    }

    /// The pipeline is healthy while some backend in the ring is: its
    /// heartbeat is what health and the operator read.
    fn record_health(&self) {
        let any_ok = self
            .backends
            .values()
            .any(|b| self.up(b) && b.delivery.heartbeat.failing_for().is_none());
        self.input.heartbeat.record(!any_ok);
    }

    fn refresh_gauges(&self) {
        for (endpoint, b) in &self.backends {
            self.input
                .metrics
                .lb
                .backend_queue_records
                .get_or_create(&self.labels(endpoint))
                .set(i64::try_from(b.queue().records()).unwrap_or(i64::MAX));
        }
    }

    /// Moves one batch of the pipeline queue to the backends; false when
    /// there is nothing to move or it cannot be moved now.
    async fn distribute(&mut self) -> bool {
        let input = Arc::clone(&self.input.destination.queue);
        let limit = self.input.destination.limits.max_bytes.0;
        let moved = self.move_one(&input, limit).await;
        let blocked = matches!(moved, Moved::Blocked);
        self.input
            .metrics
            .lb
            .blocked
            .get_or_create(&self.dest_signal())
            .set(i64::from(blocked));
        matches!(moved, Moved::Some(_))
    }

    /// Moves everything in `queue` to the backends now owning its keys.
    async fn reroute(&mut self, queue: &Arc<Queue>, why: Why) {
        loop {
            match self.move_one(queue, u64::MAX).await {
                Moved::Some(records) => {
                    self.input
                        .metrics
                        .lb
                        .rerouted_records
                        .get_or_create(&Rerouted {
                            destination: self.label.to_string(),
                            signal: self.input.destination.signal.as_str(),
                            reason: why.as_str(),
                        })
                        .inc_by(records);
                }
                Moved::Nothing => return,
                Moved::Blocked => {
                    tracing::warn!(destination = %self.label, queue = %queue.name, "No backend can take the re-routed data now; it stays queued");
                    return;
                }
            }
        }
    }

    /// Splits the oldest batch of `from` over the ring and moves it, each
    /// part reserved on its backend queue against `limit`.
    async fn move_one(&mut self, from: &Arc<Queue>, limit: u64) -> Moved {
        if self.ring.is_empty() {
            return if from.entries() > 0 {
                Moved::Blocked
            } else {
                Moved::Nothing
            };
        }
        let batch = match self.input.store.read_batch(
            from,
            0,
            self.input.batch.max_bytes.0,
            self.input.batch.max_records,
        ) {
            Ok(Some(b)) => b,
            Ok(None) => return Moved::Nothing,
            Err(e) => {
                tracing::error!(destination = %self.label, error = %e, "Cannot read the queue to balance; retrying");
                return Moved::Blocked;
            }
        };
        let signal = self.input.destination.signal;
        let ring = &self.ring;
        let parts = match split(
            signal,
            self.balance.config.routing_key,
            &batch.body,
            ring.len(),
            &|h| ring.owner(h),
        ) {
            Ok(parts) => parts,
            Err(e) => {
                // Validated at ingest, so this is corruption: keep the data
                // where it is would block the pipeline forever; send it whole
                // to one backend instead, which will judge it.
                tracing::error!(destination = %self.label, error = %e, "A queued batch does not split; sending it whole to one backend");
                let mut parts = vec![crate::proto::split::Part::default(); ring.len()];
                if let Some(p) = parts.first_mut() {
                    p.body = batch.body.to_vec();
                    p.records = u32::try_from(batch.records).unwrap_or(u32::MAX);
                }
                parts
            }
        };
        let members: Vec<String> = ring.members().map(str::to_owned).collect();
        let mut append = Vec::new();
        let mut routed = Vec::new();
        for (endpoint, part) in members.iter().zip(parts) {
            if part.records == 0 {
                continue;
            }
            // The ring is built from the backends, so each member is one;
            // were it not, moving the batch would lose this part.
            let reserved = self.backends.get(endpoint).and_then(|b| {
                let queue = Arc::clone(b.queue());
                queue
                    .try_reserve(part.body.len() as u64, limit)
                    .then_some(queue)
            });
            let Some(queue) = reserved else {
                crate::store::release_parts(&append);
                return Moved::Blocked;
            };
            routed.push((endpoint.clone(), part.records));
            append.push(AppendPart {
                queue,
                records: part.records,
                payload: Bytes::from(part.body),
            });
        }
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Move {
            parts: append,
            from: Arc::clone(from),
            first: batch.first,
            last: batch.last,
            reply,
        };
        if self.input.writer.send(op).is_err() {
            return Moved::Blocked;
        }
        match rx.await {
            Ok(Ok(())) => {
                for (endpoint, records) in routed {
                    self.input
                        .metrics
                        .lb
                        .routed_records
                        .get_or_create(&self.labels(&endpoint))
                        .inc_by(u64::from(records));
                }
                Moved::Some(batch.records)
            }
            Ok(Err(e)) => {
                log_move_error(&self.label, &e);
                tokio::time::sleep(TICK).await;
                Moved::Blocked
            }
            Err(_) => Moved::Blocked,
        }
    }

    async fn drop_queue(&self, queue: &Arc<Queue>) {
        self.commit(|reply| WriteOp::Drop {
            queue: Arc::clone(queue),
            reply: Some(reply),
        })
        .await;
    }

    /// Waits until every write sent before is committed: the deletes of
    /// what a stopped loop's backend accepted, so a re-route does not send
    /// that again, and what ingest split by a ring published before (so a
    /// backend that left the ring gets nothing after its last re-route).
    async fn settle(&self) {
        self.router.quiesce().await;
        self.commit(|reply| WriteOp::Flush { reply }).await;
    }

    /// Sends the writer `op` and waits for its answer (none if the writer
    /// is gone: shutting down).
    async fn commit(&self, op: impl FnOnce(Reply) -> WriteOp) {
        let (reply, rx) = oneshot::channel();
        if self.input.writer.send(op(reply)).is_ok() {
            rx.await.ok();
        }
    }
}

fn log_move_error(destination: &str, e: &StoreError) {
    tracing::error!(destination, error = %e, kind = e.kind(), "Cannot move data to the backend queues; retrying");
}

/// What one move did.
enum Moved {
    /// Moved a batch of this many records.
    Some(u64),
    /// The queue is empty.
    Nothing,
    /// Data waits: no ring, a full backend queue or a store error.
    Blocked,
}

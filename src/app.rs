//! Wires the process together: the store, the routing snapshot, the actors,
//! the receivers and the admin port, and the order in which they stop.
//!
//! Threads: the main thread runs the actix system (actors); a multi-thread
//! tokio runtime runs the receivers, the admin port and the delivery loops;
//! one plain thread is the LMDB writer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::actors::health::HealthState;
use crate::actors::kube_watcher::{self, KubeWatcher, KubeWatcherArgs};
use crate::actors::shoot_manager::ShootManagerArgs;
use crate::actors::supervisor::{Adopt, Supervisor, SupervisorArgs};
use crate::actors::unit::{Mailbox, Unit};
use crate::actors::{LeaveTo, Shutdown};
use crate::admin::{self, AdminState};
use crate::config::{Config, ListenerConfig, Validated};
use crate::delivery::factory::{Factory, Spec};
use crate::handoff;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::operator::aggregator::AggregatorCtx;
use crate::operator::lease::{self, Leadership, LeaseConfig};
use crate::operator::pem_store::DirPemStore;
use crate::receivers::{self, ReceiverState};
use crate::reload::Reloader;
use crate::routing::publisher::{Defaults, Publisher, Seed};
use crate::routing::shoots::ShootDirectory;
use crate::routing::{
    Destination, DestinationKind, SeedRoute, Snapshot, clusters_from_config, count_states,
};
use crate::store::{MAX_OPS_PER_COMMIT, Store, StoreOptions, WRITER_CHANNEL, WriteOp};

/// The Lease replicas hold to lead (status and ConfigMap writes).
const LEADER_LEASE: &str = "seedgate-leader";
/// Extra time beyond the export timeout before an attempt counts as stuck.
const STUCK_GRACE: Duration = Duration::from_secs(30);

/// Runtime options that are not part of the configuration file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write the bound addresses as JSON here once every listener is bound
    /// (tests and scripts use port 0).
    pub listen_file: Option<PathBuf>,
    /// Tokio worker threads; 0 means one per core.
    pub worker_threads: usize,
    /// The file the configuration came from; reloaded on SIGHUP and change.
    pub config_file: Option<PathBuf>,
    /// Also act on the Kubernetes API (in-cluster config or KUBECONFIG):
    /// watch `Cluster` resources while their CRD exists.
    pub kube: bool,
}

/// The addresses actually bound.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BoundAddrs {
    /// OTLP/gRPC, if enabled.
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP, if enabled.
    pub http: Option<SocketAddr>,
    /// Admin.
    pub admin: SocketAddr,
}

fn bind(what: &str, listen: &str) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot bind the {what} listener on {listen}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn bind_receiver(what: &str, l: &ListenerConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    if l.enabled {
        bind(what, &l.listen).map(Some)
    } else {
        Ok(None)
    }
}

/// Runs seedgate until SIGTERM or SIGINT, then shuts down in order.
///
/// The steps, in order: the runtime and the Kubernetes client
/// (`runtime`), the store (`open_store`), the configured pipelines
/// (`build_seeds`), the hot path (`build_ingest`), the listeners
/// (`Listeners::bind`); then, on the actix system, the actors, the
/// operator, the receivers and the admin port (`serve`) until a signal,
/// and the shutdown (`shut_down`); last the final fsync.
///
/// # Errors
/// Start-up failures (storage, listeners, exporters); after start-up the
/// process keeps running through failures of its parts.
pub fn run(config: Validated<Config>, opts: RunOptions) -> anyhow::Result<()> {
    // Err means a provider is already installed, which is as good.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let rt = runtime(&opts)?;
    let metrics = Arc::new(Metrics::new());
    metrics.init_actors();
    metrics.init_routing();
    let kube_client = if opts.kube {
        metrics.kube.init();
        Some(rt.block_on(kube::Client::try_default()).context(
            "--kube: cannot build a Kubernetes client (in-cluster config or KUBECONFIG)",
        )?)
    } else {
        None
    };
    let store = open_store(&config)?;
    let (tx, rx) = crossbeam_channel::bounded::<WriteOp>(WRITER_CHANNEL);
    let factory = Factory {
        store: Arc::clone(&store),
        writer: tx.clone(),
        metrics: Arc::clone(&metrics),
        rt: rt.handle().clone(),
        lb_faults: config.admin.fault_injection.then(Arc::default),
        shoot_http: Arc::default(),
        lb_routers: Arc::default(),
    };
    let (seeds, mut stuck_after) = build_seeds(&config, &factory, &metrics)?;
    warn_orphan_queues(&store, &seeds);
    let clusters = Arc::new(clusters_from_config(&config.clusters));
    metrics.shoot.set_clusters(count_states(&clusters));
    let directory = Arc::new(ShootDirectory::default());
    let ingest = build_ingest(&config, &seeds, &clusters, &directory, &factory)?;
    if let Some(s) = &config.shoots {
        stuck_after = stuck_after.max(s.output.timeout + STUCK_GRACE);
    }
    let shoots = config.shoots.as_ref().map(|s| ShootManagerArgs {
        factory: factory.clone(),
        config: s.clone(),
        batch: s.batch.unwrap_or(config.batch),
        retry: s.retry.unwrap_or(config.retry),
        store: Arc::clone(&store),
        writer: tx.clone(),
        metrics: Arc::clone(&metrics),
        rt: rt.handle().clone(),
        directory: Arc::clone(&directory),
        clusters: Arc::new(arc_swap::ArcSwap::new(Arc::clone(&clusters))),
    });
    let health = HealthState::new();
    health.set_unhealthy_after(config.admin.unhealthy_after);
    let listeners = Listeners::bind(&config)?;

    let supervisor = SupervisorArgs {
        rt: rt.handle().clone(),
        store: Arc::clone(&store),
        tx,
        rx,
        metrics: Arc::clone(&metrics),
        plans: seeds.iter().flat_map(|s| s.plans().cloned()).collect(),
        health: Arc::clone(&health),
        export_stuck_after: stuck_after,
        shoots,
    };
    let result = actix::System::new().block_on(serve(Serving {
        config: &config,
        opts: &opts,
        rt: rt.handle().clone(),
        metrics,
        health,
        ingest: Arc::clone(&ingest),
        factory,
        seeds,
        supervisor,
        kube_client,
        listeners,
    }));
    drop(ingest);
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "Final fsync failed");
    }
    tracing::info!("Stopped");
    result
}

/// The tokio runtime of the receivers, the admin port and the delivery
/// loops.
fn runtime(opts: &RunOptions) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("seedgate-io");
    if opts.worker_threads > 0 {
        builder.worker_threads(opts.worker_threads);
    }
    builder.build().context("cannot start the tokio runtime")
}

/// Opens the LMDB store and says how much it resumes with.
fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    let started = Instant::now();
    let store = Store::open(StoreOptions {
        dir: config.storage.data_dir.clone(),
        map_size: config.storage.max_size.0,
        durability: config.storage.durability,
        max_ops_per_commit: MAX_OPS_PER_COMMIT,
    })
    .with_context(|| {
        format!(
            "cannot open the storage in {}",
            config.storage.data_dir.display()
        )
    })?;
    let resumed: u64 = store.queues().iter().map(|q| q.entries()).sum();
    tracing::info!(dir = %config.storage.data_dir.display(), entries = resumed, elapsed_ms = started.elapsed().as_millis() as u64, "Storage open");
    Ok(store)
}

/// The configuration file's pipelines, one seed per pipeline and signal
/// (with its affinity forwarder, if any), and the longest export timeout
/// plus [`STUCK_GRACE`] (the health verdict's "stuck").
fn build_seeds(
    config: &Config,
    factory: &Factory,
    metrics: &Metrics,
) -> anyhow::Result<(Vec<Seed>, Duration)> {
    let mut seeds = Vec::new();
    let mut stuck_after = Duration::ZERO;
    for pipe in &config.pipelines {
        for &signal in &pipe.signals {
            let spec = |name, output, loadbalancing, processors| Spec {
                name,
                kind: DestinationKind::Pipeline,
                signal,
                output,
                queue: config.queue_for(pipe),
                batch: config.batch_for(pipe),
                retry: config.retry_for(pipe),
                loadbalancing,
                processors,
            };
            let plan = factory
                .build(spec(
                    &pipe.name,
                    &pipe.output,
                    pipe.loadbalancing.as_ref(),
                    &pipe.processors,
                ))
                .with_context(|| format!("pipeline {}", pipe.name))?;
            stuck_after = stuck_after.max(pipe.output.timeout + STUCK_GRACE);
            metrics.init_destination(&plan.delivery.destination);
            let mut route = SeedRoute::new(Arc::clone(&plan.ingest), &pipe.input);
            let forwarder = match &pipe.affinity {
                None => None,
                Some(affinity) => {
                    let name = crate::affinity::forwarder_name(&pipe.name);
                    let lb = affinity.loadbalancing();
                    let output = crate::config::AffinityConfig::forward_output(&pipe.name);
                    let f = factory
                        .build(spec(&name, &output, Some(&lb), &[]))
                        .with_context(|| format!("pipeline {}: affinity", pipe.name))?;
                    metrics.init_destination(&f.delivery.destination);
                    route = route.with_forwarder(Arc::clone(&f.ingest));
                    Some(f)
                }
            };
            seeds.push(Seed {
                config: pipe.clone(),
                route,
                plan,
                forwarder,
            });
        }
    }
    Ok((seeds, stuck_after))
}

/// A queue on disk that no pipeline owns is kept (its pipeline may come
/// back), and said so.
fn warn_orphan_queues(store: &Store, seeds: &[Seed]) {
    let used: std::collections::HashSet<u32> = seeds
        .iter()
        .flat_map(Seed::plans)
        .map(|p| p.delivery.destination.queue.id)
        .collect();
    for q in store.queues() {
        let shoot_queue = Destination::shoot_of_queue(&q.name).is_some();
        if !used.contains(&q.id) && !shoot_queue && q.entries() > 0 {
            tracing::warn!(queue = %q.name, entries = q.entries(), "Queue on disk belongs to no configured pipeline; kept until a pipeline of that name returns");
        }
    }
}

/// The hot path: the first routing snapshot and what ingest checks.
fn build_ingest(
    config: &Config,
    seeds: &[Seed],
    clusters: &Arc<crate::routing::Clusters>,
    directory: &Arc<ShootDirectory>,
    factory: &Factory,
) -> anyhow::Result<Arc<Ingest>> {
    let shoot_signals = config.shoots.as_ref().map_or(&[][..], |s| &s.signals[..]);
    let routes = seeds.iter().map(|s| s.route.clone());
    let snapshot = Snapshot::build(&config.routing, routes, shoot_signals, Arc::clone(clusters))
        .context("routing.shoot_namespace_pattern")?;
    let processors = crate::processors::Processors::build(&config.receivers.processors)
        .map_err(|e| anyhow::anyhow!("receivers.{e}"))?;
    Ok(Arc::new(
        Ingest::new(
            snapshot,
            factory.writer.clone(),
            Arc::clone(&factory.metrics),
            config.queue.retry_after,
        )
        .with_shoots(Arc::clone(directory))
        .with_store(Arc::clone(&factory.store))
        .with_limits(crate::proto::Limits {
            max_value_depth: config.receivers.max_value_depth,
        })
        .with_processors(processors),
    ))
}

/// The bound listeners, before anything serves them (a port in use fails
/// the start).
struct Listeners {
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    admin: std::net::TcpListener,
    bound: BoundAddrs,
}

impl Listeners {
    fn bind(config: &Config) -> anyhow::Result<Self> {
        let grpc = bind_receiver("OTLP/gRPC", &config.receivers.grpc)?;
        let http = bind_receiver("OTLP/HTTP", &config.receivers.http)?;
        let admin = bind("admin", &config.admin.listen)?;
        let local = |l: &Option<std::net::TcpListener>| {
            l.as_ref()
                .map(std::net::TcpListener::local_addr)
                .transpose()
        };
        let bound = BoundAddrs {
            grpc: local(&grpc)?,
            http: local(&http)?,
            admin: admin.local_addr()?,
        };
        Ok(Self {
            grpc,
            http,
            admin,
            bound,
        })
    }
}

/// What [`serve`] runs with.
struct Serving<'a> {
    config: &'a Config,
    opts: &'a RunOptions,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    health: Arc<HealthState>,
    ingest: Arc<Ingest>,
    factory: Factory,
    seeds: Vec<Seed>,
    supervisor: SupervisorArgs,
    kube_client: Option<kube::Client>,
    listeners: Listeners,
}

/// On the actix system: starts the actors, the publisher, the operator
/// (with `--kube`), the reloader, the receivers and the admin port; waits
/// for a signal; shuts down.
async fn serve(s: Serving<'_>) -> anyhow::Result<()> {
    let Serving {
        config,
        opts,
        rt,
        metrics,
        health,
        ingest,
        factory,
        seeds,
        supervisor,
        kube_client,
        listeners,
    } = s;
    let (supervisor, children) = Supervisor::start(supervisor);
    let publisher = Arc::new(
        Publisher::new(
            Arc::clone(&ingest),
            children.shoot_manager.clone(),
            Arc::clone(&metrics),
            config.routing.clone(),
            clusters_from_config(&config.clusters),
        )
        .with_pipelines(
            seeds,
            factory.clone(),
            Defaults {
                queue: config.queue,
                batch: config.batch,
                retry: config.retry,
            },
            supervisor.clone().recipient(),
        ),
    );
    // Fault injection for pipeline actors: tests only.
    let pipeline_crash = (config.admin.fault_injection && kube_client.is_some())
        .then(|| tokio::sync::broadcast::channel(16).0);
    let operator = kube_client
        .clone()
        .map(|client| {
            start_operator(
                config,
                &rt,
                client,
                &publisher,
                &metrics,
                &health,
                pipeline_crash.clone(),
            )
        })
        .transpose()?;
    if let Some(op) = &operator {
        supervisor.do_send(Adopt(op.watcher.clone()));
    }
    let reloader = opts.config_file.clone().map(|path| {
        let r = Reloader {
            path,
            running: config.clone(),
            publisher: Arc::clone(&publisher),
            metrics: Arc::clone(&metrics),
        };
        rt.spawn(r.run())
    });

    let (stop_receivers, receivers_stopping) = tokio::sync::watch::channel(false);
    let (stop_admin, admin_stopping) = tokio::sync::watch::channel(false);
    let receivers = start_receivers(
        config,
        &rt,
        &ingest,
        &metrics,
        listeners.grpc,
        listeners.http,
        &receivers_stopping,
    )?;
    let admin_task = {
        let _enter = rt.enter();
        let l = TcpListener::from_std(listeners.admin)?;
        let st = AdminState {
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            ingest: Arc::clone(&ingest),
            pprof: config.admin.pprof,
            shoot_manager: children
                .shoot_manager
                .clone()
                .filter(|_| config.admin.fault_injection),
            pipeline_crash,
            lb_faults: factory.lb_faults.clone(),
            units: config
                .admin
                .fault_injection
                .then(|| supervisor.clone().recipient()),
        };
        rt.spawn(async move {
            if let Err(e) = admin::serve(l, st, until(admin_stopping)).await {
                tracing::error!(error = %e, "Admin server failed");
            }
        })
    };
    let bound = listeners.bound;
    health.set_listeners_bound(true);
    tracing::info!(grpc = ?bound.grpc, http = ?bound.http, admin = %bound.admin, "seedgate is ready");
    if let Some(path) = &opts.listen_file {
        std::fs::write(path, serde_json::to_vec(&bound)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let signal = rt.spawn(wait_for_signal()).await.unwrap_or("unknown");
    shut_down(ShuttingDown {
        signal,
        config,
        rt: &rt,
        metrics: &metrics,
        health: &health,
        ingest: &ingest,
        supervisor: &supervisor,
        leave_client: kube_client,
        grpc: bound.grpc,
        reloader,
        stop_receivers,
        receivers,
    })
    .await;
    stop_admin.send(true).ok();
    actix_rt::time::timeout(Duration::from_secs(1), admin_task)
        .await
        .ok();
    Ok(())
}

/// Resolves once `w` turns true (or its sender is gone).
async fn until(mut w: tokio::sync::watch::Receiver<bool>) {
    w.wait_for(|v| *v).await.ok();
}

/// What the operator runs: the leader election, and the kube watcher
/// (which starts the pipeline actors) for the supervisor to adopt.
struct Operator {
    _election: tokio::task::JoinHandle<()>,
    watcher: Unit,
}

/// Starts the operator part under `--kube`.
fn start_operator(
    config: &Config,
    rt: &tokio::runtime::Handle,
    client: kube::Client,
    publisher: &Arc<Publisher>,
    metrics: &Arc<Metrics>,
    health: &Arc<HealthState>,
    crash: Option<tokio::sync::broadcast::Sender<String>>,
) -> anyhow::Result<Operator> {
    let leadership = Arc::new(Leadership::default());
    let namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned());
    let identity = format!(
        "{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "seedgate".into()),
        rand::random::<u32>()
    );
    tracing::info!(%namespace, %identity, lease = LEADER_LEASE, "Running for leader");
    let election = rt.spawn(lease::run(
        kube::Api::namespaced(client.clone(), &namespace),
        LeaseConfig::new(LEADER_LEASE, identity),
        Arc::clone(&leadership),
        Arc::clone(metrics),
    ));
    let pems = Arc::new(
        DirPemStore::new(config.storage.data_dir.join("pem"))
            .context("cannot create the directory for TLS material from Secrets")?,
    );
    let args = KubeWatcherArgs {
        client: client.clone(),
        rt: rt.clone(),
        publisher: Arc::clone(publisher),
        metrics: Arc::clone(metrics),
        aggregator: Some(AggregatorCtx {
            client,
            publisher: Arc::clone(publisher),
            leadership,
            metrics: Arc::clone(metrics),
            health: Arc::clone(health),
            pems,
            queue_defaults: config.queue,
            namespace,
            max_pipelines: config.operator.pipeline_limit(),
            crash,
        }),
    };
    Ok(Operator {
        _election: election,
        watcher: Unit::actor(
            kube_watcher::NAME,
            actix::System::current().arbiter().clone(),
            Mailbox::default(),
            move || KubeWatcher::new(args.clone()),
        ),
    })
}

/// Serves OTLP/gRPC and OTLP/HTTP on their listeners until `stopping`.
fn start_receivers(
    config: &Config,
    rt: &tokio::runtime::Handle,
    ingest: &Arc<Ingest>,
    metrics: &Arc<Metrics>,
    grpc: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let _enter = rt.enter();
    let tls =
        receivers::tls::ReceiverTls::from_config(&config.receivers).context("receivers.tls")?;
    let limiter = receivers::memory_limiter::start(
        &config.receivers.memory_limiter,
        Arc::clone(&metrics.memory),
    );
    let state = ReceiverState::new(
        Arc::clone(ingest),
        Arc::clone(metrics),
        config.receivers.max_inflight_bytes.0,
    )
    .with_tls(tls)
    .with_idle_timeout(config.receivers.idle_timeout)
    .with_memory_limiter(limiter);
    let max = |l: &ListenerConfig| usize::try_from(l.max_request_bytes.0).unwrap_or(usize::MAX);
    let mut receivers = Vec::new();
    if let Some(l) = grpc {
        let (l, max, state) = (
            TcpListener::from_std(l)?,
            max(&config.receivers.grpc),
            state.clone(),
        );
        let stopping = until(stopping.clone());
        receivers.push(rt.spawn(async move {
            if let Err(e) = receivers::grpc::serve(l, state, max, stopping).await {
                tracing::error!(error = %e, "OTLP/gRPC receiver failed");
            }
        }));
    }
    if let Some(l) = http {
        let (l, max) = (TcpListener::from_std(l)?, max(&config.receivers.http));
        let stopping = until(stopping.clone());
        receivers.push(rt.spawn(async move {
            if let Err(e) = receivers::http::serve(l, state, max, stopping).await {
                tracing::error!(error = %e, "OTLP/HTTP receiver failed");
            }
        }));
    }
    Ok(receivers)
}

/// What [`shut_down`] stops.
struct ShuttingDown<'a> {
    signal: &'static str,
    config: &'a Config,
    rt: &'a tokio::runtime::Handle,
    metrics: &'a Arc<Metrics>,
    health: &'a Arc<HealthState>,
    ingest: &'a Arc<Ingest>,
    supervisor: &'a actix::Addr<Supervisor>,
    /// Set under `--kube`: asks whether this replica leaves its StatefulSet.
    leave_client: Option<kube::Client>,
    grpc: Option<SocketAddr>,
    reloader: Option<tokio::task::JoinHandle<()>>,
    stop_receivers: tokio::sync::watch::Sender<bool>,
    receivers: Vec<tokio::task::JoinHandle<()>>,
}

/// The shutdown order: unready while still accepting (`shutdown_delay`),
/// then (leaving the StatefulSet: no drain, a hand-over) stop accepting,
/// let the receivers finish, and have the supervisor drain and flush until
/// the deadline.
async fn shut_down(s: ShuttingDown<'_>) {
    let ShuttingDown {
        signal,
        config,
        rt,
        metrics,
        health,
        ingest,
        supervisor,
        leave_client,
        grpc,
        reloader,
        stop_receivers,
        receivers,
    } = s;
    // Unready first, still accepting: whoever routes to this process
    // (endpoints, a client's balancer) stops before anything is refused.
    health.set_stopping();
    if !config.shutdown_delay.is_zero() {
        tracing::info!(
            signal,
            delay_s = config.shutdown_delay.as_secs_f64(),
            "Shutting down: unready, still accepting data"
        );
        actix_rt::time::sleep(config.shutdown_delay).await;
    }
    // Leaving the StatefulSet for good (a scale-down): no drain to the
    // backends, the queues go to the replicas that stay.
    let leaving = match (leave_client, grpc) {
        (Some(client), Some(grpc)) => {
            let asked = rt.spawn(handoff::leaving_peers(
                client,
                grpc.port(),
                Arc::clone(metrics),
            ));
            match asked.await {
                Ok(Ok(peers)) => peers,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "Cannot tell whether this replica leaves; keeping the queues on the volume");
                    None
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    let drain = if leaving.is_some() {
        Duration::ZERO
    } else {
        config.shutdown_timeout
    };
    let deadline = Instant::now() + drain;
    if let Some(peers) = leaving {
        supervisor.send(LeaveTo(peers)).await.ok();
    }
    tracing::info!(
        signal,
        timeout_s = drain.as_secs_f64(),
        "Shutting down: no longer accepting data"
    );
    ingest.close();
    if let Some(r) = reloader {
        r.abort();
    }
    health.set_listeners_bound(false);
    stop_receivers.send(true).ok();
    for r in receivers {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let abort = r.abort_handle();
        if actix_rt::time::timeout(left, r).await.is_err() {
            // A client that keeps its connection open must not hold the
            // process past the deadline.
            abort.abort();
        }
    }
    supervisor.send(Shutdown { deadline }).await.ok();
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

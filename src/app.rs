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

use crate::actors::Shutdown;
use crate::actors::health::HealthState;
use crate::actors::kube_watcher::{KubeWatcher, KubeWatcherArgs};
use crate::actors::shoot_manager::ShootManagerArgs;
use crate::actors::supervisor::{Supervisor, SupervisorArgs};
use crate::admin::{self, AdminState};
use crate::config::{Config, ListenerConfig};
use crate::destinations::{Factory, Spec};
use crate::ingest::Ingest;
use crate::lease::{self, Leadership, LeaseConfig};
use crate::metrics::Metrics;
use crate::operator::aggregator::AggregatorCtx;
use crate::operator::pem_store::DirPemStore;
use crate::receivers::{self, ReceiverState};
use crate::reload::Reloader;
use crate::routing::publisher::{Defaults, Publisher, Seed};
use crate::routing::shoots::ShootDirectory;
use crate::routing::{
    Destination, DestinationKind, SeedRoute, Snapshot, clusters_from_config, count_states,
};
use crate::store::{Store, StoreOptions, WriteOp};

/// Operations the writer takes from its channel at most per group commit.
const MAX_OPS_PER_COMMIT: usize = 4096;
/// Capacity of the channel to the writer: receivers wait (async, through the
/// commit reply) rather than grow memory when the disk is slower than the
/// network.
const WRITER_CHANNEL: usize = 16 * 1024;
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
/// # Errors
/// Start-up failures (storage, listeners, exporters); after start-up the
/// process keeps running through failures of its parts.
pub fn run(config: Config, opts: RunOptions) -> anyhow::Result<()> {
    // Err means a provider is already installed, which is as good.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("seedgate-io");
    if opts.worker_threads > 0 {
        builder.worker_threads(opts.worker_threads);
    }
    let rt = builder.build().context("cannot start the tokio runtime")?;
    let metrics = Arc::new(Metrics::new());
    metrics.init_actors();
    metrics.init_routing();
    if opts.kube {
        metrics.kube.init();
    }
    let kube_client = if opts.kube {
        Some(rt.block_on(kube::Client::try_default()).context(
            "--kube: cannot build a Kubernetes client (in-cluster config or KUBECONFIG)",
        )?)
    } else {
        None
    };

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

    let (tx, rx) = crossbeam_channel::bounded::<WriteOp>(WRITER_CHANNEL);
    let factory = Factory {
        store: Arc::clone(&store),
        writer: tx.clone(),
        metrics: Arc::clone(&metrics),
        rt: rt.handle().clone(),
        lb_faults: config.admin.fault_injection.then(Arc::default),
    };
    let mut file_seeds = Vec::new();
    let mut stuck_after = Duration::ZERO;
    for pipe in &config.pipelines {
        for &signal in &pipe.signals {
            let plan = factory
                .build(Spec {
                    name: &pipe.name,
                    kind: DestinationKind::Pipeline,
                    signal,
                    output: &pipe.output,
                    queue: config.queue_for(pipe),
                    batch: config.batch_for(pipe),
                    retry: config.retry_for(pipe),
                    loadbalancing: pipe.loadbalancing.as_ref(),
                    processors: &pipe.processors,
                })
                .with_context(|| format!("pipeline {}", pipe.name))?;
            stuck_after = stuck_after.max(pipe.output.timeout + STUCK_GRACE);
            metrics.init_destination(&plan.delivery.destination);
            file_seeds.push(Seed {
                config: pipe.clone(),
                route: SeedRoute::new(Arc::clone(&plan.ingest), &pipe.input),
                plan,
            });
        }
    }
    let used: std::collections::HashSet<u32> = file_seeds
        .iter()
        .map(|s| s.plan.delivery.destination.queue.id)
        .collect();
    for q in store.queues() {
        let shoot_queue = Destination::shoot_of_queue(&q.name).is_some();
        if !used.contains(&q.id) && !shoot_queue && q.entries() > 0 {
            tracing::warn!(queue = %q.name, entries = q.entries(), "Queue on disk belongs to no configured pipeline; kept until a pipeline of that name returns");
        }
    }

    let clusters = Arc::new(clusters_from_config(&config.clusters));
    metrics.shoot.set_clusters(count_states(&clusters));
    let shoot_signals = config.shoots.as_ref().map_or(&[][..], |s| &s.signals[..]);
    let seeds = file_seeds.iter().map(|s| s.route.clone());
    let snapshot = Snapshot::build(&config.routing, seeds, shoot_signals, Arc::clone(&clusters))
        .context("routing.shoot_namespace_pattern")?;
    let directory = Arc::new(ShootDirectory::default());
    let ingest = Arc::new(
        Ingest::new(
            snapshot,
            tx.clone(),
            Arc::clone(&metrics),
            config.queue.retry_after,
        )
        .with_shoots(Arc::clone(&directory))
        .with_limits(crate::proto::Limits {
            max_value_depth: config.receivers.max_value_depth,
        })
        .with_processors(
            crate::processors::Processors::build(&config.receivers.processors)
                .map_err(|e| anyhow::anyhow!("receivers.{e}"))?,
        ),
    );
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
        clusters: Arc::clone(&clusters),
    });
    if let Some(s) = &config.shoots {
        stuck_after = stuck_after.max(s.output.timeout + STUCK_GRACE);
    }
    let health = HealthState::new();
    health.set_unhealthy_after(config.admin.unhealthy_after);

    let grpc_l = bind_receiver("OTLP/gRPC", &config.receivers.grpc)?;
    let http_l = bind_receiver("OTLP/HTTP", &config.receivers.http)?;
    let admin_l = bind("admin", &config.admin.listen)?;
    let bound = BoundAddrs {
        grpc: grpc_l
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?,
        http: http_l
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?,
        admin: admin_l.local_addr()?,
    };

    let system = actix::System::new();
    let result = system.block_on(async {
        let (supervisor, children) = Supervisor::start(SupervisorArgs {
            rt: rt.handle().clone(),
            store: Arc::clone(&store),
            tx: tx.clone(),
            rx,
            metrics: Arc::clone(&metrics),
            plans: file_seeds.iter().map(|s| s.plan.clone()).collect(),
            health: Arc::clone(&health),
            export_stuck_after: stuck_after,
            shoots,
        });
        let publisher = Arc::new(
            Publisher::new(
                Arc::clone(&ingest),
                children.shoot_manager.clone(),
                Arc::clone(&metrics),
                config.routing.clone(),
                clusters_from_config(&config.clusters),
            )
            .with_pipelines(
                file_seeds,
                factory.clone(),
                Defaults {
                    queue: config.queue,
                    batch: config.batch,
                    retry: config.retry,
                },
                children.exporter_pool.clone(),
            ),
        );
        let leadership = Arc::new(Leadership::default());
        let namespace = kube_client.as_ref().map(|client| {
            std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned())
        });
        let _election = kube_client.as_ref().zip(namespace.clone()).map(|(client, namespace)| {
            let identity = format!(
                "{}-{:08x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "seedgate".into()),
                rand::random::<u32>()
            );
            tracing::info!(%namespace, %identity, lease = LEADER_LEASE, "Running for leader");
            rt.spawn(lease::run(
                kube::Api::namespaced(client.clone(), &namespace),
                LeaseConfig::new(LEADER_LEASE, identity),
                Arc::clone(&leadership),
                Arc::clone(&metrics),
            ))
        });
        let pems = match kube_client.as_ref() {
            Some(_) => Some(Arc::new(
                DirPemStore::new(config.storage.data_dir.join("pem"))
                    .context("cannot create the directory for TLS material from Secrets")?,
            )),
            None => None,
        };
        // Fault injection for pipeline actors: tests only.
        let pipeline_crash = (config.admin.fault_injection && kube_client.is_some())
            .then(|| tokio::sync::broadcast::channel(16).0);
        let _kube_watcher = kube_client.map(|client| {
            let aggregator = pems.map(|pems| AggregatorCtx {
                client: client.clone(),
                publisher: Arc::clone(&publisher),
                leadership: Arc::clone(&leadership),
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
                pems,
                queue_defaults: config.queue,
                namespace: namespace.clone().unwrap_or_default(),
                max_pipelines: config.operator.pipeline_limit(),
                crash: pipeline_crash.clone(),
            });
            let args = KubeWatcherArgs {
                client,
                rt: rt.handle().clone(),
                publisher: Arc::clone(&publisher),
                metrics: Arc::clone(&metrics),
                aggregator,
            };
            actix::Supervisor::start(move |_| KubeWatcher::new(args))
        });
        let reloader = opts.config_file.clone().map(|path| {
            let r = Reloader {
                path,
                running: config.clone(),
                publisher: Arc::clone(&publisher),
                metrics: Arc::clone(&metrics),
            };
            rt.spawn(r.run())
        });
        drop(tx);

        let (stop_receivers, receivers_stopping) = tokio::sync::watch::channel(false);
        let (stop_admin, admin_stopping) = tokio::sync::watch::channel(false);
        let until = |mut w: tokio::sync::watch::Receiver<bool>| async move {
            w.wait_for(|v| *v).await.ok();
        };
        let receiver_tls = { let _enter = rt.enter(); receivers::tls::ReceiverTls::from_config(&config.receivers).context("receivers.tls")? };
        let limiter = { let _enter = rt.enter(); receivers::memory_limiter::start(&config.receivers.memory_limiter, Arc::clone(&metrics.memory)) };
        let state = ReceiverState::new(Arc::clone(&ingest), Arc::clone(&metrics), config.receivers.max_inflight_bytes.0)
            .with_tls(receiver_tls)
            .with_idle_timeout(config.receivers.idle_timeout)
            .with_memory_limiter(limiter);
        let mut receivers = Vec::new();
        {
            let _enter = rt.enter();
            if let Some(l) = grpc_l {
                let l = TcpListener::from_std(l)?;
                let max = usize::try_from(config.receivers.grpc.max_request_bytes.0).unwrap_or(usize::MAX);
                let state = state.clone();
                let stopping = receivers_stopping.clone();
                receivers.push(rt.spawn(async move {
                    if let Err(e) = receivers::grpc::serve(l, state, max, until(stopping)).await {
                        tracing::error!(error = %e, "OTLP/gRPC receiver failed");
                    }
                }));
            }
            if let Some(l) = http_l {
                let l = TcpListener::from_std(l)?;
                let max = usize::try_from(config.receivers.http.max_request_bytes.0).unwrap_or(usize::MAX);
                let state = state.clone();
                let stopping = receivers_stopping.clone();
                receivers.push(rt.spawn(async move {
                    if let Err(e) = receivers::http::serve(l, state, max, until(stopping)).await {
                        tracing::error!(error = %e, "OTLP/HTTP receiver failed");
                    }
                }));
            }
        }
        let admin_task = {
            let _enter = rt.enter();
            let l = TcpListener::from_std(admin_l)?;
            let st = AdminState { metrics: Arc::clone(&metrics), health: Arc::clone(&health), ingest: Arc::clone(&ingest), pprof: config.admin.pprof, shoot_manager: children.shoot_manager.clone().filter(|_| config.admin.fault_injection), pipeline_crash: pipeline_crash.clone(), lb_faults: factory.lb_faults.clone() };
            rt.spawn(async move {
                if let Err(e) = admin::serve(l, st, until(admin_stopping)).await {
                    tracing::error!(error = %e, "Admin server failed");
                }
            })
        };
        health.set_listeners_bound(true);
        tracing::info!(grpc = ?bound.grpc, http = ?bound.http, admin = %bound.admin, "seedgate is ready");
        if let Some(path) = &opts.listen_file {
            std::fs::write(path, serde_json::to_vec(&bound)?).with_context(|| format!("cannot write {}", path.display()))?;
        }

        let signal = rt.spawn(wait_for_signal()).await.unwrap_or("unknown");
        let deadline = Instant::now() + config.shutdown_timeout;
        tracing::info!(signal, timeout_s = config.shutdown_timeout.as_secs_f64(), "Shutting down: no longer accepting data");
        ingest.close();
        if let Some(r) = reloader {
            r.abort();
        }
        health.set_listeners_bound(false);
        stop_receivers.send(true).ok();
        for r in receivers {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            let abort = r.abort_handle();
            if actix_rt::time::timeout(left, r).await.is_err() {
                // A client that keeps its connection open must not hold the
                // process past the deadline.
                abort.abort();
            }
        }
        supervisor.send(Shutdown { deadline }).await.ok();
        stop_admin.send(true).ok();
        actix_rt::time::timeout(Duration::from_secs(1), admin_task).await.ok();
        anyhow::Ok(())
    });
    drop(ingest);
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "Final fsync failed");
    }
    tracing::info!("Stopped");
    result
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

//! The one place that publishes cluster states and routing rules: it merges
//! the static `clusters:` of the configuration file with the `Cluster`
//! resources the kube watcher sees, rebuilds the routing snapshot, and tells
//! the shoot manager.
//!
//! Two sources feed it: the reloader (the file: routing rules and static
//! clusters) and the kube watcher (`Cluster` objects, or `None` while the
//! `Cluster` CRD does not exist, which falls back to the file alone). A
//! `Cluster` resource wins over a static entry of the same name: the file is
//! the embedded mode's stand-in for what the API server knows.
//!
//! Seed pipelines work the same way per signal: while pipeline resources of
//! a kind are watched ([`Publisher::set_kube_pipelines`] with `Some`), they
//! replace the file's pipelines of that signal; `None` (the CRD is gone)
//! falls back to the file's. A pipeline whose configuration did not change
//! keeps its destination and delivery loop; the exporter pool is told the
//! new set, and the snapshot swapped.

use std::sync::{Arc, Mutex, PoisonError};

use actix::Recipient;

use super::{Clusters, DestinationKind, SeedRoute, count_states, signal_index};
use crate::actors::exporter_pool::SetDestinations;
use crate::actors::shoot_manager::{SetClusters, ShootManager};
use crate::actors::unit::Mailbox;
use crate::config::{BatchConfig, PipelineConfig, QueueConfig, RetryConfig, RoutingConfig};
use crate::delivery::factory::{Factory, Spec};
use crate::delivery::plan::DeliveryPlan;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::signal::Signal;

struct Sources {
    routing: RoutingConfig,
    file: Clusters,
    kube: Option<Clusters>,
    /// The file's pipelines, per signal.
    file_seeds: [Vec<Seed>; 3],
    /// Pipeline resources per signal, while their kind is watched.
    kube_seeds: [Option<Vec<Seed>>; 3],
    /// Per signal, the term of the aggregator allowed to publish: bumped
    /// when a kind's watch starts and when it stops, so a stopped
    /// aggregator's publish that lands after the stop changes nothing.
    kube_terms: [u64; 3],
}

/// The right of one aggregator run to publish a signal's pipelines
/// ([`Publisher::open_kube_pipelines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeTerm {
    signal: Signal,
    term: u64,
}

/// The file's top-level limits, which pipeline resources start from too.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `queue`.
    pub queue: QueueConfig,
    /// `batch`.
    pub batch: BatchConfig,
    /// `retry`.
    pub retry: RetryConfig,
}

/// One seed pipeline destination: its config, route and delivery plan.
#[derive(Debug, Clone)]
pub struct Seed {
    /// What it was built from.
    pub config: PipelineConfig,
    /// How blocks reach it.
    pub route: SeedRoute,
    /// Its delivery loop's setup.
    pub plan: DeliveryPlan,
    /// With `affinity`: the forwarder's, which routed blocks reach first.
    pub forwarder: Option<DeliveryPlan>,
}

impl Seed {
    /// Every delivery plan it runs.
    pub fn plans(&self) -> impl Iterator<Item = &DeliveryPlan> {
        std::iter::once(&self.plan).chain(&self.forwarder)
    }
}

/// See the module doc.
pub struct Publisher {
    ingest: Arc<Ingest>,
    shoot_manager: Option<Mailbox<ShootManager>>,
    exporter_pool: Option<Recipient<SetDestinations>>,
    factory: Option<(Factory, Defaults)>,
    metrics: Arc<Metrics>,
    sources: Mutex<Sources>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher starting from the configuration's routing and clusters
    /// (already in the ingest's snapshot).
    pub fn new(
        ingest: Arc<Ingest>,
        shoot_manager: Option<Mailbox<ShootManager>>,
        metrics: Arc<Metrics>,
        routing: RoutingConfig,
        file: Clusters,
    ) -> Self {
        Self {
            ingest,
            shoot_manager,
            exporter_pool: None,
            factory: None,
            metrics,
            sources: Mutex::new(Sources {
                routing,
                file,
                kube: None,
                file_seeds: Default::default(),
                kube_seeds: Default::default(),
                kube_terms: [0; 3],
            }),
        }
    }

    /// Lets pipeline resources replace the file's pipelines: `file_seeds`
    /// are the file's (already running), new destinations are built with
    /// `factory` and run by `exporter_pool`.
    #[must_use]
    pub fn with_pipelines(
        mut self,
        file_seeds: Vec<Seed>,
        factory: Factory,
        defaults: Defaults,
        exporter_pool: Recipient<SetDestinations>,
    ) -> Self {
        let s = self
            .sources
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for seed in file_seeds {
            s.file_seeds[signal_index(seed.plan.delivery.destination.signal)].push(seed);
        }
        self.factory = Some((factory, defaults));
        self.exporter_pool = Some(exporter_pool);
        self
    }

    /// A new term for an aggregator of `signal`'s pipeline kind: only its
    /// publishes count until the next open or close.
    pub fn open_kube_pipelines(&self, signal: Signal) -> KubeTerm {
        let mut s = self.lock();
        let i = signal_index(signal);
        s.kube_terms[i] += 1;
        KubeTerm {
            signal,
            term: s.kube_terms[i],
        }
    }

    /// `signal`'s kind is no longer watched: the file's pipelines apply
    /// again, and no publish of an earlier term changes that. (Aborting
    /// the aggregator's task is not enough: a task on another thread may
    /// be in the middle of its publish when it is aborted.)
    pub fn close_kube_pipelines(&self, signal: Signal) {
        let mut s = self.lock();
        s.kube_terms[signal_index(signal)] += 1;
        self.set_kube_seeds(&mut s, signal, None);
    }

    /// The pipelines from pipeline resources of `term`'s signal. Each
    /// pipeline is built once; an unchanged one keeps its destination and
    /// loop. A term that has ended publishes nothing.
    ///
    /// # Errors
    /// The pipelines that could not be built, with why (their queue or
    /// exporter); the others are published.
    pub fn set_kube_pipelines(
        &self,
        term: KubeTerm,
        pipelines: Vec<PipelineConfig>,
    ) -> Vec<(String, String)> {
        let mut s = self.lock();
        if s.kube_terms[signal_index(term.signal)] != term.term {
            tracing::debug!(signal = %term.signal, "A stopped aggregator's publish ignored");
            return Vec::new();
        }
        self.set_kube_seeds(&mut s, term.signal, Some(pipelines))
    }

    fn set_kube_seeds(
        &self,
        s: &mut Sources,
        signal: Signal,
        pipelines: Option<Vec<PipelineConfig>>,
    ) -> Vec<(String, String)> {
        let Some((factory, defaults)) = &self.factory else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        let next = pipelines.map(|pipes| {
            let old = s.kube_seeds[signal_index(signal)]
                .take()
                .unwrap_or_default();
            pipes
                .into_iter()
                .filter_map(|config| {
                    if let Some(same) = old.iter().find(|o| o.config == config) {
                        return Some(same.clone());
                    }
                    let spec = Spec {
                        name: &config.name,
                        kind: DestinationKind::Pipeline,
                        signal,
                        output: &config.output,
                        queue: config.queue.unwrap_or(defaults.queue),
                        batch: config.batch.unwrap_or(defaults.batch),
                        retry: config.retry.unwrap_or(defaults.retry),
                        loadbalancing: config.loadbalancing.as_ref(),
                        processors: &config.processors,
                    };
                    match factory.build(spec) {
                        Ok(plan) => {
                            self.metrics.init_destination(&plan.delivery.destination);
                            let route = SeedRoute::new(Arc::clone(&plan.ingest), &config.input);
                            Some(Seed {
                                config,
                                route,
                                plan,
                                forwarder: None,
                            })
                        }
                        Err(e) => {
                            failed.push((config.name.clone(), format!("{e:#}")));
                            None
                        }
                    }
                })
                .collect()
        });
        s.kube_seeds[signal_index(signal)] = next;
        let seeds: Vec<&Seed> = (0..3)
            .flat_map(|i| match &s.kube_seeds[i] {
                Some(k) => k.iter().collect::<Vec<_>>(),
                None => s.file_seeds[i].iter().collect(),
            })
            .collect();
        let snapshot = self
            .ingest
            .snapshot()
            .with_seeds(seeds.iter().map(|seed| seed.route.clone()));
        self.ingest.swap_snapshot(snapshot);
        if let Some(pool) = &self.exporter_pool {
            pool.do_send(SetDestinations(
                seeds
                    .iter()
                    .flat_map(|seed| seed.plans().cloned())
                    .collect(),
            ));
        }
        failed
    }

    /// New routing rules and static clusters from the file.
    ///
    /// # Errors
    /// When the shoot pattern does not compile; nothing changes then.
    pub fn set_file(&self, routing: RoutingConfig, file: Clusters) -> Result<(), regex::Error> {
        let mut s = self.lock();
        let (old_routing, old_file) = (s.routing.clone(), std::mem::take(&mut s.file));
        s.routing = routing;
        s.file = file;
        let published = self.publish(&s);
        if published.is_err() {
            s.routing = old_routing;
            s.file = old_file;
        }
        published
    }

    /// The `Cluster` resources, or `None` when the kind is not served (its
    /// CRD is absent): then the file's clusters alone.
    pub fn set_kube(&self, kube: Option<Clusters>) {
        let mut s = self.lock();
        s.kube = kube;
        if let Err(e) = self.publish(&s) {
            // The pattern compiled when the file was taken; not reachable.
            tracing::error!(error = %e, "Cannot publish the cluster states");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, s: &Sources) -> Result<(), regex::Error> {
        let mut merged = s.file.clone();
        if let Some(kube) = &s.kube {
            merged.extend(kube.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let merged = Arc::new(merged);
        let snapshot = self
            .ingest
            .snapshot()
            .rebuild(&s.routing, Arc::clone(&merged))?;
        self.ingest.swap_snapshot(snapshot);
        self.metrics.shoot.set_clusters(count_states(&merged));
        if let Some(m) = &self.shoot_manager {
            m.do_send(SetClusters(merged));
        }
        Ok(())
    }
}

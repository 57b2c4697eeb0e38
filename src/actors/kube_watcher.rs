//! The kube watcher: follows the CustomResourceDefinitions seedgate depends
//! on and watches a kind only while its CRD exists and is Established.
//!
//! Those kinds are Gardener's `Cluster`
//! (`clusters.extensions.gardener.cloud`, cluster-scoped), whose objects
//! become the cluster states the router and the shoot manager act on,
//! through the [`Publisher`], merged over the file's static `clusters:`; and
//! the three Kyma pipeline kinds, each handled by its aggregator
//! (`crate::operator::aggregator`), whose pipelines replace the file's of
//! their signal while the CRD exists. An aggregator runs one pipeline actor
//! per pipeline (`crate::operator::pipeline_actor`), and each pipeline actor watches the
//! Secrets its pipeline references.
//!
//! ```text
//!   CRD watch task ──CrdChanged──▶ KubeWatcher ──start/abort──▶ Cluster watch task
//!   (all CRDs, tokio)              (this actor)      │           (tokio) ──set_kube──▶ Publisher
//!                                                    └─start/abort──▶ aggregator × 3 kinds
//!                                                                     └─▶ pipeline actor × N
//!                                                                         (Secret watches)
//! ```
//!
//! - CRD absent at start, or deleted later: no Cluster watch runs, routing
//!   uses the file's clusters alone (`set_kube(None)`); the process and the
//!   data path carry on. The same for a pipeline CRD: its aggregator is
//!   aborted, which aborts its pipeline actors and their Secret watches,
//!   and the file's pipelines of that signal apply again
//!   (`close_kube_pipelines(signal)`, which also ends the aborted
//!   aggregator's term, so a publish it was in the middle of is ignored).
//! - CRD created (Established): the Cluster watch (or the kind's
//!   aggregator) starts, lists, and publishes; every change after that is
//!   published again.
//! - Watch errors (410 Gone, API server restarts, network) are retried by
//!   kube's watcher with its default backoff; each is counted in
//!   `seedgate_kube_watch_errors_total{kind}`.
//! - A Cluster this process cannot read keeps its previous state (see
//!   `cluster_state`), with a warning.
//!
//! The watch tasks and the aggregators are units in this actor's
//! [`Tasks`]: one that ends (a panic) is started again alone, counted in
//! `seedgate_actor_restarts_total{actor="kube_watch"}` (an aggregator
//! under `aggregator`). The actor itself is a unit of the supervisor's set
//! (`actor="kube_watcher"`): when it stops, its tasks are aborted with it
//! and the new actor starts them again; the watchers relist, so nothing is
//! missed.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message};
use futures::StreamExt as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::runtime::Handle;

use super::Stop;
use super::loops::{CHECK_EVERY, Tasks};
use super::unit::Unit;
use crate::cluster_state::{self, ClientDecision};
use crate::metrics::Metrics;
use crate::operator::PipelineKind;
use crate::operator::aggregator::{self, AggregatorCtx, PipelineResource};
use crate::operator::crds::{LogPipeline, MetricPipeline, TracePipeline};
use crate::routing::Clusters;
use crate::routing::publisher::{KubeTerm, Publisher};

/// The CRD of Gardener's `Cluster`.
pub const CLUSTER_CRD: &str = "clusters.extensions.gardener.cloud";

/// Gardener's `Cluster` kind (`extensions.gardener.cloud/v1alpha1`,
/// cluster-scoped), for dynamic access.
pub fn cluster_resource() -> ApiResource {
    ApiResource {
        group: "extensions.gardener.cloud".into(),
        version: "v1alpha1".into(),
        api_version: "extensions.gardener.cloud/v1alpha1".into(),
        kind: "Cluster".into(),
        plural: "clusters".into(),
    }
}

/// What the watcher needs.
#[derive(Clone)]
pub struct KubeWatcherArgs {
    /// A client for the API server.
    pub client: kube::Client,
    /// The runtime the watch tasks run on.
    pub rt: Handle,
    /// Where cluster states go.
    pub publisher: Arc<Publisher>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// What the pipeline aggregators need; `None`: pipelines stay the file's.
    pub aggregator: Option<AggregatorCtx>,
}

impl std::fmt::Debug for KubeWatcherArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeWatcherArgs").finish_non_exhaustive()
    }
}

/// A CRD we depend on appeared, became Established, or went away.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CrdChanged {
    /// The CRD's name, e.g. [`CLUSTER_CRD`].
    pub name: String,
    /// Whether it exists and is Established.
    pub established: bool,
}

/// The actor's unit name: its restarts are counted under it.
pub const NAME: &str = "kube_watcher";
/// What a watch task's restarts are counted under.
const WATCH: &str = "kube_watch";
/// What an aggregator's restarts are counted under.
const AGGREGATOR: &str = "aggregator";
const CLUSTERS: &str = "clusters";

/// See the module doc.
#[derive(Debug)]
pub struct KubeWatcher {
    args: KubeWatcherArgs,
    /// The CRD watch, the Cluster watch and the aggregators, by key.
    tasks: Tasks<Unit>,
}

impl KubeWatcher {
    /// A watcher that starts its tasks when started.
    pub fn new(args: KubeWatcherArgs) -> Self {
        let tasks = Tasks::new(args.rt.clone());
        Self { args, tasks }
    }

    fn stop_tasks(&mut self) {
        self.tasks.stop_all();
        self.args.metrics.kube.set_watching("Cluster", false);
        for kind in PipelineKind::ALL {
            self.args.metrics.kube.set_watching(kind.kind(), false);
        }
    }

    /// Starts or stops the aggregator of a pipeline kind as its CRD comes
    /// and goes.
    fn pipeline_crd(&mut self, kind: PipelineKind, established: bool) {
        let Some(ctx) = self.args.aggregator.clone() else {
            return;
        };
        let key = format!("{AGGREGATOR}/{}", kind.kind());
        let running = self.tasks.state(&key).is_some();
        match (established, running) {
            (true, false) => {
                tracing::info!(
                    kind = kind.kind(),
                    "The pipeline CRD is established; watching pipelines"
                );
                let term = self.args.publisher.open_kube_pipelines(kind.signal());
                let unit = match kind {
                    PipelineKind::Log => aggregator_unit::<LogPipeline>(ctx, term),
                    PipelineKind::Metric => aggregator_unit::<MetricPipeline>(ctx, term),
                    PipelineKind::Trace => aggregator_unit::<TracePipeline>(ctx, term),
                };
                self.tasks.start(unit.keyed(key));
                self.args.metrics.kube.set_watching(kind.kind(), true);
            }
            (false, true) => {
                tracing::warn!(
                    kind = kind.kind(),
                    "The pipeline CRD is gone; the configuration file's pipelines of this signal apply again"
                );
                self.tasks.stop(&key);
                self.args.publisher.close_kube_pipelines(kind.signal());
                self.args.metrics.kube.set_watching(kind.kind(), false);
            }
            _ => {}
        }
    }
}

impl Actor for KubeWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, addr, metrics) = (
            self.args.client.clone(),
            ctx.address(),
            Arc::clone(&self.args.metrics),
        );
        let crds = Unit::task(WATCH, move || {
            watch_crds(client.clone(), addr.clone(), Arc::clone(&metrics))
        });
        self.tasks.start(crds.keyed("crds"));
        ctx.run_interval(CHECK_EVERY, |this, _ctx| {
            this.tasks.restart_dead(&this.args.metrics);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.stop_tasks();
    }
}

impl Handler<CrdChanged> for KubeWatcher {
    type Result = ();
    fn handle(&mut self, msg: CrdChanged, _ctx: &mut Self::Context) {
        if let Some(kind) = PipelineKind::ALL
            .into_iter()
            .find(|k| k.crd_name() == msg.name)
        {
            self.pipeline_crd(kind, msg.established);
            return;
        }
        if msg.name != CLUSTER_CRD {
            return;
        }
        let running = self.tasks.state(CLUSTERS).is_some();
        match (msg.established, running) {
            (true, false) => {
                tracing::info!(crd = %msg.name, "The Cluster CRD is established; watching Clusters");
                let (client, publisher, metrics) = (
                    self.args.client.clone(),
                    Arc::clone(&self.args.publisher),
                    Arc::clone(&self.args.metrics),
                );
                let clusters = Unit::task(WATCH, move || {
                    watch_clusters(client.clone(), Arc::clone(&publisher), Arc::clone(&metrics))
                });
                self.tasks.start(clusters.keyed(CLUSTERS));
                self.args.metrics.kube.set_watching("Cluster", true);
            }
            (false, true) => {
                tracing::warn!(crd = %msg.name, "The Cluster CRD is gone; routing falls back to the configuration file's clusters");
                self.tasks.stop(CLUSTERS);
                self.args.publisher.set_kube(None);
                self.args.metrics.kube.set_watching("Cluster", false);
            }
            _ => {}
        }
    }
}

impl Handler<Stop> for KubeWatcher {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The aggregator of kind `K` as a unit of the watcher's set.
fn aggregator_unit<K: PipelineResource>(ctx: AggregatorCtx, term: KubeTerm) -> Unit {
    Unit::task(AGGREGATOR, move || aggregator::run::<K>(ctx.clone(), term))
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
        && crd.metadata.deletion_timestamp.is_none()
}

/// Watches every CRD and tells `watcher` about the ones it cares for.
async fn watch_crds(client: kube::Client, watcher: Addr<KubeWatcher>, metrics: Arc<Metrics>) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Names seen during a (re)list, to learn which CRDs are absent.
    let mut listed: Option<Vec<String>> = None;
    let tell = |name: String, established: bool| {
        watcher.do_send(CrdChanged { name, established });
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listed = Some(Vec::new()),
            Ok(Event::InitApply(crd)) => {
                let name = crd.metadata.name.clone().unwrap_or_default();
                tell(name.clone(), is_established(&crd));
                if let Some(l) = listed.as_mut() {
                    l.push(name);
                }
            }
            Ok(Event::InitDone) => {
                if !listed
                    .take()
                    .unwrap_or_default()
                    .iter()
                    .any(|n| n == CLUSTER_CRD)
                {
                    tell(CLUSTER_CRD.to_owned(), false);
                }
            }
            Ok(Event::Apply(crd)) => {
                tell(
                    crd.metadata.name.clone().unwrap_or_default(),
                    is_established(&crd),
                );
            }
            Ok(Event::Delete(crd)) => tell(crd.metadata.name.clone().unwrap_or_default(), false),
            Err(e) => {
                metrics.kube.watch_error("CustomResourceDefinition");
                tracing::warn!(error = %e, "Watching CRDs failed; retrying with backoff");
            }
        }
    }
}

/// Watches Gardener `Cluster` objects and publishes their states.
async fn watch_clusters(client: kube::Client, publisher: Arc<Publisher>, metrics: Arc<Metrics>) {
    let api: Api<DynamicObject> = Api::all_with(client, &cluster_resource());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known = Clusters::new();
    let mut init: Option<Clusters> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => init = Some(HashMap::new()),
            Ok(Event::InitApply(obj)) => {
                if let (Some(i), Some((name, d))) = (init.as_mut(), read_cluster(&obj, &known)) {
                    i.insert(name, d);
                }
            }
            Ok(Event::InitDone) => {
                known = init.take().unwrap_or_default();
                tracing::info!(clusters = known.len(), "Listed Clusters");
                publisher.set_kube(Some(known.clone()));
            }
            Ok(Event::Apply(obj)) => {
                // Most updates of a Cluster leave its state as it was: only
                // a changed state is published again.
                if let Some((name, d)) = read_cluster(&obj, &known)
                    && known.insert(name, d) != Some(d)
                {
                    publisher.set_kube(Some(known.clone()));
                }
            }
            Ok(Event::Delete(obj)) => {
                if let Some(name) = &obj.metadata.name {
                    known.remove(name);
                    tracing::info!(cluster = %name, "Cluster deleted");
                }
                publisher.set_kube(Some(known.clone()));
            }
            Err(e) => {
                metrics.kube.watch_error("Cluster");
                tracing::warn!(error = %e, "Watching Clusters failed; retrying with backoff");
            }
        }
    }
}

/// The state of one Cluster; one this process cannot read keeps the state
/// `previous` had for it (`None` if it had none).
fn read_cluster(obj: &DynamicObject, previous: &Clusters) -> Option<(String, ClientDecision)> {
    let name = obj.metadata.name.clone()?;
    let value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(cluster = %name, error = %e, "Cannot encode a Cluster");
            return None;
        }
    };
    match cluster_state::derive(&value) {
        Ok(decision) => {
            if previous.get(&name) != Some(&decision) {
                tracing::info!(cluster = %name, decision = ?decision, "Cluster state");
            }
            Some((name, decision))
        }
        Err(e) => {
            tracing::warn!(cluster = %name, kind = e.kind(), error = %e, "Cannot read a Cluster; keeping its previous state");
            let d = *previous.get(&name)?;
            Some((name, d))
        }
    }
}

//! The pipeline aggregator of one kind (`LogPipeline`, `MetricPipeline` or
//! `TracePipeline`): runs while the kind's CRD is Established (the kube
//! watcher starts and aborts it), and turns the pipelines into seed
//! destinations and status conditions.
//!
//! After every new pipeline, spec change (a new `generation`) or deletion,
//! and every [`RESYNC`] (which also picks up changed Secrets and the
//! exporters' health), one reconcile:
//!
//! 1. read the Secrets the pipelines reference (404 is "missing", other API
//!    errors give `ValidationFailed`);
//! 2. [`resolve`] each pipeline (Kyma's checks and messages);
//! 3. admit at most [`DEFAULT_MAX_PIPELINES`] of the valid ones, oldest
//!    first; the rest get `MaxPipelinesExceeded`;
//! 4. publish the admitted pipelines whose OTLP input is enabled: they
//!    replace the file's pipelines of this signal ([`Publisher`]); an
//!    unchanged pipeline keeps its queue and delivery loop;
//! 5. on the leader only: write each pipeline's conditions
//!    (`ConfigurationGenerated`, `GatewayHealthy`, `TelemetryFlowHealthy`,
//!    with `observedGeneration`) through the status subresource when they
//!    changed, and the effective-config ConfigMap.
//!
//! `TelemetryFlowHealthy` comes from what the exporter pool measures for
//! the pipeline's destination: the backend failing now
//! (`seedgate_exporter_failing`) is "all dropped", records dropped since the
//! last reconcile are "some dropped", a queue above 80% of its limit is
//! "buffer filling up", records dropped for a full queue since the last
//! reconcile are "throttling".
//!
//! Not yet: one actor per pipeline (a reconcile covers the kind), and an
//! instant reaction to a Secret change (it waits for the next resync).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::object::{HasSpec, HasStatus};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conditions::{self, ConfigOutcome, FlowFacts, GatewayState};
use super::crds::{PipelineSpec, PipelineStatus};
use super::max_pipelines::{Candidate, DEFAULT_MAX_PIPELINES, admitted};
use super::pem_store::DirPemStore;
use super::pipeline_spec::{
    self, ResolveContext, Resolved, SecretApiError, SecretData, SecretSource, pipeline_config_name,
    resolve,
};
use crate::config::QueueConfig;
use crate::effective_config::{self, AppliedPipeline};
use crate::lease::Leadership;
use crate::metrics::{Dest, Metrics};
use crate::routing::publisher::Publisher;

/// How often pipelines are reconciled without a change (Secrets, health).
pub const RESYNC: Duration = Duration::from_secs(10);

/// What every aggregator shares.
#[derive(Clone)]
pub struct AggregatorCtx {
    /// A client for the API server.
    pub client: kube::Client,
    /// Where pipelines go.
    pub publisher: Arc<Publisher>,
    /// Whether this replica writes status and the ConfigMap.
    pub leadership: Arc<Leadership>,
    /// Counters, and the exporters' health.
    pub metrics: Arc<Metrics>,
    /// Where PEM material from Secrets is written.
    pub pems: Arc<DirPemStore>,
    /// The file's top-level queue, which `spec.seedgate.queue` starts from.
    pub queue_defaults: QueueConfig,
    /// seedgate's namespace (the effective-config ConfigMap).
    pub namespace: String,
}

impl Debug for AggregatorCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorCtx")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Secrets read from the API server for one reconcile.
#[derive(Debug, Default)]
struct Fetched(BTreeMap<(String, String), Result<Option<Secret>, String>>);

impl SecretSource for Fetched {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretApiError> {
        match self.0.get(&(namespace.to_owned(), name.to_owned())) {
            None | Some(Ok(None)) => Ok(None),
            Some(Ok(Some(secret))) => Ok(Some(
                secret
                    .data
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
            )),
            Some(Err(e)) => Err(SecretApiError(e.clone())),
        }
    }
}

impl Fetched {
    fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        match self.0.get(&(namespace.to_owned(), name.to_owned())) {
            Some(Ok(Some(s))) => s.metadata.resource_version.clone(),
            _ => None,
        }
    }
}

/// Runs the aggregator of kind `K` until aborted.
pub async fn run<K>(ctx: AggregatorCtx)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + HasSpec
        + HasStatus<Status = PipelineStatus>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
    K::Spec: PipelineSpec,
{
    let kind = <K::Spec as PipelineSpec>::KIND;
    let api: Api<K> = Api::all(ctx.client.clone());
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut objects: BTreeMap<String, K> = BTreeMap::new();
    let mut init: Option<BTreeMap<String, K>> = None;
    let mut listed = false;
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_dropped: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let dirty = tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => { init = Some(BTreeMap::new()); false }
                Some(Ok(Event::InitApply(o))) => {
                    if let (Some(i), Some(name)) = (init.as_mut(), o.meta().name.clone()) {
                        i.insert(name, o);
                    }
                    false
                }
                Some(Ok(Event::InitDone)) => {
                    objects = init.take().unwrap_or_default();
                    listed = true;
                    true
                }
                Some(Ok(Event::Apply(o))) => {
                    // The echo of our own status write (or any change that
                    // leaves the spec alone) needs no reconcile: the spec's
                    // generation did not move. Secrets and health are
                    // looked at by the resync.
                    let generation = o.meta().generation;
                    match o.meta().name.clone() {
                        Some(name) => objects
                            .insert(name, o)
                            .is_none_or(|old| old.meta().generation != generation),
                        None => false,
                    }
                }
                Some(Ok(Event::Delete(o))) => {
                    if let Some(name) = &o.meta().name {
                        objects.remove(name);
                    }
                    true
                }
                Some(Err(e)) => {
                    ctx.metrics.kube.watch_error(kind.kind());
                    tracing::warn!(kind = kind.kind(), error = %e, "Watching pipelines failed; retrying with backoff");
                    false
                }
            },
            _ = resync.tick() => true,
        };
        if dirty && listed {
            reconcile(&ctx, &api, &objects, &mut last_dropped).await;
        }
    }
}

async fn fetch_secrets<S: PipelineSpec>(client: &kube::Client, specs: &[&S]) -> Fetched {
    let mut fetched = Fetched::default();
    for spec in specs {
        for r in pipeline_spec::secret_refs(*spec) {
            let key = (r.namespace.clone(), r.name.clone());
            if fetched.0.contains_key(&key) {
                continue;
            }
            let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
            let got = api.get_opt(&r.name).await.map_err(|e| e.to_string());
            fetched.0.insert(key, got);
        }
    }
    fetched
}

async fn reconcile<K>(
    ctx: &AggregatorCtx,
    api: &Api<K>,
    objects: &BTreeMap<String, K>,
    last_dropped: &mut BTreeMap<String, u64>,
) where
    K: kube::Resource<DynamicType = ()>
        + HasSpec
        + HasStatus<Status = PipelineStatus>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
    K::Spec: PipelineSpec,
{
    let kind = <K::Spec as PipelineSpec>::KIND;
    let specs: Vec<&K::Spec> = objects.values().map(HasSpec::spec).collect();
    let secrets = fetch_secrets(&ctx.client, &specs).await;
    let now = Timestamp::now();
    // The context holds `dyn` references that are not `Send`: keep it out
    // of the awaits below.
    let results: BTreeMap<&str, Result<Resolved, pipeline_spec::Rejection>> = {
        let resolve_ctx = ResolveContext {
            secrets: &secrets,
            pems: ctx.pems.as_ref(),
            now,
            queue_defaults: ctx.queue_defaults,
        };
        objects
            .iter()
            .map(|(name, o)| (name.as_str(), resolve(name, o.spec(), &resolve_ctx)))
            .collect()
    };
    let pem_files: BTreeSet<_> = results
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|r| r.pem_files.iter().cloned())
        .collect();
    if let Err(e) = ctx.pems.retain(&pem_files) {
        tracing::warn!(error = %e, "Cannot clean up unused PEM files");
    }
    let candidates: Vec<Candidate<'_>> = objects
        .iter()
        .filter(|(name, _)| results.get(name.as_str()).is_some_and(Result::is_ok))
        .map(|(name, o)| Candidate {
            name,
            created: o.meta().creation_timestamp.as_ref(),
        })
        .collect();
    let admitted = admitted(&candidates, Some(DEFAULT_MAX_PIPELINES));

    let pipelines: Vec<_> = results
        .iter()
        .filter(|(name, _)| admitted.contains(*name))
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|r| r.input_enabled)
        .map(|r| r.pipeline.clone())
        .collect();
    let published = pipelines.len();
    for (name, why) in ctx
        .publisher
        .set_kube_pipelines(kind.signal(), Some(pipelines))
    {
        tracing::error!(pipeline = %name, error = %why, "Cannot run a pipeline");
    }
    tracing::debug!(
        kind = kind.kind(),
        pipelines = objects.len(),
        published,
        "Reconciled pipelines"
    );

    if !ctx.leadership.is_leader() {
        return;
    }
    let mut applied = Vec::new();
    for (name, o) in objects {
        let Some(result) = results.get(name.as_str()) else {
            continue;
        };
        let generation = o.meta().generation;
        let outcome = ConfigOutcome::new(result, admitted.contains(name.as_str()));
        let destination = pipeline_config_name(kind, name);
        let signal = kind.signal().as_str();
        let facts = flow_facts(ctx, &destination, signal, last_dropped);
        let gateway = gateway_state(ctx, &destination, signal);
        let wanted = conditions::pipeline_conditions(kind, generation, &outcome, &gateway, facts);
        let mut status = o.status().cloned().unwrap_or_default();
        if conditions::set_status_conditions(&mut status.conditions, wanted, now) {
            let patch = serde_json::json!({ "status": status });
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(kind = kind.kind(), pipeline = %name, error = %e, "Cannot write the pipeline's status");
            }
        }
        if result.is_ok() && outcome.is_applied() {
            let secrets_used = pipeline_spec::secret_refs(o.spec())
                .into_iter()
                .filter_map(|r| {
                    secrets
                        .resource_version(&r.namespace, &r.name)
                        .map(|rv| (format!("{}/{}", r.namespace, r.name), rv))
                })
                .collect();
            applied.push(AppliedPipeline {
                kind: kind.kind().to_owned(),
                name: name.clone(),
                generation: generation.unwrap_or(0),
                secrets: secrets_used,
            });
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    if let Err(e) = effective_config::write_kind(&cms, kind.kind(), &applied, &ctx.metrics).await {
        tracing::warn!(error = %e, "Cannot write the effective-config ConfigMap");
    }
}

/// Whether seedgate delivers for the destination: `NotReady` once the
/// health actor judged it unhealthy (failing without a success for
/// `admin.unhealthy_after`; for a load-balanced pipeline, every backend).
fn gateway_state(ctx: &AggregatorCtx, destination: &str, signal: &'static str) -> GatewayState {
    let labels = Dest {
        destination: destination.to_owned(),
        signal,
    };
    let m = &ctx.metrics.exporter;
    // A destination not judged yet (no series) counts as healthy.
    let healthy = m.healthy.get(&labels).is_none_or(|g| g.get() == 1);
    if healthy {
        GatewayState::Ready
    } else {
        GatewayState::NotReady(format!(
            "the {signal} backend has failed every export attempt for longer than admin.unhealthy_after; the data is kept in the buffer and retried"
        ))
    }
}

/// What the exporter pool measured for one destination.
fn flow_facts(
    ctx: &AggregatorCtx,
    destination: &str,
    signal: &'static str,
    last_dropped: &mut BTreeMap<String, u64>,
) -> FlowFacts {
    let m = &ctx.metrics;
    let labels = Dest {
        destination: destination.to_owned(),
        signal,
    };
    let failing = m.exporter.failing.get_or_create(&labels).get() == 1;
    let dropped: u64 = ["permanent", "max_elapsed", "rejected"]
        .iter()
        .map(|reason| {
            m.exporter
                .dropped_records
                .get_or_create(&crate::metrics::DestReason {
                    destination: destination.to_owned(),
                    signal,
                    reason,
                })
                .get()
        })
        .sum();
    let before = last_dropped
        .insert(destination.to_owned(), dropped)
        .unwrap_or(dropped);
    let size = m.queue.bytes.get_or_create(&labels).get();
    let limit = m.queue.limit_bytes.get_or_create(&labels).get();
    let refused = m
        .router
        .dropped_records
        .get_or_create(&crate::metrics::DestReason {
            destination: destination.to_owned(),
            signal,
            reason: "queue_full",
        })
        .get();
    let refused_before = last_dropped
        .insert(format!("{destination}\0queue_full"), refused)
        .unwrap_or(refused);
    FlowFacts {
        all_dropped: failing,
        some_dropped: dropped > before,
        // Clients refused for a full queue, or sends waiting for the
        // output's rate limit: both are the gateway not keeping up.
        throttling: refused > refused_before
            || m.flow.throttled.get(&labels).is_some_and(|g| g.get() == 1),
        buffer_filling: limit > 0 && size * 10 > limit * 8,
    }
}

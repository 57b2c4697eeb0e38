//! The pipeline actor: one per pipeline resource (`LogPipeline`,
//! `MetricPipeline`, `TracePipeline`), started, restarted and stopped by the
//! aggregator of its kind (`crate::operator::aggregator`), which decides
//! what of it runs.
//!
//! It owns its object (the latest the aggregator's watch delivered), the
//! watches of exactly the Secrets its spec references
//! ([`SecretWatches`]), its [`PemLease`] and its last resolution.
//!
//! In: the object (a `watch` channel: only the latest matters), the events
//! of its Secret watches, the aggregator's [`Verdict`] (admitted under the
//! pipeline limit or not), and a tick every [`HEALTH_EVERY`].
//! Out: a [`Report`] to the aggregator whenever its resolution or the
//! resourceVersions of its Secrets change; its status conditions.
//!
//! - A new spec (a new `generation`): the Secret watches follow the
//!   references the spec has now, and the pipeline is resolved once every
//!   watch has listed (never from half of its Secrets).
//! - A Secret created, changed or deleted: resolved again at once.
//! - The tick: resolved again from what the watches hold (no API call; a
//!   certificate's expiry moves with the clock), and the status looked at.
//! - Status, on the leader only, written only when it changed:
//!   `ConfigurationGenerated` from the resolution and the verdict on that
//!   very report (the report's `seq`), `GatewayHealthy` and
//!   `TelemetryFlowHealthy` from health's last verdict on the
//!   pipeline's destination ([`crate::operator::pipeline_health`]: the same verdict
//!   `seedgate_pipeline_condition` shows for every destination), all with
//!   the `observedGeneration` the resolution was made from.
//! - `ConfigurationGenerated` goes to `seedgate_pipeline_condition` on
//!   every replica (leader or not); the aggregator removes the series when
//!   the pipeline goes.
//!
//! A failure (a panic ends the task) restarts this actor alone, counted in
//! `seedgate_actor_restarts_total{actor="pipeline"}`
//! ([`Tasks`](crate::actors::loops::Tasks)). The restarted actor keeps its
//! channels, report numbering and PEM lease (they live in the plan) and
//! loses the rest: it lists its Secrets again and reports again. Meanwhile
//! the aggregator keeps the last report, so the pipeline's data keeps
//! flowing, and no other pipeline notices.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::{mpsc, watch};

use crate::actors::loops::Task;
use crate::operator::PipelineKind;
use crate::operator::conditions::{self, ConfigOutcome, FlowFacts, GatewayState};
use crate::operator::context::{AggregatorCtx, PipelineResource};
use crate::operator::crds::PipelineSpec;
use crate::operator::pem_store::PemLease;
use crate::operator::pipeline_health::PipelineHealth;
use crate::operator::pipeline_spec::{
    Rejection, ResolveContext, Resolved, pipeline_config_name, resolve,
};
use crate::operator::secret_watch::{SecretWatches, secret_keys};

pub use crate::operator::context::CrashRequests;

/// The next crash request, or never (no fault injection).
async fn crash_request(rx: &mut Option<tokio::sync::broadcast::Receiver<String>>) -> String {
    loop {
        match rx {
            Some(r) => match r.recv().await {
                Ok(name) => return name,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => *rx = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

/// How often a pipeline looks at its health (and resolves again from what
/// it holds) without a change.
pub const HEALTH_EVERY: Duration = Duration::from_secs(10);

/// A pipeline's resolution, for the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid` of the object it was made from: a report of a deleted
    /// pipeline is not taken for one created again under its name.
    pub uid: Option<String>,
    /// Increases with every report of this pipeline; a [`Verdict`] names the
    /// report it answers.
    pub seq: u64,
    /// The `metadata.generation` resolved.
    pub generation: Option<i64>,
    /// What [`resolve`] said.
    pub resolution: Result<Resolved, Rejection>,
    /// `namespace/name` → resourceVersion of the Secrets read.
    pub secrets: BTreeMap<String, String>,
}

/// The aggregator's answer to a report: whether the pipeline runs under the
/// pipeline limit. `seq` 0: no answer yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The [`Report::seq`] answered.
    pub seq: u64,
    /// Whether the pipeline is among the admitted.
    pub admitted: bool,
}

/// The aggregator's ends of one pipeline actor's channels.
#[derive(Debug)]
pub struct PipelineLink<K> {
    /// The latest object.
    pub object: watch::Sender<K>,
    /// The latest verdict.
    pub verdict: watch::Sender<Verdict>,
}

/// The plan of one pipeline actor (see the module doc): what a run, and
/// every restart, starts from.
pub struct PipelineActor<K> {
    ctx: AggregatorCtx,
    name: String,
    uid: Option<String>,
    object: watch::Receiver<K>,
    verdict: watch::Receiver<Verdict>,
    reports: mpsc::UnboundedSender<Report>,
    seq: Arc<AtomicU64>,
    pems: Arc<PemLease>,
}

impl<K> Clone for PipelineActor<K> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            object: self.object.clone(),
            verdict: self.verdict.clone(),
            reports: self.reports.clone(),
            seq: Arc::clone(&self.seq),
            pems: Arc::clone(&self.pems),
        }
    }
}

impl<K> Debug for PipelineActor<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineActor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl PipelineActor ===

impl<K: PipelineResource> PipelineActor<K> {
    /// The plan of the actor of `object`, and the aggregator's ends of its
    /// channels. Reports go to `reports`.
    pub fn new(
        ctx: AggregatorCtx,
        name: String,
        object: K,
        reports: mpsc::UnboundedSender<Report>,
    ) -> (Self, PipelineLink<K>) {
        let kind = <K::Spec as PipelineSpec>::KIND;
        let pems = Arc::new(ctx.pems.lease(pipeline_config_name(kind, &name)));
        let uid = object.meta().uid.clone();
        let (object_tx, object_rx) = watch::channel(object);
        let (verdict_tx, verdict_rx) = watch::channel(Verdict::default());
        let actor = Self {
            ctx,
            name,
            uid,
            object: object_rx,
            verdict: verdict_rx,
            reports,
            seq: Arc::new(AtomicU64::new(0)),
            pems,
        };
        let link = PipelineLink {
            object: object_tx,
            verdict: verdict_tx,
        };
        (actor, link)
    }
}

impl<K: PipelineResource> Task for PipelineActor<K> {
    fn key(&self) -> String {
        self.name.clone()
    }

    fn same_plan(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.seq, &other.seq)
    }

    fn actor(&self) -> &'static str {
        "pipeline"
    }

    async fn run(self) {
        Run::new(self).run().await;
    }
}

/// The last resolution reported.
#[derive(Debug)]
struct Last {
    seq: u64,
    generation: Option<i64>,
    resolution: Result<Resolved, Rejection>,
    secrets: BTreeMap<String, String>,
}

/// One run of the actor: the plan plus what a restart loses.
struct Run<K> {
    plan: PipelineActor<K>,
    kind: PipelineKind,
    destination: String,
    api: Api<K>,
    object: K,
    secrets: SecretWatches,
    last: Option<Last>,
    crash: Option<tokio::sync::broadcast::Receiver<String>>,
}

// === impl Run ===

impl<K: PipelineResource> Run<K> {
    fn new(mut plan: PipelineActor<K>) -> Self {
        let kind = <K::Spec as PipelineSpec>::KIND;
        let object = plan.object.borrow_and_update().clone();
        let mut secrets = SecretWatches::new(plan.ctx.client.clone());
        secrets.follow(&secret_keys(object.spec()));
        Self {
            kind,
            destination: pipeline_config_name(kind, &plan.name),
            api: Api::all(plan.ctx.client.clone()),
            object,
            secrets,
            last: None,
            crash: plan.ctx.crash.as_ref().map(CrashRequests::subscribe),
            plan,
        }
    }

    async fn run(mut self) {
        tracing::debug!(kind = self.kind.kind(), pipeline = %self.plan.name, "Pipeline actor started");
        let mut tick = tokio::time::interval(HEALTH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (resolve, look) = tokio::select! {
                changed = self.plan.object.changed() => {
                    // The aggregator let go of this pipeline. It aborts
                    // the task before that; this only keeps a closed
                    // channel from spinning the loop.
                    if changed.is_err() {
                        return;
                    }
                    (self.take_object(), false)
                }
                (key, event) = self.secrets.next() => {
                    let changed = self.secrets.apply(&key, event, &self.plan.ctx.metrics, &self.plan.name);
                    (changed, false)
                }
                changed = self.plan.verdict.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    (false, true)
                }
                _ = tick.tick() => (true, true),
                name = crash_request(&mut self.crash) => {
                    self.crash_if(&name);
                    (false, false)
                }
            };
            let reported = resolve && self.resolve();
            if look || reported {
                self.write_status().await;
            }
        }
    }

    #[allow(clippy::panic)] // the point of fault injection
    fn crash_if(&self, destination: &str) {
        if destination == self.destination {
            panic!("fault injected into the pipeline actor of {destination}");
        }
    }

    /// Takes the latest object; whether its spec changed (a new generation:
    /// the echo of a status write is not one).
    fn take_object(&mut self) -> bool {
        let object = self.plan.object.borrow_and_update().clone();
        let respec = object.meta().generation != self.object.meta().generation;
        self.object = object;
        if respec {
            self.secrets.follow(&secret_keys(self.object.spec()));
        }
        respec
    }

    /// Resolves the pipeline when every Secret is known, and reports when
    /// anything changed; whether it reported.
    fn resolve(&mut self) -> bool {
        if !self.secrets.cache().settled() {
            return false;
        }
        let ctx = &self.plan.ctx;
        let resolution = {
            // `dyn` references that are not `Send`: no await in here.
            let resolve_ctx = ResolveContext {
                secrets: self.secrets.cache(),
                pems: self.plan.pems.as_ref(),
                now: Timestamp::now(),
                queue_defaults: ctx.queue_defaults,
            };
            resolve(&self.plan.name, self.object.spec(), &resolve_ctx)
        };
        let files = resolution
            .as_ref()
            .map_or(&[][..], |r| r.pem_files.as_slice());
        if let Err(e) = self.plan.pems.keep_only(files) {
            tracing::warn!(pipeline = %self.destination, error = %e, "Cannot clean up unused PEM files");
        }
        let secrets = self.secrets.cache().resource_versions();
        let generation = self.object.meta().generation;
        if self.last.as_ref().is_some_and(|l| {
            l.resolution == resolution && l.secrets == secrets && l.generation == generation
        }) {
            return false;
        }
        match &resolution {
            Ok(_) => {
                tracing::debug!(pipeline = %self.destination, ?generation, "Pipeline resolved");
            }
            Err(r) => {
                tracing::info!(pipeline = %self.destination, ?generation, reason = r.reason, message = %r.message, "Pipeline not applied");
            }
        }
        let seq = self.plan.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let report = Report {
            name: self.plan.name.clone(),
            uid: self.plan.uid.clone(),
            seq,
            generation,
            resolution: resolution.clone(),
            secrets: secrets.clone(),
        };
        if self.plan.reports.send(report).is_err() {
            // The aggregator is going away, and this task with it.
            tracing::debug!(pipeline = %self.destination, "No aggregator to report to");
        }
        self.last = Some(Last {
            seq,
            generation,
            resolution,
            secrets,
        });
        true
    }

    /// Publishes `ConfigurationGenerated` as a metric, and writes the
    /// status conditions when they changed (leader only).
    async fn write_status(&mut self) {
        let ctx = &self.plan.ctx;
        let Some(last) = &self.last else { return };
        let admitted = match &last.resolution {
            // The limit is not looked at for a rejected pipeline.
            Err(_) => false,
            Ok(_) => {
                let verdict = *self.plan.verdict.borrow();
                if verdict.seq != last.seq {
                    // The aggregator has not decided on this report yet.
                    return;
                }
                verdict.admitted
            }
        };
        let outcome = ConfigOutcome::new(&last.resolution, admitted);
        let signal = self.kind.signal();
        // Not judged yet (just published, or not running): healthy.
        let health = ctx
            .health
            .pipeline(&self.destination, signal)
            .unwrap_or(PipelineHealth {
                gateway: GatewayState::Ready,
                flow: FlowFacts::default(),
            });
        let wanted = conditions::pipeline_conditions(
            self.kind,
            last.generation,
            &outcome,
            &health.gateway,
            health.flow,
        );
        if let Some(c) = wanted
            .iter()
            .find(|c| c.type_ == conditions::TYPE_CONFIGURATION_GENERATED)
        {
            ctx.metrics.health.set_condition(
                &self.destination,
                signal.as_str(),
                conditions::TYPE_CONFIGURATION_GENERATED,
                c.status == conditions::STATUS_TRUE,
                &c.reason,
            );
        }
        if !ctx.leadership.is_leader() {
            return;
        }
        let mut status = self.object.status().cloned().unwrap_or_default();
        if !conditions::set_status_conditions(&mut status.conditions, wanted, Timestamp::now()) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .api
            .patch_status(
                &self.plan.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            // Until the watch delivers the echo, compare with what was
            // written, not with what was there before.
            Ok(written) => *self.object.status_mut() = written.status().cloned(),
            Err(e) => {
                tracing::warn!(kind = self.kind.kind(), pipeline = %self.plan.name, error = %e, "Cannot write the pipeline's status");
            }
        }
    }
}

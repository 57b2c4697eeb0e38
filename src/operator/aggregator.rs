//! The pipeline aggregator of one kind (`LogPipeline`, `MetricPipeline` or
//! `TracePipeline`): runs while the kind's CRD is Established (the kube
//! watcher starts and aborts it), watches the kind's objects and runs one
//! pipeline actor per object (`crate::operator::pipeline_actor`), which resolves
//! that pipeline and writes its status.
//!
//! ```text
//!   pipeline watch ──▶ aggregator ──object, Verdict──▶ pipeline actor × N ──▶ status
//!                       │   ▲                           (Secret watches)
//!                       │   └────────────Report─────────────┘
//!                       ├──set_kube_pipelines──▶ Publisher
//!                       └──(leader)──▶ effective-config ConfigMap
//! ```
//!
//! What the aggregator keeps for itself is what needs every pipeline of the
//! kind at once:
//!
//! 1. admission: at most `operator.max_pipelines` (default 5, Kyma's
//!    [`DEFAULT_MAX_PIPELINES`](super::max_pipelines::DEFAULT_MAX_PIPELINES))
//!    of the pipelines whose
//!    last report resolved, oldest first ([`admitted`]); each actor gets a
//!    [`Verdict`] on its latest report and writes `MaxPipelinesExceeded`
//!    itself when it is not admitted;
//! 2. publishing the admitted pipelines whose OTLP input is enabled: they
//!    replace the file's pipelines of this signal ([`Publisher`](crate::routing::publisher::Publisher)); an
//!    unchanged pipeline keeps its queue and delivery loop;
//! 3. on the leader only: the kind's entries of the effective-config
//!    ConfigMap, when they change and every [`RESYNC`].
//!
//! A pipeline created gets an actor; one deleted loses it, and its routes
//! are unpublished. An actor that fails is restarted alone
//! ([`Tasks::restart_dead`], `seedgate_actor_restarts_total{actor="pipeline"}`),
//! and its last report stays published meanwhile. The first publication
//! waits until every pipeline listed has reported (each waits for its
//! Secrets' watches to list), at most [`RESYNC`], so a start does not
//! publish a partial set and take it back. Aborting the aggregator (the CRD
//! went away) drops its [`Tasks`], which aborts every pipeline actor.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PipelineKind;
use super::crds::PipelineSpec;
use super::max_pipelines::{Candidate, admitted};
use crate::actors::loops::{CHECK_EVERY, Tasks};
use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::operator::effective_config::{self, AppliedPipeline};
use crate::operator::pipeline_actor::{PipelineActor, PipelineLink, Report, Verdict};
use crate::routing::publisher::KubeTerm;

/// How often the effective-config ConfigMap is written again without a
/// change (leadership may have moved, someone may have edited it), and how
/// long the first publication waits for pipelines that have not reported.
pub const RESYNC: Duration = Duration::from_secs(10);

pub use super::context::{AggregatorCtx, PipelineResource};

/// Runs the aggregator of kind `K` until aborted.
pub async fn run<K: PipelineResource>(ctx: AggregatorCtx, term: KubeTerm) {
    let kind = <K::Spec as PipelineSpec>::KIND;
    let api: Api<K> = Api::all(ctx.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut members = Members::<K>::new(ctx.clone(), reports_tx);
    let mut init: Option<BTreeMap<String, K>> = None;
    let mut gate = Gate::Listing;
    let mut published: Option<Vec<PipelineConfig>> = None;
    // A pipeline whose destination could not be built (its queue or
    // exporter) is tried again every resync.
    let mut unbuilt = false;
    let mut written: Option<Vec<AppliedPipeline>> = None;
    let mut check = tokio::time::interval(CHECK_EVERY);
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut resynced = false;
        tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => init = Some(BTreeMap::new()),
                Some(Ok(Event::InitApply(o))) => {
                    if let (Some(i), Some(name)) = (init.as_mut(), o.meta().name.clone()) {
                        i.insert(name, o);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    members.replace_all(init.take().unwrap_or_default());
                    gate.listed();
                }
                Some(Ok(Event::Apply(o))) => members.upsert(o),
                Some(Ok(Event::Delete(o))) => {
                    if let Some(name) = &o.meta().name {
                        members.remove(name);
                    }
                }
                Some(Err(e)) => {
                    ctx.metrics.kube.watch_error(kind.kind());
                    tracing::warn!(kind = kind.kind(), error = %e, "Watching pipelines failed; retrying with backoff");
                }
            },
            Some(report) = reports.recv() => {
                // Take every report that is waiting: one decision for a
                // burst (a start, a Secret many pipelines share).
                members.record(report);
                while let Ok(report) = reports.try_recv() {
                    members.record(report);
                }
            }
            _ = check.tick() => {
                members.tasks.restart_dead(&ctx.metrics);
            }
            _ = resync.tick() => resynced = true,
        }
        if !gate.open(kind, &members) {
            continue;
        }
        let decision = decide(kind, &members.entries(), ctx.max_pipelines);
        members.tell(&decision.admitted);
        if published.as_ref() != Some(&decision.pipelines) || (resynced && unbuilt) {
            let count = decision.pipelines.len();
            let failed = ctx
                .publisher
                .set_kube_pipelines(term, decision.pipelines.clone());
            unbuilt = !failed.is_empty();
            for (name, why) in failed {
                tracing::error!(pipeline = %name, error = %why, "Cannot run a pipeline");
            }
            tracing::info!(
                kind = kind.kind(),
                pipelines = members.len(),
                published = count,
                "Published pipelines"
            );
            published = Some(decision.pipelines);
        }
        if !ctx.leadership.is_leader() {
            // Write again once leading: another replica may have written.
            written = None;
            continue;
        }
        if resynced || written.as_ref() != Some(&decision.applied) {
            let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
            match effective_config::write_kind(&cms, kind.kind(), &decision.applied, &ctx.metrics)
                .await
            {
                Ok(()) => written = Some(decision.applied),
                Err(e) => {
                    written = None;
                    tracing::warn!(error = %e, "Cannot write the effective-config ConfigMap");
                }
            }
        }
    }
}

/// When the aggregator may publish.
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// The pipelines are not listed yet.
    Listing,
    /// Listed; waiting for every pipeline's first report until then.
    Waiting(Instant),
    /// Every change is published.
    Open,
}

// === impl Gate ===

impl Gate {
    fn listed(&mut self) {
        if let Gate::Listing = self {
            *self = Gate::Waiting(Instant::now() + RESYNC);
        }
    }

    fn open<K>(&mut self, kind: PipelineKind, members: &Members<K>) -> bool {
        match *self {
            Gate::Listing => false,
            Gate::Open => true,
            Gate::Waiting(until) => {
                let waiting = members.unreported();
                if waiting.is_empty() || Instant::now() >= until {
                    if !waiting.is_empty() {
                        tracing::warn!(
                            kind = kind.kind(),
                            ?waiting,
                            "Publishing pipelines before these have reported (their Secrets are not listed yet)"
                        );
                    }
                    *self = Gate::Open;
                }
                matches!(self, Gate::Open)
            }
        }
    }
}

/// One pipeline as [`decide`] sees it.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    name: &'a str,
    created: Option<&'a Time>,
    report: Option<&'a Report>,
}

/// What runs, for one kind.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// The pipelines admitted under the limit (among those that resolved).
    admitted: BTreeSet<String>,
    /// What is published: admitted, resolved, input enabled.
    pipelines: Vec<PipelineConfig>,
    /// What the effective-config ConfigMap lists: admitted and resolved.
    applied: Vec<AppliedPipeline>,
}

/// Admission and what follows from it; pure.
fn decide(kind: PipelineKind, entries: &[Entry<'_>], limit: Option<usize>) -> Decision {
    let resolved: Vec<(&Entry<'_>, &Report, &super::pipeline_spec::Resolved)> = entries
        .iter()
        .filter_map(|e| {
            let report = e.report?;
            Some((e, report, report.resolution.as_ref().ok()?))
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = resolved
        .iter()
        .map(|(e, _, _)| Candidate {
            name: e.name,
            created: e.created,
        })
        .collect();
    let admitted = admitted(&candidates, limit);
    let mut decision = Decision::default();
    for (e, report, r) in resolved {
        if !admitted.contains(e.name) {
            continue;
        }
        decision.admitted.insert(e.name.to_owned());
        if r.input_enabled {
            decision.pipelines.push(r.pipeline.clone());
        }
        decision.applied.push(AppliedPipeline {
            kind: kind.kind().to_owned(),
            name: e.name.to_owned(),
            generation: report.generation.unwrap_or(0),
            secrets: report.secrets.clone(),
        });
    }
    decision
}

/// One pipeline's actor as the aggregator holds it.
struct Member<K> {
    uid: Option<String>,
    /// `metadata.creationTimestamp` (fixed for a uid): the admission order.
    created: Option<Time>,
    link: PipelineLink<K>,
    report: Option<Report>,
    /// Removes its `ConfigurationGenerated` series when the pipeline goes.
    _condition: ConditionSeries,
}

/// A pipeline's `ConfigurationGenerated` in `seedgate_pipeline_condition`:
/// set by its actor, removed when the aggregator lets go of the pipeline
/// (deleted, or the CRD gone and the aggregator aborted).
struct ConditionSeries {
    metrics: Arc<Metrics>,
    destination: String,
    signal: &'static str,
}

impl Drop for ConditionSeries {
    fn drop(&mut self) {
        self.metrics.health.remove_condition(
            &self.destination,
            self.signal,
            super::conditions::TYPE_CONFIGURATION_GENERATED,
        );
    }
}

/// The pipelines of the kind and their actors.
struct Members<K> {
    ctx: AggregatorCtx,
    reports: mpsc::UnboundedSender<Report>,
    tasks: Tasks<PipelineActor<K>>,
    by_name: BTreeMap<String, Member<K>>,
}

// === impl Members ===

impl<K: PipelineResource> Members<K> {
    fn new(ctx: AggregatorCtx, reports: mpsc::UnboundedSender<Report>) -> Self {
        Self {
            ctx,
            reports,
            tasks: Tasks::new(tokio::runtime::Handle::current()),
            by_name: BTreeMap::new(),
        }
    }

    /// A new or changed object: a new actor, or the latest object for the
    /// running one (a different uid is a pipeline created again).
    fn upsert(&mut self, object: K) {
        let Some(name) = object.meta().name.clone() else {
            return;
        };
        match self.by_name.get(&name) {
            Some(m) if m.uid == object.meta().uid => {
                m.link.object.send_replace(object);
            }
            Some(_) => {
                self.remove(&name);
                self.add(name, object);
            }
            None => self.add(name, object),
        }
    }

    /// After a (re)list: exactly `objects`.
    fn replace_all(&mut self, objects: BTreeMap<String, K>) {
        let gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| !objects.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name);
        }
        for object in objects.into_values() {
            self.upsert(object);
        }
    }

    fn add(&mut self, name: String, object: K) {
        let uid = object.meta().uid.clone();
        let created = object.meta().creation_timestamp.clone();
        let kind = <K::Spec as PipelineSpec>::KIND;
        let condition = ConditionSeries {
            metrics: Arc::clone(&self.ctx.metrics),
            destination: super::pipeline_spec::pipeline_config_name(kind, &name),
            signal: kind.signal().as_str(),
        };
        let (actor, link) =
            PipelineActor::new(self.ctx.clone(), name.clone(), object, self.reports.clone());
        self.tasks.start(actor);
        self.by_name.insert(
            name,
            Member {
                uid,
                created,
                link,
                report: None,
                _condition: condition,
            },
        );
    }

    /// A pipeline deleted: its actor stops (its Secret watches and PEM
    /// lease with it); its report goes, so its routes are unpublished.
    fn remove(&mut self, name: &str) {
        self.tasks.stop(name);
        self.by_name.remove(name);
    }

    /// Takes a report unless it is from an actor of a pipeline since gone.
    fn record(&mut self, report: Report) {
        if let Some(m) = self.by_name.get_mut(&report.name)
            && m.uid == report.uid
        {
            m.report = Some(report);
        }
    }

    /// Sends every actor the verdict on its latest report; an actor is
    /// woken only when its verdict changed.
    fn tell(&self, admitted: &BTreeSet<String>) {
        for (name, m) in &self.by_name {
            let Some(report) = &m.report else { continue };
            let verdict = Verdict {
                seq: report.seq,
                admitted: admitted.contains(name),
            };
            m.link.verdict.send_if_modified(|v| {
                let changed = *v != verdict;
                *v = verdict;
                changed
            });
        }
    }
}

impl<K> Members<K> {
    fn entries(&self) -> Vec<Entry<'_>> {
        self.by_name
            .iter()
            .map(|(name, m)| Entry {
                name,
                created: m.created.as_ref(),
                report: m.report.as_ref(),
            })
            .collect()
    }

    fn len(&self) -> usize {
        self.by_name.len()
    }

    fn unreported(&self) -> Vec<&str> {
        self.by_name
            .iter()
            .filter(|(_, m)| m.report.is_none())
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::config::QueueConfig;
    use crate::operator::crds::LogPipelineSpec;
    use crate::operator::pem_store::DirPemStore;
    use crate::operator::pipeline_spec::{
        Rejection, ResolveContext, Resolved, StaticSecrets, resolve,
    };

    fn resolved(name: &str, input: bool) -> Resolved {
        let spec: LogPipelineSpec = serde_json::from_value(serde_json::json!({
            "input": {"otlp": {"enabled": input}},
            "output": {"otlp": {"protocol": "http", "endpoint": {"value": "http://backend:4318"}}}
        }))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pems = DirPemStore::new(dir.path()).unwrap();
        let ctx = ResolveContext {
            secrets: &StaticSecrets::new(),
            pems: &pems,
            now: Timestamp::now(),
            queue_defaults: QueueConfig::default(),
        };
        resolve(name, &spec, &ctx).unwrap()
    }

    fn report(name: &str, resolution: Result<Resolved, Rejection>) -> Report {
        Report {
            name: name.to_owned(),
            uid: None,
            seq: 1,
            generation: Some(3),
            resolution,
            secrets: BTreeMap::from([("ns/s".to_owned(), "7".to_owned())]),
        }
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    /// The limit counts only resolved pipelines, oldest first; an invalid
    /// or not yet reported pipeline takes no slot; a pipeline with its input
    /// disabled is applied but not routed to.
    #[test]
    fn the_oldest_resolved_pipelines_run() {
        let times: Vec<Time> = (0..8).map(at).collect();
        let rejected = report(
            "a-invalid",
            Err(Rejection::new(
                "EndpointInvalid",
                "OTLP output endpoint invalid",
            )),
        );
        let reports: Vec<Report> = ["p1", "p2", "p3", "p4", "p5", "p6"]
            .iter()
            .map(|n| report(n, Ok(resolved(n, *n != "p2"))))
            .collect();
        let mut entries = vec![
            Entry {
                name: "a-invalid",
                created: Some(&times[0]),
                report: Some(&rejected),
            },
            Entry {
                name: "b-unreported",
                created: Some(&times[1]),
                report: None,
            },
        ];
        // p6 is the oldest of the resolved, p1 the youngest.
        for (i, r) in reports.iter().enumerate() {
            entries.push(Entry {
                name: &r.name,
                created: Some(&times[7 - i]),
                report: Some(r),
            });
        }
        let d = decide(
            PipelineKind::Log,
            &entries,
            Some(super::super::max_pipelines::DEFAULT_MAX_PIPELINES),
        );
        let names = |v: &[&str]| v.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(d.admitted, names(&["p2", "p3", "p4", "p5", "p6"]));
        let published: Vec<&str> = d.pipelines.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            published,
            [
                "logpipeline.p3",
                "logpipeline.p4",
                "logpipeline.p5",
                "logpipeline.p6"
            ]
        );
        assert_eq!(d.applied.len(), 5);
        assert_eq!(
            d.applied[0],
            AppliedPipeline {
                kind: "LogPipeline".to_owned(),
                name: "p2".to_owned(),
                generation: 3,
                secrets: BTreeMap::from([("ns/s".to_owned(), "7".to_owned())]),
            }
        );
        assert_eq!(decide(PipelineKind::Log, &[], None), Decision::default());
        // operator.max_pipelines: 2 and 0 (no limit).
        let d = decide(PipelineKind::Log, &entries, Some(2));
        assert_eq!(d.admitted, names(&["p5", "p6"]));
        let d = decide(PipelineKind::Log, &entries, None);
        assert_eq!(d.admitted.len(), 6, "every resolved pipeline");
    }
}

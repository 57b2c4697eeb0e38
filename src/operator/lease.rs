//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: every replica serves the data path; only the
//! holder of the Lease writes status and the effective-config ConfigMap.
//!
//! Each round (every `retry_period`) a replica reads the Lease and, by
//! [`decide`]:
//! - creates it when it does not exist (409 on create: another replica won);
//! - renews it when it holds it (`renewTime = now`);
//! - takes it over when the holder let it expire (`renewTime +
//!   leaseDurationSeconds < now`) or there is no holder
//!   (`leaseTransitions + 1`);
//! - otherwise follows.
//!
//! Every write is a replace carrying the read `resourceVersion`, so two
//! replicas racing for an expired Lease cannot both win: the loser gets 409
//! and follows. A leader that cannot renew for `renew_deadline` steps down
//! on its own, before its Lease can expire and another replica takes over,
//! so two leaders never act at once for longer than the clock skew.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::metrics::Metrics;

/// How a replica runs for leader.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the pod name and a random suffix).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// Step down when renewing failed for this long (less than
    /// `lease_duration`).
    pub renew_deadline: Duration,
    /// How often to try.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It does not exist: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder let it expire (or there is none): take it.
    TakeOver,
    /// Someone else holds it.
    Follow {
        /// The holder.
        holder: String,
    },
}

/// The pure decision of one round.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    let expired = spec
        .renew_time
        .as_ref()
        .is_none_or(|t| t.0.as_second().saturating_add(duration) < now.as_second());
    if expired {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

/// Whether this replica leads now; shared with whoever must only act as
/// leader.
#[derive(Debug, Default)]
pub struct Leadership {
    leader: AtomicBool,
}

impl Leadership {
    /// Whether this replica holds the Lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    fn set(&self, leader: bool, identity: &str, metrics: &Metrics) {
        let was = self.leader.swap(leader, Ordering::AcqRel);
        if was != leader {
            if leader {
                tracing::info!(identity, "Became the leader");
            } else {
                tracing::warn!(identity, "No longer the leader");
            }
        }
        metrics.kube.leader.set(i64::from(leader));
    }
}

fn spec_for(
    cfg: &LeaseConfig,
    now: Timestamp,
    transitions: i32,
    acquired: Option<MicroTime>,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// One round: returns whether we hold the Lease afterwards, or the error.
async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let step = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    );
    match (step, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(cfg, now, 0, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (Step::Renew, Some(mut lease)) => {
            let old = lease.spec.take().unwrap_or_default();
            lease.spec = Some(spec_for(
                cfg,
                now,
                old.lease_transitions.unwrap_or(0),
                old.acquire_time,
            ));
            replace(api, cfg, &lease).await
        }
        (Step::TakeOver, Some(mut lease)) => {
            let old = lease.spec.take().unwrap_or_default();
            lease.spec = Some(spec_for(
                cfg,
                now,
                old.lease_transitions.unwrap_or(0).saturating_add(1),
                None,
            ));
            replace(api, cfg, &lease).await
        }
        _ => Ok(false),
    }
}

/// Replace with the read resourceVersion; a 409 means another replica wrote
/// first: not ours this round.
async fn replace(api: &Api<Lease>, cfg: &LeaseConfig, lease: &Lease) -> Result<bool, kube::Error> {
    match api.replace(&cfg.name, &PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs for leader until the task is aborted.
pub async fn run(
    api: Api<Lease>,
    cfg: LeaseConfig,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
) {
    let mut last_renewed: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(cfg.retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match round(&api, &cfg).await {
            Ok(true) => {
                last_renewed = Some(std::time::Instant::now());
                leadership.set(true, &cfg.identity, &metrics);
            }
            Ok(false) => {
                last_renewed = None;
                leadership.set(false, &cfg.identity, &metrics);
            }
            Err(e) => {
                metrics.kube.watch_error("Lease");
                tracing::warn!(error = %e, "Leader election round failed");
                let stale = last_renewed.is_none_or(|t| t.elapsed() >= cfg.renew_deadline);
                if stale {
                    leadership.set(false, &cfg.identity, &metrics);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed).unwrap_or(Timestamp::UNIX_EPOCH),
            )),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn the_round_decides_as_client_go_does() {
        let now = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(decide(None, "a", now), Step::Create);
        assert_eq!(decide(Some(&lease("a", 990, 15)), "a", now), Step::Renew);
        assert_eq!(
            decide(Some(&lease("b", 990, 15)), "a", now),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease("b", 980, 15)), "a", now),
            Step::TakeOver,
            "expired"
        );
        assert_eq!(
            decide(Some(&lease("", 999, 15)), "a", now),
            Step::TakeOver,
            "no holder"
        );
        let mut no_renew = lease("b", 0, 15);
        no_renew.renew_time = None;
        assert_eq!(decide(Some(&no_renew), "a", now), Step::TakeOver);
    }
}

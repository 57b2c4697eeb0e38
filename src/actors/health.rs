//! Health: turns heartbeats into the `/healthz` and `/readyz` verdicts.
//!
//! A unit of the supervision tree (a task, not an actor: it receives
//! nothing): it polls every second. Out: nothing; the verdict is written
//! into a shared [`HealthState`] that the admin server reads without going
//! through a mailbox (so a stuck actor system shows up as a stale verdict
//! age, not as a hung probe).
//!
//! Live means: the LMDB writer thread looped within `WRITER_STUCK_AFTER`, and
//! no delivery attempt has been running longer than its timeout allows.
//! Ready means: not shutting down, the listeners are bound, the store is open, and at least one
//! destination is healthy (or there is none): a destination is unhealthy
//! once its sends have failed without a success for `admin.unhealthy_after`.
//! A dead backend does not make the process unlive (restarting would not
//! help) and one dead backend among several does not make it unready: data
//! for it is still buffered, and the others still need the traffic.
//! What survives a restart: everything (the state is shared, derived anew).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::Recipient;

use super::exporter_pool::{Beats, Heartbeats};
use super::unit::Unit;
use crate::metrics::Metrics;
use crate::operator::pipeline_health::{self, FlowTracker, PipelineHealth};
use crate::signal::Signal;
use crate::store::Store;

/// The writer loops at least every second even when idle; one commit taking
/// this long means the disk or the thread is stuck.
pub const WRITER_STUCK_AFTER: Duration = Duration::from_secs(30);
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What `/healthz` and `/readyz` read.
#[derive(Debug, Default)]
pub struct HealthState {
    listeners_bound: AtomicBool,
    /// SIGTERM arrived: unready for good, whatever else holds.
    stopping: AtomicBool,
    storage_open: AtomicBool,
    live: AtomicBool,
    checked_at_ms: AtomicU64,
    problems: Mutex<Vec<String>>,
    /// Millis a destination may fail before it is unhealthy.
    unhealthy_after_ms: AtomicU64,
    /// The destinations' verdicts: `(destination/signal, failing for)`,
    /// the second set only for an unhealthy one.
    destinations: Mutex<Vec<(String, Option<Duration>)>>,
    /// Each running destination's conditions, as of the last check.
    pipelines: Mutex<HashMap<(String, Signal), PipelineHealth>>,
}

impl HealthState {
    /// A state that is neither live nor ready yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            live: AtomicBool::new(true),
            ..Default::default()
        })
    }

    /// The receivers' listeners are bound.
    pub fn set_listeners_bound(&self, v: bool) {
        self.listeners_bound.store(v, Ordering::SeqCst);
    }

    /// Shutdown began: `/readyz` answers 503 from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The store is open.
    pub fn set_storage_open(&self, v: bool) {
        self.storage_open.store(v, Ordering::SeqCst);
    }

    /// How long a destination may fail without a success and stay healthy.
    pub fn set_unhealthy_after(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.unhealthy_after_ms.store(ms, Ordering::SeqCst);
    }

    fn unhealthy_after(&self) -> Duration {
        match self.unhealthy_after_ms.load(Ordering::SeqCst) {
            0 => crate::config::DEFAULT_UNHEALTHY_AFTER,
            ms => Duration::from_millis(ms),
        }
    }

    /// `Ok` when ready, else why not.
    ///
    /// # Errors
    /// The reasons, as text for the probe's body.
    pub fn ready(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            why.push("shutting down".to_owned());
        }
        if !self.listeners_bound.load(Ordering::SeqCst) {
            why.push("listeners not bound".to_owned());
        }
        if !self.storage_open.load(Ordering::SeqCst) {
            why.push("storage not open".to_owned());
        }
        if let Ok(d) = self.destinations.lock()
            && !d.is_empty()
            && d.iter().all(|(_, failing)| failing.is_some())
        {
            let each: Vec<String> = d
                .iter()
                .map(|(name, f)| format!("{name} failing for {}s", f.unwrap_or_default().as_secs()))
                .collect();
            why.push(format!("no destination is healthy: {}", each.join(", ")));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join(", "))
        }
    }

    /// `Ok` when live, else why not.
    ///
    /// # Errors
    /// The problems found by the last check.
    pub fn live(&self) -> Result<(), String> {
        if self.live.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self
            .problems
            .lock()
            .map(|p| p.join("; "))
            .unwrap_or_default())
    }

    /// The last verdict on a destination, `None` before its first check
    /// (or when it does not run).
    pub fn pipeline(&self, destination: &str, signal: Signal) -> Option<PipelineHealth> {
        self.pipelines
            .lock()
            .ok()?
            .get(&(destination.to_owned(), signal))
            .cloned()
    }

    fn record_destinations(&self, verdicts: Vec<(String, Option<Duration>)>) {
        if let Ok(mut d) = self.destinations.lock() {
            *d = verdicts;
        }
    }

    fn record(&self, problems: Vec<String>) {
        self.live.store(problems.is_empty(), Ordering::SeqCst);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.checked_at_ms.store(now, Ordering::Relaxed);
        if let Ok(mut p) = self.problems.lock() {
            *p = problems;
        }
    }
}

/// What makes the process not live: a writer silent for longer than
/// [`WRITER_STUCK_AFTER`], or an export attempt running longer than
/// `export_limit`. A backend that is down is *not* a problem here: its
/// attempts fail fast and are retried; only a hung attempt is.
pub fn problems<'a>(
    writer_idle: Duration,
    attempts: impl Iterator<Item = (&'a str, Option<Duration>)>,
    export_limit: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    if writer_idle > WRITER_STUCK_AFTER {
        out.push(format!(
            "storage writer silent for {}s",
            writer_idle.as_secs()
        ));
    }
    for (name, age) in attempts {
        if let Some(age) = age
            && age > export_limit
        {
            out.push(format!("export to {name} stuck for {}s", age.as_secs()));
        }
    }
    out
}

/// Per destination (`name/signal`): how long it has failed, if longer
/// than `after` (unhealthy), else `None`.
pub fn destination_verdicts(
    beats: &[(String, Arc<crate::delivery::Heartbeat>)],
    after: Duration,
) -> Vec<(String, Option<Duration>)> {
    beats
        .iter()
        .map(|(name, hb)| (name.clone(), hb.failing_for().filter(|f| *f >= after)))
        .collect()
}

/// Turns the verdicts into each destination's `seedgate_exporter_healthy`,
/// its conditions (metric and shared state), and forgets destinations that
/// stopped.
fn judge_pipelines(
    state: &HealthState,
    metrics: &Metrics,
    flows: &Mutex<FlowTracker>,
    verdicts: &[(String, Option<Duration>)],
) {
    let now = Instant::now();
    let mut flows = flows
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut judged = HashMap::new();
    for (key, failing) in verdicts {
        let Some((destination, signal)) = key.rsplit_once('/') else {
            continue;
        };
        let Ok(signal) = signal.parse::<Signal>() else {
            continue;
        };
        let labels = crate::metrics::Dest {
            destination: destination.to_owned(),
            signal: signal.as_str(),
        };
        metrics
            .exporter
            .healthy
            .get_or_create(&labels)
            .set(i64::from(failing.is_none()));
        let health = flows.judge(metrics, destination, signal, *failing, now);
        pipeline_health::publish(metrics, destination, signal, &health);
        judged.insert((destination.to_owned(), signal), health);
    }
    let running: HashSet<(String, &'static str)> = judged
        .keys()
        .map(|(d, s)| (d.clone(), s.as_str()))
        .collect();
    flows.retain(&running);
    metrics
        .health
        .retain_conditions(&pipeline_health::CONDITIONS, &running);
    if let Ok(mut p) = state.pipelines.lock() {
        *p = judged;
    }
}

/// See the module doc.
pub struct Health {
    state: Arc<HealthState>,
    store: Arc<Store>,
    heartbeats: Recipient<Heartbeats>,
    export_stuck_after: Duration,
    metrics: Arc<Metrics>,
    /// Drops and refusals over the flow window, per destination (kept
    /// across runs).
    flows: Mutex<FlowTracker>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("state", &self.state)
            .finish()
    }
}

/// The unit's name: its restarts are counted under it.
pub const NAME: &str = "health";

impl Health {
    /// Health writing into `state`, asking `heartbeats` for the loops'.
    pub fn new(
        state: Arc<HealthState>,
        store: Arc<Store>,
        heartbeats: Recipient<Heartbeats>,
        export_stuck_after: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            state,
            store,
            heartbeats,
            export_stuck_after,
            metrics,
            flows: Mutex::default(),
        }
    }

    /// As a unit of the supervision tree: each run checks every second
    /// until it fails.
    pub fn unit(self) -> Unit {
        let this = Arc::new(self);
        Unit::task(NAME, move || Arc::clone(&this).run())
    }

    async fn run(self: Arc<Self>) {
        self.state.set_storage_open(true);
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check().await;
        }
    }

    async fn check(&self) {
        let idle = Instant::now().saturating_duration_since(self.store.writer_heartbeat());
        // An exporter pool that does not answer reports no attempts; its
        // supervisor deals with it.
        let Beats {
            heartbeats: beats,
            destinations,
        } = self.heartbeats.send(Heartbeats).await.unwrap_or_default();
        let (state, metrics) = (&self.state, &self.metrics);
        // The queue gauges are otherwise set on a scrape only; "buffer
        // filling up" must not wait for Prometheus.
        metrics.refresh_queues(destinations.iter().map(AsRef::as_ref));
        let attempts = beats
            .iter()
            .map(|(name, hb)| (name.as_str(), hb.attempt_age()));
        state.record(problems(idle, attempts, self.export_stuck_after));
        let after = state.unhealthy_after();
        let verdicts = destination_verdicts(&beats, after);
        judge_pipelines(state, metrics, &self.flows, &verdicts);
        state.record_destinations(verdicts);
        metrics.health.ready.set(i64::from(state.ready().is_ok()));
        metrics.health.live.set(i64::from(state.live().is_ok()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_writer_or_a_hung_export_is_not_live_a_slow_one_is() {
        let limit = Duration::from_secs(40);
        let quiet = Duration::from_secs(1);
        assert!(
            problems(
                quiet,
                [("a/logs", None), ("b/logs", Some(Duration::from_secs(39)))].into_iter(),
                limit
            )
            .is_empty()
        );
        let p = problems(
            quiet,
            [("b/logs", Some(Duration::from_secs(41)))].into_iter(),
            limit,
        );
        assert_eq!(p, vec!["export to b/logs stuck for 41s".to_owned()]);
        let p = problems(
            WRITER_STUCK_AFTER + Duration::from_secs(1),
            std::iter::empty(),
            limit,
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("storage writer silent"));

        let state = HealthState::new();
        assert!(
            state.ready().is_err(),
            "not ready before listeners and storage"
        );
        state.set_listeners_bound(true);
        state.set_storage_open(true);
        assert!(state.ready().is_ok());
        state.record(p);
        assert!(state.live().unwrap_err().contains("storage writer silent"));
        state.record(Vec::new());
        assert!(state.live().is_ok());
    }
}

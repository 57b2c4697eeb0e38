//! Tasks on the tokio runtime that are restarted one by one when they end.
//!
//! [`Tasks`] keeps one task per key together with the plan it was started
//! from; the owner calls [`Tasks::restart_dead`] every [`CHECK_EVERY`], and
//! each task that ended (a panic ends it: tokio catches the panic at the
//! task boundary) is started again from its plan, alone, counted in
//! `seedgate_actor_restarts_total{actor}` with the panic message logged.
//! Its siblings are not touched.
//! A task that keeps failing soon after its start waits longer each time
//! ([`restart_delay`]: at once, then 1 s doubling to 30 s; a run of
//! [`STABLE_AFTER`] forgives the past). A restart that waits is not a
//! sleeping task but a plan kept in the set, started by the first
//! `restart_dead` after its delay: so the owner can tell a task that runs
//! from one that waits ([`Tasks::state`]) and act on it in between (the
//! balancer re-routes a waiting backend's queue) without a run starting
//! under its feet.
//! Dropping a [`Tasks`] aborts every task in it, so an owner that dies or is
//! aborted never leaves tasks behind, and a restarted owner never runs two
//! tasks for one key.
//!
//! Owners: the exporter pool (a delivery loop per seed pipeline), each shoot
//! client (a delivery loop per signal), each pipeline aggregator (a pipeline
//! actor per pipeline resource, `crate::operator::pipeline_actor`), each load-balancing
//! balancer (a delivery loop per backend, `crate::loadbalancing`).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// How often owners check their tasks.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a [`Tasks`] runs: a plan that can be started any number of times.
pub trait Task: Clone + Send + 'static {
    /// The task's name among its siblings (unique; used in logs).
    fn key(&self) -> String;

    /// Whether `other` is this very plan (a clone of it), so that a task
    /// running `other` may go on instead of starting from `self`.
    fn same_plan(&self, other: &Self) -> bool;

    /// What its restarts are counted as:
    /// `seedgate_actor_restarts_total{actor}`.
    fn actor(&self) -> &'static str;

    /// One run of the task. It is not meant to end: when it does, it failed,
    /// and a clone of the plan runs again.
    fn run(self) -> impl Future<Output = ()> + Send + 'static;
}

struct Running<T> {
    plan: T,
    /// The run; `None` while a restart waits out its delay.
    task: Option<JoinHandle<()>>,
    /// When this run was started (or, while it waits, will be).
    started: Instant,
    /// Failures in a row, each within [`STABLE_AFTER`] of its start.
    failures: u32,
}

/// A task that ran this long before it failed starts its backoff afresh.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// The longest wait before a task that keeps failing is started again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long to wait before the run after `failures` failures in a row: the
/// first restart is at once (the next check), then 1 s, 2 s, 4 s, ... up to
/// [`MAX_BACKOFF`], so a task that fails on every start (a bug, a poisoned
/// input) does not spin a core and flood the log.
pub fn restart_delay(failures: u32) -> Duration {
    match failures {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_BACKOFF),
    }
}

/// Where a task of a [`Tasks`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Its run goes on.
    Running,
    /// Its run ended; the next [`Tasks::restart_dead`] will see to it.
    Ended,
    /// It failed and waits out its restart delay.
    Waiting,
}

/// See the module doc.
pub struct Tasks<T> {
    rt: Handle,
    running: HashMap<String, Running<T>>,
}

impl<T> std::fmt::Debug for Tasks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

// === impl Tasks ===

impl<T: Task> Tasks<T> {
    /// No tasks yet; they will run on `rt`.
    pub fn new(rt: Handle) -> Self {
        Self {
            rt,
            running: HashMap::new(),
        }
    }

    /// Starts `plan` unless a task runs for its key.
    pub fn start(&mut self, plan: T) {
        self.start_after(plan, Duration::ZERO, 0);
    }

    fn start_after(&mut self, plan: T, delay: Duration, failures: u32) {
        let k = plan.key();
        if !self.running.contains_key(&k) {
            let task = delay.is_zero().then(|| self.rt.spawn(plan.clone().run()));
            let started = Instant::now() + delay;
            self.running.insert(
                k,
                Running {
                    plan,
                    task,
                    started,
                    failures,
                },
            );
        }
    }

    /// Runs exactly `plans`: stops tasks not among them, starts missing ones,
    /// and starts again those whose plan is a new one under the same key (a
    /// pipeline whose output changed gets a loop with the new exporter on
    /// the same queue).
    pub fn set(&mut self, plans: Vec<T>) {
        let wanted: HashMap<String, T> = plans.into_iter().map(|p| (p.key(), p)).collect();
        self.running.retain(|k, r| {
            let keep = wanted.get(k).is_some_and(|p| p.same_plan(&r.plan));
            if !keep {
                r.abort();
                if wanted.contains_key(k) {
                    tracing::info!(task = %k, "The task's plan changed; starting it again with the new one");
                }
            }
            keep
        });
        for plan in wanted.into_values() {
            self.start(plan);
        }
    }

    /// Stops the task of `key`, if one runs, and forgets its plan.
    pub fn stop(&mut self, key: &str) {
        drop(self.stop_and_wait(key));
    }

    /// Stops the task of `key` like [`Tasks::stop`]; the future resolves
    /// once the task is gone (an abort takes effect at the task's next
    /// yield, so it may still be running when this returns).
    pub fn stop_and_wait(&mut self, key: &str) -> impl Future<Output = ()> + use<T> {
        let task = self.running.remove(key).and_then(|r| r.task);
        if let Some(t) = &task {
            t.abort();
        }
        async move {
            if let Some(t) = task {
                t.await.ok();
            }
        }
    }

    /// Aborts the run of `key` but keeps its plan, so that the next
    /// [`Tasks::restart_dead`] starts it again, counted, exactly as after a
    /// failure. Answers whether the set has such a task.
    pub fn abort(&mut self, key: &str) -> bool {
        let Some(r) = self.running.get(key) else {
            return false;
        };
        r.abort();
        true
    }

    /// Where the task of `key` is; `None` when the set has none.
    pub fn state(&self, key: &str) -> Option<TaskState> {
        self.running.get(key).map(|r| match &r.task {
            None => TaskState::Waiting,
            Some(t) if t.is_finished() => TaskState::Ended,
            Some(_) => TaskState::Running,
        })
    }

    /// Starts again every task that ended, counting each as a restart of
    /// its [`Task::actor`], and starts the waiting ones whose delay is over;
    /// the others are untouched. Returns how many ended.
    pub fn restart_dead(&mut self, metrics: &Metrics) -> usize {
        let now = Instant::now();
        for r in self.running.values_mut() {
            if r.task.is_none() && r.started <= now {
                r.task = Some(self.rt.spawn(r.plan.clone().run()));
                r.started = now;
            }
        }
        let dead: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.as_ref().is_some_and(JoinHandle::is_finished))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            if let Some(old) = self.running.remove(k) {
                // Finished, so its outcome is ready: a panic says why.
                let why = match old.task.and_then(FutureExt::now_or_never) {
                    Some(Err(e)) if e.is_panic() => panic_text(e.into_panic()),
                    _ => "it returned".to_owned(),
                };
                let failures = if old.started.elapsed() > STABLE_AFTER {
                    1
                } else {
                    old.failures + 1
                };
                let delay = restart_delay(failures);
                let actor = old.plan.actor();
                tracing::error!(actor, task = %k, why = %why, failures_in_a_row = failures, restart_in = ?delay, "A supervised task ended unexpectedly; starting it again");
                metrics.count_restart(actor);
                self.start_after(old.plan, delay, failures);
            }
        }
        dead.len()
    }

    /// The plans of the running tasks.
    pub fn plans(&self) -> Vec<T> {
        self.running.values().map(|r| r.plan.clone()).collect()
    }
}

impl<T> Tasks<T> {
    /// Aborts every task.
    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.abort();
        }
    }
}

impl<T> Running<T> {
    fn abort(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        // An owner that dies (a panic in an actor, an aborted aggregator)
        // takes its tasks with it.
        self.stop_all();
    }
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "a panic".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metrics::ActorLabel;

    /// A task that panics on its first `panics` runs, then counts ticks.
    #[derive(Clone)]
    struct Probe {
        key: &'static str,
        panics: usize,
        runs: Arc<AtomicUsize>,
        ticks: Arc<AtomicUsize>,
    }

    impl Probe {
        fn new(key: &'static str, panics: usize) -> Self {
            Self {
                key,
                panics,
                runs: Arc::default(),
                ticks: Arc::default(),
            }
        }

        fn runs(&self) -> usize {
            self.runs.load(Ordering::SeqCst)
        }

        fn ticks(&self) -> usize {
            self.ticks.load(Ordering::SeqCst)
        }
    }

    impl Task for Probe {
        fn key(&self) -> String {
            self.key.to_owned()
        }

        fn same_plan(&self, other: &Self) -> bool {
            Arc::ptr_eq(&self.runs, &other.runs)
        }

        fn actor(&self) -> &'static str {
            "pipeline"
        }

        async fn run(self) {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            assert!(run >= self.panics, "{} fails on run {run}", self.key);
            loop {
                self.ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// One task panics twice: it alone is started again, each time counted;
    /// its sibling runs on, never restarted; dropping the set aborts both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_task_is_restarted_alone_and_counted() {
        let metrics = Metrics::new();
        let restarts = || {
            metrics
                .actor
                .restarts
                .get_or_create(&ActorLabel { actor: "pipeline" })
                .get()
        };
        let (bad, good) = (Probe::new("bad", 2), Probe::new("good", 0));
        let mut tasks = Tasks::new(Handle::current());
        tasks.start(bad.clone());
        tasks.start(good.clone());
        tasks.start(good.clone()); // one task per key
        until("the sibling to run", || good.ticks() > 0).await;

        let mut restarted = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while bad.ticks() == 0 {
            assert!(
                Instant::now() < deadline,
                "the failing task never recovered"
            );
            restarted += tasks.restart_dead(&metrics);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(restarted, 2);
        assert_eq!(bad.runs(), 3);
        assert_eq!(restarts(), 2);

        // The sibling was never restarted and kept running throughout.
        assert_eq!(good.runs(), 1);
        let before = good.ticks();
        until("the sibling to keep running", || good.ticks() > before + 5).await;
        assert_eq!(tasks.restart_dead(&metrics), 0);

        // Stopping one leaves the other; dropping the set aborts the rest.
        tasks.stop("bad");
        let frozen = bad.ticks();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(bad.ticks() <= frozen + 1, "a stopped task runs on");
        until("the sibling still running", || good.ticks() > before + 10).await;
        drop(tasks);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let frozen = good.ticks();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(good.ticks() <= frozen + 1, "a task outlived its owner");
        assert_eq!(restarts(), 2);
    }

    /// A task that fails again soon after its restart waits out its delay
    /// in the set, not running, and the first check after the delay starts
    /// it; `stop_and_wait` resolves once the task is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_that_waits_is_not_running_until_its_delay_is_over() {
        let metrics = Metrics::new();
        let bad = Probe::new("bad", 2);
        let mut tasks = Tasks::new(Handle::current());
        tasks.start(bad.clone());
        let ended = |tasks: &Tasks<Probe>| tasks.state("bad") == Some(TaskState::Ended);
        until("the first run to end", || ended(&tasks)).await;
        assert_eq!(tasks.restart_dead(&metrics), 1);
        until("the second run to end", || ended(&tasks)).await;
        let failed = Instant::now();
        assert_eq!(tasks.restart_dead(&metrics), 1);
        assert_eq!(tasks.state("bad"), Some(TaskState::Waiting));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(tasks.restart_dead(&metrics), 0);
        assert_eq!(tasks.state("bad"), Some(TaskState::Waiting));
        assert_eq!(bad.runs(), 2, "a waiting restart ran early");

        while tasks.state("bad") != Some(TaskState::Running) {
            assert!(
                failed.elapsed() < Duration::from_secs(10),
                "never restarted"
            );
            tasks.restart_dead(&metrics);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed.elapsed() >= restart_delay(2));
        until("the third run to tick", || bad.ticks() > 0).await;
        assert_eq!(bad.runs(), 3);

        tasks.stop_and_wait("bad").await;
        assert_eq!(tasks.state("bad"), None);
        let frozen = bad.ticks();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(bad.ticks(), frozen, "a stopped task runs on");
    }

    #[test]
    fn restarts_back_off_from_at_once_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }

    /// `set` leaves a task running its plan alone, starts a new plan under
    /// the same key in place of the old one, and stops what is not wanted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn set_replaces_a_task_only_for_a_new_plan() {
        let stopped = async |p: &Probe| {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let frozen = p.ticks();
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.ticks() <= frozen + 1
        };
        let mut tasks = Tasks::new(Handle::current());
        let old = Probe::new("p", 0);
        tasks.set(vec![old.clone()]);
        until("the task to run", || old.ticks() > 0).await;
        tasks.set(vec![old.clone()]);
        assert_eq!(old.runs(), 1, "the same plan keeps its task");
        assert!(!stopped(&old).await);

        let new = Probe::new("p", 0);
        tasks.set(vec![new.clone()]);
        until("the new plan to run", || new.ticks() > 0).await;
        assert!(stopped(&old).await, "the old plan's task runs on");
        assert_eq!(tasks.plans().len(), 1);

        tasks.set(Vec::new());
        assert!(stopped(&new).await);
        assert!(tasks.plans().is_empty());
    }
}

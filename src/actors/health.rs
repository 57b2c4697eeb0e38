//! The health actor: turns heartbeats into the `/healthz` and `/readyz`
//! verdicts.
//!
//! In: [`Restart`] only; it polls every second. Out: nothing; the verdict is
//! written into a shared [`HealthState`] that the admin server reads without
//! going through a mailbox (so a stuck actor system shows up as a stale
//! verdict age, not as a hung probe).
//!
//! Live means: the LMDB writer thread looped within `WRITER_STUCK_AFTER`, and
//! no delivery attempt has been running longer than its timeout allows.
//! Ready means: the listeners are bound and the store is open.
//! What survives a restart: everything (the state is shared, derived anew).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::{
    Actor, ActorContext, AsyncContext, Context, Handler, Recipient, Supervised, WrapFuture,
};

use super::Restart;
use super::exporter_pool::Heartbeats;
use crate::metrics::{ActorLabel, Metrics};
use crate::store::Store;

/// The writer loops at least every second even when idle; one commit taking
/// this long means the disk or the thread is stuck.
pub const WRITER_STUCK_AFTER: Duration = Duration::from_secs(30);
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What `/healthz` and `/readyz` read.
#[derive(Debug, Default)]
pub struct HealthState {
    listeners_bound: AtomicBool,
    storage_open: AtomicBool,
    live: AtomicBool,
    checked_at_ms: AtomicU64,
    problems: Mutex<Vec<String>>,
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

    /// The store is open.
    pub fn set_storage_open(&self, v: bool) {
        self.storage_open.store(v, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    ///
    /// # Errors
    /// The reasons, as text for the probe's body.
    pub fn ready(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if !self.listeners_bound.load(Ordering::SeqCst) {
            why.push("listeners not bound");
        }
        if !self.storage_open.load(Ordering::SeqCst) {
            why.push("storage not open");
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

/// See the module doc.
pub struct Health {
    state: Arc<HealthState>,
    store: Arc<Store>,
    heartbeats: Recipient<Heartbeats>,
    export_stuck_after: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("state", &self.state)
            .finish()
    }
}

impl Health {
    /// A health actor writing into `state`.
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
        }
    }
}

impl Actor for Health {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.state.set_storage_open(true);
        ctx.run_interval(CHECK_EVERY, |this, ctx| {
            let mut problems = Vec::new();
            let idle = Instant::now().saturating_duration_since(this.store.writer_heartbeat());
            if idle > WRITER_STUCK_AFTER {
                problems.push(format!("storage writer silent for {}s", idle.as_secs()));
            }
            let state = Arc::clone(&this.state);
            let limit = this.export_stuck_after;
            let ask = this.heartbeats.send(Heartbeats);
            ctx.spawn(
                async move {
                    if let Ok(beats) = ask.await {
                        for (name, hb) in beats {
                            if let Some(age) = hb.attempt_age()
                                && age > limit
                            {
                                problems
                                    .push(format!("export to {name} stuck for {}s", age.as_secs()));
                            }
                        }
                    }
                    state.record(problems);
                }
                .into_actor(this),
            );
        });
    }
}

impl Supervised for Health {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics
            .actor
            .restarts
            .get_or_create(&ActorLabel { actor: "health" })
            .inc();
    }
}

impl Handler<Restart> for Health {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

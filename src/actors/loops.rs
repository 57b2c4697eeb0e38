//! A set of delivery loops run on the tokio runtime, each restarted on its
//! own when it ends (a panic in a send ends it). The exporter pool holds one
//! for the seed pipelines, each shoot client one for its signals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::delivery::{Delivery, Heartbeat};
use crate::loadbalancing::Balance;
use crate::metrics::Metrics;
use crate::routing::Destination;
use crate::store::Queue;

/// How often owners check their loops.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A destination and what its loop needs that the snapshot does not hold.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    /// The loop's whole setup.
    pub delivery: Delivery,
    /// Set for a load-balanced pipeline: its queue is read by a balancer
    /// that feeds one delivery loop per backend.
    pub balance: Option<Arc<Balance>>,
}

impl DeliveryPlan {
    /// The task that serves the destination: its delivery loop, or its
    /// balancer.
    async fn run(self) {
        match self.balance {
            Some(balance) => crate::loadbalancing::run(self.delivery, balance).await,
            None => self.delivery.run().await,
        }
    }
}

struct Running {
    plan: DeliveryPlan,
    task: JoinHandle<()>,
}

/// See the module doc.
pub struct DeliveryLoops {
    rt: Handle,
    running: HashMap<String, Running>,
}

impl std::fmt::Debug for DeliveryLoops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryLoops")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key(d: &Destination) -> String {
    format!("{}/{}", d.name, d.signal.as_str())
}

impl DeliveryLoops {
    /// No loops yet; they will run on `rt`.
    pub fn new(rt: Handle) -> Self {
        Self {
            rt,
            running: HashMap::new(),
        }
    }

    /// Starts the loop of `plan` unless one runs for its destination.
    pub fn start(&mut self, plan: DeliveryPlan) {
        let k = key(&plan.delivery.destination);
        if !self.running.contains_key(&k) {
            let task = self.rt.spawn(plan.clone().run());
            self.running.insert(k, Running { plan, task });
        }
    }

    /// Runs exactly `plans`: stops loops not among them, starts missing ones.
    pub fn set(&mut self, plans: Vec<DeliveryPlan>) {
        let wanted: HashMap<String, DeliveryPlan> = plans
            .into_iter()
            .map(|p| (key(&p.delivery.destination), p))
            .collect();
        self.running.retain(|k, r| {
            let keep = wanted.contains_key(k);
            if !keep {
                r.task.abort();
            }
            keep
        });
        for plan in wanted.into_values() {
            self.start(plan);
        }
    }

    /// Starts again every loop that ended, counting each as a restart of
    /// `actor`; the others are untouched.
    pub fn restart_dead(&mut self, metrics: &Metrics, actor: &'static str) {
        let dead: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            if let Some(old) = self.running.remove(&k) {
                tracing::error!(destination = %k, "A delivery loop ended unexpectedly; starting it again");
                metrics.count_restart(actor);
                self.start(old.plan);
            }
        }
    }

    /// Aborts every loop (in-flight sends with them).
    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }

    /// The plans of the running loops.
    pub fn plans(&self) -> Vec<DeliveryPlan> {
        self.running.values().map(|r| r.plan.clone()).collect()
    }

    /// Heartbeats of the running loops, by destination.
    pub fn heartbeats(&self) -> Vec<(String, Arc<Heartbeat>)> {
        self.running
            .iter()
            .map(|(k, r)| (k.clone(), Arc::clone(&r.plan.delivery.heartbeat)))
            .collect()
    }
}

impl Drop for DeliveryLoops {
    fn drop(&mut self) {
        // An owner that dies (a panic in an actor) takes its loops with it,
        // so a restarted owner never runs two loops on one queue.
        self.stop_all();
    }
}

/// Waits until every queue is empty or `deadline` passes; what is left
/// stays in LMDB for the next start.
pub async fn drain(queues: Vec<Arc<Queue>>, deadline: Instant, what: &str) {
    loop {
        let left: u64 = queues.iter().map(|q| q.entries()).sum();
        if left == 0 {
            tracing::info!(what, "Every queue is empty");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                what,
                entries = left,
                "Shutdown deadline reached; the rest stays on disk for the next start"
            );
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

//! A shoot client: the delivery of one shoot namespace's data to that
//! shoot's own backend.
//!
//! One supervised task per shoot namespace, created by the shoot manager on
//! the first record that needs it and held in the manager's
//! [`Tasks`](super::loops::Tasks). It runs one delivery loop per signal
//! shoot clients carry, each reading the client's own LMDB queue
//! (`shoot/<ns>/<signal>`). Its queue limits and `when_full` policy are
//! applied by the hot path (the queue's [`crate::routing::Destination`]).
//!
//! Failure isolation: a panic in one of its loops ends this client's task
//! only; the manager's [`Tasks`](super::loops::Tasks) starts it again over
//! the same queues (counted in
//! `seedgate_actor_restarts_total{actor="shoot_client"}`, with the backoff
//! of every supervised task), and every other client runs on. Nothing
//! queued is lost: it is on disk, and a new run begins at the oldest entry.

use std::sync::Arc;

use tokio::sync::Notify;

use super::loops::Task;
use crate::delivery::plan::DeliveryPlan;

/// See the module doc.
#[derive(Debug, Clone)]
pub struct ShootClient {
    namespace: Arc<str>,
    loops: Arc<[DeliveryPlan]>,
    /// Fault injection for tests (`admin.fault_injection`): notified, the
    /// client panics exactly as a bug in it would.
    crash: Arc<Notify>,
}

impl ShootClient {
    /// The client of `namespace`, running `loops` (one per signal).
    pub fn new(namespace: &str, loops: Vec<DeliveryPlan>) -> Self {
        Self {
            namespace: namespace.into(),
            loops: loops.into(),
            crash: Arc::default(),
        }
    }

    /// Makes the running client panic.
    pub fn crash(&self) {
        self.crash.notify_one();
    }
}

impl Task for ShootClient {
    fn key(&self) -> String {
        self.namespace.to_string()
    }

    fn same_plan(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.loops, &other.loops)
    }

    fn actor(&self) -> &'static str {
        "shoot_client"
    }

    #[allow(clippy::panic)] // the point of fault injection
    async fn run(self) {
        let loops = futures::future::join_all(self.loops.iter().cloned().map(Task::run));
        tokio::select! {
            _ = loops => {}
            () = self.crash.notified() => {
                panic!("fault injected into the shoot client of {}", self.namespace);
            }
        }
    }
}

//! A destination's delivery, as a supervised task: its plan (the loop's
//! setup, the balancer of a load-balanced pipeline, the processors' own
//! stages), started and restarted by a
//! [`Tasks`](crate::actors::loops::Tasks) (the exporter pool's for
//! seed pipelines, a shoot client's for its signals), and the drain at
//! shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Delivery;
use crate::actors::loops::Task;
use crate::loadbalancing::Balance;
use crate::routing::Destination;
use crate::store::Queue;

/// A destination and what its loop needs that the snapshot does not hold.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    /// The loop's whole setup.
    pub delivery: Delivery,
    /// Set for a load-balanced pipeline: its queue is read by a balancer
    /// that feeds one delivery loop per backend.
    pub balance: Option<Arc<Balance>>,
    /// Where routing stores the destination's share of a request: the
    /// delivery's destination, or with tail sampling one whose queue holds
    /// the pending traces.
    pub ingest: Arc<Destination>,
    /// Set when the pipeline's processors have tasks of their own (the tail
    /// sampling decider, the span metrics flusher): they run with the
    /// delivery loop, supervised as one.
    pub stages: Option<Arc<crate::processors::Processors>>,
}

impl Task for DeliveryPlan {
    fn key(&self) -> String {
        let d = &self.delivery.destination;
        format!("{}/{}", d.name, d.signal.as_str())
    }

    /// The publisher hands out the same destination for an unchanged
    /// pipeline and builds a new one (same queue, new exporter) for a
    /// changed one.
    fn same_plan(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.delivery.destination, &other.delivery.destination)
            && Arc::ptr_eq(&self.delivery.exporter, &other.delivery.exporter)
    }

    /// Only the exporter pool runs these as tasks: a shoot's loops run
    /// inside its client's task (counted as `shoot_client`), a backend's
    /// as the balancer's `BackendLoop` (`lb_backend`).
    fn actor(&self) -> &'static str {
        "delivery"
    }

    /// The task that serves the destination: its delivery loop, or its
    /// balancer.
    async fn run(self) {
        let stages = self.stages.clone().map(|p| {
            let ctx = crate::processors::StageContext {
                store: Arc::clone(&self.delivery.store),
                writer: self.delivery.writer.clone(),
                metrics: Arc::clone(&self.delivery.metrics),
                export: crate::processors::ExportQueue {
                    name: self.delivery.destination.name.clone(),
                    queue: Arc::clone(&self.delivery.destination.queue),
                    max_bytes: self.delivery.destination.limits.max_bytes.0,
                },
            };
            async move { p.run_stages(ctx).await }
        });
        let serve = async move {
            match self.balance {
                Some(balance) => crate::loadbalancing::run(self.delivery, balance).await,
                None => self.delivery.run().await,
            }
        };
        match stages {
            Some(stages) => {
                tokio::join!(serve, stages);
            }
            None => serve.await,
        }
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

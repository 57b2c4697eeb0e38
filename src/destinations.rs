//! Building a destination: its LMDB queue, its exporter and its delivery
//! plan. One place for seed pipelines (from the file or from pipeline
//! resources) and shoot clients alike.

use std::sync::Arc;

use tokio::runtime::Handle;

use crate::actors::loops::DeliveryPlan;
use crate::config::{BatchConfig, OutputConfig, QueueConfig, RetryConfig};
use crate::delivery::Delivery;
use crate::exporters::Exporter;
use crate::metrics::Metrics;
use crate::routing::{Destination, DestinationKind};
use crate::signal::Signal;
use crate::store::{Store, WriteOp};

/// What one destination is made of, besides the shared parts.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The pipeline name or the shoot namespace.
    pub name: &'a str,
    /// Pipeline or shoot client.
    pub kind: DestinationKind,
    /// Its signal.
    pub signal: Signal,
    /// Where and how it sends.
    pub output: &'a OutputConfig,
    /// Its queue limit and policy.
    pub queue: QueueConfig,
    /// Its batching.
    pub batch: BatchConfig,
    /// Its retry.
    pub retry: RetryConfig,
}

/// The shared parts every destination is built with.
#[derive(Debug, Clone)]
pub struct Factory {
    /// The store queues are created in.
    pub store: Arc<Store>,
    /// The writer channel (deletes).
    pub writer: crossbeam_channel::Sender<WriteOp>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The runtime exporters are built on (tonic channels need one).
    pub rt: Handle,
}

impl Factory {
    /// Builds the destination of `spec` (creating its queue if needed).
    ///
    /// # Errors
    /// When the queue cannot be created or the exporter cannot be built,
    /// with the destination named.
    pub fn build(&self, spec: Spec<'_>) -> anyhow::Result<DeliveryPlan> {
        use anyhow::Context as _;
        let queue_name = match spec.kind {
            DestinationKind::Pipeline => Destination::queue_name(spec.name, spec.signal),
            DestinationKind::Shoot => Destination::shoot_queue_name(spec.name, spec.signal),
        };
        let queue = self
            .store
            .queue(&queue_name)
            .with_context(|| format!("{}: cannot create its queue", spec.name))?;
        let destination = Arc::new(Destination {
            name: spec.name.to_owned(),
            kind: spec.kind,
            signal: spec.signal,
            queue,
            limits: spec.queue,
        });
        let exporter = {
            let _enter = self.rt.enter();
            Exporter::build(spec.output, spec.signal, destination.metrics_label()).with_context(
                || format!("{}: cannot build its {} exporter", spec.name, spec.signal),
            )?
        };
        Ok(DeliveryPlan {
            delivery: Delivery {
                destination,
                exporter: Arc::new(exporter),
                batch: spec.batch,
                retry: spec.retry,
                store: Arc::clone(&self.store),
                writer: self.writer.clone(),
                metrics: Arc::clone(&self.metrics),
                heartbeat: Arc::default(),
            },
        })
    }
}

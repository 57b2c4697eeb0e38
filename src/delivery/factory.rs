//! Building a destination: its LMDB queue, its exporter and its delivery
//! plan. One place for seed pipelines (from the file or from pipeline
//! resources) and shoot clients alike.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::backoff::RetryPolicy;
use super::plan::DeliveryPlan;
use super::{Delivery, FlowControl};
use crate::config::{
    BatchConfig, LoadBalancingConfig, OutputConfig, ProcessorConfig, QueueConfig, RetryConfig,
};
use crate::exporters::Exporter;
use crate::loadbalancing::Balance;
use crate::metrics::Metrics;
use crate::processors::Processors;
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
    /// Set when the pipeline sends to a set of backends.
    pub loadbalancing: Option<&'a LoadBalancingConfig>,
    /// What it does to its share of a request before storing it.
    pub processors: &'a [ProcessorConfig],
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
    /// Set with `admin.fault_injection`: load-balanced backends' crash
    /// switches.
    pub lb_faults: Option<Arc<crate::loadbalancing::faults::Faults>>,
    /// The HTTP clients shoot clients share: their outputs differ only in
    /// the endpoint.
    pub shoot_http: Arc<crate::exporters::otlp_http::SharedClients>,
    /// Load-balanced pipelines' routers, kept across reloads.
    pub lb_routers: Arc<crate::loadbalancing::router::Routers>,
}

impl Factory {
    /// Builds the destination of `spec` (creating its queue if needed).
    ///
    /// # Errors
    /// When the queue cannot be created or the exporter cannot be built,
    /// with the destination named.
    pub fn build(&self, spec: Spec<'_>) -> anyhow::Result<DeliveryPlan> {
        use anyhow::Context as _;
        let mut processors = Processors::build(spec.processors)
            .and_then(|mut p| {
                p.attach(spec.processors, &self.store, spec.name)?;
                Ok(p)
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.name))?;
        let queue_name = Destination::queue_name_of(spec.kind, spec.name, spec.signal);
        let queue = self
            .store
            .queue(&queue_name)
            .with_context(|| format!("{}: cannot create its queue", spec.name))?;
        // With tail sampling, routing stores into the pending queue and the
        // decider moves sampled traces to the export queue.
        let ingest_queue = processors
            .tail_sampling
            .as_ref()
            .map_or_else(|| Arc::clone(&queue), |t| Arc::clone(&t.pending));
        let stages = processors.has_stages();
        let processors = Arc::new(std::mem::take(&mut processors));
        // Ingest splits a load-balanced share straight into the backend
        // queues, unless tail sampling stands between ingest and the queue.
        let split_at_ingest = Arc::ptr_eq(&ingest_queue, &queue);
        let destination = Arc::new(Destination {
            name: spec.name.to_owned(),
            kind: spec.kind,
            signal: spec.signal,
            queue,
            limits: spec.queue,
            processors: Arc::clone(&processors),
            balance: spec
                .loadbalancing
                .filter(|_| split_at_ingest)
                .map(|_| self.lb_routers.of(&queue_name)),
        });
        let ingest = if Arc::ptr_eq(&ingest_queue, &destination.queue) {
            Arc::clone(&destination)
        } else {
            Arc::new(Destination {
                name: destination.name.clone(),
                kind: destination.kind,
                signal: destination.signal,
                queue: ingest_queue,
                limits: destination.limits,
                processors: Arc::clone(&processors),
                balance: None,
            })
        };
        let balance = spec.loadbalancing.map(|lb| {
            Arc::new(Balance {
                config: lb.clone(),
                output: spec.output.clone(),
                faults: self.lb_faults.clone(),
            })
        });
        let exporter = {
            let _enter = self.rt.enter();
            let context = || format!("{}: cannot build its {} exporter", spec.name, spec.signal);
            let label = destination.metrics_label();
            match &balance {
                // Each backend builds its own; here only check they can be.
                Some(b) => {
                    b.check(spec.signal, label).with_context(context)?;
                    Exporter::build(
                        &OutputConfig::of_kind(crate::config::OutputType::Noop),
                        spec.signal,
                        label,
                    )?
                }
                None if spec.kind == DestinationKind::Shoot => {
                    Exporter::build_shared(spec.output, spec.signal, label, &self.shoot_http)
                        .with_context(context)?
                }
                None => Exporter::build(spec.output, spec.signal, label).with_context(context)?,
            }
        };
        Ok(DeliveryPlan {
            delivery: Delivery {
                destination,
                exporter: Arc::new(exporter),
                batch: spec.batch,
                retry: RetryPolicy::from_config(&spec.retry)
                    .with_context(|| format!("{}: retry", spec.name))?,
                store: Arc::clone(&self.store),
                writer: self.writer.clone(),
                metrics: Arc::clone(&self.metrics),
                heartbeat: Arc::default(),
                flow: Arc::new(FlowControl::new(
                    &spec.batch,
                    spec.output.rate_limit.as_ref(),
                )),
            },
            balance,
            ingest,
            stages: stages.then_some(processors),
        })
    }
}

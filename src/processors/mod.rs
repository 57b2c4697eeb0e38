//! What pipelines do to their data between routing and their queue
//! (`pipelines[].processors`, see [`crate::config::processors`]).
//!
//! - [`resource`]: resource attributes rewritten at the wire level, on the
//!   destination's share of a request before it is stored, so everything
//!   read from the queue later (the load-balancing routing key, span
//!   metrics' `service.name`, sampling policies) sees the result;
//! - [`tail_sampling`]: the destination's queue holds pending spans, one
//!   entry per request share; a decider moves or deletes them;
//! - [`spanmetrics`]: every stored request of spans adds an entry of
//!   aggregate deltas in the same transaction; a flusher folds them into
//!   metrics.
//!
//! Where each runs and why: `docs/adr/0006-processors.md`.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::ProcessorConfig;
use crate::proto::rewrite::{RewriteError, rewrite_resources};
use crate::store::{AppendPart, Queue, Store, WriteOp};

pub mod resource;
pub mod spanmetrics;
pub mod tail_sampling;

pub use resource::ResourceProcessor;

/// The processors of one destination, built.
#[derive(Debug, Clone, Default)]
pub struct Processors {
    resource: Vec<ResourceProcessor>,
    /// Span metrics: a deltas entry stored with every request of spans.
    pub spanmetrics: Option<Arc<spanmetrics::Stage>>,
    /// Tail sampling: the destination's queue holds pending traces.
    pub tail_sampling: Option<Arc<tail_sampling::Stage>>,
}

/// What a stage task needs besides its own state.
#[derive(Debug, Clone)]
pub struct StageContext {
    /// The store the stage reads.
    pub store: Arc<Store>,
    /// Where its moves and deletes go.
    pub writer: crossbeam_channel::Sender<WriteOp>,
    /// Counters.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The pipeline's export queue (what its delivery loop reads).
    pub export: ExportQueue,
}

/// The queue a stage hands what it lets through to, and its limit.
#[derive(Debug, Clone)]
pub struct ExportQueue {
    /// The destination's name, for messages.
    pub name: String,
    /// The queue.
    pub queue: Arc<Queue>,
    /// The queue's `max_bytes`.
    pub max_bytes: u64,
}

impl Processors {
    /// Builds the `resource` processors of a list (those are all that runs
    /// before routing; a pipeline's stages are attached by
    /// [`Processors::attach`]).
    ///
    /// # Errors
    /// A processor that cannot be built, as `processors[i].<name>: problem`.
    pub fn build(configs: &[ProcessorConfig]) -> Result<Self, String> {
        let mut resource = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            if let ProcessorConfig::Resource(r) = c {
                resource.push(
                    ResourceProcessor::new(r)
                        .map_err(|e| format!("processors[{i}].resource: {e}"))?,
                );
            }
        }
        Ok(Self {
            resource,
            ..Self::default()
        })
    }

    /// Builds the stages of a pipeline's `tail_sampling` and `spanmetrics`
    /// (creating their queues).
    ///
    /// # Errors
    /// A stage that cannot be built or a queue that cannot be created.
    pub fn attach(
        &mut self,
        configs: &[ProcessorConfig],
        store: &Arc<Store>,
        pipeline: &str,
    ) -> Result<(), String> {
        for (i, c) in configs.iter().enumerate() {
            match c {
                ProcessorConfig::Resource(_) => {}
                ProcessorConfig::TailSampling(t) => {
                    let stage = tail_sampling::Stage::new(t, store, pipeline)
                        .map_err(|e| format!("processors[{i}].tail_sampling: {e}"))?;
                    self.tail_sampling = Some(Arc::new(stage));
                }
                ProcessorConfig::SpanMetrics(s) => {
                    let stage = spanmetrics::Stage::new(s, store, pipeline)
                        .map_err(|e| format!("processors[{i}].spanmetrics: {e}"))?;
                    self.spanmetrics = Some(Arc::new(stage));
                }
            }
        }
        Ok(())
    }

    /// Whether the payload is changed at all (nothing to do: no copy).
    pub fn rewrites(&self) -> bool {
        !self.resource.is_empty()
    }

    /// Applies the resource processors, in order, to a request encoding.
    ///
    /// # Errors
    /// [`RewriteError`]: not expected for a scanned request.
    pub fn apply(&self, payload: Bytes) -> Result<Bytes, RewriteError> {
        if !self.rewrites() {
            return Ok(payload);
        }
        rewrite_resources(&payload, |r| {
            for p in &self.resource {
                p.apply(r);
            }
        })
        .map(Bytes::from)
    }

    /// The entries to store for a destination's share of a request (after
    /// [`Processors::apply`]), all in one transaction: the share itself on
    /// `queue` (with tail sampling, its pending queue), plus a deltas entry
    /// with span metrics.
    ///
    /// # Errors
    /// A payload a stage cannot read (not expected for a scanned request).
    pub fn parts(
        &self,
        queue: &Arc<crate::store::Queue>,
        payload: Bytes,
        records: u32,
    ) -> Result<Vec<AppendPart>, String> {
        let mut parts = Vec::with_capacity(1);
        if let Some(s) = &self.spanmetrics {
            parts.extend(s.deltas_part(&payload)?);
        }
        parts.push(AppendPart {
            queue: Arc::clone(queue),
            records,
            payload,
        });
        Ok(parts)
    }

    /// Whether the destination has stage tasks (see
    /// [`Processors::run_stages`]).
    pub fn has_stages(&self) -> bool {
        self.spanmetrics.is_some() || self.tail_sampling.is_some()
    }

    /// Runs the stage tasks (the decider, the flusher) until cancelled.
    pub async fn run_stages(&self, ctx: StageContext) {
        let sampling = async {
            if let Some(t) = &self.tail_sampling {
                Arc::clone(t).run(ctx.clone()).await;
            }
        };
        let metrics = async {
            if let Some(s) = &self.spanmetrics {
                Arc::clone(s).run(ctx.clone()).await;
            }
        };
        tokio::join!(sampling, metrics);
    }
}

/// A stage's context over `store` with its writer running, exporting to
/// the queue `export` (for the stages' tests against a real store).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_context(store: &Arc<Store>, export: &str) -> StageContext {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (writer, rx) = crossbeam_channel::unbounded();
    store.spawn_writer(rx, Arc::clone(&metrics.store)).unwrap();
    StageContext {
        store: Arc::clone(store),
        writer,
        metrics,
        export: ExportQueue {
            name: export.to_owned(),
            queue: store.queue(export).unwrap(),
            max_bytes: crate::config::QueueConfig::default().max_bytes.0,
        },
    }
}

/// Reserves room for `part` and appends it as ingest does, waiting for the
/// commit (for the stages' tests).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn test_append(ctx: &StageContext, part: AppendPart) {
    assert!(part.queue.try_reserve(part.payload.len() as u64, u64::MAX));
    let (reply, done) = tokio::sync::oneshot::channel();
    ctx.writer
        .send(WriteOp::Append {
            parts: vec![part],
            reply,
        })
        .unwrap();
    done.await.unwrap().unwrap();
}

//! What pipelines do to their data between routing and their queue
//! (`pipelines[].processors`, see [`crate::config::processors`]).
//!
//! - [`resource`]: resource attributes rewritten at the wire level, on the
//!   destination's share of a request before it is stored, so everything
//!   read from the queue later (the load-balancing routing key, span
//!   metrics' `service.name`, sampling policies) sees the result;
//! - [`tail_sampling`]: the policies that decide a trace;
//! - [`spanmetrics`]: the RED aggregates of spans.

use bytes::Bytes;

use crate::config::ProcessorConfig;
use crate::proto::rewrite::{RewriteError, rewrite_resources};

pub mod resource;
pub mod spanmetrics;
pub mod tail_sampling;

pub use resource::ResourceProcessor;

/// The processors of one destination, built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Processors {
    resource: Vec<ResourceProcessor>,
}

impl Processors {
    /// Builds the processors of a pipeline.
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
        Ok(Self { resource })
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
}

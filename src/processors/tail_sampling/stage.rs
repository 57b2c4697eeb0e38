//! Durable tail sampling in the data path (being built).

use std::sync::Arc;

use bytes::Bytes;

use super::super::StageContext;
use crate::config::TailSamplingConfig;
use crate::store::{AppendPart, Queue, Store};

/// A pipeline's tail sampling: its pending queue and its sampler.
#[derive(Debug)]
pub struct Stage {
    /// Where pending spans are stored, one entry per trace and request.
    pub pending: Arc<Queue>,
}

impl Stage {
    /// Builds the stage of `pipeline`, creating its pending queue.
    ///
    /// # Errors
    /// The sampler or the queue cannot be built.
    pub fn new(
        _config: &TailSamplingConfig,
        store: &Arc<Store>,
        pipeline: &str,
    ) -> Result<Self, String> {
        let pending = store
            .queue(&format!("tail/{pipeline}/pending"))
            .map_err(|e| e.to_string())?;
        Ok(Self { pending })
    }

    /// One entry per trace of a destination's share of a request.
    ///
    /// # Errors
    /// A payload that does not split.
    pub fn split(&self, queue: &Arc<Queue>, payload: &Bytes) -> Result<Vec<AppendPart>, String> {
        let _ = (queue, payload);
        Ok(Vec::new())
    }

    /// The decider, until cancelled.
    pub async fn run(self: Arc<Self>, _ctx: StageContext) {
        std::future::pending::<()>().await;
    }
}

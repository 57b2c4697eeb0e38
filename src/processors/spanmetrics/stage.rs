//! Span metrics in the data path (being built).

use std::sync::Arc;

use bytes::Bytes;

use super::super::StageContext;
use crate::config::SpanMetricsConfig;
use crate::store::{AppendPart, Store};

/// A pipeline's span metrics: its deltas queue and its engine.
#[derive(Debug)]
pub struct Stage {}

impl Stage {
    /// Builds the stage of `pipeline`, creating its queues.
    ///
    /// # Errors
    /// The engine or a queue cannot be built.
    pub fn new(
        _config: &SpanMetricsConfig,
        _store: &Arc<Store>,
        _pipeline: &str,
    ) -> Result<Self, String> {
        Ok(Self {})
    }

    /// The deltas entry of a request of spans, stored with it.
    ///
    /// # Errors
    /// A payload that does not decode.
    pub fn deltas_part(&self, _payload: &Bytes) -> Result<Option<AppendPart>, String> {
        Ok(None)
    }

    /// The flusher, until cancelled.
    pub async fn run(self: Arc<Self>, _ctx: StageContext) {
        std::future::pending::<()>().await;
    }
}

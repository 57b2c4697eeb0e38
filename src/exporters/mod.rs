//! CONTRACT STUB — replaced by the exporters helper.
#![allow(missing_docs, unused_variables)]
use crate::config::OutputConfig;
use crate::signal::Signal;
use bytes::Bytes;
use std::time::Duration;

pub mod backoff;

/// What became of one export attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend took the request; `rejected` records were refused by it
    /// through `partial_success` (counted, not retried).
    Accepted { rejected: u64, message: String },
    /// Try again later, after `after` when the backend said so.
    Retryable {
        after: Option<Duration>,
        reason: &'static str,
        detail: String,
    },
    /// Never retry this request: count it and drop it.
    Permanent {
        reason: &'static str,
        detail: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{field}: {reason}")]
    Build { field: &'static str, reason: String },
}

/// A sender for one destination and signal.
#[derive(Debug)]
pub struct Exporter;

impl Exporter {
    /// Builds the sender. Must be called inside a tokio runtime.
    pub fn build(output: &OutputConfig, signal: Signal) -> Result<Exporter, ExportError> {
        unimplemented!()
    }
    /// Sends one request (a valid Export*ServiceRequest encoding).
    pub async fn send(&self, body: Bytes, records: u64) -> Outcome {
        unimplemented!()
    }
}

//! CONTRACT STUB — OTLP/JSON.
#![allow(missing_docs, unused_variables)]
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    pub message: String,
}

/// OTLP/JSON request body → protobuf request bytes.
pub fn request_from_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, JsonError> {
    unimplemented!()
}
/// protobuf request bytes → OTLP/JSON.
pub fn request_to_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, JsonError> {
    unimplemented!()
}
/// One JSON line per record (stdout exporter), appended to `out`.
pub fn records_to_json_lines(
    signal: Signal,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<u64, JsonError> {
    unimplemented!()
}

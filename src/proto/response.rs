//! CONTRACT STUB — Export*ServiceResponse encoding.
#![allow(missing_docs, unused_variables)]
use crate::signal::Signal;

/// Protobuf Export*ServiceResponse; `partial_success` only when `rejected > 0` or message non-empty.
pub fn encode(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    unimplemented!()
}
/// The same, OTLP/JSON.
pub fn encode_json(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    unimplemented!()
}
/// Reads `partial_success` from a protobuf response: (rejected, message). Empty body → (0, "").
pub fn decode(signal: Signal, body: &[u8]) -> Result<(u64, String), prost::DecodeError> {
    unimplemented!()
}

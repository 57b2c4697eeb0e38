//! CONTRACT STUB — replaced by the proto helper. Wire-level OTLP helpers.
#![allow(missing_docs, unused_variables)]
use crate::signal::Signal;
use std::ops::Range;

pub mod json;
pub mod response;

/// A problem in the wire encoding. Small and `Copy`: it is the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("truncated at byte {offset}")]
    Truncated { offset: usize },
}

impl ScanError {
    pub fn kind(&self) -> &'static str {
        "truncated"
    }
}

/// One top-level `Resource{Logs,Metrics,Spans}` entry of an export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    /// Covers the field's tag, length and payload: concatenating the ranges of
    /// any blocks of a request gives a valid request.
    pub range: Range<usize>,
    /// Log records, metric data points or spans in this block.
    pub records: u32,
    /// The value of the first of `keys` present among the resource attributes
    /// with a string value.
    pub key: Option<&'a str>,
}

/// Walks an Export*ServiceRequest.
pub fn scan<'a>(
    signal: Signal,
    buf: &'a [u8],
    keys: &[String],
) -> Result<Vec<Block<'a>>, ScanError> {
    unimplemented!()
}

/// Records in a whole request.
pub fn count_records(signal: Signal, buf: &[u8]) -> Result<u64, ScanError> {
    unimplemented!()
}

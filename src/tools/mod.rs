//! CONTRACT STUB — replaced by the tools helper.
#![allow(missing_docs)]
pub mod loadgen;
pub mod sink;

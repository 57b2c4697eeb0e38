//! What pipelines do to their data between routing and their queue
//! (`pipelines[].processors`, see [`crate::config::processors`]).
//!
//! - [`resource`]: resource attributes rewritten at the wire level, on the
//!   destination's share of a request before it is stored;
//! - [`tail_sampling`]: the policies that decide a trace;
//! - [`spanmetrics`]: the RED aggregates of spans.

pub mod resource;
pub mod spanmetrics;
pub mod tail_sampling;

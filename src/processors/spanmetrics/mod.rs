//! Span metrics: the Collector's `spanmetrics` connector as pure functions,
//! so that the store can count every acknowledged span exactly once
//! ([`crate::config::spanmetrics`] has the configuration).
//!
//! The life of a span's count:
//!
//! 1. [`SpanMetrics::deltas`] turns a traces request into what it adds to
//!    each series ([`Deltas`], keyed by [`SeriesKey`]);
//! 2. the caller stores them, in the transaction that stores the spans: for
//!    each series, [`merge_stored`] adds the delta to the value under
//!    [`SeriesKey::encode`]; a series that is not stored yet, once
//!    [`SpanMetrics::cardinality_limit`] series are, goes to
//!    [`SeriesKey::overflow`] instead;
//! 3. every `metrics_flush_interval`, [`SpanMetrics::emit`] turns the stored
//!    series ([`decode_stored`]) into a metrics request for the metrics
//!    pipeline (with delta temporality, the caller then clears them).
//!
//! Keys and values are versioned byte formats, documented in [`key`] and
//! [`stored`]: they outlive the process that wrote them.

mod aggregate;
mod codec;
mod emit;
pub mod key;
pub mod stage;
pub mod stored;

pub use aggregate::{Aggregate, Deltas, SpanMetrics};
pub use codec::FormatError;
pub use emit::SCOPE_NAME;
pub use key::SeriesKey;
pub use stage::Stage;
pub use stored::{StoredAggregate, decode_stored, merge_stored};

#[cfg(test)]
mod tests;

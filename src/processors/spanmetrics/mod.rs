//! Span metrics: the Collector's `spanmetrics` connector, counted exactly
//! once by the store ([`crate::config::spanmetrics`] has the
//! configuration).
//!
//! The life of a span's count:
//!
//! 1. [`SpanMetrics::encoded_deltas`] turns a traces request into what it
//!    adds to each series, keyed by [`SeriesKey`] bytes, read straight from
//!    the request's bytes (`request`, `batch`: no allocation per span);
//! 2. ingest stores them as one entry of the pipeline's deltas queue
//!    ([`Stage::deltas_part`]), in the transaction that stores the spans;
//! 3. every `metrics_flush_interval`, the flusher ([`Stage::run`]) folds the
//!    delta entries into the stored series (a new series past
//!    [`SpanMetrics::cardinality_limit`] goes to [`SeriesKey::overflow`]),
//!    turns them into a metrics request with [`SpanMetrics::emit`], and
//!    commits the request, the new series snapshot and the deletion of what
//!    it folded in one transaction ([`stage`] tells what that guarantees).
//!
//! Every stored byte is a versioned format, documented in [`key`],
//! [`stored`] and [`entries`]: they outlive the process that wrote them.

mod aggregate;
mod batch;
mod codec;
mod emit;
pub mod entries;
pub mod key;
mod request;
mod series;
pub mod stage;
pub mod stored;

pub use aggregate::SpanMetrics;
pub use codec::FormatError;
pub use emit::SCOPE_NAME;
pub use entries::{DeltasView, Snapshot, decode_deltas, encode_deltas};
pub use key::SeriesKey;
pub use request::RequestError;
pub use series::{Aggregate, AggregateRef, Deltas, EncodedDeltas};
pub use stage::Stage;
pub use stored::{StoredAggregate, decode_stored, merge_stored};

#[cfg(test)]
mod tests;

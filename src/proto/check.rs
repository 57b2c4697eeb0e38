//! Refuse at the edge what a backend's decoder refuses.
//!
//! Why this exists: seedgate acknowledges a request once it is on disk and
//! later sends it to a backend *concatenated with other clients' requests*.
//! A record that the backend's protobuf decoder refuses makes it refuse the
//! whole batch (`INVALID_ARGUMENT` / 400), so one bad record would cost
//! everybody's acknowledged data. This module walks every record of a
//! request down to its scalars with the OTLP schema (opentelemetry-proto
//! 0.33) and refuses, before anything is acknowledged, what a standard
//! decoder refuses:
//!
//! - a known field with the wrong wire type (prost: "invalid wire type");
//! - a `string` field that is not UTF-8 (proto3 requires it; prost refuses);
//! - a packed repeated fixed64/double whose length is not a multiple of 8,
//!   or a packed varint cut short;
//! - `AnyValue`s (kvlist in kvlist, array in array …) nested deeper than
//!   [`Limits::max_value_depth`];
//!
//! and, beyond what prost checks, what the OpenTelemetry Collector (the most
//! common OTLP backend) refuses when it unmarshals:
//!
//! - a trace ID that is not 16 bytes or a span ID that is not 8 bytes.
//!   Empty (or absent: proto3 cannot tell them apart on the wire) is
//!   accepted everywhere, as the Collector does: the spec allows it for log
//!   records, a span's `parent_span_id` and exemplars, and calls it invalid
//!   for a span's own IDs, but no backend refuses a batch for it, so
//!   refusing it here would protect nobody.
//!
//! # What the depth limit counts, and why it is safe
//!
//! The *value depth* of an `AnyValue` is the number of `ArrayValue` /
//! `KeyValueList` containers on its deepest path: a scalar is 0, a kvlist of
//! scalars 1, `{"a": {"b": 1}}` 2. Each container adds at most three message
//! levels (`AnyValue` → `KeyValueList` → `KeyValue` → `AnyValue`; arrays add
//! two). The deepest place an `AnyValue` starts is an exemplar's filtered
//! attribute, at message level 8 (request 0 → `ResourceMetrics` 1 →
//! `ScopeMetrics` 2 → `Metric` 3 → `Histogram` 4 → data point 5 →
//! `Exemplar` 6 → `KeyValue` 7 → `AnyValue` 8). So a value of depth `d`
//! reaches message level at most `8 + 3·d`. prost (like the C++, Java and
//! upb decoders) decodes a message at nesting level `L` only while
//! `L <= 100` (`RECURSION_LIMIT`). Hence `d <= 30` always decodes
//! (`8 + 90 = 98 < 100`) and [`MAX_VALUE_DEPTH`] is 30; the default,
//! [`DEFAULT_MAX_VALUE_DEPTH`] = 16, stays at level 56 at most, far from
//! the limit. A test checks both ends against prost itself.
//!
//! Invariants: as for the rest of [`super`]: no panics, no indexing, no
//! allocation. Recursion is bounded: it only goes deeper through a container,
//! and the depth is checked before entering one.

use super::ScanError;
use super::wire::{Field, I32, I64, Reader, VARINT, Value};

/// The default [`Limits::max_value_depth`].
pub const DEFAULT_MAX_VALUE_DEPTH: u32 = 16;

/// The largest [`Limits::max_value_depth`] for which every accepted request
/// still decodes in a decoder with a 100-level recursion limit (see the
/// module doc for the arithmetic).
pub const MAX_VALUE_DEPTH: u32 = 30;

/// What a request may contain beyond being well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most `ArrayValue`/`KeyValueList` containers nested in one
    /// attribute value, log body or other `AnyValue` (`1..=`[`MAX_VALUE_DEPTH`]).
    pub max_value_depth: u32,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Limits = Limits {
        max_value_depth: DEFAULT_MAX_VALUE_DEPTH,
    };
    /// The most permissive limits allowed.
    pub const MAX: Limits = Limits {
        max_value_depth: MAX_VALUE_DEPTH,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The OTLP messages below the levels [`super`] frames itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Msg {
    Resource,
    EntityRef,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    LogRecord,
    Span,
    Event,
    Link,
    Status,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
}

/// How a field is encoded, as far as a decoder's checks go.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// int32/int64/uint32/uint64/sint32/bool/enum.
    Varint,
    /// fixed64/sfixed64/double.
    Fixed64,
    /// fixed32/float.
    Fixed32,
    /// `string`: UTF-8.
    Str,
    /// `bytes`.
    Bytes,
    /// A trace or span ID: exactly `len` bytes, or empty.
    Id { len: usize },
    /// A nested message.
    Msg(Msg),
    /// Repeated fixed64/double: packed (LEN, a multiple of 8) or not.
    Packed64,
    /// Repeated uint64: packed (LEN of whole varints) or not.
    PackedVarint,
}

const TRACE_ID: Kind = Kind::Id { len: 16 };
const SPAN_ID: Kind = Kind::Id { len: 8 };

/// The schema: field `number` of `msg`, its name for error messages and its
/// kind; `None` for unknown fields (skipped, as decoders do).
#[allow(clippy::too_many_lines)] // one flat table reads best
fn field(msg: Msg, number: u32) -> Option<(&'static str, Kind)> {
    use Kind::{Bytes, Fixed32, Fixed64, Packed64, PackedVarint, Str, Varint};
    Some(match (msg, number) {
        (Msg::Resource, 1) => ("Resource.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::Resource, 2) => ("Resource.dropped_attributes_count", Varint),
        (Msg::Resource, 3) => ("Resource.entity_refs", Kind::Msg(Msg::EntityRef)),
        (Msg::EntityRef, 1) => ("EntityRef.schema_url", Str),
        (Msg::EntityRef, 2) => ("EntityRef.type", Str),
        (Msg::EntityRef, 3) => ("EntityRef.id_keys", Str),
        (Msg::EntityRef, 4) => ("EntityRef.description_keys", Str),
        (Msg::Scope, 1) => ("InstrumentationScope.name", Str),
        (Msg::Scope, 2) => ("InstrumentationScope.version", Str),
        (Msg::Scope, 3) => ("InstrumentationScope.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::Scope, 4) => ("InstrumentationScope.dropped_attributes_count", Varint),
        (Msg::KeyValue, 1) => ("KeyValue.key", Str),
        (Msg::KeyValue, 2) => ("KeyValue.value", Kind::Msg(Msg::AnyValue)),
        (Msg::KeyValue, 3) => ("KeyValue.key_strindex", Varint),
        (Msg::AnyValue, 1) => ("AnyValue.string_value", Str),
        (Msg::AnyValue, 2) => ("AnyValue.bool_value", Varint),
        (Msg::AnyValue, 3) => ("AnyValue.int_value", Varint),
        (Msg::AnyValue, 4) => ("AnyValue.double_value", Fixed64),
        (Msg::AnyValue, 5) => ("AnyValue.array_value", Kind::Msg(Msg::ArrayValue)),
        (Msg::AnyValue, 6) => ("AnyValue.kvlist_value", Kind::Msg(Msg::KeyValueList)),
        (Msg::AnyValue, 7) => ("AnyValue.bytes_value", Bytes),
        (Msg::AnyValue, 8) => ("AnyValue.string_value_strindex", Varint),
        (Msg::ArrayValue, 1) => ("ArrayValue.values", Kind::Msg(Msg::AnyValue)),
        (Msg::KeyValueList, 1) => ("KeyValueList.values", Kind::Msg(Msg::KeyValue)),
        (Msg::LogRecord, 1) => ("LogRecord.time_unix_nano", Fixed64),
        (Msg::LogRecord, 2) => ("LogRecord.severity_number", Varint),
        (Msg::LogRecord, 3) => ("LogRecord.severity_text", Str),
        (Msg::LogRecord, 5) => ("LogRecord.body", Kind::Msg(Msg::AnyValue)),
        (Msg::LogRecord, 6) => ("LogRecord.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::LogRecord, 7) => ("LogRecord.dropped_attributes_count", Varint),
        (Msg::LogRecord, 8) => ("LogRecord.flags", Fixed32),
        (Msg::LogRecord, 9) => ("LogRecord.trace_id", TRACE_ID),
        (Msg::LogRecord, 10) => ("LogRecord.span_id", SPAN_ID),
        (Msg::LogRecord, 11) => ("LogRecord.observed_time_unix_nano", Fixed64),
        (Msg::LogRecord, 12) => ("LogRecord.event_name", Str),
        (Msg::Span, 1) => ("Span.trace_id", TRACE_ID),
        (Msg::Span, 2) => ("Span.span_id", SPAN_ID),
        (Msg::Span, 3) => ("Span.trace_state", Str),
        (Msg::Span, 4) => ("Span.parent_span_id", SPAN_ID),
        (Msg::Span, 5) => ("Span.name", Str),
        (Msg::Span, 6) => ("Span.kind", Varint),
        (Msg::Span, 7) => ("Span.start_time_unix_nano", Fixed64),
        (Msg::Span, 8) => ("Span.end_time_unix_nano", Fixed64),
        (Msg::Span, 9) => ("Span.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::Span, 10) => ("Span.dropped_attributes_count", Varint),
        (Msg::Span, 11) => ("Span.events", Kind::Msg(Msg::Event)),
        (Msg::Span, 12) => ("Span.dropped_events_count", Varint),
        (Msg::Span, 13) => ("Span.links", Kind::Msg(Msg::Link)),
        (Msg::Span, 14) => ("Span.dropped_links_count", Varint),
        (Msg::Span, 15) => ("Span.status", Kind::Msg(Msg::Status)),
        (Msg::Span, 16) => ("Span.flags", Fixed32),
        (Msg::Event, 1) => ("Span.Event.time_unix_nano", Fixed64),
        (Msg::Event, 2) => ("Span.Event.name", Str),
        (Msg::Event, 3) => ("Span.Event.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::Event, 4) => ("Span.Event.dropped_attributes_count", Varint),
        (Msg::Link, 1) => ("Span.Link.trace_id", TRACE_ID),
        (Msg::Link, 2) => ("Span.Link.span_id", SPAN_ID),
        (Msg::Link, 3) => ("Span.Link.trace_state", Str),
        (Msg::Link, 4) => ("Span.Link.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::Link, 5) => ("Span.Link.dropped_attributes_count", Varint),
        (Msg::Link, 6) => ("Span.Link.flags", Fixed32),
        (Msg::Status, 2) => ("Status.message", Str),
        (Msg::Status, 3) => ("Status.code", Varint),
        (Msg::Metric, 1) => ("Metric.name", Str),
        (Msg::Metric, 2) => ("Metric.description", Str),
        (Msg::Metric, 3) => ("Metric.unit", Str),
        (Msg::Metric, 5) => ("Metric.gauge", Kind::Msg(Msg::Gauge)),
        (Msg::Metric, 7) => ("Metric.sum", Kind::Msg(Msg::Sum)),
        (Msg::Metric, 9) => ("Metric.histogram", Kind::Msg(Msg::Histogram)),
        (Msg::Metric, 10) => ("Metric.exponential_histogram", Kind::Msg(Msg::ExpHistogram)),
        (Msg::Metric, 11) => ("Metric.summary", Kind::Msg(Msg::Summary)),
        (Msg::Metric, 12) => ("Metric.metadata", Kind::Msg(Msg::KeyValue)),
        (Msg::Gauge, 1) => ("Gauge.data_points", Kind::Msg(Msg::NumberPoint)),
        (Msg::Sum, 1) => ("Sum.data_points", Kind::Msg(Msg::NumberPoint)),
        (Msg::Sum, 2) => ("Sum.aggregation_temporality", Varint),
        (Msg::Sum, 3) => ("Sum.is_monotonic", Varint),
        (Msg::Histogram, 1) => ("Histogram.data_points", Kind::Msg(Msg::HistogramPoint)),
        (Msg::Histogram, 2) => ("Histogram.aggregation_temporality", Varint),
        (Msg::ExpHistogram, 1) => (
            "ExponentialHistogram.data_points",
            Kind::Msg(Msg::ExpHistogramPoint),
        ),
        (Msg::ExpHistogram, 2) => ("ExponentialHistogram.aggregation_temporality", Varint),
        (Msg::Summary, 1) => ("Summary.data_points", Kind::Msg(Msg::SummaryPoint)),
        (Msg::NumberPoint, 2) => ("NumberDataPoint.start_time_unix_nano", Fixed64),
        (Msg::NumberPoint, 3) => ("NumberDataPoint.time_unix_nano", Fixed64),
        (Msg::NumberPoint, 4) => ("NumberDataPoint.as_double", Fixed64),
        (Msg::NumberPoint, 5) => ("NumberDataPoint.exemplars", Kind::Msg(Msg::Exemplar)),
        (Msg::NumberPoint, 6) => ("NumberDataPoint.as_int", Fixed64),
        (Msg::NumberPoint, 7) => ("NumberDataPoint.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::NumberPoint, 8) => ("NumberDataPoint.flags", Varint),
        (Msg::HistogramPoint, 2) => ("HistogramDataPoint.start_time_unix_nano", Fixed64),
        (Msg::HistogramPoint, 3) => ("HistogramDataPoint.time_unix_nano", Fixed64),
        (Msg::HistogramPoint, 4) => ("HistogramDataPoint.count", Fixed64),
        (Msg::HistogramPoint, 5) => ("HistogramDataPoint.sum", Fixed64),
        (Msg::HistogramPoint, 6) => ("HistogramDataPoint.bucket_counts", Packed64),
        (Msg::HistogramPoint, 7) => ("HistogramDataPoint.explicit_bounds", Packed64),
        (Msg::HistogramPoint, 8) => ("HistogramDataPoint.exemplars", Kind::Msg(Msg::Exemplar)),
        (Msg::HistogramPoint, 9) => ("HistogramDataPoint.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::HistogramPoint, 10) => ("HistogramDataPoint.flags", Varint),
        (Msg::HistogramPoint, 11) => ("HistogramDataPoint.min", Fixed64),
        (Msg::HistogramPoint, 12) => ("HistogramDataPoint.max", Fixed64),
        (Msg::ExpHistogramPoint, 1) => (
            "ExponentialHistogramDataPoint.attributes",
            Kind::Msg(Msg::KeyValue),
        ),
        (Msg::ExpHistogramPoint, 2) => (
            "ExponentialHistogramDataPoint.start_time_unix_nano",
            Fixed64,
        ),
        (Msg::ExpHistogramPoint, 3) => ("ExponentialHistogramDataPoint.time_unix_nano", Fixed64),
        (Msg::ExpHistogramPoint, 4) => ("ExponentialHistogramDataPoint.count", Fixed64),
        (Msg::ExpHistogramPoint, 5) => ("ExponentialHistogramDataPoint.sum", Fixed64),
        (Msg::ExpHistogramPoint, 6) => ("ExponentialHistogramDataPoint.scale", Varint),
        (Msg::ExpHistogramPoint, 7) => ("ExponentialHistogramDataPoint.zero_count", Fixed64),
        (Msg::ExpHistogramPoint, 8) => (
            "ExponentialHistogramDataPoint.positive",
            Kind::Msg(Msg::Buckets),
        ),
        (Msg::ExpHistogramPoint, 9) => (
            "ExponentialHistogramDataPoint.negative",
            Kind::Msg(Msg::Buckets),
        ),
        (Msg::ExpHistogramPoint, 10) => ("ExponentialHistogramDataPoint.flags", Varint),
        (Msg::ExpHistogramPoint, 11) => (
            "ExponentialHistogramDataPoint.exemplars",
            Kind::Msg(Msg::Exemplar),
        ),
        (Msg::ExpHistogramPoint, 12) => ("ExponentialHistogramDataPoint.min", Fixed64),
        (Msg::ExpHistogramPoint, 13) => ("ExponentialHistogramDataPoint.max", Fixed64),
        (Msg::ExpHistogramPoint, 14) => ("ExponentialHistogramDataPoint.zero_threshold", Fixed64),
        (Msg::Buckets, 1) => ("Buckets.offset", Varint),
        (Msg::Buckets, 2) => ("Buckets.bucket_counts", PackedVarint),
        (Msg::SummaryPoint, 2) => ("SummaryDataPoint.start_time_unix_nano", Fixed64),
        (Msg::SummaryPoint, 3) => ("SummaryDataPoint.time_unix_nano", Fixed64),
        (Msg::SummaryPoint, 4) => ("SummaryDataPoint.count", Fixed64),
        (Msg::SummaryPoint, 5) => ("SummaryDataPoint.sum", Fixed64),
        (Msg::SummaryPoint, 6) => ("SummaryDataPoint.quantile_values", Kind::Msg(Msg::Quantile)),
        (Msg::SummaryPoint, 7) => ("SummaryDataPoint.attributes", Kind::Msg(Msg::KeyValue)),
        (Msg::SummaryPoint, 8) => ("SummaryDataPoint.flags", Varint),
        (Msg::Quantile, 1) => ("ValueAtQuantile.quantile", Fixed64),
        (Msg::Quantile, 2) => ("ValueAtQuantile.value", Fixed64),
        (Msg::Exemplar, 2) => ("Exemplar.time_unix_nano", Fixed64),
        (Msg::Exemplar, 3) => ("Exemplar.as_double", Fixed64),
        (Msg::Exemplar, 4) => ("Exemplar.span_id", SPAN_ID),
        (Msg::Exemplar, 5) => ("Exemplar.trace_id", TRACE_ID),
        (Msg::Exemplar, 6) => ("Exemplar.as_int", Fixed64),
        (Msg::Exemplar, 7) => ("Exemplar.filtered_attributes", Kind::Msg(Msg::KeyValue)),
        _ => return None,
    })
}

/// Checks one occurrence of `msg` (its fields in `r`) and everything below
/// it. `depth` is the value depth (containers entered) of the enclosing
/// `AnyValue`, 0 outside of one. Returns where the last ID in field 1 is
/// (a span's trace ID), if any.
///
/// # Errors
/// The first problem found: framing, wire type, UTF-8, ID length, packed
/// length, or [`ScanError::ValueTooDeep`].
pub(crate) fn message(
    r: &Reader<'_>,
    msg: Msg,
    limits: Limits,
    depth: u32,
) -> Result<Option<(usize, usize)>, ScanError> {
    let mut r = r.clone();
    // The last occurrence of an ID in field 1 (a span's or a link's
    // `trace_id`): what a decoder keeps, handed to the caller so that a
    // span's trace ID costs no second walk.
    let mut id_1: Option<(usize, usize)> = None;
    while let Some(f) = r.next_field()? {
        let Some((name, kind)) = field(msg, f.number) else {
            continue;
        };
        match kind {
            Kind::Varint => f.expect(name, VARINT)?,
            Kind::Fixed64 => f.expect(name, I64)?,
            Kind::Fixed32 => f.expect(name, I32)?,
            Kind::Bytes => {
                f.expect_len(name)?;
            }
            Kind::Str => {
                let (s, e) = f.expect_len(name)?;
                utf8(&r, s, e, name)?;
            }
            Kind::Id { len } => {
                let (s, e) = f.expect_len(name)?;
                if f.number == 1 {
                    id_1 = Some((s, e));
                }
                let actual = e.saturating_sub(s);
                if actual != len && actual != 0 {
                    return Err(ScanError::InvalidIdLength {
                        offset: f.offset,
                        field: name,
                        expected: len,
                        actual,
                    });
                }
            }
            Kind::Msg(inner) => {
                let (s, e) = f.expect_len(name)?;
                let depth = match inner {
                    Msg::ArrayValue | Msg::KeyValueList => {
                        let depth = depth.saturating_add(1);
                        if depth > limits.max_value_depth {
                            return Err(ScanError::ValueTooDeep {
                                offset: f.offset,
                                limit: limits.max_value_depth,
                            });
                        }
                        depth
                    }
                    _ => depth,
                };
                message(&r.nested(s, e), inner, limits, depth)?;
            }
            Kind::Packed64 => match f.value {
                Value::Len { start, end } => {
                    if (end.saturating_sub(start)) % 8 != 0 {
                        // The last value is cut short: where it starts.
                        let whole = end.saturating_sub(start) / 8 * 8;
                        return Err(ScanError::Truncated {
                            offset: start.saturating_add(whole),
                        });
                    }
                }
                _ => f.expect(name, I64)?,
            },
            Kind::PackedVarint => match f.value {
                Value::Len { start, end } => r.nested(start, end).check_varints()?,
                _ => f.expect(name, VARINT)?,
            },
        }
    }
    Ok(id_1)
}

/// Checks that `start..end` of the request is UTF-8.
pub(crate) fn utf8(
    r: &Reader<'_>,
    start: usize,
    end: usize,
    field: &'static str,
) -> Result<(), ScanError> {
    match std::str::from_utf8(r.bytes(start, end)) {
        Ok(_) => Ok(()),
        Err(e) => Err(ScanError::InvalidUtf8 {
            offset: start.saturating_add(e.valid_up_to()),
            field,
        }),
    }
}

/// Checks a `string` field given as a [`super::wire::Field`] of `r`.
pub(crate) fn str_field(r: &Reader<'_>, f: &Field, field: &'static str) -> Result<(), ScanError> {
    let (s, e) = f.expect_len(field)?;
    utf8(r, s, e, field)
}

#[cfg(test)]
// Tests may panic: that is how they fail.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;

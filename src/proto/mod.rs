//! OTLP at the wire level: scan, don't decode.
//!
//! Why this exists: routing and batching need, per request, only the list of
//! top-level `Resource{Logs,Metrics,Spans}` entries, the routing attribute of
//! each resource and how many records each holds. Decoding the whole request
//! with prost to learn that costs an allocation per record and attribute;
//! [`scan`] instead walks the protobuf framing and returns byte ranges,
//! counts and borrowed strings. Because a protobuf message is the
//! concatenation of its fields, the bytes of any subset of blocks, kept in
//! order and concatenated, are again a valid export request: routing and
//! batching become slicing and concatenation (see [`concat()`]).
//!
//! Invariants:
//! - Nothing here panics on any input, never indexes out of bounds
//!   (`clippy::indexing_slicing` is on), uses overflow-checked arithmetic and
//!   allocates only the returned `Vec`.
//! - Every level is fully framed and checked against the OTLP schema, down
//!   to the scalars of every record ([`check`]): whatever a standard decoder
//!   (prost, recursion limit 100) refuses, or the Collector refuses for a
//!   trace/span ID of the wrong length, is refused here, before anything is
//!   acknowledged, so one bad record can never make a backend refuse a batch
//!   it shares with other clients' records. `AnyValue` nesting is bounded by
//!   [`Limits::max_value_depth`].
//! - Field numbers are those of opentelemetry-proto 0.33 (OTLP 1.x). A known
//!   field with the wrong wire type is an error, as it is for prost; unknown
//!   fields are skipped if they are validly framed; groups are rejected.
//! - Repeated occurrences of a singular field follow protobuf's merge rules
//!   as prost applies them (last scalar wins, messages merge, a oneof keeps
//!   its last member), so counts and keys equal what a prost decode gives.
//! - Errors are a small `Copy` enum whose offsets are absolute positions in
//!   the request buffer.
#![warn(clippy::indexing_slicing)]

use std::ops::Range;

use crate::signal::Signal;

pub mod check;
pub mod fluent_bit;
pub mod json;
pub mod response;
pub mod rewrite;
pub mod span_facts;
pub mod split;
pub(crate) mod wire;

use check::Msg;
pub use check::{DEFAULT_MAX_VALUE_DEPTH, Limits, MAX_VALUE_DEPTH};
use wire::{Field, I64, Reader, VARINT};

/// A problem in the wire encoding of an export request.
///
/// Small and `Copy` because it is produced on the hot path; every variant
/// carries the absolute byte offset in the request where the problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A varint or a fixed-width value starting at `offset` runs past the end
    /// of its enclosing message (or of the request).
    #[error("truncated value at byte {offset}")]
    Truncated {
        /// Where the value starts.
        offset: usize,
    },
    /// A varint starting at `offset` is longer than 10 bytes or does not fit
    /// in 64 bits.
    #[error("varint at byte {offset} overflows 64 bits")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
    /// A length prefix at `offset` claims more bytes than its enclosing
    /// message has left.
    #[error("length {len} at byte {offset} exceeds the {available} bytes left in its message")]
    LengthOutOfBounds {
        /// Where the length varint starts.
        offset: usize,
        /// The length on the wire.
        len: u64,
        /// Bytes left in the enclosing message after the length varint.
        available: usize,
    },
    /// A field key at `offset` does not fit in 32 bits or has field number 0.
    #[error("invalid field key {key} at byte {offset}")]
    InvalidTag {
        /// Where the key starts.
        offset: usize,
        /// The key as read.
        key: u64,
    },
    /// A field key at `offset` has wire type 6 or 7, which do not exist.
    #[error("invalid wire type {wire_type} at byte {offset}")]
    InvalidWireType {
        /// Where the key starts.
        offset: usize,
        /// The wire type as read.
        wire_type: u8,
    },
    /// A field key at `offset` starts or ends a group (wire types 3 and 4):
    /// deprecated, and never used by OTLP.
    #[error("group (field {number}) at byte {offset} is not supported")]
    Group {
        /// Where the key starts.
        offset: usize,
        /// The field number of the group.
        number: u32,
    },
    /// A known OTLP field at `offset` has a wire type other than its schema's.
    #[error("field {field} at byte {offset} has wire type {actual}, expected {expected}")]
    WrongWireType {
        /// Where the key starts.
        offset: usize,
        /// The field, as `Message.field`.
        field: &'static str,
        /// The wire type of the schema.
        expected: u8,
        /// The wire type as read.
        actual: u8,
    },
    /// A `string` field is not UTF-8 (proto3 requires it; decoders refuse
    /// the whole request).
    #[error("{field} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The first byte that is not part of a valid UTF-8 sequence.
        offset: usize,
        /// The field, as `Message.field`.
        field: &'static str,
    },
    /// A trace ID is not 16 bytes or a span ID not 8 (empty where the OTLP
    /// spec allows it); the Collector refuses the whole request.
    #[error("{field} at byte {offset} is {actual} bytes long, expected {expected}")]
    InvalidIdLength {
        /// Where the field's key starts.
        offset: usize,
        /// The field, as `Message.field`.
        field: &'static str,
        /// 16 for a trace ID, 8 for a span ID.
        expected: usize,
        /// The length on the wire.
        actual: usize,
    },
    /// `AnyValue`s (arrays, kvlists) nested more than `limit` levels deep.
    #[error(
        "attribute value at byte {offset} nests arrays/kvlists deeper than the limit of {limit} levels (receivers.max_value_depth)"
    )]
    ValueTooDeep {
        /// Where the key of the container one level too deep starts.
        offset: usize,
        /// The limit in force.
        limit: u32,
    },
    /// A resource block at `offset` holds more than `u32::MAX` records.
    #[error("resource block at byte {offset} holds more than 2^32-1 records")]
    CountOverflow {
        /// Where the block's key starts.
        offset: usize,
    },
}

// === impl ScanError ===

impl ScanError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ScanError::Truncated { .. } => "truncated",
            ScanError::VarintOverflow { .. } => "varint_overflow",
            ScanError::LengthOutOfBounds { .. } => "length_out_of_bounds",
            ScanError::InvalidTag { .. } => "invalid_tag",
            ScanError::InvalidWireType { .. } => "invalid_wire_type",
            ScanError::Group { .. } => "group",
            ScanError::WrongWireType { .. } => "wrong_wire_type",
            ScanError::InvalidUtf8 { .. } => "invalid_utf8",
            ScanError::InvalidIdLength { .. } => "invalid_id_length",
            ScanError::ValueTooDeep { .. } => "value_too_deep",
            ScanError::CountOverflow { .. } => "count_overflow",
        }
    }

    /// The absolute byte offset in the request the error points at.
    pub fn offset(&self) -> usize {
        match *self {
            ScanError::Truncated { offset }
            | ScanError::VarintOverflow { offset }
            | ScanError::LengthOutOfBounds { offset, .. }
            | ScanError::InvalidTag { offset, .. }
            | ScanError::InvalidWireType { offset, .. }
            | ScanError::Group { offset, .. }
            | ScanError::WrongWireType { offset, .. }
            | ScanError::InvalidUtf8 { offset, .. }
            | ScanError::InvalidIdLength { offset, .. }
            | ScanError::ValueTooDeep { offset, .. }
            | ScanError::CountOverflow { offset } => offset,
        }
    }
}

/// One top-level `Resource{Logs,Metrics,Spans}` entry of an export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'a> {
    /// Covers the field's tag, length and payload: concatenating the ranges of
    /// any blocks of a request, in order, gives a valid request.
    pub range: Range<usize>,
    /// Log records, metric data points or spans in this block.
    pub records: u32,
    /// The value of the first of `keys` (in the order of `keys`) present
    /// among the resource attributes with a string value.
    pub key: Option<&'a str>,
}

/// Walks an `Export{Logs,Metrics,Trace}ServiceRequest` and returns its
/// resource blocks in order, with their record counts and routing keys.
///
/// `keys` are attribute names in order of priority: a block's `key` is the
/// string value of the first name that some resource attribute has with a
/// string value (an attribute of that name with a non-string value does not
/// count, the next name is tried). Top-level fields other than the resource
/// blocks are skipped and are not covered by any block.
///
/// The [`Limits`] are the defaults; see [`scan_with`].
///
/// # Errors
/// A [`ScanError`] for the first problem found (see the module doc).
pub fn scan<'a>(
    signal: Signal,
    buf: &'a [u8],
    keys: &[String],
) -> Result<Vec<Block<'a>>, ScanError> {
    scan_with(signal, buf, keys, Limits::DEFAULT)
}

/// [`scan`] with the given [`Limits`].
///
/// # Errors
/// As for [`scan`].
pub fn scan_with<'a>(
    signal: Signal,
    buf: &'a [u8],
    keys: &[String],
    limits: Limits,
) -> Result<Vec<Block<'a>>, ScanError> {
    scan_keyed(signal, buf, keys, limits, None)
}

/// [`scan_with`], and for traces the [`split::key_hash`] of each span's
/// trace ID pushed to `trace_keys`, in request order (the spans of block
/// `i` follow those of the blocks before it, `records` each): the
/// load-balancing split by trace ID takes them instead of walking every
/// span again ([`split::spread_keyed`]).
///
/// # Errors
/// As for [`scan`].
pub fn scan_keyed<'a>(
    signal: Signal,
    buf: &'a [u8],
    keys: &[String],
    limits: Limits,
    mut trace_keys: Option<&mut Vec<u64>>,
) -> Result<Vec<Block<'a>>, ScanError> {
    let mut blocks = Vec::new();
    let mut top = Reader::new(buf);
    while let Some(field) = top.next_field()? {
        if let Some(block) = top_level_block(
            signal,
            &top,
            &field,
            keys,
            limits,
            trace_keys.as_deref_mut(),
        )? {
            blocks.push(block);
        }
    }
    Ok(blocks)
}

/// Records (log records, metric data points, spans) in a whole request,
/// with the same validation as [`scan`] and no allocation. The value depth
/// limit is the largest allowed ([`Limits::MAX`]), so that any request a
/// configured limit lets in can be counted.
///
/// # Errors
/// As for [`scan`].
pub fn count_records(signal: Signal, buf: &[u8]) -> Result<u64, ScanError> {
    let mut total: u64 = 0;
    let mut top = Reader::new(buf);
    while let Some(field) = top.next_field()? {
        if let Some(block) = top_level_block(signal, &top, &field, &[], Limits::MAX, None)? {
            // u32 per block and the buffer is < 2^64 bytes: cannot overflow,
            // but saturate rather than assume.
            total = total.saturating_add(u64::from(block.records));
        }
    }
    Ok(total)
}

/// Appends the bytes of `blocks` of `buf`, in the order given, to `out`:
/// the result is an export request holding exactly those resources.
///
/// Ranges outside `buf` (not from a scan of `buf`) are skipped.
pub fn concat(buf: &[u8], blocks: &[Block<'_>], out: &mut Vec<u8>) {
    for b in blocks {
        if let Some(bytes) = buf.get(b.range.clone()) {
            out.extend_from_slice(bytes);
        }
    }
}

/// If `field` is a resource block (field 1), scans it.
fn top_level_block<'a>(
    signal: Signal,
    top: &Reader<'a>,
    field: &Field,
    keys: &[String],
    limits: Limits,
    mut trace_keys: Option<&mut Vec<u64>>,
) -> Result<Option<Block<'a>>, ScanError> {
    if field.number != 1 {
        return Ok(None);
    }
    let (start, end) = field.expect_len(names(signal).request)?;
    let mut block = top.nested(start, end);
    let mut records: u32 = 0;
    let mut key: Option<Candidate<'a>> = None;
    while let Some(f) = block.next_field()? {
        match f.number {
            1 => {
                let (s, e) = f.expect_len(names(signal).resource)?;
                let resource = block.nested(s, e);
                check::message(&resource, Msg::Resource, limits, 0)?;
                resource_key(&resource, keys, &mut key)?;
            }
            2 => {
                let (s, e) = f.expect_len(names(signal).scope)?;
                let n = scope_records(
                    signal,
                    &block.nested(s, e),
                    Some(limits),
                    trace_keys.as_deref_mut(),
                )?;
                records = records.checked_add(n).ok_or(ScanError::CountOverflow {
                    offset: field.offset,
                })?;
            }
            3 => check::str_field(&block, &f, names(signal).schema_url)?,
            _ => {}
        }
    }
    Ok(Some(Block {
        range: field.offset..end,
        records,
        key: key.map(|c| c.value),
    }))
}

/// Field names per signal, for error messages.
struct Names {
    request: &'static str,
    resource: &'static str,
    scope: &'static str,
    schema_url: &'static str,
    scope_scope: &'static str,
    records: &'static str,
    scope_schema_url: &'static str,
}

const fn names(signal: Signal) -> &'static Names {
    match signal {
        Signal::Logs => &Names {
            request: "ExportLogsServiceRequest.resource_logs",
            resource: "ResourceLogs.resource",
            scope: "ResourceLogs.scope_logs",
            schema_url: "ResourceLogs.schema_url",
            scope_scope: "ScopeLogs.scope",
            records: "ScopeLogs.log_records",
            scope_schema_url: "ScopeLogs.schema_url",
        },
        Signal::Metrics => &Names {
            request: "ExportMetricsServiceRequest.resource_metrics",
            resource: "ResourceMetrics.resource",
            scope: "ResourceMetrics.scope_metrics",
            schema_url: "ResourceMetrics.schema_url",
            scope_scope: "ScopeMetrics.scope",
            records: "ScopeMetrics.metrics",
            scope_schema_url: "ScopeMetrics.schema_url",
        },
        Signal::Traces => &Names {
            request: "ExportTraceServiceRequest.resource_spans",
            resource: "ResourceSpans.resource",
            scope: "ResourceSpans.scope_spans",
            schema_url: "ResourceSpans.schema_url",
            scope_scope: "ScopeSpans.scope",
            records: "ScopeSpans.spans",
            scope_schema_url: "ScopeSpans.schema_url",
        },
    }
}

/// The best routing-key match so far: `priority` is its index in `keys`.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    priority: usize,
    value: &'a str,
}

/// Walks one occurrence of `Resource` (several occurrences merge, so their
/// attributes are seen in order) and updates the best key candidate. The
/// resource has been checked ([`check::message`]) already.
fn resource_key<'a>(
    resource: &Reader<'a>,
    keys: &[String],
    best: &mut Option<Candidate<'a>>,
) -> Result<(), ScanError> {
    let mut r = resource.clone();
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => {
                let (s, e) = f.expect_len("Resource.attributes")?;
                let (name, value) = key_value(&r.nested(s, e))?;
                // Only the routing keys matter; most attributes stop here.
                let Some(priority) = keys.iter().position(|k| k.as_bytes() == name) else {
                    continue;
                };
                let AttrValue::String { start, end } = value else {
                    continue;
                };
                let value = std::str::from_utf8(r.bytes(start, end)).map_err(|e| {
                    ScanError::InvalidUtf8 {
                        offset: start.saturating_add(e.valid_up_to()),
                        field: "AnyValue.string_value",
                    }
                })?;
                if best.is_none_or(|b| priority < b.priority) {
                    *best = Some(Candidate { priority, value });
                }
            }
            2 => f.expect("Resource.dropped_attributes_count", VARINT)?,
            3 => {
                f.expect_len("Resource.entity_refs")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What an `AnyValue` holds, as far as routing cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AttrValue {
    /// No oneof member set.
    Unset,
    /// `string_value`, at `start..end` of the request buffer.
    String { start: usize, end: usize },
    /// Any other member.
    Other,
}

/// Reads a `KeyValue`: its key bytes (last occurrence wins) and what its
/// value holds (occurrences of `value` merge; the oneof keeps its last member).
fn key_value<'a>(kv: &Reader<'a>) -> Result<(&'a [u8], AttrValue), ScanError> {
    let mut r = kv.clone();
    let mut name: &'a [u8] = &[];
    let mut value = AttrValue::Unset;
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => {
                let (s, e) = f.expect_len("KeyValue.key")?;
                name = r.bytes(s, e);
            }
            2 => {
                let (s, e) = f.expect_len("KeyValue.value")?;
                any_value(&r.nested(s, e), &mut value)?;
            }
            3 => f.expect("KeyValue.key_strindex", VARINT)?,
            _ => {}
        }
    }
    Ok((name, value))
}

/// Walks one occurrence of an `AnyValue`, updating `value` with each oneof
/// member in order (prost keeps the last one).
fn any_value(any: &Reader<'_>, value: &mut AttrValue) -> Result<(), ScanError> {
    let mut r = any.clone();
    while let Some(f) = r.next_field()? {
        match f.number {
            1 => {
                let (start, end) = f.expect_len("AnyValue.string_value")?;
                *value = AttrValue::String { start, end };
            }
            2 => {
                f.expect("AnyValue.bool_value", VARINT)?;
                *value = AttrValue::Other;
            }
            3 => {
                f.expect("AnyValue.int_value", VARINT)?;
                *value = AttrValue::Other;
            }
            4 => {
                f.expect("AnyValue.double_value", I64)?;
                *value = AttrValue::Other;
            }
            5 => {
                f.expect_len("AnyValue.array_value")?;
                *value = AttrValue::Other;
            }
            6 => {
                f.expect_len("AnyValue.kvlist_value")?;
                *value = AttrValue::Other;
            }
            7 => {
                f.expect_len("AnyValue.bytes_value")?;
                *value = AttrValue::Other;
            }
            8 => {
                f.expect("AnyValue.string_value_strindex", VARINT)?;
                *value = AttrValue::Other;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records in one `Scope{Logs,Metrics,Spans}`, each checked down to its
/// scalars with `limits` when given (`None`: bytes that were checked when
/// they came in, framing only).
fn scope_records(
    signal: Signal,
    scope: &Reader<'_>,
    limits: Option<Limits>,
    mut trace_keys: Option<&mut Vec<u64>>,
) -> Result<u32, ScanError> {
    let n = names(signal);
    let mut r = scope.clone();
    let mut count: u32 = 0;
    while let Some(f) = r.next_field()? {
        let add = match f.number {
            1 => {
                let (s, e) = f.expect_len(n.scope_scope)?;
                if let Some(limits) = limits {
                    check::message(&r.nested(s, e), Msg::Scope, limits, 0)?;
                }
                0
            }
            2 => {
                let (s, e) = f.expect_len(n.records)?;
                let record = r.nested(s, e);
                let msg = match signal {
                    Signal::Logs => Msg::LogRecord,
                    Signal::Traces => Msg::Span,
                    Signal::Metrics => Msg::Metric,
                };
                if let Some(limits) = limits {
                    let id = check::message(&record, msg, limits, 0)?;
                    if signal == Signal::Traces
                        && let Some(out) = trace_keys.as_deref_mut()
                    {
                        // An absent trace ID is the empty key, as in the split.
                        out.push(split::key_hash(id.map_or(&[][..], |(s, e)| r.bytes(s, e))));
                    }
                }
                match signal {
                    Signal::Logs | Signal::Traces => 1,
                    Signal::Metrics => metric_points(&record)?,
                }
            }
            3 => {
                let (s, e) = f.expect_len(n.scope_schema_url)?;
                if limits.is_some() {
                    check::utf8(&r, s, e, n.scope_schema_url)?;
                }
                0
            }
            _ => 0,
        };
        count = count
            .checked_add(add)
            .ok_or(ScanError::CountOverflow { offset: f.offset })?;
    }
    Ok(count)
}

/// Data points of one `Metric`: those of its data oneof's last member
/// (repeated occurrences of the same member merge, so their points add up).
fn metric_points(metric: &Reader<'_>) -> Result<u32, ScanError> {
    let mut r = metric.clone();
    let mut member: u32 = 0;
    let mut count: u32 = 0;
    while let Some(f) = r.next_field()? {
        let name = match f.number {
            1 => Some("Metric.name"),
            2 => Some("Metric.description"),
            3 => Some("Metric.unit"),
            12 => Some("Metric.metadata"),
            _ => None,
        };
        if let Some(name) = name {
            f.expect_len(name)?;
            continue;
        }
        let (field, data) = match f.number {
            5 => ("Metric.gauge", &GAUGE),
            7 => ("Metric.sum", &SUM),
            9 => ("Metric.histogram", &HISTOGRAM),
            10 => ("Metric.exponential_histogram", &EXP_HISTOGRAM),
            11 => ("Metric.summary", &SUMMARY),
            _ => continue,
        };
        let (s, e) = f.expect_len(field)?;
        let points = data_points(&r.nested(s, e), data)?;
        if member == f.number {
            count = count
                .checked_add(points)
                .ok_or(ScanError::CountOverflow { offset: f.offset })?;
        } else {
            member = f.number;
            count = points;
        }
    }
    Ok(count)
}

/// The fields of one metric data type, for checks and error messages.
struct DataFields {
    /// Field 1, the repeated data points.
    points: &'static str,
    /// Field 2, `aggregation_temporality`, where the type has it.
    temporality: Option<&'static str>,
    /// Field 3, `is_monotonic`, where the type has it.
    monotonic: Option<&'static str>,
}

const GAUGE: DataFields = DataFields {
    points: "Gauge.data_points",
    temporality: None,
    monotonic: None,
};
const SUM: DataFields = DataFields {
    points: "Sum.data_points",
    temporality: Some("Sum.aggregation_temporality"),
    monotonic: Some("Sum.is_monotonic"),
};
const HISTOGRAM: DataFields = DataFields {
    points: "Histogram.data_points",
    temporality: Some("Histogram.aggregation_temporality"),
    monotonic: None,
};
const EXP_HISTOGRAM: DataFields = DataFields {
    points: "ExponentialHistogram.data_points",
    temporality: Some("ExponentialHistogram.aggregation_temporality"),
    monotonic: None,
};
const SUMMARY: DataFields = DataFields {
    points: "Summary.data_points",
    temporality: None,
    monotonic: None,
};

/// Data points (field 1) of a Gauge, Sum, Histogram, ExponentialHistogram
/// or Summary; fields 2 and 3 are checked where the type has them. The
/// points are counted here and checked by [`check::message`].
fn data_points(data: &Reader<'_>, fields: &DataFields) -> Result<u32, ScanError> {
    let mut r = data.clone();
    let mut count: u32 = 0;
    while let Some(f) = r.next_field()? {
        match (f.number, fields.temporality, fields.monotonic) {
            (1, _, _) => {
                f.expect_len(fields.points)?;
                count = count
                    .checked_add(1)
                    .ok_or(ScanError::CountOverflow { offset: f.offset })?;
            }
            (2, Some(name), _) | (3, _, Some(name)) => f.expect(name, VARINT)?,
            _ => {}
        }
    }
    Ok(count)
}

#[cfg(test)]
// Tests may panic: that is how they fail.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;

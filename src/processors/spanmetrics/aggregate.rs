//! From a traces request to the deltas it adds to each series: the
//! Collector's `spanmetrics` connector, without its state (the store keeps
//! the totals, so that every acknowledged span counts exactly once).

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

use super::batch::SpanBatch;
use super::key::{KEY_VERSION, ValueRef, encode_attribute};
use super::request::{self, RequestError, ResourceSpans, Span};
use super::series::EncodedDeltas;
use crate::config::spanmetrics::{DurationUnit, SpanMetricsConfig, Temporality};

/// Where a dimension's value comes from.
#[derive(Debug, Clone)]
enum Slot {
    ServiceName,
    SpanName,
    SpanKind,
    StatusCode,
    /// A configured dimension: its default, if any.
    Configured(Option<AnyValue>),
}

/// The aggregation of one `spanmetrics` processor.
#[derive(Debug, Clone)]
pub struct SpanMetrics {
    /// Every dimension, in the key's order (by name).
    slots: Vec<(String, Slot)>,
    /// Whether a dimension is configured (read from attributes).
    configured: bool,
    /// The bucket bounds, in nanoseconds: durations compare exactly.
    bounds_nanos: Vec<u64>,
    pub(super) unit: DurationUnit,
    pub(super) temporality: Temporality,
    pub(super) namespace: String,
    cardinality_limit: usize,
    flush_interval: Duration,
}

impl SpanMetrics {
    /// The aggregation `config` describes (a checked configuration: its
    /// buckets ascend and its dimension names are unique).
    pub fn new(config: &SpanMetricsConfig) -> Self {
        let builtin = [
            ("service.name", Slot::ServiceName),
            ("span.name", Slot::SpanName),
            ("span.kind", Slot::SpanKind),
            ("status.code", Slot::StatusCode),
        ];
        let mut slots: Vec<(String, Slot)> = builtin
            .into_iter()
            .map(|(name, slot)| (name.to_owned(), slot))
            .collect();
        slots.extend(config.dimensions.iter().map(|d| {
            let default = d.default.as_ref().map(|v| AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            });
            (d.name.clone(), Slot::Configured(default))
        }));
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        slots.dedup_by(|later, first| later.0 == first.0);
        Self {
            configured: slots
                .iter()
                .any(|(_, slot)| matches!(slot, Slot::Configured(_))),
            slots,
            bounds_nanos: config
                .histogram
                .explicit
                .buckets
                .iter()
                .map(|b| u64::try_from(b.0.as_nanos()).unwrap_or(u64::MAX))
                .collect(),
            unit: config.histogram.unit,
            temporality: config.aggregation_temporality,
            namespace: config.namespace.clone(),
            cardinality_limit: usize::try_from(config.aggregation_cardinality_limit)
                .unwrap_or(usize::MAX),
            flush_interval: config.metrics_flush_interval,
        }
    }

    /// How many bucket bounds (an [`Aggregate`](super::series::Aggregate) has one more count).
    pub fn bounds(&self) -> usize {
        self.bounds_nanos.len()
    }

    /// The bucket bounds in the configured unit, as the histogram sends them.
    pub fn explicit_bounds(&self) -> Vec<f64> {
        let per_unit = self.unit.millis() * 1e6;
        self.bounds_nanos
            .iter()
            .map(|n| *n as f64 / per_unit)
            .collect()
    }

    /// `aggregation_cardinality_limit`: how many series the caller keeps
    /// before it sends the spans of new ones to [`SeriesKey::overflow`](super::key::SeriesKey::overflow).
    pub fn cardinality_limit(&self) -> usize {
        self.cardinality_limit
    }

    /// `metrics_flush_interval`.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// `aggregation_temporality`.
    pub fn temporality(&self) -> Temporality {
        self.temporality
    }

    /// The deltas of an `ExportTraceServiceRequest`: each of its spans
    /// counted in its series. Spans of a resource without `service.name`
    /// are not counted (as the Collector).
    ///
    /// # Errors
    /// The bytes are not an `ExportTraceServiceRequest`.
    #[cfg(test)]
    pub(crate) fn deltas(&self, request: &[u8]) -> Result<super::Deltas, RequestError> {
        let entry = self.encoded_deltas(request)?;
        Ok(super::decode_deltas(&entry.bytes).expect("an entry we encoded"))
    }

    /// The deltas of a request in their stored encoding, read from the
    /// request's bytes: the work ingest does per request.
    ///
    /// # Errors
    /// The bytes are not an `ExportTraceServiceRequest`.
    pub fn encoded_deltas(&self, request: &[u8]) -> Result<EncodedDeltas, RequestError> {
        let mut batch = SpanBatch::with_capacity(request.len());
        request::for_each_resource(request, |rs| {
            let Some(service) = rs.attribute("service.name")? else {
                return Ok(());
            };
            let service = match service {
                ValueRef::Str(s) => s,
                _ => "",
            };
            let resource = self.resource_dimensions(rs)?;
            rs.for_each_span(|span| {
                let bucket = self
                    .bounds_nanos
                    .partition_point(|b| *b < span.duration_nanos);
                let millis = span.duration_nanos as f64 / 1e6;
                batch.push(bucket, millis, |key| {
                    self.write_key(key, service, &resource, span)
                })
            })
        })?;
        Ok(batch.encode(self.bounds()))
    }

    /// The configured dimensions' values in a resource, by slot (none
    /// without configured dimensions: nothing to look for).
    fn resource_dimensions<'a>(
        &self,
        rs: &ResourceSpans<'a>,
    ) -> Result<Vec<Option<ValueRef<'a>>>, RequestError> {
        if !self.configured {
            return Ok(Vec::new());
        }
        self.slots
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Configured(_) => rs.attribute(name),
                _ => Ok(None),
            })
            .collect()
    }

    /// Appends the series key of `span` in its canonical encoding (the
    /// dimensions in the order [`SeriesKey::new`] sorts them), with
    /// `resource` from [`SpanMetrics::resource_dimensions`].
    fn write_key(
        &self,
        out: &mut Vec<u8>,
        service: &str,
        resource: &[Option<ValueRef<'_>>],
        span: &Span<'_>,
    ) -> Result<(), RequestError> {
        out.push(KEY_VERSION);
        for (i, (name, slot)) in self.slots.iter().enumerate() {
            let value = match slot {
                Slot::ServiceName => ValueRef::Str(service),
                Slot::SpanName => ValueRef::Str(span.name),
                Slot::SpanKind => ValueRef::Str(span_kind(span.kind)),
                Slot::StatusCode => ValueRef::Str(status_code(span.status_code)),
                // The span's attribute, else the resource's, else the
                // default; without any, the dimension is left out.
                Slot::Configured(default) => match span.attribute(name)? {
                    Some(v) => v,
                    None => match (resource.get(i).cloned().flatten(), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => ValueRef::of(Some(d)),
                        (None, None) => continue,
                    },
                },
            };
            encode_attribute(out, name, &value);
        }
        Ok(())
    }
}

/// `SPAN_KIND_SERVER` and so on; empty for a kind OTLP does not define (as
/// the Collector).
fn span_kind(kind: i32) -> &'static str {
    SpanKind::try_from(kind).map_or("", |k| k.as_str_name())
}

/// `STATUS_CODE_ERROR` and so on (a span without a status is unset).
fn status_code(code: i32) -> &'static str {
    StatusCode::try_from(code).map_or("", |c| c.as_str_name())
}

//! From a traces request to the [`Deltas`] it adds to each series: the
//! Collector's `spanmetrics` connector, without its state (the store keeps
//! the totals, so that every acknowledged span counts exactly once).

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use prost::Message;

use super::lite::{Request, Span};

use super::key::{SeriesKey, ValueRef, encode_attribute};
use crate::config::spanmetrics::{DurationUnit, SpanMetricsConfig, Temporality};

/// What some spans add to one series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Aggregate {
    /// How many spans.
    pub calls: u64,
    /// Spans per bucket: one per bound, and the last above every bound.
    pub bucket_counts: Vec<u64>,
    /// The sum of their durations, in milliseconds.
    pub sum: f64,
}

impl Aggregate {
    /// Nothing yet, for `bounds` bucket bounds.
    pub fn empty(bounds: usize) -> Self {
        Self {
            calls: 0,
            bucket_counts: vec![0; bounds + 1],
            sum: 0.0,
        }
    }

    /// An aggregate with these totals (tests build expectations with it).
    #[cfg(test)]
    pub(crate) fn of(calls: u64, buckets: &[u64], sum: f64) -> Self {
        Self {
            calls,
            bucket_counts: buckets.to_vec(),
            sum,
        }
    }

    /// Adds `other` in (bucket by bucket; a longer `other` lengthens this).
    pub fn merge(&mut self, other: &Aggregate) {
        self.calls = self.calls.saturating_add(other.calls);
        self.sum += other.sum;
        if self.bucket_counts.len() < other.bucket_counts.len() {
            self.bucket_counts.resize(other.bucket_counts.len(), 0);
        }
        for (mine, theirs) in self.bucket_counts.iter_mut().zip(&other.bucket_counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    fn observe(&mut self, bucket: usize, millis: f64) {
        self.calls = self.calls.saturating_add(1);
        self.sum += millis;
        if let Some(c) = self.bucket_counts.get_mut(bucket) {
            *c = c.saturating_add(1);
        }
    }
}

/// What a request adds, per series, in key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deltas(BTreeMap<SeriesKey, Aggregate>);

impl Deltas {
    /// How many series.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no span was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delta of one series.
    pub fn get(&self, key: &SeriesKey) -> Option<&Aggregate> {
        self.0.get(key)
    }

    /// The series and their deltas, in key order.
    pub fn iter(&self) -> btree_map::Iter<'_, SeriesKey, Aggregate> {
        self.0.iter()
    }

    /// Adds `delta` to series `key` (the caller sends a series past the
    /// cardinality limit to [`SeriesKey::overflow`] this way).
    pub fn add(&mut self, key: SeriesKey, delta: &Aggregate) {
        match self.0.entry(key) {
            btree_map::Entry::Occupied(mut e) => e.get_mut().merge(delta),
            btree_map::Entry::Vacant(e) => {
                e.insert(delta.clone());
            }
        }
    }

    /// Adds every series of `other`: the deltas of two requests merged are
    /// the deltas of their spans together.
    pub fn merge(&mut self, other: Deltas) {
        for (key, delta) in other.0 {
            self.add(key, &delta);
        }
    }
}

impl IntoIterator for Deltas {
    type Item = (SeriesKey, Aggregate);
    type IntoIter = btree_map::IntoIter<SeriesKey, Aggregate>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Deltas {
    type Item = (&'a SeriesKey, &'a Aggregate);
    type IntoIter = btree_map::Iter<'a, SeriesKey, Aggregate>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

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

    /// How many bucket bounds (an [`Aggregate`] has one more count).
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
    /// before it sends the spans of new ones to [`SeriesKey::overflow`].
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

    /// Decodes an `ExportTraceServiceRequest` and counts each of its spans
    /// in its series. Spans of a resource without `service.name` are not
    /// counted (as the Collector).
    ///
    /// # Errors
    /// The bytes are not an `ExportTraceServiceRequest`.
    pub fn deltas(&self, request: &[u8]) -> Result<Deltas, prost::DecodeError> {
        self.deltas_of(Bytes::copy_from_slice(request))
    }

    /// [`SpanMetrics::deltas`] of a request held in `Bytes`: span attributes
    /// stay slices of it (see `lite`).
    ///
    /// # Errors
    /// The bytes are not an `ExportTraceServiceRequest`.
    pub fn deltas_of(&self, request: Bytes) -> Result<Deltas, prost::DecodeError> {
        let request = Request::decode(request)?;
        let configured = self
            .slots
            .iter()
            .any(|(_, slot)| matches!(slot, Slot::Configured(_)));
        let mut span_attributes: Vec<KeyValue> = Vec::new();
        let mut out = BTreeMap::new();
        let mut buf = Vec::new();
        for rs in &request.resource_spans {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let Some(service) = find(resource, "service.name") else {
                continue;
            };
            let service = match service.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.as_str(),
                _ => "",
            };
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                span_attributes.clear();
                if configured {
                    span_attributes.extend(
                        span.attributes
                            .iter()
                            .filter_map(|kv| KeyValue::decode(kv.clone()).ok()),
                    );
                }
                let dims = Dims {
                    service,
                    resource,
                    span,
                    span_attributes: &span_attributes,
                };
                buf.clear();
                buf.push(super::key::KEY_VERSION);
                self.each_dimension(&dims, |name, v| encode_attribute(&mut buf, name, v));
                // A known series is found by the bytes alone; only a new one
                // builds its key.
                let delta = if out.contains_key(buf.as_slice()) {
                    out.get_mut(buf.as_slice())
                } else {
                    let key = self.key(&dims);
                    debug_assert_eq!(key.as_bytes(), buf.as_slice(), "written as SeriesKey::new");
                    Some(
                        out.entry(key)
                            .or_insert_with(|| Aggregate::empty(self.bounds())),
                    )
                };
                let Some(delta) = delta else { continue };
                let nanos = span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano);
                let bucket = self.bounds_nanos.partition_point(|b| *b < nanos);
                delta.observe(bucket, nanos as f64 / 1e6);
            }
        }
        Ok(Deltas(out))
    }

    /// The key of a span, built when its series is new to a request.
    fn key(&self, dims: &Dims<'_>) -> SeriesKey {
        let mut attributes = Vec::with_capacity(self.slots.len());
        self.each_dimension(dims, |name, v| {
            let value = match v {
                ValueRef::Str(s) => Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s.to_owned())),
                }),
                ValueRef::Any(a) => a.cloned(),
            };
            attributes.push(KeyValue {
                key: name.to_owned(),
                value,
                ..Default::default()
            });
        });
        SeriesKey::new(attributes)
    }

    /// Calls `f` with every dimension of a span that has a value, by name.
    fn each_dimension<'a>(&'a self, d: &Dims<'a>, mut f: impl FnMut(&'a str, ValueRef<'a>)) {
        for (name, slot) in &self.slots {
            let value = match slot {
                Slot::ServiceName => ValueRef::Str(d.service),
                Slot::SpanName => ValueRef::Str(&d.span.name),
                Slot::SpanKind => ValueRef::Str(span_kind(d.span.kind)),
                Slot::StatusCode => ValueRef::Str(status_code(d.span)),
                Slot::Configured(default) => {
                    match find(d.span_attributes, name).or_else(|| find(d.resource, name)) {
                        Some(kv) => ValueRef::Any(kv.value.as_ref()),
                        None => match default {
                            Some(v) => ValueRef::Any(Some(v)),
                            None => continue,
                        },
                    }
                }
            };
            f(name, value);
        }
    }
}

/// What the dimensions of one span are read from.
struct Dims<'a> {
    service: &'a str,
    resource: &'a [KeyValue],
    span: &'a Span,
    /// The span's attributes, decoded only with configured dimensions.
    span_attributes: &'a [KeyValue],
}

/// The first attribute named `key` (as the Collector's maps find it).
fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|kv| kv.key == key)
}

/// `SPAN_KIND_SERVER` and so on; empty for a kind OTLP does not define (as
/// the Collector).
fn span_kind(kind: i32) -> &'static str {
    SpanKind::try_from(kind).map_or("", |k| k.as_str_name())
}

/// `STATUS_CODE_ERROR` and so on; a span without a status is unset.
fn status_code(span: &Span) -> &'static str {
    let code = span.status.as_ref().map_or(0, |s| s.code);
    StatusCode::try_from(code).map_or("", |c| c.as_str_name())
}

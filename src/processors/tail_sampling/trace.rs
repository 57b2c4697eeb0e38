//! What the policies read from one trace's spans, which may be spread over
//! several `ResourceSpans` and `ScopeSpans` (the spans of a trace arrive in
//! many requests, from many services).

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// Every span of one trace, as the data path holds them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trace<'a> {
    batches: &'a [ResourceSpans],
}

impl<'a> Trace<'a> {
    pub(super) const fn new(batches: &'a [ResourceSpans]) -> Self {
        Self { batches }
    }

    /// Every span, resource by resource, scope by scope.
    pub(super) fn spans(self) -> impl Iterator<Item = &'a Span> {
        self.batches
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
    }

    /// How many spans the trace has.
    pub(super) fn span_count(self) -> u64 {
        self.batches
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len() as u64)
            .sum()
    }

    /// The trace ID, from its first span (empty for a trace without spans).
    pub(super) fn trace_id(self) -> &'a [u8] {
        self.spans().next().map_or(&[], |s| s.trace_id.as_slice())
    }

    /// The latest span end minus the earliest span start, in whole
    /// milliseconds (0 without spans or when the clocks put the end first).
    pub(super) fn duration_ms(self) -> u64 {
        let (start, end) = self.spans().fold((u64::MAX, 0), |(start, end), s| {
            (
                start.min(s.start_time_unix_nano),
                end.max(s.end_time_unix_nano),
            )
        });
        end.saturating_sub(start) / 1_000_000
    }

    /// Whether a resource attribute or a span attribute named `key` has a
    /// value `matches` accepts.
    pub(super) fn any_attribute(self, key: &str, matches: impl Fn(&Value) -> bool) -> bool {
        let found = |attrs: &[KeyValue]| {
            attrs
                .iter()
                .filter(|kv| kv.key == key)
                .filter_map(|kv| kv.value.as_ref()?.value.as_ref())
                .any(&matches)
        };
        self.batches.iter().any(|rs| {
            rs.resource.as_ref().is_some_and(|r| found(&r.attributes))
                || rs
                    .scope_spans
                    .iter()
                    .flat_map(|ss| &ss.spans)
                    .any(|s| found(&s.attributes))
        })
    }
}

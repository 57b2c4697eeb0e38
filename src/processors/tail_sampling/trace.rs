//! What the policies read of one trace, gathered span by span as its spans
//! are stored: they arrive in many requests, from many services, and share
//! those requests with other traces' spans. The facts are small (counts,
//! bounds, the values of the attributes policies name), so a pending trace
//! costs memory for them only, and deciding it reads nothing back.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::proto::span_facts::SpanFacts;

/// Every fact of one trace that a policy may read.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFacts {
    /// The trace ID of its first span, and its length (an absent ID is
    /// empty).
    id: [u8; 16],
    id_len: u8,
    spans: u64,
    /// Earliest start and latest end, Unix nanoseconds.
    start: u64,
    end: u64,
    /// Bit `c` set: a span has status code `c` (codes above 7 share bit 7).
    statuses: u8,
    /// The distinct values of the attributes policies name, of the spans
    /// and of their resources.
    attributes: Vec<(Arc<str>, Value)>,
}

impl Default for TraceFacts {
    fn default() -> Self {
        Self {
            id: [0; 16],
            id_len: 0,
            spans: 0,
            start: u64::MAX,
            end: 0,
            statuses: 0,
            attributes: Vec::new(),
        }
    }
}

impl TraceFacts {
    /// Adds one span; `keys` are the attribute keys the policies name (the
    /// span's wanted attributes are among them).
    pub fn add(&mut self, span: &SpanFacts<'_, '_>, keys: &[Arc<str>]) {
        if self.spans == 0 {
            let n = span.trace_id.len().min(16);
            self.id[..n].copy_from_slice(&span.trace_id[..n]);
            self.id_len = u8::try_from(n).unwrap_or(16);
        }
        self.spans += 1;
        self.start = self.start.min(span.start_unix_nano);
        self.end = self.end.max(span.end_unix_nano);
        self.statuses |= 1 << span.status_code.min(7);
        for (key, bytes) in span.attributes {
            let Some(key) = keys.iter().find(|k| &***k == *key) else {
                continue;
            };
            // The scan checked the encoding; one that still does not decode
            // matches nothing.
            let Some(value) = AnyValue::decode(*bytes).ok().and_then(|v| v.value) else {
                continue;
            };
            self.add_value(key, value);
        }
    }

    fn add_value(&mut self, key: &Arc<str>, value: Value) {
        if !self
            .attributes
            .iter()
            .any(|(k, v)| Arc::ptr_eq(k, key) && *v == value)
        {
            self.attributes.push((Arc::clone(key), value));
        }
    }

    /// Adds what another part of the trace holds (its later spans).
    pub fn merge(&mut self, other: TraceFacts) {
        if self.spans == 0 {
            *self = other;
            return;
        }
        self.spans += other.spans;
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.statuses |= other.statuses;
        for (k, v) in other.attributes {
            self.add_value(&k, v);
        }
    }

    /// How many spans the trace has.
    pub fn span_count(&self) -> u64 {
        self.spans
    }

    /// The trace ID, from its first span (empty for a trace without spans).
    pub(super) fn trace_id(&self) -> &[u8] {
        &self.id[..usize::from(self.id_len)]
    }

    /// Whether a span has status code `code`.
    pub(super) fn has_status(&self, code: i32) -> bool {
        u32::try_from(code).is_ok_and(|c| self.statuses & (1 << c.min(7)) != 0)
    }

    /// The latest span end minus the earliest span start, in whole
    /// milliseconds (0 without spans or when the clocks put the end first).
    pub(super) fn duration_ms(&self) -> u64 {
        self.end.saturating_sub(self.start) / 1_000_000
    }

    /// Whether a resource attribute (of a resource with a span of this
    /// trace) or a span attribute named `key` has a value `matches` accepts.
    pub(super) fn any_attribute(&self, key: &str, matches: impl Fn(&Value) -> bool) -> bool {
        self.attributes
            .iter()
            .filter(|(k, _)| &**k == key)
            .any(|(_, v)| matches(v))
    }
}

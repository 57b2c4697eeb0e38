//! Splitting an export request by a routing key, at the wire level: the
//! load-balancing exporter's half of "scan, don't decode".
//!
//! A request is a tree: request → resource block → scope → record (for
//! metrics, record = metric → data → data point). [`split`] walks it down
//! to the level where the key lives, asks `owner` which of `n` backends each
//! key belongs to, and builds one request per backend. A subtree whose
//! records all go to one backend is copied as it is (one `memcpy`); only a
//! message whose children go to several backends is rebuilt, as its other
//! fields (the resource, the scope, the metric's name…) followed by the
//! children that backend owns. Protobuf does not care about field order
//! and repeated fields keep theirs, so every part decodes to exactly the
//! records it was given, with their resource and scope.
//!
//! What the walk reads, per key:
//! - `traceID`: the `trace_id` of each span (the last occurrence, as prost
//!   merges); nothing else of a span;
//! - `service`: the resource's `service.name` string attribute (the whole
//!   block goes to one backend; no such attribute is the empty key);
//! - `resource`: the bytes of the resource message;
//! - `streamID`: the bytes of the resource, of the scope, the metric name
//!   and each data point's attributes, as they are on the wire (the same
//!   attributes in another order are another stream: producers write them
//!   in a stable order).
//!
//! Invariants: like [`super::scan`], nothing here panics or indexes out of
//! bounds; every record of the input is in exactly one part; a part with no
//! records has an empty body.
#![warn(clippy::indexing_slicing)]

use std::cell::Cell;

use prost::encoding::{WireType, encode_key, encode_varint};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::wire::{Field, Reader};
use super::{Candidate, ScanError, names, resource_key};
use crate::config::RoutingKey;
use crate::signal::Signal;

/// The records of one backend: a valid export request and how many records
/// (spans, data points, log records) it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// The request bytes; empty when `records` is 0.
    pub body: Vec<u8>,
    /// Records in `body`.
    pub records: u32,
}

/// The 64-bit hash of a routing key, as `owner` receives it.
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, 0)
}

/// Splits the request `buf` of `signal` into `n` parts by `key`: the
/// records whose key hash `owner` maps to `i` are in part `i`.
///
/// `owner` must return an index below `n`; records it maps elsewhere go to
/// part 0 rather than being lost.
///
/// # Errors
/// A [`ScanError`] for a framing problem in the levels walked.
pub fn split(
    signal: Signal,
    key: RoutingKey,
    buf: &[u8],
    n: usize,
    owner: &dyn Fn(u64) -> usize,
) -> Result<Vec<Part>, ScanError> {
    Ok(spread(signal, key, buf, n, owner)?.into_parts(buf, n))
}

/// How [`spread`] divides a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spread {
    /// No records at all.
    Nothing,
    /// Every record goes to backend `to`: the request as it is.
    Whole {
        /// The owner's index.
        to: usize,
        /// Records in the request.
        records: u32,
    },
    /// Several backends: one part each (empty for those with no records).
    Parts(Vec<Part>),
}

impl Spread {
    /// One part per backend, copying `buf` for [`Spread::Whole`].
    pub fn into_parts(self, buf: &[u8], n: usize) -> Vec<Part> {
        let mut parts = vec![Part::default(); n.max(1)];
        match self {
            Spread::Nothing => parts,
            Spread::Whole { to, records } => {
                if let Some(p) = parts.get_mut(to) {
                    *p = Part {
                        body: buf.to_vec(),
                        records,
                    };
                }
                parts
            }
            Spread::Parts(built) => built,
        }
    }
}

/// [`split`], except that a request whose records all go to one backend is
/// answered as [`Spread::Whole`], so the caller keeps its bytes instead of a
/// copy (ingest stores the very buffer it received).
///
/// # Errors
/// A [`ScanError`] for a framing problem in the levels walked.
pub fn spread(
    signal: Signal,
    key: RoutingKey,
    buf: &[u8],
    n: usize,
    owner: &dyn Fn(u64) -> usize,
) -> Result<Spread, ScanError> {
    spread_keyed(signal, key, buf, n, owner, None)
}

/// [`spread`] with, for a traces request split by `traceID`, the key hash
/// of each span in request order (from [`super::scan_keyed`]): the split
/// then reads no span's fields. Hints that do not match the request (a
/// different number of spans) are ignored and the spans read instead.
///
/// # Errors
/// A [`ScanError`] for a framing problem in the levels walked.
pub fn spread_keyed(
    signal: Signal,
    key: RoutingKey,
    buf: &[u8],
    n: usize,
    owner: &dyn Fn(u64) -> usize,
    trace_keys: Option<&[u64]>,
) -> Result<Spread, ScanError> {
    let n = n.max(1);
    let pick = |hash: u64| {
        let i = owner(hash);
        if i < n { i } else { 0 }
    };
    let hints = trace_keys.filter(|_| signal == Signal::Traces && key == RoutingKey::TraceId);
    let splitter = Splitter {
        signal,
        key,
        pick: &pick,
        last: Cell::new(None),
        hints: hints.map(|h| Hints {
            keys: h,
            next: Cell::new(0),
            missed: Cell::new(false),
        }),
        n,
    };
    let routed = splitter.message(&Reader::new(buf), Level::Request, 0)?;
    if let Some(h) = &splitter.hints
        && (h.missed.get() || h.next.get() != h.keys.len())
    {
        return spread_keyed(signal, key, buf, n, owner, None);
    }
    Ok(match routed {
        Routed::Nothing => Spread::Nothing,
        Routed::One { to, records } => Spread::Whole { to, records },
        Routed::Many(parts) => Spread::Parts(parts),
    })
}

/// Span key hashes handed in by the caller, taken in order.
struct Hints<'a> {
    keys: &'a [u64],
    next: Cell<usize>,
    /// More spans than hints: the rest were read, and the split is redone
    /// without hints (they did not describe this request).
    missed: Cell<bool>,
}

impl Hints<'_> {
    fn take(&self) -> Option<u64> {
        let i = self.next.get();
        let key = self.keys.get(i).copied();
        match key {
            Some(_) => self.next.set(i + 1),
            None => self.missed.set(true),
        }
        key
    }
}

/// Where a subtree's records go.
enum Routed {
    /// It holds no records.
    Nothing,
    /// All of them go to one backend: copy the subtree whole.
    One { to: usize, records: u32 },
    /// They go to several: the rebuilt message content for each backend.
    Many(Vec<Part>),
}

/// A message type of the tree, as far as the walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Request,
    Resource,
    Scope,
    Metric,
    /// A metric's data message; the number is the data point's attributes
    /// field, which differs per data type.
    Data(u32),
}

struct Splitter<'a> {
    signal: Signal,
    key: RoutingKey,
    pick: &'a dyn Fn(u64) -> usize,
    /// The last key asked and its owner: the spans of a trace usually come
    /// together, and the ring's answer costs a hash per backend.
    last: Cell<Option<(u64, usize)>>,
    /// Each span's key, when the caller has them.
    hints: Option<Hints<'a>>,
    n: usize,
}

impl Splitter<'_> {
    /// The owner of `hash`, remembered for the next key.
    fn owner(&self, hash: u64) -> usize {
        if let Some((last, to)) = self.last.get()
            && last == hash
        {
            return to;
        }
        let to = (self.pick)(hash);
        self.last.set(Some((hash, to)));
        to
    }

    /// Field numbers of `level` that hold its children, the child's level
    /// for each, and the fields folded into the stream key.
    fn child(&self, level: Level, number: u32) -> Option<Level> {
        match (level, number) {
            (Level::Request, 1) => Some(Level::Resource),
            (Level::Resource, 2) => Some(Level::Scope),
            (Level::Scope, 2) if self.signal == Signal::Metrics => Some(Level::Metric),
            // Gauge and sum points (NumberDataPoint.attributes = 7),
            // histogram (9), exponential histogram (1), summary (7).
            (Level::Metric, 5 | 7) => Some(Level::Data(7)),
            (Level::Metric, 9) => Some(Level::Data(9)),
            (Level::Metric, 10) => Some(Level::Data(1)),
            (Level::Metric, 11) => Some(Level::Data(7)),
            _ => None,
        }
    }

    /// Whether field `number` of `level` is part of the stream key.
    fn keyed(level: Level, number: u32) -> bool {
        // Resource.resource, Scope.scope, Metric.name: all field 1.
        matches!(level, Level::Resource | Level::Scope | Level::Metric) && number == 1
    }

    /// Routes one message of `level` read by `r`; `ctx` is the stream-key
    /// hash of its ancestors.
    fn message(&self, r: &Reader<'_>, level: Level, ctx: u64) -> Result<Routed, ScanError> {
        if level == Level::Resource
            && matches!(self.key, RoutingKey::Service | RoutingKey::Resource)
        {
            return self.whole_block(r);
        }
        let mut ctx = ctx;
        if self.key == RoutingKey::StreamId {
            let mut pass = r.clone();
            while let Some(f) = pass.next_field()? {
                if Self::keyed(level, f.number) {
                    ctx = xxh3_64_with_seed(pass.bytes(f.offset, pass.position()), ctx);
                }
            }
        }
        let mut header: Vec<(usize, usize)> = Vec::new();
        let mut children: Vec<(Field, usize, Routed)> = Vec::new();
        let mut fields = r.clone();
        while let Some(f) = fields.next_field()? {
            let end = fields.position();
            match self.child(level, f.number) {
                Some(child) => {
                    let (s, e) = f.expect_len(child_name(self.signal, level))?;
                    let nested = fields.nested(s, e);
                    let routed = match child {
                        Level::Scope if self.signal != Signal::Metrics => {
                            self.leaves(&nested, 2, Leaf::Span, ctx)?
                        }
                        Level::Data(attrs) => self.leaves(&nested, 1, Leaf::Point(attrs), ctx)?,
                        other => self.message(&nested, other, ctx)?,
                    };
                    children.push((f, end, routed));
                }
                None => header.push((f.offset, end)),
            }
        }
        Ok(self.combine(r, &header, children))
    }

    /// A resource block routed as one (keys `service` and `resource`).
    fn whole_block(&self, r: &Reader<'_>) -> Result<Routed, ScanError> {
        let mut records: u32 = 0;
        let mut hash = 0u64;
        let mut best: Option<Candidate<'_>> = None;
        let service = ["service.name".to_owned()];
        let mut fields = r.clone();
        while let Some(f) = fields.next_field()? {
            match f.number {
                1 => {
                    let (s, e) = f.expect_len(names(self.signal).resource)?;
                    if self.key == RoutingKey::Service {
                        resource_key(&fields.nested(s, e), &service, &mut best)?;
                    } else {
                        hash = xxh3_64_with_seed(fields.bytes(s, e), hash);
                    }
                }
                2 => {
                    let (s, e) = f.expect_len(names(self.signal).scope)?;
                    let n = super::scope_records(self.signal, &fields.nested(s, e), None, None)?;
                    records = records
                        .checked_add(n)
                        .ok_or(ScanError::CountOverflow { offset: f.offset })?;
                }
                _ => {}
            }
        }
        if self.key == RoutingKey::Service {
            hash = key_hash(best.map_or("", |c| c.value).as_bytes());
        }
        Ok(if records == 0 {
            Routed::Nothing
        } else {
            Routed::One {
                to: self.owner(hash),
                records,
            }
        })
    }

    /// Routes the records (field `number`) of a scope or a metric's data,
    /// each by its own key; the message's other fields are its header.
    ///
    /// The first pass only finds the owners; the records of a message that
    /// all go to one backend (one trace per request, or keys that happen
    /// to agree) are neither collected nor copied.
    fn leaves(
        &self,
        r: &Reader<'_>,
        number: u32,
        leaf: Leaf,
        ctx: u64,
    ) -> Result<Routed, ScanError> {
        let mut single: Option<usize> = None;
        let mut records: u32 = 0;
        // Filled only once two owners differ.
        let mut owners: Vec<usize> = Vec::new();
        let mut fields = r.clone();
        while let Some(f) = fields.next_field()? {
            if f.number != number {
                continue;
            }
            let (s, e) = f.expect_len(names(self.signal).records)?;
            let hint = match (&self.hints, leaf) {
                (Some(h), Leaf::Span) => h.take(),
                _ => None,
            };
            let hash = match hint {
                Some(h) => h,
                None => self.leaf_key(&fields.nested(s, e), leaf, ctx)?,
            };
            let to = self.owner(hash);
            match single {
                None => single = Some(to),
                Some(first) if owners.is_empty() && first != to => {
                    owners = vec![first; records as usize];
                    owners.push(to);
                }
                Some(_) if !owners.is_empty() => owners.push(to),
                Some(_) => {}
            }
            records = records.saturating_add(1);
        }
        if owners.is_empty() {
            return Ok(match single {
                None => Routed::Nothing,
                Some(to) => Routed::One { to, records },
            });
        }
        let mut header: Vec<(usize, usize)> = Vec::new();
        let mut children: Vec<(Field, usize, Routed)> = Vec::with_capacity(owners.len());
        let mut owners = owners.into_iter();
        let mut fields = r.clone();
        while let Some(f) = fields.next_field()? {
            let end = fields.position();
            if f.number != number {
                header.push((f.offset, end));
                continue;
            }
            let to = owners.next().unwrap_or_default();
            children.push((f, end, Routed::One { to, records: 1 }));
        }
        Ok(self.combine(r, &header, children))
    }

    /// The key hash of one span or data point.
    fn leaf_key(&self, r: &Reader<'_>, leaf: Leaf, ctx: u64) -> Result<u64, ScanError> {
        let mut fields = r.clone();
        match leaf {
            Leaf::Span => {
                let mut id: &[u8] = &[];
                while let Some(f) = fields.next_field()? {
                    if f.number == 1 {
                        let (s, e) = f.expect_len("Span.trace_id")?;
                        id = fields.bytes(s, e);
                    }
                }
                Ok(key_hash(id))
            }
            Leaf::Point(attrs) => {
                let mut hash = ctx;
                while let Some(f) = fields.next_field()? {
                    if f.number == attrs {
                        hash = xxh3_64_with_seed(fields.bytes(f.offset, fields.position()), hash);
                    }
                }
                Ok(hash)
            }
        }
    }

    /// Decides a message's routing from its children's: whole if they all go
    /// to one backend, else rebuilt per backend.
    fn combine(
        &self,
        r: &Reader<'_>,
        header: &[(usize, usize)],
        children: Vec<(Field, usize, Routed)>,
    ) -> Routed {
        let mut single: Option<usize> = None;
        let mut records: u32 = 0;
        let mut mixed = false;
        for (_, _, routed) in &children {
            match routed {
                Routed::Nothing => {}
                Routed::One { to, records: k } => {
                    records = records.saturating_add(*k);
                    match single {
                        None => single = Some(*to),
                        Some(s) if s == *to => {}
                        Some(_) => mixed = true,
                    }
                }
                Routed::Many(_) => mixed = true,
            }
        }
        if !mixed {
            return match single {
                None => Routed::Nothing,
                Some(to) => Routed::One { to, records },
            };
        }
        let mut parts = vec![Part::default(); self.n];
        for (f, end, routed) in children {
            match routed {
                Routed::Nothing => {}
                Routed::One { to, records } => {
                    if let Some(p) = parts.get_mut(to) {
                        p.body.extend_from_slice(r.bytes(f.offset, end));
                        p.records = p.records.saturating_add(records);
                    }
                }
                Routed::Many(sub) => {
                    for (p, s) in parts.iter_mut().zip(sub) {
                        if s.records > 0 {
                            encode_key(f.number, WireType::LengthDelimited, &mut p.body);
                            encode_varint(s.body.len() as u64, &mut p.body);
                            p.body.extend_from_slice(&s.body);
                            p.records = p.records.saturating_add(s.records);
                        }
                    }
                }
            }
        }
        // Each backend's message: its children, then the shared fields
        // (resource, scope, name…) once, only where it got any records.
        for p in &mut parts {
            if p.records > 0 {
                for &(s, e) in header {
                    p.body.extend_from_slice(r.bytes(s, e));
                }
            }
        }
        Routed::Many(parts)
    }
}

/// What a leaf record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Span,
    /// A data point whose attributes are this field.
    Point(u32),
}

/// The name of the child field of `level`, for errors.
fn child_name(signal: Signal, level: Level) -> &'static str {
    let n = names(signal);
    match level {
        Level::Request => n.request,
        Level::Resource => n.scope,
        Level::Scope => n.records,
        Level::Metric => "Metric.data",
        Level::Data(_) => "data_points",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    use super::*;

    fn attr(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// `services` resources × 2 scopes × `spans` spans; trace `t` of span
    /// `i` is `i % traces`.
    fn traces(services: usize, spans: usize, traces: usize) -> ExportTraceServiceRequest {
        let mut n = 0usize;
        ExportTraceServiceRequest {
            resource_spans: (0..services)
                .map(|s| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![attr("service.name", &format!("svc-{s}"))],
                        ..Default::default()
                    }),
                    scope_spans: (0..2)
                        .map(|sc| ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: format!("scope-{sc}"),
                                ..Default::default()
                            }),
                            spans: (0..spans)
                                .map(|_| {
                                    n += 1;
                                    Span {
                                        trace_id: ((n % traces) as u128).to_be_bytes().to_vec(),
                                        span_id: (n as u64).to_be_bytes().to_vec(),
                                        name: format!("span-{n}"),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            schema_url: "https://schema".into(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_scan_hands_over_each_spans_trace_key_and_the_split_uses_them() {
        let mut req = traces(3, 5, 4);
        // An absent trace ID is the empty key; a repeated one counts last.
        req.resource_spans[1].scope_spans[0].spans[2]
            .trace_id
            .clear();
        let buf = req.encode_to_vec();
        let mut keys = Vec::new();
        let blocks = super::super::scan_keyed(
            Signal::Traces,
            &buf,
            &[],
            super::super::Limits::DEFAULT,
            Some(&mut keys),
        )
        .unwrap();
        assert_eq!(blocks.len(), 3);
        let want: Vec<u64> = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|span| key_hash(&span.trace_id))
            .collect();
        assert_eq!(keys, want);
        assert_eq!(keys[12], key_hash(&[]));

        // With the hints, the same parts as reading the spans.
        let read = spread(Signal::Traces, RoutingKey::TraceId, &buf, 3, &by_mod(3)).unwrap();
        let hinted = spread_keyed(
            Signal::Traces,
            RoutingKey::TraceId,
            &buf,
            3,
            &by_mod(3),
            Some(&keys),
        )
        .unwrap();
        assert_eq!(hinted, read);
        // The hints are what decides: all-equal hints send everything to
        // one backend, whatever the spans say.
        let same = vec![keys[0]; keys.len()];
        let one = spread_keyed(
            Signal::Traces,
            RoutingKey::TraceId,
            &buf,
            3,
            &by_mod(3),
            Some(&same),
        )
        .unwrap();
        assert!(matches!(one, Spread::Whole { records: 30, .. }), "{one:?}");
        // Hints that do not fit the request (one short, one too many) are
        // dropped and the spans read.
        for wrong in [&keys[1..], &[&keys[..], &[0]].concat()[..]] {
            let got = spread_keyed(
                Signal::Traces,
                RoutingKey::TraceId,
                &buf,
                3,
                &by_mod(3),
                Some(wrong),
            )
            .unwrap();
            assert_eq!(got, read);
        }

        // A span with its trace ID twice: the scan keeps the last, as the
        // split (and prost) does.
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        let mut dup = span.encode_to_vec();
        dup.extend_from_slice(&[0x0a, 16]);
        dup.extend_from_slice(&[0xee; 16]);
        // A request with that one span, encoded by hand (prost would merge
        // the two IDs).
        let wrap = |number: u32, body: &[u8]| {
            let mut out = Vec::new();
            encode_key(number, WireType::LengthDelimited, &mut out);
            encode_varint(body.len() as u64, &mut out);
            out.extend_from_slice(body);
            out
        };
        // Span in ScopeSpans.spans (2), in ResourceSpans.scope_spans (2), in
        // the request's resource_spans (1).
        let raw = wrap(1, &wrap(2, &wrap(2, &dup)));
        let mut keys = Vec::new();
        super::super::scan_keyed(
            Signal::Traces,
            &raw,
            &[],
            super::super::Limits::DEFAULT,
            Some(&mut keys),
        )
        .unwrap();
        assert_eq!(keys, vec![key_hash(&[0xee; 16])]);
    }

    fn by_mod(n: usize) -> impl Fn(u64) -> usize {
        move |h| (h % n as u64) as usize
    }

    #[test]
    fn trace_split_keeps_every_span_with_its_trace_resource_and_scope() {
        let req = traces(3, 50, 17);
        let buf = req.encode_to_vec();
        let parts = split(Signal::Traces, RoutingKey::TraceId, &buf, 4, &by_mod(4)).unwrap();
        let mut seen = HashSet::new();
        let mut trace_owner: HashMap<Vec<u8>, usize> = HashMap::new();
        for (i, p) in parts.iter().enumerate() {
            let got = ExportTraceServiceRequest::decode(p.body.as_slice()).unwrap();
            let mut count = 0u32;
            for rs in &got.resource_spans {
                let svc = &rs.resource.as_ref().unwrap().attributes[0];
                for ss in &rs.scope_spans {
                    assert_eq!(ss.schema_url, "https://schema");
                    let scope = ss.scope.as_ref().unwrap().name.clone();
                    for sp in &ss.spans {
                        count += 1;
                        // The span is under the resource and scope it came from.
                        let orig = req
                            .resource_spans
                            .iter()
                            .find(|o| o.resource.as_ref().unwrap().attributes[0] == *svc)
                            .unwrap()
                            .scope_spans
                            .iter()
                            .find(|o| o.scope.as_ref().unwrap().name == scope)
                            .unwrap();
                        assert!(orig.spans.contains(sp));
                        assert!(seen.insert(sp.span_id.clone()), "span twice");
                        let owner = trace_owner.entry(sp.trace_id.clone()).or_insert(i);
                        assert_eq!(*owner, i, "a trace on two backends");
                    }
                }
            }
            assert_eq!(count, p.records);
            assert_eq!(p.body.is_empty(), p.records == 0);
            assert_eq!(
                u64::from(p.records),
                super::super::count_records(Signal::Traces, &p.body).unwrap()
            );
        }
        assert_eq!(seen.len(), 300);
        assert!(parts.iter().filter(|p| p.records > 0).count() > 1);
    }

    #[test]
    fn one_owner_copies_the_request_as_is() {
        let buf = traces(2, 10, 3).encode_to_vec();
        let parts = split(Signal::Traces, RoutingKey::TraceId, &buf, 3, &|_| 2).unwrap();
        assert_eq!(parts[2].body, buf);
        assert_eq!(parts[2].records, 40);
        assert!(parts[0].body.is_empty() && parts[1].body.is_empty());
    }

    #[test]
    fn service_and_resource_keys_move_whole_blocks() {
        let req = traces(8, 5, 100);
        let buf = req.encode_to_vec();
        for key in [RoutingKey::Service, RoutingKey::Resource] {
            let parts = split(Signal::Traces, key, &buf, 3, &by_mod(3)).unwrap();
            let mut blocks = 0;
            for p in &parts {
                let got = ExportTraceServiceRequest::decode(p.body.as_slice()).unwrap();
                for rs in &got.resource_spans {
                    assert!(req.resource_spans.contains(rs), "{key:?}: block changed");
                    blocks += 1;
                }
            }
            assert_eq!(blocks, 8);
        }
        // The service key is the service name: equal names, equal backend.
        let owner = |h: u64| usize::from(h == key_hash(b"svc-3"));
        let parts = split(Signal::Traces, RoutingKey::Service, &buf, 2, &owner).unwrap();
        assert_eq!(parts[1].records, 10);
    }

    #[test]
    fn stream_split_keeps_each_series_on_one_backend() {
        let point = |series: usize, t: u64| NumberDataPoint {
            attributes: vec![attr("series", &series.to_string())],
            time_unix_nano: t,
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource::default()),
                scope_metrics: vec![ScopeMetrics {
                    scope: None,
                    metrics: (0..4)
                        .map(|m| Metric {
                            name: format!("m{m}"),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: (0..40).map(|i| point(i % 10, i as u64)).collect(),
                            })),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let buf = req.encode_to_vec();
        let parts = split(Signal::Metrics, RoutingKey::StreamId, &buf, 3, &by_mod(3)).unwrap();
        let mut owner: HashMap<(String, String), usize> = HashMap::new();
        let mut total = 0;
        for (i, p) in parts.iter().enumerate() {
            let got = ExportMetricsServiceRequest::decode(p.body.as_slice()).unwrap();
            for m in &got.resource_metrics[0].scope_metrics[0].metrics {
                let Some(metric::Data::Gauge(g)) = &m.data else {
                    panic!("data type lost")
                };
                for dp in &g.data_points {
                    total += 1;
                    let series = format!("{:?}", dp.attributes);
                    assert_eq!(*owner.entry((m.name.clone(), series)).or_insert(i), i);
                }
            }
            assert_eq!(
                u64::from(p.records),
                super::super::count_records(Signal::Metrics, &p.body).unwrap()
            );
        }
        assert_eq!(total, 160);
        assert_eq!(owner.len(), 40);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"\x0a\x05\x12"[..], b"\xff\xff", b"\x0a\x02\x12\x10"] {
            assert!(split(Signal::Traces, RoutingKey::TraceId, bad, 2, &by_mod(2)).is_err());
        }
        // An out-of-range owner cannot lose records.
        let buf = traces(1, 5, 5).encode_to_vec();
        let parts = split(Signal::Traces, RoutingKey::TraceId, &buf, 2, &|_| 9).unwrap();
        assert_eq!(parts[0].records, 10);
    }
}

//! Pre-encoded loadgen requests: a request is encoded once per shape and
//! then copied and patched in place for every send, so the generator spends
//! its time on the wire rather than in prost.
//!
//! A template is [`build_request`] run once with sentinel values whose
//! encodings are found again in the bytes: the sequence numbers (a base of
//! 2^62, so every seq attribute is a 9-byte varint), the timestamps (two
//! fixed64 sentinels: start and end) and, for spans, the span and trace IDs.
//! A real seq is written back as a 9-byte varint with redundant continuation
//! bits: valid protobuf that every decoder (prost, Go, seedgate's scan) reads
//! as the same number, so the patched request decodes exactly like the one
//! [`build_request`] makes for the same seqs, except for the padding text,
//! which is the template's.

use super::records::{RequestSpec, SEQ_ATTR, build_request};
use crate::signal::Signal;

/// The sentinel seq base: 2^62 encodes as a 9-byte varint, and every seq a
/// run can reach (below 2^62) fits the same 9 bytes.
const SEQ_BASE: u64 = 1 << 62;
/// Bytes of a padded seq varint.
const SEQ_WIDTH: usize = 9;
/// Sentinel start time (fixed64); generated spans end 1 µs later.
const TIME_SENTINEL: u64 = 0x5EED_0000_7153_0000;
/// What [`build_request`] adds to a span's start for its end time.
const SPAN_DURATION_NANOS: u64 = 1_000;

/// What a realistic traces run varies per span (`loadgen --realistic-traces`):
/// everything is derived from the seq, so a run is reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Realism {
    /// Distinct `service.name`s (`svc-000`...), per request.
    pub services: u64,
    /// Distinct span names (`op-0000`...), per span.
    pub span_names: u64,
    /// Percent of spans with status ERROR.
    pub error_percent: u64,
}

impl Realism {
    /// Five services, eight span names, 5% errors.
    pub const DEFAULT: Realism = Realism {
        services: 5,
        span_names: 8,
        error_percent: 5,
    };

    /// A span's duration: log-uniform between 1 ms and 2 s, as service
    /// latencies roughly are, from a hash of its seq.
    pub fn duration_nanos(seq: u64) -> u64 {
        let u = (mix(seq) >> 11) as f64 / (1u64 << 53) as f64;
        // e^(ln 1ms + u · ln 2000)
        let ms = (u * 2000f64.ln()).exp();
        (ms * 1e6) as u64
    }

    fn is_error(self, seq: u64) -> bool {
        mix(seq ^ 0x5EED) % 100 < self.error_percent
    }
}

/// A 64-bit mix (splitmix64's finaliser): seq → well-spread bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How the spans of a traces run are grouped into traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceShape {
    /// All spans of one request form one trace (the ID from its first seq).
    PerRequest,
    /// Each trace has this many spans, spread over as many consecutive
    /// requests: span `s` of a run with `w` records per request belongs to
    /// trace `(s / (w·k))·w + s mod w`.
    Spread(u64),
}

impl TraceShape {
    /// The trace number of the span with seq `seq` in a request starting at
    /// `first_seq` of `per_request` records.
    pub fn trace_of(self, seq: u64, first_seq: u64, per_request: u64) -> u64 {
        match self {
            TraceShape::PerRequest => first_seq,
            TraceShape::Spread(k) => {
                let w = per_request.max(1);
                (seq / (w * k.max(1))) * w + seq % w
            }
        }
    }
}

/// The 16-byte trace ID of trace number `trace` (non-zero, as OTLP requires).
pub fn trace_id(trace: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&trace.wrapping_add(1).to_be_bytes());
    id
}

/// One pre-encoded request and where its per-send fields are.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    /// Offset of record `k`'s seq varint, in record order.
    seqs: Vec<usize>,
    /// Offsets of the fixed64 start (or only) timestamps.
    starts: Vec<usize>,
    /// Offsets of the fixed64 span end timestamps.
    ends: Vec<usize>,
    /// Offsets of span `k`'s 8-byte span ID (traces only).
    span_ids: Vec<usize>,
    /// Offsets of span `k`'s 16-byte trace ID (traces only).
    trace_ids: Vec<usize>,
    /// Offsets of span `k`'s 7-byte name (traces only).
    names: Vec<usize>,
    /// Offsets of span `k`'s status code varint (traces only).
    statuses: Vec<usize>,
    /// Offsets of each block's 7-byte `service.name` value.
    services: Vec<usize>,
}

impl Template {
    /// Encodes the request `spec` describes (its `first_seq` and time are
    /// ignored) and finds its per-send fields.
    ///
    /// # Errors
    /// A sentinel was not found exactly once per record: the generated
    /// request's shape changed and this module must follow.
    pub fn new(signal: Signal, spec: &RequestSpec<'_>) -> anyhow::Result<Self> {
        let sentinel_spec = RequestSpec {
            first_seq: SEQ_BASE,
            time_unix_nano: TIME_SENTINEL,
            ..*spec
        };
        let bytes = build_request(signal, &sentinel_spec).encode_to_vec();
        // KeyValue{key: SEQ_ATTR, value: AnyValue{int_value: <9-byte varint>}}.
        let mut seq_prefix = vec![0x0a, SEQ_ATTR.len() as u8];
        seq_prefix.extend_from_slice(SEQ_ATTR.as_bytes());
        seq_prefix.extend_from_slice(&[0x12, 1 + SEQ_WIDTH as u8, 0x18]);
        let seqs: Vec<usize> = find_all(&bytes, &seq_prefix)
            .into_iter()
            .map(|at| at + seq_prefix.len())
            .collect();
        let records = spec.records;
        anyhow::ensure!(
            seqs.len() == records,
            "template: {} seq attributes for {records} records",
            seqs.len()
        );
        for (k, &at) in seqs.iter().enumerate() {
            anyhow::ensure!(
                bytes[at..at + SEQ_WIDTH] == padded_varint(SEQ_BASE + k as u64),
                "template: seq attribute {k} out of order"
            );
        }
        let starts = find_all(&bytes, &TIME_SENTINEL.to_le_bytes());
        let ends = find_all(&bytes, &(TIME_SENTINEL + SPAN_DURATION_NANOS).to_le_bytes());
        let (mut span_ids, mut trace_ids) = (Vec::new(), Vec::new());
        let (mut names, mut statuses) = (Vec::new(), Vec::new());
        if signal == Signal::Traces {
            anyhow::ensure!(
                starts.len() == records && ends.len() == records,
                "template: span timestamps not found once per span"
            );
            for k in 0..records as u64 {
                let span_id = (SEQ_BASE + k).wrapping_add(1).to_be_bytes();
                let mut field = vec![0x12, 8];
                field.extend_from_slice(&span_id);
                let found = find_all(&bytes, &field);
                anyhow::ensure!(found.len() == 1, "template: span id {k} not unique");
                span_ids.push(found[0] + 2);
            }
            let mut trace_field = vec![0x0a, 16];
            trace_field.extend_from_slice(&trace_id(SEQ_BASE));
            trace_ids = find_all(&bytes, &trace_field)
                .into_iter()
                .map(|at| at + 2)
                .collect();
            anyhow::ensure!(
                trace_ids.len() == records,
                "template: trace ids not found once per span"
            );
            // name (field 5) "loadgen"; status (field 15) {code (3): OK}.
            names = find_all(&bytes, b"\x2a\x07loadgen")
                .into_iter()
                .map(|at| at + 2)
                .collect();
            statuses = find_all(&bytes, &[0x7a, 0x02, 0x18, 0x01])
                .into_iter()
                .map(|at| at + 3)
                .collect();
            anyhow::ensure!(
                names.len() == records && statuses.len() == records,
                "template: span names or statuses not found once per span"
            );
        }
        // KeyValue{key: "service.name", value: {string_value: "loadgen"}}.
        let services: Vec<usize> = find_all(&bytes, b"\x0a\x0cservice.name\x12\x09\x0a\x07loadgen")
            .into_iter()
            .map(|at| at + 18)
            .collect();
        Ok(Self {
            bytes,
            seqs,
            starts,
            ends,
            span_ids,
            trace_ids,
            names,
            statuses,
            services,
        })
    }

    /// The encoded length of every request made from this template.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the template is empty (never, for a request with records).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A request with seqs `first_seq..`, stamped with `time_unix_nano`, its
    /// spans grouped by `shape`.
    pub fn render(&self, first_seq: u64, time_unix_nano: u64, shape: TraceShape) -> Vec<u8> {
        self.render_with(first_seq, time_unix_nano, shape, None)
    }

    /// [`Template::render`], and with `realism` the services, span names,
    /// errors and durations of a realistic traces run.
    pub fn render_with(
        &self,
        first_seq: u64,
        time_unix_nano: u64,
        shape: TraceShape,
        realism: Option<Realism>,
    ) -> Vec<u8> {
        let mut out = self.bytes.clone();
        let per_request = self.seqs.len() as u64;
        for (k, &at) in self.seqs.iter().enumerate() {
            out[at..at + SEQ_WIDTH].copy_from_slice(&padded_varint(first_seq + k as u64));
        }
        for &at in &self.starts {
            out[at..at + 8].copy_from_slice(&time_unix_nano.to_le_bytes());
        }
        let end = time_unix_nano.saturating_add(SPAN_DURATION_NANOS);
        for &at in &self.ends {
            out[at..at + 8].copy_from_slice(&end.to_le_bytes());
        }
        for (k, (&span_at, &trace_at)) in self.span_ids.iter().zip(&self.trace_ids).enumerate() {
            let seq = first_seq + k as u64;
            out[span_at..span_at + 8].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
            let trace = shape.trace_of(seq, first_seq, per_request);
            out[trace_at..trace_at + 16].copy_from_slice(&trace_id(trace));
        }
        if let Some(r) = realism {
            self.make_realistic(&mut out, first_seq, time_unix_nano, r);
        }
        out
    }

    fn make_realistic(&self, out: &mut [u8], first_seq: u64, time: u64, r: Realism) {
        let request = first_seq / (self.seqs.len().max(1) as u64);
        for (b, &at) in self.services.iter().enumerate() {
            let svc = format!("svc-{:03}", (request + b as u64) % r.services.max(1));
            out[at..at + 7].copy_from_slice(svc.as_bytes());
        }
        for (k, ((&name_at, &status_at), &end_at)) in self
            .names
            .iter()
            .zip(&self.statuses)
            .zip(&self.ends)
            .enumerate()
        {
            let seq = first_seq + k as u64;
            let name = format!("op-{:04}", mix(seq) % r.span_names.max(1));
            out[name_at..name_at + 7].copy_from_slice(name.as_bytes());
            // STATUS_CODE_ERROR is 2, OK 1.
            out[status_at] = if r.is_error(seq) { 2 } else { 1 };
            let end = time.saturating_add(Realism::duration_nanos(seq));
            out[end_at..end_at + 8].copy_from_slice(&end.to_le_bytes());
        }
    }
}

/// `value` (below 2^63) as a varint of exactly [`SEQ_WIDTH`] bytes: the
/// canonical groups, then redundant zero groups with the continuation bit.
fn padded_varint(value: u64) -> [u8; SEQ_WIDTH] {
    let mut out = [0u8; SEQ_WIDTH];
    let mut v = value;
    for (i, byte) in out.iter_mut().enumerate() {
        let group = (v & 0x7f) as u8;
        v >>= 7;
        *byte = if i + 1 < SEQ_WIDTH {
            group | 0x80
        } else {
            group
        };
    }
    out
}

/// Every start offset of `needle` in `haystack`, left to right, not overlapping.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if haystack[at..at + needle.len()] == *needle {
            found.push(at);
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::records::ExportRequest;

    fn spec(namespaces: &[String], records: usize) -> RequestSpec<'_> {
        RequestSpec {
            first_seq: 0,
            records,
            namespaces,
            record_size: 300,
            time_unix_nano: 0,
        }
    }

    #[test]
    fn padded_varints_decode_to_their_value() {
        for v in [0u64, 1, 127, 128, 300, 1 << 40, SEQ_BASE, (1 << 63) - 1] {
            let bytes = padded_varint(v);
            let decoded = prost::encoding::decode_varint(&mut &bytes[..]).expect("varint");
            assert_eq!(decoded, v);
        }
    }

    #[test]
    fn a_rendered_request_carries_the_same_records_as_a_built_one() {
        let ns: Vec<String> = ["shoot--a--x", "b", "shoot--c--y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for signal in Signal::ALL {
            let template = Template::new(signal, &spec(&ns, 50)).expect("template");
            let first = 123_456_789;
            let time = 1_700_000_000_123_456_789;
            let rendered = template.render(first, time, TraceShape::PerRequest);
            assert_eq!(rendered.len(), template.len());
            let got = ExportRequest::decode(signal, &rendered, false).expect("decodes");
            let built = build_request(
                signal,
                &RequestSpec {
                    first_seq: first,
                    time_unix_nano: time,
                    ..spec(&ns, 50)
                },
            );
            let mut got_records = Vec::new();
            got.for_each_record(|n, s| got_records.push((n.map(str::to_owned), s)));
            let mut want = Vec::new();
            built.for_each_record(|n, s| want.push((n.map(str::to_owned), s)));
            assert_eq!(got_records, want, "{signal}");
            // Everything but the padding text is what build_request makes.
            if let (ExportRequest::Traces(g), ExportRequest::Traces(w)) = (&got, &built) {
                let ids = |r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest| {
                    r.resource_spans
                        .iter()
                        .flat_map(|rs| &rs.scope_spans)
                        .flat_map(|ss| &ss.spans)
                        .map(|s| (s.trace_id.clone(), s.span_id.clone(), s.start_time_unix_nano, s.end_time_unix_nano))
                        .collect::<Vec<_>>()
                };
                assert_eq!(ids(g), ids(w));
            }
        }
    }

    #[test]
    fn spread_traces_have_k_spans_each_in_k_consecutive_requests() {
        let ns = vec!["n".to_owned()];
        let template = Template::new(Signal::Traces, &spec(&ns, 10)).expect("template");
        let mut traces: std::collections::BTreeMap<Vec<u8>, Vec<u64>> = Default::default();
        for request in 0..8u64 {
            let body = template.render(request * 10, 1, TraceShape::Spread(4));
            let ExportRequest::Traces(req) =
                ExportRequest::decode(Signal::Traces, &body, false).expect("decodes")
            else {
                panic!("traces")
            };
            for span in req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                traces
                    .entry(span.trace_id.clone())
                    .or_default()
                    .push(request);
            }
        }
        assert_eq!(traces.len(), 20, "80 spans in traces of 4");
        for requests in traces.values() {
            assert_eq!(requests.len(), 4);
            assert!(
                requests.windows(2).all(|w| w[1] == w[0] + 1),
                "{requests:?}"
            );
        }
    }

    #[test]
    fn realistic_traces_vary_services_names_errors_and_durations() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let ns = vec!["shoot--a--x".to_owned()];
        let template = Template::new(Signal::Traces, &spec(&ns, 100)).unwrap();
        let (mut services, mut names) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        let (mut errors, mut spans) = (0, 0);
        let (mut min, mut max) = (u64::MAX, 0);
        for request in 0..50u64 {
            let body = template.render_with(
                request * 100,
                1_000,
                TraceShape::Spread(4),
                Some(Realism::DEFAULT),
            );
            let ExportRequest::Traces(r) =
                ExportRequest::decode(Signal::Traces, &body, false).unwrap()
            else {
                panic!("not traces");
            };
            for rs in &r.resource_spans {
                for kv in &rs.resource.as_ref().unwrap().attributes {
                    if kv.key == "service.name"
                        && let Some(Value::StringValue(s)) =
                            kv.value.as_ref().and_then(|v| v.value.as_ref())
                    {
                        services.insert(s.clone());
                    }
                }
                for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    spans += 1;
                    names.insert(span.name.clone());
                    if span.status.as_ref().unwrap().code == 2 {
                        errors += 1;
                    }
                    let d = span.end_time_unix_nano - span.start_time_unix_nano;
                    (min, max) = (min.min(d), max.max(d));
                }
            }
        }
        assert_eq!(services.len(), 5, "{services:?}");
        assert_eq!(names.len(), 8, "{names:?}");
        // 5% of 5,000 spans, give or take.
        assert!((150..350).contains(&errors), "{errors} errors of {spans}");
        assert!(
            min >= 1_000_000 && max <= 2_000_000_000 && max > 500_000_000,
            "{min}..{max}"
        );
    }
}

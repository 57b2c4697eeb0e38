//! The sequence-number scheme shared by `loadgen` and `sink`: how a request is
//! generated and how the records in a received request are counted.
//!
//! Every record (log record, span, metric data point) carries the int
//! attribute [`SEQ_ATTR`] with a number unique within a loadgen run, and every
//! resource block carries [`NAMESPACE_ATTR`]. The records of one request have
//! consecutive seqs, so an acknowledged request is one `first last` range.
//! Both sides live here so the generator and the counter cannot drift apart.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message as _;

use crate::signal::Signal;

/// The int attribute on every generated record that holds its sequence number.
pub const SEQ_ATTR: &str = "seedgate.seq";
/// The resource attribute that names the tenant (a shoot namespace).
pub const NAMESPACE_ATTR: &str = "k8s.namespace.name";
/// The string attribute that pads a span or data point to the requested size.
pub const PAD_ATTR: &str = "loadgen.pad";
/// The instrumentation scope name of generated data.
pub const SCOPE_NAME: &str = "seedgate-loadgen";

/// One typed OTLP export request of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRequest {
    /// A logs export request.
    Logs(ExportLogsServiceRequest),
    /// A metrics export request.
    Metrics(ExportMetricsServiceRequest),
    /// A traces export request.
    Traces(ExportTraceServiceRequest),
}

/// What to put in one generated request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpec<'a> {
    /// The seq of the first record; the others follow consecutively.
    pub first_seq: u64,
    /// How many records the request carries.
    pub records: usize,
    /// One entry per resource block: its `k8s.namespace.name`. Records are
    /// split as evenly as possible over the blocks, in order; blocks that would
    /// be empty are left out.
    pub namespaces: &'a [String],
    /// Approximate protobuf size of one encoded record, reached by padding.
    pub record_size: usize,
    /// Timestamp put on every record.
    pub time_unix_nano: u64,
}

// === impl ExportRequest ===

impl ExportRequest {
    /// The signal of this request.
    pub fn signal(&self) -> Signal {
        match self {
            ExportRequest::Logs(_) => Signal::Logs,
            ExportRequest::Metrics(_) => Signal::Metrics,
            ExportRequest::Traces(_) => Signal::Traces,
        }
    }

    /// The protobuf encoding.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            ExportRequest::Logs(r) => r.encode_to_vec(),
            ExportRequest::Metrics(r) => r.encode_to_vec(),
            ExportRequest::Traces(r) => r.encode_to_vec(),
        }
    }

    /// The length of the protobuf encoding.
    pub fn encoded_len(&self) -> usize {
        match self {
            ExportRequest::Logs(r) => r.encoded_len(),
            ExportRequest::Metrics(r) => r.encoded_len(),
            ExportRequest::Traces(r) => r.encoded_len(),
        }
    }

    /// The OTLP/JSON encoding (serde of the typed request).
    ///
    /// # Errors
    ///
    /// Serialization failed (not expected for generated data).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            ExportRequest::Logs(r) => serde_json::to_vec(r),
            ExportRequest::Metrics(r) => serde_json::to_vec(r),
            ExportRequest::Traces(r) => serde_json::to_vec(r),
        }
    }

    /// Decodes a request body (already decompressed) of `signal`.
    ///
    /// # Errors
    ///
    /// The body is not a valid protobuf (or JSON, when `json`) request.
    pub fn decode(signal: Signal, body: &[u8], json: bool) -> anyhow::Result<Self> {
        Ok(match (signal, json) {
            (Signal::Logs, false) => ExportRequest::Logs(ExportLogsServiceRequest::decode(body)?),
            (Signal::Metrics, false) => {
                ExportRequest::Metrics(ExportMetricsServiceRequest::decode(body)?)
            }
            (Signal::Traces, false) => {
                ExportRequest::Traces(ExportTraceServiceRequest::decode(body)?)
            }
            (Signal::Logs, true) => ExportRequest::Logs(serde_json::from_slice(body)?),
            (Signal::Metrics, true) => ExportRequest::Metrics(serde_json::from_slice(body)?),
            (Signal::Traces, true) => ExportRequest::Traces(serde_json::from_slice(body)?),
        })
    }

    /// Calls `f(namespace, seq)` once per record, in order: the resource's
    /// `k8s.namespace.name` (if it is a string) and the record's `seedgate.seq`
    /// (if it is a non-negative int). Metric records are data points of every
    /// metric type.
    pub fn for_each_record(&self, mut f: impl FnMut(Option<&str>, Option<u64>)) {
        match self {
            ExportRequest::Logs(req) => {
                for rl in &req.resource_logs {
                    let ns = namespace_of(rl.resource.as_ref());
                    for lr in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                        f(ns, seq_of(&lr.attributes));
                    }
                }
            }
            ExportRequest::Traces(req) => {
                for rs in &req.resource_spans {
                    let ns = namespace_of(rs.resource.as_ref());
                    for sp in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                        f(ns, seq_of(&sp.attributes));
                    }
                }
            }
            ExportRequest::Metrics(req) => {
                for rm in &req.resource_metrics {
                    let ns = namespace_of(rm.resource.as_ref());
                    for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                        for_each_point(m, |attrs| f(ns, seq_of(attrs)));
                    }
                }
            }
        }
    }

    /// The number of records (log records, spans, data points).
    pub fn record_count(&self) -> usize {
        let mut n = 0;
        self.for_each_record(|_, _| n += 1);
        n
    }
}

/// Calls `f` with the attributes of each data point of `m`, whatever its type.
fn for_each_point(m: &Metric, mut f: impl FnMut(&[KeyValue])) {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::Sum(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::Histogram(h)) => h.data_points.iter().for_each(|p| f(&p.attributes)),
        Some(metric::Data::ExponentialHistogram(h)) => {
            h.data_points.iter().for_each(|p| f(&p.attributes));
        }
        Some(metric::Data::Summary(s)) => s.data_points.iter().for_each(|p| f(&p.attributes)),
        None => {}
    }
}

fn namespace_of(resource: Option<&Resource>) -> Option<&str> {
    resource?
        .attributes
        .iter()
        .find(|kv| kv.key == NAMESPACE_ATTR)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn seq_of(attrs: &[KeyValue]) -> Option<u64> {
    attrs.iter().find(|kv| kv.key == SEQ_ATTR).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn seq_kv(seq: u64) -> KeyValue {
    // Seqs beyond i64::MAX are not generated in practice; saturate rather than wrap.
    kv(
        SEQ_ATTR,
        any_value::Value::IntValue(i64::try_from(seq).unwrap_or(i64::MAX)),
    )
}

fn resource(namespace: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv(
                NAMESPACE_ATTR,
                any_value::Value::StringValue(namespace.to_owned()),
            ),
            kv(
                "service.name",
                any_value::Value::StringValue("loadgen".to_owned()),
            ),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE_NAME.to_owned(),
        ..Default::default()
    })
}

/// Splits `records` over `blocks` as evenly as possible, earlier blocks first;
/// yields `(block index, first offset, count)` for the non-empty blocks.
fn split(records: usize, blocks: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let blocks = blocks.max(1);
    let (base, extra) = (records / blocks, records % blocks);
    (0..blocks).filter_map(move |i| {
        let count = base + usize::from(i < extra);
        let offset = i * base + i.min(extra);
        (count > 0).then_some((i, offset, count))
    })
}

/// A pseudo-random alphanumeric string, so that padding compresses like text
/// rather than like a run of one byte. Deterministic in `seed`.
fn pad_source(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let idx = usize::try_from((state >> 33) % ALPHABET.len() as u64).unwrap_or(0);
            char::from(ALPHABET[idx])
        })
        .collect()
}

/// Holds a padding buffer twice the pad length so each record can take a
/// different window of it.
struct Padding {
    source: String,
    len: usize,
}

impl Padding {
    fn new(len: usize, seed: u64) -> Self {
        Self {
            source: pad_source(len * 2, seed),
            len,
        }
    }

    fn for_seq(&self, seq: u64) -> String {
        if self.len == 0 {
            return String::new();
        }
        let start = usize::try_from(seq.wrapping_mul(7) % (self.len as u64 + 1)).unwrap_or(0);
        self.source[start..start + self.len].to_owned()
    }
}

fn log_record(seq: u64, time: u64, body: String) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: 9,
        severity_text: "INFO".to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: vec![seq_kv(seq)],
        ..Default::default()
    }
}

fn span(seq: u64, first_seq: u64, time: u64, pad: String) -> Span {
    // Deterministic non-zero ids: one trace per request, one span id per seq.
    let mut trace_id = vec![0u8; 8];
    trace_id.extend_from_slice(&first_seq.wrapping_add(1).to_be_bytes());
    Span {
        trace_id,
        span_id: seq.wrapping_add(1).to_be_bytes().to_vec(),
        // Seven characters, like the names a realistic run patches in.
        name: "loadgen".to_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: time,
        end_time_unix_nano: time.saturating_add(1_000),
        attributes: vec![
            seq_kv(seq),
            kv(PAD_ATTR, any_value::Value::StringValue(pad)),
        ],
        // An explicit OK, so that a realistic run can flip the code to ERROR
        // in place.
        status: Some(Status {
            code: status::StatusCode::Ok as i32,
            ..Status::default()
        }),
        ..Default::default()
    }
}

fn data_point(seq: u64, time: u64, pad: String) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![
            seq_kv(seq),
            kv(PAD_ATTR, any_value::Value::StringValue(pad)),
        ],
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(seq % 1000).unwrap_or(0),
        )),
        ..Default::default()
    }
}

/// The encoded size of one record of `signal` with empty padding: what the
/// padding has to make up to reach `record_size`.
fn base_record_len(signal: Signal, seq: u64, time: u64) -> usize {
    match signal {
        Signal::Logs => log_record(seq, time, String::new()).encoded_len(),
        Signal::Traces => span(seq, seq, time, String::new()).encoded_len(),
        Signal::Metrics => data_point(seq, time, String::new()).encoded_len(),
    }
}

/// Builds one export request: `spec.records` records with consecutive seqs
/// from `spec.first_seq`, split over one resource block per entry of
/// `spec.namespaces`. Pure and deterministic in its inputs.
///
/// Metrics are one gauge per resource block whose data points are the records.
pub fn build_request(signal: Signal, spec: &RequestSpec<'_>) -> ExportRequest {
    let time = spec.time_unix_nano;
    // +2 covers the length prefix of the record inside its parent message.
    let pad_len = spec
        .record_size
        .saturating_sub(base_record_len(signal, spec.first_seq, time) + 2);
    let padding = Padding::new(pad_len, spec.first_seq);
    let blocks = spec.namespaces.len().max(1);
    let default_ns = String::from("default");
    let ns_of = |i: usize| spec.namespaces.get(i).unwrap_or(&default_ns);
    let seqs = |offset: usize, count: usize| {
        let first = spec.first_seq + offset as u64;
        first..first + count as u64
    };
    match signal {
        Signal::Logs => ExportRequest::Logs(ExportLogsServiceRequest {
            resource_logs: split(spec.records, blocks)
                .map(|(i, offset, count)| ResourceLogs {
                    resource: resource(ns_of(i)),
                    scope_logs: vec![ScopeLogs {
                        scope: scope(),
                        log_records: seqs(offset, count)
                            .map(|s| log_record(s, time, padding.for_seq(s)))
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
        Signal::Traces => ExportRequest::Traces(ExportTraceServiceRequest {
            resource_spans: split(spec.records, blocks)
                .map(|(i, offset, count)| ResourceSpans {
                    resource: resource(ns_of(i)),
                    scope_spans: vec![ScopeSpans {
                        scope: scope(),
                        spans: seqs(offset, count)
                            .map(|s| span(s, spec.first_seq, time, padding.for_seq(s)))
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
        Signal::Metrics => ExportRequest::Metrics(ExportMetricsServiceRequest {
            resource_metrics: split(spec.records, blocks)
                .map(|(i, offset, count)| ResourceMetrics {
                    resource: resource(ns_of(i)),
                    scope_metrics: vec![ScopeMetrics {
                        scope: scope(),
                        metrics: vec![Metric {
                            name: "loadgen.gauge".to_owned(),
                            unit: "1".to_owned(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: seqs(offset, count)
                                    .map(|s| data_point(s, time, padding.for_seq(s)))
                                    .collect(),
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
    }
}

/// The record count of each resource block `build_request` makes for
/// `records` over `blocks` namespaces, as `(block index, count)`; the loadgen
/// uses it to count acked records per namespace without walking the request.
pub fn block_counts(records: usize, blocks: usize) -> impl Iterator<Item = (usize, usize)> {
    split(records, blocks).map(|(i, _, count)| (i, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(namespaces: &'a [String], records: usize, size: usize) -> RequestSpec<'a> {
        RequestSpec {
            first_seq: 1_000,
            records,
            namespaces,
            record_size: size,
            time_unix_nano: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn every_record_has_a_consecutive_seq_and_its_namespace() {
        let ns: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        for signal in Signal::ALL {
            let req = build_request(signal, &spec(&ns, 10, 100));
            let mut seen = Vec::new();
            req.for_each_record(|n, s| seen.push((n.map(str::to_owned), s)));
            let expected: Vec<_> = (0..10u64)
                .map(|i| {
                    let block = if i < 4 {
                        "a"
                    } else if i < 7 {
                        "b"
                    } else {
                        "c"
                    };
                    (Some(block.to_owned()), Some(1_000 + i))
                })
                .collect();
            assert_eq!(seen, expected, "{signal}");
            assert_eq!(req.signal(), signal);
        }
    }

    #[test]
    fn fewer_records_than_blocks_leaves_out_empty_blocks() {
        let ns: Vec<String> = (0..5).map(|i| format!("ns{i}")).collect();
        let req = build_request(Signal::Logs, &spec(&ns, 2, 50));
        let ExportRequest::Logs(logs) = &req else {
            panic!("logs")
        };
        assert_eq!(logs.resource_logs.len(), 2);
        assert_eq!(block_counts(2, 5).collect::<Vec<_>>(), vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn protobuf_and_json_round_trip() {
        let ns = vec!["shoot--p--a".to_owned()];
        for signal in Signal::ALL {
            let req = build_request(signal, &spec(&ns, 5, 200));
            let pb = ExportRequest::decode(signal, &req.encode_to_vec(), false).expect("pb");
            assert_eq!(pb, req, "{signal} protobuf");
            let json = ExportRequest::decode(signal, &req.to_json().expect("json"), true)
                .expect("json decode");
            assert_eq!(json, req, "{signal} json");
        }
    }

    #[test]
    fn records_are_padded_to_about_the_requested_size() {
        let ns = vec!["n".to_owned()];
        for signal in Signal::ALL {
            for size in [300usize, 1000] {
                let one = build_request(signal, &spec(&ns, 1, size)).encoded_len();
                let hundred = build_request(signal, &spec(&ns, 101, size)).encoded_len();
                let per_record = (hundred - one) / 100;
                assert!(
                    per_record.abs_diff(size) <= size / 10,
                    "{signal}: {per_record} bytes per record for size {size}"
                );
            }
        }
    }
}

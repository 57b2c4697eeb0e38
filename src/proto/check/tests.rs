use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        Exemplar, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric,
    },
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event},
};
use prost::Message;

use super::*;
use crate::proto::{count_records, scan, scan_with};
use crate::signal::Signal;

/// A value of depth `depth`: kvlists (or arrays) around an int.
fn nested(depth: u32, array: bool) -> AnyValue {
    let mut v = AnyValue {
        value: Some(V::IntValue(1)),
    };
    for _ in 0..depth {
        v = AnyValue {
            value: Some(if array {
                V::ArrayValue(ArrayValue { values: vec![v] })
            } else {
                V::KvlistValue(KeyValueList {
                    values: vec![attr("k", v)],
                })
            }),
        };
    }
    v
}

fn attr(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        key_strindex: 0,
    }
}

fn log(record: LogRecord, resource: Vec<KeyValue>) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn span(span: Span) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn valid_span() -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /".to_owned(),
        ..Default::default()
    }
}

/// A histogram point whose exemplar carries `value`: the deepest place
/// an `AnyValue` can start (message level 8).
fn exemplar_request(value: AnyValue) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".to_owned(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            exemplars: vec![Exemplar {
                                filtered_attributes: vec![attr("deep", value)],
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn limits(max_value_depth: u32) -> Limits {
    Limits { max_value_depth }
}

/// Builds a request around a value.
type Build = Box<dyn Fn(AnyValue) -> Vec<u8>>;

#[test]
fn value_depth_is_checked_wherever_an_any_value_can_be() {
    let at = |depth| nested(depth, false);
    let cases: Vec<(&str, Signal, Build)> = vec![
        (
            "resource attribute",
            Signal::Logs,
            Box::new(|v| log(LogRecord::default(), vec![attr("r", v)])),
        ),
        (
            "log body",
            Signal::Logs,
            Box::new(|v| {
                log(
                    LogRecord {
                        body: Some(v),
                        ..Default::default()
                    },
                    vec![],
                )
            }),
        ),
        (
            "log attribute",
            Signal::Logs,
            Box::new(|v| {
                log(
                    LogRecord {
                        attributes: vec![attr("a", v)],
                        ..Default::default()
                    },
                    vec![],
                )
            }),
        ),
        (
            "span event attribute",
            Signal::Traces,
            Box::new(|v| {
                span(Span {
                    events: vec![Event {
                        attributes: vec![attr("e", v)],
                        ..Default::default()
                    }],
                    ..valid_span()
                })
            }),
        ),
        (
            "exemplar attribute",
            Signal::Metrics,
            Box::new(exemplar_request),
        ),
    ];
    for (name, signal, build) in cases {
        for array in [false, true] {
            let ok = build(nested(4, array));
            assert_eq!(
                scan_with(signal, &ok, &[], limits(4)).map(|b| b.len()),
                Ok(1),
                "{name}"
            );
            let deep = build(nested(5, array));
            assert!(
                matches!(
                    scan_with(signal, &deep, &[], limits(4)),
                    Err(ScanError::ValueTooDeep { limit: 4, .. })
                ),
                "{name} (array: {array})"
            );
        }
        // The default limit.
        assert!(scan(signal, &build(at(DEFAULT_MAX_VALUE_DEPTH)), &[]).is_ok());
        assert!(scan(signal, &build(at(DEFAULT_MAX_VALUE_DEPTH + 1)), &[]).is_err());
    }
}

/// The arithmetic of the module doc, checked against prost itself: at
/// the deepest starting point, depth 30 decodes and 31 does not.
#[test]
fn max_value_depth_is_the_deepest_prost_decodes() {
    let fits = exemplar_request(nested(MAX_VALUE_DEPTH, false));
    assert!(ExportMetricsServiceRequest::decode(fits.as_slice()).is_ok());
    assert_eq!(
        scan_with(Signal::Metrics, &fits, &[], Limits::MAX).map(|b| b.len()),
        Ok(1)
    );
    let over = exemplar_request(nested(MAX_VALUE_DEPTH + 1, false));
    let err = ExportMetricsServiceRequest::decode(over.as_slice()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    assert!(matches!(
        count_records(Signal::Metrics, &over),
        Err(ScanError::ValueTooDeep { limit: 30, .. })
    ));
}

/// Wraps an int value in `depth` kvlists, on the wire (a prost struct
/// that deep would take the stack with it when dropped).
fn deep_wire(depth: usize) -> Vec<u8> {
    fn len(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }
    let mut value = vec![0x18, 0x01]; // AnyValue.int_value = 1
    for _ in 0..depth {
        let kv = [len(1, b"k"), len(2, &value)].concat();
        value = len(6, &len(1, &kv)); // AnyValue.kvlist_value.values
    }
    let resource = len(1, &[len(1, b"deep"), len(2, &value)].concat());
    len(1, &len(1, &resource))
}

#[test]
fn five_thousand_levels_are_refused_without_walking_them_all() {
    let buf = deep_wire(5000);
    let err = scan(Signal::Logs, &buf, &[]).unwrap_err();
    assert!(matches!(err, ScanError::ValueTooDeep { limit: 16, .. }));
    assert!(err.to_string().contains("limit of 16"), "{err}");
    assert!(ExportLogsServiceRequest::decode(buf.as_slice()).is_err());
}

/// `bytes` with `from` replaced by `to` (same length, so the framing
/// stays valid): how invalid UTF-8 gets into an encoded request.
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn strings_that_are_not_utf8_are_refused_like_prost_does() {
    let bad = [0xc3, 0x28, 0xa0, 0xa1];
    let body = log(
        LogRecord {
            body: Some(AnyValue {
                value: Some(V::StringValue("ok: XXXX".to_owned())),
            }),
            ..Default::default()
        },
        vec![],
    );
    let body = patch(&body, b"XXXX", &bad);
    assert!(ExportLogsServiceRequest::decode(body.as_slice()).is_err());
    let err = scan(Signal::Logs, &body, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ScanError::InvalidUtf8 {
                field: "AnyValue.string_value",
                ..
            }
        ),
        "{err}"
    );
    let name = patch(
        &span(Span {
            name: "XXXX".to_owned(),
            ..valid_span()
        }),
        b"XXXX",
        &bad,
    );
    assert!(ExportTraceServiceRequest::decode(name.as_slice()).is_err());
    assert!(matches!(
        scan(Signal::Traces, &name, &[]),
        Err(ScanError::InvalidUtf8 {
            field: "Span.name",
            ..
        })
    ));
    // bytes_value is not a string: anything goes.
    let bytes = log(
        LogRecord {
            body: Some(AnyValue {
                value: Some(V::BytesValue(bad.to_vec())),
            }),
            ..Default::default()
        },
        vec![],
    );
    assert!(scan(Signal::Logs, &bytes, &[]).is_ok());
}

#[test]
fn ids_have_their_length_or_are_empty_where_the_spec_allows() {
    let record = |trace_id: Vec<u8>, span_id: Vec<u8>| {
        log(
            LogRecord {
                trace_id,
                span_id,
                ..Default::default()
            },
            vec![],
        )
    };
    assert!(scan(Signal::Logs, &record(vec![], vec![]), &[]).is_ok());
    assert!(scan(Signal::Logs, &record(vec![1; 16], vec![2; 8]), &[]).is_ok());
    assert!(matches!(
        scan(Signal::Logs, &record(vec![1; 15], vec![]), &[]),
        Err(ScanError::InvalidIdLength {
            field: "LogRecord.trace_id",
            expected: 16,
            actual: 15,
            ..
        })
    ));
    assert!(matches!(
        scan(Signal::Logs, &record(vec![], vec![2; 16]), &[]),
        Err(ScanError::InvalidIdLength {
            field: "LogRecord.span_id",
            ..
        })
    ));
    // A root span has no parent; a span without IDs passes on (the
    // Collector takes it too).
    assert!(scan(Signal::Traces, &span(valid_span()), &[]).is_ok());
    let no_ids = span(Span {
        trace_id: vec![],
        span_id: vec![],
        ..valid_span()
    });
    assert!(scan(Signal::Traces, &no_ids, &[]).is_ok());
    let short = span(Span {
        trace_id: vec![1; 8],
        ..valid_span()
    });
    assert!(matches!(
        scan(Signal::Traces, &short, &[]),
        Err(ScanError::InvalidIdLength {
            field: "Span.trace_id",
            actual: 8,
            ..
        })
    ));
    let parent = span(Span {
        parent_span_id: vec![3; 4],
        ..valid_span()
    });
    assert!(scan(Signal::Traces, &parent, &[]).is_err());
}

#[test]
fn wrong_wire_types_and_packed_lengths_inside_records_are_refused() {
    // LogRecord.time_unix_nano (fixed64, field 1) sent as a varint.
    let fixed = [0x0a, 0x06, 0x12, 0x04, 0x12, 0x02, 0x08, 0x01];
    assert!(ExportLogsServiceRequest::decode(fixed.as_slice()).is_err());
    assert!(matches!(
        scan(Signal::Logs, &fixed, &[]),
        Err(ScanError::WrongWireType {
            field: "LogRecord.time_unix_nano",
            ..
        })
    ));
    // HistogramDataPoint.bucket_counts packed with 7 bytes.
    let point = [0x32, 0x07, 0, 0, 0, 0, 0, 0, 0].to_vec();
    let hist = [vec![0x0a, point.len() as u8], point].concat();
    let metric = [vec![0x4a, hist.len() as u8], hist].concat();
    let scope = [vec![0x12, metric.len() as u8], metric].concat();
    let block = [vec![0x12, scope.len() as u8], scope].concat();
    let req = [vec![0x0a, block.len() as u8], block].concat();
    assert!(ExportMetricsServiceRequest::decode(req.as_slice()).is_err());
    assert!(matches!(
        scan(Signal::Metrics, &req, &[]),
        Err(ScanError::Truncated { .. })
    ));
}

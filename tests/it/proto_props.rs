//! Property tests of `seedgate::proto::scan` against prost.
//!
//! Arbitrary export requests of every signal are encoded with prost and
//! scanned; the scan must agree with a full decode on record counts and
//! routing keys, and the block ranges must slice the request into pieces
//! that concatenate back into valid requests. Garbage and mutated encodings
//! must never panic, and whenever prost accepts a mutated encoding the scan
//! must agree with it too.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        metric, number_data_point,
    },
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status},
};
use proptest::prelude::*;
use prost::Message;
use seedgate::{
    proto::{Block, ScanError, concat, count_records, scan},
    signal::Signal,
};

/// The routing keys scanned for, in priority order.
const KEYS: [&str; 2] = ["k8s.namespace.name", "service.name"];

fn keys() -> Vec<String> {
    KEYS.iter().map(|k| (*k).to_owned()).collect()
}

// ---------------------------------------------------------------- strategies

fn any_value() -> impl Strategy<Value = Option<AnyValue>> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        "\\PC{0,12}".prop_map(V::StringValue),
        any::<bool>().prop_map(V::BoolValue),
        any::<i64>().prop_map(V::IntValue),
        // Finite only: NaN would make the decoded requests compare unequal.
        any::<i32>().prop_map(|i| V::DoubleValue(f64::from(i) / 4.0)),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(V::BytesValue),
        prop::collection::vec("\\PC{0,4}", 0..3).prop_map(|v| V::ArrayValue(ArrayValue {
            values: v
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(V::StringValue(s))
                })
                .collect(),
        })),
    ];
    prop::option::weighted(0.9, leaf.prop_map(|v| AnyValue { value: Some(v) }))
}

fn attribute() -> impl Strategy<Value = KeyValue> {
    // Mostly the routing keys, so presence, absence, duplicates, non-string
    // values and every position in the list all occur often.
    let key = prop_oneof![
        Just(KEYS[0].to_owned()),
        Just(KEYS[1].to_owned()),
        Just("k8s.pod.name".to_owned()),
        "[a-z.]{1,10}",
    ];
    (key, any_value()).prop_map(|(key, value)| KeyValue {
        key,
        value,
        key_strindex: 0,
    })
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    prop::option::weighted(
        0.9,
        (prop::collection::vec(attribute(), 0..6), 0u32..3).prop_map(|(attributes, dropped)| {
            Resource {
                attributes,
                dropped_attributes_count: dropped,
                entity_refs: vec![],
            }
        }),
    )
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    prop::option::of(("[a-z]{0,6}", "[0-9.]{0,5}").prop_map(|(name, version)| {
        InstrumentationScope {
            name,
            version,
            ..Default::default()
        }
    }))
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        any::<u64>(),
        0i32..25,
        "\\PC{0,40}",
        prop::collection::vec(attribute(), 0..3),
        prop::option::of(prop::array::uniform16(any::<u8>())),
    )
        .prop_map(|(time, severity, body, attributes, trace)| LogRecord {
            time_unix_nano: time,
            severity_number: severity,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body)),
            }),
            attributes,
            trace_id: trace.map(|t| t.to_vec()).unwrap_or_default(),
            ..Default::default()
        })
}

fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope_logs = (
        scope(),
        prop::collection::vec(log_record(), 0..4),
        "[a-z]{0,3}",
    )
        .prop_map(|(scope, log_records, schema_url)| ScopeLogs {
            scope,
            log_records,
            schema_url,
        });
    let resource_logs =
        (resource(), prop::collection::vec(scope_logs, 0..3)).prop_map(|(resource, scope_logs)| {
            ResourceLogs {
                resource,
                scope_logs,
                schema_url: String::new(),
            }
        });
    prop::collection::vec(resource_logs, 0..6)
        .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

fn span() -> impl Strategy<Value = Span> {
    (
        prop::array::uniform16(any::<u8>()),
        prop::array::uniform8(any::<u8>()),
        "\\PC{0,20}",
        0i32..6,
        prop::option::of((0i32..3, "[a-z ]{0,10}")),
        prop::collection::vec(attribute(), 0..3),
    )
        .prop_map(|(trace_id, span_id, name, kind, status, attributes)| Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            name,
            kind,
            status: status.map(|(code, message)| Status { code, message }),
            attributes,
            ..Default::default()
        })
}

fn traces_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans =
        (scope(), prop::collection::vec(span(), 0..4)).prop_map(|(scope, spans)| ScopeSpans {
            scope,
            spans,
            schema_url: String::new(),
        });
    let resource_spans = (
        resource(),
        prop::collection::vec(scope_spans, 0..3),
        "[a-z]{0,3}",
    )
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        });
    prop::collection::vec(resource_spans, 0..6)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        any::<u64>(),
        any::<i64>(),
        prop::collection::vec(attribute(), 0..2),
    )
        .prop_map(|(time, v, attributes)| NumberDataPoint {
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsInt(v)),
            attributes,
            ..Default::default()
        })
}

fn metric_data() -> impl Strategy<Value = Option<metric::Data>> {
    use metric::Data;
    let n = 0usize..4;
    prop_oneof![
        1 => Just(None),
        2 => prop::collection::vec(number_point(), n.clone())
            .prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
        2 => (prop::collection::vec(number_point(), n.clone()), 0i32..3, any::<bool>()).prop_map(
            |(data_points, t, m)| Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality: t,
                is_monotonic: m,
            }))
        ),
        2 => prop::collection::vec(
            (any::<u64>(), prop::collection::vec(any::<u64>(), 0..4)),
            n.clone()
        )
        .prop_map(|points| Some(Data::Histogram(Histogram {
            data_points: points
                .into_iter()
                .map(|(count, bucket_counts)| HistogramDataPoint {
                    count,
                    bucket_counts,
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
        }))),
        1 => prop::collection::vec(any::<u64>(), n.clone()).prop_map(|counts| Some(
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: counts
                    .into_iter()
                    .map(|count| ExponentialHistogramDataPoint {
                        count,
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 1,
            })
        )),
        1 => prop::collection::vec(any::<u64>(), n).prop_map(|counts| Some(Data::Summary(
            Summary {
                data_points: counts
                    .into_iter()
                    .map(|count| SummaryDataPoint {
                        count,
                        ..Default::default()
                    })
                    .collect(),
            }
        ))),
    ]
}

fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let metric =
        ("[a-z_.]{1,12}", "[a-z]{0,3}", metric_data()).prop_map(|(name, unit, data)| Metric {
            name,
            unit,
            data,
            ..Default::default()
        });
    let scope_metrics =
        (scope(), prop::collection::vec(metric, 0..4)).prop_map(|(scope, metrics)| ScopeMetrics {
            scope,
            metrics,
            schema_url: String::new(),
        });
    let resource_metrics = (resource(), prop::collection::vec(scope_metrics, 0..3)).prop_map(
        |(resource, scope_metrics)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url: String::new(),
        },
    );
    prop::collection::vec(resource_metrics, 0..6)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

// ------------------------------------------------------------------ oracles

/// What a full decode says the routing key of a resource is: the first name
/// of `KEYS` that some attribute has with a string value.
fn expected_key(resource: Option<&Resource>) -> Option<&str> {
    let attrs = resource
        .map(|r| r.attributes.as_slice())
        .unwrap_or_default();
    KEYS.iter().find_map(|k| {
        attrs
            .iter()
            .find_map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) if a.key == *k => Some(s.as_str()),
                _ => None,
            })
    })
}

/// Per resource: (records, key), as a full decode sees them.
fn expected_logs(r: &ExportLogsServiceRequest) -> Vec<(u32, Option<&str>)> {
    r.resource_logs
        .iter()
        .map(|rl| {
            let n: usize = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
            (n as u32, expected_key(rl.resource.as_ref()))
        })
        .collect()
}

fn expected_traces(r: &ExportTraceServiceRequest) -> Vec<(u32, Option<&str>)> {
    r.resource_spans
        .iter()
        .map(|rs| {
            let n: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
            (n as u32, expected_key(rs.resource.as_ref()))
        })
        .collect()
}

fn points(m: &Metric) -> usize {
    use metric::Data;
    match &m.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

fn expected_metrics(r: &ExportMetricsServiceRequest) -> Vec<(u32, Option<&str>)> {
    r.resource_metrics
        .iter()
        .map(|rm| {
            let n: usize = rm
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(points)
                .sum();
            (n as u32, expected_key(rm.resource.as_ref()))
        })
        .collect()
}

fn summary<'a>(blocks: &[Block<'a>]) -> Vec<(u32, Option<&'a str>)> {
    blocks.iter().map(|b| (b.records, b.key)).collect()
}

/// The blocks whose bit is set in `mask` (bit `i % 64` for block `i`).
fn select<'a>(blocks: &[Block<'a>], mask: u64) -> Vec<Block<'a>> {
    blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 64)) != 0)
        .map(|(_, b)| b.clone())
        .collect()
}

fn selected<T: Clone>(items: &[T], mask: u64) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 64)) != 0)
        .map(|(_, t)| t.clone())
        .collect()
}

/// Ranges are in bounds, in order, and do not overlap.
fn assert_well_formed(buf: &[u8], blocks: &[Block<'_>]) {
    let mut last_end = 0;
    for b in blocks {
        assert!(b.range.start >= last_end && b.range.start < b.range.end);
        assert!(b.range.end <= buf.len());
        last_end = b.range.end;
    }
}

// --------------------------------------------------------------- round trips

/// The shared round-trip check, generic over the request type.
fn round_trip<R: Message + Default + PartialEq + std::fmt::Debug>(
    signal: Signal,
    request: &R,
    expected: Vec<(u32, Option<&str>)>,
    restrict: impl Fn(u64) -> R,
    mask: u64,
) -> Result<(), TestCaseError> {
    let buf = request.encode_to_vec();
    let blocks = scan(signal, &buf, &keys()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(summary(&blocks), expected.clone());
    let total: u64 = expected.iter().map(|(n, _)| u64::from(*n)).sum();
    prop_assert_eq!(count_records(signal, &buf), Ok(total));

    let mut all = Vec::new();
    concat(&buf, &blocks, &mut all);
    prop_assert_eq!(
        &R::decode(all.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?,
        request
    );

    let mut part = Vec::new();
    concat(&buf, &select(&blocks, mask), &mut part);
    let decoded = R::decode(part.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded, restrict(mask));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn logs_scan_agrees_with_prost(request in logs_request(), mask in any::<u64>()) {
        round_trip(Signal::Logs, &request, expected_logs(&request), |m| ExportLogsServiceRequest {
            resource_logs: selected(&request.resource_logs, m),
        }, mask)?;
    }

    #[test]
    fn traces_scan_agrees_with_prost(request in traces_request(), mask in any::<u64>()) {
        round_trip(Signal::Traces, &request, expected_traces(&request), |m| ExportTraceServiceRequest {
            resource_spans: selected(&request.resource_spans, m),
        }, mask)?;
    }

    #[test]
    fn metrics_scan_agrees_with_prost(request in metrics_request(), mask in any::<u64>()) {
        round_trip(Signal::Metrics, &request, expected_metrics(&request), |m| ExportMetricsServiceRequest {
            resource_metrics: selected(&request.resource_metrics, m),
        }, mask)?;
    }
}

// ------------------------------------------------------------------ garbage

fn signal() -> impl Strategy<Value = Signal> {
    prop::sample::select(Signal::ALL.to_vec())
}

/// A valid encoding of a random request of a random signal.
fn encoded() -> impl Strategy<Value = (Signal, Vec<u8>)> {
    prop_oneof![
        logs_request().prop_map(|r| (Signal::Logs, r.encode_to_vec())),
        traces_request().prop_map(|r| (Signal::Traces, r.encode_to_vec())),
        metrics_request().prop_map(|r| (Signal::Metrics, r.encode_to_vec())),
    ]
}

/// Scans `buf`; if prost also accepts it, both must agree.
fn check_against_prost(signal: Signal, buf: &[u8]) -> Result<(), TestCaseError> {
    let scanned = scan(signal, buf, &keys());
    if let Ok(blocks) = &scanned {
        assert_well_formed(buf, blocks);
    }
    // count_records validates the same way (only its value depth limit is
    // the largest allowed, which random input never reaches).
    match &scanned {
        Ok(blocks) => prop_assert_eq!(
            count_records(signal, buf),
            Ok(blocks.iter().map(|b| u64::from(b.records)).sum::<u64>())
        ),
        Err(e) => prop_assert_eq!(count_records(signal, buf), Err(*e)),
    }
    let decoded = match signal {
        Signal::Logs => ExportLogsServiceRequest::decode(buf).map(|r| {
            expected_logs(&r)
                .into_iter()
                .map(|(n, k)| (n, k.map(str::to_owned)))
                .collect::<Vec<_>>()
        }),
        Signal::Traces => ExportTraceServiceRequest::decode(buf).map(|r| {
            expected_traces(&r)
                .into_iter()
                .map(|(n, k)| (n, k.map(str::to_owned)))
                .collect()
        }),
        Signal::Metrics => ExportMetricsServiceRequest::decode(buf).map(|r| {
            expected_metrics(&r)
                .into_iter()
                .map(|(n, k)| (n, k.map(str::to_owned)))
                .collect()
        }),
    };
    if let Ok(expected) = decoded {
        match scanned {
            Ok(blocks) => {
                let got: Vec<_> = blocks
                    .iter()
                    .map(|b| (b.records, b.key.map(str::to_owned)))
                    .collect();
                prop_assert_eq!(got, expected);
            }
            // prost skips unknown groups; the scanner rejects them. IDs of
            // the wrong length decode in prost but the Collector refuses
            // them, so the scanner does too.
            Err(ScanError::Group { .. } | ScanError::InvalidIdLength { .. }) => {}
            Err(e) => prop_assert!(false, "prost accepted what scan rejected: {e}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(signal in signal(), buf in prop::collection::vec(any::<u8>(), 0..256)) {
        check_against_prost(signal, &buf)?;
    }

    #[test]
    fn flipped_bytes_never_panic(
        (signal, mut buf) in encoded(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        if !buf.is_empty() {
            for (at, x) in flips {
                let i = at.index(buf.len());
                buf[i] ^= x;
            }
        }
        check_against_prost(signal, &buf)?;
    }

    #[test]
    fn truncated_encodings_never_panic((signal, buf) in encoded(), cut in any::<prop::sample::Index>()) {
        let end = cut.index(buf.len() + 1);
        check_against_prost(signal, &buf[..end])?;
    }

    #[test]
    fn scanning_with_the_wrong_signal_never_panics((_, buf) in encoded(), signal in signal()) {
        check_against_prost(signal, &buf)?;
    }
}

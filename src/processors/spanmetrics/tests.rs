//! The aggregation and the emitted metrics, from generated spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, ResourceMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use prost::Message;

use super::*;
use crate::config::spanmetrics::{DEFAULT_BUCKETS_MS, SpanMetricsConfig};

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn engine(extra_yaml: &str) -> SpanMetrics {
    let c: SpanMetricsConfig =
        serde_saphyr::from_str(&format!("metrics_pipeline: red\n{extra_yaml}")).unwrap();
    SpanMetrics::new(&c)
}

fn str_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn span(name: &str, kind: SpanKind, code: StatusCode, nanos: u64) -> Span {
    Span {
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + nanos,
        status: Some(Status {
            code: code as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn server(nanos: u64) -> Span {
    span("GET /", SpanKind::Server, StatusCode::Unset, nanos)
}

fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn request(parts: Vec<ResourceSpans>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: parts,
    }
    .encode_to_vec()
}

fn service(name: &str, spans: Vec<Span>) -> ResourceSpans {
    resource_spans(vec![str_kv("service.name", name)], spans)
}

fn key(service: &str, name: &str, kind: &str, code: &str, more: &[KeyValue]) -> SeriesKey {
    let mut attrs = vec![
        str_kv("service.name", service),
        str_kv("span.name", name),
        str_kv("span.kind", kind),
        str_kv("status.code", code),
    ];
    attrs.extend_from_slice(more);
    SeriesKey::new(attrs)
}

fn get_str<'a>(k: &'a SeriesKey, name: &str) -> Option<&'a str> {
    match k.get(name)?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[test]
fn calls_and_buckets_of_generated_spans_are_exact() {
    let m = engine("");
    assert_eq!(m.bounds(), DEFAULT_BUCKETS_MS.len());
    let mut spans = Vec::new();
    let mut want = vec![0u64; DEFAULT_BUCKETS_MS.len() + 1];
    let mut want_sum = 0.0;
    for (i, bound) in DEFAULT_BUCKETS_MS.iter().enumerate() {
        // On the bound: its bucket (upper bounds are inclusive); a
        // nanosecond above: the next one.
        spans.push(server(bound * MS));
        want[i] += 1;
        spans.push(server(bound * MS + 1));
        want[i + 1] += 1;
        want_sum += 2.0 * *bound as f64 + 1e-6;
    }
    spans.push(server(0));
    let mut backwards = server(0);
    backwards.end_time_unix_nano = T0 - 5 * MS;
    spans.push(backwards);
    want[0] += 2;
    spans.push(server(20_000 * MS));
    want[DEFAULT_BUCKETS_MS.len()] += 1;
    want_sum += 20_000.0;

    let d = m.deltas(&request(vec![service("cart", spans)])).unwrap();
    assert_eq!(d.len(), 1);
    let a = d
        .get(&key(
            "cart",
            "GET /",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_UNSET",
            &[],
        ))
        .unwrap();
    assert_eq!(a.calls, 35);
    assert_eq!(a.bucket_counts, want);
    assert!((a.sum - want_sum).abs() < 1e-6, "{} != {want_sum}", a.sum);
}

#[test]
fn spans_count_in_the_series_of_their_name_kind_and_status() {
    let m = engine("histogram: { explicit: { buckets: [10ms, 100ms] } }\n");
    let kinds = [SpanKind::Server, SpanKind::Client];
    let codes = [StatusCode::Unset, StatusCode::Ok, StatusCode::Error];
    let mut spans = Vec::new();
    for i in 0..60u64 {
        let kind = kinds[(i % 2) as usize];
        let code = codes[(i % 3) as usize];
        spans.push(span("op", kind, code, (i % 3) * 50 * MS));
    }
    spans.push(span("odd", SpanKind::Server, StatusCode::Ok, MS));
    spans.last_mut().unwrap().kind = 99;
    let d = m.deltas(&request(vec![service("cart", spans)])).unwrap();
    assert_eq!(d.len(), 7);
    // i % 6 picks one (kind, code) pair: 10 spans each, all of one duration.
    let error_client = d
        .get(&key(
            "cart",
            "op",
            "SPAN_KIND_CLIENT",
            "STATUS_CODE_ERROR",
            &[],
        ))
        .unwrap();
    assert_eq!(error_client.calls, 10);
    assert_eq!(
        error_client.bucket_counts,
        vec![0, 10, 0],
        "100ms: on a bound"
    );
    assert_eq!(error_client.sum, 1000.0);
    let ok_server = d
        .get(&key(
            "cart",
            "op",
            "SPAN_KIND_SERVER",
            "STATUS_CODE_OK",
            &[],
        ))
        .unwrap();
    assert_eq!(ok_server.bucket_counts, vec![0, 10, 0]);
    assert!(
        d.get(&key("cart", "odd", "", "STATUS_CODE_OK", &[]))
            .is_some(),
        "an unknown kind is empty, as the Collector's"
    );
    let total: u64 = d.iter().map(|(_, a)| a.calls).sum();
    assert_eq!(total, 61);
}

#[test]
fn dimensions_come_from_the_span_then_the_resource_then_the_default() {
    let m = engine(
        "dimensions:\n  - { name: http.method, default: GET }\n  - { name: region }\n  - { name: tier, default: gold }\n  - { name: absent }\n",
    );
    let mut with_attrs = server(MS);
    with_attrs.attributes = vec![str_kv("http.method", "POST"), str_kv("region", "us")];
    let resource = vec![str_kv("service.name", "cart"), str_kv("region", "eu")];
    let d = m
        .deltas(&request(vec![resource_spans(
            resource,
            vec![with_attrs, server(MS)],
        )]))
        .unwrap();
    let keys: Vec<&SeriesKey> = d.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 2);
    let posted = keys
        .iter()
        .find(|k| get_str(k, "http.method") == Some("POST"))
        .unwrap();
    assert_eq!(get_str(posted, "region"), Some("us"), "the span's first");
    assert_eq!(get_str(posted, "tier"), Some("gold"));
    let plain = keys
        .iter()
        .find(|k| get_str(k, "http.method") == Some("GET"))
        .unwrap();
    assert_eq!(get_str(plain, "region"), Some("eu"), "then the resource's");
    assert_eq!(get_str(plain, "tier"), Some("gold"), "then the default");
    for k in keys {
        assert!(k.get("absent").is_none(), "no default: left out");
        assert_eq!(k.attributes().len(), 7);
    }
}

#[test]
fn an_attribute_keeps_its_type_in_the_key() {
    let m = engine("dimensions: [{ name: http.status_code }]\n");
    let mut s = server(MS);
    s.attributes = vec![KeyValue {
        key: "http.status_code".to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(503)),
        }),
        ..Default::default()
    }];
    let d = m.deltas(&request(vec![service("cart", vec![s])])).unwrap();
    let (k, _) = d.iter().next().unwrap();
    assert_eq!(
        k.get("http.status_code").and_then(|v| v.value.clone()),
        Some(any_value::Value::IntValue(503))
    );
    assert_eq!(SeriesKey::decode(&k.encode()).unwrap(), *k);
}

#[test]
fn spans_without_a_service_name_are_not_counted() {
    let m = engine("");
    let d = m
        .deltas(&request(vec![resource_spans(
            vec![str_kv("host.name", "h")],
            vec![server(MS)],
        )]))
        .unwrap();
    assert!(d.is_empty());
    assert!(m.deltas(b"\xff\xff").is_err(), "not a request");
}

#[test]
fn merged_deltas_are_the_deltas_of_the_union() {
    let m = engine("dimensions: [{ name: region, default: none }]\n");
    let a = vec![
        service("cart", vec![server(3 * MS), server(70 * MS)]),
        service(
            "pay",
            vec![span("charge", SpanKind::Client, StatusCode::Error, 2 * MS)],
        ),
    ];
    let b = vec![
        service("cart", vec![server(3 * MS), server(9000 * MS)]),
        service("ship", vec![server(MS)]),
    ];
    let mut merged = m.deltas(&request(a.clone())).unwrap();
    merged.merge(m.deltas(&request(b.clone())).unwrap());
    let union = m.deltas(&request([a, b].concat())).unwrap();
    assert_eq!(merged, union);
    assert_eq!(union.len(), 3);
}

#[test]
fn the_overflow_series_is_a_series_like_any_other() {
    let m = engine("");
    let mut d = m
        .deltas(&request(vec![service("cart", vec![server(MS)])]))
        .unwrap();
    let one = d.iter().next().map(|(_, a)| a.clone()).unwrap();
    d.add(SeriesKey::overflow(), &one);
    d.add(SeriesKey::overflow(), &one);
    assert_eq!(d.get(&SeriesKey::overflow()).unwrap().calls, 2);
    assert_eq!(d.len(), 2);
}

fn points_of(rm: &ResourceMetrics) -> (&Metric, Option<&Metric>) {
    let metrics = &rm.scope_metrics[0].metrics;
    (&metrics[0], metrics.get(1))
}

fn service_of(rm: &ResourceMetrics) -> Option<String> {
    let attrs = &rm.resource.as_ref().unwrap().attributes;
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// Stores two requests' deltas the way the store will, then emits.
fn stored_series(m: &SpanMetrics) -> Vec<(SeriesKey, StoredAggregate)> {
    let first = m
        .deltas(&request(vec![
            service("cart", vec![server(3 * MS), server(3 * MS)]),
            service(
                "pay",
                vec![span("charge", SpanKind::Client, StatusCode::Error, 20 * MS)],
            ),
        ]))
        .unwrap();
    let second = m
        .deltas(&request(vec![service("cart", vec![server(700 * MS)])]))
        .unwrap();
    let mut store = std::collections::BTreeMap::<Vec<u8>, Vec<u8>>::new();
    for (at, d) in [(T0, first), (T0 + 10, second)] {
        for (k, a) in d {
            let v = merge_stored(store.get(k.as_bytes()).map(Vec::as_slice), &a, at);
            store.insert(k.encode(), v);
        }
    }
    let mut overflow = Aggregate::empty(m.bounds());
    overflow.merge(AggregateRef {
        calls: 1,
        bucket_counts: &[1, 0, 0],
        sum: 1.0,
    });
    store.insert(
        SeriesKey::overflow().encode(),
        merge_stored(None, &overflow, T0 + 20),
    );
    store
        .iter()
        .map(|(k, v)| (SeriesKey::decode(k).unwrap(), decode_stored(v).unwrap()))
        .collect()
}

#[test]
fn emit_sends_the_collectors_metrics_per_service() {
    let m = engine("histogram: { explicit: { buckets: [10ms, 500ms] } }\n");
    let now = T0 + 60_000 * MS;
    let req = m.emit(stored_series(&m), now, T0);
    let services: Vec<Option<String>> = req.resource_metrics.iter().map(service_of).collect();
    assert_eq!(services, [None, Some("cart".into()), Some("pay".into())]);

    let cart = &req.resource_metrics[1];
    assert_eq!(
        cart.scope_metrics[0].scope.as_ref().unwrap().name,
        "seedgate/spanmetrics"
    );
    let (calls, duration) = points_of(cart);
    assert_eq!(calls.name, "traces.span.metrics.calls");
    let Some(metric::Data::Sum(sum)) = &calls.data else {
        panic!("calls is a sum: {calls:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &sum.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(3)));
    assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (T0, now));
    let names: Vec<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        names,
        ["service.name", "span.kind", "span.name", "status.code"]
    );

    let duration = duration.unwrap();
    assert_eq!(duration.name, "traces.span.metrics.duration");
    assert_eq!(duration.unit, "ms");
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!("duration is a histogram: {duration:?}")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let hp = &h.data_points[0];
    assert_eq!(hp.explicit_bounds, [10.0, 500.0]);
    assert_eq!(hp.bucket_counts, [2, 0, 1]);
    assert_eq!(hp.count, 3);
    assert_eq!(hp.sum, Some(706.0));
    assert_eq!(hp.start_time_unix_nano, T0, "the first store's time");
    assert_eq!(hp.attributes, p.attributes);

    let (overflow_calls, _) = points_of(&req.resource_metrics[0]);
    let Some(metric::Data::Sum(sum)) = &overflow_calls.data else {
        panic!()
    };
    assert_eq!(
        sum.data_points[0].attributes,
        SeriesKey::overflow().attributes()
    );
}

#[test]
fn emit_in_delta_seconds_and_without_namespace() {
    let m = engine(
        "namespace: ''\naggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\nhistogram: { unit: s, explicit: { buckets: [10ms, 500ms] } }\n",
    );
    let now = T0 + 60_000 * MS;
    let req = m.emit(stored_series(&m), now, now - 15_000 * MS);
    let (calls, duration) = points_of(&req.resource_metrics[1]);
    assert_eq!(calls.name, "calls");
    let Some(metric::Data::Sum(sum)) = &calls.data else {
        panic!()
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(sum.data_points[0].start_time_unix_nano, now - 15_000 * MS);
    let duration = duration.unwrap();
    assert_eq!(
        (duration.name.as_str(), duration.unit.as_str()),
        ("duration", "s")
    );
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!()
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert_eq!(h.data_points[0].explicit_bounds, [0.01, 0.5]);
    assert_eq!(h.data_points[0].sum, Some(0.706));
    assert_eq!(h.data_points[0].start_time_unix_nano, now - 15_000 * MS);
}

#[test]
fn a_series_stored_with_other_buckets_sends_its_calls_only() {
    let m = engine("histogram: { explicit: { buckets: [10ms] } }\n");
    let stored = StoredAggregate {
        start_time_unix_nano: T0,
        totals: Aggregate {
            calls: 4,
            bucket_counts: vec![1, 1, 2],
            sum: 9.0,
        },
    };
    let k = key(
        "cart",
        "GET /",
        "SPAN_KIND_SERVER",
        "STATUS_CODE_UNSET",
        &[],
    );
    let req = m.emit([(k, stored)], T0 + 1, T0);
    let (calls, duration) = points_of(&req.resource_metrics[0]);
    assert!(matches!(calls.data, Some(metric::Data::Sum(_))));
    assert!(duration.is_none());
}

/// A length-delimited field `number` holding `payload`.
fn len_field(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::bytes::encode(number, &payload.to_vec(), &mut out);
    out
}

#[test]
fn attribute_values_read_from_the_bytes_are_what_prost_decodes() {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let dims: Vec<String> = names.iter().map(|n| format!("{{ name: {n} }}")).collect();
    let m = engine(&format!("dimensions: [{}]\n", dims.join(", ")));
    let value = |v| AnyValue { value: Some(v) };
    let mut s = server(MS);
    s.attributes = vec![
        str_kv("a", "x"),
        KeyValue {
            key: "b".to_owned(),
            value: Some(value(any_value::Value::BoolValue(true))),
            ..Default::default()
        },
        KeyValue {
            key: "c".to_owned(),
            value: Some(value(any_value::Value::IntValue(-3))),
            ..Default::default()
        },
        KeyValue {
            key: "d".to_owned(),
            value: Some(value(any_value::Value::DoubleValue(2.5))),
            ..Default::default()
        },
        KeyValue {
            key: "e".to_owned(),
            value: Some(value(any_value::Value::BytesValue(vec![0, 1]))),
            ..Default::default()
        },
        KeyValue {
            key: "f".to_owned(),
            value: Some(value(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value(any_value::Value::IntValue(1))],
            }))),
            ..Default::default()
        },
        KeyValue {
            key: "g".to_owned(),
            value: None,
            ..Default::default()
        },
    ];
    let mut span_bytes = s.encode_to_vec();
    // `h`: a oneof given twice (prost keeps the int); `i`: a value given in
    // two parts (prost merges them: the bool of the second).
    let mut two_members = len_field(1, b"x");
    two_members.extend_from_slice(&[3 << 3, 5]);
    let mut h = len_field(1, b"h");
    h.extend(len_field(2, &two_members));
    span_bytes.extend(len_field(9, &h));
    let mut i = len_field(1, b"i");
    i.extend(len_field(2, &len_field(1, b"y")));
    i.extend(len_field(2, &[2 << 3, 1]));
    span_bytes.extend(len_field(9, &i));
    let mut resource_spans = len_field(
        1,
        &Resource {
            attributes: vec![str_kv("service.name", "cart")],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    resource_spans.extend(len_field(2, &len_field(2, &span_bytes)));
    let bytes = len_field(1, &resource_spans);

    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.attributes.len(), 9);
    let want = key(
        "cart",
        "GET /",
        "SPAN_KIND_SERVER",
        "STATUS_CODE_UNSET",
        &span.attributes,
    );
    assert_eq!(
        want.get("h").and_then(|v| v.value.clone()),
        Some(any_value::Value::IntValue(5))
    );
    assert_eq!(
        want.get("i").and_then(|v| v.value.clone()),
        Some(any_value::Value::BoolValue(true))
    );
    let d = m.deltas(&bytes).unwrap();
    assert_eq!(d.iter().map(|(k, _)| k).collect::<Vec<_>>(), [&want]);
}

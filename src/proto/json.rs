//! OTLP/JSON: request bodies in and out, and JSON lines for the stdout
//! exporter.
//!
//! Why this exists: the HTTP receiver accepts `application/json` bodies and
//! the rest of seedgate only handles protobuf bytes, so JSON is converted to
//! protobuf once at the edge ([`request_from_json`]); the debug and stdout
//! paths go the other way ([`request_to_json`], [`records_to_json_lines`]).
//!
//! The mapping is the serde support of `opentelemetry-proto` (`with-serde`),
//! not a hand-written one. What it does, checked by the tests below:
//! - field names are lowerCamelCase, `traceId`/`spanId` are hex strings,
//!   64-bit integers (`timeUnixNano`, `intValue`, `asInt`) are written as
//!   strings and read from strings or numbers, enums (`kind`,
//!   `severityNumber`) are integers, `AnyValue.bytesValue` is base64;
//! - unknown fields are ignored, as OTLP/JSON receivers must.
//!
//! Known deviations from the OTLP/JSON spec (accepted, documented):
//! - enum values given by *name* (`"kind": "SPAN_KIND_SERVER"`) are
//!   rejected: the spec says receivers should accept them, but OTLP
//!   exporters send integers, which is what the spec requires of senders;
//! - a JSON `null` for a scalar field (`"schemaUrl": null`) is rejected,
//!   where proto3 JSON treats it as absent; `null` for a message field is
//!   accepted. Exporters do not send nulls.
//! - [`request_to_json`] omits nothing: default values are written out
//!   (e.g. `"droppedAttributesCount": 0`), which is valid but verbose.
//!
//! Invariant: every error message names the signal and, for JSON input, the
//! serde_json position (`line L column C`), so a 400 tells the client where.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{Metric, metric},
};
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::signal::Signal;

/// A body that is not valid OTLP/JSON (or, for the reverse direction, not
/// valid OTLP protobuf). The message says which and where.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    /// Human-readable: the signal, the direction and the parser's error with
    /// its position.
    pub message: String,
}

// === impl JsonError ===

impl JsonError {
    fn json(signal: Signal, e: &serde_json::Error) -> Self {
        JsonError {
            message: format!("invalid OTLP/JSON {signal} request: {e}"),
        }
    }

    fn protobuf(signal: Signal, e: &prost::DecodeError) -> Self {
        JsonError {
            message: format!("invalid OTLP protobuf {signal} request: {e}"),
        }
    }

    fn output(signal: Signal, e: &serde_json::Error) -> Self {
        JsonError {
            message: format!("cannot write {signal} as JSON: {e}"),
        }
    }
}

/// OTLP/JSON request body → protobuf request bytes.
///
/// # Errors
/// [`JsonError`] with serde_json's message (which has line and column) when
/// the body is not JSON or does not fit the request schema.
pub fn request_from_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, JsonError> {
    match signal {
        Signal::Logs => from_json::<ExportLogsServiceRequest>(signal, body),
        Signal::Metrics => from_json::<ExportMetricsServiceRequest>(signal, body),
        Signal::Traces => from_json::<ExportTraceServiceRequest>(signal, body),
    }
}

fn from_json<T: DeserializeOwned + Message>(
    signal: Signal,
    body: &[u8],
) -> Result<Vec<u8>, JsonError> {
    let request: T = serde_json::from_slice(body).map_err(|e| JsonError::json(signal, &e))?;
    Ok(request.encode_to_vec())
}

/// Protobuf request bytes → OTLP/JSON.
///
/// # Errors
/// [`JsonError`] when `body` is not a valid protobuf request of `signal`.
pub fn request_to_json(signal: Signal, body: &[u8]) -> Result<Vec<u8>, JsonError> {
    match signal {
        Signal::Logs => to_json::<ExportLogsServiceRequest>(signal, body),
        Signal::Metrics => to_json::<ExportMetricsServiceRequest>(signal, body),
        Signal::Traces => to_json::<ExportTraceServiceRequest>(signal, body),
    }
}

fn to_json<T: Serialize + Message + Default>(
    signal: Signal,
    body: &[u8],
) -> Result<Vec<u8>, JsonError> {
    let request = T::decode(body).map_err(|e| JsonError::protobuf(signal, &e))?;
    serde_json::to_vec(&request).map_err(|e| JsonError::output(signal, &e))
}

/// One JSON line per record (log record, span or metric data point),
/// appended to `out`; returns how many lines were written.
///
/// Each line is an object with `resource` (the resource attributes as a flat
/// `{"key": value}` map: strings, numbers, booleans, arrays, objects; bytes
/// as lowercase hex; the first of duplicate keys wins), `scope` (`name`,
/// `version`) and the record as OTLP/JSON under `logRecord` or `span`; for
/// metrics `metric` (`name`, `description`, `unit`, `type`) and `dataPoint`.
///
/// # Errors
/// [`JsonError`] when `body` is not a valid protobuf request of `signal`;
/// `out` is then unchanged.
pub fn records_to_json_lines(
    signal: Signal,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<u64, JsonError> {
    let start = out.len();
    let result = match signal {
        Signal::Logs => logs_lines(body, out),
        Signal::Metrics => metrics_lines(body, out),
        Signal::Traces => traces_lines(body, out),
    };
    result.map_err(|e| {
        // A half-written line is worse than none.
        out.truncate(start);
        match e {
            LinesError::Decode(e) => JsonError::protobuf(signal, &e),
            LinesError::Json(e) => JsonError::output(signal, &e),
        }
    })
}

enum LinesError {
    Decode(prost::DecodeError),
    Json(serde_json::Error),
}

/// The scope part of a line.
#[derive(Serialize)]
struct ScopeLine<'a> {
    name: &'a str,
    version: &'a str,
}

impl<'a> ScopeLine<'a> {
    fn of(scope: Option<&'a InstrumentationScope>) -> Self {
        ScopeLine {
            name: scope.map_or("", |s| s.name.as_str()),
            version: scope.map_or("", |s| s.version.as_str()),
        }
    }
}

/// The metric part of a metrics line (everything but its data points).
#[derive(Serialize)]
struct MetricLine<'a> {
    name: &'a str,
    description: &'a str,
    unit: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// One output line; exactly one of the record fields is set.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a, R: Serialize> {
    resource: &'a Map<String, Value>,
    scope: ScopeLine<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_record: Option<&'a R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<&'a R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metric: Option<MetricLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_point: Option<&'a R>,
}

fn write_line<R: Serialize>(line: &Line<'_, R>, out: &mut Vec<u8>) -> Result<(), LinesError> {
    serde_json::to_writer(&mut *out, line).map_err(LinesError::Json)?;
    out.push(b'\n');
    Ok(())
}

fn logs_lines(body: &[u8], out: &mut Vec<u8>) -> Result<u64, LinesError> {
    let request = ExportLogsServiceRequest::decode(body).map_err(LinesError::Decode)?;
    let mut n: u64 = 0;
    for rl in &request.resource_logs {
        let resource = flat_attributes(rl.resource.as_ref().map(|r| r.attributes.as_slice()));
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let line = Line {
                    resource: &resource,
                    scope: ScopeLine::of(sl.scope.as_ref()),
                    log_record: Some(record),
                    span: None,
                    metric: None,
                    data_point: None,
                };
                write_line(&line, out)?;
                n = n.saturating_add(1);
            }
        }
    }
    Ok(n)
}

fn traces_lines(body: &[u8], out: &mut Vec<u8>) -> Result<u64, LinesError> {
    let request = ExportTraceServiceRequest::decode(body).map_err(LinesError::Decode)?;
    let mut n: u64 = 0;
    for rs in &request.resource_spans {
        let resource = flat_attributes(rs.resource.as_ref().map(|r| r.attributes.as_slice()));
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let line = Line {
                    resource: &resource,
                    scope: ScopeLine::of(ss.scope.as_ref()),
                    log_record: None,
                    span: Some(span),
                    metric: None,
                    data_point: None,
                };
                write_line(&line, out)?;
                n = n.saturating_add(1);
            }
        }
    }
    Ok(n)
}

fn metrics_lines(body: &[u8], out: &mut Vec<u8>) -> Result<u64, LinesError> {
    let request = ExportMetricsServiceRequest::decode(body).map_err(LinesError::Decode)?;
    let mut n: u64 = 0;
    for rm in &request.resource_metrics {
        let resource = flat_attributes(rm.resource.as_ref().map(|r| r.attributes.as_slice()));
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let line = |kind| Line::<()> {
                    resource: &resource,
                    scope: ScopeLine::of(sm.scope.as_ref()),
                    log_record: None,
                    span: None,
                    metric: Some(metric_line(m, kind)),
                    data_point: None,
                };
                // One arm per data type: the point types differ.
                n = n.saturating_add(match &m.data {
                    None => 0,
                    Some(metric::Data::Gauge(g)) => points(line("gauge"), &g.data_points, out)?,
                    Some(metric::Data::Sum(s)) => points(line("sum"), &s.data_points, out)?,
                    Some(metric::Data::Histogram(h)) => {
                        points(line("histogram"), &h.data_points, out)?
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        points(line("exponential_histogram"), &h.data_points, out)?
                    }
                    Some(metric::Data::Summary(s)) => points(line("summary"), &s.data_points, out)?,
                });
            }
        }
    }
    Ok(n)
}

fn metric_line<'a>(m: &'a Metric, kind: &'static str) -> MetricLine<'a> {
    MetricLine {
        name: &m.name,
        description: &m.description,
        unit: &m.unit,
        kind,
    }
}

/// Writes one line per point, reusing the metric's line template.
fn points<P: Serialize>(
    template: Line<'_, ()>,
    points: &[P],
    out: &mut Vec<u8>,
) -> Result<u64, LinesError> {
    for point in points {
        let line = Line {
            resource: template.resource,
            scope: ScopeLine {
                name: template.scope.name,
                version: template.scope.version,
            },
            log_record: None,
            span: None,
            metric: template.metric.as_ref().map(|m| MetricLine {
                name: m.name,
                description: m.description,
                unit: m.unit,
                kind: m.kind,
            }),
            data_point: Some(point),
        };
        write_line(&line, out)?;
    }
    Ok(u64::try_from(points.len()).unwrap_or(u64::MAX))
}

/// Resource attributes as a flat JSON object; the first of duplicate keys wins.
fn flat_attributes(attributes: Option<&[KeyValue]>) -> Map<String, Value> {
    let mut map = Map::new();
    for kv in attributes.unwrap_or_default() {
        if !map.contains_key(&kv.key) {
            map.insert(kv.key.clone(), plain_value(kv.value.as_ref()));
        }
    }
    map
}

/// An `AnyValue` as plain JSON (not the OTLP `{"stringValue": ..}` wrapper).
pub(crate) fn plain_value(value: Option<&AnyValue>) -> Value {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        // NaN and infinities have no JSON number: `from` gives null.
        Some(V::DoubleValue(d)) => Value::from(*d),
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| plain_value(Some(v))).collect())
        }
        Some(V::KvlistValue(kvs)) => Value::Object(flat_attributes(Some(&kvs.values))),
        Some(V::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(V::StringValueStrindex(i)) => Value::from(*i),
    }
}

#[cfg(test)]
// Tests may panic: that is how they fail.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{metrics::v1::number_data_point, trace::v1::span};

    const LOGS: &str = r#"{
      "resourceLogs": [{
        "resource": {"attributes": [
          {"key": "k8s.namespace.name", "value": {"stringValue": "shoot--p--a"}},
          {"key": "replicas", "value": {"intValue": "3"}}
        ]},
        "scopeLogs": [{
          "scope": {"name": "fluent-bit", "version": "4.0"},
          "logRecords": [{
            "timeUnixNano": "1700000000000000000",
            "observedTimeUnixNano": "1700000000000000001",
            "severityNumber": 9,
            "severityText": "INFO",
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "body": {"stringValue": "hello"},
            "attributes": [{"key": "code", "value": {"intValue": 42}}],
            "someFutureField": {"nested": [1, 2]}
          }]
        }],
        "schemaUrl": "https://opentelemetry.io/schemas/1.24.0"
      }]
    }"#;

    const METRICS: &str = r#"{
      "resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeMetrics": [{
          "scope": {"name": "meter"},
          "metrics": [{
            "name": "requests",
            "unit": "1",
            "sum": {
              "aggregationTemporality": 2,
              "isMonotonic": true,
              "dataPoints": [
                {"asInt": "12345678901234", "timeUnixNano": "1700000000000000000",
                 "attributes": [{"key": "code", "value": {"stringValue": "200"}}]},
                {"asInt": "7", "timeUnixNano": "1700000000000000000"}
              ]
            }
          }, {
            "name": "temperature",
            "gauge": {"dataPoints": [{"asDouble": 21.5}]}
          }]
        }]
      }]
    }"#;

    const TRACES: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [{"key": "k8s.namespace.name", "value": {"stringValue": "garden"}}]},
        "scopeSpans": [{
          "scope": {"name": "tracer", "version": "1.2.3"},
          "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "name": "GET /",
            "kind": 2,
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
            "status": {"code": 2, "message": "boom"}
          }]
        }]
      }]
    }"#;

    #[test]
    fn logs_json_maps_to_the_expected_protobuf() {
        let bytes = request_from_json(Signal::Logs, LOGS.as_bytes()).unwrap();
        let req = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let rl = &req.resource_logs[0];
        let attrs = &rl.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs[0].key, "k8s.namespace.name");
        assert_eq!(
            attrs[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(3))
        );
        assert_eq!(rl.schema_url, "https://opentelemetry.io/schemas/1.24.0");
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "fluent-bit");
        let r = &sl.log_records[0];
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(r.severity_number, 9);
        assert_eq!(hex::encode(&r.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex::encode(&r.span_id), "eee19b7ec3c1b174");
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("hello".into()))
        );
        // intValue given as a JSON number is accepted too.
        assert_eq!(
            r.attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(42))
        );
    }

    #[test]
    fn metrics_json_keeps_int64_as_string_and_metric_types() {
        let bytes = request_from_json(Signal::Metrics, METRICS.as_bytes()).unwrap();
        let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("expected a sum, got {:?}", metrics[0].data);
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(12_345_678_901_234))
        );
        assert_eq!(sum.data_points.len(), 2);
        let Some(metric::Data::Gauge(g)) = &metrics[1].data else {
            panic!("expected a gauge");
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(21.5))
        );
        assert_eq!(crate::proto::count_records(Signal::Metrics, &bytes), Ok(3));
    }

    #[test]
    fn doubles_are_read_to_the_nearest_f64() {
        // serde_json's default float parser can be one unit in the last
        // place off for long mantissas (found by the json fuzz target);
        // with `float_roundtrip` the value is the correctly rounded one.
        for text in [
            "2.8888888888888886e100",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
        ] {
            let json = METRICS.replace("21.5", text);
            let bytes = request_from_json(Signal::Metrics, json.as_bytes()).unwrap();
            let req = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
            let Some(metric::Data::Gauge(g)) =
                &req.resource_metrics[0].scope_metrics[0].metrics[1].data
            else {
                panic!("expected a gauge");
            };
            let Some(number_data_point::Value::AsDouble(got)) = g.data_points[0].value else {
                panic!("expected a double");
            };
            assert_eq!(
                got.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
        }
    }

    #[test]
    fn traces_json_kind_and_status() {
        let bytes = request_from_json(Signal::Traces, TRACES.as_bytes()).unwrap();
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        let status = span.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "boom"));
        assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    }

    #[test]
    fn protobuf_to_json_and_back_is_identity() {
        for (signal, json) in [
            (Signal::Logs, LOGS),
            (Signal::Metrics, METRICS),
            (Signal::Traces, TRACES),
        ] {
            let bytes = request_from_json(signal, json.as_bytes()).unwrap();
            let again = request_to_json(signal, &bytes).unwrap();
            let back = request_from_json(signal, &again).unwrap();
            assert_eq!(back, bytes, "{signal}: {}", String::from_utf8_lossy(&again));
        }
    }

    #[test]
    fn json_output_uses_otlp_conventions() {
        let bytes = request_from_json(Signal::Logs, LOGS.as_bytes()).unwrap();
        let v: Value =
            serde_json::from_slice(&request_to_json(Signal::Logs, &bytes).unwrap()).unwrap();
        let r = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(r["traceId"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(r["timeUnixNano"], "1700000000000000000");
        assert_eq!(r["severityNumber"], 9);
        assert_eq!(r["body"], serde_json::json!({"stringValue": "hello"}));
        assert_eq!(
            r["attributes"][0]["value"],
            serde_json::json!({"intValue": "42"})
        );
    }

    #[test]
    fn errors_say_where() {
        let err =
            request_from_json(Signal::Logs, b"{\n  \"resourceLogs\": [\n    {,]\n}").unwrap_err();
        assert!(err.message.contains("OTLP/JSON logs"), "{err}");
        assert!(err.message.contains("line 3"), "{err}");
        let err = request_from_json(
            Signal::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("column"), "{err}");
        let err = request_to_json(Signal::Metrics, &[0x0a, 0x05, 1]).unwrap_err();
        assert!(err.message.contains("protobuf metrics"), "{err}");
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let json = r#"{"resourceSpans":[{"x":1,"resource":{"y":[],"attributes":[]},
          "scopeSpans":[{"z":{},"scope":{"w":true,"name":"s"},"spans":[{"v":null,"name":"n",
          "status":{"u":1},"events":[{"t":"e"}]}]}]}],"extra":"field"}"#;
        let bytes = request_from_json(Signal::Traces, json.as_bytes()).unwrap();
        assert_eq!(crate::proto::count_records(Signal::Traces, &bytes), Ok(1));
        let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m",
          "futureField":1,"sum":{"dataPoints":[{"asInt":"1","q":2}]}}]}]}]}"#;
        let bytes = request_from_json(Signal::Metrics, json.as_bytes()).unwrap();
        assert_eq!(crate::proto::count_records(Signal::Metrics, &bytes), Ok(1));
    }

    #[test]
    fn json_lines_one_per_record_with_flat_resource() {
        let mut out = Vec::new();
        let bytes = request_from_json(Signal::Metrics, METRICS.as_bytes()).unwrap();
        assert_eq!(
            records_to_json_lines(Signal::Metrics, &bytes, &mut out).unwrap(),
            3
        );
        let bytes = request_from_json(Signal::Logs, LOGS.as_bytes()).unwrap();
        assert_eq!(
            records_to_json_lines(Signal::Logs, &bytes, &mut out).unwrap(),
            1
        );
        let bytes = request_from_json(Signal::Traces, TRACES.as_bytes()).unwrap();
        assert_eq!(
            records_to_json_lines(Signal::Traces, &bytes, &mut out).unwrap(),
            1
        );
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0]["resource"],
            serde_json::json!({"service.name": "api"})
        );
        assert_eq!(lines[0]["metric"]["name"], "requests");
        assert_eq!(lines[0]["metric"]["type"], "sum");
        assert_eq!(lines[0]["dataPoint"]["asInt"], "12345678901234");
        assert_eq!(lines[2]["metric"]["type"], "gauge");
        assert_eq!(
            lines[3]["resource"],
            serde_json::json!({"k8s.namespace.name": "shoot--p--a", "replicas": 3})
        );
        assert_eq!(
            lines[3]["scope"],
            serde_json::json!({"name": "fluent-bit", "version": "4.0"})
        );
        assert_eq!(lines[3]["logRecord"]["body"]["stringValue"], "hello");
        assert_eq!(lines[4]["span"]["name"], "GET /");
        assert_eq!(lines[4]["span"]["kind"], 2);
    }

    #[test]
    fn json_lines_leave_out_untouched_on_error() {
        let mut out = b"previous\n".to_vec();
        assert!(records_to_json_lines(Signal::Logs, &[0x0a, 0x09], &mut out).is_err());
        assert_eq!(out, b"previous\n");
    }

    /// Pins the deviations the module doc lists: if the crate starts
    /// accepting these, the doc must change.
    #[test]
    fn documented_deviations_still_hold() {
        let by_name =
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#;
        assert!(request_from_json(Signal::Traces, by_name.as_bytes()).is_err());
        let null_message = r#"{"resourceSpans":[{"resource":null}]}"#;
        let null_scalar = r#"{"resourceSpans":[{"schemaUrl":null}]}"#;
        assert!(request_from_json(Signal::Traces, null_message.as_bytes()).is_ok());
        assert!(request_from_json(Signal::Traces, null_scalar.as_bytes()).is_err());
    }
}

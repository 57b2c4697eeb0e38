//! Hand-made traces: sequence-numbered spans (`seedgate.seq`, which the
//! tracking sink counts) of chosen traces, statuses, durations and
//! attributes, and a way to post them.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

pub fn text(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

/// One span of trace `trace`, numbered `seq` (the sink counts `seedgate.seq`).
#[derive(Clone)]
pub struct SpanSpec {
    pub trace: u64,
    pub seq: u64,
    pub error: bool,
    pub duration_ms: u64,
    pub attrs: Vec<KeyValue>,
}

impl SpanSpec {
    pub fn new(trace: u64, seq: u64) -> Self {
        Self {
            trace,
            seq,
            error: false,
            duration_ms: 10,
            attrs: Vec::new(),
        }
    }

    pub fn span(&self) -> Span {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&self.trace.to_be_bytes());
        trace_id[15] = 1;
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&(self.seq + 1).to_be_bytes());
        let start = 1_700_000_000_000_000_000u64 + self.seq;
        let mut attributes = vec![kv(
            "seedgate.seq",
            any_value::Value::IntValue(i64::try_from(self.seq).unwrap()),
        )];
        attributes.extend(self.attrs.iter().cloned());
        Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            name: "op".to_owned(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + self.duration_ms * 1_000_000,
            attributes,
            status: self.error.then(|| Status {
                code: status::StatusCode::Error as i32,
                ..Status::default()
            }),
            ..Span::default()
        }
    }
}

/// A traces request of `spans` from service `service` (with `resource`
/// attributes added).
pub fn request(service: &str, resource: &[KeyValue], spans: &[SpanSpec]) -> Vec<u8> {
    let mut attributes = vec![kv("service.name", text(service))];
    attributes.extend(resource.iter().cloned());
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: spans.iter().map(SpanSpec::span).collect(),
                ..ScopeSpans::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

pub async fn post(client: &reqwest::Client, endpoint: &str, body: Vec<u8>) -> bool {
    client
        .post(format!("{endpoint}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .timeout(Duration::from_secs(2))
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

//! OTLP logs → the records Fluent Bit's HTTP output sends, and back.
//!
//! Why this exists: Kyma's log pipelines with an `http` output send what
//! Fluent Bit's `out_http` sends (`format json`: a JSON array of records;
//! `json_lines`: one record per line; `json_stream`: records back to back),
//! and their backends parse exactly that. seedgate receives OTLP; the
//! `fluent_bit_http` exporter renders each stored batch with [`render`].
//!
//! One OTLP log record becomes one flat Fluent Bit record, in this order
//! (an earlier key wins over a later one of the same name):
//!
//! | key | from |
//! |---|---|
//! | `date` (`date_key`) | `timeUnixNano`, else `observedTimeUnixNano`, in seconds as a double (`json_date_format double`) |
//! | `log` | the body: a string as is, any other value as JSON; absent without a body |
//! | `level` | `severityText`, when set |
//! | `trace_id`, `span_id` | lowercase hex, when set |
//! | `kubernetes` | the resource's `k8s.*` attributes as Fluent Bit's kubernetes filter names them: `namespace_name`, `pod_name`, `pod_id`, `container_name`, `host` (node), `docker_id` (`container.id`), `container_image`, `labels` (`k8s.pod.label.<key>`, unless `drop_labels`), `annotations` (`k8s.pod.annotation.<key>`, with `keep_annotations`); `dedot` replaces the dots in label and annotation keys with `_` |
//! | every record attribute | its key, its value as plain JSON |
//! | every other resource attribute | its key, its value as plain JSON |
//!
//! [`to_otlp`] is the reverse for the parts a sink needs (the `log`, the
//! namespace, the attributes): the `seedgate sink` uses it to count the
//! sequence numbers of what a Fluent Bit HTTP output delivered.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Map, Value};

use super::json::plain_value;
use crate::config::{FluentBitConfig, FluentBitFormat};

/// The keys of `kubernetes` that come from one resource attribute each.
const KUBERNETES_KEYS: [(&str, &str); 6] = [
    ("k8s.namespace.name", "namespace_name"),
    ("k8s.pod.name", "pod_name"),
    ("k8s.pod.uid", "pod_id"),
    ("k8s.container.name", "container_name"),
    ("k8s.node.name", "host"),
    ("container.id", "docker_id"),
];
const LABEL_PREFIX: &str = "k8s.pod.label.";
const ANNOTATION_PREFIX: &str = "k8s.pod.annotation.";
const IMAGE_NAME: &str = "container.image.name";
const IMAGE_TAG: &str = "container.image.tag";

/// Why a body could not be rendered or read.
#[derive(Debug, thiserror::Error)]
pub enum FluentBitError {
    /// The stored batch is not an `ExportLogsServiceRequest` (never expected:
    /// it was scanned before it was stored).
    #[error("invalid OTLP protobuf logs request: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// JSON could not be written or read.
    #[error("Fluent Bit JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON value that is not a record (an object).
    #[error("Fluent Bit JSON: record {index} is not an object")]
    NotARecord {
        /// 0-based position of the value in the body.
        index: usize,
    },
}

/// Renders one `ExportLogsServiceRequest` encoding as the body Fluent Bit's
/// HTTP output would send; returns how many records it holds.
///
/// # Errors
/// [`FluentBitError`] when `body` is not a logs request.
pub fn render(
    body: &[u8],
    config: &FluentBitConfig,
    out: &mut Vec<u8>,
) -> Result<u64, FluentBitError> {
    let request = ExportLogsServiceRequest::decode(body)?;
    let mut n: u64 = 0;
    if config.format == FluentBitFormat::Json {
        out.push(b'[');
    }
    for rl in &request.resource_logs {
        let attributes = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let resource = ResourceParts::of(attributes, config);
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                if n > 0 && config.format == FluentBitFormat::Json {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &record_of(record, &resource, config))?;
                if config.format == FluentBitFormat::JsonLines {
                    out.push(b'\n');
                }
                n = n.saturating_add(1);
            }
        }
    }
    if config.format == FluentBitFormat::Json {
        out.push(b']');
    }
    Ok(n)
}

/// What every record of one resource block shares.
struct ResourceParts {
    kubernetes: Map<String, Value>,
    rest: Vec<(String, Value)>,
}

impl ResourceParts {
    fn of(attributes: &[KeyValue], config: &FluentBitConfig) -> Self {
        let mut kubernetes = Map::new();
        let mut labels = Map::new();
        let mut annotations = Map::new();
        let mut image = (None, None);
        let mut rest = Vec::new();
        let dedot = |key: &str| {
            if config.dedot {
                key.replace('.', "_")
            } else {
                key.to_owned()
            }
        };
        for kv in attributes {
            let value = || plain_value(kv.value.as_ref());
            if let Some((_, name)) = KUBERNETES_KEYS.iter().find(|(k, _)| *k == kv.key) {
                kubernetes.entry(*name).or_insert_with(value);
            } else if let Some(label) = kv.key.strip_prefix(LABEL_PREFIX) {
                if !config.drop_labels {
                    labels.entry(dedot(label)).or_insert_with(value);
                }
            } else if let Some(annotation) = kv.key.strip_prefix(ANNOTATION_PREFIX) {
                if config.keep_annotations {
                    annotations.entry(dedot(annotation)).or_insert_with(value);
                }
            } else if kv.key == IMAGE_NAME {
                image.0.get_or_insert_with(|| text(kv.value.as_ref()));
            } else if kv.key == IMAGE_TAG {
                image.1.get_or_insert_with(|| text(kv.value.as_ref()));
            } else {
                rest.push((kv.key.clone(), value()));
            }
        }
        if let (Some(name), tag) = image {
            let image = match tag {
                Some(tag) if !tag.is_empty() => format!("{name}:{tag}"),
                _ => name,
            };
            kubernetes.insert("container_image".to_owned(), Value::String(image));
        }
        if !labels.is_empty() {
            kubernetes.insert("labels".to_owned(), Value::Object(labels));
        }
        if !annotations.is_empty() {
            kubernetes.insert("annotations".to_owned(), Value::Object(annotations));
        }
        ResourceParts { kubernetes, rest }
    }
}

/// A value as text: a string as is, anything else as JSON.
fn text(value: Option<&AnyValue>) -> String {
    match plain_value(value) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn record_of(record: &LogRecord, resource: &ResourceParts, config: &FluentBitConfig) -> Value {
    let mut map = Map::new();
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    // Fluent Bit's `double`: seconds with the fraction, whole seconds and
    // fraction converted apart so that a round time stays round; below a
    // microsecond a double loses precision, as Fluent Bit's own does.
    #[allow(clippy::cast_precision_loss)]
    let seconds = (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1e9;
    map.insert(config.date_key.clone(), Value::from(seconds));
    if let Some(body) = &record.body {
        map.insert("log".to_owned(), Value::String(text(Some(body))));
    }
    let mut put = |key: &str, value: Value| {
        if !map.contains_key(key) {
            map.insert(key.to_owned(), value);
        }
    };
    if !record.severity_text.is_empty() {
        put("level", Value::String(record.severity_text.clone()));
    }
    if !record.trace_id.is_empty() {
        put("trace_id", Value::String(hex::encode(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        put("span_id", Value::String(hex::encode(&record.span_id)));
    }
    if !resource.kubernetes.is_empty() {
        put("kubernetes", Value::Object(resource.kubernetes.clone()));
    }
    for kv in &record.attributes {
        put(&kv.key, plain_value(kv.value.as_ref()));
    }
    for (key, value) in &resource.rest {
        put(key, value.clone());
    }
    Value::Object(map)
}

/// Reads a Fluent Bit HTTP body (any of the three JSON formats) back into
/// an `ExportLogsServiceRequest`: one resource per record with
/// `k8s.namespace.name` from `kubernetes.namespace_name`, the `log` as the
/// body, integer and string keys other than `date`, `log` and `kubernetes`
/// as attributes. Enough for a sink to count sequence numbers by namespace.
///
/// # Errors
/// [`FluentBitError`] when the body is not JSON or holds a non-object.
pub fn to_otlp(body: &[u8]) -> Result<ExportLogsServiceRequest, FluentBitError> {
    let mut records = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        match value? {
            Value::Array(items) => records.extend(items),
            other => records.push(other),
        }
    }
    let mut request = ExportLogsServiceRequest::default();
    for (index, record) in records.into_iter().enumerate() {
        let Value::Object(map) = record else {
            return Err(FluentBitError::NotARecord { index });
        };
        let string = |s: &str| AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        };
        let mut resource = Resource::default();
        if let Some(ns) = map
            .get("kubernetes")
            .and_then(|k| k.get("namespace_name"))
            .and_then(Value::as_str)
        {
            resource.attributes.push(KeyValue {
                key: "k8s.namespace.name".to_owned(),
                value: Some(string(ns)),
                ..KeyValue::default()
            });
        }
        let mut log = LogRecord {
            body: map.get("log").and_then(Value::as_str).map(string),
            ..LogRecord::default()
        };
        for (key, value) in &map {
            let value = match value {
                Value::Number(n) if n.is_i64() => n.as_i64().map(any_value::Value::IntValue),
                Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
                _ => None,
            };
            if let Some(value) = value.filter(|_| key != "log") {
                log.attributes.push(KeyValue {
                    key: key.clone(),
                    value: Some(AnyValue { value: Some(value) }),
                    ..KeyValue::default()
                });
            }
        }
        request.resource_logs.push(ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                log_records: vec![log],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        });
    }
    Ok(request)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn request() -> Vec<u8> {
        let resource = Resource {
            attributes: vec![
                kv("k8s.namespace.name", s("shop")),
                kv("k8s.pod.name", s("cart-7d9")),
                kv("k8s.container.name", s("cart")),
                kv("k8s.node.name", s("node-1")),
                kv("k8s.pod.label.app.kubernetes.io/name", s("cart")),
                kv("k8s.pod.annotation.sidecar.istio.io/inject", s("false")),
                kv("container.image.name", s("ghcr.io/shop/cart")),
                kv("container.image.tag", s("1.2")),
                kv("service.name", s("cart")),
            ],
            ..Resource::default()
        };
        let record = |n: i64, body: Option<any_value::Value>| LogRecord {
            time_unix_nano: 1_700_000_000_250_000_000,
            severity_text: "INFO".to_owned(),
            body: body.map(|v| AnyValue { value: Some(v) }),
            attributes: vec![
                kv("seedgate.seq", any_value::Value::IntValue(n)),
                // A record attribute shadows a resource attribute.
                kv("service.name", s("cart-api")),
            ],
            trace_id: vec![0xab; 16],
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record(1, Some(s("GET /cart 200"))),
                        record(2, Some(any_value::Value::IntValue(7))),
                        record(3, None),
                    ],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec()
    }

    fn rendered(config: &FluentBitConfig) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(render(&request(), config, &mut out).unwrap(), 3);
        out
    }

    #[test]
    fn json_is_one_array_of_flat_records_with_kubernetes_metadata() {
        let out = rendered(&FluentBitConfig::default());
        let records: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(records.len(), 3);
        let first = &records[0];
        assert_eq!(first["date"], Value::from(1_700_000_000.25));
        assert_eq!(first["log"], "GET /cart 200");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["trace_id"], "ab".repeat(16));
        assert_eq!(first["seedgate.seq"], 1);
        assert_eq!(first["service.name"], "cart-api");
        let k = &first["kubernetes"];
        assert_eq!(k["namespace_name"], "shop");
        assert_eq!(k["pod_name"], "cart-7d9");
        assert_eq!(k["container_name"], "cart");
        assert_eq!(k["host"], "node-1");
        assert_eq!(k["container_image"], "ghcr.io/shop/cart:1.2");
        assert_eq!(k["labels"]["app.kubernetes.io/name"], "cart");
        assert!(
            k.get("annotations").is_none(),
            "annotations are dropped by default"
        );
        assert_eq!(records[1]["log"], "7");
        assert!(records[2].get("log").is_none());
    }

    #[test]
    fn dedot_and_annotations_follow_the_settings() {
        let out = rendered(&FluentBitConfig {
            dedot: true,
            keep_annotations: true,
            drop_labels: false,
            ..FluentBitConfig::default()
        });
        let records: Vec<Value> = serde_json::from_slice(&out).unwrap();
        let k = &records[0]["kubernetes"];
        assert_eq!(k["labels"]["app_kubernetes_io/name"], "cart");
        assert_eq!(k["annotations"]["sidecar_istio_io/inject"], "false");
        let out = rendered(&FluentBitConfig {
            drop_labels: true,
            ..FluentBitConfig::default()
        });
        let records: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert!(records[0]["kubernetes"].get("labels").is_none());
    }

    #[test]
    fn json_lines_and_json_stream_frame_records_as_fluent_bit_does() {
        let lines = rendered(&FluentBitConfig {
            format: FluentBitFormat::JsonLines,
            ..FluentBitConfig::default()
        });
        let text = String::from_utf8(lines).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            assert!(
                serde_json::from_str::<Map<String, Value>>(line).is_ok(),
                "{line}"
            );
        }
        let stream = rendered(&FluentBitConfig {
            format: FluentBitFormat::JsonStream,
            date_key: "@timestamp".to_owned(),
            ..FluentBitConfig::default()
        });
        assert!(!stream.contains(&b'\n') && stream.starts_with(b"{\"@timestamp\""));
        let values: Vec<Value> = serde_json::Deserializer::from_slice(&stream)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn every_format_reads_back_with_namespace_and_seqs() {
        for format in FluentBitFormat::ALL {
            let body = rendered(&FluentBitConfig {
                format,
                ..FluentBitConfig::default()
            });
            let back = to_otlp(&body).unwrap();
            let mut seen = Vec::new();
            crate::tools::records::ExportRequest::Logs(back)
                .for_each_record(|ns, seq| seen.push((ns.map(str::to_owned), seq)));
            let want: Vec<_> = (1..=3)
                .map(|n| (Some("shop".to_owned()), Some(n)))
                .collect();
            assert_eq!(seen, want, "{}", format.as_str());
        }
    }

    #[test]
    fn an_empty_batch_is_an_empty_array_and_garbage_is_an_error() {
        let mut out = Vec::new();
        let empty = ExportLogsServiceRequest::default().encode_to_vec();
        assert_eq!(
            render(&empty, &FluentBitConfig::default(), &mut out).unwrap(),
            0
        );
        assert_eq!(out, b"[]");
        assert!(render(b"\xff\xff", &FluentBitConfig::default(), &mut Vec::new()).is_err());
        assert!(matches!(
            to_otlp(b"[1]"),
            Err(FluentBitError::NotARecord { index: 0 })
        ));
    }
}

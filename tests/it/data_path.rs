//! End to end through a real seedgate process: every signal over every
//! transport and body format reaches the backends through every exporter
//! kind, decoded equal, and nothing acknowledged is missing.

use crate::support::capture::Capture;
use crate::support::config::{Pipeline, TestConfig, ms};
use crate::support::{self, Seedgate, eventually};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use seedgate::config::{
    ActionKind, AttributeValue, Compression, ProcessorConfig, ResourceAction,
    ResourceProcessorConfig,
};
use seedgate::signal::Signal;
use seedgate::tools::records::{ExportRequest, RequestSpec, build_request};
use tonic::codec::CompressionEncoding;

/// The resources of a request, re-encoded one by one: two requests carry the
/// same data when these lists are equal.
fn resources(signal: Signal, body: &[u8]) -> Vec<Vec<u8>> {
    match signal {
        Signal::Logs => ExportLogsServiceRequest::decode(body)
            .unwrap()
            .resource_logs
            .iter()
            .map(Message::encode_to_vec)
            .collect(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(body)
            .unwrap()
            .resource_metrics
            .iter()
            .map(Message::encode_to_vec)
            .collect(),
        Signal::Traces => ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
            .iter()
            .map(Message::encode_to_vec)
            .collect(),
    }
}

/// Sends the same requests over gRPC, HTTP protobuf, HTTP JSON and HTTP
/// gzip for every signal; one pipeline per exporter kind forwards them; what
/// arrives at the HTTP backend decodes equal, resource by resource, to what
/// was sent, and the gRPC backend has every sequence number exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_over_every_transport_arrives_decoded_equal_through_every_exporter() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let http_backend = Capture::default();
    let http_addr = http_backend.start().await;
    let grpc_backend = support::sink().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(
            Pipeline::http("to-http", &format!("http://{http_addr}"))
                .compression(Compression::Gzip),
        )
        .pipeline(
            Pipeline::grpc("to-grpc", &grpc_backend.grpc_endpoint()).compression(Compression::Zstd),
        )
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let client = reqwest::Client::new();
    let namespaces: Vec<String> = (0..3).map(|i| format!("shoot--p--s{i}")).collect();

    let mut seq = 0u64;
    for signal in Signal::ALL {
        let mut sent: Vec<Vec<u8>> = Vec::new();
        for variant in ["grpc", "http-protobuf", "http-json", "http-gzip"] {
            let req = build_request(
                signal,
                &RequestSpec {
                    first_seq: seq,
                    records: 30,
                    namespaces: &namespaces,
                    record_size: 200,
                    time_unix_nano: 1_700_000_000_000_000_000,
                },
            );
            seq += 30;
            let body = req.encode_to_vec();
            sent.extend(resources(signal, &body));
            match variant {
                "grpc" => {
                    let channel = support::grpc_channel(sg.grpc_endpoint()).await;
                    support::grpc_export(channel, req.clone(), Some(CompressionEncoding::Gzip))
                        .await
                        .unwrap();
                }
                _ => {
                    let url = format!("{}{}", sg.http_endpoint(), signal.http_path());
                    let mut rb = client.post(url);
                    rb = match variant {
                        "http-json" => rb
                            .header("content-type", "application/json")
                            .body(req.to_json().unwrap()),
                        "http-gzip" => rb
                            .header("content-type", "application/x-protobuf")
                            .header("content-encoding", "gzip")
                            .body(support::gzip(&body)),
                        _ => rb
                            .header("content-type", "application/x-protobuf")
                            .body(body),
                    };
                    let resp = rb.send().await.unwrap();
                    assert_eq!(
                        resp.status(),
                        200,
                        "{signal} over {variant}: {}",
                        resp.text().await.unwrap()
                    );
                }
            }
        }
        let mut got = eventually("every resource at the HTTP backend", async || {
            let got: Vec<Vec<u8>> = http_backend
                .bodies(signal.http_path())
                .iter()
                .flat_map(|b| resources(signal, b))
                .collect();
            (got.len() >= sent.len()).then_some(got)
        })
        .await;
        got.sort();
        sent.sort();
        assert_eq!(
            got, sent,
            "{signal}: what the HTTP backend received differs from what was sent"
        );
    }

    let acked = seedgate::tools::acked::AckedSet::from_ranges([(0, seq - 1)]);
    eventually("every record at the gRPC backend", async || {
        (grpc_backend.verify(&acked).missing == 0).then_some(())
    })
    .await;
    let v = grpc_backend.verify(&acked);
    assert_eq!(v.duplicates, 0, "{v}");

    let metrics = sg.metrics().await;
    for signal in Signal::ALL {
        let n = support::metric_value(
            &metrics,
            "seedgate_exporter_sent_records_total",
            &[&format!("signal=\"{signal}\""), "destination=\"to-http\""],
        );
        assert_eq!(n, Some(120.0), "{signal}:\n{metrics}");
        let n = support::metric_value(
            &metrics,
            "seedgate_receiver_records_total",
            &[&format!("signal=\"{signal}\"")],
        );
        assert_eq!(n, Some(120.0), "{signal}:\n{metrics}");
    }
}

/// Records that no pipeline takes are answered as rejected in
/// `partial_success` (not silently dropped, not a failure), and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_no_pipeline_takes_are_rejected_in_partial_success() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(Pipeline::noop("logs-only").signals(&[Signal::Logs]))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let ns = vec!["shoot--p--a".to_owned()];
    let req = build_request(
        Signal::Traces,
        &RequestSpec {
            first_seq: 0,
            records: 7,
            namespaces: &ns,
            record_size: 100,
            time_unix_nano: 1,
        },
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/traces", sg.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let partial = body.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 7);
    assert!(
        partial.error_message.contains("no pipeline"),
        "{}",
        partial.error_message
    );
    let n = sg
        .metric(
            "seedgate_receiver_rejected_records_total",
            &["signal=\"traces\""],
        )
        .await;
    assert_eq!(n, Some(7.0));
}

/// Every resource block of a request, decoded by signal: the resource
/// (editable) and the block re-encoded without it (scope, records, schema).
fn blocks_of(signal: Signal, body: &[u8]) -> Vec<(Resource, Vec<u8>)> {
    fn split<B: Message + Clone>(
        blocks: &[B],
        resource: impl Fn(&mut B) -> &mut Option<Resource>,
    ) -> Vec<(Resource, Vec<u8>)> {
        blocks
            .iter()
            .map(|b| {
                let mut b = b.clone();
                let r = resource(&mut b).take().unwrap_or_default();
                (r, b.encode_to_vec())
            })
            .collect()
    }
    match signal {
        Signal::Logs => split(
            &ExportLogsServiceRequest::decode(body)
                .unwrap()
                .resource_logs,
            |b| &mut b.resource,
        ),
        Signal::Metrics => split(
            &ExportMetricsServiceRequest::decode(body)
                .unwrap()
                .resource_metrics,
            |b| &mut b.resource,
        ),
        Signal::Traces => split(
            &ExportTraceServiceRequest::decode(body)
                .unwrap()
                .resource_spans,
            |b| &mut b.resource,
        ),
    }
}

/// The request with every block's resource replaced by `attrs`.
fn with_resource(signal: Signal, req: &ExportRequest, attrs: &[(&str, &str)]) -> Vec<u8> {
    let resource = Resource {
        attributes: attrs.iter().map(|(k, v)| string_kv(k, v)).collect(),
        ..Resource::default()
    };
    let mut req = req.clone();
    match &mut req {
        ExportRequest::Logs(r) => {
            for b in &mut r.resource_logs {
                b.resource = Some(resource.clone());
            }
        }
        ExportRequest::Metrics(r) => {
            for b in &mut r.resource_metrics {
                b.resource = Some(resource.clone());
            }
        }
        ExportRequest::Traces(r) => {
            for b in &mut r.resource_spans {
                b.resource = Some(resource.clone());
            }
        }
    }
    assert_eq!(req.signal(), signal);
    req.encode_to_vec()
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::String(value.to_owned())
}

/// Resource processors through the binary, on every signal: one in
/// `receivers.processors` sets the routing key (the namespace, from the
/// `tenant` attribute) before routing, so the pipeline selecting that
/// namespace takes the data; the pipeline's own processor inserts (a value
/// from the environment), updates, upserts (an integer) and deletes; a
/// block of another tenant is not taken. What arrives is the sent request
/// with only the resource changed: scopes and records byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_processors_set_the_routing_key_and_change_nothing_but_resources() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let backend = Capture::default();
    let addr = backend.start().await;
    let stamped = ResourceProcessorConfig {
        attributes: vec![
            ResourceAction::new(
                "k8s.node.name",
                ActionKind::Insert,
                Some(text("${env:NODE_NAME}")),
            ),
            ResourceAction::new("env", ActionKind::Update, Some(text("prod"))),
            ResourceAction::new("team", ActionKind::Upsert, Some(AttributeValue::Int(7))),
            ResourceAction::new("secret", ActionKind::Delete, None),
            ResourceAction::new("absent", ActionKind::Update, Some(text("x"))),
        ],
    };
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(
            Pipeline::http("stamped", &format!("http://{addr}/stamped"))
                .compression(Compression::None)
                .include(&["shoot--p--tenant"])
                .with(|p| p.input.no_namespace = false)
                .processor(ProcessorConfig::Resource(stamped)),
        )
        .with(|c| {
            c.receivers.processors = vec![ProcessorConfig::Resource(ResourceProcessorConfig {
                attributes: vec![ResourceAction {
                    from_attribute: Some("tenant".to_owned()),
                    ..ResourceAction::new("k8s.namespace.name", ActionKind::Upsert, None)
                }],
            })];
        })
        .yaml();
    let config_path = dir.path().join("seedgate.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let sg = Seedgate::start_opts(dir.path(), &config_path, &[], &[("NODE_NAME", "node-7")]).await;
    let client = reqwest::Client::new();
    for (i, signal) in Signal::ALL.into_iter().enumerate() {
        let req = build_request(
            signal,
            &RequestSpec {
                first_seq: 100 * i as u64,
                records: 6,
                namespaces: &["x".to_owned()],
                record_size: 120,
                time_unix_nano: 1_700_000_000_000_000_000,
            },
        );
        let sent = |tenant: &str| {
            with_resource(
                signal,
                &req,
                &[("tenant", tenant), ("env", "dev"), ("secret", "s3cret")],
            )
        };
        for tenant in ["shoot--p--other", "shoot--p--tenant"] {
            let resp = client
                .post(format!("{}{}", sg.http_endpoint(), signal.http_path()))
                .header("content-type", "application/x-protobuf")
                .body(sent(tenant))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{signal}: {}", resp.status());
        }
        let path = format!("stamped{}", signal.http_path());
        let got = eventually(&format!("{signal} at the backend"), async || {
            let bodies = backend.bodies(&path);
            (!bodies.is_empty()).then_some(bodies)
        })
        .await;
        assert_eq!(got.len(), 1, "{signal}: one request");
        let got = blocks_of(signal, &got[0]);
        let want = blocks_of(signal, &sent("shoot--p--tenant"));
        assert_eq!(got.len(), 1, "{signal}: only the selected tenant's block");
        let (resource, rest) = &got[0];
        let attrs: Vec<(String, String)> = resource
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(n)) => format!("int {n}"),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        let want_attrs = [
            ("tenant", "shoot--p--tenant"),
            ("env", "prod"),
            ("k8s.namespace.name", "shoot--p--tenant"),
            ("k8s.node.name", "node-7"),
            ("team", "int 7"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(attrs, want_attrs, "{signal}");
        assert_eq!(rest, &want[0].1, "{signal}: scopes and records unchanged");
    }
}

//! End to end through a real seedgate process: every signal over every
//! transport and body format reaches the backends through every exporter
//! kind, decoded equal, and nothing acknowledged is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use seedgate::receivers::decompress::{Encoding, decompress};
use seedgate::signal::Signal;
use seedgate::tools::records::{ExportRequest, RequestSpec, build_request};
use seedgate::tools::sink::{self, SinkOptions};
use support::{Seedgate, config_yaml, eventually};

/// A backend that keeps every request body it was sent, per signal.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

/// A request path and its decompressed body.
type Captured = (String, Vec<u8>);

impl Capture {
    async fn start(&self) -> std::net::SocketAddr {
        let cap = self.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |path: axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: Bytes| {
                    let cap = cap.clone();
                    async move {
                        let mut body = body.to_vec();
                        if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                            body = decompress(Encoding::Gzip, &body, 64 << 20).unwrap();
                        }
                        cap.0.lock().unwrap().push((path.0, body));
                        (
                            [("content-type", "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    }
                },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    }

    fn bodies(&self, suffix: &str) -> Vec<Vec<u8>> {
        let suffix = suffix.trim_start_matches('/');
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, b)| b.clone())
            .collect()
    }
}

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
    let grpc_backend = sink::start(SinkOptions::default()).await.unwrap();
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "batch:\n  timeout: 10ms\npipelines:\n  - name: to-http\n    output:\n      type: otlp_http\n      endpoint: http://{http_addr}\n      compression: gzip\n  - name: to-grpc\n    output:\n      type: otlp_grpc\n      endpoint: {}\n      compression: zstd\n",
            grpc_backend.grpc_endpoint()
        ),
    );
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
                "grpc" => grpc_export(&sg.grpc_endpoint(), &req).await,
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
                            .body(gzip(&body)),
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

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn grpc_export(endpoint: &str, req: &ExportRequest) {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let gz = tonic::codec::CompressionEncoding::Gzip;
    match req.clone() {
        ExportRequest::Logs(r) => {
            LogsServiceClient::new(channel)
                .send_compressed(gz)
                .export(r)
                .await
                .unwrap();
        }
        ExportRequest::Metrics(r) => {
            MetricsServiceClient::new(channel)
                .send_compressed(gz)
                .export(r)
                .await
                .unwrap();
        }
        ExportRequest::Traces(r) => {
            TraceServiceClient::new(channel)
                .send_compressed(gz)
                .export(r)
                .await
                .unwrap();
        }
    }
}

/// Records that no pipeline takes are answered as rejected in
/// `partial_success` (not silently dropped, not a failure), and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_no_pipeline_takes_are_rejected_in_partial_success() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(
        &dir.path().join("data"),
        "pipelines:\n  - name: logs-only\n    signals: [logs]\n    output:\n      type: noop\n",
    );
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

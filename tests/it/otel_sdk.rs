//! Real, unmodified OTLP clients work against seedgate: the OpenTelemetry
//! Python SDK's own exporters (`OTLPLogExporter`, `OTLPMetricExporter`,
//! `OTLPSpanExporter`), over OTLP/gRPC and over OTLP/HTTP with protobuf bodies
//! (gzip and uncompressed), send logs, spans and metric data points through a
//! real seedgate process to a sink. Every export must report success, every
//! HTTP answer must be a protobuf `Export*ServiceResponse` without rejected
//! records, and the sink must receive exactly what was sent, under the
//! client's `k8s.namespace.name`.
//!
//! The client is `tests/otel_sdk_client.py`; its packages are pinned in
//! `tests/requirements.txt` (`scripts/test.sh` installs them). Without
//! `python3` or those packages the tests fail, they do not skip.

use crate::support::sdk::{self, INSTALL_HINT, METRIC_POINTS, require_sdk};
use crate::support::{self, Seedgate, eventually};
use seedgate::tools::sink::SinkStats;

/// Log records and spans each client sends.
const COUNT: u64 = 40;

/// The sink's counts for one client, in a form `assert_eq!` can print.
fn counts(stats: &SinkStats, namespace: &str) -> (u64, u64, u64, u64) {
    (
        stats.logs.records,
        stats.traces.records,
        stats.metrics.records,
        stats.namespaces.get(namespace).copied().unwrap_or(0),
    )
}

/// Sink ← seedgate ← the Python SDK over `protocol`; checks the client's
/// verdict and what reached the sink.
async fn sdk_round_trip(protocol: &str) {
    require_sdk().await;
    let (dir, backend) = support::with_backend().await;
    let sg = Seedgate::start_to(dir.path(), &backend).await;
    let endpoint = match protocol {
        "grpc" => sg.grpc_endpoint(),
        _ => sg.http_endpoint(),
    };
    let namespace = format!("sdk-{protocol}");

    let out = sdk::send(&endpoint, protocol, COUNT, &namespace).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python SDK client failed over {protocol} ({}); exit code 3 means: {INSTALL_HINT}\nstdout:\n{stdout}\nstderr:\n{stderr}\nseedgate log:\n{}",
        out.status,
        sg.log()
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("client summary is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    assert_eq!(
        summary["exported"],
        serde_json::json!({"logs": COUNT, "spans": COUNT, "metric_points": METRIC_POINTS}),
        "{summary}"
    );
    if protocol == "http" {
        let responses = summary["http_responses"].as_array().unwrap();
        assert!(
            responses.iter().all(|r| r["status"] == 200),
            "every OTLP/HTTP answer is 200: {summary}"
        );
        assert!(
            responses.iter().any(|r| r["request_encoding"] == "gzip"),
            "at least one gzip request: {summary}"
        );
    }

    let want = (COUNT, COUNT, METRIC_POINTS, 2 * COUNT + METRIC_POINTS);
    let stats = eventually("everything the SDK sent at the sink", async || {
        let stats = backend.stats();
        let got = counts(&stats, &namespace);
        (got.0 >= want.0 && got.1 >= want.1 && got.2 >= want.2 && got.3 >= want.3).then_some(stats)
    })
    .await;
    assert_eq!(
        counts(&stats, &namespace),
        want,
        "(logs, spans, metric points, records of {namespace}) at the sink: {stats:?}"
    );
    assert_eq!(
        stats.namespaces.len(),
        1,
        "only the client's namespace: {:?}",
        stats.namespaces
    );
    assert_eq!(
        (stats.requests_invalid, stats.requests_refused),
        (0, 0),
        "{stats:?}"
    );
    backend.shutdown().await;
}

/// The Python SDK's gRPC exporters (metrics gzip-compressed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc() {
    sdk_round_trip("grpc").await;
}

/// The Python SDK's HTTP/protobuf exporters (logs and traces gzip, metrics
/// uncompressed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http() {
    sdk_round_trip("http").await;
}

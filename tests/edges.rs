//! Bad input gets a clear error and harms nothing else; backpressure is
//! explicit; bad configuration names the file, line, field and reason;
//! export errors are retried or dropped as they should be, and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::io::Write;
use std::time::Duration;

use seedgate::tools::acked::read_acked_file;
use seedgate::tools::sink::{self, Fault, SinkOptions};
use support::{Seedgate, config_yaml, eventually};

/// Posts 10-record log requests until one is refused; returns the refusal
/// and the first sequence number not acknowledged.
async fn post_until_refused(c: &reqwest::Client, url: &str) -> (reqwest::Response, u64) {
    let mut seq = 0;
    loop {
        let r = support::post_logs(c, url, seq).await;
        if r.status() != 200 {
            return (r, seq);
        }
        seq += 10;
        assert!(seq < 1_000_000, "never refused");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// seedgate with one `noop` pipeline and a request size limit on one receiver.
async fn noop_seedgate(dir: &std::path::Path, receiver: &str, max_request: &str) -> Seedgate {
    support::install_crypto();
    let listener = format!("  {receiver}:\n    listen: 127.0.0.1:0\n");
    let yaml = config_yaml(
        &dir.join("data"),
        "pipelines:\n  - name: null-out\n    output:\n      type: noop\n",
    )
    .replace(
        &listener,
        &format!("{listener}    max_request_bytes: {max_request}\n"),
    );
    Seedgate::start(dir, &yaml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_input_gets_a_clear_error_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sg = noop_seedgate(dir.path(), "http", "1MiB").await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let post =
        |ct: &'static str, body: Vec<u8>| c.post(&url).header("content-type", ct).body(body).send();

    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "malformed protobuf",
            post("application/x-protobuf", vec![0x0a, 0xff, 0xff, 0x01])
                .await
                .unwrap(),
            400,
            "malformed",
        ),
        (
            "malformed JSON",
            post("application/json", b"{\"resourceLogs\": [".to_vec())
                .await
                .unwrap(),
            400,
            "JSON",
        ),
        (
            "wrong content type",
            post("text/plain", b"hello".to_vec()).await.unwrap(),
            415,
            "Content-Type",
        ),
        (
            "body over the limit",
            post("application/x-protobuf", vec![0u8; 2 << 20])
                .await
                .unwrap(),
            413,
            "limit",
        ),
        (
            "gzip bomb",
            c.post(&url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "gzip")
                .body(gzip(&vec![0u8; 256 << 20]))
                .send()
                .await
                .unwrap(),
            413,
            "limit",
        ),
        (
            "unknown path",
            c.post(format!("{}/v1/profiles", sg.http_endpoint()))
                .body("x")
                .send()
                .await
                .unwrap(),
            404,
            "no such path",
        ),
        (
            "wrong method",
            c.get(&url).send().await.unwrap(),
            405,
            "POST",
        ),
    ];
    for (what, resp, status, needle) in cases {
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains(needle),
            "{what}: {text:?} should mention {needle:?}"
        );
    }
    // Meanwhile good requests are served.
    let ok = post("application/x-protobuf", support::log_request(0))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let metrics = sg.metrics().await;
    for reason in ["malformed", "unsupported_media_type", "too_large"] {
        let n = support::metric_value(
            &metrics,
            "seedgate_receiver_refused_requests_total",
            &[&format!("reason=\"{reason}\"")],
        );
        assert!(n.unwrap_or(0.0) >= 1.0, "{reason} is counted:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_input_gets_invalid_argument_and_oversize_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let sg = noop_seedgate(dir.path(), "grpc", "64KiB").await;
    let channel = tonic::transport::Endpoint::from_shared(sg.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let mut call = async |body: Vec<u8>| {
        grpc.ready().await.unwrap();
        grpc.unary(
            tonic::Request::new(bytes::Bytes::from(body)),
            path.clone(),
            seedgate::grpc_codec::RawCodec,
        )
        .await
    };
    let bad = call(vec![0x0a, 0xff, 0xff, 0x01]).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let big = call(vec![0u8; 128 << 10]).await.unwrap_err();
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&big).is_none(),
        "an oversized message is not retryable"
    );
    call(support::log_request(0)).await.unwrap();
}

/// A tiny queue with `block`: once full, requests are refused with 429 /
/// RESOURCE_EXHAUSTED and a retry delay, and nothing of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_blocks_with_retry_after_and_stores_nothing_of_the_refused_request() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "pipelines:\n  - name: small\n    queue:\n      max_bytes: 64KiB\n      when_full: block\n      retry_after: 7s\n    output:\n      type: otlp_grpc\n      endpoint: {}\n",
            backend.grpc_endpoint()
        ),
    );
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let (refused, seq) = post_until_refused(&c, &url).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "7");
    let before = sg
        .metric(
            "seedgate_batcher_queue_size_bytes",
            &["destination=\"small\""],
        )
        .await
        .unwrap();
    for _ in 0..5 {
        let r = support::post_logs(&c, &url, seq).await;
        assert_eq!(r.status(), 429);
    }
    let after = sg
        .metric(
            "seedgate_batcher_queue_size_bytes",
            &["destination=\"small\""],
        )
        .await
        .unwrap();
    assert_eq!(before, after, "refused requests store nothing");
    assert!(before <= 64.0 * 1024.0);

    // gRPC says RESOURCE_EXHAUSTED with RetryInfo (retryable per OTLP).
    let st = support::grpc_logs_export(sg.grpc_endpoint(), support::log_request(seq))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    let info = tonic_types::StatusExt::get_details_retry_info(&st).expect("RetryInfo");
    assert_eq!(info.retry_delay, Some(Duration::from_secs(7)));
    let n = sg
        .metric(
            "seedgate_receiver_refused_requests_total",
            &["reason=\"queue_full\""],
        )
        .await
        .unwrap();
    assert!(n >= 7.0);
}

/// `drop_newest`: the request is acknowledged elsewhere; the full
/// destination's part is dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_drops_only_the_full_destination_and_counts_it() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let down = sink::start(SinkOptions::default()).await.unwrap();
    down.go_down().await;
    let up = sink::start(SinkOptions::default()).await.unwrap();
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "batch:\n  timeout: 10ms\npipelines:\n  - name: lossy\n    queue:\n      max_bytes: 32KiB\n      when_full: drop_newest\n    output:\n      type: otlp_grpc\n      endpoint: {}\n  - name: healthy\n    output:\n      type: otlp_grpc\n      endpoint: {}\n",
            down.grpc_endpoint(),
            up.grpc_endpoint()
        ),
    );
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.http_endpoint(),
        &[
            "--protocol",
            "http",
            "--count",
            "3000",
            "--records-per-request",
            "50",
        ],
        Some(&acked_path),
    )
    .await;
    assert_eq!(
        summary.records_acked, 3000,
        "drop_newest never refuses: {summary:?}"
    );
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&up, &acked).await;
    let dropped = sg
        .metric(
            "seedgate_router_dropped_records_total",
            &["destination=\"lossy\"", "reason=\"queue_full\""],
        )
        .await
        .unwrap_or(0.0);
    let queued = sg
        .metric("seedgate_batcher_queue_records", &["destination=\"lossy\""])
        .await
        .unwrap_or(0.0);
    assert!(dropped > 0.0, "drops are counted");
    assert_eq!(
        dropped + queued,
        3000.0,
        "every record is either queued or counted as dropped"
    );
}

/// Permanent errors (HTTP 400) are dropped and counted, never retried
/// forever; transient ones (503) are retried until they succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_dropped_and_transient_ones_retried() {
    let (dir, backend) = support::with_backend().await;
    backend.set_fault(Fault {
        status: Some(400),
        ..Fault::default()
    });
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "batch:\n  timeout: 10ms\nretry:\n  initial_interval: 50ms\n  max_interval: 200ms\npipelines:\n  - name: b\n    output:\n      type: otlp_http\n      endpoint: {}\n",
            backend.http_endpoint()
        ),
    );
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let flags = ["--protocol", "grpc", "--count", "500"];
    let summary = support::load(sg.grpc_endpoint(), &flags, None).await;
    assert_eq!(summary.records_acked, 500);
    eventually("the permanent failure is counted as a drop", async || {
        (sg.metric(
            "seedgate_exporter_dropped_records_total",
            &["destination=\"b\"", "reason=\"permanent\""],
        )
        .await
            == Some(500.0))
        .then_some(())
    })
    .await;
    eventually("the queue is empty", async || {
        (sg.metric("seedgate_batcher_queue_records", &["destination=\"b\""])
            .await
            == Some(0.0))
        .then_some(())
    })
    .await;
    assert_eq!(
        sg.metric("seedgate_exporter_retries_total", &["destination=\"b\""])
            .await
            .unwrap_or(0.0),
        0.0,
        "a 400 is never retried"
    );

    backend.set_fault(Fault {
        status: Some(503),
        retry_after: Some(1),
        ..Fault::default()
    });
    let acked_path = dir.path().join("acked.txt");
    let flags = [
        "--protocol",
        "grpc",
        "--count",
        "500",
        "--seq-start",
        "1000",
    ];
    let summary = support::load(sg.grpc_endpoint(), &flags, Some(&acked_path)).await;
    assert_eq!(summary.records_acked, 500);
    eventually("retries happen", async || {
        (sg.metric("seedgate_exporter_retries_total", &["destination=\"b\""])
            .await
            .unwrap_or(0.0)
            >= 2.0)
            .then_some(())
    })
    .await;
    backend.set_fault(Fault::default());
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend, &acked).await;
}

#[test]
fn bad_config_exits_non_zero_naming_file_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "pipelines:\n  - name: x\n    output:\n      type: otlp_grpc\n      endpoint: not a uri\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:5: pipelines[0].output.endpoint",
            path.display()
        )),
        "{err}"
    );

    std::fs::write(&path, "storage:\n  durability: sometimes\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:2") && err.contains("sometimes"),
        "{err}"
    );

    std::fs::write(
        &path,
        "pipelines:\n  - name: out\n    output:\n      type: noop\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("durability: fsync") && effective.contains("name: out"),
        "{effective}"
    );
}

/// A full LMDB map is backpressure: 429 with Retry-After, counted, no
/// crash; once the backend drains it, requests are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_storage_is_backpressure_and_recovers() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "batch:\n  timeout: 10ms\nretry:\n  initial_interval: 50ms\n  max_interval: 200ms\npipelines:\n  - name: big\n    output:\n      type: otlp_grpc\n      endpoint: {}\n",
            backend.grpc_endpoint()
        ),
    )
    .replace("max_size: 256MiB", "max_size: 2MiB");
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let (refused, seq) = post_until_refused(&c, &url).await;
    assert_eq!(refused.status(), 429, "{}", refused.text().await.unwrap());
    assert!(
        sg.metric("seedgate_batcher_storage_full_refusals_total", &[])
            .await
            .unwrap()
            >= 1.0
    );
    assert!(
        sg.metric(
            "seedgate_receiver_refused_requests_total",
            &["reason=\"storage_full\""]
        )
        .await
        .unwrap()
            >= 1.0
    );
    assert!(sg.log().contains("full"), "a clear log line:\n{}", sg.log());
    let acked = seedgate::tools::acked::AckedSet::from_ranges([(0, seq - 1)]);
    backend.come_up().await.unwrap();
    eventually(
        "everything acknowledged before the refusal arrives",
        async || (backend.verify(&acked).missing == 0).then_some(()),
    )
    .await;
    eventually("accepted again", async || {
        let r = support::post_logs(&c, &url, seq).await;
        (r.status() == 200).then_some(())
    })
    .await;
}

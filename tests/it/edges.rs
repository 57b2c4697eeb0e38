//! Bad input gets a clear error and harms nothing else; backpressure is
//! explicit; bad configuration names the file, line, field and reason;
//! export errors are retried or dropped as they should be, and counted.

use std::time::Duration;

use crate::support::config::{Pipeline, TestConfig, ms, secs, size};
use crate::support::{self, Seedgate, eventually};
use seedgate::config::{QueueConfig, WhenFull};
use seedgate::tools::acked::read_acked_file;
use seedgate::tools::sink::Fault;

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

/// An OTLP/gRPC logs client that sends request bytes as they are.
struct RawLogs(tonic::client::Grpc<tonic::transport::Channel>);

impl RawLogs {
    async fn connect(endpoint: String) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        RawLogs(tonic::client::Grpc::new(channel))
    }

    async fn export(
        &mut self,
        body: Vec<u8>,
    ) -> Result<tonic::Response<bytes::Bytes>, tonic::Status> {
        self.0.ready().await.unwrap();
        self.0
            .unary(
                tonic::Request::new(bytes::Bytes::from(body)),
                http::uri::PathAndQuery::from_static(
                    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                ),
                seedgate::grpc_codec::RawCodec,
            )
            .await
    }
}

/// seedgate with one `noop` pipeline and a request size limit on one receiver.
async fn noop_seedgate(dir: &std::path::Path, receiver: &str, max_request: &str) -> Seedgate {
    support::install_crypto();
    let yaml = TestConfig::new(&dir.join("data"))
        .pipeline(Pipeline::noop("null-out"))
        .with(|c| {
            let listener = match receiver {
                "grpc" => &mut c.receivers.grpc,
                "http" => &mut c.receivers.http,
                other => panic!("no receiver {other}"),
            };
            listener.max_request_bytes = size(max_request);
        })
        .yaml();
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
                .body(support::gzip(&vec![0u8; 256 << 20]))
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
    let mut grpc = RawLogs::connect(sg.grpc_endpoint()).await;
    let bad = grpc.export(vec![0x0a, 0xff, 0xff, 0x01]).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    let big = grpc.export(vec![0u8; 128 << 10]).await.unwrap_err();
    assert_eq!(big.code(), tonic::Code::ResourceExhausted, "{big:?}");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&big).is_none(),
        "an oversized message is not retryable"
    );
    grpc.export(support::log_request(0)).await.unwrap();
}

/// A tiny queue with `block`: once full, requests are refused with 429 /
/// RESOURCE_EXHAUSTED and a retry delay, and nothing of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_blocks_with_retry_after_and_stores_nothing_of_the_refused_request() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(
            Pipeline::grpc("small", &backend.grpc_endpoint()).queue_config(QueueConfig {
                max_bytes: size("64KiB"),
                when_full: WhenFull::Block,
                retry_after: secs(7),
            }),
        )
        .yaml();
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
    let st = RawLogs::connect(sg.grpc_endpoint())
        .await
        .export(support::log_request(seq))
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
    let down = support::sink().await;
    down.go_down().await;
    let up = support::sink().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(
            Pipeline::grpc("lossy", &down.grpc_endpoint()).queue("32KiB", WhenFull::DropNewest),
        )
        .pipeline(Pipeline::grpc("healthy", &up.grpc_endpoint()))
        .yaml();
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
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .retry(ms(50), ms(200))
        .pipeline(Pipeline::http("b", &backend.http_endpoint()))
        .yaml();
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

    let out = support::check_config(&path, "storage:\n  durability: sometimes\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:2") && err.contains("sometimes"),
        "{err}"
    );

    let out = support::check_config(
        &path,
        "pipelines:\n  - name: out\n    output:\n      type: noop\n",
    );
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
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .retry(ms(50), ms(200))
        .pipeline(Pipeline::grpc("big", &backend.grpc_endpoint()))
        .storage_max_size("2MiB")
        .yaml();
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

// ------------------------------------------------ what backends would refuse

/// A length-delimited protobuf field.
fn pb_len(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 6);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A `ResourceLogs` block (no records) whose resource attribute `deep` nests
/// `depth` kvlists around an int, built on the wire: a prost value that
/// deep would overflow the stack when dropped.
fn deep_block(depth: usize) -> Vec<u8> {
    let mut value = vec![0x18, 0x01]; // AnyValue.int_value = 1
    for _ in 0..depth {
        let kv = [pb_len(1, b"k"), pb_len(2, &value)].concat();
        value = pb_len(6, &pb_len(1, &kv)); // AnyValue.kvlist_value.values
    }
    let attribute = [pb_len(1, b"deep"), pb_len(2, &value)].concat();
    pb_len(1, &pb_len(1, &pb_len(1, &attribute)))
}

/// [`support::log_request`]`(seq)` plus a block with a value `depth` deep:
/// stored whole or not at all.
fn deep_request(seq: u64, depth: usize) -> Vec<u8> {
    [support::log_request(seq), deep_block(depth)].concat()
}

/// The same as OTLP/JSON: one record `seq` and a resource attribute nesting
/// `depth` kvlists.
fn deep_json(seq: u64, depth: usize) -> String {
    let mut value = r#"{"intValue":"1"}"#.to_owned();
    for _ in 0..depth {
        value = format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{value}}}]}}}}"#);
    }
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"deep","value":{value}}}]}},"scopeLogs":[{{"logRecords":[{{"attributes":[{{"key":"seedgate.seq","value":{{"intValue":"{seq}"}}}}]}}]}}]}}]}}"#
    )
}

/// [`support::log_request`]`(seq)` with `edit` applied to its first record.
fn edited_request(
    seq: u64,
    edit: impl FnOnce(&mut opentelemetry_proto::tonic::logs::v1::LogRecord),
) -> Vec<u8> {
    use prost::Message;
    let mut req =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
            support::log_request(seq).as_slice(),
        )
        .unwrap();
    edit(&mut req.resource_logs[0].scope_logs[0].log_records[0]);
    req.encode_to_vec()
}

/// `bytes` with the first `from` replaced by `to` (same length: the framing
/// stays valid).
fn patched(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

/// A value nested 5,000 levels deep would make the backend's decoder
/// (prost, C++, Java: 100 message levels) refuse the whole batch it lands
/// in; seedgate refuses it at the edge, over HTTP, gRPC and JSON, names the
/// limit, counts it, stores nothing of it, and still takes a value at the
/// limit, which the sink decodes with prost. Strings that are not UTF-8 and
/// IDs of the wrong length are refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_backends_refuse_is_refused_at_the_edge_and_nothing_of_it_stored() {
    let (dir, backend) = support::with_backend().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(Pipeline::grpc("b", &backend.grpc_endpoint()))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let post =
        |ct: &'static str, body: Vec<u8>| c.post(&url).header("content-type", ct).body(body).send();
    let mut grpc = RawLogs::connect(sg.grpc_endpoint()).await;

    // Refused: seqs 0.. never stored.
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        ("5,000 levels deep", deep_request(0, 5000), "limit of 16"),
        ("17 levels deep", deep_request(10, 17), "limit of 16"),
        (
            "a log body that is not UTF-8",
            patched(
                edited_request(20, |r| {
                    r.body = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                "XXXX".to_owned(),
                            ),
                        ),
                    });
                }),
                b"XXXX",
                &[0xc3, 0x28, 0xa0, 0xa1],
            ),
            "not valid UTF-8",
        ),
        (
            "a 15-byte trace ID",
            edited_request(30, |r| r.trace_id = vec![7; 15]),
            "LogRecord.trace_id",
        ),
    ];
    for (what, body, needle) in &refused {
        let r = post("application/x-protobuf", body.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "HTTP: {what}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "HTTP: {what}: {text:?}");
        let st = grpc.export(body.clone()).await.unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "gRPC: {what}");
        assert!(st.message().contains(needle), "gRPC: {what}: {st:?}");
    }
    let r = post("application/json", deep_json(40, 17).into_bytes())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("limit of 16"), "JSON: {text:?}");

    // Accepted: a value at the limit, as protobuf and JSON, arrives whole
    // (the sink decodes every request with prost, and refuses what fails).
    let ok = post("application/x-protobuf", deep_request(100, 16))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    grpc.export(deep_request(110, 16)).await.unwrap();
    let ok = post("application/json", deep_json(120, 16).into_bytes())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    let acked = seedgate::tools::acked::AckedSet::from_ranges([(100, 120)]);
    support::all_delivered(&backend, &acked).await;
    let stats = backend.stats();
    assert_eq!(stats.requests_invalid, 0, "{stats:?}");
    assert_eq!(
        backend.seqs().keys().filter(|&&s| s < 100).count(),
        0,
        "nothing of a refused request is stored"
    );

    let metrics = sg.metrics().await;
    for (reason, at_least) in [
        ("value_too_deep", 5.0),
        ("invalid_utf8", 2.0),
        ("invalid_id_length", 2.0),
    ] {
        let n: f64 = ["http", "grpc"]
            .iter()
            .filter_map(|t| {
                support::metric_value(
                    &metrics,
                    "seedgate_receiver_refused_requests_total",
                    &[
                        &format!("reason=\"{reason}\""),
                        &format!("transport=\"{t}\""),
                    ],
                )
            })
            .sum();
        assert!(n >= at_least, "{reason}: {n}\n{metrics}");
    }
}

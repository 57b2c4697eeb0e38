//! End-to-end tests of the two tools against each other, in-process, over
//! real sockets on 127.0.0.1. They prove the harness itself: if these pass,
//! a missing seq in a seedgate test is seedgate's fault, not the harness's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::acked::read_acked_file;
use super::loadgen::{self, LoadgenArgs, Protocol, Summary};
use super::sink::{self, Fault, SinkHandle, SinkOptions, SinkStats};
use crate::signal::Signal;

fn args(protocol: Protocol, endpoint: String, signal: Signal) -> LoadgenArgs {
    LoadgenArgs {
        protocol,
        endpoint: Some(endpoint),
        signal,
        count: Some(1000),
        tenants: 3,
        concurrency: 4,
        quiet: true,
        ..LoadgenArgs::default()
    }
}

fn endpoint(sink: &SinkHandle, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => sink.grpc_endpoint(),
        Protocol::Http => sink.http_endpoint(),
    }
}

/// Waits until `cond` holds; the bound only turns a hang into a failure.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// Sends 1000 records and checks everything the harness promises about them.
async fn round_trip(protocol: Protocol, signal: Signal, json: bool, gzip: bool) {
    let label = format!("{protocol:?} {signal} json={json} gzip={gzip}");
    let sink = sink::start(SinkOptions::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let acked_path = dir.path().join("acked");
    let summary = loadgen::run(LoadgenArgs {
        json,
        gzip,
        seq_start: 5_000,
        acked_file: Some(acked_path.clone()),
        ..args(protocol, endpoint(&sink, protocol), signal)
    })
    .await
    .expect("loadgen");

    assert_eq!(summary.records_acked, 1000, "{label}: {summary:?}");
    assert_eq!(summary.requests_acked, 10, "{label}");
    assert_eq!(
        summary.requests_refused + summary.requests_failed,
        0,
        "{label}"
    );

    let acked = read_acked_file(&acked_path).expect("acked file");
    assert_eq!(acked.ranges(), &[(5_000, 5_999)], "{label}");
    let v = sink.verify(&acked);
    assert_eq!(
        (
            v.expected,
            v.received,
            v.missing,
            v.duplicates,
            v.unexpected
        ),
        (1000, 1000, 0, 0, 0),
        "{label}: {v}"
    );

    let stats = sink.stats();
    assert_eq!(stats.signal(signal).records, 1000, "{label}");
    assert_eq!(stats.signal(signal).requests, 10, "{label}");
    assert_eq!(stats.records_without_seq, 0, "{label}");
    let namespaces: Vec<&str> = stats.namespaces.keys().map(String::as_str).collect();
    assert_eq!(
        namespaces,
        [
            "shoot--loadgen--t0",
            "shoot--loadgen--t1",
            "shoot--loadgen--t2"
        ],
        "{label}"
    );
    assert_eq!(stats.namespaces, summary.acked_per_namespace, "{label}");
    let key = match protocol {
        Protocol::Grpc => sink.grpc_addr().to_string(),
        Protocol::Http => "/".to_owned(),
    };
    assert_eq!(
        stats.endpoints.keys().collect::<Vec<_>>(),
        [&key],
        "{label}"
    );
    assert_eq!(stats.endpoints[&key].records, 1000, "{label}");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_round_trip_all_signals_plain_and_gzip() {
    for signal in Signal::ALL {
        round_trip(Protocol::Grpc, signal, false, false).await;
        round_trip(Protocol::Grpc, signal, false, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_round_trip_all_signals_plain_and_gzip() {
    for signal in Signal::ALL {
        round_trip(Protocol::Http, signal, false, false).await;
        round_trip(Protocol::Http, signal, false, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_round_trip_all_signals_plain_and_gzip() {
    for signal in Signal::ALL {
        round_trip(Protocol::Http, signal, true, false).await;
        round_trip(Protocol::Http, signal, true, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_path_prefix_and_explicit_namespaces_are_keyed() {
    let sink = sink::start(SinkOptions::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let summary_path = dir.path().join("summary.json");
    let summary = loadgen::run(LoadgenArgs {
        // Not quiet: the progress and summary printing paths run too.
        quiet: false,
        summary_json: Some(summary_path.clone()),
        namespaces: vec!["shoot--a--x".into(), "shoot--b--y".into()],
        resources_per_request: Some(4),
        count: Some(250),
        records_per_request: 30,
        ..args(
            Protocol::Http,
            format!("{}/backend-a/", sink.http_endpoint()),
            Signal::Logs,
        )
    })
    .await
    .expect("loadgen");
    assert_eq!(summary.records_acked, 250);
    let written: Summary =
        serde_json::from_slice(&std::fs::read(&summary_path).expect("summary file"))
            .expect("summary JSON");
    // Floats are not compared: serde_json may round their last digit.
    assert_eq!(
        (
            written.records_acked,
            written.request_bytes,
            &written.acked_per_namespace
        ),
        (
            summary.records_acked,
            summary.request_bytes,
            &summary.acked_per_namespace
        )
    );
    let stats = sink.stats();
    let endpoint = &stats.endpoints["/backend-a"];
    assert_eq!(endpoint.records, 250);
    assert_eq!(endpoint.namespaces, summary.acked_per_namespace);
    assert_eq!(
        summary.acked_per_namespace,
        BTreeMap::from([
            ("shoot--a--x".to_owned(), 125),
            ("shoot--b--y".to_owned(), 125)
        ])
    );
    assert_eq!(
        stats.last_headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
}

/// Runs one loadgen against a sink that refuses about a third of requests and
/// checks that only accepted requests are acked and nothing acked is missing.
async fn error_rate_run(protocol: Protocol) -> (Summary, SinkStats) {
    let sink = sink::start(SinkOptions {
        fault: Fault {
            error_rate: 0.35,
            ..Fault::default()
        },
        ..SinkOptions::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let acked_path = dir.path().join("acked");
    let summary = loadgen::run(LoadgenArgs {
        count: Some(3000),
        records_per_request: 50,
        acked_file: Some(acked_path.clone()),
        ..args(protocol, endpoint(&sink, protocol), Signal::Traces)
    })
    .await
    .expect("loadgen");
    // 60 requests at 35%: all accepted has probability 0.65^60 ≈ 6e-12.
    assert!(summary.requests_refused > 0, "{protocol:?}: {summary:?}");
    assert_eq!(summary.requests_failed, 0, "{protocol:?}: {summary:?}");
    assert_eq!(summary.requests_acked + summary.requests_refused, 60);
    assert_eq!(summary.records_acked, summary.requests_acked * 50);

    let acked = read_acked_file(&acked_path).expect("acked file");
    assert_eq!(acked.len(), summary.records_acked, "{protocol:?}");
    let v = sink.verify(&acked);
    assert_eq!(v.missing, 0, "{protocol:?}: {v}");
    assert_eq!(
        v.unexpected, 0,
        "{protocol:?}: refused records must not count: {v}"
    );
    assert_eq!(v.received, summary.records_acked, "{protocol:?}: {v}");
    let stats = sink.stats();
    assert_eq!(stats.requests_refused, summary.requests_refused);
    (summary, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_fault_only_accepted_requests_are_acked() {
    error_rate_run(Protocol::Grpc).await;
    error_rate_run(Protocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_500_counts_as_error_not_refusal() {
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let sink = sink::start(SinkOptions {
            fault: Fault {
                status: Some(500),
                ..Fault::default()
            },
            ..SinkOptions::default()
        })
        .await
        .expect("sink");
        let summary = loadgen::run(LoadgenArgs {
            count: Some(300),
            ..args(protocol, endpoint(&sink, protocol), Signal::Metrics)
        })
        .await
        .expect("loadgen");
        assert_eq!(
            (
                summary.requests_failed,
                summary.requests_refused,
                summary.records_acked
            ),
            (3, 0, 0),
            "{protocol:?}"
        );
        assert_eq!(sink.stats().records(), 0);
    }
}

fn connect(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
    std::net::TcpStream::connect(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_down_refuses_connections_and_come_up_accepts_on_the_same_ports() {
    use tokio::io::AsyncReadExt as _;

    let sink = sink::start(SinkOptions::default()).await.expect("sink");
    let (grpc, http) = (sink.grpc_addr(), sink.http_addr());
    // An open connection that has been served once, so the sink owns it.
    let mut open = tokio::net::TcpStream::connect(http).await.expect("connect");
    {
        use tokio::io::AsyncWriteExt as _;
        open.write_all(b"GET /sink/stats HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        open.read_exact(&mut buf).await.expect("response");
        assert_eq!(&buf, b"HTTP/1.1 200");
    }

    sink.go_down().await;
    for addr in [grpc, http] {
        let err = connect(addr).expect_err("refused while down");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{addr}");
    }
    // The open connection was closed too: EOF or reset, never a hang.
    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest).await;
    assert!(
        closed.is_err() || !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "{closed:?}"
    );
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let summary = loadgen::run(LoadgenArgs {
            count: Some(200),
            ..args(protocol, endpoint(&sink, protocol), Signal::Logs)
        })
        .await
        .expect("loadgen");
        assert_eq!(
            (summary.records_acked, summary.requests_failed),
            (0, 2),
            "{protocol:?}"
        );
    }

    sink.come_up().await.expect("come up");
    assert_eq!((sink.grpc_addr(), sink.http_addr()), (grpc, http));
    connect(grpc).expect("gRPC port accepts again");
    connect(http).expect("HTTP port accepts again");
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let summary = loadgen::run(LoadgenArgs {
            count: Some(200),
            seq_start: if protocol == Protocol::Grpc { 0 } else { 1_000 },
            ..args(protocol, endpoint(&sink, protocol), Signal::Logs)
        })
        .await
        .expect("loadgen");
        assert_eq!(summary.records_acked, 200, "{protocol:?}: {summary:?}");
    }
    assert_eq!(sink.stats().distinct_seqs, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_for_at_start_refuses_then_accepts() {
    let sink = sink::start(SinkOptions {
        down_for: Some(Duration::from_millis(1500)),
        ..SinkOptions::default()
    })
    .await
    .expect("sink");
    let err = connect(sink.http_addr()).expect_err("down right after start");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    eventually("the sink comes up", async || {
        connect(sink.grpc_addr()).is_ok()
    })
    .await;
    eventually("the HTTP port too", async || {
        connect(sink.http_addr()).is_ok()
    })
    .await;
}

/// A sink that answers 429 + Retry-After until the test lifts the fault; a
/// retrying loadgen must end up with every record acked exactly once.
async fn retry_run(protocol: Protocol) {
    let sink = sink::start(SinkOptions {
        fault: Fault {
            status: Some(429),
            retry_after: Some(1),
            ..Fault::default()
        },
        ..SinkOptions::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let acked_path = dir.path().join("acked");
    let run = tokio::spawn(loadgen::run(LoadgenArgs {
        count: Some(500),
        retry_refused: true,
        acked_file: Some(acked_path.clone()),
        ..args(protocol, endpoint(&sink, protocol), Signal::Logs)
    }));
    eventually("a request is refused", async || {
        sink.stats().requests_refused > 0
    })
    .await;
    sink.set_fault(Fault::default());
    let summary = run.await.expect("join").expect("loadgen");

    assert_eq!(summary.records_acked, 500, "{protocol:?}: {summary:?}");
    assert!(
        summary.requests_refused > 0 && summary.retries > 0,
        "{summary:?}"
    );
    assert_eq!(summary.requests_failed, 0, "{protocol:?}: {summary:?}");
    let v = sink.verify(&read_acked_file(&acked_path).expect("acked"));
    assert_eq!(
        (v.expected, v.missing, v.duplicates, v.unexpected),
        (500, 0, 0, 0),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_refused_with_429_retry_after_eventually_acks_everything() {
    retry_run(Protocol::Grpc).await;
    retry_run(Protocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_fault_over_http() {
    super::install_crypto_provider();
    let sink = sink::start(SinkOptions::default()).await.expect("sink");
    loadgen::run(LoadgenArgs {
        count: Some(100),
        ..args(Protocol::Grpc, sink.grpc_endpoint(), Signal::Traces)
    })
    .await
    .expect("loadgen");
    let client = reqwest::Client::new();
    let base = sink.http_endpoint();
    let body = client
        .get(format!("{base}/sink/stats"))
        .send()
        .await
        .expect("GET stats")
        .bytes()
        .await
        .expect("body");
    let served: SinkStats = serde_json::from_slice(&body).expect("stats JSON");
    assert_eq!(served.traces.records, 100);
    // The stats request itself changes nothing that is counted.
    assert_eq!(served, sink.stats());
    assert!(
        served.last_headers.contains_key("te"),
        "{:?}",
        served.last_headers
    );

    let response = client
        .post(format!("{base}/sink/fault"))
        .body(r#"{"status": 429, "retry_after": 3, "latency": "5ms"}"#)
        .send()
        .await
        .expect("POST fault");
    assert!(response.status().is_success());
    assert_eq!(
        sink.fault(),
        Fault {
            error_rate: 0.0,
            status: Some(429),
            retry_after: Some(3),
            latency: Some(Duration::from_millis(5)),
            only_endpoints: Vec::new(),
            refuse_marker: None,
        }
    );
    let bad = client
        .post(format!("{base}/sink/fault"))
        .body(r#"{"nope": 1}"#)
        .send()
        .await
        .expect("POST bad fault");
    assert_eq!(bad.status(), 400);

    // down_for over HTTP takes both ports down and brings them back.
    client
        .post(format!("{base}/sink/fault"))
        .body(r#"{"down_for": "1500ms"}"#)
        .send()
        .await
        .expect("POST down_for");
    let http = sink.http_addr();
    eventually("the sink goes down", async || connect(http).is_err()).await;
    eventually("the sink comes back", async || connect(http).is_ok()).await;
    assert_eq!(sink.fault(), Fault::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_mode_counts_requests_and_bytes_only() {
    let sink = sink::start(SinkOptions {
        noop: true,
        ..SinkOptions::default()
    })
    .await
    .expect("sink");
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let summary = loadgen::run(LoadgenArgs {
            count: Some(500),
            ..args(protocol, endpoint(&sink, protocol), Signal::Logs)
        })
        .await
        .expect("loadgen");
        assert_eq!(summary.records_acked, 500);
    }
    let stats = sink.stats();
    assert_eq!((stats.logs.requests, stats.logs.records), (10, 0));
    assert!(stats.logs.bytes > 500 * 250, "{stats:?}");
    assert!(stats.namespaces.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_grpc_client_with_zstd_is_accepted() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

    use super::records::{ExportRequest, RequestSpec, build_request};

    let sink = sink::start(SinkOptions::default()).await.expect("sink");
    let ns = vec!["shoot--z--z".to_owned()];
    let ExportRequest::Logs(request) = build_request(
        Signal::Logs,
        &RequestSpec {
            first_seq: 7,
            records: 3,
            namespaces: &ns,
            record_size: 100,
            time_unix_nano: 1,
        },
    ) else {
        panic!("logs request")
    };
    let mut client = LogsServiceClient::connect(sink.grpc_endpoint())
        .await
        .expect("connect")
        .send_compressed(tonic::codec::CompressionEncoding::Zstd);
    let response = client.export(request).await.expect("export");
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(
        sink.seqs(),
        std::collections::HashMap::from([(7, 1), (8, 1), (9, 1)])
    );
    assert_eq!(sink.stats().namespaces["shoot--z--z"], 3);
}

#[test]
fn loadgen_args_parse_and_default() {
    let args = LoadgenArgs::from_flags([
        "--protocol",
        "http",
        "--signal",
        "metrics",
        "--count",
        "1000",
        "--namespaces",
        "a,b",
        "--duration",
        "10s",
    ])
    .expect("parse");
    assert_eq!(args.protocol, Protocol::Http);
    assert_eq!(args.signal, Signal::Metrics);
    assert_eq!(args.namespace_list(), ["a", "b"]);
    assert_eq!(args.duration, Some(Duration::from_secs(10)));
    assert_eq!(args.endpoint_or_default(), "http://127.0.0.1:4318");
    let d = LoadgenArgs::default();
    assert_eq!(
        (
            d.protocol,
            d.records_per_request,
            d.record_size,
            d.concurrency
        ),
        (Protocol::Grpc, 100, 300, 8)
    );
    assert_eq!(d.namespace_list(), ["shoot--loadgen--t0"]);
    assert_eq!(d.endpoint_or_default(), "http://127.0.0.1:4317");
    assert!(LoadgenArgs::from_flags(["--signal", "profiles"]).is_err());
}

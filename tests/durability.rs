//! Nothing acknowledged is ever lost: kill -9 under load, backend outage,
//! graceful shutdown. Every record carries a sequence number; the sink
//! counts what came out against what the load generator saw acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use seedgate::tools::acked::read_acked_file;
use seedgate::tools::loadgen::{self, LoadgenArgs};
use support::{Seedgate, config_yaml, config_yaml_ports, eventually, free_port};

fn pipeline_to(sink_grpc: &str) -> String {
    format!(
        "batch:\n  timeout: 20ms\nretry:\n  initial_interval: 50ms\n  max_interval: 500ms\npipelines:\n  - name: backend\n    output:\n      type: otlp_grpc\n      endpoint: {sink_grpc}\n      compression: none\n"
    )
}

/// loadgen at full speed → seedgate → sink; seedgate is killed with SIGKILL
/// three times mid-run and restarted on the same data directory. The sink
/// must have every sequence number that was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let (dir, backend) = support::with_backend().await;
    let (grpc, http) = (free_port(), free_port());
    let yaml = config_yaml_ports(
        &dir.path().join("data"),
        grpc,
        http,
        &pipeline_to(&backend.grpc_endpoint()),
    );
    std::fs::write(dir.path().join("seedgate.yaml"), &yaml).unwrap();
    let mut sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;

    let acked_path = dir.path().join("acked.txt");
    let mut args = LoadgenArgs::from_flags([
        "--protocol",
        "grpc",
        "--concurrency",
        "8",
        "--records-per-request",
        "100",
        "--tenants",
        "10",
    ])
    .unwrap();
    args.endpoint = Some(format!("http://127.0.0.1:{grpc}"));
    args.duration = Some(Duration::from_secs(12));
    args.acked_file = Some(acked_path.clone());
    args.timeout = Duration::from_secs(2);
    args.quiet = true;
    let load = tokio::spawn(loadgen::run(args));

    let mut kills = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sg.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;
    }
    let summary = load.await.unwrap().unwrap();
    assert_eq!(kills, 3);
    let acked = read_acked_file(&acked_path).unwrap();
    assert!(
        acked.len() > 10_000,
        "too little was acknowledged to prove anything: {summary:?}"
    );
    assert!(
        summary.requests_failed + summary.requests_refused > 0,
        "the kills should have failed some requests: {summary:?}"
    );
    support::all_delivered(&backend, &acked).await;
    let v = backend.verify(&acked);
    eprintln!("kill -9 x{kills}: acked {} records; sink: {v}", acked.len());
    assert_eq!(v.missing, 0, "{v}");
    drop(sg);
}

/// The backend refuses connections for a while: data is acknowledged and
/// queued; the queue metrics rise; when it returns everything arrives and
/// the queue drains to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_queues_then_delivers_everything() {
    let (dir, backend) = support::with_backend().await;
    let sg = Seedgate::start(
        dir.path(),
        &config_yaml(
            &dir.path().join("data"),
            &pipeline_to(&backend.grpc_endpoint()),
        ),
    )
    .await;
    backend.go_down().await;

    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.http_endpoint(),
        &["--protocol", "http", "--count", "20000", "--tenants", "5"],
        Some(&acked_path),
    )
    .await;
    assert_eq!(summary.records_acked, 20_000, "{summary:?}");

    let queued = sg
        .metric(
            "seedgate_batcher_queue_records",
            &["destination=\"backend\"", "signal=\"logs\""],
        )
        .await;
    assert_eq!(
        queued,
        Some(20_000.0),
        "all records queued while the backend is down"
    );
    let failed = sg
        .metric(
            "seedgate_exporter_failed_requests_total",
            &["destination=\"backend\""],
        )
        .await
        .unwrap_or(0.0);
    assert!(failed >= 1.0, "failed attempts are counted");
    assert_eq!(backend.stats().records(), 0);

    backend.come_up().await.unwrap();
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend, &acked).await;
    eventually("the queue drained", async || {
        (sg.metric(
            "seedgate_batcher_queue_records",
            &["destination=\"backend\""],
        )
        .await
            == Some(0.0))
        .then_some(())
    })
    .await;
    let retries = sg
        .metric(
            "seedgate_exporter_retries_total",
            &["destination=\"backend\""],
        )
        .await
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "retries are counted");
}

/// SIGTERM: stop accepting, drain, exit 0 within the deadline; what was
/// acknowledged and not yet delivered is delivered after the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_keeps_what_it_could_not_send() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let yaml = config_yaml(
        &dir.path().join("data"),
        &pipeline_to(&backend.grpc_endpoint()),
    )
    .replace("shutdown_timeout: 10s", "shutdown_timeout: 2s");
    let mut sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.grpc_endpoint(),
        &["--protocol", "grpc", "--count", "5000"],
        Some(&acked_path),
    )
    .await;
    assert_eq!(summary.records_acked, 5000);

    let started = std::time::Instant::now();
    let status = sg.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", sg.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        sg.log().contains("Shutdown deadline reached"),
        "{}",
        sg.log()
    );

    backend.come_up().await.unwrap();
    let _sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend, &acked).await;
}

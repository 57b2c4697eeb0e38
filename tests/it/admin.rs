//! What an operator and a newcomer see: the stdout exporter's JSON lines,
//! the probes, the CPU profile.

use crate::support::config::{Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, eventually};
use seedgate::config::{OutputConfig, OutputType};
use seedgate::signal::Signal;
use seedgate::tools::loadgen::{self, LoadgenArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_prints_one_json_line_per_record_and_probes_answer() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(Pipeline::new(
            "stdout",
            OutputConfig::of_kind(OutputType::Stdout),
        ))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    for signal in ["logs", "metrics", "traces"] {
        let mut args = LoadgenArgs::from_flags([
            "--protocol",
            "http",
            "--count",
            "20",
            "--records-per-request",
            "10",
            "--tenants",
            "2",
            "--signal",
            signal,
        ])
        .unwrap();
        args.endpoint = Some(sg.http_endpoint());
        args.seq_start = match signal {
            "logs" => 0,
            "metrics" => 100,
            _ => 200,
        };
        args.quiet = true;
        assert_eq!(loadgen::run(args).await.unwrap().records_acked, 20);
    }
    let lines = eventually("60 JSON lines on stdout", async || {
        let text = std::fs::read_to_string(&sg.stdout_path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        (lines.len() >= 60).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 60);
    let text = std::fs::read_to_string(&sg.stdout_path).unwrap();
    for seq in [0, 19, 100, 119, 200, 219] {
        assert!(
            text.contains(&format!("\"{seq}\"")) || text.contains(&format!(":{seq}")),
            "seq {seq} printed"
        );
    }
    assert!(
        text.contains("shoot--loadgen--t1"),
        "resource attributes are printed"
    );

    let c = reqwest::Client::new();
    let healthz = c.get(sg.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = c.get(sg.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let profile = c
        .get(sg.admin_url("/debug/pprof/profile?seconds=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);
    let body = profile.bytes().await.unwrap();
    assert!(body.len() > 16, "a pprof protobuf profile");
    assert_eq!(
        c.get(sg.admin_url("/nope")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_while_any_destination_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        support::tracking_sink().await,
        support::tracking_sink().await,
    );
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .retry(ms(100), ms(200))
        .pipeline(Pipeline::grpc("a", &a.grpc_endpoint()).signals(&[Signal::Logs]))
        .pipeline(Pipeline::grpc("b", &b.grpc_endpoint()).signals(&[Signal::Logs]))
        .with(|c| c.admin.unhealthy_after = secs(1))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let c = reqwest::Client::new();
    let readyz = async || {
        let r = c.get(sg.admin_url("/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let healthy = async |d: &str| {
        sg.metric(
            "seedgate_exporter_healthy",
            &[&format!("destination=\"{d}\"")],
        )
        .await
    };
    let send = async |seq: u64| {
        let r = support::post_logs(&c, &format!("{}/v1/logs", sg.http_endpoint()), seq).await;
        assert!(r.status().is_success());
    };
    send(0).await;
    assert_eq!(readyz().await.0, 200);

    // One backend down for longer than unhealthy_after: still ready.
    a.go_down().await;
    send(100).await;
    eventually("a unhealthy", async || {
        (healthy("a").await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(healthy("b").await, Some(1.0));
    assert_eq!(readyz().await.0, 200);

    // Both down: not ready, and the body says why.
    b.go_down().await;
    send(200).await;
    let (status, body) = eventually("not ready", async || {
        let r = readyz().await;
        (r.0 == 503).then_some(r)
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("no destination is healthy"), "{body}");

    // One comes back: ready again, and its queued data arrives.
    b.come_up().await.unwrap();
    eventually("ready again", async || {
        (readyz().await.0 == 200).then_some(())
    })
    .await;
    eventually("b's records", async || (b.seqs().len() == 30).then_some(())).await;
}

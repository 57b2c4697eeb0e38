//! Several replicas per seed (issue 17): three seedgate processes, each
//! with its own data directory and ports, behind a Service double that
//! hands new connections to ready replicas round robin (as kube-proxy
//! does), loadgen senders on the Service, one sink for all.
//!
//! - kill -9 of one replica under load: the senders (loadgen with
//!   sequence numbers, and the real OTel Python SDK) go on through the
//!   others, and what the dead one acknowledged is delivered once it is
//!   back on its volume;
//! - a rolling restart of all three (SIGTERM: unready first, still
//!   accepting for `shutdown_delay`, then drain): no acknowledged record is
//!   lost and no request is refused for good;
//! - scale-down 3 → 2 while the backend is down: the leaving replica's
//!   queue is handed over to the other two (`seedgate handoff`, killed with
//!   -9 half-way and run again) and reaches the backend through them;
//!   nothing is left on its volume;
//! - the same in Kubernetes terms, against the API server double: on
//!   SIGTERM a replica whose ordinal is at or above its StatefulSet's
//!   `replicas` hands its queues over to the ready endpoints of the
//!   headless Service by itself, while one below it keeps them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::config::{Pipeline, TestConfig, ms, policy, secs, tail_sampling};
use crate::support::service::{Endpoint, Service};
use crate::support::spans::{SpanSpec, kv, post, request, text};
use crate::support::{self, Seedgate};
use seedgate::config::{AffinityConfig, ResolverConfig};
use seedgate::signal::Signal;
use seedgate::tools::acked::read_acked_file;
use seedgate::tools::loadgen::{self, Summary};
use seedgate::tools::sink::SinkHandle;

/// One replica: its own directory (config, data) and fixed ports, so that
/// a restart comes back where the Service expects it.
struct Replica {
    dir: PathBuf,
    endpoint: Endpoint,
    /// Its OTLP/HTTP port.
    http: SocketAddr,
    sg: Option<Seedgate>,
    /// `run` flags and environment (`--kube` and the pod's identity).
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Replica {
    async fn start(root: &Path, i: usize, sink: &SinkHandle) -> Replica {
        Self::start_at(
            root,
            i,
            backend(sink),
            ([127, 0, 0, 1], support::stable_port()),
            Vec::new(),
            Vec::new(),
        )
        .await
    }

    /// A replica whose OTLP/gRPC port is `ip:grpc`, run with `args` and
    /// `env`.
    async fn start_at(
        root: &Path,
        i: usize,
        pipeline: Pipeline,
        (ip, grpc): ([u8; 4], u16),
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Replica {
        let dir = root.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = support::stable_port();
        let http = support::stable_port();
        let yaml = TestConfig::new(&dir.join("data"))
            .ports(grpc, http)
            .quick_batch_and_retry()
            .pipeline(pipeline)
            .with(|c| {
                c.receivers.grpc.listen = format!("{}:{grpc}", std::net::Ipv4Addr::from(ip));
                c.admin.listen = format!("127.0.0.1:{admin}");
                c.shutdown_delay = secs(1);
                c.shutdown_timeout = secs(3);
            })
            .yaml();
        std::fs::write(dir.join("seedgate.yaml"), yaml).unwrap();
        let mut r = Replica {
            dir,
            endpoint: Endpoint {
                otlp: SocketAddr::from((ip, grpc)),
                admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            },
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            sg: None,
            args,
            env,
        };
        r.restart().await;
        r
    }

    /// Starts it again on its directory (its volume).
    async fn restart(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.sg = Some(
            Seedgate::start_opts(&self.dir, &self.dir.join("seedgate.yaml"), &args, &env).await,
        );
    }

    fn kill9(&mut self) {
        self.sg.take().unwrap().kill9();
    }

    /// SIGTERM and wait for a clean exit.
    fn terminate(&mut self) {
        let mut sg = self.sg.take().unwrap();
        let status = tokio::task::block_in_place(|| sg.terminate());
        assert!(status.success(), "exit status {status}; log:\n{}", sg.log());
    }
}

/// The one pipeline of most tests: everything to `sink`.
fn backend(sink: &SinkHandle) -> Pipeline {
    Pipeline::backend(&sink.grpc_endpoint())
}

async fn three_replicas(root: &Path, sink: &SinkHandle) -> (Vec<Replica>, Service) {
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(Replica::start(root, i, sink).await);
    }
    let service = Service::start(replicas.iter().map(|r| r.endpoint.clone()).collect()).await;
    (replicas, service)
}

/// loadgen on the Service for `secs`, sequence numbers from `seq_start`.
fn sender(
    service: &Service,
    acked: &Path,
    secs: u64,
    seq_start: u64,
    retry: bool,
) -> tokio::task::JoinHandle<Summary> {
    let mut args = support::grpc_load_args(service.endpoint(), Duration::from_secs(secs), acked);
    args.seq_start = seq_start;
    args.retry_refused = retry;
    args.connections = Some(6);
    tokio::spawn(async move { loadgen::run(args).await.unwrap() })
}

/// Log records and spans per OTel SDK client run.
const SDK_COUNT: u64 = 40;

/// The Python OTel SDK client (gRPC) on `endpoint`, one run after another
/// (each a new process, so new connections the Service spreads), each
/// under its own namespace, until told to stop; the namespaces of the runs,
/// each of which must have reported every export a success.
fn sdk_senders(
    endpoint: String,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let runs = tokio::spawn(async move {
        let mut namespaces = Vec::new();
        while !*stopped.borrow_and_update() {
            let namespace = format!("sdk-{}", namespaces.len());
            let out = support::sdk::send(&endpoint, "grpc", SDK_COUNT, &namespace).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "the OTel SDK client {namespace} saw a failed export ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(
                summary["exported"],
                serde_json::json!({"logs": SDK_COUNT, "spans": SDK_COUNT, "metric_points": support::sdk::METRIC_POINTS}),
                "{namespace}: {summary}"
            );
            namespaces.push(namespace);
        }
        namespaces
    });
    (stop, runs)
}

/// Everything the SDK clients of `namespaces` exported is at the sink (at
/// least once: a batch in flight when a replica died may arrive twice).
async fn sdk_delivered(sink: &SinkHandle, namespaces: &[String]) {
    assert!(
        namespaces.len() >= 2,
        "the SDK clients ran too few times to cross the kill: {namespaces:?}"
    );
    let per_client = 2 * SDK_COUNT + support::sdk::METRIC_POINTS;
    support::eventually("every SDK client's records at the sink", async || {
        let stats = sink.stats();
        namespaces
            .iter()
            .all(|n| stats.namespaces.get(n).copied().unwrap_or(0) >= per_client)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_replica_under_load_loses_nothing_and_the_others_carry_on() {
    support::sdk::require_sdk().await;
    let (dir, sink) = support::with_backend().await;
    let (mut replicas, service) = three_replicas(dir.path(), &sink).await;

    // Real OTel SDK clients, one after another, on the Service the whole
    // time: before the kill, across it, and while replica 1 is down.
    let (stop_sdk, sdk_clients) = sdk_senders(service.endpoint());

    // Under load, replica 1 dies.
    let acked_before = dir.path().join("acked-before.txt");
    let load = sender(&service, &acked_before, 5, 0, false);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    replicas[1].kill9();
    let before = load.await.unwrap();

    // While it is down, new senders go through the other two only.
    let acked_down = dir.path().join("acked-down.txt");
    let down = sender(&service, &acked_down, 3, 1 << 40, false)
        .await
        .unwrap();
    assert!(
        down.records_acked > 5_000 && down.requests_failed == 0 && down.requests_refused == 0,
        "the two others took every request: {down:?}"
    );

    stop_sdk.send(true).unwrap();
    let sdk_namespaces = sdk_clients.await.unwrap();

    // Back on its volume, it delivers what it acknowledged before dying.
    replicas[1].restart().await;
    sdk_delivered(&sink, &sdk_namespaces).await;
    let mut total = 0;
    for path in [&acked_before, &acked_down] {
        let acked = read_acked_file(path).unwrap();
        total += acked.len();
        support::all_delivered(&sink, &acked).await;
    }
    assert!(
        total > 10_000,
        "too little acknowledged to prove anything: {before:?}"
    );
    let v = sink.verify(&read_acked_file(&acked_before).unwrap());
    eprintln!(
        "kill -9 of one of three replicas: {total} records acknowledged; sink: {v}; {} OTel SDK client runs, every export a success and at the sink",
        sdk_namespaces.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_replicas_under_load_loses_nothing_and_refuses_nothing() {
    support::sdk::require_sdk().await;
    let (dir, sink) = support::with_backend().await;
    let (mut replicas, service) = three_replicas(dir.path(), &sink).await;
    let acked_path = dir.path().join("acked.txt");
    let load = sender(&service, &acked_path, 16, 0, true);
    let (stop_sdk, sdk_clients) = sdk_senders(service.endpoint());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for r in &mut replicas {
        r.terminate();
        r.restart().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop_sdk.send(true).unwrap();
    let sdk_namespaces = sdk_clients.await.unwrap();
    sdk_delivered(&sink, &sdk_namespaces).await;
    let summary = load.await.unwrap();
    let acked = read_acked_file(&acked_path).unwrap();
    assert!(acked.len() > 10_000, "too little acknowledged: {summary:?}");
    assert_eq!(
        summary.requests_partial, 0,
        "nothing rejected for good: {summary:?}"
    );
    support::all_delivered(&sink, &acked).await;
    eprintln!(
        "rolling restart of three replicas: {} records acknowledged, {} calls refused and {} failed (retried), {} retries; {} OTel SDK client runs, every export a success and at the sink",
        acked.len(),
        summary.requests_refused,
        summary.requests_failed,
        summary.retries,
        sdk_namespaces.len()
    );
}

/// `seedgate handoff` of a stopped replica's directory to `peers`.
fn handoff(replica: &Replica, peers: &[&Replica]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"));
    cmd.args(["handoff", "--batch-bytes", "65536", "--config"])
        .arg(replica.dir.join("seedgate.yaml"));
    for p in peers {
        cmd.args(["--to", &format!("http://{}", p.endpoint.otlp)]);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Records left in the queues a hand-over takes, in a stopped replica's
/// data directory.
fn left_on_volume(replica: &Replica) -> u64 {
    let store = seedgate::store::Store::open(seedgate::store::StoreOptions {
        dir: replica.dir.join("data"),
        map_size: 256 << 20,
        durability: seedgate::config::Durability::Fsync,
        max_ops_per_commit: 16,
    })
    .unwrap();
    store
        .queues()
        .iter()
        .filter(|q| seedgate::handoff::target_of(&q.name).is_some())
        .map(|q| q.records())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_hands_the_leaving_replicas_queue_to_the_others_even_when_killed_half_way() {
    let (dir, sink) = support::with_backend().await;
    sink.go_down().await;
    let (mut replicas, service) = three_replicas(dir.path(), &sink).await;
    let acked_path = dir.path().join("acked.txt");
    let summary = sender(&service, &acked_path, 3, 0, false).await.unwrap();
    let acked = read_acked_file(&acked_path).unwrap();
    assert!(acked.len() > 10_000, "too little acknowledged: {summary:?}");

    // Replica 2 leaves the set: it stops (its drain cannot reach the
    // backend), then its queue is handed over; the first hand-over is
    // killed half-way.
    replicas[2].terminate();
    let held = left_on_volume(&replicas[2]);
    assert!(held > 1_000, "the leaving replica holds too little: {held}");
    let (stay, leaving) = replicas.split_at(2);
    let leaving = &leaving[0];
    let mut first = handoff(leaving, &[&stay[0], &stay[1]]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first hand-over ended before it could be killed half-way"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let half = left_on_volume(leaving);
    assert!(
        0 < half && half < held,
        "not half-way: {half} of {held} left"
    );

    let out = tokio::task::spawn_blocking({
        let child = handoff(leaving, &[&stay[0], &stay[1]]);
        move || child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(left_on_volume(leaving), 0, "nothing left on its volume");

    // The backend returns: everything acknowledged by all three arrives
    // through the two that stay.
    sink.come_up().await.unwrap();
    support::all_delivered(&sink, &acked).await;
    let v = sink.verify(&acked);
    eprintln!(
        "scale-down 3 -> 2: {} acked; {held} records on the leaving volume, {half} left after kill -9 of the hand-over; sink: {v}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_a_replica_leaving_its_statefulset_hands_over_and_one_restarting_keeps_its_queues()
 {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, PostParams};

    let (dir, sink) = support::with_backend().await;
    sink.go_down().await;
    let api = support::apiserver::ApiServerDouble::start().await;
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let port = support::stable_port();
    // After `kubectl scale statefulset seedgate --replicas 2`: seedgate-2 is
    // terminating, so the headless Service lists it not ready.
    let sts: StatefulSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "seedgate", "namespace": "seed"},
        "spec": {"replicas": 2, "serviceName": "seedgate-peers",
                 "selector": {"matchLabels": {"app": "seedgate"}},
                 "template": {"metadata": {"labels": {"app": "seedgate"}},
                              "spec": {"containers": [{"name": "seedgate", "image": "seedgate"}]}}}
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), "seed")
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "seedgate-peers-a", "namespace": "seed",
                     "labels": {"kubernetes.io/service-name": "seedgate-peers"}},
        "addressType": "IPv4",
        "ports": [{"name": "otlp-grpc", "port": port, "protocol": "TCP"}],
        "endpoints": ([2, 3, 4].iter().map(|ip| serde_json::json!({
            "addresses": [format!("127.0.0.{ip}")],
            "conditions": {"ready": *ip != 4}
        })).collect::<Vec<_>>())
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client, "seed")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();

    let kubeconfig = api.kubeconfig(dir.path());
    let mut replicas = Vec::new();
    for i in 0..3u8 {
        let env = vec![
            ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
            ("POD_NAMESPACE".to_owned(), "seed".to_owned()),
            ("POD_NAME".to_owned(), format!("seedgate-{i}")),
        ];
        let at = ([127, 0, 0, i + 2], port);
        replicas.push(
            Replica::start_at(
                dir.path(),
                usize::from(i),
                backend(&sink),
                at,
                vec!["--kube".to_owned()],
                env,
            )
            .await,
        );
    }
    // Replicas 1 and 2 acknowledge records they cannot deliver.
    let mut acked = Vec::new();
    for i in [1, 2] {
        let path = dir.path().join(format!("acked-{i}.txt"));
        let summary = support::load(
            format!("http://{}", replicas[i].endpoint.otlp),
            &[
                "--protocol",
                "grpc",
                "--count",
                "20000",
                "--seq-start",
                &(i * 1_000_000).to_string(),
            ],
            Some(&path),
        )
        .await;
        assert_eq!(summary.records_acked, 20_000, "{summary:?}");
        acked.push(read_acked_file(&path).unwrap());
    }

    // seedgate-2 leaves: its queues go to seedgate-0 and seedgate-1.
    let log = {
        let sg = replicas[2].sg.as_ref().unwrap();
        let log_path = sg.log_path.clone();
        replicas[2].terminate();
        std::fs::read_to_string(log_path).unwrap()
    };
    assert!(log.contains("leaving the set"), "{log}");
    assert_eq!(
        left_on_volume(&replicas[2]),
        0,
        "nothing left on its volume"
    );
    // seedgate-1 restarts: its queue stays for its successor.
    let log = {
        let sg = replicas[1].sg.as_ref().unwrap();
        let log_path = sg.log_path.clone();
        replicas[1].terminate();
        std::fs::read_to_string(log_path).unwrap()
    };
    assert!(log.contains("Restarting, not leaving"), "{log}");
    assert!(left_on_volume(&replicas[1]) >= 20_000, "it kept its queue");
    replicas[1].restart().await;

    sink.come_up().await.unwrap();
    for a in &acked {
        support::all_delivered(&sink, a).await;
    }
}

/// Traces `traces` of three spans each, span `j` of trace `t` posted to
/// replica `(t + j) % n` of `to`: every trace is spread over the replicas.
/// Even traces carry `keep: yes` on their first span only, so a replica
/// that saw part of a trace would decide that part on its own. Returns the
/// sequence numbers of the kept and of the dropped traces.
async fn spread_traces(to: &[&Replica], traces: std::ops::Range<u64>) -> (Vec<u64>, Vec<u64>) {
    let client = reqwest::Client::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for t in traces {
        for j in 0..3u64 {
            let mut span = SpanSpec::new(t, t * 10 + j);
            if t % 2 == 0 && j == 0 {
                span.attrs.push(kv("keep", text("yes")));
            }
            let r = to[usize::try_from((t + j) % to.len() as u64).unwrap()];
            let endpoint = format!("http://{}", r.http);
            assert!(post(&client, &endpoint, request("shop", &[], &[span])).await);
            if t % 2 == 0 { &mut kept } else { &mut dropped }.push(t * 10 + j);
        }
    }
    (kept, dropped)
}

/// Traces decided by the replica's pipeline `p`.
async fn decided(r: &Replica) -> f64 {
    let sg = r.sg.as_ref().expect("the replica runs");
    sg.metric_or_zero(
        "seedgate_tail_sampling_traces_decided_total",
        &["pipeline=\"p\""],
    )
    .await
}

/// The replicas in the replica's affinity ring for pipeline `p`.
async fn ring_size(r: &Replica) -> f64 {
    let sg = r.sg.as_ref().expect("the replica runs");
    sg.metric_or_zero("seedgate_lb_backend_up", &["destination=\"p+affinity\""])
        .await
}

/// Waits until the replicas' decisions (plus `before`, those of replicas
/// restarted since) reach `want`, then checks that no trace is decided a
/// second time.
async fn decided_once(replicas: &[&Replica], before: f64, want: f64) {
    let total = async || {
        let mut sum = before;
        for r in replicas {
            sum += decided(r).await;
        }
        sum
    };
    support::eventually("every trace decided", async || {
        (total().await >= want).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut each = Vec::new();
    for r in replicas {
        each.push(decided(r).await);
    }
    assert_eq!(
        total().await,
        want,
        "each trace decided once (before {before}, now {each:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_affinity_traces_spread_over_the_replicas_are_decided_once_and_whole_as_one_leaves_and_returns()
 {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let sink = support::tracking_sink().await;
    let ports: Vec<u16> = (0..3).map(|_| support::stable_port()).collect();
    let affinity = AffinityConfig {
        resolver: ResolverConfig {
            static_endpoints: Some(
                ports
                    .iter()
                    .map(|p| format!("http://127.0.0.1:{p}"))
                    .collect(),
            ),
            ..ResolverConfig::default()
        },
        failover_after: secs(1),
        probe_interval: ms(300),
    };
    let pipeline = Pipeline::grpc("p", &sink.grpc_endpoint())
        .signals(&[Signal::Traces])
        .with(|p| p.affinity = Some(affinity))
        .processor(tail_sampling(
            secs(1),
            vec![policy::string_attribute("keep", "keep", &["yes"])],
        ));
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        replicas.push(
            Replica::start_at(
                dir.path(),
                i,
                pipeline.clone(),
                ([127, 0, 0, 1], *port),
                Vec::new(),
                Vec::new(),
            )
            .await,
        );
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut add = |(k, d): (Vec<u64>, Vec<u64>)| {
        kept.extend(k);
        dropped.extend(d);
    };

    // All three up: each trace's spans reach its owner, decided once.
    let all: Vec<&Replica> = replicas.iter().collect();
    add(spread_traces(&all, 0..30).await);
    decided_once(&all, 0.0, 30.0).await;
    let before = decided(&replicas[2]).await;

    // Replica 2 dies: its traces go to the two others once it has failed
    // for failover_after; traces keep being decided once and whole.
    replicas[2].kill9();
    let two: Vec<&Replica> = replicas[..2].iter().collect();
    add(spread_traces(&two, 30..60).await);
    decided_once(&two, before, 60.0).await;

    // It returns (probed back into the ring): again all three.
    replicas[2].restart().await;
    let all: Vec<&Replica> = replicas.iter().collect();
    // Every forwarder has it back in its ring: while they disagree, a
    // trace's spans could reach two owners.
    for r in &all {
        support::eventually("replica 2 back in every ring", async || {
            (ring_size(r).await == 3.0).then_some(())
        })
        .await;
    }
    add(spread_traces(&all, 60..90).await);
    decided_once(&all, before, 90.0).await;

    support::eventually("the kept traces at the backend, whole", async || {
        let got: std::collections::BTreeSet<u64> = sink.seqs().into_keys().collect();
        kept.iter().all(|s| got.contains(s)).then_some(())
    })
    .await;
    let got: std::collections::BTreeSet<u64> = sink.seqs().into_keys().collect();
    assert!(
        dropped.iter().all(|s| !got.contains(s)),
        "no span of a dropped trace"
    );
    assert_eq!(got.len(), kept.len(), "exactly the kept spans");
}

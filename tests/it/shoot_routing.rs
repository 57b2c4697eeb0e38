//! Tenant and shoot routing end to end: the loadgen sends many namespaces to
//! a real seedgate process with static clusters; seed pipeline sinks and a
//! shoot backend sink (one sink serving every shoot endpoint, keyed by the
//! HTTP path the endpoint template produces) must each receive exactly the
//! namespaces they should, checked by sequence numbers, with nothing
//! acknowledged missing anywhere.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::support::config::{self, Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, delivered_somewhere, eventually, seqs_in, tracking_sink};
use bytesize::ByteSize;
use seedgate::cluster_state::ShootState;
use seedgate::config::{
    BatchConfig, ClusterConfig, Compression, Durability, OutputConfig, OutputType, QueueConfig,
    RetryConfig, RouteCell, ShootsConfig, WhenFull,
};
use seedgate::signal::Signal;
use seedgate::tools::acked::{AckedSet, read_acked_file};
use seedgate::tools::loadgen::{self, LoadgenArgs, Summary};
use seedgate::tools::sink::{Fault, SinkHandle};
use serde_json::{Value, json};

/// The upstream e2e `Cluster` (a ready shoot), read in place.
fn upstream_cluster() -> Value {
    support::gardener_yaml("examples/logging-tests-e2e-cluster.yaml")
}

/// The upstream Cluster renamed to `name`, with `edit` applied to its shoot.
fn cluster(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = upstream_cluster();
    c["metadata"]["name"] = json!(name);
    edit(&mut c["spec"]["shoot"]);
    c
}

/// Seqs a sink received per namespace at one endpoint key.
fn seqs_at(sink: &SinkHandle, key: &str) -> BTreeMap<String, HashSet<u64>> {
    sink.namespace_seqs()
        .into_iter()
        .filter(|((k, _), _)| k == key)
        .map(|((_, ns), seqs)| (ns, seqs))
        .collect()
}

/// The shoot clients: logs to `shoot_sink` under `/<namespace>`, quick
/// batches and retries, with `edit` applied.
fn shoot_clients(shoot_sink: &SinkHandle, edit: impl FnOnce(&mut ShootsConfig)) -> ShootsConfig {
    let output = OutputConfig {
        compression: Compression::None,
        timeout: secs(2),
        ..OutputConfig::of_kind(OutputType::OtlpHttp)
    };
    let mut shoots = config::shoots(&format!("{}/", shoot_sink.http_endpoint()), output);
    shoots.signals = vec![Signal::Logs];
    shoots.batch = Some(BatchConfig {
        timeout: ms(20),
        ..BatchConfig::default()
    });
    shoots.retry = Some(RetryConfig {
        initial_interval: ms(50),
        max_interval: ms(200),
        ..RetryConfig::default()
    });
    edit(&mut shoots);
    shoots
}

/// A seed pipeline: logs to `sink` over OTLP/HTTP, uncompressed.
fn pipeline(name: &str, sink: &SinkHandle) -> Pipeline {
    Pipeline::http(name, &sink.http_endpoint())
        .signals(&[Signal::Logs])
        .compression(Compression::None)
        .batch_timeout(ms(20))
}

async fn run_load(
    sg: &Seedgate,
    namespaces: &[&str],
    count: u64,
    seq_start: u64,
    acked: &Path,
) -> Summary {
    let mut args = LoadgenArgs::from_flags([
        "--protocol",
        "grpc",
        "--concurrency",
        "4",
        "--records-per-request",
        "60",
        "--record-size",
        "120",
    ])
    .unwrap();
    args.endpoint = Some(sg.grpc_endpoint());
    args.namespaces = namespaces.iter().map(|s| (*s).to_owned()).collect();
    args.resources_per_request = Some(namespaces.len());
    args.count = Some(count);
    args.seq_start = seq_start;
    args.acked_file = Some(acked.to_owned());
    args.quiet = true;
    loadgen::run(args).await.unwrap()
}

/// Every acked seq of `ns` (by the loadgen's count) arrived at `key` of
/// `sink`, and nothing of any other namespace did.
fn assert_exactly(sink: &SinkHandle, key: &str, want: &[&str], summary: &Summary, what: &str) {
    let got = seqs_at(sink, key);
    let got_ns: BTreeSet<&str> = got.keys().map(String::as_str).collect();
    let want_ns: BTreeSet<&str> = want.iter().copied().collect();
    assert_eq!(got_ns, want_ns, "{what} ({key}): namespaces");
    for ns in want {
        let acked = summary.acked_per_namespace.get(*ns).copied().unwrap_or(0);
        assert!(acked > 0, "{what}: nothing acked for {ns}");
        assert_eq!(
            got[*ns].len() as u64,
            acked,
            "{what} ({key}): distinct seqs of {ns} vs acked"
        );
    }
}

/// Every state × destination cell with the default table, one cell
/// overridden to "nowhere", namespace selectors, a shoot namespace without a
/// Cluster, a Cluster that gets no client, and system namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_goes_exactly_where_the_table_says() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (seed, ops, shoots) = (
        tracking_sink().await,
        tracking_sink().await,
        tracking_sink().await,
    );
    let state = |name: &str, state| ClusterConfig {
        name: name.to_owned(),
        state: Some(state),
        cluster: None,
    };
    let object = |name: &str, edit: fn(&mut Value)| ClusterConfig {
        name: name.to_owned(),
        state: None,
        cluster: Some(cluster(name, edit)),
    };
    let clusters = vec![
        state("shoot--p--creation", ShootState::Creation),
        object("shoot--p--ready", |_| {}),
        object("shoot--p--hibernating", |s| {
            s["spec"]["hibernation"]["enabled"] = json!(true);
        }),
        object("shoot--p--hibernated", |s| {
            s["spec"]["hibernation"]["enabled"] = json!(true);
            s["status"]["hibernated"] = json!(true);
        }),
        state("shoot--p--waking", ShootState::Waking),
        object("shoot--p--deletion", |s| {
            s["metadata"]["deletionTimestamp"] = json!("2026-11-27T00:00:00Z");
        }),
        state("shoot--p--migration", ShootState::Migration),
        object("shoot--p--restore", |s| {
            s["metadata"]["annotations"] = json!({"gardener.cloud/operation": "restore"});
        }),
        object("shoot--p--testing", |s| {
            s["spec"]["purpose"] = json!("testing");
        }),
    ];
    let yaml = TestConfig::new(&dir.path().join("data"))
        .with(|c| {
            c.routing.states.migration = RouteCell {
                shoot: false,
                seed: false,
            };
            c.clusters = clusters;
        })
        .pipeline(pipeline("seed", &seed))
        .pipeline(pipeline("ops", &ops).include(&["garden", "kube-system"]))
        .shoots(shoot_clients(&shoots, |_| {}))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;

    let routed = [
        "shoot--p--creation",
        "shoot--p--ready",
        "shoot--p--hibernating",
        "shoot--p--hibernated",
        "shoot--p--waking",
        "shoot--p--deletion",
        "shoot--p--restore",
        "shoot--p--testing",
        "shoot--p--nocluster",
        "garden",
        "kube-system",
        "default",
    ];
    let acked_path = dir.path().join("acked.txt");
    let summary = run_load(&sg, &routed, 24_000, 0, &acked_path).await;
    assert_eq!(
        summary.requests_failed + summary.requests_refused,
        0,
        "{summary:?}"
    );
    // The excluded state alone: every request is answered with
    // partial_success (its records are stored nowhere), so none is acked.
    let excluded = run_load(
        &sg,
        &["shoot--p--migration"],
        600,
        1_000_000,
        &dir.path().join("x.txt"),
    )
    .await;
    assert_eq!(
        excluded.requests_partial, excluded.requests_sent,
        "{excluded:?}"
    );

    let acked = read_acked_file(&acked_path).unwrap();
    assert_eq!(acked.len(), 24_000);
    // Wait until every acked record is somewhere, then for the shoot sink to
    // have the shoots that also go to the seed.
    eventually("every acked record delivered", async || {
        (delivered_somewhere(&[&seed, &ops, &shoots], &acked)
            && shoots.stats().records() >= summary.acked_per_namespace["shoot--p--deletion"])
            .then_some(())
    })
    .await;
    // Let in-flight duplicates, if any, land before counting exactly.
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_exactly(
        &seed,
        "/",
        &[
            "shoot--p--creation",
            "shoot--p--hibernating",
            "shoot--p--hibernated",
            "shoot--p--deletion",
            "shoot--p--restore",
            "shoot--p--testing",
            "shoot--p--nocluster",
            "garden",
            "default",
        ],
        &summary,
        "seed pipeline (default selector: no system namespaces)",
    );
    assert_exactly(
        &ops,
        "/",
        &["garden", "kube-system"],
        &summary,
        "ops pipeline (include)",
    );
    for ns in [
        "shoot--p--creation",
        "shoot--p--ready",
        "shoot--p--waking",
        "shoot--p--deletion",
        "shoot--p--restore",
    ] {
        assert_exactly(&shoots, &format!("/{ns}"), &[ns], &summary, "shoot backend");
    }
    let keys: BTreeSet<String> = shoots
        .namespace_seqs()
        .into_keys()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 5, "shoot endpoints that got data: {keys:?}");

    // The metrics tell the same story.
    let n = |ns: &str| summary.acked_per_namespace[ns] as f64;
    let routed_metric = async |kind: &str, state: &str| {
        sg.metric(
            "seedgate_router_routed_records_total",
            &[
                &format!("kind=\"{kind}\""),
                &format!("state=\"{state}\""),
                "signal=\"logs\"",
            ],
        )
        .await
        .unwrap_or(0.0)
    };
    assert_eq!(routed_metric("shoot", "ready").await, n("shoot--p--ready"));
    assert_eq!(routed_metric("seed", "ready").await, 0.0);
    assert_eq!(
        routed_metric("seed", "hibernated").await,
        n("shoot--p--hibernated")
    );
    assert_eq!(
        routed_metric("shoot", "deletion").await,
        n("shoot--p--deletion")
    );
    assert_eq!(
        routed_metric("seed", "no_cluster").await,
        n("shoot--p--nocluster")
    );
    assert_eq!(
        routed_metric("seed", "no_client").await,
        n("shoot--p--testing")
    );
    assert_eq!(
        sg.metric(
            "seedgate_shoot_dropped_records_total",
            &["reason=\"state_excluded\"", "signal=\"logs\""]
        )
        .await,
        Some(excluded.records_sent as f64)
    );
    assert_eq!(sg.metric("seedgate_shoot_clients", &[]).await, Some(5.0));
    assert_eq!(
        sg.metric("seedgate_shoot_clusters", &["state=\"no_client\""])
            .await,
        Some(1.0)
    );
}

/// Writes `yaml` as seedgate's config file and asks for a reload with
/// SIGHUP (or only writes it, leaving the change to the file poll), then
/// waits until the reload counter reaches `reloads`.
async fn reload(sg: &Seedgate, yaml: &str, sighup: bool, reloads: f64) {
    std::fs::write(&sg.config_path, yaml).unwrap();
    if sighup {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &sg.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    eventually("the reload to be applied", async || {
        let ok = sg
            .metric("seedgate_config_reloads_total", &["result=\"ok\""])
            .await?;
        (ok >= reloads).then_some(())
    })
    .await;
}

/// ready → hibernating (SIGHUP) → waking (file change alone): each phase's
/// data goes where the new state sends it, and a stream running across all
/// the changes loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_mid_stream_moves_new_data_without_loss() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
    let with_state = |state: ShootState| {
        TestConfig::new(&dir.path().join("data"))
            .pipeline(pipeline("seed", &seed))
            .shoots(shoot_clients(&shoots, |_| {}))
            .cluster("shoot--p--x", state)
            .yaml()
    };
    let sg = Seedgate::start(dir.path(), &with_state(ShootState::Ready)).await;
    let x = "shoot--p--x";
    let key = format!("/{x}");

    // A stream across every change.
    let stream_acked = dir.path().join("stream.txt");
    let stream = support::stream(
        sg.http_endpoint(),
        &[
            "--protocol",
            "http",
            "--concurrency",
            "2",
            "--records-per-request",
            "20",
            "--rate",
            "2000",
        ],
        &[x],
        Duration::from_secs(9),
        10_000_000,
        &stream_acked,
    );

    let probe = async |start: u64| {
        let s = run_load(
            &sg,
            &[x],
            600,
            start,
            &dir.path().join(format!("p{start}.txt")),
        )
        .await;
        assert_eq!(s.records_acked, 600, "{s:?}");
    };
    probe(0).await;
    reload(&sg, &with_state(ShootState::Hibernating), true, 1.0).await;
    probe(100_000).await;
    reload(&sg, &with_state(ShootState::Waking), false, 2.0).await;
    probe(200_000).await;

    let summary = stream.await.unwrap().unwrap();
    let acked = read_acked_file(&stream_acked).unwrap();
    assert!(acked.len() > 1000, "{summary:?}");
    let probes = AckedSet::from_seqs((0..600).chain(100_000..100_600).chain(200_000..200_600));
    eventually("every probe and the whole stream delivered", async || {
        (delivered_somewhere(&[&seed, &shoots], &acked)
            && delivered_somewhere(&[&seed, &shoots], &probes))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ready: the shoot backend only; hibernating: the seed only; waking: the shoot only.
    assert_eq!(seqs_in(&shoots, &key, x, 0..600), 600);
    assert_eq!(seqs_in(&seed, "/", x, 0..600), 0);
    assert_eq!(seqs_in(&shoots, &key, x, 100_000..100_600), 0);
    assert_eq!(seqs_in(&seed, "/", x, 100_000..100_600), 600);
    assert_eq!(seqs_in(&shoots, &key, x, 200_000..200_600), 600);
    assert_eq!(seqs_in(&seed, "/", x, 200_000..200_600), 0);
    // The stream was split between both by the changes.
    assert!(seqs_in(&seed, "/", x, 10_000_000..u64::MAX) > 0);
    assert!(seqs_in(&shoots, &key, x, 10_000_000..u64::MAX) > 0);
    assert!(
        sg.log().contains("Reloaded clusters and routing"),
        "{}",
        sg.log()
    );
}

/// One shoot backend fails for the whole second run: the other shoot and
/// the seed pipeline keep their throughput (compared, as a ratio, with a
/// first run where everything is up), and the failing shoot's queue stays
/// within its limit, dropping (and counting) what does not fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shoot_backend_slows_nobody_else() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
    // One limit for every shoot queue (the `shoots` block has one): small
    // enough that the dead shoot's 3 s of load pass it, large enough that
    // the live shoot's queue (about 5 MB/s through it) rides out a delivery
    // hiccup; at 256 KiB it held only ~50 ms, and the live tenants saw
    // drops on an idle machine.
    let limit = 2 * 1024 * 1024;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(pipeline("seed", &seed))
        .shoots(shoot_clients(&shoots, |s| {
            s.queue = QueueConfig {
                max_bytes: ByteSize(limit),
                when_full: WhenFull::DropNewest,
                ..QueueConfig::default()
            };
        }))
        .cluster("shoot--p--down", ShootState::Ready)
        .cluster("shoot--p--up", ShootState::Ready)
        .with(|c| c.storage.durability = Durability::None)
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    // Two loadgens at once: the live tenants (measured) and the shoot whose
    // backend will fail (load on the failing path).
    let one = async |namespaces: &[&str], seq_start: u64, name: &str| {
        let mut args = LoadgenArgs::from_flags([
            "--protocol",
            "grpc",
            "--concurrency",
            "6",
            "--records-per-request",
            "60",
            "--record-size",
            "200",
        ])
        .unwrap();
        args.endpoint = Some(sg.grpc_endpoint());
        args.namespaces = namespaces.iter().map(|s| (*s).to_owned()).collect();
        args.duration = Some(Duration::from_secs(3));
        args.seq_start = seq_start;
        args.acked_file = Some(dir.path().join(name));
        args.quiet = true;
        loadgen::run(args).await.unwrap()
    };
    let run = async |seq_start: u64, name: &str| {
        let (live, dead) = tokio::join!(
            one(&["shoot--p--up", "garden"], seq_start, name),
            one(&["shoot--p--down"], seq_start + 50_000_000, "dead.txt"),
        );
        (live, dead)
    };
    let (all_up, _) = run(0, "up.txt").await;
    shoots.set_fault(Fault {
        status: Some(503),
        only_endpoints: vec!["/shoot--p--down".to_owned()],
        ..Fault::default()
    });
    let (one_down, dead) = run(100_000_000, "down.txt").await;
    assert_eq!(
        one_down.requests_failed + one_down.requests_refused,
        0,
        "{one_down:?}"
    );
    // The dead shoot's records beyond its queue limit are dropped
    // (drop_newest) and reported as rejected (partial_success), never
    // refused: its clients are not pushed back either.
    assert_eq!(dead.requests_refused, 0, "{dead:?}");
    assert!(dead.requests_partial > 0, "{dead:?}");
    let ratio = one_down.records_per_sec / all_up.records_per_sec;
    eprintln!(
        "isolation: live tenants {:.0} rec/s with all up, {:.0} rec/s with one shoot down, ratio {ratio:.2}",
        all_up.records_per_sec, one_down.records_per_sec
    );
    assert!(
        ratio > 0.5,
        "a dead shoot backend slowed the rest: ratio {ratio:.2}"
    );

    // Everything acked for the live shoot and the seed arrives.
    let want_up = one_down.acked_per_namespace["shoot--p--up"] as usize;
    let want_garden = one_down.acked_per_namespace["garden"] as usize;
    eventually("the live shoot and the seed got everything", async || {
        let up = seqs_in(
            &shoots,
            "/shoot--p--up",
            "shoot--p--up",
            100_000_000..u64::MAX,
        );
        let garden = seqs_in(&seed, "/", "garden", 100_000_000..u64::MAX);
        (up == want_up && garden == want_garden).then_some(())
    })
    .await;
    // The dead shoot's queue obeyed its limit and policy.
    let queued = sg
        .metric(
            "seedgate_shoot_queue_size_bytes",
            &["shoot=\"shoot--p--down\""],
        )
        .await
        .unwrap();
    assert!(
        queued > 0.0 && queued <= limit as f64,
        "queued {queued} of {limit}"
    );
    let dropped = sg
        .metric(
            "seedgate_shoot_dropped_records_total",
            &["reason=\"queue_full\""],
        )
        .await
        .unwrap();
    assert!(
        dropped > 0.0,
        "the full shoot queue should have dropped records"
    );
    assert_eq!(
        sg.metric("seedgate_exporter_failing", &["destination=\"seed\""])
            .await,
        Some(0.0)
    );
    // Each shoot client has its own failing gauge.
    assert_eq!(
        sg.metric("seedgate_shoot_failing", &["shoot=\"shoot--p--down\""])
            .await,
        Some(1.0)
    );
    assert_eq!(
        sg.metric("seedgate_shoot_failing", &["shoot=\"shoot--p--up\""])
            .await,
        Some(0.0)
    );
}

/// A removed cluster's client expires after `shoots.expiry`: it leaves the
/// directory and `/metrics`, and what it still held is counted as dropped.
/// The namespace's new data goes to the seed (no Cluster any more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_goes_away_and_its_drops_are_counted() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
    let gone = "shoot--p--gone";
    shoots.set_fault(Fault {
        status: Some(503),
        ..Fault::default()
    });
    let config = |ready: &[&str]| {
        let mut config = TestConfig::new(&dir.path().join("data"))
            .pipeline(pipeline("seed", &seed))
            .shoots(shoot_clients(&shoots, |s| s.expiry = secs(2)));
        for name in ready {
            config = config.cluster(name, ShootState::Ready);
        }
        config.yaml()
    };
    let sg = Seedgate::start(dir.path(), &config(&[gone])).await;
    let s = run_load(&sg, &[gone], 600, 0, &dir.path().join("a.txt")).await;
    assert_eq!(s.records_acked, 600);
    let labels = [&format!("shoot=\"{gone}\"")[..]];
    eventually("the shoot's queue to hold the records", async || {
        let queued = sg.metric("seedgate_shoot_queue_records", &labels).await?;
        (queued == 600.0).then_some(())
    })
    .await;
    assert_eq!(sg.metric("seedgate_shoot_clients", &[]).await, Some(1.0));

    reload(&sg, &config(&[]), true, 1.0).await;
    eventually("the client to expire", async || {
        (sg.metric("seedgate_shoot_clients", &[]).await? == 0.0).then_some(())
    })
    .await;
    let text = eventually("the drops to be counted", async || {
        let text = sg.metrics().await;
        let dropped = support::metric_value(
            &text,
            "seedgate_shoot_dropped_records_total",
            &["reason=\"client_expired\""],
        )?;
        (dropped == 600.0).then_some(text)
    })
    .await;
    assert!(
        !text.contains(gone),
        "per-shoot series outlived the client:\n{text}"
    );
    assert_eq!(
        support::metric_value(
            &text,
            "seedgate_shoot_clients_removed_total",
            &["reason=\"expired\""]
        ),
        Some(1.0)
    );
    assert!(sg.log().contains("Removed an expired shoot client"));
    // Without its Cluster the namespace goes to the seed.
    let s = run_load(&sg, &[gone], 120, 1000, &dir.path().join("b.txt")).await;
    assert_eq!(s.records_acked, 120);
    eventually("the namespace's new data at the seed", async || {
        (seqs_in(&seed, "/", gone, 1000..1120) == 120).then_some(())
    })
    .await;
    assert_eq!(shoots.stats().records(), 0);

    // The cluster returns: a fresh client over fresh queues delivers.
    shoots.set_fault(Fault::default());
    reload(&sg, &config(&[gone]), true, 2.0).await;
    let s = run_load(&sg, &[gone], 120, 2000, &dir.path().join("c.txt")).await;
    assert_eq!(s.records_acked, 120);
    eventually("the returning shoot's data at its backend", async || {
        (seqs_in(&shoots, &format!("/{gone}"), gone, 2000..2120) == 120).then_some(())
    })
    .await;
    assert_eq!(
        seqs_in(&shoots, &format!("/{gone}"), gone, 0..600),
        0,
        "dropped records came back"
    );
}

/// Two ready shoots and the seed under load from a sequence-numbered
/// stream, with `admin.fault_injection`: the stage of the supervision
/// tests below.
struct UnderLoad {
    _dir: tempfile::TempDir,
    seed: SinkHandle,
    shoots: SinkHandle,
    sg: Seedgate,
    load: tokio::task::JoinHandle<anyhow::Result<Summary>>,
    acked_path: std::path::PathBuf,
}

impl UnderLoad {
    async fn start() -> Self {
        support::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
        let yaml = TestConfig::new(&dir.path().join("data"))
            .pipeline(pipeline("seed", &seed))
            .shoots(shoot_clients(&shoots, |_| {}))
            .cluster("shoot--p--a", ShootState::Ready)
            .cluster("shoot--p--b", ShootState::Ready)
            .with(|c| c.admin.fault_injection = true)
            .yaml();
        let sg = Seedgate::start(dir.path(), &yaml).await;
        let acked_path = dir.path().join("acked.txt");
        let load = support::stream(
            sg.grpc_endpoint(),
            &[
                "--protocol",
                "grpc",
                "--concurrency",
                "4",
                "--records-per-request",
                "30",
                "--rate",
                "3000",
            ],
            &["shoot--p--a", "shoot--p--b", "garden"],
            Duration::from_secs(5),
            0,
            &acked_path,
        );
        eventually("both shoot clients to exist", async || {
            (sg.metric("seedgate_shoot_clients", &[]).await? == 2.0).then_some(())
        })
        .await;
        Self {
            _dir: dir,
            seed,
            shoots,
            sg,
            load,
            acked_path,
        }
    }

    async fn post(&self, path: &str) -> u16 {
        let url = self.sg.admin_url(path);
        let r = reqwest::Client::new().post(url).send().await.unwrap();
        r.status().as_u16()
    }

    async fn restarts_of(&self, actor: &str) -> Option<f64> {
        let label = format!("actor=\"{actor}\"");
        self.sg
            .metric("seedgate_actor_restarts_total", &[&label])
            .await
    }

    /// The load ends without a refusal, every acked record reaches a
    /// backend, the shoot's own backend gets all of `shoot--p--a`'s, and
    /// seedgate is live.
    async fn nothing_lost_after_the_load(&mut self) {
        let summary = (&mut self.load).await.unwrap().unwrap();
        assert_eq!(
            summary.requests_failed + summary.requests_refused,
            0,
            "{summary:?}"
        );
        let acked = read_acked_file(&self.acked_path).unwrap();
        eventually("everything acked delivered", async || {
            delivered_somewhere(&[&self.seed, &self.shoots], &acked).then_some(())
        })
        .await;
        // The shoot's data went on after the fault, at its own backend.
        assert_eq!(
            seqs_at(&self.shoots, "/shoot--p--a")["shoot--p--a"].len() as u64,
            summary.acked_per_namespace["shoot--p--a"]
        );
        let health = reqwest::get(self.sg.admin_url("/healthz")).await.unwrap();
        assert!(health.status().is_success());
    }
}

/// A panic inside one shoot client restarts that client alone; data for
/// the other shoot, the seed and the crashed shoot itself keeps flowing and
/// nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shoot_client_restarts_alone() {
    let mut run = UnderLoad::start().await;
    assert_eq!(run.post("/debug/shoots/shoot--p--a/crash").await, 202);
    assert_eq!(run.post("/debug/shoots/shoot--p--zz/crash").await, 404);
    eventually("the crashed client to be restarted", async || {
        (run.restarts_of("shoot_client").await? == 1.0).then_some(())
    })
    .await;
    run.nothing_lost_after_the_load().await;
    assert_eq!(run.restarts_of("shoot_manager").await, Some(0.0));
    let log = run.sg.log();
    assert!(
        log.lines().any(|l| l.contains("starting it again")
            && l.contains("actor=\"shoot_client\"")
            && l.contains("fault injected into the shoot client of shoot--p--a")),
        "{log}"
    );
}

/// Restarting the shoot manager (through the supervisor, exactly as after
/// a failure) takes its clients with it; the new manager resumes them from
/// their queues on disk and the next records bring back any other, so the
/// shoots' data keeps flowing and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shoot_manager_resumes_its_clients_and_loses_nothing() {
    let mut run = UnderLoad::start().await;
    assert_eq!(run.post("/debug/units/nobody/restart").await, 404);
    assert_eq!(run.post("/debug/units/shoot_manager/restart").await, 202);
    eventually("the manager to be restarted", async || {
        (run.restarts_of("shoot_manager").await? == 1.0).then_some(())
    })
    .await;
    eventually("both shoot clients to be back", async || {
        let log = run.sg.log();
        let back = log.matches("Created a shoot client").count() >= 4;
        (back && run.sg.metric("seedgate_shoot_clients", &[]).await? == 2.0).then_some(())
    })
    .await;
    run.nothing_lost_after_the_load().await;
    assert_eq!(run.restarts_of("batcher").await, Some(0.0));
}

/// `shoots.max_clients` caps the clients: the shoot beyond it gets none, its
/// records for its own backend are dropped and counted, and the refusal is
/// a metric and a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_cap_refuses_clearly() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(pipeline("seed", &seed))
        .shoots(shoot_clients(&shoots, |s| s.max_clients = 2))
        .cluster("shoot--p--a", ShootState::Ready)
        .cluster("shoot--p--b", ShootState::Ready)
        .cluster("shoot--p--c", ShootState::Creation)
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let s = run_load(
        &sg,
        &["shoot--p--a", "shoot--p--b"],
        120,
        0,
        &dir.path().join("a.txt"),
    )
    .await;
    assert_eq!(s.records_acked, 120);
    // c is in creation: the seed takes it too, so the request is acked.
    let c = run_load(&sg, &["shoot--p--c"], 120, 1000, &dir.path().join("c.txt")).await;
    assert_eq!(c.records_acked, 120, "{c:?}");
    assert_eq!(sg.metric("seedgate_shoot_clients", &[]).await, Some(2.0));
    assert_eq!(
        sg.metric(
            "seedgate_shoot_clients_refused_total",
            &["reason=\"at_capacity\""]
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        sg.metric(
            "seedgate_shoot_dropped_records_total",
            &["reason=\"no_client\""]
        )
        .await,
        Some(120.0)
    );
    eventually("c's records at the seed", async || {
        (seqs_in(&seed, "/", "shoot--p--c", 1000..1120) == 120).then_some(())
    })
    .await;
    assert!(sg.log().contains("shoots.max_clients"), "{}", sg.log());
}

/// Bad routing configuration is refused before start, naming file, line and
/// field.
#[test]
fn bad_routing_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "pipelines:\n  - name: a\n    input:\n      namespaces: { include: [x], exclude: [y] }\n    output: { type: noop }\n",
            "pipelines[0].input.namespaces: include and exclude are mutually exclusive",
        ),
        (
            "pipelines:\n  - name: a\n    input:\n      namespaces: { include: [Not_A_Namespace] }\n    output: { type: noop }\n",
            "pipelines[0].input.namespaces.include[0]: \"Not_A_Namespace\" is not a namespace name",
        ),
        (
            "routing:\n  shoot_namespace_pattern: \"^shoot--(\"\n",
            "routing.shoot_namespace_pattern: is not a valid regular expression",
        ),
        (
            "shoots:\n  endpoint_prefix: \"http://bad host/\"\n  output: { type: otlp_grpc }\n",
            "shoots.endpoint_prefix: endpoint_prefix + namespace + endpoint_suffix gives",
        ),
        (
            "shoots:\n  endpoint_prefix: \"http://c.\"\n  output: { type: otlp_grpc, endpoint: \"http://x:1\" }\n",
            "shoots.output.endpoint: is built per shoot",
        ),
        (
            "clusters:\n  - { name: shoot--a--b, state: ready, cluster: {} }\n",
            "clusters[0]: state and cluster are mutually exclusive",
        ),
        (
            "clusters:\n  - { name: shoot--a--b, state: sleepy }\n",
            "sleepy",
        ),
        ("routing:\n  states:\n    ready: { shoot: true }\n", "seed"),
        (
            "clusters:\n  - { name: garden, state: ready }\n",
            "clusters[0].name: \"garden\" does not match routing.shoot_namespace_pattern",
        ),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.yaml"));
        let out = support::check_config(&file, yaml);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()),
            "case {i}: {stderr}"
        );
        assert!(
            stderr.contains(want),
            "case {i}: want {want:?} in:\n{stderr}"
        );
    }
}

/// The store in `data` as a restart would find it, after a kill: no queue
/// may be half-made (entries whose queue has no name, which the open would
/// have to throw away), and every queue is one of `shoots`' or the seed's.
fn assert_no_half_made_queue(data: &Path, shoots: &BTreeSet<String>) -> usize {
    let store = seedgate::store::Store::open(seedgate::store::StoreOptions {
        dir: data.to_owned(),
        map_size: 256 << 20,
        durability: seedgate::config::Durability::Fsync,
        max_ops_per_commit: 1,
    })
    .unwrap();
    assert_eq!(store.discarded_at_open(), 0, "entries without a queue");
    let queues = store.queues();
    for q in &queues {
        let ns = q
            .name
            .strip_prefix("shoot/")
            .and_then(|r| r.strip_suffix("/logs"));
        assert!(
            ns.is_none_or(|ns| shoots.contains(ns)),
            "a queue of no shoot: {}",
            q.name
        );
    }
    queues.len()
}

/// seedgate is killed with SIGKILL twice while it creates the clients, and
/// so the queues, of 1,000 ready shoots on their first records. Nothing
/// acknowledged is lost (every acked seq reaches the shoot backend) and no
/// queue is half-made at either kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_creating_1000_shoot_queues_loses_nothing_acknowledged() {
    const SHOOTS: usize = 1000;
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shoot_sink = tracking_sink().await;
    let names: Vec<String> = (0..SHOOTS).map(|i| format!("shoot--kill--s{i}")).collect();
    let (grpc, http) = (support::stable_port(), support::stable_port());
    let mut config = TestConfig::new(&data)
        .ports(grpc, http)
        .shoots(shoot_clients(&shoot_sink, |s| s.max_clients = 2000));
    for ns in &names {
        config = config.cluster(ns, ShootState::Ready);
    }
    let yaml = config.yaml();
    let config = dir.path().join("seedgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut sg = Seedgate::start_with(dir.path(), &config).await;

    // 10 records a request, one per shoot, round-robin: at 400 records/s
    // the 1,000 shoots get their first record over 2.5 s.
    let ns: Vec<&str> = names.iter().map(String::as_str).collect();
    let flags = [
        "--protocol",
        "grpc",
        "--records-per-request",
        "10",
        "--resources-per-request",
        "10",
        "--record-size",
        "100",
        "--rate",
        "400",
        "--concurrency",
        "4",
        "--timeout",
        "2s",
    ];
    let first = dir.path().join("acked-1.txt");
    let load = support::stream(
        sg.grpc_endpoint(),
        &flags,
        &ns,
        Duration::from_secs(5),
        0,
        &first,
    );
    let shoots: BTreeSet<String> = names.iter().cloned().collect();
    for (kill, at) in [(1, 150.0), (2, 300.0)] {
        let seen = eventually("shoot clients being created", async || {
            let n = sg.metric_or_zero("seedgate_shoot_clients", &[]).await;
            (n >= at).then_some(n)
        })
        .await;
        sg.kill9();
        assert!(
            seen < SHOOTS as f64,
            "kill {kill} came after every client was made ({seen})"
        );
        let on_disk = assert_no_half_made_queue(&data, &shoots);
        eprintln!("kill {kill}: {seen} clients live, {on_disk} queues on disk");
        sg = Seedgate::start_with(dir.path(), &config).await;
    }
    let s1 = load.await.unwrap().unwrap();
    assert!(s1.requests_failed > 0, "the kills failed nothing: {s1:?}");
    assert!(
        s1.records_acked > 0,
        "nothing acked to prove anything: {s1:?}"
    );
    // Every shoot once more, so each has a client and records after it all.
    let second = dir.path().join("acked-2.txt");
    let mut args = LoadgenArgs::from_flags(flags).unwrap();
    args.rate = 0;
    args.endpoint = Some(sg.grpc_endpoint());
    args.namespaces = names.clone();
    args.count = Some(SHOOTS as u64);
    args.seq_start = 1_000_000;
    args.acked_file = Some(second.clone());
    args.quiet = true;
    let s2 = loadgen::run(args).await.unwrap();
    assert_eq!(s2.records_acked, SHOOTS as u64, "{s2:?}");
    assert_eq!(
        sg.metric("seedgate_shoot_clients", &[]).await,
        Some(SHOOTS as f64)
    );
    for acked in [&first, &second] {
        let acked = read_acked_file(acked).unwrap();
        eventually("every acked record at the shoot backends", async || {
            (shoot_sink.verify(&acked).missing == 0).then_some(())
        })
        .await;
    }
    eprintln!(
        "acked {} + {} records across 2 kills",
        s1.records_acked, s2.records_acked
    );
}

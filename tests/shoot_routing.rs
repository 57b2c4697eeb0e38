//! Tenant and shoot routing end to end: the loadgen sends many namespaces to
//! a real seedgate process with static clusters; seed pipeline sinks and a
//! shoot backend sink (one sink serving every shoot endpoint, keyed by the
//! HTTP path the endpoint template produces) must each receive exactly the
//! namespaces they should, checked by sequence numbers, with nothing
//! acknowledged missing anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use seedgate::tools::acked::{AckedSet, read_acked_file};
use seedgate::tools::loadgen::{self, LoadgenArgs, Summary};
use seedgate::tools::sink::{self, Fault, SinkHandle, SinkOptions};
use serde_json::{Value, json};
use support::{Seedgate, config_yaml, eventually};

/// The upstream e2e `Cluster` (a ready shoot), read in place.
fn upstream_cluster() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/upstream/gardener/examples/logging-tests-e2e-cluster.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap()
}

/// The upstream Cluster renamed to `name`, with `edit` applied to its shoot.
fn cluster(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut c = upstream_cluster();
    c["metadata"]["name"] = json!(name);
    edit(&mut c["spec"]["shoot"]);
    format!("  - name: {name}\n    cluster: {c}\n")
}

async fn tracking_sink() -> SinkHandle {
    sink::start(SinkOptions {
        track_namespaces: true,
        ..SinkOptions::default()
    })
    .await
    .unwrap()
}

/// Seqs a sink received per namespace at one endpoint key.
fn seqs_at(sink: &SinkHandle, key: &str) -> BTreeMap<String, HashSet<u64>> {
    sink.namespace_seqs()
        .into_iter()
        .filter(|((k, _), _)| k == key)
        .map(|((_, ns), seqs)| (ns, seqs))
        .collect()
}

fn shoots_block(shoot_sink: &SinkHandle, extra: &str) -> String {
    format!(
        "shoots:\n  signals: [logs]\n  endpoint_prefix: {}/\n  output: {{ type: otlp_http, compression: none, timeout: 2s }}\n  batch: {{ timeout: 20ms }}\n  retry: {{ initial_interval: 50ms, max_interval: 200ms }}\n{extra}",
        shoot_sink.http_endpoint()
    )
}

fn pipeline(name: &str, sink: &SinkHandle, input: &str) -> String {
    format!(
        "  - name: {name}\n    signals: [logs]\n{input}    output: {{ type: otlp_http, endpoint: {}, compression: none }}\n    batch: {{ timeout: 20ms }}\n",
        sink.http_endpoint()
    )
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
    let mut clusters = String::from("clusters:\n");
    clusters += "  - { name: shoot--p--creation, state: creation }\n";
    clusters += &cluster("shoot--p--ready", |_| {});
    clusters += &cluster("shoot--p--hibernating", |s| {
        s["spec"]["hibernation"]["enabled"] = json!(true);
    });
    clusters += &cluster("shoot--p--hibernated", |s| {
        s["spec"]["hibernation"]["enabled"] = json!(true);
        s["status"]["hibernated"] = json!(true);
    });
    clusters += "  - { name: shoot--p--waking, state: waking }\n";
    clusters += &cluster("shoot--p--deletion", |s| {
        s["metadata"]["deletionTimestamp"] = json!("2026-11-27T00:00:00Z");
    });
    clusters += "  - { name: shoot--p--migration, state: migration }\n";
    clusters += &cluster("shoot--p--restore", |s| {
        s["metadata"]["annotations"] = json!({"gardener.cloud/operation": "restore"});
    });
    clusters += &cluster("shoot--p--testing", |s| {
        s["spec"]["purpose"] = json!("testing");
    });
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "routing:\n  states:\n    migration: {{ shoot: false, seed: false }}\npipelines:\n{}{}{}{clusters}",
            pipeline("seed", &seed, ""),
            pipeline(
                "ops",
                &ops,
                "    input:\n      namespaces: { include: [garden, kube-system] }\n"
            ),
            shoots_block(&shoots, ""),
        ),
    );
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
        let mut all = seed.seqs();
        all.extend(ops.seqs());
        all.extend(shoots.seqs());
        let union = AckedSet::from_seqs(all.keys().copied());
        (acked.iter().all(|s| union.contains(s))
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

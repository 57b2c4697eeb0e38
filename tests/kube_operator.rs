//! seedgate as an operator against the API server double (no real API
//! server can run here): the real binary with `--kube` and a kubeconfig,
//! the real `kube` client inside it, the double speaking the Kubernetes
//! protocol (list/watch with resourceVersions and bookmarks, 404 while a CRD
//! is absent, 409 on stale writes).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use seedgate::effective_config::{self, AppliedPipeline};
use seedgate::metrics::Metrics;
use serde_json::{Value, json};
use support::apiserver::ApiServerDouble;
use support::{Seedgate, config_yaml, eventually, seqs_in, tracking_sink};

const GARDENER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/upstream/gardener/"
);

fn yaml_fixture(rel: &str) -> Value {
    let path = format!("{GARDENER}{rel}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap()
}

/// Gardener's `Cluster` CRD, read in place from the upstream fixture.
fn cluster_crd() -> CustomResourceDefinition {
    serde_json::from_value(yaml_fixture(
        "crds/10-crd-extensions.gardener.cloud_clusters.yaml",
    ))
    .unwrap()
}

/// The upstream e2e Cluster (a ready shoot) renamed to `name`.
fn cluster(name: &str) -> DynamicObject {
    let mut c = yaml_fixture("examples/logging-tests-e2e-cluster.yaml");
    c["metadata"]["name"] = json!(name);
    serde_json::from_value(c).unwrap()
}

fn clusters_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &seedgate::actors::kube_watcher::cluster_resource(),
    )
}

async fn client_for(api: &ApiServerDouble) -> kube::Client {
    support::install_crypto();
    let config = kube::Config::new(api.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

async fn send(sg: &Seedgate, ns: &str, first: u64) {
    let spec = seedgate::tools::records::RequestSpec {
        first_seq: first,
        records: 10,
        namespaces: &[ns.to_owned()],
        record_size: 100,
        time_unix_nano: 1,
    };
    let body = seedgate::tools::records::build_request(seedgate::signal::Signal::Logs, &spec)
        .encode_to_vec();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/logs", sg.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

async fn wait_metric(sg: &Seedgate, what: &str, name: &str, labels: &[&str], want: f64) {
    eventually(what, async || {
        (sg.metric(name, labels).await? == want).then_some(())
    })
    .await;
}

/// The Cluster CRD comes and goes: without it routing uses the file's
/// clusters; with it, Cluster resources decide, live; the process and the
/// data path carry on through all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_resources_drive_shoot_routing_while_their_crd_exists() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let (seed, shoots) = (tracking_sink().await, tracking_sink().await);
    let yaml = config_yaml(
        &dir.path().join("data"),
        &format!(
            "pipelines:\n  - name: seed\n    signals: [logs]\n    output: {{ type: otlp_http, endpoint: {}, compression: none }}\n    batch: {{ timeout: 20ms }}\nshoots:\n  endpoint_prefix: {}/\n  output: {{ type: otlp_http, compression: none }}\n  batch: {{ timeout: 20ms }}\nclusters:\n  - {{ name: shoot--p--static, state: ready }}\n",
            seed.http_endpoint(),
            shoots.http_endpoint()
        ),
    );
    let config_path = dir.path().join("seedgate.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let sg = Seedgate::start_opts(
        dir.path(),
        &config_path,
        &["--kube"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAMESPACE", "seedgate"),
        ],
    )
    .await;
    let (a, stat) = ("shoot--p--a", "shoot--p--static");
    let key_a = format!("/{a}");

    // 1. No Cluster CRD: the file's clusters alone.
    wait_metric(
        &sg,
        "the CRD watch",
        "seedgate_kube_watching",
        &["kind=\"CustomResourceDefinition\""],
        0.0,
    )
    .await;
    assert_eq!(
        sg.metric("seedgate_kube_watching", &["kind=\"Cluster\""])
            .await,
        Some(0.0)
    );
    send(&sg, a, 0).await;
    send(&sg, stat, 100).await;
    eventually(
        "no-cluster data at the seed, static at its shoot",
        async || {
            (seqs_in(&seed, "/", a, 0..10) == 10
                && seqs_in(&shoots, &format!("/{stat}"), stat, 100..110) == 10)
                .then_some(())
        },
    )
    .await;

    // 2. The CRD appears, then a ready Cluster: a's data goes to its shoot.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &cluster_crd())
        .await
        .unwrap();
    wait_metric(
        &sg,
        "the Cluster watch to start",
        "seedgate_kube_watching",
        &["kind=\"Cluster\""],
        1.0,
    )
    .await;
    let clusters = clusters_api(&client);
    let ready_at_its_shoot = async |first: u64| {
        clusters
            .create(&PostParams::default(), &cluster(a))
            .await
            .unwrap();
        wait_metric(
            &sg,
            "a ready",
            "seedgate_shoot_clusters",
            &["state=\"ready\""],
            2.0,
        )
        .await;
        send(&sg, a, first).await;
        eventually("a's data at its shoot", async || {
            (seqs_in(&shoots, &key_a, a, first..first + 10) == 10).then_some(())
        })
        .await;
        assert_eq!(seqs_in(&seed, "/", a, first..first + 10), 0);
    };
    ready_at_its_shoot(200).await;

    // 3. a hibernates (a live change of the resource): its data goes to the seed.
    let patch = json!({"spec": {"shoot": {"spec": {"hibernation": {"enabled": true}}, "status": {"hibernated": true}}}});
    clusters
        .patch(a, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_metric(
        &sg,
        "a hibernated",
        "seedgate_shoot_clusters",
        &["state=\"hibernated\""],
        1.0,
    )
    .await;
    send(&sg, a, 300).await;
    eventually("hibernated data at the seed", async || {
        (seqs_in(&seed, "/", a, 300..310) == 10).then_some(())
    })
    .await;
    assert_eq!(seqs_in(&shoots, &key_a, a, 300..310), 0);

    // 4. The CRD is deleted: the watch stops, the file's clusters apply,
    // the process and the data path carry on.
    crds.delete(
        "clusters.extensions.gardener.cloud",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    wait_metric(
        &sg,
        "the Cluster watch to stop",
        "seedgate_kube_watching",
        &["kind=\"Cluster\""],
        0.0,
    )
    .await;
    wait_metric(
        &sg,
        "only the static cluster",
        "seedgate_shoot_clusters",
        &["state=\"hibernated\""],
        0.0,
    )
    .await;
    send(&sg, a, 400).await;
    send(&sg, stat, 500).await;
    eventually("fallback routing", async || {
        (seqs_in(&seed, "/", a, 400..410) == 10
            && seqs_in(&shoots, &format!("/{stat}"), stat, 500..510) == 10)
            .then_some(())
    })
    .await;

    // 5. The CRD returns with a ready Cluster: picked up again.
    crds.create(&PostParams::default(), &cluster_crd())
        .await
        .unwrap();
    wait_metric(
        &sg,
        "the Cluster watch again",
        "seedgate_kube_watching",
        &["kind=\"Cluster\""],
        1.0,
    )
    .await;
    ready_at_its_shoot(600).await;

    // The only replica leads, through a Lease in its namespace.
    wait_metric(&sg, "leadership", "seedgate_kube_leader", &[], 1.0).await;
    let lease = api
        .object(
            "coordination.k8s.io",
            "leases",
            Some("seedgate"),
            "seedgate-leader",
        )
        .expect("the Lease exists");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease}"
    );
    assert!(
        reqwest::get(sg.admin_url("/healthz"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

/// Two replicas: exactly one holds the Lease; when it dies the other takes
/// over within the lease duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_a_takeover_when_it_dies() {
    let api = ApiServerDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let env = [
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("POD_NAMESPACE", "seedgate"),
    ];
    let start = async |n: usize| {
        let sub = dir.path().join(format!("r{n}"));
        std::fs::create_dir_all(&sub).unwrap();
        let yaml = config_yaml(
            &sub.join("data"),
            "pipelines:\n  - name: n\n    output: { type: noop }\n",
        );
        let path = sub.join("seedgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        Seedgate::start_opts(&sub, &path, &["--kube"], &env).await
    };
    let one = start(1).await;
    let two = start(2).await;
    let leaders = async |a: &Seedgate, b: &Seedgate| {
        a.metric("seedgate_kube_leader", &[]).await.unwrap_or(0.0)
            + b.metric("seedgate_kube_leader", &[]).await.unwrap_or(0.0)
    };
    eventually("one leader", async || {
        (leaders(&one, &two).await == 1.0).then_some(())
    })
    .await;
    // Stays one over a few rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(leaders(&one, &two).await, 1.0);
    let (mut leader, follower) = if one.metric("seedgate_kube_leader", &[]).await == Some(1.0) {
        (one, two)
    } else {
        (two, one)
    };
    let taken_at = std::time::Instant::now();
    leader.kill9();
    eventually("the follower takes over", async || {
        (follower.metric("seedgate_kube_leader", &[]).await? == 1.0).then_some(())
    })
    .await;
    let took = taken_at.elapsed();
    eprintln!("takeover after {took:?}");
    assert!(took < Duration::from_secs(15 + 2 + 5), "took {took:?}");
    let lease = api
        .object(
            "coordination.k8s.io",
            "leases",
            Some("seedgate"),
            "seedgate-leader",
        )
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    drop(leader);
}

/// A conflict storm on the effective-config ConfigMap: the writer re-reads,
/// merges and retries until it lands, and what another writer put in the
/// ConfigMap meanwhile survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_effective_config_survives_a_conflict_storm() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "seedgate");
    let metrics = Metrics::new();
    let first = [AppliedPipeline {
        kind: "LogPipeline".into(),
        name: "a".into(),
        generation: 1,
        secrets: Default::default(),
    }];
    effective_config::write(&cms, &first, &metrics)
        .await
        .unwrap();
    // Someone else adds a key.
    let mut theirs = cms.get(effective_config::NAME).await.unwrap();
    theirs
        .data
        .get_or_insert_with(Default::default)
        .insert("notes".into(), "theirs".into());
    cms.replace(effective_config::NAME, &PostParams::default(), &theirs)
        .await
        .unwrap();
    // Three conflicts in a row on the next writes.
    api.fail_next("PUT", "/api/v1/namespaces/seedgate/configmaps", 409, 3);
    let second = [AppliedPipeline {
        generation: 2,
        ..first[0].clone()
    }];
    effective_config::write(&cms, &second, &metrics)
        .await
        .unwrap();
    let cm = cms.get(effective_config::NAME).await.unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data["notes"], "theirs", "another writer's key was lost");
    let applied: Vec<AppliedPipeline> =
        serde_saphyr::from_str(&data[effective_config::KEY]).unwrap();
    assert_eq!(applied[0].generation, 2);
    assert_eq!(metrics.kube.configmap_conflicts.get(), 3);
    // An unchanged write writes nothing.
    let rv = cm.metadata.resource_version.clone();
    effective_config::write(&cms, &second, &metrics)
        .await
        .unwrap();
    assert_eq!(
        cms.get(effective_config::NAME)
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
}

//! seedgate as an operator against the API server double (no real API
//! server can run here): the real binary with `--kube` and a kubeconfig,
//! the real `kube` client inside it, the double speaking the Kubernetes
//! protocol (list/watch with resourceVersions and bookmarks, 404 while a CRD
//! is absent, 409 on stale writes).

use std::time::Duration;

use crate::support::apiserver::ApiServerDouble;
use crate::support::config::{self, Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, delivered_somewhere, eventually, seqs_in, tracking_sink};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use seedgate::cluster_state::ShootState;
use seedgate::config::{BatchConfig, Compression, OutputConfig, OutputType, ShootsConfig};
use seedgate::metrics::Metrics;
use seedgate::operator::effective_config::{self, AppliedPipeline};
use seedgate::signal::Signal;
use serde_json::{Value, json};

/// Gardener's `Cluster` CRD, read in place from the upstream fixture.
fn cluster_crd() -> CustomResourceDefinition {
    serde_json::from_value(support::gardener_yaml(
        "crds/10-crd-extensions.gardener.cloud_clusters.yaml",
    ))
    .unwrap()
}

/// The upstream e2e Cluster (a ready shoot) renamed to `name`.
fn cluster(name: &str) -> DynamicObject {
    let mut c = support::gardener_yaml("examples/logging-tests-e2e-cluster.yaml");
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

/// A pipeline of the file's: logs, uncompressed, to `sink` over OTLP/HTTP.
fn file_logs_to(name: &str, sink: &seedgate::tools::sink::SinkHandle) -> Pipeline {
    Pipeline::http(name, &sink.http_endpoint())
        .signals(&[Signal::Logs])
        .compression(Compression::None)
}

/// seedgate with `yaml` and `--kube`, pointed at the double.
async fn start_kube(api: &ApiServerDouble, dir: &std::path::Path, yaml: &str) -> Seedgate {
    let config_path = dir.join("seedgate.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let kubeconfig = api.kubeconfig(dir);
    Seedgate::start_opts(
        dir,
        &config_path,
        &["--kube"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAMESPACE", "seedgate"),
        ],
    )
    .await
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
    let shoot_output = OutputConfig {
        compression: Compression::None,
        ..OutputConfig::of_kind(OutputType::OtlpHttp)
    };
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(file_logs_to("seed", &seed).batch_timeout(ms(20)))
        .shoots(ShootsConfig {
            batch: Some(BatchConfig {
                timeout: ms(20),
                ..BatchConfig::default()
            }),
            ..config::shoots(&format!("{}/", shoots.http_endpoint()), shoot_output)
        })
        .cluster("shoot--p--static", ShootState::Ready)
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
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

    // The watch expires and the API server restarts: the watcher relists
    // (410 Gone) and the next change still arrives.
    api.compact();
    api.restart().await;
    eventually("the watch error to be seen and counted", async || {
        (sg.metric("seedgate_kube_watch_errors_total", &["kind=\"Cluster\""])
            .await?
            >= 1.0)
            .then_some(())
    })
    .await;

    // 3. a hibernates (a live change of the resource) while a stream of
    // its data runs: new data goes to the seed, nothing acked is lost.
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
            "1000",
        ],
        &[a],
        Duration::from_secs(4),
        10_000_000,
        &stream_acked,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    let summary = stream.await.unwrap().unwrap();
    let acked = seedgate::tools::acked::read_acked_file(&stream_acked).unwrap();
    assert!(acked.len() > 500, "{summary:?}");
    eventually("the whole stream delivered across the change", async || {
        delivered_somewhere(&[&seed, &shoots], &acked).then_some(())
    })
    .await;
    let (to_shoot, to_seed) = (
        seqs_in(&shoots, &key_a, a, 10_000_000..u64::MAX),
        seqs_in(&seed, "/", a, 10_000_000..u64::MAX),
    );
    assert!(
        to_shoot > 0 && to_seed > 0,
        "the stream was split by the change: shoot {to_shoot}, seed {to_seed}"
    );

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
        let yaml = TestConfig::new(&sub.join("data"))
            .pipeline(Pipeline::noop("n"))
            .yaml();
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

/// Creates the three pipeline CRDs and waits until seedgate watches
/// LogPipelines: the CRD and the LogPipeline APIs.
async fn install_pipeline_crds(
    client: &kube::Client,
    sg: &Seedgate,
) -> (
    Api<CustomResourceDefinition>,
    Api<seedgate::operator::crds::LogPipeline>,
) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in seedgate::operator::crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    wait_metric(
        sg,
        "LogPipelines watched",
        "seedgate_kube_watching",
        &["kind=\"LogPipeline\""],
        1.0,
    )
    .await;
    (crds, Api::all(client.clone()))
}

fn log_pipeline(name: &str, endpoint: Value) -> seedgate::operator::crds::LogPipeline {
    serde_json::from_value(json!({
        "apiVersion": "telemetry.kyma-project.io/v1beta1",
        "kind": "LogPipeline",
        "metadata": { "name": name },
        "spec": {
            "input": { "runtime": { "enabled": false }, "otlp": { "enabled": true } },
            "output": { "otlp": { "protocol": "http", "endpoint": endpoint, "compression": "none" } }
        }
    }))
    .unwrap()
}

/// The condition of `type_` on a pipeline, as `(status, reason, message)`.
async fn condition(
    api: &Api<seedgate::operator::crds::LogPipeline>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String, Option<i64>)> {
    let p = api.get_status(name).await.ok()?;
    let c = p
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message, c.observed_generation))
}

async fn wait_condition(
    api: &Api<seedgate::operator::crds::LogPipeline>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    eventually(&format!("{name}: {type_}={status} {reason}"), async || {
        let (s, r, m, generation) = condition(api, name, type_).await?;
        (s == status && r == reason && generation.is_some()).then_some(m)
    })
    .await
}

/// LogPipeline resources replace the file's log pipelines while their CRD
/// exists; each gets Kyma's conditions (a missing Secret, then the Secret,
/// an invalid endpoint, too many pipelines, a backend down and back); the
/// effective config is published; without the CRD the file's pipeline
/// takes the data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_pipelines_become_destinations_with_kyma_conditions() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let (file_sink, kube_sink) = (tracking_sink().await, tracking_sink().await);
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(file_logs_to("file-logs", &file_sink).batch_timeout(ms(20)))
        .with(|c| c.admin.unhealthy_after = secs(2))
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    let ns = "default";
    let to = async |sink: &seedgate::tools::sink::SinkHandle, first: u64| {
        send(&sg, ns, first).await;
        eventually("the records at the expected sink", async || {
            (seqs_in(sink, "/", ns, first..first + 10) == 10).then_some(())
        })
        .await;
    };
    to(&file_sink, 0).await;

    let (crds, pipelines) = install_pipeline_crds(&client, &sg).await;
    let from_secret = json!({"valueFrom": {"secretKeyRef": {"name": "otlp", "namespace": "seedgate", "key": "endpoint"}}});
    pipelines
        .create(
            &PostParams::default(),
            &log_pipeline("backend", from_secret),
        )
        .await
        .unwrap();
    let missing = wait_condition(
        &pipelines,
        "backend",
        "ConfigurationGenerated",
        "False",
        "ReferencedSecretMissing",
    )
    .await;
    assert_eq!(
        missing,
        "One or more referenced Secrets are missing: Secret 'otlp' of Namespace 'seedgate'"
    );

    // The Secret appears: the pipeline is applied and takes the logs.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "seedgate");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "otlp"},
        "stringData": {"endpoint": kube_sink.http_endpoint()}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "backend",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    wait_condition(
        &pipelines,
        "backend",
        "TelemetryFlowHealthy",
        "True",
        "FlowHealthy",
    )
    .await;
    to(&kube_sink, 100).await;
    assert_eq!(
        seqs_in(&file_sink, "/", ns, 100..110),
        0,
        "the file's log pipeline is replaced"
    );

    // An invalid endpoint: its own condition, the others keep running.
    pipelines
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "telemetry.kyma-project.io/v1beta1", "kind": "LogPipeline",
                "metadata": {"name": "bad"},
                "spec": {"input": {"runtime": {"enabled": false}},
                         "output": {"otlp": {"protocol": "grpc", "endpoint": {"value": "http://backend:4317/v1/logs"}}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let bad = wait_condition(
        &pipelines,
        "bad",
        "ConfigurationGenerated",
        "False",
        "EndpointInvalid",
    )
    .await;
    assert_eq!(
        bad,
        "OTLP output endpoint invalid: gRPC endpoints cannot contain paths"
    );
    to(&kube_sink, 200).await;

    // Too many pipelines: the youngest beyond five gets MaxPipelinesExceeded.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 1..=5 {
        pipelines
            .create(
                &PostParams::default(),
                &log_pipeline(&format!("p{i}"), json!({"value": "http://127.0.0.1:1"})),
            )
            .await
            .unwrap();
    }
    let max = wait_condition(
        &pipelines,
        "p5",
        "ConfigurationGenerated",
        "False",
        "MaxPipelinesExceeded",
    )
    .await;
    assert_eq!(max, "Maximum pipeline count limit exceeded");
    wait_condition(
        &pipelines,
        "p4",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    // Every replica exports the conditions for dashboards and alerts.
    let condition = |name: &str, reason: &str| {
        [
            format!("destination=\"logpipeline.{name}\""),
            "condition=\"ConfigurationGenerated\"".to_owned(),
            format!("reason=\"{reason}\""),
        ]
    };
    for (name, reason, value) in [
        ("p5", "MaxPipelinesExceeded", 0.0),
        ("bad", "EndpointInvalid", 0.0),
        ("p4", "GatewayConfigured", 1.0),
    ] {
        let labels = condition(name, reason);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        wait_metric(
            &sg,
            &format!("{name}'s ConfigurationGenerated in /metrics"),
            "seedgate_pipeline_condition",
            &labels,
            value,
        )
        .await;
    }
    let labels = [
        "destination=\"logpipeline.backend\"",
        "condition=\"TelemetryFlowHealthy\"",
        "reason=\"FlowHealthy\"",
    ];
    wait_metric(
        &sg,
        "backend's flow in /metrics",
        "seedgate_pipeline_condition",
        &labels,
        1.0,
    )
    .await;

    // The backend goes down: the flow condition says so, and recovers.
    kube_sink.go_down().await;
    send(&sg, ns, 300).await;
    wait_condition(
        &pipelines,
        "backend",
        "TelemetryFlowHealthy",
        "False",
        "GatewayAllTelemetryDataDropped",
    )
    .await;
    // Failing longer than admin.unhealthy_after: the gateway is not ready
    // for this pipeline.
    wait_condition(
        &pipelines,
        "backend",
        "GatewayHealthy",
        "False",
        "GatewayNotReady",
    )
    .await;
    kube_sink.come_up().await.unwrap();
    wait_condition(
        &pipelines,
        "backend",
        "GatewayHealthy",
        "True",
        "GatewayReady",
    )
    .await;
    wait_condition(
        &pipelines,
        "backend",
        "TelemetryFlowHealthy",
        "True",
        "FlowHealthy",
    )
    .await;
    eventually("the queued records after recovery", async || {
        (seqs_in(&kube_sink, "/", ns, 300..310) == 10).then_some(())
    })
    .await;

    // The effective configuration names the applied pipelines.
    let cm = api
        .object(
            "",
            "configmaps",
            Some("seedgate"),
            "seedgate-effective-config",
        )
        .expect("the effective-config ConfigMap");
    let text = cm["data"]["pipelines.yaml"].as_str().unwrap();
    assert!(
        text.contains("backend") && text.contains("p4") && !text.contains("p5"),
        "{text}"
    );

    // The CRD goes: the file's pipeline takes the logs again.
    crds.delete(
        "logpipelines.telemetry.kyma-project.io",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    wait_metric(
        &sg,
        "LogPipelines no longer watched",
        "seedgate_kube_watching",
        &["kind=\"LogPipeline\""],
        0.0,
    )
    .await;
    to(&file_sink, 400).await;
    let m = sg.metrics().await;
    assert!(
        !m.contains(
            "destination=\"logpipeline.p4\",signal=\"logs\",condition=\"ConfigurationGenerated\""
        ),
        "the pipelines' conditions go with their CRD"
    );

    // The CRD returns: a pipeline created again is picked up again.
    let log_crd = seedgate::operator::crds::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("logpipelines.telemetry.kyma-project.io"))
        .unwrap();
    crds.create(&PostParams::default(), &log_crd).await.unwrap();
    wait_metric(
        &sg,
        "LogPipelines watched again",
        "seedgate_kube_watching",
        &["kind=\"LogPipeline\""],
        1.0,
    )
    .await;
    let again = json!({"value": kube_sink.http_endpoint()});
    pipelines
        .create(&PostParams::default(), &log_pipeline("backend", again))
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "backend",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    to(&kube_sink, 500).await;
}

/// A pipeline's endpoint from a Secret follows that Secret through the
/// pipeline actor's watch of exactly that Secret (a `metadata.name` field
/// selector, what RBAC `resourceNames` authorises): a change reaches the
/// data path within seconds and a deletion the status, with no GET of the
/// Secret at all (a periodic re-read cannot be what did it). A Secret whose
/// list is refused makes the pipeline `ValidationFailed` until a list
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_is_applied_through_its_watch() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let (sink_a, sink_b) = (tracking_sink().await, tracking_sink().await);
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(Pipeline::noop("file-logs").signals(&[Signal::Logs]))
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    wait_metric(&sg, "leadership", "seedgate_kube_leader", &[], 1.0).await;
    let (_, pipelines) = install_pipeline_crds(&client, &sg).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "seedgate");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "otlp"},
        "stringData": {"endpoint": sink_a.http_endpoint()}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let from_secret = json!({"valueFrom": {"secretKeyRef": {"name": "otlp", "namespace": "seedgate", "key": "endpoint"}}});
    pipelines
        .create(
            &PostParams::default(),
            &log_pipeline("backend", from_secret),
        )
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "backend",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    let ns = "default";
    send(&sg, ns, 0).await;
    eventually("the records at sink A", async || {
        (seqs_in(&sink_a, "/", ns, 0..10) == 10).then_some(())
    })
    .await;

    // The Secret is read by a list and a watch narrowed to its name, and
    // never with a GET of the object.
    let reads: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/api/v1/namespaces/seedgate/secrets"))
        .collect();
    assert!(
        reads.iter().any(|r| r.is_watch()
            && r.path == "/api/v1/namespaces/seedgate/secrets"
            && r.query.contains("fieldSelector=metadata.name%3Dotlp")),
        "no watch of the Secret by name: {reads:#?}"
    );
    assert!(
        reads
            .iter()
            .all(|r| r.path == "/api/v1/namespaces/seedgate/secrets"
                && r.param("fieldSelector") == Some("metadata.name=otlp")),
        "a Secret read not narrowed to the one Secret: {reads:#?}"
    );

    // The Secret now names sink B: data sent afterwards arrives there.
    let mut changed = secrets.get("otlp").await.unwrap();
    changed.data.get_or_insert_with(Default::default).insert(
        "endpoint".into(),
        k8s_openapi::ByteString(sink_b.http_endpoint().into_bytes()),
    );
    let changed_at = std::time::Instant::now();
    secrets
        .replace("otlp", &PostParams::default(), &changed)
        .await
        .unwrap();
    let mut first = 1000;
    let took = loop {
        send(&sg, ns, first).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if seqs_in(&sink_b, "/", ns, 1000..u64::MAX) > 0 {
            break changed_at.elapsed();
        }
        assert!(
            changed_at.elapsed() < support::patience(),
            "the Secret change never reached the data path"
        );
        first += 10;
    };
    eprintln!("the Secret change reached the data path after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "a Secret change took {took:?}: the watch should apply it at once"
    );
    send(&sg, ns, 5000).await;
    eventually("the records at sink B", async || {
        (seqs_in(&sink_b, "/", ns, 5000..5010) == 10).then_some(())
    })
    .await;
    assert_eq!(seqs_in(&sink_a, "/", ns, 5000..5010), 0);

    // The Secret is deleted: ReferencedSecretMissing, through the watch.
    let deleted_at = std::time::Instant::now();
    secrets
        .delete("otlp", &DeleteParams::default())
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "backend",
        "ConfigurationGenerated",
        "False",
        "ReferencedSecretMissing",
    )
    .await;
    let took = deleted_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "deletion seen after {took:?}"
    );

    // A namespace whose Secrets seedgate may not list: ValidationFailed,
    // counted; once a list succeeds, what it finds decides.
    api.fail_next("GET", "/api/v1/namespaces/locked/secrets", 403, 3);
    let locked = json!({"valueFrom": {"secretKeyRef": {"name": "otlp", "namespace": "locked", "key": "endpoint"}}});
    pipelines
        .create(&PostParams::default(), &log_pipeline("locked", locked))
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "locked",
        "ConfigurationGenerated",
        "False",
        "ValidationFailed",
    )
    .await;
    wait_condition(
        &pipelines,
        "locked",
        "ConfigurationGenerated",
        "False",
        "ReferencedSecretMissing",
    )
    .await;
    assert!(
        sg.metric("seedgate_kube_watch_errors_total", &["kind=\"Secret\""])
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        sg.metric("seedgate_actor_restarts_total", &["actor=\"pipeline\""])
            .await
            .unwrap_or(0.0),
        0.0,
        "no pipeline actor failed"
    );
}

/// A self-signed certificate (a CA) and its key, valid until `days` from
/// now (negative: expired), as PEM, with its notAfter date as Kyma prints it.
fn self_signed(days: i64) -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["backend".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let (from, to) = (now - 30 * 86_400, now + days * 86_400);
    let at = |t: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(t as u64);
    params.not_before = at(from);
    params.not_after = at(to);
    let cert = params.self_signed(&key).unwrap();
    let date = k8s_openapi::jiff::Timestamp::from_second(to)
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    (cert.pem(), key.serialize_pem(), date)
}

/// TLS material in a pipeline gets Kyma's reasons and messages through the
/// binary: a certificate without its key, an expired certificate, a CA that
/// expires within 14 days (applied, with the warning), and a valid one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_material_gets_kyma_reasons_and_messages() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = TestConfig::new(&dir.path().join("data")).yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    let (_, pipelines) = install_pipeline_crds(&client, &sg).await;
    let (valid_cert, valid_key, _) = self_signed(365);
    let (expired_cert, expired_key, expired_on) = self_signed(-2);
    let (soon_ca, _, soon_until) = self_signed(5);
    let (_, other_key, _) = self_signed(365);
    let value = |pem: &str| json!({ "value": pem });
    // A certificate without its key is Kyma's API refusal, not a condition.
    let mut half = serde_json::to_value(log_pipeline(
        "half",
        json!({ "value": "https://backend.example:4318" }),
    ))
    .unwrap();
    half["spec"]["output"]["otlp"]["tls"] = json!({ "cert": value(&valid_cert) });
    let refused = pipelines
        .create(
            &PostParams::default(),
            &serde_json::from_value(half).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(
            "spec.output.otlp.tls: Invalid value: \"object\": Can define either both 'cert' and 'key', or neither"
        ),
        "{refused}"
    );
    for (name, tls) in [
        (
            "half",
            json!({ "cert": value(&valid_cert), "key": value(&other_key) }),
        ),
        (
            "expired",
            json!({ "cert": value(&expired_cert), "key": value(&expired_key) }),
        ),
        ("soon", json!({ "ca": value(&soon_ca) })),
        (
            "valid",
            json!({ "cert": value(&valid_cert), "key": value(&valid_key) }),
        ),
    ] {
        let mut p = serde_json::to_value(log_pipeline(
            name,
            json!({ "value": "https://backend.example:4318" }),
        ))
        .unwrap();
        p["spec"]["output"]["otlp"]["tls"] = tls;
        pipelines
            .create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();
    }
    let half = wait_condition(
        &pipelines,
        "half",
        "ConfigurationGenerated",
        "False",
        "TLSConfigurationInvalid",
    )
    .await;
    assert_eq!(
        half,
        "TLS configuration invalid: certificate and private key do not match"
    );
    let expired = wait_condition(
        &pipelines,
        "expired",
        "ConfigurationGenerated",
        "False",
        "TLSCertificateExpired",
    )
    .await;
    assert_eq!(expired, format!("TLS certificate expired on {expired_on}"));
    let soon = wait_condition(
        &pipelines,
        "soon",
        "ConfigurationGenerated",
        "True",
        "TLSCertificateAboutToExpire",
    )
    .await;
    assert_eq!(
        soon,
        format!(
            "TLS CA certificate is about to expire, configured certificate is valid until {soon_until}"
        )
    );
    wait_condition(
        &pipelines,
        "valid",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    // Refused pipelines get the other two conditions as Kyma gives them.
    wait_condition(
        &pipelines,
        "half",
        "GatewayHealthy",
        "False",
        "GatewayConfigurationNotGenerated",
    )
    .await;
    // The same verdicts in /metrics.
    for (name, reason, value) in [
        ("half", "TLSConfigurationInvalid", 0.0),
        ("expired", "TLSCertificateExpired", 0.0),
        ("soon", "TLSCertificateAboutToExpire", 1.0),
    ] {
        let labels = [
            format!("destination=\"logpipeline.{name}\""),
            format!("reason=\"{reason}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        wait_metric(
            &sg,
            &format!("{name} in /metrics"),
            "seedgate_pipeline_condition",
            &labels,
            value,
        )
        .await;
    }
}

/// One pipeline actor panics (fault injection): it alone is restarted and
/// counted; both pipelines keep delivering every record sent before,
/// during and after, and the sibling's actor is never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_pipeline_actor_restarts_alone() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let (a_sink, b_sink) = (tracking_sink().await, tracking_sink().await);
    let yaml = TestConfig::new(&dir.path().join("data"))
        .with(|c| c.admin.fault_injection = true)
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    let (_, pipelines) = install_pipeline_crds(&client, &sg).await;
    for (name, sink) in [("a", &a_sink), ("b", &b_sink)] {
        pipelines
            .create(
                &PostParams::default(),
                &log_pipeline(name, json!({ "value": sink.http_endpoint() })),
            )
            .await
            .unwrap();
        wait_condition(
            &pipelines,
            name,
            "ConfigurationGenerated",
            "True",
            "GatewayConfigured",
        )
        .await;
    }
    let ns = "default";
    let both = async |first: u64| {
        send(&sg, ns, first).await;
        eventually("the records at both pipelines' sinks", async || {
            (seqs_in(&a_sink, "/", ns, first..first + 10) == 10
                && seqs_in(&b_sink, "/", ns, first..first + 10) == 10)
                .then_some(())
        })
        .await;
    };
    both(0).await;
    let restarts = "seedgate_actor_restarts_total";
    let pipeline = ["actor=\"pipeline\""];
    assert_eq!(sg.metric(restarts, &pipeline).await, Some(0.0));

    let crash = reqwest::Client::new()
        .post(sg.admin_url("/debug/pipelines/logpipeline.a/crash"))
        .send()
        .await
        .unwrap();
    assert_eq!(crash.status(), 202);
    both(100).await;
    wait_metric(&sg, "one pipeline restart", restarts, &pipeline, 1.0).await;
    eventually("the restart logged with its cause", async || {
        sg.log()
            .contains("fault injected into the pipeline actor of logpipeline.a")
            .then_some(())
    })
    .await;
    // The restarted actor lists and reports again; nothing else moves.
    both(200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sg.metric(restarts, &pipeline).await,
        Some(1.0),
        "only the crashed actor restarted"
    );
    let (status, reason, _, _) = condition(&pipelines, "a", "ConfigurationGenerated")
        .await
        .unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "GatewayConfigured")
    );
    assert_eq!(
        sg.metric("seedgate_actor_restarts_total", &["actor=\"delivery\""])
            .await,
        Some(0.0),
        "no delivery loop restarted"
    );
}

/// A slow backend lets a LogPipeline's queue fill: its status says
/// `AgentBufferFillingUp` although nothing scrapes `/metrics` (the health
/// actor reads the queues itself, not gauges a scrape refreshes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_buffer_shows_in_the_status_without_a_scrape() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let slow = seedgate::tools::sink::start(seedgate::tools::sink::SinkOptions {
        fault: seedgate::tools::sink::Fault {
            latency: Some(Duration::from_secs(3)),
            ..seedgate::tools::sink::Fault::default()
        },
        ..seedgate::tools::sink::SinkOptions::default()
    })
    .await
    .unwrap();
    let yaml = TestConfig::new(&dir.path().join("data")).yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    let (_, pipelines) = install_pipeline_crds(&client, &sg).await;
    let mut p = serde_json::to_value(log_pipeline(
        "slow",
        json!({ "value": slow.http_endpoint() }),
    ))
    .unwrap();
    p["spec"]["seedgate"] = json!({ "queue": { "maxBytes": "64KiB", "whenFull": "dropNewest" } });
    pipelines
        .create(&PostParams::default(), &serde_json::from_value(p).unwrap())
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "slow",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;
    // Logs keep coming while the status is watched: the queue stays full.
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let sending = tokio::spawn(async move {
        let c = reqwest::Client::new();
        for i in 0.. {
            let body = seedgate::tools::records::build_request(
                seedgate::signal::Signal::Logs,
                &seedgate::tools::records::RequestSpec {
                    first_seq: i * 10,
                    records: 10,
                    namespaces: &["default".to_owned()],
                    record_size: 100,
                    time_unix_nano: 1,
                },
            )
            .encode_to_vec();
            c.post(&url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .ok();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    wait_condition(
        &pipelines,
        "slow",
        "TelemetryFlowHealthy",
        "False",
        "AgentBufferFillingUp",
    )
    .await;
    sending.abort();
}

/// Kyma's own pipelines (its v1beta1 samples and load-test pipelines, read
/// in place), applied as they are, each under a name of its own: the API
/// server accepts every one, and every one reaches a defined status. Those
/// seedgate can run are applied (`GatewayConfigured`, in the effective
/// config); the others are not applied at all, with the reason a user can
/// act on: a Fluent Bit output or an agent input names its field, a missing
/// Secret names the Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyma_samples_reach_a_defined_status() {
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = tracking_sink().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(file_logs_to("file-logs", &sink))
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    install_pipeline_crds(&client, &sg).await;
    // (file, the pipeline's kind, what ConfigurationGenerated says)
    let samples = [
        (
            "upstream-samples/v1beta1/telemetry_v1beta1_logpipeline_fluentbit.yaml",
            "LogPipeline",
            ("ReferencedSecretMissing", "Secret 'log-sink-credentials'"),
        ),
        (
            "load-tests/log-fluentbit-test-setup.yaml",
            "LogPipeline",
            ("GatewayConfigured", ""),
        ),
        (
            "docs/02-logs-L77-v1beta1-logpipeline-http-backend.yaml",
            "LogPipeline",
            (
                "EndpointInvalid",
                "host \"https://myhost/logs\" must be a host name",
            ),
        ),
        (
            "upstream-samples/v1beta1/telemetry_v1beta1_logpipeline_otel_input_runtime.yaml",
            "LogPipeline",
            ("ReferencedSecretMissing", "Secret 'log-sink-credentials'"),
        ),
        (
            "upstream-samples/v1beta1/telemetry_v1beta1_metricpipeline.yaml",
            "MetricPipeline",
            ("UnsupportedFeature", "spec.input.runtime"),
        ),
        (
            "load-tests/metric-load-test-setup.yaml",
            "MetricPipeline",
            ("GatewayConfigured", ""),
        ),
        (
            "upstream-samples/v1beta1/telemetry_v1beta1_tracepipeline.yaml",
            "TracePipeline",
            ("ReferencedSecretMissing", "Secret 'trace-sink-credentials'"),
        ),
        (
            "load-tests/trace-load-test-setup.yaml",
            "TracePipeline",
            ("GatewayConfigured", ""),
        ),
    ];
    let mut applied_names = Vec::new();
    for (i, (file, kind, (reason, names))) in samples.iter().enumerate() {
        let text = std::fs::read_to_string(format!("{}{file}", support::KYMA_SAMPLES)).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let mut doc = docs
            .into_iter()
            .find(|d| d["kind"] == *kind && d["apiVersion"] == "telemetry.kyma-project.io/v1beta1")
            .unwrap_or_else(|| panic!("{file}: no {kind}"));
        let name = format!("sample-{i}");
        doc["metadata"] = json!({ "name": name });
        let pipelines = pipeline_api(&client, kind);
        pipelines
            .create(
                &PostParams::default(),
                &serde_json::from_value(doc).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("{file}: the API server refused it: {e}"));
        let message = eventually(
            &format!("{file}: ConfigurationGenerated {reason}"),
            async || {
                let p = pipelines.get_status(&name).await.ok()?;
                let c = p.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "ConfigurationGenerated")?
                    .clone();
                (c["reason"] == *reason).then(|| c["message"].as_str().unwrap().to_owned())
            },
        )
        .await;
        assert!(message.contains(names), "{file}: {message}");
        if *reason == "GatewayConfigured" {
            applied_names.push(name);
        }
    }
    // Only the applied ones are in the effective config: nothing half-applied.
    let cms: Api<ConfigMap> = Api::namespaced(client, "seedgate");
    eventually(
        "the effective config lists exactly the applied pipelines",
        async || {
            let cm = cms.get(effective_config::NAME).await.ok()?;
            let applied: Vec<AppliedPipeline> =
                serde_saphyr::from_str(&cm.data?[effective_config::KEY]).ok()?;
            let mut names: Vec<String> = applied.into_iter().map(|p| p.name).collect();
            names.sort();
            (names == applied_names).then_some(())
        },
    )
    .await;
}

/// The pipelines of one kind, untyped.
fn pipeline_api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    use kube::discovery::ApiResource;
    use seedgate::operator::crds::{LogPipeline, MetricPipeline, TracePipeline};
    let resource = match kind {
        "LogPipeline" => ApiResource::erase::<LogPipeline>(&()),
        "MetricPipeline" => ApiResource::erase::<MetricPipeline>(&()),
        _ => ApiResource::erase::<TracePipeline>(&()),
    };
    Api::all_with(client.clone(), &resource)
}

/// A LogPipeline with Kyma's `http` (Fluent Bit) output, its host name in
/// the pipeline and its credentials in a Secret: seedgate sends the logs
/// of the selected namespaces as Fluent Bit's HTTP output does (a gzipped
/// JSON array of records, basic authentication) over TLS verified with the
/// pipeline's CA, and through an outage of the backend every acknowledged
/// record arrives; a system namespace, not selected, never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_output_log_pipeline_delivers_fluent_bit_json_over_tls_through_an_outage() {
    use base64::Engine as _;
    use support::pki::{Ca, SinkSpec, TlsSink};
    let api = ApiServerDouble::start().await;
    let client = client_for(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("log backend CA");
    let server = ca.leaf(&["127.0.0.1"], 30);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("fluent:s3cret")
    );
    let backend = TlsSink::start(SinkSpec {
        authorization: vec![basic.clone()],
        ..SinkSpec::new(&server)
    })
    .await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(20))
        .retry(ms(100), ms(500))
        .yaml();
    let sg = start_kube(&api, dir.path(), &yaml).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "backend");
    let secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "backend"},
        "stringData": {"user": "fluent", "password": "s3cret"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let (_crds, pipelines) = install_pipeline_crds(&client, &sg).await;
    let from = |key: &str| json!({"valueFrom": {"secretKeyRef": {"name": "creds", "namespace": "backend", "key": key}}});
    let pipeline: seedgate::operator::crds::LogPipeline = serde_json::from_value(json!({
        "apiVersion": "telemetry.kyma-project.io/v1beta1",
        "kind": "LogPipeline",
        "metadata": { "name": "fluent" },
        "spec": {
            "input": { "runtime": { "namespaces": { "include": ["shop", "kube-system"] } } },
            "output": { "http": {
                "host": { "value": "127.0.0.1" },
                "port": backend.sink.http_addr().port().to_string(),
                "uri": "/fluent",
                "user": from("user"),
                "password": from("password"),
                "compress": "gzip",
                "format": "json",
                "dedot": true,
                "tls": { "ca": { "value": ca.pem } }
            } }
        }
    }))
    .unwrap();
    pipelines
        .create(&PostParams::default(), &pipeline)
        .await
        .unwrap();
    wait_condition(
        &pipelines,
        "fluent",
        "ConfigurationGenerated",
        "True",
        "GatewayConfigured",
    )
    .await;

    // Logs of `shop` stream in; the backend goes down for 3 s meanwhile.
    let acked = dir.path().join("acked.txt");
    let run = support::stream(
        sg.grpc_endpoint(),
        &["--rate", "1000", "--records-per-request", "20"],
        &["shop"],
        Duration::from_secs(6),
        0,
        &acked,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    backend.sink.go_down().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    backend.sink.come_up().await.unwrap();
    let summary = run.await.unwrap().unwrap();
    assert!(summary.records_acked >= 1_000, "{summary:?}");
    let acked = seedgate::tools::acked::read_acked_file(&acked).unwrap();
    support::all_delivered(&backend.sink, &acked).await;
    // `kube-system` is selected by name; `default` is not selected.
    send(&sg, "kube-system", 1_000_000).await;
    send(&sg, "default", 2_000_000).await;
    eventually("the kube-system records at the backend", async || {
        let stats = backend.sink.stats();
        (stats
            .endpoints
            .get("/fluent")?
            .namespaces
            .get("kube-system")
            == Some(&10))
        .then_some(())
    })
    .await;
    let stats = backend.sink.stats();
    let endpoint = &stats.endpoints["/fluent"];
    assert_eq!(
        endpoint.namespaces.keys().collect::<Vec<_>>(),
        ["kube-system", "shop"],
        "{stats:?}"
    );
    assert_eq!(stats.requests_unauthorized, 0, "{stats:?}");
    assert_eq!(stats.requests_invalid, 0, "{stats:?}");
    let headers = &stats.last_headers;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["authorization"], basic);
}

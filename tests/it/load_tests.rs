//! The load-test material in `load-tests/` works against the real seedgate,
//! without k6 or ghz on the machine:
//! - every k6 script is valid ES-module JavaScript (`node --check`);
//! - the k6 payload builders (`load-tests/k6/lib/otlp.js`) run under plain
//!   node (they import nothing from k6), and the OTLP/JSON body each builds
//!   is answered 200 by seedgate's OTLP/HTTP receiver with nothing rejected,
//!   and every record in it is counted in
//!   `seedgate_receiver_records_total{transport="http"}`;
//! - the protobuf bodies `load-tests/k6/make-payloads.py` pre-encodes for
//!   `protobuf.js` are accepted as `application/x-protobuf` and counted;
//! - `load-tests/ghz/make-protoset.py` writes a protoset from the installed
//!   `opentelemetry-proto` package, every ghz config's `call` names a method
//!   in it, and every config's `data` (templates filled in as ghz would,
//!   converted to binary with protobuf's `json_format` against that
//!   protoset) is accepted by seedgate's OTLP/gRPC `Export` and counted in
//!   `seedgate_receiver_records_total{transport="grpc"}`.
//!
//! node and the Python packages of `tests/requirements.txt` are needed;
//! without them the tests fail with the install command, they do not skip.

use std::path::{Path, PathBuf};

use crate::support::config::{Pipeline, TestConfig};
use crate::support::{self, Seedgate, eventually};
use serde_json::Value;

const NODE_HINT: &str =
    "node (Node.js 18+) is needed: install it, e.g. `apt-get install nodejs` or https://nodejs.org";
const PY_HINT: &str = "python3 with the packages of tests/requirements.txt is needed: run `python3 -m pip install -r tests/requirements.txt` (scripts/test.sh does)";

const SIGNALS: [&str; 3] = ["logs", "metrics", "traces"];

/// seedgate in `dir` whose one pipeline, `noop`, takes every signal, so
/// every record counts as accepted.
async fn noop_seedgate(dir: &Path) -> Seedgate {
    let yaml = TestConfig::new(&dir.join("data"))
        .pipeline(Pipeline::noop("load"))
        .yaml();
    Seedgate::start(dir, &yaml).await
}

fn load_tests() -> PathBuf {
    support::repo().join("load-tests")
}

/// Runs `program args...`; panics with `hint` when it cannot be started and
/// with its stderr when it fails.
fn js_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            js_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "js") {
            out.push(path);
        }
    }
}

/// Log records, data points or spans in an OTLP/JSON request: counted here,
/// independently of the builders' own `recordCount`.
fn records_in(signal: &str, body: &Value) -> u64 {
    let (outer, inner, leaf) = match signal {
        "logs" => ("resourceLogs", "scopeLogs", "logRecords"),
        "traces" => ("resourceSpans", "scopeSpans", "spans"),
        _ => ("resourceMetrics", "scopeMetrics", "metrics"),
    };
    let mut n = 0;
    for r in body[outer].as_array().unwrap() {
        for s in r[inner].as_array().unwrap() {
            for item in s[leaf].as_array().unwrap() {
                n += if signal == "metrics" {
                    [
                        "sum",
                        "gauge",
                        "histogram",
                        "summary",
                        "exponentialHistogram",
                    ]
                    .iter()
                    .filter_map(|k| item[*k]["dataPoints"].as_array())
                    .map(|p| p.len() as u64)
                    .sum()
                } else {
                    1
                };
            }
        }
    }
    n
}

async fn wait_for_count(sg: &Seedgate, signal: &str, transport: &str, want: u64) {
    let labels = [
        format!("signal=\"{signal}\""),
        format!("transport=\"{transport}\""),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let mut last = None;
    eventually(
        &format!(
            "seedgate_receiver_records_total{{signal={signal},transport={transport}}} == {want}"
        ),
        async || {
            last = sg.metric("seedgate_receiver_records_total", &labels).await;
            (last == Some(want as f64)).then_some(())
        },
    )
    .await;
}

/// POSTs `body` to `/v1/<signal>` and asserts a 200 with no rejected records.
async fn post(sg: &Seedgate, signal: &str, content_type: &str, body: Vec<u8>) {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/{signal}", sg.http_endpoint()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(
        status, 200,
        "{signal} ({content_type}) answered {status}: {text}"
    );
    if content_type == "application/json" {
        let v: Value = serde_json::from_str(&text).unwrap();
        let rejected = v["partialSuccess"]
            .as_object()
            .map(|p| {
                p.iter()
                    .filter(|(k, _)| k.starts_with("rejected"))
                    .map(|(_, v)| v.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        assert!(
            rejected.iter().all(|r| r == "0" || r == 0),
            "{signal}: seedgate rejected records: {text}"
        );
    }
}

#[test]
fn every_k6_script_is_a_valid_es_module() {
    let mut scripts = Vec::new();
    js_files(&load_tests().join("k6"), &mut scripts);
    scripts.sort();
    let names: Vec<String> = scripts
        .iter()
        .map(|p| p.strip_prefix(load_tests()).unwrap().display().to_string())
        .collect();
    for want in [
        "k6/logs.js",
        "k6/metrics.js",
        "k6/traces.js",
        "k6/mixed.js",
        "k6/protobuf.js",
        "k6/lib/otlp.js",
        "k6/lib/run.js",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing among {names:?}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    for (script, name) in scripts.iter().zip(&names) {
        // A copy with the .mjs extension is parsed as an ES module whatever
        // package.json says; `import http from 'k6/http'` is syntax only here.
        let copy = tmp
            .path()
            .join(name.replace('/', "_"))
            .with_extension("mjs");
        std::fs::copy(script, &copy).unwrap();
        support::run("node", &["--check", copy.to_str().unwrap()], NODE_HINT);
        let text = std::fs::read_to_string(script).unwrap();
        if name.starts_with("k6/lib/otlp") {
            assert!(
                !text.contains("from 'k6"),
                "{name} must stay free of k6 imports"
            );
        }
    }
    // What every scenario runs with: ramping arrival rate, error-rate and p99 thresholds, BASE_URL from the environment.
    let common = std::fs::read_to_string(load_tests().join("k6/lib/run.js")).unwrap();
    for want in [
        "'ramping-arrival-rate'",
        "http_req_failed: ['rate<0.01']",
        "p(99)<",
        "__ENV.BASE_URL",
    ] {
        assert!(common.contains(want), "k6/lib/run.js lacks {want}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_json_bodies_are_accepted_and_counted() {
    let lib = url_of(&load_tests().join("k6/lib/otlp.js"));
    let script = format!(
        "import {{ namespaces, SIGNALS, recordCount }} from {lib:?};
         const ns = namespaces(50);
         const out = {{}};
         for (const [signal, s] of Object.entries(SIGNALS)) {{
           const body = s.build({{ namespace: ns[7], records: 25 }});
           out[signal] = {{ path: s.path, body, count: recordCount(signal, body) }};
         }}
         out.namespaces = ns;
         process.stdout.write(JSON.stringify(out));"
    );
    let out = support::run("node", &["--input-type=module", "-e", &script], NODE_HINT);
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ns: Vec<&str> = built["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ns.len(), 50);
    assert!(
        ns.iter()
            .all(|n| n.starts_with("shoot--") && n.split("--").count() == 3),
        "{ns:?}"
    );
    assert_eq!(
        ns.iter().collect::<std::collections::HashSet<_>>().len(),
        50,
        "tenants must differ"
    );

    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let sg = noop_seedgate(dir.path()).await;
    for signal in SIGNALS {
        let entry = &built[signal];
        assert_eq!(entry["path"], format!("/v1/{signal}"));
        let body = &entry["body"];
        let count = records_in(signal, body);
        assert_eq!(
            count, 25,
            "{signal}: the builder made {count} records, asked for 25"
        );
        assert_eq!(entry["count"], count, "{signal}: recordCount disagrees");
        let text = body.to_string();
        assert!(text.contains(ns[7]), "{signal}: k8s.namespace.name missing");
        post(&sg, signal, "application/json", text.into_bytes()).await;
        wait_for_count(&sg, signal, "http", count).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_protobuf_payloads_are_accepted_and_counted() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let payloads = dir.path().join("payloads");
    let script = load_tests().join("k6/make-payloads.py");
    support::run(
        "python3",
        &[
            script.to_str().unwrap(),
            "--count",
            "2",
            "--records",
            "30",
            "--out",
            payloads.to_str().unwrap(),
        ],
        PY_HINT,
    );
    let sg = noop_seedgate(dir.path()).await;
    for signal in SIGNALS {
        for i in 0..2 {
            let body = std::fs::read(payloads.join(format!("{signal}-{i}.pb"))).unwrap();
            post(&sg, signal, "application/x-protobuf", body).await;
        }
        wait_for_count(&sg, signal, "http", 60).await;
    }
}

/// Loads the protoset, checks each ghz config's `call` against it and writes
/// each config's `data` as binary (`<signal>.bin`) after filling in ghz's
/// call templates; prints the methods and, per config, `signal records`.
const GHZ_CHECK: &str = r#"
import json, re, sys
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
protoset, out_dir, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
fds = descriptor_pb2.FileDescriptorSet()
fds.ParseFromString(open(protoset, "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
methods = {}
for f in fds.file:
    for s in f.service:
        for m in s.method:
            methods[f"{f.package}.{s.name}.{m.name}"] = m.input_type.lstrip(".")
print(json.dumps(sorted(methods)))
TEMPLATES = {"WorkerID": "g0c0w3", "RequestNumber": "17", "TimestampUnix": "1700000000", "UUID": "00000000-0000-4000-8000-000000000000"}
for path in configs:
    cfg = json.load(open(path))
    call = cfg["call"]
    if call not in methods:
        sys.exit(f"{path}: call {call} is not in the protoset (it has {sorted(methods)})")
    text = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: TEMPLATES[m.group(1)], json.dumps(cfg["data"]))
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(methods[call]))
    msg = json_format.Parse(text, cls())
    signal = call.split(".")[3]
    signal = {"trace": "traces"}.get(signal, signal)
    open(f"{out_dir}/{signal}.bin", "wb").write(msg.SerializeToString())
    print(json.dumps({"config": path, "signal": signal, "call": call}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghz_configs_call_protoset_methods_and_their_data_is_accepted() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
    };
    use prost::Message;

    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let protoset = dir.path().join("otlp.protoset");
    let made = support::run(
        "python3",
        &[
            load_tests().join("ghz/make-protoset.py").to_str().unwrap(),
            "--out",
            protoset.to_str().unwrap(),
        ],
        PY_HINT,
    );
    let listed = String::from_utf8(made.stdout).unwrap();
    let ghz = load_tests().join("ghz");
    let mut configs: Vec<String> = std::fs::read_dir(&ghz)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.display().to_string())
        .collect();
    configs.sort();
    assert_eq!(configs.len(), 3, "one ghz config per signal: {configs:?}");
    let mut args = vec![
        "-c",
        GHZ_CHECK,
        protoset.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ];
    args.extend(configs.iter().map(String::as_str));
    let out = String::from_utf8(support::run("python3", &args, PY_HINT).stdout).unwrap();
    let mut lines = out.lines();
    let methods: Vec<String> = serde_json::from_str(lines.next().unwrap()).unwrap();
    for want in [
        "opentelemetry.proto.collector.logs.v1.LogsService.Export",
        "opentelemetry.proto.collector.metrics.v1.MetricsService.Export",
        "opentelemetry.proto.collector.trace.v1.TraceService.Export",
    ] {
        assert!(
            methods.iter().any(|m| m == want),
            "{want} not in the protoset: {methods:?}"
        );
        assert!(
            listed.lines().any(|l| l == want),
            "make-protoset.py did not list {want}"
        );
    }
    let mut signals: Vec<String> = lines
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["signal"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    signals.sort();
    assert_eq!(signals, SIGNALS, "one config per signal");

    let sg = noop_seedgate(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(sg.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bin = |s: &str| std::fs::read(dir.path().join(format!("{s}.bin"))).unwrap();

    let logs = ExportLogsServiceRequest::decode(bin("logs").as_slice()).unwrap();
    let n: usize = logs
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let ns = namespaces_of(
        logs.resource_logs
            .iter()
            .filter_map(|r| r.resource.as_ref()),
    );
    assert!(
        ns.len() > 1 && ns.iter().all(|n| n.starts_with("shoot--")),
        "logs: tenants {ns:?}"
    );
    let res = LogsServiceClient::new(channel.clone())
        .export(logs)
        .await
        .unwrap()
        .into_inner();
    assert!(
        res.partial_success
            .is_none_or(|p| p.rejected_log_records == 0),
        "logs rejected"
    );
    wait_for_count(&sg, "logs", "grpc", n as u64).await;

    let metrics = ExportMetricsServiceRequest::decode(bin("metrics").as_slice()).unwrap();
    let n: usize = metrics
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| {
            use opentelemetry_proto::tonic::metrics::v1::metric::Data;
            match &m.data {
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            }
        })
        .sum();
    let res = MetricsServiceClient::new(channel.clone())
        .export(metrics)
        .await
        .unwrap()
        .into_inner();
    assert!(
        res.partial_success
            .is_none_or(|p| p.rejected_data_points == 0),
        "data points rejected"
    );
    wait_for_count(&sg, "metrics", "grpc", n as u64).await;

    let traces = ExportTraceServiceRequest::decode(bin("traces").as_slice()).unwrap();
    let n: usize = traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert!(
        traces.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .all(|s| s.trace_id.len() == 16 && s.span_id.len() == 8),
        "ghz data must carry ids as base64 of 16/8 bytes"
    );
    let res = TraceServiceClient::new(channel)
        .export(traces)
        .await
        .unwrap()
        .into_inner();
    assert!(
        res.partial_success.is_none_or(|p| p.rejected_spans == 0),
        "spans rejected"
    );
    wait_for_count(&sg, "traces", "grpc", n as u64).await;
}

fn namespaces_of<'a>(
    resources: impl Iterator<Item = &'a opentelemetry_proto::tonic::resource::v1::Resource>,
) -> Vec<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    resources
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "k8s.namespace.name")
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            V::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn url_of(path: &Path) -> String {
    format!("file://{}", path.display())
}

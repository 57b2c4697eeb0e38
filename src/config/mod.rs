//! The YAML configuration: what a seed operator writes, with every default in
//! one `DEFAULT_*` block.
//!
//! Loading is two steps, like Vector's `sink_validated.rs`: serde parses the
//! file (`deny_unknown_fields` everywhere, so a typo is an error, not a silent
//! default), then [`Config::validate`] checks what serde cannot (cross-field
//! rules, URIs, limits) without doing any I/O and returns *every* problem with
//! its field path. [`load_file`] adds the file name and, where it can find it,
//! the line of the offending field, so `seedgate check-config` prints
//! `file:line: field: problem`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::signal::Signal;

pub mod flow;
pub mod fluent_bit;
mod lines;
pub mod loadbalancing;
pub mod memory;
pub mod processors;
pub mod routing;
pub mod spanmetrics;
pub mod tail_sampling;

pub use flow::{
    AdaptiveConcurrencyConfig, AuthConfig, BasicAuthConfig, ClientAuth, OAuth2Config,
    RateLimitConfig, Secret,
};
pub use fluent_bit::{FluentBitConfig, FluentBitFormat};
pub use loadbalancing::{
    DnsResolverConfig, KubernetesResolverConfig, LoadBalancingConfig, ResolverConfig, RoutingKey,
};
pub use memory::MemoryLimiterConfig;
pub use processors::{
    ActionKind, AttributeValue, ProcessorConfig, ResourceAction, ResourceProcessorConfig,
};
pub use spanmetrics::SpanMetricsConfig;
pub use tail_sampling::TailSamplingConfig;

pub use routing::{
    ClusterConfig, DEFAULT_ROUTING_KEY, InputConfig, NamespacesConfig, RouteCell, RoutingConfig,
    SeedCell, ShootsConfig, StateTableConfig,
};

// === defaults ===

/// OTLP/gRPC listen address.
pub const DEFAULT_GRPC_LISTEN: &str = "0.0.0.0:4317";
/// OTLP/HTTP listen address.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:4318";
/// Admin listen address (`/metrics`, `/healthz`, `/readyz`, pprof).
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:2021";
/// Largest request body accepted, after decompression.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes of request bodies held in memory at once across all receivers.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 128 * 1024 * 1024;
/// A receiver connection that sends nothing for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most arrays/kvlists nested in one `AnyValue`.
pub const DEFAULT_MAX_VALUE_DEPTH: u32 = crate::proto::DEFAULT_MAX_VALUE_DEPTH;
/// Where LMDB lives.
pub const DEFAULT_DATA_DIR: &str = "./seedgate-data";
/// LMDB map size: the most the on-disk buffer can ever hold.
pub const DEFAULT_MAX_STORAGE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Per-destination queue limit.
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Largest request an exporter builds from queued entries.
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Most records in one exported request.
pub const DEFAULT_BATCH_MAX_RECORDS: u64 = 8192;
/// How long an exporter waits for a batch to fill before sending what it has.
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_millis(200);
/// First retry delay.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Give up on a batch after this long; zero means retry forever.
pub const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(0);
/// How long a destination may fail without a success and still count as
/// healthy.
pub const DEFAULT_UNHEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Per-attempt timeout of one export request.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent in-flight export requests per destination.
pub const DEFAULT_EXPORT_CONCURRENCY: usize = 1;
/// How long SIGTERM may take before the process exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// `Retry-After` sent with 429 / `RetryInfo` sent with `RESOURCE_EXHAUSTED`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The embedded default: receivers on the default ports, data in
/// `./seedgate-data`, one pipeline printing everything to stdout.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

// === the file ===

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OTLP receivers.
    pub receivers: ReceiversConfig,
    /// The admin port.
    pub admin: AdminConfig,
    /// The LMDB buffer.
    pub storage: StorageConfig,
    /// Queue limits every destination starts from.
    pub queue: QueueConfig,
    /// Batching every destination starts from.
    pub batch: BatchConfig,
    /// Retry every destination starts from.
    pub retry: RetryConfig,
    /// Routing keys read from resource attributes.
    pub routing: RoutingConfig,
    /// Graceful shutdown deadline.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Static pipelines (the seed's outputs).
    pub pipelines: Vec<PipelineConfig>,
    /// Shoot clients (each shoot's own backend); absent: none.
    pub shoots: Option<ShootsConfig>,
    /// Static clusters: each shoot namespace's state, for the embedded mode
    /// (the operator takes them from `Cluster` resources instead).
    /// Reloaded on SIGHUP and when the file changes.
    pub clusters: Vec<ClusterConfig>,
    /// The operator (`run --kube`).
    pub operator: OperatorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            receivers: ReceiversConfig::default(),
            admin: AdminConfig::default(),
            storage: StorageConfig::default(),
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            routing: RoutingConfig::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            pipelines: Vec::new(),
            shoots: None,
            clusters: Vec::new(),
            operator: OperatorConfig::default(),
        }
    }
}

/// The operator (`run --kube`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// At most this many pipelines of each kind run (Kyma's limit is 5);
    /// the youngest beyond it get `MaxPipelinesExceeded`. 0: no limit.
    pub max_pipelines: usize,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            max_pipelines: crate::operator::max_pipelines::DEFAULT_MAX_PIPELINES,
        }
    }
}

impl OperatorConfig {
    /// The limit for [`admitted`](crate::operator::max_pipelines::admitted):
    /// `None` is no limit.
    pub fn pipeline_limit(&self) -> Option<usize> {
        (self.max_pipelines > 0).then_some(self.max_pipelines)
    }
}

/// Both OTLP receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// OTLP/gRPC.
    pub grpc: ListenerConfig,
    /// OTLP/HTTP.
    pub http: ListenerConfig,
    /// Request bytes held in memory at once, across both receivers; a request
    /// that does not fit waits, so memory stays bounded under any load.
    pub max_inflight_bytes: ByteSize,
    /// A connection that sends nothing for this long is closed: while a
    /// request's headers or the rest of its body are awaited, or the next
    /// request on a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A process-wide soft limit on resident memory.
    pub memory_limiter: MemoryLimiterConfig,
    /// TLS on both listeners; absent: plain text.
    pub tls: Option<ReceiverTlsConfig>,
    /// Most arrays/kvlists nested in one attribute value or log body;
    /// deeper requests are refused (a backend's decoder would refuse the
    /// batch they land in). See [`crate::proto::check`].
    pub max_value_depth: u32,
    /// `resource` processors run on every request before it is routed, so
    /// they can set the routing key (and stamp what every pipeline should
    /// carry, such as `k8s.node.name`).
    pub processors: Vec<ProcessorConfig>,
}

impl Default for ReceiversConfig {
    fn default() -> Self {
        Self {
            grpc: ListenerConfig::with_listen(DEFAULT_GRPC_LISTEN),
            http: ListenerConfig::with_listen(DEFAULT_HTTP_LISTEN),
            max_inflight_bytes: ByteSize(DEFAULT_MAX_INFLIGHT_BYTES),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            memory_limiter: MemoryLimiterConfig::default(),
            tls: None,
            max_value_depth: DEFAULT_MAX_VALUE_DEPTH,
            processors: Vec::new(),
        }
    }
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Turn this receiver off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `host:port` to bind.
    pub listen: String,
    /// Largest request accepted, after decompression (413 /
    /// `RESOURCE_EXHAUSTED` beyond it).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
}

impl ListenerConfig {
    fn with_listen(listen: &str) -> Self {
        Self {
            enabled: true,
            listen: listen.to_owned(),
            max_request_bytes: default_max_request_bytes(),
        }
    }
}

/// The admin port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port` to bind.
    pub listen: String,
    /// Serve `/debug/pprof/profile` (a CPU profile; costs CPU while it runs).
    pub pprof: bool,
    /// Serve `POST /debug/shoots/{namespace}/crash`, which makes that shoot
    /// client panic, `POST /debug/pipelines/{destination}/crash` (a
    /// pipeline actor, `--kube`) and
    /// `POST /debug/pipelines/{destination}/backends/{backend}/crash` (a
    /// load-balanced backend's delivery loop): for failure-isolation tests
    /// only, never in production.
    pub fault_injection: bool,
    /// A destination whose sends have failed without a success for this
    /// long is unhealthy: `/readyz` fails once every destination is, and
    /// the pipeline's `GatewayHealthy` condition turns False.
    #[serde(with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.to_owned(),
            pprof: false,
            fault_injection: false,
            unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
        }
    }
}

/// How hard a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync every group commit: an acknowledged request survives a power
    /// loss. The default.
    Fsync,
    /// No fsync: an acknowledged request survives a crash of seedgate
    /// (the page cache has it) but not of the machine.
    None,
}

/// The LMDB buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the LMDB environment; created if missing.
    pub data_dir: PathBuf,
    /// `fsync` (default) or `none`.
    pub durability: Durability,
    /// LMDB map size: the most the buffer holds across all destinations. When
    /// it is full, receivers answer with backpressure.
    pub max_size: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            durability: Durability::Fsync,
            max_size: ByteSize(DEFAULT_MAX_STORAGE_BYTES),
        }
    }
}

/// What happens to a request when one of its destinations is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse the whole request (HTTP 429 / gRPC `RESOURCE_EXHAUSTED` with a
    /// retry delay); nothing of it is stored anywhere.
    Block,
    /// Store the request everywhere else, drop this destination's part and
    /// count it.
    DropNewest,
}

/// Per-destination queue limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Bytes this destination may hold on disk.
    pub max_bytes: ByteSize,
    /// `block` (default) or `drop_newest`.
    pub when_full: WhenFull,
    /// The delay suggested to refused clients.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(DEFAULT_QUEUE_MAX_BYTES),
            when_full: WhenFull::Block,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

/// How exporters build requests from queued entries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Stop adding entries beyond this many bytes (one entry is always sent,
    /// even a larger one).
    pub max_bytes: ByteSize,
    /// Stop adding entries beyond this many records.
    pub max_records: u64,
    /// Wait at most this long for a batch to fill.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight at once to this destination (the starting limit
    /// when `adaptive_concurrency` is enabled).
    pub concurrency: usize,
    /// Let the in-flight limit follow the backend (AIMD).
    pub adaptive_concurrency: AdaptiveConcurrencyConfig,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_bytes: ByteSize(DEFAULT_BATCH_MAX_BYTES),
            max_records: DEFAULT_BATCH_MAX_RECORDS,
            timeout: DEFAULT_BATCH_TIMEOUT,
            concurrency: DEFAULT_EXPORT_CONCURRENCY,
            adaptive_concurrency: AdaptiveConcurrencyConfig::default(),
        }
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Cap on one delay.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Drop a batch (counted) after retrying this long; `0s` retries forever.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// Growth factor between attempts.
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_interval: DEFAULT_RETRY_INITIAL,
            max_interval: DEFAULT_RETRY_MAX_INTERVAL,
            max_elapsed: DEFAULT_RETRY_MAX_ELAPSED,
            multiplier: 2.0,
        }
    }
}

/// One static pipeline: a named output for some signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name; also the destination label in metrics.
    pub name: String,
    /// Signals this pipeline takes (default: all).
    #[serde(default = "all_signals")]
    pub signals: Vec<Signal>,
    /// Which namespaces it takes (default: all but the system namespaces).
    #[serde(default)]
    pub input: InputConfig,
    /// Where it sends.
    pub output: OutputConfig,
    /// Overrides of the top-level `queue`.
    #[serde(default)]
    pub queue: Option<QueueConfig>,
    /// Overrides of the top-level `batch`.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Overrides of the top-level `retry`.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Send to a set of backends by routing key instead of one endpoint.
    #[serde(default)]
    pub loadbalancing: Option<LoadBalancingConfig>,
    /// What the pipeline does to its data before its queue, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<ProcessorConfig>,
}

/// The kind of exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// OTLP over gRPC (tonic).
    OtlpGrpc,
    /// OTLP over HTTP, protobuf body.
    OtlpHttp,
    /// Logs as Fluent Bit's HTTP output sends them: JSON records over HTTP
    /// (Kyma's log pipeline `http` output).
    FluentBitHttp,
    /// One JSON line per record on standard output.
    Stdout,
    /// Accept and discard.
    Noop,
}

impl OutputType {
    /// Bounded label.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputType::OtlpGrpc => "otlp_grpc",
            OutputType::OtlpHttp => "otlp_http",
            OutputType::FluentBitHttp => "fluent_bit_http",
            OutputType::Stdout => "stdout",
            OutputType::Noop => "noop",
        }
    }

    /// Whether this output sends to an `endpoint` (OTLP or Fluent Bit HTTP).
    pub const fn has_endpoint(self) -> bool {
        matches!(
            self,
            OutputType::OtlpGrpc | OutputType::OtlpHttp | OutputType::FluentBitHttp
        )
    }

    /// Whether this output sends OTLP to an endpoint.
    pub const fn is_otlp(self) -> bool {
        matches!(self, OutputType::OtlpGrpc | OutputType::OtlpHttp)
    }
}

/// Request compression towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain.
    None,
    /// gzip (the OTLP default for most backends).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

/// One header sent with every export request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
    /// Put in front of the value, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

/// TLS towards a backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plain text, no TLS (also implied by an `http://` endpoint).
    pub insecure: bool,
    /// Do not verify the server certificate. Loudly logged.
    pub insecure_skip_verify: bool,
    /// PEM file with the CA(s) to trust instead of the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS).
    pub cert_file: Option<PathBuf>,
    /// PEM client key (mTLS).
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host (gRPC also
    /// sends it as SNI).
    pub server_name: Option<String>,
    /// Lowest TLS version offered: `1.2` (when absent) or `1.3`.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version offered: `1.3` (when absent) or `1.2`.
    pub max_version: Option<TlsVersion>,
}

/// A TLS protocol version as written in the file: `"1.2"` or `"1.3"`
/// (quoted or not). Anything else parses to [`TlsVersion::Unknown`], which
/// [`Config::validate`] reports with its field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
    /// Not a version seedgate speaks; a validation error.
    Unknown(String),
}

impl TlsVersion {
    /// The version as written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
            TlsVersion::Unknown(s) => s,
        }
    }

    fn parse(text: &str) -> Self {
        match text.trim() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => TlsVersion::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a TLS version: 1.2 or 1.3")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(v))
            }
            // `min_version: 1.2` unquoted is a YAML number.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// TLS on both OTLP receivers. The files are read at start and re-read when
/// they change on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverTlsConfig {
    /// PEM server certificate chain.
    pub cert_file: PathBuf,
    /// PEM server key.
    pub key_file: PathBuf,
    /// PEM CA(s) for client certificates: when set, every client must
    /// present a certificate signed by one of them.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `1.2` (when absent) or `1.3`.
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
}

/// The output block of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `otlp_grpc`, `otlp_http`, `fluent_bit_http`, `stdout` or `noop`.
    #[serde(rename = "type")]
    pub kind: OutputType,
    /// `http(s)://host:port` for OTLP and Fluent Bit HTTP outputs.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// OTLP/HTTP: the path, default `/v1/<signal>`; Fluent Bit HTTP: the
    /// URI, default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Headers on every request.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    /// `none`, `gzip` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-attempt timeout.
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Credentials: `basic` or `oauth2`; absent: none beyond `headers`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Records and bytes per second towards this backend; absent: unlimited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// `fluent_bit_http` only: how records are rendered; absent: the
    /// defaults (`json`, no dedot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluent_bit: Option<FluentBitConfig>,
}

impl OutputConfig {
    /// An output of this kind with every other field at its default.
    pub fn of_kind(kind: OutputType) -> Self {
        Self {
            kind,
            endpoint: None,
            path: None,
            headers: Vec::new(),
            compression: Compression::default(),
            tls: TlsConfig::default(),
            timeout: DEFAULT_EXPORT_TIMEOUT,
            auth: None,
            rate_limit: None,
            fluent_bit: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_request_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_REQUEST_BYTES)
}
fn default_export_timeout() -> Duration {
    DEFAULT_EXPORT_TIMEOUT
}
fn all_signals() -> Vec<Signal> {
    Signal::ALL.to_vec()
}

// === validation ===

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `pipelines[0].output.endpoint`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
    /// 1-based line in the file, when it could be found.
    pub line: Option<u64>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse into the schema (syntax, unknown field, wrong type).
    #[error("{file}:{}: {message}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Parse {
        /// The file.
        file: String,
        /// 1-based line, when the parser knows it.
        line: Option<u64>,
        /// The parser's message.
        message: String,
    },
    /// The file parses but has mistakes; every one is listed.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Parse { .. } => "parse",
            ConfigError::Invalid { .. } => "invalid",
        }
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{file}:{line}: {p}"),
            None => format!("{file}: {p}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Checks what serde cannot. Does no I/O. Returns every problem found.
    ///
    /// # Errors
    /// The list of problems, each with its field path.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut p = Problems::default();
        for (name, l) in [
            ("grpc", &self.receivers.grpc),
            ("http", &self.receivers.http),
        ] {
            if l.enabled {
                check_listen(&mut p, &format!("receivers.{name}.listen"), &l.listen);
            }
            if l.max_request_bytes.0 == 0 {
                p.push(
                    format!("receivers.{name}.max_request_bytes"),
                    "must be greater than 0",
                );
            }
            if l.max_request_bytes.0 > self.receivers.max_inflight_bytes.0 {
                p.push(
                    format!("receivers.{name}.max_request_bytes"),
                    format!(
                        "{} is larger than receivers.max_inflight_bytes ({}): such a request could never be admitted",
                        l.max_request_bytes, self.receivers.max_inflight_bytes
                    ),
                );
            }
        }
        if let Some(tls) = &self.receivers.tls {
            check_receiver_tls(&mut p, "receivers.tls", tls);
        }
        if self.receivers.idle_timeout < Duration::from_millis(100) {
            p.push("receivers.idle_timeout", "must be at least 100ms");
        }
        memory::check_memory_limiter(
            &mut p,
            "receivers.memory_limiter",
            &self.receivers.memory_limiter,
        );
        if !(1..=crate::proto::MAX_VALUE_DEPTH).contains(&self.receivers.max_value_depth) {
            p.push(
                "receivers.max_value_depth",
                format!(
                    "must be 1 to {} (deeper values may not decode in backends)",
                    crate::proto::MAX_VALUE_DEPTH
                ),
            );
        }
        processors::check_before_routing(
            &mut p,
            "receivers.processors",
            &self.receivers.processors,
        );
        check_listen(&mut p, "admin.listen", &self.admin.listen);
        if self.storage.data_dir.as_os_str().is_empty() {
            p.push("storage.data_dir", "must not be empty");
        }
        if self.storage.max_size.0 < 1024 * 1024 {
            p.push("storage.max_size", "must be at least 1MiB");
        }
        check_queue(&mut p, "queue", &self.queue);
        check_batch(&mut p, "batch", &self.batch);
        check_retry(&mut p, "retry", &self.retry);
        routing::check_routing(&mut p, &self.routing);
        if let Some(shoots) = &self.shoots {
            routing::check_shoots(&mut p, shoots);
        }
        routing::check_clusters(&mut p, &self.clusters, &self.routing);
        let mut names = std::collections::HashSet::new();
        for (i, pipe) in self.pipelines.iter().enumerate() {
            let at = format!("pipelines[{i}]");
            let field = |f: &str| format!("{at}.{f}");
            check_pipeline_name(&mut p, &field("name"), &pipe.name);
            if !names.insert(pipe.name.as_str()) {
                p.push(
                    field("name"),
                    format!("{:?} is used by an earlier pipeline", pipe.name),
                );
            }
            check_pipeline_parts(&mut p, pipe, &field);
        }
        processors::check_across(&mut p, &self.pipelines);
        p.finish()
    }

    /// The listen address of a listener, parsed (valid after [`Config::validate`]).
    ///
    /// # Errors
    /// When the address does not parse.
    pub fn socket_addr(listen: &str) -> Result<SocketAddr, std::net::AddrParseError> {
        listen.parse()
    }

    /// The effective queue limits of a pipeline.
    pub fn queue_for(&self, pipe: &PipelineConfig) -> QueueConfig {
        pipe.queue.unwrap_or(self.queue)
    }

    /// The effective batching of a pipeline.
    pub fn batch_for(&self, pipe: &PipelineConfig) -> BatchConfig {
        pipe.batch.unwrap_or(self.batch)
    }

    /// The effective retry of a pipeline.
    pub fn retry_for(&self, pipe: &PipelineConfig) -> RetryConfig {
        pipe.retry.unwrap_or(self.retry)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            reason: reason.into(),
            line: None,
        });
    }
    fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn check_listen(p: &mut Problems, field: &str, listen: &str) {
    if let Err(e) = listen.parse::<SocketAddr>() {
        p.push(
            field,
            format!("{listen:?} is not host:port with a numeric IP ({e})"),
        );
    }
}

fn check_pipeline_name(p: &mut Problems, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if !ok {
        p.push(
            field,
            format!("{name:?} must be 1-63 characters of a-z, 0-9, '-', '_', '.'"),
        );
    }
}

/// The problems [`Config::validate`] finds in one pipeline, its name's
/// uniqueness aside. `field` makes the full path of a part of the pipeline
/// (`name`, `signals`, `input`, `output`, `queue`, `batch`, `retry`): the
/// operator reports problems in the terms of the resource the pipeline came
/// from.
pub(crate) fn pipeline_problems(
    pipe: &PipelineConfig,
    field: &dyn Fn(&str) -> String,
) -> Vec<Problem> {
    let mut p = Problems::default();
    check_pipeline_name(&mut p, &field("name"), &pipe.name);
    check_pipeline_parts(&mut p, pipe, field);
    p.0
}

fn check_pipeline_parts(p: &mut Problems, pipe: &PipelineConfig, field: &dyn Fn(&str) -> String) {
    if pipe.signals.is_empty() {
        p.push(
            field("signals"),
            "must list at least one of logs, metrics, traces",
        );
    }
    routing::check_input(p, &field("input"), &pipe.input);
    check_output_with(
        p,
        &field("output"),
        &pipe.output,
        pipe.loadbalancing.is_some(),
    );
    fluent_bit::check(p, &field("output"), &pipe.output, &pipe.signals);
    processors::check(p, &field("processors"), pipe);
    if let Some(lb) = &pipe.loadbalancing {
        loadbalancing::check(p, &field("loadbalancing"), lb, &pipe.output, &pipe.signals);
    }
    if let Some(q) = &pipe.queue {
        check_queue(p, &field("queue"), q);
    }
    if let Some(b) = &pipe.batch {
        check_batch(p, &field("batch"), b);
    }
    if let Some(r) = &pipe.retry {
        check_retry(p, &field("retry"), r);
    }
}

fn check_queue(p: &mut Problems, at: &str, q: &QueueConfig) {
    if q.max_bytes.0 == 0 {
        p.push(format!("{at}.max_bytes"), "must be greater than 0");
    }
    if q.retry_after.is_zero() {
        p.push(format!("{at}.retry_after"), "must be greater than 0s");
    }
}

fn check_batch(p: &mut Problems, at: &str, b: &BatchConfig) {
    if b.max_bytes.0 == 0 {
        p.push(format!("{at}.max_bytes"), "must be greater than 0");
    }
    if b.max_records == 0 {
        p.push(format!("{at}.max_records"), "must be greater than 0");
    }
    if b.concurrency == 0 || b.concurrency > 64 {
        p.push(format!("{at}.concurrency"), "must be between 1 and 64");
    }
    flow::check_adaptive(
        p,
        &format!("{at}.adaptive_concurrency"),
        &b.adaptive_concurrency,
    );
}

fn check_retry(p: &mut Problems, at: &str, r: &RetryConfig) {
    if r.initial_interval.is_zero() {
        p.push(format!("{at}.initial_interval"), "must be greater than 0s");
    }
    if r.max_interval < r.initial_interval {
        p.push(
            format!("{at}.max_interval"),
            "must not be smaller than initial_interval",
        );
    }
    if !(r.multiplier >= 1.0 && r.multiplier <= 100.0) {
        p.push(format!("{at}.multiplier"), "must be between 1 and 100");
    }
}

fn check_output(p: &mut Problems, at: &str, o: &OutputConfig) {
    check_output_with(p, at, o, false);
}

/// Checks an output; `balanced` means its endpoints come from a pipeline's
/// `loadbalancing` block, so it must not name one itself.
fn check_output_with(p: &mut Problems, at: &str, o: &OutputConfig, balanced: bool) {
    let otlp = o.kind.has_endpoint();
    match (&o.endpoint, otlp) {
        (None, true) if !balanced => p.push(
            format!("{at}.endpoint"),
            format!("is required for type {}", o.kind.as_str()),
        ),
        (None, _) => {}
        (Some(_), true) if balanced => p.push(
            format!("{at}.endpoint"),
            "is given by loadbalancing.resolver: remove it",
        ),
        (Some(_), false) => p.push(
            format!("{at}.endpoint"),
            format!("is not used by type {}: remove it", o.kind.as_str()),
        ),
        (Some(ep), true) => check_endpoint(p, &format!("{at}.endpoint"), o.kind, ep),
    }
    if let Some(path) = &o.path {
        if !matches!(o.kind, OutputType::OtlpHttp | OutputType::FluentBitHttp) {
            p.push(
                format!("{at}.path"),
                "is only used by types otlp_http and fluent_bit_http",
            );
        } else if !path.starts_with('/') {
            p.push(
                format!("{at}.path"),
                format!("{path:?} must start with '/'"),
            );
        }
    }
    for (i, h) in o.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            p.push(
                format!("{at}.headers[{i}].name"),
                format!("{:?} is not a valid header name", h.name),
            );
        }
        if http::HeaderValue::from_str(&format!("{}{}", h.prefix, h.value)).is_err() {
            // Never echo the value: headers carry credentials.
            p.push(
                format!("{at}.headers[{i}].value"),
                "is not a valid header value",
            );
        }
    }
    if o.tls.cert_file.is_some() != o.tls.key_file.is_some() {
        p.push(format!("{at}.tls"), "cert_file and key_file go together");
    }
    check_tls_versions(
        p,
        &format!("{at}.tls"),
        o.tls.min_version.as_ref(),
        o.tls.max_version.as_ref(),
    );
    if o.timeout.is_zero() {
        p.push(format!("{at}.timeout"), "must be greater than 0s");
    }
    if let Some(auth) = &o.auth {
        let has_header = o
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("authorization"));
        flow::check_auth(p, &format!("{at}.auth"), auth, has_header);
    }
    if let Some(r) = &o.rate_limit {
        flow::check_rate_limit(p, &format!("{at}.rate_limit"), r);
    }
}

/// Checks one OTLP endpoint URI of an output of type `kind`.
fn check_endpoint(p: &mut Problems, field: &str, kind: OutputType, ep: &str) {
    match ep.parse::<http::Uri>() {
        Ok(uri) => {
            match uri.scheme_str() {
                Some("http" | "https") => {}
                _ => p.push(field, format!("{ep:?} must start with http:// or https://")),
            }
            if uri.host().is_none_or(str::is_empty) {
                p.push(field, format!("{ep:?} has no host"));
            }
            if kind == OutputType::OtlpGrpc && uri.path() != "/" && !uri.path().is_empty() {
                p.push(field, format!("{ep:?}: a gRPC endpoint takes no path"));
            }
        }
        Err(e) => p.push(field, format!("{ep:?} is not a valid URI: {e}")),
    }
}

/// `min_version` and `max_version` of a `tls` block at `at`: known
/// versions, and min not above max.
fn check_tls_versions(
    p: &mut Problems,
    at: &str,
    min: Option<&TlsVersion>,
    max: Option<&TlsVersion>,
) {
    for (name, v) in [("min_version", min), ("max_version", max)] {
        if let Some(TlsVersion::Unknown(text)) = v {
            p.push(
                format!("{at}.{name}"),
                format!("{text:?} is not a TLS version seedgate speaks: write 1.2 or 1.3"),
            );
        }
    }
    if let (
        Some(lo @ (TlsVersion::Tls12 | TlsVersion::Tls13)),
        Some(hi @ (TlsVersion::Tls12 | TlsVersion::Tls13)),
    ) = (min, max)
        && lo > hi
    {
        p.push(
            format!("{at}.min_version"),
            format!(
                "{} is above max_version {}: no TLS version is left",
                lo.as_str(),
                hi.as_str()
            ),
        );
    }
}

fn check_receiver_tls(p: &mut Problems, at: &str, tls: &ReceiverTlsConfig) {
    for (name, path) in [
        ("cert_file", Some(&tls.cert_file)),
        ("key_file", Some(&tls.key_file)),
        ("client_ca_file", tls.client_ca_file.as_ref()),
    ] {
        if path.is_some_and(|f| f.as_os_str().is_empty()) {
            p.push(format!("{at}.{name}"), "must not be empty");
        }
    }
    check_tls_versions(p, at, tls.min_version.as_ref(), None);
}

// === loading ===

/// Parses a configuration from YAML text. `file` names it in errors.
///
/// # Errors
/// [`ConfigError::Parse`] or [`ConfigError::Invalid`] with every problem.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_owned(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    config.validate().map_err(|mut problems| {
        let lines = lines::index(text);
        for p in &mut problems {
            p.line = lines.line_of(&p.field);
        }
        ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        }
    })?;
    Ok(config)
}

/// Reads and parses a configuration file.
///
/// # Errors
/// See [`parse`]; also [`ConfigError::Read`].
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// The embedded default configuration.
///
/// # Panics
/// Never: a unit test proves the embedded file parses.
#[allow(clippy::expect_used)]
pub fn embedded_default() -> Config {
    parse("<embedded default>", EMBEDDED_DEFAULT).expect("the embedded default config is valid")
}

/// Test helper: `yaml` is refused with every one of `wanted` in the message.
#[cfg(test)]
#[track_caller]
#[allow(clippy::unwrap_used)]
pub(crate) fn assert_problems(yaml: &str, wanted: &[&str]) {
    let err = parse("c.yaml", yaml).unwrap_err().to_string();
    for want in wanted {
        assert!(err.contains(want), "{want} missing from:\n{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_has_a_stdout_pipeline() {
        let c = embedded_default();
        assert_eq!(c.pipelines.len(), 1);
        assert_eq!(c.pipelines[0].output.kind, OutputType::Stdout);
        assert_eq!(c.receivers.grpc.listen, DEFAULT_GRPC_LISTEN);
    }

    #[test]
    fn max_value_depth_stays_where_backends_decode() {
        for bad in [0, crate::proto::MAX_VALUE_DEPTH + 1] {
            assert_problems(
                &format!("receivers:\n  max_value_depth: {bad}\n"),
                &["c.yaml:2: receivers.max_value_depth: must be 1 to 30"],
            );
        }
        let ok = parse("c.yaml", "receivers:\n  max_value_depth: 30\n").unwrap();
        assert_eq!(ok.receivers.max_value_depth, 30);
    }

    #[test]
    fn unknown_field_is_a_parse_error_with_line() {
        let err = parse("c.yaml", "storage:\n  data_dir: /x\n  durabilty: none\n").unwrap_err();
        match err {
            ConfigError::Parse { line, message, .. } => {
                assert_eq!(line, Some(3), "{message}");
                assert!(message.contains("durabilty"), "{message}");
            }
            other => panic!("expected parse error, got {other}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_field_and_line() {
        let text = "\
pipelines:
  - name: a
    output:
      type: otlp_grpc
  - name: a
    output:
      type: otlp_http
      endpoint: ftp://x
";
        let err = parse("c.yaml", text).unwrap_err();
        let rendered = err.to_string();
        assert!(
            rendered.contains("c.yaml:3: pipelines[0].output.endpoint: is required"),
            "{rendered}"
        );
        assert!(
            rendered.contains("c.yaml:5: pipelines[1].name"),
            "{rendered}"
        );
        assert!(
            rendered.contains("c.yaml:8: pipelines[1].output.endpoint"),
            "{rendered}"
        );
    }

    fn grpc_output_with(tls: &str) -> String {
        format!(
            "pipelines:\n  - name: a\n    output:\n      type: otlp_grpc\n      endpoint: https://b:4317\n      tls:\n{tls}"
        )
    }

    #[test]
    fn tls_versions_read_quoted_or_not() {
        let c = parse(
            "c.yaml",
            &grpc_output_with("        min_version: 1.2\n        max_version: \"1.3\"\n"),
        )
        .unwrap();
        let tls = &c.pipelines[0].output.tls;
        assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
        assert_eq!(tls.max_version, Some(TlsVersion::Tls13));
        let c = parse(
            "c.yaml",
            &grpc_output_with("        min_version: \"1.3\"\n        max_version: 1.3\n"),
        )
        .unwrap();
        assert_eq!(
            c.pipelines[0].output.tls.min_version,
            Some(TlsVersion::Tls13)
        );
    }

    #[test]
    fn unknown_tls_version_names_the_field_and_line() {
        let err = parse(
            "c.yaml",
            &grpc_output_with("        min_version: 1.1\n        max_version: tls1.4\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "c.yaml:7: pipelines[0].output.tls.min_version: \"1.1\" is not a TLS version"
            ),
            "{err}"
        );
        assert!(
            err.contains("c.yaml:8: pipelines[0].output.tls.max_version: \"tls1.4\""),
            "{err}"
        );
    }

    #[test]
    fn tls_min_version_above_max_is_refused() {
        let err = parse(
            "c.yaml",
            &grpc_output_with("        min_version: 1.3\n        max_version: 1.2\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("pipelines[0].output.tls.min_version: 1.3 is above max_version 1.2"),
            "{err}"
        );
    }

    #[test]
    fn receiver_tls_is_checked() {
        let err = parse(
            "c.yaml",
            "receivers:\n  tls:\n    cert_file: /s.pem\n    key_file: \"\"\n    min_version: 1.0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("receivers.tls.key_file: must not be empty"),
            "{err}"
        );
        assert!(err.contains("receivers.tls.min_version: \"1\""), "{err}");
        let c = parse(
            "c.yaml",
            "receivers:\n  tls:\n    cert_file: /s.pem\n    key_file: /s.key\n    client_ca_file: /ca.pem\n    min_version: 1.3\n",
        )
        .unwrap();
        let tls = c.receivers.tls.unwrap();
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(tls.min_version, Some(TlsVersion::Tls13));
    }

    #[test]
    fn durations_and_sizes_read_as_humans_write_them() {
        let c = parse(
            "c.yaml",
            "queue:\n  max_bytes: 64MiB\n  when_full: drop_newest\nbatch:\n  timeout: 50ms\n",
        )
        .unwrap();
        assert_eq!(c.queue.max_bytes.0, 64 * 1024 * 1024);
        assert_eq!(c.queue.when_full, WhenFull::DropNewest);
        assert_eq!(c.batch.timeout, Duration::from_millis(50));
    }
}

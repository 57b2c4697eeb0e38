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
use std::path::PathBuf;
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

mod check;
mod load;
mod output;
#[cfg(test)]
mod tests;

pub(crate) use check::pipeline_problems;
pub use check::{ConfigError, Problem, Validated};
// The checks the sections' modules share (`super::check_output`, ...).
use check::{Problems, check_batch, check_endpoint, check_output, check_queue, check_retry};
#[cfg(test)]
pub(crate) use load::assert_problems;
pub use load::{embedded_default, load_file, parse};
pub use output::{
    Compression, HeaderConfig, OutputConfig, OutputType, ReceiverTlsConfig, TlsConfig, TlsVersion,
};

pub use flow::{
    AdaptiveConcurrencyConfig, AuthConfig, BasicAuthConfig, ClientAuth, OAuth2Config,
    RateLimitConfig, Secret,
};
pub use fluent_bit::{FluentBitConfig, FluentBitFormat};
pub use loadbalancing::{
    AffinityConfig, DnsResolverConfig, KubernetesResolverConfig, LoadBalancingConfig,
    ResolverConfig, RoutingKey,
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
    /// SIGTERM: how long seedgate stays up unready (`/readyz` 503) and
    /// still accepting, so that load balancers and endpoints drop it before
    /// it refuses anything. 0 on a laptop; a few seconds behind a Service
    /// without a preStop hook.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
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
            shutdown_delay: Duration::ZERO,
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
    /// Spans go first to the replica that owns their trace (several
    /// replicas per seed; see [`AffinityConfig`]); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<AffinityConfig>,
    /// What the pipeline does to its data before its queue, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<ProcessorConfig>,
}

impl PipelineConfig {
    /// A pipeline of `signals` from `input` to `output`, with the defaults
    /// of everything else (its queue, batch and retry those of the config,
    /// no load balancing, no affinity, no processors).
    pub fn new(name: &str, signals: Vec<Signal>, input: InputConfig, output: OutputConfig) -> Self {
        Self {
            name: name.to_owned(),
            signals,
            input,
            output,
            queue: None,
            batch: None,
            retry: None,
            loadbalancing: None,
            affinity: None,
            processors: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_request_bytes() -> ByteSize {
    ByteSize(DEFAULT_MAX_REQUEST_BYTES)
}
fn all_signals() -> Vec<Signal> {
    Signal::ALL.to_vec()
}

impl Config {
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

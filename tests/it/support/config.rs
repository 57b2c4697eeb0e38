//! seedgate's configuration for tests, typed: a [`TestConfig`] holds a real
//! [`seedgate::config::Config`] and renders it as the YAML file
//! [`Seedgate::start`](super::Seedgate::start) writes, so a test names
//! fields, not indentation, and a typo is a compile error.
//!
//! ```ignore
//! let yaml = TestConfig::new(&dir.path().join("data"))
//!     .batch_timeout(ms(10))
//!     .retry(ms(50), ms(200))
//!     .pipeline(Pipeline::grpc("b", &sink.grpc_endpoint()).signals(&[Signal::Logs]))
//!     .yaml();
//! ```
//!
//! Tests about the file itself (parser errors, field names and lines in
//! messages, what `check-config` prints) write their YAML by hand instead.

use std::path::Path;
use std::time::Duration;

use bytesize::ByteSize;
use seedgate::cluster_state::ShootState;
use seedgate::config::flow::{DEFAULT_OAUTH2_TIMEOUT, DEFAULT_RATE_LIMIT_BURST};
use seedgate::config::spanmetrics::{
    BucketBound, DEFAULT_CARDINALITY_LIMIT, DEFAULT_NAMESPACE, ExplicitConfig, HistogramConfig,
};
use seedgate::config::tail_sampling::{
    AndConfig, LatencyConfig, NumericAttributeConfig, PolicyConfig, PolicyType,
    ProbabilisticConfig, RateLimitingConfig, SpanCountConfig, StatusCodeConfig, StatusCodeName,
    StringAttributeConfig,
};
use seedgate::config::{
    AuthConfig, BasicAuthConfig, BatchConfig, ClusterConfig, Compression, Config, HeaderConfig,
    OAuth2Config, OutputConfig, OutputType, PipelineConfig, ProcessorConfig, QueueConfig,
    RateLimitConfig, RetryConfig, Secret, ShootsConfig, SpanMetricsConfig, TailSamplingConfig,
    TlsConfig, WhenFull,
};
use seedgate::signal::Signal;

/// `n` milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A size as the file writes it (`64KiB`, `2MiB`).
pub fn size(text: &str) -> ByteSize {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a size: {e}"))
}

/// A whole configuration: receivers and admin on port 0 of 127.0.0.1 (the
/// bound ports are in the listen file), pprof on, the data in `data_dir`
/// with a 256 MiB map, a 10 s shutdown deadline; everything else at
/// seedgate's defaults until a method changes it.
#[derive(Debug, Clone)]
pub struct TestConfig(Config);

impl TestConfig {
    pub fn new(data_dir: &Path) -> Self {
        let mut c = Config::default();
        c.receivers.grpc.listen = "127.0.0.1:0".to_owned();
        c.receivers.http.listen = "127.0.0.1:0".to_owned();
        c.admin.listen = "127.0.0.1:0".to_owned();
        c.admin.pprof = true;
        c.storage.data_dir = data_dir.to_owned();
        c.storage.max_size = size("256MiB");
        c.shutdown_timeout = secs(10);
        Self(c)
    }

    /// The receivers on these ports of 127.0.0.1 instead of port 0 (ports
    /// kept across restarts).
    pub fn ports(mut self, grpc: u16, http: u16) -> Self {
        self.0.receivers.grpc.listen = format!("127.0.0.1:{grpc}");
        self.0.receivers.http.listen = format!("127.0.0.1:{http}");
        self
    }

    /// The top-level `batch.timeout`.
    pub fn batch_timeout(mut self, timeout: Duration) -> Self {
        self.0.batch.timeout = timeout;
        self
    }

    /// The top-level `retry` intervals.
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.0.retry.initial_interval = initial;
        self.0.retry.max_interval = max;
        self
    }

    /// A short batch timeout (20 ms) and quick retries (50 ms to 500 ms).
    pub fn quick_batch_and_retry(self) -> Self {
        self.batch_timeout(ms(20)).retry(ms(50), ms(500))
    }

    /// The configuration of most tests: [`quick_batch_and_retry`] and
    /// [`Pipeline::backend`] to `sink_grpc`.
    ///
    /// [`quick_batch_and_retry`]: TestConfig::quick_batch_and_retry
    pub fn pipeline_to(self, sink_grpc: &str) -> Self {
        self.quick_batch_and_retry()
            .pipeline(Pipeline::backend(sink_grpc))
    }

    /// `storage.max_size`.
    pub fn storage_max_size(mut self, max_size: &str) -> Self {
        self.0.storage.max_size = size(max_size);
        self
    }

    /// One more static pipeline.
    pub fn pipeline(mut self, pipeline: Pipeline) -> Self {
        self.0.pipelines.push(pipeline.0);
        self
    }

    /// The `shoots` block.
    pub fn shoots(mut self, shoots: ShootsConfig) -> Self {
        self.0.shoots = Some(shoots);
        self
    }

    /// One more static cluster, by its state (a whole `Cluster` object:
    /// [`TestConfig::with`]).
    pub fn cluster(mut self, name: &str, state: ShootState) -> Self {
        self.0.clusters.push(ClusterConfig {
            name: name.to_owned(),
            state: Some(state),
            cluster: None,
        });
        self
    }

    /// Anything else, on the typed configuration.
    pub fn with(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        edit(&mut self.0);
        self
    }

    /// The YAML file. It is checked to read back as exactly this
    /// configuration, so what the test built is what seedgate gets; it is
    /// not validated here (seedgate does that, in its own environment).
    pub fn yaml(&self) -> String {
        // `Secret` serializes as `<redacted>` (so no dump can leak one): the
        // file gets the exposed values put back into the serialized tree.
        let mut tree = serde_json::to_value(&self.0).unwrap();
        for (i, pipeline) in self.0.pipelines.iter().enumerate() {
            expose_secrets(&pipeline.output, &mut tree["pipelines"][i]["output"]);
        }
        let yaml = serde_saphyr::to_string(&tree).unwrap();
        let back: Config = serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|e| panic!("the test config does not read back: {e}\n{yaml}"));
        assert_eq!(back, self.0, "the test config reads back changed:\n{yaml}");
        yaml
    }
}

/// Puts the secrets of `output` into its serialized form `at`.
fn expose_secrets(output: &OutputConfig, at: &mut serde_json::Value) {
    let (block, field, secret) = match &output.auth {
        Some(AuthConfig::Basic(b)) => ("basic", "password", &b.password),
        Some(AuthConfig::Oauth2(o)) => ("oauth2", "client_secret", &o.client_secret),
        None => return,
    };
    if let Some(secret) = secret {
        at["auth"][block][field] = secret.expose().into();
    }
}

/// One static pipeline: all signals, all namespaces (but the system ones),
/// the top-level queue, batch and retry, until a method changes it.
#[derive(Debug, Clone)]
pub struct Pipeline(PipelineConfig);

impl Pipeline {
    pub fn new(name: &str, output: OutputConfig) -> Self {
        Self(PipelineConfig::new(
            name,
            Signal::ALL.to_vec(),
            Default::default(),
            output,
        ))
    }

    /// `otlp_grpc` to `endpoint`.
    pub fn grpc(name: &str, endpoint: &str) -> Self {
        Self::new(name, output(OutputType::OtlpGrpc, endpoint))
    }

    /// `otlp_http` to `endpoint`.
    pub fn http(name: &str, endpoint: &str) -> Self {
        Self::new(name, output(OutputType::OtlpHttp, endpoint))
    }

    /// `noop`: accepts and discards.
    pub fn noop(name: &str) -> Self {
        Self::new(name, OutputConfig::of_kind(OutputType::Noop))
    }

    /// The pipeline of most tests: `backend`, everything to `sink_grpc`
    /// over `otlp_grpc`, uncompressed.
    pub fn backend(sink_grpc: &str) -> Self {
        Self::grpc("backend", sink_grpc).compression(Compression::None)
    }

    /// Only these signals.
    pub fn signals(mut self, signals: &[Signal]) -> Self {
        self.0.signals = signals.to_vec();
        self
    }

    /// `output.compression`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.0.output.compression = compression;
        self
    }

    /// `output.timeout`, of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.output.timeout = timeout;
        self
    }

    /// `output.tls`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.0.output.tls = tls;
        self
    }

    /// `output.auth`.
    pub fn auth(mut self, auth: AuthConfig) -> Self {
        self.0.output.auth = Some(auth);
        self
    }

    /// One more `output.headers` entry.
    pub fn header(mut self, name: &str, prefix: &str, value: &str) -> Self {
        self.0
            .output
            .headers
            .push(HeaderConfig::new(name, prefix, value));
        self
    }

    /// `output.rate_limit`: records and bytes per second, the default burst.
    pub fn rate_limit(mut self, records: Option<u64>, bytes: Option<&str>) -> Self {
        self.0.output.rate_limit = Some(RateLimitConfig {
            records_per_second: records,
            bytes_per_second: bytes.map(size),
            burst: DEFAULT_RATE_LIMIT_BURST,
        });
        self
    }

    /// Its own queue: `max_bytes` and `when_full` (the retry delay at its
    /// default).
    pub fn queue(self, max_bytes: &str, when_full: WhenFull) -> Self {
        self.queue_config(QueueConfig {
            max_bytes: size(max_bytes),
            when_full,
            ..QueueConfig::default()
        })
    }

    /// Its own queue, whole.
    pub fn queue_config(mut self, queue: QueueConfig) -> Self {
        self.0.queue = Some(queue);
        self
    }

    /// Its own batching: the defaults (not the top-level block) with `edit`
    /// applied, as a `batch:` block of the pipeline means.
    pub fn batch(mut self, edit: impl FnOnce(&mut BatchConfig)) -> Self {
        let mut batch = BatchConfig::default();
        edit(&mut batch);
        self.0.batch = Some(batch);
        self
    }

    /// Its own batching: the defaults with this timeout.
    pub fn batch_timeout(self, timeout: Duration) -> Self {
        self.batch(|b| b.timeout = timeout)
    }

    /// Its own retry: the defaults with these intervals.
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.0.retry = Some(RetryConfig {
            initial_interval: initial,
            max_interval: max,
            ..RetryConfig::default()
        });
        self
    }

    /// Only these namespaces (`input.namespaces.include`).
    pub fn include(mut self, namespaces: &[&str]) -> Self {
        self.0.input.namespaces.include =
            Some(namespaces.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// One more processor.
    pub fn processor(mut self, processor: ProcessorConfig) -> Self {
        self.0.processors.push(processor);
        self
    }

    /// Anything else, on the typed pipeline.
    pub fn with(mut self, edit: impl FnOnce(&mut PipelineConfig)) -> Self {
        edit(&mut self.0);
        self
    }
}

/// An output of `kind` to `endpoint`, the rest at its defaults.
pub fn output(kind: OutputType, endpoint: &str) -> OutputConfig {
    OutputConfig {
        endpoint: Some(endpoint.to_owned()),
        ..OutputConfig::of_kind(kind)
    }
}

/// A `shoots` block: each shoot's client sends `output` to
/// `endpoint_prefix` + its namespace; every other field at its default.
pub fn shoots(endpoint_prefix: &str, output: OutputConfig) -> ShootsConfig {
    // Its defaults are serde's (the shoot queue's is not the top-level one):
    // a block with only the required field gives them.
    let mut shoots: ShootsConfig =
        serde_json::from_value(serde_json::json!({ "output": { "type": "noop" } })).unwrap();
    shoots.endpoint_prefix = endpoint_prefix.to_owned();
    shoots.output = output;
    shoots
}

/// Basic auth with the password read from `password_file`.
pub fn basic_auth_file(username: &str, password_file: &Path) -> AuthConfig {
    AuthConfig::Basic(BasicAuthConfig {
        username: username.to_owned(),
        password: None,
        password_file: Some(password_file.to_owned()),
    })
}

/// Basic auth with the password in the file.
pub fn basic_auth(username: &str, password: &str) -> AuthConfig {
    AuthConfig::Basic(BasicAuthConfig {
        username: username.to_owned(),
        password: Some(Secret::new(password)),
        password_file: None,
    })
}

/// OAuth2 client credentials at `token_url`; the secret set by the caller
/// (`client_secret` or `client_secret_file`).
pub fn oauth2(
    token_url: &str,
    client_id: &str,
    edit: impl FnOnce(&mut OAuth2Config),
) -> AuthConfig {
    let mut o = OAuth2Config {
        token_url: token_url.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: None,
        client_secret_file: None,
        scopes: Vec::new(),
        endpoint_params: Default::default(),
        client_auth: Default::default(),
        timeout: DEFAULT_OAUTH2_TIMEOUT,
        tls: TlsConfig::default(),
    };
    edit(&mut o);
    AuthConfig::Oauth2(Box::new(o))
}

/// A `spanmetrics` processor into `metrics_pipeline`, flushed every
/// `flush`, with these duration buckets.
pub fn spanmetrics(
    metrics_pipeline: &str,
    flush: Duration,
    buckets: &[Duration],
) -> ProcessorConfig {
    ProcessorConfig::SpanMetrics(SpanMetricsConfig {
        metrics_pipeline: metrics_pipeline.to_owned(),
        histogram: HistogramConfig {
            explicit: ExplicitConfig {
                buckets: buckets.iter().copied().map(BucketBound).collect(),
            },
            ..HistogramConfig::default()
        },
        dimensions: Vec::new(),
        aggregation_temporality: Default::default(),
        metrics_flush_interval: flush,
        namespace: DEFAULT_NAMESPACE.to_owned(),
        aggregation_cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
    })
}

/// A `tail_sampling` processor deciding `decision_wait` after a trace's
/// first span by `policies`, the limits at their defaults.
pub fn tail_sampling(decision_wait: Duration, policies: Vec<PolicyConfig>) -> ProcessorConfig {
    tail_sampling_with(decision_wait, policies, |_| {})
}

/// [`tail_sampling`] with `edit` applied (limits, caches).
pub fn tail_sampling_with(
    decision_wait: Duration,
    policies: Vec<PolicyConfig>,
    edit: impl FnOnce(&mut TailSamplingConfig),
) -> ProcessorConfig {
    let mut t = TailSamplingConfig {
        decision_wait,
        policies,
        ..TailSamplingConfig::default()
    };
    edit(&mut t);
    ProcessorConfig::TailSampling(t)
}

/// Tail sampling policies, one constructor a type.
pub mod policy {
    use super::*;

    /// A policy of `kind` without its block.
    fn bare(name: &str, kind: &str) -> PolicyConfig {
        PolicyConfig {
            name: name.to_owned(),
            kind: PolicyType::from(kind.to_owned()),
            probabilistic: None,
            status_code: None,
            latency: None,
            string_attribute: None,
            numeric_attribute: None,
            span_count: None,
            rate_limiting: None,
            and: None,
        }
    }

    pub fn always_sample(name: &str) -> PolicyConfig {
        bare(name, "always_sample")
    }

    pub fn probabilistic(name: &str, sampling_percentage: f64) -> PolicyConfig {
        PolicyConfig {
            probabilistic: Some(ProbabilisticConfig {
                sampling_percentage,
                hash_salt: String::new(),
            }),
            ..bare(name, "probabilistic")
        }
    }

    pub fn status_code(name: &str, codes: &[StatusCodeName]) -> PolicyConfig {
        PolicyConfig {
            status_code: Some(StatusCodeConfig {
                status_codes: codes.to_vec(),
            }),
            ..bare(name, "status_code")
        }
    }

    pub fn latency(name: &str, threshold_ms: u64) -> PolicyConfig {
        PolicyConfig {
            latency: Some(LatencyConfig {
                threshold_ms,
                upper_threshold_ms: None,
            }),
            ..bare(name, "latency")
        }
    }

    /// Exact values of a string attribute.
    pub fn string_attribute(name: &str, key: &str, values: &[&str]) -> PolicyConfig {
        PolicyConfig {
            string_attribute: Some(StringAttributeConfig {
                key: key.to_owned(),
                values: values.iter().map(|v| (*v).to_owned()).collect(),
                enabled_regex_matching: false,
                cache_max_size: None,
                invert_match: false,
            }),
            ..bare(name, "string_attribute")
        }
    }

    /// An integer attribute within `min..=max`.
    pub fn numeric_attribute(name: &str, key: &str, min: i64, max: i64) -> PolicyConfig {
        PolicyConfig {
            numeric_attribute: Some(NumericAttributeConfig {
                key: key.to_owned(),
                min_value: Some(min),
                max_value: Some(max),
                invert_match: false,
            }),
            ..bare(name, "numeric_attribute")
        }
    }

    /// At least `min_spans` spans.
    pub fn span_count(name: &str, min_spans: u64) -> PolicyConfig {
        PolicyConfig {
            span_count: Some(SpanCountConfig {
                min_spans,
                max_spans: None,
            }),
            ..bare(name, "span_count")
        }
    }

    pub fn rate_limiting(name: &str, spans_per_second: u64) -> PolicyConfig {
        PolicyConfig {
            rate_limiting: Some(RateLimitingConfig { spans_per_second }),
            ..bare(name, "rate_limiting")
        }
    }

    /// Kept when every one of `subs` keeps it.
    pub fn and(name: &str, subs: Vec<PolicyConfig>) -> PolicyConfig {
        PolicyConfig {
            and: Some(AndConfig {
                and_sub_policy: subs,
            }),
            ..bare(name, "and")
        }
    }
}

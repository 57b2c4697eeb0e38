//! What serde cannot check: every problem of a configuration, each with
//! its field path (and, once located, its line), collected rather than
//! stopping at the first.

use std::net::SocketAddr;

use super::*;

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

/// A configuration whose checks passed: only [`Config::validate`] makes
/// one, so what takes a `Validated<Config>` (the application, a reload)
/// builds from it without checking again. Reads as the [`Config`] it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated<T>(T);

impl<T> std::ops::Deref for Validated<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Validated<T> {
    /// The value, for building what it describes.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Config {
    /// Checks what serde cannot and hands back the configuration as
    /// [`Validated`]. Does no I/O. Returns every problem found.
    ///
    /// # Errors
    /// The list of problems, each with its field path.
    pub fn validate(self) -> Result<Validated<Config>, Vec<Problem>> {
        self.problems().map(|()| Validated(self))
    }

    fn problems(&self) -> Result<(), Vec<Problem>> {
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
}

#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            reason: reason.into(),
            line: None,
        });
    }
    pub(super) fn finish(self) -> Result<(), Vec<Problem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

pub(super) fn check_listen(p: &mut Problems, field: &str, listen: &str) {
    if let Err(e) = listen.parse::<SocketAddr>() {
        p.push(
            field,
            format!("{listen:?} is not host:port with a numeric IP ({e})"),
        );
    }
}

pub(super) fn check_pipeline_name(p: &mut Problems, field: &str, name: &str) {
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

pub(super) fn check_pipeline_parts(
    p: &mut Problems,
    pipe: &PipelineConfig,
    field: &dyn Fn(&str) -> String,
) {
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
    if let Some(a) = &pipe.affinity {
        if pipe.loadbalancing.is_some() {
            p.push(
                field("affinity"),
                "and loadbalancing in one pipeline: give one (affinity keeps a trace on one replica, loadbalancing on one backend)",
            );
        }
        let forward = AffinityConfig::forward_output(&pipe.name);
        loadbalancing::check(
            p,
            &field("affinity"),
            &a.loadbalancing(),
            &forward,
            &pipe.signals,
        );
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

pub(super) fn check_queue(p: &mut Problems, at: &str, q: &QueueConfig) {
    if q.max_bytes.0 == 0 {
        p.push(format!("{at}.max_bytes"), "must be greater than 0");
    }
    if q.retry_after.is_zero() {
        p.push(format!("{at}.retry_after"), "must be greater than 0s");
    }
}

pub(super) fn check_batch(p: &mut Problems, at: &str, b: &BatchConfig) {
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

pub(super) fn check_retry(p: &mut Problems, at: &str, r: &RetryConfig) {
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

pub(super) fn check_output(p: &mut Problems, at: &str, o: &OutputConfig) {
    check_output_with(p, at, o, false);
}

/// Checks an output; `balanced` means its endpoints come from a pipeline's
/// `loadbalancing` block, so it must not name one itself.
pub(super) fn check_output_with(p: &mut Problems, at: &str, o: &OutputConfig, balanced: bool) {
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
pub(super) fn check_endpoint(p: &mut Problems, field: &str, kind: OutputType, ep: &str) {
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
pub(super) fn check_tls_versions(
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

pub(super) fn check_receiver_tls(p: &mut Problems, at: &str, tls: &ReceiverTlsConfig) {
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

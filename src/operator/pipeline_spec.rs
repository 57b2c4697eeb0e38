//! A pipeline resource → seedgate's [`PipelineConfig`], or the reason it
//! cannot run.
//!
//! [`resolve`] checks in Kyma's order and stops at the first failure, with
//! Kyma's reasons and messages (`reference/kyma-conditions.md`, section 4):
//!
//! 0. seedgate first refuses the Kyma features it does not have
//!    (`UnsupportedFeature`, see [`PipelineSpec::unsupported`]): no Secret
//!    needs reading for a pipeline that cannot run anyway.
//! 1. Secret references, in Kyma's order (endpoint, basic user, basic
//!    password, headers, then TLS `ca`, `cert`, `key` unless `tls.insecure`):
//!    `ReferencedSecretMissing`, or `ValidationFailed` when the API read
//!    fails (transient: retry).
//! 2. The endpoint: `EndpointInvalid`, "OTLP output endpoint invalid: …".
//! 3. TLS: `TLSConfigurationInvalid`, `TLSCertificateExpired`; a certificate
//!    that expires within 14 days is a [`CertWarning`] on a pipeline that
//!    runs (`TLSCertificateAboutToExpire`, ConfigurationGenerated=True). Also
//!    refused here, seedgate's own: `tls.insecure` with an `https://`
//!    endpoint, and `ca`/`cert`/`key` with an `http://` endpoint without
//!    `tls.insecure` (the OpenTelemetry Collector would quietly send plain
//!    text; seedgate does not guess).
//! 4. (The pipeline limit is decided elsewhere:
//!    [`max_pipelines`](super::max_pipelines).)
//! 5. seedgate's own configuration rules (`Config::validate`'s, for one
//!    pipeline: header names and values, the HTTP path, the queue, the name):
//!    `ConfigurationInvalid`, "Pipeline configuration invalid: field: problem".
//!
//! Then the PEM material is written through the [`PemStore`] and its paths go
//! into the `tls` block. What the result means:
//!
//! - name `<kind>.<metadata.name>` ([`pipeline_config_name`]), unique across
//!   the three kinds; one signal, the kind's.
//! - input: `spec.input.otlp.namespaces` as `include` or `exclude`; without
//!   a selector every namespace, the system ones included (Kyma's OTLP input
//!   default); records without a namespace always pass (Kyma's namespace
//!   filter only drops records that have one). `enabled: false`:
//!   [`Resolved::input_enabled`] is false and the pipeline takes nothing.
//! - an `http` output (a LogPipeline's Fluent Bit HTTP output) becomes a
//!   `fluent_bit_http` output to `https://host:port` (`http://` with
//!   `tls.insecure`; port 443 unless given) and `uri`; `user`/`password`
//!   become basic authentication; `compress: gzip`; `format` and `dedot`,
//!   and the runtime input's `keepAnnotations`/`dropLabels`, go to
//!   `fluent_bit`. Its input is the logs that arrive over OTLP, selected by
//!   `input.runtime.namespaces` (the system namespaces left out unless
//!   included); `input.runtime.enabled: false` takes nothing. A `host` with
//!   a scheme or path, or a `port` that is not a number, is
//!   `EndpointInvalid` ("HTTP output host invalid: …").
//! - output: `otlp_grpc` or `otlp_http`; a scheme-less gRPC endpoint gets
//!   `https://`, or `http://` with `tls.insecure`; basic authentication
//!   becomes an `Authorization: Basic base64(user:password)` header after the
//!   pipeline's own headers; a header `prefix` is followed by a space;
//!   compression `gzip` unless given.
//! - queue: `spec.seedgate.queue` over the given defaults (the file's
//!   top-level `queue`); absent: `None`, the defaults apply.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;

use super::PipelineKind;
use super::condition_text::{self as conditions, reason};
use super::crds::{
    HttpOutput, LogRuntimeInput, NamespaceSelector, OtlpCompression, OtlpOutput, OtlpProtocol,
    OutputTls, PipelineSpec, SecretKeyRef, ValueRef, ValueType, WhenFullPolicy,
};
use super::endpoint;
use super::pem_store::PemStore;
use super::tls_material::{self, TlsProblem};
use crate::config::{
    self, Compression, FluentBitConfig, FluentBitFormat, HeaderConfig, InputConfig,
    NamespacesConfig, OutputConfig, OutputType, PipelineConfig, QueueConfig, TlsConfig, WhenFull,
};

// === the result ===

/// Why a pipeline does not run: `ConfigurationGenerated=False` with this
/// reason (one of [`conditions::reason`]) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    /// The condition's reason.
    pub reason: &'static str,
    /// The condition's message.
    pub message: String,
}

impl Rejection {
    /// A rejection with this reason and message.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// `MaxPipelinesExceeded`.
    pub fn max_pipelines_exceeded() -> Self {
        Self::new(
            reason::MAX_PIPELINES_EXCEEDED,
            conditions::MSG_MAX_PIPELINES_EXCEEDED,
        )
    }

    /// Whether trying again later may succeed without any change to the
    /// pipeline or its Secrets (an API or local I/O failure): requeue with
    /// backoff. Every other rejection waits for a change of the pipeline or
    /// of a Secret it references.
    pub fn is_transient(&self) -> bool {
        self.reason == reason::VALIDATION_FAILED
    }
}

/// A certificate that expires within 14 days: the pipeline runs, and
/// `ConfigurationGenerated` is True with reason `TLSCertificateAboutToExpire`
/// and this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertWarning {
    /// "TLS certificate is about to expire, configured certificate is valid
    /// until YYYY-MM-DD" (or "TLS CA certificate …").
    pub message: String,
}

/// A pipeline that can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The pipeline as seedgate's configuration has it.
    pub pipeline: PipelineConfig,
    /// `spec.input.otlp.enabled`: when false the pipeline takes nothing;
    /// leave it out of the routing snapshot (its exporter may still drain
    /// what its queue holds).
    pub input_enabled: bool,
    /// A certificate expires soon.
    pub cert_warning: Option<CertWarning>,
    /// The PEM files the `tls` block names (for [`PemLease::keep_only`](super::pem_store::PemLease::keep_only)).
    pub pem_files: Vec<PathBuf>,
}

// === what resolve reads ===

/// The data of a Secret: key → bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Where Secrets come from: a reflector store, the API, a map in tests.
pub trait SecretSource {
    /// The data of Secret `namespace/name`: `Ok(None)` when it does not
    /// exist (NotFound), `Err` when it could not be read (any other API
    /// error: the pipeline gets `ValidationFailed` and should be retried).
    ///
    /// # Errors
    /// A [`SecretApiError`] saying what failed, for the log.
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretApiError>;
}

/// A Secret could not be read (not NotFound). Its text goes to the log; the
/// condition says [`MSG_VALIDATION_FAILED`](conditions::MSG_VALIDATION_FAILED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretApiError(pub String);

/// Secrets held in a map: for tests and for a caller that has read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticSecrets(pub BTreeMap<(String, String), SecretData>);

impl StaticSecrets {
    /// No Secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds Secret `namespace/name` with these keys and values.
    #[must_use]
    pub fn with<K: Into<String>, V: Into<Vec<u8>>>(
        mut self,
        namespace: &str,
        name: &str,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.0.insert(
            (namespace.to_owned(), name.to_owned()),
            data.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }
}

impl SecretSource for StaticSecrets {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretApiError> {
        Ok(self
            .0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

/// A reflector's cache of Secrets (never fails: what is not cached does not
/// exist).
impl SecretSource for kube::runtime::reflector::Store<Secret> {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretApiError> {
        let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
        Ok(kube::runtime::reflector::Store::get(self, &key).map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        }))
    }
}

/// Everything [`resolve`] reads besides the spec.
#[derive(Clone, Copy)]
pub struct ResolveContext<'a> {
    /// Where referenced Secrets are read.
    pub secrets: &'a dyn SecretSource,
    /// Where PEM material is written.
    pub pems: &'a dyn PemStore,
    /// The time certificates are checked against.
    pub now: Timestamp,
    /// What `spec.seedgate.queue` fields left out take (the configuration
    /// file's top-level `queue`).
    pub queue_defaults: QueueConfig,
}

// === resolve ===

/// The seedgate pipeline name of a resource: `<kind>.<name>`, e.g.
/// `tracepipeline.jaeger` (the destination label in metrics, the queue name
/// on disk).
pub fn pipeline_config_name(kind: PipelineKind, name: &str) -> String {
    format!("{}.{name}", kind.singular())
}

/// The Secret references a pipeline reads, in Kyma's order (endpoint or
/// host, basic user, basic password, headers, TLS `ca`, `cert`, `key` unless
/// `tls.insecure`). A watcher re-resolves the pipeline when one of them
/// changes, appears or goes away.
pub fn secret_refs<S: PipelineSpec>(spec: &S) -> Vec<&SecretKeyRef> {
    let (mut values, tls): (Vec<ValueRef<'_>>, _) = match Output::of(spec) {
        None => return Vec::new(),
        Some(Output::Otlp(otlp)) => {
            let mut values = vec![otlp.endpoint.value_ref()];
            if let Some(basic) = otlp.authentication.as_ref().and_then(|a| a.basic.as_ref()) {
                values.push(basic.user.value_ref());
                values.push(basic.password.value_ref());
            }
            values.extend(otlp.headers.iter().map(|h| h.value_ref()));
            (values, otlp.tls.as_ref())
        }
        Some(Output::Http(http)) => {
            let mut values = vec![http.host.value_ref()];
            values.extend(
                [&http.user, &http.password]
                    .into_iter()
                    .flatten()
                    .map(|v| v.value_ref()),
            );
            (values, http.tls.as_ref())
        }
    };
    if let Some(tls) = tls.filter(|t| !t.insecure) {
        values.extend(
            [&tls.ca, &tls.cert, &tls.key]
                .into_iter()
                .flatten()
                .map(|v| v.value_ref()),
        );
    }
    values.iter().filter_map(ValueRef::secret_ref).collect()
}

/// The output a pipeline sends to: OTLP (every kind) or, for a LogPipeline,
/// Fluent Bit's HTTP output.
#[derive(Clone, Copy)]
enum Output<'a> {
    Otlp(&'a OtlpOutput),
    Http(&'a HttpOutput),
}

impl<'a> Output<'a> {
    fn of<S: PipelineSpec>(spec: &'a S) -> Option<Self> {
        match (spec.otlp_output(), spec.http_output()) {
            (Some(otlp), _) => Some(Output::Otlp(otlp)),
            (None, Some(http)) => Some(Output::Http(http)),
            (None, None) => None,
        }
    }

    /// The field path of the output, for messages.
    fn field(self) -> &'static str {
        match self {
            Output::Otlp(_) => "spec.output.otlp",
            Output::Http(_) => "spec.output.http",
        }
    }

    fn tls(self) -> OutputTls {
        match self {
            Output::Otlp(o) => o.tls.clone(),
            Output::Http(h) => h.tls.clone(),
        }
        .unwrap_or_default()
    }
}

/// Validates a pipeline and builds its [`PipelineConfig`], in Kyma's check
/// order (see the module doc).
///
/// # Errors
/// The first [`Rejection`]: `ConfigurationGenerated=False` with its reason
/// and message.
pub fn resolve<S: PipelineSpec>(
    name: &str,
    spec: &S,
    ctx: &ResolveContext<'_>,
) -> Result<Resolved, Rejection> {
    let kind = S::KIND;

    // 0. What seedgate cannot do.
    let unsupported = |what: &str| {
        Rejection::new(
            reason::UNSUPPORTED_FEATURE,
            conditions::msg_unsupported(what),
        )
    };
    if let Some(what) = spec.unsupported() {
        return Err(unsupported(&what));
    }
    let Some(out) = Output::of(spec) else {
        return Err(unsupported("spec.output without otlp or http"));
    };

    // 1. Secret references.
    let mut secrets = Secrets::default();
    for r in secret_refs(spec) {
        secrets.load(r, ctx.secrets)?;
    }

    // 2. The endpoint: its URL without the path, and whether it is plain
    // text.
    let tls = out.tls();
    let (endpoint, plaintext) = match out {
        Output::Otlp(otlp) => {
            let raw = secrets
                .value(otlp.endpoint.value_ref())
                .ok_or_else(|| endpoint_invalid(tls_material::UNRESOLVED))?;
            let ep = endpoint::check(&String::from_utf8_lossy(&raw), otlp.protocol)
                .map_err(|e| endpoint_invalid(&e))?;
            check_scheme(ep.scheme.as_deref(), &tls)?;
            let plaintext = tls.insecure || ep.scheme.as_deref() == Some("http");
            (ep.url(plaintext), plaintext)
        }
        Output::Http(http) => {
            let raw = secrets
                .value(http.host.value_ref())
                .ok_or_else(|| http_host_invalid(tls_material::UNRESOLVED))?;
            // Fluent Bit's `tls off` is `insecure`; its default is TLS.
            let endpoint = http_endpoint(&raw, http.port.as_deref(), tls.insecure)?;
            if !tls.insecure {
                check_pair(&tls)?;
            }
            (endpoint, tls.insecure)
        }
    };

    // 3. TLS.
    let (pems, cert_warning) = if plaintext {
        (Pems::default(), None)
    } else {
        check_tls_material(&tls, &secrets, ctx.now)?
    };

    // 5. seedgate's own rules.
    let pipeline_name = pipeline_config_name(kind, name);
    if pipeline_name.len() > 63 {
        return Err(config_invalid(format!(
            "metadata.name: seedgate names this pipeline {pipeline_name:?}, which is longer than 63 characters: use a name of at most {} characters",
            63 - kind.singular().len() - 1
        )));
    }
    let tls_config = TlsConfig {
        insecure: plaintext,
        insecure_skip_verify: !plaintext && tls.insecure_skip_verify,
        ..TlsConfig::default()
    };
    let (output, input, input_enabled) = match out {
        Output::Otlp(otlp) => {
            let output = otlp_output(otlp, &secrets, endpoint, tls_config)?;
            let input_spec = spec.otlp_input();
            let (include, exclude) = selector(input_spec.and_then(|i| i.namespaces.as_ref()));
            let input = InputConfig {
                namespaces: NamespacesConfig {
                    system: include.is_none(),
                    include,
                    exclude,
                },
                no_namespace: true,
            };
            (output, input, input_spec.is_none_or(|i| i.enabled))
        }
        Output::Http(http) => {
            let runtime = spec.runtime_input();
            let output = http_output(http, runtime, &secrets, endpoint, tls_config)?;
            let (include, exclude) = selector(runtime.and_then(|r| r.namespaces.as_ref()));
            // Kyma's runtime input leaves the system namespaces out unless
            // they are included by name.
            let input = InputConfig {
                namespaces: NamespacesConfig {
                    system: false,
                    include,
                    exclude,
                },
                no_namespace: true,
            };
            (
                output,
                input,
                runtime.is_none_or(|r| r.enabled != Some(false)),
            )
        }
    };
    let queue = match spec.seedgate().and_then(|s| s.queue.as_ref()) {
        None => None,
        Some(q) => {
            let max_bytes = match q.max_bytes.as_deref() {
                None => ctx.queue_defaults.max_bytes,
                Some(text) => match text.parse::<bytesize::ByteSize>() {
                    Ok(b) if b.0 > 0 => b,
                    Ok(_) => {
                        return Err(config_invalid(
                            "spec.seedgate.queue.maxBytes: must be greater than 0".to_owned(),
                        ));
                    }
                    Err(_) => {
                        return Err(config_invalid(format!(
                            "spec.seedgate.queue.maxBytes: {text:?} is not a size (e.g. 512Mi, 1GiB)"
                        )));
                    }
                },
            };
            Some(QueueConfig {
                max_bytes,
                when_full: match q.when_full {
                    None => ctx.queue_defaults.when_full,
                    Some(WhenFullPolicy::Block) => WhenFull::Block,
                    Some(WhenFullPolicy::DropNewest) => WhenFull::DropNewest,
                },
                retry_after: ctx.queue_defaults.retry_after,
            })
        }
    };
    let mut pipeline = PipelineConfig {
        queue,
        ..PipelineConfig::new(&pipeline_name, vec![kind.signal()], input, output)
    };
    let output_field = out.field();
    let problems = config::pipeline_problems(&pipeline, &|part| {
        match part {
            "name" => "metadata.name",
            "input" => match out {
                Output::Otlp(_) => "spec.input.otlp",
                Output::Http(_) => "spec.input.runtime",
            },
            "output" => output_field,
            "queue" => "spec.seedgate.queue",
            other => other,
        }
        .to_owned()
    });
    if let Some(p) = problems.into_iter().next() {
        return Err(
            if p.field.starts_with(&format!("{output_field}.endpoint")) {
                match out {
                    Output::Otlp(_) => endpoint_invalid(&p.reason),
                    Output::Http(_) => http_host_invalid(&p.reason),
                }
            } else if p.field.starts_with(&format!("{output_field}.tls")) {
                tls_invalid(&p.reason)
            } else {
                config_invalid(p.to_string())
            },
        );
    }

    // The PEM files, last: nothing is written for a pipeline that is refused.
    let mut pem_files = Vec::new();
    let mut store = |pem: &Option<Vec<u8>>| -> Result<Option<PathBuf>, Rejection> {
        let Some(pem) = pem else { return Ok(None) };
        let path = ctx.pems.store(pem).map_err(|e| {
            Rejection::new(
                reason::VALIDATION_FAILED,
                format!("Pipeline validation failed due to a local error: cannot write TLS material: {e}"),
            )
        })?;
        pem_files.push(path.clone());
        Ok(Some(path))
    };
    pipeline.output.tls.ca_file = store(&pems.ca)?;
    pipeline.output.tls.cert_file = store(&pems.cert)?;
    pipeline.output.tls.key_file = store(&pems.key)?;

    // The exporters' own agreement of scheme and TLS block, as a last check.
    if let Err(e) = crate::exporters::tls::wants_tls(
        Some(if plaintext { "http" } else { "https" }),
        &pipeline.output.tls,
    ) {
        return Err(tls_invalid(&e.to_string()));
    }

    Ok(Resolved {
        pipeline,
        input_enabled,
        cert_warning,
        pem_files,
    })
}

fn endpoint_invalid(detail: &str) -> Rejection {
    Rejection::new(
        reason::ENDPOINT_INVALID,
        conditions::msg_endpoint_invalid(detail),
    )
}

fn http_host_invalid(detail: &str) -> Rejection {
    Rejection::new(
        reason::ENDPOINT_INVALID,
        conditions::msg_http_host_invalid(detail),
    )
}

fn tls_invalid(detail: &str) -> Rejection {
    Rejection::new(
        reason::TLS_CONFIGURATION_INVALID,
        conditions::msg_tls_invalid(detail),
    )
}

fn config_invalid(detail: String) -> Rejection {
    Rejection::new(
        reason::CONFIGURATION_INVALID,
        conditions::msg_configuration_invalid(&detail),
    )
}

/// A namespace selector's `include` and `exclude`, empty lists as absent.
fn selector(s: Option<&NamespaceSelector>) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let non_empty = |l: &Option<Vec<String>>| l.clone().filter(|l| !l.is_empty());
    (
        s.and_then(|s| non_empty(&s.include)),
        s.and_then(|s| non_empty(&s.exclude)),
    )
}

/// seedgate's own refusals of an OTLP endpoint's scheme against its `tls`
/// block (the OpenTelemetry Collector would quietly send plain text;
/// seedgate does not guess).
fn check_scheme(scheme: Option<&str>, tls: &OutputTls) -> Result<(), Rejection> {
    check_pair(tls)?;
    if tls.insecure && scheme == Some("https") {
        return Err(tls_invalid(
            "insecure is set but the endpoint is https://: use http:// for plain text",
        ));
    }
    let has_material = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some();
    if !tls.insecure && scheme == Some("http") && has_material {
        return Err(tls_invalid(
            "ca, cert or key is set but the endpoint is http://: use https://, or set insecure for plain text",
        ));
    }
    Ok(())
}

/// `cert` and `key` go together.
fn check_pair(tls: &OutputTls) -> Result<(), Rejection> {
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(tls_invalid(tls_material::PAIR_MISSING));
    }
    Ok(())
}

/// Step 3 for a TLS output (its `cert`/`key` pair checked in step 2): the
/// PEM material read, checked and sanitised,
/// and a warning when a certificate expires soon.
fn check_tls_material(
    tls: &OutputTls,
    secrets: &Secrets,
    now: Timestamp,
) -> Result<(Pems, Option<CertWarning>), Rejection> {
    let pem = |v: &Option<ValueType>| -> Result<Option<Vec<u8>>, Rejection> {
        match v {
            None => Ok(None),
            Some(v) => secrets
                .value(v.value_ref())
                .map(|b| Some(tls_material::sanitize(&b)))
                .ok_or_else(|| tls_invalid(tls_material::UNRESOLVED)),
        }
    };
    let pems = Pems {
        ca: pem(&tls.ca)?,
        cert: pem(&tls.cert)?,
        key: pem(&tls.key)?,
    };
    let warning = match tls_material::check(
        pems.cert.as_deref(),
        pems.key.as_deref(),
        pems.ca.as_deref(),
        now,
    ) {
        Ok(None) => None,
        Ok(Some(e)) => Some(CertWarning {
            message: conditions::msg_cert_about_to_expire(e.not_after, e.ca),
        }),
        Err(TlsProblem::Invalid(detail)) => return Err(tls_invalid(detail)),
        Err(TlsProblem::Expired { not_after, ca }) => {
            return Err(Rejection::new(
                reason::TLS_CERTIFICATE_EXPIRED,
                conditions::msg_cert_expired(not_after, ca),
            ));
        }
    };
    Ok((pems, warning))
}

/// `Authorization: Basic base64(user:password)`.
fn basic_header(user: Vec<u8>, password: &[u8]) -> HeaderConfig {
    let mut pair = user;
    pair.push(b':');
    pair.extend_from_slice(password);
    HeaderConfig::new(
        "Authorization",
        "Basic ",
        base64::engine::general_purpose::STANDARD.encode(pair),
    )
}

/// The output of an `otlp` block: headers, basic authentication,
/// compression, protocol.
fn otlp_output(
    otlp: &OtlpOutput,
    secrets: &Secrets,
    endpoint: String,
    tls: TlsConfig,
) -> Result<OutputConfig, Rejection> {
    let mut headers = Vec::with_capacity(otlp.headers.len() + 1);
    for (i, h) in otlp.headers.iter().enumerate() {
        let value = secrets.value(h.value_ref()).ok_or_else(|| {
            config_invalid(format!(
                "spec.output.otlp.headers[{i}]: Header must have 'value' or 'valueFrom' set"
            ))
        })?;
        headers.push(HeaderConfig {
            name: h.name.clone(),
            value: String::from_utf8_lossy(&value).into_owned(),
            prefix: match h.prefix.as_deref() {
                Some(p) if !p.is_empty() => format!("{p} "),
                _ => String::new(),
            },
        });
    }
    if let Some(basic) = otlp.authentication.as_ref().and_then(|a| a.basic.as_ref()) {
        if let Some(i) = otlp
            .headers
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case("authorization"))
        {
            return Err(config_invalid(format!(
                "spec.output.otlp.headers[{i}].name: Authorization is also set by spec.output.otlp.authentication.basic: keep one"
            )));
        }
        let user = secrets.value(basic.user.value_ref()).ok_or_else(|| {
            config_invalid(
                "spec.output.otlp.authentication.basic: 'user' must have 'value' or 'valueFrom' set"
                    .to_owned(),
            )
        })?;
        let password = secrets.value(basic.password.value_ref()).ok_or_else(|| {
            config_invalid(
                "spec.output.otlp.authentication.basic: 'password' must have 'value' or 'valueFrom' set"
                    .to_owned(),
            )
        })?;
        headers.push(basic_header(user, &password));
    }
    Ok(OutputConfig {
        kind: match otlp.protocol {
            OtlpProtocol::Grpc => OutputType::OtlpGrpc,
            OtlpProtocol::Http => OutputType::OtlpHttp,
        },
        endpoint: Some(endpoint),
        path: otlp.path.clone().filter(|p| !p.is_empty()),
        headers,
        compression: match otlp.compression {
            Some(OtlpCompression::None) => Compression::None,
            Some(OtlpCompression::Zstd) => Compression::Zstd,
            Some(OtlpCompression::Gzip | OtlpCompression::Snappy) | None => Compression::Gzip,
        },
        tls,
        ..OutputConfig::of_kind(OutputType::OtlpGrpc)
    })
}

/// Kyma's default port of an `http` output.
const HTTP_DEFAULT_PORT: &str = "443";

/// `http(s)://host:port` of an `http` output: `host` must be a host name or
/// an IP address (Fluent Bit's `host`), `port` a port number.
fn http_endpoint(host: &[u8], port: Option<&str>, insecure: bool) -> Result<String, Rejection> {
    let host = String::from_utf8_lossy(host).trim().to_owned();
    let port = port.filter(|p| !p.is_empty()).unwrap_or(HTTP_DEFAULT_PORT);
    if host.is_empty() {
        return Err(http_host_invalid("host is empty"));
    }
    if host.contains("://") || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(http_host_invalid(&format!(
            "host {host:?} must be a host name or IP address, without scheme or path (the path goes in uri)"
        )));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(http_host_invalid(&format!(
            "port {port:?} is not a port number"
        )));
    };
    let scheme = if insecure { "http" } else { "https" };
    // An IPv6 address needs brackets in a URL.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

/// The output of an `http` block (Fluent Bit's HTTP output).
fn http_output(
    http: &HttpOutput,
    runtime: Option<&LogRuntimeInput>,
    secrets: &Secrets,
    endpoint: String,
    tls: TlsConfig,
) -> Result<OutputConfig, Rejection> {
    let mut headers = Vec::new();
    let user = http
        .user
        .as_ref()
        .and_then(|v| secrets.value(v.value_ref()));
    let password = http
        .password
        .as_ref()
        .and_then(|v| secrets.value(v.value_ref()));
    match (user, password) {
        (None, None) => {}
        (Some(user), Some(password)) => headers.push(basic_header(user, &password)),
        (Some(_), None) | (None, Some(_)) => {
            return Err(config_invalid(
                "spec.output.http: 'user' and 'password' go together (basic authentication)"
                    .to_owned(),
            ));
        }
    }
    let compression = match http.compress.as_deref() {
        None | Some("" | "none" | "off") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some(other) => {
            return Err(config_invalid(format!(
                "spec.output.http.compress: {other:?} is not supported: use gzip, or leave it out"
            )));
        }
    };
    let format = match http.format.as_deref() {
        Some("json_lines") => FluentBitFormat::JsonLines,
        Some("json_stream") => FluentBitFormat::JsonStream,
        // `unsupported` has refused every other value.
        _ => FluentBitFormat::Json,
    };
    Ok(OutputConfig {
        endpoint: Some(endpoint),
        path: http.uri.clone().filter(|p| !p.is_empty()),
        headers,
        compression,
        tls,
        fluent_bit: Some(FluentBitConfig {
            format,
            dedot: http.dedot.unwrap_or(false),
            keep_annotations: runtime.and_then(|r| r.keep_annotations).unwrap_or(false),
            drop_labels: runtime.and_then(|r| r.drop_labels).unwrap_or(false),
            ..FluentBitConfig::default()
        }),
        ..OutputConfig::of_kind(OutputType::FluentBitHttp)
    })
}

/// The PEM material of a pipeline, sanitised.
#[derive(Default)]
struct Pems {
    ca: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

/// The referenced Secret values, read once per resolve (one consistent view).
#[derive(Default)]
struct Secrets(BTreeMap<SecretKeyRef, Vec<u8>>);

impl Secrets {
    /// Reads one reference, with Kyma's checks and messages.
    fn load(&mut self, r: &SecretKeyRef, source: &dyn SecretSource) -> Result<(), Rejection> {
        if self.0.contains_key(r) {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("Name", &r.name),
            ("Namespace", &r.namespace),
            ("Key", &r.key),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(f, _)| f)
        .collect();
        let missing_secret = |message| Rejection::new(reason::REFERENCED_SECRET_MISSING, message);
        if !missing.is_empty() {
            return Err(missing_secret(conditions::msg_secret_ref_missing_fields(
                &missing,
            )));
        }
        let data = source
            .get(&r.namespace, &r.name)
            .map_err(|_| {
                Rejection::new(reason::VALIDATION_FAILED, conditions::MSG_VALIDATION_FAILED)
            })?
            .ok_or_else(|| missing_secret(conditions::msg_secret_missing(&r.name, &r.namespace)))?;
        let value = data.get(&r.key).ok_or_else(|| {
            missing_secret(conditions::msg_secret_key_missing(
                &r.key,
                &r.name,
                &r.namespace,
            ))
        })?;
        self.0.insert(r.clone(), value.clone());
        Ok(())
    }

    /// A value: the plain text when not empty, else the loaded Secret value;
    /// `None` when neither is given ("failed to resolve value").
    fn value(&self, v: ValueRef<'_>) -> Option<Vec<u8>> {
        match (v.value, v.secret_ref()) {
            (Some(text), _) if !text.is_empty() => Some(text.as_bytes().to_vec()),
            (_, Some(r)) => self.0.get(r).cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

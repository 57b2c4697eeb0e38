//! `LogPipeline`, `MetricPipeline` and `TracePipeline`
//! (`telemetry.kyma-project.io/v1beta1`): the Kyma telemetry schema as seedgate
//! serves it, cluster-scoped, with a `status` subresource.
//!
//! The field names and shapes are Kyma's (the upstream CRDs are the
//! authority), so a pipeline written for Kyma applies here unchanged. What
//! seedgate does with each field:
//!
//! - `spec.input.otlp` (LogPipeline, MetricPipeline): `enabled` (default
//!   true) and a namespace selector, `include` or `exclude`. Without a
//!   selector the pipeline takes every namespace, the system ones included
//!   (Kyma's OTLP input default). TracePipeline has no input: it takes all.
//! - `spec.output.otlp`: protocol, endpoint, path, basic authentication,
//!   headers, TLS and compression, as Kyma.
//! - `spec.seedgate`: seedgate's own extension (not in Kyma): the pipeline's
//!   queue limit and what happens when it is full.
//! - Kyma features seedgate does not have are kept in the schema, so the API
//!   server does not silently prune them, and a pipeline that uses them is
//!   not applied (`ConfigurationGenerated=False`, reason `UnsupportedFeature`,
//!   see [`PipelineSpec::unsupported`]): OTTL `transform` and `filter`,
//!   OAuth2, the agent inputs (`runtime`, `prometheus`, `istio`) when enabled,
//!   `compression: snappy`, `temporality: delta`. Fluent Bit outputs
//!   (`output.http`, `output.custom`) are not in the schema: `output.otlp` is
//!   required, so the API server refuses such a LogPipeline.
//!
//! Deserialisation is lenient (serde defaults everywhere, unknown fields
//! ignored) so that every stored object can be read and given a status; the
//! schema is strict, with Kyma's CEL rules and messages, so the API server
//! refuses what Kyma's refuses.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PipelineKind;

/// The API group.
pub const GROUP: &str = "telemetry.kyma-project.io";
/// The one version served.
pub const VERSION: &str = "v1beta1";

// === the kinds ===

/// The spec of a `LogPipeline`: logs arriving over OTLP, to one OTLP backend.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "telemetry.kyma-project.io",
    version = "v1beta1",
    kind = "LogPipeline",
    status = "PipelineStatus",
    derive = "PartialEq",
    category = "kyma-telemetry",
    category = "kyma-telemetry-pipelines",
    printcolumn = r#"{"name":"Configuration Generated","type":"string","jsonPath":".status.conditions[?(@.type==\"ConfigurationGenerated\")].status"}"#,
    printcolumn = r#"{"name":"Gateway Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"GatewayHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Flow Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"TelemetryFlowHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "LogPipeline sends the logs that arrive at seedgate over OTLP to one OTLP backend (Kyma telemetry schema, served by seedgate)."
)]
#[serde(rename_all = "camelCase")]
pub struct LogPipelineSpec {
    /// Which logs the pipeline takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<LogPipelineInput>,
    /// Where the pipeline sends its logs.
    pub output: PipelineOutput,
    /// OTTL transformations (Kyma). Not supported by seedgate: a pipeline
    /// that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub transform: Option<Vec<Value>>,
    /// OTTL filters (Kyma). Not supported by seedgate: a pipeline that lists
    /// any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub filter: Option<Vec<Value>>,
    /// seedgate's own settings for this pipeline (not part of Kyma's schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seedgate: Option<SeedgateOptions>,
}

/// The spec of a `MetricPipeline`: metrics arriving over OTLP, to one OTLP
/// backend.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "telemetry.kyma-project.io",
    version = "v1beta1",
    kind = "MetricPipeline",
    status = "PipelineStatus",
    derive = "PartialEq",
    category = "kyma-telemetry",
    category = "kyma-telemetry-pipelines",
    printcolumn = r#"{"name":"Configuration Generated","type":"string","jsonPath":".status.conditions[?(@.type==\"ConfigurationGenerated\")].status"}"#,
    printcolumn = r#"{"name":"Gateway Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"GatewayHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Flow Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"TelemetryFlowHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "MetricPipeline sends the metrics that arrive at seedgate over OTLP to one OTLP backend (Kyma telemetry schema, served by seedgate)."
)]
#[serde(rename_all = "camelCase")]
pub struct MetricPipelineSpec {
    /// Which metrics the pipeline takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<MetricPipelineInput>,
    /// Where the pipeline sends its metrics.
    pub output: MetricPipelineOutput,
    /// OTTL transformations (Kyma). Not supported by seedgate: a pipeline
    /// that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub transform: Option<Vec<Value>>,
    /// OTTL filters (Kyma). Not supported by seedgate: a pipeline that lists
    /// any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub filter: Option<Vec<Value>>,
    /// seedgate's own settings for this pipeline (not part of Kyma's schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seedgate: Option<SeedgateOptions>,
}

/// The spec of a `TracePipeline`: every span arriving over OTLP, to one OTLP
/// backend.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "telemetry.kyma-project.io",
    version = "v1beta1",
    kind = "TracePipeline",
    status = "PipelineStatus",
    derive = "PartialEq",
    category = "kyma-telemetry",
    category = "kyma-telemetry-pipelines",
    printcolumn = r#"{"name":"Configuration Generated","type":"string","jsonPath":".status.conditions[?(@.type==\"ConfigurationGenerated\")].status"}"#,
    printcolumn = r#"{"name":"Gateway Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"GatewayHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Flow Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"TelemetryFlowHealthy\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "TracePipeline sends every span that arrives at seedgate over OTLP to one OTLP backend (Kyma telemetry schema, served by seedgate)."
)]
#[serde(rename_all = "camelCase")]
pub struct TracePipelineSpec {
    /// Where the pipeline sends its spans.
    pub output: PipelineOutput,
    /// OTTL transformations (Kyma). Not supported by seedgate: a pipeline
    /// that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub transform: Option<Vec<Value>>,
    /// OTTL filters (Kyma). Not supported by seedgate: a pipeline that lists
    /// any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_list")]
    pub filter: Option<Vec<Value>>,
    /// seedgate's own settings for this pipeline (not part of Kyma's schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seedgate: Option<SeedgateOptions>,
}

/// The status of every pipeline kind.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// `ConfigurationGenerated`, `GatewayHealthy` and `TelemetryFlowHealthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// === inputs ===

/// `spec.input` of a LogPipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogPipelineInput {
    /// Logs that arrive over OTLP: the only input seedgate has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpInput>,
    /// Kyma's log agent (container logs). seedgate runs no agent: unless
    /// `enabled: false`, the pipeline is not applied. Point the seed's agents
    /// at seedgate's OTLP ports and select namespaces with `otlp.namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub runtime: Option<Value>,
}

/// `spec.input` of a MetricPipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricPipelineInput {
    /// Metrics that arrive over OTLP: the only input seedgate has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpInput>,
    /// Kyma's runtime metrics (agent). Not supported by seedgate: with
    /// `enabled: true` the pipeline is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub runtime: Option<Value>,
    /// Kyma's Prometheus scraping (agent). Not supported by seedgate: with
    /// `enabled: true` the pipeline is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub prometheus: Option<Value>,
    /// Kyma's Istio metrics (agent). Not supported by seedgate: with
    /// `enabled: true` the pipeline is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub istio: Option<Value>,
}

/// `spec.input.otlp`: data pushed to seedgate's OTLP receivers.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OtlpInput {
    /// Take OTLP data (default true). `false`: the pipeline takes nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which namespaces (the `k8s.namespace.name` resource attribute). Left
    /// out: every namespace, the system ones included. Data without a
    /// namespace is always taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
}

impl Default for OtlpInput {
    fn default() -> Self {
        Self {
            enabled: true,
            namespaces: None,
        }
    }
}

/// A namespace selector: `include` or `exclude`, not both.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.include) && has(self.exclude))", "message": "Only one of 'include' or 'exclude' can be defined"}
]))]
pub struct NamespaceSelector {
    /// Only these namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63)))]
    pub include: Option<Vec<String>>,
    /// Every namespace but these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63)))]
    pub exclude: Option<Vec<String>>,
}

// === outputs ===

/// `spec.output` of a LogPipeline or TracePipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineOutput {
    /// The OTLP backend.
    pub otlp: OtlpOutput,
}

/// `spec.output` of a MetricPipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricPipelineOutput {
    /// The OTLP backend.
    pub otlp: MetricOtlpOutput,
}

/// `spec.output.otlp` of a MetricPipeline: the common OTLP output plus
/// `temporality`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricOtlpOutput {
    /// The fields every OTLP output has.
    #[serde(flatten)]
    pub common: OtlpOutput,
    /// `preserve` (default) keeps each metric's temporality. `delta`
    /// (convert cumulative to delta) is not supported by seedgate.
    #[serde(default)]
    pub temporality: Temporality,
}

/// An OTLP backend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.path) && size(self.path) > 0) ? self.protocol == 'http' : true", "message": "Path is only available with HTTP protocol"},
    {"rule": "has(self.endpoint.value) || has(self.endpoint.valueFrom)", "message": "'endpoint' must have 'value' or 'valueFrom' set"}
]))]
pub struct OtlpOutput {
    /// `grpc` (default) or `http`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The backend: `http(s)://host:port` (`host:port` for gRPC, TLS unless
    /// `tls.insecure`). gRPC needs a port and takes no path.
    pub endpoint: ValueType,
    /// HTTP only: the URL path, instead of `/v1/logs`, `/v1/metrics` or
    /// `/v1/traces` after the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How seedgate authenticates to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
    /// TLS towards the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
    /// `none`, `gzip` (the default when left out) or `zstd`; `snappy` is not
    /// supported by seedgate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<OtlpCompression>,
}

/// The OTLP transport.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP (protobuf).
    Http,
}

/// `none`, `gzip` (the default when left out) or `zstd`; `snappy` (in
/// Kyma's enum) is not supported by seedgate.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpCompression {
    /// Plain.
    None,
    /// gzip.
    Gzip,
    /// snappy: not supported by seedgate.
    Snappy,
    /// zstd.
    Zstd,
}

/// Aggregation temporality of exported metrics (Kyma's enum).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    /// As the metrics arrive.
    #[default]
    Preserve,
    /// Cumulative converted to delta: not supported by seedgate.
    Delta,
}

/// `spec.output.otlp.authentication`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.basic) && has(self.oauth2))", "message": "Only one authentication method can be specified"}
]))]
pub struct Authentication {
    /// HTTP Basic authentication: an `Authorization: Basic …` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// OAuth2 client credentials (Kyma). Not supported by seedgate: a
    /// pipeline that sets it is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub oauth2: Option<Value>,
}

/// Basic authentication.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.user.value) || has(self.user.valueFrom)", "message": "'user' must have 'value' or 'valueFrom' set"},
    {"rule": "has(self.password.value) || has(self.password.valueFrom)", "message": "'password' must have 'value' or 'valueFrom' set"}
]))]
pub struct BasicAuth {
    /// The user name.
    pub user: ValueType,
    /// The password.
    pub password: ValueType,
}

/// A header sent with every request: `name: prefix value`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.value) || has(self.valueFrom)", "message": "Header must have 'value' or 'valueFrom' set"},
    {"rule": "!(has(self.value) && has(self.valueFrom))", "message": "Only one of 'value' or 'valueFrom' can be set"}
]))]
pub struct Header {
    /// The header name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Put in front of the value, separated by a space (e.g. `Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value as plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFromSource>,
}

impl Header {
    /// The header's value or reference.
    pub fn value_ref(&self) -> ValueRef<'_> {
        ValueRef {
            value: self.value.as_deref(),
            value_from: self.value_from.as_ref(),
        }
    }
}

/// `spec.output.otlp.tls`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.cert) == has(self.key)", "message": "Can define either both 'cert' and 'key', or neither"}
]))]
pub struct OutputTls {
    /// Plain text instead of TLS. Needs an `http://` (or scheme-less gRPC)
    /// endpoint; `ca`, `cert` and `key` are then not used.
    #[serde(default)]
    pub insecure: bool,
    /// Do not verify the backend's certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM CA certificate(s) to verify the backend with, instead of the
    /// public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ValueType>,
    /// PEM client certificate (mTLS); goes with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<ValueType>,
    /// PEM client private key (mTLS); goes with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ValueType>,
}

/// A value given as plain text or taken from a Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.value) && has(self.valueFrom))", "message": "Only one of 'value' or 'valueFrom' can be set"}
]))]
pub struct ValueType {
    /// The value as plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFromSource>,
}

impl ValueType {
    /// A plain-text value.
    pub fn plain(value: impl Into<String>) -> Self {
        Self {
            value: Some(value.into()),
            value_from: None,
        }
    }

    /// A value from key `key` of Secret `namespace/name`.
    pub fn from_secret(
        namespace: impl Into<String>,
        name: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            value: None,
            value_from: Some(ValueFromSource {
                secret_key_ref: SecretKeyRef {
                    name: name.into(),
                    namespace: namespace.into(),
                    key: key.into(),
                },
            }),
        }
    }

    /// The value or reference.
    pub fn value_ref(&self) -> ValueRef<'_> {
        ValueRef {
            value: self.value.as_deref(),
            value_from: self.value_from.as_ref(),
        }
    }
}

/// A borrowed value-or-reference, the same for [`ValueType`] and [`Header`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRef<'a> {
    /// Plain text.
    pub value: Option<&'a str>,
    /// From a Secret.
    pub value_from: Option<&'a ValueFromSource>,
}

impl<'a> ValueRef<'a> {
    /// The Secret reference that is used, with Kyma's rule: a non-empty plain
    /// value wins over `valueFrom`.
    pub fn secret_ref(&self) -> Option<&'a SecretKeyRef> {
        match self.value {
            Some(v) if !v.is_empty() => None,
            _ => self.value_from.map(|f| &f.secret_key_ref),
        }
    }
}

/// Where a value comes from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueFromSource {
    /// A key of a Secret.
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret in a namespace.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The Secret's namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1))]
    pub key: String,
}

// === the seedgate extension ===

/// `spec.seedgate`: settings only seedgate has.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeedgateOptions {
    /// This pipeline's on-disk queue. Fields left out take the values of the
    /// configuration file's top-level `queue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<SeedgateQueue>,
}

/// `spec.seedgate.queue`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeedgateQueue {
    /// Bytes this pipeline may hold on disk, e.g. `512Mi`, `1GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)? ?([kKmMgGtTpPeE][iI]?[bB]?|[bB])?$"))]
    pub max_bytes: Option<String>,
    /// When the queue is full: `block` refuses the whole request (clients
    /// retry), `dropNewest` drops this pipeline's part and counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_full: Option<WhenFullPolicy>,
}

/// When the queue is full: `block` refuses the whole request (clients
/// retry), `dropNewest` drops this pipeline's part of it and counts it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WhenFullPolicy {
    /// Refuse the request (HTTP 429 / gRPC `RESOURCE_EXHAUSTED`).
    Block,
    /// Drop this pipeline's part of the request, count it.
    DropNewest,
}

// === one view of the three specs ===

/// What [`resolve`](super::pipeline_spec::resolve) needs of a pipeline's
/// spec, the same for the three kinds.
pub trait PipelineSpec {
    /// The kind this spec belongs to.
    const KIND: PipelineKind;

    /// `spec.input.otlp`; `None` when left out (or for a TracePipeline,
    /// which has no input).
    fn otlp_input(&self) -> Option<&OtlpInput>;

    /// `spec.output.otlp`.
    fn otlp_output(&self) -> &OtlpOutput;

    /// `spec.seedgate`.
    fn seedgate(&self) -> Option<&SeedgateOptions>;

    /// The first feature this pipeline uses that seedgate does not have, as
    /// the text after "Not supported by seedgate: ".
    fn unsupported(&self) -> Option<String>;
}

impl PipelineSpec for LogPipelineSpec {
    const KIND: PipelineKind = PipelineKind::Log;

    fn otlp_input(&self) -> Option<&OtlpInput> {
        self.input.as_ref().and_then(|i| i.otlp.as_ref())
    }

    fn otlp_output(&self) -> &OtlpOutput {
        &self.output.otlp
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn unsupported(&self) -> Option<String> {
        // Kyma's log agent is on unless `enabled: false` (its webhook
        // defaults a present runtime input to enabled).
        let runtime = self.input.as_ref().and_then(|i| i.runtime.as_ref());
        if runtime.is_some_and(|r| r.get("enabled") != Some(&Value::Bool(false))) {
            return Some(AGENT_INPUT.replace("{input}", "runtime"));
        }
        unsupported_common(&self.output.otlp, None, &self.transform, &self.filter)
    }
}

impl PipelineSpec for MetricPipelineSpec {
    const KIND: PipelineKind = PipelineKind::Metric;

    fn otlp_input(&self) -> Option<&OtlpInput> {
        self.input.as_ref().and_then(|i| i.otlp.as_ref())
    }

    fn otlp_output(&self) -> &OtlpOutput {
        &self.output.otlp.common
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn unsupported(&self) -> Option<String> {
        // Kyma's metric agent inputs are off unless `enabled: true`.
        if let Some(input) = &self.input {
            for (name, value) in [
                ("runtime", &input.runtime),
                ("prometheus", &input.prometheus),
                ("istio", &input.istio),
            ] {
                if value
                    .as_ref()
                    .is_some_and(|v| v.get("enabled") == Some(&Value::Bool(true)))
                {
                    return Some(AGENT_INPUT.replace("{input}", name));
                }
            }
        }
        unsupported_common(
            &self.output.otlp.common,
            Some(self.output.otlp.temporality),
            &self.transform,
            &self.filter,
        )
    }
}

impl PipelineSpec for TracePipelineSpec {
    const KIND: PipelineKind = PipelineKind::Trace;

    fn otlp_input(&self) -> Option<&OtlpInput> {
        None
    }

    fn otlp_output(&self) -> &OtlpOutput {
        &self.output.otlp
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn unsupported(&self) -> Option<String> {
        unsupported_common(&self.output.otlp, None, &self.transform, &self.filter)
    }
}

const AGENT_INPUT: &str = "spec.input.{input} (seedgate runs no agent: point the seed's agents at seedgate's OTLP ports, select namespaces with spec.input.otlp.namespaces, and set spec.input.{input}.enabled to false)";

fn unsupported_common(
    otlp: &OtlpOutput,
    temporality: Option<Temporality>,
    transform: &Option<Vec<Value>>,
    filter: &Option<Vec<Value>>,
) -> Option<String> {
    if otlp
        .authentication
        .as_ref()
        .is_some_and(|a| a.oauth2.is_some())
    {
        return Some(
            "spec.output.otlp.authentication.oauth2 (use authentication.basic or a header)"
                .to_owned(),
        );
    }
    if otlp.compression == Some(OtlpCompression::Snappy) {
        return Some("spec.output.otlp.compression 'snappy' (use none, gzip or zstd)".to_owned());
    }
    if temporality == Some(Temporality::Delta) {
        return Some(
            "spec.output.otlp.temporality 'delta' (seedgate forwards metrics as they arrive: use preserve)"
                .to_owned(),
        );
    }
    if transform.as_ref().is_some_and(|t| !t.is_empty()) {
        return Some("spec.transform (OTTL transformations)".to_owned());
    }
    if filter.as_ref().is_some_and(|f| !f.is_empty()) {
        return Some("spec.filter (OTTL filters)".to_owned());
    }
    None
}

// === the manifests ===

/// The three CRDs, in the order `LogPipeline`, `MetricPipeline`,
/// `TracePipeline`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        LogPipeline::crd(),
        MetricPipeline::crd(),
        TracePipeline::crd(),
    ]
}

/// The three CRDs as one multi-document YAML text: what `seedgate crds`
/// prints and `deploy/crds/telemetry.kyma-project.io_pipelines.yaml` holds.
///
/// # Errors
/// When a CRD cannot be serialised (never for these types; a test proves it).
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::from(
        "# Generated by `seedgate crds`: LogPipeline, MetricPipeline and TracePipeline\n\
         # (telemetry.kyma-project.io/v1beta1, the Kyma telemetry schema as seedgate serves it).\n\
         # Do not edit: change src/operator/crds.rs and run `seedgate crds > <this file>`.\n",
    );
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

// === schema helpers ===

fn default_true() -> bool {
    true
}

/// An object the schema does not describe (a Kyma feature seedgate only
/// detects): kept as written, not pruned.
fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A list of such objects.
fn opaque_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

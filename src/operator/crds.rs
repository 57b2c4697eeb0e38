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
//! - Kyma features seedgate does not have are in the schema, whole, so the
//!   API server accepts and refuses what Kyma's does, and a pipeline that
//!   uses them is not applied at all (`ConfigurationGenerated=False`, reason
//!   `UnsupportedFeature` naming the field and what to do instead, see
//!   [`PipelineSpec::unsupported`]): the Fluent Bit outputs `output.http`
//!   and `output.custom` and Fluent Bit's `files`, `filters` and
//!   `variables`; OTTL `transform` and `filter`; OAuth2; the agent inputs
//!   (`runtime`, `prometheus`, `istio`) when enabled; `compression: snappy`;
//!   `temporality: delta`.
//!
//! The schemas are Kyma's v1beta1 ones field for field, with every
//! `x-kubernetes-validations` rule and Kyma's message (`tests/it/crds.rs`
//! compares them with the upstream CRDs and runs Kyma's reject cases through
//! an API server double that evaluates them). Where seedgate differs, on
//! purpose: `protocol` defaults to `grpc` and the LogPipeline `spec` rules
//! tolerate a left-out `input` (Kyma's defaulting webhook sets both; seedgate
//! has none, and without them the rules would fail to evaluate); and the
//! `spec.seedgate` extension. Two things the derive cannot say are attached
//! here in code: no `nullable` anywhere ([`crds`]), and the `isURL` rule on
//! `oauth2.tokenURL` next to [`ValueType`]'s own.
//!
//! Only v1beta1 is served. Kyma also serves the deprecated v1alpha1 through
//! a conversion webhook (`input.application`, `disabled` flags); a CRD can
//! only serve two schemas for one stored object through such a webhook,
//! which seedgate does not run, so v1alpha1 objects are refused (404) rather
//! than stored unconverted.
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
use std::collections::BTreeMap;

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
// Kyma's rules, written so that a left-out `input` is no error (Kyma's
// webhook always sets it; seedgate has no webhook).
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.output.otlp) && has(self.input) && has(self.input.runtime) && has(self.input.runtime.dropLabels))", "message": "input.runtime.dropLabels is not supported with otlp output"},
    {"rule": "!(has(self.output.otlp) && has(self.input) && has(self.input.runtime) && has(self.input.runtime.keepAnnotations))", "message": "input.runtime.keepAnnotations is not supported with otlp output"},
    {"rule": "!(has(self.output.otlp) && has(self.filters))", "message": "filters are not supported with otlp output"},
    {"rule": "!(has(self.output.otlp) && has(self.files))", "message": "files not supported with otlp output"},
    {"rule": "!(has(self.output.otlp) && has(self.variables))", "message": "variables not supported with otlp output"},
    {"rule": "has(self.output.otlp) || !(has(self.transform))", "message": "transform is only supported with otlp output"},
    {"rule": "has(self.output.otlp) || !(has(self.filter))", "message": "filter is only supported with otlp output"},
    {"rule": "has(self.output.otlp) || !(has(self.input) && has(self.input.otlp))", "message": "otlp input is only supported with otlp output"}
]))]
pub struct LogPipelineSpec {
    /// Which logs the pipeline takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<LogPipelineInput>,
    /// Where the pipeline sends its logs: exactly one of `otlp`, `http`,
    /// `custom`.
    pub output: LogPipelineOutput,
    /// OTTL transformations (Kyma; OTLP output only). Not supported by
    /// seedgate: a pipeline that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Vec<TransformSpec>>,
    /// OTTL filters (Kyma; OTLP output only). Not supported by seedgate: a
    /// pipeline that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<FilterSpec>>,
    /// Files mounted into Kyma's Fluent Bit (HTTP/custom output only). Not
    /// supported by seedgate: a pipeline that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileMount>>,
    /// Fluent Bit filters (HTTP/custom output only). Not supported by
    /// seedgate: a pipeline that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<FluentBitFilter>>,
    /// Fluent Bit environment variables from Secrets (HTTP/custom output
    /// only). Not supported by seedgate: a pipeline that lists any is not
    /// applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<VariableRef>>,
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
    pub transform: Option<Vec<TransformSpec>>,
    /// OTTL filters (Kyma). Not supported by seedgate: a pipeline that lists
    /// any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<FilterSpec>>,
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
    pub output: TracePipelineOutput,
    /// OTTL transformations (Kyma). Not supported by seedgate: a pipeline
    /// that lists any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Vec<TransformSpec>>,
    /// OTTL filters (Kyma). Not supported by seedgate: a pipeline that lists
    /// any is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<FilterSpec>>,
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
    /// Kyma's log agent (container logs). seedgate runs no agent. With an
    /// `otlp` output: unless `enabled: false`, the pipeline is not applied
    /// (point the seed's agents at seedgate's OTLP ports and select
    /// namespaces with `otlp.namespaces`). With an `http` output: the logs
    /// that arrive over OTLP, selected by `namespaces` (system namespaces
    /// left out unless included), as Kyma's Fluent Bit would select them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<LogRuntimeInput>,
}

/// `spec.input.runtime` of a LogPipeline (Kyma's log agent).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogRuntimeInput {
    /// Collect container logs (Kyma's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which namespaces' containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
    /// Which containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainerSelector>,
    /// Keep the pods' annotations (Fluent Bit output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_annotations: Option<bool>,
    /// Drop the pods' labels (Fluent Bit output only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_labels: Option<bool>,
    /// Keep the original log line next to the parsed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_body: Option<bool>,
}

/// A container selector: `include` or `exclude`, not both.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.include) && has(self.exclude))", "message": "Only one of 'include' or 'exclude' can be defined"}
]))]
pub struct ContainerSelector {
    /// Only these containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Every container but these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
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
    pub runtime: Option<MetricRuntimeInput>,
    /// Kyma's Prometheus scraping (agent). Not supported by seedgate: with
    /// `enabled: true` the pipeline is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusInput>,
    /// Kyma's Istio metrics (agent). Not supported by seedgate: with
    /// `enabled: true` the pipeline is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioInput>,
}

/// `spec.input.runtime` of a MetricPipeline (Kyma's metric agent).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricRuntimeInput {
    /// Collect runtime metrics (Kyma's default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
    /// Which Kubernetes resources' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<RuntimeResources>,
    /// Metrics beyond the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_metrics: Option<Vec<String>>,
}

/// `spec.input.runtime.resources` of a MetricPipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeResources {
    /// Pod metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<EnabledFlag>,
    /// Container metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<EnabledFlag>,
    /// Node metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<EnabledFlag>,
    /// Volume metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<EnabledFlag>,
    /// DaemonSet metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemonset: Option<EnabledFlag>,
    /// Deployment metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<EnabledFlag>,
    /// StatefulSet metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<EnabledFlag>,
    /// Job metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<EnabledFlag>,
}

/// `{enabled: bool}`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnabledFlag {
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `spec.input.prometheus` of a MetricPipeline (Kyma's metric agent), and
/// the common part of `spec.input.istio`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusInput {
    /// Scrape (Kyma's default: false): annotated workloads for
    /// `prometheus`, the Istio proxies for `istio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
    /// The scrapers' own metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic_metrics: Option<EnabledFlag>,
}

/// `spec.input.istio` of a MetricPipeline (Kyma's metric agent).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IstioInput {
    /// `enabled` (scrape the Istio proxies, Kyma's default: false),
    /// `namespaces`, `diagnosticMetrics`: as for Prometheus.
    #[serde(flatten)]
    pub scrape: PrometheusInput,
    /// Envoy's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_metrics: Option<EnabledFlag>,
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

/// `spec.output` of a TracePipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracePipelineOutput {
    /// The OTLP backend.
    pub otlp: OtlpOutput,
}

/// `spec.output` of a LogPipeline: exactly one of `otlp`, `http`, `custom`,
/// and which of OTLP or not is fixed at creation (Kyma runs the two on
/// different agents).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.otlp) == has(oldSelf.otlp)", "message": "Switching to or away from OTLP output is not supported. Please re-create the LogPipeline instead"},
    {"rule": "(has(self.custom) == true ? 1 : 0) + (has(self.http) == true ? 1 : 0) + (has(self.otlp) == true ? 1 : 0) == 1", "message": "Exactly one output out of 'custom', 'http' or 'otlp' must be defined"}
]))]
pub struct LogPipelineOutput {
    /// A Fluent Bit output section (Kyma). Not supported by seedgate: a
    /// pipeline that sets it is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<String>,
    /// Fluent Bit's HTTP output (Kyma).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOutput>,
    /// The OTLP backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpOutput>,
}

/// `spec.output.http` of a LogPipeline: Fluent Bit's HTTP output.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.host.value) || has(self.host.valueFrom)", "message": "'host' must have 'value' or 'valueFrom' set"}
]))]
pub struct HttpOutput {
    /// The host name (or IP) of the backend.
    pub host: ValueType,
    /// Basic authentication: the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ValueType>,
    /// Basic authentication: the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<ValueType>,
    /// The URL path (Fluent Bit's default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/.*$"))]
    pub uri: Option<String>,
    /// The port (Kyma's default `443`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// `gzip` to compress the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<String>,
    /// `json` (Kyma's default) or `json_lines`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// TLS towards the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OutputTls>,
    /// Replace dots in record keys by underscores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedot: Option<bool>,
}

/// An OTTL transformation (Kyma).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TransformSpec {
    /// When the statements apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<String>>,
    /// OTTL statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<Vec<String>>,
}

/// An OTTL filter (Kyma).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    /// Records matching any of these are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<String>>,
}

/// A file mounted into Kyma's Fluent Bit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileMount {
    /// The file name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The file content.
    #[schemars(length(min = 1))]
    pub content: String,
}

/// A Fluent Bit filter section (Kyma).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FluentBitFilter {
    /// The filter's configuration text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<String>,
}

/// A Fluent Bit environment variable from a Secret (Kyma).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VariableRef {
    /// The variable's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Its value's Secret.
    pub value_from: ValueFromSource,
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
    {"rule": "(has(self.authentication) && has(self.authentication.oauth2) && self.protocol == 'grpc' && has(self.tls)) ? !(has(self.tls.insecure) && self.tls.insecure == true) : true", "message": "OAuth2 authentication requires TLS when using gRPC protocol"},
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
    pub oauth2: Option<OAuth2>,
}

/// OAuth2 client credentials (Kyma's schema).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.tokenURL.value) || has(self.tokenURL.valueFrom)", "message": "'tokenURL' must have 'value' or 'valueFrom' set"},
    {"rule": "has(self.clientID.value) || has(self.clientID.valueFrom)", "message": "'clientID' must have 'value' or 'valueFrom' set"},
    {"rule": "has(self.clientSecret.value) || has(self.clientSecret.valueFrom)", "message": "'clientSecret' must have 'value' or 'valueFrom' set"}
]))]
pub struct OAuth2 {
    /// The token endpoint.
    #[serde(rename = "tokenURL")]
    #[schemars(transform = url_rule)]
    pub token_url: ValueType,
    /// The client ID.
    #[serde(rename = "clientID")]
    pub client_id: ValueType,
    /// The client secret.
    #[serde(rename = "clientSecret")]
    pub client_secret: ValueType,
    /// Extra token request parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// The scopes asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
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

    /// `spec.output.otlp`; `None` only for a LogPipeline with another
    /// output, which [`unsupported`](Self::unsupported) reports.
    fn otlp_output(&self) -> Option<&OtlpOutput>;

    /// `spec.seedgate`.
    fn seedgate(&self) -> Option<&SeedgateOptions>;

    /// `spec.output.http` (a LogPipeline's Fluent Bit HTTP output).
    fn http_output(&self) -> Option<&HttpOutput> {
        None
    }

    /// `spec.input.runtime` of a LogPipeline: with an `http` output, the
    /// selector of the logs it takes.
    fn runtime_input(&self) -> Option<&LogRuntimeInput> {
        None
    }

    /// The first feature this pipeline uses that seedgate does not have, as
    /// the text after "Not supported by seedgate: ".
    fn unsupported(&self) -> Option<String>;
}

impl PipelineSpec for LogPipelineSpec {
    const KIND: PipelineKind = PipelineKind::Log;

    fn otlp_input(&self) -> Option<&OtlpInput> {
        self.input.as_ref().and_then(|i| i.otlp.as_ref())
    }

    fn otlp_output(&self) -> Option<&OtlpOutput> {
        self.output.otlp.as_ref()
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn http_output(&self) -> Option<&HttpOutput> {
        self.output.http.as_ref()
    }

    fn runtime_input(&self) -> Option<&LogRuntimeInput> {
        self.input.as_ref().and_then(|i| i.runtime.as_ref())
    }

    fn unsupported(&self) -> Option<String> {
        if self.output.custom.is_some() {
            return Some(
                "spec.output.custom (a Fluent Bit output section needs Kyma's Fluent Bit agent: use spec.output.http or spec.output.otlp)"
                    .to_owned(),
            );
        }
        let fluent_bit_only = [
            ("files", self.files.as_ref().is_some_and(|l| !l.is_empty())),
            (
                "filters",
                self.filters.as_ref().is_some_and(|l| !l.is_empty()),
            ),
            (
                "variables",
                self.variables.as_ref().is_some_and(|l| !l.is_empty()),
            ),
        ];
        if let Some((field, _)) = fluent_bit_only.iter().find(|(_, used)| *used) {
            return Some(format!(
                "spec.{field} (Fluent Bit configuration needs Kyma's Fluent Bit agent: remove it)"
            ));
        }
        let runtime = self.runtime_input();
        if let Some(http) = &self.output.http {
            return unsupported_http(http, runtime);
        }
        // Kyma's log agent is on unless `enabled: false` (its webhook
        // defaults a present runtime input to enabled).
        if runtime.is_some_and(|r| r.enabled != Some(false)) {
            return Some(AGENT_INPUT.replace("{input}", "runtime"));
        }
        let Some(otlp) = &self.output.otlp else {
            return Some("spec.output without otlp".to_owned());
        };
        unsupported_common(otlp, None, &self.transform, &self.filter)
    }
}

impl PipelineSpec for MetricPipelineSpec {
    const KIND: PipelineKind = PipelineKind::Metric;

    fn otlp_input(&self) -> Option<&OtlpInput> {
        self.input.as_ref().and_then(|i| i.otlp.as_ref())
    }

    fn otlp_output(&self) -> Option<&OtlpOutput> {
        Some(&self.output.otlp.common)
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn unsupported(&self) -> Option<String> {
        // Kyma's metric agent inputs are off unless `enabled: true`.
        if let Some(input) = &self.input {
            for (name, enabled) in [
                ("runtime", input.runtime.as_ref().and_then(|i| i.enabled)),
                (
                    "prometheus",
                    input.prometheus.as_ref().and_then(|i| i.enabled),
                ),
                ("istio", input.istio.as_ref().and_then(|i| i.scrape.enabled)),
            ] {
                if enabled == Some(true) {
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

    fn otlp_output(&self) -> Option<&OtlpOutput> {
        Some(&self.output.otlp)
    }

    fn seedgate(&self) -> Option<&SeedgateOptions> {
        self.seedgate.as_ref()
    }

    fn unsupported(&self) -> Option<String> {
        unsupported_common(&self.output.otlp, None, &self.transform, &self.filter)
    }
}

const AGENT_INPUT: &str = "spec.input.{input} (seedgate runs no agent: point the seed's agents at seedgate's OTLP ports, select namespaces with spec.input.otlp.namespaces, and set spec.input.{input}.enabled to false)";

/// What an `http` output pipeline asks that seedgate cannot do. Its logs
/// are those that arrive over OTLP (seedgate runs no agent), selected by
/// `input.runtime.namespaces`; containers cannot be told apart that way.
fn unsupported_http(http: &HttpOutput, runtime: Option<&LogRuntimeInput>) -> Option<String> {
    let containers = runtime.and_then(|r| r.containers.as_ref());
    let listed = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
    if containers.is_some_and(|c| listed(&c.include) || listed(&c.exclude)) {
        return Some(
            "spec.input.runtime.containers (selecting containers needs Kyma's log agent: seedgate takes the logs the seed's agents send over OTLP and selects them by namespace; remove containers)"
                .to_owned(),
        );
    }
    match http.format.as_deref() {
        None | Some("" | "json" | "json_lines" | "json_stream") => None,
        Some(other) => Some(format!(
            "spec.output.http.format {other:?} (seedgate sends json, json_lines or json_stream)"
        )),
    }
}

fn unsupported_common(
    otlp: &OtlpOutput,
    temporality: Option<Temporality>,
    transform: &Option<Vec<TransformSpec>>,
    filter: &Option<Vec<FilterSpec>>,
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
    [
        LogPipeline::crd(),
        MetricPipeline::crd(),
        TracePipeline::crd(),
    ]
    .into_iter()
    .map(without_nullable)
    .collect()
}

/// kube marks every `Option` field `nullable`; Kyma's schemas mark none, so
/// the API server refuses an explicit `null` (`must be of type object`) as
/// Kyma's does. Everything is still optional through `required`.
fn without_nullable(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("nullable");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serialises");
    for version in value["spec"]["versions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        strip(&mut version["schema"]);
    }
    serde_json::from_value(value).expect("a CRD without nullable deserialises")
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

/// Kyma's extra rule on `oauth2.tokenURL`, after [`ValueType`]'s own: a
/// field-level `extend` would replace the type's rules, not add to them.
fn url_rule(schema: &mut schemars::Schema) {
    let rule = serde_json::json!({
        "rule": "has(self.value) ? isURL(self.value) : true",
        "message": "'tokenURL' must be a valid URL",
    });
    if let Some(obj) = schema.as_object_mut() {
        match obj.get_mut("x-kubernetes-validations") {
            Some(Value::Array(rules)) => rules.insert(0, rule),
            _ => {
                obj.insert("x-kubernetes-validations".into(), Value::Array(vec![rule]));
            }
        }
    }
}

//! Kyma's condition vocabulary, exact strings: the condition types and
//! statuses, the reasons, and the messages (`reference/kyma-conditions.md`,
//! section 4). [`super::conditions`] builds conditions from them and
//! [`super::pipeline_spec`] names them in its rejections; this module needs
//! neither.

use k8s_openapi::jiff::Timestamp;

use super::PipelineKind;

/// Condition type: the spec was turned into seedgate configuration.
pub const TYPE_CONFIGURATION_GENERATED: &str = "ConfigurationGenerated";
/// Condition type: the gateway (seedgate) runs the pipeline.
pub const TYPE_GATEWAY_HEALTHY: &str = "GatewayHealthy";
/// Condition type: data flows to the backend.
pub const TYPE_FLOW_HEALTHY: &str = "TelemetryFlowHealthy";

/// `True`.
pub const STATUS_TRUE: &str = "True";
/// `False`.
pub const STATUS_FALSE: &str = "False";
/// `Unknown`.
pub const STATUS_UNKNOWN: &str = "Unknown";

/// The reasons, exact strings.
pub mod reason {
    /// ConfigurationGenerated=True.
    pub const GATEWAY_CONFIGURED: &str = "GatewayConfigured";
    /// ConfigurationGenerated=True: a certificate expires within 14 days.
    pub const TLS_CERTIFICATE_ABOUT_TO_EXPIRE: &str = "TLSCertificateAboutToExpire";
    /// ConfigurationGenerated=False: a certificate has expired.
    pub const TLS_CERTIFICATE_EXPIRED: &str = "TLSCertificateExpired";
    /// ConfigurationGenerated=False: TLS material or settings are wrong.
    pub const TLS_CONFIGURATION_INVALID: &str = "TLSConfigurationInvalid";
    /// ConfigurationGenerated=False: a Secret, or a key of it, is missing.
    pub const REFERENCED_SECRET_MISSING: &str = "ReferencedSecretMissing";
    /// ConfigurationGenerated=False: the endpoint is not usable.
    pub const ENDPOINT_INVALID: &str = "EndpointInvalid";
    /// ConfigurationGenerated=False: beyond the pipeline limit of its kind.
    pub const MAX_PIPELINES_EXCEEDED: &str = "MaxPipelinesExceeded";
    /// ConfigurationGenerated=False: an API read failed (retry).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// ConfigurationGenerated=False (seedgate's own reason): the pipeline
    /// uses a Kyma feature seedgate does not have.
    pub const UNSUPPORTED_FEATURE: &str = "UnsupportedFeature";
    /// ConfigurationGenerated=False (seedgate's own reason): a value that
    /// seedgate's configuration rules refuse (header, path, queue, name).
    pub const CONFIGURATION_INVALID: &str = "ConfigurationInvalid";
    /// GatewayHealthy=True.
    pub const GATEWAY_READY: &str = "GatewayReady";
    /// GatewayHealthy=False.
    pub const GATEWAY_NOT_READY: &str = "GatewayNotReady";
    /// GatewayHealthy=False because ConfigurationGenerated is False.
    pub const GATEWAY_CONFIGURATION_NOT_GENERATED: &str = "GatewayConfigurationNotGenerated";
    /// TelemetryFlowHealthy=True.
    pub const FLOW_HEALTHY: &str = "FlowHealthy";
    /// TelemetryFlowHealthy=False: everything is dropped.
    pub const GATEWAY_ALL_TELEMETRY_DATA_DROPPED: &str = "GatewayAllTelemetryDataDropped";
    /// TelemetryFlowHealthy=False: some data is dropped.
    pub const GATEWAY_SOME_TELEMETRY_DATA_DROPPED: &str = "GatewaySomeTelemetryDataDropped";
    /// TelemetryFlowHealthy=False: clients are refused (queue full, `block`).
    pub const GATEWAY_THROTTLING: &str = "GatewayThrottling";
    /// TelemetryFlowHealthy=False: the queue is nearly full. Kyma's name
    /// (its Fluent Bit agent's buffer); here, seedgate's disk queue.
    pub const AGENT_BUFFER_FILLING_UP: &str = "AgentBufferFillingUp";
    /// TelemetryFlowHealthy=False because ConfigurationGenerated is False.
    pub const CONFIGURATION_NOT_GENERATED: &str = "ConfigurationNotGenerated";
}

/// ConfigurationGenerated=False / `MaxPipelinesExceeded`.
pub const MSG_MAX_PIPELINES_EXCEEDED: &str = "Maximum pipeline count limit exceeded";
/// ConfigurationGenerated=False / `ValidationFailed`.
pub const MSG_VALIDATION_FAILED: &str =
    "Pipeline validation failed due to an error from the Kubernetes API server";
/// GatewayHealthy=True / `GatewayReady` (Kyma: "OTLP Gateway DaemonSet is
/// ready"; seedgate is the gateway and runs the pipeline's exporter itself).
pub const MSG_GATEWAY_READY: &str = "OTLP Gateway (seedgate) is ready and runs this pipeline";
/// TelemetryFlowHealthy=True / `FlowHealthy`.
pub const MSG_FLOW_HEALTHY: &str = "No problems detected in the telemetry flow";

const TROUBLESHOOTING: &str =
    "https://kyma-project.io/external-content/telemetry-manager/docs/user/troubleshooting.html";

// === messages ===

/// "TracePipeline specification is successfully applied to the configuration of OTLP Gateway".
pub fn msg_gateway_configured(kind: PipelineKind) -> String {
    format!(
        "{} specification is successfully applied to the configuration of OTLP Gateway",
        kind.kind()
    )
}

/// "One or more referenced Secrets are missing: Secret '%s' of Namespace '%s'".
pub fn msg_secret_missing(name: &str, namespace: &str) -> String {
    format!(
        "One or more referenced Secrets are missing: Secret '{name}' of Namespace '{namespace}'"
    )
}

/// "One or more keys in a referenced Secret are missing: Key '%s' in Secret '%s' of Namespace '%s'".
pub fn msg_secret_key_missing(key: &str, name: &str, namespace: &str) -> String {
    format!(
        "One or more keys in a referenced Secret are missing: Key '{key}' in Secret '{name}' of Namespace '{namespace}'"
    )
}

/// "Secret reference is missing field/s: %s" (a comma-joined subset of
/// `Name`, `Namespace`, `Key`).
pub fn msg_secret_ref_missing_fields(fields: &[&str]) -> String {
    format!("Secret reference is missing field/s: {}", fields.join(", "))
}

/// "OTLP output endpoint invalid: %s".
pub fn msg_endpoint_invalid(detail: &str) -> String {
    format!("OTLP output endpoint invalid: {detail}")
}

/// seedgate's message for an `http` output whose `host` or `port` cannot
/// make a URL (Kyma passes them to Fluent Bit unchecked).
pub fn msg_http_host_invalid(detail: &str) -> String {
    format!("HTTP output host invalid: {detail}")
}

/// "TLS configuration invalid: %s".
pub fn msg_tls_invalid(detail: &str) -> String {
    format!("TLS configuration invalid: {detail}")
}

/// "TLS certificate expired on %s" / "TLS CA certificate expired on %s"
/// (`YYYY-MM-DD`, UTC).
pub fn msg_cert_expired(not_after: Timestamp, ca: bool) -> String {
    let what = if ca {
        "TLS CA certificate"
    } else {
        "TLS certificate"
    };
    format!("{what} expired on {}", date(not_after))
}

/// "TLS certificate is about to expire, configured certificate is valid
/// until %s" / the same with "TLS CA certificate".
pub fn msg_cert_about_to_expire(not_after: Timestamp, ca: bool) -> String {
    let what = if ca {
        "TLS CA certificate"
    } else {
        "TLS certificate"
    };
    format!(
        "{what} is about to expire, configured certificate is valid until {}",
        date(not_after)
    )
}

/// "Not supported by seedgate: %s" (seedgate's own message).
pub fn msg_unsupported(what: &str) -> String {
    format!("Not supported by seedgate: {what}")
}

/// "Pipeline configuration invalid: %s" (seedgate's own message).
pub fn msg_configuration_invalid(detail: &str) -> String {
    format!("Pipeline configuration invalid: {detail}")
}

/// "This TracePipeline's specification is not applied to the configuration
/// of the OTLP gateway. Check the 'ConfigurationGenerated' condition for more
/// details".
pub fn msg_gateway_configuration_not_generated(kind: PipelineKind) -> String {
    format!(
        "This {}'s specification is not applied to the configuration of the OTLP gateway. Check the 'ConfigurationGenerated' condition for more details",
        kind.kind()
    )
}

/// "No spans delivered to backend because TracePipeline specification is not
/// applied to the configuration of OTLP Gateway. Check the
/// 'ConfigurationGenerated' condition for more details" (Kyma's Trace and
/// Metric text; LogPipeline gets the same shape, see the module doc).
pub fn msg_flow_configuration_not_generated(kind: PipelineKind) -> String {
    format!(
        "No {} delivered to backend because {} specification is not applied to the configuration of OTLP Gateway. Check the 'ConfigurationGenerated' condition for more details",
        kind.data_word(),
        kind.kind()
    )
}

/// `GatewayAllTelemetryDataDropped`'s message.
pub fn msg_all_dropped(kind: PipelineKind) -> String {
    let w = kind.data_word();
    format!(
        "Backend is not reachable or rejecting {w}. All {w} are dropped in OTLP Gateway. See troubleshooting: {TROUBLESHOOTING}#no-data-arrive-at-the-backend"
    )
}

/// `GatewaySomeTelemetryDataDropped`'s message.
pub fn msg_some_dropped(kind: PipelineKind) -> String {
    let w = kind.data_word();
    format!(
        "Backend is reachable, but rejecting {w}. Some {w} are dropped in OTLP Gateway. See troubleshooting: {TROUBLESHOOTING}#not-all-data-arrive-at-the-backend"
    )
}

/// `GatewayThrottling`'s message.
pub fn msg_throttling(kind: PipelineKind) -> String {
    format!(
        "OTLP Gateway is unable to receive {} at current rate. See troubleshooting: {TROUBLESHOOTING}#gateway-throttling",
        kind.data_word()
    )
}

/// `AgentBufferFillingUp`'s message (seedgate's: its disk queue).
pub fn msg_buffer_filling_up(kind: PipelineKind) -> String {
    let w = kind.data_word();
    format!(
        "Buffer nearing capacity. Incoming {w} rate exceeds export rate: seedgate's disk queue for this pipeline is filling up"
    )
}

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

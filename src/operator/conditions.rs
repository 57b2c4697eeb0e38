//! The status conditions of a pipeline: Kyma's types, reasons and messages
//! (telemetry-manager `internal/conditions`), the pure builders, and the
//! merge into an existing list that keeps `lastTransitionTime` while the
//! status stays the same (apimachinery's `meta.SetStatusCondition`).
//!
//! Every pipeline gets three conditions:
//!
//! | type | True | False |
//! | --- | --- | --- |
//! | `ConfigurationGenerated` | `GatewayConfigured`, `TLSCertificateAboutToExpire` | the [`Rejection`]'s reason, or `MaxPipelinesExceeded` |
//! | `GatewayHealthy` | `GatewayReady` | `GatewayNotReady`, `GatewayConfigurationNotGenerated` |
//! | `TelemetryFlowHealthy` | `FlowHealthy` | `GatewayAllTelemetryDataDropped`, `GatewaySomeTelemetryDataDropped`, `AgentBufferFillingUp`, `GatewayThrottling`, `ConfigurationNotGenerated` |
//!
//! Reason strings are Kyma's, byte for byte, so tools that read Kyma
//! pipelines read these. Where Kyma's message would not be true of seedgate
//! the message says what is true instead:
//!
//! - `GatewayReady`: Kyma says "OTLP Gateway DaemonSet is ready"; seedgate is
//!   its own gateway, so [`MSG_GATEWAY_READY`].
//! - `ConfigurationNotGenerated` of a LogPipeline: Kyma names "Log Agent and
//!   OTLP Gateway"; seedgate has no agent, so the message has the
//!   Trace/Metric shape ("…configuration of OTLP Gateway…").
//! - `AgentBufferFillingUp` is the one buffer reason Kyma has (its Fluent Bit
//!   agent); seedgate uses it for its own disk queue, with a message that
//!   says so.
//! - Two reasons are seedgate's own: [`reason::UNSUPPORTED_FEATURE`] (a Kyma
//!   feature seedgate does not have) and [`reason::CONFIGURATION_INVALID`]
//!   (a value seedgate's own configuration rules refuse).
//!
//! The builders leave `lastTransitionTime` at the Unix epoch, meaning "not
//! set"; [`set_status_condition`] fills it in, like apimachinery does with
//! a zero time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::PipelineKind;
use super::pipeline_spec::{CertWarning, Rejection, Resolved};

pub use super::condition_text::*;

// === builders ===

/// What ConfigurationGenerated says: applied (maybe with a certificate
/// warning) or not, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The pipeline runs.
    Applied {
        /// A certificate expires within 14 days.
        cert_warning: Option<CertWarning>,
    },
    /// The pipeline does not run.
    Rejected(Rejection),
}

impl ConfigOutcome {
    /// The outcome of a pipeline: its [`resolve`](super::pipeline_spec::resolve)
    /// result and whether [`max_pipelines`](super::max_pipelines) admitted
    /// it. A rejection wins over the limit (Kyma checks secrets, endpoint and
    /// TLS before the pipeline lock); the limit wins over a certificate
    /// warning (Kyma's validator returns early on the warning and so can show
    /// `TLSCertificateAboutToExpire` for a pipeline it does not run; seedgate
    /// does not).
    pub fn new(resolution: &Result<Resolved, Rejection>, admitted: bool) -> Self {
        match resolution {
            Err(rejection) => Self::Rejected(rejection.clone()),
            Ok(_) if !admitted => Self::Rejected(Rejection::max_pipelines_exceeded()),
            Ok(resolved) => Self::Applied {
                cert_warning: resolved.cert_warning.clone(),
            },
        }
    }

    /// Whether the pipeline runs.
    pub fn is_applied(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }
}

/// How seedgate runs a pipeline that is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayState {
    /// Its exporter is running.
    Ready,
    /// It is not, and why (the condition's message).
    NotReady(String),
}

/// What the exporter pool measured for a pipeline; several can hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowFacts {
    /// Everything sent recently was dropped (backend unreachable or rejecting).
    pub all_dropped: bool,
    /// Some of it was dropped.
    pub some_dropped: bool,
    /// Receivers refused requests because this pipeline's queue was full.
    pub throttling: bool,
    /// This pipeline's queue is nearly full.
    pub buffer_filling: bool,
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        message,
        observed_generation: generation,
        reason: reason.to_owned(),
        status: status.to_owned(),
        type_: type_.to_owned(),
    }
}

/// `ConfigurationGenerated`.
pub fn configuration_generated(
    kind: PipelineKind,
    generation: Option<i64>,
    outcome: &ConfigOutcome,
) -> Condition {
    let t = TYPE_CONFIGURATION_GENERATED;
    match outcome {
        ConfigOutcome::Applied { cert_warning: None } => condition(
            t,
            STATUS_TRUE,
            reason::GATEWAY_CONFIGURED,
            msg_gateway_configured(kind),
            generation,
        ),
        ConfigOutcome::Applied {
            cert_warning: Some(w),
        } => condition(
            t,
            STATUS_TRUE,
            reason::TLS_CERTIFICATE_ABOUT_TO_EXPIRE,
            w.message.clone(),
            generation,
        ),
        ConfigOutcome::Rejected(r) => {
            condition(t, STATUS_FALSE, r.reason, r.message.clone(), generation)
        }
    }
}

/// `GatewayHealthy`: `GatewayConfigurationNotGenerated` when the pipeline is
/// not applied (the gateway state is not looked at), else from `gateway`.
pub fn gateway_healthy(
    kind: PipelineKind,
    generation: Option<i64>,
    outcome: &ConfigOutcome,
    gateway: &GatewayState,
) -> Condition {
    let t = TYPE_GATEWAY_HEALTHY;
    if !outcome.is_applied() {
        return condition(
            t,
            STATUS_FALSE,
            reason::GATEWAY_CONFIGURATION_NOT_GENERATED,
            msg_gateway_configuration_not_generated(kind),
            generation,
        );
    }
    match gateway {
        GatewayState::Ready => condition(
            t,
            STATUS_TRUE,
            reason::GATEWAY_READY,
            MSG_GATEWAY_READY.to_owned(),
            generation,
        ),
        GatewayState::NotReady(why) => condition(
            t,
            STATUS_FALSE,
            reason::GATEWAY_NOT_READY,
            capitalise(why),
            generation,
        ),
    }
}

/// `TelemetryFlowHealthy` of an applied pipeline, the worst fact first, in
/// Kyma's priority order: all dropped, some dropped, then for a LogPipeline
/// buffer filling up before throttling (Kyma's OTel LogPipeline order), for
/// Metric and Trace throttling before buffer filling up (Kyma ranks
/// throttling right after the drops and has no buffer reason there).
pub fn flow_condition(kind: PipelineKind, generation: Option<i64>, facts: FlowFacts) -> Condition {
    let t = TYPE_FLOW_HEALTHY;
    let (reason, message) = if facts.all_dropped {
        (
            reason::GATEWAY_ALL_TELEMETRY_DATA_DROPPED,
            msg_all_dropped(kind),
        )
    } else if facts.some_dropped {
        (
            reason::GATEWAY_SOME_TELEMETRY_DATA_DROPPED,
            msg_some_dropped(kind),
        )
    } else {
        let buffer = (
            facts.buffer_filling,
            reason::AGENT_BUFFER_FILLING_UP,
            msg_buffer_filling_up(kind),
        );
        let throttling = (
            facts.throttling,
            reason::GATEWAY_THROTTLING,
            msg_throttling(kind),
        );
        let order = match kind {
            PipelineKind::Log => [buffer, throttling],
            PipelineKind::Metric | PipelineKind::Trace => [throttling, buffer],
        };
        match order.into_iter().find(|(holds, _, _)| *holds) {
            Some((_, reason, message)) => (reason, message),
            None => {
                return condition(
                    t,
                    STATUS_TRUE,
                    reason::FLOW_HEALTHY,
                    MSG_FLOW_HEALTHY.to_owned(),
                    generation,
                );
            }
        }
    };
    condition(t, STATUS_FALSE, reason, message, generation)
}

/// `TelemetryFlowHealthy`: `ConfigurationNotGenerated` when the pipeline is
/// not applied, else [`flow_condition`].
pub fn flow_healthy(
    kind: PipelineKind,
    generation: Option<i64>,
    outcome: &ConfigOutcome,
    facts: FlowFacts,
) -> Condition {
    if outcome.is_applied() {
        flow_condition(kind, generation, facts)
    } else {
        condition(
            TYPE_FLOW_HEALTHY,
            STATUS_FALSE,
            reason::CONFIGURATION_NOT_GENERATED,
            msg_flow_configuration_not_generated(kind),
            generation,
        )
    }
}

/// The three conditions of a pipeline, in Kyma's order.
pub fn pipeline_conditions(
    kind: PipelineKind,
    generation: Option<i64>,
    outcome: &ConfigOutcome,
    gateway: &GatewayState,
    facts: FlowFacts,
) -> [Condition; 3] {
    [
        configuration_generated(kind, generation, outcome),
        gateway_healthy(kind, generation, outcome, gateway),
        flow_healthy(kind, generation, outcome, facts),
    ]
}

/// Kyma upper-cases the first letter of error texts it turns into messages.
fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// === merging ===

/// The condition of a type, if present.
pub fn find_status_condition<'a>(
    conditions: &'a [Condition],
    type_: &str,
) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets `new` in `conditions`, like apimachinery's `meta.SetStatusCondition`:
/// a new type is appended; for an existing type, status, reason, message and
/// `observedGeneration` are updated, and `lastTransitionTime` changes only
/// when the status does. The time written is `new`'s unless it is the epoch
/// ("not set", what the builders leave), then `now` truncated to seconds
/// (what the API server stores). Returns whether anything changed, so the
/// caller can skip a status patch that would change nothing.
pub fn set_status_condition(
    conditions: &mut Vec<Condition>,
    new: Condition,
    now: Timestamp,
) -> bool {
    let stamp = |c: &Condition| {
        if c.last_transition_time.0 == Timestamp::UNIX_EPOCH {
            Time(whole_seconds(now))
        } else {
            c.last_transition_time.clone()
        }
    };
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == new.type_) else {
        let mut new = new;
        new.last_transition_time = stamp(&new);
        conditions.push(new);
        return true;
    };
    let mut changed = false;
    if existing.status != new.status {
        existing.last_transition_time = stamp(&new);
        existing.status = new.status;
        changed = true;
    }
    if existing.reason != new.reason {
        existing.reason = new.reason;
        changed = true;
    }
    if existing.message != new.message {
        existing.message = new.message;
        changed = true;
    }
    if existing.observed_generation != new.observed_generation {
        existing.observed_generation = new.observed_generation;
        changed = true;
    }
    changed
}

/// [`set_status_condition`] for each of `new`; whether anything changed.
pub fn set_status_conditions(
    conditions: &mut Vec<Condition>,
    new: impl IntoIterator<Item = Condition>,
    now: Timestamp,
) -> bool {
    new.into_iter().fold(false, |changed, c| {
        set_status_condition(conditions, c, now) | changed
    })
}

/// Removes the condition of a type; whether there was one.
pub fn remove_status_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests;

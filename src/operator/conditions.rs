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
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::PipelineConfig;

    const ALL: [PipelineKind; 3] = PipelineKind::ALL;

    fn resolved(warning: Option<&str>) -> Resolved {
        Resolved {
            pipeline: PipelineConfig {
                name: "tracepipeline.x".to_owned(),
                signals: vec![],
                input: crate::config::InputConfig::default(),
                output: crate::config::OutputConfig::of_kind(crate::config::OutputType::Noop),
                queue: None,
                batch: None,
                retry: None,
                loadbalancing: None,
                affinity: None,
                processors: Vec::new(),
            },
            input_enabled: true,
            cert_warning: warning.map(|m| CertWarning {
                message: m.to_owned(),
            }),
            pem_files: vec![],
        }
    }

    /// (status, reason, message) of a condition.
    fn srm(c: &Condition) -> (&str, &str, &str) {
        (&c.status, &c.reason, &c.message)
    }

    #[test]
    fn configuration_generated_per_outcome() {
        let gen_ = Some(7);
        let missing = Rejection::new(
            reason::REFERENCED_SECRET_MISSING,
            msg_secret_missing("backend", "default"),
        );
        for kind in ALL {
            let applied = ConfigOutcome::new(&Ok(resolved(None)), true);
            let c = configuration_generated(kind, gen_, &applied);
            assert_eq!(c.type_, "ConfigurationGenerated");
            assert_eq!(c.observed_generation, Some(7));
            assert_eq!(c.last_transition_time, Time(Timestamp::UNIX_EPOCH));
            let applied_msg = format!(
                "{} specification is successfully applied to the configuration of OTLP Gateway",
                kind.kind()
            );
            assert_eq!(srm(&c), ("True", "GatewayConfigured", applied_msg.as_str()));

            let warn = "TLS certificate is about to expire, configured certificate is valid until 2030-01-10";
            let c = configuration_generated(
                kind,
                gen_,
                &ConfigOutcome::new(&Ok(resolved(Some(warn))), true),
            );
            assert_eq!(srm(&c), ("True", "TLSCertificateAboutToExpire", warn));

            // The limit beats the warning; a rejection beats the limit.
            for resolution in [Ok(resolved(None)), Ok(resolved(Some(warn)))] {
                let c =
                    configuration_generated(kind, gen_, &ConfigOutcome::new(&resolution, false));
                assert_eq!(
                    srm(&c),
                    (
                        "False",
                        "MaxPipelinesExceeded",
                        "Maximum pipeline count limit exceeded"
                    )
                );
            }
            for admitted in [true, false] {
                let c = configuration_generated(
                    kind,
                    gen_,
                    &ConfigOutcome::new(&Err(missing.clone()), admitted),
                );
                assert_eq!(
                    srm(&c),
                    (
                        "False",
                        "ReferencedSecretMissing",
                        "One or more referenced Secrets are missing: Secret 'backend' of Namespace 'default'"
                    )
                );
            }
        }
    }

    #[test]
    fn gateway_and_flow_follow_configuration() {
        let not_applied = ConfigOutcome::Rejected(Rejection::max_pipelines_exceeded());
        let applied = ConfigOutcome::Applied { cert_warning: None };
        let bad_facts = FlowFacts {
            all_dropped: true,
            ..FlowFacts::default()
        };
        for (kind, gw_msg, flow_msg) in [
            (
                PipelineKind::Trace,
                "This TracePipeline's specification is not applied to the configuration of the OTLP gateway. Check the 'ConfigurationGenerated' condition for more details",
                "No spans delivered to backend because TracePipeline specification is not applied to the configuration of OTLP Gateway. Check the 'ConfigurationGenerated' condition for more details",
            ),
            (
                PipelineKind::Metric,
                "This MetricPipeline's specification is not applied to the configuration of the OTLP gateway. Check the 'ConfigurationGenerated' condition for more details",
                "No metrics delivered to backend because MetricPipeline specification is not applied to the configuration of OTLP Gateway. Check the 'ConfigurationGenerated' condition for more details",
            ),
            (
                PipelineKind::Log,
                "This LogPipeline's specification is not applied to the configuration of the OTLP gateway. Check the 'ConfigurationGenerated' condition for more details",
                "No logs delivered to backend because LogPipeline specification is not applied to the configuration of OTLP Gateway. Check the 'ConfigurationGenerated' condition for more details",
            ),
        ] {
            let [cg, gw, flow] =
                pipeline_conditions(kind, Some(3), &not_applied, &GatewayState::Ready, bad_facts);
            assert_eq!(cg.type_, "ConfigurationGenerated");
            assert_eq!(gw.type_, "GatewayHealthy");
            assert_eq!(flow.type_, "TelemetryFlowHealthy");
            assert_eq!(
                srm(&gw),
                ("False", "GatewayConfigurationNotGenerated", gw_msg)
            );
            assert_eq!(srm(&flow), ("False", "ConfigurationNotGenerated", flow_msg));
            for c in [&cg, &gw, &flow] {
                assert_eq!(c.observed_generation, Some(3));
            }

            let gw = gateway_healthy(kind, Some(3), &applied, &GatewayState::Ready);
            assert_eq!(
                srm(&gw),
                (
                    "True",
                    "GatewayReady",
                    "OTLP Gateway (seedgate) is ready and runs this pipeline"
                )
            );
            let gw = gateway_healthy(
                kind,
                Some(3),
                &applied,
                &GatewayState::NotReady("exporter failed to start: bad CA".to_owned()),
            );
            assert_eq!(
                srm(&gw),
                (
                    "False",
                    "GatewayNotReady",
                    "Exporter failed to start: bad CA"
                )
            );
            let flow = flow_healthy(kind, Some(3), &applied, FlowFacts::default());
            assert_eq!(
                srm(&flow),
                (
                    "True",
                    "FlowHealthy",
                    "No problems detected in the telemetry flow"
                )
            );
        }
    }

    #[test]
    fn flow_reasons_in_kyma_priority_order() {
        let f = |all, some, throttling, buffer| FlowFacts {
            all_dropped: all,
            some_dropped: some,
            throttling,
            buffer_filling: buffer,
        };
        // (facts, reason for Log, reason for Metric and Trace)
        for (facts, log, other) in [
            (f(false, false, false, false), "FlowHealthy", "FlowHealthy"),
            (
                f(true, true, true, true),
                "GatewayAllTelemetryDataDropped",
                "GatewayAllTelemetryDataDropped",
            ),
            (
                f(false, true, true, true),
                "GatewaySomeTelemetryDataDropped",
                "GatewaySomeTelemetryDataDropped",
            ),
            (
                f(false, false, true, true),
                "AgentBufferFillingUp",
                "GatewayThrottling",
            ),
            (
                f(false, false, true, false),
                "GatewayThrottling",
                "GatewayThrottling",
            ),
            (
                f(false, false, false, true),
                "AgentBufferFillingUp",
                "AgentBufferFillingUp",
            ),
        ] {
            for kind in ALL {
                let want = if kind == PipelineKind::Log {
                    log
                } else {
                    other
                };
                let c = flow_condition(kind, Some(1), facts);
                assert_eq!(c.reason, want, "{kind} {facts:?}");
                assert_eq!(
                    c.status,
                    if want == "FlowHealthy" {
                        "True"
                    } else {
                        "False"
                    }
                );
                assert_eq!(c.type_, "TelemetryFlowHealthy");
            }
        }
    }

    #[test]
    fn flow_messages_are_kyma_texts() {
        let f = FlowFacts::default();
        let msg = |kind, facts| flow_condition(kind, None, facts).message;
        assert_eq!(
            msg(
                PipelineKind::Trace,
                FlowFacts {
                    all_dropped: true,
                    ..f
                }
            ),
            "Backend is not reachable or rejecting spans. All spans are dropped in OTLP Gateway. See troubleshooting: https://kyma-project.io/external-content/telemetry-manager/docs/user/troubleshooting.html#no-data-arrive-at-the-backend"
        );
        assert_eq!(
            msg(
                PipelineKind::Metric,
                FlowFacts {
                    some_dropped: true,
                    ..f
                }
            ),
            "Backend is reachable, but rejecting metrics. Some metrics are dropped in OTLP Gateway. See troubleshooting: https://kyma-project.io/external-content/telemetry-manager/docs/user/troubleshooting.html#not-all-data-arrive-at-the-backend"
        );
        assert_eq!(
            msg(
                PipelineKind::Log,
                FlowFacts {
                    throttling: true,
                    ..f
                }
            ),
            "OTLP Gateway is unable to receive logs at current rate. See troubleshooting: https://kyma-project.io/external-content/telemetry-manager/docs/user/troubleshooting.html#gateway-throttling"
        );
        assert_eq!(
            msg(
                PipelineKind::Log,
                FlowFacts {
                    buffer_filling: true,
                    ..f
                }
            ),
            "Buffer nearing capacity. Incoming logs rate exceeds export rate: seedgate's disk queue for this pipeline is filling up"
        );
    }

    #[test]
    fn message_shapes() {
        let t = Timestamp::from_second(1_893_456_000).unwrap(); // 2030-01-01T00:00:00Z
        for (got, want) in [
            (
                msg_cert_expired(t, false),
                "TLS certificate expired on 2030-01-01",
            ),
            (
                msg_cert_expired(t, true),
                "TLS CA certificate expired on 2030-01-01",
            ),
            (
                msg_cert_about_to_expire(t, false),
                "TLS certificate is about to expire, configured certificate is valid until 2030-01-01",
            ),
            (
                msg_cert_about_to_expire(t - k8s_openapi::jiff::SignedDuration::from_secs(1), true),
                "TLS CA certificate is about to expire, configured certificate is valid until 2029-12-31",
            ),
            (
                msg_secret_key_missing("user", "backend", "default"),
                "One or more keys in a referenced Secret are missing: Key 'user' in Secret 'backend' of Namespace 'default'",
            ),
            (
                msg_secret_ref_missing_fields(&["Name", "Namespace", "Key"]),
                "Secret reference is missing field/s: Name, Namespace, Key",
            ),
            (
                msg_endpoint_invalid("missing port"),
                "OTLP output endpoint invalid: missing port",
            ),
            (
                msg_tls_invalid("not a CA certificate"),
                "TLS configuration invalid: not a CA certificate",
            ),
            (
                MSG_VALIDATION_FAILED.to_owned(),
                "Pipeline validation failed due to an error from the Kubernetes API server",
            ),
        ] {
            assert_eq!(got, want);
        }
    }

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        condition(type_, status, reason, format!("{reason} message"), Some(1))
    }

    #[test]
    fn set_status_condition_keeps_the_transition_time_while_status_holds() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let t2 = Timestamp::from_second(3000).unwrap();
        let mut list = Vec::new();

        // New: appended with now (to the second).
        let now = t0 + k8s_openapi::jiff::SignedDuration::from_millis(500);
        assert!(set_status_condition(
            &mut list,
            cond("A", "True", "R1"),
            now
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, Time(t0));

        // Same everything: no change.
        assert!(!set_status_condition(
            &mut list,
            cond("A", "True", "R1"),
            t1
        ));
        assert_eq!(list[0].last_transition_time, Time(t0));

        // Same status, new reason, message, generation: changed, time kept.
        let mut c = cond("A", "True", "R2");
        c.observed_generation = Some(2);
        assert!(set_status_condition(&mut list, c, t1));
        assert_eq!(
            (
                list[0].reason.as_str(),
                list[0].message.as_str(),
                list[0].observed_generation
            ),
            ("R2", "R2 message", Some(2))
        );
        assert_eq!(list[0].last_transition_time, Time(t0));

        // New status: the time moves.
        assert!(set_status_condition(
            &mut list,
            cond("A", "False", "R3"),
            t2
        ));
        assert_eq!(list[0].status, "False");
        assert_eq!(list[0].last_transition_time, Time(t2));

        // A time given on the new condition is used.
        let mut c = cond("A", "True", "R3");
        c.last_transition_time = Time(t1);
        assert!(set_status_condition(&mut list, c, t2));
        assert_eq!(list[0].last_transition_time, Time(t1));

        // Other types are appended in order, found, removed.
        assert!(set_status_conditions(
            &mut list,
            [
                cond("B", "True", "R"),
                cond("A", "True", "R3"),
                cond("C", "Unknown", "R")
            ],
            t2
        ));
        let types: Vec<_> = list.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["A", "B", "C"]);
        assert!(!set_status_conditions(
            &mut list,
            [cond("B", "True", "R")],
            t2
        ));
        assert_eq!(find_status_condition(&list, "C").unwrap().status, "Unknown");
        assert!(remove_status_condition(&mut list, "B"));
        assert!(!remove_status_condition(&mut list, "B"));
        assert!(find_status_condition(&list, "B").is_none());
    }
}

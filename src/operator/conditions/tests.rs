#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::PipelineConfig;

const ALL: [PipelineKind; 3] = PipelineKind::ALL;

fn resolved(warning: Option<&str>) -> Resolved {
    Resolved {
        pipeline: PipelineConfig::new(
            "tracepipeline.x",
            vec![],
            crate::config::InputConfig::default(),
            crate::config::OutputConfig::of_kind(crate::config::OutputType::Noop),
        ),
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

        let warn =
            "TLS certificate is about to expire, configured certificate is valid until 2030-01-10";
        let c = configuration_generated(
            kind,
            gen_,
            &ConfigOutcome::new(&Ok(resolved(Some(warn))), true),
        );
        assert_eq!(srm(&c), ("True", "TLSCertificateAboutToExpire", warn));

        // The limit beats the warning; a rejection beats the limit.
        for resolution in [Ok(resolved(None)), Ok(resolved(Some(warn)))] {
            let c = configuration_generated(kind, gen_, &ConfigOutcome::new(&resolution, false));
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

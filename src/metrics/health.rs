//! The verdicts of health as metrics: the probes' answers
//! (`seedgate_ready`, `seedgate_live`) and every pipeline's conditions
//! (`seedgate_pipeline_condition`), so dashboards and alerts see what
//! `/readyz` and the Kyma status conditions say.
//!
//! A condition is one series per `(destination, signal, condition)`: the
//! `reason` label is the current reason and the value is 1 for status True,
//! 0 for False. When the reason changes, the old series is removed, so
//! `seedgate_pipeline_condition == 0` lists exactly what is wrong now.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `{destination, signal, condition, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// The pipeline's destination name.
    pub destination: String,
    /// logs, metrics, traces.
    pub signal: &'static str,
    /// The condition type, e.g. `TelemetryFlowHealthy`.
    pub condition: &'static str,
    /// The condition's reason, e.g. `FlowHealthy`.
    pub reason: String,
}

/// Probe verdicts and pipeline conditions.
#[derive(Debug, Default)]
pub struct HealthMetrics {
    /// 1 while `/readyz` answers 200.
    pub ready: Gauge,
    /// 1 while `/healthz` answers 200.
    pub live: Gauge,
    /// See the module doc.
    pub condition: Family<ConditionLabels, Gauge>,
    /// The reason each condition series carries now.
    current: Mutex<HashMap<(String, &'static str, &'static str), String>>,
}

impl HealthMetrics {
    /// Registers under `seedgate`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "ready",
            "1 while /readyz answers 200 (listeners bound, storage open, some destination healthy)",
            self.ready.clone(),
        );
        r.register(
            "live",
            "1 while /healthz answers 200 (the storage writer and the exports make progress)",
            self.live.clone(),
        );
        r.register(
            "pipeline_condition",
            "A pipeline's status condition: 1 if True, 0 if False; reason is the current one",
            self.condition.clone(),
        );
    }

    /// Sets one condition of a destination, replacing its series when the
    /// reason changed.
    pub fn set_condition(
        &self,
        destination: &str,
        signal: &'static str,
        condition: &'static str,
        status: bool,
        reason: &str,
    ) {
        let labels = |reason: String| ConditionLabels {
            destination: destination.to_owned(),
            signal,
            condition,
            reason,
        };
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (destination.to_owned(), signal, condition);
        if let Some(old) = current.insert(key, reason.to_owned())
            && old != reason
        {
            self.condition.remove(&labels(old));
        }
        self.condition
            .get_or_create(&labels(reason.to_owned()))
            .set(i64::from(status));
    }

    /// Removes one condition of a destination.
    pub fn remove_condition(
        &self,
        destination: &str,
        signal: &'static str,
        condition: &'static str,
    ) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(reason) = current.remove(&(destination.to_owned(), signal, condition)) {
            self.condition.remove(&ConditionLabels {
                destination: destination.to_owned(),
                signal,
                condition,
                reason,
            });
        }
    }

    /// Removes the `conditions` of destinations not in `keep`
    /// (`(destination, signal)`), e.g. of a pipeline that was removed.
    pub fn retain_conditions(
        &self,
        conditions: &[&str],
        keep: &std::collections::HashSet<(String, &'static str)>,
    ) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.retain(|(destination, signal, condition), reason| {
            let kept =
                !conditions.contains(condition) || keep.contains(&(destination.clone(), *signal));
            if !kept {
                self.condition.remove(&ConditionLabels {
                    destination: destination.clone(),
                    signal,
                    condition,
                    reason: reason.clone(),
                });
            }
            kept
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_reason_replaces_the_old_series_and_removed_pipelines_vanish() {
        let m = HealthMetrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s.lines()
                .filter(|l| l.starts_with("pipeline_condition{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        m.set_condition("a", "logs", "TelemetryFlowHealthy", true, "FlowHealthy");
        m.set_condition("b", "logs", "TelemetryFlowHealthy", true, "FlowHealthy");
        m.set_condition(
            "a",
            "logs",
            "TelemetryFlowHealthy",
            false,
            "GatewayAllTelemetryDataDropped",
        );
        let lines = text(&r);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("destination=\"a\"")
            && l.contains("reason=\"GatewayAllTelemetryDataDropped\"")
            && l.ends_with(" 0")));
        m.set_condition(
            "a",
            "logs",
            "ConfigurationGenerated",
            true,
            "GatewayConfigured",
        );
        m.retain_conditions(
            &["TelemetryFlowHealthy"],
            &[("b".to_owned(), "logs")].into_iter().collect(),
        );
        let lines = text(&r);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("destination=\"b\"") && l.ends_with(" 1"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("ConfigurationGenerated") && l.contains("destination=\"a\"")),
            "conditions of other owners stay: {lines:?}"
        );
    }
}

//! How each pipeline is doing, judged from what the exporter pool measures:
//! the `GatewayHealthy` and `TelemetryFlowHealthy` conditions of every seed
//! destination, whether it comes from the configuration file or from a Kyma
//! pipeline resource.
//!
//! Health (`crate::actors::health`) calls [`FlowTracker::judge`] once a second for every
//! running destination; the verdicts go to `seedgate_pipeline_condition`
//! and into the shared health state, where the operator reads them for the
//! pipelines' status conditions. Counters are looked at over a sliding
//! [`FLOW_WINDOW`], so one drop keeps `GatewaySomeTelemetryDataDropped` for
//! that long instead of flickering for one tick.
//!
//! | fact | from |
//! | --- | --- |
//! | all dropped | `seedgate_exporter_failing` is 1 (the last attempt failed) |
//! | some dropped | `seedgate_exporter_dropped_records_total` (permanent, max_elapsed, rejected) rose within the window |
//! | throttling | `seedgate_router_dropped_records_total{reason="queue_full"}` rose within the window, or sends wait for the rate limit (`seedgate_exporter_throttled`) |
//! | buffer filling up | the queue holds more than 80% of its byte limit |
//! | gateway not ready | the destination failed without a success for `admin.unhealthy_after` |

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::metrics::{Dest, DestReason, Metrics};
use crate::operator::PipelineKind;
use crate::operator::conditions::{self, ConfigOutcome, FlowFacts, GatewayState};
use crate::signal::Signal;

/// The conditions judged here (`ConfigurationGenerated` is the operator's).
pub const CONDITIONS: [&str; 2] = [
    conditions::TYPE_GATEWAY_HEALTHY,
    conditions::TYPE_FLOW_HEALTHY,
];

/// How far back drops and refusals count.
pub const FLOW_WINDOW: Duration = Duration::from_secs(10);

/// The health of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineHealth {
    /// Whether seedgate delivers for it.
    pub gateway: GatewayState,
    /// What its exporter measured.
    pub flow: FlowFacts,
}

/// The counters of one destination at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    dropped: u64,
    refused: u64,
}

/// Remembers each destination's counters over the last [`FLOW_WINDOW`].
#[derive(Debug, Default)]
pub struct FlowTracker {
    samples: HashMap<(String, Signal), VecDeque<Sample>>,
}

impl FlowTracker {
    /// Judges one destination now; `failing_for` is set when it has failed
    /// without a success for longer than `admin.unhealthy_after`.
    pub fn judge(
        &mut self,
        metrics: &Metrics,
        destination: &str,
        signal: Signal,
        failing_for: Option<Duration>,
        now: Instant,
    ) -> PipelineHealth {
        let s = signal.as_str();
        let labels = Dest {
            destination: destination.to_owned(),
            signal: s,
        };
        let reason = |reason| DestReason {
            destination: destination.to_owned(),
            signal: s,
            reason,
        };
        let e = &metrics.exporter;
        let dropped: u64 = ["permanent", "max_elapsed", "rejected"]
            .into_iter()
            .map(|r| e.dropped_records.get(&reason(r)).map_or(0, |c| c.get()))
            .sum();
        let refused = metrics
            .router
            .dropped_records
            .get(&reason("queue_full"))
            .map_or(0, |c| c.get());
        let history = self
            .samples
            .entry((destination.to_owned(), signal))
            .or_default();
        while history
            .front()
            .is_some_and(|old| now.saturating_duration_since(old.at) > FLOW_WINDOW)
        {
            history.pop_front();
        }
        let oldest = history.front().copied().unwrap_or(Sample {
            at: now,
            dropped,
            refused,
        });
        history.push_back(Sample {
            at: now,
            dropped,
            refused,
        });
        let failing = e.failing.get(&labels).is_some_and(|g| g.get() == 1);
        let throttled = metrics
            .flow
            .throttled
            .get(&labels)
            .is_some_and(|g| g.get() == 1);
        let size = metrics.queue.bytes.get(&labels).map_or(0, |g| g.get());
        let limit = metrics
            .queue
            .limit_bytes
            .get(&labels)
            .map_or(0, |g| g.get());
        let flow = FlowFacts {
            all_dropped: failing,
            some_dropped: dropped > oldest.dropped,
            // Clients refused for a full queue, or sends waiting for the
            // output's rate limit: both are the gateway not keeping up.
            throttling: refused > oldest.refused || throttled,
            buffer_filling: limit > 0 && size * 10 > limit * 8,
        };
        let gateway = match failing_for {
            None => GatewayState::Ready,
            Some(_) => GatewayState::NotReady(format!(
                "the {s} backend has failed every export attempt for longer than admin.unhealthy_after; the data is kept in the buffer and retried"
            )),
        };
        PipelineHealth { gateway, flow }
    }

    /// Forgets destinations that no longer run.
    pub fn retain(&mut self, running: &std::collections::HashSet<(String, &'static str)>) {
        self.samples
            .retain(|(d, s), _| running.contains(&(d.clone(), s.as_str())));
    }
}

/// Publishes `health` as the destination's `GatewayHealthy` and
/// `TelemetryFlowHealthy` in `seedgate_pipeline_condition`, with the same
/// reasons the Kyma status conditions carry.
pub fn publish(metrics: &Metrics, destination: &str, signal: Signal, health: &PipelineHealth) {
    // The messages name the Kyma kind of the signal.
    let kind = PipelineKind::of_signal(signal);
    let applied = ConfigOutcome::Applied { cert_warning: None };
    for (condition, c) in [
        (
            conditions::TYPE_GATEWAY_HEALTHY,
            conditions::gateway_healthy(kind, None, &applied, &health.gateway),
        ),
        (
            conditions::TYPE_FLOW_HEALTHY,
            conditions::flow_condition(kind, None, health.flow),
        ),
    ] {
        metrics.health.set_condition(
            destination,
            signal.as_str(),
            condition,
            c.status == conditions::STATUS_TRUE,
            &c.reason,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_counts_for_the_window_then_the_flow_is_healthy_again() {
        let m = Metrics::new();
        let mut t = FlowTracker::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let judge = |t: &mut FlowTracker, s: u64, failing: Option<Duration>| {
            t.judge(&m, "p", Signal::Logs, failing, at(s))
        };
        let first = judge(&mut t, 0, None);
        assert_eq!(first.flow, FlowFacts::default());
        assert_eq!(first.gateway, GatewayState::Ready);
        m.exporter
            .dropped_records
            .get_or_create(&DestReason {
                destination: "p".into(),
                signal: "logs",
                reason: "permanent",
            })
            .inc();
        for s in [1, 5, 10] {
            assert!(judge(&mut t, s, None).flow.some_dropped, "at {s} s");
        }
        // Eleven seconds on, the sample before the drop has left the window.
        assert!(!judge(&mut t, 11, None).flow.some_dropped);

        let labels = Dest {
            destination: "p".into(),
            signal: "logs",
        };
        m.queue.limit_bytes.get_or_create(&labels).set(100);
        m.queue.bytes.get_or_create(&labels).set(81);
        m.exporter.failing.get_or_create(&labels).set(1);
        let h = judge(&mut t, 12, Some(Duration::from_secs(61)));
        assert!(h.flow.all_dropped && h.flow.buffer_filling);
        assert!(matches!(h.gateway, GatewayState::NotReady(_)));

        publish(&m, "p", Signal::Logs, &h);
        let text = m.encode().unwrap();
        assert!(text.contains(
            "seedgate_pipeline_condition{destination=\"p\",signal=\"logs\",condition=\"TelemetryFlowHealthy\",reason=\"GatewayAllTelemetryDataDropped\"} 0"
        ), "{text}");
        assert!(text.contains(
            "seedgate_pipeline_condition{destination=\"p\",signal=\"logs\",condition=\"GatewayHealthy\",reason=\"GatewayNotReady\"} 0"
        ));
    }
}

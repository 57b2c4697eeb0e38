//! `receivers.memory_limiter`: a process-wide soft memory limit, shaped like
//! the OpenTelemetry Collector's `memory_limiter` processor (same field
//! names, same meaning), applied where seedgate takes data in.
//!
//! Plain data, like the rest of `config`: the limits in bytes are derived at
//! start (`receivers::memory_limiter::Limits::resolve`), because the
//! percentages refer to the container's cgroup memory limit, which only the
//! running process can read.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;

/// How often the limiter reads the process's memory use.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The hard limit, as a share of the cgroup memory limit (or of the host's
/// memory without one): the Collector docs' suggestion.
pub const DEFAULT_LIMIT_PERCENTAGE: u64 = 80;
/// The headroom kept below the hard limit, as a share of the same total;
/// requests are refused above `limit - spike_limit`.
pub const DEFAULT_SPIKE_LIMIT_PERCENTAGE: u64 = 20;
/// `spike_limit_mib` when only `limit_mib` is given: this share of it (the
/// Collector's rule).
pub const DEFAULT_SPIKE_SHARE_OF_LIMIT: u64 = 20;

/// `receivers.memory_limiter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often the process's resident memory is read.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// The hard limit in MiB; when set (> 0) it wins over the percentages.
    pub limit_mib: u64,
    /// Headroom below `limit_mib` in MiB; 0 means 20% of `limit_mib`.
    pub spike_limit_mib: u64,
    /// The hard limit as a percentage of the cgroup memory limit (of the
    /// host's memory without one); 0 with `limit_mib: 0` turns the limiter off.
    pub limit_percentage: u64,
    /// Headroom below the hard limit, as a percentage of the same total.
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        Self {
            check_interval: DEFAULT_CHECK_INTERVAL,
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: DEFAULT_LIMIT_PERCENTAGE,
            spike_limit_percentage: DEFAULT_SPIKE_LIMIT_PERCENTAGE,
        }
    }
}

/// Problems of `receivers.memory_limiter`.
pub(super) fn check_memory_limiter(p: &mut Problems, at: &str, m: &MemoryLimiterConfig) {
    if m.check_interval < Duration::from_millis(10) || m.check_interval > Duration::from_secs(60) {
        p.push(
            format!("{at}.check_interval"),
            "must be between 10ms and 1m",
        );
    }
    if m.limit_mib > 0 {
        if m.spike_limit_mib >= m.limit_mib {
            p.push(
                format!("{at}.spike_limit_mib"),
                format!(
                    "{} must be below limit_mib ({}): requests are refused above limit - spike",
                    m.spike_limit_mib, m.limit_mib
                ),
            );
        }
    } else if m.spike_limit_mib > 0 {
        p.push(format!("{at}.spike_limit_mib"), "needs limit_mib");
    }
    if m.limit_percentage > 100 {
        p.push(format!("{at}.limit_percentage"), "must be at most 100");
    }
    if m.limit_mib == 0 && m.limit_percentage > 0 && m.spike_limit_percentage >= m.limit_percentage
    {
        p.push(
            format!("{at}.spike_limit_percentage"),
            format!(
                "{} must be below limit_percentage ({})",
                m.spike_limit_percentage, m.limit_percentage
            ),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{assert_problems, parse};

    #[test]
    fn the_limiter_parses_and_every_problem_is_named() {
        let c = parse(
            "c.yaml",
            "receivers:\n  memory_limiter: { limit_mib: 400, check_interval: 250ms }\n",
        )
        .unwrap();
        let m = c.receivers.memory_limiter;
        assert_eq!((m.limit_mib, m.spike_limit_mib), (400, 0));
        assert_eq!(m.check_interval.as_millis(), 250);
        assert_problems(
            "receivers:\n  memory_limiter: { limit_mib: 10, spike_limit_mib: 10, check_interval: 0s }\n",
            &[
                "receivers.memory_limiter.check_interval: must be between",
                "receivers.memory_limiter.spike_limit_mib: 10 must be below limit_mib (10)",
            ],
        );
        assert_problems(
            "receivers:\n  memory_limiter: { limit_percentage: 150, spike_limit_mib: 5 }\n",
            &[
                "receivers.memory_limiter.limit_percentage: must be at most 100",
                "receivers.memory_limiter.spike_limit_mib: needs limit_mib",
            ],
        );
        assert_problems(
            "receivers:\n  idle_timeout: 0s\n  memory_limiter: { limit_percentage: 20, spike_limit_percentage: 20 }\n",
            &[
                "receivers.idle_timeout: must be at least 100ms",
                "receivers.memory_limiter.spike_limit_percentage: 20 must be below",
            ],
        );
    }
}

//! Exponential backoff with jitter, for the exporter pool's retry loop.
//!
//! Shaped like linkerd's `exp-backoff`: a value type built once from
//! validated parameters ([`ExponentialBackoff::try_new`] returns a typed
//! [`InvalidBackoff`]) and then asked for the delay of attempt *n*. It holds
//! no state, so one value serves every batch of a destination.
//!
//! Invariants (each a property test at the end of the file):
//! - [`ExponentialBackoff::ceiling`] is `initial * multiplier^attempt`,
//!   never decreasing in `attempt` and capped at `max`;
//! - [`ExponentialBackoff::delay`] lies in `[initial, ceiling(attempt)]`, so
//!   never above `max` and never a zero-delay hammering of a backend;
//! - no input (huge attempt numbers, huge multipliers) overflows or panics.

use std::time::Duration;

use crate::config::RetryConfig;

/// Why backoff parameters were refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    /// The first delay is zero: retries would hammer the backend.
    #[error("initial backoff must be greater than zero")]
    ZeroInitial,
    /// The cap is below the first delay.
    #[error("max backoff {max:?} is smaller than the initial backoff {initial:?}")]
    MaxBelowInitial {
        /// The first delay.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
    /// The growth factor is below 1 or not a finite number.
    #[error("backoff multiplier {0} must be a finite number of at least 1")]
    Multiplier(f64),
}

/// Exponential backoff: the delay before retry `n` grows by `multiplier`
/// from `initial` up to `max`, with jitter between `initial` and that ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
}

/// A destination's retry policy, validated once when the destination is
/// built: the backoff between attempts and how long a batch is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The delay before each retry (a backend's own delay wins).
    pub backoff: ExponentialBackoff,
    /// Drop a batch (counted) after retrying this long; zero retries forever.
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    /// The policy of `retry`.
    ///
    /// # Errors
    /// As [`ExponentialBackoff::try_new`].
    pub fn from_config(retry: &RetryConfig) -> Result<Self, InvalidBackoff> {
        Ok(Self {
            backoff: ExponentialBackoff::from_config(retry)?,
            max_elapsed: retry.max_elapsed,
        })
    }
}

// === impl InvalidBackoff ===

impl InvalidBackoff {
    /// Bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidBackoff::ZeroInitial => "zero_initial",
            InvalidBackoff::MaxBelowInitial { .. } => "max_below_initial",
            InvalidBackoff::Multiplier(_) => "multiplier",
        }
    }
}

// === impl ExponentialBackoff ===

impl ExponentialBackoff {
    /// Backoff from validated parameters.
    ///
    /// # Errors
    /// When `initial` is zero, `max < initial`, or `multiplier` is below 1
    /// or not finite.
    pub fn try_new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
    ) -> Result<Self, InvalidBackoff> {
        if initial.is_zero() {
            return Err(InvalidBackoff::ZeroInitial);
        }
        if max < initial {
            return Err(InvalidBackoff::MaxBelowInitial { initial, max });
        }
        // is_finite also rules out NaN, which compares false with everything.
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(InvalidBackoff::Multiplier(multiplier));
        }
        Ok(Self {
            initial,
            max,
            multiplier,
        })
    }

    /// Backoff without checks, for constants whose values are known good.
    /// Bad values do not panic later: delays are still clamped to `max`.
    pub const fn new_unchecked(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            max,
            multiplier,
        }
    }

    /// Backoff from a pipeline's retry settings (`max_elapsed` is the pool's
    /// business, not this type's).
    ///
    /// # Errors
    /// As [`ExponentialBackoff::try_new`].
    pub fn from_config(retry: &RetryConfig) -> Result<Self, InvalidBackoff> {
        Self::try_new(retry.initial_interval, retry.max_interval, retry.multiplier)
    }

    /// The first delay.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap on one delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The un-jittered delay of retry `attempt` (0-based):
    /// `initial * multiplier^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // powi takes an i32; beyond that the product is infinite anyway.
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        // An infinite or huge product fails the conversion: that is the cap.
        Duration::try_from_secs_f64(secs).map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry number `attempt` (0-based), with jitter from
    /// `rng`: uniform in `[initial, ceiling(attempt)]`. Full jitter spreads
    /// the retries of many destinations; the floor at `initial` keeps the
    /// operator's "first delay" a true minimum.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = self.initial.min(ceiling);
        // Nanoseconds in a u64 last 584 years; saturate beyond.
        let lo = u64::try_from(floor.as_nanos()).unwrap_or(u64::MAX);
        let hi = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if hi <= lo {
            return ceiling;
        }
        Duration::from_nanos(rng.random_range(lo..=hi))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn params() -> impl Strategy<Value = (Duration, Duration, f64)> {
        (1u64..10_000, 0u64..1_000_000, 1.0f64..10.0).prop_map(|(initial_ms, extra_ms, m)| {
            (
                Duration::from_millis(initial_ms),
                Duration::from_millis(initial_ms + extra_ms),
                m,
            )
        })
    }

    proptest! {
        #[test]
        fn delay_is_never_above_max_nor_below_initial(
            (initial, max, m) in params(),
            attempt in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let b = ExponentialBackoff::try_new(initial, max, m).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            prop_assert!(d <= max, "{d:?} > {max:?}");
            prop_assert!(d >= initial, "{d:?} < {initial:?}");
            prop_assert!(d <= b.ceiling(attempt));
        }

        #[test]
        fn ceiling_grows_until_the_cap_and_stays_there(
            (initial, max, m) in params(),
            attempt in 0u32..200,
        ) {
            let b = ExponentialBackoff::try_new(initial, max, m).unwrap();
            let (now, next) = (b.ceiling(attempt), b.ceiling(attempt + 1));
            prop_assert!(next >= now, "attempt {attempt}: {next:?} < {now:?}");
            if now < max && m >= 1.01 {
                // Strict growth below the cap (up to float rounding).
                prop_assert!(next > now, "attempt {attempt}: stuck at {now:?}");
            }
            prop_assert_eq!(b.ceiling(0), initial);
            prop_assert_eq!(b.ceiling(u32::MAX), max);
        }

        #[test]
        fn try_new_rejects_max_below_initial(initial_ms in 2u64..100_000, less in 1u64..100_000) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial.saturating_sub(Duration::from_millis(less));
            let err = ExponentialBackoff::try_new(initial, max, 2.0).unwrap_err();
            prop_assert_eq!(err.kind(), "max_below_initial");
        }

        #[test]
        fn try_new_rejects_multiplier_below_one(m in -1e9f64..0.999_999) {
            let err = ExponentialBackoff::try_new(Duration::from_secs(1), Duration::from_secs(2), m).unwrap_err();
            prop_assert_eq!(err, InvalidBackoff::Multiplier(m));
        }
    }

    #[test]
    fn try_new_rejects_zero_and_non_finite() {
        let s = Duration::from_secs(1);
        assert_eq!(
            ExponentialBackoff::try_new(Duration::ZERO, s, 2.0),
            Err(InvalidBackoff::ZeroInitial)
        );
        for m in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = ExponentialBackoff::try_new(s, s, m).unwrap_err();
            assert_eq!(err.kind(), "multiplier", "{m}");
        }
        assert!(ExponentialBackoff::try_new(s, s, 1.0).is_ok());
    }

    #[test]
    fn reaches_the_cap_from_the_default_config() {
        let b = ExponentialBackoff::from_config(&RetryConfig::default()).unwrap();
        // 1s, 2s, 4s, 8s, 16s, then capped at 30s.
        let ceilings: Vec<u64> = (0..7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn jitter_spreads_delays() {
        let b =
            ExponentialBackoff::try_new(Duration::from_millis(100), Duration::from_secs(60), 2.0)
                .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: std::collections::BTreeSet<Duration> =
            (0..32).map(|_| b.delay(8, &mut rng)).collect();
        assert!(delays.len() > 1, "no jitter: {delays:?}");
    }
}

//! `rate_limit`: records and bytes per second towards one backend, applied
//! by the delivery loop before each attempt.
//!
//! One token bucket per configured dimension. A send *reserves* its records
//! and bytes at once, which may take a bucket below zero (debt), and then
//! waits until the debt is paid: the longest wait of the two buckets.
//! Concurrent senders reserve one after the other under a lock, so each
//! waits behind the debt of the ones before it and the long-run rate holds
//! whatever the concurrency.
//!
//! Why not the `governor` crate: its GCRA refuses a request for more cells
//! than the burst (`until_n_ready` returns `InsufficientCapacity`), and a
//! batch larger than the burst must still go; it keeps one quota per
//! limiter, so records and bytes would be two limiters checked one after
//! the other, without one atomic reservation of both. The bucket with debt
//! is a few lines and is tested on a fake clock below.
//!
//! Invariants:
//! - a bucket never holds more than `rate × burst`;
//! - a reservation never fails, whatever its size: it is paid in waiting;
//! - over any window after the first burst, what the buckets let through
//!   is `rate × window` plus at most one batch.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// One dimension's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    /// The most tokens saved up.
    capacity: f64,
    /// Tokens now; negative is debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket of `rate × burst` tokens (at least one token).
    pub fn new(rate: f64, burst: Duration, now: Instant) -> Self {
        let capacity = (rate * burst.as_secs_f64()).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }

    /// Takes `n` tokens, going into debt if need be, and returns how long
    /// the caller waits until they are paid for (zero when they were there).
    pub fn reserve(&mut self, now: Instant, n: f64) -> Duration {
        self.refill(now);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The buckets of one destination.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<(Option<TokenBucket>, Option<TokenBucket>)>,
}

// === impl RateLimiter ===

impl RateLimiter {
    /// Buckets for the configured dimensions, full.
    pub fn new(cfg: &RateLimitConfig, now: Instant) -> Self {
        #[allow(clippy::cast_precision_loss)] // rates far below 2^52
        let bucket = |rate: u64| TokenBucket::new(rate as f64, cfg.burst, now);
        Self {
            buckets: Mutex::new((
                cfg.records_per_second.map(bucket),
                cfg.bytes_per_second.map(|b| bucket(b.0)),
            )),
        }
    }

    /// Reserves `records` and `bytes`; the wait before sending them.
    pub fn reserve(&self, now: Instant, records: u64, bytes: u64) -> Duration {
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        #[allow(clippy::cast_precision_loss)]
        let (records, bytes) = (records as f64, bytes as f64);
        let r =
            b.0.as_mut()
                .map_or(Duration::ZERO, |t| t.reserve(now, records));
        let y =
            b.1.as_mut()
                .map_or(Duration::ZERO, |t| t.reserve(now, bytes));
        r.max(y)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytesize::ByteSize;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Equal within a microsecond (the waits come from f64 arithmetic).
    #[track_caller]
    fn assert_close(got: Duration, want: Duration) {
        assert!(
            got.abs_diff(want) < Duration::from_micros(1),
            "{got:?} != {want:?}"
        );
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_charges_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, Duration::from_secs(1), t0);
        assert_eq!(b.reserve(t0, 1000.0), Duration::ZERO);
        assert_close(b.reserve(t0, 100.0), ms(100));
        // The next one queues behind the debt of the last.
        assert_close(b.reserve(t0, 100.0), ms(200));
        // Half a second later 500 tokens came back: debt 200 - 500 → 300 saved.
        assert_eq!(b.reserve(t0 + ms(500), 300.0), Duration::ZERO);
    }

    #[test]
    fn an_idle_bucket_saves_at_most_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, ms(500), t0);
        assert_eq!(b.reserve(t0, 50.0), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        // Capacity is 50, not an hour's worth: the next 50 cost 0.5 s.
        assert_eq!(b.reserve(later, 50.0), Duration::ZERO);
        assert_close(b.reserve(later, 50.0), ms(500));
    }

    #[test]
    fn a_batch_larger_than_the_burst_still_goes_and_pays_in_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, ms(100), t0);
        assert_close(b.reserve(t0, 5000.0), ms(4900));
    }

    #[test]
    fn the_long_run_rate_is_the_configured_rate() {
        // A sender that sends 64-record batches back to back for 60 s of
        // fake time, sleeping as told.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2000.0, Duration::from_secs(1), t0);
        let mut now = t0;
        let mut sent = 0.0_f64;
        while now < t0 + Duration::from_secs(60) {
            now += b.reserve(now, 64.0);
            sent += 64.0;
        }
        let rate = (sent - 2000.0) / 60.0;
        assert!((rate - 2000.0).abs() < 2000.0 * 0.01, "{rate}");
    }

    #[test]
    fn records_and_bytes_are_reserved_together_and_the_longer_wait_wins() {
        let t0 = Instant::now();
        let l = RateLimiter::new(
            &RateLimitConfig {
                records_per_second: Some(100),
                bytes_per_second: Some(ByteSize(10_000)),
                burst: Duration::from_secs(1),
            },
            t0,
        );
        assert_eq!(l.reserve(t0, 100, 10_000), Duration::ZERO);
        // Records want 0.1 s, bytes 0.5 s.
        assert_close(l.reserve(t0, 10, 5_000), ms(500));
        // Both were charged: records now owe 10 + 50 → 0.6 s.
        assert_close(l.reserve(t0, 50, 0), ms(600));
        let only_records = RateLimiter::new(
            &RateLimitConfig {
                records_per_second: Some(10),
                bytes_per_second: None,
                burst: Duration::from_secs(1),
            },
            t0,
        );
        assert_eq!(only_records.reserve(t0, 10, u64::MAX), Duration::ZERO);
    }
}

//! When a partial batch stops waiting for more: on a grid of its own.
//!
//! A partial batch waits at most `batch.timeout` for more entries. Timed
//! from when the loop first saw it partial, every destination created at
//! the same moment sends at the same moments ever after: a seed's
//! thousand shoot clients, made within 50 ms by the first records after a
//! start, then read, send and mark their batches all in the same few
//! milliseconds of every second, and the requests arriving then wait
//! behind them (1,000 shoots: p99 latency 9-25 ms against 5-7 ms for one
//! destination at the same p50).
//!
//! So each destination sends on a grid of its own instead: the points
//! `phase + k × timeout` from the process's start, with `phase` taken
//! from a hash of its name, which spreads a thousand destinations evenly
//! over the timeout. A partial batch waits until the last grid point no
//! later than `timeout` after it was first seen: never longer than the
//! timeout, and, under a steady stream, exactly one timeout apart.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The grid's origin: one for the process, so that phases compare.
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A destination's place on the grid of its batch timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Linger {
    timeout: Duration,
    /// The grid's period (the timeout) and phase in `[0, period)`, in
    /// nanoseconds; none for a zero timeout or one too long to count in
    /// nanoseconds.
    grid: Option<(u64, u64)>,
}

impl Linger {
    /// The grid of `timeout` for the destination (queue) named `name`.
    pub(super) fn new(name: &str, timeout: Duration) -> Self {
        let grid = u64::try_from(timeout.as_nanos())
            .ok()
            .filter(|&period| period > 0)
            .map(|period| {
                // The hash scaled to [0, period): both factors are below 2^64.
                let hash = u128::from(xxhash_rust::xxh3::xxh3_64(name.as_bytes()));
                let phase = (hash * u128::from(period)) >> 64;
                (period, u64::try_from(phase).unwrap_or(0))
            });
        Self { timeout, grid }
    }

    /// When a batch first seen partial at `since` goes at the latest: the
    /// last grid point in `(since, since + timeout]` (`since` itself for a
    /// zero timeout).
    pub(super) fn deadline(&self, since: Instant) -> Instant {
        let latest = since + self.timeout;
        let Some((period, phase)) = self.grid else {
            return latest;
        };
        // Nanoseconds since the grid's point at or before `latest`.
        let elapsed = latest.saturating_duration_since(*ORIGIN).as_nanos();
        let shifted = elapsed + u128::from(period) - u128::from(phase);
        let past = u64::try_from(shifted % u128::from(period)).unwrap_or(0);
        latest - Duration::from_nanos(past)
    }

    /// The destination's phase on its grid, in nanoseconds.
    #[cfg(test)]
    fn phase(&self) -> u64 {
        self.grid.map_or(0, |(_, phase)| phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_deadline_is_never_later_than_the_timeout_nor_at_the_start() {
        let linger = Linger::new("shoot/shoot--a--b/logs", SECOND);
        let start = Instant::now();
        for ms in (0..3000).step_by(7) {
            let since = start + Duration::from_millis(ms);
            let deadline = linger.deadline(since);
            assert!(
                deadline > since,
                "{ms} ms: the deadline is at or before the start"
            );
            assert!(
                deadline <= since + SECOND,
                "{ms} ms: waits past the timeout"
            );
        }
    }

    #[test]
    fn a_steady_stream_is_sent_one_timeout_apart_on_the_destinations_phase() {
        let linger = Linger::new("shoot/shoot--a--b/logs", SECOND);
        // Seen partial at some time, sent at its deadline, seen partial
        // again just after (the send took 3 ms): the next deadline is one
        // timeout after the last.
        let mut sent = linger.deadline(Instant::now());
        for _ in 0..5 {
            let next = linger.deadline(sent + Duration::from_millis(3));
            assert_eq!(next - sent, SECOND);
            sent = next;
        }
        let into_period = (sent - *ORIGIN).as_nanos() % SECOND.as_nanos();
        assert_eq!(into_period, u128::from(linger.phase()));
    }

    #[test]
    fn destinations_made_together_send_at_moments_spread_over_the_timeout() {
        // A thousand shoot clients, all first seeing data at one instant.
        let since = Instant::now();
        let mut tenths = [0usize; 10];
        for i in 0..1000 {
            let linger = Linger::new(&format!("shoot/shoot--loadgen--t{i}/logs"), SECOND);
            let wait = linger.deadline(since) - since;
            let tenth = usize::try_from(wait.as_millis() / 100).unwrap_or(9).min(9);
            tenths[tenth] += 1;
        }
        // Evenly, about 100 in each tenth of the second; none near empty
        // or holding a third of them.
        for (tenth, n) in tenths.iter().enumerate() {
            assert!(
                (50..=150).contains(n),
                "tenth {tenth} of the second holds {n}: {tenths:?}"
            );
        }
    }

    #[test]
    fn a_zero_timeout_sends_at_once() {
        let linger = Linger::new("pipeline/seed/logs", Duration::ZERO);
        let since = Instant::now();
        assert_eq!(linger.deadline(since), since);
    }
}

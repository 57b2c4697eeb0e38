//! Adaptive request concurrency (ARC): how many requests one destination
//! keeps in flight, found by AIMD from what the backend answers.
//!
//! The idea is Vector's adaptive request concurrency (written from its
//! description, not its code): requests are judged in windows about one
//! average round-trip time long. At the end of a window the
//! [`Controller`]:
//! - multiplies the limit by `decrease_ratio` (default 0.9, like Vector;
//!   0.5 halves, as TCP does) when any request of the window met
//!   back-pressure (429, 502, 503, 504, `UNAVAILABLE`,
//!   `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, a timeout or a refused
//!   connection: see [`feedback`]), or when the window's mean RTT rose above
//!   the moving average by more than `rtt_deviation_scale` standard
//!   deviations (and at least [`MIN_RTT_RISE`] of it);
//! - else adds 1 when the limit was fully used at some point in the window
//!   (a limit nobody reaches tells nothing about the backend);
//! - then folds the window's mean RTT into the moving average (EWMA with
//!   weight `ewma_alpha`), except after back-pressure, whose fast failures
//!   would drag the baseline down.
//!
//! The limit always stays within `[min, max]`. The [`Controller`] is pure
//! (time comes in as an argument) and is tested on a fake clock; the
//! [`Limiter`] is the async part the delivery loop holds permits of. Its
//! limit can move while permits are out: a lower limit simply admits no
//! new request until enough have finished.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::AdaptiveConcurrencyConfig;
use crate::exporters::Outcome;

/// A rise of the window RTT smaller than this fraction of the average never
/// counts as rising: on a quiet backend the deviation is near zero and
/// scheduling noise alone would otherwise shrink the limit.
pub const MIN_RTT_RISE: f64 = 0.1;
/// The shortest window, so a very fast backend is not judged per request.
pub const MIN_WINDOW: Duration = Duration::from_millis(10);

/// What one attempt says about the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Accepted: its RTT counts.
    Healthy,
    /// The backend or the path to it is overloaded.
    BackPressure,
    /// Says nothing about load (a permanent error, an auth failure).
    Neutral,
}

/// Classifies an attempt's outcome for the controller.
pub fn feedback(outcome: &Outcome) -> Feedback {
    match outcome {
        Outcome::Accepted { .. } => Feedback::Healthy,
        Outcome::Retryable { reason, .. } if reason.is_back_pressure() => Feedback::BackPressure,
        _ => Feedback::Neutral,
    }
}

#[derive(Debug, Clone)]
struct Window {
    start: Instant,
    rtt_sum: f64,
    samples: u32,
    back_pressure: bool,
    saturated: bool,
}

impl Window {
    fn new(start: Instant) -> Self {
        Self {
            start,
            rtt_sum: 0.0,
            samples: 0,
            back_pressure: false,
            saturated: false,
        }
    }
}

/// The AIMD state of one destination.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: AdaptiveConcurrencyConfig,
    limit: usize,
    /// EWMA of the window RTTs, seconds.
    mean: Option<f64>,
    /// Exponentially weighted variance of the window RTTs.
    variance: f64,
    window: Window,
}

// === impl Controller ===

impl Controller {
    /// Starts at `initial`, clamped to `[min, max]`.
    pub fn new(cfg: AdaptiveConcurrencyConfig, initial: usize, now: Instant) -> Self {
        Self {
            cfg,
            limit: initial.clamp(cfg.min, cfg.max),
            mean: None,
            variance: 0.0,
            window: Window::new(now),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A request started with `inflight` requests in flight (itself included).
    pub fn started(&mut self, inflight: usize) {
        if inflight >= self.limit {
            self.window.saturated = true;
        }
    }

    /// An attempt ended after `rtt`; returns the (possibly new) limit.
    pub fn record(&mut self, now: Instant, rtt: Duration, feedback: Feedback) -> usize {
        match feedback {
            Feedback::Healthy => {
                self.window.rtt_sum += rtt.as_secs_f64();
                self.window.samples += 1;
            }
            Feedback::BackPressure => self.window.back_pressure = true,
            Feedback::Neutral => {}
        }
        let length = self
            .mean
            .map_or(rtt, Duration::from_secs_f64)
            .max(MIN_WINDOW);
        if now.saturating_duration_since(self.window.start) >= length {
            self.end_window();
            self.window = Window::new(now);
        }
        self.limit
    }

    fn decrease(&mut self) {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )] // limits are at most 1024
        let lower = (self.limit as f64 * self.cfg.decrease_ratio).floor() as usize;
        self.limit = lower.max(self.cfg.min);
    }

    fn end_window(&mut self) {
        let w = &self.window;
        if w.back_pressure {
            self.decrease();
            return;
        }
        if w.samples == 0 {
            return;
        }
        let current = w.rtt_sum / f64::from(w.samples);
        let saturated = w.saturated;
        let Some(mean) = self.mean else {
            self.mean = Some(current);
            if saturated {
                self.limit = (self.limit + 1).min(self.cfg.max);
            }
            return;
        };
        let allowed =
            (self.cfg.rtt_deviation_scale * self.variance.sqrt()).max(mean * MIN_RTT_RISE);
        if current > mean + allowed {
            self.decrease();
        } else if saturated {
            self.limit = (self.limit + 1).min(self.cfg.max);
        }
        let a = self.cfg.ewma_alpha;
        let d = current - mean;
        self.mean = Some(mean + a * d);
        self.variance = (1.0 - a) * (self.variance + a * d * d);
    }
}

/// Counts requests in flight against a limit that is fixed or follows a
/// [`Controller`].
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<LimiterState>,
    changed: Notify,
}

#[derive(Debug)]
struct LimiterState {
    limit: usize,
    inflight: usize,
    controller: Option<Controller>,
}

/// One slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().inflight -= 1;
        self.limiter.changed.notify_waiters();
    }
}

// === impl Limiter ===

impl Limiter {
    /// A fixed limit (at least 1).
    pub fn fixed(limit: usize) -> Self {
        Self::with(limit.max(1), None)
    }

    /// An adaptive limit starting at `initial`.
    pub fn adaptive(cfg: AdaptiveConcurrencyConfig, initial: usize) -> Self {
        let c = Controller::new(cfg, initial, Instant::now());
        Self::with(c.limit(), Some(c))
    }

    fn with(limit: usize, controller: Option<Controller>) -> Self {
        Self {
            state: Mutex::new(LimiterState {
                limit,
                inflight: 0,
                controller,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a release in between wakes us.
            changed.as_mut().enable();
            {
                let mut s = self.lock();
                if s.inflight < s.limit {
                    s.inflight += 1;
                    return Permit {
                        limiter: Arc::clone(self),
                    };
                }
            }
            changed.await;
        }
    }

    /// A request is about to be sent on a held permit: tells the
    /// controller whether the limit is fully used.
    pub fn started(&self) {
        let mut s = self.lock();
        let inflight = s.inflight;
        if let Some(c) = &mut s.controller {
            c.started(inflight);
        }
    }

    /// An attempt ended; adapts the limit when adaptive.
    pub fn record(&self, rtt: Duration, feedback: Feedback) {
        let raised = {
            let mut s = self.lock();
            let Some(c) = &mut s.controller else {
                return;
            };
            let limit = c.record(Instant::now(), rtt, feedback);
            let raised = limit > s.limit;
            s.limit = limit;
            raised
        };
        if raised {
            self.changed.notify_waiters();
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Permits held now.
    pub fn inflight(&self) -> usize {
        self.lock().inflight
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exporters::Reason;

    fn cfg(min: usize, max: usize, ratio: f64) -> AdaptiveConcurrencyConfig {
        AdaptiveConcurrencyConfig {
            enabled: true,
            min,
            max,
            decrease_ratio: ratio,
            ..AdaptiveConcurrencyConfig::default()
        }
    }

    const RTT: Duration = Duration::from_millis(100);

    /// Runs `windows` windows of RTT `rtt`: a saturating start, then one
    /// sample at the window's end. Returns the limit after each window.
    fn run(
        c: &mut Controller,
        now: &mut Instant,
        windows: usize,
        rtt: Duration,
        fb: Feedback,
    ) -> Vec<usize> {
        (0..windows)
            .map(|_| {
                c.started(c.limit());
                // Past any window length these RTTs make.
                *now += 2 * rtt.max(RTT);
                c.record(*now, rtt, fb)
            })
            .collect()
    }

    #[test]
    fn a_healthy_saturated_backend_gets_one_more_per_window_up_to_the_ceiling() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(1, 5, 0.9), 1, now);
        assert_eq!(
            run(&mut c, &mut now, 6, RTT, Feedback::Healthy),
            vec![2, 3, 4, 5, 5, 5]
        );
    }

    #[test]
    fn an_unused_limit_does_not_grow() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(1, 10, 0.9), 4, now);
        for _ in 0..5 {
            c.started(1);
            now += RTT;
            assert_eq!(c.record(now, RTT, Feedback::Healthy), 4);
        }
    }

    #[test]
    fn back_pressure_multiplies_by_the_ratio_down_to_the_floor() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(2, 64, 0.5), 40, now);
        assert_eq!(
            run(&mut c, &mut now, 6, RTT, Feedback::BackPressure),
            vec![20, 10, 5, 2, 2, 2]
        );
        let mut c = Controller::new(cfg(1, 64, 0.9), 10, now);
        assert_eq!(
            run(&mut c, &mut now, 3, RTT, Feedback::BackPressure),
            vec![9, 8, 7]
        );
    }

    #[test]
    fn neutral_outcomes_change_nothing() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(1, 64, 0.5), 8, now);
        assert_eq!(
            run(&mut c, &mut now, 4, RTT, Feedback::Neutral),
            vec![8, 8, 8, 8]
        );
    }

    #[test]
    fn a_rising_rtt_decreases_and_a_steady_one_does_not() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(1, 64, 0.5), 10, now);
        // Baseline, with some jitter below the rise threshold.
        for rtt in [100, 104, 97, 102, 99] {
            c.started(c.limit());
            now += 2 * RTT;
            c.record(now, Duration::from_millis(rtt), Feedback::Healthy);
        }
        assert_eq!(c.limit(), 15);
        // Twice the baseline: the backend queues our requests.
        c.started(c.limit());
        now += 2 * RTT;
        assert_eq!(
            c.record(now, Duration::from_millis(200), Feedback::Healthy),
            7
        );
    }

    #[test]
    fn samples_within_one_window_are_judged_together() {
        let mut now = Instant::now();
        let mut c = Controller::new(cfg(1, 64, 0.5), 4, now);
        c.started(4);
        for _ in 0..9 {
            now += Duration::from_millis(10);
            assert_eq!(c.record(now, RTT, Feedback::Healthy), 4);
        }
        now += Duration::from_millis(10);
        assert_eq!(c.record(now, RTT, Feedback::Healthy), 5);
    }

    #[test]
    fn the_initial_limit_is_clamped() {
        let now = Instant::now();
        assert_eq!(Controller::new(cfg(2, 8, 0.9), 1, now).limit(), 2);
        assert_eq!(Controller::new(cfg(2, 8, 0.9), 100, now).limit(), 8);
    }

    #[test]
    fn outcomes_are_classified() {
        let retry = |reason| Outcome::Retryable {
            after: None,
            reason,
            detail: String::new(),
        };
        assert_eq!(
            feedback(&Outcome::Accepted {
                rejected: 0,
                message: String::new()
            }),
            Feedback::Healthy
        );
        for r in [
            Reason::of_http(429),
            Reason::of_http(503),
            Reason::Grpc(tonic::Code::Unavailable),
            Reason::Timeout,
            Reason::Connect,
        ] {
            assert_eq!(feedback(&retry(r)), Feedback::BackPressure, "{r}");
        }
        assert_eq!(feedback(&retry(Reason::Auth)), Feedback::Neutral);
        assert_eq!(feedback(&retry(Reason::Tls)), Feedback::Neutral);
        let permanent = Outcome::Permanent {
            reason: Reason::of_http(401),
            detail: String::new(),
        };
        assert_eq!(feedback(&permanent), Feedback::Neutral);
    }

    #[tokio::test]
    async fn the_limiter_admits_up_to_the_limit_and_wakes_on_release() {
        let l = Arc::new(Limiter::fixed(2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.inflight(), 2);
        let l2 = Arc::clone(&l);
        let third = tokio::spawn(async move { l2.acquire().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the third waits");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((l.inflight(), l.limit()), (2, 2));
    }

    #[tokio::test]
    async fn an_adaptive_limiter_follows_its_controller() {
        let l = Arc::new(Limiter::adaptive(cfg(1, 4, 0.5), 2));
        let p = l.acquire().await;
        let _q = l.acquire().await;
        l.started();
        // The first window closes once a sample is older than MIN_WINDOW.
        tokio::time::sleep(MIN_WINDOW * 2).await;
        l.record(Duration::from_millis(1), Feedback::Healthy);
        assert_eq!(l.limit(), 3);
        let _r = tokio::time::timeout(Duration::from_secs(5), l.acquire())
            .await
            .unwrap();
        drop(p);
        tokio::time::sleep(MIN_WINDOW * 2).await;
        l.record(Duration::from_millis(1), Feedback::BackPressure);
        assert_eq!(l.limit(), 1);
        assert_eq!(l.inflight(), 2, "a lower limit takes nothing back");
    }
}

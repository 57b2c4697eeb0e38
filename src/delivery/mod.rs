//! One destination's delivery loop: read the oldest entries from its LMDB
//! queue, batch them, send, retry, and delete only after the backend
//! accepted (or the failure is permanent).
//!
//! A batch concatenates the entries `first..=last` of the queue, each one
//! client request's share. When a backend refuses a batch of several
//! entries as permanent for something in its *content* (HTTP 400, 413,
//! gRPC `INVALID_ARGUMENT`, ...: [`Reason::about_content`]), one entry may
//! be to blame, so the batch is bisected: each half is sent on its own, a
//! refused half split again, down to single entries. Only entries refused
//! on their own are dropped (`reason="permanent"`); the others are
//! delivered. The bisection is bounded: after [`BISECT_MAX_SPLITS`] splits
//! or [`BISECT_MAX_TIME`], the parts still pending are sent as they are,
//! once, and a refused one is dropped as `bisect_gave_up`.
//!
//! Invariants:
//! - an entry is deleted only after the backend accepted a request holding
//!   it, or refused as permanent a request holding it alone (or a request
//!   the bisection no longer splits, or refused for a reason that is not
//!   about its content, like 401), or after `max_elapsed` of retrying (all
//!   drops counted);
//! - the read cursor only moves forward within one run of the loop; a new
//!   run (restart, process start) begins at the oldest entry still on disk,
//!   so whatever was in flight is sent again: at-least-once;
//! - one destination's loop never waits on another's: each has its own task
//!   and queue, so a slow or dead backend slows nobody else;
//! - at most the [`Limiter`]'s limit of batches hold a slot at once (fixed
//!   `batch.concurrency`, or adaptive: see [`arc`]), and
//!   every attempt first waits for the output's `rate_limit`, if any.

pub mod arc;
pub mod backoff;
pub mod factory;
mod linger;
pub mod plan;
pub mod rate_limit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use self::arc::Limiter;
use self::backoff::RetryPolicy;
use self::rate_limit::RateLimiter;
use crate::config::{BatchConfig, RateLimitConfig};
use crate::exporters::{Exporter, Outcome, Reason};
use crate::metrics::{Dest, DestReason, Metrics};
use crate::routing::Destination;
use crate::store::{Entry, Store, WriteOp};

/// Longest delay honoured from a backend's `Retry-After` / `RetryInfo`.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);
/// How long a loop waits before reading its queue again after a failed
/// read.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a loop with an empty queue waits for a wake-up before looking
/// again anyway (belt and braces: every commit that appends wakes the
/// queue's consumer and leaves it a permit, so none is missed). Long,
/// because a seed has thousands of mostly idle shoot clients: at 1 s,
/// 5,000 of them cost 5,000 wake-ups and LMDB reads a second.
const IDLE_WAIT: Duration = Duration::from_secs(10);
/// Most splits of one refused batch. Finding `k` refused entries among `n`
/// takes at most `k · ⌈log2 n⌉` splits (two sends each): 64 finds 4 among
/// the 8192 entries of the largest batch.
pub const BISECT_MAX_SPLITS: u32 = 64;
/// Longest a bisection goes on splitting (retries of its sends included).
pub const BISECT_MAX_TIME: Duration = Duration::from_secs(600);

/// What became of one request body after retrying per the retry policy.
enum Verdict {
    /// The backend took it (counted as sent).
    Accepted,
    /// Refused as permanent.
    Refused { reason: Reason, detail: String },
    /// Still failing after `retry.max_elapsed`.
    OutOfTime { reason: Reason, detail: String },
}

/// Liveness of one delivery loop, read by health.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Unix millis when the oldest attempt still running started; 0 if none.
    attempt_started_ms: AtomicU64,
    /// Unix millis of the last loop iteration.
    last_loop_ms: AtomicU64,
    /// Unix millis of the first failed attempt since the last success; 0
    /// while the destination is healthy.
    failing_since_ms: AtomicU64,
    /// Records in batches handed to a send and not yet finished with.
    inflight_records: AtomicU64,
}

impl Heartbeat {
    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Marks a loop iteration of a task that watches over delivery loops
    /// (the balancer) rather than being one.
    pub fn beat(&self) {
        self.last_loop_ms.store(Self::now_ms(), Ordering::Relaxed);
    }

    /// How long sends have failed without a success in between, if they do.
    pub fn failing_for(&self) -> Option<Duration> {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(Self::now_ms().saturating_sub(t))),
        }
    }

    /// Records in batches being sent (or retried) now.
    pub fn inflight_records(&self) -> u64 {
        self.inflight_records.load(Ordering::Relaxed)
    }

    /// Records the outcome of an attempt for [`Heartbeat::failing_for`]
    /// (the balancer records its backends' verdict as a whole).
    pub fn record(&self, failing: bool) {
        if !failing {
            self.failing_since_ms.store(0, Ordering::Relaxed);
        } else if self.failing_since_ms.load(Ordering::Relaxed) == 0 {
            self.failing_since_ms
                .store(Self::now_ms().max(1), Ordering::Relaxed);
        }
    }

    /// How long the current attempt has been running, if one is.
    pub fn attempt_age(&self) -> Option<Duration> {
        match self.attempt_started_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(Self::now_ms().saturating_sub(t))),
        }
    }
}

/// A destination's flow control, shared by every run of its loop: the
/// concurrency limiter and the rate limit.
#[derive(Debug)]
pub struct FlowControl {
    limiter: Arc<Limiter>,
    rate: Option<RateLimiter>,
    throttled: AtomicBool,
}

impl FlowControl {
    /// Fixed or adaptive concurrency per `batch`, and the output's rate limit.
    pub fn new(batch: &BatchConfig, rate_limit: Option<&RateLimitConfig>) -> Self {
        let limiter = if batch.adaptive_concurrency.enabled {
            Limiter::adaptive(batch.adaptive_concurrency, batch.concurrency)
        } else {
            Limiter::fixed(batch.concurrency)
        };
        Self {
            limiter: Arc::new(limiter),
            rate: rate_limit.map(|r| RateLimiter::new(r, Instant::now())),
            throttled: AtomicBool::new(false),
        }
    }

    /// Whether the last send waited for the rate limit (the operator's
    /// GatewayThrottling condition).
    pub fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Relaxed)
    }

    /// The concurrency limit now.
    pub fn concurrency_limit(&self) -> usize {
        self.limiter.limit()
    }
}

/// Everything one delivery loop needs.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where it reads.
    pub destination: Arc<Destination>,
    /// How it sends.
    pub exporter: Arc<Exporter>,
    /// Batch limits.
    pub batch: BatchConfig,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The store it reads from.
    pub store: Arc<Store>,
    /// Where deletes go.
    pub writer: crossbeam_channel::Sender<WriteOp>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Liveness.
    pub heartbeat: Arc<Heartbeat>,
    /// Concurrency and rate limits.
    pub flow: Arc<FlowControl>,
}

impl Delivery {
    fn labels(&self) -> Dest {
        Dest {
            destination: self.destination.metrics_label().to_owned(),
            signal: self.destination.signal.as_str(),
        }
    }

    fn reason(&self, reason: &'static str) -> DestReason {
        DestReason {
            destination: self.destination.metrics_label().to_owned(),
            signal: self.destination.signal.as_str(),
            reason,
        }
    }

    /// The failing gauge: per pipeline destination, or per shoot client
    /// (all shoot clients share one `destination` label, so one shared
    /// gauge would flip between them).
    fn set_failing(&self, failing: bool) {
        self.heartbeat.record(failing);
        let d = &self.destination;
        let value = i64::from(failing);
        match d.kind {
            // The balancer owns the per-backend health series.
            crate::routing::DestinationKind::Backend => {}
            crate::routing::DestinationKind::Pipeline => {
                self.metrics
                    .exporter
                    .failing
                    .get_or_create(&self.labels())
                    .set(value);
            }
            crate::routing::DestinationKind::Shoot => {
                // Only the series the manager made with the client: a send
                // still finishing after its client was removed must not
                // bring it back. The family's read lock, held while
                // setting, orders this against the removal.
                let labels = crate::metrics::shoot::ShootSignal {
                    shoot: d.name.clone(),
                    signal: d.signal.as_str(),
                };
                if let Some(gauge) = self.metrics.shoot.failing.get(&labels) {
                    gauge.set(value);
                }
            }
        }
    }

    /// Whether the last send waited for the rate limit.
    pub fn throttled(&self) -> bool {
        self.flow.throttled()
    }

    /// Copies the limiter's state into the per-pipeline gauges (shoot
    /// clients share one label, so they have none).
    fn flow_gauges(&self) {
        if self.destination.kind != crate::routing::DestinationKind::Pipeline {
            return;
        }
        let labels = self.labels();
        let m = &self.metrics.flow;
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        m.concurrency_limit
            .get_or_create(&labels)
            .set(as_i64(self.flow.limiter.limit()));
        m.inflight
            .get_or_create(&labels)
            .set(as_i64(self.flow.limiter.inflight()));
        m.throttled
            .get_or_create(&labels)
            .set(i64::from(self.flow.throttled()));
    }

    /// Waits for the rate limit, if any, and records how long.
    async fn throttle(&self, records: u64, bytes: u64) {
        let Some(rate) = &self.flow.rate else {
            return;
        };
        let wait = rate.reserve(Instant::now(), records, bytes);
        self.flow
            .throttled
            .store(!wait.is_zero(), Ordering::Relaxed);
        self.flow_gauges();
        if !wait.is_zero() {
            self.metrics
                .flow
                .throttled_seconds
                .get_or_create(&self.labels())
                .inc_by(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs until aborted.
    pub async fn run(self) {
        // A run starts at the oldest entry on disk: nothing an earlier run
        // had in flight (aborted with it) is in flight any more.
        self.heartbeat.inflight_records.store(0, Ordering::Relaxed);
        let limiter = Arc::clone(&self.flow.limiter);
        self.metrics
            .flow
            .throttled_seconds
            .get_or_create(&self.labels())
            .inc_by(0.0);
        self.flow_gauges();
        let mut cursor = 0u64;
        let mut linger_since: Option<Instant> = None;
        let queue = Arc::clone(&self.destination.queue);
        let linger = linger::Linger::new(&queue.name, self.batch.timeout);
        // Owning the in-flight sends here means aborting this loop aborts
        // them too (a restart leaves no orphan sender behind).
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            while let Some(done) = inflight.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(destination = %self.destination.name, "A send panicked; restarting this destination's loop");
                    return;
                }
            }
            self.heartbeat
                .last_loop_ms
                .store(Heartbeat::now_ms(), Ordering::Relaxed);
            let permit = limiter.acquire().await;
            let batch = match self.store.read_batch(
                &queue,
                cursor,
                self.batch.max_bytes.0,
                self.batch.max_records,
            ) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(destination = %self.destination.name, error = %e, "Cannot read the queue; retrying");
                    drop(permit);
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            let Some(batch) = batch else {
                drop(permit);
                linger_since = None;
                // Woken or timed out: either way, look again.
                tokio::time::timeout(IDLE_WAIT, queue.appended()).await.ok();
                continue;
            };
            // The read stops at the batch limits, so entries left behind
            // the last one mean the batch is as full as it gets; only when
            // it took everything is it worth waiting for more.
            let full = batch.body.len() as u64 >= self.batch.max_bytes.0
                || batch.records >= self.batch.max_records
                || batch.last + 1 < queue.next_seq();
            if !full {
                // Wait for the batch to fill, at most `batch.timeout` since
                // the first time we saw it partial (to the destination's
                // own grid: see [`linger`]). Appends in between are judged
                // by the queue's counters, not by reading it again.
                let since = *linger_since.get_or_insert_with(Instant::now);
                let deadline = linger.deadline(since);
                if Instant::now() < deadline {
                    drop(permit);
                    loop {
                        let left = deadline.saturating_duration_since(Instant::now());
                        // Woken (the batch could be full) or timed out:
                        // either way, look at the counters.
                        let fill = queue.filled_to(self.batch.max_records, self.batch.max_bytes.0);
                        tokio::time::timeout(left, fill).await.ok();
                        let filled = queue.holds(self.batch.max_records, self.batch.max_bytes.0);
                        if filled || Instant::now() >= deadline {
                            break;
                        }
                    }
                    continue;
                }
            }
            linger_since = None;
            cursor = batch.last + 1;
            self.flow.limiter.started();
            self.flow_gauges();
            let this = self.clone();
            self.heartbeat
                .inflight_records
                .fetch_add(batch.records, Ordering::Relaxed);
            inflight.spawn(async move {
                this.deliver(
                    batch.first,
                    batch.last,
                    batch.entries,
                    batch.body,
                    batch.records,
                )
                .await;
                this.heartbeat
                    .inflight_records
                    .fetch_sub(batch.records, Ordering::Relaxed);
                drop(permit);
                this.flow_gauges();
            });
        }
    }

    /// Sends one batch until it is accepted, permanently refused, or out of
    /// time, then deletes it; a batch of several entries refused for its
    /// content is bisected instead (see the module doc).
    async fn deliver(&self, first: u64, last: u64, entries: usize, body: Bytes, records: u64) {
        match self.attempt(&body, records).await {
            Verdict::Refused { reason, detail } if entries > 1 && reason.about_content() => {
                tracing::warn!(destination = %self.destination.name, reason = reason.as_str(), %detail, entries, records, "Batch refused as permanent; sending its entries apart to find the refused ones");
                self.bisect(first, last, records).await;
            }
            verdict => {
                self.settle(verdict, records, "permanent", first);
                self.delete(first, last);
            }
        }
    }

    /// Sends the entries `first..=last` in ever smaller parts until each is
    /// accepted or refused on its own, deleting each part once settled.
    async fn bisect(&self, first: u64, last: u64, records: u64) {
        let entries: Vec<Entry> = match self.store.read(
            &self.destination.queue,
            first,
            self.batch.max_bytes.0,
            self.batch.max_records,
        ) {
            Ok(entries) => entries.into_iter().filter(|e| e.seq <= last).collect(),
            Err(e) => {
                tracing::error!(destination = %self.destination.name, error = %e, "Cannot read the refused batch's entries again; dropping it");
                self.drop_records("bisect_gave_up", records);
                self.delete(first, last);
                return;
            }
        };
        let started = Instant::now();
        let mut splits = 0u32;
        let mut pending: Vec<std::ops::Range<usize>> = halves(0..entries.len()).into();
        while let Some(part) = pending.pop() {
            let Some(part_entries) = entries.get(part.clone()) else {
                continue;
            };
            let (Some(head), Some(tail)) = (part_entries.first(), part_entries.last()) else {
                continue;
            };
            let (body, records) = join(part_entries);
            let verdict = self.attempt(&body, records).await;
            let label = match &verdict {
                Verdict::Refused { reason, .. } if part.len() > 1 && reason.about_content() => {
                    if splits < BISECT_MAX_SPLITS && started.elapsed() < BISECT_MAX_TIME {
                        splits += 1;
                        pending.extend(halves(part));
                        continue;
                    }
                    "bisect_gave_up"
                }
                _ => "permanent",
            };
            self.settle(verdict, records, label, head.seq);
            self.delete(head.seq, tail.seq);
        }
    }

    /// Counts and logs a drop, if the verdict is one.
    fn settle(&self, verdict: Verdict, records: u64, refused_label: &'static str, seq: u64) {
        match verdict {
            Verdict::Accepted => {}
            Verdict::Refused { reason, detail } => {
                self.drop_records(refused_label, records);
                tracing::error!(destination = %self.destination.name, reason = reason.as_str(), %detail, records, seq, drop_reason = refused_label, "Permanent export error; records dropped");
            }
            Verdict::OutOfTime { reason, detail } => {
                self.drop_records("max_elapsed", records);
                tracing::error!(destination = %self.destination.name, reason = reason.as_str(), %detail, records, seq, "Retried for longer than max_elapsed; records dropped");
            }
        }
    }

    fn drop_records(&self, reason: &'static str, records: u64) {
        self.metrics
            .exporter
            .dropped_records
            .get_or_create(&self.reason(reason))
            .inc_by(records);
    }

    /// Deletes entries `first..=last` (settled: accepted or dropped).
    fn delete(&self, first: u64, last: u64) {
        let queue = Arc::clone(&self.destination.queue);
        if self
            .writer
            .send(WriteOp::Delete { queue, first, last })
            .is_err()
        {
            // The writer is gone (shutdown): the entries stay on disk and
            // are sent again after restart.
            tracing::debug!(destination = %self.destination.name, "Writer gone; delete skipped");
        }
    }

    /// Sends `body` until it is accepted, permanently refused, or retried
    /// for longer than `retry.max_elapsed`.
    async fn attempt(&self, body: &Bytes, records: u64) -> Verdict {
        let started = Instant::now();
        let labels = self.labels();
        let m = &self.metrics.exporter;
        let mut attempt = 0u32;
        loop {
            self.throttle(records, body.len() as u64).await;
            self.heartbeat
                .attempt_started_ms
                .store(Heartbeat::now_ms(), Ordering::Relaxed);
            let t0 = Instant::now();
            let outcome = self.exporter.send(body.clone(), records).await;
            self.heartbeat
                .attempt_started_ms
                .store(0, Ordering::Relaxed);
            let rtt = t0.elapsed();
            m.request_duration
                .get_or_create(&labels)
                .observe(rtt.as_secs_f64());
            self.flow.limiter.record(rtt, arc::feedback(&outcome));
            self.flow_gauges();
            match outcome {
                Outcome::Accepted { rejected, message } => {
                    self.set_failing(false);
                    m.sent_requests.get_or_create(&labels).inc();
                    m.sent_bytes
                        .get_or_create(&labels)
                        .inc_by(body.len() as u64);
                    m.sent_records
                        .get_or_create(&labels)
                        .inc_by(records.saturating_sub(rejected));
                    if rejected > 0 {
                        // The backend stored the rest: sending any of it
                        // again (to find the rejected ones) would duplicate
                        // it, and the OTLP spec says not to retry these.
                        self.drop_records("rejected", rejected);
                        tracing::warn!(destination = %self.destination.name, rejected, %message, "Backend rejected part of a batch");
                    }
                    return Verdict::Accepted;
                }
                Outcome::Permanent { reason, detail } => {
                    self.set_failing(true);
                    m.failed_requests
                        .get_or_create(&self.reason(reason.as_str()))
                        .inc();
                    return Verdict::Refused { reason, detail };
                }
                Outcome::Retryable {
                    after,
                    reason,
                    detail,
                } => {
                    self.set_failing(true);
                    m.failed_requests
                        .get_or_create(&self.reason(reason.as_str()))
                        .inc();
                    let max_elapsed = self.retry.max_elapsed;
                    if !max_elapsed.is_zero() && started.elapsed() >= max_elapsed {
                        return Verdict::OutOfTime { reason, detail };
                    }
                    m.retries.get_or_create(&self.reason(reason.as_str())).inc();
                    let delay = match after {
                        Some(d) => d.min(MAX_SERVER_DELAY),
                        None => self.retry.backoff.delay(attempt, &mut rand::rng()),
                    };
                    if attempt == 0 || attempt.is_power_of_two() {
                        tracing::warn!(destination = %self.destination.name, reason = reason.as_str(), %detail, attempt, delay_ms = delay.as_millis() as u64, "Export failed; retrying");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The two halves of `r`, the later one first: popped from a stack, the
/// older entries go first.
fn halves(r: std::ops::Range<usize>) -> [std::ops::Range<usize>; 2] {
    let mid = r.start + r.len() / 2;
    [mid..r.end, r.start..mid]
}

/// The entries as one request body, and their records.
fn join(entries: &[Entry]) -> (Bytes, u64) {
    let mut body = bytes::BytesMut::with_capacity(entries.iter().map(|e| e.payload.len()).sum());
    let mut records = 0u64;
    for e in entries {
        body.extend_from_slice(&e.payload);
        records += u64::from(e.records);
    }
    (body.freeze(), records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_pop_oldest_first_and_cover_the_range() {
        let mut stack: Vec<std::ops::Range<usize>> = halves(0..5).into();
        assert_eq!(stack.pop(), Some(0..2));
        assert_eq!(stack.pop(), Some(2..5));
        // A single entry splits into itself and nothing.
        assert_eq!(halves(3..4), [3..4, 3..3]);
    }

    #[test]
    fn join_concatenates_payloads_and_adds_records() {
        let entry = |seq, records, payload: &'static [u8]| Entry {
            seq,
            records,
            payload: Bytes::from_static(payload),
            appended_at_ms: 0,
        };
        let (body, records) = join(&[entry(1, 2, b"ab"), entry(2, 3, b"cd")]);
        assert_eq!((&body[..], records), (&b"abcd"[..], 5));
    }

    /// A send that finishes after its shoot client was removed (an abort
    /// takes effect at the send's next yield) must not bring the client's
    /// failing series back: CI once saw `seedgate_shoot_failing` of an
    /// expired client in `/metrics`.
    #[tokio::test]
    async fn a_removed_shoot_clients_failing_series_stays_gone() {
        use crate::config::{Durability, OutputConfig, OutputType};
        use crate::metrics::shoot::ShootSignal;
        use crate::routing::DestinationKind;
        use crate::signal::Signal;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(crate::store::StoreOptions {
            dir: dir.path().to_path_buf(),
            map_size: 16 << 20,
            durability: Durability::None,
            max_ops_per_commit: 16,
        })
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        let factory = factory::Factory {
            store,
            writer: crossbeam_channel::bounded(1).0,
            metrics: Arc::clone(&metrics),
            rt: tokio::runtime::Handle::current(),
            lb_faults: None,
            shoot_http: Arc::default(),
            lb_routers: Arc::default(),
        };
        let shoot = "shoot--p--a";
        let plan = factory
            .build(factory::Spec {
                name: shoot,
                kind: DestinationKind::Shoot,
                signal: Signal::Logs,
                output: &OutputConfig::of_kind(OutputType::Noop),
                queue: crate::config::QueueConfig::default(),
                batch: BatchConfig::default(),
                retry: crate::config::RetryConfig::default(),
                loadbalancing: None,
                processors: &[],
            })
            .unwrap();
        let failing = || {
            let labels = ShootSignal {
                shoot: shoot.to_owned(),
                signal: Signal::Logs.as_str(),
            };
            metrics.shoot.failing.get(&labels).map(|g| g.get())
        };
        metrics.shoot.init_client(shoot, [Signal::Logs]);
        assert_eq!(failing(), Some(0));
        plan.delivery.set_failing(true);
        assert_eq!(failing(), Some(1));
        metrics.shoot.forget(shoot);
        plan.delivery.set_failing(true);
        assert_eq!(failing(), None, "the removed client's series came back");
        // Its liveness is still recorded for the health actor.
        assert!(plan.delivery.heartbeat.failing_for().is_some());
    }
}

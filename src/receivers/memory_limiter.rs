//! A process-wide soft memory limit (`receivers.memory_limiter`), like the
//! OpenTelemetry Collector's `memory_limiter` processor.
//!
//! `max_inflight_bytes` bounds what the receivers themselves hold; this
//! bounds everything else that grows with load (batches being sent, shoot
//! clients, allocator slack): every `check_interval` the process's resident
//! memory is read, and while it is above the soft limit (`limit -
//! spike_limit`) new requests are refused before their body is read, with a
//! retry delay (429 + `Retry-After`, `RESOURCE_EXHAUSTED` + `RetryInfo`).
//! Requests already admitted finish.
//!
//! What is measured is *anonymous* resident memory (`RssAnon` in
//! `/proc/self/status`), not all of `VmRSS`: LMDB maps the store file, and
//! the pages of it that delivery reads count as resident file pages. Those
//! are page cache the kernel drops under pressure; counting them would make
//! seedgate refuse data because it read its own queue.
//!
//! The limits come from the config in MiB, or as percentages of the
//! container's cgroup memory limit (v2 `memory.max`, v1
//! `memory.limit_in_bytes`), or of the host's memory when there is no cgroup
//! limit, as the Collector does ([`Limits::resolve`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::MemoryLimiterConfig;
use crate::config::memory::DEFAULT_SPIKE_SHARE_OF_LIMIT;
use crate::metrics::memory::MemoryMetrics;

const MIB: u64 = 1024 * 1024;
/// cgroup v1 writes a number near `i64::MAX` (rounded to pages) for "no
/// limit"; anything this large is no limit.
const CGROUP_V1_UNLIMITED: u64 = 1 << 60;

/// The limits in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The hard limit.
    pub limit: u64,
    /// Headroom below it: requests are refused above `limit - spike`.
    pub spike: u64,
}

impl Limits {
    /// The limits `config` asks for, given the memory the process may use
    /// (`total`: the cgroup limit, else the host's memory). `None` when the
    /// limiter is off (`limit_mib: 0, limit_percentage: 0`) or a percentage
    /// has no total to refer to.
    pub fn resolve(config: &MemoryLimiterConfig, total: Option<u64>) -> Option<Limits> {
        if config.limit_mib > 0 {
            let limit = config.limit_mib.saturating_mul(MIB);
            let spike = match config.spike_limit_mib {
                0 => limit / 100 * DEFAULT_SPIKE_SHARE_OF_LIMIT,
                s => s.saturating_mul(MIB),
            };
            return Some(Limits { limit, spike });
        }
        if config.limit_percentage == 0 {
            return None;
        }
        let total = total?;
        Some(Limits {
            limit: total / 100 * config.limit_percentage,
            spike: total / 100 * config.spike_limit_percentage,
        })
    }

    /// Where refusing starts.
    pub fn soft(&self) -> u64 {
        self.limit.saturating_sub(self.spike)
    }
}

/// The memory limit of the cgroup whose files are under `root` (normally
/// `/sys/fs/cgroup`, which in a container is the container's own cgroup):
/// v2 `memory.max`, else v1 `memory/memory.limit_in_bytes`. `None` when
/// neither exists or the limit is "max" / unlimited.
pub fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).ok();
    if let Some(v2) = read("memory.max") {
        return v2.trim().parse().ok();
    }
    let v1: u64 = read("memory/memory.limit_in_bytes")?.trim().parse().ok()?;
    (v1 < CGROUP_V1_UNLIMITED).then_some(v1)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn meminfo_total(meminfo: &str) -> Option<u64> {
    status_kib(meminfo, "MemTotal:")
}

/// A `Key:   1234 kB` line of a `/proc` status file, in bytes.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The process's anonymous resident memory (`RssAnon`), in bytes.
///
/// # Errors
/// When `/proc/self/status` cannot be read or has no `RssAnon` line.
pub fn rss_anon() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status_kib(&status, "RssAnon:").ok_or_else(|| std::io::Error::other("no RssAnon line"))
}

/// The host's memory (`/proc/meminfo`).
fn available_total() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(meminfo_total)
}

/// A change of the refusing state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Memory went above the soft limit: new requests are refused.
    Started,
    /// Memory went back below it: requests are taken again.
    Stopped,
}

/// The shared refusing flag, updated by [`MemoryLimiter::run`].
#[derive(Debug)]
pub struct MemoryLimiter {
    limits: Limits,
    check_interval: Duration,
    refusing: AtomicBool,
    last_rss: AtomicU64,
    metrics: Arc<MemoryMetrics>,
}

impl MemoryLimiter {
    /// A limiter with `limits`, not refusing until the first reading.
    pub fn new(limits: Limits, check_interval: Duration, metrics: Arc<MemoryMetrics>) -> Self {
        metrics
            .limit_bytes
            .set(i64::try_from(limits.limit).unwrap_or(i64::MAX));
        metrics
            .soft_limit_bytes
            .set(i64::try_from(limits.soft()).unwrap_or(i64::MAX));
        Self {
            limits,
            check_interval,
            refusing: AtomicBool::new(false),
            last_rss: AtomicU64::new(0),
            metrics,
        }
    }

    /// Whether new requests are refused now.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// The delay suggested to a refused client: the next check, at least 1s.
    pub fn retry_after(&self) -> Duration {
        self.check_interval.max(Duration::from_secs(1))
    }

    /// Takes one reading; returns the change of state, if any.
    pub fn observe(&self, rss: u64) -> Option<Transition> {
        self.last_rss.store(rss, Ordering::Relaxed);
        self.metrics
            .rss_bytes
            .set(i64::try_from(rss).unwrap_or(i64::MAX));
        let over = rss > self.limits.soft();
        self.metrics.refusing.set(i64::from(over));
        match (self.refusing.swap(over, Ordering::Relaxed), over) {
            (false, true) => Some(Transition::Started),
            (true, false) => Some(Transition::Stopped),
            _ => None,
        }
    }

    /// Reads memory with `read` every `check_interval`, forever (the task is
    /// dropped with the runtime), logging each change of state.
    pub async fn run(self: Arc<Self>, read: impl Fn() -> std::io::Result<u64> + Send) {
        let mut tick = tokio::time::interval(self.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tick.tick().await;
            let rss = match read() {
                Ok(rss) => rss,
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "Cannot read the process's memory use; the memory limiter does nothing");
                        warned = true;
                    }
                    continue;
                }
            };
            let mib = rss / MIB;
            let soft_mib = self.limits.soft() / MIB;
            match self.observe(rss) {
                Some(Transition::Started) => tracing::warn!(
                    rss_mib = mib,
                    soft_limit_mib = soft_mib,
                    "Memory above the soft limit: refusing new requests"
                ),
                Some(Transition::Stopped) => tracing::info!(
                    rss_mib = mib,
                    soft_limit_mib = soft_mib,
                    "Memory below the soft limit again: taking requests"
                ),
                None => {}
            }
        }
    }
}

/// Starts the limiter `config` asks for on the current tokio runtime, reading
/// [`rss_anon`]; `None` (and a log line saying so) when it is off.
pub fn start(
    config: &MemoryLimiterConfig,
    metrics: Arc<MemoryMetrics>,
) -> Option<Arc<MemoryLimiter>> {
    let cgroup = cgroup_memory_limit(Path::new("/sys/fs/cgroup"));
    let total = cgroup.or_else(available_total);
    let Some(limits) = Limits::resolve(config, total) else {
        tracing::info!("Memory limiter off (receivers.memory_limiter)");
        return None;
    };
    let of = if config.limit_mib > 0 {
        "limit_mib"
    } else if cgroup.is_some() {
        "cgroup memory limit"
    } else {
        "host memory"
    };
    tracing::info!(
        limit_mib = limits.limit / MIB,
        soft_limit_mib = limits.soft() / MIB,
        from = of,
        "Memory limiter on: new requests are refused while resident memory is above the soft limit"
    );
    let limiter = Arc::new(MemoryLimiter::new(limits, config.check_interval, metrics));
    tokio::spawn(Arc::clone(&limiter).run(rss_anon));
    Some(limiter)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(limit_mib: u64, spike_limit_mib: u64) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            limit_mib,
            spike_limit_mib,
            ..MemoryLimiterConfig::default()
        }
    }

    #[test]
    fn limits_come_from_mib_or_from_percentages_of_the_total() {
        let gib = 1024 * MIB;
        // The default: 80% / 20% of the cgroup limit, soft limit at 60%.
        let l = Limits::resolve(&MemoryLimiterConfig::default(), Some(gib)).unwrap();
        assert_eq!(l.soft(), gib / 100 * 60);
        // No total to refer to, or the limiter turned off: no limits.
        assert_eq!(Limits::resolve(&MemoryLimiterConfig::default(), None), None);
        let off = MemoryLimiterConfig {
            limit_percentage: 0,
            ..MemoryLimiterConfig::default()
        };
        assert_eq!(Limits::resolve(&off, Some(gib)), None);
        // limit_mib wins; its spike defaults to 20% of it.
        let l = Limits::resolve(&config(500, 0), Some(gib)).unwrap();
        assert_eq!((l.limit, l.spike), (500 * MIB, 500 * MIB / 100 * 20));
        let l = Limits::resolve(&config(500, 100), None).unwrap();
        assert_eq!(l.soft(), 400 * MIB);
    }

    #[test]
    fn the_cgroup_limit_is_read_from_v2_or_v1_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), None);
        // v1, unlimited and limited.
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        let v1 = dir.path().join("memory/memory.limit_in_bytes");
        std::fs::write(&v1, "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), None);
        std::fs::write(&v1, "536870912\n").unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), Some(512 * MIB));
        // v2 wins when present; "max" is no limit.
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), None);
        std::fs::write(dir.path().join("memory.max"), "268435456\n").unwrap();
        assert_eq!(cgroup_memory_limit(dir.path()), Some(256 * MIB));
        // A 512Mi container by default refuses above 60% of it.
        let l = Limits::resolve(
            &MemoryLimiterConfig::default(),
            cgroup_memory_limit(dir.path()),
        )
        .unwrap();
        assert_eq!(
            (l.limit, l.soft()),
            (256 * MIB / 100 * 80, 256 * MIB / 100 * 60)
        );
    }

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            meminfo_total("MemTotal:       24683520 kB\nMemFree: 1 kB\n"),
            Some(24_683_520 * 1024)
        );
        assert_eq!(
            status_kib("VmRSS:\t  100 kB\nRssAnon:\t  64 kB\n", "RssAnon:"),
            Some(65536)
        );
        assert!(rss_anon().unwrap() > 0);
    }

    #[tokio::test]
    async fn it_refuses_above_the_soft_limit_and_takes_requests_again_below_it() {
        let metrics = Arc::new(MemoryMetrics::default());
        let limits = Limits::resolve(&config(100, 20), None).unwrap();
        let limiter = Arc::new(MemoryLimiter::new(
            limits,
            Duration::from_millis(20),
            Arc::clone(&metrics),
        ));
        // An injected reader: what the test stores is what the limiter reads.
        let rss = Arc::new(AtomicU64::new(10 * MIB));
        let reader = {
            let rss = Arc::clone(&rss);
            move || Ok(rss.load(Ordering::Relaxed))
        };
        tokio::spawn(Arc::clone(&limiter).run(reader));
        let settle = || tokio::time::sleep(Duration::from_millis(200));
        settle().await;
        assert!(!limiter.refusing());
        rss.store(81 * MIB, Ordering::Relaxed);
        settle().await;
        assert!(limiter.refusing());
        assert_eq!(metrics.refusing.get(), 1);
        assert_eq!(metrics.rss_bytes.get(), 81 * 1024 * 1024);
        assert_eq!(metrics.soft_limit_bytes.get(), 80 * 1024 * 1024);
        rss.store(79 * MIB, Ordering::Relaxed);
        settle().await;
        assert!(!limiter.refusing());
        assert_eq!(metrics.refusing.get(), 0);
        assert_eq!(limiter.observe(90 * MIB), Some(Transition::Started));
        assert_eq!(limiter.observe(95 * MIB), None);
        assert_eq!(limiter.observe(MIB), Some(Transition::Stopped));
        assert_eq!(limiter.retry_after(), Duration::from_secs(1));
    }
}

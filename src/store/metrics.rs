//! Metrics of the LMDB writer: how often it commits, how long a commit takes,
//! how much one commit carries and why appends were refused.
//!
//! The struct is registered once into the `seedgate_batcher` sub-registry by
//! the caller, so names here are base names: prometheus-client appends the
//! unit and `_total` itself. Every value is recorded once per commit (group),
//! never per record, so the writer's hot loop pays a handful of atomics.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label set of [`StoreMetrics::write_errors`]: the bounded
/// [`super::StoreError::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorKindLabels {
    /// The error class, e.g. `lmdb` or `io`.
    pub kind: &'static str,
}

/// Label set of [`StoreMetrics::storage_full_refusals`]: what was full,
/// [`super::FullReason::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FullLabels {
    /// `map_full` or `disk_full`.
    pub reason: &'static str,
}

/// Metrics of the store's group-commit writer.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Time one group commit takes, from opening the write transaction to
    /// the end of the commit (including the fsync).
    pub commit_duration: Histogram,
    /// Operations (appends, deletes, drops, flushes) in one group commit.
    pub commit_ops: Histogram,
    /// Payload bytes appended by one group commit.
    pub commit_bytes: Histogram,
    /// Group commits that reached the disk.
    pub commits: Counter,
    /// Append requests refused because the LMDB map or the disk was full
    /// (or down to the reserve kept for deletes), by what was full.
    pub storage_full_refusals: Family<FullLabels, Counter>,
    /// 1 while appends are refused as full, 0 once they commit again.
    pub storage_full: Gauge,
    /// Failed commits by error kind; appends refused as full are counted
    /// in `storage_full_refusals` instead.
    pub write_errors: Family<ErrorKindLabels, Counter>,
    /// Payload bytes appended and committed.
    pub appended_bytes: Counter,
    /// Payload bytes deleted (acknowledged by a backend or dropped).
    pub deleted_bytes: Counter,
    /// Log blocks rewritten without their consumed parts, because live
    /// parts (a dead backend's, a backlog's) alone kept them.
    pub blocks_rewritten: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            // 50 µs .. ~1.6 s: a tmpfs commit to a slow network disk fsync.
            commit_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 1 .. 4096 ops, the useful range of max_ops_per_commit.
            commit_ops: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 1 KiB .. 256 MiB.
            commit_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 10)),
            commits: Counter::default(),
            storage_full_refusals: Family::default(),
            storage_full: Gauge::default(),
            write_errors: Family::default(),
            appended_bytes: Counter::default(),
            deleted_bytes: Counter::default(),
            blocks_rewritten: Counter::default(),
        }
    }
}

// === impl StoreMetrics ===

impl StoreMetrics {
    /// Creates the metrics and registers them into `registry` (meant to be
    /// the `seedgate_batcher` sub-registry).
    ///
    /// Rendered names, with that prefix:
    /// `seedgate_batcher_commit_duration_seconds`,
    /// `seedgate_batcher_commit_ops`, `seedgate_batcher_commit_bytes`,
    /// `seedgate_batcher_commits_total`,
    /// `seedgate_batcher_storage_full_refusals_total{reason}`,
    /// `seedgate_batcher_storage_full`,
    /// `seedgate_batcher_write_errors_total{kind}`,
    /// `seedgate_batcher_appended_bytes_total`,
    /// `seedgate_batcher_deleted_bytes_total`,
    /// `seedgate_batcher_blocks_rewritten_total`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self::default();
        registry.register_with_unit(
            "commit_duration",
            "Time one LMDB group commit takes, including the fsync",
            Unit::Seconds,
            metrics.commit_duration.clone(),
        );
        registry.register(
            "commit_ops",
            "Operations carried by one LMDB group commit",
            metrics.commit_ops.clone(),
        );
        registry.register_with_unit(
            "commit",
            "Payload bytes appended by one LMDB group commit",
            Unit::Bytes,
            metrics.commit_bytes.clone(),
        );
        registry.register(
            "commits",
            "LMDB group commits that reached the disk",
            metrics.commits.clone(),
        );
        registry.register(
            "storage_full_refusals",
            "Append requests refused because the LMDB map (map_full) or the disk (disk_full) was full, or down to the reserve kept for deletes",
            metrics.storage_full_refusals.clone(),
        );
        registry.register(
            "storage_full",
            "1 while the LMDB buffer refuses appends because the map or the disk is full",
            metrics.storage_full.clone(),
        );
        // Both reasons exist from the start, so a dashboard shows 0, not
        // "no data", and rate() sees the first refusal.
        for reason in [super::FullReason::Map, super::FullReason::Disk] {
            metrics
                .storage_full_refusals
                .get_or_create(&FullLabels {
                    reason: reason.as_str(),
                })
                .inc_by(0);
        }
        registry.register(
            "write_errors",
            "Failed LMDB commits by error kind (full: a delete found no room); refused appends are counted in storage_full_refusals",
            metrics.write_errors.clone(),
        );
        registry.register_with_unit(
            "appended",
            "Payload bytes appended to the LMDB buffer",
            Unit::Bytes,
            metrics.appended_bytes.clone(),
        );
        registry.register_with_unit(
            "deleted",
            "Payload bytes deleted from the LMDB buffer",
            Unit::Bytes,
            metrics.deleted_bytes.clone(),
        );
        registry.register(
            "blocks_rewritten",
            "LMDB log blocks rewritten without their consumed parts because live parts (a dead backend's, a backlog's) alone kept them",
            metrics.blocks_rewritten.clone(),
        );
        Arc::new(metrics)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn registered_names_follow_conventions() {
        let mut root = Registry::default();
        let metrics = StoreMetrics::register(root.sub_registry_with_prefix("seedgate_batcher"));
        metrics.commits.inc();
        metrics.commit_duration.observe(0.001);
        metrics
            .write_errors
            .get_or_create(&ErrorKindLabels { kind: "lmdb" })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        for name in [
            "seedgate_batcher_commit_duration_seconds_bucket",
            "seedgate_batcher_commit_ops_bucket",
            "seedgate_batcher_commit_bytes_bucket",
            "seedgate_batcher_commits_total 1",
            "seedgate_batcher_storage_full_refusals_total{reason=\"map_full\"} 0",
            "seedgate_batcher_storage_full_refusals_total{reason=\"disk_full\"} 0",
            "seedgate_batcher_storage_full 0",
            "seedgate_batcher_write_errors_total{kind=\"lmdb\"} 1",
            "seedgate_batcher_appended_bytes_total 0",
            "seedgate_batcher_deleted_bytes_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
    }
}

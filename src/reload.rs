//! Reloading the configuration file without a restart: on SIGHUP and when
//! the file's content changes (polled, which also sees a Kubernetes
//! ConfigMap's symlink swap that file watchers miss).
//!
//! What a reload applies: `clusters` and `routing` (keys, shoot pattern,
//! state table). A new routing snapshot is swapped in for the next request,
//! and the shoot manager learns the new cluster states (clients of removed
//! clusters start their expiry clock). Data already queued for a shoot stays
//! with its client. Any other change is logged as needing a restart and
//! left alone; a file that does not load is logged with every problem,
//! counted in `seedgate_config_reloads_total{result="error"}` (and
//! `seedgate_config_last_reload_successful` goes to 0), and the running
//! configuration stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::metrics::ResultLabel;
use crate::routing::clusters_from_config;
use crate::routing::publisher::Publisher;

/// How often the file is read to see whether it changed.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What the reloader acts on.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// The file.
    pub path: PathBuf,
    /// The configuration running now.
    pub running: Config,
    /// Where the new routing and clusters go.
    pub publisher: Arc<Publisher>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The top-level sections that differ between two configurations, other
/// than those a reload applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("receivers", old.receivers != new.receivers);
    check("admin", old.admin != new.admin);
    check("storage", old.storage != new.storage);
    check("queue", old.queue != new.queue);
    check("batch", old.batch != new.batch);
    check("retry", old.retry != new.retry);
    check("shutdown_delay", old.shutdown_delay != new.shutdown_delay);
    check(
        "shutdown_timeout",
        old.shutdown_timeout != new.shutdown_timeout,
    );
    check("pipelines", old.pipelines != new.pipelines);
    check("shoots", old.shoots != new.shoots);
    changed
}

impl Reloader {
    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        let mut last = std::fs::read(&self.path).ok();
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP; reloading on file change only");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = poll.tick() => false,
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let now = std::fs::read(&self.path).ok();
            if !forced && now == last {
                continue;
            }
            last = now;
            self.reload(if forced { "SIGHUP" } else { "file changed" });
        }
    }

    /// Loads the file and applies what can be applied.
    pub fn reload(&mut self, why: &str) {
        let new = match config::load_file(&self.path) {
            Ok(c) => c.into_inner(),
            Err(e) => {
                self.count("error");
                tracing::error!(why, file = %self.path.display(), error = %e, "Configuration reload failed; the running configuration stays");
                return;
            }
        };
        let clusters = clusters_from_config(&new.clusters);
        if let Err(e) = self.publisher.set_file(new.routing.clone(), clusters) {
            self.count("error");
            tracing::error!(why, error = %e, "Configuration reload failed; the running configuration stays");
            return;
        }
        let pending = needs_restart(&self.running, &new);
        if !pending.is_empty() {
            tracing::warn!(sections = ?pending, "These sections changed and take effect only after a restart");
        }
        tracing::info!(
            why,
            clusters = new.clusters.len(),
            "Reloaded clusters and routing"
        );
        self.running.clusters = new.clusters;
        self.running.routing = new.routing;
        self.count("ok");
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        self.metrics
            .config_last_reload_successful
            .set(i64::from(result == "ok"));
    }
}

//! The routing snapshot and the pure `route` function.
//!
//! A [`Snapshot`] is immutable: the control path builds a new one and swaps
//! it in with arc-swap, the hot path loads it once per request and never
//! locks. Today it holds the static pipelines of the configuration; the
//! tenant and shoot routing (namespace selectors, cluster states, shoot
//! clients) extends the same value, so receivers and ingest do not change.

use std::sync::Arc;

use crate::config::QueueConfig;
use crate::signal::Signal;
use crate::store::Queue;

/// One place data can go: a pipeline's output for one signal, with its own
/// LMDB queue and limits.
#[derive(Debug)]
pub struct Destination {
    /// The pipeline (or shoot client) name: the `destination` metric label.
    pub name: String,
    /// The signal this destination carries.
    pub signal: Signal,
    /// Its queue in the store.
    pub queue: Arc<Queue>,
    /// Its limits and `when_full` policy.
    pub limits: QueueConfig,
}

impl Destination {
    /// The queue name used in LMDB for a pipeline's signal.
    pub fn queue_name(pipeline: &str, signal: Signal) -> String {
        format!("pipeline/{pipeline}/{}", signal.as_str())
    }
}

/// What the hot path reads: everything needed to route one request.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Resource attribute keys that carry the routing key, in priority order.
    pub keys: Vec<String>,
    /// Destinations per signal, indexed by [`signal_index`].
    by_signal: [Vec<Arc<Destination>>; 3],
}

/// Index of a signal in per-signal arrays.
pub const fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    }
}

impl Snapshot {
    /// A snapshot over these destinations.
    pub fn new(
        keys: Vec<String>,
        destinations: impl IntoIterator<Item = Arc<Destination>>,
    ) -> Self {
        let mut by_signal: [Vec<Arc<Destination>>; 3] = Default::default();
        for d in destinations {
            by_signal[signal_index(d.signal)].push(d);
        }
        Self { keys, by_signal }
    }

    /// Every destination, all signals.
    pub fn destinations(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.by_signal.iter().flatten()
    }

    /// Where one resource block with routing key `key` goes.
    ///
    /// With static pipelines every block of a signal goes to every pipeline
    /// that takes that signal; the key is not consulted yet.
    pub fn route(&self, signal: Signal, _key: Option<&str>) -> &[Arc<Destination>] {
        &self.by_signal[signal_index(signal)]
    }
}

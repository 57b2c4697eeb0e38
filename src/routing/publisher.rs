//! The one place that publishes cluster states and routing rules: it merges
//! the static `clusters:` of the configuration file with the `Cluster`
//! resources the kube watcher sees, rebuilds the routing snapshot, and tells
//! the shoot manager.
//!
//! Two sources feed it: the reloader (the file: routing rules and static
//! clusters) and the kube watcher (`Cluster` objects, or `None` while the
//! `Cluster` CRD does not exist, which falls back to the file alone). A
//! `Cluster` resource wins over a static entry of the same name: the file is
//! the embedded mode's stand-in for what the API server knows.

use std::sync::{Arc, Mutex, PoisonError};

use actix::Addr;

use super::{Clusters, count_states};
use crate::actors::shoot_manager::{SetClusters, ShootManager};
use crate::config::RoutingConfig;
use crate::ingest::Ingest;
use crate::metrics::Metrics;

struct Sources {
    routing: RoutingConfig,
    file: Clusters,
    kube: Option<Clusters>,
}

/// See the module doc.
pub struct Publisher {
    ingest: Arc<Ingest>,
    shoot_manager: Option<Addr<ShootManager>>,
    metrics: Arc<Metrics>,
    sources: Mutex<Sources>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher starting from the configuration's routing and clusters
    /// (already in the ingest's snapshot).
    pub fn new(
        ingest: Arc<Ingest>,
        shoot_manager: Option<Addr<ShootManager>>,
        metrics: Arc<Metrics>,
        routing: RoutingConfig,
        file: Clusters,
    ) -> Self {
        Self {
            ingest,
            shoot_manager,
            metrics,
            sources: Mutex::new(Sources {
                routing,
                file,
                kube: None,
            }),
        }
    }

    /// New routing rules and static clusters from the file.
    ///
    /// # Errors
    /// When the shoot pattern does not compile; nothing changes then.
    pub fn set_file(&self, routing: RoutingConfig, file: Clusters) -> Result<(), regex::Error> {
        let mut s = self.lock();
        let (old_routing, old_file) = (s.routing.clone(), std::mem::take(&mut s.file));
        s.routing = routing;
        s.file = file;
        let published = self.publish(&s);
        if published.is_err() {
            s.routing = old_routing;
            s.file = old_file;
        }
        published
    }

    /// The `Cluster` resources, or `None` when the kind is not served (its
    /// CRD is absent): then the file's clusters alone.
    pub fn set_kube(&self, kube: Option<Clusters>) {
        let mut s = self.lock();
        s.kube = kube;
        if let Err(e) = self.publish(&s) {
            // The pattern compiled when the file was taken; not reachable.
            tracing::error!(error = %e, "Cannot publish the cluster states");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, s: &Sources) -> Result<(), regex::Error> {
        let mut merged = s.file.clone();
        if let Some(kube) = &s.kube {
            merged.extend(kube.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let merged = Arc::new(merged);
        let snapshot = self
            .ingest
            .snapshot()
            .rebuild(&s.routing, Arc::clone(&merged))?;
        self.ingest.swap_snapshot(snapshot);
        self.metrics.shoot.set_clusters(count_states(&merged));
        if let Some(m) = &self.shoot_manager {
            m.do_send(SetClusters(merged));
        }
        Ok(())
    }
}

//! The shoot clients as the hot path sees them: a map from shoot namespace to
//! the client's destinations, swapped atomically.
//!
//! Reads are one arc-swap load and one hash lookup. A miss asks the shoot
//! manager actor (through [`ShootCreator`]) to create the client; the
//! manager is the only writer of the map, so creation, expiry and the cap
//! are decided in one place, one message at a time, and concurrent first
//! records of the same shoot get the same client.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use super::{Destination, signal_index};
use crate::signal::Signal;

/// One shoot client's destinations, one per signal it carries.
#[derive(Debug)]
pub struct ShootLink {
    /// The shoot namespace.
    pub namespace: String,
    /// Per signal (by [`signal_index`]), when shoot clients carry it.
    pub destinations: [Option<Arc<Destination>>; 3],
}

impl ShootLink {
    /// The destination for `signal`, if this client carries it.
    pub fn destination(&self, signal: Signal) -> Option<&Arc<Destination>> {
        self.destinations[signal_index(signal)].as_ref()
    }

    /// Every destination of this client.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.destinations.iter().flatten()
    }
}

/// Why no client could be had for a shoot. Its records for the shoot
/// backend are dropped and counted as `no_client`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefused {
    /// `shoots.max_clients` clients exist already.
    #[error("{max} shoot clients exist already (shoots.max_clients)")]
    AtCapacity {
        /// The cap.
        max: usize,
    },
    /// The client could not be built (its queue or exporter).
    #[error("cannot build the shoot client: {0}")]
    Build(String),
    /// No manager is running (start-up or shutdown).
    #[error("shoot clients are not running")]
    NotRunning,
}

impl ClientRefused {
    /// Bounded label.
    pub const fn kind(&self) -> &'static str {
        match self {
            ClientRefused::AtCapacity { .. } => "at_capacity",
            ClientRefused::Build(_) => "build_failed",
            ClientRefused::NotRunning => "not_running",
        }
    }
}

/// Creates shoot clients on demand: the shoot manager actor.
pub trait ShootCreator: Send + Sync + std::fmt::Debug {
    /// The client of `namespace`, created if needed.
    fn create(
        &self,
        namespace: String,
    ) -> BoxFuture<'static, Result<Arc<ShootLink>, ClientRefused>>;
}

/// Shards of the directory: an insert copies one shard's map, so making
/// 5,000 clients copies about 5,000²/64 entries rather than 5,000²/2.
const SHARDS: usize = 32;

type Shard = ArcSwap<HashMap<String, Arc<ShootLink>>>;

/// See the module doc.
#[derive(Debug, Default)]
pub struct ShootDirectory {
    clients: [Shard; SHARDS],
    creator: OnceLock<Arc<dyn ShootCreator>>,
}

impl ShootDirectory {
    /// Sets who creates clients on a miss; the first one set stays (a
    /// restarted manager keeps its address, so setting it again is a no-op).
    pub fn set_creator(&self, creator: Arc<dyn ShootCreator>) {
        let _first_wins = self.creator.set(creator);
    }

    fn shard(&self, namespace: &str) -> &Shard {
        // The remainder is below SHARDS, so it fits any usize.
        #[allow(clippy::cast_possible_truncation)]
        let i = (xxhash_rust::xxh3::xxh3_64(namespace.as_bytes()) % SHARDS as u64) as usize;
        &self.clients[i]
    }

    /// The client of `namespace`, if it exists. Never locks.
    pub fn get(&self, namespace: &str) -> Option<Arc<ShootLink>> {
        self.shard(namespace).load().get(namespace).cloned()
    }

    /// The client of `namespace`, created on a miss.
    ///
    /// # Errors
    /// [`ClientRefused`] when none can be had.
    pub async fn get_or_create(&self, namespace: &str) -> Result<Arc<ShootLink>, ClientRefused> {
        if let Some(link) = self.get(namespace) {
            return Ok(link);
        }
        let creator = self.creator.get().ok_or(ClientRefused::NotRunning)?;
        creator.create(namespace.to_owned()).await
    }

    /// Every client.
    pub fn all(&self) -> Vec<Arc<ShootLink>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in &self.clients {
            all.extend(shard.load().values().cloned());
        }
        all
    }

    /// How many clients exist.
    pub fn len(&self) -> usize {
        self.clients.iter().map(|shard| shard.load().len()).sum()
    }

    /// Whether no client exists.
    pub fn is_empty(&self) -> bool {
        self.clients.iter().all(|shard| shard.load().is_empty())
    }

    /// Adds a client (the manager only).
    pub fn insert(&self, link: Arc<ShootLink>) {
        self.shard(&link.namespace).rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(link.namespace.clone(), Arc::clone(&link));
            map
        });
    }

    /// Removes every client (the manager only, when it starts: clients of
    /// an earlier run of it ended with it).
    pub fn clear(&self) {
        for shard in &self.clients {
            shard.store(Arc::default());
        }
    }

    /// Removes a client (the manager only); returns it.
    pub fn remove(&self, namespace: &str) -> Option<Arc<ShootLink>> {
        let mut removed = None;
        self.shard(namespace).rcu(|map| {
            let mut map = HashMap::clone(map);
            removed = map.remove(namespace);
            map
        });
        removed
    }
}

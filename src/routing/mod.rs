//! The routing snapshot and the pure decision for one resource block.
//!
//! A [`Snapshot`] is immutable: the control path (start-up, a config reload,
//! later the kube watchers) builds a new one and swaps it in with arc-swap;
//! the hot path loads it once per request and never locks. It holds the seed
//! pipelines with their compiled namespace selectors, the shoot namespace
//! pattern, the state table and the cluster states. The shoot clients
//! themselves live in [`shoots::ShootDirectory`], a second arc-swapped map,
//! because they appear on the first record that needs one.
//!
//! For one block with routing key `key` ([`Snapshot::decide`]):
//!
//! | key | state label | shoot client | seed pipelines |
//! | --- | --- | --- | --- |
//! | none | `none` | no | those with `no_namespace` |
//! | not a shoot namespace | `none` | no | those whose selector matches |
//! | shoot, no `Cluster` | `no_cluster` | no | by the `no_cluster` row |
//! | shoot, `Cluster` without client | `no_client` | no | by the `no_client` row |
//! | shoot in state S | S | by the row of S | by the row of S |
//!
//! A signal that shoot clients do not carry (`shoots.signals`), or no
//! `shoots` block at all, routes a shoot namespace by the `no_cluster` row:
//! there is no shoot backend to send it to.
//!
//! Every lookup is a hash lookup or one match of the shoot pattern (a
//! prefix for the default `^shoot--`): the cost of routing a block does not
//! grow with the number of shoots (`benches/routing.rs`).

mod metrics;
pub mod publisher;
pub mod shoots;

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster_state::{ClientDecision, ShootState};
use crate::config::{
    ClusterConfig, InputConfig, NamespacesConfig, QueueConfig, RoutingConfig, StateTableConfig,
};
use crate::signal::Signal;
use crate::store::Queue;

/// What a destination is, for metric labels and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// A seed pipeline's output.
    Pipeline,
    /// A shoot client (the shoot's own backend).
    Shoot,
    /// One backend of a load-balanced pipeline; named `<pipeline>@<endpoint>`.
    Backend,
}

impl DestinationKind {
    /// Bounded label.
    pub const fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Pipeline => "seed",
            DestinationKind::Shoot => "shoot",
            DestinationKind::Backend => "backend",
        }
    }
}

/// One place data can go: a pipeline's (or shoot client's) output for one
/// signal, with its own LMDB queue and limits.
#[derive(Debug)]
pub struct Destination {
    /// The pipeline name, or the shoot namespace.
    pub name: String,
    /// Pipeline or shoot client.
    pub kind: DestinationKind,
    /// The signal this destination carries.
    pub signal: Signal,
    /// Its queue in the store.
    pub queue: Arc<Queue>,
    /// Its limits and `when_full` policy.
    pub limits: QueueConfig,
    /// What it does to its share of a request before it is stored.
    pub processors: Arc<crate::processors::Processors>,
    /// Set for a load-balanced pipeline whose share ingest splits straight
    /// into the backend queues (see [`crate::loadbalancing::router`]).
    pub balance: Option<Arc<crate::loadbalancing::router::Router>>,
}

impl Destination {
    /// The queue name used in LMDB for the destination `name` of `kind`
    /// (a backend is named `<pipeline>@<endpoint>`).
    pub fn queue_name_of(kind: DestinationKind, name: &str, signal: Signal) -> String {
        match kind {
            DestinationKind::Pipeline => Self::queue_name(name, signal),
            DestinationKind::Shoot => Self::shoot_queue_name(name, signal),
            DestinationKind::Backend => {
                let (pipeline, endpoint) = name.split_once('@').unwrap_or((name, ""));
                format!("lb/{pipeline}/{}/{endpoint}", signal.as_str())
            }
        }
    }

    /// The queue name used in LMDB for a pipeline's signal.
    pub fn queue_name(pipeline: &str, signal: Signal) -> String {
        format!("pipeline/{pipeline}/{}", signal.as_str())
    }

    /// The queue name used in LMDB for a shoot client's signal.
    pub fn shoot_queue_name(namespace: &str, signal: Signal) -> String {
        format!("{SHOOT_QUEUE_PREFIX}{namespace}/{}", signal.as_str())
    }

    /// The namespace of a shoot queue name, if it is one.
    pub fn shoot_of_queue(queue: &str) -> Option<&str> {
        let rest = queue.strip_prefix(SHOOT_QUEUE_PREFIX)?;
        let (ns, signal) = rest.rsplit_once('/')?;
        Signal::ALL
            .iter()
            .any(|s| s.as_str() == signal)
            .then_some(ns)
    }

    /// The `destination` label of the per-destination metrics: the pipeline
    /// name, or `shoot` for every shoot client together (per-shoot series
    /// are only the `seedgate_shoot_queue_*` gauges, which leave with the
    /// client), so the label set stays bounded with thousands of shoots.
    pub fn metrics_label(&self) -> &str {
        match self.kind {
            DestinationKind::Pipeline => &self.name,
            DestinationKind::Shoot => DestinationKind::Shoot.as_str(),
            // The pipeline's name: per-backend series are the balancer's.
            DestinationKind::Backend => self.name.split('@').next().unwrap_or_default(),
        }
    }
}

const SHOOT_QUEUE_PREFIX: &str = "shoot/";

/// Index of a signal in per-signal arrays.
pub const fn signal_index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    }
}

/// Which row of the table a block was routed by: the `state` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteState {
    /// Not a shoot namespace, or no routing key.
    None,
    /// A shoot namespace without a `Cluster`.
    NoCluster,
    /// A `Cluster` that gets no client.
    NoClient,
    /// A shoot in this state.
    Shoot(ShootState),
}

impl RouteState {
    /// Bounded label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RouteState::None => "none",
            RouteState::NoCluster => "no_cluster",
            RouteState::NoClient => "no_client",
            RouteState::Shoot(s) => s.as_str(),
        }
    }

    /// Every value, for creating metric series at zero.
    pub fn all() -> impl Iterator<Item = RouteState> {
        [
            RouteState::None,
            RouteState::NoCluster,
            RouteState::NoClient,
        ]
        .into_iter()
        .chain(ShootState::ALL.into_iter().map(RouteState::Shoot))
    }
}

/// Where one resource block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The row it was routed by.
    pub state: RouteState,
    /// To the shoot client of its namespace.
    pub shoot: bool,
    /// To the seed pipelines whose selectors match.
    pub seed: bool,
}

/// A pipeline's input selector: the namespace rule of the configuration
/// (`NamespacesConfig::matches`, the one place it is written), plus what
/// blocks without a key do.
#[derive(Debug, Clone)]
struct Selector {
    namespaces: NamespacesConfig,
    no_namespace: bool,
}

impl Selector {
    fn new(input: &InputConfig) -> Self {
        Self {
            namespaces: input.namespaces.clone(),
            no_namespace: input.no_namespace,
        }
    }

    fn matches(&self, key: Option<&str>) -> bool {
        key.map_or(self.no_namespace, |ns| self.namespaces.matches(ns))
    }
}

/// A seed pipeline's destination for one signal and what it takes.
#[derive(Debug, Clone)]
pub struct SeedRoute {
    /// Where routed blocks go: the pipeline, or with `affinity` its
    /// forwarder to the replica that owns each trace.
    destination: Arc<Destination>,
    selector: Arc<Selector>,
    /// Where a peer's forwarded blocks go (the pipeline itself).
    owned: Arc<Destination>,
}

impl SeedRoute {
    /// A route to `destination` for blocks that `input` selects.
    pub fn new(destination: Arc<Destination>, input: &InputConfig) -> Self {
        Self {
            owned: Arc::clone(&destination),
            destination,
            selector: Arc::new(Selector::new(input)),
        }
    }

    /// Routed blocks go to `forwarder` first, which sends each trace to
    /// the replica that owns it; what peers forward here goes to this
    /// route's destination.
    #[must_use]
    pub fn with_forwarder(self, forwarder: Arc<Destination>) -> Self {
        Self {
            owned: self.destination,
            destination: forwarder,
            selector: self.selector,
        }
    }
}

/// Seed routes per signal, indexed by [`signal_index`].
fn by_signal(seeds: impl IntoIterator<Item = SeedRoute>) -> [Vec<SeedRoute>; 3] {
    let mut grouped: [Vec<SeedRoute>; 3] = Default::default();
    for s in seeds {
        grouped[signal_index(s.destination.signal)].push(s);
    }
    grouped
}

/// Cluster states by shoot namespace.
pub type Clusters = HashMap<String, ClientDecision>;

/// The cluster states of the static `clusters:` of a configuration (already
/// validated, so every entry can be read).
pub fn clusters_from_config(clusters: &[ClusterConfig]) -> Clusters {
    clusters
        .iter()
        .filter_map(|c| match c.decision() {
            Ok(d) => Some((c.name.clone(), d)),
            Err(e) => {
                tracing::error!(cluster = %c.name, error = %e, "Cannot read a static cluster; it is left out");
                None
            }
        })
        .collect()
}

/// How many clusters are in each state (`no_client` for those without a
/// client), every state listed, zeros included: the `seedgate_shoot_clusters`
/// gauge.
pub fn count_states(clusters: &Clusters) -> Vec<(&'static str, i64)> {
    let mut counts: Vec<(&'static str, i64)> = ShootState::ALL
        .iter()
        .map(|s| (s.as_str(), 0))
        .chain([(RouteState::NoClient.as_str(), 0)])
        .collect();
    for decision in clusters.values() {
        let label = match decision {
            ClientDecision::Client(s) => s.as_str(),
            ClientDecision::NoClient(_) => RouteState::NoClient.as_str(),
        };
        if let Some((_, n)) = counts.iter_mut().find(|(l, _)| *l == label) {
            *n += 1;
        }
    }
    counts
}

/// What the hot path reads: everything needed to route one request.
#[derive(Debug)]
pub struct Snapshot {
    /// Resource attribute keys that carry the routing key, in priority order.
    pub keys: Vec<String>,
    seeds: [Vec<SeedRoute>; 3],
    shoot_pattern: regex::Regex,
    table: StateTableConfig,
    clusters: Arc<Clusters>,
    /// Which signals shoot clients carry (all false without `shoots`).
    shoot_signals: [bool; 3],
}

impl Default for Snapshot {
    fn default() -> Self {
        #[allow(clippy::expect_used)] // a constant pattern, proven by tests
        let pattern =
            regex::Regex::new(crate::config::routing::DEFAULT_SHOOT_PATTERN).expect("valid");
        Self {
            keys: Vec::new(),
            seeds: Default::default(),
            shoot_pattern: pattern,
            table: StateTableConfig::default(),
            clusters: Arc::default(),
            shoot_signals: [false; 3],
        }
    }
}

impl Snapshot {
    /// A snapshot with pipelines that take what the default input selector
    /// takes (every namespace but the system ones, and blocks without a
    /// key), with the default routing table and no shoot clients (tests).
    pub fn new(
        keys: Vec<String>,
        destinations: impl IntoIterator<Item = Arc<Destination>>,
    ) -> Self {
        let input = InputConfig::default();
        Self {
            keys,
            seeds: by_signal(destinations.into_iter().map(|d| SeedRoute::new(d, &input))),
            ..Self::default()
        }
    }

    /// A snapshot from the routing configuration.
    ///
    /// # Errors
    /// When the shoot namespace pattern is not a valid regular expression
    /// (validation catches this first).
    pub fn build(
        routing: &RoutingConfig,
        seeds: impl IntoIterator<Item = SeedRoute>,
        shoot_signals: &[Signal],
        clusters: Arc<Clusters>,
    ) -> Result<Self, regex::Error> {
        let mut signals = [false; 3];
        for &s in shoot_signals {
            signals[signal_index(s)] = true;
        }
        Ok(Self {
            keys: routing.keys.clone(),
            seeds: by_signal(seeds),
            shoot_pattern: regex::Regex::new(&routing.shoot_namespace_pattern)?,
            table: routing.states,
            clusters,
            shoot_signals: signals,
        })
    }

    /// The same pipelines and shoot signals with new routing rules and
    /// cluster states (a reload).
    ///
    /// # Errors
    /// As [`Snapshot::build`].
    pub fn rebuild(
        &self,
        routing: &RoutingConfig,
        clusters: Arc<Clusters>,
    ) -> Result<Self, regex::Error> {
        Ok(Self {
            keys: routing.keys.clone(),
            seeds: self.seeds.clone(),
            shoot_pattern: regex::Regex::new(&routing.shoot_namespace_pattern)?,
            table: routing.states,
            clusters,
            shoot_signals: self.shoot_signals,
        })
    }

    /// The same routing rules, clusters and shoot signals with other seed
    /// pipelines (pipeline resources came, changed or went).
    #[must_use]
    pub fn with_seeds(&self, seeds: impl IntoIterator<Item = SeedRoute>) -> Self {
        Self {
            keys: self.keys.clone(),
            seeds: by_signal(seeds),
            shoot_pattern: self.shoot_pattern.clone(),
            table: self.table,
            clusters: Arc::clone(&self.clusters),
            shoot_signals: self.shoot_signals,
        }
    }

    /// The cluster states this snapshot routes by.
    pub fn clusters(&self) -> &Arc<Clusters> {
        &self.clusters
    }

    /// Every seed destination, all signals.
    pub fn destinations(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.seeds.iter().flatten().map(|s| &s.destination)
    }

    /// Where one resource block of `signal` with routing key `key` goes.
    pub fn decide(&self, signal: Signal, key: Option<&str>) -> Decision {
        let seed_only = |state, seed| Decision {
            state,
            shoot: false,
            seed,
        };
        let Some(ns) = key else {
            return seed_only(RouteState::None, true);
        };
        if !self.shoot_pattern.is_match(ns) {
            return seed_only(RouteState::None, true);
        }
        let no_cluster = seed_only(RouteState::NoCluster, self.table.no_cluster.seed);
        if !self.shoot_signals[signal_index(signal)] {
            return no_cluster;
        }
        match self.clusters.get(ns) {
            None => no_cluster,
            Some(ClientDecision::NoClient(_)) => {
                seed_only(RouteState::NoClient, self.table.no_client.seed)
            }
            Some(ClientDecision::Client(state)) => {
                let cell = self.table.cell(*state);
                Decision {
                    state: RouteState::Shoot(*state),
                    shoot: cell.shoot,
                    seed: cell.seed,
                }
            }
        }
    }

    /// The seed pipeline `name` of `signal` (its forwarder, with
    /// `affinity`), whatever its input selects.
    pub fn seed_named(&self, signal: Signal, name: &str) -> Option<&Arc<Destination>> {
        self.route_named(signal, name).map(|s| &s.destination)
    }

    /// The destination of seed pipeline `name` of `signal` that takes what
    /// peers forward to this replica as the owner of its traces.
    pub fn owned_named(&self, signal: Signal, name: &str) -> Option<&Arc<Destination>> {
        self.route_named(signal, name).map(|s| &s.owned)
    }

    fn route_named(&self, signal: Signal, name: &str) -> Option<&SeedRoute> {
        self.seeds[signal_index(signal)]
            .iter()
            .find(|s| s.owned.name == name)
    }

    /// Whether a pipeline of `signal` is load-balanced with ingest
    /// splitting its share (see [`crate::loadbalancing::router`]).
    pub fn splits_at_ingest(&self, signal: Signal) -> bool {
        self.seeds[signal_index(signal)]
            .iter()
            .any(|s| s.destination.balance.is_some())
    }

    /// The seed pipelines of `signal` that take a block with routing key
    /// `key` (whatever the state table says).
    pub fn seed_destinations<'a>(
        &'a self,
        signal: Signal,
        key: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Destination>> + 'a {
        self.seeds[signal_index(signal)]
            .iter()
            .filter(move |s| s.selector.matches(key))
            .map(|s| &s.destination)
    }
}

#[cfg(test)]
mod tests;

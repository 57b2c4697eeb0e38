//! The tenant and shoot routing part of the configuration: routing keys, the
//! shoot namespace pattern, the state table, the shoot clients' template,
//! static clusters, and the pipelines' input selectors.
//!
//! Everything here is plain data checked by `check_routing` and friends;
//! `crate::routing` compiles it into the snapshot the hot path reads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    BatchConfig, DEFAULT_RETRY_AFTER, OutputConfig, Problems, QueueConfig, RetryConfig, WhenFull,
};
use crate::cluster_state::{self, ClientDecision, ShootState};
use crate::signal::Signal;

/// The resource attribute(s) that carry the routing key.
pub const DEFAULT_ROUTING_KEY: &str = "k8s.namespace.name";
/// A namespace matching this is a shoot's control plane namespace.
pub const DEFAULT_SHOOT_PATTERN: &str = "^shoot--";
/// How long a shoot client outlives its cluster.
pub const DEFAULT_SHOOT_EXPIRY: Duration = Duration::from_secs(3600);
/// Most shoot clients alive at once.
pub const DEFAULT_MAX_SHOOT_CLIENTS: usize = 1000;
/// Per-shoot queue limit: small, because a seed has hundreds of shoots and
/// one dead shoot backend must not take the whole disk.
pub const DEFAULT_SHOOT_QUEUE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Namespaces no pipeline takes unless it lists them (Kyma's system namespaces).
pub const SYSTEM_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kyma-system",
    "istio-system",
    "compass-system",
];
/// The namespace used to check the shoot endpoint template.
const SAMPLE_SHOOT_NAMESPACE: &str = "shoot--project--name";

/// Where the routing key comes from and how shoots are routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Resource attribute keys, first present wins.
    pub keys: Vec<String>,
    /// A regular expression: a namespace that matches is a shoot's.
    pub shoot_namespace_pattern: String,
    /// Where a shoot's data goes in each state.
    pub states: StateTableConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            keys: vec![DEFAULT_ROUTING_KEY.to_owned()],
            shoot_namespace_pattern: DEFAULT_SHOOT_PATTERN.to_owned(),
            states: StateTableConfig::default(),
        }
    }
}

/// One cell of the state table: to the shoot backend, to the seed pipelines.
/// Both fields are required, so a cell never half-inherits a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCell {
    /// Send to the shoot's own backend (its shoot client).
    pub shoot: bool,
    /// Send to the seed pipelines whose selectors match.
    pub seed: bool,
}

/// A row for namespaces that can have no shoot client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCell {
    /// Send to the seed pipelines whose selectors match.
    pub seed: bool,
}

/// The routing table by shoot state (DESIGN.md, "Cluster states and
/// routing"); rows not written keep these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateTableConfig {
    /// Shoot being created: both, so nothing of its birth is lost.
    pub creation: RouteCell,
    /// Shoot up: its own backend only.
    pub ready: RouteCell,
    /// Hibernating: its backend is going away, so the seed.
    pub hibernating: RouteCell,
    /// Hibernated: no backend, so the seed.
    pub hibernated: RouteCell,
    /// Waking up: its own backend.
    pub waking: RouteCell,
    /// Being deleted: both (the logs operators need most).
    pub deletion: RouteCell,
    /// Control plane migrating: both.
    pub migration: RouteCell,
    /// Control plane restoring: both.
    pub restore: RouteCell,
    /// A shoot namespace without a `Cluster`: nothing is dropped for lack of
    /// a client.
    pub no_cluster: SeedCell,
    /// A `Cluster` that gets no client (being deleted, `purpose: testing`).
    pub no_client: SeedCell,
}

const fn cell(shoot: bool, seed: bool) -> RouteCell {
    RouteCell { shoot, seed }
}

impl Default for StateTableConfig {
    fn default() -> Self {
        Self {
            creation: cell(true, true),
            ready: cell(true, false),
            hibernating: cell(false, true),
            hibernated: cell(false, true),
            waking: cell(true, false),
            deletion: cell(true, true),
            migration: cell(true, true),
            restore: cell(true, true),
            no_cluster: SeedCell { seed: true },
            no_client: SeedCell { seed: true },
        }
    }
}

impl StateTableConfig {
    /// The cell of a state.
    pub const fn cell(&self, state: ShootState) -> RouteCell {
        match state {
            ShootState::Creation => self.creation,
            ShootState::Ready => self.ready,
            ShootState::Hibernating => self.hibernating,
            ShootState::Hibernated => self.hibernated,
            ShootState::Waking => self.waking,
            ShootState::Deletion => self.deletion,
            ShootState::Migration => self.migration,
            ShootState::Restore => self.restore,
        }
    }
}

/// Shoot clients: one per shoot namespace whose state sends data to the
/// shoot's own backend. Absent: no shoot clients, shoot namespaces go to the
/// seed pipelines as if they had no `Cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShootsConfig {
    /// Signals shoot backends take (default: logs). Other signals of a shoot
    /// namespace go to the seed pipelines, as for a namespace without a
    /// `Cluster`.
    #[serde(default = "logs_only")]
    pub signals: Vec<Signal>,
    /// The endpoint is `endpoint_prefix + namespace + endpoint_suffix`.
    #[serde(default)]
    pub endpoint_prefix: String,
    /// See `endpoint_prefix`.
    #[serde(default)]
    pub endpoint_suffix: String,
    /// The output block every shoot client uses, without `endpoint`.
    pub output: OutputConfig,
    /// Each shoot client's own queue limit and policy (default: 64MiB,
    /// `drop_newest`, so one dead shoot backend never blocks the others).
    #[serde(default = "shoot_queue")]
    pub queue: QueueConfig,
    /// Overrides of the top-level `batch`.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Overrides of the top-level `retry`.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Remove a client this long after its cluster is gone; what it still
    /// holds is dropped and counted.
    #[serde(default = "default_expiry", with = "humantime_serde")]
    pub expiry: Duration,
    /// Most clients alive at once; beyond it a shoot's data for its own
    /// backend is dropped and counted (`no_client`).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

impl ShootsConfig {
    /// The endpoint of a shoot's client.
    pub fn endpoint_for(&self, namespace: &str) -> String {
        format!(
            "{}{namespace}{}",
            self.endpoint_prefix, self.endpoint_suffix
        )
    }

    /// The output of a shoot's client: the template with its endpoint.
    pub fn output_for(&self, namespace: &str) -> OutputConfig {
        let mut out = self.output.clone();
        if out.kind.is_otlp() {
            out.endpoint = Some(self.endpoint_for(namespace));
        }
        out
    }
}

fn logs_only() -> Vec<Signal> {
    vec![Signal::Logs]
}
fn shoot_queue() -> QueueConfig {
    QueueConfig {
        max_bytes: bytesize::ByteSize(DEFAULT_SHOOT_QUEUE_MAX_BYTES),
        when_full: WhenFull::DropNewest,
        retry_after: DEFAULT_RETRY_AFTER,
    }
}
fn default_expiry() -> Duration {
    DEFAULT_SHOOT_EXPIRY
}
fn default_max_clients() -> usize {
    DEFAULT_MAX_SHOOT_CLIENTS
}

/// A static cluster for the embedded mode: a name and either a state or a
/// whole Gardener `Cluster` object (as JSON or YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The shoot's seed namespace, `shoot--<project>--<name>`.
    pub name: String,
    /// The state, given directly.
    #[serde(default)]
    pub state: Option<ShootState>,
    /// A Gardener `Cluster` object; its state is derived as the kube watcher
    /// would.
    #[serde(default)]
    pub cluster: Option<serde_json::Value>,
}

impl ClusterConfig {
    /// What this entry means for the shoot's client (valid after validation).
    ///
    /// # Errors
    /// When the `cluster` object cannot be read.
    pub fn decision(&self) -> Result<ClientDecision, cluster_state::ClusterStateError> {
        match (&self.state, &self.cluster) {
            (Some(state), _) => Ok(ClientDecision::Client(*state)),
            (None, Some(cluster)) => cluster_state::derive(cluster),
            (None, None) => Ok(ClientDecision::Client(ShootState::Ready)),
        }
    }
}

/// What a pipeline takes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Which namespaces (Kyma semantics).
    pub namespaces: NamespacesConfig,
    /// Take resource blocks that carry no routing key.
    pub no_namespace: bool,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            namespaces: NamespacesConfig::default(),
            no_namespace: true,
        }
    }
}

/// A namespace selector: `include` or `exclude`, never both. Without
/// `include`, the system namespaces are left out unless `system` is true.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespacesConfig {
    /// Only these namespaces.
    pub include: Option<Vec<String>>,
    /// Every namespace but these.
    pub exclude: Option<Vec<String>>,
    /// Also take the system namespaces (`kube-system`, `kyma-system`,
    /// `istio-system`, `compass-system`); not used with `include`, which
    /// takes them when it lists them.
    pub system: bool,
}

impl NamespacesConfig {
    /// Whether a namespace matches: the one place the rule is written (the
    /// routing snapshot's selectors call it).
    pub fn matches(&self, namespace: &str) -> bool {
        if let Some(include) = &self.include {
            return include.iter().any(|n| n == namespace);
        }
        if self.exclude.iter().flatten().any(|n| n == namespace) {
            return false;
        }
        self.system || !SYSTEM_NAMESPACES.contains(&namespace)
    }
}

// === validation ===

/// A Kubernetes namespace name: an RFC 1123 label.
fn is_namespace_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

pub(super) fn check_routing(p: &mut Problems, r: &RoutingConfig) {
    if r.keys.is_empty() {
        p.push("routing.keys", "must name at least one resource attribute");
    }
    for (i, key) in r.keys.iter().enumerate() {
        if key.is_empty() {
            p.push(format!("routing.keys[{i}]"), "must not be empty");
        }
    }
    if let Err(e) = regex::Regex::new(&r.shoot_namespace_pattern) {
        p.push(
            "routing.shoot_namespace_pattern",
            format!("is not a valid regular expression: {e}"),
        );
    }
}

pub(super) fn check_input(p: &mut Problems, at: &str, input: &InputConfig) {
    let ns = &input.namespaces;
    let at = format!("{at}.namespaces");
    if ns.include.is_some() && ns.exclude.is_some() {
        p.push(
            at.clone(),
            "include and exclude are mutually exclusive: keep one",
        );
    }
    if ns.include.is_some() && ns.system {
        p.push(
            format!("{at}.system"),
            "is not used with include: list the system namespaces you want in include",
        );
    }
    for (what, list) in [("include", &ns.include), ("exclude", &ns.exclude)] {
        let Some(list) = list else { continue };
        if list.is_empty() {
            p.push(
                format!("{at}.{what}"),
                "must list at least one namespace (or be left out)",
            );
        }
        for (i, name) in list.iter().enumerate() {
            if !is_namespace_name(name) {
                p.push(
                    format!("{at}.{what}[{i}]"),
                    format!(
                        "{name:?} is not a namespace name (1-63 characters of a-z, 0-9, '-', starting and ending alphanumeric)"
                    ),
                );
            }
        }
    }
}

pub(super) fn check_shoots(p: &mut Problems, s: &ShootsConfig) {
    if s.output.kind == super::OutputType::FluentBitHttp {
        p.push(
            "shoots.output.type",
            "fluent_bit_http is for seed pipelines: a shoot's own backend takes OTLP (otlp_grpc or otlp_http)",
        );
    }
    if s.signals.is_empty() {
        p.push(
            "shoots.signals",
            "must list at least one of logs, metrics, traces",
        );
    }
    if s.output.endpoint.is_some() {
        p.push(
            "shoots.output.endpoint",
            "is built per shoot from endpoint_prefix + namespace + endpoint_suffix: remove it",
        );
    }
    let mut output = s.output_for(SAMPLE_SHOOT_NAMESPACE);
    if s.output.kind.is_otlp() {
        if s.endpoint_prefix.is_empty() {
            p.push(
                "shoots.endpoint_prefix",
                "is required for OTLP shoot outputs (e.g. http://otel-collector.)",
            );
        } else {
            // Check the template on a sample namespace: a namespace name is a
            // DNS label, so if this URI is valid, every shoot's is.
            let mut sub = Problems::default();
            super::check_output(&mut sub, "shoots.output", &output);
            for problem in sub.0 {
                if problem.field == "shoots.output.endpoint" {
                    p.push(
                        "shoots.endpoint_prefix",
                        format!(
                            "endpoint_prefix + namespace + endpoint_suffix gives {}",
                            problem.reason
                        ),
                    );
                } else {
                    p.0.push(problem);
                }
            }
        }
    } else {
        output.endpoint = None;
        super::check_output(p, "shoots.output", &output);
    }
    super::check_queue(p, "shoots.queue", &s.queue);
    if let Some(b) = &s.batch {
        super::check_batch(p, "shoots.batch", b);
    }
    if let Some(r) = &s.retry {
        super::check_retry(p, "shoots.retry", r);
    }
    if s.expiry.is_zero() {
        p.push("shoots.expiry", "must be greater than 0s");
    }
    if s.max_clients == 0 {
        p.push(
            "shoots.max_clients",
            "must be at least 1 (leave `shoots` out to have no shoot clients)",
        );
    }
}

pub(super) fn check_clusters(
    p: &mut Problems,
    clusters: &[ClusterConfig],
    routing: &RoutingConfig,
) {
    let pattern = regex::Regex::new(&routing.shoot_namespace_pattern).ok();
    let mut names = std::collections::HashSet::new();
    for (i, c) in clusters.iter().enumerate() {
        let at = format!("clusters[{i}]");
        if !is_namespace_name(&c.name) {
            p.push(
                format!("{at}.name"),
                format!("{:?} is not a namespace name", c.name),
            );
        }
        if !names.insert(c.name.as_str()) {
            p.push(
                format!("{at}.name"),
                format!("{:?} is listed by an earlier cluster", c.name),
            );
        }
        if let Some(pattern) = &pattern
            && !pattern.is_match(&c.name)
        {
            p.push(
                format!("{at}.name"),
                format!(
                    "{:?} does not match routing.shoot_namespace_pattern ({}), so its state would never be used",
                    c.name, routing.shoot_namespace_pattern
                ),
            );
        }
        match (&c.state, &c.cluster) {
            (Some(_), Some(_)) => p.push(
                at.clone(),
                "state and cluster are mutually exclusive: keep one",
            ),
            (None, None) => p.push(at.clone(), "needs a state or a cluster object"),
            (None, Some(cluster)) => {
                if let Err(e) = cluster_state::derive(cluster) {
                    p.push(format!("{at}.cluster"), e.to_string());
                }
                let named = cluster
                    .pointer("/metadata/name")
                    .and_then(serde_json::Value::as_str);
                if let Some(named) = named
                    && named != c.name
                {
                    p.push(
                        format!("{at}.cluster"),
                        format!("metadata.name {named:?} differs from name {:?}", c.name),
                    );
                }
            }
            (Some(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(include: Option<&[&str]>, exclude: Option<&[&str]>, system: bool) -> NamespacesConfig {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        NamespacesConfig {
            include: include.map(owned),
            exclude: exclude.map(owned),
            system,
        }
    }

    #[test]
    fn selectors_follow_kyma_semantics() {
        let all = ns(None, None, false);
        assert!(all.matches("shoot--a--b"));
        assert!(
            !all.matches("kube-system"),
            "system namespaces are left out"
        );
        assert!(ns(None, None, true).matches("kube-system"));
        let inc = ns(Some(&["kube-system", "a"]), None, false);
        assert!(inc.matches("kube-system"), "include takes what it lists");
        assert!(inc.matches("a"));
        assert!(!inc.matches("b"));
        let exc = ns(None, Some(&["a"]), false);
        assert!(!exc.matches("a"));
        assert!(exc.matches("b"));
        assert!(!exc.matches("istio-system"));
        assert!(ns(None, Some(&["a"]), true).matches("istio-system"));
    }

    #[test]
    fn namespace_names_are_rfc1123_labels() {
        for good in ["a", "shoot--p--n", "kube-system", "a1"] {
            assert!(is_namespace_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_namespace_name(bad), "{bad}");
        }
    }
}

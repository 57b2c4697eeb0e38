//! A shoot's state, derived from the Gardener `Cluster` resource of its
//! seed namespace.
//!
//! seedgate routes each shoot's telemetry by the state the shoot is in
//! (DESIGN.md, "Cluster states and routing"): a shoot being created goes to
//! the shoot backend and the seed pipelines, a ready one only to the shoot
//! backend, a hibernated one only to the seed, and so on. gardenlet writes a
//! cluster-scoped `extensions.gardener.cloud/v1alpha1` `Cluster` per shoot
//! into the seed, named after the shoot's seed namespace (`shoot--<project>--<name>`),
//! whose `spec.shoot` embeds the whole `core.gardener.cloud/v1beta1` Shoot,
//! status included. This module turns one such object into a
//! [`ClientDecision`]: no shoot client, or a client in a [`ShootState`]. It
//! is pure (no I/O, no tokio): the kube watcher feeds it, the router acts on
//! the result, and the routing cells per state live in the configuration.
//!
//! # Expected flow
//!
//! Shaped like kube-runtime's `FinalizerState::for_object`: a small value of
//! facts is read from the object once (`ClusterFacts`, `ShootFacts`), then
//! one exhaustive `match` on it decides, its arms in rule order.
//!
//! [`derive()`], first match wins:
//!
//! 1. The Cluster is not a JSON object: [`ClusterStateError::NotAnObject`].
//! 2. `spec` or `spec.shoot` is present, not `null` and not an object:
//!    [`ClusterStateError::SpecNotAnObject`] / [`ClusterStateError::ShootNotAnObject`].
//!    Checked before anything else is read, as the plugin decodes the shoot
//!    before it looks at the Cluster's deletion.
//! 3. The Cluster's `metadata.deletionTimestamp` is set:
//!    [`NoClientReason::ClusterDeleting`].
//! 4. `spec.shoot` is absent or `null`: [`NoClientReason::NoShoot`].
//! 5. The shoot's `spec.purpose` is `testing`: [`NoClientReason::PurposeTesting`].
//! 6. Otherwise a client, in the state [`shoot_state`] gives.
//!
//! [`shoot_state`], first match wins (the plugin's `getShootState` order):
//!
//! 1. `metadata.deletionTimestamp` set: [`ShootState::Deletion`].
//! 2. annotation `gardener.cloud/operation` is `migrate`, or
//!    `status.lastOperation` is present with type `Migrate` and a state other
//!    than `Succeeded`: [`ShootState::Migration`].
//! 3. the same with type `Restore`, or the annotation is `restore`:
//!    [`ShootState::Restore`].
//! 4. `status.lastOperation` absent, or type `Create` and state not
//!    `Succeeded`: [`ShootState::Creation`].
//! 5. `spec.hibernation.enabled` and not `status.hibernated`:
//!    [`ShootState::Hibernating`].
//! 6. both: [`ShootState::Hibernated`].
//! 7. `status.hibernated` without `spec.hibernation.enabled`: [`ShootState::Waking`].
//! 8. otherwise: [`ShootState::Ready`].
//!
//! # Reading the fields
//!
//! Tolerant where the plugin's Go types are optional, strict where it
//! compares:
//!
//! - An absent field, or `null`, is false / none. `spec.hibernation` without
//!   `enabled` is not hibernation.
//! - A flag is true only when it is the JSON `true`; a string `"true"` is
//!   false.
//! - Strings compare exactly, case-sensitively, untrimmed: `reconcile;migrate`
//!   (Gardener allows `;`-separated operations) and `Migrate` are not the
//!   `migrate` annotation; `LiveMigrate` is not `Migrate`; purpose `Testing`
//!   is not `testing`.
//! - A timestamp is set when the field is present and not `null`; its value
//!   is not parsed.
//! - `status.lastOperation` is present when it is an object. `{}` is present
//!   with an empty type (so the shoot is not in creation); any state other
//!   than exactly `Succeeded`, absent and empty included, counts as not
//!   succeeded. A `Delete` last operation alone changes nothing.
//! - `spec.purpose` plays no part in [`shoot_state`]; it only filters in
//!   [`derive()`].
//!
//! # Departures from the Fluent Bit plugin
//!
//! The rules above follow gardener/logging `pkg/controller` (see
//! `shared/reference/gardener-cluster-state.md`) except here:
//!
//! - **A deleting shoot keeps its client, in [`ShootState::Deletion`].** The
//!   plugin's reconciler removes the client of a shoot with a
//!   `deletionTimestamp` before it derives the state (since 2026-02), so its
//!   `deletion` state is unreachable and the shoot's logs are dropped for
//!   want of a client. seedgate sends them to both targets (DESIGN.md): they
//!   are the logs operators need most.
//! - **Hibernating and hibernated shoots are not muted.** Not decided here
//!   (this module only names the state), but it is why the two states
//!   matter: the plugin mutes both targets, seedgate's default sends them to
//!   the seed.
//! - **A Cluster without a shoot gets no client** ([`NoClientReason::NoShoot`]),
//!   the same outcome as no `Cluster` at all, so the seed pipelines still
//!   get the records. The plugin builds a client for it and then panics in
//!   `getShootState`, which reads `shoot.Status` of the nil shoot at its
//!   waking rule, before the client is registered; the reference's "a nil
//!   shoot is ready" does not hold for that code. The CRD makes `spec.shoot`
//!   a required object, so only a file or a test can produce this.
//! - **Only the fields the rules read are checked.** The plugin decodes the
//!   whole shoot into Go types, so any mistyped field anywhere (say
//!   `hibernation.enabled: "true"`) stops its reconcile and leaves the old
//!   state. seedgate reads a mistyped rule field as absent and errs only when
//!   the Cluster, its `spec` or `spec.shoot` is not an object.
//! - **No `deleted` state.** The plugin declares one but nothing produces it;
//!   a shoot client's life after its Cluster is gone is the client
//!   lifecycle's business (DESIGN.md: removed a configurable time later).
//!
//! # Errors
//!
//! Only for an object no API server would hand out (the CRD requires an
//! object `spec` with an object `shoot`). The caller keeps whatever decision
//! it had for that Cluster, as the plugin keeps its client, and logs the
//! error with its [`ClusterStateError::kind`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The annotation carrying a requested Gardener operation.
const OPERATION_ANNOTATION: &str = "gardener.cloud/operation";

/// The state of a shoot, as the routing table knows it.
///
/// The names (from [`ShootState::as_str`], [`fmt::Display`] and serde) are
/// the plugin's exact state strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShootState {
    /// No last operation yet, or a `Create` that has not succeeded.
    Creation,
    /// Nothing else applies: the shoot is up and not hibernated.
    Ready,
    /// Hibernation is enabled and the shoot is not hibernated yet.
    Hibernating,
    /// Hibernation is enabled and the shoot is hibernated.
    Hibernated,
    /// The shoot is hibernated but hibernation is no longer enabled.
    Waking,
    /// The shoot has a `deletionTimestamp`.
    Deletion,
    /// The shoot is marked for, or in an unfinished, control-plane migration.
    Migration,
    /// The shoot is marked for, or in an unfinished, restore after migration.
    Restore,
}

impl ShootState {
    /// Every state, in declaration order.
    pub const ALL: [ShootState; 8] = [
        ShootState::Creation,
        ShootState::Ready,
        ShootState::Hibernating,
        ShootState::Hibernated,
        ShootState::Waking,
        ShootState::Deletion,
        ShootState::Migration,
        ShootState::Restore,
    ];

    /// The lowercase name: a bounded metric label and the configuration key.
    pub const fn as_str(self) -> &'static str {
        match self {
            ShootState::Creation => "creation",
            ShootState::Ready => "ready",
            ShootState::Hibernating => "hibernating",
            ShootState::Hibernated => "hibernated",
            ShootState::Waking => "waking",
            ShootState::Deletion => "deletion",
            ShootState::Migration => "migration",
            ShootState::Restore => "restore",
        }
    }
}

impl fmt::Display for ShootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a Cluster gets no shoot client. Its records are then routed as if the
/// Cluster did not exist: to the seed pipelines, nothing dropped for lack of
/// a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoClientReason {
    /// The Cluster itself has a `deletionTimestamp`: the shoot's control
    /// plane is going away with it. The plugin removes its client too.
    ClusterDeleting,
    /// The shoot's `spec.purpose` is exactly `testing`: Gardener's testing
    /// shoots get no logging. The plugin removes its client too.
    PurposeTesting,
    /// `spec.shoot` is absent or `null`: there is no shoot to route for. The
    /// plugin panics on this one (see the module doc).
    NoShoot,
}

impl NoClientReason {
    /// A bounded label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoClientReason::ClusterDeleting => "cluster_deleting",
            NoClientReason::PurposeTesting => "purpose_testing",
            NoClientReason::NoShoot => "no_shoot",
        }
    }
}

impl fmt::Display for NoClientReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a Cluster means for its shoot's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientDecision {
    /// The shoot gets a client, routed by this state.
    Client(ShootState),
    /// The shoot gets no client, for this reason.
    NoClient(NoClientReason),
}

impl ClientDecision {
    /// The state, when there is a client.
    pub fn state(self) -> Option<ShootState> {
        match self {
            ClientDecision::Client(state) => Some(state),
            ClientDecision::NoClient(_) => None,
        }
    }
}

/// A Cluster this module cannot read. No API server serves one (the CRD
/// requires an object `spec` holding an object `shoot`); it comes from a file
/// or a bug. The caller keeps its previous decision for the Cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterStateError {
    /// The Cluster is not a JSON object.
    #[error("Cluster is not an object but {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// The Cluster's `spec` is present, not `null`, and not an object.
    #[error("Cluster spec is not an object but {found}")]
    SpecNotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// The Cluster's `spec.shoot` is present, not `null`, and not an object:
    /// the plugin's decode error.
    #[error("Cluster spec.shoot is not an object but {found}")]
    ShootNotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
}

impl ClusterStateError {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterStateError::NotAnObject { .. } => "cluster_not_object",
            ClusterStateError::SpecNotAnObject { .. } => "spec_not_object",
            ClusterStateError::ShootNotAnObject { .. } => "shoot_not_object",
        }
    }
}

/// Decides a shoot's client from its Cluster, given as JSON (as the kube
/// client or a YAML file gives it). Rules and their order: the module doc.
///
/// # Errors
/// [`ClusterStateError`] when the Cluster, its `spec` or its `spec.shoot` is
/// not an object.
pub fn derive(cluster: &Value) -> Result<ClientDecision, ClusterStateError> {
    use ClientDecision::{Client, NoClient};

    let facts = ClusterFacts::for_object(cluster)?;
    Ok(match facts {
        ClusterFacts { deleting: true, .. } => NoClient(NoClientReason::ClusterDeleting),
        ClusterFacts { shoot: None, .. } => NoClient(NoClientReason::NoShoot),
        ClusterFacts {
            shoot: Some(shoot), ..
        } if shoot.purpose_testing => NoClient(NoClientReason::PurposeTesting),
        ClusterFacts {
            shoot: Some(shoot), ..
        } => Client(shoot.state()),
    })
}

/// The state of an embedded shoot (`spec.shoot` of a Cluster), first match
/// wins; rules and their order: the module doc.
///
/// A value that is not an object has no fields and reads like `{}`:
/// [`ShootState::Creation`]. [`derive()`] never passes one.
pub fn shoot_state(shoot: &Value) -> ShootState {
    ShootFacts::for_object(shoot).state()
}

/// What [`derive()`] looks at, read once from the Cluster.
#[derive(Debug)]
struct ClusterFacts<'a> {
    /// The Cluster's `metadata.deletionTimestamp` is set.
    deleting: bool,
    /// The embedded shoot, when `spec.shoot` is an object.
    shoot: Option<ShootFacts<'a>>,
}

impl<'a> ClusterFacts<'a> {
    fn for_object(cluster: &'a Value) -> Result<Self, ClusterStateError> {
        let cluster = cluster.as_object().ok_or(ClusterStateError::NotAnObject {
            found: json_type(cluster),
        })?;
        let spec = match cluster.get("spec") {
            None | Some(Value::Null) => None,
            Some(Value::Object(spec)) => Some(spec),
            Some(other) => {
                return Err(ClusterStateError::SpecNotAnObject {
                    found: json_type(other),
                });
            }
        };
        let shoot = match spec.and_then(|spec| spec.get("shoot")) {
            None | Some(Value::Null) => None,
            Some(Value::Object(shoot)) => Some(ShootFacts::for_map(shoot)),
            Some(other) => {
                return Err(ClusterStateError::ShootNotAnObject {
                    found: json_type(other),
                });
            }
        };
        Ok(ClusterFacts {
            deleting: is_set(field(cluster, &["metadata", "deletionTimestamp"])),
            shoot,
        })
    }
}

/// A shoot's `status.lastOperation`, as far as the rules read it.
#[derive(Debug, Clone, Copy)]
struct LastOperation<'a> {
    /// `type`; empty when absent or not a string (Go's zero value).
    kind: &'a str,
    /// `state` is exactly `Succeeded`.
    succeeded: bool,
}

/// What [`shoot_state`] looks at, read once from the shoot. The default is
/// what `{}` gives.
#[derive(Debug, Clone, Copy, Default)]
struct ShootFacts<'a> {
    /// `metadata.deletionTimestamp` is set.
    deleting: bool,
    /// `metadata.annotations["gardener.cloud/operation"]`, when a string.
    operation: Option<&'a str>,
    /// `status.lastOperation`, when an object.
    last_operation: Option<LastOperation<'a>>,
    /// `spec.hibernation.enabled` is `true`.
    hibernation_enabled: bool,
    /// `status.hibernated` is `true`.
    hibernated: bool,
    /// `spec.purpose` is exactly `testing` (read by [`derive()`] only).
    purpose_testing: bool,
}

impl<'a> ShootFacts<'a> {
    fn for_object(shoot: &'a Value) -> Self {
        match shoot {
            Value::Object(map) => Self::for_map(map),
            // No fields: every one absent, exactly as for `{}`.
            _ => ShootFacts::default(),
        }
    }

    fn for_map(shoot: &'a Map<String, Value>) -> Self {
        let last_operation = field(shoot, &["status", "lastOperation"])
            .and_then(Value::as_object)
            .map(|op| LastOperation {
                kind: op.get("type").and_then(Value::as_str).unwrap_or(""),
                succeeded: op.get("state").and_then(Value::as_str) == Some("Succeeded"),
            });
        ShootFacts {
            deleting: is_set(field(shoot, &["metadata", "deletionTimestamp"])),
            operation: field(shoot, &["metadata", "annotations", OPERATION_ANNOTATION])
                .and_then(Value::as_str),
            last_operation,
            hibernation_enabled: is_true(field(shoot, &["spec", "hibernation", "enabled"])),
            hibernated: is_true(field(shoot, &["status", "hibernated"])),
            purpose_testing: field(shoot, &["spec", "purpose"]).and_then(Value::as_str)
                == Some("testing"),
        }
    }

    /// The rules of the module doc, one arm each, in order.
    fn state(self) -> ShootState {
        use ShootState::*;

        match self {
            ShootFacts { deleting: true, .. } => Deletion,
            ShootFacts {
                operation: Some("migrate"),
                ..
            }
            | ShootFacts {
                last_operation:
                    Some(LastOperation {
                        kind: "Migrate",
                        succeeded: false,
                    }),
                ..
            } => Migration,
            ShootFacts {
                last_operation:
                    Some(LastOperation {
                        kind: "Restore",
                        succeeded: false,
                    }),
                ..
            }
            | ShootFacts {
                operation: Some("restore"),
                ..
            } => Restore,
            ShootFacts {
                last_operation: None,
                ..
            }
            | ShootFacts {
                last_operation:
                    Some(LastOperation {
                        kind: "Create",
                        succeeded: false,
                    }),
                ..
            } => Creation,
            ShootFacts {
                hibernation_enabled: true,
                hibernated: false,
                ..
            } => Hibernating,
            ShootFacts {
                hibernation_enabled: true,
                hibernated: true,
                ..
            } => Hibernated,
            ShootFacts {
                hibernation_enabled: false,
                hibernated: true,
                ..
            } => Waking,
            ShootFacts {
                hibernation_enabled: false,
                hibernated: false,
                ..
            } => Ready,
        }
    }
}

/// The value at `path` under `map`, through objects only.
fn field<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut map = map;
    for key in parents {
        map = map.get(*key)?.as_object()?;
    }
    map.get(*last)
}

/// A Go pointer field is set: present and not `null`.
fn is_set(value: Option<&Value>) -> bool {
    !matches!(value, None | Some(Value::Null))
}

/// A Go `*bool` / `bool` field is true: only the JSON `true`.
fn is_true(value: Option<&Value>) -> bool {
    matches!(value, Some(Value::Bool(true)))
}

/// The JSON type name, for errors.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GARDENER: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/upstream/gardener/"
    );

    fn read_fixture(rel: &str) -> String {
        let path = format!("{GARDENER}{rel}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str::<Value>(text).expect("fixture parses as YAML")
    }

    /// Sets `value` at `path`, making objects on the way (a non-object in
    /// the way is replaced).
    fn set(root: &mut Value, path: &[&str], value: Value) {
        let (last, parents) = path.split_last().expect("non-empty path");
        let mut node = root;
        for key in parents {
            if !node.is_object() {
                *node = json!({});
            }
            node = node
                .as_object_mut()
                .expect("object")
                .entry(*key)
                .or_insert_with(|| json!({}));
        }
        if !node.is_object() {
            *node = json!({});
        }
        node.as_object_mut()
            .expect("object")
            .insert((*last).to_owned(), value);
    }

    /// A `Cluster` as gardenlet writes it, built by chaining (controller-rs
    /// style). The shoot starts as submitted: no status, so in creation.
    #[derive(Debug, Clone)]
    struct Cluster(Value);

    /// A Cluster named after the shoot's seed namespace `shoot--<project>--<name>`.
    fn cluster(name: &str) -> Cluster {
        let mut parts = name.splitn(3, "--").skip(1);
        let project = parts.next().unwrap_or("p");
        let shoot = parts.next().unwrap_or("a");
        Cluster(json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1",
            "kind": "Cluster",
            "metadata": { "name": name },
            "spec": {
                "cloudProfile": {
                    "apiVersion": "core.gardener.cloud/v1beta1",
                    "kind": "CloudProfile",
                    "metadata": { "name": "local" }
                },
                "seed": {
                    "apiVersion": "core.gardener.cloud/v1beta1",
                    "kind": "Seed",
                    "metadata": { "name": "local" }
                },
                "shoot": {
                    "apiVersion": "core.gardener.cloud/v1beta1",
                    "kind": "Shoot",
                    "metadata": { "name": shoot, "namespace": format!("garden-{project}") },
                    "spec": { "purpose": "evaluation", "region": "local" }
                }
            }
        }))
    }

    impl Cluster {
        fn at(mut self, path: &[&str], value: Value) -> Self {
            set(&mut self.0, path, value);
            self
        }
        fn in_shoot(self, path: &[&str], value: Value) -> Self {
            let full: Vec<&str> = ["spec", "shoot"].iter().chain(path).copied().collect();
            self.at(&full, value)
        }
        /// `spec.hibernation.enabled`.
        fn hibernation(self, enabled: bool) -> Self {
            self.in_shoot(&["spec", "hibernation", "enabled"], json!(enabled))
        }
        /// `status.hibernated`.
        fn hibernated(self, hibernated: bool) -> Self {
            self.in_shoot(&["status", "hibernated"], json!(hibernated))
        }
        /// `status.lastOperation` with this type and state.
        fn last_op(self, kind: &str, state: &str) -> Self {
            let progress = if state == "Succeeded" { 100 } else { 40 };
            self.in_shoot(
                &["status", "lastOperation"],
                json!({
                    "type": kind,
                    "state": state,
                    "progress": progress,
                    "lastUpdateTime": "2026-06-01T10:00:00Z",
                    "description": "set by the test"
                }),
            )
        }
        /// `metadata.annotations["gardener.cloud/operation"]`.
        fn operation(self, operation: &str) -> Self {
            self.in_shoot(
                &["metadata", "annotations", OPERATION_ANNOTATION],
                json!(operation),
            )
        }
        /// `spec.purpose`.
        fn purpose(self, purpose: &str) -> Self {
            self.in_shoot(&["spec", "purpose"], json!(purpose))
        }
        /// The shoot's `metadata.deletionTimestamp`.
        fn shoot_deleting(self) -> Self {
            self.in_shoot(
                &["metadata", "deletionTimestamp"],
                json!("2026-06-01T11:00:00Z"),
            )
        }
        /// The Cluster's own `metadata.deletionTimestamp`.
        fn deleting(self) -> Self {
            self.at(
                &["metadata", "deletionTimestamp"],
                json!("2026-06-01T12:00:00Z"),
            )
            .at(
                &["metadata", "finalizers"],
                json!(["extensions.gardener.cloud/cluster"]),
            )
        }
        /// Replaces `spec.shoot`.
        fn shoot_is(self, shoot: Value) -> Self {
            self.at(&["spec", "shoot"], shoot)
        }
        /// Removes `spec.shoot`.
        fn without_shoot(mut self) -> Self {
            if let Some(spec) = self.0.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("shoot");
            }
            self
        }
        /// The embedded shoot.
        fn shoot(&self) -> Value {
            self.0["spec"]["shoot"].clone()
        }
    }

    /// Checks every row, then reports all the failing ones by name.
    fn check_states(rows: &[(&str, Cluster, ShootState)]) {
        let failures: Vec<String> = rows
            .iter()
            .flat_map(|(name, cluster, want)| {
                let got = shoot_state(&cluster.shoot());
                let decided = derive(&cluster.0);
                let mut out = Vec::new();
                if got != *want {
                    out.push(format!("{name}: shoot_state {got}, want {want}"));
                }
                if decided != Ok(ClientDecision::Client(*want)) {
                    out.push(format!("{name}: derive {decided:?}, want Client({want})"));
                }
                out
            })
            .collect();
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    /// gardener/logging `pkg/controller/utils_test.go` `#getShootState`,
    /// every entry, named as upstream.
    #[test]
    fn upstream_get_shoot_state_table() {
        use ShootState::*;
        let c = || cluster("shoot--dev--foo");
        check_states(&[
            (
                "Should get creating state",
                c().last_op("Create", "Processing"),
                Creation,
            ),
            (
                "Should get ready state",
                c().operation("reconcile").last_op("Create", "Succeeded"),
                Ready,
            ),
            (
                "Should get hibernating state",
                c().purpose("development")
                    .hibernation(true)
                    .hibernated(false)
                    .last_op("Reconcile", ""),
                Hibernating,
            ),
            (
                "Should get hibernated state",
                c().hibernation(true)
                    .hibernated(true)
                    .last_op("Reconcile", "Succeeded"),
                Hibernated,
            ),
            (
                "Should get waking up state",
                c().hibernation(false)
                    .hibernated(true)
                    .last_op("Reconcile", "Succeeded"),
                Waking,
            ),
            (
                "Should get deliting state",
                c().shoot_deleting().operation("restore"),
                Deletion,
            ),
            (
                "Should get migration state",
                c().last_op("Migrate", "Processing"),
                Migration,
            ),
            (
                "Should get migration state, too",
                c().operation("migrate"),
                Migration,
            ),
            (
                "Should get restoration state",
                c().last_op("Restore", "Processing"),
                Restore,
            ),
            (
                "Should get restoration state, too",
                c().operation("restore").last_op("Create", "Processing"),
                Restore,
            ),
            (
                "Should get delete state when hibernated cluster is marked for deletion",
                c().shoot_deleting()
                    .operation("restore")
                    .hibernation(true)
                    .hibernated(true)
                    .last_op("Reconcile", "Succeeded"),
                Deletion,
            ),
            (
                "Should get delete state when cluster in hibernation cluster is marked for deletion",
                c().shoot_deleting()
                    .operation("migrate")
                    .hibernation(true)
                    .hibernated(false)
                    .in_shoot(&["status", "lastOperation"], json!({ "type": "Reconcile" })),
                Deletion,
            ),
        ]);
    }

    /// The ties and edges of the reference (section 3), one row each.
    #[test]
    fn shoot_state_edges() {
        use ShootState::*;
        let c = || cluster("shoot--p--a");
        let ok = || c().last_op("Reconcile", "Succeeded");
        check_states(&[
            // Rule 1 beats everything.
            (
                "deletion_during_hibernation",
                ok().hibernation(true).hibernated(false).shoot_deleting(),
                Deletion,
            ),
            (
                "deletion_during_creation",
                c().last_op("Create", "Processing").shoot_deleting(),
                Deletion,
            ),
            (
                "deletion_during_migration",
                c().last_op("Migrate", "Processing").shoot_deleting(),
                Deletion,
            ),
            (
                "deletion_timestamp_null_is_not_set",
                ok().in_shoot(&["metadata", "deletionTimestamp"], Value::Null),
                Ready,
            ),
            // Rule 2.
            (
                "migrate_annotation_with_create_processing",
                c().operation("migrate").last_op("Create", "Processing"),
                Migration,
            ),
            (
                "migrate_annotation_with_create_succeeded",
                c().operation("migrate").last_op("Create", "Succeeded"),
                Migration,
            ),
            (
                "migrate_annotation_beats_restore_in_progress",
                c().operation("migrate").last_op("Restore", "Processing"),
                Migration,
            ),
            (
                "migrate_annotation_beats_hibernation",
                ok().operation("migrate").hibernation(true).hibernated(true),
                Migration,
            ),
            (
                "migrate_succeeded_is_not_migration",
                c().last_op("Migrate", "Succeeded"),
                Ready,
            ),
            (
                "migrate_without_state",
                c().in_shoot(&["status", "lastOperation"], json!({ "type": "Migrate" })),
                Migration,
            ),
            (
                "annotation_list_reconcile_migrate_not_recognised",
                ok().operation("reconcile;migrate"),
                Ready,
            ),
            (
                "annotation_capital_migrate_not_recognised",
                ok().operation("Migrate"),
                Ready,
            ),
            (
                "annotation_padded_migrate_not_recognised",
                ok().operation(" migrate"),
                Ready,
            ),
            (
                "annotation_not_a_string_ignored",
                ok().in_shoot(
                    &["metadata", "annotations", OPERATION_ANNOTATION],
                    json!(["migrate"]),
                ),
                Ready,
            ),
            (
                "live_migrate_is_not_migration",
                c().last_op("LiveMigrate", "Processing"),
                Ready,
            ),
            (
                "migrate_type_lowercase_not_recognised",
                c().last_op("migrate", "Processing"),
                Ready,
            ),
            // Rule 3.
            (
                "restore_annotation_with_create_succeeded",
                c().operation("restore").last_op("Create", "Succeeded"),
                Restore,
            ),
            (
                "restore_error_is_restore",
                c().last_op("Restore", "Error"),
                Restore,
            ),
            (
                "restore_succeeded_is_not_restore",
                c().last_op("Restore", "Succeeded"),
                Ready,
            ),
            (
                "restore_succeeded_hibernated_is_hibernated",
                c().last_op("Restore", "Succeeded")
                    .hibernation(true)
                    .hibernated(true),
                Hibernated,
            ),
            (
                "restore_beats_creation",
                c().last_op("Restore", "Pending"),
                Restore,
            ),
            (
                "state_succeeded_lowercase_is_not_succeeded",
                c().last_op("Restore", "succeeded"),
                Restore,
            ),
            // Rule 4.
            ("empty_shoot", c().shoot_is(json!({})), Creation),
            ("no_status", c(), Creation),
            (
                "status_without_last_operation",
                c().hibernated(true),
                Creation,
            ),
            (
                "last_operation_null",
                c().in_shoot(&["status", "lastOperation"], Value::Null),
                Creation,
            ),
            (
                "creation_beats_hibernation",
                c().last_op("Create", "Processing").hibernation(true),
                Creation,
            ),
            (
                "create_without_state",
                c().in_shoot(&["status", "lastOperation"], json!({ "type": "Create" })),
                Creation,
            ),
            (
                "create_failed",
                c().last_op("Create", "Failed"),
                Creation,
            ),
            (
                "last_operation_empty_object_is_present",
                c().in_shoot(&["status", "lastOperation"], json!({})),
                Ready,
            ),
            (
                "create_succeeded_is_ready",
                c().last_op("Create", "Succeeded"),
                Ready,
            ),
            (
                "delete_alone_does_nothing",
                c().last_op("Delete", "Processing"),
                Ready,
            ),
            (
                "delete_during_hibernation_is_hibernating",
                c().last_op("Delete", "Error").hibernation(true),
                Hibernating,
            ),
            // Rules 5-8.
            (
                "create_succeeded_then_hibernation",
                c().last_op("Create", "Succeeded").hibernation(true),
                Hibernating,
            ),
            (
                "hibernation_without_hibernated_field",
                ok().hibernation(true),
                Hibernating,
            ),
            (
                "hibernation_without_enabled",
                ok().in_shoot(
                    &["spec", "hibernation"],
                    json!({ "schedules": [{ "start": "00 20 * * 1,2,3,4,5", "location": "Europe/Berlin" }] }),
                ),
                Ready,
            ),
            (
                "hibernation_without_enabled_but_hibernated_is_waking",
                ok().in_shoot(&["spec", "hibernation"], json!({ "schedules": [] }))
                    .hibernated(true),
                Waking,
            ),
            (
                "hibernation_enabled_null",
                ok().in_shoot(&["spec", "hibernation", "enabled"], Value::Null),
                Ready,
            ),
            (
                "hibernation_enabled_string_true_is_not_true",
                ok().in_shoot(&["spec", "hibernation", "enabled"], json!("true")),
                Ready,
            ),
            (
                "hibernated_without_hibernation_is_waking",
                ok().hibernated(true),
                Waking,
            ),
            (
                "hibernated_string_true_is_not_true",
                ok().in_shoot(&["status", "hibernated"], json!("true")),
                Ready,
            ),
            (
                "hibernation_disabled_not_hibernated",
                ok().hibernation(false).hibernated(false),
                Ready,
            ),
            (
                "reconcile_error_is_ready",
                c().last_op("Reconcile", "Error"),
                Ready,
            ),
            (
                "purpose_development_plays_no_role",
                ok().purpose("development"),
                Ready,
            ),
        ]);
    }

    /// Every state but exactly `Succeeded` counts as unfinished for the
    /// three typed rules.
    #[test]
    fn every_unfinished_state_counts() {
        let states = [
            Some("Processing"),
            Some("Error"),
            Some("Failed"),
            Some("Pending"),
            Some("Aborted"),
            Some(""),
            None,
        ];
        for (kind, want) in [
            ("Create", ShootState::Creation),
            ("Migrate", ShootState::Migration),
            ("Restore", ShootState::Restore),
        ] {
            for state in states {
                let op = match state {
                    Some(state) => json!({ "type": kind, "state": state }),
                    None => json!({ "type": kind }),
                };
                let c = cluster("shoot--p--a").in_shoot(&["status", "lastOperation"], op);
                assert_eq!(shoot_state(&c.shoot()), want, "{kind}/{state:?}");
            }
            let done = cluster("shoot--p--a").last_op(kind, "Succeeded");
            assert_eq!(
                shoot_state(&done.shoot()),
                ShootState::Ready,
                "{kind}/Succeeded"
            );
        }
    }

    /// `spec.purpose` filters in `derive` but plays no part in the state.
    #[test]
    fn purpose_testing_plays_no_role_in_the_state() {
        let c = cluster("shoot--p--a")
            .purpose("testing")
            .last_op("Reconcile", "Succeeded")
            .hibernation(true);
        assert_eq!(shoot_state(&c.shoot()), ShootState::Hibernating);
        assert_eq!(
            derive(&c.0),
            Ok(ClientDecision::NoClient(NoClientReason::PurposeTesting))
        );
    }

    #[test]
    fn shoot_state_of_a_non_object_reads_like_empty() {
        for value in [
            Value::Null,
            json!("shoot"),
            json!([]),
            json!(1),
            json!(true),
        ] {
            assert_eq!(shoot_state(&value), ShootState::Creation, "{value}");
        }
    }

    /// `derive`, one named row each: the reconciler filters, then the state.
    #[test]
    fn derive_table() {
        use ClientDecision::{Client, NoClient};
        use NoClientReason::*;
        let c = || cluster("shoot--p--a").last_op("Reconcile", "Succeeded");
        let rows: Vec<(&str, Cluster, ClientDecision)> = vec![
            ("ready_shoot", c(), Client(ShootState::Ready)),
            (
                "development_shoot",
                c().purpose("development"),
                Client(ShootState::Ready),
            ),
            (
                "hibernated_shoot_keeps_its_client",
                c().purpose("development")
                    .hibernation(true)
                    .hibernated(true),
                Client(ShootState::Hibernated),
            ),
            (
                "deleting_shoot_keeps_its_client",
                c().shoot_deleting(),
                Client(ShootState::Deletion),
            ),
            (
                "deleting_hibernated_shoot_keeps_its_client",
                c().hibernation(true).hibernated(true).shoot_deleting(),
                Client(ShootState::Deletion),
            ),
            (
                "cluster_deleting",
                c().deleting(),
                NoClient(ClusterDeleting),
            ),
            (
                "cluster_deleting_with_deleting_shoot",
                c().shoot_deleting().deleting(),
                NoClient(ClusterDeleting),
            ),
            (
                "cluster_deleting_testing_shoot",
                c().purpose("testing").deleting(),
                NoClient(ClusterDeleting),
            ),
            (
                "cluster_deleting_without_shoot",
                c().without_shoot().deleting(),
                NoClient(ClusterDeleting),
            ),
            (
                "cluster_deletion_timestamp_null",
                c().at(&["metadata", "deletionTimestamp"], Value::Null),
                Client(ShootState::Ready),
            ),
            (
                "purpose_testing",
                c().purpose("testing"),
                NoClient(PurposeTesting),
            ),
            (
                "purpose_testing_deleting_shoot",
                c().purpose("testing").shoot_deleting(),
                NoClient(PurposeTesting),
            ),
            (
                "purpose_testing_in_creation",
                cluster("shoot--p--a").purpose("testing"),
                NoClient(PurposeTesting),
            ),
            (
                "purpose_capital_testing_is_not_testing",
                c().purpose("Testing"),
                Client(ShootState::Ready),
            ),
            (
                "purpose_production",
                c().purpose("production"),
                Client(ShootState::Ready),
            ),
            (
                "purpose_infrastructure",
                c().purpose("infrastructure"),
                Client(ShootState::Ready),
            ),
            ("shoot_absent", c().without_shoot(), NoClient(NoShoot)),
            ("shoot_null", c().shoot_is(Value::Null), NoClient(NoShoot)),
            (
                "spec_absent",
                Cluster(json!({ "metadata": { "name": "shoot--p--a" } })),
                NoClient(NoShoot),
            ),
            (
                "spec_null",
                Cluster(json!({ "metadata": { "name": "shoot--p--a" }, "spec": null })),
                NoClient(NoShoot),
            ),
            ("bare_object", Cluster(json!({})), NoClient(NoShoot)),
            (
                "shoot_empty_object",
                c().shoot_is(json!({})),
                Client(ShootState::Creation),
            ),
            (
                "metadata_not_an_object_is_absent",
                c().at(&["metadata"], json!("x")),
                Client(ShootState::Ready),
            ),
        ];
        let failures: Vec<String> = rows
            .iter()
            .filter_map(|(name, cluster, want)| {
                let got = derive(&cluster.0);
                (got != Ok(*want)).then(|| format!("{name}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn derive_errors() {
        let rows: Vec<(&str, Value, ClusterStateError, &str)> = vec![
            (
                "cluster_null",
                Value::Null,
                ClusterStateError::NotAnObject { found: "null" },
                "cluster_not_object",
            ),
            (
                "cluster_array",
                json!([cluster("shoot--p--a").0]),
                ClusterStateError::NotAnObject { found: "an array" },
                "cluster_not_object",
            ),
            (
                "cluster_string",
                json!("shoot--p--a"),
                ClusterStateError::NotAnObject { found: "a string" },
                "cluster_not_object",
            ),
            (
                "spec_string",
                json!({ "spec": "shoot" }),
                ClusterStateError::SpecNotAnObject { found: "a string" },
                "spec_not_object",
            ),
            (
                "shoot_string",
                cluster("shoot--p--a").shoot_is(json!("a raw shoot")).0,
                ClusterStateError::ShootNotAnObject { found: "a string" },
                "shoot_not_object",
            ),
            (
                "shoot_array",
                cluster("shoot--p--a").shoot_is(json!([])).0,
                ClusterStateError::ShootNotAnObject { found: "an array" },
                "shoot_not_object",
            ),
            (
                "shoot_bool",
                cluster("shoot--p--a").shoot_is(json!(false)).0,
                ClusterStateError::ShootNotAnObject { found: "a boolean" },
                "shoot_not_object",
            ),
            // The plugin decodes the shoot before it looks at the Cluster's
            // deletion: a broken shoot is an error even then.
            (
                "shoot_number_on_deleting_cluster",
                cluster("shoot--p--a").deleting().shoot_is(json!(7)).0,
                ClusterStateError::ShootNotAnObject { found: "a number" },
                "shoot_not_object",
            ),
        ];
        for (name, value, want, kind) in rows {
            let got = derive(&value);
            assert_eq!(got, Err(want.clone()), "{name}");
            assert_eq!(want.kind(), kind, "{name}");
            assert!(
                want.to_string().contains(want_found(&want)),
                "{name}: {want}"
            );
        }
    }

    fn want_found(e: &ClusterStateError) -> &'static str {
        match e {
            ClusterStateError::NotAnObject { found }
            | ClusterStateError::SpecNotAnObject { found }
            | ClusterStateError::ShootNotAnObject { found } => found,
        }
    }

    #[test]
    fn state_names_display_and_serde() {
        let names = [
            "creation",
            "ready",
            "hibernating",
            "hibernated",
            "waking",
            "deletion",
            "migration",
            "restore",
        ];
        for (state, name) in ShootState::ALL.into_iter().zip(names) {
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(serde_json::to_value(state).expect("serialize"), json!(name));
            let back: ShootState = serde_json::from_value(json!(name)).expect("deserialize");
            assert_eq!(back, state);
        }
        assert!(serde_json::from_value::<ShootState>(json!("Ready")).is_err());
        assert!(serde_json::from_value::<ShootState>(json!("deleted")).is_err());
    }

    #[test]
    fn decision_labels() {
        assert_eq!(
            NoClientReason::ClusterDeleting.to_string(),
            "cluster_deleting"
        );
        assert_eq!(NoClientReason::PurposeTesting.as_str(), "purpose_testing");
        assert_eq!(NoClientReason::NoShoot.as_str(), "no_shoot");
        assert_eq!(
            ClientDecision::Client(ShootState::Waking).state(),
            Some(ShootState::Waking)
        );
        assert_eq!(
            ClientDecision::NoClient(NoClientReason::NoShoot).state(),
            None
        );
    }

    /// gardener/logging `tests/e2e/config/cluster.yaml`: a development shoot,
    /// hibernation disabled, last operation Reconcile/Succeeded: ready.
    #[test]
    fn fixture_logging_e2e_cluster_is_ready() {
        let cluster = yaml(&read_fixture("examples/logging-tests-e2e-cluster.yaml"));
        let shoot = &cluster["spec"]["shoot"];
        assert_eq!(shoot["spec"]["purpose"], json!("development"));
        assert_eq!(shoot["spec"]["hibernation"]["enabled"], json!(false));
        assert_eq!(shoot["status"]["lastOperation"]["type"], json!("Reconcile"));
        assert_eq!(
            shoot["status"]["lastOperation"]["state"],
            json!("Succeeded")
        );

        assert_eq!(shoot_state(shoot), ShootState::Ready);
        assert_eq!(
            derive(&cluster),
            Ok(ClientDecision::Client(ShootState::Ready))
        );

        // The same Cluster in the states the reconcile tables move it to.
        let c = Cluster(cluster);
        assert_eq!(
            derive(&c.clone().purpose("testing").0),
            Ok(ClientDecision::NoClient(NoClientReason::PurposeTesting))
        );
        assert_eq!(
            derive(&c.clone().hibernation(true).hibernated(true).0),
            Ok(ClientDecision::Client(ShootState::Hibernated))
        );
        assert_eq!(
            derive(&c.deleting().0),
            Ok(ClientDecision::NoClient(NoClientReason::ClusterDeleting))
        );
    }

    /// gardener/gardener `docs/extensions/cluster.md`: the example Cluster,
    /// "written by Gardener before it starts the reconciliation flow of the
    /// shoot", so its shoot has no last operation yet: creation.
    #[test]
    fn fixture_docs_cluster_is_in_creation() {
        let doc = read_fixture("examples/gardener-docs-extensions-cluster.md");
        let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
        let len = doc[start..].find("```").expect("block end");
        // The block elides each embedded object's body with an indented
        // `...` line, which is not YAML; drop those lines.
        let block: String = doc[start..start + len]
            .lines()
            .filter(|line| line.trim() != "...")
            .map(|line| format!("{line}\n"))
            .collect();
        let cluster = yaml(&block);
        assert_eq!(cluster["kind"], json!("Cluster"));
        assert_eq!(cluster["metadata"]["name"], json!("shoot--foo--bar"));
        assert!(cluster["spec"]["shoot"].is_object());

        assert_eq!(
            derive(&cluster),
            Ok(ClientDecision::Client(ShootState::Creation))
        );
    }

    /// gardener/gardener `example/provider-local/shoot.yaml`, a Shoot as
    /// submitted, embedded in a Cluster and taken through its life.
    #[test]
    fn fixture_provider_local_shoot_through_its_life() {
        use ShootState::*;
        let shoot = yaml(&read_fixture(
            "examples/gardener-example-provider-local-shoot.yaml",
        ));
        assert_eq!(shoot["kind"], json!("Shoot"));
        assert!(shoot.get("status").is_none());
        assert_eq!(shoot_state(&shoot), Creation);

        let c = cluster("shoot--local--local").shoot_is(shoot);
        let steps: Vec<(&str, Cluster, ShootState)> = vec![
            ("submitted", c.clone(), Creation),
            (
                "creating",
                c.clone().last_op("Create", "Processing"),
                Creation,
            ),
            ("created", c.clone().last_op("Create", "Succeeded"), Ready),
            (
                "hibernation_requested",
                c.clone()
                    .last_op("Reconcile", "Processing")
                    .hibernation(true),
                Hibernating,
            ),
            (
                "hibernated",
                c.clone()
                    .last_op("Reconcile", "Succeeded")
                    .hibernation(true)
                    .hibernated(true),
                Hibernated,
            ),
            (
                "wake_up_requested",
                c.clone()
                    .last_op("Reconcile", "Processing")
                    .hibernation(false)
                    .hibernated(true),
                Waking,
            ),
            (
                "awake",
                c.clone()
                    .last_op("Reconcile", "Succeeded")
                    .hibernation(false)
                    .hibernated(false),
                Ready,
            ),
            (
                "migrate_requested",
                c.clone()
                    .last_op("Reconcile", "Succeeded")
                    .operation("migrate"),
                Migration,
            ),
            (
                "migrating",
                c.clone().last_op("Migrate", "Processing"),
                Migration,
            ),
            (
                "restoring",
                c.clone().last_op("Restore", "Processing"),
                Restore,
            ),
            ("restored", c.clone().last_op("Restore", "Succeeded"), Ready),
            (
                "deleting",
                c.clone().last_op("Delete", "Processing").shoot_deleting(),
                Deletion,
            ),
        ];
        check_states(&steps);
        assert_eq!(
            derive(
                &c.clone()
                    .last_op("Delete", "Processing")
                    .shoot_deleting()
                    .deleting()
                    .0
            ),
            Ok(ClientDecision::NoClient(NoClientReason::ClusterDeleting))
        );
    }

    /// Both upstream CRDs make `spec.shoot` a required object: from the API
    /// server there is always a shoot object, so `NoShoot` and the errors
    /// only come from files.
    #[test]
    fn fixture_crds_require_an_object_shoot() {
        for rel in [
            "crds/10-crd-extensions.gardener.cloud_clusters.yaml",
            "crds/logging-tests-e2e-cluster-crd.yaml",
        ] {
            let crd = yaml(&read_fixture(rel));
            assert_eq!(crd["spec"]["names"]["kind"], json!("Cluster"), "{rel}");
            assert_eq!(crd["spec"]["scope"], json!("Cluster"), "{rel}");
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            assert!(
                schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("spec"))),
                "{rel}"
            );
            let spec = &schema["properties"]["spec"];
            assert_eq!(spec["type"], json!("object"), "{rel}");
            assert!(
                spec["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("shoot"))),
                "{rel}"
            );
            let shoot = &spec["properties"]["shoot"];
            assert_eq!(shoot["type"], json!("object"), "{rel}");
            assert_eq!(
                shoot["x-kubernetes-preserve-unknown-fields"],
                json!(true),
                "{rel}"
            );
        }
    }
}

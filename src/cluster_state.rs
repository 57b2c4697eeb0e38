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
mod tests;

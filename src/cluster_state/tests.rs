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

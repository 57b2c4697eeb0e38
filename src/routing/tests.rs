//! Unit tests of the routing snapshot (the state table, the namespace
//! selectors, reloads), of destination names and labels, and of the shoot
//! directory. Destinations carry real queues from a throwaway LMDB store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::shoots::{ClientRefused, ShootCreator, ShootDirectory, ShootLink};
use super::*;
use crate::cluster_state::NoClientReason;
use crate::config::routing::DEFAULT_SHOOT_PATTERN;
use crate::config::{NamespacesConfig, RouteCell, SeedCell};
use crate::store::Store;

// === fixtures ===

/// A store in a temporary directory that hands out destinations.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::scratch_store(dir.path());
        Self { _dir: dir, store }
    }

    fn destination(&self, name: &str, kind: DestinationKind, signal: Signal) -> Arc<Destination> {
        let queue_name = Destination::queue_name_of(kind, name, signal);
        Arc::new(Destination {
            name: name.to_owned(),
            kind,
            signal,
            queue: self.store.queue(&queue_name).unwrap(),
            limits: QueueConfig::default(),
            processors: Arc::default(),
            balance: None,
        })
    }

    fn pipeline(&self, name: &str, signal: Signal) -> Arc<Destination> {
        self.destination(name, DestinationKind::Pipeline, signal)
    }

    /// A shoot client carrying `signals`.
    fn link(&self, namespace: &str, signals: &[Signal]) -> Arc<ShootLink> {
        let mut destinations: [Option<Arc<Destination>>; 3] = Default::default();
        for &s in signals {
            destinations[signal_index(s)] =
                Some(self.destination(namespace, DestinationKind::Shoot, s));
        }
        Arc::new(ShootLink {
            namespace: namespace.to_owned(),
            destinations,
        })
    }
}

fn routing(pattern: &str, states: StateTableConfig) -> RoutingConfig {
    RoutingConfig {
        shoot_namespace_pattern: pattern.to_owned(),
        states,
        ..RoutingConfig::default()
    }
}

fn clusters(entries: &[(&str, ClientDecision)]) -> Arc<Clusters> {
    Arc::new(
        entries
            .iter()
            .map(|(ns, d)| ((*ns).to_owned(), *d))
            .collect(),
    )
}

/// A snapshot without pipelines: enough for `decide`.
fn snapshot(
    pattern: &str,
    states: StateTableConfig,
    shoot_signals: &[Signal],
    entries: &[(&str, ClientDecision)],
) -> Snapshot {
    Snapshot::build(
        &routing(pattern, states),
        [],
        shoot_signals,
        clusters(entries),
    )
    .unwrap()
}

fn decision(state: RouteState, shoot: bool, seed: bool) -> Decision {
    Decision { state, shoot, seed }
}

fn input(
    include: Option<&[&str]>,
    exclude: Option<&[&str]>,
    system: bool,
    no_namespace: bool,
) -> InputConfig {
    let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
    InputConfig {
        namespaces: NamespacesConfig {
            include: include.map(owned),
            exclude: exclude.map(owned),
            system,
        },
        no_namespace,
    }
}

fn names<'a>(destinations: impl Iterator<Item = &'a Arc<Destination>>) -> Vec<&'a str> {
    destinations.map(|d| d.name.as_str()).collect()
}

/// Every cell of the default table flipped.
fn flipped_table() -> StateTableConfig {
    let d = StateTableConfig::default();
    let flip = |c: RouteCell| RouteCell {
        shoot: !c.shoot,
        seed: !c.seed,
    };
    StateTableConfig {
        creation: flip(d.creation),
        ready: flip(d.ready),
        hibernating: flip(d.hibernating),
        hibernated: flip(d.hibernated),
        waking: flip(d.waking),
        deletion: flip(d.deletion),
        migration: flip(d.migration),
        restore: flip(d.restore),
        no_cluster: SeedCell {
            seed: !d.no_cluster.seed,
        },
        no_client: SeedCell {
            seed: !d.no_client.seed,
        },
    }
}

/// The default cells of DESIGN.md, "Cluster states and routing":
/// (state, shoot backend, seed pipelines).
const DESIGN_TABLE: [(ShootState, bool, bool); 8] = [
    (ShootState::Creation, true, true),
    (ShootState::Ready, true, false),
    (ShootState::Hibernating, false, true),
    (ShootState::Hibernated, false, true),
    (ShootState::Waking, true, false),
    (ShootState::Deletion, true, true),
    (ShootState::Migration, true, true),
    (ShootState::Restore, true, true),
];

/// One shoot namespace per state, `shoot--p--<state>`.
fn one_shoot_per_state() -> Vec<(String, ClientDecision)> {
    ShootState::ALL
        .iter()
        .map(|&s| (format!("shoot--p--{s}"), ClientDecision::Client(s)))
        .collect()
}

fn borrowed(entries: &[(String, ClientDecision)]) -> Vec<(&str, ClientDecision)> {
    entries.iter().map(|(ns, d)| (ns.as_str(), *d)).collect()
}

// === decide ===

#[test]
fn design_table_covers_every_state_once() {
    let states: Vec<_> = DESIGN_TABLE.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(states, ShootState::ALL, "one row per state, in order");
}

#[test]
fn default_table_routes_every_shoot_state_as_designed() {
    let entries = one_shoot_per_state();
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &[Signal::Logs],
        &borrowed(&entries),
    );
    for (state, shoot, seed) in DESIGN_TABLE {
        let ns = format!("shoot--p--{state}");
        assert_eq!(
            snap.decide(Signal::Logs, Some(&ns)),
            decision(RouteState::Shoot(state), shoot, seed),
            "{state}"
        );
    }
}

#[test]
fn shoot_namespace_without_cluster_goes_to_the_seed_only() {
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &[Signal::Logs],
        &[("shoot--p--other", ClientDecision::Client(ShootState::Ready))],
    );
    for ns in ["shoot--p--a", "shoot--", "shoot--x"] {
        assert_eq!(
            snap.decide(Signal::Logs, Some(ns)),
            decision(RouteState::NoCluster, false, true),
            "{ns}"
        );
    }
}

#[test]
fn cluster_without_client_goes_to_the_seed_only() {
    for reason in [
        NoClientReason::ClusterDeleting,
        NoClientReason::PurposeTesting,
        NoClientReason::NoShoot,
    ] {
        let snap = snapshot(
            DEFAULT_SHOOT_PATTERN,
            StateTableConfig::default(),
            &[Signal::Logs],
            &[("shoot--p--a", ClientDecision::NoClient(reason))],
        );
        assert_eq!(
            snap.decide(Signal::Logs, Some("shoot--p--a")),
            decision(RouteState::NoClient, false, true),
            "{reason}"
        );
    }
}

#[test]
fn non_shoot_namespaces_and_no_key_go_to_the_seed_only() {
    // A cluster entry under a non-shoot name changes nothing: the pattern
    // decides first.
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &Signal::ALL,
        &[
            ("garden", ClientDecision::Client(ShootState::Ready)),
            ("kube-system", ClientDecision::Client(ShootState::Ready)),
        ],
    );
    let keys: [Option<&str>; 8] = [
        None,
        Some("garden"),
        Some("kube-system"),
        Some("default"),
        Some(""),
        Some("shoot-p-a"),      // one dash: not `shoot--`
        Some("my-shoot--p--a"), // the pattern is anchored
        Some("Shoot--p--a"),    // and case-sensitive
    ];
    for signal in Signal::ALL {
        for key in keys {
            assert_eq!(
                snap.decide(signal, key),
                decision(RouteState::None, false, true),
                "{signal:?} {key:?}"
            );
        }
    }
}

#[test]
fn signal_not_carried_by_shoot_clients_routes_by_the_no_cluster_row() {
    let entries = one_shoot_per_state();
    let mut entries = borrowed(&entries);
    entries.push((
        "shoot--p--testing",
        ClientDecision::NoClient(NoClientReason::PurposeTesting),
    ));
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &[Signal::Logs],
        &entries,
    );
    for signal in [Signal::Metrics, Signal::Traces] {
        for (ns, _) in &entries {
            assert_eq!(
                snap.decide(signal, Some(*ns)),
                decision(RouteState::NoCluster, false, true),
                "{signal:?} {ns}"
            );
        }
    }
    // The no_cluster row, not a fixed answer: with it flipped the block
    // goes nowhere.
    let mut table = StateTableConfig::default();
    table.no_cluster.seed = false;
    let snap = snapshot(DEFAULT_SHOOT_PATTERN, table, &[Signal::Logs], &entries);
    assert_eq!(
        snap.decide(Signal::Metrics, Some("shoot--p--ready")),
        decision(RouteState::NoCluster, false, false)
    );
    assert_eq!(
        snap.decide(Signal::Logs, Some("shoot--p--ready")),
        decision(RouteState::Shoot(ShootState::Ready), true, false),
        "logs are still carried"
    );
}

#[test]
fn without_shoot_clients_every_shoot_namespace_is_no_cluster() {
    // No `shoots` block: no signal is carried by shoot clients.
    let entries = one_shoot_per_state();
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &[],
        &borrowed(&entries),
    );
    for signal in Signal::ALL {
        for (ns, _) in &entries {
            assert_eq!(
                snap.decide(signal, Some(ns.as_str())),
                decision(RouteState::NoCluster, false, true),
                "{signal:?} {ns}"
            );
        }
    }
}

#[test]
fn shoot_signals_are_honoured_per_signal() {
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        StateTableConfig::default(),
        &[Signal::Metrics, Signal::Traces],
        &[("shoot--p--a", ClientDecision::Client(ShootState::Creation))],
    );
    let creation = decision(RouteState::Shoot(ShootState::Creation), true, true);
    let no_cluster = decision(RouteState::NoCluster, false, true);
    for (signal, expected) in [
        (Signal::Logs, no_cluster),
        (Signal::Metrics, creation),
        (Signal::Traces, creation),
    ] {
        assert_eq!(
            snap.decide(signal, Some("shoot--p--a")),
            expected,
            "{signal:?}"
        );
    }
}

#[test]
fn custom_table_cells_are_honoured() {
    let table = flipped_table();
    let mut entries = one_shoot_per_state();
    entries.push((
        "shoot--p--noclient".to_owned(),
        ClientDecision::NoClient(NoClientReason::ClusterDeleting),
    ));
    let snap = snapshot(
        DEFAULT_SHOOT_PATTERN,
        table,
        &[Signal::Logs],
        &borrowed(&entries),
    );
    for (state, shoot, seed) in DESIGN_TABLE {
        let ns = format!("shoot--p--{state}");
        assert_eq!(
            snap.decide(Signal::Logs, Some(&ns)),
            decision(RouteState::Shoot(state), !shoot, !seed),
            "{state}"
        );
    }
    assert_eq!(
        snap.decide(Signal::Logs, Some("shoot--p--noclient")),
        decision(RouteState::NoClient, false, false)
    );
    assert_eq!(
        snap.decide(Signal::Logs, Some("shoot--p--unknown")),
        decision(RouteState::NoCluster, false, false)
    );
    // Rows for shoot namespaces only: the rest still goes to the seed.
    assert_eq!(
        snap.decide(Signal::Logs, Some("garden")),
        decision(RouteState::None, false, true)
    );
    assert_eq!(
        snap.decide(Signal::Logs, None),
        decision(RouteState::None, false, true)
    );
}

#[test]
fn each_state_reads_its_own_cell() {
    // Flip one cell at a time: only that state's decision changes, so no
    // two states share a cell by mistake.
    let entries = one_shoot_per_state();
    let entries = borrowed(&entries);
    for (flipped, _, _) in DESIGN_TABLE {
        let mut table = StateTableConfig::default();
        let all = flipped_table();
        match flipped {
            ShootState::Creation => table.creation = all.creation,
            ShootState::Ready => table.ready = all.ready,
            ShootState::Hibernating => table.hibernating = all.hibernating,
            ShootState::Hibernated => table.hibernated = all.hibernated,
            ShootState::Waking => table.waking = all.waking,
            ShootState::Deletion => table.deletion = all.deletion,
            ShootState::Migration => table.migration = all.migration,
            ShootState::Restore => table.restore = all.restore,
        }
        let snap = snapshot(DEFAULT_SHOOT_PATTERN, table, &[Signal::Logs], &entries);
        for (state, shoot, seed) in DESIGN_TABLE {
            let ns = format!("shoot--p--{state}");
            let expected = if state == flipped {
                decision(RouteState::Shoot(state), !shoot, !seed)
            } else {
                decision(RouteState::Shoot(state), shoot, seed)
            };
            assert_eq!(
                snap.decide(Signal::Logs, Some(&ns)),
                expected,
                "{flipped} flipped, {state}"
            );
        }
    }
}

#[test]
fn no_cluster_and_no_client_rows_are_read_separately() {
    let entries = [(
        "shoot--p--testing",
        ClientDecision::NoClient(NoClientReason::PurposeTesting),
    )];
    for (no_cluster, no_client) in [(false, true), (true, false), (false, false)] {
        let mut table = StateTableConfig::default();
        table.no_cluster.seed = no_cluster;
        table.no_client.seed = no_client;
        let snap = snapshot(DEFAULT_SHOOT_PATTERN, table, &[Signal::Logs], &entries);
        assert_eq!(
            snap.decide(Signal::Logs, Some("shoot--p--unknown")),
            decision(RouteState::NoCluster, false, no_cluster),
            "no_cluster {no_cluster}, no_client {no_client}"
        );
        assert_eq!(
            snap.decide(Signal::Logs, Some("shoot--p--testing")),
            decision(RouteState::NoClient, false, no_client),
            "no_cluster {no_cluster}, no_client {no_client}"
        );
    }
}

#[test]
fn custom_shoot_pattern_is_honoured() {
    let snap = snapshot(
        "^tenant-",
        StateTableConfig::default(),
        &[Signal::Logs],
        &[
            ("tenant-a", ClientDecision::Client(ShootState::Ready)),
            ("shoot--p--a", ClientDecision::Client(ShootState::Ready)),
        ],
    );
    let cases: [(Option<&str>, Decision); 5] = [
        (
            Some("tenant-a"),
            decision(RouteState::Shoot(ShootState::Ready), true, false),
        ),
        (
            Some("tenant-b"),
            decision(RouteState::NoCluster, false, true),
        ),
        // No longer a shoot namespace, whatever the clusters say.
        (Some("shoot--p--a"), decision(RouteState::None, false, true)),
        (Some("my-tenant-a"), decision(RouteState::None, false, true)),
        (None, decision(RouteState::None, false, true)),
    ];
    for (key, expected) in cases {
        assert_eq!(snap.decide(Signal::Logs, key), expected, "{key:?}");
    }
}

#[test]
fn an_invalid_shoot_pattern_is_an_error() {
    let bad = routing("^shoot--(", StateTableConfig::default());
    assert!(Snapshot::build(&bad, [], &[Signal::Logs], Arc::default()).is_err());
    let good = Snapshot::default();
    assert!(good.rebuild(&bad, Arc::default()).is_err());
}

#[test]
fn default_snapshot_uses_the_default_pattern_and_no_shoot_clients() {
    let snap = Snapshot::default();
    assert!(snap.keys.is_empty());
    assert_eq!(snap.destinations().count(), 0);
    assert_eq!(
        snap.decide(Signal::Logs, Some("shoot--p--a")),
        decision(RouteState::NoCluster, false, true)
    );
    assert_eq!(
        snap.decide(Signal::Logs, Some("garden")),
        decision(RouteState::None, false, true)
    );
}

// === seed_destinations ===

#[test]
fn seed_destinations_follow_each_pipeline_selector() {
    let f = Fixture::new();
    let pipelines = [
        // Every namespace but the system ones, and blocks without a key.
        ("default", input(None, None, false, true)),
        (
            "include",
            input(Some(&["garden", "kube-system"]), None, false, true),
        ),
        ("exclude", input(None, Some(&["garden"]), false, true)),
        ("system", input(None, None, true, true)),
        ("exclude-system", input(None, Some(&["garden"]), true, true)),
        ("keyed-only", input(None, None, false, false)),
        (
            "include-keyed-only",
            input(Some(&["garden"]), None, false, false),
        ),
    ];
    let seeds = pipelines
        .iter()
        .map(|(name, input)| SeedRoute::new(f.pipeline(name, Signal::Logs), input));
    let snap = Snapshot::build(&RoutingConfig::default(), seeds, &[], Arc::default()).unwrap();

    let cases: [(Option<&str>, &[&str]); 7] = [
        (
            None,
            &["default", "include", "exclude", "system", "exclude-system"],
        ),
        (
            Some("garden"),
            &[
                "default",
                "include",
                "system",
                "keyed-only",
                "include-keyed-only",
            ],
        ),
        (
            Some("kube-system"),
            &["include", "system", "exclude-system"],
        ),
        (Some("istio-system"), &["system", "exclude-system"]),
        (Some("kyma-system"), &["system", "exclude-system"]),
        (
            Some("shoot--p--a"),
            &[
                "default",
                "exclude",
                "system",
                "exclude-system",
                "keyed-only",
            ],
        ),
        (
            Some("kube-public"),
            &[
                "default",
                "exclude",
                "system",
                "exclude-system",
                "keyed-only",
            ],
        ),
    ];
    for (key, expected) in cases {
        assert_eq!(
            names(snap.seed_destinations(Signal::Logs, key)),
            expected,
            "{key:?} (in pipeline order)"
        );
    }
}

#[test]
fn compiled_selectors_agree_with_the_config_rule() {
    // `Selector` is documented to mean what `NamespacesConfig::matches`
    // means; check it over a grid of selectors and namespaces.
    let f = Fixture::new();
    let lists: [Option<&[&str]>; 3] = [None, Some(&["garden"]), Some(&["garden", "kube-system"])];
    let namespaces = [
        "garden",
        "kube-system",
        "kyma-system",
        "istio-system",
        "compass-system",
        "shoot--p--a",
        "default",
    ];
    let dest = f.pipeline("p", Signal::Logs);
    for include in lists {
        for exclude in lists {
            if include.is_some() && exclude.is_some() {
                continue; // refused by validation
            }
            for system in [false, true] {
                let input = input(include, exclude, system, true);
                let snap = Snapshot::build(
                    &RoutingConfig::default(),
                    [SeedRoute::new(Arc::clone(&dest), &input)],
                    &[],
                    Arc::default(),
                )
                .unwrap();
                for ns in namespaces {
                    assert_eq!(
                        snap.seed_destinations(Signal::Logs, Some(ns)).count() == 1,
                        input.namespaces.matches(ns),
                        "{:?} {ns}",
                        input.namespaces
                    );
                }
            }
        }
    }
}

#[test]
fn a_pipeline_only_gets_the_signals_it_has() {
    let f = Fixture::new();
    let all = InputConfig::default();
    let only_garden = input(Some(&["garden"]), None, false, false);
    let seeds = [
        SeedRoute::new(f.pipeline("logs-metrics", Signal::Logs), &all),
        SeedRoute::new(f.pipeline("traces", Signal::Traces), &all),
        SeedRoute::new(f.pipeline("logs-metrics", Signal::Metrics), &all),
        SeedRoute::new(f.pipeline("garden-logs", Signal::Logs), &only_garden),
        SeedRoute::new(f.pipeline("garden-traces", Signal::Traces), &only_garden),
    ];
    let snap = Snapshot::build(&RoutingConfig::default(), seeds, &[], Arc::default()).unwrap();

    let cases: [(Signal, Option<&str>, &[&str]); 9] = [
        (
            Signal::Logs,
            Some("garden"),
            &["logs-metrics", "garden-logs"],
        ),
        (Signal::Logs, Some("shoot--p--a"), &["logs-metrics"]),
        (Signal::Logs, None, &["logs-metrics"]),
        (Signal::Metrics, Some("garden"), &["logs-metrics"]),
        (Signal::Metrics, Some("shoot--p--a"), &["logs-metrics"]),
        (Signal::Metrics, None, &["logs-metrics"]),
        (Signal::Traces, Some("garden"), &["traces", "garden-traces"]),
        (Signal::Traces, Some("shoot--p--a"), &["traces"]),
        (Signal::Traces, None, &["traces"]),
    ];
    for (signal, key, expected) in cases {
        let got: Vec<_> = snap.seed_destinations(signal, key).collect();
        assert_eq!(names(got.iter().copied()), expected, "{signal:?} {key:?}");
        assert!(
            got.iter().all(|d| d.signal == signal),
            "{signal:?} {key:?}: a destination of another signal"
        );
    }
    assert_eq!(snap.destinations().count(), 5);
}

#[test]
fn seed_destinations_do_not_look_at_the_state_table() {
    // A ready shoot's decision says "not to the seed"; which pipelines
    // would take it is still answered (ingest asks only when `seed`).
    let f = Fixture::new();
    let seeds = [SeedRoute::new(
        f.pipeline("all", Signal::Logs),
        &InputConfig::default(),
    )];
    let snap = Snapshot::build(
        &RoutingConfig::default(),
        seeds,
        &[Signal::Logs],
        clusters(&[("shoot--p--a", ClientDecision::Client(ShootState::Ready))]),
    )
    .unwrap();
    assert!(!snap.decide(Signal::Logs, Some("shoot--p--a")).seed);
    assert_eq!(
        names(snap.seed_destinations(Signal::Logs, Some("shoot--p--a"))),
        ["all"]
    );
}

#[test]
fn new_takes_non_system_namespaces_and_no_key_without_shoot_routing() {
    let f = Fixture::new();
    let logs = f.pipeline("a", Signal::Logs);
    let traces = f.pipeline("a", Signal::Traces);
    let snap = Snapshot::new(
        vec!["k8s.namespace.name".to_owned()],
        [Arc::clone(&logs), Arc::clone(&traces)],
    );
    assert_eq!(snap.keys, ["k8s.namespace.name"]);
    for key in [None, Some("garden"), Some("shoot--p--a")] {
        let got: Vec<_> = snap.seed_destinations(Signal::Logs, key).collect();
        assert_eq!(got.len(), 1, "{key:?}");
        assert!(Arc::ptr_eq(got[0], &logs));
        assert_eq!(snap.seed_destinations(Signal::Metrics, key).count(), 0);
    }
    assert_eq!(
        snap.decide(Signal::Logs, Some("shoot--p--a")),
        decision(RouteState::NoCluster, false, true)
    );
}

// === rebuild ===

#[test]
fn rebuild_keeps_the_pipelines_but_takes_new_rules_and_clusters() {
    let f = Fixture::new();
    let seeds = [
        SeedRoute::new(f.pipeline("all", Signal::Logs), &InputConfig::default()),
        SeedRoute::new(
            f.pipeline("garden", Signal::Logs),
            &input(Some(&["garden"]), None, false, false),
        ),
        SeedRoute::new(f.pipeline("all", Signal::Metrics), &InputConfig::default()),
    ];
    let old = Snapshot::build(
        &RoutingConfig::default(),
        seeds,
        &[Signal::Logs],
        clusters(&[("shoot--p--a", ClientDecision::Client(ShootState::Ready))]),
    )
    .unwrap();

    let states = StateTableConfig {
        ready: RouteCell {
            shoot: false,
            seed: true,
        },
        ..StateTableConfig::default()
    };
    let new_routing = RoutingConfig {
        keys: vec!["tenant".to_owned(), "k8s.namespace.name".to_owned()],
        shoot_namespace_pattern: "^(shoot|tenant)--".to_owned(),
        states,
    };
    let new_clusters = clusters(&[
        (
            "shoot--p--b",
            ClientDecision::Client(ShootState::Hibernated),
        ),
        ("tenant--c", ClientDecision::Client(ShootState::Ready)),
    ]);
    let new = old
        .rebuild(&new_routing, Arc::clone(&new_clusters))
        .unwrap();

    // New keys, clusters, pattern and table.
    assert_eq!(new.keys, new_routing.keys);
    assert!(Arc::ptr_eq(new.clusters(), &new_clusters));
    assert_eq!(
        new.decide(Signal::Logs, Some("shoot--p--a")),
        decision(RouteState::NoCluster, false, true),
        "the old cluster is gone"
    );
    assert_eq!(
        new.decide(Signal::Logs, Some("shoot--p--b")),
        decision(RouteState::Shoot(ShootState::Hibernated), false, true)
    );
    assert_eq!(
        new.decide(Signal::Logs, Some("tenant--c")),
        decision(RouteState::Shoot(ShootState::Ready), false, true),
        "new pattern and new ready cell"
    );
    // The same shoot signals: metrics still have no shoot clients.
    assert_eq!(
        new.decide(Signal::Metrics, Some("tenant--c")),
        decision(RouteState::NoCluster, false, true)
    );
    // The same pipeline destinations (the same queues), with their selectors.
    let old_d: Vec<_> = old.destinations().collect();
    let new_d: Vec<_> = new.destinations().collect();
    assert_eq!(old_d.len(), 3);
    assert_eq!(old_d.len(), new_d.len());
    for (o, n) in old_d.iter().zip(&new_d) {
        assert!(Arc::ptr_eq(o, n), "{}", o.name);
    }
    assert_eq!(
        names(new.seed_destinations(Signal::Logs, Some("garden"))),
        ["all", "garden"]
    );
    assert_eq!(names(new.seed_destinations(Signal::Logs, None)), ["all"]);
    assert_eq!(names(new.seed_destinations(Signal::Metrics, None)), ["all"]);
    // The old snapshot is untouched.
    assert_eq!(
        old.decide(Signal::Logs, Some("shoot--p--a")),
        decision(RouteState::Shoot(ShootState::Ready), true, false)
    );
}

// === destinations, labels ===

#[test]
fn shoot_queue_names_round_trip() {
    for ns in ["shoot--p--a", "shoot--garden--x-y-z", "tenant-1", "a"] {
        for signal in Signal::ALL {
            let name = Destination::shoot_queue_name(ns, signal);
            assert_eq!(name, format!("shoot/{ns}/{}", signal.as_str()));
            assert_eq!(Destination::shoot_of_queue(&name), Some(ns), "{name}");
        }
    }
    for not_shoot in [
        Destination::queue_name("p", Signal::Logs).as_str(),
        Destination::queue_name("shoot", Signal::Logs).as_str(),
        "shoot/",
        "shoot/no-signal",
        "shootx/a/logs",
        "",
    ] {
        assert_eq!(Destination::shoot_of_queue(not_shoot), None, "{not_shoot}");
    }
    assert_eq!(
        Destination::queue_name("seed-logs", Signal::Traces),
        "pipeline/seed-logs/traces"
    );
}

#[test]
fn metrics_label_is_the_pipeline_name_or_shoot() {
    let f = Fixture::new();
    let pipeline = f.pipeline("seed-logs", Signal::Logs);
    assert_eq!(pipeline.metrics_label(), "seed-logs");
    for ns in ["shoot--p--a", "shoot--p--b"] {
        let shoot = f.destination(ns, DestinationKind::Shoot, Signal::Logs);
        assert_eq!(shoot.metrics_label(), "shoot", "bounded, not {ns}");
    }
    assert_eq!(DestinationKind::Pipeline.as_str(), "seed");
    assert_eq!(DestinationKind::Shoot.as_str(), "shoot");
}

#[test]
fn route_state_labels_are_distinct_and_complete() {
    let labels: Vec<_> = RouteState::all().map(RouteState::as_str).collect();
    assert_eq!(&labels[..3], ["none", "no_cluster", "no_client"]);
    let states: Vec<_> = ShootState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(&labels[3..], states);
    let distinct: HashSet<_> = labels.iter().collect();
    assert_eq!(distinct.len(), labels.len(), "{labels:?}");
}

#[test]
fn signal_index_is_a_bijection_onto_the_arrays() {
    let idx: Vec<_> = Signal::ALL.into_iter().map(signal_index).collect();
    assert_eq!(idx, [0, 1, 2]);
}

// === shoot directory ===

#[test]
fn shoot_directory_insert_get_remove_len() {
    let f = Fixture::new();
    let dir = ShootDirectory::default();
    assert!(dir.is_empty());
    assert_eq!(dir.len(), 0);
    assert!(dir.get("shoot--p--a").is_none());
    assert!(dir.remove("shoot--p--a").is_none());

    let a = f.link("shoot--p--a", &[Signal::Logs]);
    let b = f.link("shoot--p--b", &[Signal::Logs, Signal::Traces]);
    dir.insert(Arc::clone(&a));
    dir.insert(Arc::clone(&b));
    assert_eq!(dir.len(), 2);
    assert!(!dir.is_empty());
    assert!(Arc::ptr_eq(&dir.get("shoot--p--a").unwrap(), &a));
    assert!(Arc::ptr_eq(&dir.get("shoot--p--b").unwrap(), &b));
    assert!(dir.get("shoot--p--c").is_none());
    let mut all: Vec<_> = dir.all().iter().map(|l| l.namespace.clone()).collect();
    all.sort();
    assert_eq!(all, ["shoot--p--a", "shoot--p--b"]);

    // A link's destinations, per signal.
    let got = dir.get("shoot--p--b").unwrap();
    assert_eq!(got.destination(Signal::Logs).unwrap().signal, Signal::Logs);
    assert!(got.destination(Signal::Metrics).is_none());
    assert_eq!(
        got.destination(Signal::Traces).unwrap().kind,
        DestinationKind::Shoot
    );
    assert_eq!(got.all().count(), 2);

    // Inserting the same namespace replaces its link.
    let a2 = f.link("shoot--p--a", &[Signal::Logs]);
    dir.insert(Arc::clone(&a2));
    assert_eq!(dir.len(), 2);
    assert!(Arc::ptr_eq(&dir.get("shoot--p--a").unwrap(), &a2));

    let removed = dir.remove("shoot--p--a").unwrap();
    assert!(Arc::ptr_eq(&removed, &a2));
    assert_eq!(dir.len(), 1);
    assert!(dir.get("shoot--p--a").is_none());
    assert!(dir.remove("shoot--p--a").is_none());
    assert!(dir.remove("shoot--p--b").is_some());
    assert!(dir.is_empty());
}

#[test]
fn a_loaded_map_is_not_changed_by_later_writes() {
    // The hot path holds what `get` returned; the manager's writes swap in
    // a new map and leave that link alone.
    let f = Fixture::new();
    let dir = ShootDirectory::default();
    let a = f.link("shoot--p--a", &[Signal::Logs]);
    dir.insert(Arc::clone(&a));
    let held = dir.get("shoot--p--a").unwrap();
    dir.remove("shoot--p--a");
    assert!(Arc::ptr_eq(&held, &a));
    assert!(held.destination(Signal::Logs).is_some());
}

/// A creator that counts its calls and answers with a link (which it
/// does not insert: that is the manager's job) or a refusal.
#[derive(Debug)]
struct CountingCreator {
    calls: AtomicUsize,
    answer: Result<Arc<ShootLink>, ClientRefused>,
}

impl CountingCreator {
    fn new(answer: Result<Arc<ShootLink>, ClientRefused>) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ShootCreator for CountingCreator {
    fn create(
        &self,
        namespace: String,
    ) -> BoxFuture<'static, Result<Arc<ShootLink>, ClientRefused>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.clone();
        async move {
            let link = answer?;
            assert_eq!(link.namespace, namespace, "asked for the right namespace");
            Ok(link)
        }
        .boxed()
    }
}

#[tokio::test]
async fn get_or_create_without_a_creator_is_not_running() {
    let dir = ShootDirectory::default();
    let err = dir.get_or_create("shoot--p--a").await.unwrap_err();
    assert_eq!(err, ClientRefused::NotRunning);
    assert_eq!(err.kind(), "not_running");
}

#[tokio::test]
async fn get_or_create_asks_the_creator_only_on_a_miss() {
    let f = Fixture::new();
    let link = f.link("shoot--p--a", &[Signal::Logs]);
    let creator = CountingCreator::new(Ok(Arc::clone(&link)));
    let dir = ShootDirectory::default();
    dir.set_creator(Arc::clone(&creator) as Arc<dyn ShootCreator>);

    let got = dir.get_or_create("shoot--p--a").await.unwrap();
    assert!(Arc::ptr_eq(&got, &link));
    assert_eq!(creator.calls(), 1);
    assert!(
        dir.is_empty(),
        "the directory does not insert; the manager does"
    );

    // Once the manager inserted it, a hit does not ask again.
    dir.insert(Arc::clone(&link));
    for _ in 0..3 {
        let got = dir.get_or_create("shoot--p--a").await.unwrap();
        assert!(Arc::ptr_eq(&got, &link));
    }
    assert_eq!(creator.calls(), 1);
}

#[tokio::test]
async fn get_or_create_passes_a_refusal_on() {
    let creator = CountingCreator::new(Err(ClientRefused::AtCapacity { max: 3 }));
    let dir = ShootDirectory::default();
    dir.set_creator(Arc::clone(&creator) as Arc<dyn ShootCreator>);
    let err = dir.get_or_create("shoot--p--a").await.unwrap_err();
    assert_eq!(err, ClientRefused::AtCapacity { max: 3 });
    assert_eq!(err.kind(), "at_capacity");
    assert_eq!(creator.calls(), 1);
    assert_eq!(ClientRefused::Build("x".to_owned()).kind(), "build_failed");
}

#[tokio::test]
async fn the_first_creator_set_is_kept() {
    let f = Fixture::new();
    let link = f.link("shoot--p--a", &[Signal::Logs]);
    let first = CountingCreator::new(Ok(link));
    let second = CountingCreator::new(Err(ClientRefused::NotRunning));
    let dir = ShootDirectory::default();
    dir.set_creator(Arc::clone(&first) as Arc<dyn ShootCreator>);
    dir.set_creator(Arc::clone(&second) as Arc<dyn ShootCreator>);
    assert!(dir.get_or_create("shoot--p--a").await.is_ok());
    assert_eq!((first.calls(), second.calls()), (1, 0));
}

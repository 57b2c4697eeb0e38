//! The cost of routing one request against many shoots: what
//! `Ingest::export` does before admission, with 10, 100, 1 000 and 10 000
//! shoots known to the routing snapshot (its `Cluster` map) and to the shoot
//! directory (one client each).
//!
//! The request: one logs request of 100 records of about 300 bytes in 10
//! resource blocks, one per shoot namespace; those 10 shoots are spread over
//! the n known ones. One iteration is `proto::scan`, then per block
//! `Snapshot::decide`, the matching `Snapshot::seed_destinations` when the
//! decision says seed, and `ShootDirectory::get` + `ShootLink::destination`
//! when it says shoot, collecting the destinations as `export` does.
//! Throughput is reported in blocks (elements) per second.
//!
//! Groups: every shoot `ready` (shoot client only: the common case) and
//! every shoot in `creation` (shoot client and seed pipelines, so the
//! selectors run too); each as `route_logs_10_blocks` (scan + route, the
//! routine above) and `route_only_10_blocks` (the same blocks scanned once
//! outside the loop, so the scan, which does not depend on n, does not
//! hide what does).
//!
//! What to look for: the time per iteration must stay flat across n. Every
//! per-block step is a hash lookup (clusters, directory, selector sets) or a
//! pattern match on the namespace, so 10 000 shoots cost what 10 do (give
//! or take cache misses in bigger maps); a linear scan over the shoots would
//! show up here as a time that grows with n.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use seedgate::cluster_state::{ClientDecision, ShootState};
use seedgate::config::{Durability, InputConfig, NamespacesConfig, QueueConfig, RoutingConfig};
use seedgate::proto::{self, ScanError};
use seedgate::routing::shoots::{ShootDirectory, ShootLink};
use seedgate::routing::{
    Clusters, Destination, DestinationKind, SeedRoute, Snapshot, signal_index,
};
use seedgate::signal::Signal;
use seedgate::store::{Queue, Store, StoreOptions};
use seedgate::tools::records::{RequestSpec, build_request};

const SIGNAL: Signal = Signal::Logs;
/// Resource blocks in the request, one shoot namespace each.
const BLOCKS: usize = 10;
/// How many shoots the snapshot and the directory know.
const SHOOTS: [usize; 4] = [10, 100, 1_000, 10_000];

fn shoot_namespace(i: usize) -> String {
    format!("shoot--project{}--cluster{i:05}", i % 97)
}

/// The shoots the request carries: spread evenly over the `n` known ones,
/// so a linear scan would not get lucky with the first entries.
fn request_namespaces(n: usize) -> Vec<String> {
    (0..BLOCKS)
        .map(|b| shoot_namespace(b * n / BLOCKS + (n / BLOCKS) / 2))
        .collect()
}

fn destination(
    name: &str,
    kind: DestinationKind,
    signal: Signal,
    queue: Arc<Queue>,
) -> Arc<Destination> {
    Arc::new(Destination {
        name: name.to_owned(),
        kind,
        signal,
        queue,
        limits: QueueConfig::default(),
        processors: Arc::default(),
        balance: None,
    })
}

struct World {
    snapshot: Snapshot,
    directory: ShootDirectory,
}

/// A snapshot and a directory knowing `n` shoots in `state`, with three seed
/// pipelines as a seed would have them.
fn world(store: &Store, shared_shoot_queue: &Arc<Queue>, n: usize, state: ShootState) -> World {
    let pipeline = |name: &str, signal| {
        let queue = store
            .queue(&Destination::queue_name(name, signal))
            .expect("pipeline queue");
        destination(name, DestinationKind::Pipeline, signal, queue)
    };
    let garden_only = InputConfig {
        namespaces: NamespacesConfig {
            include: Some(vec!["garden".to_owned()]),
            ..NamespacesConfig::default()
        },
        no_namespace: false,
    };
    let seeds = [
        SeedRoute::new(pipeline("seed-logs", Signal::Logs), &InputConfig::default()),
        SeedRoute::new(pipeline("garden-logs", Signal::Logs), &garden_only),
        SeedRoute::new(
            pipeline("seed-metrics", Signal::Metrics),
            &InputConfig::default(),
        ),
    ];
    let clusters: Clusters = (0..n)
        .map(|i| (shoot_namespace(i), ClientDecision::Client(state)))
        .collect();
    let snapshot = Snapshot::build(
        &RoutingConfig::default(),
        seeds,
        &[SIGNAL],
        Arc::new(clusters),
    )
    .expect("default routing builds");

    // Every fake shoot client shares one queue: creating 10 000 LMDB queues
    // takes a write transaction each and only routing is measured here; the
    // destinations themselves are distinct, as in production.
    let directory = ShootDirectory::default();
    for i in 0..n {
        let namespace = shoot_namespace(i);
        let mut destinations: [Option<Arc<Destination>>; 3] = Default::default();
        destinations[signal_index(SIGNAL)] = Some(destination(
            &namespace,
            DestinationKind::Shoot,
            SIGNAL,
            Arc::clone(shared_shoot_queue),
        ));
        directory.insert(Arc::new(ShootLink {
            namespace,
            destinations,
        }));
    }
    World {
        snapshot,
        directory,
    }
}

/// What `Ingest::export` does with a request before admission: scan, then
/// route every block. Returns how many destinations the blocks went to.
fn route(world: &World, body: &[u8], out: &mut Vec<Arc<Destination>>) -> Result<usize, ScanError> {
    let blocks = proto::scan(SIGNAL, body, &world.snapshot.keys)?;
    Ok(route_blocks(world, &blocks, out))
}

/// The routing half of [`route`], for already scanned blocks.
fn route_blocks(
    world: &World,
    blocks: &[proto::Block<'_>],
    out: &mut Vec<Arc<Destination>>,
) -> usize {
    out.clear();
    let snapshot = &world.snapshot;
    for block in blocks {
        let decision = snapshot.decide(SIGNAL, block.key);
        if decision.seed {
            out.extend(snapshot.seed_destinations(SIGNAL, block.key).cloned());
        }
        if decision.shoot
            && let Some(ns) = block.key
            && let Some(link) = world.directory.get(ns)
            && let Some(d) = link.destination(SIGNAL)
        {
            out.push(Arc::clone(d));
        }
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = Store::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        map_size: 64 << 20,
        durability: Durability::None,
        max_ops_per_commit: 1024,
    })
    .expect("open store");
    let shared_shoot_queue = store
        .queue(&Destination::shoot_queue_name("bench", SIGNAL))
        .expect("shoot queue");

    // (state, destinations per block: its shoot client, plus `seed-logs`
    // when the state sends to the seed too)
    for (state, per_block) in [(ShootState::Ready, 1), (ShootState::Creation, 2)] {
        let cases: Vec<Case> = SHOOTS
            .into_iter()
            .map(|n| Case::new(&store, &shared_shoot_queue, n, state, per_block))
            .collect();
        let mut out = Vec::with_capacity(2 * BLOCKS);

        let mut group = c.benchmark_group(format!("route_logs_10_blocks/{state}"));
        group.throughput(Throughput::Elements(BLOCKS as u64));
        for case in &cases {
            group.bench_with_input(BenchmarkId::from_parameter(case.n), case, |b, case| {
                b.iter(|| route(&case.world, black_box(&case.body), &mut out))
            });
        }
        group.finish();

        // The same without the scan, which is most of the time above and
        // the same for every n: what is left is the part that could grow.
        let mut group = c.benchmark_group(format!("route_only_10_blocks/{state}"));
        group.throughput(Throughput::Elements(BLOCKS as u64));
        for case in &cases {
            let blocks = proto::scan(SIGNAL, &case.body, &case.world.snapshot.keys).expect("scans");
            group.bench_with_input(BenchmarkId::from_parameter(case.n), case, |b, case| {
                b.iter(|| route_blocks(&case.world, black_box(&blocks), &mut out))
            });
        }
        group.finish();
    }
}

/// One point of a group: `n` shoots and a request for 10 of them.
struct Case {
    n: usize,
    world: World,
    body: Vec<u8>,
}

impl Case {
    fn new(
        store: &Store,
        shared_shoot_queue: &Arc<Queue>,
        n: usize,
        state: ShootState,
        per_block: usize,
    ) -> Self {
        let world = world(store, shared_shoot_queue, n, state);
        assert_eq!(world.directory.len(), n);
        let namespaces = request_namespaces(n);
        let body = build_request(
            SIGNAL,
            &RequestSpec {
                first_seq: 0,
                records: 100,
                namespaces: &namespaces,
                record_size: 300,
                time_unix_nano: 1_700_000_000_000_000_000,
            },
        )
        .encode_to_vec();

        // Fail loudly rather than bench a request that routes nowhere.
        let blocks = proto::scan(SIGNAL, &body, &world.snapshot.keys).expect("scans");
        let keys: Vec<_> = blocks.iter().filter_map(|b| b.key).collect();
        assert_eq!(keys, namespaces, "one block per shoot namespace");
        let mut out = Vec::new();
        assert_eq!(
            route(&world, &body, &mut out).expect("routes"),
            per_block * BLOCKS,
            "{state}"
        );
        assert!(
            out.iter()
                .filter(|d| d.kind == DestinationKind::Shoot)
                .map(|d| d.name.as_str())
                .eq(namespaces.iter().map(String::as_str)),
            "each block to its own shoot client"
        );
        assert!(
            out.iter()
                .filter(|d| d.kind == DestinationKind::Pipeline)
                .all(|d| d.name == "seed-logs"),
            "only the pipeline that takes shoot namespaces"
        );
        Self { n, world, body }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Group commit against one-commit-per-request, through the real writer.
//!
//! K producer threads each append a 30 KiB part (about 100 log records of
//! 300 B) and wait for the reply before sending the next, as receivers do.
//! `group` lets the writer take up to 1024 ops per commit; `single` forces
//! `max_ops_per_commit = 1`, one commit (and with `fsync`, one fsync) per
//! request. Throughput is reported in requests (elements) per second.
//!
//! `queue_create`: 1,000 new queues, each created and given its first
//! entry by one of 16 producers, as 1,000 new shoot clients do on their
//! first records; a queue's name reaches the disk with that entry, so the
//! creations share the writer's group commits. `single` (one commit per
//! first entry) is what creating a queue used to cost: a commit of its own.
//!
//! `store_fanout`: requests of 100 records from 8 producers, each split
//! over 10 of 1,000 queues (a seed's shoots: a part per shoot) or whole to
//! one queue (one destination), while a deleter consumes the queues as
//! deliveries do. Durability `none`, so it measures the writer's CPU per
//! record, which the split multiplies by the parts a record brings.
//!
//! The LMDB directory lives under `CARGO_TARGET_TMPDIR`, on the same file
//! system as the target directory, not on a possibly-tmpfs `/tmp`, so fsync
//! costs what it costs on that disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::Sender;
use seedgate::config::Durability;
use seedgate::store::{AppendPart, Queue, Store, StoreMetrics, StoreOptions, WriteOp};
use tokio::sync::oneshot;

const PART_BYTES: usize = 30 * 1024;
const RECORDS_PER_PART: u32 = 100;

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    tx: Sender<WriteOp>,
    writer: std::thread::JoinHandle<()>,
    queues: Vec<Arc<Queue>>,
}

fn setup(threads: usize, durability: Durability, max_ops_per_commit: usize) -> Setup {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = Store::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        map_size: 4 << 30,
        durability,
        max_ops_per_commit,
    })
    .expect("open store");
    let (tx, rx) = crossbeam_channel::unbounded();
    let writer = store
        .spawn_writer(rx, Arc::new(StoreMetrics::default()))
        .expect("spawn writer");
    let queues = (0..threads)
        .map(|t| store.queue(&format!("bench-{t}")).expect("queue"))
        .collect();
    Setup {
        _dir: dir,
        store,
        tx,
        writer,
        queues,
    }
}

impl Setup {
    /// Stops the writer and closes the store.
    fn close(self) {
        drop(self.tx);
        self.writer.join().expect("writer");
        drop(self.store);
    }
}

/// Reserves and appends one part to `queue`, waiting for its commit, as a
/// receiver does.
fn append_one(tx: &Sender<WriteOp>, queue: Arc<Queue>, records: u32, payload: Bytes) {
    assert!(queue.try_reserve(payload.len() as u64, u64::MAX));
    append(
        tx,
        vec![AppendPart {
            queue,
            records,
            payload,
        }],
    );
}

/// Appends `parts` (reserved) as one request and waits for its commit.
fn append(tx: &Sender<WriteOp>, parts: Vec<AppendPart>) {
    let (reply, rx) = oneshot::channel();
    tx.send(WriteOp::Append { parts, reply })
        .expect("writer alive");
    rx.blocking_recv()
        .expect("reply")
        .expect("append committed");
}

/// Releases the producers waiting on `start` and times them to the end.
fn timed(start: &Barrier, producers: Vec<std::thread::JoinHandle<()>>) -> Duration {
    start.wait();
    let began = Instant::now();
    for p in producers {
        p.join().expect("producer");
    }
    began.elapsed()
}

/// Runs `iters` appends on each producer thread; returns the wall time of
/// the appends only. Afterwards (untimed) it deletes what was written so the
/// file does not grow across iterations.
fn run(setup: &Setup, payload: &Bytes, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(setup.queues.len() + 1));
    let producers: Vec<_> = setup
        .queues
        .iter()
        .map(|queue| {
            let (queue, tx, payload, start) = (
                Arc::clone(queue),
                setup.tx.clone(),
                payload.clone(),
                Arc::clone(&start),
            );
            std::thread::spawn(move || {
                start.wait();
                for _ in 0..iters {
                    append_one(&tx, Arc::clone(&queue), RECORDS_PER_PART, payload.clone());
                }
            })
        })
        .collect();
    let elapsed = timed(&start, producers);
    delete_all(setup);
    elapsed
}

fn store_commit(c: &mut Criterion) {
    let payload = Bytes::from(vec![0x5a; PART_BYTES]);
    for durability in [Durability::Fsync, Durability::None] {
        let dur = match durability {
            Durability::Fsync => "fsync",
            Durability::None => "none",
        };
        let mut group = c.benchmark_group(format!("store_commit/{dur}"));
        group.sample_size(10);
        for threads in [1usize, 8, 64] {
            group.throughput(Throughput::Elements(threads as u64));
            for (mode, max_ops) in [("group", 1024), ("single", 1)] {
                let setup = setup(threads, durability, max_ops);
                group.bench_function(BenchmarkId::new(mode, threads), |b| {
                    b.iter_custom(|iters| run(&setup, &payload, iters));
                });
                setup.close();
            }
        }
        group.finish();
    }
}

/// Creates `QUEUES` fresh queues (names from `next`) and appends one small
/// entry to each, over `PRODUCERS` threads; returns the wall time.
fn create_queues(setup: &Setup, next: &mut u64) -> Duration {
    const QUEUES: u64 = 1000;
    const PRODUCERS: u64 = 16;
    let start = Arc::new(Barrier::new(PRODUCERS as usize + 1));
    let base = *next;
    *next += QUEUES;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (store, tx, start) = (
                Arc::clone(&setup.store),
                setup.tx.clone(),
                Arc::clone(&start),
            );
            std::thread::spawn(move || {
                start.wait();
                for i in (p..QUEUES).step_by(PRODUCERS as usize) {
                    let queue = store
                        .queue(&format!("shoot/bench-{}/logs", base + i))
                        .expect("queue");
                    append_one(&tx, queue, 1, Bytes::from_static(b"first record"));
                }
            })
        })
        .collect();
    timed(&start, producers)
}

fn queue_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_create/fsync");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1000));
    for (mode, max_ops) in [("group", 1024), ("single", 1)] {
        let setup = setup(0, Durability::Fsync, max_ops);
        let mut next = 0;
        group.bench_function(BenchmarkId::new(mode, 1000), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| create_queues(&setup, &mut next)).sum());
        });
        setup.close();
    }
    group.finish();
}

/// `store_fanout`: queues, producers, and the records of a request.
const FANOUT_QUEUES: usize = 1000;
const FANOUT_PRODUCERS: usize = 8;
const FANOUT_RECORDS: u32 = 100;
const FANOUT_RECORD_BYTES: usize = 160;
/// A queue is delivered (its entries deleted) once it holds this many,
/// as a shoot client's batch takes many requests' parts.
const FANOUT_BATCH_ENTRIES: u64 = 20;

/// Appends `iters` requests from each of [`FANOUT_PRODUCERS`] threads,
/// each request split over `spread` queues (its records shared evenly),
/// while a deleter thread consumes every queue that holds
/// [`FANOUT_BATCH_ENTRIES`] entries, as deliveries do. Returns the wall
/// time of the appends; then (untimed) deletes what is left.
fn fanout(setup: &Setup, spread: usize, iters: u64) -> Duration {
    let shares = u32::try_from(spread).expect("spread");
    let payload = Bytes::from(vec![
        0x5a;
        FANOUT_RECORDS as usize * FANOUT_RECORD_BYTES / spread
    ]);
    let start = Arc::new(Barrier::new(FANOUT_PRODUCERS + 1));
    let producers: Vec<_> = (0..FANOUT_PRODUCERS)
        .map(|p| {
            let (queues, tx, payload, start) = (
                setup.queues.clone(),
                setup.tx.clone(),
                payload.clone(),
                Arc::clone(&start),
            );
            std::thread::spawn(move || {
                start.wait();
                // Each producer walks the queues from its own offset, so
                // that a request's queues are distinct and every queue gets
                // the same share.
                let mut next = p * queues.len() / FANOUT_PRODUCERS;
                for _ in 0..iters {
                    let parts = (0..spread)
                        .map(|_| {
                            let queue = Arc::clone(&queues[next % queues.len()]);
                            next += 1;
                            assert!(queue.try_reserve(payload.len() as u64, u64::MAX));
                            AppendPart {
                                queue,
                                records: FANOUT_RECORDS / shares,
                                payload: payload.clone(),
                            }
                        })
                        .collect();
                    append(&tx, parts);
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let deleter = {
        let (queues, tx, done) = (setup.queues.clone(), setup.tx.clone(), Arc::clone(&done));
        let batch = if spread == 1 { 1 } else { FANOUT_BATCH_ENTRIES };
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                for queue in &queues {
                    if queue.entries() >= batch {
                        let last = queue.next_seq().saturating_sub(1);
                        tx.send(WriteOp::Delete {
                            queue: Arc::clone(queue),
                            first: 0,
                            last,
                        })
                        .expect("writer alive");
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let elapsed = timed(&start, producers);
    done.store(true, Ordering::Release);
    deleter.join().expect("deleter");
    delete_all(setup);
    elapsed
}

/// Deletes every entry of the setup's queues and waits for the commit.
fn delete_all(setup: &Setup) {
    for queue in &setup.queues {
        setup
            .tx
            .send(WriteOp::Delete {
                queue: Arc::clone(queue),
                first: 0,
                last: u64::MAX,
            })
            .expect("writer alive");
    }
    let (reply, rx) = oneshot::channel();
    setup
        .tx
        .send(WriteOp::Flush { reply })
        .expect("writer alive");
    rx.blocking_recv()
        .expect("reply")
        .expect("deletes committed");
}

fn store_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_fanout/none");
    group.sample_size(10);
    group.throughput(Throughput::Elements(
        u64::from(FANOUT_RECORDS) * FANOUT_PRODUCERS as u64,
    ));
    for (name, queues, spread) in [("single", 1, 1), ("shoots", FANOUT_QUEUES, 10)] {
        let setup = setup(queues, Durability::None, 1024);
        group.bench_function(BenchmarkId::new(name, spread), |b| {
            b.iter_custom(|iters| fanout(&setup, spread, iters));
        });
        setup.close();
    }
    group.finish();
}

criterion_group!(benches, store_commit, queue_create, store_fanout);
criterion_main!(benches);

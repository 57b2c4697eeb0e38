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
//! The LMDB directory lives under `CARGO_TARGET_TMPDIR`, on the same file
//! system as the target directory, not on a possibly-tmpfs `/tmp`, so fsync
//! costs what it costs on that disk.

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
    let (reply, rx) = oneshot::channel();
    let part = AppendPart {
        queue,
        records,
        payload,
    };
    tx.send(WriteOp::Append {
        parts: vec![part],
        reply,
    })
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

criterion_group!(benches, store_commit, queue_create);
criterion_main!(benches);

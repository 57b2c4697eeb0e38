//! Tests of the store against real LMDB files in temporary directories.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::Sender;
use futures::FutureExt as _;
use tokio::sync::oneshot;

use super::*;

const MIB: u64 = 1024 * 1024;

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        map_size: 64 * MIB,
        durability: Durability::Fsync,
        max_ops_per_commit: 256,
    }
}

/// A store with its writer running, driven synchronously.
struct Harness {
    store: Arc<Store>,
    metrics: Arc<StoreMetrics>,
    tx: Sender<WriteOp>,
    writer: JoinHandle<()>,
}

impl Harness {
    fn start(opts: StoreOptions) -> Self {
        let store = Store::open(opts).unwrap();
        let metrics = Arc::new(StoreMetrics::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = store.spawn_writer(rx, Arc::clone(&metrics)).unwrap();
        Self {
            store,
            metrics,
            tx,
            writer,
        }
    }

    /// Reserves and appends one part, waiting for the commit.
    fn append(&self, queue: &Arc<Queue>, records: u32, payload: &[u8]) -> Result<(), StoreError> {
        self.append_parts(vec![(queue, records, payload)])
    }

    fn append_parts(&self, parts: Vec<(&Arc<Queue>, u32, &[u8])>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        let parts = parts
            .into_iter()
            .map(|(queue, records, payload)| {
                assert!(queue.try_reserve(payload.len() as u64, u64::MAX));
                AppendPart {
                    queue: Arc::clone(queue),
                    records,
                    payload: Bytes::copy_from_slice(payload),
                }
            })
            .collect();
        self.tx.send(WriteOp::Append { parts, reply }).unwrap();
        rx.blocking_recv().unwrap()
    }

    fn delete(&self, queue: &Arc<Queue>, first: u64, last: u64) {
        self.tx
            .send(WriteOp::Delete {
                queue: Arc::clone(queue),
                first,
                last,
            })
            .unwrap();
    }

    /// Drops `queue`, waiting for the commit.
    fn drop_queue(&self, queue: &Arc<Queue>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteOp::Drop {
                queue: Arc::clone(queue),
                reply: Some(reply),
            })
            .unwrap();
        rx.blocking_recv().unwrap()
    }

    fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(WriteOp::Flush { reply }).unwrap();
        rx.blocking_recv().unwrap()
    }

    /// Stops the writer the way the supervisor restarts it, and starts the
    /// next one.
    fn restart_writer(&mut self) {
        let (reply, rx) = oneshot::channel();
        self.tx.send(WriteOp::Stop { reply }).unwrap();
        rx.blocking_recv().unwrap().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let next = self
            .store
            .spawn_writer(rx, Arc::clone(&self.metrics))
            .unwrap();
        std::mem::replace(&mut self.writer, next).join().unwrap();
        self.tx = tx;
    }

    /// Blocks in the log once everything sent before is committed.
    fn log_len_after_flush(&self) -> u64 {
        self.flush().unwrap();
        self.store.log_len()
    }

    /// The raw `meta` keys starting with `prefix`.
    fn meta_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let rtxn = self.store.env.read_txn().unwrap();
        self.store
            .meta
            .prefix_iter(&rtxn, prefix)
            .unwrap()
            .map(|item| item.unwrap().0.to_vec())
            .collect()
    }

    /// Stops the writer and closes the environment so it can be reopened.
    fn close(self) {
        drop(self.tx);
        self.writer.join().unwrap();
        assert_eq!(Arc::strong_count(&self.store), 1, "store still shared");
        drop(self.store);
    }
}

fn read_all(store: &Store, queue: &Queue) -> Vec<Entry> {
    store.read(queue, 0, u64::MAX, u64::MAX).unwrap()
}

/// One batch of `queue` from its start, with no byte or record limit.
fn whole_batch(store: &Store, queue: &Queue) -> Batch {
    store
        .read_batch(queue, 0, u64::MAX, u64::MAX)
        .unwrap()
        .unwrap()
}

fn payloads(entries: &[Entry]) -> Vec<&[u8]> {
    entries.iter().map(|e| &e.payload[..]).collect()
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[test]
fn append_read_delete_roundtrip_fifo_and_independent_queues() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let a = h.store.queue("logs/a").unwrap();
    let b = h.store.queue("logs/b").unwrap();
    assert_ne!(a.id, b.id);
    assert!(Arc::ptr_eq(&a, &h.store.queue("logs/a").unwrap()));

    h.append(&a, 1, b"a0").unwrap();
    h.append(&a, 2, b"a1-").unwrap();
    // One request with parts for both queues: one transaction.
    h.append_parts(vec![(&b, 3, b"b0"), (&a, 4, b"a2--")])
        .unwrap();
    h.append(&b, 5, b"b1").unwrap();

    let got = read_all(&h.store, &a);
    assert_eq!(payloads(&got), vec![&b"a0"[..], b"a1-", b"a2--"]);
    // Sequence numbers are log positions: every queue's appends share
    // them, so a queue's increase but leave gaps.
    assert_eq!(seqs(&got), vec![0, 1, 3]);
    assert_eq!(
        got.iter().map(|e| e.records).collect::<Vec<_>>(),
        vec![1, 2, 4]
    );
    assert_eq!((a.entries(), a.records(), a.used_bytes()), (3, 7, 9));
    let got_b = read_all(&h.store, &b);
    assert_eq!(payloads(&got_b), vec![&b"b0"[..], b"b1"]);
    assert_eq!(seqs(&got_b), vec![2, 4]);
    assert_eq!((b.entries(), b.records(), b.used_bytes()), (2, 8, 4));

    // Limits: stop before the entry that would exceed, but never return
    // nothing when something is there.
    assert_eq!(
        seqs(&h.store.read(&a, 1, u64::MAX, u64::MAX).unwrap()),
        vec![1, 3]
    );
    assert_eq!(seqs(&h.store.read(&a, 0, 5, u64::MAX).unwrap()), vec![0, 1]);
    assert_eq!(seqs(&h.store.read(&a, 0, 1, 1).unwrap()), vec![0]);
    assert_eq!(seqs(&h.store.read(&a, 0, u64::MAX, 3).unwrap()), vec![0, 1]);
    // From a position in a gap: the next entry of this queue.
    assert_eq!(seqs(&h.store.read(&a, 2, 0, 0).unwrap()), vec![3]);
    assert!(h.store.read(&a, 4, u64::MAX, u64::MAX).unwrap().is_empty());
    // read_batch is the same walk, concatenated.
    for (from, max_bytes, max_records) in [
        (0, u64::MAX, u64::MAX),
        (0, 5, u64::MAX),
        (1, u64::MAX, 3),
        (2, 0, 0),
    ] {
        let entries = h.store.read(&a, from, max_bytes, max_records).unwrap();
        let batch = h
            .store
            .read_batch(&a, from, max_bytes, max_records)
            .unwrap()
            .unwrap();
        let joined: Vec<u8> = entries.iter().flat_map(|e| e.payload.to_vec()).collect();
        assert_eq!(&batch.body[..], &joined[..]);
        assert_eq!(
            (batch.first, batch.last, batch.entries),
            (
                entries[0].seq,
                entries[entries.len() - 1].seq,
                entries.len()
            )
        );
        assert_eq!(
            batch.records,
            entries.iter().map(|e| u64::from(e.records)).sum::<u64>()
        );
    }
    assert!(
        h.store
            .read_batch(&a, 4, u64::MAX, u64::MAX)
            .unwrap()
            .is_none()
    );

    // Delete what a backend accepted; the other queue is untouched.
    h.delete(&a, 0, 1);
    h.flush().unwrap();
    let got = read_all(&h.store, &a);
    assert_eq!(seqs(&got), vec![3]);
    assert_eq!((a.entries(), a.records(), a.used_bytes()), (1, 4, 4));
    assert_eq!(payloads(&read_all(&h.store, &b)), vec![&b"b0"[..], b"b1"]);
    assert_eq!((b.entries(), b.records(), b.used_bytes()), (2, 8, 4));
    assert_eq!(h.metrics.deleted_bytes.get(), 5);

    // Deleting a range that is already gone is a no-op, not an error.
    h.delete(&a, 0, 1);
    h.flush().unwrap();
    assert_eq!(a.entries(), 1);
    h.close();
}

#[test]
fn reopen_resumes_entries_stats_and_seq_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let (a_id, b_id);
    {
        let h = Harness::start(options(dir.path()));
        let a = h.store.queue("a").unwrap();
        let b = h.store.queue("b").unwrap();
        (a_id, b_id) = (a.id, b.id);
        for i in 0..5u8 {
            h.append(&a, u32::from(i), &[i; 10]).unwrap();
        }
        h.append(&b, 1, b"drained").unwrap();
        h.append(&b, 1, b"drained").unwrap();
        h.delete(&a, 0, 0);
        // b is drained completely: only `next_seq` and its `done/<id>`
        // mark remember the numbering.
        h.delete(&b, 5, 6);
        h.flush().unwrap();
        h.close();
    }

    let h = Harness::start(options(dir.path()));
    let names: Vec<_> = h.store.queues().iter().map(|q| q.name.clone()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let a = h.store.queue("a").unwrap();
    let b = h.store.queue("b").unwrap();
    assert_eq!((a.id, b.id), (a_id, b_id));
    assert_eq!(
        (a.entries(), a.records(), a.used_bytes()),
        (4, 1 + 2 + 3 + 4, 40)
    );
    assert_eq!((b.entries(), b.records(), b.used_bytes()), (0, 0, 0));
    let got = read_all(&h.store, &a);
    assert_eq!(seqs(&got), vec![1, 2, 3, 4]);
    assert_eq!(got[3].payload, Bytes::from(vec![4u8; 10]));

    h.append(&a, 1, b"new").unwrap();
    h.append(&b, 1, b"new").unwrap();
    assert_eq!(seqs(&read_all(&h.store, &a)), vec![1, 2, 3, 4, 7]);
    assert_eq!(
        seqs(&read_all(&h.store, &b)),
        vec![8],
        "seqs must not be reused"
    );
    // A new queue never takes an old id.
    let c = h.store.queue("c").unwrap();
    assert!(c.id > a_id.max(b_id));
    h.close();
}

#[test]
fn opening_twice_in_one_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    let err = Store::open(options(dir.path())).unwrap_err();
    assert_eq!(err.kind(), "lmdb", "{err}");
    drop(store);
    // Closed: it opens again.
    Store::open(options(dir.path())).unwrap();
}

#[test]
fn queued_requests_are_group_committed_and_acked_only_when_readable() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.max_ops_per_commit = 64;
    let store = Store::open(opts).unwrap();
    let metrics = Arc::new(StoreMetrics::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let queues: Vec<_> = (0..THREADS)
        .map(|t| store.queue(&format!("q{t}")).unwrap())
        .collect();

    // Every thread enqueues all its requests before the writer exists, so
    // the grouping is deterministic: 200 requests, 64 per commit.
    let queued = Arc::new(Barrier::new(THREADS + 1));
    let producers: Vec<_> = queues
        .iter()
        .enumerate()
        .map(|(t, queue)| {
            let (tx, store, queue, queued) = (
                tx.clone(),
                Arc::clone(&store),
                Arc::clone(queue),
                Arc::clone(&queued),
            );
            std::thread::spawn(move || {
                let mut replies = Vec::new();
                for i in 0..PER_THREAD {
                    let payload = Bytes::from(format!("thread {t} request {i}"));
                    assert!(queue.try_reserve(payload.len() as u64, u64::MAX));
                    let (reply, rx) = oneshot::channel();
                    let part = AppendPart {
                        queue: Arc::clone(&queue),
                        records: 1,
                        payload: payload.clone(),
                    };
                    tx.send(WriteOp::Append {
                        parts: vec![part],
                        reply,
                    })
                    .unwrap();
                    replies.push((payload, rx));
                }
                queued.wait();
                for (i, (payload, rx)) in replies.into_iter().enumerate() {
                    rx.blocking_recv().unwrap().unwrap();
                    // Acked means readable, in this thread's order.
                    let got = read_all(&store, &queue);
                    assert!(got.len() > i);
                    assert_eq!(got[i].payload, payload);
                    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
                }
            })
        })
        .collect();
    queued.wait();
    let writer = store.spawn_writer(rx, Arc::clone(&metrics)).unwrap();
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(
        metrics.commits.get(),
        (THREADS * PER_THREAD).div_ceil(64) as u64
    );

    // Now with the writer running: concurrent producers that each wait for
    // their reply. How they group depends on timing; they all succeed and
    // never take more commits than requests.
    let before = metrics.commits.get();
    let producers: Vec<_> = queues
        .iter()
        .map(|queue| {
            let (tx, queue) = (tx.clone(), Arc::clone(queue));
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    assert!(queue.try_reserve(3, u64::MAX));
                    let (reply, rx) = oneshot::channel();
                    let part = AppendPart {
                        queue: Arc::clone(&queue),
                        records: 1,
                        payload: Bytes::from_static(b"abc"),
                    };
                    tx.send(WriteOp::Append {
                        parts: vec![part],
                        reply,
                    })
                    .unwrap();
                    rx.blocking_recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert!(metrics.commits.get() - before <= (THREADS * PER_THREAD) as u64);
    for queue in &queues {
        assert_eq!(queue.entries(), 2 * PER_THREAD as u64);
        assert_eq!(read_all(&store, queue).len(), 2 * PER_THREAD);
    }
    drop(tx);
    writer.join().unwrap();
}

/// Deliveries' deletes that reach an idle writer a millisecond apart (a
/// thousand shoot clients sending on grids spread over their timeout)
/// share commits instead of taking one each, and none waits for the idle
/// tick: every queue is empty well within a second.
#[test]
fn deletes_arriving_apart_share_a_commit_and_are_not_held_long() {
    const QUEUES: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let queues: Vec<_> = (0..QUEUES)
        .map(|i| h.store.queue(&format!("shoot/s{i}/logs")).unwrap())
        .collect();
    h.append_parts(queues.iter().map(|q| (q, 1, &b"payload"[..])).collect())
        .unwrap();
    let positions: Vec<u64> = queues
        .iter()
        .map(|q| read_all(&h.store, q)[0].seq)
        .collect();
    let before = h.metrics.commits.get();
    let started = std::time::Instant::now();
    for (q, pos) in queues.iter().zip(&positions) {
        h.delete(q, *pos, *pos);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    while queues.iter().any(|q| q.used_bytes() > 0) {
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "held deletes were not committed within 500 ms"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let commits = h.metrics.commits.get() - before;
    // One each without the hold; one or two (a slow machine) with it.
    assert!(
        (1..QUEUES as u64 - 1).contains(&commits),
        "{QUEUES} deletes took {commits} commits"
    );
    // Committed, not just forgotten in memory: the marks are on disk.
    assert_eq!(h.log_len_after_flush(), 0);
    h.close();
}

#[test]
fn try_reserve_respects_the_limit_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    let queue = store.queue("q").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || (0..1000).filter(|_| queue.try_reserve(7, 1000)).count())
        })
        .collect();
    let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // 142 * 7 = 994 fits, one more would not.
    assert_eq!(won, 142);
    assert_eq!(queue.used_bytes(), 994);
    assert!(!queue.try_reserve(7, 1000));
    assert!(queue.try_reserve(6, 1000));
    queue.release(1000);
    assert_eq!(queue.used_bytes(), 0);
    // A double release saturates instead of wrapping around.
    queue.release(1);
    assert_eq!(queue.used_bytes(), 0);
    assert!(!queue.try_reserve(u64::MAX, u64::MAX - 1));
}

/// A store with a 1 MiB map and one queue `q`, for the full-map tests, and
/// the 30 KiB payload they fill it with.
fn small_map(dir: &Path) -> (Harness, Arc<Queue>, Vec<u8>) {
    let mut opts = options(dir);
    opts.map_size = MIB;
    let h = Harness::start(opts);
    let q = h.store.queue("q").unwrap();
    (h, q, vec![7u8; 30 * 1024])
}

/// Appends `payload` (of `records`) to `q` until an append is refused:
/// how many were stored, and the refusal.
fn fill_map(h: &Harness, q: &Arc<Queue>, records: u32, payload: &[u8]) -> (u64, StoreError) {
    let mut stored = 0u64;
    loop {
        match h.append(q, records, payload) {
            Ok(()) => stored += 1,
            Err(e) => return (stored, e),
        }
        assert!(stored < 1000, "a 1 MiB map never filled up");
    }
}

#[test]
fn map_full_refuses_appends_keeps_data_and_recovers_after_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let (h, q, payload) = small_map(dir.path());

    let (stored, full) = fill_map(&h, &q, 100, &payload);
    assert_eq!(full.kind(), "full", "{full}");
    assert!(stored > 0);
    let map_full = FullLabels { reason: "map_full" };
    assert_eq!(
        h.metrics
            .storage_full_refusals
            .get_or_create(&map_full)
            .get(),
        1
    );
    assert_eq!(h.metrics.storage_full.get(), 1);
    // The refused append's reservation was given back.
    assert_eq!(q.used_bytes(), stored * payload.len() as u64);
    assert_eq!(q.entries(), stored);
    // Everything committed before is intact.
    let got = read_all(&h.store, &q);
    assert_eq!(got.len() as u64, stored);
    assert!(got.iter().all(|e| e.payload == payload));

    // Still full while nothing was deleted.
    assert_eq!(h.append(&q, 100, &payload).unwrap_err().kind(), "full");

    // A delete in the same group as a refused append still commits.
    let half = stored / 2;
    h.delete(&q, 0, half - 1);
    let outcome = h.append(&q, 100, &payload);
    h.flush().unwrap();
    let expected = stored - half + u64::from(outcome.is_ok());
    assert_eq!(q.entries(), expected);
    assert_eq!(q.used_bytes(), expected * payload.len() as u64);

    // With space freed, appends succeed again.
    h.append(&q, 100, &payload).unwrap();
    let got = read_all(&h.store, &q);
    assert_eq!(got.len() as u64, expected + 1);
    assert_eq!(got[0].seq, half);
    h.close();
}

#[test]
fn durability_none_commits_syncs_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.durability = Durability::None;
    {
        let h = Harness::start(opts.clone());
        let q = h.store.queue("q").unwrap();
        h.append(&q, 3, b"not fsynced").unwrap();
        assert_eq!(payloads(&read_all(&h.store, &q)), vec![&b"not fsynced"[..]]);
        h.store.sync().unwrap();
        h.close();
    }
    let h = Harness::start(opts);
    let q = h.store.queue("q").unwrap();
    assert_eq!(payloads(&read_all(&h.store, &q)), vec![&b"not fsynced"[..]]);
    assert_eq!(q.records(), 3);
    h.close();
}

#[test]
fn a_map_full_of_delivered_entries_takes_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let (h, q, payload) = small_map(dir.path());
    let (_, full) = fill_map(&h, &q, 1, &payload);
    assert_eq!(full.kind(), "full", "{full}");
    // Everything is delivered: each block goes with its last part.
    let last = seqs(&read_all(&h.store, &q)).last().copied().unwrap();
    h.delete(&q, 0, last);
    h.flush().unwrap();
    assert_eq!(q.entries(), 0);
    // Appends alone (no delete in their group) find room again.
    for _ in 0..3 {
        h.append(&q, 1, &payload).unwrap();
    }
    assert_eq!(q.entries(), 3);
    h.close();
}

#[test]
fn drop_removes_a_queue_its_data_and_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (b_id, old_a_id);
    {
        let h = Harness::start(options(dir.path()));
        let a = h.store.queue("a").unwrap();
        let b = h.store.queue("b").unwrap();
        (old_a_id, b_id) = (a.id, b.id);
        h.append(&a, 1, b"a0").unwrap();
        h.append(&a, 1, b"a1").unwrap();
        h.append(&b, 1, b"b0").unwrap();

        h.drop_queue(&a).unwrap();
        assert!(a.is_dropped());
        assert!(read_all(&h.store, &a).is_empty());
        assert_eq!((a.entries(), a.records(), a.used_bytes()), (0, 0, 0));
        let names: Vec<_> = h.store.queues().iter().map(|q| q.name.clone()).collect();
        assert_eq!(names, vec!["b"]);

        // A late append to the dropped queue is discarded and released.
        h.append(&a, 1, b"late").unwrap();
        assert_eq!(a.used_bytes(), 0);
        assert!(read_all(&h.store, &a).is_empty());

        // The name can be used again, for a new, empty queue.
        let a2 = h.store.queue("a").unwrap();
        assert!(!Arc::ptr_eq(&a, &a2));
        assert_ne!(a2.id, a.id);
        assert!(read_all(&h.store, &a2).is_empty());
        assert_eq!(payloads(&read_all(&h.store, &b)), vec![&b"b0"[..]]);
        h.close();
    }
    // The new `a` held nothing, so its name never reached the disk.
    let h = Harness::start(options(dir.path()));
    let names: Vec<_> = h
        .store
        .queues()
        .iter()
        .map(|q| (q.name.clone(), q.id))
        .collect();
    assert_eq!(names, vec![("b".to_owned(), b_id)]);
    let a = h.store.queue("a").unwrap();
    assert_ne!(a.id, old_a_id);
    assert_eq!(a.entries(), 0);
    h.close();
}

#[test]
fn a_new_queue_reaches_the_disk_with_its_first_entry_and_costs_no_commit() {
    const QUEUES: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let old_ids;
    {
        let h = Harness::start(options(dir.path()));
        let before = h.metrics.commits.get();
        let queues: Vec<_> = (0..QUEUES)
            .map(|i| h.store.queue(&format!("shoot/{i}")).unwrap())
            .collect();
        let empty = h.store.queue("never-written").unwrap();
        assert_eq!(
            h.metrics.commits.get(),
            before,
            "creating queues commits nothing"
        );
        assert!(queues.iter().all(|q| !q.is_persisted()));

        // One append naming every queue: one commit brings all their names.
        let parts = queues.iter().map(|q| (q, 1, &b"first"[..])).collect();
        h.append_parts(parts).unwrap();
        assert_eq!(h.metrics.commits.get(), before + 1);
        assert!(queues.iter().all(|q| q.is_persisted()));
        assert!(!empty.is_persisted());
        old_ids = queues.iter().map(|q| q.id).chain([empty.id]).max().unwrap();
        h.close();
    }
    let h = Harness::start(options(dir.path()));
    let resumed = h.store.queues();
    assert_eq!(resumed.len(), QUEUES, "every written queue and no other");
    assert!(resumed.iter().all(|q| q.entries() == 1 && q.is_persisted()));
    assert!(!resumed.iter().any(|q| q.name == "never-written"));
    // Ids handed out before the restart are never handed out again.
    assert!(h.store.queue("later").unwrap().id > old_ids);
    h.close();
}

#[test]
fn move_appends_and_deletes_in_one_transaction_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let src = h.store.queue("src").unwrap();
    let (x, y) = (h.store.queue("x").unwrap(), h.store.queue("y").unwrap());
    for p in [&b"s0"[..], b"s1", b"s2"] {
        h.append(&src, 2, p).unwrap();
    }
    let send_move = |parts: Vec<(&Arc<Queue>, &[u8])>, first, last| {
        let (reply, rx) = oneshot::channel();
        let parts = parts
            .into_iter()
            .map(|(queue, payload)| {
                assert!(queue.try_reserve(payload.len() as u64, u64::MAX));
                AppendPart {
                    queue: Arc::clone(queue),
                    records: 1,
                    payload: Bytes::copy_from_slice(payload),
                }
            })
            .collect();
        h.tx.send(WriteOp::Move {
            parts,
            from: Arc::clone(&src),
            first,
            last,
            reply,
        })
        .unwrap();
        rx.blocking_recv().unwrap()
    };
    // Entries 0 and 1 are split over x and y.
    send_move(vec![(&x, b"s0a"), (&y, b"s0b"), (&y, b"s1")], 0, 1).unwrap();
    assert_eq!(payloads(&read_all(&h.store, &src)), vec![&b"s2"[..]]);
    assert_eq!(payloads(&read_all(&h.store, &x)), vec![&b"s0a"[..]]);
    assert_eq!(payloads(&read_all(&h.store, &y)), vec![&b"s0b"[..], b"s1"]);
    assert_eq!((src.entries(), src.records()), (1, 2));
    assert_eq!((y.entries(), y.records(), y.used_bytes()), (2, 2, 5));

    // A move into a dropped queue is refused whole: the source keeps its entry.
    h.drop_queue(&y).unwrap();
    assert!(send_move(vec![(&x, b"s2a"), (&y, b"s2b")], 2, 2).is_err());
    assert_eq!(payloads(&read_all(&h.store, &src)), vec![&b"s2"[..]]);
    assert_eq!(payloads(&read_all(&h.store, &x)), vec![&b"s0a"[..]]);
    assert_eq!(
        x.used_bytes(),
        3,
        "the refused part's reservation is given back"
    );
    h.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_wakes_waiters_and_is_not_missed_by_late_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    let metrics = Arc::new(StoreMetrics::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let writer = store.spawn_writer(rx, metrics).unwrap();
    let q = store.queue("q").unwrap();
    let other = store.queue("other").unwrap();
    let append = |queue: &Arc<Queue>| {
        assert!(queue.try_reserve(1, u64::MAX));
        let (reply, rx) = oneshot::channel();
        let part = AppendPart {
            queue: Arc::clone(queue),
            records: 1,
            payload: Bytes::from_static(b"x"),
        };
        tx.send(WriteOp::Append {
            parts: vec![part],
            reply,
        })
        .unwrap();
        rx
    };

    // Nothing committed yet: a waiter stays pending.
    assert!(q.appended().now_or_never().is_none());

    // A waiter registered before the commit is woken by it.
    let waiter = q.appended();
    tokio::pin!(waiter);
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    // An append to another queue does not wake it.
    append(&other).await.unwrap().unwrap();
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    append(&q).await.unwrap().unwrap();
    waiter.await;

    // Drain the permit the commit may have left behind.
    q.appended().now_or_never();
    assert!(q.appended().now_or_never().is_none());

    // A waiter that registers only after the commit (it read an empty queue
    // just before) is not missed: the commit left a permit.
    append(&q).await.unwrap().unwrap();
    assert!(q.appended().now_or_never().is_some());
    // ... and only one: the next wait is for the next commit.
    assert!(q.appended().now_or_never().is_none());

    // A consumer lingering over a partial batch (two records now) is not
    // woken by commits that leave the queue short of its batch ...
    let fill = q.filled_to(4, u64::MAX);
    tokio::pin!(fill);
    assert!(futures::poll!(fill.as_mut()).is_pending());
    append(&q).await.unwrap().unwrap();
    assert!(
        futures::poll!(fill.as_mut()).is_pending(),
        "woken at 3 of 4 records"
    );
    // ... but by the one that fills it.
    append(&q).await.unwrap().unwrap();
    fill.await;
    // Once the wait is over (or cancelled), every commit wakes again.
    q.appended().now_or_never();
    assert!(q.filled_to(100, u64::MAX).now_or_never().is_none());
    append(&q).await.unwrap().unwrap();
    assert!(q.appended().now_or_never().is_some());
    // The byte threshold counts too (reservations included).
    let fill = q.filled_to(u64::MAX, 6);
    tokio::pin!(fill);
    assert!(futures::poll!(fill.as_mut()).is_pending());
    append(&q).await.unwrap().unwrap();
    fill.await;

    drop(tx);
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn writer_heartbeat_moves_and_one_writer_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let at_open = h.store.writer_heartbeat();
    h.flush().unwrap();
    assert!(h.store.writer_heartbeat() > at_open);

    let (_tx, rx) = crossbeam_channel::unbounded();
    let err = h
        .store
        .spawn_writer(rx, Arc::new(StoreMetrics::default()))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    h.close();
}

#[test]
fn bad_queue_names_are_refused_with_a_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).unwrap();
    assert_eq!(store.queue("").unwrap_err().kind(), "invalid_queue_name");
    let long = "x".repeat(MAX_QUEUE_NAME_LEN + 1);
    assert_eq!(store.queue(&long).unwrap_err().kind(), "invalid_queue_name");
    store.queue(&"x".repeat(MAX_QUEUE_NAME_LEN)).unwrap();
}

#[test]
fn writer_answers_when_requesters_are_gone_and_exits_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let q = h.store.queue("q").unwrap();
    // The requester gave up before the commit: the data is still stored.
    assert!(q.try_reserve(4, u64::MAX));
    let (reply, rx) = oneshot::channel();
    drop(rx);
    h.tx.send(WriteOp::Append {
        parts: vec![AppendPart {
            queue: Arc::clone(&q),
            records: 1,
            payload: Bytes::from_static(b"kept"),
        }],
        reply,
    })
    .unwrap();
    h.flush().unwrap();
    assert_eq!(payloads(&read_all(&h.store, &q)), vec![&b"kept"[..]]);
    // `close` joins the writer: it exits once every sender is dropped.
    h.close();
}

/// Resident KiB of the mapping of `file` in this process (`/proc/self/smaps`).
fn resident_kib_of(file: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = file.to_string_lossy();
    let mut in_it = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            in_it = line.ends_with(&*name);
        } else if in_it && let Some(rest) = line.strip_prefix("Rss:") {
            kib += rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    kib
}

#[cfg(target_os = "linux")]
#[test]
fn reads_give_back_the_mapped_pages_of_what_they_copied_and_the_bytes_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(StoreOptions {
        durability: Durability::None,
        map_size: 256 * MIB,
        ..options(dir.path())
    });
    let data = dir.path().canonicalize().unwrap().join("data.mdb");
    let q = h.store.queue("backlog").unwrap();
    // 12 MiB in 32 KiB entries, each with its own bytes.
    let entry = |i: u32| -> Vec<u8> { (0..32 * 1024u32).map(|b| (b ^ i) as u8).collect() };
    for i in 0..384 {
        h.append(&q, 1, &entry(i)).unwrap();
    }
    let read_all_batches = |store: &Store| {
        let (mut from, mut seen) = (0, 0u32);
        while let Some(b) = store.read_batch(&q, from, 4 * MIB, u64::MAX).unwrap() {
            from = b.last + 1;
            seen += u32::try_from(b.entries).unwrap();
        }
        seen
    };
    // A queue without a backlog keeps its pages mapped when exported: the
    // measurement sees them.
    assert_eq!(read_all_batches(&h.store), 384);
    let exported = resident_kib_of(&data);
    assert!(
        exported > 10 * 1024,
        "{exported} KiB resident after the export reads"
    );
    // A read that copies them out gives them back, and what it read is right.
    let (mut from, mut i) = (0, 0u32);
    loop {
        let got = h.store.read(&q, from, 4 * MIB, u64::MAX).unwrap();
        let Some(last) = got.last() else { break };
        from = last.seq + 1;
        for e in got {
            assert_eq!(&e.payload[..], &entry(i)[..], "entry {i}");
            i += 1;
        }
    }
    assert_eq!(i, 384);
    let after = resident_kib_of(&data);
    assert!(
        after < 2 * 1024,
        "{after} KiB of the map still resident after reading it all"
    );
    // Reading again maps the same bytes back from the page cache.
    let again = h.store.read_seqs(&q, &[0, 383]).unwrap();
    assert_eq!(&again[1].payload[..], &entry(383)[..]);
    // Once the queue holds a backlog (over 16 MiB), the export path gives
    // its pages back too.
    for i in 384..2560 {
        h.append(&q, 1, &entry(i)).unwrap();
    }
    assert_eq!(read_all_batches(&h.store), 2560);
    let large = resident_kib_of(&data);
    assert!(
        large < 2 * 1024,
        "{large} KiB resident after exporting 80 MiB"
    );
    // Deleting reads each value's first page (its header, and LMDB's to
    // free the pages); those are given back too.
    h.delete(&q, 0, 2559);
    h.flush().unwrap();
    assert_eq!(q.entries(), 0);
    let deleted = resident_kib_of(&data);
    assert!(
        deleted < 2 * 1024,
        "{deleted} KiB resident after deleting 80 MiB"
    );
    h.close();
}

/// Only pages inside the map are ever given back: a value a write
/// transaction hands out from a page it copied to the heap is left alone.
#[test]
fn pages_outside_the_map_are_never_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = scratch_store(dir.path());
    let map = store.map.unwrap();
    let heap = vec![7u8; 64 * 1024];
    let mut released = mapped::Released::new(map);
    released.note(&heap);
    released.unmap();
    map.release(&heap);
    assert!(heap.iter().all(|b| *b == 7), "heap memory kept its bytes");
}

/// Queues `a` and `b`, and `n` commits that each append one part to both
/// (`[b'a', i]` of `a_records` records, `[b'b', i]` of one; b's first
/// when `b_first`): the queues, and a's and b's sequence numbers.
fn shared_blocks(
    h: &Harness,
    n: u8,
    a_records: u32,
    b_first: bool,
) -> (Arc<Queue>, Arc<Queue>, Vec<u64>, Vec<u64>) {
    let a = h.store.queue("a").unwrap();
    let b = h.store.queue("b").unwrap();
    for i in 0..n {
        let (pa, pb) = ([b'a', i], [b'b', i]);
        let mut parts = vec![(&a, a_records, &pa[..]), (&b, 1, &pb[..])];
        if b_first {
            parts.reverse();
        }
        h.append_parts(parts).unwrap();
    }
    let (a_seqs, b_seqs) = (seqs(&read_all(&h.store, &a)), seqs(&read_all(&h.store, &b)));
    (a, b, a_seqs, b_seqs)
}

#[test]
fn delivered_parts_wait_in_their_block_and_a_crash_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a_seqs, b_seqs);
    {
        let h = Harness::start(options(dir.path()));
        // One block per commit, each holding a part of both queues, as a
        // commit holds the parts of a thousand shoots.
        let a;
        (a, _, a_seqs, b_seqs) = shared_blocks(&h, 4, 2, true);
        assert_eq!(h.store.log_len(), 4);
        // Both queues' parts of a commit are numbered one after the other.
        assert_eq!(a_seqs[0], b_seqs[0] + 1);
        // a delivers its oldest three: a mark; b's parts keep the blocks.
        h.delete(&a, a_seqs[0], a_seqs[2]);
        assert_eq!(h.log_len_after_flush(), 4);
        assert_eq!(seqs(&read_all(&h.store, &a)), vec![a_seqs[3]]);
        assert_eq!((a.entries(), a.records(), a.used_bytes()), (1, 2, 2));
        // The process dies here.
        h.close();
    }
    {
        let h = Harness::start(options(dir.path()));
        assert_eq!(h.store.discarded_at_open(), 0);
        assert_eq!(h.store.log_len(), 4);
        let a = h.store.queue("a").unwrap();
        let b = h.store.queue("b").unwrap();
        // The mark holds: a's delivered parts do not come back.
        assert_eq!(seqs(&read_all(&h.store, &a)), vec![a_seqs[3]]);
        assert_eq!(seqs(&read_all(&h.store, &b)), b_seqs);
        assert_eq!((a.entries(), a.records(), a.used_bytes()), (1, 2, 2));
        assert_eq!(payloads(&read_all(&h.store, &b))[2], &[b'b', 2][..]);

        // b delivers its oldest two: their blocks go with them.
        h.delete(&b, b_seqs[0], b_seqs[1]);
        assert_eq!(h.log_len_after_flush(), 2);
        h.delete(&b, b_seqs[2], b_seqs[3]);
        h.delete(&a, a_seqs[3], a_seqs[3]);
        assert_eq!(h.log_len_after_flush(), 0);
        // Numbering goes on after the last position ever used.
        h.append(&a, 1, b"next").unwrap();
        assert!(seqs(&read_all(&h.store, &a))[0] > b_seqs[3].max(a_seqs[3]));
        h.close();
    }
}

#[test]
fn parts_taken_out_of_order_from_a_shared_block_stay_taken_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (a_seqs, b_seqs);
    {
        let h = Harness::start(options(dir.path()));
        let a;
        (a, _, a_seqs, b_seqs) = shared_blocks(&h, 3, 1, false);
        // a's middle part (a tail sampling decision, say): no mark can say
        // it, and b's part keeps the block, so a `gone/` key does.
        h.delete(&a, a_seqs[1], a_seqs[1]);
        assert_eq!(h.log_len_after_flush(), 3);
        assert_eq!(h.meta_keys(format::META_GONE_PREFIX).len(), 1);
        assert_eq!(seqs(&read_all(&h.store, &a)), vec![a_seqs[0], a_seqs[2]]);
        h.close();
    }
    let h = Harness::start(options(dir.path()));
    assert_eq!(h.store.discarded_at_open(), 0);
    let a = h.store.queue("a").unwrap();
    let b = h.store.queue("b").unwrap();
    assert_eq!(
        payloads(&read_all(&h.store, &a)),
        vec![&b"a\x00"[..], &b"a\x02"[..]]
    );
    assert_eq!((a.entries(), a.used_bytes()), (2, 4));
    // b's part goes too, out of order as well: the block has nothing left
    // and goes, with its `gone/` key.
    h.delete(&b, b_seqs[1], b_seqs[1]);
    assert_eq!(h.log_len_after_flush(), 2);
    assert!(h.meta_keys(format::META_GONE_PREFIX).is_empty());
    h.delete(&a, a_seqs[0], a_seqs[2]);
    h.delete(&b, b_seqs[0], b_seqs[2]);
    assert_eq!(h.log_len_after_flush(), 0);
    h.close();
}

/// A dead backend's part keeps its block: once the block is a few seconds
/// old, it is rewritten with that part alone, which stays readable.
#[test]
fn blocks_kept_by_a_dead_queue_are_rewritten_without_the_delivered_parts() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(options(dir.path()));
    let dead = h.store.queue("dead").unwrap();
    let live = h.store.queue("live").unwrap();
    let big = vec![9u8; 64 * 1024];
    for i in 0..3u8 {
        h.append_parts(vec![(&dead, 1, &[b'd', i]), (&live, 10, &big)])
            .unwrap();
    }
    let delivered = seqs(&read_all(&h.store, &live));
    h.delete(&live, delivered[0], delivered[2]);
    h.flush().unwrap();
    let value_lens = |h: &Harness| -> Vec<usize> {
        let rtxn = h.store.env.read_txn().unwrap();
        let lens = h.store.log.iter(&rtxn).unwrap();
        lens.map(|item| item.unwrap().1.len()).collect()
    };
    assert!(value_lens(&h).iter().all(|len| *len > 64 * 1024));
    // The writer looks at blocks once they are COMPACT_AFTER old, on a
    // commit or its idle tick.
    let started = std::time::Instant::now();
    while h.metrics.blocks_rewritten.get() < 3 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        h.flush().unwrap();
    }
    assert_eq!(h.metrics.blocks_rewritten.get(), 3);
    assert!(
        value_lens(&h).iter().all(|len| *len < 64),
        "{:?}",
        value_lens(&h)
    );
    let kept = read_all(&h.store, &dead);
    assert_eq!(
        payloads(&kept),
        vec![&b"d\x00"[..], &b"d\x01"[..], &b"d\x02"[..]]
    );
    // Same positions as before the rewrite: delivering them works as ever.
    h.delete(&dead, kept[0].seq, kept[2].seq);
    assert_eq!(h.log_len_after_flush(), 0);
    h.close();
}

/// A full map of blocks that a dead queue's small parts keep: the
/// deletes-only retry rewrites them all, and appends fit again.
#[test]
fn a_map_full_of_blocks_kept_by_a_dead_queue_takes_appends_again() {
    let dir = tempfile::tempdir().unwrap();
    let (h, q, payload) = small_map(dir.path());
    let dead = h.store.queue("dead").unwrap();
    let mut stored = 0;
    let full = loop {
        match h.append_parts(vec![(&dead, 1, b"d"), (&q, 1, &payload)]) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "a 1 MiB map never filled up");
    };
    assert_eq!(full.kind(), "full", "{full}");
    let last = seqs(&read_all(&h.store, &q)).last().copied().unwrap();
    h.delete(&q, 0, last);
    h.flush().unwrap();
    assert_eq!(h.store.log_len(), stored);
    for _ in 0..3 {
        h.append(&q, 1, &payload).unwrap();
    }
    assert_eq!(q.entries(), 3);
    assert_eq!(dead.entries(), stored);
    assert!(h.metrics.blocks_rewritten.get() >= 1);
    h.close();
}

/// A buffer written by the previous release (format 2: a value per part)
/// is read in place, one part per block.
#[test]
fn a_format_2_buffer_is_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = Harness::start(options(dir.path()));
        let a = h.store.queue("a").unwrap();
        h.append(&a, 1, b"new-style").unwrap();
        h.close();
    }
    {
        // Two format 2 values of queue a after the block, as format 2
        // wrote them (and the next position).
        let store = Store::open(options(dir.path())).unwrap();
        let a = store.queue("a").unwrap();
        let mut wtxn = store.env.write_txn().unwrap();
        for (pos, body) in [(1u64, &b"old-1"[..]), (2, b"old-2")] {
            let mut value = format::encode_header(a.id, 7).to_vec();
            value.extend_from_slice(body);
            store
                .log
                .put(&mut wtxn, &format::log_key(pos), &value)
                .unwrap();
        }
        store
            .meta
            .put(&mut wtxn, format::META_NEXT_SEQ, &3u64.to_be_bytes())
            .unwrap();
        wtxn.commit().unwrap();
    }
    let h = Harness::start(options(dir.path()));
    assert_eq!(h.store.discarded_at_open(), 0);
    let a = h.store.queue("a").unwrap();
    let got = read_all(&h.store, &a);
    assert_eq!(
        payloads(&got),
        vec![&b"new-style"[..], &b"old-1"[..], &b"old-2"[..]]
    );
    assert_eq!(seqs(&got), vec![0, 1, 2]);
    assert_eq!(a.records(), 15);
    h.delete(&a, 0, 1);
    assert_eq!(h.log_len_after_flush(), 1);
    h.append(&a, 1, b"after").unwrap();
    assert_eq!(seqs(&read_all(&h.store, &a)), vec![2, 3]);
    h.close();
}

#[test]
fn entries_taken_from_the_middle_of_a_queue_are_deleted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = Harness::start(options(dir.path()));
        let a = h.store.queue("a").unwrap();
        for i in 0..3u8 {
            h.append(&a, 1, &[i]).unwrap();
        }
        // Not the oldest: no mark could say it, so it goes now.
        h.delete(&a, 1, 1);
        h.flush().unwrap();
        assert_eq!(h.store.log_len(), 2);
        assert_eq!(seqs(&read_all(&h.store, &a)), vec![0, 2]);
        // The same range again changes nothing (counted once).
        h.delete(&a, 0, 1);
        h.delete(&a, 1, 1);
        h.flush().unwrap();
        assert_eq!((a.entries(), a.used_bytes()), (1, 1));
        h.close();
    }
    let h = Harness::start(options(dir.path()));
    let a = h.store.queue("a").unwrap();
    assert_eq!(seqs(&read_all(&h.store, &a)), vec![2]);
    assert_eq!(h.store.discarded_at_open(), 0);
    h.close();
}

#[test]
fn a_dropped_queue_leaves_no_readable_part_behind() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = Harness::start(options(dir.path()));
        let keep = h.store.queue("keep").unwrap();
        let gone = h.store.queue("gone").unwrap();
        h.append_parts(vec![(&keep, 1, b"k0"), (&gone, 1, b"g0")])
            .unwrap();
        h.append(&gone, 1, b"g1").unwrap();
        // Partly delivered, then dropped: its own block goes, the shared
        // one stays for `keep`.
        let first = seqs(&read_all(&h.store, &gone))[0];
        h.delete(&gone, first, first);
        h.drop_queue(&gone).unwrap();
        assert_eq!(h.store.log_len(), 1);
        // Consumed and dropped in one group.
        let gone = h.store.queue("gone-too").unwrap();
        h.append_parts(vec![(&keep, 1, b"k1"), (&gone, 1, b"g")])
            .unwrap();
        let pos = seqs(&read_all(&h.store, &gone))[0];
        h.delete(&gone, pos, pos);
        h.drop_queue(&gone).unwrap();
        assert_eq!(h.store.log_len(), 2);
        h.close();
    }
    {
        let h = Harness::start(options(dir.path()));
        assert_eq!(h.store.discarded_at_open(), 0, "entries of no queue");
        let names: Vec<_> = h.store.queues().iter().map(|q| q.name.clone()).collect();
        assert_eq!(names, vec!["keep"]);
        let keep = h.store.queue("keep").unwrap();
        let kept = read_all(&h.store, &keep);
        assert_eq!(payloads(&kept), vec![&b"k0"[..], &b"k1"[..]]);
        // The dropped queues' marks stay while blocks hold their parts...
        assert_eq!(h.meta_keys(format::META_DONE_PREFIX).len(), 2);
        h.delete(&keep, kept[0].seq, kept[1].seq);
        assert_eq!(h.log_len_after_flush(), 0);
        h.close();
    }
    // ...and the open after the last of those blocks went deletes them.
    let h = Harness::start(options(dir.path()));
    assert_eq!(h.meta_keys(format::META_DONE_PREFIX).len(), 1, "keep's own");
    h.close();
}

#[test]
fn a_format_1_buffer_is_moved_into_the_log_at_open() {
    let dir = tempfile::tempdir().unwrap();
    // Format 1 as the previous release wrote it: per-queue keys
    // `id ++ seq` in `entries`, 16-byte headers, `seq/<id>` marks.
    {
        // SAFETY: a fresh directory of this test, opened once.
        #[allow(unsafe_code)]
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(64 << 20)
                .max_dbs(3)
                .open(dir.path())
                .unwrap()
        };
        let (meta, entries): (RawDb, RawDb) = env
            .create_databases_and_commit(env.write_txn().unwrap(), |opener, wtxn| {
                let meta = opener.create_database(wtxn, Some("meta"))?;
                let entries = opener.create_database(wtxn, Some("entries"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((meta, entries)))
            })
            .unwrap()
            .commit()
            .unwrap();
        let mut wtxn = env.write_txn().unwrap();
        for (name, id) in [("b", 1u32), ("a", 2u32)] {
            meta.put(&mut wtxn, &format::queue_name_key(name), &id.to_be_bytes())
                .unwrap();
            let mut seq_key = b"seq/".to_vec();
            seq_key.extend_from_slice(&id.to_be_bytes());
            meta.put(&mut wtxn, &seq_key, &100u64.to_be_bytes())
                .unwrap();
            for seq in [97u64, 98, 99] {
                let mut key = id.to_be_bytes().to_vec();
                key.extend_from_slice(&seq.to_be_bytes());
                let mut value = vec![1u8, 0, 0, 0];
                value.extend_from_slice(&(id * 10).to_be_bytes());
                value.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
                value.extend_from_slice(format!("{name}{seq}").as_bytes());
                entries.put(&mut wtxn, &key, &value).unwrap();
            }
        }
        meta.put(&mut wtxn, format::META_NEXT_ID, &3u32.to_be_bytes())
            .unwrap();
        wtxn.commit().unwrap();
        env.prepare_for_closing().wait();
    }
    let h = Harness::start(options(dir.path()));
    assert_eq!(h.store.discarded_at_open(), 0);
    assert_eq!(h.store.log_len(), 6);
    for (name, id) in [("a", 2u32), ("b", 1u32)] {
        let queue = h.store.queue(name).unwrap();
        assert_eq!(queue.id, id);
        let got = read_all(&h.store, &queue);
        assert_eq!(
            payloads(&got),
            vec![
                format!("{name}97").as_bytes(),
                format!("{name}98").as_bytes(),
                format!("{name}99").as_bytes()
            ]
        );
        assert!(got.iter().all(|e| e.records == id * 10));
        assert!(got.iter().all(|e| e.appended_at_ms == 1_700_000_000_000));
        assert_eq!(
            (queue.entries(), queue.records()),
            (3, 3 * u64::from(id) * 10)
        );
    }
    {
        let rtxn = h.store.env.read_txn().unwrap();
        assert_eq!(h.store.legacy.len(&rtxn).unwrap(), 0);
        let old_marks = h
            .store
            .meta
            .prefix_iter(&rtxn, format::V1_META_SEQ_PREFIX)
            .unwrap()
            .count();
        assert_eq!(old_marks, 0);
    }
    // It goes on as a format 2 store: new entries after the moved ones.
    let a = h.store.queue("a").unwrap();
    h.append(&a, 1, b"new").unwrap();
    let got = read_all(&h.store, &a);
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].payload, Bytes::from_static(b"new"));
    let new_queue = h.store.queue("c").unwrap();
    assert!(new_queue.id >= 3);
    h.close();
}

/// A store in `dir` without fsync (the tests of mapped pages need no
/// disk), the path of its `data.mdb`, and queues `shoot/0..n`.
fn mapped_shoots(dir: &Path, n: usize) -> (Harness, std::path::PathBuf, Vec<Arc<Queue>>) {
    let h = Harness::start(StoreOptions {
        durability: Durability::None,
        ..options(dir)
    });
    let data = dir.canonicalize().unwrap().join("data.mdb");
    let queues = (0..n)
        .map(|i| h.store.queue(&format!("shoot/{i}")).unwrap())
        .collect();
    (h, data, queues)
}

/// A block that lived long gives back, when it dies, the pages its readers
/// mapped; one that dies young keeps them (its pages are reused at once).
#[test]
fn blocks_that_lived_long_give_their_pages_back_when_they_die() {
    let dir = tempfile::tempdir().unwrap();
    // Four queues' parts of 256 KiB in one block, each read as a shoot's
    // loop reads its own (the pages inside a part are its alone only when
    // nothing else shares them: here the read keeps them, as the export
    // path does without a backlog).
    let (h, data, queues) = mapped_shoots(dir.path(), 4);
    let payload = vec![5u8; 256 * 1024];
    let read_and_deliver = |h: &Harness, wait: Duration| -> u64 {
        let parts = queues.iter().map(|q| (q, 1, &payload[..])).collect();
        h.append_parts(parts).unwrap();
        let mut read = Vec::new();
        for q in &queues {
            let batch = whole_batch(&h.store, q);
            assert_eq!(batch.body.len(), payload.len());
            read.push((q, batch.first));
        }
        let mapped = resident_kib_of(&data);
        assert!(mapped >= 1024, "{mapped} KiB resident after reading 1 MiB");
        std::thread::sleep(wait);
        for (q, seq) in read {
            h.delete(q, seq, seq);
        }
        assert_eq!(h.log_len_after_flush(), 0);
        resident_kib_of(&data)
    };
    let young = read_and_deliver(&h, Duration::ZERO);
    assert!(
        young >= 1024,
        "{young} KiB resident after a young block died"
    );
    h.store.map.unwrap().release_all();
    let old = read_and_deliver(&h, Duration::from_millis(600));
    assert!(old < 256, "{old} KiB resident after an old block died");
    h.close();
}

#[test]
fn releasing_the_whole_map_gives_back_pages_no_single_read_could() {
    let dir = tempfile::tempdir().unwrap();
    // 4,000 entries of 1 KiB over 40 queues: each smaller than a page, so
    // no read releases its own.
    let (h, data, queues) = mapped_shoots(dir.path(), 40);
    for round in 0..100u32 {
        let payload = [round as u8; 1024];
        let parts: Vec<_> = queues.iter().map(|q| (q, 1, &payload[..])).collect();
        h.append_parts(parts).unwrap();
    }
    for q in &queues {
        let batch = whole_batch(&h.store, q);
        assert_eq!(batch.entries, 100);
    }
    let read = resident_kib_of(&data);
    assert!(read > 3 * 1024, "{read} KiB resident after reading 4 MiB");
    // What the writer does every few seconds gives back everything mapped.
    h.store.map.unwrap().release_all();
    let after = resident_kib_of(&data);
    assert!(after < 512, "{after} KiB resident after releasing the map");
    // And the bytes read again are right.
    let batch = whole_batch(&h.store, &queues[7]);
    assert_eq!(batch.body.len(), 100 * 1024);
    assert_eq!(batch.body[99 * 1024], 99);
    h.close();
}

#[test]
fn a_restarted_writer_goes_on_with_the_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(options(dir.path()));
    let (a, b) = (h.store.queue("a").unwrap(), h.store.queue("b").unwrap());
    h.append_parts(vec![(&b, 1, b"b"), (&a, 1, b"a")]).unwrap();
    let (pa, pb) = (
        seqs(&read_all(&h.store, &a))[0],
        seqs(&read_all(&h.store, &b))[0],
    );
    // a is delivered, but b's part keeps the block.
    h.delete(&a, pa, pa);
    assert_eq!(h.log_len_after_flush(), 1);
    h.restart_writer();
    h.delete(&b, pb, pb);
    assert_eq!(
        h.log_len_after_flush(),
        0,
        "the next writer knows what the first one consumed"
    );
    h.close();
}

//! The group-commit writer: the only thread that writes entries.
//!
//! It exists so that many concurrent requests share one LMDB transaction
//! and one fsync. The loop blocks on the channel (with a timeout, so the
//! heartbeat moves while idle), drains what else is already queued up to
//! `max_ops_per_commit`, and commits the whole group at once.
//!
//! Invariants:
//! - every [`Reply`] gets exactly one answer, and `Ok` only after the
//!   commit that made the data readable;
//! - every reservation carried by an [`AppendPart`] is either kept (the part
//!   was committed) or released (anything else): never leaked;
//! - in-memory stats and sequence numbers change only after a successful
//!   commit;
//! - I/O and LMDB errors are answered and counted, never panicked on: the
//!   loop keeps running until every sender is gone.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use heed::RwTxn;

use super::metrics::{ErrorKindLabels, FullLabels};
use super::{
    AppendPart, BlockLive, FullReason, Held, Queue, Reply, Store, StoreError, StoreMetrics,
    WriteOp, release_parts,
};
use super::{format, space};
use crate::config::Durability;

/// How long the writer waits for work before it refreshes its heartbeat.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How long a delivery's delete may wait for others to share its commit
/// (see [`Writer::hold_deletes`]).
const HOLD_DELETES: Duration = Duration::from_millis(20);

/// Most deletes held at once: more go at once.
const MAX_HELD_DELETES: usize = 256;

/// Most payload bytes one group takes from the channel: a single LMDB
/// transaction may dirty at most ~512 MiB of pages (`MDB_TXN_FULL`), and a
/// bounded group keeps a commit's latency bounded too.
const MAX_GROUP_BYTES: u64 = 64 * 1024 * 1024;

/// A block this old that its live parts alone hold (a dead shoot's, a
/// backlog's) is rewritten without its consumed parts (see
/// [`Writer::compact`]): deliveries that keep up consume a block's parts
/// within a second or two.
const COMPACT_AFTER: Duration = Duration::from_secs(3);

/// A block deleted at least this long after its append gives back the
/// map pages its readers mapped (see [`Writer::settle_blocks`]).
const RELEASE_DEAD_AFTER_MS: u64 = 500;

/// Most blocks one commit rewrites: bounds its transaction.
const MAX_COMPACT_PER_COMMIT: usize = 64;

/// Most payload bytes in one block: a group's parts go into blocks of up
/// to this size. A block is a run of overflow pages that LMDB allocates
/// in one piece, so a bounded size keeps freed runs reusable by the next
/// blocks.
const MAX_BLOCK_BYTES: usize = 1024 * 1024;

/// Least time between two "storage full" warnings.
const FULL_WARN_EVERY: Duration = Duration::from_secs(10);

/// The entries `first..=last` of a queue that a move takes out, or that a
/// delete removes.
type Consumed = (Arc<Queue>, u64, u64);

/// One group of operations taken from the channel, sorted by kind.
#[derive(Default)]
struct Group {
    deletes: Vec<Consumed>,
    drops: Vec<(Arc<Queue>, Option<Reply>)>,
    /// Appends, each with the source ranges a move consumes in the same
    /// transaction (see [`WriteOp::Move`], [`WriteOp::Settle`]); empty for
    /// a plain append.
    appends: Vec<(Vec<AppendPart>, Vec<Consumed>, Reply)>,
    flushes: Vec<Reply>,
    /// A `Stop` ends the group and then the writer.
    stop: Option<Reply>,
    /// Operations it commits (deletes held back for a later group are
    /// not counted here, and those handed to it are).
    ops: usize,
    /// Payload bytes of the appends so far.
    bytes: u64,
}

/// What a successful transaction changed, applied to memory after commit.
#[derive(Default)]
struct Applied {
    /// Per queue id: (queue, payload bytes, records, entries) consumed.
    deleted: HashMap<u32, (Arc<Queue>, u64, u64, u64)>,
    /// Per queue id: the positions taken out of its index.
    removed: HashMap<u32, BTreeSet<u64>>,
    /// Parts consumed: position, what the index held, and whether out of
    /// order (no mark says so: a `gone/` key must, unless its block goes).
    consumed: Vec<(u64, Held, bool)>,
    /// Blocks this transaction appended, changed (`Some`) or deleted
    /// (`None`), by key: applied to [`Store::blocks`] after the commit.
    blocks: BTreeMap<u64, Option<BlockLive>>,
    /// Blocks rewritten without their consumed parts.
    rewritten: u64,
    /// Whether anything was deleted from the log (pages freed).
    freed: bool,
    /// Per queue id: what was appended to it.
    appended: HashMap<u32, Appended>,
    /// The store's next position after the appends.
    next_seq: u64,
    /// Payload bytes appended in total.
    appended_bytes: u64,
}

/// The writer thread's state.
struct Writer {
    store: Arc<Store>,
    rx: Receiver<WriteOp>,
    metrics: Arc<StoreMetrics>,
    /// When "storage full" was last logged, and refusals since.
    last_full_warn: Option<Instant>,
    full_since_warn: u64,
    /// Whether the last group's appends were refused as full.
    full: bool,
    /// Whether "full" was logged and "accepts again" not yet.
    full_logged: bool,
    /// Deletes whose commit found no room (a disk that someone else filled
    /// past the reserve): tried again before the next group's, and on each
    /// idle tick, so delivered entries do not stay until a restart.
    deferred: Vec<Consumed>,
    /// Deliveries' deletes waiting to share a commit, and since when.
    held: Vec<Consumed>,
    held_since: Option<Instant>,
    /// When deferred deletes were last logged.
    last_defer_warn: Option<Instant>,
    /// Whether the last successful commit deleted entries; see
    /// [`Writer::should_retry_full`].
    freed_pending: bool,
    /// Counter written by [`Writer::retry_appends`].
    ticks: u64,
    /// Blocks below this key were looked at by [`Writer::compact`].
    compacted_to: Cell<u64>,
    /// When [`Writer::release_map`] last gave back the map's pages.
    map_released: Option<Instant>,
    /// The store's next position after recent commits, oldest first, kept
    /// for [`COMPACT_AFTER`].
    history: VecDeque<(Instant, u64)>,
    /// Keeps the reserve for deletes allocated in the data file.
    file_reserve: space::FileReserve,
}

/// The entries one transaction appended to a queue: the queue, their
/// positions, and their records in all.
type Appended = (Arc<Queue>, Vec<(u64, Held)>, u64);

/// Sends `result` to `reply`.
fn answer(reply: Reply, result: Result<(), StoreError>) {
    // The requester may have given up (timeout, disconnect); the outcome
    // stands either way, so a closed receiver is not an error.
    drop(reply.send(result));
}

impl Store {
    /// Starts the writer thread, which owns all entry writes until every
    /// sender of `rx` is dropped; then it commits what it has, syncs (when
    /// durability is `none`) and exits.
    ///
    /// # Errors
    ///
    /// The OS error if the thread cannot be spawned, or
    /// [`std::io::ErrorKind::AlreadyExists`] if a writer was already spawned:
    /// two writers would hand out the same sequence numbers.
    pub fn spawn_writer(
        self: &Arc<Self>,
        rx: Receiver<WriteOp>,
        metrics: Arc<StoreMetrics>,
    ) -> std::io::Result<JoinHandle<()>> {
        if self.writer_spawned.swap(true, Ordering::AcqRel) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the LMDB writer is already running",
            ));
        }
        let writer = Writer {
            store: Arc::clone(self),
            rx,
            metrics,
            last_full_warn: None,
            full_since_warn: 0,
            full: false,
            full_logged: false,
            deferred: Vec::new(),
            held: Vec::new(),
            held_since: None,
            last_defer_warn: None,
            freed_pending: false,
            ticks: 0,
            compacted_to: Cell::new(0),
            map_released: None,
            history: VecDeque::new(),
            file_reserve: space::FileReserve::open(self),
        };
        let slot = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("lmdb-writer".to_owned())
            .spawn(move || {
                // A writer that panics lets go of the slot too, so that the
                // supervisor can start the next one.
                let _slot = WriterSlot(slot);
                writer.run();
            });
        if spawned.is_err() {
            self.writer_spawned.store(false, Ordering::Release);
        }
        spawned
    }
}

/// Frees the writer slot when the writer thread panics (a stopping writer
/// frees it itself, before it answers).
struct WriterSlot(Arc<Store>);

impl Drop for WriterSlot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.writer_spawned.store(false, Ordering::Release);
        }
    }
}

// === impl Writer ===

impl Writer {
    fn run(mut self) {
        tracing::info!(
            max_ops_per_commit = self.store.max_ops_per_commit,
            durability = ?self.store.durability,
            "Storage writer started."
        );
        self.keep_reserve(0);
        loop {
            self.store.beat();
            let wait = self.held_since.map_or(IDLE_TICK, |since| {
                HOLD_DELETES.saturating_sub(since.elapsed()).min(IDLE_TICK)
            });
            let first = match self.rx.recv_timeout(wait) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    let mut group = Group::default();
                    self.hold_deletes(&mut group, false);
                    if !group.deletes.is_empty()
                        || !self.deferred.is_empty()
                        || self.compaction_due()
                    {
                        self.commit_group(group);
                    }
                    self.release_map();
                    continue;
                }
                // Only reported once the channel is empty too: nothing is left.
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Group::default();
            group.push(first);
            while group.stop.is_none()
                && group.ops < self.store.max_ops_per_commit
                && group.bytes < MAX_GROUP_BYTES
            {
                match self.rx.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            let stop = group.stop.take();
            self.hold_deletes(&mut group, stop.is_some());
            if group.ops > 0 {
                self.commit_group(group);
            }
            if let Some(reply) = stop {
                if self.store.durability == Durability::None
                    && let Err(e) = self.store.sync()
                {
                    tracing::error!(error = %e, "Could not sync the LMDB buffer before stopping.");
                }
                // Let go of the writer slot before answering, so that the
                // caller can spawn the next writer as soon as it hears back.
                self.store.writer_spawned.store(false, Ordering::Release);
                tracing::info!("Storage writer stopped on request.");
                // The requester may have given up; nothing to do then.
                reply.send(Ok(())).ok();
                return;
            }
        }
        if !self.held.is_empty() {
            let mut group = Group::default();
            self.hold_deletes(&mut group, true);
            self.commit_group(group);
        }
        if self.store.durability == Durability::None
            && let Err(e) = self.store.sync()
        {
            tracing::error!(error = %e, "Could not sync the LMDB buffer at shutdown.");
        }
        tracing::info!("Storage writer stopped: every sender is gone.");
    }

    fn commit_group(&mut self, mut group: Group) {
        let started = Instant::now();
        if !self.deferred.is_empty() {
            let mut deletes = std::mem::take(&mut self.deferred);
            deletes.append(&mut group.deletes);
            group.deletes = deletes;
        }
        self.metrics.commit_ops.observe(group.ops as f64);

        // Parts for a queue that is (or is being) dropped would become
        // orphan entries: discard them now and give back their reservation.
        let dropping: Vec<u32> = group.drops.iter().map(|(q, _)| q.id).collect();
        for (parts, consumed, reply) in &mut group.appends {
            if !consumed.is_empty() {
                // A move is all or nothing: its source entries must not be
                // deleted while a part of them is discarded.
                let gone = parts
                    .iter()
                    .any(|part| part.queue.is_dropped() || dropping.contains(&part.queue.id));
                if gone {
                    release_parts(parts);
                    parts.clear();
                    consumed.clear();
                    let (tx, _) = tokio::sync::oneshot::channel();
                    answer(
                        std::mem::replace(reply, tx),
                        Err(StoreError::InvalidQueueName {
                            name: String::new(),
                            reason: "a move's target queue was dropped",
                        }),
                    );
                }
                continue;
            }
            parts.retain(|part| {
                let gone = part.queue.is_dropped() || dropping.contains(&part.queue.id);
                if gone {
                    part.release();
                }
                !gone
            });
        }
        let has_deletes = !group.deletes.is_empty() || !group.drops.is_empty();
        let has_appends = !group.appends.is_empty();

        // The outcome for deletes, drops and flushes, and for the appends.
        let (control, appends): (Result<(), StoreError>, Result<(), StoreError>) = match self
            .try_commit(&group, true, true)
        {
            Ok(applied) => {
                self.after_commit(&applied, &group.drops);
                (Ok(()), Ok(()))
            }
            Err(first) => {
                let first = self.classify(first);
                // Retry without the appends: deletes and drops free space
                // and must not be held hostage by a full map or a bad
                // append.
                let control = if has_deletes {
                    self.try_commit(&group, true, false)
                        .map(|applied| self.after_commit(&applied, &group.drops))
                        .map_err(|e| self.classify(e))
                } else {
                    Ok(())
                };
                // Then every block that holds consumed parts is
                // rewritten without them, in a transaction of its own:
                // a rewrite takes fresh pages before it frees any, so
                // on a disk with no byte left it must not hold the
                // deletes back (they free pages without new ones).
                if control.is_ok()
                    && self.compactable()
                    && let Err(e) = self.rewrite_all()
                {
                    tracing::debug!(error = %e, "Could not rewrite blocks on a full buffer yet.");
                }
                let appends = if has_appends && self.should_retry_full(&first) {
                    self.retry_appends(&group).map_err(|e| self.classify(e))
                } else {
                    Err(first)
                };
                (control, appends)
            }
        };
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.release_map();

        // Stats were updated above, before any reply: a requester that sees
        // `Ok` also sees its data counted.
        match appends {
            Ok(()) => {
                if has_appends {
                    self.set_full(false);
                }
                for (_, _, reply) in group.appends {
                    answer(reply, Ok(()));
                }
            }
            Err(error) => {
                let count = group.appends.len() as u64;
                if let StoreError::Full { reason, .. } = &error {
                    self.metrics
                        .storage_full_refusals
                        .get_or_create(&FullLabels {
                            reason: reason.as_str(),
                        })
                        .inc_by(count);
                    self.set_full(true);
                    self.warn_full(&error, count);
                } else {
                    self.count_error(&error);
                    tracing::error!(
                        error = %error,
                        kind = error.kind(),
                        appends = count,
                        "Could not commit appends to the LMDB buffer."
                    );
                }
                for (parts, _, reply) in group.appends {
                    release_parts(&parts);
                    answer(reply, Err(error.duplicate()));
                }
            }
        }
        if let Err(error) = &control {
            self.count_error(error);
            let deletes = group.deletes.len();
            if matches!(error, StoreError::Full { .. }) {
                defer(&mut self.deferred, std::mem::take(&mut group.deletes));
                if due(&mut self.last_defer_warn) {
                    tracing::warn!(
                        error = %error,
                        deletes,
                        drops = group.drops.len(),
                        "Deletes found no room in the LMDB buffer; retrying them with every commit until they fit."
                    );
                }
            } else {
                tracing::error!(
                    error = %error,
                    kind = error.kind(),
                    deletes,
                    drops = group.drops.len(),
                    "Could not commit deletes to the LMDB buffer; the entries stay until a later delete or a restart."
                );
            }
        }
        for (_, reply) in group.drops {
            if let Some(reply) = reply {
                answer(
                    reply,
                    control.as_ref().map_err(StoreError::duplicate).copied(),
                );
            }
        }
        for reply in group.flushes {
            answer(
                reply,
                control.as_ref().map_err(StoreError::duplicate).copied(),
            );
        }
        self.store.beat();
    }

    /// Holds the group's deletes (deliveries' marks) back for up to
    /// [`HOLD_DELETES`], then hands every held one to the group that is
    /// due: at once when `urgent` (a stop), for a drop or a flush (which
    /// promise what came before), and while the buffer is full.
    ///
    /// A delete needs no commit of its own: it frees space, it promises
    /// nobody anything. But each one that rides its own commit dirties
    /// pages far from the appends (its queue's `done/` mark among a
    /// thousand, the log leaf of the block it kills), and a thousand shoot
    /// clients sending on grids spread over their timeout deliver about
    /// one batch per commit. Held for 20 ms, their marks share leaves.
    /// A crash loses at most the held deletes: those batches are sent
    /// again (at least once), as any delivered in the last commit's wait.
    fn hold_deletes(&mut self, group: &mut Group, urgent: bool) {
        let own = group.deletes.len();
        if own == 0 && self.held.is_empty() {
            return;
        }
        self.held.append(&mut group.deletes);
        let since = *self.held_since.get_or_insert_with(Instant::now);
        let due = urgent
            || !group.drops.is_empty()
            || !group.flushes.is_empty()
            || self.full
            || self.held.len() >= MAX_HELD_DELETES
            || since.elapsed() >= HOLD_DELETES;
        // The group's ops count what it commits: the held, when due.
        group.ops -= own;
        if due {
            group.ops += self.held.len();
            group.deletes = std::mem::take(&mut self.held);
            self.held_since = None;
        }
    }

    /// Whether a refused append is worth one more try: the map is full, but
    /// the last commit freed pages that LMDB will only hand out two
    /// transactions after the one that freed them.
    fn should_retry_full(&self, error: &StoreError) -> bool {
        matches!(error, StoreError::Full { .. }) && self.freed_pending
    }

    /// Gives back every mapped page of the map once per
    /// [`super::mapped::RELEASE_ALL_EVERY`] (see [`super::mapped`]).
    fn release_map(&mut self) {
        let Some(map) = self.store.map else { return };
        if self
            .map_released
            .is_some_and(|at| at.elapsed() < super::mapped::RELEASE_ALL_EVERY)
        {
            return;
        }
        self.map_released = Some(Instant::now());
        map.release_all();
    }

    /// Keeps the reserve allocated past LMDB's high-water mark and `more`
    /// bytes it is about to write (see [`space::FileReserve`]); returns the
    /// bytes left on the disk.
    fn keep_reserve(&self, more: u64) -> Option<u64> {
        let pages = self.store.env.info().last_page_number as u64 + 1;
        self.file_reserve
            .keep(pages * rustix::param::page_size() as u64 + more)
    }

    /// Rewrites every block that holds a consumed part, in a transaction
    /// of its own (the map or the disk is full).
    fn rewrite_all(&mut self) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        let err = |op| super::lmdb_err(op, store.map_size);
        let mut txn = store.env.write_txn().map_err(err("begin"))?;
        let mut applied = Applied {
            next_seq: store.next_seq.load(Ordering::Acquire),
            ..Applied::default()
        };
        self.compact(&mut txn, &mut applied, true)
            .map_err(err("rewrite"))?;
        if applied.rewritten > 0 {
            txn.commit().map_err(err("commit"))?;
            self.after_commit(&applied, &[]);
        }
        Ok(())
    }

    /// Commits a tiny `meta` write so pages freed by the last commit become
    /// reusable, then tries the group's appends alone.
    fn retry_appends(&mut self, group: &Group) -> Result<(), StoreError> {
        self.freed_pending = false;
        let store = &self.store;
        let err = |op| super::lmdb_err(op, store.map_size);
        let mut txn = store.env.write_txn().map_err(err("tick"))?;
        self.ticks += 1;
        store
            .meta
            .put(&mut txn, format::META_TICK, &self.ticks.to_be_bytes())
            .map_err(err("tick"))?;
        txn.commit().map_err(err("tick"))?;
        let applied = self.try_commit(group, false, true)?;
        self.after_commit(&applied, &[]);
        Ok(())
    }

    /// Bookkeeping after a successful commit, before any reply is sent.
    fn after_commit(&mut self, applied: &Applied, drops: &[(Arc<Queue>, Option<Reply>)]) {
        self.metrics.commits.inc();
        self.metrics
            .commit_bytes
            .observe(applied.appended_bytes as f64);
        self.metrics.blocks_rewritten.inc_by(applied.rewritten);
        self.freed_pending = applied.freed;
        {
            let mut blocks = self.store.lock_blocks();
            for (key, block) in &applied.blocks {
                match block {
                    Some(block) => blocks.insert(*key, *block),
                    None => blocks.remove(key),
                };
            }
        }
        let now = Instant::now();
        self.history.push_back((now, applied.next_seq));
        while self.history.len() > 1
            && self
                .history
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= COMPACT_AFTER)
        {
            self.history.pop_front();
        }
        self.apply_in_memory(applied, drops);
    }

    /// Runs one transaction with the group's deletes and drops (if
    /// `with_deletes`) and its appends (if `with_appends`); commits it.
    fn try_commit(
        &self,
        group: &Group,
        with_deletes: bool,
        with_appends: bool,
    ) -> Result<Applied, StoreError> {
        let store = &self.store;
        let err = |op| super::lmdb_err(op, store.map_size);
        let mut txn = store.env.write_txn().map_err(err("begin"))?;
        // Every part of the group, in order: what its blocks hold.
        let parts: Vec<&AppendPart> = if with_appends {
            group.appends.iter().flat_map(|(p, _, _)| p).collect()
        } else {
            Vec::new()
        };
        if with_appends && !group.appends.is_empty() {
            // Measured before this transaction writes anything: as of the
            // last commit, which is what LMDB allocates from.
            let lens = blocks_of(&parts)
                .map(|block| format::block_len(block.iter().map(|part| part.payload.len())));
            let page = rustix::param::page_size() as u64;
            let pages = space::pages_for(lens, page);
            let disk = self.keep_reserve(pages * page);
            let room = space::Room::measure(store, &txn, &self.file_reserve, disk)
                .map_err(err("measure"))?;
            room.check(pages)?;
        }
        let mut applied = Applied {
            next_seq: store.next_seq.load(Ordering::Acquire),
            ..Applied::default()
        };
        let (deletes, drops) = if with_deletes {
            (&group.deletes[..], &group.drops[..])
        } else {
            (&[][..], &[][..])
        };
        for (queue, first, last) in deletes {
            self.consume(&mut txn, queue, *first, *last, &mut applied)
                .map_err(err("delete"))?;
        }
        for (queue, _) in drops {
            self.drop_queue(&mut txn, queue, &mut applied)
                .map_err(err("drop"))?;
        }
        if with_appends {
            // A move's source range goes in the transaction of its appends,
            // never in a deletes-only retry: all or nothing.
            for (queue, first, last) in group.appends.iter().flat_map(|(_, c, _)| c) {
                self.consume(&mut txn, queue, *first, *last, &mut applied)
                    .map_err(err("move"))?;
            }
            // Every part of the group in one block (or a few, for a large
            // group) at the end of the log: one run of pages per commit,
            // whatever queues the parts are for.
            let appended_at_ms = format::now_ms();
            for block in blocks_of(&parts) {
                self.append_block(&mut txn, block, appended_at_ms, &mut applied)
                    .map_err(err("append"))?;
            }
            if !applied.appended.is_empty() {
                // Positions are never reused, even after the log was swept
                // empty and the process restarted.
                store
                    .meta
                    .put(
                        &mut txn,
                        format::META_NEXT_SEQ,
                        &applied.next_seq.to_be_bytes(),
                    )
                    .map_err(err("append"))?;
            }
            // A queue's first entry brings its name (and the id counter)
            // to disk in this transaction: never one without the other.
            let mut named = false;
            for (id, (queue, _, _)) in &applied.appended {
                if !queue.is_persisted() {
                    store
                        .meta
                        .put(
                            &mut txn,
                            &format::queue_name_key(&queue.name),
                            &id.to_be_bytes(),
                        )
                        .map_err(err("create queue"))?;
                    named = true;
                }
            }
            if named {
                let next_id = store.next_id.load(Ordering::Acquire);
                store
                    .meta
                    .put(&mut txn, format::META_NEXT_ID, &next_id.to_be_bytes())
                    .map_err(err("create queue"))?;
            }
        }
        self.settle_blocks(&mut txn, &mut applied)
            .map_err(err("delete"))?;
        if with_deletes && with_appends {
            // Not in a deletes-only retry: see `Writer::rewrite_all`.
            self.compact(&mut txn, &mut applied, false)
                .map_err(err("rewrite"))?;
        }
        txn.commit().map_err(err("commit"))?;
        Ok(applied)
    }

    /// Writes `parts` as one block at the log's end (positions only grow,
    /// so a commit's block lands after every other).
    fn append_block(
        &self,
        txn: &mut RwTxn<'_>,
        parts: &[&AppendPart],
        appended_at_ms: u64,
        applied: &mut Applied,
    ) -> Result<(), heed::Error> {
        let key = applied.next_seq;
        let new: Vec<format::Part<'_>> = parts
            .iter()
            .zip(0u32..)
            .map(|(part, delta)| format::Part {
                delta,
                queue: part.queue.id,
                records: part.records,
                payload: &part.payload,
            })
            .collect();
        let len = format::block_len(parts.iter().map(|part| part.payload.len()));
        self.store
            .log
            .put_reserved(txn, &format::log_key(key), len, |space| {
                format::write_block(space, appended_at_ms, &new)
            })?;
        let count = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let mut block = BlockLive {
            live: count,
            parts: count,
            span: count,
            appended_at_ms,
            ..BlockLive::default()
        };
        for (part, delta) in parts.iter().zip(0u32..) {
            let queue = &part.queue;
            let len = part.payload.len();
            let slot = applied
                .appended
                .entry(queue.id)
                .or_insert_with(|| (Arc::clone(queue), Vec::new(), 0));
            let pos = key + u64::from(delta);
            slot.1.push((pos, Held::new(part.records, len, delta)));
            slot.2 += u64::from(part.records);
            block.bytes += len as u64;
        }
        block.live_bytes = block.bytes;
        applied.appended_bytes += block.bytes;
        applied.blocks.insert(key, Some(block));
        applied.next_seq = key + u64::from(count);
        Ok(())
    }

    /// Takes entries `first..=last` of `queue` out of it in `txn`. When they
    /// are the oldest it holds (a delivery, nearly always), that is a "done"
    /// mark in `meta`; otherwise (a tail sampling decision, a re-route out
    /// of the middle) each needs a `gone/` mark, unless its block goes in
    /// this transaction ([`Writer::settle_blocks`]). Either way they are
    /// gone for readers once committed, and for the next open too.
    fn consume(
        &self,
        txn: &mut RwTxn<'_>,
        queue: &Arc<Queue>,
        first: u64,
        last: u64,
        applied: &mut Applied,
    ) -> Result<(), heed::Error> {
        if first > last {
            return Ok(());
        }
        let removed = applied.removed.entry(queue.id).or_default();
        let (taken, oldest) = {
            let index = queue.lock_index();
            let taken: Vec<(u64, Held)> = index
                .range(first..=last)
                .filter(|(pos, _)| !removed.contains(pos))
                .map(|(pos, held)| (*pos, *held))
                .collect();
            // Oldest unless something older is left. Looking at one more
            // than this transaction removed is enough to know.
            let oldest = index
                .range(..first)
                .take(removed.len() + 1)
                .all(|(pos, _)| removed.contains(pos));
            (taken, oldest)
        };
        let Some(&(newest, _)) = taken.last() else {
            return Ok(());
        };
        removed.extend(taken.iter().map(|(pos, _)| *pos));
        if oldest {
            self.store.meta.put(
                txn,
                &format::queue_done_key(queue.id),
                &newest.saturating_add(1).to_be_bytes(),
            )?;
        }
        applied
            .consumed
            .extend(taken.iter().map(|(pos, held)| (*pos, *held, !oldest)));
        applied.add_deleted(queue, &taken);
        Ok(())
    }

    /// Takes everything out of `queue` and forgets its name in `txn`. Its
    /// mark says "all consumed" for as long as a block holds one of its
    /// parts (the next open deletes it after the last).
    fn drop_queue(
        &self,
        txn: &mut RwTxn<'_>,
        queue: &Arc<Queue>,
        applied: &mut Applied,
    ) -> Result<(), heed::Error> {
        let removed = applied.removed.entry(queue.id).or_default();
        let taken: Vec<(u64, Held)> = queue
            .lock_index()
            .iter()
            .filter(|(pos, _)| !removed.contains(pos))
            .map(|(pos, held)| (*pos, *held))
            .collect();
        removed.extend(taken.iter().map(|(pos, _)| *pos));
        applied
            .consumed
            .extend(taken.iter().map(|(pos, held)| (*pos, *held, false)));
        applied.add_deleted(queue, &taken);
        self.store
            .meta
            .delete(txn, &format::queue_name_key(&queue.name))?;
        self.store.meta.put(
            txn,
            &format::queue_done_key(queue.id),
            &u64::MAX.to_be_bytes(),
        )?;
        Ok(())
    }

    /// Counts this transaction's consumed parts against their blocks:
    /// deletes each block whose last live part went, and writes a `gone/`
    /// mark for each part consumed out of order from a block that stays.
    fn settle_blocks(&self, txn: &mut RwTxn<'_>, applied: &mut Applied) -> Result<(), heed::Error> {
        if applied.consumed.is_empty() {
            return Ok(());
        }
        // Per block key: parts and bytes consumed, and the out-of-order ones.
        let mut touched: BTreeMap<u64, (u32, u64, Vec<u64>)> = BTreeMap::new();
        for (pos, held, out_of_order) in std::mem::take(&mut applied.consumed) {
            let slot = touched
                .entry(pos.saturating_sub(u64::from(held.delta)))
                .or_default();
            slot.0 += 1;
            slot.1 += u64::from(held.bytes);
            if out_of_order {
                slot.2.push(pos);
            }
        }
        let mut dead: Vec<(u64, BlockLive)> = Vec::new();
        {
            let table = self.store.lock_blocks();
            for (key, (parts, bytes, out_of_order)) in touched {
                let current = match applied.blocks.get(&key) {
                    Some(block) => *block,
                    None => table.get(&key).copied(),
                };
                let Some(mut block) = current else { continue };
                block.live = block.live.saturating_sub(parts);
                block.live_bytes = block.live_bytes.saturating_sub(bytes);
                if block.live == 0 {
                    dead.push((key, block));
                    applied.blocks.insert(key, None);
                    continue;
                }
                for pos in &out_of_order {
                    self.store.meta.put(txn, &format::gone_key(*pos), &[])?;
                }
                block.gone += u32::try_from(out_of_order.len()).unwrap_or(u32::MAX);
                applied.blocks.insert(key, Some(block));
            }
        }
        // Blocks that lived long give back the pages their readers mapped
        // (LMDB reads a large value's first page to free it): a thousand
        // shoots' loops each map every block to read their part of it, a
        // second after it was written, and those mappings would otherwise
        // stay in the process's RSS until the pages are reused. Blocks
        // that die young (deliveries that keep up, read straight after
        // their commit) keep theirs: the next appends reuse those pages,
        // and their readers would fault each one in again (-15% for the
        // single destination when every dead block was released).
        let now_ms = format::now_ms();
        let old = |block: &BlockLive| {
            now_ms.saturating_sub(block.appended_at_ms) >= RELEASE_DEAD_AFTER_MS
        };
        let bytes: u64 = dead.iter().map(|(_, block)| block.bytes).sum();
        let backlog = bytes > super::mapped::BACKLOG_BYTES;
        let mut released = self
            .store
            .map
            .filter(|_| backlog || dead.iter().any(|(_, block)| old(block)))
            .map(super::mapped::Released::new);
        for (key, block) in &dead {
            let log_key = format::log_key(*key);
            if let Some(r) = &mut released
                && (backlog || old(block))
                && let Some(value) = self.store.log.get(txn, &log_key[..])?
            {
                r.note(value);
            }
            self.store.log.delete(txn, &log_key[..])?;
            self.delete_gone(txn, *key, block)?;
        }
        if let Some(r) = released {
            r.unmap();
        }
        applied.freed |= !dead.is_empty();
        Ok(())
    }

    /// Deletes the `gone/` marks of the parts of `block` at `key`.
    fn delete_gone(
        &self,
        txn: &mut RwTxn<'_>,
        key: u64,
        block: &BlockLive,
    ) -> Result<(), heed::Error> {
        if block.gone == 0 {
            return Ok(());
        }
        let (from, to) = (
            format::gone_key(key),
            format::gone_key(key.saturating_add(u64::from(block.span))),
        );
        let range = (
            std::ops::Bound::Included(&from[..]),
            std::ops::Bound::Excluded(&to[..]),
        );
        self.store.meta.delete_range(txn, &range)?;
        Ok(())
    }

    /// The key below which blocks were appended [`COMPACT_AFTER`] ago or
    /// earlier.
    fn aged_bound(&self) -> u64 {
        self.history
            .front()
            .filter(|(at, _)| at.elapsed() >= COMPACT_AFTER)
            .map_or(0, |(_, pos)| *pos)
    }

    /// Whether [`Writer::compact`] has blocks to look at.
    fn compaction_due(&self) -> bool {
        let bound = self.aged_bound();
        let from = self.compacted_to.get();
        from < bound && self.store.lock_blocks().range(from..bound).next().is_some()
    }

    /// Whether any block holds a consumed part: what a rewrite on a full
    /// buffer can free.
    fn compactable(&self) -> bool {
        self.store
            .lock_blocks()
            .values()
            .any(|block| block.live < block.parts)
    }

    /// Rewrites blocks that their live parts alone keep (a dead shoot's
    /// part among a thousand delivered ones) without their consumed parts.
    /// Each block is looked at once, when it is [`COMPACT_AFTER`] old, and
    /// rewritten when at most half its bytes are live; `all` (the map is
    /// full) rewrites every block that holds a consumed part. Bounded per
    /// transaction; the parts keep their positions, so readers and marks
    /// are unaffected.
    fn compact(
        &self,
        txn: &mut RwTxn<'_>,
        applied: &mut Applied,
        all: bool,
    ) -> Result<(), heed::Error> {
        let (from, bound) = if all {
            (0, u64::MAX)
        } else {
            (self.compacted_to.get(), self.aged_bound())
        };
        if from >= bound {
            return Ok(());
        }
        let candidates: Vec<(u64, BlockLive)> = {
            let table = self.store.lock_blocks();
            let mut out = Vec::new();
            let mut looked_to = bound;
            for (key, block) in table.range(from..bound) {
                if out.len() >= MAX_COMPACT_PER_COMMIT {
                    looked_to = *key;
                    break;
                }
                let block = match applied.blocks.get(key) {
                    Some(Some(block)) => *block,
                    Some(None) => continue,
                    None => *block,
                };
                let sparse = block.live_bytes.saturating_mul(2) <= block.bytes;
                if block.live < block.parts && (all || sparse) {
                    out.push((*key, block));
                }
            }
            if !all {
                self.compacted_to.set(looked_to);
            }
            out
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let queues: HashMap<u32, Arc<Queue>> = self
            .store
            .lock_queues()
            .values()
            .map(|queue| (queue.id, Arc::clone(queue)))
            .collect();
        for (key, mut block) in candidates {
            let log_key = format::log_key(key);
            let Some(value) = self.store.log.get(txn, &log_key[..])? else {
                continue;
            };
            let Some(decoded) = format::decode_block(value) else {
                continue;
            };
            let Some(parts) = decoded.parts() else {
                continue;
            };
            let live = |part: &format::Part<'_>| {
                let pos = key.saturating_add(u64::from(part.delta));
                queues.get(&part.queue).is_some_and(|queue| {
                    queue.lock_index().contains_key(&pos)
                        && !applied
                            .removed
                            .get(&queue.id)
                            .is_some_and(|removed| removed.contains(&pos))
                })
            };
            let kept: Vec<format::Part<'_>> = parts.into_iter().filter(live).collect();
            let kept_bytes: u64 = kept.iter().map(|part| part.payload.len() as u64).sum();
            let mut rewritten = Vec::with_capacity(format::block_len(
                kept.iter().map(|part| part.payload.len()),
            ));
            format::write_block(&mut rewritten, decoded.appended_at_ms, &kept)
                .map_err(heed::Error::Io)?;
            let count = u32::try_from(kept.len()).unwrap_or(u32::MAX);
            self.delete_gone(txn, key, &block)?;
            if count == 0 {
                self.store.log.delete(txn, &log_key[..])?;
                applied.blocks.insert(key, None);
            } else {
                self.store.log.put(txn, &log_key[..], &rewritten)?;
                block.parts = count;
                block.live = count;
                block.bytes = kept_bytes;
                block.live_bytes = kept_bytes;
                block.gone = 0;
                applied.blocks.insert(key, Some(block));
            }
            applied.rewritten += 1;
            applied.freed = true;
        }
        Ok(())
    }

    /// After a commit: move stats and seqs, forget dropped queues, wake
    /// consumers.
    fn apply_in_memory(&self, applied: &Applied, drops: &[(Arc<Queue>, Option<Reply>)]) {
        let mut deleted_bytes = 0;
        for (queue, bytes, records, entries) in applied.deleted.values() {
            if let Some(removed) = applied.removed.get(&queue.id) {
                let mut index = queue.lock_index();
                for pos in removed {
                    index.remove(pos);
                }
            }
            super::sub_saturating(&queue.used_bytes, *bytes);
            super::sub_saturating(&queue.records, *records);
            super::sub_saturating(&queue.entries, *entries);
            deleted_bytes += bytes;
        }
        self.metrics.deleted_bytes.inc_by(deleted_bytes);
        self.metrics.appended_bytes.inc_by(applied.appended_bytes);
        if !drops.is_empty() {
            let mut queues = self.store.lock_queues();
            for (queue, _) in drops {
                queue.dropped.store(true, Ordering::Release);
                // Only forget the name if it still maps to this queue: a
                // queue of the same name created later must survive.
                if queues
                    .get(&queue.name)
                    .is_some_and(|live| Arc::ptr_eq(live, queue))
                {
                    queues.remove(&queue.name);
                }
                // Wake its consumer so it notices the queue is gone.
                queue.wake();
            }
        }
        self.store
            .next_seq
            .fetch_max(applied.next_seq, Ordering::AcqRel);
        for (queue, positions, records) in applied.appended.values() {
            queue.persisted.store(true, Ordering::Release);
            queue.lock_index().extend(positions.iter().copied());
            // used_bytes already counts these bytes: they were reserved.
            if let Some((last, _)) = positions.last() {
                queue.next_seq.store(last + 1, Ordering::Release);
            }
            queue.records.fetch_add(*records, Ordering::AcqRel);
            queue
                .entries
                .fetch_add(positions.len() as u64, Ordering::AcqRel);
            queue.wake_if_due();
        }
    }

    /// Turns an I/O error of a commit into [`StoreError::Full`] when the
    /// disk is what failed it (see [`space::disk_full_after`]).
    fn classify(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::Lmdb { op, source }
                if space::disk_full_after(&source, self.store.env.path(), self.store.reserve) =>
            {
                StoreError::Full {
                    reason: FullReason::Disk,
                    detail: format!("disk: {source} during {op}"),
                }
            }
            other => other,
        }
    }

    /// Tracks whether appends are refused as full in the gauge, and logs
    /// the way back once.
    fn set_full(&mut self, full: bool) {
        if self.full == full {
            return;
        }
        self.full = full;
        self.metrics.storage_full.set(i64::from(full));
        // Once per warning, so that a buffer at the edge, refusing and
        // accepting by turns, does not flood the log either.
        if !full && self.full_logged {
            self.full_logged = false;
            tracing::info!("The LMDB buffer accepts appends again.");
        }
    }

    /// Counts a failed commit by kind. Appends refused as full are counted
    /// as refusals instead, never here; deletes that found no room are
    /// (`full`): the reserve exists so that this stays at zero.
    fn count_error(&self, error: &StoreError) {
        self.metrics
            .write_errors
            .get_or_create(&ErrorKindLabels { kind: error.kind() })
            .inc();
    }

    /// Logs one warning per [`FULL_WARN_EVERY`] while the store is full.
    fn warn_full(&mut self, error: &StoreError, refused: u64) {
        self.full_since_warn += refused;
        if due(&mut self.last_full_warn) {
            tracing::warn!(
                error = %error,
                refused_appends = self.full_since_warn,
                "The LMDB buffer is full: refusing appends until deliveries (or, for a full disk, anyone) free space."
            );
            self.full_since_warn = 0;
            self.full_logged = true;
        }
    }
}

/// Whether a warning rate-limited by `last` may be logged now; if so,
/// `last` becomes now.
fn due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|at| at.elapsed() >= FULL_WARN_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Adds `deletes` to `deferred`, merging a range into an earlier one of
/// the same queue it overlaps or continues, so that deletes failing for a
/// long time take one slot per queue, not one per batch.
fn defer(deferred: &mut Vec<Consumed>, deletes: Vec<Consumed>) {
    for (queue, first, last) in deletes {
        let joined = deferred.iter_mut().rev().find(|(q, lo, hi)| {
            Arc::ptr_eq(q, &queue) && *lo <= last.saturating_add(1) && first <= hi.saturating_add(1)
        });
        match joined {
            Some((_, lo, hi)) => {
                *lo = (*lo).min(first);
                *hi = (*hi).max(last);
            }
            None => deferred.push((queue, first, last)),
        }
    }
}

/// Splits a group's parts into blocks of at most [`MAX_BLOCK_BYTES`] of
/// payload (a larger part gets a block of its own).
fn blocks_of<'a, 'p>(parts: &'a [&'p AppendPart]) -> impl Iterator<Item = &'a [&'p AppendPart]> {
    let mut rest = parts;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let len = rest
            .iter()
            .take_while(|part| {
                bytes += part.payload.len();
                bytes <= MAX_BLOCK_BYTES
            })
            .count()
            .max(1);
        let (block, tail) = rest.split_at(len);
        rest = tail;
        Some(block)
    })
}

// === impl Applied ===

impl Applied {
    /// Adds the entries `taken` from `queue` in this transaction.
    fn add_deleted(&mut self, queue: &Arc<Queue>, taken: &[(u64, Held)]) {
        let slot = self
            .deleted
            .entry(queue.id)
            .or_insert_with(|| (Arc::clone(queue), 0, 0, 0));
        for (_, held) in taken {
            slot.1 += u64::from(held.bytes);
            slot.2 += u64::from(held.records);
            slot.3 += 1;
        }
    }
}

// === impl Group ===

impl Group {
    fn push(&mut self, op: WriteOp) {
        self.ops += 1;
        match op {
            WriteOp::Append { parts, reply } => {
                self.bytes += parts.iter().map(|p| p.payload.len() as u64).sum::<u64>();
                self.appends.push((parts, Vec::new(), reply));
            }
            WriteOp::Move {
                parts,
                from,
                first,
                last,
                reply,
            } => {
                self.bytes += parts.iter().map(|p| p.payload.len() as u64).sum::<u64>();
                self.appends.push((parts, vec![(from, first, last)], reply));
            }
            WriteOp::Settle {
                parts,
                consumed,
                reply,
            } => {
                self.bytes += parts.iter().map(|p| p.payload.len() as u64).sum::<u64>();
                self.appends.push((parts, consumed, reply));
            }
            WriteOp::Delete { queue, first, last } => self.deletes.push((queue, first, last)),
            WriteOp::Drop { queue, reply } => self.drops.push((queue, reply)),
            WriteOp::Flush { reply } => self.flushes.push(reply),
            WriteOp::Stop { reply } => self.stop = Some(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_deletes_merge_per_queue_only_where_they_touch() {
        let (a, b) = (
            Arc::new(Queue::new(1, "a".to_owned())),
            Arc::new(Queue::new(2, "b".to_owned())),
        );
        let mut deferred = Vec::new();
        defer(
            &mut deferred,
            vec![(Arc::clone(&a), 0, 9), (Arc::clone(&b), 0, 4)],
        );
        // Continues a's range, overlaps b's, and leaves a gap in a.
        defer(
            &mut deferred,
            vec![
                (Arc::clone(&a), 10, 19),
                (Arc::clone(&b), 3, 7),
                (Arc::clone(&a), 30, 39),
            ],
        );
        let ranges: Vec<_> = deferred
            .iter()
            .map(|(q, lo, hi)| (q.id, *lo, *hi))
            .collect();
        // Entries 20..=29 of a were never delivered: they must not be deleted.
        assert_eq!(ranges, vec![(1, 0, 19), (2, 0, 7), (1, 30, 39)]);
    }
}

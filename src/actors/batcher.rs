//! The batcher: the LMDB writer thread, as a unit of the supervision tree.
//!
//! The receivers talk to the writer thread directly over the crossbeam
//! channel, and the writer replies to each request after its group commit.
//! This unit's run starts the thread on a clone of the channel's receiving
//! end and lasts as long as the thread: if the thread ends (a panic, or a
//! requested [`restart`]), the run ends, and the supervisor's
//! [`Tasks`](super::loops::Tasks) starts a new writer on the same channel
//! and the same LMDB environment (counted in
//! `seedgate_actor_restarts_total{actor="batcher"}`). What survives a
//! restart: the store and the channel (so nothing in the channel is lost);
//! a request that the dead writer had taken but not committed gets no `Ok`
//! and is not acknowledged.
//!
//! A run never outlives its thread and a new thread starts only after the
//! old one ended, so two writers never hand out the same sequence numbers.

use std::sync::Arc;
use std::time::Instant;

use super::unit::Unit;
use crate::metrics::Metrics;
use crate::store::{Store, WriteOp};

/// The unit's name: its restarts are counted under it.
pub const NAME: &str = "batcher";

/// The writer thread of `store`, serving `rx`, as a unit.
pub fn unit(
    store: Arc<Store>,
    rx: crossbeam_channel::Receiver<WriteOp>,
    metrics: Arc<Metrics>,
) -> Unit {
    Unit::task(NAME, move || {
        let spawned = store.spawn_writer(rx.clone(), Arc::clone(&metrics.store));
        async move {
            let thread = match spawned {
                Ok(thread) => thread,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot start the storage writer thread");
                    return;
                }
            };
            // Waiting for the thread ties up one blocking-pool thread for
            // the writer's lifetime: the run ends exactly when it does.
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => tracing::warn!("The storage writer thread stopped"),
                _ => tracing::error!("The storage writer thread panicked"),
            }
        }
    })
}

/// Asks the writer to commit what it took and stop; the supervisor then
/// starts a new one, exactly as after a failure. What is still in the
/// channel waits for the new writer.
pub fn restart(writer: &crossbeam_channel::Sender<WriteOp>) {
    let (reply, _stopped) = tokio::sync::oneshot::channel();
    if writer.send(WriteOp::Stop { reply }).is_err() {
        tracing::error!("The storage writer's channel is closed");
    }
}

/// Flushes the writer (everything acknowledged is committed) and syncs the
/// store, giving up on the flush at `deadline`.
pub async fn flush(store: &Store, writer: &crossbeam_channel::Sender<WriteOp>, deadline: Instant) {
    let (reply, done) = tokio::sync::oneshot::channel();
    if writer.send(WriteOp::Flush { reply }).is_ok() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, done).await {
            Ok(Ok(Ok(()))) => tracing::info!("Storage flushed"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "Final flush failed"),
            _ => tracing::error!("Final flush did not finish before the shutdown deadline"),
        }
    }
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "Final fsync failed");
    }
}

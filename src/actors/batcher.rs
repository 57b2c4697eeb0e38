//! The batcher actor: owns the LMDB writer thread.
//!
//! In: [`Restart`], [`Shutdown`]. Out: nothing; the receivers talk to the
//! writer thread directly over the crossbeam channel, and the writer replies
//! to each request after its group commit.
//!
//! The actor starts the writer thread on a clone of the channel's receiving
//! end and checks every 500 ms that it is still running. If the thread ended
//! while the process is not shutting down, the actor stops and the actix
//! supervisor restarts it, which starts a new writer on the same channel and
//! the same LMDB environment. What survives a restart: the store and the
//! channel (so nothing in the channel is lost); a request that the dead
//! writer had taken but not committed gets no `Ok` and is not acknowledged.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Supervised};

use super::{Restart, Shutdown};
use crate::metrics::Metrics;
use crate::store::{Store, WriteOp};

const CHECK_EVERY: Duration = Duration::from_millis(500);

/// See the module doc.
#[derive(Debug)]
pub struct Batcher {
    store: Arc<Store>,
    rx: crossbeam_channel::Receiver<WriteOp>,
    tx: crossbeam_channel::Sender<WriteOp>,
    metrics: Arc<Metrics>,
    writer: Option<JoinHandle<()>>,
    shutting_down: bool,
}

impl Batcher {
    /// A batcher over `store`, serving the channel `(tx, rx)`.
    pub fn new(
        store: Arc<Store>,
        tx: crossbeam_channel::Sender<WriteOp>,
        rx: crossbeam_channel::Receiver<WriteOp>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            rx,
            tx,
            metrics,
            writer: None,
            shutting_down: false,
        }
    }
}

impl Actor for Batcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match self
            .store
            .spawn_writer(self.rx.clone(), Arc::clone(&self.metrics.store))
        {
            Ok(handle) => self.writer = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "Cannot start the storage writer thread; restarting the batcher");
                ctx.stop();
                return;
            }
        }
        ctx.run_interval(CHECK_EVERY, |this, ctx| {
            if !this.shutting_down && this.writer.as_ref().is_none_or(JoinHandle::is_finished) {
                tracing::error!(
                    "The storage writer thread ended unexpectedly; restarting the batcher"
                );
                ctx.stop();
            }
        });
    }
}

impl Supervised for Batcher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.metrics.count_restart("batcher");
        // Two writers would hand out the same sequence numbers, so a writer
        // that is still running (a requested restart) is told to stop and
        // joined before `started()` spawns the next one. It commits what it
        // took first; what is still in the channel waits for the new one.
        if let Some(handle) = self.writer.take()
            && !handle.is_finished()
        {
            let (reply, _stopped) = tokio::sync::oneshot::channel();
            if self.tx.send(WriteOp::Stop { reply }).is_ok() && handle.join().is_err() {
                tracing::error!("The storage writer thread panicked while stopping");
            }
        }
    }
}

impl Handler<Restart> for Batcher {
    type Result = ();
    fn handle(&mut self, _: Restart, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Shutdown> for Batcher {
    type Result = actix::ResponseFuture<()>;
    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let tx = self.tx.clone();
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let (reply, done) = tokio::sync::oneshot::channel();
            if tx.send(WriteOp::Flush { reply }).is_ok() {
                let left = msg
                    .deadline
                    .saturating_duration_since(std::time::Instant::now());
                match actix_rt::time::timeout(left, done).await {
                    Ok(Ok(Ok(()))) => tracing::info!("Storage flushed"),
                    Ok(Ok(Err(e))) => tracing::error!(error = %e, "Final flush failed"),
                    _ => tracing::error!("Final flush did not finish before the shutdown deadline"),
                }
            }
            if let Err(e) = store.sync() {
                tracing::error!(error = %e, "Final fsync failed");
            }
        })
    }
}

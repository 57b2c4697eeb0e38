//! A unit of the supervision tree as a [`Task`] plan: either a plain task
//! (the writer thread's watcher, health) or an actix actor's life (the
//! shoot manager, the kube watcher), so that one [`Tasks`](super::loops::Tasks)
//! starts, restarts (with the same backoff and counting as every loop) and
//! stops them all.
//!
//! An actor unit's run starts the actor on the actix system's arbiter and
//! lasts as long as the actor: the actor stopping, by a panic in a handler
//! or by [`Stop`], ends the run, and the owner's `Tasks` starts a new actor
//! from the same plan. Its state is what the plan rebuilds (each actor's
//! `started` says what it recovers); messages reach the current actor
//! through its [`Mailbox`], which outlives the restarts.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, ArbiterHandle, Context, Handler, MailboxError, Message};
use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;

use super::Stop;
use super::loops::Task;

/// How often an actor unit's run looks whether its actor still lives.
const ALIVE_EVERY: Duration = Duration::from_millis(100);

/// See the module doc.
#[derive(Clone)]
pub struct Unit {
    key: String,
    actor: &'static str,
    run: Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit").field("key", &self.key).finish()
    }
}

impl Unit {
    /// A plain task: each run is `run()`; its key and the name its
    /// restarts are counted under are `actor`.
    pub fn task<F, Fut>(actor: &'static str, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            key: actor.to_owned(),
            actor,
            run: Arc::new(move || Box::pin(run())),
        }
    }

    /// The same unit under another key, for several units of one kind in
    /// one set.
    #[must_use]
    pub fn keyed(self, key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..self
        }
    }

    /// An actor: each run starts `make()` on `arbiter`, makes it the one
    /// `mailbox` reaches, and lasts until it stops. Stopping the run (the
    /// owner stops the unit, or drops its `Tasks`) stops the actor.
    pub fn actor<A, F>(
        name: &'static str,
        arbiter: ArbiterHandle,
        mailbox: Mailbox<A>,
        make: F,
    ) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Stop>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        Self::task(name, move || {
            let make = Arc::clone(&make);
            let addr = A::start_in_arbiter(&arbiter, move |_| make());
            mailbox.set(addr.clone());
            async move {
                let _stop = StopOnDrop(addr.clone());
                while addr.connected() {
                    tokio::time::sleep(ALIVE_EVERY).await;
                }
            }
        })
    }
}

impl Task for Unit {
    fn key(&self) -> String {
        self.key.clone()
    }

    fn same_plan(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.run, &other.run)
    }

    fn actor(&self) -> &'static str {
        self.actor
    }

    fn run(self) -> impl Future<Output = ()> + Send + 'static {
        (self.run)()
    }
}

/// Stops the actor when the run that hosts it ends or is aborted.
struct StopOnDrop<A: Actor<Context = Context<A>> + Handler<Stop>>(Addr<A>);

impl<A: Actor<Context = Context<A>> + Handler<Stop>> Drop for StopOnDrop<A> {
    fn drop(&mut self) {
        if self.0.connected() {
            self.0.do_send(Stop);
        }
    }
}

/// The address of an actor unit's current actor; cheap to clone, the same
/// across restarts.
pub struct Mailbox<A: Actor>(Arc<ArcSwapOption<Addr<A>>>);

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<A: Actor> Default for Mailbox<A> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<A: Actor> std::fmt::Debug for Mailbox<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("actor", &std::any::type_name::<A>())
            .finish()
    }
}

impl<A: Actor> Mailbox<A> {
    fn set(&self, addr: Addr<A>) {
        self.0.store(Some(Arc::new(addr)));
    }

    /// Sends `msg` to the current actor and waits for its answer;
    /// [`MailboxError::Closed`] before the first actor started or while
    /// none runs.
    pub fn send<M>(
        &self,
        msg: M,
    ) -> impl Future<Output = Result<M::Result, MailboxError>> + use<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        let addr = self.0.load_full();
        async move {
            match addr {
                Some(a) => a.send(msg).await,
                None => Err(MailboxError::Closed),
            }
        }
    }

    /// Sends `msg` without waiting; lost when no actor runs.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        if let Some(a) = self.0.load_full() {
            a.do_send(msg);
        }
    }
}

//! The supervised actors (actix) that own lifecycle and state.
//!
//! The hot path does not go through these mailboxes: receivers hand work to
//! the LMDB writer thread over a channel. Actors start, watch and restart the
//! long-lived pieces (the writer thread, the delivery loops, the health
//! verdict) and order the shutdown. [`supervisor`] draws the tree.
//!
//! actix runs its own single-threaded system on the main thread; the
//! receivers, tonic, reqwest and the delivery loops run on a separate tokio
//! runtime whose [`tokio::runtime::Handle`] the actors hold.

use actix::Message;

pub mod batcher;
pub mod exporter_pool;
pub mod health;
pub mod kube_watcher;
pub mod loops;
pub mod pipeline;
pub mod shoot_client;
pub mod shoot_manager;
pub mod supervisor;

/// Ask an actor to stop and be restarted by its supervisor, exactly as after
/// a failure. Used by operators' tooling and by the supervision tests.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Restart;

/// This replica leaves the set for good: at shutdown, once delivery has
/// stopped, the supervisor hands its queues over to these peers (OTLP/gRPC
/// endpoints; see [`crate::handoff`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LeaveTo(pub Vec<String>);

/// Begin an orderly shutdown; the reply comes when this actor's part is done
/// or the deadline passed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// When to give up waiting.
    pub deadline: std::time::Instant,
}

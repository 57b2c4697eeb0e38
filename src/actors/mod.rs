//! The supervision tree: the units that own lifecycle and state, and the one
//! mechanism ([`loops::Tasks`]) that starts, restarts and stops them.
//!
//! The hot path does not go through these mailboxes: receivers hand work to
//! the LMDB writer thread over a channel. [`supervisor`] draws the tree and
//! holds the order of start and shutdown; ADR 0007 says which units are
//! actix actors (they receive messages and own state that several callers
//! change: the supervisor, the shoot manager, the kube watcher) and which
//! are plain tasks (the writer's watcher, health, every delivery loop, the
//! shoot clients, the aggregators and pipeline actors).
//!
//! actix runs its own single-threaded system on the main thread; the
//! receivers, tonic, reqwest and the delivery loops run on a separate tokio
//! runtime whose [`tokio::runtime::Handle`] the owners hold.

use actix::Message;

pub mod batcher;
pub mod exporter_pool;
pub mod health;
pub mod kube_watcher;
pub mod loops;
pub mod shoot_client;
pub mod shoot_manager;
pub mod supervisor;
pub mod unit;

/// Ask the supervisor to restart one of its units (`batcher`,
/// `exporter_pool`, `health`, `shoot_manager`, `kube_watcher`) exactly as
/// after a failure. Used by operators' tooling and by the supervision
/// tests. Answers whether the unit exists.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct Restart(pub &'static str);

/// Stop this actor; whoever holds its unit decides whether a new one
/// starts (an actor unit's run ends with its actor).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

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

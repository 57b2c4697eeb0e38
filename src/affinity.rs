//! Trace affinity across replicas (`pipelines[].affinity`): with several
//! replicas per seed, agents spread their spans over all of them, but tail
//! sampling and span metrics need a trace's spans together.
//!
//! ```text
//! agent ─▶ any replica: ingest ─▶ forwarder queue ─▶ balancer (traceID, rendezvous over the replicas)
//!                                                     └▶ owner replica (itself or a peer), OTLP/gRPC + seedgate-owner: <pipeline>
//!                                                          └▶ ingest as owner ─▶ the pipeline's processors and queue
//! ```
//!
//! A pipeline with `affinity` routes its share of a request to a
//! *forwarder*: the load-balancing exporter ([`crate::loadbalancing`]) by
//! trace ID over the replicas the resolver finds (this one included),
//! sending OTLP/gRPC with the metadata [`OWNER_HEADER`] naming the
//! pipeline. A request with that metadata is stored as the owner
//! ([`crate::ingest::Ingest::export_owned`]): only into this replica's own
//! destination of the pipeline, with its processors, and never forwarded
//! again. The client's acknowledgement still means "on disk": the share is
//! stored in the forwarder's queue before the answer; the forwarder deletes
//! it only once the owner has stored it. Membership changes move about 1/N
//! of the traces (rendezvous hashing) and lose none (the balancer's
//! re-route); a trace whose owner changes while its spans arrive is decided
//! once per owner.

pub use crate::config::loadbalancing::OWNER_HEADER;

/// The forwarder's destination name for pipeline `pipeline` (`+` is not
/// allowed in pipeline names, so it cannot clash with one).
pub fn forwarder_name(pipeline: &str) -> String {
    format!("{pipeline}+affinity")
}

/// The pipeline of a destination name: the forwarder's pipeline, or the
/// name itself.
pub fn pipeline_of(destination: &str) -> &str {
    destination.strip_suffix("+affinity").unwrap_or(destination)
}

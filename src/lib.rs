//! seedgate: one process per Gardener seed that is at once the operator, the
//! telemetry router and the durable OTLP exporter.
//!
//! The map of the code (DESIGN.md has the picture):
//!
//! - [`receivers`]: OTLP/gRPC and OTLP/HTTP servers; they hand raw request
//!   bytes to [`ingest`].
//! - [`proto`]: wire-level OTLP scanning, slicing and concatenation, JSON.
//! - [`routing`]: the immutable routing snapshot and the pure `route` fn.
//! - [`ingest`]: scan, route, admit against queue limits, hand to the LMDB
//!   writer, and answer only after the commit.
//! - [`store`]: LMDB via heed: queues, the group-commit writer, reads and deletes.
//! - [`handoff`]: a leaving replica's queues sent to the remaining replicas.
//! - [`affinity`]: a trace's spans sent to the replica that owns it.
//! - [`exporters`]: one sender per output kind and the outcome of a send.
//! - [`actors`]: the supervised actors that own lifecycle and state.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`, pprof.
//! - [`config`]: the YAML file and its validation.
//! - [`operator`]: the Kubernetes data model: the pipeline CRDs, their status
//!   conditions, and a pipeline resource turned into a `PipelineConfig`.
//! - [`tools`]: `loadgen` and `sink`, shipped in the same binary.

pub mod actors;
pub mod admin;
pub mod affinity;
pub mod app;
pub mod cluster_state;
pub mod config;
pub mod delivery;
pub mod effective_config;
pub mod exporters;
pub mod grpc_codec;
pub mod handoff;
pub mod ingest;
pub mod lease;
pub mod loadbalancing;
pub mod metrics;
pub mod operator;
pub mod pipeline_health;
pub mod processors;
pub mod proto;
pub mod receivers;
pub mod reload;
pub mod routing;
pub mod signal;
pub mod store;
pub mod tools;

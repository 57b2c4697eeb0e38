//! seedgate: one process per Gardener seed that is at once the operator, the
//! telemetry router and the durable OTLP exporter.
//!
//! The map of the code, along the data path (DESIGN.md has the picture;
//! every top module is listed):
//!
//! - [`receivers`]: receive. OTLP/gRPC and OTLP/HTTP servers; they hand raw
//!   request bytes to [`ingest`]. [`grpc_codec`]: tonic's raw-bytes codec.
//! - [`proto`]: wire-level OTLP scanning, slicing and concatenation, JSON.
//! - [`ingest`]: scan, route, run the processors, admit against queue
//!   limits, hand to the LMDB writer, and answer only after the commit.
//! - [`routing`]: the immutable routing snapshot, the pure `route` fn, the
//!   shoot directory and the publisher; [`cluster_state`]: a shoot's state
//!   from its Gardener `Cluster`.
//! - [`processors`]: `resource` before routing, `tail_sampling` and
//!   `spanmetrics` as stages of a pipeline.
//! - [`affinity`]: a trace's spans sent to the replica that owns it.
//! - [`store`]: LMDB via heed: queues, the group-commit writer, reads and
//!   deletes.
//! - [`delivery`]: a destination's loop (read, batch, send, retry, delete),
//!   its supervised plan, the factory that builds destinations, flow
//!   control and retry.
//! - [`loadbalancing`]: the load-balancing exporter's balancer, ring and
//!   resolvers.
//! - [`exporters`]: one sender per output kind and the outcome of a send.
//! - [`handoff`]: a leaving replica's queues sent to the remaining replicas.
//! - [`actors`]: the supervision tree and its one restart mechanism.
//! - [`operator`]: the Kubernetes side: the pipeline CRDs, their status
//!   conditions, a pipeline resource turned into a `PipelineConfig`, the
//!   aggregators and pipeline actors, pipeline health, the Lease, the
//!   effective-config ConfigMap.
//! - [`config`]: the YAML file and its validation; [`reload`]: applying a
//!   changed file; [`signal`]: the three signals.
//! - [`metrics`]: the Prometheus registry; [`admin`]: `/metrics`,
//!   `/healthz`, `/readyz`, pprof, fault injection.
//! - [`app`]: the wiring and the shutdown order.
//! - [`tools`]: `loadgen` and `sink`, shipped in the same binary.

pub mod actors;
pub mod admin;
pub mod affinity;
pub mod app;
pub mod cluster_state;
pub mod config;
pub mod delivery;
pub mod exporters;
pub mod grpc_codec;
pub mod handoff;
pub mod ingest;
pub mod loadbalancing;
pub mod malloc;
pub mod metrics;
pub mod operator;
pub mod processors;
pub mod proto;
pub mod receivers;
pub mod reload;
pub mod routing;
pub mod signal;
pub mod store;
pub mod tools;

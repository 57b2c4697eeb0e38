//! seedgate's integration tests, one test binary: each module is one area
//! (its module docs say what it checks), `support` is what they share (a
//! seedgate child process, the sink and load generator of `seedgate::tools`,
//! the API server double, a test PKI, the Python SDK client).
//!
//! Run one area with `cargo test --test it <module>::`, e.g.
//! `cargo test --test it ha::`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

mod admin;
mod apiserver_double;
mod crds;
mod data_path;
mod deploy;
mod docs;
mod durability;
mod edges;
mod flow_control;
mod ha;
mod kube_operator;
mod load_tests;
mod loadbalancing;
mod memory;
mod observability;
mod otel_collector;
mod otel_sdk;
mod proto_props;
mod shoot_routing;
mod spanmetrics;
mod supervision;
mod tail_sampling;
mod tls;

//! `seedgate sink`: a real OTLP/gRPC and OTLP/HTTP backend that counts what it
//! receives, injects faults on demand and checks a loadgen's acked file.
//!
//! It exists so that every claim seedgate makes about delivery can be tested
//! end to end: tests start one in-process on port 0 ([`start`]), script it
//! through the [`SinkHandle`] (or `POST /sink/fault` when it runs as a
//! separate process) and compare what arrived with what the loadgen says was
//! acknowledged ([`SinkHandle::verify`]).
//!
//! Invariants:
//! - Records of a request answered with an injected fault are *not* counted:
//!   the sink refused them, so they are not "received". Records of an accepted
//!   request are counted before any injected latency, like a slow backend that
//!   has already stored the data.
//! - Both listeners run their own accept loop, so going down really closes
//!   the sockets (new connections are refused, open ones are dropped) and
//!   coming up binds the very same ports again.
//! - gRPC traffic is keyed by the `:authority` the client dialed, HTTP traffic
//!   by the path prefix before `/v1/<signal>`, so one sink can stand in for
//!   many backends.
//! - With a required `Authorization` set ([`SinkOptions::authorization`],
//!   [`SinkHandle::set_authorization`]), a request carrying none of the
//!   accepted values is answered 401 / `UNAUTHENTICATED` before any fault and
//!   counted in `requests_unauthorized`, not received.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::acked::{AckedSet, read_acked_file, write_acked_file};
use super::records::ExportRequest;
use crate::grpc_codec::RawCodec;
use crate::signal::Signal;

mod faults;
mod grpc_server;
mod http_server;
mod listeners;
mod shared;
mod stats;
#[cfg(test)]
mod tests;

pub use faults::*;
use grpc_server::*;
use http_server::*;
use listeners::*;
use shared::*;
pub use stats::*;

/// The largest request body (after decompression) the sink accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The namespace key used for records whose resource has no
/// `k8s.namespace.name`.
pub const NO_NAMESPACE: &str = "<none>";

/// Command-line flags of `seedgate sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address of the OTLP/gRPC listener.
    #[arg(long, default_value = "127.0.0.1:14317")]
    pub grpc_listen: SocketAddr,
    /// Address of the OTLP/HTTP listener (also serves `/sink/stats` and `/sink/fault`).
    #[arg(long, default_value = "127.0.0.1:14318")]
    pub http_listen: SocketAddr,
    /// Count requests and bytes only, without decoding: the fast mode for benchmarks.
    #[arg(long)]
    pub noop: bool,
    /// Fraction (0..1) of requests answered with 503 / UNAVAILABLE.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Answer every request with this HTTP status (gRPC: the equivalent code).
    #[arg(long)]
    pub status: Option<u16>,
    /// Seconds to put in `Retry-After` (429/503) and in gRPC `RetryInfo`.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Delay added to every response, e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Refuse connections for this long after start, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub down_for: Option<Duration>,
    /// On exit, check this loadgen acked file and fail if anything acked is missing.
    #[arg(long, value_name = "ACKED_FILE")]
    pub verify: Option<PathBuf>,
    /// On exit, write the received seqs here in the acked-file format.
    #[arg(long)]
    pub received_file: Option<PathBuf>,
    /// Answer 401 / UNAUTHENTICATED unless `Authorization` is exactly this
    /// (repeatable: any of the values).
    #[arg(long, value_name = "VALUE")]
    pub require_authorization: Vec<String>,
    /// Refuse as permanent (HTTP 400 / gRPC INVALID_ARGUMENT) every request
    /// whose decoded body contains these bytes: a poison record.
    #[arg(long, value_name = "STRING")]
    pub refuse_marker: Option<String>,
}

/// How to start a sink in-process.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// gRPC listen address; port 0 picks a free port.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address; port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// Count requests and bytes only, without decoding.
    pub noop: bool,
    /// The faults in force from the start.
    pub fault: Fault,
    /// Go down right after binding and come up again after this long.
    pub down_for: Option<Duration>,
    /// Keep the seqs received per endpoint key and namespace (tests of
    /// routing; costs memory per record, so off for load runs).
    pub track_namespaces: bool,
    /// Accepted `Authorization` values; empty: no check.
    pub authorization: Vec<String>,
    /// Serve both listeners over TLS with this config (tests of the
    /// exporters' TLS; the config decides client authentication; the client
    /// certificates presented are kept, see [`SinkHandle::client_certs`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Seqs received per `(endpoint key, namespace)`.
pub type NamespaceSeqs = HashMap<(String, String), HashSet<u64>>;

impl Default for SinkOptions {
    fn default() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_listen: any_port,
            http_listen: any_port,
            noop: false,
            fault: Fault::default(),
            down_for: None,
            track_namespaces: false,
            authorization: Vec::new(),
            tls: None,
        }
    }
}

/// A running sink. Dropping it stops the listeners.
#[derive(Debug)]
pub struct SinkHandle {
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
}

// === impl SinkHandle ===

impl SinkHandle {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc.addr
    }

    /// The leaf client certificates (DER) presented on TLS connections, one
    /// per connection, in order.
    pub fn client_certs(&self) -> Vec<Vec<u8>> {
        self.listeners
            .grpc
            .tls
            .as_ref()
            .map(|t| lock(&t.client_certs).clone())
            .unwrap_or_default()
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.listeners.http.addr
    }

    /// `http://<grpc addr>`, ready for a gRPC client or `loadgen --endpoint`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr())
    }

    /// `http://<http addr>`, the OTLP/HTTP base URL (without `/v1/...`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        lock(&self.shared.counts).stats.clone()
    }

    /// Every seq received, with how many times.
    pub fn seqs(&self) -> HashMap<u64, u32> {
        lock(&self.shared.counts).seqs.clone()
    }

    /// Seqs received per endpoint key and namespace (empty unless
    /// `track_namespaces`).
    pub fn namespace_seqs(&self) -> NamespaceSeqs {
        lock(&self.shared.counts).by_namespace.clone()
    }

    /// The received seqs as a set (the `--received-file` content).
    pub fn received(&self) -> AckedSet {
        AckedSet::from_seqs(lock(&self.shared.counts).seqs.keys().copied())
    }

    /// Clears all counters and seqs.
    pub fn reset_stats(&self) {
        *lock(&self.shared.counts) = Counts::default();
    }

    /// Replaces the injected faults.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// Replaces the accepted `Authorization` values (empty: no check).
    pub fn set_authorization(&self, accepted: Vec<String>) {
        *lock(&self.shared.authorization) = accepted;
    }

    /// The injected faults in force.
    pub fn fault(&self) -> Fault {
        lock(&self.shared.fault).clone()
    }

    /// Closes both listeners and every open connection; connecting fails with
    /// "connection refused" once this returns.
    pub async fn go_down(&self) {
        self.listeners.down().await;
    }

    /// Binds both listeners again on the same addresses.
    ///
    /// # Errors
    ///
    /// A port could not be bound again (another process took it).
    pub async fn come_up(&self) -> anyhow::Result<()> {
        self.listeners.up().await
    }

    /// Checks what was received against an acked set.
    pub fn verify(&self, acked: &AckedSet) -> Verification {
        verify_seqs(&lock(&self.shared.counts).seqs, acked)
    }

    /// Stops both listeners and closes their connections.
    pub async fn shutdown(self) {
        self.listeners.down().await;
    }
}

/// Starts a sink: binds both listeners and serves until the handle is shut
/// down or dropped.
///
/// # Errors
///
/// A listen address cannot be bound.
pub async fn start(opts: SinkOptions) -> anyhow::Result<SinkHandle> {
    super::install_crypto_provider();
    let shared = Arc::new(Shared {
        noop: opts.noop,
        track_namespaces: opts.track_namespaces,
        fault: Mutex::new(opts.fault),
        authorization: Mutex::new(opts.authorization),
        counts: Mutex::new(Counts::default()),
        listeners: OnceLock::new(),
    });
    // Bind first so that port 0 becomes a fixed port the listener keeps
    // across down/up.
    let grpc = bind(opts.grpc_listen).with_context(|| format!("binding {}", opts.grpc_listen))?;
    let http = bind(opts.http_listen).with_context(|| format!("binding {}", opts.http_listen))?;
    let grpc_router = grpc_router(shared.clone());
    let http_router = http_router(shared.clone());
    let tls = opts.tls.map(|config| SinkTls {
        config,
        client_certs: Arc::default(),
    });
    let listeners = Arc::new(Listeners {
        grpc: ListenerCtl {
            addr: grpc.local_addr()?,
            task: tokio::sync::Mutex::new(Some(tokio::spawn(accept_loop(
                grpc,
                grpc_router.clone(),
                tls.clone(),
            )))),
            router: grpc_router,
            tls: tls.clone(),
        },
        http: ListenerCtl {
            addr: http.local_addr()?,
            task: tokio::sync::Mutex::new(Some(tokio::spawn(accept_loop(
                http,
                http_router.clone(),
                tls.clone(),
            )))),
            router: http_router,
            tls,
        },
    });
    if shared.listeners.set(Arc::downgrade(&listeners)).is_err() {
        unreachable!("the listeners of a new sink are set once");
    }
    if let Some(down_for) = opts.down_for {
        listeners.down().await;
        schedule_up(Arc::downgrade(&listeners), down_for);
    }
    Ok(SinkHandle { shared, listeners })
}

/// Runs `seedgate sink` until SIGINT or SIGTERM, then prints the stats (JSON,
/// stdout), writes `--received-file` and checks `--verify`.
///
/// # Errors
///
/// A listener cannot be bound, a file cannot be read or written, or
/// `--verify` finds acked records missing (so the process exits non-zero).
pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let opts = SinkOptions {
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        noop: args.noop,
        fault: Fault {
            error_rate: args.error_rate,
            status: args.status,
            retry_after: args.retry_after,
            latency: args.latency,
            only_endpoints: Vec::new(),
            refuse_marker: args.refuse_marker,
        },
        down_for: args.down_for,
        track_namespaces: false,
        authorization: args.require_authorization,
        tls: None,
    };
    let handle = start(opts).await?;
    eprintln!(
        "sink: OTLP/gRPC on {}, OTLP/HTTP on {} (stats: GET /sink/stats)",
        handle.grpc_addr(),
        handle.http_addr()
    );
    wait_for_signal(&handle).await?;

    let stats = handle.stats();
    println!("{}", serde_json::to_string_pretty(&stats)?);
    if let Some(path) = &args.received_file {
        write_acked_file(path, &handle.received())?;
    }
    let verification = match &args.verify {
        Some(path) => {
            let acked = read_acked_file(path)?;
            let v = handle.verify(&acked);
            println!("verify: {v}");
            Some(v)
        }
        None => None,
    };
    handle.shutdown().await;
    match verification {
        Some(v) if !v.is_ok() => anyhow::bail!("{} acknowledged records missing", v.missing),
        _ => Ok(()),
    }
}

/// Prints a stats line to stderr every few seconds until SIGINT or SIGTERM.
async fn wait_for_signal(handle: &SinkHandle) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut last = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                let s = handle.stats();
                let records = s.records();
                if records != last || s.requests_refused > 0 {
                    eprintln!(
                        "sink: requests {} records {} refused {} invalid {} distinct seqs {} duplicates {}",
                        s.requests(), records, s.requests_refused, s.requests_invalid,
                        s.distinct_seqs, s.duplicate_seqs
                    );
                    last = records;
                }
            }
        }
    }
}

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

/// The faults the sink injects into its answers. The default injects none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Fraction (0..1) of requests answered with 503 / UNAVAILABLE.
    pub error_rate: f64,
    /// Answer every request with this HTTP status (a 2xx means "accept").
    pub status: Option<u16>,
    /// Seconds for `Retry-After` (with 429/503) and gRPC `RetryInfo`.
    pub retry_after: Option<u64>,
    /// Delay added to every response.
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// When not empty, the faults apply only to these endpoint keys (HTTP
    /// path prefix or gRPC authority): one sink standing in for many
    /// backends can have one of them fail.
    pub only_endpoints: Vec<String>,
    /// Refuse as permanent (400 / `INVALID_ARGUMENT`) every request whose
    /// body (decompressed, raw protobuf or JSON bytes) contains this string,
    /// like a backend refusing a batch for one record it cannot take.
    pub refuse_marker: Option<String>,
}

/// The body of `POST /sink/fault`: replaces the faults, and optionally takes
/// both listeners down for a while. The HTTP port itself goes down too, so a
/// permanent `down` is only available through the [`SinkHandle`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRequest {
    /// See [`Fault::error_rate`].
    pub error_rate: f64,
    /// See [`Fault::status`].
    pub status: Option<u16>,
    /// See [`Fault::retry_after`].
    pub retry_after: Option<u64>,
    /// See [`Fault::latency`].
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// See [`Fault::only_endpoints`].
    pub only_endpoints: Vec<String>,
    /// See [`Fault::refuse_marker`].
    pub refuse_marker: Option<String>,
    /// Close both listeners (and their connections) shortly after answering,
    /// and bind them again after this long.
    #[serde(with = "humantime_serde")]
    pub down_for: Option<Duration>,
}

/// Counters of one signal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Accepted requests.
    pub requests: u64,
    /// Records in accepted requests (0 in noop mode).
    pub records: u64,
    /// Decompressed request bytes of accepted requests.
    pub bytes: u64,
}

/// Counters of one endpoint key (HTTP path prefix or gRPC authority).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Accepted requests.
    pub requests: u64,
    /// Records in accepted requests.
    pub records: u64,
    /// Records per `k8s.namespace.name`.
    pub namespaces: BTreeMap<String, u64>,
}

/// What the sink has received; `GET /sink/stats` serves the same as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// Logs counters.
    pub logs: SignalStats,
    /// Metrics counters.
    pub metrics: SignalStats,
    /// Traces counters.
    pub traces: SignalStats,
    /// Requests answered with an injected fault (their records are not counted).
    pub requests_refused: u64,
    /// Requests that could not be decompressed or decoded (answered 400).
    pub requests_invalid: u64,
    /// Requests without an accepted `Authorization` (answered 401).
    pub requests_unauthorized: u64,
    /// Per endpoint key: `/` or the HTTP path prefix (`/tenant-a`), or for
    /// gRPC the `:authority` (`127.0.0.1:4317`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Records per `k8s.namespace.name` ([`NO_NAMESPACE`] when absent).
    pub namespaces: BTreeMap<String, u64>,
    /// Records without a `seedgate.seq` attribute.
    pub records_without_seq: u64,
    /// Distinct seqs received.
    pub distinct_seqs: u64,
    /// Receptions of a seq beyond its first.
    pub duplicate_seqs: u64,
    /// Headers of the last request, lower-case names (non-UTF-8 values lossy).
    pub last_headers: BTreeMap<String, String>,
}

// === impl SinkStats ===

impl SinkStats {
    /// The counters of `signal`.
    pub fn signal(&self, signal: Signal) -> &SignalStats {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
            Signal::Traces => &self.traces,
        }
    }

    fn signal_mut(&mut self, signal: Signal) -> &mut SignalStats {
        match signal {
            Signal::Logs => &mut self.logs,
            Signal::Metrics => &mut self.metrics,
            Signal::Traces => &mut self.traces,
        }
    }

    /// Accepted records over all signals.
    pub fn records(&self) -> u64 {
        self.logs.records + self.metrics.records + self.traces.records
    }

    /// Accepted requests over all signals.
    pub fn requests(&self) -> u64 {
        self.logs.requests + self.metrics.requests + self.traces.requests
    }
}

/// The result of checking received seqs against an acked set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Distinct seqs the loadgen saw acknowledged.
    pub expected: u64,
    /// Distinct seqs the sink received.
    pub received: u64,
    /// Acked seqs never received: lost data.
    pub missing: u64,
    /// Receptions of a seq beyond its first (at-least-once redelivery).
    pub duplicates: u64,
    /// Received seqs that were not acked (e.g. sent, then the ack was lost).
    pub unexpected: u64,
    /// Up to 20 of the smallest missing seqs, for the error message.
    pub missing_sample: Vec<u64>,
}

// === impl Verification ===

impl Verification {
    /// Nothing acknowledged is missing.
    pub fn is_ok(&self) -> bool {
        self.missing == 0
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected {} received {} missing {} duplicates {} unexpected {}",
            self.expected, self.received, self.missing, self.duplicates, self.unexpected
        )?;
        if !self.missing_sample.is_empty() {
            write!(f, " (first missing: {:?})", self.missing_sample)?;
        }
        Ok(())
    }
}

/// Checks `seqs` (seq → times received) against `acked`.
pub fn verify_seqs(seqs: &HashMap<u64, u32>, acked: &AckedSet) -> Verification {
    let mut v = Verification {
        expected: acked.len(),
        received: seqs.len() as u64,
        ..Verification::default()
    };
    for seq in acked.iter() {
        if !seqs.contains_key(&seq) {
            v.missing += 1;
            if v.missing_sample.len() < 20 {
                v.missing_sample.push(seq);
            }
        }
    }
    for (&seq, &count) in seqs {
        v.duplicates += u64::from(count.saturating_sub(1));
        if !acked.contains(seq) {
            v.unexpected += 1;
        }
    }
    v
}

/// The state every request handler shares.
#[derive(Debug)]
struct Shared {
    noop: bool,
    track_namespaces: bool,
    fault: Mutex<Fault>,
    authorization: Mutex<Vec<String>>,
    counts: Mutex<Counts>,
    /// Set once after both listeners exist; weak so that handlers (owned by
    /// the listeners' routers) do not keep the listeners alive.
    listeners: OnceLock<Weak<Listeners>>,
}

#[derive(Debug, Default)]
struct Counts {
    stats: SinkStats,
    seqs: HashMap<u64, u32>,
    by_namespace: NamespaceSeqs,
}

/// What a request is answered with.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Accepted,
    Refused {
        status: u16,
        retry_after: Option<u64>,
    },
    Invalid(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves the counters usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Shared ===

impl Shared {
    /// Counts or refuses one request, then waits out any injected latency.
    async fn ingest(
        &self,
        signal: Signal,
        key: String,
        headers: &HeaderMap,
        body: Result<Bytes, String>,
        json: bool,
    ) -> Answer {
        let mut fault = lock(&self.fault).clone();
        if !fault.only_endpoints.is_empty() && !fault.only_endpoints.contains(&key) {
            fault = Fault::default();
        }
        let authorized = {
            let accepted = lock(&self.authorization);
            accepted.is_empty()
                || headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| accepted.iter().any(|a| a == v))
        };
        let poisoned = match (&fault.refuse_marker, &body) {
            (Some(marker), Ok(body)) => contains(body, marker.as_bytes()),
            _ => false,
        };
        let answer = match decide_fault(&fault, rand::random::<f64>()) {
            _ if !authorized => Answer::Refused {
                status: 401,
                retry_after: None,
            },
            _ if poisoned => Answer::Refused {
                status: 400,
                retry_after: None,
            },
            Some((status, retry_after)) => Answer::Refused {
                status,
                retry_after,
            },
            None => self.accept(signal, key, body, json),
        };
        {
            let mut counts = lock(&self.counts);
            counts.stats.last_headers = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            match answer {
                _ if !authorized => counts.stats.requests_unauthorized += 1,
                Answer::Refused { .. } => counts.stats.requests_refused += 1,
                Answer::Invalid(_) => counts.stats.requests_invalid += 1,
                Answer::Accepted => {}
            }
        }
        if let Some(latency) = fault.latency {
            tokio::time::sleep(latency).await;
        }
        answer
    }

    fn accept(
        &self,
        signal: Signal,
        key: String,
        body: Result<Bytes, String>,
        json: bool,
    ) -> Answer {
        let body = match body {
            Ok(body) => body,
            Err(e) => return Answer::Invalid(e),
        };
        let request = if self.noop {
            None
        } else {
            match ExportRequest::decode(signal, &body, json) {
                Ok(r) => Some(r),
                Err(e) => return Answer::Invalid(format!("decoding {signal} request: {e:#}")),
            }
        };
        let mut guard = lock(&self.counts);
        let Counts {
            stats,
            seqs,
            by_namespace,
        } = &mut *guard;
        let track = self.track_namespaces;
        let per_signal = stats.signal_mut(signal);
        per_signal.requests += 1;
        per_signal.bytes += body.len() as u64;
        let endpoint = stats.endpoints.entry(key.clone()).or_default();
        endpoint.requests += 1;
        let mut records = 0u64;
        if let Some(request) = &request {
            request.for_each_record(|ns, seq| {
                records += 1;
                let ns = ns.unwrap_or(NO_NAMESPACE);
                // Look up before inserting: the namespace set is small and
                // mostly already present, so avoid allocating a key each time.
                match stats.namespaces.get_mut(ns) {
                    Some(n) => *n += 1,
                    None => {
                        stats.namespaces.insert(ns.to_owned(), 1);
                    }
                }
                match endpoint.namespaces.get_mut(ns) {
                    Some(n) => *n += 1,
                    None => {
                        endpoint.namespaces.insert(ns.to_owned(), 1);
                    }
                }
                if track && let Some(seq) = seq {
                    by_namespace
                        .entry((key.clone(), ns.to_owned()))
                        .or_default()
                        .insert(seq);
                }
                match seq {
                    Some(seq) => {
                        let count = seqs.entry(seq).or_insert(0);
                        if *count == 0 {
                            stats.distinct_seqs += 1;
                        } else {
                            stats.duplicate_seqs += 1;
                        }
                        *count = count.saturating_add(1);
                    }
                    None => stats.records_without_seq += 1,
                }
            });
        }
        endpoint.records += records;
        stats.signal_mut(signal).records += records;
        Answer::Accepted
    }
}

/// Whether `needle` (not empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which fault, if any, answers a request: `(HTTP status, retry-after)`.
/// `roll` is a uniform sample in `0..1` compared with the error rate.
fn decide_fault(fault: &Fault, roll: f64) -> Option<(u16, Option<u64>)> {
    let status = match fault.status {
        Some(status) if !(200..300).contains(&status) => Some(status),
        _ if roll < fault.error_rate => Some(503),
        _ => None,
    }?;
    let retry_after = fault.retry_after.filter(|_| matches!(status, 429 | 503));
    Some((status, retry_after))
}

/// The gRPC code equivalent to an HTTP status, following the gRPC
/// HTTP-to-gRPC mapping and OTLP's retryable sets (429 and 503 are retryable
/// in OTLP/HTTP; `RESOURCE_EXHAUSTED` and `UNAVAILABLE` are in OTLP/gRPC).
pub fn grpc_code_for_http(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        413 | 429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        500 => Code::Internal,
        _ => Code::Unknown,
    }
}

/// One listener: its fixed address, the app it serves, and the accept task
/// while it is up.
#[derive(Debug)]
struct ListenerCtl {
    addr: SocketAddr,
    router: Router,
    tls: Option<SinkTls>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The TLS of both listeners and the client certificates they were shown.
#[derive(Debug, Clone)]
struct SinkTls {
    config: Arc<rustls::ServerConfig>,
    client_certs: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[derive(Debug)]
struct Listeners {
    grpc: ListenerCtl,
    http: ListenerCtl,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Coming back up on the same port must not fail on connections of the
    // previous incarnation that are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until aborted; aborting drops the listener (new
/// connections are refused) and the `JoinSet` (open connections are closed).
async fn accept_loop(listener: TcpListener, router: Router, tls: Option<SinkTls>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "sink: set_nodelay failed");
                    }
                    let router = router.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        match tls {
                            None => serve_connection(stream, router).await,
                            Some(tls) => match tokio_rustls::TlsAcceptor::from(tls.config).accept(stream).await {
                                Ok(stream) => {
                                    if let Some(cert) = stream.get_ref().1.peer_certificates().and_then(<[_]>::first) {
                                        lock(&tls.client_certs).push(cert.to_vec());
                                    }
                                    serve_connection(stream, router).await;
                                }
                                Err(e) => tracing::debug!(error = %e, "sink: TLS handshake failed"),
                            },
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "sink: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves HTTP/1 and HTTP/2 on one connection until it ends.
async fn serve_connection<I>(io: I, router: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(crate::grpc_codec::STREAM_WINDOW)
        .initial_connection_window_size(crate::grpc_codec::CONNECTION_WINDOW);
    let served = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
    // A connection error only concerns that client.
    if let Err(e) = served {
        tracing::debug!(error = %e, "sink: connection ended with an error");
    }
}

// === impl ListenerCtl ===

impl ListenerCtl {
    async fn up(&self) -> anyhow::Result<()> {
        let mut task = self.task.lock().await;
        if task.is_none() {
            let listener = bind(self.addr).with_context(|| format!("binding {}", self.addr))?;
            *task = Some(tokio::spawn(accept_loop(
                listener,
                self.router.clone(),
                self.tls.clone(),
            )));
        }
        Ok(())
    }

    async fn down(&self) {
        let handle = self.task.lock().await.take();
        if let Some(handle) = handle {
            handle.abort();
            // Resolves once the task is dropped, i.e. the socket is closed.
            if let Err(e) = handle.await
                && !e.is_cancelled()
            {
                tracing::error!(error = %e, "sink: accept loop panicked");
            }
        }
    }
}

impl Drop for ListenerCtl {
    fn drop(&mut self) {
        if let Some(handle) = self.task.get_mut().take() {
            handle.abort();
        }
    }
}

// === impl Listeners ===

impl Listeners {
    async fn down(&self) {
        self.grpc.down().await;
        self.http.down().await;
    }

    async fn up(&self) -> anyhow::Result<()> {
        self.grpc.up().await?;
        self.http.up().await
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

/// Brings the listeners up after `after`, unless the sink is gone by then.
fn schedule_up(listeners: Weak<Listeners>, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        if let Some(listeners) = listeners.upgrade()
            && let Err(e) = listeners.up().await
        {
            tracing::error!(error = %format!("{e:#}"), "sink: coming back up failed");
        }
    });
}

// --- HTTP ---

fn http_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sink/stats", get(stats_handler))
        .route(
            "/sink/fault",
            get(get_fault_handler).post(post_fault_handler),
        )
        .route("/sink/reset", post(reset_handler))
        .fallback(otlp_http_handler)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response {
    let stats = lock(&shared.counts).stats.clone();
    json_response(StatusCode::OK, &stats)
}

async fn get_fault_handler(State(shared): State<Arc<Shared>>) -> Response {
    let fault = lock(&shared.fault).clone();
    json_response(StatusCode::OK, &fault)
}

async fn reset_handler(State(shared): State<Arc<Shared>>) -> StatusCode {
    *lock(&shared.counts) = Counts::default();
    StatusCode::NO_CONTENT
}

async fn post_fault_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("fault: {e}")).into_response(),
    };
    let fault = Fault {
        error_rate: request.error_rate,
        status: request.status,
        retry_after: request.retry_after,
        latency: request.latency,
        only_endpoints: request.only_endpoints,
        refuse_marker: request.refuse_marker,
    };
    *lock(&shared.fault) = fault.clone();
    if let Some(down_for) = request.down_for
        && let Some(listeners) = shared.listeners.get().cloned()
    {
        tokio::spawn(async move {
            // Give this very response a moment to leave before its
            // connection is closed along with the others.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(l) = listeners.upgrade() {
                l.down().await;
            }
            schedule_up(listeners, down_for);
        });
    }
    json_response(StatusCode::OK, &fault)
}

/// Splits `/prefix/v1/logs` into the signal and the endpoint key (`/prefix`,
/// or `/` without a prefix).
fn parse_otlp_path(path: &str) -> Option<(Signal, String)> {
    Signal::ALL.into_iter().find_map(|signal| {
        let prefix = path.strip_suffix(signal.http_path())?;
        let key = if prefix.is_empty() { "/" } else { prefix };
        Some((signal, key.to_owned()))
    })
}

/// Decompresses a body by its `Content-Encoding`, capped at [`MAX_BODY_BYTES`],
/// with the receivers' capped decoder.
fn decompress(encoding: Option<&str>, body: Bytes) -> Result<Bytes, String> {
    use crate::receivers::decompress::{Encoding, decompress};
    match Encoding::from_header(encoding) {
        Some(Encoding::Identity) => Ok(body),
        Some(enc) => decompress(enc, &body, MAX_BODY_BYTES)
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
        None => Err(format!("unsupported content-encoding {encoding:?}")),
    }
}

/// An empty `Export*ServiceResponse` of `signal` in the request's encoding.
fn export_response(signal: Signal, json: bool) -> Vec<u8> {
    let encoded = match (signal, json) {
        (Signal::Logs, false) => Ok(ExportLogsServiceResponse::default().encode_to_vec()),
        (Signal::Metrics, false) => Ok(ExportMetricsServiceResponse::default().encode_to_vec()),
        (Signal::Traces, false) => Ok(ExportTraceServiceResponse::default().encode_to_vec()),
        (Signal::Logs, true) => serde_json::to_vec(&ExportLogsServiceResponse::default()),
        (Signal::Metrics, true) => serde_json::to_vec(&ExportMetricsServiceResponse::default()),
        (Signal::Traces, true) => serde_json::to_vec(&ExportTraceServiceResponse::default()),
    };
    encoded.unwrap_or_else(|_| b"{}".to_vec())
}

async fn otlp_http_handler(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((signal, key)) = parse_otlp_path(uri.path()) else {
        return fluent_bit_handler(&shared, &method, &uri, &headers, body).await;
    };
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "use POST").into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let json = content_type.starts_with("application/json");
    if !json
        && !content_type.starts_with("application/x-protobuf")
        && !content_type.starts_with("application/protobuf")
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-type {content_type:?}"),
        )
            .into_response();
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = decompress(encoding, body);
    match shared.ingest(signal, key, &headers, body, json).await {
        Answer::Accepted => {
            let content_type = if json {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                export_response(signal, json),
            )
                .into_response()
        }
        Answer::Refused {
            status,
            retry_after,
        } => refused(status, retry_after),
        Answer::Invalid(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
    }
}

/// Any other path takes what Fluent Bit's HTTP output sends (`format json`,
/// `json_lines` or `json_stream`), like Fluent Bit's own `http` input: the
/// records are counted as logs of the endpoint key `path` (their
/// `seedgate.seq` and `kubernetes.namespace_name`), and the answer is 201.
async fn fluent_bit_handler(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if *method != Method::POST || !json {
        return (
            StatusCode::NOT_FOUND,
            "not an OTLP path (POST application/json elsewhere is taken as Fluent Bit records)",
        )
            .into_response();
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let request = decompress(encoding, body).and_then(|b| {
        crate::proto::fluent_bit::to_otlp(&b)
            .map(|r| Bytes::from(r.encode_to_vec()))
            .map_err(|e| e.to_string())
    });
    let key = uri.path().to_owned();
    match shared
        .ingest(Signal::Logs, key, headers, request, false)
        .await
    {
        Answer::Accepted => StatusCode::CREATED.into_response(),
        Answer::Refused {
            status,
            retry_after,
        } => refused(status, retry_after),
        Answer::Invalid(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
    }
}

/// The answer to a request the sink's faults refuse.
fn refused(status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (code, "sink: injected fault").into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

// --- gRPC ---

/// The unary Export call of one signal, with what the HTTP layer knew.
#[derive(Debug, Clone)]
struct GrpcExport {
    shared: Arc<Shared>,
    signal: Signal,
    key: String,
    headers: HeaderMap,
}

impl tower::Service<tonic::Request<Bytes>> for GrpcExport {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let answer = this
                .shared
                .ingest(this.signal, this.key, &this.headers, Ok(body), false)
                .await;
            match answer {
                // The empty Export*ServiceResponse encodes to zero bytes.
                Answer::Accepted => Ok(tonic::Response::new(Bytes::new())),
                Answer::Refused {
                    status,
                    retry_after,
                } => {
                    let code = grpc_code_for_http(status);
                    let message = format!("sink: injected fault (HTTP {status})");
                    Err(match retry_after {
                        Some(secs)
                            if matches!(code, Code::ResourceExhausted | Code::Unavailable) =>
                        {
                            Status::with_error_details(
                                code,
                                message,
                                ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
                            )
                        }
                        _ => Status::new(code, message),
                    })
                }
                Answer::Invalid(msg) => Err(Status::invalid_argument(msg)),
            }
        })
    }
}

/// The endpoint key of a gRPC request: the authority the client dialed.
fn authority(uri: &Uri, headers: &HeaderMap) -> String {
    uri.authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

async fn grpc_export(shared: Arc<Shared>, signal: Signal, request: Request) -> Response {
    let service = GrpcExport {
        shared,
        signal,
        key: authority(request.uri(), request.headers()),
        headers: request.headers().clone(),
    };
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(MAX_BODY_BYTES);
    grpc.unary(service, request).await.map(Body::new)
}

fn grpc_router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for signal in Signal::ALL {
        router = router.route(
            signal.grpc_path(),
            post(move |State(shared): State<Arc<Shared>>, request: Request| {
                grpc_export(shared, signal, request)
            }),
        );
    }
    router.with_state(shared)
}

// --- CLI ---

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_paths_with_and_without_prefix() {
        assert_eq!(
            parse_otlp_path("/v1/logs"),
            Some((Signal::Logs, "/".to_owned()))
        );
        assert_eq!(
            parse_otlp_path("/shoot--p--a/v1/metrics"),
            Some((Signal::Metrics, "/shoot--p--a".to_owned()))
        );
        assert_eq!(
            parse_otlp_path("/a/b/v1/traces"),
            Some((Signal::Traces, "/a/b".to_owned()))
        );
        assert_eq!(parse_otlp_path("/v1/log"), None);
        assert_eq!(parse_otlp_path("/sink/stats"), None);
    }

    #[test]
    fn http_status_maps_to_grpc_code() {
        let table = [
            (200, Code::Ok),
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::NotFound),
            (413, Code::ResourceExhausted),
            (429, Code::ResourceExhausted),
            (500, Code::Internal),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::DeadlineExceeded),
            (418, Code::Unknown),
        ];
        for (status, code) in table {
            assert_eq!(grpc_code_for_http(status), code, "HTTP {status}");
        }
    }

    #[test]
    fn refuse_marker_matches_raw_bytes() {
        assert!(contains(b"\x0a\x03POISON\x12", b"POISON"));
        assert!(!contains(b"POISO", b"POISON"));
        // An empty marker refuses nothing.
        assert!(!contains(b"anything", b""));
    }

    #[test]
    fn fault_decision() {
        let none = Fault::default();
        assert_eq!(decide_fault(&none, 0.0), None);
        let rate = Fault {
            error_rate: 0.5,
            retry_after: Some(2),
            ..Fault::default()
        };
        assert_eq!(decide_fault(&rate, 0.49), Some((503, Some(2))));
        assert_eq!(decide_fault(&rate, 0.5), None);
        let status = Fault {
            status: Some(500),
            retry_after: Some(2),
            ..Fault::default()
        };
        // Retry-After only goes with the retryable statuses.
        assert_eq!(decide_fault(&status, 0.99), Some((500, None)));
        let ok = Fault {
            status: Some(200),
            ..Fault::default()
        };
        assert_eq!(decide_fault(&ok, 0.99), None);
    }

    #[test]
    fn verification_counts_missing_duplicates_unexpected() {
        let acked = AckedSet::from_ranges([(0, 9)]);
        let mut seqs: HashMap<u64, u32> = (0..8).map(|s| (s, 1)).collect();
        seqs.insert(3, 3);
        seqs.insert(42, 1);
        let v = verify_seqs(&seqs, &acked);
        assert_eq!(
            (
                v.expected,
                v.received,
                v.missing,
                v.duplicates,
                v.unexpected
            ),
            (10, 9, 2, 2, 1)
        );
        assert_eq!(v.missing_sample, vec![8, 9]);
        assert!(!v.is_ok());
    }

    #[test]
    fn gzip_and_zstd_bodies_decompress() {
        use std::io::Write as _;
        let plain = b"hello otlp".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("gzip");
        let gz = gz.finish().expect("gzip finish");
        let zs = zstd::encode_all(&plain[..], 1).expect("zstd");
        assert_eq!(decompress(Some("gzip"), gz.into()).expect("gunzip"), plain);
        assert_eq!(decompress(Some("zstd"), zs.into()).expect("unzstd"), plain);
        assert_eq!(
            decompress(None, plain.clone().into()).expect("identity"),
            plain
        );
        assert!(decompress(Some("br"), Bytes::new()).is_err());
        assert!(decompress(Some("gzip"), Bytes::from_static(b"nope")).is_err());
    }
}

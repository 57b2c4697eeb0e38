//! `seedgate loadgen`: OTLP traffic in which every record carries a unique
//! sequence number, so a test can prove that nothing acknowledged was lost.
//!
//! Request `i` of a run carries the records `seq_start + i * records_per_request`
//! onwards, consecutively; workers claim request indexes from one counter, so
//! seqs are unique within a run whatever the concurrency. A request counts as
//! *acknowledged* only when the export call succeeded without a
//! `partial_success` rejection; only then is its `first last` range appended to
//! the acked file ([`super::acked`]).
//!
//! Outcomes: *refused* is HTTP 429/503 or a gRPC `RESOURCE_EXHAUSTED` /
//! `UNAVAILABLE` answered by the server; *failed* is everything else
//! (connection refused, other statuses, timeouts, partial rejections). With
//! `--retry-refused` a request that was not acked is sent again (after its
//! Retry-After, or 200 ms) until it is, like a real agent; without it the
//! records are simply not acked.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args as _, FromArgMatches as _};
use hdrhistogram::Histogram;
use http::header;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt as _;

use super::acked::AckedWriter;
use super::records::{ExportRequest, RequestSpec, block_counts};
use super::template::{Realism, Template, TraceShape};
use crate::grpc_codec::RawCodec;
use crate::signal::Signal;

/// How long to wait before re-sending when the server named no Retry-After.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(200);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OTLP/gRPC (HTTP/2).
    #[default]
    Grpc,
    /// OTLP/HTTP (`POST /v1/<signal>`).
    Http,
}

/// Command-line flags of `seedgate loadgen`. Build one in tests with
/// [`LoadgenArgs::from_flags`] or `Default` and set the public fields.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Transport.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Base URL; default http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318
    /// (http). For HTTP, `/v1/<signal>` is appended, after any path prefix.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Signal to send: logs, metrics or traces.
    #[arg(long, default_value = "logs")]
    pub signal: Signal,
    /// HTTP only: send OTLP/JSON instead of protobuf.
    #[arg(long)]
    pub json: bool,
    /// Compress requests with gzip (both protocols).
    #[arg(long)]
    pub gzip: bool,
    /// Records per second over all workers (open loop: each request is due at
    /// a fixed time, and its latency is measured from then, so a stalled
    /// server is not hidden by requests that were never sent); 0 sends as fast
    /// as the answers come back (closed loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Records in one request.
    #[arg(long, default_value_t = 100)]
    pub records_per_request: usize,
    /// Approximate encoded size of one record in bytes (padding).
    #[arg(long, default_value_t = 300)]
    pub record_size: usize,
    /// Number of tenants: namespaces `<namespace-prefix><index>`.
    #[arg(long, default_value_t = 1)]
    pub tenants: usize,
    /// Prefix of the generated namespace names.
    #[arg(long, default_value = "shoot--loadgen--t")]
    pub namespace_prefix: String,
    /// Resource blocks per request, round-robin over the namespaces;
    /// default min(namespaces, 10).
    #[arg(long)]
    pub resources_per_request: Option<usize>,
    /// Explicit namespaces (comma-separated) instead of --tenants.
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// gRPC connections (HTTP/2), the workers spread over them; default
    /// min(concurrency, 4). OTLP/HTTP uses a connection per request in flight.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Traces only: spans per trace, each trace's spans spread over as many
    /// consecutive requests (as an agent's batches cut across traces); 0 (the
    /// default) makes one trace of each request's spans.
    #[arg(long, default_value_t = 0)]
    pub spans_per_trace: u64,
    /// Traces as services make them: five services, eight span names, a
    /// share of errors (`--error-percent`) and durations from 1 ms to 2 s
    /// (log-uniform), all derived from the seq (reproducible).
    #[arg(long)]
    pub realistic_traces: bool,
    /// With `--realistic-traces`: percent of spans with status ERROR.
    #[arg(long, default_value_t = 5)]
    pub error_percent: u64,
    /// Stop starting new requests after this long, e.g. `10s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// The first sequence number.
    #[arg(long, default_value_t = 0)]
    pub seq_start: u64,
    /// Append `first last` for every acknowledged request to this file.
    #[arg(long)]
    pub acked_file: Option<PathBuf>,
    /// Re-send refused or failed requests until acked (until the --duration
    /// ends or Ctrl-C); otherwise they are counted and not acked.
    #[arg(long)]
    pub retry_refused: bool,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// No progress lines and no printed summary.
    #[arg(long)]
    pub quiet: bool,
}

// === impl LoadgenArgs ===

impl LoadgenArgs {
    /// Parses flags as the CLI would (without the program name), e.g.
    /// `LoadgenArgs::from_flags(["--count", "1000"])`.
    ///
    /// # Errors
    ///
    /// The flags do not parse.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("loadgen").no_binary_name(true));
        let matches = command.try_get_matches_from(flags)?;
        Self::from_arg_matches(&matches)
    }

    /// The endpoint, or the protocol's default.
    pub fn endpoint_or_default(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.clone(),
            (None, Protocol::Grpc) => "http://127.0.0.1:4317".to_owned(),
            (None, Protocol::Http) => "http://127.0.0.1:4318".to_owned(),
        }
    }

    /// The namespaces to cycle through: `--namespaces`, or `--tenants` names.
    pub fn namespace_list(&self) -> Vec<String> {
        if self.namespaces.is_empty() {
            (0..self.tenants.max(1))
                .map(|i| format!("{}{i}", self.namespace_prefix))
                .collect()
        } else {
            self.namespaces.clone()
        }
    }
}

impl Default for LoadgenArgs {
    /// The CLI defaults.
    fn default() -> Self {
        #[allow(clippy::expect_used)]
        Self::from_flags(std::iter::empty::<String>()).expect("the flag defaults parse")
    }
}

/// Ack latency in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// What a run did. Request counters count attempts (a retry is a request).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Signal sent.
    pub signal: Option<Signal>,
    /// Transport used.
    pub protocol: Protocol,
    /// The first seq of the run.
    pub seq_start: u64,
    /// Wall time of the run.
    pub elapsed_secs: f64,
    /// Export calls made, including retries.
    pub requests_sent: u64,
    /// Distinct records sent at least once.
    pub records_sent: u64,
    /// Requests acknowledged.
    pub requests_acked: u64,
    /// Records acknowledged.
    pub records_acked: u64,
    /// Calls refused by the server (429/503, RESOURCE_EXHAUSTED/UNAVAILABLE).
    pub requests_refused: u64,
    /// Calls that failed otherwise, including partial rejections.
    pub requests_failed: u64,
    /// Of the failed calls, those answered with a `partial_success` rejection.
    pub requests_partial: u64,
    /// Re-sends (only with `--retry-refused`).
    pub retries: u64,
    /// Encoded (uncompressed) OTLP payload bytes over all calls.
    pub request_bytes: u64,
    /// Acked records per second.
    pub records_per_sec: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Latency of the calls that were acked.
    pub latency: Latency,
    /// Acked records per namespace.
    pub acked_per_namespace: BTreeMap<String, u64>,
}

/// How one call ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Acked,
    Refused(Option<Duration>),
    Failed(Option<Duration>),
    Partial,
}

#[derive(Debug, Default)]
struct Counters {
    requests_sent: AtomicU64,
    records_sent: AtomicU64,
    requests_acked: AtomicU64,
    records_acked: AtomicU64,
    requests_refused: AtomicU64,
    requests_failed: AtomicU64,
    requests_partial: AtomicU64,
    retries: AtomicU64,
    request_bytes: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[derive(Debug, Clone)]
enum Transport {
    /// One channel (HTTP/2 connection) per `--connections`.
    Grpc(Vec<tonic::transport::Channel>),
    Http {
        client: reqwest::Client,
        url: String,
    },
}

#[derive(Debug)]
struct Run {
    args: LoadgenArgs,
    namespaces: Vec<String>,
    blocks: usize,
    transport: Transport,
    start: Instant,
    next_request: AtomicU64,
    /// Pre-encoded requests by (first namespace slot, records).
    templates: Mutex<HashMap<(usize, usize), Arc<Template>>>,
    /// Bytes held in `templates`.
    template_bytes: AtomicU64,
    counters: Counters,
    acked: Option<Mutex<AckedWriter>>,
    /// The first error writing the acked file; it ends the run.
    acked_error: Mutex<Option<anyhow::Error>>,
    stop: watch::Sender<bool>,
}

/// What one worker measured.
struct WorkerResult {
    latency: Histogram<u64>,
    acked_per_namespace: BTreeMap<String, u64>,
}

/// One request to make: which worker, which namespaces, which seqs.
#[derive(Debug, Clone, Copy)]
struct Request {
    worker: usize,
    /// The namespace slot of its first resource block.
    slot: usize,
    first: u64,
    records: u64,
    /// When an open-loop run meant to send it.
    due: Option<Instant>,
}

/// The most pre-encoded request bytes a run keeps (one per namespace
/// rotation and request size); beyond, templates are made per request.
const TEMPLATE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds from 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).context("creating latency histogram")
}

// === impl Run ===

impl Run {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d` unless the run is stopped first; returns whether it is stopped.
    async fn sleep_or_stop(&self, until: tokio::time::Instant) -> bool {
        let mut rx = self.stop.subscribe();
        if *rx.borrow_and_update() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => self.stopped(),
            _ = rx.changed() => true,
        }
    }

    /// The template for requests of `records` records whose blocks start at
    /// namespace slot `slot`: cached up to [`TEMPLATE_CACHE_BYTES`], made
    /// afresh beyond (a run over thousands of namespace rotations).
    fn template(&self, slot: usize, records: usize) -> anyhow::Result<Arc<Template>> {
        let key = (slot, records);
        if let Some(t) = lock(&self.templates).get(&key) {
            return Ok(Arc::clone(t));
        }
        let namespaces: Vec<String> = (0..self.blocks)
            .map(|j| self.namespaces[(slot + j) % self.namespaces.len()].clone())
            .collect();
        let template = Arc::new(Template::new(
            self.args.signal,
            &RequestSpec {
                first_seq: 0,
                records,
                namespaces: &namespaces,
                record_size: self.args.record_size,
                time_unix_nano: 0,
            },
        )?);
        let held = self.template_bytes.load(Ordering::Relaxed);
        if held + template.len() as u64 <= TEMPLATE_CACHE_BYTES {
            self.template_bytes
                .fetch_add(template.len() as u64, Ordering::Relaxed);
            lock(&self.templates).insert(key, Arc::clone(&template));
        }
        Ok(template)
    }

    /// The payload as sent on the wire (for HTTP: JSON and/or gzip applied)
    /// and its encoded protobuf length.
    fn payload(&self, template: &Template, first: u64) -> anyhow::Result<(Bytes, u64)> {
        let shape = match self.args.spans_per_trace {
            0 => TraceShape::PerRequest,
            k => TraceShape::Spread(k),
        };
        let realism = self.args.realistic_traces.then_some(Realism {
            error_percent: self.args.error_percent.min(100),
            ..Realism::DEFAULT
        });
        let protobuf = template.render_with(first, unix_nanos(), shape, realism);
        let encoded_len = protobuf.len() as u64;
        let http = matches!(self.transport, Transport::Http { .. });
        let body = if http && self.args.json {
            ExportRequest::decode(self.args.signal, &protobuf, false)?.to_json()?
        } else {
            protobuf
        };
        if self.args.gzip && http {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body)?;
            return Ok((Bytes::from(gz.finish()?), encoded_len));
        }
        Ok((Bytes::from(body), encoded_len))
    }

    async fn send(&self, worker: usize, payload: &Bytes) -> Outcome {
        match &self.transport {
            Transport::Grpc(channels) => {
                let channel = channels[worker % channels.len()].clone();
                self.send_grpc(channel, payload.clone()).await
            }
            Transport::Http { client, url } => self.send_http(client, url, payload.clone()).await,
        }
    }

    async fn send_grpc(&self, channel: tonic::transport::Channel, payload: Bytes) -> Outcome {
        let mut grpc =
            tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        if self.args.gzip {
            // Like an agent that compresses: it also takes gzip answers.
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        if grpc.ready().await.is_err() {
            return Outcome::Failed(None);
        }
        let mut request = tonic::Request::new(payload);
        request.set_timeout(self.args.timeout);
        let path = http::uri::PathAndQuery::from_static(self.args.signal.grpc_path());
        match grpc.unary(request, path, RawCodec).await {
            Ok(response) => partial_outcome(self.args.signal, response.get_ref(), false),
            Err(status) => classify_grpc(&status),
        }
    }

    async fn send_http(&self, client: &reqwest::Client, url: &str, payload: Bytes) -> Outcome {
        let content_type = if self.args.json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let mut request = client
            .post(url)
            .header(header::CONTENT_TYPE, content_type)
            .timeout(self.args.timeout)
            .body(payload);
        if self.args.gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => return Outcome::Failed(None),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_success() {
            let json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            match response.bytes().await {
                Ok(body) => partial_outcome(self.args.signal, &body, json),
                Err(_) => Outcome::Failed(None),
            }
        } else if matches!(status.as_u16(), 429 | 503) {
            Outcome::Refused(retry_after)
        } else {
            Outcome::Failed(retry_after)
        }
    }

    fn record_ack(&self, first: u64, last: u64) {
        if let Some(acked) = &self.acked {
            let result = lock(acked).record(first, last);
            if let Err(e) = result {
                self.fail(e);
            }
        }
    }

    fn flush_acked(&self) {
        if let Some(acked) = &self.acked {
            let result = lock(acked).flush();
            if let Err(e) = result {
                self.fail(e);
            }
        }
    }

    /// Ends the run because the acked file can no longer be trusted.
    fn fail(&self, e: anyhow::Error) {
        let mut slot = lock(&self.acked_error);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.stop.send_replace(true);
    }

    /// Claims request indexes and sends them until the count, the duration or
    /// a stop ends the run.
    async fn worker(self: Arc<Self>, id: usize) -> anyhow::Result<WorkerResult> {
        let mut result = WorkerResult {
            latency: new_histogram()?,
            acked_per_namespace: BTreeMap::new(),
        };
        let per_request = self.args.records_per_request.max(1) as u64;
        loop {
            if self.stopped() {
                break;
            }
            let index = self.next_request.fetch_add(1, Ordering::Relaxed);
            let offset = index * per_request;
            let records = match self.args.count {
                Some(count) if offset >= count => break,
                Some(count) => per_request.min(count - offset),
                None => per_request,
            };
            let mut due = None;
            if self.args.rate > 0 {
                // Request i is due when the records before it have had their
                // share of time: no shared limiter, and no drift.
                let at =
                    self.start + Duration::from_secs_f64(offset as f64 / self.args.rate as f64);
                if self.sleep_or_stop(at.into()).await {
                    break;
                }
                due = Some(at);
            }
            let request = Request {
                worker: id,
                slot: (index as usize).wrapping_mul(self.blocks) % self.namespaces.len(),
                first: self.args.seq_start + offset,
                records,
                due,
            };
            self.send_request(&request, &mut result).await?;
        }
        Ok(result)
    }

    async fn send_request(&self, req: &Request, result: &mut WorkerResult) -> anyhow::Result<()> {
        let Request {
            worker,
            slot,
            first,
            records,
            due,
        } = *req;
        let last = first + records - 1;
        let template = self.template(slot, usize::try_from(records)?)?;
        let (payload, encoded_len) = self.payload(&template, first)?;
        bump(&self.counters.records_sent, records);
        // Open loop: the first attempt's latency counts from when it was due
        // (coordinated omission corrected); a retry's from when it was sent.
        let mut since = due;
        loop {
            bump(&self.counters.requests_sent, 1);
            bump(&self.counters.request_bytes, encoded_len);
            let sent_at = since.take().unwrap_or_else(Instant::now);
            let outcome = self.send(worker, &payload).await;
            let retry_after = match outcome {
                Outcome::Acked => {
                    let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    result.latency.saturating_record(micros.max(1));
                    bump(&self.counters.requests_acked, 1);
                    bump(&self.counters.records_acked, records);
                    self.record_ack(first, last);
                    for (block, count) in block_counts(usize::try_from(records)?, self.blocks) {
                        let ns = &self.namespaces[(slot + block) % self.namespaces.len()];
                        match result.acked_per_namespace.get_mut(ns) {
                            Some(n) => *n += count as u64,
                            None => {
                                result.acked_per_namespace.insert(ns.clone(), count as u64);
                            }
                        }
                    }
                    return Ok(());
                }
                Outcome::Refused(after) => {
                    bump(&self.counters.requests_refused, 1);
                    after
                }
                Outcome::Failed(after) => {
                    bump(&self.counters.requests_failed, 1);
                    after
                }
                Outcome::Partial => {
                    bump(&self.counters.requests_failed, 1);
                    bump(&self.counters.requests_partial, 1);
                    None
                }
            };
            if !self.args.retry_refused {
                return Ok(());
            }
            let due = Instant::now() + retry_after.unwrap_or(DEFAULT_RETRY_DELAY);
            if self.sleep_or_stop(due.into()).await {
                return Ok(());
            }
            bump(&self.counters.retries, 1);
        }
    }

    fn progress_line(&self, acked_before: u64, interval: f64) -> (String, u64) {
        let c = &self.counters;
        let acked = load(&c.records_acked);
        let line = format!(
            "loadgen: {:>5.1}s sent {} acked {} refused {} errors {} {:.0} records/s",
            self.start.elapsed().as_secs_f64(),
            load(&c.records_sent),
            acked,
            load(&c.requests_refused),
            load(&c.requests_failed),
            (acked - acked_before) as f64 / interval,
        );
        (line, acked)
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A server-sent `RESOURCE_EXHAUSTED`/`UNAVAILABLE` is a refusal; the same
/// codes made up by the client for a transport failure (they carry the
/// transport error as source) are failures, like any other code.
fn classify_grpc(status: &tonic::Status) -> Outcome {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let from_server = std::error::Error::source(status).is_none();
    match status.code() {
        Code::ResourceExhausted | Code::Unavailable if from_server => Outcome::Refused(retry_after),
        _ => Outcome::Failed(retry_after),
    }
}

/// `Acked` unless the response body reports rejected records.
fn partial_outcome(signal: Signal, body: &[u8], json: bool) -> Outcome {
    // An empty or undecodable body is a success without partial information.
    fn parse<T: prost::Message + Default + serde::de::DeserializeOwned>(
        body: &[u8],
        json: bool,
    ) -> Option<T> {
        if body.is_empty() {
            None
        } else if json {
            serde_json::from_slice(body).ok()
        } else {
            T::decode(body).ok()
        }
    }
    let rejected = match signal {
        Signal::Logs => parse::<ExportLogsServiceResponse>(body, json)
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records),
        Signal::Metrics => parse::<ExportMetricsServiceResponse>(body, json)
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points),
        Signal::Traces => parse::<ExportTraceServiceResponse>(body, json)
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans),
    };
    if rejected > 0 {
        Outcome::Partial
    } else {
        Outcome::Acked
    }
}

fn transport(args: &LoadgenArgs) -> anyhow::Result<Transport> {
    let endpoint = args.endpoint_or_default();
    Ok(match args.protocol {
        Protocol::Grpc => {
            let mut ep = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .with_context(|| format!("invalid gRPC endpoint {endpoint:?}"))?
                .connect_timeout(args.timeout)
                .tcp_nodelay(true);
            if endpoint.starts_with("https://") {
                ep = ep.tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())?;
            }
            // Lazy: a sink that is down yields failed requests, not a failed run.
            // Each connect_lazy is its own HTTP/2 connection.
            let ep = crate::grpc_codec::tune_endpoint(ep);
            let n = args.connections.unwrap_or(args.concurrency.min(4)).max(1);
            Transport::Grpc((0..n).map(|_| ep.connect_lazy()).collect())
        }
        Protocol::Http => {
            let base = endpoint.trim_end_matches('/');
            let path = args.signal.http_path();
            let url = if base.ends_with(path) {
                base.to_owned()
            } else {
                format!("{base}{path}")
            };
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(args.concurrency.max(1))
                .tcp_nodelay(true)
                .build()
                .context("building the HTTP client")?;
            Transport::Http { client, url }
        }
    })
}

/// Runs the load generator until `--count` records were handled, `--duration`
/// passed or Ctrl-C; prints progress (stderr) and the summary (stdout) unless
/// `--quiet`, and writes `--acked-file` and `--summary-json`.
///
/// # Errors
///
/// Invalid arguments (endpoint, empty namespace list), or the acked or
/// summary file cannot be written. Failed requests are not errors: they are
/// counted in the [`Summary`].
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Summary> {
    super::install_crypto_provider();
    let namespaces = args.namespace_list();
    anyhow::ensure!(!namespaces.is_empty(), "no namespaces to send to");
    let blocks = args
        .resources_per_request
        .unwrap_or(namespaces.len().min(10))
        .max(1);
    let acked = match &args.acked_file {
        Some(path) => Some(Mutex::new(AckedWriter::create(path)?)),
        None => None,
    };
    let (stop, _) = watch::channel(false);
    let run = Arc::new(Run {
        transport: transport(&args)?,
        namespaces,
        blocks,
        start: Instant::now(),
        next_request: AtomicU64::new(0),
        templates: Mutex::new(HashMap::new()),
        template_bytes: AtomicU64::new(0),
        counters: Counters::default(),
        acked,
        acked_error: Mutex::new(None),
        stop,
        args,
    });

    // Stoppers: the duration and Ctrl-C. Both only stop new work; requests in
    // flight finish (bounded by --timeout) so their acks are not lost.
    let mut helpers = tokio::task::JoinSet::new();
    if let Some(duration) = run.args.duration {
        let run = run.clone();
        helpers.spawn(async move {
            tokio::time::sleep(duration).await;
            run.stop.send_replace(true);
        });
    }
    {
        let run = run.clone();
        helpers.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                run.stop.send_replace(true);
            }
        });
    }
    {
        let run = run.clone();
        helpers.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut acked_before = 0;
            loop {
                tick.tick().await;
                run.flush_acked();
                let (line, acked) = run.progress_line(acked_before, 1.0);
                acked_before = acked;
                if !run.args.quiet {
                    eprintln!("{line}");
                }
            }
        });
    }

    let mut workers = tokio::task::JoinSet::new();
    for id in 0..run.args.concurrency.max(1) {
        workers.spawn(run.clone().worker(id));
    }
    let mut latency = new_histogram()?;
    let mut acked_per_namespace = BTreeMap::new();
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined.context("loadgen worker panicked").and_then(|r| r) {
            Ok(result) => {
                latency.add(&result.latency).context("merging histograms")?;
                for (ns, n) in result.acked_per_namespace {
                    *acked_per_namespace.entry(ns).or_insert(0) += n;
                }
            }
            Err(e) => {
                run.stop.send_replace(true);
                first_error.get_or_insert(e);
            }
        }
    }
    helpers.abort_all();
    run.flush_acked();
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(e) = lock(&run.acked_error).take() {
        return Err(e);
    }

    let summary = summarize(&run, &latency, acked_per_namespace);
    if !run.args.quiet {
        print_summary(&summary);
    }
    if let Some(path) = &run.args.summary_json {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

fn summarize(
    run: &Run,
    latency: &Histogram<u64>,
    acked_per_namespace: BTreeMap<String, u64>,
) -> Summary {
    let c = &run.counters;
    let elapsed = run.start.elapsed().as_secs_f64();
    let per_sec = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let ms = |micros: u64| micros as f64 / 1000.0;
    let latency = if latency.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50_ms: ms(latency.value_at_quantile(0.5)),
            p99_ms: ms(latency.value_at_quantile(0.99)),
            max_ms: ms(latency.max()),
        }
    };
    Summary {
        signal: Some(run.args.signal),
        protocol: run.args.protocol,
        seq_start: run.args.seq_start,
        elapsed_secs: elapsed,
        requests_sent: load(&c.requests_sent),
        records_sent: load(&c.records_sent),
        requests_acked: load(&c.requests_acked),
        records_acked: load(&c.records_acked),
        requests_refused: load(&c.requests_refused),
        requests_failed: load(&c.requests_failed),
        requests_partial: load(&c.requests_partial),
        retries: load(&c.retries),
        request_bytes: load(&c.request_bytes),
        records_per_sec: per_sec(load(&c.records_acked)),
        mb_per_sec: per_sec(load(&c.request_bytes)) / 1e6,
        latency,
        acked_per_namespace,
    }
}

fn print_summary(s: &Summary) {
    println!(
        "loadgen: {:.2}s sent {} records in {} requests; acked {} records ({} requests); \
         refused {} errors {} (partial {}) retries {}",
        s.elapsed_secs,
        s.records_sent,
        s.requests_sent,
        s.records_acked,
        s.requests_acked,
        s.requests_refused,
        s.requests_failed,
        s.requests_partial,
        s.retries
    );
    println!(
        "loadgen: {:.0} records/s {:.2} MB/s; ack latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        s.records_per_sec, s.mb_per_sec, s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms
    );
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    use prost::Message as _;
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn grpc_status_classification() {
        let with_retry = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "full",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            classify_grpc(&with_retry),
            Outcome::Refused(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_grpc(&tonic::Status::unavailable("down")),
            Outcome::Refused(None)
        );
        assert_eq!(
            classify_grpc(&tonic::Status::internal("bug")),
            Outcome::Failed(None)
        );
        // A client-side transport failure carries its cause as source.
        let transport = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert!(matches!(classify_grpc(&transport), Outcome::Failed(_)));
    }

    #[test]
    fn partial_success_rejection_is_not_an_ack() {
        let rejected = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "bad".to_owned(),
            }),
        };
        let pb = rejected.encode_to_vec();
        let json = serde_json::to_vec(&rejected).expect("json");
        assert_eq!(partial_outcome(Signal::Logs, &pb, false), Outcome::Partial);
        assert_eq!(partial_outcome(Signal::Logs, &json, true), Outcome::Partial);
        // A partial_success with nothing rejected is a plain success.
        let warning_only = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 0,
                error_message: "just a warning".to_owned(),
            }),
        };
        assert_eq!(
            partial_outcome(Signal::Traces, &warning_only.encode_to_vec(), false),
            Outcome::Acked
        );
        assert_eq!(partial_outcome(Signal::Metrics, b"", false), Outcome::Acked);
    }
}

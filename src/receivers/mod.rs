//! The OTLP receivers: gRPC on 4317 and HTTP on 4318.
//!
//! Both are thin: they take a finished request body (decompressed, within
//! the size limit), pass it to [`Ingest::export`](crate::ingest::Ingest::export)
//! and map the result to their protocol, each in one place ([`grpc`],
//! [`http`]). What they share lives here: the memory limiter, the metrics
//! bookkeeping, and the capped decompression.
//!
//! Each exposes `serve(listener, shutdown)` over an already bound listener,
//! like mini-redis, so tests bind port 0; with `receivers.tls` both serve
//! TLS over that listener ([`tls`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ingest::{Accepted, Ingest, IngestError};
use crate::metrics::{Metrics, Refusal, SignalTransport};
use crate::signal::Signal;

pub mod decompress;
pub mod grpc;
pub mod http;
pub mod tls;

/// How long a request waits for room under `max_inflight_bytes` before it is
/// refused as backpressure.
const INFLIGHT_WAIT: Duration = Duration::from_secs(2);
/// The limiter counts in KiB so that the semaphore's u32 permits cover any
/// realistic memory budget.
const PERMIT_UNIT: u64 = 1024;

/// The transport a request came in on: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

impl Transport {
    /// Bounded label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// A refusal that happens in the receiver itself, before ingest.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Ingest refused or failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// More request bytes are in memory than `max_inflight_bytes` allows and
    /// none were freed in time.
    #[error("too many request bytes in flight; retry later")]
    MemoryLimit,
}

impl ReceiveError {
    /// Bounded label.
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiveError::Ingest(e) => e.kind(),
            ReceiveError::MemoryLimit => "memory_limit",
        }
    }
}

/// What both receivers share.
#[derive(Debug, Clone)]
pub struct ReceiverState {
    /// The hot path.
    pub ingest: Arc<Ingest>,
    /// The registry.
    pub metrics: Arc<Metrics>,
    inflight: Arc<Semaphore>,
    /// `receivers.tls`: both listeners serve TLS when set.
    pub tls: Option<tls::ReceiverTls>,
}

impl ReceiverState {
    /// State over `ingest` with a memory budget of `max_inflight_bytes`.
    pub fn new(ingest: Arc<Ingest>, metrics: Arc<Metrics>, max_inflight_bytes: u64) -> Self {
        let permits = usize::try_from((max_inflight_bytes / PERMIT_UNIT).max(1))
            .unwrap_or(Semaphore::MAX_PERMITS);
        Self {
            ingest,
            metrics,
            inflight: Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS))),
            tls: None,
        }
    }

    /// The same state with the listeners serving TLS (when `tls` is set).
    #[must_use]
    pub fn with_tls(self, tls: Option<tls::ReceiverTls>) -> Self {
        Self { tls, ..self }
    }

    /// Reserves room for `bytes` of request in memory.
    ///
    /// # Errors
    /// [`ReceiveError::MemoryLimit`] when no room frees up in time.
    pub async fn admit_memory(&self, bytes: usize) -> Result<InflightGuard, ReceiveError> {
        let units = u32::try_from((bytes as u64).div_ceil(PERMIT_UNIT).max(1)).unwrap_or(u32::MAX);
        let permit = tokio::time::timeout(
            INFLIGHT_WAIT,
            Arc::clone(&self.inflight).acquire_many_owned(units),
        )
        .await
        .map_err(|_| ReceiveError::MemoryLimit)?
        .map_err(|_| ReceiveError::MemoryLimit)?;
        self.metrics
            .receiver
            .inflight_bytes
            .inc_by(i64::from(units) * PERMIT_UNIT as i64);
        Ok(InflightGuard {
            _permit: permit,
            units,
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// Runs one export request through ingest and records its metrics once.
    ///
    /// # Errors
    /// Whatever refused it; the caller maps it to its protocol.
    pub async fn export(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
    ) -> Result<Accepted, ReceiveError> {
        let start = Instant::now();
        let len = body.len() as u64;
        let labels = SignalTransport {
            signal: signal.as_str(),
            transport: transport.as_str(),
        };
        let m = &self.metrics.receiver;
        m.requests.get_or_create(&labels).inc();
        m.bytes.get_or_create(&labels).inc_by(len);
        // A cheap handle on the bytes, to count the records of a refusal.
        let kept = body.clone();
        let result = match self.admit_memory(body.len()).await {
            Ok(_guard) => self
                .ingest
                .export(signal, body)
                .await
                .map_err(ReceiveError::from),
            Err(e) => Err(e),
        };
        match &result {
            Ok(accepted) => {
                m.records
                    .get_or_create(&labels)
                    .inc_by(accepted.records - accepted.rejected);
                if accepted.rejected > 0 {
                    m.rejected_records
                        .get_or_create(&labels)
                        .inc_by(accepted.rejected);
                }
            }
            Err(e) => {
                self.refused(signal, transport, e.kind());
                // A malformed body has no countable records; any other
                // refusal was scanned fine (or not yet: count now).
                if !matches!(e, ReceiveError::Ingest(IngestError::Malformed(_)))
                    && let Ok(n) = crate::proto::count_records(signal, &kept)
                {
                    m.refused_records
                        .get_or_create(&Refusal {
                            signal: signal.as_str(),
                            transport: transport.as_str(),
                            reason: e.kind(),
                        })
                        .inc_by(n);
                }
            }
        }
        m.request_duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        result
    }

    /// Counts a refusal that happened before or in ingest.
    pub fn refused(&self, signal: Signal, transport: Transport, reason: &'static str) {
        self.metrics
            .receiver
            .refused_requests
            .get_or_create(&Refusal {
                signal: signal.as_str(),
                transport: transport.as_str(),
                reason,
            })
            .inc();
    }
}

/// Holds request bytes' room under the memory budget until dropped.
#[derive(Debug)]
pub struct InflightGuard {
    _permit: OwnedSemaphorePermit,
    units: u32,
    metrics: Arc<Metrics>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.metrics
            .receiver
            .inflight_bytes
            .dec_by(i64::from(self.units) * PERMIT_UNIT as i64);
    }
}

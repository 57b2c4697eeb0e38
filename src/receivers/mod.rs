//! The OTLP receivers: gRPC on 4317 and HTTP on 4318.
//!
//! Both are thin: they read a request body (decompressed, within the size
//! limit), pass it to [`Ingest::export`](crate::ingest::Ingest::export)
//! and map the result to their protocol, each in one place ([`grpc`],
//! [`http`]). What they share lives here: the memory budget, the metrics
//! bookkeeping, the body reader ([`body`]), the capped decompression, the
//! idle timeout ([`idle`]) and the [`memory_limiter`].
//!
//! Memory is bounded *before* bytes are read. A request first asks the
//! process-wide memory limiter, then reserves its declared length (HTTP
//! `Content-Length`, the gRPC message's length prefix) under
//! `max_inflight_bytes` ([`ReceiverState::reserve`]); a body of unknown
//! length reserves as it arrives, and decompression grows the reservation
//! as it inflates ([`Reservation::grow_to`]). A request that cannot reserve
//! within [`INFLIGHT_WAIT`] is refused with a retry delay, its body unread:
//! not reading it is what makes TCP and HTTP/2 flow control hold the sender
//! back. What a waiting request can still buffer is one flow-control window
//! (see [`grpc`] for the HTTP/2 windows).
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

pub mod body;
pub mod decompress;
pub mod grpc;
pub mod http;
pub mod idle;
pub mod memory_limiter;
pub mod refusal;
pub mod tls;

use memory_limiter::MemoryLimiter;
pub use refusal::RefusalReason;

/// How long a request waits for room under `max_inflight_bytes` before it is
/// refused as backpressure.
pub const INFLIGHT_WAIT: Duration = Duration::from_secs(2);
/// A body is in memory twice while ingest commits it: the body, and its
/// copy in LMDB's write transaction (dirty pages until the commit: the
/// store does not write through the map). A request reserves both.
const INGEST_COPIES: u64 = 2;
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
    /// The process is above the memory limiter's soft limit.
    #[error("seedgate is above its memory limit; retry in {}s", retry_after.as_secs())]
    MemoryLimiter {
        /// The suggested delay.
        retry_after: Duration,
    },
}

impl ReceiveError {
    /// Why, as both receivers count it.
    pub const fn reason(&self) -> RefusalReason {
        match self {
            ReceiveError::Ingest(e) => RefusalReason::of_ingest(e),
            ReceiveError::MemoryLimit => RefusalReason::MemoryLimit,
            ReceiveError::MemoryLimiter { .. } => RefusalReason::MemoryLimiter,
        }
    }

    /// The delay suggested for a memory refusal (both kinds).
    pub fn memory_retry_after(&self) -> Option<Duration> {
        match self {
            ReceiveError::MemoryLimit => Some(Duration::from_secs(1)),
            ReceiveError::MemoryLimiter { retry_after } => Some(*retry_after),
            ReceiveError::Ingest(_) => None,
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
    /// The semaphore's size, in permits.
    capacity: usize,
    limiter: Option<Arc<MemoryLimiter>>,
    /// `receivers.idle_timeout`.
    pub idle_timeout: Duration,
    /// `receivers.tls`: both listeners serve TLS when set.
    pub tls: Option<tls::ReceiverTls>,
}

impl ReceiverState {
    /// State over `ingest` with a memory budget of `max_inflight_bytes`.
    pub fn new(ingest: Arc<Ingest>, metrics: Arc<Metrics>, max_inflight_bytes: u64) -> Self {
        let capacity = usize::try_from((max_inflight_bytes / PERMIT_UNIT).max(1))
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        Self {
            ingest,
            metrics,
            inflight: Arc::new(Semaphore::new(capacity)),
            capacity,
            limiter: None,
            idle_timeout: crate::config::DEFAULT_IDLE_TIMEOUT,
            tls: None,
        }
    }

    /// The same state with the listeners serving TLS (when `tls` is set).
    #[must_use]
    pub fn with_tls(self, tls: Option<tls::ReceiverTls>) -> Self {
        Self { tls, ..self }
    }

    /// The same state refusing new requests while `limiter` says so.
    #[must_use]
    pub fn with_memory_limiter(self, limiter: Option<Arc<MemoryLimiter>>) -> Self {
        Self { limiter, ..self }
    }

    /// The same state closing connections silent for `idle_timeout`.
    #[must_use]
    pub fn with_idle_timeout(self, idle_timeout: Duration) -> Self {
        Self {
            idle_timeout,
            ..self
        }
    }

    /// Admits a request before any of its body is read: asks the memory
    /// limiter, then reserves room for a body of `declared` bytes (0 when
    /// the length is not known yet) under `max_inflight_bytes`, waiting up
    /// to [`INFLIGHT_WAIT`]. The room covers the body and its copy in the
    /// store's commit ([`ingest_bytes`]).
    ///
    /// # Errors
    /// [`ReceiveError::MemoryLimiter`] while the process is over its soft
    /// limit, [`ReceiveError::MemoryLimit`] when no room frees up in time.
    pub async fn reserve(&self, declared: u64) -> Result<Reservation, ReceiveError> {
        if let Some(l) = self.limiter.as_ref().filter(|l| l.refusing()) {
            return Err(ReceiveError::MemoryLimiter {
                retry_after: l.retry_after(),
            });
        }
        let mut r = Reservation {
            inflight: Arc::clone(&self.inflight),
            capacity: self.capacity,
            permit: None,
            metrics: Arc::clone(&self.metrics),
        };
        r.grow_to(ingest_bytes(declared)).await?;
        Ok(r)
    }

    /// Runs one export request through ingest and records its metrics once;
    /// `reservation` (the body's room in memory) is held until ingest is done.
    /// A request from another replica (`peer`) is a hand-over or a
    /// forwarded trace share instead.
    ///
    /// # Errors
    /// Whatever refused it; the caller maps it to its protocol.
    pub async fn export(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
        reservation: Reservation,
        peer: Option<FromPeer>,
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
        // A body of unknown length reserved only what it read.
        let mut reservation = reservation;
        let result = match reservation.grow_to(ingest_bytes(len)).await {
            Ok(()) => match peer {
                None => self.ingest.export(signal, body).await,
                Some(FromPeer::HandOver(queue)) => {
                    self.ingest.hand_over(signal, &queue, body).await
                }
                Some(FromPeer::Owner(pipeline)) => {
                    self.ingest.export_owned(signal, &pipeline, body).await
                }
            }
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
                self.refused(signal, transport, e.reason());
                // A malformed body has no countable records; any other
                // refusal was scanned fine (or not yet: count now).
                if !matches!(e, ReceiveError::Ingest(IngestError::Malformed(_)))
                    && let Ok(n) = crate::proto::count_records(signal, &kept)
                {
                    m.refused_records
                        .get_or_create(&Refusal {
                            signal: signal.as_str(),
                            transport: transport.as_str(),
                            reason: e.reason().as_str(),
                        })
                        .inc_by(n);
                }
            }
        }
        // The body is freed before its room is given back.
        drop(kept);
        drop(reservation);
        m.request_duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        result
    }

    /// Counts a refusal that happened before or in ingest.
    pub fn refused(&self, signal: Signal, transport: Transport, reason: RefusalReason) {
        self.metrics
            .receiver
            .refused_requests
            .get_or_create(&Refusal {
                signal: signal.as_str(),
                transport: transport.as_str(),
                reason: reason.as_str(),
            })
            .inc();
    }
}

/// The room a body of `len` bytes needs while ingest commits it.
pub fn ingest_bytes(len: u64) -> u64 {
    len.saturating_mul(INGEST_COPIES)
}

/// One request's room under `max_inflight_bytes`, held until dropped. It
/// grows with what the request holds in memory (a body of unknown length,
/// decompression) and shrinks when a buffer is freed.
#[derive(Debug)]
pub struct Reservation {
    inflight: Arc<Semaphore>,
    capacity: usize,
    permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<Metrics>,
}

// === impl Reservation ===

impl Reservation {
    /// Bytes reserved now.
    pub fn bytes(&self) -> u64 {
        self.units() as u64 * PERMIT_UNIT
    }

    fn units(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Grows the reservation to `bytes`, waiting up to [`INFLIGHT_WAIT`] for
    /// room. Never reserves more than the whole budget, so a request as
    /// large as `max_inflight_bytes` is still admitted when alone.
    ///
    /// # Errors
    /// [`ReceiveError::MemoryLimit`] when no room frees up in time; what was
    /// reserved before stays reserved until the reservation is dropped.
    pub async fn grow_to(&mut self, bytes: u64) -> Result<(), ReceiveError> {
        let want = usize::try_from(bytes.div_ceil(PERMIT_UNIT))
            .unwrap_or(usize::MAX)
            .min(self.capacity);
        let have = self.units();
        if want <= have {
            return Ok(());
        }
        let extra = u32::try_from(want - have).map_err(|_| ReceiveError::MemoryLimit)?;
        let more = tokio::time::timeout(
            INFLIGHT_WAIT,
            Arc::clone(&self.inflight).acquire_many_owned(extra),
        )
        .await
        .map_err(|_| ReceiveError::MemoryLimit)?
        .map_err(|_| ReceiveError::MemoryLimit)?;
        self.metrics
            .receiver
            .inflight_bytes
            .inc_by(i64::from(extra) * PERMIT_UNIT as i64);
        match &mut self.permit {
            Some(p) => p.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }

    /// Gives back what is reserved beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: u64) {
        let want = usize::try_from(bytes.div_ceil(PERMIT_UNIT)).unwrap_or(usize::MAX);
        let have = self.units();
        if let (true, Some(p)) = (want < have, &mut self.permit) {
            drop(p.split(have - want));
            self.metrics
                .receiver
                .inflight_bytes
                .dec_by((have - want) as i64 * PERMIT_UNIT as i64);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let units = self.units();
        self.metrics
            .receiver
            .inflight_bytes
            .dec_by(units as i64 * PERMIT_UNIT as i64);
    }
}

/// A request from another replica of the seed, told by its gRPC metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromPeer {
    /// A leaving replica's queue ([`crate::handoff::QUEUE_HEADER`]).
    HandOver(String),
    /// A share of a pipeline whose traces this replica owns
    /// ([`crate::affinity::OWNER_HEADER`]).
    Owner(String),
}

impl FromPeer {
    /// What the metadata says, if it names a peer's request.
    pub fn of(metadata: &tonic::metadata::MetadataMap) -> Option<Self> {
        let value = |key: &str| metadata.get(key)?.to_str().ok().map(str::to_owned);
        value(crate::handoff::QUEUE_HEADER)
            .map(FromPeer::HandOver)
            .or_else(|| value(crate::affinity::OWNER_HEADER).map(FromPeer::Owner))
    }
}

//! OTLP/gRPC receiver (port 4317): the three `Export` methods over tonic,
//! with the request kept as raw bytes ([`RawCodec`]).
//!
//! The request message is read here, below tonic's codec, so that memory is
//! reserved before it is read: the 5-byte gRPC prefix gives the message's
//! length, which is checked against `max_request_bytes` and reserved under
//! `max_inflight_bytes` before a byte of the message is polled; a compressed
//! message is inflated in reserved steps ([`decompress_reserving`]). Tonic
//! then gets an empty message and builds the answer (status, trailers,
//! response compression); the real message rides along in the request's
//! extensions (`Prepared`).
//!
//! A request waiting for room is not polled, so HTTP/2 flow control stops
//! its sender once the stream's window ([`STREAM_WINDOW`]) is buffered; all
//! streams of a connection together buffer at most [`CONNECTION_WINDOW`].
//! These are set explicitly, smaller than what the exporters use, because
//! they are what a waiting client can still make seedgate hold.
//!
//! The error mapping to gRPC codes lives in [`status_of`], the one place for
//! this protocol. Backpressure is `RESOURCE_EXHAUSTED` *with* a
//! `google.rpc.RetryInfo` detail, which the OTLP spec makes retryable;
//! an oversized message is `RESOURCE_EXHAUSTED` *without* it (permanent).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::body::{BodyReader, ReadError, decompress_reserving};
use super::decompress::Encoding;
use super::idle::IdleIo;
use super::{ReceiveError, ReceiverState, RefusalReason, Reservation, Transport};
use crate::grpc_codec::RawCodec;
use crate::ingest::IngestError;
use crate::proto::response;
use crate::signal::Signal;

/// A signal's gRPC service name, as a type (tonic's `NamedService` wants a const).
pub trait SignalService: Send + Sync + 'static {
    /// The signal.
    const SIGNAL: Signal;
}

/// Logs service marker.
#[derive(Debug, Clone, Copy)]
pub struct LogsService;
/// Metrics service marker.
#[derive(Debug, Clone, Copy)]
pub struct MetricsService;
/// Traces service marker.
#[derive(Debug, Clone, Copy)]
pub struct TraceService;

impl SignalService for LogsService {
    const SIGNAL: Signal = Signal::Logs;
}
impl SignalService for MetricsService {
    const SIGNAL: Signal = Signal::Metrics;
}
impl SignalService for TraceService {
    const SIGNAL: Signal = Signal::Traces;
}

/// One OTLP export service.
#[derive(Debug)]
pub struct OtlpGrpc<S> {
    state: ReceiverState,
    max_request_bytes: usize,
    _signal: PhantomData<S>,
}

impl<S> Clone for OtlpGrpc<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            max_request_bytes: self.max_request_bytes,
            _signal: PhantomData,
        }
    }
}

impl<S: SignalService> NamedService for OtlpGrpc<S> {
    const NAME: &'static str = S::SIGNAL.grpc_service();
}

impl<S: SignalService> OtlpGrpc<S> {
    fn new(state: ReceiverState, max_request_bytes: usize) -> Self {
        Self {
            state,
            max_request_bytes,
            _signal: PhantomData,
        }
    }
}

/// HTTP/2 flow-control window per stream: what one request waiting for
/// memory can still make seedgate buffer.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// HTTP/2 flow-control window per connection, shared by its streams.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S: SignalService, B> tower::Service<http::Request<B>> for OtlpGrpc<S>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != S::SIGNAL.grpc_path() {
                return Ok(
                    Status::unimplemented(format!("unknown method {}", req.uri().path()))
                        .into_http(),
                );
            }
            let (mut parts, body) = req.into_parts();
            let prepared = match this.read_message(&mut parts.headers, body).await {
                Ok(p) => p,
                Err(status) => return Ok(status.into_http()),
            };
            parts
                .extensions
                .insert(Prepared(Arc::new(Mutex::new(Some(prepared)))));
            let req =
                http::Request::from_parts(parts, Full::new(Bytes::from_static(EMPTY_MESSAGE)));
            // Answers go uncompressed, whatever the client accepts: an
            // export response is a few bytes, and gzip's tables (a fresh
            // 256 KiB per message) cost more CPU than the request's scan.
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc
                .unary(
                    ExportMethod::<S> {
                        state: this.state,
                        _s: PhantomData,
                    },
                    req,
                )
                .await)
        })
    }
}

impl<S: SignalService> OtlpGrpc<S> {
    /// Reads the request's one message into memory it has reserved, and
    /// takes `grpc-encoding` out of `headers` (the message is inflated here).
    async fn read_message<B>(
        &self,
        headers: &mut http::HeaderMap,
        body: B,
    ) -> Result<(Bytes, Reservation), Status>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let refuse = |reason: RefusalReason| self.state.refused(S::SIGNAL, Transport::Grpc, reason);
        let named = headers.remove("grpc-encoding");
        let named = named.as_ref().map(|v| v.to_str().unwrap_or("?"));
        let Some(encoding) = Encoding::from_header(named) else {
            refuse(RefusalReason::UnsupportedEncoding);
            return Err(Status::unimplemented(format!(
                "grpc-encoding {} is not supported: use gzip, zstd, deflate or identity",
                named.unwrap_or_default()
            )));
        };
        let mut reader = BodyReader::new(body);
        let prefix = match reader.read_exact(5).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                refuse(RefusalReason::Malformed);
                return Err(Status::invalid_argument("missing request message"));
            }
            Err(e) => {
                refuse(e.reason());
                return Err(read_status(&e));
            }
        };
        let (flag, len) = (
            prefix[0],
            u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]),
        );
        let len = len as usize;
        let encoding = match (flag, encoding) {
            (0, _) => Encoding::Identity,
            (1, Encoding::Identity) | (2.., _) => {
                refuse(RefusalReason::BadEncoding);
                return Err(Status::invalid_argument(format!(
                    "compressed flag {flag} without a supported grpc-encoding"
                )));
            }
            (_, enc) => enc,
        };
        if len > self.max_request_bytes {
            refuse(RefusalReason::TooLarge);
            return Err(read_status(&ReadError::TooLarge {
                limit: self.max_request_bytes,
            }));
        }
        let mut reservation = self.state.reserve(len as u64).await.map_err(|e| {
            refuse(e.reason());
            status_of(&e)
        })?;
        let read = match reader.read_exact(len).await {
            Ok(Some(raw)) => Ok(raw.freeze()),
            Ok(None) => Err(ReadError::Truncated { got: 0, want: len }),
            Err(e) => Err(e),
        };
        let message = match read {
            Ok(raw) => {
                decompress_reserving(encoding, raw, self.max_request_bytes, &mut reservation).await
            }
            Err(e) => Err(e),
        };
        message.map(|m| (m, reservation)).map_err(|e| {
            refuse(e.reason());
            read_status(&e)
        })
    }
}

/// The status of a body that could not be read into memory.
fn read_status(e: &ReadError) -> Status {
    match e {
        // Permanent: no RetryInfo.
        ReadError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        ReadError::Memory(e) => status_of(e),
        ReadError::Truncated { .. } | ReadError::Corrupt(_) => {
            Status::invalid_argument(e.to_string())
        }
        ReadError::Body(_) => Status::cancelled(e.to_string()),
    }
}

/// What tonic decodes: an empty, uncompressed message (the real one is in
/// [`Prepared`]).
const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// The request message read (and reserved) before tonic ran, handed to
/// [`ExportMethod`] through the request's extensions (which want `Clone`).
#[derive(Clone)]
struct Prepared(Arc<Mutex<Option<(Bytes, Reservation)>>>);

impl Prepared {
    fn take(&self) -> Option<(Bytes, Reservation)> {
        self.0.lock().ok()?.take()
    }
}

struct ExportMethod<S> {
    state: ReceiverState,
    _s: PhantomData<S>,
}

impl<S: SignalService> tonic::server::UnaryService<Bytes> for ExportMethod<S> {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.state.clone();
        let prepared = request
            .extensions()
            .get::<Prepared>()
            .and_then(Prepared::take);
        let peer = super::FromPeer::of(request.metadata());
        Box::pin(async move {
            let signal = S::SIGNAL;
            let Some((message, reservation)) = prepared else {
                return Err(Status::internal("the request message was not read"));
            };
            match state
                .export(signal, Transport::Grpc, message, reservation, peer)
                .await
            {
                Ok(accepted) => Ok(tonic::Response::new(Bytes::from(response::encode(
                    signal,
                    accepted.rejected,
                    &accepted.message,
                )))),
                Err(e) => Err(status_of(&e)),
            }
        })
    }
}

/// The gRPC status of a refusal: the one mapping for this protocol.
pub fn status_of(err: &ReceiveError) -> Status {
    let retry = |code: Code, delay: Duration| {
        Status::with_error_details(
            code,
            err.to_string(),
            ErrorDetails::with_retry_info(Some(delay)),
        )
    };
    match err {
        ReceiveError::Ingest(
            IngestError::Malformed(_) | IngestError::Processor(_) | IngestError::HandOver(_),
        ) => Status::invalid_argument(err.to_string()),
        ReceiveError::Ingest(
            e @ (IngestError::QueueFull { .. } | IngestError::StorageFull { .. }),
        ) => retry(
            Code::ResourceExhausted,
            e.retry_after().unwrap_or(Duration::from_secs(1)),
        ),
        ReceiveError::MemoryLimit | ReceiveError::MemoryLimiter { .. } => retry(
            Code::ResourceExhausted,
            err.memory_retry_after().unwrap_or(Duration::from_secs(1)),
        ),
        ReceiveError::Ingest(e @ (IngestError::Store(_) | IngestError::ShuttingDown)) => retry(
            Code::Unavailable,
            e.retry_after().unwrap_or(Duration::from_secs(1)),
        ),
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the server fails to run.
pub async fn serve(
    listener: TcpListener,
    state: ReceiverState,
    max_request_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let tls = state.tls.clone();
    let timeout = state.idle_timeout;
    let timeouts = state
        .metrics
        .memory
        .idle_timeouts_of(Transport::Grpc.as_str());
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        // An adaptive window would grow past these.
        .http2_adaptive_window(Some(false))
        .add_service(OtlpGrpc::<LogsService>::new(
            state.clone(),
            max_request_bytes,
        ))
        .add_service(OtlpGrpc::<MetricsService>::new(
            state.clone(),
            max_request_bytes,
        ))
        .add_service(OtlpGrpc::<TraceService>::new(state, max_request_bytes));
    match tls {
        Some(tls) => {
            let incoming = tls
                .grpc_listener(listener)
                .into_stream()
                .map_ok(move |io| IdleIo::new(io, timeout, timeouts.clone()));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpListenerStream::new(listener).map_ok(move |tcp| {
                // Small answers must not wait for a delayed ACK (Nagle).
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
                }
                IdleIo::new(tcp, timeout, timeouts.clone())
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

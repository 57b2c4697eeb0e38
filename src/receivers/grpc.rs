//! OTLP/gRPC receiver (port 4317): the three `Export` methods over tonic,
//! with the request kept as raw bytes ([`RawCodec`]).
//!
//! The error mapping to gRPC codes lives in [`status_of`], the one place for
//! this protocol. Backpressure is `RESOURCE_EXHAUSTED` *with* a
//! `google.rpc.RetryInfo` detail, which the OTLP spec makes retryable;
//! an oversized message is `RESOURCE_EXHAUSTED` *without* it (permanent).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{ReceiveError, ReceiverState, Transport};
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S: SignalService, B> tower::Service<http::Request<B>> for OtlpGrpc<S>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
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
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Deflate)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(this.max_request_bytes);
            let mut response = grpc
                .unary(
                    ExportMethod::<S> {
                        state: this.state,
                        _s: PhantomData,
                    },
                    req,
                )
                .await;
            // tonic answers a message over the size limit with OUT_OF_RANGE,
            // which OTLP clients retry forever; to them it must be a
            // permanent RESOURCE_EXHAUSTED (no RetryInfo).
            let headers = response.headers_mut();
            if headers
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == b"11")
            {
                headers.insert("grpc-status", http::HeaderValue::from_static("8"));
            }
            Ok(response)
        })
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
        Box::pin(async move {
            let signal = S::SIGNAL;
            match state
                .export(signal, Transport::Grpc, request.into_inner())
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
        ReceiveError::Ingest(IngestError::Malformed(_)) => {
            Status::invalid_argument(err.to_string())
        }
        ReceiveError::Ingest(
            e @ (IngestError::QueueFull { .. } | IngestError::StorageFull { .. }),
        ) => retry(
            Code::ResourceExhausted,
            e.retry_after().unwrap_or(Duration::from_secs(1)),
        ),
        ReceiveError::MemoryLimit => retry(Code::ResourceExhausted, Duration::from_secs(1)),
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
    let router = crate::grpc_codec::tune_server(tonic::transport::Server::builder())
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
            let incoming = tls.grpc_listener(listener).into_stream();
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

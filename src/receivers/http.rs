//! OTLP/HTTP receiver (port 4318): `POST /v1/{logs,metrics,traces}` with a
//! protobuf or JSON body, optionally gzip- or zstd-compressed.
//!
//! Order of checks, cheapest first, each with its own status: path (404),
//! method (405), content type (415), content encoding (415), compressed size
//! (413), decompressed size (413), then the body itself (400). The response
//! is the Export*ServiceResponse in the request's encoding; errors carry a
//! `google.rpc.Status` in the request's encoding, as the OTLP spec asks.
//! The mapping of refusals to statuses is [`status_of`], the one place.

use std::future::Future;
use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt;
use prost::Message;
use tokio::net::TcpListener;

use super::body::{BodyReader, ReadError, decompress_reserving};
use super::decompress::Encoding;
use super::idle::IdleListener;
use super::{ReceiveError, ReceiverState, RefusalReason, Transport, ingest_bytes};
use crate::ingest::IngestError;
use crate::proto::{json, response};
use crate::signal::Signal;

/// Most bytes of an oversized body read and discarded before answering 413
/// (so the client reads the 413, not a broken pipe: a client that sees a
/// connection error retries, one that sees 413 does not); beyond this the
/// connection is closed on the client.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The body formats OTLP/HTTP allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

#[derive(Clone)]
struct HttpState {
    receiver: ReceiverState,
    max_request_bytes: usize,
}

/// The router, for tests that want to drive it without a socket.
pub fn router(receiver: ReceiverState, max_request_bytes: usize) -> Router {
    let state = HttpState {
        receiver,
        max_request_bytes,
    };
    let mut r = Router::new();
    for signal in Signal::ALL {
        r = r.route(
            signal.http_path(),
            any(
                move |State(s): State<HttpState>,
                      method: Method,
                      headers: HeaderMap,
                      body: Body| async move {
                    handle(&s, signal, &method, &headers, body).await
                },
            ),
        );
    }
    r.fallback(|method: Method, uri: ::http::Uri| async move {
        let msg = format!(
            "no such path {uri} ({method}): OTLP/HTTP serves /v1/logs, /v1/metrics, /v1/traces"
        );
        error_response(StatusCode::NOT_FOUND, Format::Json, &msg, None)
    })
    // The limit is enforced while reading, by `BodyReader::read_to_end`.
    .layer(DefaultBodyLimit::disable())
    .with_state(state)
}

/// Serves OTLP/HTTP on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: TcpListener,
    receiver: ReceiverState,
    max_request_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let timeout = receiver.idle_timeout;
    let timeouts = receiver
        .metrics
        .memory
        .idle_timeouts_of(Transport::Http.as_str());
    let router = router(receiver.clone(), max_request_bytes);
    if let Some(tls) = receiver.tls.clone() {
        let listener = IdleListener::new(tls.http_listener(listener), timeout, timeouts);
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    }
    // Small answers must not wait for a delayed ACK (Nagle).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
        }
    });
    axum::serve(IdleListener::new(listener, timeout, timeouts), router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn handle(
    s: &HttpState,
    signal: Signal,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let refuse = |reason: RefusalReason| s.receiver.refused(signal, Transport::Http, reason);
    if method != Method::POST {
        refuse(RefusalReason::MethodNotAllowed);
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Format::Json,
            "only POST is allowed",
            None,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(format) = Format::from_headers(headers) else {
        refuse(RefusalReason::UnsupportedMediaType);
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Format::Json,
            "Content-Type must be application/x-protobuf or application/json",
            None,
        );
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let Some(encoding) = Encoding::from_header(encoding) else {
        refuse(RefusalReason::UnsupportedEncoding);
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format,
            "Content-Encoding must be gzip, deflate, zstd or identity",
            None,
        );
    };
    let limit = s.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut reader = BodyReader::new(body);
    if declared.is_some_and(|len| len > limit as u64) {
        refuse(RefusalReason::TooLarge);
        reader.drain(DRAIN_LIMIT).await;
        return too_large(format, limit);
    }
    // Room in memory before a byte of the body is read; a refused body stays
    // unread, so flow control holds the client back.
    let mut reservation = match s.receiver.reserve(declared.unwrap_or(0)).await {
        Ok(r) => r,
        Err(e) => {
            refuse(e.reason());
            return refusal(&e, format);
        }
    };
    let raw = match reader.read_to_end(declared, limit, &mut reservation).await {
        Ok(raw) => raw,
        Err(e) => {
            refuse(e.reason());
            if matches!(e, ReadError::TooLarge { .. }) {
                reader.drain(DRAIN_LIMIT).await;
            }
            return read_error(&e, format);
        }
    };
    let body = match decompress_reserving(encoding, raw, limit, &mut reservation).await {
        Ok(body) => body,
        Err(e) => {
            refuse(e.reason());
            return read_error(&e, format);
        }
    };
    let body = match format {
        Format::Protobuf => body,
        // The protobuf is built beside the JSON: room for both, then for
        // the protobuf alone.
        Format::Json => {
            if let Err(e) = reservation.grow_to(2 * body.len() as u64).await {
                refuse(e.reason());
                return refusal(&e, format);
            }
            match json::request_from_json(signal, &body) {
                Ok(pb) => {
                    drop(body);
                    reservation.shrink_to(ingest_bytes(pb.len() as u64));
                    Bytes::from(pb)
                }
                Err(e) => {
                    refuse(RefusalReason::Malformed);
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        format,
                        &format!("invalid OTLP/JSON: {e}"),
                        None,
                    );
                }
            }
        }
    };
    match s
        .receiver
        .export(signal, Transport::Http, body, reservation, None)
        .await
    {
        Ok(accepted) => {
            let body = match format {
                Format::Protobuf => response::encode(signal, accepted.rejected, &accepted.message),
                Format::Json => response::encode_json(signal, accepted.rejected, &accepted.message),
            };
            ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
        }
        Err(e) => refusal(&e, format),
    }
}

fn refusal(e: &ReceiveError, format: Format) -> Response {
    let (status, retry_after) = status_of(e);
    error_response(status, format, &e.to_string(), retry_after)
}

/// The answer to a body that could not be read into memory.
fn read_error(e: &ReadError, format: Format) -> Response {
    match e {
        ReadError::TooLarge { limit } => too_large(format, *limit),
        ReadError::Memory(e) => refusal(e, format),
        ReadError::Truncated { .. } | ReadError::Body(_) | ReadError::Corrupt(_) => {
            error_response(StatusCode::BAD_REQUEST, format, &e.to_string(), None)
        }
    }
}

/// The HTTP status (and `Retry-After`) of a refusal: the one mapping for
/// this protocol.
pub fn status_of(err: &ReceiveError) -> (StatusCode, Option<Duration>) {
    match err {
        ReceiveError::Ingest(
            IngestError::Malformed(_) | IngestError::Processor(_) | IngestError::HandOver(_),
        ) => (StatusCode::BAD_REQUEST, None),
        ReceiveError::Ingest(
            e @ (IngestError::QueueFull { .. } | IngestError::StorageFull { .. }),
        ) => (StatusCode::TOO_MANY_REQUESTS, e.retry_after()),
        ReceiveError::MemoryLimit | ReceiveError::MemoryLimiter { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, err.memory_retry_after())
        }
        ReceiveError::Ingest(e @ (IngestError::Store(_) | IngestError::ShuttingDown)) => {
            (StatusCode::SERVICE_UNAVAILABLE, e.retry_after())
        }
    }
}

fn too_large(format: Format, limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format,
        &format!("request body exceeds the limit of {limit} bytes"),
        None,
    )
}

/// An error answer with a `google.rpc.Status` body in `format`.
fn error_response(
    status: StatusCode,
    format: Format,
    message: &str,
    retry_after: Option<Duration>,
) -> Response {
    let code = grpc_code_for(status);
    let body = match format {
        Format::Protobuf => tonic_types::Status {
            code,
            message: message.to_owned(),
            details: Vec::new(),
        }
        .encode_to_vec(),
        Format::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": code, "message": message }))
                .unwrap_or_default()
        }
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if let Some(d) = retry_after {
        let secs = d.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn grpc_code_for(status: StatusCode) -> i32 {
    let code = match status {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => {
            tonic::Code::ResourceExhausted
        }
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::METHOD_NOT_ALLOWED => {
            tonic::Code::Unimplemented
        }
        _ => tonic::Code::Unknown,
    };
    code as i32
}

//! The OTLP/HTTP (and Fluent Bit HTTP) side and the control endpoints.

use super::*;

// --- HTTP ---

pub(super) fn http_router(shared: Arc<Shared>) -> Router {
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

pub(super) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub(super) async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response {
    let stats = lock(&shared.counts).stats.clone();
    json_response(StatusCode::OK, &stats)
}

pub(super) async fn get_fault_handler(State(shared): State<Arc<Shared>>) -> Response {
    let fault = lock(&shared.fault).clone();
    json_response(StatusCode::OK, &fault)
}

pub(super) async fn reset_handler(State(shared): State<Arc<Shared>>) -> StatusCode {
    *lock(&shared.counts) = Counts::default();
    StatusCode::NO_CONTENT
}

pub(super) async fn post_fault_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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
pub(super) fn parse_otlp_path(path: &str) -> Option<(Signal, String)> {
    Signal::ALL.into_iter().find_map(|signal| {
        let prefix = path.strip_suffix(signal.http_path())?;
        let key = if prefix.is_empty() { "/" } else { prefix };
        Some((signal, key.to_owned()))
    })
}

/// Decompresses a body by its `Content-Encoding`, capped at [`MAX_BODY_BYTES`],
/// with the receivers' capped decoder.
pub(super) fn decompress(encoding: Option<&str>, body: Bytes) -> Result<Bytes, String> {
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
pub(super) fn export_response(signal: Signal, json: bool) -> Vec<u8> {
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

pub(super) async fn otlp_http_handler(
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
pub(super) async fn fluent_bit_handler(
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
pub(super) fn refused(status: u16, retry_after: Option<u64>) -> Response {
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

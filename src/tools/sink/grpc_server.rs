//! The OTLP/gRPC side: raw-bytes export methods keyed by `:authority`.

use super::*;

/// The unary Export call of one signal, with what the HTTP layer knew.
#[derive(Debug, Clone)]
pub(super) struct GrpcExport {
    pub(super) shared: Arc<Shared>,
    pub(super) signal: Signal,
    pub(super) key: String,
    pub(super) headers: HeaderMap,
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
pub(super) fn authority(uri: &Uri, headers: &HeaderMap) -> String {
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

pub(super) async fn grpc_export(shared: Arc<Shared>, signal: Signal, request: Request) -> Response {
    let service = GrpcExport {
        shared,
        signal,
        key: authority(request.uri(), request.headers()),
        headers: request.headers().clone(),
    };
    let mut grpc = tonic::server::Grpc::new(RawCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        // Answers uncompressed, like seedgate's receiver: compressing an
        // empty response costs a fresh set of gzip tables each time.
        .max_decoding_message_size(MAX_BODY_BYTES);
    grpc.unary(service, request).await.map(Body::new)
}

pub(super) fn grpc_router(shared: Arc<Shared>) -> Router {
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

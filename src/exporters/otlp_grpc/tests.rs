use super::*;
use crate::config::{HeaderConfig, OutputType};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// What the server answers.
#[derive(Clone)]
enum Answer {
    Ok(ExportLogsServiceResponse),
    Fail(Code, Option<Duration>),
    /// Never answer.
    Stall,
}

/// A scripted OTLP logs backend: records requests (decoded) and metadata.
#[derive(Clone)]
struct Backend {
    seen: Seen,
    /// How many client certificates each TLS request presented.
    client_certs: Arc<Mutex<Vec<usize>>>,
    answer: Answer,
}

#[tonic::async_trait]
impl LogsService for Backend {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let certs = request.peer_certs().map_or(0, |c| c.len());
        self.client_certs.lock().unwrap().push(certs);
        let metadata = request.metadata().clone();
        self.seen
            .lock()
            .unwrap()
            .push((metadata, request.into_inner()));
        match &self.answer {
            Answer::Stall => std::future::pending().await,
            Answer::Ok(r) => Ok(tonic::Response::new(r.clone())),
            Answer::Fail(code, None) => Err(tonic::Status::new(*code, "scripted failure")),
            Answer::Fail(code, Some(delay)) => Err(tonic::Status::with_error_details(
                *code,
                "scripted failure",
                ErrorDetails::with_retry_info(Some(*delay)),
            )),
        }
    }
}

type Seen = Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportLogsServiceRequest)>>>;

async fn backend(answer: Answer) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let svc = LogsServiceServer::new(Backend {
        seen: seen.clone(),
        client_certs: Arc::default(),
        answer,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming),
    );
    (format!("http://{addr}"), seen)
}

fn request() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 7,
                        severity_text: "INFO".into(),
                        ..LogRecord::default()
                    };
                    3
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn output(endpoint: &str, compression: Compression) -> OutputConfig {
    let mut o = OutputConfig::of_kind(OutputType::OtlpGrpc);
    o.endpoint = Some(endpoint.to_owned());
    o.compression = compression;
    o
}

async fn send_once(answer: Answer, compression: Compression) -> (Outcome, Seen) {
    let (url, seen) = backend(answer).await;
    let e = crate::exporters::Exporter::build(&output(&url, compression), Signal::Logs, "test")
        .unwrap();
    assert_eq!(e.kind(), "otlp_grpc");
    (
        e.send(Bytes::from(request().encode_to_vec()), 3).await,
        seen,
    )
}

#[tokio::test]
async fn request_arrives_equal_for_every_compression() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (got, seen) = send_once(
            Answer::Ok(ExportLogsServiceResponse::default()),
            compression,
        )
        .await;
        assert_eq!(
            got,
            Outcome::Accepted {
                rejected: 0,
                message: String::new()
            },
            "{compression:?}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, request(), "{compression:?}");
        let encoding = seen[0]
            .0
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        let want = match compression {
            Compression::None => None,
            Compression::Gzip => Some("gzip".to_owned()),
            Compression::Zstd => Some("zstd".to_owned()),
        };
        assert_eq!(encoding, want);
    }
}

#[tokio::test]
async fn metadata_headers_arrive() {
    let (url, seen) = backend(Answer::Ok(ExportLogsServiceResponse::default())).await;
    let mut o = output(&url, Compression::Gzip);
    o.headers = vec![
        HeaderConfig::new("Authorization", "Bearer ", "t0ken"),
        HeaderConfig::new("x-scope-orgid", "", "tenant-a"),
    ];
    let e = GrpcExporter::build(&o, Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(got.kind(), "accepted", "{got:?}");
    let seen = seen.lock().unwrap();
    let md = &seen[0].0;
    assert_eq!(md.get("authorization").unwrap(), "Bearer t0ken");
    assert_eq!(md.get("x-scope-orgid").unwrap(), "tenant-a");
    assert!(
        md.get("grpc-timeout").is_some(),
        "the per-attempt timeout is sent"
    );
}

#[tokio::test]
async fn partial_success_is_accepted_with_rejected_count() {
    let answer = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 2,
            error_message: "two too old".into(),
        }),
    };
    let (got, _) = send_once(Answer::Ok(answer), Compression::Zstd).await;
    assert_eq!(
        got,
        Outcome::Accepted {
            rejected: 2,
            message: "two too old".into()
        }
    );
}

#[tokio::test]
async fn error_statuses_map_per_spec() {
    let delay = Duration::from_secs(3);
    let table = [
        (
            Answer::Fail(Code::Unavailable, None),
            ("retryable", "grpc_unavailable", None),
        ),
        (
            Answer::Fail(Code::InvalidArgument, None),
            ("permanent", "grpc_invalid_argument", None),
        ),
        (
            Answer::Fail(Code::ResourceExhausted, Some(delay)),
            ("retryable", "grpc_resource_exhausted", Some(delay)),
        ),
        (
            Answer::Fail(Code::ResourceExhausted, None),
            ("permanent", "grpc_resource_exhausted", None),
        ),
    ];
    for (answer, want) in table {
        let (got, seen) = send_once(answer, Compression::Gzip).await;
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "the request reached the server"
        );
        let summary = match &got {
            Outcome::Retryable { after, reason, .. } => ("retryable", reason.as_str(), *after),
            Outcome::Permanent { reason, .. } => ("permanent", reason.as_str(), None),
            Outcome::Accepted { .. } => ("accepted", "", None),
        };
        assert_eq!(summary, want, "{got:?}");
    }
}

#[tokio::test]
async fn a_stalled_backend_is_a_retryable_timeout() {
    let (url, seen) = backend(Answer::Stall).await;
    let mut o = output(&url, Compression::None);
    o.timeout = Duration::from_millis(200);
    let e = GrpcExporter::build(&o, Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the request reached the server"
    );
    match got {
        Outcome::Retryable { reason, detail, .. } => assert_eq!(reason, "timeout", "{detail}"),
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut o = output(&format!("http://{addr}"), Compression::None);
    o.headers = vec![HeaderConfig::new("authorization", "", "hunter2")];
    let e = GrpcExporter::build(&o, Signal::Logs, "test").unwrap();
    match e.send(Bytes::from(request().encode_to_vec())).await {
        Outcome::Retryable {
            after: None,
            reason,
            detail,
        } => {
            assert_eq!(reason, "connect", "{detail}");
            assert!(!detail.contains("hunter2"), "{detail}");
        }
        other => panic!("expected retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn build_refuses_bad_settings_without_network() {
    let mut o = output("http://127.0.0.1:1", Compression::None);
    o.headers = vec![HeaderConfig::new("trace-bin", "", "x")];
    assert_eq!(
        GrpcExporter::build(&o, Signal::Logs, "test")
            .unwrap_err()
            .kind(),
        "unsupported"
    );

    let mut o = output("https://127.0.0.1:1", Compression::None);
    o.tls.insecure = true;
    assert_eq!(
        GrpcExporter::build(&o, Signal::Logs, "test")
            .unwrap_err()
            .kind(),
        "build"
    );

    let mut o = output("https://127.0.0.1:1", Compression::None);
    o.tls.cert_file = Some("/nonexistent/client.pem".into());
    o.tls.key_file = Some("/nonexistent/client.key".into());
    assert_eq!(
        GrpcExporter::build(&o, Signal::Logs, "test")
            .unwrap_err()
            .kind(),
        "read_file"
    );
}

// === TLS ===

use crate::exporters::test_pki::{Pki, SERVER_NAME};

/// An mTLS OTLP logs server on 127.0.0.1:0 that requires a client
/// certificate signed by the CA; returns its port and the client
/// certificate counts it saw.
async fn tls_server(pki: &Pki) -> (u16, Arc<Mutex<Vec<usize>>>) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let client_certs: Arc<Mutex<Vec<usize>>> = Arc::default();
    let svc = LogsServiceServer::new(Backend {
        seen: Arc::default(),
        client_certs: client_certs.clone(),
        answer: Answer::Ok(ExportLogsServiceResponse::default()),
    })
    .accept_compressed(CompressionEncoding::Gzip);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server_cert_pem,
            &pki.server_key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(svc)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    (port, client_certs)
}

fn tls_output(pki: &Pki, port: u16) -> OutputConfig {
    let mut o = output(&format!("https://127.0.0.1:{port}"), Compression::Gzip);
    o.tls.ca_file = Some(pki.path("ca.pem"));
    o.tls.cert_file = Some(pki.path("client.pem"));
    o.tls.key_file = Some(pki.path("client.key"));
    o.tls.server_name = Some(SERVER_NAME.into());
    o
}

async fn send_to(o: &OutputConfig) -> Outcome {
    let e = GrpcExporter::build(o, Signal::Logs, "test").unwrap();
    e.send(Bytes::from(request().encode_to_vec())).await
}

#[tokio::test]
async fn mtls_with_ca_client_identity_and_server_name() {
    let pki = Pki::new();
    let (port, client_certs) = tls_server(&pki).await;
    let got = send_to(&tls_output(&pki, port)).await;
    assert_eq!(
        got,
        Outcome::Accepted {
            rejected: 0,
            message: String::new()
        }
    );
    assert_eq!(
        *client_certs.lock().unwrap(),
        vec![1],
        "the server saw our client certificate"
    );
}

#[tokio::test]
async fn tls_failures_are_retryable_and_reach_no_handler() {
    let pki = Pki::new();
    let (port, client_certs) = tls_server(&pki).await;

    // The certificate is for backend.test, not 127.0.0.1.
    let mut wrong_name = tls_output(&pki, port);
    wrong_name.tls.server_name = None;
    // Without our CA, the web PKI roots do not trust the server.
    let mut unknown_ca = tls_output(&pki, port);
    unknown_ca.tls.ca_file = None;
    // The server requires a client certificate.
    let mut no_identity = tls_output(&pki, port);
    no_identity.tls.cert_file = None;
    no_identity.tls.key_file = None;

    for (name, o) in [
        ("wrong_name", wrong_name),
        ("unknown_ca", unknown_ca),
        ("no_identity", no_identity),
    ] {
        match send_to(&o).await {
            Outcome::Retryable { reason, detail, .. } => {
                // A refused client certificate arrives as an alert after the
                // TLS 1.3 handshake, as a plain I/O error on the connection.
                let want: &[&str] = if name == "no_identity" {
                    &["tls", "transport"]
                } else {
                    &["tls"]
                };
                assert!(
                    want.contains(&reason.as_str()),
                    "{name}: {reason}: {detail}"
                );
            }
            other => panic!("{name}: expected retryable, got {other:?}"),
        }
    }
    assert!(
        client_certs.lock().unwrap().is_empty(),
        "no request got through"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_server() {
    let pki = Pki::new();
    let (port, client_certs) = tls_server(&pki).await;
    let mut o = tls_output(&pki, port);
    o.tls.ca_file = None;
    o.tls.server_name = None;
    o.tls.insecure_skip_verify = true;
    let got = send_to(&o).await;
    assert_eq!(got.kind(), "accepted", "{got:?}");
    assert_eq!(*client_certs.lock().unwrap(), vec![1]);
}

use super::*;
use crate::config::{HeaderConfig, OutputType};
use axum::extract::State;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// The scripted answer of a test backend.
struct Answer {
    status: http::StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// A scripted OTLP/HTTP backend on 127.0.0.1:0: it records every request
/// and answers with the configured status, headers and body.
#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
}

async fn handler(
    State(b): State<Backend>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    b.seen.lock().unwrap().push(Seen {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body: body.to_vec(),
    });
    let mut resp = (b.answer.status, b.answer.body.clone()).into_response();
    for (k, v) in &b.answer.headers {
        resp.headers_mut().insert(*k, v.parse().unwrap());
    }
    resp
}

async fn backend(
    status: http::StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Backend {
        seen: seen.clone(),
        answer: Arc::new(Answer {
            status,
            headers,
            body,
        }),
    };
    let app = axum::Router::new().fallback(handler).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn request() -> ExportLogsServiceRequest {
    let record = |body: &str| LogRecord {
        time_unix_nano: 1,
        body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(body.into()),
            ),
        }),
        ..LogRecord::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record("one"), record("two")],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn output(endpoint: &str, compression: Compression) -> OutputConfig {
    let mut o = OutputConfig::of_kind(OutputType::OtlpHttp);
    o.endpoint = Some(endpoint.to_owned());
    o.compression = compression;
    o.timeout = Duration::from_secs(10);
    o
}

fn install_provider() {
    // An error only means another test installed it first.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
}

fn decompress(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match encoding {
        None => body.to_vec(),
        Some("gzip") => crate::receivers::decompress::decompress(
            crate::receivers::decompress::Encoding::Gzip,
            body,
            64 << 20,
        )
        .unwrap(),
        Some("zstd") => zstd::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
}

/// Exporters built from one [`SharedClients`] (the shoot clients: the
/// same settings, one endpoint each) reuse one connection; exporters
/// built alone open one each.
#[tokio::test]
async fn shared_clients_reuse_one_connection_across_endpoints() {
    use axum::extract::ConnectInfo;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    install_provider();
    let peers: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let seen = Arc::clone(&peers);
    let app = axum::Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
        seen.lock().unwrap().insert(peer.port());
        async { http::StatusCode::OK }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let body = Bytes::from(request().encode_to_vec());
    let accepted = |o: &Outcome| matches!(o, Outcome::Accepted { rejected: 0, .. });
    let shared = SharedClients::default();
    for i in 0..20 {
        let out = output(&format!("http://{addr}/shoot--p--{i}"), Compression::None);
        let e = HttpExporter::build_shared(&out, Signal::Logs, "shoot", &shared).unwrap();
        assert!(accepted(&e.send(body.clone()).await));
    }
    assert_eq!(
        peers.lock().unwrap().len(),
        1,
        "20 endpoints, one connection"
    );
    for i in 0..5 {
        let out = output(&format!("http://{addr}/alone-{i}"), Compression::None);
        let e = HttpExporter::build(&out, Signal::Logs, "alone").unwrap();
        assert!(accepted(&e.send(body.clone()).await));
    }
    assert_eq!(
        peers.lock().unwrap().len(),
        6,
        "a connection per own client"
    );
}

#[tokio::test]
async fn body_arrives_decodable_for_every_compression() {
    install_provider();
    let (url, seen) = backend(http::StatusCode::OK, vec![], vec![]).await;
    let want = request();
    for (i, compression) in [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let e = super::super::Exporter::build(&output(&url, compression), Signal::Logs, "test")
            .unwrap();
        let got = e.send(Bytes::from(want.encode_to_vec()), 2).await;
        assert_eq!(
            got,
            Outcome::Accepted {
                rejected: 0,
                message: String::new()
            },
            "{compression:?}"
        );
        let s = seen.lock().unwrap()[i].clone();
        assert_eq!(s.path, "/v1/logs");
        assert_eq!(s.headers["content-type"], "application/x-protobuf");
        let encoding = s
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap());
        let expected_encoding = match compression {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        };
        assert_eq!(encoding, expected_encoding);
        let plain = decompress(encoding, &s.body);
        assert_eq!(
            ExportLogsServiceRequest::decode(&plain[..]).unwrap(),
            want,
            "{compression:?}"
        );
    }
}

#[tokio::test]
async fn headers_with_prefix_and_custom_path_arrive() {
    install_provider();
    let (url, seen) = backend(http::StatusCode::OK, vec![], vec![]).await;
    let mut o = output(&format!("{url}/base/"), Compression::None);
    o.path = Some("/custom/logs".into());
    o.headers = vec![
        HeaderConfig::new("Authorization", "Bearer ", "t0ken"),
        HeaderConfig::new("x-scope-orgid", "", "tenant-a"),
    ];
    let e = HttpExporter::build(&o, Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(got.kind(), "accepted", "{got:?}");
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(s.path, "/base/custom/logs");
    assert_eq!(s.headers["authorization"], "Bearer t0ken");
    assert_eq!(s.headers["x-scope-orgid"], "tenant-a");
}

#[tokio::test]
async fn unavailable_with_retry_after_is_retryable_with_that_delay() {
    install_provider();
    let (url, _) = backend(
        http::StatusCode::SERVICE_UNAVAILABLE,
        vec![("retry-after", "17".into())],
        b"overloaded".to_vec(),
    )
    .await;
    let e = HttpExporter::build(&output(&url, Compression::Gzip), Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(
        got,
        Outcome::Retryable {
            after: Some(Duration::from_secs(17)),
            reason: Reason::of_http(503),
            detail: "HTTP 503: overloaded".into(),
        }
    );
}

#[tokio::test]
async fn bad_request_is_permanent() {
    install_provider();
    let (url, _) = backend(http::StatusCode::BAD_REQUEST, vec![], b"malformed".to_vec()).await;
    let e = HttpExporter::build(&output(&url, Compression::None), Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(
        got,
        Outcome::Permanent {
            reason: Reason::of_http(400),
            detail: "HTTP 400: malformed".into()
        }
    );
}

#[tokio::test]
async fn partial_success_is_accepted_with_rejected_count() {
    install_provider();
    let answer = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 1,
            error_message: "record two is too old".into(),
        }),
    };
    let (url, _) = backend(
        http::StatusCode::OK,
        vec![("content-type", "application/x-protobuf".into())],
        answer.encode_to_vec(),
    )
    .await;
    let e = HttpExporter::build(&output(&url, Compression::Zstd), Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(
        got,
        Outcome::Accepted {
            rejected: 1,
            message: "record two is too old".into()
        }
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    install_provider();
    // Bind then drop: the port is free and nobody listens on it.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut o = output(&format!("http://{addr}"), Compression::None);
    o.headers = vec![HeaderConfig::new("authorization", "", "hunter2")];
    let e = HttpExporter::build(&o, Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    match got {
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

#[test]
fn build_refuses_what_it_cannot_honour() {
    install_provider();
    let o = output("not a url", Compression::None);
    assert_eq!(
        HttpExporter::build(&o, Signal::Logs, "test")
            .unwrap_err()
            .kind(),
        "build"
    );

    let mut o = output("http://backend.example:4318", Compression::None);
    o.endpoint = None;
    assert_eq!(
        HttpExporter::build(&o, Signal::Logs, "test")
            .unwrap_err()
            .kind(),
        "build"
    );
}

#[tokio::test]
async fn a_stalled_backend_is_a_retryable_timeout() {
    install_provider();
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(std::future::pending::<()>);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut o = output(&format!("http://{addr}"), Compression::None);
    o.timeout = Duration::from_millis(200);
    let e = HttpExporter::build(&o, Signal::Logs, "test").unwrap();
    let got = e.send(Bytes::from(request().encode_to_vec())).await;
    assert_eq!(got.kind(), "retryable", "{got:?}");
    let Outcome::Retryable { reason, .. } = got else {
        unreachable!()
    };
    assert_eq!(reason, "timeout");
}

// === TLS ===

use crate::exporters::test_pki::{Pki, SERVER_NAME};

/// A TLS listener for axum that requires a client certificate signed by
/// the test CA and records how many each connection presented.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    client_certs: Arc<Mutex<Vec<usize>>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A failed handshake is what the negative tests provoke: drop it.
            let Ok(tls) = self.acceptor.accept(tcp).await else {
                continue;
            };
            let certs = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
            self.client_certs.lock().unwrap().push(certs);
            return (tls, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn tls_backend(pki: &Pki) -> (u16, Arc<Mutex<Vec<usize>>>, Arc<Mutex<Vec<Seen>>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let client_certs: Arc<Mutex<Vec<usize>>> = Arc::default();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        client_certs: client_certs.clone(),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Backend {
        seen: seen.clone(),
        answer: Arc::new(Answer {
            status: http::StatusCode::OK,
            headers: vec![],
            body: vec![],
        }),
    };
    let app = axum::Router::new().fallback(handler).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, client_certs, seen)
}

fn tls_output(pki: &Pki, host: &str, port: u16) -> OutputConfig {
    let mut o = output(&format!("https://{host}:{port}"), Compression::Gzip);
    o.tls.ca_file = Some(pki.path("ca.pem"));
    o.tls.cert_file = Some(pki.path("client.pem"));
    o.tls.key_file = Some(pki.path("client.key"));
    o
}

/// An exporter whose client resolves `backend.test` to 127.0.0.1 (the
/// certificate's name must be the URL host for reqwest).
fn tls_exporter(o: &OutputConfig, port: u16) -> HttpExporter {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    HttpExporter::build_with(o, Signal::Logs, "test", |b| b.resolve(SERVER_NAME, addr)).unwrap()
}

#[tokio::test]
async fn mtls_with_ca_and_client_identity() {
    install_provider();
    let pki = Pki::new();
    let (port, client_certs, seen) = tls_backend(&pki).await;
    let o = tls_output(&pki, SERVER_NAME, port);
    let got = tls_exporter(&o, port)
        .send(Bytes::from(request().encode_to_vec()))
        .await;
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
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn tls_failures_are_retryable_and_skip_verify_gets_through() {
    install_provider();
    let pki = Pki::new();
    let (port, client_certs, seen) = tls_backend(&pki).await;

    // The certificate is for backend.test, not 127.0.0.1.
    let wrong_name = tls_output(&pki, "127.0.0.1", port);
    // Without our CA, the platform roots do not trust the server.
    let mut unknown_ca = tls_output(&pki, SERVER_NAME, port);
    unknown_ca.tls.ca_file = None;
    for (name, o) in [("wrong_name", wrong_name), ("unknown_ca", unknown_ca)] {
        let got = tls_exporter(&o, port)
            .send(Bytes::from(request().encode_to_vec()))
            .await;
        match got {
            Outcome::Retryable { reason, detail, .. } => {
                assert_eq!(reason, "tls", "{name}: {detail}")
            }
            other => panic!("{name}: expected retryable, got {other:?}"),
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "no request got through");

    let mut skip = tls_output(&pki, "127.0.0.1", port);
    skip.tls.ca_file = None;
    skip.tls.insecure_skip_verify = true;
    let got = tls_exporter(&skip, port)
        .send(Bytes::from(request().encode_to_vec()))
        .await;
    assert_eq!(got.kind(), "accepted", "{got:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(client_certs.lock().unwrap().last(), Some(&1));
}

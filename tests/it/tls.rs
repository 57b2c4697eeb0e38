//! TLS end to end through a real seedgate process: mTLS towards backends
//! (gRPC and HTTP exporters), TLS failures that are retried until fixed on
//! disk or at the backend without a restart, client certificate rotation,
//! expiry metrics, and TLS with client certificates on the receivers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::config::{Pipeline, TestConfig, ms, output, secs};
use crate::support::pki::{Ca, Leaf, SinkSpec, TlsSink, now_secs, write_secret_file};
use crate::support::{self, Seedgate, eventually};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use seedgate::config::{OutputType, ReceiverTlsConfig, TlsConfig, TlsVersion};
use seedgate::signal::Signal;
use seedgate::tools::acked::read_acked_file;

/// The name in the backends' certificates (not the address dialled).
const BACKEND: &str = "backend.test";

/// A logs pipeline named `name` of `kind` to `endpoint`, a 2 s timeout,
/// with `tls`.
fn pipeline(name: &str, kind: OutputType, endpoint: &str, tls: TlsConfig) -> Pipeline {
    Pipeline::new(name, output(kind, endpoint))
        .signals(&[Signal::Logs])
        .timeout(secs(2))
        .tls(tls)
}

/// Fast batches and retries, so the tests wait on TLS, not backoff.
fn fast(dir: &Path) -> TestConfig {
    TestConfig::new(&dir.join("data"))
        .batch_timeout(ms(10))
        .retry(ms(100), secs(1))
}

async fn send_logs(sg: &Seedgate, count: u64, seq_start: u64, acked: &Path) -> u64 {
    let summary = support::load(
        sg.grpc_endpoint(),
        &[
            "--count",
            &count.to_string(),
            "--seq-start",
            &seq_start.to_string(),
            "--records-per-request",
            "50",
        ],
        Some(acked),
    )
    .await;
    assert_eq!(summary.records_acked, count, "{summary:?}");
    summary.records_acked
}

async fn metric_at_least(sg: &Seedgate, name: &str, labels: &[&str], min: f64) {
    let what = format!("{name}{labels:?} >= {min}");
    eventually(&what, async || {
        (sg.metric(name, labels).await.unwrap_or(0.0) >= min).then_some(())
    })
    .await;
}

/// Closes the backend's connections (seedgate must reconnect), sends 200
/// more records from `seq_start` and waits until every acked one arrived.
async fn reconnect_and_deliver(backend: &TlsSink, sg: &Seedgate, seq_start: u64, acked: &Path) {
    backend.sink.go_down().await;
    backend.sink.come_up().await.unwrap();
    send_logs(sg, 200, seq_start, acked).await;
    support::all_delivered(&backend.sink, &read_acked_file(acked).unwrap()).await;
}

/// The crypto provider, a temporary directory, and its `secrets` folder.
fn setup() -> (tempfile::TempDir, PathBuf) {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    (dir, secrets)
}

// === tests ===

/// loadgen → seedgate → a sink requiring client certificates, over the gRPC
/// and the HTTP exporter: everything acked arrives. The client certificate
/// and CA expiry are metrics; the client certificate, rotated on disk by a
/// symlink swap, is reloaded and presented on the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_end_to_end_with_rotation_and_expiry_metrics() {
    let (dir, secrets) = setup();
    let ca = Ca::new("backend CA");
    let server = ca.leaf(&[BACKEND], 30);
    let client_a = ca.leaf(&["seedgate-a"], 10);
    let client_b = ca.leaf(&["seedgate-b"], 20);
    let backend = TlsSink::start(SinkSpec {
        client_ca: Some(&ca),
        ..SinkSpec::new(&server)
    })
    .await;
    let ca_file = write_secret_file(&secrets, "ca.crt", &ca.pem);
    let cert_file = write_secret_file(&secrets, "tls.crt", &client_a.cert);
    let key_file = write_secret_file(&secrets, "tls.key", &client_a.key);
    let tls = TlsConfig {
        ca_file: Some(ca_file),
        cert_file: Some(cert_file),
        key_file: Some(key_file),
        server_name: Some(BACKEND.to_owned()),
        min_version: Some(TlsVersion::Tls12),
        max_version: Some(TlsVersion::Tls13),
        ..TlsConfig::default()
    };
    let yaml = fast(dir.path())
        .pipeline(pipeline(
            "mtls-grpc",
            OutputType::OtlpGrpc,
            &backend.grpc_endpoint(),
            tls.clone(),
        ))
        .pipeline(pipeline(
            "mtls-http",
            OutputType::OtlpHttp,
            &backend.http_endpoint(),
            tls,
        ))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_path = dir.path().join("acked.txt");
    send_logs(&sg, 500, 0, &acked_path).await;
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend.sink, &acked).await;
    for dest in ["mtls-grpc", "mtls-http"] {
        let d = format!("destination=\"{dest}\"");
        metric_at_least(&sg, "seedgate_exporter_sent_records_total", &[&d], 500.0).await;
    }
    assert!(backend.saw_client_cert(&client_a), "client A presented");
    // At least once: 500 per pipeline, duplicates allowed after a retry.
    assert!(backend.sink.stats().records() >= 1000);

    // The expiry gauges match the generated notAfter dates.
    let metrics = sg.metrics().await;
    for (dest, cert, not_after) in [
        ("mtls-grpc", "client", client_a.not_after),
        ("mtls-http", "client", client_a.not_after),
        ("mtls-grpc", "ca", i64::MAX),
    ] {
        let labels = [
            &format!("destination=\"{dest}\"") as &str,
            &format!("cert=\"{cert}\""),
        ];
        let got =
            support::metric_value(&metrics, "seedgate_tls_certificate_expiry_seconds", &labels)
                .unwrap_or_else(|| panic!("{dest} {cert} expiry:\n{metrics}"));
        if not_after == i64::MAX {
            assert!(got > 365.0 * 86_400.0, "the CA is long-lived: {got}");
        } else {
            let want = (not_after - now_secs()) as f64;
            assert!((got - want).abs() <= 5.0, "{dest} {cert}: {got} vs {want}");
        }
    }
    assert_eq!(
        support::metric_value(
            &metrics,
            "seedgate_tls_reloads_total",
            &["destination=\"mtls-grpc\""]
        ),
        Some(0.0)
    );

    // Rotate the client certificate (Kubernetes-style swap of both files).
    write_secret_file(&secrets, "tls.crt", &client_b.cert);
    write_secret_file(&secrets, "tls.key", &client_b.key);
    for dest in ["mtls-grpc", "mtls-http"] {
        let d = format!("destination=\"{dest}\"");
        metric_at_least(&sg, "seedgate_tls_reloads_total", &[&d], 1.0).await;
    }
    let want = (client_b.not_after - now_secs()) as f64;
    eventually("the expiry gauge follows the new certificate", async || {
        let got = sg
            .metric(
                "seedgate_tls_certificate_expiry_seconds",
                &["destination=\"mtls-grpc\"", "cert=\"client\""],
            )
            .await?;
        ((got - want).abs() <= 5.0).then_some(())
    })
    .await;
    // Open connections keep their certificate; new ones present the new one.
    reconnect_and_deliver(&backend, &sg, 10_000, &acked_path).await;
    assert!(
        backend.saw_client_cert(&client_b),
        "the rotated client certificate was presented"
    );
    assert_eq!(
        sg.metric(
            "seedgate_tls_reload_errors_total",
            &["destination=\"mtls-grpc\""]
        )
        .await,
        Some(0.0)
    );

    // A broken file keeps the last good certificate and counts an error.
    write_secret_file(&secrets, "tls.crt", "not a certificate");
    metric_at_least(
        &sg,
        "seedgate_tls_reload_errors_total",
        &["destination=\"mtls-grpc\""],
        1.0,
    )
    .await;
    reconnect_and_deliver(&backend, &sg, 20_000, &acked_path).await;
    let log = sg.log();
    assert!(
        log.contains("cannot be used: the last good ones stay in use")
            && log.contains("tls.cert_file"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "no PEM in the log");
}

/// The outputs of [`tls_failures_are_retried_until_fixed_without_restart`]
/// whose handshakes fail until the fix.
const FAILING: [&str; 5] = [
    "wrong-ca",
    "expired",
    "wrong-name",
    "tls13-only",
    "tls13-only-http",
];

/// Four kinds of outputs that cannot complete a handshake: an untrusted server
/// (wrong CA), an expired server certificate, a certificate for another
/// name, and no common TLS version. Each attempt fails as a retryable `tls`
/// error with a clear log line; the data waits in the queue. Each is then
/// fixed without restarting seedgate (the right CA written to disk; the
/// backends renewing or replacing their certificate; the backend restarted
/// with TLS 1.3) and everything acked arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_retried_until_fixed_without_restart() {
    let (dir, secrets) = setup();
    let ca = Ca::new("backend CA");
    let other_ca = Ca::new("someone else's CA");
    let good = ca.leaf(&[BACKEND], 30);
    let expired = ca.leaf(&[BACKEND], -1);
    let other_name = ca.leaf(&["other.test"], 30);

    let wrong_ca = TlsSink::start(SinkSpec::new(&good)).await;
    let expired_sink = TlsSink::start(SinkSpec::new(&expired)).await;
    let wrong_name = TlsSink::start(SinkSpec::new(&other_name)).await;
    // Not a failure: an output that checks nothing gets through.
    let skip_sink = TlsSink::start(SinkSpec::new(&expired)).await;
    let tls12 = TlsSink::start(SinkSpec {
        versions: &[&rustls::version::TLS12],
        ..SinkSpec::new(&good)
    })
    .await;

    let wrong_ca_file = write_secret_file(&secrets, "ca.crt", &other_ca.pem);
    let good_ca_file = dir.path().join("good-ca.pem");
    std::fs::write(&good_ca_file, &ca.pem).unwrap();
    let with_ca = |file: &Path, min_version: Option<TlsVersion>| TlsConfig {
        ca_file: Some(file.to_owned()),
        server_name: Some(BACKEND.to_owned()),
        min_version,
        ..TlsConfig::default()
    };
    let (grpc, http) = (OutputType::OtlpGrpc, OutputType::OtlpHttp);
    let tls13 = Some(TlsVersion::Tls13);
    let yaml = fast(dir.path())
        .pipeline(pipeline(
            "wrong-ca",
            grpc,
            &wrong_ca.grpc_endpoint(),
            with_ca(&wrong_ca_file, None),
        ))
        .pipeline(pipeline(
            "expired",
            http,
            &expired_sink.http_endpoint(),
            with_ca(&good_ca_file, None),
        ))
        .pipeline(pipeline(
            "wrong-name",
            grpc,
            &wrong_name.grpc_endpoint(),
            with_ca(&good_ca_file, None),
        ))
        .pipeline(pipeline(
            "tls13-only",
            grpc,
            &tls12.grpc_endpoint(),
            with_ca(&good_ca_file, tls13.clone()),
        ))
        .pipeline(pipeline(
            "tls13-only-http",
            http,
            &tls12.http_endpoint(),
            with_ca(&good_ca_file, tls13),
        ))
        .pipeline(pipeline(
            "skip-verify",
            grpc,
            &skip_sink.grpc_endpoint(),
            TlsConfig {
                insecure_skip_verify: true,
                ..TlsConfig::default()
            },
        ))
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_path = dir.path().join("acked.txt");
    let sent = send_logs(&sg, 300, 0, &acked_path).await;

    for dest in FAILING {
        let d = format!("destination=\"{dest}\"");
        metric_at_least(
            &sg,
            "seedgate_exporter_failed_requests_total",
            &[&d, "reason=\"tls\""],
            2.0,
        )
        .await;
        assert_eq!(
            sg.metric("seedgate_batcher_queue_records", &[&d]).await,
            Some(sent as f64),
            "{dest}: the data waits in the queue"
        );
        assert_eq!(
            sg.metric("seedgate_exporter_dropped_records_total", &[&d])
                .await,
            Some(0.0),
            "{dest}: nothing dropped"
        );
    }
    for sink in [&wrong_ca, &expired_sink, &wrong_name, &tls12] {
        assert_eq!(sink.sink.stats().records(), 0);
    }
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&skip_sink.sink, &acked).await;
    assert_eq!(
        sg.metric(
            "seedgate_tls_insecure_skip_verify",
            &["destination=\"skip-verify\""]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        sg.metric(
            "seedgate_tls_insecure_skip_verify",
            &["destination=\"wrong-ca\""]
        )
        .await,
        Some(0.0)
    );
    let log = sg.log();
    assert!(
        log.contains("tls.insecure_skip_verify is set"),
        "the skip is logged"
    );
    for (dest, says) in [
        ("wrong-ca", "unknownissuer"),
        ("expired", "expired"),
        ("wrong-name", "not valid for name"),
        ("tls13-only", "protocolversion"),
        ("tls13-only-http", "protocolversion"),
    ] {
        assert!(
            log.lines()
                .map(str::to_lowercase)
                .any(|l| l.contains("export failed; retrying")
                    && l.contains(&format!("destination={dest} "))
                    && l.contains("reason=\"tls\"")
                    && l.contains(says)),
            "{dest}: a retry line with reason tls and {says:?}:\n{log}"
        );
    }

    // Fix each one, none by restarting seedgate.
    write_secret_file(&secrets, "ca.crt", &ca.pem);
    expired_sink.serve_cert(&good);
    wrong_name.serve_cert(&good);
    let (grpc, http) = (tls12.sink.grpc_addr(), tls12.sink.http_addr());
    tls12.sink.shutdown().await;
    let tls13 = TlsSink::start(SinkSpec {
        versions: &[&rustls::version::TLS13],
        grpc,
        http,
        ..SinkSpec::new(&good)
    })
    .await;
    metric_at_least(
        &sg,
        "seedgate_tls_reloads_total",
        &["destination=\"wrong-ca\""],
        1.0,
    )
    .await;
    let acked = read_acked_file(&acked_path).unwrap();
    for sink in [&wrong_ca, &expired_sink, &wrong_name, &tls13] {
        support::all_delivered(&sink.sink, &acked).await;
    }
    for dest in FAILING {
        let d = format!("destination=\"{dest}\"");
        eventually(&format!("{dest}: the queue drained"), async || {
            (sg.metric("seedgate_batcher_queue_records", &[&d]).await == Some(0.0)).then_some(())
        })
        .await;
    }
}

/// TLS on both receivers with client certificates required: an OTLP/gRPC
/// client and an OTLP/HTTP client with a certificate of the client CA are
/// acked; without one they are refused, counted, and the listeners keep
/// serving the good clients. The server certificate's expiry is a metric
/// and a renewed certificate on disk is served to new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_serve_tls_and_require_client_certificates() {
    let (dir, secrets) = setup();
    let server_ca = Ca::new("seedgate CA");
    let client_ca = Ca::new("client CA");
    let server = server_ca.leaf(&["seedgate.test", "127.0.0.1"], 40);
    let client = client_ca.leaf(&["otel-agent"], 10);
    let stranger = Ca::new("stranger CA").leaf(&["stranger"], 10);
    let cert_file = write_secret_file(&secrets, "tls.crt", &server.cert);
    let key_file = write_secret_file(&secrets, "tls.key", &server.key);
    let client_ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca_file, &client_ca.pem).unwrap();
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(Pipeline::noop("drop"))
        .with(|c| {
            c.receivers.tls = Some(ReceiverTlsConfig {
                cert_file,
                key_file,
                client_ca_file: Some(client_ca_file),
                min_version: Some(TlsVersion::Tls12),
            });
        })
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let grpc = sg.addrs.grpc.unwrap();
    let http = sg.addrs.http.unwrap();

    let good = Some(&client);
    let no_cert = None;
    let bad = Some(&stranger);
    assert_eq!(grpc_export_tls(grpc, &server_ca, good).await, Ok(()));
    assert_eq!(http_export(http, &server_ca, good).await, Ok(200));
    for who in [no_cert, bad] {
        let err = grpc_export_tls(grpc, &server_ca, who).await.unwrap_err();
        assert!(!err.is_empty());
        http_export(http, &server_ca, who).await.unwrap_err();
    }
    // The listeners still serve good clients.
    assert_eq!(grpc_export_tls(grpc, &server_ca, good).await, Ok(()));
    assert_eq!(http_export(http, &server_ca, good).await, Ok(200));
    for receiver in ["grpc", "http"] {
        let r = format!("receiver=\"{receiver}\"");
        metric_at_least(
            &sg,
            "seedgate_receiver_tls_handshake_errors_total",
            &[&r],
            2.0,
        )
        .await;
    }
    metric_at_least(
        &sg,
        "seedgate_receiver_records_total",
        &["transport=\"grpc\""],
        20.0,
    )
    .await;
    metric_at_least(
        &sg,
        "seedgate_receiver_records_total",
        &["transport=\"http\""],
        20.0,
    )
    .await;
    let got = sg
        .metric(
            "seedgate_tls_certificate_expiry_seconds",
            &["destination=\"receiver\"", "cert=\"server\""],
        )
        .await
        .unwrap();
    let want = (server.not_after - now_secs()) as f64;
    assert!((got - want).abs() <= 5.0, "{got} vs {want}");
    assert!(
        sg.metric(
            "seedgate_tls_certificate_expiry_seconds",
            &["destination=\"receiver\"", "cert=\"client_ca\""],
        )
        .await
        .is_some()
    );

    // Renew the server certificate from another CA: new connections get it.
    let new_ca = Ca::new("seedgate CA 2");
    let renewed = new_ca.leaf(&["seedgate.test", "127.0.0.1"], 50);
    write_secret_file(&secrets, "tls.crt", &renewed.cert);
    write_secret_file(&secrets, "tls.key", &renewed.key);
    metric_at_least(
        &sg,
        "seedgate_tls_reloads_total",
        &["destination=\"receiver\""],
        1.0,
    )
    .await;
    assert_eq!(grpc_export_tls(grpc, &new_ca, good).await, Ok(()));
    assert_eq!(http_export(http, &new_ca, good).await, Ok(200));
    grpc_export_tls(grpc, &server_ca, good).await.unwrap_err();
}

/// One OTLP/gRPC logs export over TLS trusting `ca`, with `client` as the
/// client certificate.
async fn grpc_export_tls(
    addr: std::net::SocketAddr,
    ca: &Ca,
    client: Option<&Leaf>,
) -> Result<(), String> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    use seedgate::tools::records::ExportRequest;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("seedgate.test");
    if let Some(leaf) = client {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let request = ExportLogsServiceRequest::decode(support::log_request(0).as_slice()).unwrap();
    support::grpc_export(channel, ExportRequest::Logs(request), None)
        .await
        .map_err(|s| format!("{s:?}"))
}

/// One OTLP/HTTP logs POST over TLS trusting `ca`, with `client` as the
/// client certificate; the status code.
async fn http_export(
    addr: std::net::SocketAddr,
    ca: &Ca,
    client: Option<&Leaf>,
) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let c = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve("seedgate.test", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://seedgate.test:{}/v1/logs", addr.port());
    c.post(url)
        .header("content-type", "application/x-protobuf")
        .body(support::log_request(0))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

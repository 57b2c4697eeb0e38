//! TLS on the OTLP receivers (`receivers.tls`).
//!
//! Both listeners share one [`ReceiverTls`]: the server certificate and key
//! and, when `client_ca_file` is set, the CA that client certificates must
//! chain to (then a client without one is refused). The files are watched
//! like an output's (`Watched`): a renewed server certificate is served to
//! the next connection, and `seedgate_tls_certificate_expiry_seconds` carries
//! `destination="receiver"` with `cert="server"` or `cert="client_ca"`.
//!
//! [`TlsListener`] turns a bound listener into the established TLS
//! connections tonic and axum serve. Handshakes run in their own tasks, each
//! bounded by [`HANDSHAKE_TIMEOUT`], so a slow or hostile client holds up
//! nobody else; a failed handshake is logged at `debug`, counted in
//! `seedgate_receiver_tls_handshake_errors_total{receiver}` and only closes
//! that connection, never the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::ReceiverTlsConfig;
use crate::exporters::ExportError;
use crate::exporters::tls::watch::{Loaded, PemFile, Watched};
use crate::exporters::tls::{
    certified_key, protocol_versions, provider, root_store, signature_checks, tls_error,
};
use crate::metrics::tls::ReceiverLabel;

/// The longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `destination` label of the receivers' certificates.
const LABEL: &str = "receiver";

/// Established connections waiting for the server to take them.
const BACKLOG: usize = 128;

struct ServerMaterial {
    key: Arc<CertifiedKey>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
    /// Sessions clients may resume; fresh with every load, so a resumed
    /// session never outlives the certificates it was made with.
    sessions: Arc<ServerSessionMemoryCache>,
}

/// TLS sessions kept for resumption.
const SESSIONS: usize = 1024;

/// The receivers' TLS: one server config per listener over shared material.
#[derive(Debug, Clone)]
pub struct ReceiverTls {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

impl ReceiverTls {
    /// Reads the files (and starts watching them when a tokio runtime is
    /// there).
    ///
    /// # Errors
    /// An unreadable or invalid file, a key that does not match the
    /// certificate, an unknown `min_version`.
    pub fn new(config: &ReceiverTlsConfig) -> Result<Self, ExportError> {
        let versions = protocol_versions(config.min_version.as_ref(), None)?;
        let mut files = vec![
            PemFile {
                field: "receivers.tls.cert_file",
                path: config.cert_file.clone(),
            },
            PemFile {
                field: "receivers.tls.key_file",
                path: config.key_file.clone(),
            },
        ];
        if let Some(ca) = &config.client_ca_file {
            files.push(PemFile {
                field: "receivers.tls.client_ca_file",
                path: ca.clone(),
            });
        }
        let load = |contents: &[Vec<u8>]| -> Result<Loaded<ServerMaterial>, ExportError> {
            let [cert, key, rest @ ..] = contents else {
                return Err(ExportError::Build {
                    field: "receivers.tls",
                    reason: "cert_file and key_file are required".to_owned(),
                });
            };
            let (key, server_expiry) = certified_key(
                ("receivers.tls.cert_file", "receivers.tls.key_file"),
                cert,
                key,
            )?;
            let mut not_after: Vec<_> = server_expiry.map(|t| ("server", t)).into_iter().collect();
            let clients = match rest.first() {
                Some(ca) => {
                    let (roots, expiry) = root_store("receivers.tls.client_ca_file", ca)?;
                    not_after.extend(expiry.map(|t| ("client_ca", t)));
                    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .build()
                        .map_err(tls_error("receivers.tls.client_ca_file"))?;
                    Some(verifier)
                }
                None => None,
            };
            Ok(Loaded {
                value: ServerMaterial {
                    key,
                    clients,
                    sessions: ServerSessionMemoryCache::new(SESSIONS),
                },
                not_after,
            })
        };
        let material = Watched::start(LABEL, files, Box::new(load))?;
        let server_config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, ExportError> {
            let builder = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&versions)
                .map_err(tls_error("receivers.tls"))?;
            let builder = if config.client_ca_file.is_some() {
                builder.with_client_cert_verifier(Arc::new(ReloadingClientVerifier {
                    material: Arc::clone(&material),
                }))
            } else {
                builder.with_no_client_auth()
            };
            let mut server = builder.with_cert_resolver(Arc::new(ReloadingServerCert {
                material: Arc::clone(&material),
            }));
            server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            server.session_storage = Arc::new(ReloadingSessions {
                material: Arc::clone(&material),
            });
            Ok(Arc::new(server))
        };
        for receiver in ["grpc", "http"] {
            crate::metrics::tls::global()
                .receiver_handshake_errors
                .get_or_create(&ReceiverLabel { receiver })
                .inc_by(0);
        }
        Ok(Self {
            grpc: server_config(&[b"h2"])?,
            http: server_config(&[b"h2", b"http/1.1"])?,
        })
    }

    /// `receivers.tls` when it is set.
    ///
    /// # Errors
    /// See [`ReceiverTls::new`].
    pub fn from_config(
        receivers: &crate::config::ReceiversConfig,
    ) -> Result<Option<Self>, ExportError> {
        receivers.tls.as_ref().map(Self::new).transpose()
    }

    /// The OTLP/gRPC listener's TLS connections.
    pub fn grpc_listener(&self, listener: TcpListener) -> TlsListener {
        TlsListener::new(listener, Arc::clone(&self.grpc), "grpc")
    }

    /// The OTLP/HTTP listener's TLS connections.
    pub fn http_listener(&self, listener: TcpListener) -> TlsListener {
        TlsListener::new(listener, Arc::clone(&self.http), "http")
    }
}

/// Established TLS connections of one listener, for tonic (as a stream)
/// and axum (as a [`Listener`](axum::serve::Listener)).
#[derive(Debug)]
pub struct TlsListener {
    connections: mpsc::Receiver<TlsStream<TcpStream>>,
    local_addr: std::io::Result<SocketAddr>,
}

impl TlsListener {
    /// Accepts on `listener` until the returned value is dropped.
    /// `receiver` (`grpc`, `http`) labels the handshake error counter.
    fn new(listener: TcpListener, config: Arc<ServerConfig>, receiver: &'static str) -> Self {
        let local_addr = listener.local_addr();
        let (tx, connections) = mpsc::channel(BACKLOG);
        tokio::spawn(accept_loop(listener, config, receiver, tx));
        Self {
            connections,
            local_addr,
        }
    }

    /// The connections as the stream tonic serves.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        ReceiverStream::new(self.connections).map(Ok)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(stream) => {
                let peer = stream
                    .get_ref()
                    .0
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                (stream, peer)
            }
            // The accept loop lives as long as this receiver: never.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local_addr {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    receiver: &'static str,
    tx: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(receiver, error = %e, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    // Fails only when the server stopped taking connections.
                    if tx.send(stream).await.is_err() {
                        tracing::debug!(receiver, "Receiver stopped: connection dropped");
                    }
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            };
            crate::metrics::tls::global()
                .receiver_handshake_errors
                .get_or_create(&ReceiverLabel { receiver })
                .inc();
            tracing::debug!(receiver, %peer, error, "TLS handshake failed");
        });
    }
}

// === impl ReloadingServerCert ===

#[derive(Debug)]
struct ReloadingServerCert {
    material: Arc<Watched<ServerMaterial>>,
}

impl ResolvesServerCert for ReloadingServerCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.material.current().key))
    }
}

// === impl ReloadingSessions ===

#[derive(Debug)]
struct ReloadingSessions {
    material: Arc<Watched<ServerMaterial>>,
}

impl StoresServerSessions for ReloadingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.material.current().sessions.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.material.current().sessions.get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.material.current().sessions.take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

// === impl ReloadingClientVerifier ===

/// Verifies client certificates with the current client CA. Sends no CA
/// names as hints (they would have to outlive a reload).
#[derive(Debug)]
struct ReloadingClientVerifier {
    material: Arc<Watched<ServerMaterial>>,
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.material.current().clients {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General("no client CA is loaded".to_owned())),
        }
    }

    signature_checks!();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::TlsVersion;
    use crate::exporters::test_pki::{Pki, SERVER_NAME};
    use rustls::pki_types::ServerName;
    use rustls::pki_types::pem::PemObject;

    fn handshake_errors(receiver: &'static str) -> u64 {
        crate::metrics::tls::global()
            .receiver_handshake_errors
            .get_or_create(&ReceiverLabel { receiver })
            .get()
    }

    async fn connect(
        pki: &Pki,
        addr: SocketAddr,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
            .await
    }

    #[tokio::test]
    async fn min_version_refuses_older_clients_and_the_listener_keeps_serving() {
        let pki = Pki::new();
        std::fs::write(pki.path("server.pem"), &pki.server_cert_pem).unwrap();
        std::fs::write(pki.path("server.key"), &pki.server_key_pem).unwrap();
        let tls = ReceiverTls::new(&ReceiverTlsConfig {
            cert_file: pki.path("server.pem"),
            key_file: pki.path("server.key"),
            client_ca_file: None,
            min_version: Some(TlsVersion::Tls13),
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = tls.http_listener(listener);
        let before = handshake_errors("http");

        let refused = connect(&pki, addr, &[&rustls::version::TLS12]).await;
        assert!(refused.is_err(), "a TLS 1.2 client is refused");
        let tls13 = [&rustls::version::TLS13];
        let (client, (server, _)) = tokio::join!(
            connect(&pki, addr, &tls13),
            axum::serve::Listener::accept(&mut incoming)
        );
        client.unwrap();
        assert_eq!(
            server.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        for _ in 0..100 {
            if handshake_errors("http") > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the refused handshake was not counted");
    }
}

//! A test PKI (a CA that signs leaves, as PEM) and a sink serving TLS with
//! a swappable certificate: the backends of the TLS tests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use seedgate::tools::sink::{self, SinkHandle, SinkOptions};

// === test PKI ===

/// A CA that signs leaves.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its key, as PEM, and its notAfter (Unix seconds).
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
    pub not_after: i64,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A leaf for `names`, valid for `days` from now (negative: expired).
    pub fn leaf(&self, names: &[&str], days: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let now = now_secs();
        let day = 86_400;
        let (from, to) = if days < 0 {
            (now + (days - 1) * day, now + days * day)
        } else {
            (now - day, now + days * day)
        };
        let to_date = |t: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(t as u64);
        params.not_before = to_date(from);
        params.not_after = to_date(to);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            not_after: to,
        }
    }
}

impl Leaf {
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(self.cert.as_bytes())
            .unwrap()
            .to_vec()
    }

    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        let cert = CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        Arc::new(CertifiedKey::new(vec![cert], signer))
    }
}

pub fn now_secs() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Writes `content` to `dir/name` the way a Kubernetes Secret volume
/// updates: `name` is a symlink into a fresh directory, swapped atomically.
pub fn write_secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = dir.join(format!("..data-{n}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(name), content).unwrap();
    let link = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{n}"));
    std::os::unix::fs::symlink(data.join(name), &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    link
}

// === a TLS backend ===

/// The server certificate in use, swappable while the server runs.
#[derive(Debug)]
pub struct SwapCert(Mutex<Arc<CertifiedKey>>);

impl ResolvesServerCert for SwapCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.lock().unwrap().clone())
    }
}

/// A sink serving TLS with a swappable certificate, optionally requiring
/// client certificates of `client_ca`, speaking only `versions`.
pub struct TlsSink {
    pub sink: SinkHandle,
    pub cert: Arc<SwapCert>,
}

pub struct SinkSpec<'a> {
    pub leaf: &'a Leaf,
    pub client_ca: Option<&'a Ca>,
    pub versions: &'a [&'static rustls::SupportedProtocolVersion],
    /// Accepted `Authorization` values; empty: no check.
    pub authorization: Vec<String>,
    /// Listen addresses (port 0: any); the same ones restart a sink in place.
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
}

impl SinkSpec<'_> {
    pub fn new(leaf: &Leaf) -> SinkSpec<'_> {
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        SinkSpec {
            leaf,
            client_ca: None,
            versions: rustls::ALL_VERSIONS,
            authorization: Vec::new(),
            grpc: any,
            http: any,
        }
    }
}

impl TlsSink {
    pub async fn start(spec: SinkSpec<'_>) -> TlsSink {
        super::install_crypto();
        let cert = Arc::new(SwapCert(Mutex::new(spec.leaf.certified_key())));
        let builder = ServerConfig::builder_with_protocol_versions(spec.versions);
        let builder = match spec.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let sink = sink::start(SinkOptions {
            grpc_listen: spec.grpc,
            http_listen: spec.http,
            tls: Some(Arc::new(config)),
            authorization: spec.authorization,
            ..SinkOptions::default()
        })
        .await
        .unwrap();
        TlsSink { sink, cert }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("https://{}", self.sink.grpc_addr())
    }

    pub fn http_endpoint(&self) -> String {
        format!("https://{}", self.sink.http_addr())
    }

    pub fn serve_cert(&self, leaf: &Leaf) {
        *self.cert.0.lock().unwrap() = leaf.certified_key();
    }

    pub fn saw_client_cert(&self, leaf: &Leaf) -> bool {
        self.sink.client_certs().contains(&leaf.der())
    }
}

//! TLS towards a backend, from the `tls` block of an output.
//!
//! Both OTLP senders get their rustls [`ClientConfig`] from one function,
//! [`client_config`]: protocol versions from `min_version`/`max_version`,
//! a server verifier and a client certificate resolver that read the
//! current material of a [`Watched`] set of PEM files, so a rotated CA,
//! client certificate or key is used by the next connection without a
//! restart ([`watch`]). The files are read once when the exporter is built,
//! so a missing or broken file is an [`ExportError`] at build time, not a
//! failure on every send. gRPC connects through [`grpc::channel`] (tonic
//! cannot take a rustls config of ours); reqwest takes the config as it is.
//!
//! Invariants:
//! - an `https://` endpoint always gets TLS: `tls.insecure` with `https://`
//!   is refused rather than silently downgraded to plain text, and TLS
//!   settings with an `http://` endpoint are refused rather than ignored;
//! - `insecure_skip_verify` is logged at `warn` when the exporter is built
//!   and shown as `seedgate_tls_insecure_skip_verify{destination} 1`;
//! - without `ca_file`, the server is verified against the web PKI roots
//!   (gRPC) or the platform verifier (HTTP);
//! - `server_name` replaces the endpoint's host in verification (both
//!   senders) and in SNI (gRPC);
//! - the exporters of one destination (one per signal) with the same files
//!   share one [`Watched`] set, so a rotation is one reload, not three;
//! - PEM contents never reach a log line or an error message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    Tls12ClientSessionValue, Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore, SignatureScheme,
    SupportedProtocolVersion,
};

use super::ExportError;
use crate::config::{TlsConfig, TlsVersion};

pub(crate) mod grpc;
pub(crate) mod watch;

use watch::{Loaded, PemFile, Watched};

/// Whether an output's transport is TLS, decided from its endpoint scheme
/// and `tls` block.
///
/// # Errors
/// [`ExportError::Build`] when the scheme and the `tls` block contradict each
/// other.
pub(crate) fn wants_tls(scheme: Option<&str>, tls: &TlsConfig) -> Result<bool, ExportError> {
    let has_tls_settings = tls.insecure_skip_verify
        || tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.server_name.is_some()
        || tls.min_version.is_some()
        || tls.max_version.is_some();
    match scheme {
        Some("https") if tls.insecure => Err(ExportError::Build {
            field: "tls.insecure",
            reason: "is set but the endpoint is https://: write http:// for plain text".to_owned(),
        }),
        Some("https") => Ok(true),
        Some("http") if has_tls_settings => Err(ExportError::Build {
            field: "tls",
            reason: "TLS settings are given but the endpoint is http://: write https://".to_owned(),
        }),
        Some("http") => Ok(false),
        other => Err(ExportError::Build {
            field: "endpoint",
            reason: format!("scheme {:?} is not http or https", other.unwrap_or("")),
        }),
    }
}

/// Reads one PEM file named in a `tls` block.
pub(crate) fn read_pem(field: &'static str, path: &Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::ReadFile {
        field,
        path: path.to_owned(),
        source,
    })
}

/// The crypto provider every TLS config here is built with.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Maps a library error to [`ExportError::Tls`] naming `field`.
pub(crate) fn tls_error<E: std::fmt::Display>(
    field: &'static str,
) -> impl FnOnce(E) -> ExportError {
    move |e| ExportError::Tls {
        field,
        reason: e.to_string(),
    }
}

/// Checks a handshake signature with the provider's algorithms: what every
/// verifier here does once the certificate itself is judged.
///
/// # Errors
/// The signature does not verify.
pub(crate) fn verify_signature(
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = &provider().signature_verification_algorithms;
    if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }
}

/// The signature schemes [`verify_signature`] checks.
pub(crate) fn verify_schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// The three signature methods of rustls' `ServerCertVerifier` and
/// `ClientCertVerifier`, which every verifier here answers alike with
/// [`verify_signature`] and [`verify_schemes`]. The implementing module
/// imports `CertificateDer`, `DigitallySignedStruct`,
/// `HandshakeSignatureValid` and `SignatureScheme`.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $crate::exporters::tls::verify_signature(false, message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            $crate::exporters::tls::verify_signature(true, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            $crate::exporters::tls::verify_schemes()
        }
    };
}
pub(crate) use signature_checks;

/// The protocol versions between `min` (default 1.2) and `max` (default 1.3).
///
/// # Errors
/// [`ExportError::Build`] for an unknown version or an empty range (both
/// also refused by config validation).
pub(crate) fn protocol_versions(
    min: Option<&TlsVersion>,
    max: Option<&TlsVersion>,
) -> Result<Vec<&'static SupportedProtocolVersion>, ExportError> {
    let known = |field: &'static str, v: Option<&TlsVersion>, default: TlsVersion| match v {
        None => Ok(default),
        Some(TlsVersion::Unknown(text)) => Err(ExportError::Build {
            field,
            reason: format!("{text:?} is not a TLS version: write 1.2 or 1.3"),
        }),
        Some(v) => Ok(v.clone()),
    };
    let lo = known("tls.min_version", min, TlsVersion::Tls12)?;
    let hi = known("tls.max_version", max, TlsVersion::Tls13)?;
    let versions: Vec<_> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= lo && *v <= hi)
    .map(|(_, p)| p)
    .collect();
    if versions.is_empty() {
        return Err(ExportError::Build {
            field: "tls.min_version",
            reason: "is above tls.max_version: no TLS version is left".to_owned(),
        });
    }
    Ok(versions)
}

/// The certificates of a PEM bundle (at least one), and the earliest notAfter.
///
/// # Errors
/// [`ExportError::Tls`] naming `field` when the PEM is malformed or empty.
pub(crate) fn certificates(
    field: &'static str,
    pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, Option<i64>), ExportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ExportError::Tls {
            field,
            reason: format!("not a PEM certificate bundle: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ExportError::Tls {
            field,
            reason: "no PEM certificate in the file".to_owned(),
        });
    }
    let not_after = watch::earliest_not_after(certs.iter().map(|c| c.as_ref()));
    Ok((certs, not_after))
}

/// A trust store of the CA certificates in `pem`, and their earliest notAfter.
///
/// # Errors
/// [`ExportError::Tls`] naming `field`.
pub(crate) fn root_store(
    field: &'static str,
    pem: &[u8],
) -> Result<(Arc<RootCertStore>, Option<i64>), ExportError> {
    let (certs, not_after) = certificates(field, pem)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| ExportError::Tls {
            field,
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((Arc::new(roots), not_after))
}

/// A certificate chain and its key, checked to belong together, and the
/// leaf's notAfter. `fields` name the certificate and key files.
///
/// # Errors
/// [`ExportError::Tls`] naming the file at fault.
pub(crate) fn certified_key(
    fields: (&'static str, &'static str),
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<CertifiedKey>, Option<i64>), ExportError> {
    let (cert_field, key_field) = fields;
    let (chain, _) = certificates(cert_field, cert_pem)?;
    let leaf_not_after = chain.first().and_then(|c| watch::not_after(c));
    // The key parser's message names no key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ExportError::Tls {
        field: key_field,
        reason: format!("not a PEM private key: {e}"),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(tls_error(key_field))?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(ExportError::Tls {
            field: key_field,
            reason: format!("the key does not belong to the certificate of {cert_field}"),
        });
    }
    Ok((Arc::new(certified), leaf_not_after))
}

/// What an output verifies servers with when it has no `ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultRoots {
    /// Mozilla's roots, built in (gRPC).
    WebPki,
    /// The operating system's verifier and trust store (HTTP).
    Platform,
}

impl DefaultRoots {
    /// The verifier of these roots, built once per process: parsing a
    /// trust store costs milliseconds, and a seed has a thousand shoot
    /// clients whose outputs all verify with the same one.
    fn verifier(self) -> Result<Arc<dyn ServerCertVerifier>, ExportError> {
        type Built = Result<Arc<dyn ServerCertVerifier>, ExportError>;
        static WEBPKI: OnceLock<Arc<dyn ServerCertVerifier>> = OnceLock::new();
        static PLATFORM: OnceLock<Arc<dyn ServerCertVerifier>> = OnceLock::new();
        let (cell, build): (_, fn() -> Built) = match self {
            DefaultRoots::WebPki => (&WEBPKI, || {
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let verifier: Arc<dyn ServerCertVerifier> =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(tls_error("tls"))?;
                Ok(verifier)
            }),
            DefaultRoots::Platform => (&PLATFORM, || {
                let verifier = rustls_platform_verifier::Verifier::new(provider())
                    .map_err(tls_error("tls"))?;
                Ok(Arc::new(verifier))
            }),
        };
        once(cell, build)
    }
}

/// The value of `cell`, built by `build` on first use; a failed build is
/// not kept, so a later call tries again. (`OnceLock::get_or_try_init` is
/// not stable yet.)
fn once<T: Clone>(
    cell: &OnceLock<T>,
    build: impl FnOnce() -> Result<T, ExportError>,
) -> Result<T, ExportError> {
    if let Some(value) = cell.get() {
        return Ok(value.clone());
    }
    let built = build()?;
    Ok(cell.get_or_init(|| built).clone())
}

/// The TLS configuration given to an HTTP client whose endpoint is
/// `http://`: it never makes a handshake, and without one the HTTP client
/// would load the platform's trust store for each client it builds (tens
/// of milliseconds per shoot client). No roots: a handshake would fail.
///
/// # Errors
/// Only if the crypto provider offers no safe protocol version.
pub(crate) fn plaintext_only() -> Result<ClientConfig, ExportError> {
    static PLAIN: OnceLock<ClientConfig> = OnceLock::new();
    once(&PLAIN, || {
        Ok(ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error("tls"))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth())
    })
}

/// The rustls client config of an output with TLS: versions, verifier,
/// client certificate (reloaded on change) and ALPN protocols.
///
/// # Errors
/// Unreadable or invalid files, an unknown version, a bad `server_name`.
pub(crate) fn client_config(
    tls: &TlsConfig,
    destination: &str,
    roots: DefaultRoots,
    alpn: &[&[u8]],
) -> Result<ClientConfig, ExportError> {
    let versions = protocol_versions(tls.min_version.as_ref(), tls.max_version.as_ref())?;
    let name = tls
        .server_name
        .as_deref()
        .map(|n| {
            ServerName::try_from(n.to_owned()).map_err(|_| ExportError::Build {
                field: "tls.server_name",
                reason: format!("{n:?} is not a DNS name or IP address"),
            })
        })
        .transpose()?;
    let material = client_material(tls, destination, roots)?;
    crate::metrics::tls::global()
        .insecure_skip_verify
        .get_or_create(&crate::metrics::tls::DestinationLabel {
            destination: destination.to_owned(),
        })
        .set(i64::from(tls.insecure_skip_verify));
    let has_identity = material.current().cert.is_some();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(tls_error("tls"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReloadingVerifier {
            material: Arc::clone(&material),
            name,
        }));
    let mut config = if has_identity {
        builder.with_client_cert_resolver(Arc::new(ReloadingClientCert {
            material: Arc::clone(&material),
        }))
    } else {
        builder.with_no_client_auth()
    };
    config.resumption = Resumption::store(Arc::new(ReloadingSessions { material }));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Whether a transport error is a failed TLS handshake (a rustls error
/// anywhere in its causes).
pub(crate) fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<rustls::Error>() {
            return true;
        }
        // tokio-rustls wraps handshake failures in an io::Error (hyper-rustls
        // in another one) whose `source()` skips the wrapped error itself;
        // `get_ref` has it.
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

// === client material ===

/// The server verifier and client certificate of an output, rebuilt from
/// its files when they change.
struct ClientMaterial {
    /// `None`: `insecure_skip_verify`, any server certificate is accepted.
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    cert: Option<Arc<CertifiedKey>>,
    /// TLS sessions to resume. A resumed session skips certificates on both
    /// sides, so every load starts with an empty cache: after a rotation,
    /// new connections make full handshakes with the new material.
    sessions: Arc<ClientSessionMemoryCache>,
}

/// TLS sessions kept per material (for a few backend addresses).
const SESSIONS: usize = 32;

type SharedMaterial = Arc<Watched<ClientMaterial>>;

/// Live material per destination and `tls` block, so the exporters of one
/// destination share one set and one poller.
static MATERIAL: LazyLock<Mutex<HashMap<String, Weak<Watched<ClientMaterial>>>>> =
    LazyLock::new(Mutex::default);

fn client_material(
    tls: &TlsConfig,
    destination: &str,
    roots: DefaultRoots,
) -> Result<SharedMaterial, ExportError> {
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => {
            return Err(ExportError::Build {
                field: "tls",
                reason: "cert_file and key_file go together".to_owned(),
            });
        }
    };
    let skip = tls.insecure_skip_verify;
    let key = format!(
        "{destination}\n{skip}\n{:?}\n{:?}\n{roots:?}",
        tls.ca_file, identity
    );
    let mut cache = MATERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(shared) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let ca_file = tls.ca_file.clone().filter(|_| !skip);
    let fallback: Option<Arc<dyn ServerCertVerifier>> = if skip {
        // The CA, if any, is not used: nothing is verified.
        tracing::warn!(
            destination,
            "tls.insecure_skip_verify is set: the backend's certificate is not checked"
        );
        None
    } else if ca_file.is_none() {
        Some(roots.verifier()?)
    } else {
        // The CA's verifier, made by every load.
        None
    };
    let mut files = Vec::new();
    if let Some(path) = &ca_file {
        files.push(PemFile {
            field: "tls.ca_file",
            path: path.clone(),
        });
    }
    if let Some((cert, key)) = &identity {
        files.push(PemFile {
            field: "tls.cert_file",
            path: cert.clone(),
        });
        files.push(PemFile {
            field: "tls.key_file",
            path: key.clone(),
        });
    }
    let has_ca = ca_file.is_some();
    let load = move |contents: &[Vec<u8>]| -> Result<Loaded<ClientMaterial>, ExportError> {
        let mut rest = contents;
        let mut not_after = Vec::new();
        let mut verifier = fallback.clone();
        if has_ca && let Some((ca, tail)) = rest.split_first() {
            let (roots, expiry) = root_store("tls.ca_file", ca)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(tls_error("tls.ca_file"))?;
            verifier = Some(webpki);
            not_after.extend(expiry.map(|t| ("ca", t)));
            rest = tail;
        }
        let cert = match rest {
            [cert, key] => {
                let (certified, expiry) =
                    certified_key(("tls.cert_file", "tls.key_file"), cert, key)?;
                not_after.extend(expiry.map(|t| ("client", t)));
                Some(certified)
            }
            _ => None,
        };
        Ok(Loaded {
            value: ClientMaterial {
                verifier,
                cert,
                sessions: Arc::new(ClientSessionMemoryCache::new(SESSIONS)),
            },
            not_after,
        })
    };
    let shared = Watched::start(destination, files, Box::new(load))?;
    cache.retain(|_, w| w.strong_count() > 0);
    cache.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

// === impl ReloadingVerifier ===

/// Verifies the server with the current material, against `server_name`
/// when one is configured; accepts any certificate for
/// `insecure_skip_verify`, but still checks that the handshake is signed by
/// the key of the certificate presented, so the connection is at least
/// encrypted to whoever answered.
#[derive(Debug)]
struct ReloadingVerifier {
    material: SharedMaterial,
    name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for ReloadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.material.current().verifier {
            None => Ok(ServerCertVerified::assertion()),
            Some(v) => v.verify_server_cert(
                end_entity,
                intermediates,
                self.name.as_ref().unwrap_or(server_name),
                ocsp_response,
                now,
            ),
        }
    }

    signature_checks!();
}

// === impl ReloadingClientCert ===

/// Presents the current client certificate.
#[derive(Debug)]
struct ReloadingClientCert {
    material: SharedMaterial,
}

impl ResolvesClientCert for ReloadingClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.material.current().cert.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

// === impl ReloadingSessions ===

/// The session cache of the current material.
#[derive(Debug)]
struct ReloadingSessions {
    material: SharedMaterial,
}

impl ReloadingSessions {
    fn sessions(&self) -> Arc<ClientSessionMemoryCache> {
        Arc::clone(&self.material.current().sessions)
    }
}

impl ClientSessionStore for ReloadingSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.sessions().set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.sessions().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.sessions().set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.sessions().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.sessions().remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.sessions().insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.sessions().take_tls13_ticket(server_name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn scheme_and_tls_block_must_agree() {
        let plain = TlsConfig::default();
        let insecure = TlsConfig {
            insecure: true,
            ..TlsConfig::default()
        };
        let with_ca = TlsConfig {
            ca_file: Some("/ca.pem".into()),
            ..TlsConfig::default()
        };
        assert!(wants_tls(Some("https"), &plain).unwrap());
        assert!(wants_tls(Some("https"), &with_ca).unwrap());
        assert!(!wants_tls(Some("http"), &plain).unwrap());
        assert!(!wants_tls(Some("http"), &insecure).unwrap());
        for (scheme, tls) in [
            (Some("https"), &insecure),
            (Some("http"), &with_ca),
            (Some("ftp"), &plain),
            (None, &plain),
        ] {
            let err = wants_tls(scheme, tls).unwrap_err();
            assert_eq!(err.kind(), "build", "{scheme:?}");
        }
    }

    #[test]
    fn missing_pem_file_names_field_and_path() {
        let tls = TlsConfig {
            ca_file: Some("/nonexistent/seedgate-ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = client_config(&tls, "unit", DefaultRoots::WebPki, &[]).unwrap_err();
        assert_eq!(err.kind(), "read_file");
        let text = err.to_string();
        assert!(
            text.contains("tls.ca_file") && text.contains("/nonexistent/seedgate-ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn versions_between_min_and_max() {
        let v = |min, max| {
            protocol_versions(min, max).map(|v| v.iter().map(|p| p.version).collect::<Vec<_>>())
        };
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v(None, None).unwrap(), vec![TLSv1_2, TLSv1_3]);
        assert_eq!(v(Some(&TlsVersion::Tls13), None).unwrap(), vec![TLSv1_3]);
        assert_eq!(v(None, Some(&TlsVersion::Tls12)).unwrap(), vec![TLSv1_2]);
        let err = v(Some(&TlsVersion::Tls13), Some(&TlsVersion::Tls12)).unwrap_err();
        assert!(err.to_string().starts_with("tls.min_version"), "{err}");
        let err = v(Some(&TlsVersion::Unknown("1.1".into())), None).unwrap_err();
        assert!(err.to_string().contains("\"1.1\""), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_echoing_it() {
        let pki = crate::exporters::test_pki::Pki::new();
        let cert = std::fs::read(pki.path("client.pem")).unwrap();
        let key = std::fs::read(pki.path("client.key")).unwrap();
        let (_, not_after) = certified_key(("c", "k"), &cert, &key).unwrap();
        assert!(not_after.is_some());
        let err = certified_key(("c", "k"), &cert, pki.server_key_pem.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("k: the key does not belong"), "{text}");
        assert!(!text.contains("PRIVATE"), "{text}");
        let err = root_store("ca", b"no pem here").unwrap_err();
        assert_eq!(err.to_string(), "ca: no PEM certificate in the file");
    }
}

//! TLS towards a backend, from the `tls` block of an output.
//!
//! Both OTLP senders read the same settings; this module turns them into
//! what tonic (a `ClientTlsConfig`) and reqwest (its builder options) take,
//! and reads the PEM files once, at build time, so a missing or broken file
//! is an [`ExportError`] when the pipeline is built, not a failure on every
//! send.
//!
//! Invariants:
//! - an `https://` endpoint always gets TLS: `tls.insecure` with `https://`
//!   is refused rather than silently downgraded to plain text, and TLS
//!   settings with an `http://` endpoint are refused rather than ignored;
//! - `insecure_skip_verify` is logged at `warn` when the exporter is built;
//! - without `ca_file`, the server is verified against the web PKI roots
//!   (gRPC) or the platform verifier (HTTP).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::ExportError;
use crate::config::TlsConfig;

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
        || tls.server_name.is_some();
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

/// Reads one PEM file named in the `tls` block.
pub(crate) fn read_pem(field: &'static str, path: &Path) -> Result<Vec<u8>, ExportError> {
    std::fs::read(path).map_err(|source| ExportError::ReadFile {
        field,
        path: path.to_owned(),
        source,
    })
}

/// PEM bytes of a client certificate (chain) and its key.
pub(crate) struct IdentityPem {
    /// The certificate chain.
    pub(crate) cert: Vec<u8>,
    /// The private key.
    pub(crate) key: Vec<u8>,
}

/// The client certificate and key (mTLS), when both are configured.
pub(crate) fn read_identity(tls: &TlsConfig) -> Result<Option<IdentityPem>, ExportError> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Ok(Some(IdentityPem {
            cert: read_pem("tls.cert_file", cert)?,
            key: read_pem("tls.key_file", key)?,
        })),
        (None, None) => Ok(None),
        _ => Err(ExportError::Build {
            field: "tls",
            reason: "cert_file and key_file go together".to_owned(),
        }),
    }
}

/// The tonic TLS settings of a gRPC output, and the verifier that replaces
/// certificate checks when `insecure_skip_verify` is set.
pub(crate) fn grpc_client_config(
    tls: &TlsConfig,
) -> Result<
    (
        tonic::transport::ClientTlsConfig,
        Option<Arc<dyn ServerCertVerifier>>,
    ),
    ExportError,
> {
    let mut config = tonic::transport::ClientTlsConfig::new();
    if let Some(IdentityPem { cert, key }) = read_identity(tls)? {
        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    if tls.insecure_skip_verify {
        // tonic refuses roots next to a custom verifier, so none are added.
        tracing::warn!("tls.insecure_skip_verify is set: the backend's certificate is not checked");
        return Ok((config, Some(Arc::new(NoCertificateCheck::new()))));
    }
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(
            "tls.ca_file",
            ca,
        )?)),
        None => config.with_webpki_roots(),
    };
    Ok((config, None))
}

/// Applies the `tls` block of an HTTP output to a reqwest builder.
///
/// # Errors
/// [`ExportError::Unsupported`] for `server_name` (reqwest verifies against
/// the URL host); [`ExportError::Tls`] for unreadable PEM.
pub(crate) fn http_client_config(
    mut builder: reqwest::ClientBuilder,
    tls: &TlsConfig,
) -> Result<reqwest::ClientBuilder, ExportError> {
    if tls.server_name.is_some() {
        return Err(ExportError::Unsupported {
            field: "tls.server_name",
            what: "overriding the verified server name of an otlp_http output is not supported yet",
        });
    }
    if let Some(ca) = &tls.ca_file {
        let pem = read_pem("tls.ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ExportError::Tls {
            field: "tls.ca_file",
            reason: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(ExportError::Tls {
                field: "tls.ca_file",
                reason: "no PEM certificate in the file".to_owned(),
            });
        }
        builder = builder.tls_certs_only(certs);
    }
    if let Some(IdentityPem { mut cert, key }) = read_identity(tls)? {
        // reqwest's rustls identity reads certificate chain and key from one PEM buffer.
        cert.push(b'\n');
        cert.extend_from_slice(&key);
        let identity = reqwest::Identity::from_pem(&cert).map_err(|e| ExportError::Tls {
            field: "tls.cert_file",
            reason: e.to_string(),
        })?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        tracing::warn!("tls.insecure_skip_verify is set: the backend's certificate is not checked");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

// === impl NoCertificateCheck ===

/// Accepts any server certificate (`insecure_skip_verify`), but still checks
/// that the handshake is signed by the key of the certificate presented, so
/// the connection is at least encrypted to whoever answered.
#[derive(Debug)]
struct NoCertificateCheck {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl NoCertificateCheck {
    fn new() -> Self {
        Self {
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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
        let err = grpc_client_config(&tls).unwrap_err();
        assert_eq!(err.kind(), "read_file");
        let text = err.to_string();
        assert!(
            text.contains("tls.ca_file") && text.contains("/nonexistent/seedgate-ca.pem"),
            "{text}"
        );
    }
}

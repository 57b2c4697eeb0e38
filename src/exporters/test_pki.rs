//! Test-only certificates: a CA, a server certificate for `backend.test`
//! (not the address tests dial, so `server_name` and verification matter)
//! and a client certificate for mTLS, generated per test with rcgen and
//! written as PEM files for the `tls` block to name.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The server certificate's only name.
pub(crate) const SERVER_NAME: &str = "backend.test";

/// Generated PEM material; the files live as long as the value.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    /// The CA certificate.
    pub(crate) ca_pem: String,
    /// The server certificate.
    pub(crate) server_cert_pem: String,
    /// The server key.
    pub(crate) server_key_pem: String,
}

#[allow(clippy::unwrap_used)]
impl Pki {
    /// Fresh keys and certificates in a temporary directory holding
    /// `ca.pem`, `client.pem` and `client.key`.
    pub(crate) fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "seedgate test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(SERVER_NAME);
        let (client_cert, client_key) = leaf("seedgate.client");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key).unwrap();
        Self {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
        }
    }

    /// A file of the directory: `ca.pem`, `client.pem` or `client.key`.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

//! The TLS material check, in the order and with the texts of Kyma's TLS
//! certificate validator (telemetry-manager `internal/validators/tlscert`):
//! decode and parse the client certificate, the key and the CA, check that
//! certificate and key belong together, then the expiry of the certificate
//! and of the CA (expired: an error; within 14 days: a warning), and that
//! the CA is a CA.
//!
//! Departures, both stricter in seedgate's favour: every certificate of a CA
//! bundle is checked (Kyma checks the first PEM block only), and a
//! certificate about to expire does not stop the CA check (Kyma returns on
//! the warning).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How soon before its end a certificate is reported.
pub(crate) const ABOUT_TO_EXPIRE: SignedDuration = SignedDuration::from_hours(24 * 14);

/// Why the material is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsProblem {
    /// `TLSConfigurationInvalid` with this text after "TLS configuration invalid: ".
    Invalid(&'static str),
    /// `TLSCertificateExpired`.
    Expired {
        /// The certificate's `notAfter`.
        not_after: Timestamp,
        /// The CA (true) or the client certificate.
        ca: bool,
    },
}

/// A certificate that expires soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expiring {
    /// The certificate's `notAfter`.
    pub(crate) not_after: Timestamp,
    /// The CA (true) or the client certificate.
    pub(crate) ca: bool,
}

pub(crate) const CERT_DECODE: &str = "failed to decode PEM block containing certificate";
pub(crate) const CERT_PARSE: &str = "failed to parse certificate";
pub(crate) const KEY_DECODE: &str = "failed to decode PEM block containing private key";
pub(crate) const CA_DECODE: &str = "failed to decode PEM block containing CA certificate";
pub(crate) const CA_PARSE: &str = "failed to parse CA certificate";
pub(crate) const PAIR_MISSING: &str =
    "a certificate and private key must either both be provided or both be missing";
pub(crate) const PAIR_MISMATCH: &str = "certificate and private key do not match";
pub(crate) const NOT_A_CA: &str = "not a CA certificate";
pub(crate) const UNRESOLVED: &str = "failed to resolve value";

/// Kyma's sanitising: a literal `\n` (backslash, n) becomes a newline, for
/// PEM pasted into YAML as one line.
pub(crate) fn sanitize(pem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pem.len());
    let mut i = 0;
    while i < pem.len() {
        if pem[i] == b'\\' && pem.get(i + 1) == Some(&b'n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(pem[i]);
            i += 1;
        }
    }
    out
}

/// Checks sanitised PEM material. Returns the first certificate that
/// expires within [`ABOUT_TO_EXPIRE`] of `now`, client certificate first.
pub(crate) fn check(
    cert: Option<&[u8]>,
    key: Option<&[u8]>,
    ca: Option<&[u8]>,
    now: Timestamp,
) -> Result<Option<Expiring>, TlsProblem> {
    if cert.is_some() != key.is_some() {
        return Err(TlsProblem::Invalid(PAIR_MISSING));
    }
    let cert = cert.map(parse_cert).transpose()?;
    let key = key.map(decode_key).transpose()?;
    let cas = ca.map(parse_ca).transpose()?;

    let mut warning = None;
    if let (Some((cert_der, not_after, _)), Some(key)) = (cert, key) {
        let provider = rustls::crypto::ring::default_provider();
        let key = key.ok_or(TlsProblem::Invalid(PAIR_MISMATCH))?;
        rustls::sign::CertifiedKey::from_der(vec![cert_der], key, &provider)
            .map_err(|_| TlsProblem::Invalid(PAIR_MISMATCH))?;
        warning = expiry(not_after, false, now)?;
    }
    for (_, not_after, is_ca) in cas.into_iter().flatten() {
        if !is_ca {
            return Err(TlsProblem::Invalid(NOT_A_CA));
        }
        let w = expiry(not_after, true, now)?;
        warning = warning.or(w);
    }
    Ok(warning)
}

fn expiry(not_after: Timestamp, ca: bool, now: Timestamp) -> Result<Option<Expiring>, TlsProblem> {
    if now > not_after {
        return Err(TlsProblem::Expired { not_after, ca });
    }
    Ok((not_after.duration_since(now) <= ABOUT_TO_EXPIRE).then_some(Expiring { not_after, ca }))
}

/// The first PEM section, of any known kind.
fn first_section(pem: &[u8]) -> Option<(SectionKind, Vec<u8>)> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).next()?.ok()
}

/// A parsed certificate: DER, `notAfter`, whether it is a CA.
type Parsed = (CertificateDer<'static>, Timestamp, bool);

fn parse_der(der: Vec<u8>) -> Option<Parsed> {
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp()).ok()?;
    let is_ca = cert.is_ca();
    Some((CertificateDer::from(der), not_after, is_ca))
}

fn parse_cert(pem: &[u8]) -> Result<Parsed, TlsProblem> {
    match first_section(pem) {
        None => Err(TlsProblem::Invalid(CERT_DECODE)),
        Some((SectionKind::Certificate, der)) => {
            parse_der(der).ok_or(TlsProblem::Invalid(CERT_PARSE))
        }
        Some(_) => Err(TlsProblem::Invalid(CERT_PARSE)),
    }
}

/// The key, or `None` when the PEM holds something that is no private key
/// (then it cannot match the certificate).
fn decode_key(pem: &[u8]) -> Result<Option<PrivateKeyDer<'static>>, TlsProblem> {
    let (kind, der) = first_section(pem).ok_or(TlsProblem::Invalid(KEY_DECODE))?;
    Ok(match kind {
        SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.into())),
        SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.into())),
        SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.into())),
        _ => None,
    })
}

fn parse_ca(pem: &[u8]) -> Result<Vec<Parsed>, TlsProblem> {
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        match section {
            Ok((SectionKind::Certificate, der)) => {
                out.push(parse_der(der).ok_or(TlsProblem::Invalid(CA_PARSE))?);
            }
            Ok(_) if out.is_empty() => return Err(TlsProblem::Invalid(CA_PARSE)),
            Ok(_) => {}
            Err(_) if out.is_empty() => return Err(TlsProblem::Invalid(CA_DECODE)),
            Err(_) => return Err(TlsProblem::Invalid(CA_PARSE)),
        }
    }
    if out.is_empty() {
        return Err(TlsProblem::Invalid(CA_DECODE));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! Certificates with chosen lifetimes, for the tests of this module and
    //! of `pipeline_spec`.
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::jiff::Timestamp;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    /// PEM material of one CA and one client certificate it signed.
    pub(crate) struct Certs {
        pub(crate) ca: String,
        pub(crate) cert: String,
        pub(crate) key: String,
        /// A key that does not belong to `cert`.
        pub(crate) other_key: String,
    }

    /// The CA valid until `ca_until`, the client certificate until
    /// `cert_until` (both as `YYYY-MM-DD`).
    pub(crate) fn certs(ca_until: (i32, u8, u8), cert_until: (i32, u8, u8)) -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "seedgate test CA");
        ca_params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(ca_until.0, ca_until.1, ca_until.2);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["seedgate.client".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(cert_until.0, cert_until.1, cert_until.2);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Certs {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            other_key: KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    /// Midnight UTC of a day.
    pub(crate) fn day(y: i16, m: i8, d: i8) -> Timestamp {
        k8s_openapi::jiff::civil::date(y, m, d)
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::test_certs::{certs, day};
    use super::*;

    fn b(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn valid_material_passes_and_expiry_is_reported_in_kyma_order() {
        let c = certs((2031, 1, 1), (2030, 6, 1));
        let now = day(2030, 1, 1);
        assert_eq!(check(b(&c.cert), b(&c.key), b(&c.ca), now), Ok(None));
        assert_eq!(check(None, None, b(&c.ca), now), Ok(None));
        assert_eq!(check(b(&c.cert), b(&c.key), None, now), Ok(None));
        assert_eq!(check(None, None, None, now), Ok(None));

        // The client certificate within 14 days: a warning, the CA still checked.
        let soon = day(2030, 5, 20);
        let cert_end = Timestamp::from_second(
            x509_parser::parse_x509_certificate(&first_section(c.cert.as_bytes()).unwrap().1)
                .unwrap()
                .1
                .validity()
                .not_after
                .timestamp(),
        )
        .unwrap();
        assert_eq!(
            check(b(&c.cert), b(&c.key), b(&c.ca), soon),
            Ok(Some(Expiring {
                not_after: cert_end,
                ca: false
            }))
        );
        // Exactly 14 days before the end is "about to expire" (Kyma: <=).
        assert_eq!(
            check(b(&c.cert), b(&c.key), None, cert_end - ABOUT_TO_EXPIRE),
            Ok(Some(Expiring {
                not_after: cert_end,
                ca: false
            }))
        );
        assert_eq!(
            check(
                b(&c.cert),
                b(&c.key),
                None,
                cert_end - ABOUT_TO_EXPIRE - SignedDuration::from_secs(1)
            ),
            Ok(None)
        );
        // At the end it is still valid (Kyma: expired only after NotAfter).
        assert!(
            check(b(&c.cert), b(&c.key), None, cert_end)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            check(
                b(&c.cert),
                b(&c.key),
                b(&c.ca),
                cert_end + SignedDuration::from_secs(1)
            ),
            Err(TlsProblem::Expired {
                not_after: cert_end,
                ca: false
            })
        );

        // An expired CA is an error even when the client certificate only warns.
        let c = certs((2030, 5, 25), (2030, 5, 20));
        match check(b(&c.cert), b(&c.key), b(&c.ca), day(2030, 5, 26)) {
            Err(TlsProblem::Expired { ca: false, .. }) => {}
            other => panic!("client certificate expired first: {other:?}"),
        }
        match check(b(&c.cert), b(&c.key), b(&c.ca), day(2030, 5, 10)) {
            Ok(Some(Expiring { ca: false, .. })) => {}
            other => panic!("client certificate warns first: {other:?}"),
        }
        match check(None, None, b(&c.ca), day(2030, 5, 26)) {
            Err(TlsProblem::Expired { ca: true, .. }) => {}
            other => panic!("CA expired: {other:?}"),
        }
        match check(None, None, b(&c.ca), day(2030, 5, 20)) {
            Ok(Some(Expiring { ca: true, .. })) => {}
            other => panic!("CA about to expire: {other:?}"),
        }
    }

    #[test]
    fn broken_material_gets_kyma_texts() {
        let c = certs((2031, 1, 1), (2030, 6, 1));
        let now = day(2030, 1, 1);
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        let truncated = "-----BEGIN CERTIFICATE-----\n...\n";
        let bundle = format!("{}{}", c.ca, c.cert);
        for (cert, key, ca, want) in [
            (b(&c.cert), None, None, PAIR_MISSING),
            (None, b(&c.key), None, PAIR_MISSING),
            (b("hello"), b(&c.key), None, CERT_DECODE),
            (b(truncated), b(&c.key), None, CERT_DECODE),
            (b(garbage), b(&c.key), None, CERT_PARSE),
            (b(&c.key), b(&c.key), None, CERT_PARSE),
            (b(&c.cert), b("hello"), None, KEY_DECODE),
            (b(&c.cert), b(&c.other_key), None, PAIR_MISMATCH),
            (b(&c.cert), b(&c.cert), None, PAIR_MISMATCH),
            (None, None, b("hello"), CA_DECODE),
            (None, None, b(garbage), CA_PARSE),
            (None, None, b(&c.key), CA_PARSE),
            (None, None, b(&c.cert), NOT_A_CA),
            (None, None, Some(bundle.as_bytes()), NOT_A_CA),
            // The certificate is checked before the CA, the pair before expiry.
            (b("hello"), b(&c.key), b("hello"), CERT_DECODE),
        ] {
            assert_eq!(
                check(cert, key, ca, now),
                Err(TlsProblem::Invalid(want)),
                "{want}"
            );
        }
    }

    #[test]
    fn sanitize_turns_escaped_newlines_into_newlines() {
        assert_eq!(sanitize(b"a\\nb\\\\n\n"), b"a\nb\\\n\n".to_vec());
        let c = certs((2031, 1, 1), (2030, 6, 1));
        let one_line = c.cert.replace('\n', "\\n");
        let key_line = c.key.replace('\n', "\\n");
        assert_eq!(
            check(
                Some(&sanitize(one_line.as_bytes())),
                Some(&sanitize(key_line.as_bytes())),
                None,
                day(2030, 1, 1)
            ),
            Ok(None)
        );
    }
}

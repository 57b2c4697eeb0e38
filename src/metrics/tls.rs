//! TLS material: reloads of certificate files, their expiry, insecure
//! outputs, and handshakes the receivers refused.
//!
//! The exporters and receivers that set these are built far from the
//! [`Metrics`](super::Metrics) value (an exporter is built per destination
//! and signal, with only its output config), so the families live in one
//! process-wide [`TlsMetrics`] returned by [`global`], and every registry
//! registers that same set (families are shared handles). Labels:
//!
//! - `destination`: the pipeline name, `shoot` for shoot clients, or
//!   `receiver` for the OTLP receivers' own certificate;
//! - `cert`: `client` (an output's client certificate), `ca` (an output's
//!   CA bundle, the earliest expiry in it), `server` (the receivers'
//!   certificate) or `client_ca` (the CA the receivers verify clients with);
//! - `receiver`: `grpc` or `http`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// `{destination}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    /// Pipeline name, `shoot`, or `receiver`.
    pub destination: String,
}

/// `{destination, cert}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// Pipeline name, `shoot`, or `receiver`.
    pub destination: String,
    /// `client`, `ca`, `server` or `client_ca`.
    pub cert: &'static str,
}

/// `{receiver}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    /// `grpc` or `http`.
    pub receiver: &'static str,
}

/// TLS metrics of the whole process.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    /// Certificate files reloaded after they changed on disk.
    pub reloads: Family<DestinationLabel, Counter>,
    /// Changed certificate files that could not be used (the last good
    /// material stays in use).
    pub reload_errors: Family<DestinationLabel, Counter>,
    /// Seconds until the certificate's notAfter; negative once expired.
    pub certificate_expiry: Family<CertLabel, Gauge>,
    /// 1 for TLS outputs that do not verify the server certificate, else 0.
    pub insecure_skip_verify: Family<DestinationLabel, Gauge>,
    /// TLS handshakes a receiver failed or refused (the listener keeps
    /// serving).
    pub receiver_handshake_errors: Family<ReceiverLabel, Counter>,
}

static GLOBAL: LazyLock<TlsMetrics> = LazyLock::new(TlsMetrics::default);

/// The process-wide TLS metrics.
pub fn global() -> &'static TlsMetrics {
    &GLOBAL
}

impl TlsMetrics {
    /// Registers under `seedgate_tls` (and the handshake errors under
    /// `seedgate_receiver`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("seedgate_tls");
        r.register(
            "reloads",
            "Certificate files reloaded after they changed on disk",
            self.reloads.clone(),
        );
        r.register(
            "reload_errors",
            "Changed certificate files that could not be used; the last good material stays in use",
            self.reload_errors.clone(),
        );
        r.register_with_unit(
            "certificate_expiry",
            "Seconds until the certificate's notAfter, negative once expired",
            Unit::Seconds,
            self.certificate_expiry.clone(),
        );
        r.register(
            "insecure_skip_verify",
            "1 for TLS outputs that do not verify the server certificate, else 0",
            self.insecure_skip_verify.clone(),
        );
        registry
            .sub_registry_with_prefix("seedgate_receiver")
            .register(
                "tls_handshake_errors",
                "TLS handshakes a receiver failed or refused",
                self.receiver_handshake_errors.clone(),
            );
    }

    /// Creates a destination's reload counters at zero.
    pub fn init_destination(&self, destination: &str) {
        let label = DestinationLabel {
            destination: destination.to_owned(),
        };
        self.reloads.get_or_create(&label).inc_by(0);
        self.reload_errors.get_or_create(&label).inc_by(0);
    }

    /// One series in every family, so a test sees them all rendered.
    #[cfg(test)]
    pub(crate) fn touch_all(&self) {
        let d = DestinationLabel {
            destination: "test".to_owned(),
        };
        self.init_destination("test");
        self.certificate_expiry
            .get_or_create(&CertLabel {
                destination: "test".to_owned(),
                cert: "client",
            })
            .set(1);
        self.insecure_skip_verify.get_or_create(&d).set(1);
        self.receiver_handshake_errors
            .get_or_create(&ReceiverLabel { receiver: "grpc" })
            .inc_by(0);
    }
}

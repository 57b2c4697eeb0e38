//! One sender per output kind, and what became of a send.
//!
//! A delivery loop ([`crate::delivery`]) reads a batch from LMDB,
//! concatenates its entries into one `Export*ServiceRequest` encoding and
//! hands the bytes to [`Exporter::send`]. `send` makes exactly **one**
//! attempt and returns an [`Outcome`]; the loop owns the retries (with
//! [`crate::delivery::backoff`]), the deletion of acknowledged entries and
//! the metrics. Keeping I/O here and
//! policy there lets every rule be tested on its own.
//!
//! Kinds are a plain enum plus `match` (STYLE.md: no registry, no trait
//! objects): [`otlp_grpc`], [`otlp_http`] (which also sends
//! `fluent_bit_http`), [`stdout`] and noop.
//!
//! Invariants:
//! - `send` never panics and never retries; every failure is an [`Outcome`];
//! - `send` is bounded by the output's `timeout` (per attempt);
//! - [`Outcome::Retryable`] / [`Outcome::Permanent`] carry a `reason` from
//!   the bounded set below (safe as a metric label) and a `detail` built
//!   only from the backend's answer or the transport error, never from the
//!   configured headers (they carry credentials);
//! - an [`Exporter`] is cheap to share: `send` takes `&self`, and
//!   concurrent sends to one destination share one connection pool.
//!
//! `reason` labels:
//!
//! | label | outcome | when |
//! |---|---|---|
//! | `http_429`, `http_502`, `http_503`, `http_504` | retryable | OTLP/HTTP status |
//! | `http_400`, `http_401`, `http_403`, `http_404`, `http_405`, `http_413`, `http_415`, `http_4xx`, `http_500`, `http_5xx`, `http_other` | permanent | OTLP/HTTP status |
//! | `grpc_<code>` (e.g. `grpc_unavailable`, `grpc_resource_exhausted`) | retryable for `cancelled`, `deadline_exceeded`, `aborted`, `out_of_range`, `unavailable`, `data_loss`, and `resource_exhausted` with `RetryInfo`; else permanent | gRPC status from the backend |
//! | `connect` | retryable | the connection could not be made or was lost (refused, reset, DNS) |
//! | `tls` | retryable | the TLS handshake failed (untrusted, expired or misnamed server certificate, no common TLS version, client certificate refused) |
//! | `timeout` | retryable | the attempt took longer than `timeout` |
//! | `auth` | retryable | no OAuth2 token could be had (token endpoint unreachable, refusing, or answering nonsense); permanent only for a credential that cannot be gRPC metadata |
//! | `transport` | retryable | any other I/O failure between us and the backend |
//! | `encode` | permanent | the request could not be compressed or rendered (stdout) |
//! | `io` | retryable | writing to stdout failed |
//!
//! A 401 (`http_401`) or `grpc_unauthenticated` stays permanent with an
//! `auth` block too; it also drops the cached OAuth2 token (`auth.rs`), so
//! the next batch fetches a new one.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{OutputConfig, OutputType};
use crate::signal::Signal;

pub(crate) mod auth;
pub(crate) mod oauth2;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod outcome;
pub mod reason;
pub(crate) mod redact;
pub mod stdout;
#[cfg(test)]
pub(crate) mod test_pki;
pub(crate) mod tls;

pub use outcome::{grpc_outcome, http_outcome};
pub use reason::Reason;

/// What became of one export attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend took the request; `rejected` records were refused by it
    /// through `partial_success` (counted, not retried).
    Accepted {
        /// Records the backend refused (`rejected_*` of `partial_success`).
        rejected: u64,
        /// The backend's `error_message`, often empty.
        message: String,
    },
    /// Try again later, after `after` when the backend said so.
    Retryable {
        /// The backend's `Retry-After` / `RetryInfo` delay, if any.
        after: Option<Duration>,
        /// Why (its label is in the module doc's table).
        reason: Reason,
        /// Human-readable cause, free of secrets.
        detail: String,
    },
    /// Never retry this request: count it and drop it.
    Permanent {
        /// Why (its label is in the module doc's table).
        reason: Reason,
        /// Human-readable cause, free of secrets.
        detail: String,
    },
}

impl Outcome {
    /// `accepted`, `retryable` or `permanent`: a bounded label.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Retryable { .. } => "retryable",
            Outcome::Permanent { .. } => "permanent",
        }
    }
}

/// Why an exporter could not be built. Building does no network I/O, so
/// every one of these is a configuration problem or an unreadable file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A setting is missing, malformed or contradicts another one.
    #[error("{field}: {reason}")]
    Build {
        /// The output field, e.g. `endpoint` or `headers[1].name`.
        field: &'static str,
        /// What is wrong (never a header value).
        reason: String,
    },
    /// A setting this kind of output cannot honour yet.
    #[error("{field}: {what}")]
    Unsupported {
        /// The output field.
        field: &'static str,
        /// What is not supported.
        what: &'static str,
    },
    /// A file named in the `tls` block cannot be read.
    #[error("{field}: cannot read {}: {source}", path.display())]
    ReadFile {
        /// The `tls` field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key does not parse, or the TLS setup refused it.
    #[error("{field}: {reason}")]
    Tls {
        /// The `tls` field, or `tls` when the library does not say which.
        field: &'static str,
        /// The library's message.
        reason: String,
    },
    /// The HTTP or gRPC client could not be created.
    #[error("cannot create the {client} client: {reason}")]
    Client {
        /// `http` or `grpc`.
        client: &'static str,
        /// The library's message.
        reason: String,
    },
}

impl ExportError {
    /// Bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ExportError::Build { .. } => "build",
            ExportError::Unsupported { .. } => "unsupported",
            ExportError::ReadFile { .. } => "read_file",
            ExportError::Tls { .. } => "tls",
            ExportError::Client { .. } => "client",
        }
    }
}

/// A sender for one destination and signal.
#[derive(Debug, Clone)]
pub struct Exporter {
    inner: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Grpc(otlp_grpc::GrpcExporter),
    Http(otlp_http::HttpExporter),
    Stdout(stdout::StdoutExporter),
    Noop,
}

impl Exporter {
    /// Builds the sender. Must be called inside a tokio runtime (the gRPC
    /// channel spawns its connection task there). No network I/O: the
    /// connection is made by the first send.
    ///
    /// # Errors
    /// See [`ExportError`].
    /// `destination` is the metrics label of what the exporter sends to (TLS
    /// metrics carry it).
    pub fn build(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
    ) -> Result<Exporter, ExportError> {
        let inner = match output.kind {
            OutputType::OtlpGrpc => {
                Kind::Grpc(otlp_grpc::GrpcExporter::build(output, signal, destination)?)
            }
            OutputType::OtlpHttp | OutputType::FluentBitHttp => {
                Kind::Http(otlp_http::HttpExporter::build(output, signal, destination)?)
            }
            OutputType::Stdout => Kind::Stdout(stdout::StdoutExporter::new(signal)),
            OutputType::Noop => Kind::Noop,
        };
        Ok(Exporter { inner })
    }

    /// [`Exporter::build`], but an HTTP output takes its client from
    /// `shared` (see [`otlp_http::SharedClients`]).
    ///
    /// # Errors
    /// See [`ExportError`].
    pub fn build_shared(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
        shared: &otlp_http::SharedClients,
    ) -> Result<Exporter, ExportError> {
        match output.kind {
            OutputType::OtlpHttp | OutputType::FluentBitHttp => Ok(Exporter {
                inner: Kind::Http(otlp_http::HttpExporter::build_shared(
                    output,
                    signal,
                    destination,
                    shared,
                )?),
            }),
            _ => Self::build(output, signal, destination),
        }
    }

    /// Sends one request (a valid Export*ServiceRequest encoding holding
    /// `records` records): one attempt, bounded by the output's timeout.
    pub async fn send(&self, body: Bytes, records: u64) -> Outcome {
        match &self.inner {
            Kind::Grpc(g) => g.send(body).await,
            Kind::Http(h) => h.send(body).await,
            Kind::Stdout(s) => s.send(&body, records),
            Kind::Noop => Outcome::Accepted {
                rejected: 0,
                message: String::new(),
            },
        }
    }

    /// The output kind: `otlp_grpc`, `otlp_http`, `fluent_bit_http`,
    /// `stdout` or `noop`.
    pub fn kind(&self) -> &'static str {
        match &self.inner {
            Kind::Grpc(_) => OutputType::OtlpGrpc.as_str(),
            Kind::Http(h) => h.kind().as_str(),
            Kind::Stdout(_) => OutputType::Stdout.as_str(),
            Kind::Noop => OutputType::Noop.as_str(),
        }
    }
}

/// The configured headers as `(name, prefix + value)`, validated; shared by
/// both OTLP senders. Errors name the header by index, never its value.
pub(crate) fn header_pairs(
    output: &OutputConfig,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ExportError> {
    output
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                ExportError::Build {
                    field: "headers",
                    reason: format!("headers[{i}].name {:?} is not a valid header name", h.name),
                }
            })?;
            let mut value = http::HeaderValue::from_str(&format!("{}{}", h.prefix, h.value))
                .map_err(|_| ExportError::Build {
                    field: "headers",
                    reason: format!("headers[{i}].value is not a valid header value"),
                })?;
            // Keeps the value out of Debug output and HPACK tables.
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::HeaderConfig;

    #[tokio::test]
    async fn noop_accepts_everything() {
        let e = Exporter::build(
            &OutputConfig::of_kind(OutputType::Noop),
            Signal::Logs,
            "test",
        )
        .unwrap();
        assert_eq!(e.kind(), "noop");
        let got = e.send(Bytes::from_static(b"\x0a\x00"), 1).await;
        assert_eq!(
            got,
            Outcome::Accepted {
                rejected: 0,
                message: String::new()
            }
        );
    }

    #[test]
    fn bad_header_value_is_not_echoed() {
        let mut o = OutputConfig::of_kind(OutputType::OtlpHttp);
        o.headers.push(HeaderConfig::new(
            "authorization",
            "Bearer ",
            "s3cret\nsmuggled",
        ));
        let err = header_pairs(&o).unwrap_err();
        assert_eq!(err.kind(), "build");
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
    }

    #[test]
    fn header_values_are_sensitive() {
        let mut o = OutputConfig::of_kind(OutputType::OtlpHttp);
        o.headers.push(HeaderConfig::new("X-Token", "Key ", "abc"));
        let pairs = header_pairs(&o).unwrap();
        assert_eq!(pairs[0].0.as_str(), "x-token");
        assert_eq!(pairs[0].1.to_str().unwrap(), "Key abc");
        assert!(pairs[0].1.is_sensitive());
        assert!(!format!("{:?}", pairs[0].1).contains("abc"));
    }
}

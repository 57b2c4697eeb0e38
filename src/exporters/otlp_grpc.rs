//! The OTLP/gRPC sender: a unary `Export` call carrying the request bytes
//! as they are.
//!
//! A lazily connecting tonic [`Channel`] (TLS for `https://` endpoints)
//! and [`RawCodec`] mean no prost encode on the way out: the batch bytes are
//! the message. The answer is an `Export*ServiceResponse` whose
//! `partial_success` becomes [`Outcome::Accepted`]; an error status is
//! mapped by [`grpc_outcome`].
//!
//! Invariants:
//! - building does no network I/O; the first send connects, and a dead
//!   backend is a [`Outcome::Retryable`] `connect`, never a build error;
//! - each attempt is bounded by the output's `timeout` (also sent to the
//!   server as `grpc-timeout`);
//! - a status that tonic made from a local transport error (it carries a
//!   source error) is always retryable (`connect`, `tls`, `timeout` or
//!   `transport`), whatever code tonic gave it: the request may never have
//!   left this process, and a TLS problem may be fixed by rotating a
//!   certificate while the data waits in LMDB.

use std::error::Error as _;

use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use super::auth::Auth;
use super::outcome::{decode_partial_success, grpc_outcome};
use super::{ExportError, Outcome, Reason, tls};
use crate::config::{Compression, OutputConfig};
use crate::grpc_codec::RawCodec;
use crate::signal::Signal;

/// Sends OTLP/gRPC requests to one backend.
#[derive(Debug, Clone)]
pub struct GrpcExporter {
    client: tonic::client::Grpc<Channel>,
    metadata: MetadataMap,
    signal: Signal,
    timeout: std::time::Duration,
    auth: Auth,
}

impl GrpcExporter {
    /// Builds the channel (lazily connecting). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// A missing or malformed endpoint, invalid or binary (`-bin`) headers,
    /// unreadable or invalid TLS files.
    pub fn build(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
    ) -> Result<Self, ExportError> {
        let endpoint = output
            .endpoint
            .as_deref()
            .ok_or_else(|| ExportError::Build {
                field: "endpoint",
                reason: "is required for otlp_grpc".to_owned(),
            })?;
        let uri = endpoint
            .parse::<http::Uri>()
            .map_err(|e| ExportError::Build {
                field: "endpoint",
                reason: format!("{endpoint:?} is not a valid URI: {e}"),
            })?;
        let use_tls = tls::wants_tls(uri.scheme_str(), &output.tls)?;
        let connect_uri = if use_tls {
            tls::grpc::connect_uri(&uri)?
        } else {
            uri.clone()
        };
        let ep = Endpoint::from(connect_uri)
            .connect_timeout(output.timeout)
            .user_agent(concat!("seedgate/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| ExportError::Client {
                client: "grpc",
                reason: chain(&e),
            })?;
        let ep = crate::grpc_codec::tune_endpoint(ep);
        let channel = if use_tls {
            tls::grpc::channel(ep, &uri, &output.tls, destination)?
        } else {
            ep.connect_lazy()
        };
        let mut client = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        match output.compression {
            Compression::None => {}
            Compression::Gzip => client = client.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => client = client.send_compressed(CompressionEncoding::Zstd),
        }
        Ok(Self {
            client,
            metadata: metadata(output)?,
            signal,
            timeout: output.timeout,
            auth: Auth::build(output, destination)?,
        })
    }

    /// One `Export` call with the output's credentials; see the module doc.
    pub async fn send(&self, body: Bytes) -> Outcome {
        self.auth
            .around(|auth| self.attempt(body.clone(), auth))
            .await
    }

    async fn attempt(&self, body: Bytes, authorization: Option<http::HeaderValue>) -> Outcome {
        // Grpc needs `&mut` to poll readiness; clones share the channel.
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        if let Some(value) = authorization {
            match AsciiMetadataValue::try_from(value.as_bytes()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    request.metadata_mut().insert("authorization", v);
                }
                Err(_) => {
                    return Outcome::Permanent {
                        reason: Reason::Auth,
                        detail: "the credential is not valid gRPC metadata".to_owned(),
                    };
                }
            }
        }
        request.set_timeout(self.timeout);
        let path = PathAndQuery::from_static(self.signal.grpc_path());
        let attempt = async {
            client.ready().await.map_err(|e| Outcome::Retryable {
                after: None,
                reason: Reason::Connect,
                detail: chain(&e),
            })?;
            client
                .unary::<Bytes, Bytes, _>(request, path, RawCodec)
                .await
                .map_err(|status| status_outcome(&status))
        };
        let response = match tokio::time::timeout(self.timeout, attempt).await {
            Err(_) => {
                return Outcome::Retryable {
                    after: None,
                    reason: Reason::Timeout,
                    detail: format!("no answer within {:?}", self.timeout),
                };
            }
            Ok(Err(outcome)) => return outcome,
            Ok(Ok(response)) => response.into_inner(),
        };
        match decode_partial_success(self.signal, &response) {
            Ok((rejected, message)) => Outcome::Accepted { rejected, message },
            // OK status: the data is in; do not duplicate it over an
            // unreadable optional answer.
            Err(e) => Outcome::Accepted {
                rejected: 0,
                message: format!("response is not a valid Export*ServiceResponse: {e}"),
            },
        }
    }
}

/// The configured headers as ASCII metadata, values marked sensitive.
fn metadata(output: &OutputConfig) -> Result<MetadataMap, ExportError> {
    let mut map = MetadataMap::new();
    for (name, value) in super::header_pairs(output)? {
        if name.as_str().ends_with("-bin") {
            return Err(ExportError::Unsupported {
                field: "headers",
                what: "binary (-bin) metadata is not supported for otlp_grpc",
            });
        }
        let key = AsciiMetadataKey::from_bytes(name.as_str().as_bytes()).map_err(|_| {
            ExportError::Build {
                field: "headers",
                reason: format!("{:?} is not a valid gRPC metadata key", name.as_str()),
            }
        })?;
        let mut value =
            AsciiMetadataValue::try_from(value.as_bytes()).map_err(|_| ExportError::Build {
                field: "headers",
                reason: format!(
                    "the value of {:?} is not valid gRPC metadata",
                    name.as_str()
                ),
            })?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

/// A failed call: a local transport failure (tonic attaches the cause as
/// the status source) is retryable; otherwise the server's status decides.
fn status_outcome(status: &tonic::Status) -> Outcome {
    let Some(source) = status.source() else {
        return grpc_outcome(status);
    };
    let mut reason = Reason::Transport;
    let mut cause = Some(source);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            // tonic enforces the grpc-timeout we set before our own timer fires.
            reason = Reason::Timeout;
        } else if e.is::<rustls::Error>() {
            reason = Reason::Tls;
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // tokio-rustls wraps handshake failures in an io::Error whose
            // `source()` skips the rustls error itself; `get_ref` has it.
            let inner_tls = io.get_ref().is_some_and(|i| i.is::<rustls::Error>());
            reason = match io.kind() {
                _ if inner_tls => Reason::Tls,
                K::TimedOut => Reason::Timeout,
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable => Reason::Connect,
                _ => reason,
            };
        }
        cause = e.source();
    }
    let detail = format!("{:?}: {}", status.code(), chain(source));
    Outcome::Retryable {
        after: None,
        reason,
        detail,
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        // tonic and hyper often repeat the inner message in the outer one.
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

//! The OTLP/HTTP sender: `POST endpoint + path` with a protobuf body; and,
//! for a `fluent_bit_http` output, the same client posting the batch
//! rendered as Fluent Bit's HTTP output would ([`crate::proto::fluent_bit`]).
//!
//! One [`reqwest::Client`] per exporter keeps a connection pool to the
//! backend (shoot clients share one, [`SharedClients`]); the body is
//! compressed per the output's `compression` and sent with
//! `Content-Encoding`; the answer is mapped by [`http_outcome`].
//!
//! Invariants:
//! - OTLP: the request body is the caller's bytes unchanged (after
//!   compression): no decode, no re-encode. Fluent Bit: the batch is decoded
//!   and rendered as JSON off the async threads, and any 2xx is success
//!   (there is no `partial_success`);
//! - the whole attempt (connect, send, read the answer) is bounded by the
//!   output's `timeout`, and at most [`RESPONSE_LIMIT`] bytes of the answer
//!   are read;
//! - transport errors are reported without the URL or the headers.
//! - TLS (versions, verifier, client certificate) is
//!   `tls::client_config`; a failed handshake is a retryable `tls`.

use std::io::Write;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use super::auth::Auth;
use super::redact::error_chain;
use super::{ExportError, Outcome, Reason, outcome::http_outcome, tls};
use crate::config::{Compression, FluentBitConfig, OutputConfig, OutputType};
use crate::signal::Signal;

/// The most bytes read from a response: an `Export*ServiceResponse` is tiny;
/// anything longer is an error page whose start is enough.
pub const RESPONSE_LIMIT: usize = 64 * 1024;

/// `Some` for a `fluent_bit_http` output: how to render its batches.
fn fluent_bit_of(output: &OutputConfig) -> Option<std::sync::Arc<FluentBitConfig>> {
    (output.kind == OutputType::FluentBitHttp)
        .then(|| std::sync::Arc::new(output.fluent_bit.clone().unwrap_or_default()))
}

/// The client settings of `output`: headers, timeouts, no redirects, TLS.
/// Nothing here depends on the endpoint beyond its scheme.
fn client_builder(
    output: &OutputConfig,
    url: &reqwest::Url,
    destination: &str,
) -> Result<reqwest::ClientBuilder, ExportError> {
    let use_tls = tls::wants_tls(Some(url.scheme()), &output.tls)?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in super::header_pairs(output)? {
        headers.append(name, value);
    }
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(if output.kind == OutputType::FluentBitHttp {
            "application/json"
        } else {
            "application/x-protobuf"
        }),
    );
    match output.compression {
        Compression::None => {}
        Compression::Gzip => {
            headers.insert(CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        }
        Compression::Zstd => {
            headers.insert(CONTENT_ENCODING, http::HeaderValue::from_static("zstd"));
        }
    }
    let builder = reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("seedgate/", env!("CARGO_PKG_VERSION")))
        .timeout(output.timeout)
        .connect_timeout(output.timeout)
        // An exporter talks to its configured backend only; a redirect
        // would send the credentials headers somewhere else.
        .redirect(reqwest::redirect::Policy::none());
    Ok(if use_tls {
        builder.tls_backend_preconfigured(tls::client_config(
            &output.tls,
            destination,
            tls::DefaultRoots::Platform,
            &[b"h2", b"http/1.1"],
        )?)
    } else {
        builder.tls_backend_preconfigured(tls::plaintext_only()?)
    })
}

fn build_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, ExportError> {
    builder.build().map_err(|e| ExportError::Client {
        client: "http",
        reason: error_chain(&e),
    })
}

/// HTTP clients shared by exporters whose outputs differ only in their
/// endpoint: the shoot clients, which would otherwise hold a client, a
/// connection pool and an idle connection each (about 27 KiB per shoot);
/// shared, they hold as many connections as there are requests in flight.
/// Keyed by every setting but the endpoint, and by the metrics label (TLS
/// metrics carry it; shoot clients share `shoot`).
#[derive(Debug, Default)]
pub struct SharedClients {
    clients: std::sync::Mutex<std::collections::HashMap<String, reqwest::Client>>,
}

impl SharedClients {
    fn get_or_build(
        &self,
        output: &OutputConfig,
        url: &reqwest::Url,
        destination: &str,
    ) -> Result<reqwest::Client, ExportError> {
        let settings = OutputConfig {
            endpoint: None,
            ..output.clone()
        };
        let Ok(settings) = serde_json::to_string(&settings) else {
            // Not comparable, so not shared.
            return build_client(client_builder(output, url, destination)?);
        };
        let key = format!("{destination}\0{}\0{settings}", url.scheme());
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build_client(client_builder(output, url, destination)?)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Sends OTLP/HTTP protobuf requests to one backend.
#[derive(Debug, Clone)]
pub struct HttpExporter {
    client: reqwest::Client,
    url: reqwest::Url,
    signal: Signal,
    compression: Compression,
    auth: Auth,
    /// `Some` for a `fluent_bit_http` output: render the batch this way.
    fluent_bit: Option<std::sync::Arc<FluentBitConfig>>,
}

impl HttpExporter {
    /// Builds the client. No network I/O.
    ///
    /// # Errors
    /// A missing or malformed endpoint or path, invalid headers, unreadable
    /// or invalid TLS files.
    pub fn build(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
    ) -> Result<Self, ExportError> {
        Self::build_with(output, signal, destination, |b| b)
    }

    /// [`HttpExporter::build`] with a last say on the client builder (tests
    /// use it to resolve a certificate's name to 127.0.0.1).
    pub(crate) fn build_with(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
        customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, ExportError> {
        let url = Self::url(output, signal)?;
        let client = build_client(customize(client_builder(output, &url, destination)?))?;
        Self::with_client(output, signal, destination, url, client)
    }

    /// [`HttpExporter::build`] with the client of `shared` that has the
    /// same settings, built on first use.
    ///
    /// # Errors
    /// As [`HttpExporter::build`].
    pub fn build_shared(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
        shared: &SharedClients,
    ) -> Result<Self, ExportError> {
        let url = Self::url(output, signal)?;
        let client = shared.get_or_build(output, &url, destination)?;
        Self::with_client(output, signal, destination, url, client)
    }

    fn with_client(
        output: &OutputConfig,
        signal: Signal,
        destination: &str,
        url: reqwest::Url,
        client: reqwest::Client,
    ) -> Result<Self, ExportError> {
        Ok(Self {
            client,
            url,
            signal,
            compression: output.compression,
            auth: Auth::build(output, destination)?,
            fluent_bit: fluent_bit_of(output),
        })
    }

    /// The URL requests go to: the endpoint, then the output's path.
    fn url(output: &OutputConfig, signal: Signal) -> Result<reqwest::Url, ExportError> {
        let endpoint = output
            .endpoint
            .as_deref()
            .ok_or_else(|| ExportError::Build {
                field: "endpoint",
                reason: format!("is required for {}", output.kind.as_str()),
            })?;
        // Fluent Bit's `uri` defaults to `/`; OTLP's path to `/v1/<signal>`.
        let default_path = if output.kind == OutputType::FluentBitHttp {
            "/"
        } else {
            signal.http_path()
        };
        let path = output.path.as_deref().unwrap_or(default_path);
        // The endpoint may carry a base path (`https://host/otlp`): the
        // signal path goes after it, like the OpenTelemetry exporters do.
        let joined = format!("{}{}", endpoint.trim_end_matches('/'), path);
        reqwest::Url::parse(&joined).map_err(|e| ExportError::Build {
            field: "endpoint",
            reason: format!("{joined:?} is not a valid URL: {e}"),
        })
    }

    /// `otlp_http` or `fluent_bit_http`.
    pub fn kind(&self) -> OutputType {
        if self.fluent_bit.is_some() {
            OutputType::FluentBitHttp
        } else {
            OutputType::OtlpHttp
        }
    }

    /// One POST with the output's credentials; see the module doc.
    pub async fn send(&self, body: Bytes) -> Outcome {
        self.auth
            .around(|auth| self.attempt(body.clone(), auth))
            .await
    }

    async fn attempt(&self, body: Bytes, authorization: Option<http::HeaderValue>) -> Outcome {
        let body = match prepare(self.fluent_bit.clone(), self.compression, body).await {
            Ok(b) => b,
            Err(detail) => {
                return Outcome::Permanent {
                    reason: Reason::Encode,
                    detail,
                };
            }
        };
        let mut request = self.client.post(self.url.clone()).body(body);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport_outcome(&e),
        };
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_LIMIT - answer.len();
                    answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if answer.len() >= RESPONSE_LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                // The status is in: it decides. A body cut short only costs
                // the partial_success details or the error text.
                Err(_) if !status.is_success() => break,
                Err(e) => return transport_outcome(&e),
            }
        }
        if self.fluent_bit.is_some() && status.is_success() {
            // Fluent Bit's HTTP output treats any 2xx as delivered; its
            // backends answer with anything, or nothing.
            return Outcome::Accepted {
                rejected: 0,
                message: String::new(),
            };
        }
        http_outcome(self.signal, status, &headers, &answer)
    }
}

/// Renders (Fluent Bit) and compresses off the async threads: a 4 MiB batch
/// takes tens of milliseconds to gzip or render, which would stall other
/// tasks.
async fn prepare(
    fluent_bit: Option<std::sync::Arc<FluentBitConfig>>,
    compression: Compression,
    body: Bytes,
) -> Result<Bytes, String> {
    if compression == Compression::None && fluent_bit.is_none() {
        return Ok(body);
    }
    let joined = tokio::task::spawn_blocking(move || {
        let body = match &fluent_bit {
            None => body,
            Some(config) => {
                let mut json = Vec::with_capacity(body.len().saturating_mul(2));
                crate::proto::fluent_bit::render(&body, config, &mut json)
                    .map_err(|e| format!("cannot render the batch as Fluent Bit JSON: {e}"))?;
                Bytes::from(json)
            }
        };
        compress_now(compression, body).map_err(|e| format!("cannot compress the request: {e}"))
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(e) => Err(format!("encoding task failed: {e}")),
    }
}

fn compress_now(compression: Compression, body: Bytes) -> std::io::Result<Bytes> {
    match compression {
        Compression::None => Ok(body),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&body)?;
            Ok(Bytes::from(enc.finish()?))
        }
        // Level 3 is zstd's default: most of the ratio at a fraction of the cost.
        Compression::Zstd => Ok(Bytes::from(zstd::bulk::compress(&body, 3)?)),
    }
}

/// A request that got no HTTP answer: always worth retrying.
fn transport_outcome(e: &reqwest::Error) -> Outcome {
    let reason = if e.is_timeout() {
        Reason::Timeout
    } else if tls::is_tls_error(e) {
        Reason::Tls
    } else if e.is_connect() {
        Reason::Connect
    } else {
        Reason::Transport
    };
    Outcome::Retryable {
        after: None,
        reason,
        detail: error_chain(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

//! A tonic channel over our own rustls config.
//!
//! tonic builds its own `ClientConfig` from a `ClientTlsConfig` and offers
//! no protocol versions and no client certificate resolver, so TLS is done
//! in the connector instead: the channel's endpoint gets the `http://`
//! form of the URI (tonic then adds no TLS of its own), the connector
//! opens TCP and runs the rustls handshake, and the endpoint's origin
//! stays the configured `https://` URI, which is what requests carry as
//! `:scheme` and `:authority`.

use std::sync::Arc;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use super::{DefaultRoots, client_config};
use crate::config::TlsConfig;
use crate::exporters::ExportError;

/// The URI to hand to tonic's [`Endpoint`]: `uri` with `http` as its scheme.
///
/// # Errors
/// [`ExportError::Build`] when the URI cannot be rebuilt (no host).
pub(crate) fn connect_uri(uri: &Uri) -> Result<Uri, ExportError> {
    let mut parts = uri.clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    Uri::from_parts(parts).map_err(|e| ExportError::Build {
        field: "endpoint",
        reason: format!("{uri} cannot be used: {e}"),
    })
}

/// A lazily connecting channel to `uri` (`https://`) over TLS per `tls`;
/// `endpoint` was made from [`connect_uri`] and carries the other settings.
///
/// # Errors
/// See [`client_config`]; an endpoint without a host.
pub(crate) fn channel(
    endpoint: Endpoint,
    uri: &Uri,
    tls: &TlsConfig,
    destination: &str,
) -> Result<Channel, ExportError> {
    let config = Arc::new(client_config(
        tls,
        destination,
        DefaultRoots::WebPki,
        &[b"h2"],
    )?);
    let host = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| ExportError::Build {
            field: "endpoint",
            reason: format!("{uri} has no host"),
        })?;
    let sni = tls.server_name.clone().unwrap_or_else(|| host.clone());
    let sni = ServerName::try_from(sni).map_err(|e| ExportError::Build {
        field: "tls.server_name",
        reason: format!("not a DNS name or IP address: {e}"),
    })?;
    let port = uri.port_u16().unwrap_or(443);
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = tower::service_fn(move |_: Uri| {
        let (connector, sni, host) = (connector.clone(), sni.clone(), host.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(sni, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Ok(endpoint
        .origin(uri.clone())
        .connect_with_connector_lazy(connect))
}

//! The OTLP endpoint check, in the order and with the texts of Kyma's
//! endpoint validator (telemetry-manager `internal/validators/endpoint`),
//! narrowed to what seedgate's exporters can use: `http://` and `https://`
//! endpoints, and for gRPC also `host:port`.
//!
//! Go's `net/url` is not available, so the URL is split here by hand: an
//! optional `scheme://`, the authority up to the first `/`, `?` or `#`, and
//! the path. The texts Kyma users see for the common mistakes are Kyma's:
//! "missing port", "missing or unsupported protocol scheme", "gRPC endpoints
//! cannot contain paths". Departures: resolver schemes (`dns:///…`,
//! `passthrough:///…`) get "missing or unsupported protocol scheme"
//! (seedgate's gRPC client takes `http(s)://host:port` only), and an empty
//! host is refused ("missing host"; Kyma lets `:4317` through), and so are a
//! query and a fragment (seedgate appends the signal path to the endpoint).

use super::crds::OtlpProtocol;

/// A checked endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `http` or `https`, lowercase; `None` for a scheme-less gRPC endpoint.
    pub(crate) scheme: Option<String>,
    /// Everything after `scheme://` (or the whole endpoint without a scheme).
    rest: String,
}

impl Endpoint {
    /// The URL seedgate's exporters take: the endpoint with its scheme; a
    /// scheme-less gRPC endpoint gets `http://` when `insecure` (plain text)
    /// and `https://` otherwise, as the OpenTelemetry Collector reads it.
    pub(crate) fn url(&self, insecure: bool) -> String {
        let scheme = match &self.scheme {
            Some(s) => s.as_str(),
            None if insecure => "http",
            None => "https",
        };
        format!("{scheme}://{}", self.rest)
    }
}

pub(crate) const MISSING_PORT: &str = "missing port";
pub(crate) const UNSUPPORTED_SCHEME: &str = "missing or unsupported protocol scheme";
pub(crate) const GRPC_PATH: &str = "gRPC endpoints cannot contain paths";

/// Checks an endpoint for a protocol; the error is the text after
/// "OTLP output endpoint invalid: ".
pub(crate) fn check(raw: &str, protocol: OtlpProtocol) -> Result<Endpoint, String> {
    if raw.chars().any(char::is_control) {
        return Err("invalid control character in URL".to_owned());
    }
    let (scheme, rest) = split_scheme(raw);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    // `scheme://` or `scheme:///` with nothing after it.
    if scheme.is_some() && authority.is_empty() && path.trim_start_matches('/').is_empty() {
        return Err(MISSING_PORT.to_owned());
    }
    let scheme_ok = matches!(scheme.as_deref(), Some("http" | "https"));
    // Other schemes are refused before the port check, except `grpc://`,
    // whose port error is the more useful message (as Kyma).
    if scheme.is_some() && !scheme_ok && scheme.as_deref() != Some("grpc") {
        return Err(UNSUPPORTED_SCHEME.to_owned());
    }
    // Userinfo is not part of the host.
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(hostport)?;
    if let Some(p) = port
        && !p.is_empty()
        && !p.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("invalid port \":{p}\" after host"));
    }
    if protocol == OtlpProtocol::Grpc && port.is_none_or(str::is_empty) {
        return Err(MISSING_PORT.to_owned());
    }
    if !scheme_ok && (scheme.is_some() || protocol == OtlpProtocol::Http) {
        return Err(UNSUPPORTED_SCHEME.to_owned());
    }
    if protocol == OtlpProtocol::Grpc && !path.is_empty() {
        return Err(GRPC_PATH.to_owned());
    }
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    // seedgate appends the signal path to the endpoint: a query or fragment
    // would end up in front of it.
    if tail.len() > path.len() {
        return Err("endpoints cannot contain a query or fragment".to_owned());
    }
    Ok(Endpoint {
        scheme,
        rest: rest.to_owned(),
    })
}

/// `(Some(lowercase scheme), rest)` when the endpoint starts with a URI
/// scheme and `://`; `(None, endpoint)` otherwise.
fn split_scheme(raw: &str) -> (Option<String>, &str) {
    if let Some((scheme, rest)) = raw.split_once("://") {
        let mut b = scheme.bytes();
        let valid = b.next().is_some_and(|c| c.is_ascii_alphabetic())
            && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if valid {
            return (Some(scheme.to_ascii_lowercase()), rest);
        }
    }
    (None, raw)
}

/// Go's `net.SplitHostPort`, returning `None` for a missing port.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(format!("address {hostport}: missing ']' in address"));
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("address {hostport}: unexpected ']' in address")),
            },
        };
    }
    match hostport.matches(':').count() {
        0 => Ok((hostport, None)),
        1 => {
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
            Ok((host, Some(port)))
        }
        _ => Err(format!("address {hostport}: too many colons in address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRPC: OtlpProtocol = OtlpProtocol::Grpc;
    const HTTP: OtlpProtocol = OtlpProtocol::Http;

    #[test]
    fn accepted_endpoints_and_the_url_seedgate_uses() {
        for (raw, protocol, insecure, url) in [
            (
                "http://backend.observability:4317",
                GRPC,
                false,
                "http://backend.observability:4317",
            ),
            (
                "https://backend.example.com:4317",
                GRPC,
                false,
                "https://backend.example.com:4317",
            ),
            (
                "HTTPS://backend.example.com:4317",
                GRPC,
                false,
                "https://backend.example.com:4317",
            ),
            (
                "backend.observability:4317",
                GRPC,
                false,
                "https://backend.observability:4317",
            ),
            (
                "backend.observability:4317",
                GRPC,
                true,
                "http://backend.observability:4317",
            ),
            ("[::1]:4317", GRPC, true, "http://[::1]:4317"),
            (
                "https://user:pw@backend:4317",
                GRPC,
                false,
                "https://user:pw@backend:4317",
            ),
            (
                "https://backend.example.com",
                HTTP,
                false,
                "https://backend.example.com",
            ),
            (
                "https://backend.example.com/otlp",
                HTTP,
                false,
                "https://backend.example.com/otlp",
            ),
            ("http://backend:4318/", HTTP, false, "http://backend:4318/"),
        ] {
            let ep = check(raw, protocol).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(ep.url(insecure), url, "{raw}");
        }
    }

    #[test]
    fn refused_endpoints_say_what_kyma_says() {
        for (raw, protocol, err) in [
            // The upstream condition scenarios.
            (
                "http://backend.observability:4317/v1/traces",
                GRPC,
                GRPC_PATH,
            ),
            ("backend.observability:4318", HTTP, UNSUPPORTED_SCHEME),
            ("https://backend.example.com/otlp:4317", GRPC, MISSING_PORT),
            // gRPC needs a port and takes no path, not even `/`.
            ("https://backend.example.com", GRPC, MISSING_PORT),
            ("backend", GRPC, MISSING_PORT),
            ("backend:", GRPC, MISSING_PORT),
            ("", GRPC, MISSING_PORT),
            ("http://backend:4317/", GRPC, GRPC_PATH),
            // HTTP needs http or https.
            ("", HTTP, UNSUPPORTED_SCHEME),
            ("backend", HTTP, UNSUPPORTED_SCHEME),
            ("ftp://backend:21", HTTP, UNSUPPORTED_SCHEME),
            ("ftp://backend:21", GRPC, UNSUPPORTED_SCHEME),
            ("dns:///backend:4317", GRPC, UNSUPPORTED_SCHEME),
            // `grpc://`: the port first, then the scheme.
            ("grpc://backend", GRPC, MISSING_PORT),
            ("grpc://backend:4317", GRPC, UNSUPPORTED_SCHEME),
            ("http://", HTTP, MISSING_PORT),
            ("https:///", GRPC, MISSING_PORT),
            (
                "http://backend:abc",
                HTTP,
                "invalid port \":abc\" after host",
            ),
            (
                "backend:4317:1",
                GRPC,
                "address backend:4317:1: too many colons in address",
            ),
            (
                "[::1:4317",
                GRPC,
                "address [::1:4317: missing ']' in address",
            ),
            ("http://:4317", GRPC, "missing host"),
            (
                "https://backend:4318?x=1",
                HTTP,
                "endpoints cannot contain a query or fragment",
            ),
            (
                "https://backend:4318/otlp#f",
                HTTP,
                "endpoints cannot contain a query or fragment",
            ),
            (
                "http://backend:4317\n",
                GRPC,
                "invalid control character in URL",
            ),
        ] {
            assert_eq!(
                check(raw, protocol),
                Err(err.to_owned()),
                "{raw:?} {protocol:?}"
            );
        }
    }
}

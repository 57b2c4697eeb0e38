//! Where and how a destination sends: the output kind, compression,
//! headers, TLS and the output block itself.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;

/// The kind of exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// OTLP over gRPC (tonic).
    OtlpGrpc,
    /// OTLP over HTTP, protobuf body.
    OtlpHttp,
    /// Logs as Fluent Bit's HTTP output sends them: JSON records over HTTP
    /// (Kyma's log pipeline `http` output).
    FluentBitHttp,
    /// One JSON line per record on standard output.
    Stdout,
    /// Accept and discard.
    Noop,
}

impl OutputType {
    /// Bounded label.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputType::OtlpGrpc => "otlp_grpc",
            OutputType::OtlpHttp => "otlp_http",
            OutputType::FluentBitHttp => "fluent_bit_http",
            OutputType::Stdout => "stdout",
            OutputType::Noop => "noop",
        }
    }

    /// Whether this output sends to an `endpoint` (OTLP or Fluent Bit HTTP).
    pub const fn has_endpoint(self) -> bool {
        matches!(
            self,
            OutputType::OtlpGrpc | OutputType::OtlpHttp | OutputType::FluentBitHttp
        )
    }

    /// Whether this output sends OTLP to an endpoint.
    pub const fn is_otlp(self) -> bool {
        matches!(self, OutputType::OtlpGrpc | OutputType::OtlpHttp)
    }
}

/// Request compression towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain.
    None,
    /// gzip (the OTLP default for most backends).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

/// One header sent with every export request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
    /// Put in front of the value, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

impl HeaderConfig {
    /// The header `name: prefix value`, as it goes on the wire.
    pub fn new(
        name: impl Into<String>,
        prefix: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            prefix: prefix.into(),
        }
    }
}

/// TLS towards a backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plain text, no TLS (also implied by an `http://` endpoint).
    pub insecure: bool,
    /// Do not verify the server certificate. Loudly logged.
    pub insecure_skip_verify: bool,
    /// PEM file with the CA(s) to trust instead of the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS).
    pub cert_file: Option<PathBuf>,
    /// PEM client key (mTLS).
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host (gRPC also
    /// sends it as SNI).
    pub server_name: Option<String>,
    /// Lowest TLS version offered: `1.2` (when absent) or `1.3`.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version offered: `1.3` (when absent) or `1.2`.
    pub max_version: Option<TlsVersion>,
}

/// A TLS protocol version as written in the file: `"1.2"` or `"1.3"`
/// (quoted or not). Anything else parses to [`TlsVersion::Unknown`], which
/// [`Config::validate`] reports with its field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
    /// Not a version seedgate speaks; a validation error.
    Unknown(String),
}

impl TlsVersion {
    /// The version as written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
            TlsVersion::Unknown(s) => s,
        }
    }

    fn parse(text: &str) -> Self {
        match text.trim() {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => TlsVersion::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a TLS version: 1.2 or 1.3")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(v))
            }
            // `min_version: 1.2` unquoted is a YAML number.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TlsVersion, E> {
                Ok(TlsVersion::parse(&v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// TLS on both OTLP receivers. The files are read at start and re-read when
/// they change on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverTlsConfig {
    /// PEM server certificate chain.
    pub cert_file: PathBuf,
    /// PEM server key.
    pub key_file: PathBuf,
    /// PEM CA(s) for client certificates: when set, every client must
    /// present a certificate signed by one of them.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `1.2` (when absent) or `1.3`.
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
}

/// The output block of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `otlp_grpc`, `otlp_http`, `fluent_bit_http`, `stdout` or `noop`.
    #[serde(rename = "type")]
    pub kind: OutputType,
    /// `http(s)://host:port` for OTLP and Fluent Bit HTTP outputs.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// OTLP/HTTP: the path, default `/v1/<signal>`; Fluent Bit HTTP: the
    /// URI, default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Headers on every request.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    /// `none`, `gzip` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-attempt timeout.
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Credentials: `basic` or `oauth2`; absent: none beyond `headers`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Records and bytes per second towards this backend; absent: unlimited.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// `fluent_bit_http` only: how records are rendered; absent: the
    /// defaults (`json`, no dedot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fluent_bit: Option<FluentBitConfig>,
}

impl OutputConfig {
    /// An output of this kind with every other field at its default.
    pub fn of_kind(kind: OutputType) -> Self {
        Self {
            kind,
            endpoint: None,
            path: None,
            headers: Vec::new(),
            compression: Compression::default(),
            tls: TlsConfig::default(),
            timeout: DEFAULT_EXPORT_TIMEOUT,
            auth: None,
            rate_limit: None,
            fluent_bit: None,
        }
    }
}

fn default_export_timeout() -> Duration {
    DEFAULT_EXPORT_TIMEOUT
}

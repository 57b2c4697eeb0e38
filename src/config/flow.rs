//! Flow control and credentials of one output: `auth`, `rate_limit` and
//! `batch.adaptive_concurrency`.
//!
//! Plain data, like the rest of `config`: serde parses it, `check_auth`,
//! `check_rate_limit` and `check_adaptive` find every problem without
//! I/O (a `password_file` is read when the exporter is built, not here).
//!
//! Credentials are held in [`Secret`]: its `Debug` prints `<redacted>` and it
//! serializes as `<redacted>`, so neither a log line of a config nor a dump
//! of it can carry the value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{Problems, TlsConfig};

/// How long a token request may take.
pub const DEFAULT_OAUTH2_TIMEOUT: Duration = Duration::from_secs(5);
/// How much unused rate a limiter saves up, as time at the configured rate.
pub const DEFAULT_RATE_LIMIT_BURST: Duration = Duration::from_secs(1);
/// The adaptive concurrency floor.
pub const DEFAULT_ARC_MIN: usize = 1;
/// The adaptive concurrency ceiling.
pub const DEFAULT_ARC_MAX: usize = 64;
/// The factor the adaptive limit is multiplied by on back-pressure (Vector's default).
pub const DEFAULT_ARC_DECREASE_RATIO: f64 = 0.9;
/// Weight of the newest round-trip time in the moving average.
pub const DEFAULT_ARC_EWMA_ALPHA: f64 = 0.4;
/// How many standard deviations above the average RTT count as "rising".
pub const DEFAULT_ARC_RTT_DEVIATION_SCALE: f64 = 2.5;
/// The most the ceiling may be.
pub const MAX_ARC_LIMIT: usize = 1024;

// === Secret ===

/// A credential read from the configuration. `Debug` and `Serialize` never
/// show the value; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

// === auth ===

/// How an output authenticates to its backend: exactly one of the kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP basic authentication (`Authorization: Basic ...`).
    Basic(BasicAuthConfig),
    /// An OAuth2 client-credentials token (`Authorization: Bearer ...`).
    Oauth2(Box<OAuth2Config>),
}

/// `auth.basic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The user name.
    pub username: String,
    /// The password; or `password_file`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored), read when
    /// the exporter is built.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret (the
    /// RFC's recommendation).
    #[default]
    Basic,
    /// `client_id` and `client_secret` as form parameters.
    Body,
}

/// `auth.oauth2`: the client-credentials grant (RFC 6749 §4.4), shaped
/// like the OpenTelemetry Collector's `oauth2client` extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint, `http(s)://...`.
    pub token_url: String,
    /// The client identifier.
    pub client_id: String,
    /// The client secret; or `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret, read again for every token request
    /// (so a rotated secret is picked up).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (sent space-separated as `scope`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra form parameters of the token request, e.g. `audience`.
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    /// `basic` (default) or `body`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Bound on one token request.
    #[serde(default = "default_oauth2_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS towards the token endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_oauth2_timeout() -> Duration {
    DEFAULT_OAUTH2_TIMEOUT
}

// === rate_limit ===

/// `rate_limit`: a token bucket per dimension, applied before each send.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Records per second, averaged; absent: no record limit.
    #[serde(default)]
    pub records_per_second: Option<u64>,
    /// Request bytes (before compression) per second; absent: no byte limit.
    #[serde(default)]
    pub bytes_per_second: Option<ByteSize>,
    /// How much unused rate is saved up, as time: `1s` lets one second's
    /// worth go at once after an idle spell. A batch larger than that still
    /// goes, and the ones after it wait until the debt is paid.
    #[serde(default = "default_burst", with = "humantime_serde")]
    pub burst: Duration,
}

fn default_burst() -> Duration {
    DEFAULT_RATE_LIMIT_BURST
}

// === adaptive_concurrency ===

/// `batch.adaptive_concurrency`: AIMD on the number of requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConcurrencyConfig {
    /// Off: `batch.concurrency` is a fixed limit. On: it is the starting limit.
    pub enabled: bool,
    /// The floor.
    pub min: usize,
    /// The ceiling.
    pub max: usize,
    /// The limit is multiplied by this on back-pressure or a rising RTT.
    pub decrease_ratio: f64,
    /// Weight of the newest RTT sample in the moving average (0..1].
    pub ewma_alpha: f64,
    /// Standard deviations above the average RTT that count as rising.
    pub rtt_deviation_scale: f64,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min: DEFAULT_ARC_MIN,
            max: DEFAULT_ARC_MAX,
            decrease_ratio: DEFAULT_ARC_DECREASE_RATIO,
            ewma_alpha: DEFAULT_ARC_EWMA_ALPHA,
            rtt_deviation_scale: DEFAULT_ARC_RTT_DEVIATION_SCALE,
        }
    }
}

// === validation ===

fn check_url(p: &mut Problems, field: String, url: &str) {
    match url.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty()) => {}
        _ => p.push(field, format!("{url:?} must be an http:// or https:// URL")),
    }
}

fn check_one_of(p: &mut Problems, at: &str, names: [&str; 2], given: [bool; 2]) {
    match given {
        [true, true] => p.push(
            format!("{at}.{}", names[0]),
            format!("give {} or {}, not both", names[0], names[1]),
        ),
        [false, false] => p.push(
            format!("{at}.{}", names[0]),
            format!("{} or {} is required", names[0], names[1]),
        ),
        _ => {}
    }
}

/// Problems of `auth` at `at` (e.g. `pipelines[0].output.auth`).
/// `has_authorization_header`: a static header already sets `Authorization`.
pub(super) fn check_auth(
    p: &mut Problems,
    at: &str,
    auth: &AuthConfig,
    has_authorization_header: bool,
) {
    if has_authorization_header {
        p.push(
            at.to_owned(),
            "sets the Authorization header, which headers also set: keep one",
        );
    }
    match auth {
        AuthConfig::Basic(b) => {
            let at = format!("{at}.basic");
            if b.username.is_empty() || b.username.contains(':') {
                p.push(format!("{at}.username"), "must not be empty or contain ':'");
            }
            check_one_of(
                p,
                &at,
                ["password", "password_file"],
                [b.password.is_some(), b.password_file.is_some()],
            );
        }
        AuthConfig::Oauth2(o) => {
            let at = format!("{at}.oauth2");
            check_url(p, format!("{at}.token_url"), &o.token_url);
            if o.client_id.is_empty() {
                p.push(format!("{at}.client_id"), "must not be empty");
            }
            check_one_of(
                p,
                &at,
                ["client_secret", "client_secret_file"],
                [o.client_secret.is_some(), o.client_secret_file.is_some()],
            );
            if o.timeout.is_zero() {
                p.push(format!("{at}.timeout"), "must be greater than 0s");
            }
            for key in o.endpoint_params.keys() {
                if matches!(
                    key.as_str(),
                    "grant_type" | "scope" | "client_id" | "client_secret"
                ) {
                    p.push(
                        format!("{at}.endpoint_params"),
                        format!("{key:?} is set by seedgate itself"),
                    );
                }
            }
        }
    }
}

/// Problems of `rate_limit` at `at`.
pub(super) fn check_rate_limit(p: &mut Problems, at: &str, r: &RateLimitConfig) {
    if r.records_per_second.is_none() && r.bytes_per_second.is_none() {
        p.push(
            at.to_owned(),
            "records_per_second or bytes_per_second is required",
        );
    }
    if r.records_per_second == Some(0) {
        p.push(format!("{at}.records_per_second"), "must be greater than 0");
    }
    if r.bytes_per_second.is_some_and(|b| b.0 == 0) {
        p.push(format!("{at}.bytes_per_second"), "must be greater than 0");
    }
    if r.burst.is_zero() || r.burst > Duration::from_secs(3600) {
        p.push(format!("{at}.burst"), "must be between 1ms and 1h");
    }
}

/// Problems of `adaptive_concurrency` at `at`.
pub(super) fn check_adaptive(p: &mut Problems, at: &str, a: &AdaptiveConcurrencyConfig) {
    if a.min == 0 || a.min > a.max {
        p.push(format!("{at}.min"), "must be between 1 and max");
    }
    if a.max > MAX_ARC_LIMIT {
        p.push(
            format!("{at}.max"),
            format!("must be at most {MAX_ARC_LIMIT}"),
        );
    }
    if !(a.decrease_ratio > 0.0 && a.decrease_ratio < 1.0) {
        p.push(
            format!("{at}.decrease_ratio"),
            "must be between 0 and 1 (exclusive)",
        );
    }
    if !(a.ewma_alpha > 0.0 && a.ewma_alpha <= 1.0) {
        p.push(format!("{at}.ewma_alpha"), "must be in (0, 1]");
    }
    if !(a.rtt_deviation_scale >= 0.0 && a.rtt_deviation_scale <= 100.0) {
        p.push(
            format!("{at}.rtt_deviation_scale"),
            "must be between 0 and 100",
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{assert_problems, parse};

    #[test]
    fn secret_debug_and_serialize_are_redacted() {
        let s = super::Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
        let c = parse(
            "c.yaml",
            "pipelines:\n  - name: a\n    output:\n      type: otlp_http\n      endpoint: http://x:1\n      auth:\n        basic: { username: u, password: hunter2 }\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    }

    #[test]
    fn flow_blocks_parse_and_every_problem_is_named() {
        let ok = "pipelines:\n  - name: a\n    output:\n      type: otlp_grpc\n      endpoint: http://x:1\n      auth:\n        oauth2:\n          token_url: https://idp/token\n          client_id: c\n          client_secret_file: /s\n          scopes: [a, b]\n          endpoint_params: { audience: x }\n      rate_limit: { records_per_second: 100, bytes_per_second: 1MiB }\n    batch:\n      adaptive_concurrency: { enabled: true, max: 8 }\n";
        let c = parse("c.yaml", ok).unwrap();
        let b = c.batch_for(&c.pipelines[0]);
        assert!(b.adaptive_concurrency.enabled);
        assert_eq!(b.adaptive_concurrency.max, 8);
        let rl = c.pipelines[0].output.rate_limit.unwrap();
        assert_eq!(rl.bytes_per_second.unwrap().0, 1024 * 1024);

        let bad = "pipelines:\n  - name: a\n    output:\n      type: otlp_http\n      endpoint: http://x:1\n      headers: [{ name: Authorization, value: x }]\n      auth:\n        basic: { username: u, password: p, password_file: /f }\n      rate_limit: { burst: 0s }\n    batch:\n      adaptive_concurrency: { enabled: true, min: 9, max: 8, decrease_ratio: 1.5 }\n";
        assert_problems(
            bad,
            &[
                "pipelines[0].output.auth: sets the Authorization header",
                "pipelines[0].output.auth.basic.password: give password or password_file, not both",
                "pipelines[0].output.rate_limit: records_per_second or bytes_per_second is required",
                "pipelines[0].output.rate_limit.burst",
                "pipelines[0].batch.adaptive_concurrency.min",
                "pipelines[0].batch.adaptive_concurrency.decrease_ratio",
            ],
        );
        let oauth = "pipelines:\n  - name: a\n    output:\n      type: otlp_http\n      endpoint: http://x:1\n      auth:\n        oauth2: { token_url: ftp://x, client_id: '' }\n";
        assert_problems(
            oauth,
            &[
                "auth.oauth2.token_url",
                "auth.oauth2.client_id",
                "auth.oauth2.client_secret: client_secret or client_secret_file is required",
            ],
        );
    }
}

//! The faults the sink injects, and how one is chosen for a request.

use super::*;

/// The faults the sink injects into its answers. The default injects none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Fraction (0..1) of requests answered with 503 / UNAVAILABLE.
    pub error_rate: f64,
    /// Answer every request with this HTTP status (a 2xx means "accept").
    pub status: Option<u16>,
    /// Seconds for `Retry-After` (with 429/503) and gRPC `RetryInfo`.
    pub retry_after: Option<u64>,
    /// Delay added to every response.
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// When not empty, the faults apply only to these endpoint keys (HTTP
    /// path prefix or gRPC authority): one sink standing in for many
    /// backends can have one of them fail.
    pub only_endpoints: Vec<String>,
    /// Refuse as permanent (400 / `INVALID_ARGUMENT`) every request whose
    /// body (decompressed, raw protobuf or JSON bytes) contains this string,
    /// like a backend refusing a batch for one record it cannot take.
    pub refuse_marker: Option<String>,
}

/// The body of `POST /sink/fault`: replaces the faults, and optionally takes
/// both listeners down for a while. The HTTP port itself goes down too, so a
/// permanent `down` is only available through the [`SinkHandle`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRequest {
    /// See [`Fault::error_rate`].
    pub error_rate: f64,
    /// See [`Fault::status`].
    pub status: Option<u16>,
    /// See [`Fault::retry_after`].
    pub retry_after: Option<u64>,
    /// See [`Fault::latency`].
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// See [`Fault::only_endpoints`].
    pub only_endpoints: Vec<String>,
    /// See [`Fault::refuse_marker`].
    pub refuse_marker: Option<String>,
    /// Close both listeners (and their connections) shortly after answering,
    /// and bind them again after this long.
    #[serde(with = "humantime_serde")]
    pub down_for: Option<Duration>,
}

/// Whether `needle` (not empty) occurs in `haystack`.
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which fault, if any, answers a request: `(HTTP status, retry-after)`.
/// `roll` is a uniform sample in `0..1` compared with the error rate.
pub(super) fn decide_fault(fault: &Fault, roll: f64) -> Option<(u16, Option<u64>)> {
    let status = match fault.status {
        Some(status) if !(200..300).contains(&status) => Some(status),
        _ if roll < fault.error_rate => Some(503),
        _ => None,
    }?;
    let retry_after = fault.retry_after.filter(|_| matches!(status, 429 | 503));
    Some((status, retry_after))
}

/// The gRPC code equivalent to an HTTP status, following the gRPC
/// HTTP-to-gRPC mapping and OTLP's retryable sets (429 and 503 are retryable
/// in OTLP/HTTP; `RESOURCE_EXHAUSTED` and `UNAVAILABLE` are in OTLP/gRPC).
pub fn grpc_code_for_http(status: u16) -> Code {
    match status {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        413 | 429 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        500 => Code::Internal,
        _ => Code::Unknown,
    }
}

//! What became of one export attempt, decided by pure functions of what the
//! backend answered.
//!
//! The OTLP specification says which answers may be retried; this module is
//! the one place that encodes it, so the exporter pool only ever looks at an
//! [`Outcome`] and never at a status code.
//!
//! Invariants:
//! - every function here is pure (no I/O, no clock except the `now` that
//!   [`parse_retry_after`] is handed), so each rule has a table test;
//! - `reason` is always one of the labels listed in the [module
//!   doc](super) (a bounded set: it becomes a metric label);
//! - `detail` is built only from what the *backend* sent (status, message,
//!   a bounded prefix of the body), never from the request or its headers,
//!   so configured credentials cannot leak into logs.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use super::{Outcome, Reason};
use crate::signal::Signal;

/// How many bytes of an error response body end up in `detail`: enough to
/// read the backend's explanation, bounded so a huge HTML error page does
/// not end up in every log line.
pub const DETAIL_BODY_LIMIT: usize = 512;

// === HTTP ===

/// Maps one OTLP/HTTP response to an [`Outcome`], per the OTLP/HTTP spec.
///
/// - 2xx: [`Outcome::Accepted`], with `partial_success` read from the
///   protobuf `body` (an empty body means everything was accepted);
/// - 429, 502, 503, 504: [`Outcome::Retryable`], after the `Retry-After`
///   header when it is present and valid (delta-seconds or HTTP-date);
/// - anything else: [`Outcome::Permanent`].
pub fn http_outcome(
    signal: Signal,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    http_outcome_at(signal, status, headers, body, SystemTime::now())
}

/// [`http_outcome`] with the clock passed in, so an HTTP-date `Retry-After`
/// can be tested exactly.
pub fn http_outcome_at(
    signal: Signal,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Outcome {
    if status.is_success() {
        return match decode_partial_success(signal, body) {
            Ok((rejected, message)) => Outcome::Accepted { rejected, message },
            // The backend said 2xx: the data is in. Retrying because we cannot
            // read its optional response would only duplicate it, so keep the
            // success and say what we could not read.
            Err(e) => Outcome::Accepted {
                rejected: 0,
                message: format!(
                    "response body is not a protobuf Export{}ServiceResponse: {e}",
                    proto_name(signal)
                ),
            },
        };
    }
    let detail = format!("HTTP {}: {}", status.as_u16(), body_excerpt(body));
    let reason = Reason::of_http(status.as_u16());
    if reason.http_retryable() {
        let after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        return Outcome::Retryable {
            after,
            reason,
            detail,
        };
    }
    Outcome::Permanent { reason, detail }
}

/// Reads a `Retry-After` value: delta-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past
/// means "now" (zero). Anything unreadable is `None`: the pool then uses its
/// own backoff, which is what a client without the header would do.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads `partial_success` from a protobuf `Export*ServiceResponse` of
/// `signal`: `(rejected, message)`. An empty body is `(0, "")`. A negative
/// count (the field is `int64`) is read as 0: it can only be a backend bug.
///
/// # Errors
/// When `body` is not a valid encoding of the response message.
pub fn decode_partial_success(
    signal: Signal,
    body: &[u8],
) -> Result<(u64, String), prost::DecodeError> {
    use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
    let (rejected, message) = match signal {
        Signal::Logs => logs::v1::ExportLogsServiceResponse::decode(body)?
            .partial_success
            .map_or((0, String::new()), |p| {
                (p.rejected_log_records, p.error_message)
            }),
        Signal::Metrics => metrics::v1::ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .map_or((0, String::new()), |p| {
                (p.rejected_data_points, p.error_message)
            }),
        Signal::Traces => trace::v1::ExportTraceServiceResponse::decode(body)?
            .partial_success
            .map_or((0, String::new()), |p| (p.rejected_spans, p.error_message)),
    };
    Ok((u64::try_from(rejected).unwrap_or(0), message))
}

fn proto_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "Logs",
        Signal::Metrics => "Metrics",
        Signal::Traces => "Trace",
    }
}

/// The first [`DETAIL_BODY_LIMIT`] bytes of an error body as one line of
/// text (binary and control characters replaced), for `detail`.
fn body_excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(DETAIL_BODY_LIMIT)];
    let mut text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > DETAIL_BODY_LIMIT {
        text.push('…');
    }
    if text.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

// === gRPC ===

/// Maps a gRPC status to an [`Outcome`], per the OTLP/gRPC spec.
///
/// - `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
///   `UNAVAILABLE`, `DATA_LOSS`: [`Outcome::Retryable`];
/// - `RESOURCE_EXHAUSTED`: retryable only when the status carries a
///   `google.rpc.RetryInfo` detail (the server says it will recover), else
///   permanent;
/// - every other code: [`Outcome::Permanent`] (`OK` is [`Outcome::Accepted`]).
///
/// A `RetryInfo` delay, when present, becomes `after` for every retryable code.
pub fn grpc_outcome(status: &tonic::Status) -> Outcome {
    let code = status.code();
    let detail = format!("{code:?}: {}", one_line(status.message()));
    let retry_info = status.get_details_retry_info();
    let after = retry_info.as_ref().and_then(|r| r.retry_delay);
    match code {
        Code::Ok => Outcome::Accepted {
            rejected: 0,
            message: String::new(),
        },
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retryable {
            after,
            reason: Reason::Grpc(code),
            detail,
        },
        Code::ResourceExhausted if retry_info.is_some() => Outcome::Retryable {
            after,
            reason: Reason::Grpc(code),
            detail,
        },
        _ => Outcome::Permanent {
            reason: Reason::Grpc(code),
            detail,
        },
    }
}

/// A backend message as one bounded line.
pub(crate) fn one_line(message: &str) -> String {
    body_excerpt(message.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

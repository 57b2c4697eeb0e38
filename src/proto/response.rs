//! `Export{Logs,Metrics,Trace}ServiceResponse` bodies, protobuf and JSON.
//!
//! Why this exists: the receivers answer every export with a response whose
//! only content is the optional `partial_success`; building it through the
//! generated types keeps the field numbers and JSON names exact for all
//! three signals in one place.
//!
//! Invariant: `partial_success` is present only when something was rejected
//! or there is a message, so a full success is the empty message (protobuf:
//! zero bytes, JSON: `{}`) as the OTLP spec asks.

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse},
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
};
use prost::Message;

use crate::signal::Signal;

/// The response as one of the three generated types.
enum Response {
    Logs(ExportLogsServiceResponse),
    Metrics(ExportMetricsServiceResponse),
    Traces(ExportTraceServiceResponse),
}

fn build(signal: Signal, rejected: u64, message: &str) -> Response {
    let partial = rejected > 0 || !message.is_empty();
    // The OTLP field is int64; a count above i64::MAX cannot happen in
    // practice, saturate rather than wrap to a negative number.
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    let error_message = message.to_owned();
    match signal {
        Signal::Logs => Response::Logs(ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message,
            }),
        }),
        Signal::Metrics => Response::Metrics(ExportMetricsServiceResponse {
            partial_success: partial.then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message,
            }),
        }),
        Signal::Traces => Response::Traces(ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        }),
    }
}

/// Protobuf `Export*ServiceResponse`; `partial_success` only when
/// `rejected > 0` or `message` is non-empty.
pub fn encode(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    match build(signal, rejected, message) {
        Response::Logs(r) => r.encode_to_vec(),
        Response::Metrics(r) => r.encode_to_vec(),
        Response::Traces(r) => r.encode_to_vec(),
    }
}

/// The same response as OTLP/JSON (`{}` for a full success).
pub fn encode_json(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    let partial = match build(signal, rejected, message) {
        Response::Logs(r) => r.partial_success.map(|p| {
            (
                "rejectedLogRecords",
                p.rejected_log_records,
                p.error_message,
            )
        }),
        Response::Metrics(r) => r.partial_success.map(|p| {
            (
                "rejectedDataPoints",
                p.rejected_data_points,
                p.error_message,
            )
        }),
        Response::Traces(r) => r
            .partial_success
            .map(|p| ("rejectedSpans", p.rejected_spans, p.error_message)),
    };
    // Built by hand rather than with the crate's serde: the generated
    // response types serialize `int64` as a JSON number and always write
    // `errorMessage`, while OTLP/JSON wants int64 as a string.
    let value = match partial {
        None => serde_json::json!({}),
        Some((name, rejected, error_message)) => {
            let mut p = serde_json::Map::new();
            if rejected != 0 {
                p.insert(name.to_owned(), rejected.to_string().into());
            }
            if !error_message.is_empty() {
                p.insert("errorMessage".to_owned(), error_message.into());
            }
            serde_json::json!({ "partialSuccess": p })
        }
    };
    value.to_string().into_bytes()
}

#[cfg(test)]
// Tests may panic: that is how they fail.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn full_success_is_empty() {
        for signal in Signal::ALL {
            assert!(encode(signal, 0, "").is_empty());
            assert_eq!(encode_json(signal, 0, ""), b"{}");
        }
    }

    #[test]
    fn partial_success_round_trips_through_prost() {
        let body = encode(Signal::Logs, 3, "queue full");
        let r = ExportLogsServiceResponse::decode(body.as_slice()).unwrap();
        let p = r.partial_success.unwrap();
        assert_eq!(
            (p.rejected_log_records, p.error_message.as_str()),
            (3, "queue full")
        );

        let body = encode(Signal::Metrics, 0, "warning only");
        let r = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
        let p = r.partial_success.unwrap();
        assert_eq!(
            (p.rejected_data_points, p.error_message.as_str()),
            (0, "warning only")
        );

        let body = encode(Signal::Traces, 7, "");
        let r = ExportTraceServiceResponse::decode(body.as_slice()).unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_spans, 7);
    }

    #[test]
    fn json_uses_otlp_names_and_int64_strings() {
        let v: serde_json::Value =
            serde_json::from_slice(&encode_json(Signal::Traces, 2, "bad span")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad span"}})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode_json(Signal::Metrics, 5, "")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"partialSuccess": {"rejectedDataPoints": "5"}})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode_json(Signal::Logs, 0, "why")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"partialSuccess": {"errorMessage": "why"}})
        );
    }
}

use super::*;
use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
use tonic_types::{ErrorDetails, StatusExt};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// (outcome kind, reason, after): what a table row checks.
type Summary = (&'static str, &'static str, Option<Duration>);

fn kind(o: &Outcome) -> Summary {
    match o {
        Outcome::Accepted { .. } => ("accepted", "", None),
        Outcome::Retryable { after, reason, .. } => ("retryable", reason.as_str(), *after),
        Outcome::Permanent { reason, .. } => ("permanent", reason.as_str(), None),
    }
}

#[test]
fn content_refusals_are_split_envelope_refusals_are_not() {
    let none = HeaderMap::new();
    for (code, split) in [
        (400, true),
        (413, true),
        (422, true),
        (500, true),
        (501, true),
        (401, false),
        (403, false),
        (404, false),
        (405, false),
        (415, false),
        (301, false),
    ] {
        let o = http_outcome(
            Signal::Logs,
            StatusCode::from_u16(code).unwrap(),
            &none,
            b"",
        );
        let Outcome::Permanent { reason, .. } = o else {
            panic!("{code} is permanent");
        };
        assert_eq!(reason.about_content(), split, "HTTP {code}");
    }
    for (code, split) in [
        (Code::InvalidArgument, true),
        (Code::ResourceExhausted, true),
        (Code::Internal, true),
        (Code::Unknown, true),
        (Code::FailedPrecondition, true),
        (Code::Unauthenticated, false),
        (Code::PermissionDenied, false),
        (Code::NotFound, false),
        (Code::Unimplemented, false),
    ] {
        let Outcome::Permanent { reason, .. } = grpc_outcome(&tonic::Status::new(code, "x")) else {
            panic!("{code:?} is permanent");
        };
        assert_eq!(reason.about_content(), split, "{code:?}");
    }
    // seedgate's own permanent errors are never split.
    assert!(!Reason::Encode.about_content());
}

#[test]
fn http_status_classes() {
    let none = HeaderMap::new();
    let table: &[(u16, &str, &str)] = &[
        (200, "accepted", ""),
        (202, "accepted", ""),
        (204, "accepted", ""),
        (429, "retryable", "http_429"),
        (502, "retryable", "http_502"),
        (503, "retryable", "http_503"),
        (504, "retryable", "http_504"),
        (400, "permanent", "http_400"),
        (401, "permanent", "http_401"),
        (403, "permanent", "http_403"),
        (404, "permanent", "http_404"),
        (405, "permanent", "http_405"),
        (408, "permanent", "http_4xx"),
        (413, "permanent", "http_413"),
        (415, "permanent", "http_415"),
        (500, "permanent", "http_500"),
        (501, "permanent", "http_5xx"),
        (505, "permanent", "http_5xx"),
        (301, "permanent", "http_other"),
        (304, "permanent", "http_other"),
    ];
    for &(code, want_kind, want_reason) in table {
        let status = StatusCode::from_u16(code).unwrap();
        let got = http_outcome(Signal::Logs, status, &none, b"");
        assert_eq!(kind(&got), (want_kind, want_reason, None), "status {code}");
    }
}

#[test]
fn http_retry_after_seconds_and_date() {
    let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
    let table: &[(u16, &str, Option<Duration>)] = &[
        (503, "7", Some(Duration::from_secs(7))),
        (429, " 0 ", Some(Duration::ZERO)),
        (
            502,
            "Wed, 21 Oct 2015 07:29:30 GMT",
            Some(Duration::from_secs(90)),
        ),
        (504, "Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO)),
        (503, "soon", None),
        (503, "-5", None),
        (503, "1.5", None),
    ];
    for &(code, value, want) in table {
        let h = headers(&[("retry-after", value)]);
        let got = http_outcome_at(
            Signal::Traces,
            StatusCode::from_u16(code).unwrap(),
            &h,
            b"",
            now,
        );
        match got {
            Outcome::Retryable { after, .. } => {
                assert_eq!(after, want, "{code} Retry-After {value:?}")
            }
            other => panic!("{code}: expected retryable, got {other:?}"),
        }
    }
    // A permanent status ignores Retry-After: it is never retried.
    let h = headers(&[("retry-after", "3")]);
    let got = http_outcome_at(Signal::Logs, StatusCode::BAD_REQUEST, &h, b"", now);
    assert_eq!(kind(&got), ("permanent", "http_400", None));
}

#[test]
fn http_success_reads_partial_success_per_signal() {
    let logs = logs::v1::ExportLogsServiceResponse {
        partial_success: Some(logs::v1::ExportLogsPartialSuccess {
            rejected_log_records: 3,
            error_message: "too old".into(),
        }),
    }
    .encode_to_vec();
    let metrics = metrics::v1::ExportMetricsServiceResponse {
        partial_success: Some(metrics::v1::ExportMetricsPartialSuccess {
            rejected_data_points: 4,
            error_message: String::new(),
        }),
    }
    .encode_to_vec();
    let traces = trace::v1::ExportTraceServiceResponse {
        partial_success: Some(trace::v1::ExportTracePartialSuccess {
            rejected_spans: -1,
            error_message: "odd".into(),
        }),
    }
    .encode_to_vec();
    let table: Vec<(Signal, &[u8], Outcome)> = vec![
        (
            Signal::Logs,
            &logs,
            Outcome::Accepted {
                rejected: 3,
                message: "too old".into(),
            },
        ),
        (
            Signal::Metrics,
            &metrics,
            Outcome::Accepted {
                rejected: 4,
                message: String::new(),
            },
        ),
        (
            Signal::Traces,
            &traces,
            Outcome::Accepted {
                rejected: 0,
                message: "odd".into(),
            },
        ),
        (
            Signal::Logs,
            b"",
            Outcome::Accepted {
                rejected: 0,
                message: String::new(),
            },
        ),
    ];
    let none = HeaderMap::new();
    for (signal, body, want) in table {
        assert_eq!(
            http_outcome(signal, StatusCode::OK, &none, body),
            want,
            "{signal}"
        );
    }
}

#[test]
fn http_success_with_unreadable_body_is_still_accepted() {
    let got = http_outcome(
        Signal::Logs,
        StatusCode::OK,
        &HeaderMap::new(),
        b"\xff\xff\xff",
    );
    match got {
        Outcome::Accepted {
            rejected: 0,
            message,
        } => {
            assert!(message.contains("ExportLogsServiceResponse"), "{message}")
        }
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[test]
fn http_error_detail_is_bounded_single_line() {
    let body = format!("line one\nline two{}", "x".repeat(4 * DETAIL_BODY_LIMIT));
    let got = http_outcome(
        Signal::Logs,
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        body.as_bytes(),
    );
    let Outcome::Permanent { detail, .. } = got else {
        panic!("expected permanent")
    };
    assert!(
        detail.starts_with("HTTP 400: line one line two"),
        "{detail}"
    );
    assert!(!detail.contains('\n'));
    assert!(detail.len() < DETAIL_BODY_LIMIT + 32, "{}", detail.len());
}

#[test]
fn grpc_codes() {
    let table: &[(Code, &str, &str)] = &[
        (Code::Ok, "accepted", ""),
        (Code::Cancelled, "retryable", "grpc_cancelled"),
        (
            Code::DeadlineExceeded,
            "retryable",
            "grpc_deadline_exceeded",
        ),
        (Code::Aborted, "retryable", "grpc_aborted"),
        (Code::OutOfRange, "retryable", "grpc_out_of_range"),
        (Code::Unavailable, "retryable", "grpc_unavailable"),
        (Code::DataLoss, "retryable", "grpc_data_loss"),
        (
            Code::ResourceExhausted,
            "permanent",
            "grpc_resource_exhausted",
        ),
        (Code::Unknown, "permanent", "grpc_unknown"),
        (Code::InvalidArgument, "permanent", "grpc_invalid_argument"),
        (Code::NotFound, "permanent", "grpc_not_found"),
        (Code::AlreadyExists, "permanent", "grpc_already_exists"),
        (
            Code::PermissionDenied,
            "permanent",
            "grpc_permission_denied",
        ),
        (
            Code::FailedPrecondition,
            "permanent",
            "grpc_failed_precondition",
        ),
        (Code::Unimplemented, "permanent", "grpc_unimplemented"),
        (Code::Internal, "permanent", "grpc_internal"),
        (Code::Unauthenticated, "permanent", "grpc_unauthenticated"),
    ];
    for &(code, want_kind, want_reason) in table {
        let got = grpc_outcome(&tonic::Status::new(code, "boom"));
        assert_eq!(kind(&got), (want_kind, want_reason, None), "{code:?}");
    }
}

#[test]
fn grpc_retry_info_present_and_absent() {
    let delay = Duration::from_millis(1500);
    let with = |code| {
        tonic::Status::with_error_details(
            code,
            "slow down",
            ErrorDetails::with_retry_info(Some(delay)),
        )
    };
    let table: Vec<(tonic::Status, Summary)> = vec![
        (
            with(Code::ResourceExhausted),
            ("retryable", "grpc_resource_exhausted", Some(delay)),
        ),
        (
            with(Code::Unavailable),
            ("retryable", "grpc_unavailable", Some(delay)),
        ),
        // RetryInfo does not make a permanent code retryable.
        (
            with(Code::InvalidArgument),
            ("permanent", "grpc_invalid_argument", None),
        ),
        (
            tonic::Status::with_error_details(
                Code::ResourceExhausted,
                "no delay given",
                ErrorDetails::with_retry_info(None),
            ),
            ("retryable", "grpc_resource_exhausted", None),
        ),
        (
            tonic::Status::resource_exhausted("quota, no retry info"),
            ("permanent", "grpc_resource_exhausted", None),
        ),
    ];
    for (status, want) in table {
        assert_eq!(kind(&grpc_outcome(&status)), want, "{status:?}");
    }
}

#[test]
fn grpc_detail_carries_code_and_message() {
    let got = grpc_outcome(&tonic::Status::invalid_argument("bad\nrecord"));
    let Outcome::Permanent { detail, .. } = got else {
        panic!("expected permanent")
    };
    assert_eq!(detail, "InvalidArgument: bad record");
}

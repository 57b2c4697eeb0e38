use super::*;

#[test]
fn otlp_paths_with_and_without_prefix() {
    assert_eq!(
        parse_otlp_path("/v1/logs"),
        Some((Signal::Logs, "/".to_owned()))
    );
    assert_eq!(
        parse_otlp_path("/shoot--p--a/v1/metrics"),
        Some((Signal::Metrics, "/shoot--p--a".to_owned()))
    );
    assert_eq!(
        parse_otlp_path("/a/b/v1/traces"),
        Some((Signal::Traces, "/a/b".to_owned()))
    );
    assert_eq!(parse_otlp_path("/v1/log"), None);
    assert_eq!(parse_otlp_path("/sink/stats"), None);
}

#[test]
fn http_status_maps_to_grpc_code() {
    let table = [
        (200, Code::Ok),
        (400, Code::InvalidArgument),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::NotFound),
        (413, Code::ResourceExhausted),
        (429, Code::ResourceExhausted),
        (500, Code::Internal),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::DeadlineExceeded),
        (418, Code::Unknown),
    ];
    for (status, code) in table {
        assert_eq!(grpc_code_for_http(status), code, "HTTP {status}");
    }
}

#[test]
fn refuse_marker_matches_raw_bytes() {
    assert!(contains(b"\x0a\x03POISON\x12", b"POISON"));
    assert!(!contains(b"POISO", b"POISON"));
    // An empty marker refuses nothing.
    assert!(!contains(b"anything", b""));
}

#[test]
fn fault_decision() {
    let none = Fault::default();
    assert_eq!(decide_fault(&none, 0.0), None);
    let rate = Fault {
        error_rate: 0.5,
        retry_after: Some(2),
        ..Fault::default()
    };
    assert_eq!(decide_fault(&rate, 0.49), Some((503, Some(2))));
    assert_eq!(decide_fault(&rate, 0.5), None);
    let status = Fault {
        status: Some(500),
        retry_after: Some(2),
        ..Fault::default()
    };
    // Retry-After only goes with the retryable statuses.
    assert_eq!(decide_fault(&status, 0.99), Some((500, None)));
    let ok = Fault {
        status: Some(200),
        ..Fault::default()
    };
    assert_eq!(decide_fault(&ok, 0.99), None);
}

#[test]
fn verification_counts_missing_duplicates_unexpected() {
    let acked = AckedSet::from_ranges([(0, 9)]);
    let mut seqs: HashMap<u64, u32> = (0..8).map(|s| (s, 1)).collect();
    seqs.insert(3, 3);
    seqs.insert(42, 1);
    let v = verify_seqs(&seqs, &acked);
    assert_eq!(
        (
            v.expected,
            v.received,
            v.missing,
            v.duplicates,
            v.unexpected
        ),
        (10, 9, 2, 2, 1)
    );
    assert_eq!(v.missing_sample, vec![8, 9]);
    assert!(!v.is_ok());
}

#[test]
fn gzip_and_zstd_bodies_decompress() {
    use std::io::Write as _;
    let plain = b"hello otlp".repeat(100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).expect("gzip");
    let gz = gz.finish().expect("gzip finish");
    let zs = zstd::encode_all(&plain[..], 1).expect("zstd");
    assert_eq!(decompress(Some("gzip"), gz.into()).expect("gunzip"), plain);
    assert_eq!(decompress(Some("zstd"), zs.into()).expect("unzstd"), plain);
    assert_eq!(
        decompress(None, plain.clone().into()).expect("identity"),
        plain
    );
    assert!(decompress(Some("br"), Bytes::new()).is_err());
    assert!(decompress(Some("gzip"), Bytes::from_static(b"nope")).is_err());
}

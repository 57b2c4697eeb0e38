use super::*;

#[test]
fn embedded_default_parses_and_has_a_stdout_pipeline() {
    let c = embedded_default();
    assert_eq!(c.pipelines.len(), 1);
    assert_eq!(c.pipelines[0].output.kind, OutputType::Stdout);
    assert_eq!(c.receivers.grpc.listen, DEFAULT_GRPC_LISTEN);
}

#[test]
fn max_value_depth_stays_where_backends_decode() {
    for bad in [0, crate::proto::MAX_VALUE_DEPTH + 1] {
        assert_problems(
            &format!("receivers:\n  max_value_depth: {bad}\n"),
            &["c.yaml:2: receivers.max_value_depth: must be 1 to 30"],
        );
    }
    let ok = parse("c.yaml", "receivers:\n  max_value_depth: 30\n").unwrap();
    assert_eq!(ok.receivers.max_value_depth, 30);
}

#[test]
fn unknown_field_is_a_parse_error_with_line() {
    let err = parse("c.yaml", "storage:\n  data_dir: /x\n  durabilty: none\n").unwrap_err();
    match err {
        ConfigError::Parse { line, message, .. } => {
            assert_eq!(line, Some(3), "{message}");
            assert!(message.contains("durabilty"), "{message}");
        }
        other => panic!("expected parse error, got {other}"),
    }
}

#[test]
fn every_problem_is_reported_with_field_and_line() {
    let text = "\
pipelines:
  - name: a
    output:
      type: otlp_grpc
  - name: a
    output:
      type: otlp_http
      endpoint: ftp://x
";
    let err = parse("c.yaml", text).unwrap_err();
    let rendered = err.to_string();
    assert!(
        rendered.contains("c.yaml:3: pipelines[0].output.endpoint: is required"),
        "{rendered}"
    );
    assert!(
        rendered.contains("c.yaml:5: pipelines[1].name"),
        "{rendered}"
    );
    assert!(
        rendered.contains("c.yaml:8: pipelines[1].output.endpoint"),
        "{rendered}"
    );
}

fn grpc_output_with(tls: &str) -> String {
    format!(
        "pipelines:\n  - name: a\n    output:\n      type: otlp_grpc\n      endpoint: https://b:4317\n      tls:\n{tls}"
    )
}

#[test]
fn tls_versions_read_quoted_or_not() {
    let c = parse(
        "c.yaml",
        &grpc_output_with("        min_version: 1.2\n        max_version: \"1.3\"\n"),
    )
    .unwrap();
    let tls = &c.pipelines[0].output.tls;
    assert_eq!(tls.min_version, Some(TlsVersion::Tls12));
    assert_eq!(tls.max_version, Some(TlsVersion::Tls13));
    let c = parse(
        "c.yaml",
        &grpc_output_with("        min_version: \"1.3\"\n        max_version: 1.3\n"),
    )
    .unwrap();
    assert_eq!(
        c.pipelines[0].output.tls.min_version,
        Some(TlsVersion::Tls13)
    );
}

#[test]
fn unknown_tls_version_names_the_field_and_line() {
    let err = parse(
        "c.yaml",
        &grpc_output_with("        min_version: 1.1\n        max_version: tls1.4\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("c.yaml:7: pipelines[0].output.tls.min_version: \"1.1\" is not a TLS version"),
        "{err}"
    );
    assert!(
        err.contains("c.yaml:8: pipelines[0].output.tls.max_version: \"tls1.4\""),
        "{err}"
    );
}

#[test]
fn tls_min_version_above_max_is_refused() {
    let err = parse(
        "c.yaml",
        &grpc_output_with("        min_version: 1.3\n        max_version: 1.2\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pipelines[0].output.tls.min_version: 1.3 is above max_version 1.2"),
        "{err}"
    );
}

#[test]
fn receiver_tls_is_checked() {
    let err = parse(
        "c.yaml",
        "receivers:\n  tls:\n    cert_file: /s.pem\n    key_file: \"\"\n    min_version: 1.0\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("receivers.tls.key_file: must not be empty"),
        "{err}"
    );
    assert!(err.contains("receivers.tls.min_version: \"1\""), "{err}");
    let c = parse(
            "c.yaml",
            "receivers:\n  tls:\n    cert_file: /s.pem\n    key_file: /s.key\n    client_ca_file: /ca.pem\n    min_version: 1.3\n",
        )
        .unwrap();
    let tls = c.into_inner().receivers.tls.unwrap();
    assert_eq!(tls.client_ca_file, Some(PathBuf::from("/ca.pem")));
    assert_eq!(tls.min_version, Some(TlsVersion::Tls13));
}

#[test]
fn durations_and_sizes_read_as_humans_write_them() {
    let c = parse(
        "c.yaml",
        "queue:\n  max_bytes: 64MiB\n  when_full: drop_newest\nbatch:\n  timeout: 50ms\n",
    )
    .unwrap();
    assert_eq!(c.queue.max_bytes.0, 64 * 1024 * 1024);
    assert_eq!(c.queue.when_full, WhenFull::DropNewest);
    assert_eq!(c.batch.timeout, Duration::from_millis(50));
}

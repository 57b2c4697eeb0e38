//! The real OpenTelemetry Python SDK as a sender: `tests/otel_sdk_client.py`
//! with the packages pinned in `tests/requirements.txt` (`scripts/test.sh`
//! installs them). Without them the tests that use it fail, they do not
//! skip.

use std::path::Path;
use std::process::{Command, Output};

/// What to do when the SDK is missing.
pub const INSTALL_HINT: &str = "the OpenTelemetry Python SDK is needed: run `python3 -m pip install -r tests/requirements.txt` (scripts/test.sh does)";

/// Data points of the client's counter (4 attribute sets) and gauge (3).
pub const METRIC_POINTS: u64 = 7;

/// Runs `python3 args...` on a blocking thread; fails with the install hint
/// when python3 itself cannot be started.
pub async fn python3(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PYTHONUNBUFFERED", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}); {INSTALL_HINT}"))
    })
    .await
    .unwrap()
}

/// Fails (never skips) when the SDK packages are not importable.
pub async fn require_sdk() {
    let out = python3(vec![
        "-c".into(),
        "import requests, opentelemetry.sdk, opentelemetry.proto, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{INSTALL_HINT}\npython3 says:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The client sends `count` log records, `count` spans and
/// [`METRIC_POINTS`] data points to `endpoint` over `protocol` (`grpc` or
/// `http`), under `k8s.namespace.name=namespace`. It exits 0 only if the
/// SDK's exporters reported every export a success.
pub async fn send(endpoint: &str, protocol: &str, count: u64, namespace: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel_sdk_client.py");
    python3(vec![
        script.display().to_string(),
        "--endpoint".into(),
        endpoint.into(),
        "--protocol".into(),
        protocol.into(),
        "--count".into(),
        count.to_string(),
        "--namespace".into(),
        namespace.into(),
    ])
    .await
}

//! Credentials, compression and flow control through a real seedgate
//! process: basic, header and OAuth2 auth against a sink that checks them
//! (and a wrong password that must end as a counted permanent 401), every
//! compression arriving decodable, the rate limit holding within 10%, the
//! adaptive concurrency limit following the backend, and a backend refusing
//! one client's records costing nobody else theirs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::config::{Pipeline, TestConfig, basic_auth, basic_auth_file, ms, oauth2};
use crate::support::{self, Seedgate, eventually};
use base64::Engine as _;
use seedgate::config::{Compression, Secret};
use seedgate::signal::Signal;
use seedgate::tools::sink::{Fault, SinkHandle};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Panics if any of `secrets` is in seedgate's log or its `/metrics`.
async fn assert_secrets_absent(sg: &Seedgate, secrets: &[&str]) {
    let log = sg.log();
    let metrics = sg.metrics().await;
    for s in secrets {
        assert!(!log.contains(s), "{s:?} leaked into the log:\n{log}");
        assert!(!metrics.contains(s), "{s:?} leaked into /metrics");
    }
}

/// Records the sink took at endpoint `key` (HTTP path prefix or gRPC authority).
fn records_at(sink: &SinkHandle, key: &str) -> u64 {
    sink.stats().endpoints.get(key).map_or(0, |e| e.records)
}

/// Starts seedgate in `dir` with `config`, loads `count` records in requests of `per_request` over gRPC and
/// checks they were all acknowledged; returns it and the acked file.
async fn start_loaded(
    dir: &Path,
    config: TestConfig,
    count: u64,
    per_request: u64,
) -> (Seedgate, PathBuf) {
    let sg = Seedgate::start(dir, &config.yaml()).await;
    let acked = dir.join("acked");
    let (count_flag, per_request_flag) = (count.to_string(), per_request.to_string());
    let summary = support::load(
        sg.grpc_endpoint(),
        &[
            "--count",
            &count_flag,
            "--records-per-request",
            &per_request_flag,
        ],
        Some(&acked),
    )
    .await;
    assert_eq!(summary.records_acked, count);
    (sg, acked)
}

/// Basic auth (password from a file) over HTTP and a static bearer header
/// over gRPC get through a sink that checks `Authorization`; a wrong
/// password is refused with 401, which is permanent: no retry, the batch
/// dropped and counted. No credential reaches the log or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_header_auth_get_through_and_a_wrong_password_is_a_counted_401() {
    let (dir, sink) = support::with_backend().await;
    sink.set_authorization(vec![
        format!("Basic {}", b64("seedgate:right-pw-4711")),
        "Bearer static-tok-0815".to_owned(),
    ]);
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, "right-pw-4711\n").unwrap();
    let http = sink.http_endpoint();
    let logs = [Signal::Logs];
    let config = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .pipeline(
            Pipeline::http("basic-http", &format!("{http}/basic"))
                .signals(&logs)
                .auth(basic_auth_file("seedgate", &pw_file)),
        )
        .pipeline(
            Pipeline::grpc("header-grpc", &sink.grpc_endpoint())
                .signals(&logs)
                .header("authorization", "Bearer ", "static-tok-0815"),
        )
        .pipeline(
            Pipeline::http("wrong-http", &format!("{http}/wrong"))
                .signals(&logs)
                .auth(basic_auth("seedgate", "wrong-pw-9999")),
        );
    let (sg, _) = start_loaded(dir.path(), config, 1000, 50).await;
    let grpc_key = sink.grpc_addr().to_string();
    eventually(
        "both authorized pipelines delivered everything",
        async || {
            (records_at(&sink, "/basic") >= 1000 && records_at(&sink, &grpc_key) >= 1000)
                .then_some(())
        },
    )
    .await;
    let wrong = ["destination=\"wrong-http\""];
    eventually("the refused batches dropped as permanent", async || {
        let dropped = sg
            .metric_or_zero(
                "seedgate_exporter_dropped_records_total",
                &[wrong[0], "reason=\"permanent\""],
            )
            .await;
        (dropped >= 1000.0).then_some(())
    })
    .await;
    let failed_401 = sg
        .metric_or_zero(
            "seedgate_exporter_failed_requests_total",
            &[wrong[0], "reason=\"http_401\""],
        )
        .await;
    assert!(failed_401 >= 1.0, "401s counted: {failed_401}");
    let retries = sg
        .metric_or_zero("seedgate_exporter_retries_total", &wrong)
        .await;
    assert_eq!(retries, 0.0, "a 401 is never retried");
    assert_eq!(records_at(&sink, "/wrong"), 0);
    assert!(sink.stats().requests_unauthorized >= 1);
    assert_secrets_absent(
        &sg,
        &[
            "right-pw-4711",
            "wrong-pw-9999",
            "static-tok-0815",
            &b64("seedgate:right-pw-4711"),
            &b64("seedgate:wrong-pw-9999"),
        ],
    )
    .await;
}

/// A client-credentials token endpoint run by the test: it checks the
/// client's credentials (HTTP basic), issues `expires_in: 2` tokens, counts
/// the requests, and tells the sink which tokens are valid: those issued
/// within their 2 s lifetime plus a second of grace (two exporters refresh
/// on their own schedules, so "the newest two" would revoke a live token).
#[derive(Clone)]
struct Idp {
    hits: Arc<AtomicU64>,
    /// Every token issued, with when.
    valid: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
    sink: Arc<SinkHandle>,
}

impl Idp {
    async fn start(sink: Arc<SinkHandle>) -> (String, Idp) {
        let idp = Idp {
            hits: Arc::default(),
            valid: Arc::default(),
            sink,
        };
        let state = idp.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |headers: axum::http::HeaderMap, form: String| {
                let s = state.clone();
                async move { s.issue(&headers, &form) }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (format!("http://{addr}/token"), idp)
    }

    fn issue(
        &self,
        headers: &axum::http::HeaderMap,
        form: &str,
    ) -> (axum::http::StatusCode, String) {
        let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let want = format!("Basic {}", b64("seedgate-client:oauth-secret-31337"));
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(want.as_str()) || !form.contains("grant_type=client_credentials") {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client"}"#.to_owned(),
            );
        }
        let token = format!("oauth-token-{n}-{}", rand::random::<u32>());
        // The sink learns the new list under the lock: two exporters
        // refreshing at once must not overwrite each other's token.
        let mut valid = self.valid.lock().unwrap();
        let now = std::time::Instant::now();
        valid.push((format!("Bearer {token}"), now));
        let accepted = valid
            .iter()
            .filter(|(_, at)| now.duration_since(*at) < Duration::from_secs(3))
            .map(|(t, _)| t.clone())
            .collect();
        self.sink.set_authorization(accepted);
        drop(valid);
        let body =
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 2});
        (axum::http::StatusCode::OK, body.to_string())
    }
}

/// OAuth2 over both transports for about 6 s with 2 s tokens: everything
/// acknowledged arrives, each exporter refreshed its token (the endpoint
/// saw more requests than exporters, but far fewer than exports), nothing
/// was refused, and neither the secret nor a token is in the log or
/// `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_fetched_cached_and_refreshed() {
    let (dir, sink) = support::with_backend().await;
    let sink = Arc::new(sink);
    let (token_url, idp) = Idp::start(Arc::clone(&sink)).await;
    sink.set_authorization(vec!["Bearer nothing-issued-yet".to_owned()]);
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, "oauth-secret-31337").unwrap();
    let logs = [Signal::Logs];
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(100))
        .pipeline(
            Pipeline::http("oauth-http", &format!("{}/oauth", sink.http_endpoint()))
                .signals(&logs)
                .auth(oauth2(&token_url, "seedgate-client", |o| {
                    o.client_secret = Some(Secret::new("oauth-secret-31337"));
                    o.scopes = vec!["otlp".to_owned()];
                })),
        )
        .pipeline(
            Pipeline::grpc("oauth-grpc", &sink.grpc_endpoint())
                .signals(&logs)
                .auth(oauth2(&token_url, "seedgate-client", |o| {
                    o.client_secret_file = Some(secret_file.clone());
                })),
        )
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let acked = dir.path().join("acked");
    let summary = support::stream(
        sg.grpc_endpoint(),
        &[
            "--rate",
            "1000",
            "--records-per-request",
            "50",
            "--concurrency",
            "2",
        ],
        &["shoot--p--a"],
        Duration::from_secs(6),
        0,
        &acked,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(summary.records_acked > 1000, "{summary:?}");
    let grpc_key = sink.grpc_addr().to_string();
    eventually(
        "everything acknowledged arrived over both transports",
        async || {
            (records_at(&sink, "/oauth") >= summary.records_acked
                && records_at(&sink, &grpc_key) >= summary.records_acked)
                .then_some(())
        },
    )
    .await;
    let hits = idp.hits.load(Ordering::SeqCst);
    let exports = sink.stats().requests();
    eprintln!("oauth2: {hits} token requests for {exports} exports");
    // Two exporters, each: one first fetch plus a refresh every 1.6 s of
    // the ~6 s run.
    assert!(hits >= 4, "tokens refreshed: {hits} token requests");
    assert!(
        hits * 4 < exports,
        "tokens cached: {hits} token requests for {exports} exports"
    );
    assert_eq!(
        sink.stats().requests_unauthorized,
        0,
        "no export was refused"
    );
    for d in ["oauth-http", "oauth-grpc"] {
        let dropped = sg
            .metric_or_zero(
                "seedgate_exporter_dropped_records_total",
                &[&format!("destination=\"{d}\"")],
            )
            .await;
        assert_eq!(dropped, 0.0, "{d}");
    }
    let mut secrets = vec![
        "oauth-secret-31337".to_owned(),
        b64("seedgate-client:oauth-secret-31337"),
    ];
    secrets.extend(
        idp.valid
            .lock()
            .unwrap()
            .iter()
            .map(|(v, _)| v["Bearer ".len()..].to_owned()),
    );
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_secrets_absent(&sg, &secrets).await;
}

/// gzip, zstd and none over OTLP/HTTP and gzip over gRPC reach the sink and
/// decode (the sink counts only what it could decompress and decode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_reaches_the_sink_decodable() {
    let (dir, sink) = support::with_backend().await;
    let http = sink.http_endpoint();
    let logs = [Signal::Logs];
    let mut config = TestConfig::new(&dir.path().join("data")).batch_timeout(ms(10));
    for (name, c) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        config = config.pipeline(
            Pipeline::http(&format!("http-{name}"), &format!("{http}/{name}"))
                .signals(&logs)
                .compression(c),
        );
    }
    config = config.pipeline(
        Pipeline::grpc("grpc-gzip", &sink.grpc_endpoint())
            .signals(&logs)
            .compression(Compression::Gzip),
    );
    let (_sg, _) = start_loaded(dir.path(), config, 500, 100).await;
    let grpc_key = sink.grpc_addr().to_string();
    eventually("every pipeline's records decoded at the sink", async || {
        ["/none", "/gzip", "/zstd", grpc_key.as_str()]
            .iter()
            .all(|k| records_at(&sink, k) >= 500)
            .then_some(())
    })
    .await;
    let stats = sink.stats();
    assert_eq!(stats.requests_invalid, 0);
    assert_eq!(stats.distinct_seqs, 500);
}

/// Records/s and bytes/s at the sink, after the first second of a backlog,
/// are the configured rates within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_within_ten_percent() {
    const RECORDS_PER_SECOND: f64 = 2000.0;
    const BYTES_PER_SECOND: f64 = 400.0 * 1024.0;
    let (dir, by_records) = support::with_backend().await;
    let by_bytes = support::sink().await;
    let logs = [Signal::Logs];
    let yaml = TestConfig::new(&dir.path().join("data"))
        .batch_timeout(ms(10))
        .with(|c| c.batch.max_records = 100)
        .pipeline(
            Pipeline::http("by-records", &by_records.http_endpoint())
                .signals(&logs)
                .compression(Compression::None)
                .rate_limit(Some(2000), None),
        )
        .pipeline(
            Pipeline::http("by-bytes", &by_bytes.http_endpoint())
                .signals(&logs)
                .compression(Compression::None)
                .rate_limit(None, Some("400KiB")),
        )
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    // A backlog for both: 40000 records of ~300 bytes are 20 s at 2000/s
    // and about 29 s at 400 KiB/s. Delivery starts while they load; a load
    // slower than the rate at times lets a bucket save up, so the window
    // opens only a second after the whole backlog is in, once whatever was
    // saved up is spent.
    let summary = support::load(
        sg.grpc_endpoint(),
        &[
            "--count",
            "40000",
            "--records-per-request",
            "100",
            "--concurrency",
            "8",
        ],
        None,
    )
    .await;
    assert_eq!(summary.records_acked, 40000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sample = || {
        (
            Instant::now(),
            by_records.stats().records() as f64,
            by_bytes.stats().logs.bytes as f64,
        )
    };
    let (t1, r1, b1) = sample();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (t2, r2, b2) = sample();
    let secs = (t2 - t1).as_secs_f64();
    let records_rate = (r2 - r1) / secs;
    let bytes_rate = (b2 - b1) / secs;
    eprintln!(
        "rate limit: {records_rate:.0} records/s (limit {RECORDS_PER_SECOND}), {bytes_rate:.0} bytes/s (limit {BYTES_PER_SECOND})"
    );
    assert!(
        (records_rate / RECORDS_PER_SECOND - 1.0).abs() <= 0.10,
        "records/s {records_rate:.0} not within 10% of {RECORDS_PER_SECOND}"
    );
    assert!(
        (bytes_rate / BYTES_PER_SECOND - 1.0).abs() <= 0.10,
        "bytes/s {bytes_rate:.0} not within 10% of {BYTES_PER_SECOND}"
    );
    for d in ["by-records", "by-bytes"] {
        let queued = sg
            .metric_or_zero(
                "seedgate_batcher_queue_records",
                &[&format!("destination=\"{d}\"")],
            )
            .await;
        assert!(queued > 0.0, "{d}: the backlog lasted the window");
    }
    let labels = ["destination=\"by-records\""];
    assert!(
        sg.metric_or_zero("seedgate_exporter_throttled_seconds_total", &labels)
            .await
            > 1.0
    );
    assert_eq!(
        sg.metric_or_zero("seedgate_exporter_throttled", &labels)
            .await,
        1.0
    );
}

/// With a slow but healthy backend the adaptive limit rises above its
/// floor; when the backend answers 503 it falls back to the floor; once it
/// recovers, everything acknowledged arrives. Directions only: the machine
/// is small and shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_rises_when_healthy_and_falls_on_errors() {
    let (dir, sink) = support::with_backend().await;
    sink.set_fault(Fault {
        latency: Some(Duration::from_millis(100)),
        ..Fault::default()
    });
    let config = TestConfig::new(&dir.path().join("data")).pipeline(
        Pipeline::grpc("arc", &sink.grpc_endpoint())
            .signals(&[Signal::Logs])
            .batch(|b| {
                b.timeout = ms(10);
                b.max_records = 50;
                b.concurrency = 1;
                b.adaptive_concurrency.enabled = true;
                b.adaptive_concurrency.min = 1;
                b.adaptive_concurrency.max = 16;
                b.adaptive_concurrency.decrease_ratio = 0.5;
            })
            .retry(ms(50), ms(200)),
    );
    let (sg, acked) = start_loaded(dir.path(), config, 30000, 50).await;
    let labels = ["destination=\"arc\""];
    let limit = async || {
        sg.metric_or_zero("seedgate_exporter_concurrency_limit", &labels)
            .await
    };
    let peak = eventually("the limit rises above the floor", async || {
        let l = limit().await;
        (l >= 4.0).then_some(l)
    })
    .await;
    sink.set_fault(Fault {
        error_rate: 1.0,
        ..Fault::default()
    });
    eventually("the limit falls back to the floor under 503s", async || {
        (limit().await <= 1.0).then_some(())
    })
    .await;
    eprintln!("adaptive concurrency: peak seen {peak}, back to 1 under errors");
    sink.set_fault(Fault::default());
    let acked = seedgate::tools::acked::read_acked_file(&acked).unwrap();
    support::all_delivered(&sink, &acked).await;
}

/// The records of a poison request carry this in their namespace; the sink
/// refuses as permanent (`INVALID_ARGUMENT`) every request that holds it.
const POISON: &str = "poison-7f3a";

/// [`support::log_request`]`(seq)` moved to namespace [`POISON`] (same
/// length, so the framing stays valid).
fn poison_request(seq: u64) -> Vec<u8> {
    let mut body = support::log_request(seq);
    let from = b"shoot--p--a";
    assert_eq!(from.len(), POISON.len());
    let at = body.windows(from.len()).position(|w| w == from).unwrap();
    body[at..at + from.len()].copy_from_slice(POISON.as_bytes());
    body
}

/// A backend that refuses as permanent every request holding a poison
/// record: the poison shares batches with three other clients' records
/// (everything queues while the backend is down), the refused batches are
/// split until the poison entries stand alone, and only their records are
/// dropped and counted; every other acknowledged record arrives and the
/// queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_costs_only_its_own_entry_not_the_batch() {
    let (dir, sink) = support::with_backend().await;
    sink.set_fault(Fault {
        refuse_marker: Some(POISON.to_owned()),
        ..Fault::default()
    });
    sink.go_down().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline(
            Pipeline::grpc("shared", &sink.grpc_endpoint())
                .signals(&[Signal::Logs])
                .batch_timeout(ms(10))
                .retry(ms(50), ms(200)),
        )
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_files: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("acked-{i}")))
        .collect();
    let client = |i: usize, protocol: &'static str| {
        let endpoint = match protocol {
            "http" => sg.http_endpoint(),
            _ => sg.grpc_endpoint(),
        };
        let seq_start = (i as u64 * 100_000).to_string();
        let acked = acked_files[i].clone();
        async move {
            support::load(
                endpoint,
                &[
                    "--protocol",
                    protocol,
                    "--count",
                    "2000",
                    "--records-per-request",
                    "50",
                    "--seq-start",
                    &seq_start,
                ],
                Some(&acked),
            )
            .await
        }
    };
    let poison = async {
        let c = reqwest::Client::new();
        let url = format!("{}/v1/logs", sg.http_endpoint());
        for i in 0..5u64 {
            let r = c
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(poison_request(1_000_000 + i * 10))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                200,
                "seedgate cannot know the backend will refuse it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (a, b, c, ()) = tokio::join!(
        client(0, "grpc"),
        client(1, "http"),
        client(2, "grpc"),
        poison
    );
    for summary in [a, b, c] {
        assert_eq!(summary.records_acked, 2000, "{summary:?}");
    }
    sink.come_up().await.unwrap();

    let labels = ["destination=\"shared\""];
    eventually("the poison records dropped as permanent", async || {
        let dropped = sg
            .metric_or_zero(
                "seedgate_exporter_dropped_records_total",
                &[labels[0], "reason=\"permanent\""],
            )
            .await;
        (dropped >= 50.0).then_some(())
    })
    .await;
    for path in &acked_files {
        let acked = seedgate::tools::acked::read_acked_file(path).unwrap();
        support::all_delivered(&sink, &acked).await;
    }
    eventually("the queue is empty", async || {
        (sg.metric_or_zero("seedgate_batcher_queue_records", &labels)
            .await
            == 0.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        sg.metric_or_zero(
            "seedgate_exporter_dropped_records_total",
            &[labels[0], "reason=\"permanent\""],
        )
        .await,
        50.0,
        "exactly the poison records are dropped"
    );
    assert_eq!(
        sg.metric_or_zero(
            "seedgate_exporter_dropped_records_total",
            &[labels[0], "reason=\"bisect_gave_up\""],
        )
        .await,
        0.0
    );
    assert!(
        sink.seqs().keys().all(|&s| s < 1_000_000),
        "no poison record got through"
    );
    // The poison shared batches with the others: more requests were
    // refused than there are poison entries.
    let refused = sink.stats().requests_refused;
    assert!(refused > 5, "refused requests: {refused}");
    assert!(
        sg.metric_or_zero(
            "seedgate_exporter_failed_requests_total",
            &[labels[0], "reason=\"grpc_invalid_argument\""],
        )
        .await
            >= 6.0
    );
}

//! Span metrics through the real binary: spans sent to a traces pipeline
//! with `spanmetrics` come out of its metrics pipeline as exact RED
//! metrics, and every acknowledged span is counted exactly once across
//! `kill -9` and restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::capture::Capture;
use crate::support::config::{Pipeline, TestConfig, ms, policy, secs, spanmetrics, tail_sampling};
use crate::support::{self, Seedgate, eventually};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, NumberDataPoint, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};
use prost::Message;
use seedgate::config::Compression;
use seedgate::signal::Signal;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;
/// The configured bucket bounds.
const BOUNDS_MS: [u64; 3] = [5, 50, 500];

/// What the metrics backend received.
trait MetricPoints {
    fn points(&self) -> Points;
}

impl MetricPoints for Capture {
    /// Every `calls` and `duration` point received, by series.
    fn points(&self) -> Points {
        let mut out = Points::default();
        for body in self.bodies("/v1/metrics") {
            let req = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
            for m in req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                match (&m.data, m.name.as_str()) {
                    (Some(metric::Data::Sum(s)), "traces.span.metrics.calls") => {
                        assert!(s.is_monotonic);
                        for p in &s.data_points {
                            out.calls.push((series_of(&p.attributes), p.clone()));
                        }
                    }
                    (Some(metric::Data::Histogram(h)), "traces.span.metrics.duration") => {
                        for p in &h.data_points {
                            out.durations.push((series_of(&p.attributes), p.clone()));
                        }
                    }
                    (_, name) => panic!("unexpected metric {name}"),
                }
            }
        }
        out
    }
}

/// `(service.name, span.name, span.kind, status.code)`.
type Series = (String, String, String, String);

#[derive(Default)]
struct Points {
    calls: Vec<(Series, NumberDataPoint)>,
    durations: Vec<(Series, HistogramDataPoint)>,
}

impl Points {
    /// The newest calls value of every series.
    fn newest_calls(&self) -> BTreeMap<Series, (u64, i64)> {
        let mut out: BTreeMap<Series, (u64, i64)> = BTreeMap::new();
        for (s, p) in &self.calls {
            let value = match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    v,
                )) => v,
                ref other => panic!("calls is not an int: {other:?}"),
            };
            let e = out.entry(s.clone()).or_insert((0, 0));
            if p.time_unix_nano >= e.0 {
                *e = (p.time_unix_nano, value);
            }
        }
        out
    }

    /// The newest histogram of every series.
    fn newest_durations(&self) -> BTreeMap<Series, HistogramDataPoint> {
        let mut out: BTreeMap<Series, HistogramDataPoint> = BTreeMap::new();
        for (s, p) in &self.durations {
            match out.get(s) {
                Some(q) if q.time_unix_nano > p.time_unix_nano => {}
                _ => {
                    out.insert(s.clone(), p.clone());
                }
            }
        }
        out
    }
}

fn series_of(attributes: &[KeyValue]) -> Series {
    let get = |k: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                other => panic!("{k} is not a string: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no {k} in {attributes:?}"))
    };
    (
        get("service.name"),
        get("span.name"),
        get("span.kind"),
        get("status.code"),
    )
}

fn span(name: &str, kind: SpanKind, error: bool, nanos: u64) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.to_owned(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + nanos,
        status: Some(Status {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn request(services: Vec<(&str, Vec<Span>)>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: services
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".to_owned(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.to_owned())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

/// What a series should show: calls and the bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
struct Expected {
    calls: u64,
    buckets: Vec<u64>,
}

fn bucket_of(nanos: u64) -> usize {
    // Upper bounds are inclusive.
    BOUNDS_MS.iter().take_while(|b| **b * MS < nanos).count()
}

/// A traces pipeline with span metrics into `red`; with `sampling`, a tail
/// sampler after them that keeps about 1% of the traces (span metrics count
/// every span before sampling, as RED metrics must).
fn red_config(data: &Path, red: std::net::SocketAddr, sampling: bool) -> TestConfig {
    let mut traces = Pipeline::noop("traces")
        .signals(&[Signal::Traces])
        .processor(spanmetrics("red", secs(1), &BOUNDS_MS.map(ms)));
    if sampling {
        traces = traces.processor(tail_sampling(
            secs(1),
            vec![policy::probabilistic("rare", 1.0)],
        ));
    }
    TestConfig::new(data)
        .batch_timeout(ms(20))
        .retry(ms(50), ms(200))
        .pipeline(traces)
        .pipeline(
            Pipeline::http("red", &format!("http://{red}"))
                .signals(&[Signal::Metrics])
                .compression(Compression::None),
        )
}

async fn post(c: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
    c.post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
}

fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// Two services, two span names, server and client spans, some errors,
/// durations on and between the bucket bounds, in several requests, through
/// a pipeline whose tail sampler then drops about 99% of the traces: the
/// newest emitted calls and duration histogram of every series are exactly
/// what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanmetrics_counts_every_span_in_its_series_exactly() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let red = Capture::default();
    let addr = red.start().await;
    let sg = Seedgate::start(
        dir.path(),
        &red_config(&dir.path().join("data"), addr, true).yaml(),
    )
    .await;
    let url = format!("{}/v1/traces", sg.http_endpoint());
    let client = reqwest::Client::new();

    // On a bound, between bounds, and above the last one.
    let durations = [1, 5, 7, 50, 51, 300, 500, 2000].map(|ms| ms * MS);
    let kinds = [SpanKind::Server, SpanKind::Client];
    let mut expected: BTreeMap<Series, Expected> = BTreeMap::new();
    let mut total = 0u64;
    for round in 0..6u64 {
        let mut services = Vec::new();
        for (si, service) in ["cart", "checkout"].into_iter().enumerate() {
            let mut spans = Vec::new();
            for i in 0..(10 + round as usize * 3 + si) {
                let name = ["GET /cart", "SELECT"][i % 2];
                let kind = kinds[(i / 2) % 2];
                let error = (i + round as usize).is_multiple_of(5);
                let nanos = durations[(i * 3 + round as usize) % durations.len()];
                spans.push(span(name, kind, error, nanos));
                let e = expected
                    .entry((
                        service.to_owned(),
                        name.to_owned(),
                        kind.as_str_name().to_owned(),
                        if error {
                            "STATUS_CODE_ERROR"
                        } else {
                            "STATUS_CODE_UNSET"
                        }
                        .to_owned(),
                    ))
                    .or_insert_with(|| Expected {
                        calls: 0,
                        buckets: vec![0; BOUNDS_MS.len() + 1],
                    });
                e.calls += 1;
                e.buckets[bucket_of(nanos)] += 1;
                total += 1;
            }
            services.push((service, spans));
        }
        let resp = post(&client, &url, request(services)).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    assert!(expected.len() >= 12, "{expected:?}");

    let calls = eventually("every span in the emitted calls", async || {
        let calls = red.points().newest_calls();
        let sum: i64 = calls.values().map(|(_, v)| *v).sum();
        (sum == i64::try_from(total).unwrap()).then_some(calls)
    })
    .await;
    let got: BTreeMap<Series, u64> = calls
        .iter()
        .map(|(s, (_, v))| (s.clone(), u64::try_from(*v).unwrap()))
        .collect();
    let want: BTreeMap<Series, u64> = expected.iter().map(|(s, e)| (s.clone(), e.calls)).collect();
    assert_eq!(got, want);

    let durations = red.points().newest_durations();
    assert_eq!(
        durations.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (s, e) in &expected {
        let p = &durations[s];
        assert_eq!(p.count, e.calls, "{s:?}");
        assert_eq!(p.bucket_counts, e.buckets, "{s:?}");
        assert_eq!(p.explicit_bounds, [5.0, 50.0, 500.0], "{s:?}");
        assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
    }
    let text = sg.metrics().await;
    let spans = support::metric_value(
        &text,
        "seedgate_spanmetrics_spans_total",
        &["pipeline=\"traces\""],
    );
    assert_eq!(spans, Some(total as f64), "{text}");
    let series = support::metric_value(
        &text,
        "seedgate_spanmetrics_series",
        &["pipeline=\"traces\""],
    );
    assert_eq!(series, Some(expected.len() as f64));
}

/// A sender posts numbered requests of spans one at a time while seedgate
/// is killed with SIGKILL three times and restarted on the same data
/// directory. The newest emitted cumulative calls count every span of an
/// acknowledged request once: at least the acknowledged spans, at most one
/// request more per kill (a request cut by the kill may be stored without
/// its answer); and no series ever changes its start time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanmetrics_counts_each_acknowledged_span_once_across_kill_9() {
    const SPANS_PER_REQUEST: u64 = 7;
    const KILLS: u64 = 3;
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let red = Capture::default();
    let addr = red.start().await;
    let (grpc, http) = (support::stable_port(), support::stable_port());
    let config = dir.path().join("seedgate.yaml");
    std::fs::write(
        &config,
        red_config(&dir.path().join("data"), addr, false)
            .ports(grpc, http)
            .yaml(),
    )
    .unwrap();
    let mut sg = Seedgate::start_with(dir.path(), &config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, acked, sent) = (stop.clone(), acked.clone(), sent.clone());
        let url = format!("http://127.0.0.1:{http}/v1/traces");
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Three series per request, from two services.
                let spans = |k: u64| -> Vec<Span> {
                    (0..k)
                        .map(|i| {
                            span(
                                ["a", "b"][(i % 2) as usize],
                                SpanKind::Server,
                                false,
                                (n % 9 + i) * MS,
                            )
                        })
                        .collect()
                };
                let body = request(vec![("front", spans(4)), ("back", spans(3))]);
                sent.fetch_add(1, Ordering::Relaxed);
                match post(&client, &url, body).await {
                    Ok(r) if r.status().is_success() => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                n += 1;
            }
        })
    };

    let mut lifetimes = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(2300)).await;
        sg.kill9();
        lifetimes.push(now_nanos());
        tokio::time::sleep(Duration::from_millis(200)).await;
        sg = Seedgate::start_with(dir.path(), &config).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    let stopped = now_nanos();
    let acked = acked.load(Ordering::Relaxed);
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        acked > 50,
        "too little was acknowledged to prove anything: {acked} of {sent}"
    );

    // A flush that read after the sender stopped has every stored delta.
    let calls = eventually("a flush after the sender stopped", async || {
        let calls = red.points().newest_calls();
        (calls.len() == 4 && calls.values().all(|(t, _)| *t > stopped + 300 * MS)).then_some(calls)
    })
    .await;
    let counted: u64 = calls
        .values()
        .map(|(_, v)| u64::try_from(*v).unwrap())
        .sum();
    eprintln!(
        "kill -9 x{KILLS}: sent {sent} requests, {acked} acknowledged, {counted} spans counted"
    );
    assert_eq!(counted % SPANS_PER_REQUEST, 0, "{counted}");
    assert!(
        acked * SPANS_PER_REQUEST <= counted && counted <= (acked + KILLS) * SPANS_PER_REQUEST,
        "counted {counted} spans; acknowledged {acked} requests of {SPANS_PER_REQUEST}, {KILLS} kills"
    );

    // Every series kept its start time, from before the first kill on.
    let points = red.points();
    let first_kill = lifetimes[0];
    let mut starts: BTreeMap<Series, BTreeSet<u64>> = BTreeMap::new();
    for (s, p) in &points.calls {
        starts
            .entry(s.clone())
            .or_default()
            .insert(p.start_time_unix_nano);
    }
    for (s, p) in &points.durations {
        starts
            .entry(s.clone())
            .or_default()
            .insert(p.start_time_unix_nano);
    }
    assert!(
        points
            .calls
            .iter()
            .any(|(_, p)| p.time_unix_nano < first_kill),
        "no flush before the first kill"
    );
    for (s, set) in &starts {
        assert_eq!(set.len(), 1, "{s:?} started at {set:?}");
        assert!(
            set.iter().all(|t| *t < first_kill),
            "{s:?} started at {set:?}"
        );
    }
    drop(sg);
}

//! Durable tail sampling through the real binary: the policies decide which
//! traces reach the backend, whole; late spans follow the decision; the
//! limits decide early; kill -9 during the decision window loses nothing
//! acknowledged of a sampled trace and lets nothing of a dropped one out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::support::config::{
    Pipeline, TestConfig, ms, policy, secs, tail_sampling, tail_sampling_with,
};
use crate::support::spans::{SpanSpec, kv, post, request, text};
use crate::support::{self, Seedgate, eventually, tracking_sink};
use opentelemetry_proto::tonic::common::v1::any_value;
use seedgate::config::ProcessorConfig;
use seedgate::config::tail_sampling::StatusCodeName;
use seedgate::signal::Signal;

/// Traces pending in pipeline `p`.
async fn pending(sg: &Seedgate) -> f64 {
    sg.metric_or_zero("seedgate_tail_sampling_traces_pending", &["pipeline=\"p\""])
        .await
}

/// seedgate with pipeline `p` (tail sampling configured by `tail`) in
/// front of a tracking sink.
async fn start(
    tail: ProcessorConfig,
) -> (
    tempfile::TempDir,
    seedgate::tools::sink::SinkHandle,
    Seedgate,
) {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let sink = tracking_sink().await;
    let yaml = config(&dir.path().join("data"), &sink.grpc_endpoint(), tail).yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    (dir, sink, sg)
}

/// Quick batches and retries and pipeline `p`: traces through `tail` to
/// `sink`.
fn config(data: &Path, sink: &str, tail: ProcessorConfig) -> TestConfig {
    TestConfig::new(data)
        .batch_timeout(ms(20))
        .retry(ms(100), ms(500))
        .pipeline(
            Pipeline::grpc("p", sink)
                .signals(&[Signal::Traces])
                .processor(tail),
        )
}

/// Thirty traces of six kinds, each over two requests: errors, slow traces,
/// a `vip` tenant and 5xx traces of at least three spans (an `and`) are
/// kept whole; 5xx traces of two spans and plain ones are dropped whole, a
/// 0% probabilistic policy keeps nothing. Then a late span of a kept and of
/// a dropped trace each follow their trace's decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policies_decide_which_traces_arrive_whole_and_late_spans_follow() {
    let tail = tail_sampling(
        secs(1),
        vec![
            policy::status_code("errors", &[StatusCodeName::Error]),
            policy::latency("slow", 500),
            policy::string_attribute("vip", "tenant", &["vip"]),
            policy::and(
                "big-5xx",
                vec![
                    policy::numeric_attribute("c5xx", "http.status_code", 500, 599),
                    policy::span_count("many", 3),
                ],
            ),
            policy::probabilistic("never", 0.0),
        ],
    );
    let (_dir, sink, sg) = start(tail).await;
    let client = reqwest::Client::new();
    let endpoint = sg.http_endpoint();
    let mut kept = BTreeSet::new();
    let mut dropped = BTreeSet::new();
    let mut seq = 0u64;
    for trace in 0..30u64 {
        let kind = trace % 6;
        let n = if kind == 4 { 2 } else { 3 };
        let mut spans: Vec<SpanSpec> = (0..n)
            .map(|_| {
                seq += 1;
                SpanSpec::new(trace, seq)
            })
            .collect();
        let mut resource = Vec::new();
        match kind {
            0 => spans[1].error = true,
            1 => spans[2].duration_ms = 600,
            2 => resource.push(kv("tenant", text("vip"))),
            3 | 4 => spans[0]
                .attrs
                .push(kv("http.status_code", any_value::Value::IntValue(503))),
            _ => {}
        }
        let seqs = spans.iter().map(|s| s.seq);
        if kind < 4 {
            kept.extend(seqs);
        } else {
            dropped.extend(seqs);
        }
        // The trace's spans over two requests.
        let (first, rest) = spans.split_at(1);
        for part in [first, rest] {
            assert!(post(&client, &endpoint, request("shop", &resource, part)).await);
        }
    }
    eventually("30 traces decided", async || {
        let sum: f64 = {
            let text = reqwest::get(sg.admin_url("/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .filter(|l| l.starts_with("seedgate_tail_sampling_traces_decided_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (sum >= 30.0).then_some(())
    })
    .await;
    eventually("the kept traces at the backend", async || {
        let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
        got.is_superset(&kept).then_some(())
    })
    .await;
    // Late spans: trace 0 was kept, trace 5 dropped.
    let late_kept = SpanSpec::new(0, 10_000);
    let late_dropped = SpanSpec::new(5, 10_001);
    for late in [&late_kept, &late_dropped] {
        assert!(
            post(
                &client,
                &endpoint,
                request("shop", &[], std::slice::from_ref(late))
            )
            .await
        );
    }
    kept.insert(late_kept.seq);
    dropped.insert(late_dropped.seq);
    eventually("the late spans settled", async || {
        let late = sg
            .metric_or_zero(
                "seedgate_tail_sampling_late_spans_total",
                &["pipeline=\"p\"", "reason=\"sampled\""],
            )
            .await
            + sg.metric_or_zero(
                "seedgate_tail_sampling_late_spans_total",
                &["pipeline=\"p\"", "reason=\"dropped\""],
            )
            .await;
        (late >= 2.0).then_some(())
    })
    .await;
    eventually("the kept late span at the backend", async || {
        sink.seqs().contains_key(&late_kept.seq).then_some(())
    })
    .await;
    let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
    assert_eq!(got, kept, "exactly the kept traces, whole");
    assert!(got.is_disjoint(&dropped));
    assert_eq!(
        sg.metric_or_zero(
            "seedgate_tail_sampling_traces_decided_total",
            &[
                "pipeline=\"p\"",
                "policy=\"big-5xx\"",
                "decision=\"sampled\""
            ],
        )
        .await,
        5.0
    );
    assert_eq!(pending(&sg).await, 0.0);
}

/// With `num_traces: 3` and an hour to wait, every trace beyond the third
/// is decided at once, oldest first, and counted as decided early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_decide_the_oldest_early_and_count_it() {
    let tail = tail_sampling_with(secs(3600), vec![policy::always_sample("all")], |t| {
        t.num_traces = 3;
    });
    let (_dir, sink, sg) = start(tail).await;
    let client = reqwest::Client::new();
    for trace in 0..10u64 {
        let span = SpanSpec::new(trace, trace);
        assert!(post(&client, &sg.http_endpoint(), request("shop", &[], &[span])).await);
    }
    eventually("seven traces decided early and delivered", async || {
        let early = sg
            .metric_or_zero(
                "seedgate_tail_sampling_traces_decided_early_total",
                &["pipeline=\"p\"", "reason=\"num_traces\""],
            )
            .await;
        (early >= 7.0 && sink.seqs().len() >= 7).then_some(())
    })
    .await;
    // The oldest went first; the three youngest wait for their hour.
    let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
    assert_eq!(got, (0..7).collect(), "the oldest seven");
    assert_eq!(pending(&sg).await, 3.0);
}

/// `rate_limiting` at 100 spans per second: fifty traces of ten spans in
/// one request are due together and decided in one settle (one second of
/// the limiter), so exactly ten of them arrive, each whole, and forty are
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_keeps_the_spans_per_second_it_allows_in_whole_traces() {
    let tail = tail_sampling(ms(500), vec![policy::rate_limiting("budget", 100)]);
    let (_dir, sink, sg) = start(tail).await;
    let spans: Vec<SpanSpec> = (0..500u64)
        .map(|seq| SpanSpec::new(seq % 50, seq))
        .collect();
    let client = reqwest::Client::new();
    assert!(post(&client, &sg.http_endpoint(), request("shop", &[], &spans)).await);
    eventually("fifty traces decided", async || {
        let decided = sg
            .metric_or_zero(
                "seedgate_tail_sampling_traces_decided_total",
                &["pipeline=\"p\"", "decision=\"dropped\""],
            )
            .await
            + sg.metric_or_zero(
                "seedgate_tail_sampling_traces_decided_total",
                &["pipeline=\"p\"", "decision=\"sampled\""],
            )
            .await;
        (decided >= 50.0).then_some(())
    })
    .await;
    eventually("the kept spans at the backend", async || {
        (sink.seqs().len() >= 100).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut per_trace: BTreeMap<u64, usize> = BTreeMap::new();
    for seq in sink.seqs().into_keys() {
        *per_trace.entry(seq % 50).or_default() += 1;
    }
    assert_eq!(per_trace.len(), 10, "ten traces kept: {per_trace:?}");
    assert!(
        per_trace.values().all(|n| *n == 10),
        "each whole: {per_trace:?}"
    );
    assert_eq!(
        sg.metric_or_zero(
            "seedgate_tail_sampling_traces_decided_total",
            &["pipeline=\"p\"", "policy=\"none\"", "decision=\"dropped\""],
        )
        .await,
        40.0
    );
}

/// Traces stream in, each over two requests about 800 ms apart (so most
/// second halves arrive after their trace was decided, some after a
/// restart, and only the remembered decision sends them the right way); seedgate is killed with SIGKILL three times during the
/// decision window and restarted on its data directory. In the end every
/// acknowledged span of a kept trace arrived, and no span of a dropped trace
/// (acknowledged or not) ever left: decisions are the same after restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_decision_window_keeps_sampled_traces_whole_and_dropped_ones_out() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let sink = tracking_sink().await;
    let (grpc, http) = (support::stable_port(), support::stable_port());
    let tail = tail_sampling(
        ms(600),
        vec![policy::string_attribute("keep", "keep", &["yes"])],
    );
    let yaml = config(&dir.path().join("data"), &sink.grpc_endpoint(), tail)
        .ports(grpc, http)
        .yaml();
    let config = dir.path().join("seedgate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let mut sg = Seedgate::start_with(dir.path(), &config).await;
    let endpoint = format!("http://127.0.0.1:{http}");
    let sender = tokio::spawn(async move {
        let client = reqwest::Client::new();
        // trace -> (kept?, acknowledged seqs, all seqs sent)
        let mut traces: BTreeMap<u64, (bool, BTreeSet<u64>, BTreeSet<u64>)> = BTreeMap::new();
        let started = std::time::Instant::now();
        let mut trace = 0u64;
        while started.elapsed() < Duration::from_secs(11) {
            // The first half of `trace`, which alone decides (keep=yes on
            // even traces), and the second half of `trace - 12`, neutral and
            // mostly late: it must follow the decision taken on the first
            // half, before a restart or after one.
            let mut parts = vec![(trace, 2 * trace * 10, true)];
            if trace >= 12 {
                parts.push((trace - 12, 2 * (trace - 12) * 10 + 10, false));
            }
            for (t, first_seq, first_half) in parts {
                let keep = t % 2 == 0;
                let spans: Vec<SpanSpec> =
                    (0..3).map(|i| SpanSpec::new(t, first_seq + i)).collect();
                let value = match (first_half, keep) {
                    (false, _) => "later",
                    (true, true) => "yes",
                    (true, false) => "no",
                };
                let resource = [kv("keep", text(value))];
                let entry = traces
                    .entry(t)
                    .or_insert_with(|| (keep, BTreeSet::new(), BTreeSet::new()));
                entry.2.extend(spans.iter().map(|s| s.seq));
                if post(&client, &endpoint, request("shop", &resource, &spans)).await {
                    entry.1.extend(spans.iter().map(|s| s.seq));
                }
            }
            trace += 1;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        traces
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2_700)).await;
        sg.kill9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        sg = Seedgate::start_with(dir.path(), &config).await;
    }
    let traces = sender.await.unwrap();
    // A kept trace whose deciding first half was refused (seedgate was
    // down) is decided on its neutral second half alone, and dropped: only
    // traces whose first half was acknowledged must arrive.
    let acked_kept: BTreeSet<u64> = traces
        .iter()
        .filter(|(t, (keep, acked, _))| *keep && acked.contains(&(20 * **t)))
        .flat_map(|(_, (_, acked, _))| acked.iter().copied())
        .collect();
    let sent_dropped: BTreeSet<u64> = traces
        .values()
        .filter(|(keep, _, _)| !*keep)
        .flat_map(|(_, _, sent)| sent.iter().copied())
        .collect();
    assert!(
        acked_kept.len() > 300,
        "too little to prove anything: {}",
        acked_kept.len()
    );
    let waited = tokio::time::timeout(support::patience(), async {
        loop {
            let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
            if got.is_superset(&acked_kept) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if waited.is_err() {
        let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
        let missing: Vec<u64> = acked_kept.difference(&got).copied().collect();
        panic!(
            "acknowledged spans of kept traces missing: {missing:?}; log:\n{}",
            sg.log()
        );
    }
    eventually("nothing pending", async || {
        (sg.metric_or_zero("seedgate_tail_sampling_traces_pending", &["pipeline=\"p\""])
            .await
            == 0.0)
            .then_some(())
    })
    .await;
    let got: BTreeSet<u64> = sink.seqs().into_keys().collect();
    let leaked: Vec<u64> = got.intersection(&sent_dropped).copied().collect();
    assert!(
        leaked.is_empty(),
        "spans of dropped traces were exported: {leaked:?}"
    );
}

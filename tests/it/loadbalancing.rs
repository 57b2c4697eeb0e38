//! The load-balancing exporter end to end: the real binary, loadgen traces
//! (one trace of `SPANS` spans per request, span seqs tracked by the sinks)
//! and four sinks on 127.0.0.2–127.0.0.6, all on one port, so that a DNS
//! name can list them as A records.

#![allow(clippy::print_stdout)]

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::config::{Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, eventually, stream};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use seedgate::config::{
    DnsResolverConfig, KubernetesResolverConfig, LoadBalancingConfig, OutputConfig, OutputType,
    ResolverConfig, RoutingKey,
};
use seedgate::signal::Signal;
use seedgate::tools::sink::{SinkHandle, SinkOptions};

/// Spans per trace (and per loadgen request).
const SPANS: u64 = 20;
/// Loadgen flags: one trace of [`SPANS`] small spans per request.
const TRACE_FLAGS: [&str; 6] = [
    "--signal",
    "traces",
    "--records-per-request",
    "20",
    "--record-size",
    "64",
];

async fn sink_on(ip: u8, port: u16) -> SinkHandle {
    seedgate::tools::sink::start(SinkOptions {
        grpc_listen: SocketAddr::from(([127, 0, 0, ip], port)),
        http_listen: SocketAddr::from(([127, 0, 0, ip], 0)),
        track_namespaces: true,
        ..SinkOptions::default()
    })
    .await
    .unwrap()
}

/// One sink on each of `ips`, all on `port`.
async fn sinks_on(ips: impl IntoIterator<Item = u8>, port: u16) -> Vec<SinkHandle> {
    let mut sinks = Vec::new();
    for ip in ips {
        sinks.push(sink_on(ip, port).await);
    }
    sinks
}

fn endpoint(ip: u8, port: u16) -> String {
    format!("http://127.0.0.{ip}:{port}")
}

/// seedgate's config with its data in `data`: one traces pipeline
/// balanced by trace ID over the backends `resolver` finds.
fn config(data: &Path, resolver: ResolverConfig) -> TestConfig {
    let output = OutputConfig {
        timeout: secs(2),
        ..OutputConfig::of_kind(OutputType::OtlpGrpc)
    };
    let balanced = Pipeline::new("traces", output)
        .signals(&[Signal::Traces])
        .batch(|b| {
            b.timeout = ms(20);
            b.max_records = 400;
        })
        .retry(ms(100), ms(300))
        .with(|p| {
            p.loadbalancing = Some(LoadBalancingConfig {
                routing_key: RoutingKey::TraceId,
                resolver,
                failover_after: secs(2),
                probe_interval: secs(1),
            });
        });
    TestConfig::new(data).pipeline(balanced)
}

fn static_resolver(ips: &[u8], port: u16) -> ResolverConfig {
    ResolverConfig {
        static_endpoints: Some(ips.iter().map(|ip| endpoint(*ip, port)).collect()),
        ..ResolverConfig::default()
    }
}

/// Which sink (index) got each trace; panics if a trace is on two sinks.
fn owners(sinks: &[&SinkHandle]) -> HashMap<u64, usize> {
    let mut owner = HashMap::new();
    for (i, sink) in sinks.iter().enumerate() {
        for seq in sink.seqs().into_keys() {
            let trace = seq / SPANS;
            let first = *owner.entry(trace).or_insert(i);
            assert_eq!(first, i, "trace {trace} is on two backends");
        }
    }
    owner
}

/// Sends `traces` whole traces (seqs from 0) and waits until every acked
/// span arrived somewhere.
async fn send_traces(sg: &Seedgate, dir: &Path, traces: u64, sinks: &[&SinkHandle]) {
    let acked = dir.join(format!("acked-{}", rand::random::<u32>()));
    let count = (traces * SPANS).to_string();
    let flags = [&TRACE_FLAGS[..], &["--count", &count]].concat();
    let run = stream(
        sg.grpc_endpoint(),
        &flags,
        &["ns"],
        Duration::from_secs(60),
        0,
        &acked,
    );
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.records_acked, traces * SPANS);
    let acked = seedgate::tools::acked::read_acked_file(&acked).unwrap();
    eventually("every acked span at a backend", async || {
        support::delivered_somewhere(sinks, &acked).then_some(())
    })
    .await;
}

type LoadRun = tokio::task::JoinHandle<anyhow::Result<seedgate::tools::loadgen::Summary>>;

/// Traces at 4 000 spans/s for `secs` in the background, seqs from
/// 1 000 000, the acked ones written to `acked`.
fn under_load(sg: &Seedgate, secs: u64, acked: &Path) -> LoadRun {
    let flags = [&TRACE_FLAGS[..], &["--rate", "4000"]].concat();
    stream(
        sg.grpc_endpoint(),
        &flags,
        &["ns"],
        Duration::from_secs(secs),
        1_000_000,
        acked,
    )
}

/// Waits for the load `run` (its acked seqs in `acked_path`) to end and
/// every acked span to reach one of `sinks`, then checks that none is
/// missing and that the extra copies are at most what the balancer counted
/// as possibly duplicated. Prints what `what` came to, with the records
/// re-routed for `reason`; returns how many spans were acked.
async fn nothing_lost(
    sg: &Seedgate,
    run: LoadRun,
    acked_path: &Path,
    sinks: &[SinkHandle],
    reason: &str,
    what: &str,
) -> u64 {
    let summary = run.await.unwrap().unwrap();
    assert!(summary.records_acked > 1_000, "{summary:?}");
    let acked = seedgate::tools::acked::read_acked_file(acked_path).unwrap();
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    eventually("every acked span at some backend", async || {
        support::delivered_somewhere(&all, &acked).then_some(())
    })
    .await;
    let mut copies: HashMap<u64, u32> = HashMap::new();
    for s in sinks {
        for (seq, n) in s.seqs() {
            *copies.entry(seq).or_default() += n;
        }
    }
    let missing = acked.iter().filter(|s| !copies.contains_key(s)).count();
    let duplicates: u64 = copies
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    let possible = sg
        .metric(
            "seedgate_lb_possible_duplicate_records_total",
            &["destination=\"traces\""],
        )
        .await
        .unwrap();
    let rerouted = sg
        .metric(
            "seedgate_lb_rerouted_records_total",
            &[&format!("reason=\"{reason}\"")],
        )
        .await
        .unwrap();
    println!(
        "{what}: {} spans acked, {missing} missing, {duplicates} duplicated (metric: {possible} possible), {rerouted} re-routed ({reason})",
        acked.len()
    );
    assert_eq!(missing, 0);
    assert!(duplicates as f64 <= possible, "{duplicates} > {possible}");
    acked.len()
}

/// Forgets what the sinks got, sends the same 1 000 traces again and says
/// where each went.
async fn resend(sg: &Seedgate, dir: &Path, sinks: &[&SinkHandle]) -> HashMap<u64, usize> {
    for s in sinks {
        s.reset_stats();
    }
    send_traces(sg, dir, 1000, sinks).await;
    owners(sinks)
}

/// The traces whose owner differs between two runs, as (before, after).
fn moved(before: &HashMap<u64, usize>, after: &HashMap<u64, usize>) -> Vec<(usize, usize)> {
    before
        .iter()
        .filter_map(|(t, b)| after.get(t).filter(|a| *a != b).map(|a| (*b, *a)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_stay_whole_and_a_backend_killed_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let ips = [2u8, 3, 4, 5];
    let sinks = sinks_on(ips, port).await;
    let yaml = config(&dir.path().join("data"), static_resolver(&ips, port)).yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();

    // Steady state: every trace whole on one backend, spread over all four.
    send_traces(&sg, dir.path(), 400, &all).await;
    let before = owners(&all);
    assert_eq!(before.len(), 400);
    for i in 0..4 {
        let share = before.values().filter(|o| **o == i).count();
        assert!(
            (50..150).contains(&share),
            "backend {i} got {share} of 400 traces"
        );
    }
    for s in &sinks {
        s.reset_stats();
    }

    // Under load, one backend dies for good.
    let acked_path = dir.path().join("acked-kill");
    let run = under_load(&sg, 8, &acked_path);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sinks[0].go_down().await;
    // Zero acked spans missing; duplicates counted, and no more than the
    // balancer says were in flight to the dead backend.
    let acked = nothing_lost(
        &sg,
        run,
        &acked_path,
        &sinks,
        "failed",
        "killed one of 4 backends under load",
    )
    .await;
    assert_eq!(
        sg.metric("seedgate_lb_failovers_total", &["destination=\"traces\""])
            .await,
        Some(1.0)
    );
    assert_eq!(
        sg.metric(
            "seedgate_lb_backend_up",
            &[&format!("backend=\"{}\"", endpoint(2, port))]
        )
        .await,
        Some(0.0)
    );
    // Spans acked after the failover all went to the three live backends.
    let dead_after: HashSet<u64> = sinks[0].seqs().into_keys().collect();
    assert!((dead_after.len() as u64) < acked);
}

/// A backend's delivery loop crashed twice under load through the fault
/// injection endpoint: the first time it is restarted at once and keeps its
/// place; the second, within a minute, its restart waits (1 s) and it is out
/// of the ring meanwhile, its queue re-routed. Both restarts are counted
/// under `lb_backend`, the backend delivers again afterwards, and no
/// acknowledged span is missing (copies at most what was in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_backend_loop_is_restarted_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let ips = [2u8, 3, 4];
    let sinks = sinks_on(ips, port).await;
    let yaml = config(&dir.path().join("data"), static_resolver(&ips, port))
        .with(|c| c.admin.fault_injection = true)
        .yaml();
    let sg = Seedgate::start(dir.path(), &yaml).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    let victim = endpoint(2, port);
    let restarts = async || {
        sg.metric("seedgate_actor_restarts_total", &["actor=\"lb_backend\""])
            .await
    };
    let client = reqwest::Client::new();
    let crash = async |pipeline: &str, backend: &str| {
        let url = format!("/debug/pipelines/{pipeline}/backends/{backend}/crash");
        let r = client.post(sg.admin_url(&url)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(restarts().await, Some(0.0));
    assert_eq!(crash("logs", "0").await.0, 404);
    let (status, text) = crash("traces", "3").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains(&victim), "{text}");

    let acked_path = dir.path().join("acked-crash");
    let run = under_load(&sg, 10, &acked_path);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // By endpoint (URL-encoded): restarted at once, in place.
    let encoded = victim.replace(':', "%3A").replace('/', "%2F");
    let (status, text) = crash("traces", &encoded).await;
    assert_eq!(status, 202, "{text}");
    eventually("the first restart counted", async || {
        (restarts().await? == 1.0).then_some(())
    })
    .await;
    // By index (the sorted first): its restart now waits.
    eventually("the restarted loop crashed again", async || {
        let (status, text) = crash("traces", "0").await;
        assert!(status == 202 || status == 409, "{status} {text}");
        (status == 202).then_some(())
    })
    .await;
    eventually("the second restart counted", async || {
        (restarts().await? == 2.0).then_some(())
    })
    .await;
    let up = format!("backend=\"{victim}\"");
    eventually("the backend back in the ring", async || {
        (sg.metric("seedgate_lb_backend_up", &[&up]).await? == 1.0).then_some(())
    })
    .await;
    let log = sg.log();
    for line in [
        "fault injected into the delivery loop of traces@http://127.0.0.2",
        "waits for its restart; taking the backend out of the ring",
        "runs again; back in the ring",
    ] {
        assert!(log.contains(line), "no {line:?} in the log");
    }

    nothing_lost(
        &sg,
        run,
        &acked_path,
        &sinks,
        "crashed",
        "crashed one of 3 backend loops twice under load",
    )
    .await;

    // It delivers again: its share of new traces reaches its sink.
    for s in &sinks {
        s.reset_stats();
    }
    send_traces(&sg, dir.path(), 300, &all).await;
    let share = owners(&all).values().filter(|o| **o == 0).count();
    assert!(
        (50..150).contains(&share),
        "the crashed backend got {share} of 300 traces"
    );
    assert_eq!(restarts().await, Some(2.0));
}

/// Ingest splits a balanced pipeline's share straight into the backend
/// queues (issue 15): each span is written to LMDB once, as for one
/// destination, not stored in the pipeline queue and moved again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_writes_each_span_once_straight_into_its_backends_queue() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let sinks = sinks_on(2..=5, port).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    let sg = Seedgate::start(
        dir.path(),
        &config(
            &dir.path().join("data"),
            static_resolver(&[2, 3, 4, 5], port),
        )
        .yaml(),
    )
    .await;
    // Until the balancer has its ring, ingest stores into the pipeline
    // queue (and the balancer moves it): wait for the four backends.
    eventually("four backends in the ring", async || {
        let up = sg.metric_or_zero("seedgate_lb_backend_up", &[]).await;
        (up >= 4.0).then_some(())
    })
    .await;
    send_traces(&sg, dir.path(), 1000, &all).await;
    let spans = (1000 * SPANS) as f64;
    let owners = owners(&all);
    assert!(
        owners.values().collect::<HashSet<_>>().len() == 4,
        "every backend got traces"
    );
    // Routed (at ingest) per backend, and delivered, all of them.
    let routed = sg
        .metric_or_zero(
            "seedgate_lb_routed_records_total",
            &["destination=\"traces\""],
        )
        .await;
    assert_eq!(routed, spans);
    eventually("every span counted as sent", async || {
        let sent = sg
            .metric_or_zero(
                "seedgate_exporter_sent_records_total",
                &["destination=\"traces\""],
            )
            .await;
        (sent >= spans).then_some(())
    })
    .await;
    // Written once: the bytes appended to LMDB are the bytes sent (the
    // backend requests are the stored entries, concatenated), where the
    // move through the pipeline queue wrote them twice.
    let appended = sg
        .metric_or_zero("seedgate_batcher_appended_bytes_total", &[])
        .await;
    let sent = sg
        .metric_or_zero(
            "seedgate_exporter_sent_bytes_total",
            &["destination=\"traces\""],
        )
        .await;
    println!("appended {appended} bytes to LMDB for {sent} bytes sent");
    assert!(
        sent > 0.0 && appended < 1.2 * sent,
        "appended {appended}, sent {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_change_moves_about_the_keys_of_the_backends_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let sinks = sinks_on(2..=6, port).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    let data = dir.path().join("data");
    let mut sg = Seedgate::start(
        dir.path(),
        &config(&data, static_resolver(&[2, 3, 4, 5], port)).yaml(),
    )
    .await;
    send_traces(&sg, dir.path(), 1000, &all).await;
    let before = owners(&all);
    assert!(sg.terminate().success());
    // .2 leaves, .6 joins: the same traces again.
    let sg = Seedgate::start(
        dir.path(),
        &config(&data, static_resolver(&[3, 4, 5, 6], port)).yaml(),
    )
    .await;
    let after = resend(&sg, dir.path(), &all).await;
    let moved = moved(&before, &after);
    // Only the leaver's traces and the joiner's new ones move: expected
    // 1/4 + 3/4 × 1/4 = 7/16 of them.
    assert!(moved.iter().all(|(b, a)| *b == 0 || *a == 4), "{moved:?}");
    assert!(after.values().all(|o| *o != 0));
    let fraction = moved.len() as f64 / 1000.0;
    println!("static 4 -> 4 (one out, one in): {fraction:.3} of traces moved (expected 0.44)");
    assert!((0.33..0.55).contains(&fraction), "{fraction}");
}

/// A DNS server answering A queries for any name with `ips` (TTL 0).
async fn dns_server(ips: Arc<Mutex<Vec<Ipv4Addr>>>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.message_type = MessageType::Response;
            answer.metadata.authoritative = true;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for q in &query.queries {
                answer.queries.push(q.clone());
                if q.query_type() == RecordType::A {
                    for ip in ips.lock().unwrap().iter() {
                        answer.answers.push(Record::from_rdata(
                            q.name().clone(),
                            0,
                            RData::A(A(*ip)),
                        ));
                    }
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                socket.send_to(&bytes, peer).await.ok();
            }
        }
    });
    addr
}

/// One backend leaves the resolver's answer, then a new one joins: exactly
/// the leaver's traces move (to the others), then about a quarter moves, all
/// of it to the newcomer. `members` sets which of 127.0.0.x the resolver
/// answers with; it starts at 2..=5.
async fn membership_changes_move_about_one_nth_of_the_keys(
    label: &str,
    sg: &Seedgate,
    dir: &Path,
    port: u16,
    sinks: &[&SinkHandle],
    members: impl AsyncFn(&[u8]),
) {
    let up = |ip: u8| format!("backend=\"{}\"", endpoint(ip, port));
    eventually("four backends resolved", async || {
        let text = sg.metrics().await;
        (2..=5)
            .all(|ip| {
                support::metric_value(&text, "seedgate_lb_backend_up", &[&up(ip)]) == Some(1.0)
            })
            .then_some(())
    })
    .await;
    send_traces(sg, dir, 1000, sinks).await;
    let four = owners(sinks);

    // One leaves: exactly its traces move, to the others.
    members(&[2, 3, 4]).await;
    eventually("127.0.0.5 gone from the ring", async || {
        let text = sg.metrics().await;
        support::metric_value(&text, "seedgate_lb_backend_up", &[&up(5)])
            .is_none()
            .then_some(())
    })
    .await;
    let three = resend(sg, dir, sinks).await;
    let moved_out = moved(&four, &three);
    let owned_by_leaver = four.values().filter(|o| **o == 3).count();
    assert!(moved_out.iter().all(|(b, _)| *b == 3), "{moved_out:?}");
    assert_eq!(moved_out.len(), owned_by_leaver);

    // One joins: about a quarter moves, all of it to the newcomer.
    members(&[2, 3, 4, 6]).await;
    eventually("127.0.0.6 in the ring", async || {
        let text = sg.metrics().await;
        (support::metric_value(&text, "seedgate_lb_backend_up", &[&up(6)]) == Some(1.0))
            .then_some(())
    })
    .await;
    let joined = resend(sg, dir, sinks).await;
    let moved_in = moved(&three, &joined);
    assert!(moved_in.iter().all(|(_, a)| *a == 4), "{moved_in:?}");
    let out = owned_by_leaver as f64 / 1000.0;
    let fraction = moved_in.len() as f64 / 1000.0;
    println!(
        "{label}: 4 -> 3 moved {out:.3} (expected 0.25); 3 -> 4 moved {fraction:.3} (expected 0.25)"
    );
    assert!((0.15..0.35).contains(&out), "{out}");
    assert!((0.15..0.35).contains(&fraction), "{fraction}");
    assert!(
        sg.metric("seedgate_lb_resolutions_total", &["result=\"ok\""])
            .await
            .unwrap()
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_membership_changes_move_about_one_nth_of_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let sinks = sinks_on(2..=6, port).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    let ips = Arc::new(Mutex::new(Vec::new()));
    let set = async |members: &[u8]| {
        *ips.lock().unwrap() = members
            .iter()
            .map(|i| Ipv4Addr::new(127, 0, 0, *i))
            .collect();
    };
    set(&[2, 3, 4, 5]).await;
    let dns = dns_server(Arc::clone(&ips)).await;
    let resolver = ResolverConfig {
        dns: Some(DnsResolverConfig {
            hostname: "gateways.example.test".to_owned(),
            port,
            scheme: "http".to_owned(),
            interval: ms(300),
            nameserver: Some(dns),
        }),
        ..ResolverConfig::default()
    };
    let sg = Seedgate::start(
        dir.path(),
        &config(&dir.path().join("data"), resolver).yaml(),
    )
    .await;
    membership_changes_move_about_one_nth_of_the_keys("dns", &sg, dir.path(), port, &all, set)
        .await;
}

/// The `kubernetes` resolver against the API server double: the Service's
/// endpoints come in two EndpointSlices; one endpoint turns not ready, then a
/// third slice brings a new one. The same moves as with DNS, with no polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_endpointslice_changes_move_about_one_nth_of_the_keys() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let dir = tempfile::tempdir().unwrap();
    let port = support::stable_port();
    let sinks = sinks_on(2..=6, port).await;
    let all: Vec<&SinkHandle> = sinks.iter().collect();
    let api = support::apiserver::ApiServerDouble::start().await;
    support::install_crypto();
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client, "obs");
    // Slice a holds .2 and .3, slice b .4 and .5 (not ready: listed, not
    // used), slice c .6; each write replaces a slice's endpoints.
    let slice = |name: &str, ips: &[(u8, bool)]| -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "obs",
                         "labels": {"kubernetes.io/service-name": "gateway"}},
            "addressType": "IPv4",
            "ports": [{"name": "otlp-grpc", "port": port, "protocol": "TCP"}],
            "endpoints": ips.iter().map(|(ip, ready)| serde_json::json!({
                "addresses": [format!("127.0.0.{ip}")],
                "conditions": {"ready": ready}
            })).collect::<Vec<_>>()
        }))
        .unwrap()
    };
    for (name, ips) in [
        ("gateway-a", vec![(2, true), (3, true)]),
        ("gateway-b", vec![(4, true), (5, true)]),
    ] {
        slices
            .create(&PostParams::default(), &slice(name, &ips))
            .await
            .unwrap();
    }
    let set = async |members: &[u8]| {
        let b: Vec<(u8, bool)> = [4, 5]
            .iter()
            .map(|ip| (*ip, members.contains(ip)))
            .collect();
        slices
            .patch(
                "gateway-b",
                &PatchParams::default(),
                &Patch::Merge(&slice("gateway-b", &b)),
            )
            .await
            .unwrap();
        if members.contains(&6) {
            slices
                .create(&PostParams::default(), &slice("gateway-c", &[(6, true)]))
                .await
                .unwrap();
        }
    };
    let resolver = ResolverConfig {
        kubernetes: Some(KubernetesResolverConfig {
            service: "gateway".to_owned(),
            namespace: Some("obs".to_owned()),
            port,
            scheme: "http".to_owned(),
        }),
        ..ResolverConfig::default()
    };
    let config_path = dir.path().join("seedgate.yaml");
    std::fs::write(
        &config_path,
        config(&dir.path().join("data"), resolver).yaml(),
    )
    .unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let sg = Seedgate::start_opts(
        dir.path(),
        &config_path,
        &[],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
    .await;
    membership_changes_move_about_one_nth_of_the_keys(
        "kubernetes",
        &sg,
        dir.path(),
        port,
        &all,
        set,
    )
    .await;
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.is_watch()
            && r.path == "/apis/discovery.k8s.io/v1/namespaces/obs/endpointslices"
            && r.param("labelSelector") == Some("kubernetes.io/service-name=gateway")),
        "no watch of the Service's slices: {requests:#?}"
    );
}

//! The load-balancing exporter's per-batch work: splitting a 1 000-span
//! traces request by trace ID over 4 backends (rendezvous ring), next to
//! `proto::count_records` over the same bytes (the scan every request
//! already pays at ingest) as the baseline of the same run.
//!
//! The request: 10 resource blocks (services) × 1 scope × 100 spans, 100
//! traces of 10 spans each, every trace's spans spread over the blocks the
//! way a batch of many clients' requests looks; spans carry 4 attributes
//! and a name, about 150 bytes each.
//!
//! Groups:
//! - `count_records`: the scan baseline;
//! - `split_trace_id_4_backends`: `proto::split::split` with the ring's
//!   owner function, what the balancer does per batch before the LMDB move;
//! - `split_trace_id_1_owner`: every key to one backend, the copy-through
//!   path (the whole request is one memcpy);
//! - `ingest_split_4_backends`: what ingest does per request of a
//!   load-balanced pipeline since it splits straight into the backend
//!   queues ([`seedgate::loadbalancing::router::Router::spread`]: the split
//!   plus a reservation on each backend queue, given back after each
//!   iteration), the request as ingest holds it (`Bytes`);
//! - `ingest_split_one_trace`: the same for a request holding one trace (as
//!   `scripts/load-lb.sh` sends): the request is stored as it is, no copy;
//! - `…_scan_keys`: the same two with each span's trace key taken from the
//!   ingest scan (`proto::scan_keyed`), as ingest does: no span is read
//!   again.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use seedgate::config::Durability;
use seedgate::config::RoutingKey;
use seedgate::loadbalancing::ring::Ring;
use seedgate::loadbalancing::router::{Member, Route, Router};
use seedgate::proto::Limits;
use seedgate::proto::split::split;
use seedgate::signal::Signal;
use seedgate::store::{AppendPart, Store, StoreOptions};

const SPANS: usize = 1_000;
const BLOCKS: usize = 10;
const TRACES: usize = 100;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn request() -> Vec<u8> {
    let per_block = SPANS / BLOCKS;
    let resource_spans = (0..BLOCKS)
        .map(|b| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", &format!("service-{b}")),
                    kv("k8s.namespace.name", "shoot--bench--a"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "bench".to_owned(),
                    ..Default::default()
                }),
                spans: (0..per_block)
                    .map(|i| {
                        let n = b * per_block + i;
                        let trace = (n * 7919) % TRACES;
                        Span {
                            trace_id: (trace as u128 * 0x9e37_79b9_7f4a_7c15)
                                .to_be_bytes()
                                .to_vec(),
                            span_id: (n as u64 + 1).to_be_bytes().to_vec(),
                            name: format!("GET /api/items/{n}"),
                            start_time_unix_nano: 1_700_000_000_000_000_000 + n as u64,
                            end_time_unix_nano: 1_700_000_000_000_100_000 + n as u64,
                            attributes: vec![
                                kv("http.method", "GET"),
                                kv("http.route", "/api/items/{id}"),
                                kv("http.status_code", "200"),
                                kv("net.peer.name", "backend.example"),
                            ],
                            ..Default::default()
                        }
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let buf = request();
    let ring = Ring::new((0..4).map(|i| format!("http://10.0.0.{i}:4317")));
    let mut g = c.benchmark_group("lb_split_1000_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("count_records", |b| {
        b.iter(|| seedgate::proto::count_records(Signal::Traces, black_box(&buf)));
    });
    g.bench_function("split_trace_id_4_backends", |b| {
        b.iter(|| {
            split(
                Signal::Traces,
                RoutingKey::TraceId,
                black_box(&buf),
                ring.len(),
                &|h| ring.owner(h),
            )
        });
    });
    g.bench_function("split_trace_id_1_owner", |b| {
        b.iter(|| {
            split(
                Signal::Traces,
                RoutingKey::TraceId,
                black_box(&buf),
                4,
                &|_| 1,
            )
        });
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(StoreOptions {
        dir: dir.path().to_path_buf(),
        map_size: 16 << 20,
        durability: Durability::None,
        max_ops_per_commit: 16,
    })
    .expect("a store");
    let pipeline = store.queue("pipeline/traces/traces").expect("a queue");
    let members = ring
        .members()
        .map(|m| Member {
            queue: store
                .queue(&format!("lb/traces/traces/{m}"))
                .expect("a queue"),
            routed: Counter::default(),
        })
        .collect();
    let router = Router::default();
    let token = router.take_over();
    router.publish(
        token,
        Some(Route::new(
            Signal::Traces,
            RoutingKey::TraceId,
            ring.clone(),
            members,
            u64::MAX,
        )),
    );
    let spread = |body: &Bytes, keys: Option<&[u64]>| {
        let entry = AppendPart {
            queue: Arc::clone(&pipeline),
            records: SPANS as u32,
            payload: body.clone(),
        };
        let (_, spreading) = router.spread(&pipeline, vec![entry], keys);
        if let Some(s) = spreading {
            s.release();
        }
    };
    let scan_keys = |body: &[u8]| {
        let mut keys = Vec::new();
        seedgate::proto::scan_keyed(Signal::Traces, body, &[], Limits::DEFAULT, Some(&mut keys))
            .expect("our own request scans");
        keys
    };
    let body = Bytes::from(buf.clone());
    let keys = scan_keys(&body);
    g.bench_function("ingest_split_4_backends", |b| {
        b.iter(|| spread(black_box(&body), None));
    });
    g.bench_function("ingest_split_4_backends_scan_keys", |b| {
        b.iter(|| spread(black_box(&body), Some(&keys)));
    });
    let one_trace = Bytes::from(one_trace_request());
    let one_keys = scan_keys(&one_trace);
    g.bench_function("ingest_split_one_trace", |b| {
        b.iter(|| spread(black_box(&one_trace), None));
    });
    g.bench_function("ingest_split_one_trace_scan_keys", |b| {
        b.iter(|| spread(black_box(&one_trace), Some(&one_keys)));
    });
    g.finish();
}

/// The same spans, all of one trace.
fn one_trace_request() -> Vec<u8> {
    let mut req = ExportTraceServiceRequest::decode(request().as_slice()).expect("our own request");
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                span.trace_id = vec![7; 16];
            }
        }
    }
    req.encode_to_vec()
}

criterion_group!(benches, bench);
criterion_main!(benches);

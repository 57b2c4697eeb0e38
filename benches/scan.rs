//! The cost of "scan, don't decode": `proto::scan` against a full prost
//! decode of the same logs request (the baseline), and the slice +
//! concatenate step that routing and batching do with the scan's ranges.
//!
//! The request: 10 resource blocks (one namespace each) of 10 log records
//! of about 300 bytes of record fields (about 360 bytes per record with
//! the resource and framing overhead): 100 records, 36 030 bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message;
use seedgate::{proto, signal::Signal};

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        key_strindex: 0,
    }
}

fn request() -> ExportLogsServiceRequest {
    let resource_logs = (0..10)
        .map(|r| ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("k8s.cluster.name", "seed-eu1"),
                    string_kv("k8s.pod.name", &format!("kube-apiserver-{r}-7f9c")),
                    string_kv("k8s.container.name", "kube-apiserver"),
                    string_kv("k8s.namespace.name", &format!("shoot--project--cluster{r}")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "fluent-bit".to_owned(),
                    version: "4.0.3".to_owned(),
                    ..Default::default()
                }),
                log_records: (0..10)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i,
                        observed_time_unix_nano: 1_700_000_000_000_000_100 + i,
                        severity_number: 9,
                        severity_text: "INFO".to_owned(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "I0612 10:00:00.{i:06} 1 httplog.go:132] \"HTTP\" verb=\"GET\" \
                                 URI=\"/api/v1/namespaces/kube-system/pods?limit=500\" \
                                 latency=\"3.2ms\" userAgent=\"kubectl/v1.31\" \
                                 audit-ID=\"6d1c2b7e-{r:04}-{i:04}\" srcIP=\"10.0.0.1:4431\" resp=200"
                            ))),
                        }),
                        attributes: vec![
                            string_kv("log.iostream", "stderr"),
                            string_kv("log.file.path", "/var/log/pods/x.log"),
                        ],
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

fn bench(c: &mut Criterion) {
    let buf = request().encode_to_vec();
    let keys = vec!["k8s.namespace.name".to_owned()];
    // Fail loudly rather than bench a broken input.
    let blocks = proto::scan(Signal::Logs, &buf, &keys).expect("the bench request scans");
    assert_eq!(blocks.len(), 10);
    assert_eq!(blocks.iter().map(|b| b.records).sum::<u32>(), 100);
    eprintln!(
        "request: {} bytes, {} bytes per record on average",
        buf.len(),
        buf.len() / 100
    );

    let mut group = c.benchmark_group("logs_100x300B_10_resources");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("prost_decode", |b| {
        b.iter(|| ExportLogsServiceRequest::decode(black_box(buf.as_slice())))
    });
    group.bench_function("scan", |b| {
        b.iter(|| proto::scan(Signal::Logs, black_box(&buf), &keys))
    });
    group.bench_function("count_records", |b| {
        b.iter(|| proto::count_records(Signal::Logs, black_box(&buf)))
    });
    group.bench_function("scan_slice_concat", |b| {
        let mut out = Vec::with_capacity(buf.len());
        b.iter(|| {
            out.clear();
            let blocks = proto::scan(Signal::Logs, black_box(&buf), &keys)?;
            proto::concat(&buf, &blocks, &mut out);
            Ok::<usize, proto::ScanError>(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

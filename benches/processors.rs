//! The processors' per-request work, next to the scan every request already
//! pays at ingest (`count_records`), in the same run.
//!
//! The request: what `loadgen --realistic-traces --spans-per-trace 4` sends,
//! 100 spans over 10 namespaces (five services, eight span names, 5%
//! errors, 1 ms to 2 s durations), about 250 bytes a span.
//!
//! Groups:
//! - `count_records`: the scan baseline;
//! - `resource_3_actions`: the `resource` processor (insert, upsert,
//!   delete) rewriting every block's resource at the wire level;
//! - `span_facts`: tail sampling's indexing of a pending entry (each
//!   span's trace ID, times and status, at the wire level);
//! - `spanmetrics_deltas`: span metrics' deltas entry of the request (read
//!   from its bytes, series keys, histogram buckets, the entry's encoding:
//!   what ingest does);
//! - `sampler_decide_one_trace`: the policies on the request's first trace
//!   (its spans in this request).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use seedgate::config::ProcessorConfig;
use seedgate::processors::Processors;
use seedgate::processors::spanmetrics::SpanMetrics;
use seedgate::processors::tail_sampling::Sampler;
use seedgate::proto::span_facts::for_each_span;
use seedgate::signal::Signal;
use seedgate::tools::records::RequestSpec;
use seedgate::tools::template::{Realism, Template, TraceShape};

const CONFIG: &str = "
pipelines:
  - name: red
    signals: [metrics]
    output: { type: noop }
  - name: traces
    signals: [traces]
    output: { type: noop }
    processors:
      - resource:
          attributes:
            - { key: k8s.node.name, value: node-1, action: insert }
            - { key: deployment.environment, value: prod, action: upsert }
            - { key: loadgen.unused, action: delete }
      - spanmetrics: { metrics_pipeline: red }
      - tail_sampling:
          policies:
            - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
            - { name: slow, type: latency, latency: { threshold_ms: 1000 } }
            - { name: some, type: probabilistic, probabilistic: { sampling_percentage: 10 } }
";

fn request() -> Vec<u8> {
    let namespaces: Vec<String> = (0..10).map(|i| format!("shoot--p--s{i}")).collect();
    let template = Template::new(
        Signal::Traces,
        &RequestSpec {
            first_seq: 0,
            records: 100,
            namespaces: &namespaces,
            record_size: 250,
            time_unix_nano: 0,
        },
    )
    .expect("template");
    template.render_with(
        4_000,
        1_700_000_000_000_000_000,
        TraceShape::Spread(4),
        Some(Realism::DEFAULT),
    )
}

fn bench(c: &mut Criterion) {
    let config = seedgate::config::parse("bench.yaml", CONFIG).expect("config");
    let processors = &config.pipelines[1].processors;
    let resource = Processors::build(processors).expect("resource");
    let (span_config, sampling_config) = match (&processors[1], &processors[2]) {
        (ProcessorConfig::SpanMetrics(s), ProcessorConfig::TailSampling(t)) => (s, t),
        _ => unreachable!("the bench configuration"),
    };
    let spanmetrics = SpanMetrics::new(span_config);
    let mut sampler = Sampler::new(sampling_config).expect("sampler");
    let body = request();
    let bytes = bytes::Bytes::from(body.clone());
    // The request's first trace alone (its other spans are in other
    // requests).
    let mut first = ExportTraceServiceRequest::decode(body.as_slice())
        .expect("a request")
        .resource_spans;
    let id = first[0].scope_spans[0].spans[0].trace_id.clone();
    for rs in &mut first {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| s.trace_id == id);
        }
    }

    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Elements(100));
    g.bench_function("count_records", |b| {
        b.iter(|| seedgate::proto::count_records(Signal::Traces, black_box(&body)))
    });
    g.bench_function("resource_3_actions", |b| {
        b.iter(|| resource.apply(black_box(bytes.clone())).expect("rewrite"))
    });
    g.bench_function("span_facts", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for_each_span(black_box(&body), &[], |s| {
                black_box(s);
                n += 1;
            })
            .expect("walk");
            n
        })
    });
    g.bench_function("spanmetrics_deltas", |b| {
        b.iter(|| {
            spanmetrics
                .encoded_deltas(black_box(&body))
                .expect("deltas")
        })
    });
    let spans: usize = first
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    g.throughput(Throughput::Elements(spans as u64));
    let now = Instant::now();
    g.bench_function("sampler_decide_one_trace", |b| {
        b.iter(|| sampler.decide(black_box(&first), now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

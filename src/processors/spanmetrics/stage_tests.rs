//! The flusher against a real store: delta temporality, the cardinality
//! limit, and what one flush settles.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;

const MS: u64 = 1_000_000;

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    ctx: StageContext,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::scratch_store(dir.path());
    let ctx =
        crate::processors::test_context(&store, &Destination::queue_name("traces", Signal::Traces));
    Harness {
        _dir: dir,
        ctx,
        store,
    }
}

fn request(spans: &[(&str, u64)]) -> Bytes {
    let resource_spans = spans
        .iter()
        .map(|(service, nanos)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue((*service).to_owned())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "op".to_owned(),
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 1 + nanos,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())
}

impl Harness {
    /// Stores the deltas of `spans` as ingest does.
    async fn ingest(&self, stage: &Stage, spans: &[(&str, u64)]) {
        let part = stage.deltas_part(&request(spans)).unwrap().unwrap();
        crate::processors::test_append(&self.ctx, part).await;
    }

    /// Every metrics request emitted so far, oldest first.
    fn emitted(&self) -> Vec<ExportMetricsServiceRequest> {
        let target = self
            .store
            .queue(&Destination::queue_name("red", Signal::Metrics))
            .unwrap();
        self.store
            .read(&target, 0, u64::MAX, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| ExportMetricsServiceRequest::decode(&e.payload[..]).unwrap())
            .collect()
    }
}

/// `(service.name or "overflow", calls, start, time, temporality)` of the
/// calls points of a request.
fn calls(req: &ExportMetricsServiceRequest) -> Vec<(String, i64, u64, u64, i32)> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if let Some(metric::Data::Sum(s)) = &m.data {
                for p in &s.data_points {
                    let key = SeriesKey::new(p.attributes.clone());
                    let name = key.service_name().unwrap_or("overflow").to_owned();
                    let Some(number_data_point::Value::AsInt(v)) = p.value else {
                        panic!("{p:?}")
                    };
                    out.push((
                        name,
                        v,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        s.aggregation_temporality,
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

fn stage(h: &Harness, extra: &str) -> Stage {
    let c: SpanMetricsConfig = serde_saphyr::from_str(&format!(
        "metrics_pipeline: red\nhistogram: {{ explicit: {{ buckets: [5ms] }} }}\n{extra}"
    ))
    .unwrap();
    Stage::new(&c, &h.store, "traces").unwrap()
}

#[tokio::test]
async fn delta_flushes_send_what_they_fold_and_the_limit_overflows() {
    let h = harness();
    let s = stage(
        &h,
        "aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\naggregation_cardinality_limit: 2",
    );
    h.ingest(&s, &[("a", MS), ("b", 10 * MS)]).await;
    h.ingest(&s, &[("c", MS), ("a", MS)]).await;
    assert_eq!(s.deltas.entries(), 2);

    let f = s.flush(&h.ctx).await.unwrap();
    assert!(f.settled);
    assert_eq!((f.spans, f.overflow_spans, f.series), (4, 1, 3));
    assert_eq!(s.deltas.entries(), 0, "the folded deltas are deleted");
    assert_eq!(s.state.entries(), 1);
    let sent = h.emitted();
    assert_eq!(sent.len(), 1);
    let first = calls(&sent[0]);
    let delta = AggregationTemporality::Delta as i32;
    let names: Vec<_> = first.iter().map(|c| (c.0.as_str(), c.1, c.4)).collect();
    assert_eq!(
        names,
        [("a", 2, delta), ("b", 1, delta), ("overflow", 1, delta)]
    );
    let flushed_at = first[0].3;

    // Nothing new: nothing sent, nothing rewritten.
    let f = s.flush(&h.ctx).await.unwrap();
    assert!(!f.settled);
    assert_eq!(h.emitted().len(), 1);

    // The next point starts where the last flush ended; c still overflows.
    h.ingest(&s, &[("a", MS), ("c", MS), ("b", MS)]).await;
    let f = s.flush(&h.ctx).await.unwrap();
    assert_eq!((f.spans, f.overflow_spans, f.series), (3, 1, 3));
    let sent = h.emitted();
    assert_eq!(sent.len(), 2);
    let second = calls(&sent[1]);
    let names: Vec<_> = second.iter().map(|c| (c.0.as_str(), c.1)).collect();
    assert_eq!(names, [("a", 1), ("b", 1), ("overflow", 1)]);
    assert!(second.iter().all(|c| c.2 == flushed_at && c.3 > flushed_at));
    assert_eq!(s.state.entries(), 1, "the old snapshot is deleted");
}

#[tokio::test]
async fn cumulative_series_survive_a_new_stage_with_their_start() {
    let h = harness();
    let s = stage(&h, "");
    h.ingest(&s, &[("a", MS), ("a", 10 * MS)]).await;
    s.flush(&h.ctx).await.unwrap();
    let first = calls(&h.emitted()[0]);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, 2);

    // A new stage (a reload, a restart) on the same store.
    drop(s);
    let s = stage(&h, "");
    h.ingest(&s, &[("a", MS)]).await;
    let f = s.flush(&h.ctx).await.unwrap();
    assert!(f.settled);
    let sent = h.emitted();
    let last = calls(&sent[1]);
    assert_eq!(last[0].1, 3);
    assert_eq!(last[0].2, first[0].2, "the start time stays");
    assert_eq!(last[0].4, AggregationTemporality::Cumulative as i32);
    // No new spans: the totals are sent again, the snapshot kept as is.
    let f = s.flush(&h.ctx).await.unwrap();
    assert!(f.settled);
    assert_eq!(calls(&h.emitted()[2])[0].1, 3);
    assert_eq!(s.state.entries(), 1);
}

//! The metrics a flush sends: the Collector's `calls` sum and `duration`
//! histogram, one resource per service.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::aggregate::SpanMetrics;
use super::key::SeriesKey;
use super::stored::StoredAggregate;
use crate::config::spanmetrics::Temporality;

/// The instrumentation scope of the metrics.
pub const SCOPE_NAME: &str = "seedgate/spanmetrics";

/// The data points of one service.
#[derive(Default)]
struct Points {
    calls: Vec<NumberDataPoint>,
    durations: Vec<HistogramDataPoint>,
}

impl SpanMetrics {
    /// The metrics of `series` at `now_unix_nano`: one `ResourceMetrics`
    /// per `service.name` (the overflow series' resource has no
    /// attributes), each with `<namespace>.calls` (a monotonic sum) and
    /// `<namespace>.duration` (an explicit-bucket histogram in the configured
    /// unit), in the configured temporality. Every dimension, `service.name`
    /// too, is an attribute of the data points, as the Collector's.
    ///
    /// A point starts at the series' stored start when cumulative, at
    /// `delta_start_unix_nano` (the previous flush) when delta. A series
    /// stored with other buckets than configured sends its calls only.
    pub fn emit(
        &self,
        series: impl IntoIterator<Item = (SeriesKey, StoredAggregate)>,
        now_unix_nano: u64,
        delta_start_unix_nano: u64,
    ) -> ExportMetricsServiceRequest {
        let bounds = self.explicit_bounds();
        let mut services: BTreeMap<Option<String>, Points> = BTreeMap::new();
        for (key, stored) in series {
            let start = match self.temporality {
                Temporality::Cumulative => stored.start_time_unix_nano,
                Temporality::Delta => delta_start_unix_nano,
            };
            let t = &stored.totals;
            let points = services
                .entry(key.service_name().map(str::to_owned))
                .or_default();
            let attributes = key.attributes().to_vec();
            if t.bucket_counts.len() == bounds.len() + 1 {
                points.durations.push(HistogramDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: start,
                    time_unix_nano: now_unix_nano,
                    count: t.calls,
                    sum: Some(t.sum / self.unit.millis()),
                    bucket_counts: t.bucket_counts.clone(),
                    explicit_bounds: bounds.clone(),
                    ..Default::default()
                });
            }
            points.calls.push(NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: now_unix_nano,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(t.calls).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: services
                .into_iter()
                .map(|(service, points)| self.resource_metrics(service, points))
                .collect(),
        }
    }

    fn resource_metrics(&self, service: Option<String>, points: Points) -> ResourceMetrics {
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        let attributes = service
            .map(|s| KeyValue {
                key: "service.name".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }),
                ..Default::default()
            })
            .into_iter()
            .collect();
        let calls = Metric {
            name: self.metric_name("calls"),
            data: Some(metric::Data::Sum(Sum {
                data_points: points.calls,
                aggregation_temporality: temporality,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let mut metrics = vec![calls];
        if !points.durations.is_empty() {
            metrics.push(Metric {
                name: self.metric_name("duration"),
                unit: self.unit.as_str().to_owned(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: points.durations,
                    aggregation_temporality: temporality,
                })),
                ..Default::default()
            });
        }
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    /// `<namespace>.<name>`, or `<name>` without a namespace.
    fn metric_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }
}

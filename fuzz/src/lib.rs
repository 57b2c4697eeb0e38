//! Oracles for the fuzz targets: what a full prost decode says about an
//! export request, to hold seedgate's wire-level answers against.
//!
//! The wire scan (`seedgate::proto::scan`) never decodes; prost does, with
//! the same generated types seedgate links. Where prost accepts a buffer,
//! the two must agree on every resource block's record count and routing
//! key, and any selection of blocks must decode to exactly those resources.

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::any_value,
    metrics::v1::{Metric, metric},
    resource::v1::Resource,
};
use prost::Message;
use seedgate::signal::Signal;

/// The routing keys the targets scan for, in priority order: the default
/// key and a second one, so priority between two present keys is exercised.
pub const KEYS: [&str; 2] = ["k8s.namespace.name", "service.name"];

/// [`KEYS`] as `scan` takes them.
pub fn keys() -> Vec<String> {
    KEYS.iter().map(|k| (*k).to_owned()).collect()
}

/// Per top-level resource block: its record count and routing key.
pub type Summary = Vec<(u32, Option<String>)>;

/// An `Export*ServiceRequest` as the oracles see it.
pub trait Request: Message + Default + PartialEq + std::fmt::Debug + Sized {
    /// Per top-level block: records (log records, spans, data points) and
    /// the resource.
    fn blocks(&self) -> Vec<(usize, Option<&Resource>)>;

    /// The request with only the blocks whose index `keep` accepts.
    fn keep(&self, keep: &dyn Fn(usize) -> bool) -> Self;

    /// The trace ID of every span (empty for other signals).
    fn trace_ids(&self) -> Vec<&[u8]> {
        Vec::new()
    }

    /// What the scan must report for this request.
    fn summary(&self) -> Summary {
        self.blocks()
            .into_iter()
            .map(|(n, r)| {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                (n, routing_key(r).map(str::to_owned))
            })
            .collect()
    }

    /// Records in the whole request.
    fn records(&self) -> u64 {
        self.blocks().iter().map(|(n, _)| *n as u64).sum()
    }
}

/// Something to run with the request type of a signal.
pub trait PerSignal {
    /// What the run returns.
    type Out;
    /// Runs with `R`, the request type of the signal.
    fn run<R: Request>(self) -> Self::Out;
}

/// Runs `job` with the request type of `signal`.
pub fn with_request<J: PerSignal>(signal: Signal, job: J) -> J::Out {
    match signal {
        Signal::Logs => job.run::<ExportLogsServiceRequest>(),
        Signal::Metrics => job.run::<ExportMetricsServiceRequest>(),
        Signal::Traces => job.run::<ExportTraceServiceRequest>(),
    }
}

/// The routing key of a resource as the scan defines it: the string value
/// of the first of [`KEYS`] that some attribute has with a string value.
fn routing_key(resource: Option<&Resource>) -> Option<&str> {
    let attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    KEYS.iter().find_map(|name| {
        attrs
            .iter()
            .find_map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) if a.key == *name => Some(s.as_str()),
                _ => None,
            })
    })
}

/// The items of `v` whose index `keep` accepts.
fn kept<T: Clone>(v: &[T], keep: &dyn Fn(usize) -> bool) -> Vec<T> {
    v.iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, t)| t.clone())
        .collect()
}

impl Request for ExportLogsServiceRequest {
    fn blocks(&self) -> Vec<(usize, Option<&Resource>)> {
        self.resource_logs
            .iter()
            .map(|b| {
                let n = b.scope_logs.iter().map(|s| s.log_records.len()).sum();
                (n, b.resource.as_ref())
            })
            .collect()
    }

    fn keep(&self, keep: &dyn Fn(usize) -> bool) -> Self {
        Self {
            resource_logs: kept(&self.resource_logs, keep),
        }
    }
}

impl Request for ExportTraceServiceRequest {
    fn blocks(&self) -> Vec<(usize, Option<&Resource>)> {
        self.resource_spans
            .iter()
            .map(|b| {
                let n = b.scope_spans.iter().map(|s| s.spans.len()).sum();
                (n, b.resource.as_ref())
            })
            .collect()
    }

    fn keep(&self, keep: &dyn Fn(usize) -> bool) -> Self {
        Self {
            resource_spans: kept(&self.resource_spans, keep),
        }
    }

    fn trace_ids(&self) -> Vec<&[u8]> {
        self.resource_spans
            .iter()
            .flat_map(|b| &b.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.as_slice())
            .collect()
    }
}

impl Request for ExportMetricsServiceRequest {
    fn blocks(&self) -> Vec<(usize, Option<&Resource>)> {
        self.resource_metrics
            .iter()
            .map(|b| {
                let n = b
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .map(data_points)
                    .sum();
                (n, b.resource.as_ref())
            })
            .collect()
    }

    fn keep(&self, keep: &dyn Fn(usize) -> bool) -> Self {
        Self {
            resource_metrics: kept(&self.resource_metrics, keep),
        }
    }
}

/// The data points of a metric, whatever its type.
fn data_points(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(d)) => d.data_points.len(),
        Some(metric::Data::Sum(d)) => d.data_points.len(),
        Some(metric::Data::Histogram(d)) => d.data_points.len(),
        Some(metric::Data::ExponentialHistogram(d)) => d.data_points.len(),
        Some(metric::Data::Summary(d)) => d.data_points.len(),
    }
}

/// Splits a fuzz input into a control byte and the rest.
pub fn control(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(c, rest)| (*c, rest))
}

/// The signal a control byte picks.
pub fn signal_of(control: u8) -> Signal {
    Signal::ALL[usize::from(control) % Signal::ALL.len()]
}

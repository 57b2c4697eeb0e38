//! The three OTLP signals and what differs between them on the wire and on
//! the HTTP and gRPC surfaces.
//!
//! Everything signal-specific that is a plain constant lives here, so the
//! receivers, the scanner and the exporters agree on paths and names.

use serde::{Deserialize, Serialize};

/// One OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `opentelemetry.proto.collector.logs.v1`
    Logs,
    /// `opentelemetry.proto.collector.metrics.v1`
    Metrics,
    /// `opentelemetry.proto.collector.trace.v1`
    Traces,
}

impl Signal {
    /// All signals, in a stable order.
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Metrics, Signal::Traces];

    /// The bounded label used in metrics and queue names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
            Signal::Traces => "traces",
        }
    }

    /// The OTLP/HTTP path, e.g. `/v1/logs`.
    pub const fn http_path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
            Signal::Traces => "/v1/traces",
        }
    }

    /// The fully qualified gRPC service name.
    pub const fn grpc_service(self) -> &'static str {
        match self {
            Signal::Logs => "opentelemetry.proto.collector.logs.v1.LogsService",
            Signal::Metrics => "opentelemetry.proto.collector.metrics.v1.MetricsService",
            Signal::Traces => "opentelemetry.proto.collector.trace.v1.TraceService",
        }
    }

    /// The gRPC method path, e.g. `/opentelemetry.proto.collector.logs.v1.LogsService/Export`.
    pub const fn grpc_path(self) -> &'static str {
        match self {
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logs" => Ok(Signal::Logs),
            "metrics" => Ok(Signal::Metrics),
            "traces" => Ok(Signal::Traces),
            other => Err(format!(
                "unknown signal {other:?}: expected logs, metrics or traces"
            )),
        }
    }
}

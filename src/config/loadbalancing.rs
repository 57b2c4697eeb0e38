//! The `loadbalancing` block of a pipeline: its output is a set of backends,
//! each record goes to the backend that owns its routing key.
//!
//! ```yaml
//! pipelines:
//!   - name: traces
//!     signals: [traces]
//!     output: { type: otlp_grpc }        # no endpoint: the resolver gives them
//!     loadbalancing:
//!       routing_key: traceID             # traceID | service | resource | streamID
//!       resolver:
//!         static: [http://gw-0:4317, http://gw-1:4317]
//!         # or: dns: { hostname: gw-headless.obs.svc, port: 4317, interval: 5s }
//!         # or: kubernetes: { service: gw, namespace: obs, port: 4317 }
//!       failover_after: 30s
//! ```
//!
//! Everything else of the output (TLS, headers, compression, timeout) is
//! shared by every backend.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{OutputConfig, Problems};
use crate::signal::Signal;

/// How often a DNS name is resolved again, by default.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a backend may fail without a break before its data moves on.
pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_secs(30);
/// How often a backend taken out for failing is probed.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// See the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// What decides the backend of a record.
    pub routing_key: RoutingKey,
    /// Where the set of backends comes from.
    pub resolver: ResolverConfig,
    /// A backend whose sends have failed without a success for this long is
    /// taken out of the set and its queued data re-routed; zero disables it.
    #[serde(default = "default_failover_after", with = "humantime_serde")]
    pub failover_after: Duration,
    /// How often a backend taken out for failing is probed with an empty
    /// export request; it rejoins the set on the first success.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
}

/// What a record's backend is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoutingKey {
    /// The span's trace ID: all spans of a trace on one backend (traces).
    #[serde(rename = "traceID")]
    TraceId,
    /// The resource's `service.name` (any signal).
    #[serde(rename = "service")]
    Service,
    /// The whole resource (any signal).
    #[serde(rename = "resource")]
    Resource,
    /// The metric stream: resource, scope, metric name and the data point's
    /// attributes (metrics).
    #[serde(rename = "streamID")]
    StreamId,
}

impl RoutingKey {
    /// As written in the config; also the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RoutingKey::TraceId => "traceID",
            RoutingKey::Service => "service",
            RoutingKey::Resource => "resource",
            RoutingKey::StreamId => "streamID",
        }
    }

    /// Whether this key means something for `signal`.
    pub const fn fits(self, signal: Signal) -> bool {
        match self {
            RoutingKey::TraceId => matches!(signal, Signal::Traces),
            RoutingKey::StreamId => matches!(signal, Signal::Metrics),
            RoutingKey::Service | RoutingKey::Resource => true,
        }
    }
}

/// Exactly one way to find the backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// A fixed list of endpoints (`http(s)://host:port`).
    #[serde(default, rename = "static")]
    pub static_endpoints: Option<Vec<String>>,
    /// The A/AAAA records of a name (a headless Service).
    #[serde(default)]
    pub dns: Option<DnsResolverConfig>,
    /// The ready endpoints of a Service, watched through its EndpointSlices.
    #[serde(default)]
    pub kubernetes: Option<KubernetesResolverConfig>,
}

/// Backends from a Service's `discovery.k8s.io/v1` EndpointSlices: one per
/// ready address, followed by a watch (no polling, no DNS TTLs). The API
/// server is found like `kubectl` does (in-cluster, or `KUBECONFIG`); it
/// needs `get`, `list`, `watch` on `endpointslices` in `namespace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesResolverConfig {
    /// The Service's name (the slices' `kubernetes.io/service-name` label).
    pub service: String,
    /// Its namespace; default: `POD_NAMESPACE`, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The port every backend listens on.
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
}

/// Backends from DNS: one per address of `hostname`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsResolverConfig {
    /// The name to resolve.
    pub hostname: String,
    /// The port every backend listens on.
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// How often to resolve again.
    #[serde(default = "default_dns_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Ask this server (UDP) instead of the system's resolvers.
    #[serde(default)]
    pub nameserver: Option<SocketAddr>,
}

/// `affinity`: a traces pipeline's spans go first to the replica that owns
/// their trace (rendezvous over the replicas the resolver finds, this one
/// included), so that one replica's processors see every span of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityConfig {
    /// The replicas, this one included: a static list, DNS or the headless
    /// Service's EndpointSlices.
    pub resolver: ResolverConfig,
    /// As `loadbalancing.failover_after`: a replica that has not answered
    /// for this long leaves the ring and its traces go to the others.
    #[serde(default = "default_failover_after", with = "humantime_serde")]
    pub failover_after: Duration,
    /// As `loadbalancing.probe_interval`.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
}

/// The gRPC metadata key of a request a replica forwards to the owner of
/// its traces (`pipelines[].affinity`): the pipeline that owns it.
pub const OWNER_HEADER: &str = "seedgate-owner";

impl AffinityConfig {
    /// What the forwarder of `pipeline` sends to the owner of a trace:
    /// OTLP/gRPC with the owner metadata, uncompressed (replicas of one
    /// seed share a network).
    pub fn forward_output(pipeline: &str) -> OutputConfig {
        let mut output = OutputConfig::of_kind(super::OutputType::OtlpGrpc);
        output.compression = super::Compression::None;
        output.headers = vec![super::HeaderConfig::new(OWNER_HEADER, "", pipeline)];
        output
    }

    /// The load balancing the forwarding runs on: by trace ID.
    pub fn loadbalancing(&self) -> LoadBalancingConfig {
        LoadBalancingConfig {
            routing_key: RoutingKey::TraceId,
            resolver: self.resolver.clone(),
            failover_after: self.failover_after,
            probe_interval: self.probe_interval,
        }
    }
}

fn default_failover_after() -> Duration {
    DEFAULT_FAILOVER_AFTER
}
fn default_probe_interval() -> Duration {
    DEFAULT_PROBE_INTERVAL
}
fn default_dns_interval() -> Duration {
    DEFAULT_DNS_INTERVAL
}
fn default_scheme() -> String {
    "http".to_owned()
}

/// A resolver's `port` and `scheme` at `at`.
fn check_port_and_scheme(p: &mut Problems, at: &str, port: u16, scheme: &str) {
    if port == 0 {
        p.push(format!("{at}.port"), "must not be 0");
    }
    if scheme != "http" && scheme != "https" {
        p.push(
            format!("{at}.scheme"),
            format!("{scheme:?} must be http or https"),
        );
    }
}

/// Checks `lb` of a pipeline whose output is `output` and signals `signals`.
pub(super) fn check(
    p: &mut Problems,
    at: &str,
    lb: &LoadBalancingConfig,
    output: &OutputConfig,
    signals: &[Signal],
) {
    for s in signals {
        if !lb.routing_key.fits(*s) {
            p.push(
                format!("{at}.routing_key"),
                format!(
                    "{} does not apply to {s}: the pipeline must carry only {}",
                    lb.routing_key.as_str(),
                    if lb.routing_key == RoutingKey::TraceId {
                        "traces"
                    } else {
                        "metrics"
                    }
                ),
            );
        }
    }
    if !output.kind.is_otlp() {
        p.push(
            at.to_owned(),
            format!("needs an OTLP output, not {}", output.kind.as_str()),
        );
    }
    if lb.probe_interval.is_zero() {
        p.push(format!("{at}.probe_interval"), "must be greater than 0s");
    }
    let r = &lb.resolver;
    let given = [
        r.static_endpoints.is_some(),
        r.dns.is_some(),
        r.kubernetes.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        p.push(
            format!("{at}.resolver"),
            "give exactly one of static, dns and kubernetes",
        );
        return;
    }
    if let Some(k) = &r.kubernetes {
        let at = format!("{at}.resolver.kubernetes");
        if k.service.is_empty() {
            p.push(format!("{at}.service"), "must not be empty");
        }
        check_port_and_scheme(p, &at, k.port, &k.scheme);
    }
    match (&r.static_endpoints, &r.dns) {
        (Some(_), Some(_)) | (None, None) => {}
        (Some(endpoints), None) => {
            if endpoints.is_empty() {
                p.push(
                    format!("{at}.resolver.static"),
                    "must list at least one endpoint",
                );
            }
            for (i, ep) in endpoints.iter().enumerate() {
                super::check_endpoint(p, &format!("{at}.resolver.static[{i}]"), output.kind, ep);
            }
            let mut seen = std::collections::HashSet::new();
            for ep in endpoints {
                if !seen.insert(ep) {
                    p.push(
                        format!("{at}.resolver.static"),
                        format!("{ep:?} is listed twice"),
                    );
                }
            }
        }
        (None, Some(dns)) => {
            if dns.hostname.is_empty() {
                p.push(format!("{at}.resolver.dns.hostname"), "must not be empty");
            }
            check_port_and_scheme(p, &format!("{at}.resolver.dns"), dns.port, &dns.scheme);
            if dns.interval.is_zero() {
                p.push(
                    format!("{at}.resolver.dns.interval"),
                    "must be greater than 0s",
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{assert_problems, parse};

    fn with_resolver(resolver: &str) -> String {
        format!(
            "pipelines:\n  - name: t\n    signals: [traces]\n    output: {{ type: otlp_grpc }}\n    loadbalancing:\n      routing_key: traceID\n      resolver: {resolver}\n"
        )
    }

    #[test]
    fn a_kubernetes_resolver_parses_and_its_problems_are_named() {
        let c = parse(
            "c.yaml",
            &with_resolver("{ kubernetes: { service: gw, namespace: obs, port: 4317 } }"),
        )
        .unwrap();
        let k = c.pipelines[0]
            .loadbalancing
            .as_ref()
            .unwrap()
            .resolver
            .kubernetes
            .clone()
            .unwrap();
        assert_eq!(
            (
                k.service.as_str(),
                k.namespace.as_deref(),
                k.port,
                k.scheme.as_str()
            ),
            ("gw", Some("obs"), 4317, "http")
        );
        assert_problems(
            &with_resolver("{ kubernetes: { service: '', port: 0, scheme: ftp } }"),
            &[
                "pipelines[0].loadbalancing.resolver.kubernetes.service: must not be empty",
                "pipelines[0].loadbalancing.resolver.kubernetes.port: must not be 0",
                "pipelines[0].loadbalancing.resolver.kubernetes.scheme: \"ftp\" must be http or https",
            ],
        );
        assert_problems(
            &with_resolver("{ static: [http://a:1], kubernetes: { service: gw, port: 4317 } }"),
            &["give exactly one of static, dns and kubernetes"],
        );
    }
}

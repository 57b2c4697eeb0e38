//! Where a load-balanced pipeline's backends come from: a static list, the
//! addresses of a DNS name asked again every `interval`, or the ready
//! endpoints of a Kubernetes Service, watched through its EndpointSlices.
//!
//! A resolver publishes the whole set (sorted endpoint URIs) on a `watch`
//! channel each time it changes. A DNS lookup that fails, or answers with
//! no address, keeps the last set, and so does a Service whose slices list
//! no ready endpoint or whose watch fails (kube's watcher retries with
//! backoff): a resolver outage must not empty the ring and strand every
//! backend's queue (what the Collector's loadbalancing exporter also does).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolverConfig as HickoryConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::watch;

use futures::StreamExt as _;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};

use crate::config::{DnsResolverConfig, KubernetesResolverConfig, ResolverConfig};
use crate::metrics::Metrics;
use crate::metrics::lb::LbResult;

/// A set of backend endpoints; `None` until the first answer.
pub type Backends = Option<BTreeSet<String>>;

/// The endpoint URI of `ip` for a DNS-resolved backend.
fn endpoint(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// Builds the hickory resolver of `dns`: the system's configuration, or the
/// one name server given (UDP). Nothing is cached, so every interval asks.
fn dns_resolver(dns: &DnsResolverConfig) -> Result<TokioResolver, String> {
    let mut builder = match dns.nameserver {
        Some(addr) => {
            let mut server = NameServerConfig::udp(addr.ip());
            for c in &mut server.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(
                HickoryConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    builder.options_mut().cache_size = 0;
    builder.build().map_err(|e| e.to_string())
}

/// Runs until `tx` has no receiver left: publishes the backends of `config`.
pub async fn run(
    config: ResolverConfig,
    destination: Arc<str>,
    tx: watch::Sender<Backends>,
    metrics: Arc<Metrics>,
) {
    if let Some(list) = config.static_endpoints {
        tx.send_replace(Some(list.into_iter().collect()));
        tx.closed().await;
        return;
    }
    if let Some(k) = config.kubernetes {
        run_kubernetes(k, destination, tx, metrics).await;
        return;
    }
    let Some(dns) = config.dns else {
        return;
    };
    let count = |result: LbResult| metrics.lb.count_resolution(&destination, result);
    let resolver = match dns_resolver(&dns) {
        Ok(r) => r,
        Err(e) => {
            count(LbResult::Error);
            tracing::error!(destination = %destination, error = %e, "Cannot set up the DNS resolver; no backends");
            tx.closed().await;
            return;
        }
    };
    let mut tick = tokio::time::interval(dns.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
        }
        match resolver.lookup_ip(dns.hostname.as_str()).await {
            Ok(found) => {
                let set = found
                    .iter()
                    .map(|ip| endpoint(&dns.scheme, ip, dns.port))
                    .collect();
                offer(set, &tx, &metrics, &destination, &dns.hostname);
            }
            Err(e) => {
                count(LbResult::Error);
                tracing::warn!(destination = %destination, hostname = %dns.hostname, error = %e, "DNS lookup failed; keeping the last backends");
            }
        }
    }
}

/// The endpoint URIs of a slice's ready endpoints (`ready` unset counts as
/// ready, as Kubernetes says it must be read).
fn ready_endpoints(slice: &EndpointSlice, k: &KubernetesResolverConfig) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter())
        .map(|a| match a.parse::<IpAddr>() {
            Ok(ip) => endpoint(&k.scheme, ip, k.port),
            // addressType FQDN
            Err(_) => format!("{}://{a}:{}", k.scheme, k.port),
        })
        .collect()
}

/// Follows the EndpointSlices of `k.service` until `tx` has no receiver.
/// kube's reflector keeps the slices (a relist replaces them whole); the
/// set is offered after the first list and after every change.
async fn run_kubernetes(
    k: KubernetesResolverConfig,
    destination: Arc<str>,
    tx: watch::Sender<Backends>,
    metrics: Arc<Metrics>,
) {
    let count = |result: LbResult| metrics.lb.count_resolution(&destination, result);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            count(LbResult::Error);
            tracing::error!(destination = %destination, error = %e, "No Kubernetes API server for the kubernetes resolver (in-cluster or KUBECONFIG); no backends");
            tx.closed().await;
            return;
        }
    };
    let namespace = k
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &namespace);
    let selector = format!("kubernetes.io/service-name={}", k.service);
    let (slices, writer) = reflector::store();
    let mut events = watcher::watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .reflect(writer)
        .boxed();
    let mut listed = false;
    let source = format!("{namespace}/{}", k.service);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = tx.closed() => return,
        };
        match event {
            None => return,
            Some(Ok(Event::InitDone)) => listed = true,
            Some(Ok(Event::Apply(_) | Event::Delete(_))) => {}
            Some(Ok(Event::Init | Event::InitApply(_))) => continue,
            Some(Err(e)) => {
                count(LbResult::Error);
                tracing::warn!(destination = %destination, service = %source, error = %e, "Watching the Service's EndpointSlices failed; keeping the last backends, retrying with backoff");
                continue;
            }
        }
        if listed {
            let set = slices
                .state()
                .iter()
                .flat_map(|slice| ready_endpoints(slice, &k))
                .collect();
            offer(set, &tx, &metrics, &destination, &source);
        }
    }
}

/// Publishes a resolved `set` from `source` unless it is empty (the last
/// set stays) or unchanged, and counts the resolution.
fn offer(
    set: BTreeSet<String>,
    tx: &watch::Sender<Backends>,
    metrics: &Metrics,
    destination: &str,
    source: &str,
) {
    if set.is_empty() {
        metrics.lb.count_resolution(destination, LbResult::Empty);
        tracing::warn!(
            destination,
            source,
            "The resolver found no backend; keeping the last backends"
        );
        return;
    }
    metrics.lb.count_resolution(destination, LbResult::Ok);
    if tx.borrow().as_ref() != Some(&set) {
        tracing::info!(
            destination,
            source,
            backends = set.len(),
            "Backends resolved"
        );
        tx.send_replace(Some(set));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_bracket_v6() {
        assert_eq!(
            endpoint(
                "http",
                "10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])),
                4317
            ),
            "http://10.0.0.1:4317"
        );
        assert_eq!(
            endpoint("https", IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 4317),
            "https://[::1]:4317"
        );
    }
}

//! Where a load-balanced pipeline's backends come from: a static list, or
//! the addresses of a DNS name asked again every `interval`.
//!
//! A resolver publishes the whole set (sorted endpoint URIs) on a `watch`
//! channel each time it changes. A DNS lookup that fails, or answers with
//! no address, keeps the last set: a resolver outage must not empty the
//! ring and strand every backend's queue (what the Collector's
//! loadbalancing exporter also does).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolverConfig as HickoryConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::watch;

use crate::config::{DnsResolverConfig, ResolverConfig};
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
                let set: BTreeSet<String> = found
                    .iter()
                    .map(|ip| endpoint(&dns.scheme, ip, dns.port))
                    .collect();
                if set.is_empty() {
                    count(LbResult::Empty);
                    continue;
                }
                count(LbResult::Ok);
                let changed = tx.borrow().as_ref() != Some(&set);
                if changed {
                    tracing::info!(destination = %destination, hostname = %dns.hostname, backends = set.len(), "Backends resolved");
                    tx.send_replace(Some(set));
                }
            }
            Err(e) => {
                count(LbResult::Error);
                tracing::warn!(destination = %destination, hostname = %dns.hostname, error = %e, "DNS lookup failed; keeping the last backends");
            }
        }
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

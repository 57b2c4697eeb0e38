//! The routing's series: created at zero for every destination and route
//! state, so the first drop is a visible increase, and the queue gauges
//! refreshed from the store before a scrape. Here, beside what they
//! describe, so that the metrics registry does not import routing.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::shoots::ShootDirectory;
use super::{Destination, DestinationKind, RouteState};
use crate::metrics::{Dest, DestReason, KindState, Metrics, shoot, to_i64};

impl Metrics {
    /// Creates, at zero, the series of a destination whose label sets are
    /// closed, so the first drop or failure is a visible increase from 0
    /// (a series born at 1 is invisible to `increase()`), and so dashboards
    /// show the destination before anything happens to it.
    pub fn init_destination(&self, d: &Destination) {
        let labels = Dest {
            destination: d.metrics_label().to_owned(),
            signal: d.signal.as_str(),
        };
        let reason = |reason| DestReason {
            destination: d.metrics_label().to_owned(),
            signal: d.signal.as_str(),
            reason,
        };
        self.router.records.get_or_create(&labels).inc_by(0);
        self.router
            .dropped_records
            .get_or_create(&reason("queue_full"))
            .inc_by(0);
        let e = &self.exporter;
        e.sent_records.get_or_create(&labels).inc_by(0);
        e.sent_requests.get_or_create(&labels).inc_by(0);
        e.sent_bytes.get_or_create(&labels).inc_by(0);
        e.failing.get_or_create(&labels).set(0);
        e.healthy.get_or_create(&labels).set(1);
        for r in ["permanent", "max_elapsed", "rejected"] {
            e.dropped_records.get_or_create(&reason(r)).inc_by(0);
        }
    }

    /// Creates the routing and shoot series with closed label sets at zero.
    pub fn init_routing(&self) {
        for signal in crate::signal::Signal::ALL {
            for state in RouteState::all() {
                for kind in [DestinationKind::Pipeline, DestinationKind::Shoot] {
                    self.router
                        .routed
                        .get_or_create(&KindState {
                            kind: kind.as_str(),
                            state: state.as_str(),
                            signal: signal.as_str(),
                        })
                        .inc_by(0);
                }
            }
        }
        self.shoot.init();
    }

    /// Copies the shoot clients' queue depths into their gauges. A client
    /// removed while this ran loses the queue series set for it here (the
    /// manager's own forget may have come first). Only those: a new client
    /// of the same namespace, made meanwhile, keeps its failing series,
    /// which nothing but the manager makes.
    pub fn refresh_shoot_queues(&self, directory: &ShootDirectory) {
        for link in directory.all() {
            for d in link.all() {
                let labels = shoot::ShootSignal {
                    shoot: d.name.clone(),
                    signal: d.signal.as_str(),
                };
                let s = &self.shoot;
                set_depths(
                    [&s.queue_bytes, &s.queue_records, &s.queue_limit],
                    &labels,
                    d,
                );
            }
            if directory.get(&link.namespace).is_none() {
                self.shoot.forget_queues(&link.namespace);
            }
        }
    }

    /// Copies the queue depths from the store into the gauges, so a scrape
    /// shows the values of that moment.
    pub fn refresh_queues<'a>(&self, destinations: impl Iterator<Item = &'a Destination>) {
        for d in destinations {
            let labels = Dest {
                destination: d.name.clone(),
                signal: d.signal.as_str(),
            };
            let q = &self.queue;
            set_depths([&q.bytes, &q.records, &q.limit_bytes], &labels, d);
        }
    }
}

/// Sets a queue's depth gauges for `labels`: bytes, records, and its limit.
fn set_depths<L: Clone + std::hash::Hash + Eq>(
    gauges: [&Family<L, Gauge>; 3],
    labels: &L,
    d: &Destination,
) {
    let values = [
        d.queue.used_bytes(),
        d.queue.records(),
        d.limits.max_bytes.0,
    ];
    for (gauge, value) in gauges.into_iter().zip(values) {
        gauge.get_or_create(labels).set(to_i64(value));
    }
}

//! Split at ingest: the balancer's ring as ingest sees it.
//!
//! The balancer publishes its ring, with each member's queue, as a
//! [`Route`]. Ingest splits a load-balanced pipeline's share of a request by
//! routing key over that route and appends each part straight to its
//! backend's queue, in the transaction that acknowledges the request: a
//! span is written to LMDB and read back once, as for one destination,
//! instead of stored in the pipeline queue and moved by the balancer. The
//! pipeline queue stays the way in when there is no route (before the
//! resolver's first answer, with every backend out) and when a backend's
//! queue is full; the balancer moves what lands there as before.
//!
//! # "An entry is in exactly one queue", with ingest writing backend queues
//!
//! Ingest holds the route it split by (an `Arc`) from before the split until
//! its append is committed. Before the balancer re-routes or drops the queue
//! of a backend that left the ring, it publishes the ring without it and
//! waits ([`Router::quiesce`]) until no ingest holds an older route; then a
//! writer flush. After that nothing can land in the queue it is about to
//! read for the last time. Only the balancer that [`Router::take_over`]
//! last can publish: a pipeline's router is shared by every balancer the
//! pipeline has over reloads (the factory keeps one per pipeline queue), so
//! a balancer being replaced cannot publish behind its successor's back,
//! and the successor waits for its predecessor's readers before it adopts
//! the queues left behind.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;

use super::ring::Ring;
use crate::config::RoutingKey;
use crate::proto::split::{Spread, spread_keyed};
use crate::signal::Signal;
use crate::store::{AppendPart, Queue};

/// How long [`Router::quiesce`] waits between looks.
const QUIESCE_POLL: Duration = Duration::from_millis(1);

/// One pipeline's published ring, shared by ingest and its balancer.
#[derive(Debug, Default)]
pub struct Router {
    /// What ingest splits by; `None`: store into the pipeline queue.
    current: ArcSwapOption<Route>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The balancer allowed to publish.
    owner: u64,
    /// The last token handed out.
    issued: u64,
    /// Routes no longer current that ingest may still hold.
    retired: Vec<Arc<Route>>,
}

/// A ring and its members' queues, as published.
#[derive(Debug)]
pub struct Route {
    signal: Signal,
    key: RoutingKey,
    ring: Ring,
    /// Each ring member's queue, in ring order.
    queues: Vec<Arc<Queue>>,
    /// Each member's `seedgate_lb_routed_records_total`.
    routed: Vec<Counter>,
    /// A backend queue's limit (the pipeline's `queue.max_bytes`).
    limit: u64,
}

/// A member of a [`Route`]: its queue and its routed-records counter.
#[derive(Debug)]
pub struct Member {
    /// Its LMDB queue.
    pub queue: Arc<Queue>,
    /// Its `seedgate_lb_routed_records_total` series.
    pub routed: Counter,
}

impl Route {
    /// The route over `ring`, whose members (in ring order) are `members`.
    pub fn new(
        signal: Signal,
        key: RoutingKey,
        ring: Ring,
        members: Vec<Member>,
        limit: u64,
    ) -> Self {
        let (queues, routed) = members.into_iter().map(|m| (m.queue, m.routed)).unzip();
        Self {
            signal,
            key,
            ring,
            queues,
            routed,
            limit,
        }
    }

    /// The parts of `payload` per member, each reserved on its queue; `None`
    /// (nothing reserved) when it does not split or a queue has no room.
    fn split(
        &self,
        payload: &bytes::Bytes,
        trace_keys: Option<&[u64]>,
    ) -> Option<Vec<(usize, AppendPart)>> {
        let ring = &self.ring;
        if ring.len() != self.queues.len() || ring.is_empty() {
            return None;
        }
        let owner = |h: u64| ring.owner(h);
        let pieces: Vec<(usize, bytes::Bytes, u32)> = match spread_keyed(
            self.signal,
            self.key,
            payload,
            ring.len(),
            &owner,
            trace_keys,
        )
        .ok()?
        {
            Spread::Nothing => return None,
            Spread::Whole { to, records } => vec![(to, payload.clone(), records)],
            Spread::Parts(parts) => parts
                .into_iter()
                .enumerate()
                .filter(|(_, p)| p.records > 0)
                .map(|(i, p)| (i, bytes::Bytes::from(p.body), p.records))
                .collect(),
        };
        let mut parts: Vec<(usize, AppendPart)> = Vec::with_capacity(pieces.len());
        for (i, body, records) in pieces {
            let reserved = self
                .queues
                .get(i)
                .filter(|q| q.try_reserve(body.len() as u64, self.limit));
            let Some(queue) = reserved else {
                // What was reserved on the others goes back too.
                parts.iter().for_each(|(_, p)| p.release());
                return None;
            };
            parts.push((
                i,
                AppendPart {
                    queue: Arc::clone(queue),
                    records,
                    payload: body,
                },
            ));
        }
        Some(parts)
    }
}

/// What ingest stored by a route: holding it keeps the route in use (see
/// the module doc) until the request's commit is answered.
#[derive(Debug)]
pub struct Spreading {
    route: Arc<Route>,
    /// Records per member.
    records: Vec<u64>,
    /// The backend parts, each reserved on its queue.
    pub parts: Vec<AppendPart>,
}

impl Spreading {
    /// The parts were committed: count them per backend.
    pub fn committed(self) {
        for (counter, n) in self.route.routed.iter().zip(&self.records) {
            if *n > 0 {
                counter.inc_by(*n);
            }
        }
    }

    /// The parts will not be stored: give back their reservations.
    pub fn release(&self) {
        crate::store::release_parts(&self.parts);
    }
}

impl Router {
    /// Splits the entries of `entries` bound for `pipeline` over the current
    /// route. Returns the entries left for their own queues (those of other
    /// queues, and those that did not split or found no room) and, when a
    /// route was used, the backend parts with the route held.
    ///
    /// `trace_keys`: each span's trace ID hash, in order, when the share is
    /// one entry (see [`crate::proto::scan_keyed`]); the split then reads
    /// no span again.
    pub fn spread(
        &self,
        pipeline: &Arc<Queue>,
        entries: Vec<AppendPart>,
        trace_keys: Option<&[u64]>,
    ) -> (Vec<AppendPart>, Option<Spreading>) {
        let Some(route) = self.current.load_full() else {
            return (entries, None);
        };
        // Usually every entry splits: nothing left, nothing allocated.
        let mut left = Vec::new();
        let mut spreading = Spreading {
            records: vec![0; route.queues.len()],
            parts: Vec::new(),
            route,
        };
        let own = entries
            .iter()
            .filter(|e| Arc::ptr_eq(&e.queue, pipeline))
            .count();
        let trace_keys = trace_keys.filter(|_| own == 1);
        for entry in entries {
            if !Arc::ptr_eq(&entry.queue, pipeline) {
                left.push(entry);
                continue;
            }
            match spreading.route.split(&entry.payload, trace_keys) {
                Some(parts) => {
                    for (i, part) in parts {
                        if let Some(n) = spreading.records.get_mut(i) {
                            *n += u64::from(part.records);
                        }
                        spreading.parts.push(part);
                    }
                }
                None => left.push(entry),
            }
        }
        (left, Some(spreading))
    }

    /// Makes the caller the only balancer that can publish, withdrawing
    /// what an earlier one published; returns the caller's token.
    pub fn take_over(&self) -> u64 {
        let mut state = self.lock();
        state.issued += 1;
        state.owner = state.issued;
        let token = state.owner;
        self.swap(&mut state, None);
        token
    }

    /// Publishes `route` (`None`: ingest stores into the pipeline queue),
    /// unless a newer balancer has taken over.
    pub fn publish(&self, token: u64, route: Option<Route>) {
        let mut state = self.lock();
        if state.owner == token {
            self.swap(&mut state, route.map(Arc::new));
        }
    }

    /// Waits until no ingest holds a route other than the current one (see
    /// the module doc); logs while it takes long.
    pub async fn quiesce(&self) {
        let start = Instant::now();
        let mut warned = false;
        loop {
            let busy = {
                let mut state = self.lock();
                state.retired.retain(|r| Arc::strong_count(r) > 1);
                state.retired.len()
            };
            if busy == 0 {
                return;
            }
            if !warned && start.elapsed() > Duration::from_secs(1) {
                warned = true;
                tracing::warn!(
                    routes = busy,
                    "Waiting for requests split by an old ring to be committed"
                );
            }
            tokio::time::sleep(QUIESCE_POLL).await;
        }
    }

    fn swap(&self, state: &mut State, route: Option<Arc<Route>>) {
        if let Some(old) = self.current.swap(route) {
            state.retired.push(old);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (plain assignments).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The routers of every load-balanced pipeline, by pipeline queue: one per
/// pipeline for the life of the process, so the balancers a pipeline has
/// over reloads share it (see the module doc).
#[derive(Debug, Default)]
pub struct Routers(Mutex<std::collections::HashMap<String, Arc<Router>>>);

impl Routers {
    /// The router of the pipeline queue `queue`.
    pub fn of(&self, queue: &str) -> Arc<Router> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(queue.to_owned()).or_default())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;

    use super::*;
    use crate::config::Durability;
    use crate::store::{Store, StoreOptions};

    /// One resource, one scope, a span per trace ID in `traces`.
    fn request(traces: &[u8]) -> Bytes {
        let spans = traces
            .iter()
            .map(|t| Span {
                trace_id: vec![*t; 16],
                span_id: vec![1; 8],
                name: format!("span of {t}"),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(req.encode_to_vec())
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        pipeline: Arc<Queue>,
        backends: Vec<Arc<Queue>>,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(StoreOptions {
                dir: dir.path().to_path_buf(),
                map_size: 16 << 20,
                durability: Durability::None,
                max_ops_per_commit: 16,
            })
            .unwrap();
            let backends = (0..3)
                .map(|i| store.queue(&format!("lb/p/traces/b{i}")).unwrap())
                .collect();
            Self {
                pipeline: store.queue("pipeline/p/traces").unwrap(),
                backends,
                _dir: dir,
            }
        }

        /// A route over every backend queue, each limited to `limit` bytes.
        fn route(&self, limit: u64) -> Route {
            let names = (0..self.backends.len()).map(|i| format!("b{i}"));
            let members = self
                .backends
                .iter()
                .map(|q| Member {
                    queue: Arc::clone(q),
                    routed: Counter::default(),
                })
                .collect();
            Route::new(
                Signal::Traces,
                RoutingKey::TraceId,
                Ring::new(names),
                members,
                limit,
            )
        }

        fn entry(&self, payload: &Bytes) -> AppendPart {
            AppendPart {
                queue: Arc::clone(&self.pipeline),
                records: 0,
                payload: payload.clone(),
            }
        }
    }

    #[test]
    fn a_request_is_split_by_trace_over_the_backend_queues_and_a_whole_one_is_not_copied() {
        let f = Fixture::new();
        let router = Router::default();
        // No route: everything stays for the pipeline queue.
        let body = request(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let (left, spreading) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        assert!(spreading.is_none() && left.len() == 1);

        let token = router.take_over();
        router.publish(token, Some(f.route(u64::MAX)));
        let (left, spreading) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        let spreading = spreading.unwrap();
        assert!(left.is_empty());
        assert!(spreading.parts.len() > 1, "8 traces over 3 backends");
        let spans: u32 = spreading.parts.iter().map(|p| p.records).sum();
        assert_eq!(spans, 8);
        for p in &spreading.parts {
            assert_eq!(p.queue.used_bytes(), p.payload.len() as u64, "reserved");
            let got = ExportTraceServiceRequest::decode(&p.payload[..]).unwrap();
            assert_eq!(
                got.resource_spans[0].scope_spans[0].spans.len() as u32,
                p.records
            );
        }
        spreading.committed();

        // One trace: the part is the request itself, not a copy.
        let one = request(&[9, 9, 9]);
        let (_, spreading) = router.spread(&f.pipeline, vec![f.entry(&one)], None);
        let spreading = spreading.unwrap();
        assert_eq!(spreading.parts.len(), 1);
        assert_eq!(spreading.parts[0].payload.as_ptr(), one.as_ptr());
        assert_eq!(spreading.parts[0].records, 3);
    }

    #[test]
    fn a_backend_queue_without_room_leaves_the_entry_to_the_pipeline_queue_reserving_nothing() {
        let f = Fixture::new();
        let router = Router::default();
        let token = router.take_over();
        router.publish(token, Some(f.route(10_000)));
        // The last backend's queue is full; the others have room, and the
        // parts reserved on them before it are given back.
        assert!(f.backends[2].try_reserve(10_000, 10_000));
        let body = request(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let (left, spreading) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        assert_eq!(left.len(), 1);
        assert!(Arc::ptr_eq(&left[0].queue, &f.pipeline));
        assert!(spreading.unwrap().parts.is_empty());
        for q in &f.backends[..2] {
            assert_eq!(
                q.used_bytes(),
                0,
                "{}: a failed split reserves nothing",
                q.name
            );
        }
        assert_eq!(f.backends[2].used_bytes(), 10_000);
    }

    #[tokio::test]
    async fn a_ring_change_waits_for_what_was_split_by_the_old_one_and_a_replaced_balancer_cannot_publish()
     {
        let f = Fixture::new();
        let router = Router::default();
        let first = router.take_over();
        router.publish(first, Some(f.route(u64::MAX)));
        let body = request(&[1, 2, 3]);
        // An ingest splits by the ring and has not committed yet.
        let (_, held) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        let held = held.unwrap();
        router.publish(first, None);
        let wait = tokio::time::timeout(Duration::from_millis(50), router.quiesce()).await;
        assert!(
            wait.is_err(),
            "quiesce returned while a request still held the old ring"
        );
        held.committed();
        tokio::time::timeout(Duration::from_secs(5), router.quiesce())
            .await
            .unwrap();

        // A new balancer takes over: the old one's publish is ignored.
        let second = router.take_over();
        router.publish(first, Some(f.route(u64::MAX)));
        let (left, spreading) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        assert!(spreading.is_none() && left.len() == 1);
        router.publish(second, Some(f.route(u64::MAX)));
        assert!(
            router
                .spread(&f.pipeline, vec![f.entry(&body)], None)
                .1
                .is_some()
        );
        // Taking over withdraws the predecessor's route and waits for its
        // readers too.
        let (_, held) = router.spread(&f.pipeline, vec![f.entry(&body)], None);
        let _third = router.take_over();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), router.quiesce())
                .await
                .is_err()
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), router.quiesce())
            .await
            .unwrap();
    }
}

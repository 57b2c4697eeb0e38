//! Hand-over: a replica that leaves the set for good (scale-down) sends
//! what its queues still hold to the remaining replicas instead of
//! stranding it on an orphaned volume.
//!
//! **Knowing it leaves.** Under `run --kube` in a StatefulSet (`POD_NAME`
//! and `POD_NAMESPACE` from the downward API), a replica asks on SIGTERM
//! for its StatefulSet: an ordinal at or above `spec.replicas` is leaving
//! for good (a scale-down), anything else is a restart (rollout, drain,
//! eviction) and keeps its queues for its successor on the same claim.
//! A leaving replica skips the drain and, once delivery has stopped, hands
//! its queues over to the ready endpoints of the StatefulSet's headless
//! Service ([`leaving_peers`]). Killed half-way (the grace period ends),
//! the rest stays on its claim for `seedgate handoff`.
//!
//! `seedgate handoff --config <its config> --to <peer>...` does the same on
//! a stopped replica's data directory (a Job on the released claim). Each
//! queue's entries go, oldest first and in batches, as OTLP/gRPC export
//! requests with the metadata [`QUEUE_HEADER`] naming the queue. The peer
//! ([`crate::ingest::Ingest::hand_over`]) stores them as they are in the
//! same queue (no routing, no processors: they ran here) and answers only
//! once they are on its disk; only then are they deleted here, in one
//! transaction per batch. kill -9 at any point loses nothing: a batch is
//! either still here (sent again on the next run: the peer may then hold it
//! twice) or on a peer's disk. A queue no peer takes (a pipeline the peers
//! do not have) stays here, named in the summary.
//!
//! What is handed over: pipeline queues, shoot clients' queues,
//! load-balanced backends' queues (into their pipeline's queue, which the
//! peer's balancer splits again) and tail sampling's pending spans (decided
//! again by the peer). Not handed over: remembered sampling decisions and
//! span metrics' unflushed deltas (they stay on the volume).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::grpc_codec::RawCodec;
use crate::routing::Destination;
use crate::signal::Signal;
use crate::store::{Queue, Store, WriteOp};

/// Connect and request timeout per batch when a leaving replica hands over.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC metadata key of a hand-over: the queue's name on the sender.
pub const QUEUE_HEADER: &str = "seedgate-queue";

/// Most bytes sent in one request (and deleted in one transaction), unless
/// told otherwise.
pub const DEFAULT_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Where a peer stores a queue's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The queue `queue` of seed pipeline `pipeline`.
    Pipeline {
        /// The pipeline (the peer must have it).
        pipeline: &'a str,
        /// The peer's queue.
        queue: String,
    },
    /// The peer's shoot client of `namespace`.
    Shoot {
        /// The shoot namespace.
        namespace: &'a str,
    },
}

/// The signal and target of a queue, by its name; `None` for a queue that
/// is not handed over.
pub fn target_of(queue: &str) -> Option<(Signal, Target<'_>)> {
    let (kind, rest) = queue.split_once('/')?;
    match kind {
        "pipeline" => {
            let (pipeline, signal) = rest.rsplit_once('/')?;
            Some((
                signal.parse().ok()?,
                Target::Pipeline {
                    pipeline,
                    queue: queue.to_owned(),
                },
            ))
        }
        // lb/<pipeline>/<signal>/<endpoint>: the endpoint may hold '/'.
        "lb" => {
            let (pipeline, rest) = rest.split_once('/')?;
            let (signal, _endpoint) = rest.split_once('/')?;
            let signal: Signal = signal.parse().ok()?;
            Some((
                signal,
                Target::Pipeline {
                    pipeline,
                    queue: Destination::queue_name(pipeline, signal),
                },
            ))
        }
        "tail" => {
            let pipeline = rest.strip_suffix("/pending")?;
            Some((
                Signal::Traces,
                Target::Pipeline {
                    pipeline,
                    queue: queue.to_owned(),
                },
            ))
        }
        "shoot" => {
            let namespace = Destination::shoot_of_queue(queue)?;
            let signal = rest.rsplit_once('/')?.1.parse().ok()?;
            Some((signal, Target::Shoot { namespace }))
        }
        _ => None,
    }
}

/// What a hand-over did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Records stored by a peer and deleted here.
    pub records_handed_over: u64,
    /// Entries deleted here.
    pub entries_handed_over: u64,
    /// Queues left with entries, and why (no peer took them).
    pub left: Vec<(String, String)>,
}

/// Sends every handed-over queue of `store` to `peers` (OTLP/gRPC
/// endpoints), deleting through `writer` what a peer acknowledged.
///
/// # Errors
/// No peer can be reached, or the store fails.
pub async fn hand_off(
    store: &Arc<Store>,
    writer: &crossbeam_channel::Sender<WriteOp>,
    peers: &[String],
    timeout: Duration,
    batch_bytes: u64,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(!peers.is_empty(), "no peer to hand over to");
    let mut channels = Vec::new();
    for p in peers {
        let ep = tonic::transport::Endpoint::from_shared(p.clone())
            .map_err(|e| anyhow::anyhow!("peer {p}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        channels.push((p.clone(), ep.connect_lazy()));
    }
    let mut summary = Summary::default();
    let mut next_peer = 0usize;
    let started = Instant::now();
    for queue in store.queues() {
        let Some((signal, _)) = target_of(&queue.name) else {
            continue;
        };
        if queue.entries() == 0 {
            continue;
        }
        tracing::info!(queue = %queue.name, entries = queue.entries(), "Handing over");
        loop {
            let batch = store.read(&queue, 0, batch_bytes, u64::MAX)?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                break;
            };
            let (first, last) = (first.seq, last.seq);
            let records: u64 = batch.iter().map(|e| u64::from(e.records)).sum();
            let entries = batch.len() as u64;
            // Export requests concatenate into one: their repeated top-level
            // field merges.
            let body: Vec<u8> = batch
                .iter()
                .flat_map(|e| e.payload.iter().copied())
                .collect();
            let body = Bytes::from(body);
            let mut refusal = None;
            let mut sent = false;
            for _ in 0..channels.len() {
                let (name, channel) = &channels[next_peer % channels.len()];
                next_peer += 1;
                match send(channel.clone(), signal, &queue, body.clone()).await {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(status) => {
                        tracing::warn!(peer = %name, queue = %queue.name, error = %status.message(), "A peer did not take a hand-over batch");
                        refusal = Some(status);
                    }
                }
            }
            if !sent {
                let why = refusal.map_or_else(String::new, |s| s.message().to_owned());
                summary.left.push((queue.name.clone(), why));
                break;
            }
            delete(writer, &queue, first, last).await?;
            summary.records_handed_over += records;
            summary.entries_handed_over += entries;
        }
        tracing::info!(queue = %queue.name, records = summary.records_handed_over, elapsed_s = started.elapsed().as_secs_f64(), "Queue handed over");
    }
    Ok(summary)
}

/// `seedgate handoff`: opens the data directory of `config` (its `run` must
/// have stopped), hands every queue over to `peers`, `batch_bytes` at a
/// time, and stops.
///
/// # Errors
/// The store cannot be opened or written, or no peer can be reached.
pub fn run(
    config: &crate::config::Config,
    peers: &[String],
    timeout: Duration,
    batch_bytes: u64,
) -> anyhow::Result<Summary> {
    use anyhow::Context as _;
    let store = Store::open(crate::store::StoreOptions {
        dir: config.storage.data_dir.clone(),
        map_size: config.storage.max_size.0,
        durability: config.storage.durability,
        max_ops_per_commit: crate::store::MAX_OPS_PER_COMMIT,
    })
    .with_context(|| {
        format!(
            "cannot open the storage in {} (is seedgate still running on it?)",
            config.storage.data_dir.display()
        )
    })?;
    let (tx, rx) = crossbeam_channel::bounded::<WriteOp>(crate::store::WRITER_CHANNEL);
    let metrics = crate::metrics::Metrics::new();
    let writer = store.spawn_writer(rx, Arc::clone(&metrics.store))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(hand_off(&store, &tx, peers, timeout, batch_bytes));
    let (reply, stopped) = tokio::sync::oneshot::channel();
    if tx.send(WriteOp::Stop { reply }).is_ok() {
        rt.block_on(stopped).ok();
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the storage writer panicked"))?;
    summary
}

/// Whether this replica is leaving its StatefulSet for good, and if so the
/// OTLP/gRPC endpoints of the replicas that stay (the ready endpoints of
/// the StatefulSet's `serviceName`, on `port`). `Ok(None)`: not in a
/// StatefulSet (no `POD_NAME`/`POD_NAMESPACE`), or restarting.
///
/// # Errors
/// The StatefulSet cannot be read, or no ready peer appears in time.
pub async fn leaving_peers(
    client: kube::Client,
    port: u16,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Option<Vec<String>>> {
    use k8s_openapi::api::apps::v1::StatefulSet;
    let (Ok(pod), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE"))
    else {
        return Ok(None);
    };
    let Some((set, ordinal)) = pod
        .rsplit_once('-')
        .and_then(|(set, n)| Some((set, n.parse::<i32>().ok()?)))
    else {
        return Ok(None);
    };
    let sts = kube::Api::<StatefulSet>::namespaced(client, &namespace)
        .get(set)
        .await
        .map_err(|e| anyhow::anyhow!("statefulset {namespace}/{set}: {e}"))?;
    let spec = sts.spec.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    if ordinal < replicas {
        tracing::info!(pod = %pod, replicas, "Restarting, not leaving: the queues stay on the volume");
        return Ok(None);
    }
    let service = spec
        .service_name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow::anyhow!("statefulset {namespace}/{set} has no serviceName"))?;
    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let resolver = tokio::spawn(crate::loadbalancing::resolver::run(
        crate::config::ResolverConfig {
            kubernetes: Some(crate::config::KubernetesResolverConfig {
                service,
                namespace: Some(namespace),
                port,
                scheme: "http".to_owned(),
            }),
            ..crate::config::ResolverConfig::default()
        },
        Arc::from("handoff"),
        tx,
        metrics,
    ));
    let found = tokio::time::timeout(PEER_TIMEOUT, rx.wait_for(Option::is_some)).await;
    let peers: Vec<String> = match found {
        Ok(Ok(set)) => set.iter().flatten().cloned().collect(),
        _ => Vec::new(),
    };
    resolver.abort();
    anyhow::ensure!(
        !peers.is_empty(),
        "leaving ({pod}, {replicas} replicas stay) but no ready peer found"
    );
    Ok(Some(peers))
}

async fn send(
    channel: tonic::transport::Channel,
    signal: Signal,
    queue: &Queue,
    body: Bytes,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(body);
    let value = queue
        .name
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("a queue name that is no header value"))?;
    request.metadata_mut().insert(QUEUE_HEADER, value);
    let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
    let response = grpc.unary(request, path, RawCodec).await?;
    // A peer that stored only part of it would say so; hand-overs are
    // all or nothing there, so any rejection is a refusal.
    match crate::exporters::outcome::decode_partial_success(signal, response.get_ref()) {
        Ok((0, _)) => Ok(()),
        Ok((n, why)) => Err(tonic::Status::failed_precondition(format!(
            "the peer rejected {n} records: {why}"
        ))),
        Err(e) => Err(tonic::Status::internal(format!(
            "the peer's answer does not decode: {e}"
        ))),
    }
}

/// Deletes `first..=last` of `queue` and waits for the commit.
async fn delete(
    writer: &crossbeam_channel::Sender<WriteOp>,
    queue: &Arc<Queue>,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let (reply, committed) = tokio::sync::oneshot::channel();
    writer
        .send(WriteOp::Settle {
            parts: Vec::new(),
            consumed: vec![(Arc::clone(queue), first, last)],
            reply,
        })
        .map_err(|_| anyhow::anyhow!("the storage writer is gone"))?;
    committed
        .await
        .map_err(|_| anyhow::anyhow!("the storage writer dropped the delete"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_map_to_where_a_peer_stores_them() {
        let p = |pipeline, queue: &str| Target::Pipeline {
            pipeline,
            queue: queue.to_owned(),
        };
        assert_eq!(
            target_of("pipeline/backend/logs"),
            Some((Signal::Logs, p("backend", "pipeline/backend/logs")))
        );
        assert_eq!(
            target_of("lb/traces/traces/http://10.0.0.1:4317"),
            Some((Signal::Traces, p("traces", "pipeline/traces/traces")))
        );
        assert_eq!(
            target_of("tail/sampled/pending"),
            Some((Signal::Traces, p("sampled", "tail/sampled/pending")))
        );
        assert_eq!(
            target_of(&Destination::shoot_queue_name(
                "shoot--p--a",
                Signal::Metrics
            )),
            Some((
                Signal::Metrics,
                Target::Shoot {
                    namespace: "shoot--p--a"
                }
            ))
        );
        for kept in [
            "tail/sampled/decisions",
            "spanmetrics/red/deltas",
            "pipeline",
        ] {
            assert_eq!(target_of(kept), None, "{kept}");
        }
    }
}

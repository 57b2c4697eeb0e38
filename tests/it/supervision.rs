//! Supervision: restarting one actor leaves the others running, and
//! nothing acknowledged is lost across the restart.

use crate::support;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use seedgate::actors::Restart;
use seedgate::actors::health::HealthState;
use seedgate::actors::supervisor::{Supervisor, SupervisorArgs};
use seedgate::config::{Durability, OutputConfig, OutputType, QueueConfig};
use seedgate::delivery::Delivery;
use seedgate::delivery::plan::DeliveryPlan;
use seedgate::exporters::Exporter;
use seedgate::ingest::Ingest;
use seedgate::metrics::Metrics;
use seedgate::routing::{Destination, Snapshot};
use seedgate::signal::Signal;
use seedgate::store::{Store, StoreOptions};
use seedgate::tools::acked::AckedSet;
use seedgate::tools::records::{RequestSpec, build_request};
use seedgate::tools::sink::{self, SinkOptions};

#[test]
fn restarting_the_batcher_the_exporter_pool_or_health_disturbs_nothing_else() {
    support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = rt.block_on(sink::start(SinkOptions::default())).unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(StoreOptions {
        dir: dir.path().to_owned(),
        map_size: 64 << 20,
        durability: Durability::Fsync,
        max_ops_per_commit: 1024,
    })
    .unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let destination = Arc::new(Destination {
        kind: seedgate::routing::DestinationKind::Pipeline,
        name: "b".into(),
        signal: Signal::Logs,
        queue: store.queue("pipeline/b/logs").unwrap(),
        limits: QueueConfig::default(),
        processors: Arc::default(),
        balance: None,
    });
    let exporter = {
        let _g = rt.enter();
        let mut out = OutputConfig::of_kind(OutputType::OtlpGrpc);
        out.endpoint = Some(backend.grpc_endpoint());
        Exporter::build(&out, Signal::Logs, "test").unwrap()
    };
    let config = seedgate::config::Config::default();
    let plan = DeliveryPlan {
        delivery: Delivery {
            destination: Arc::clone(&destination),
            exporter: Arc::new(exporter),
            batch: seedgate::config::BatchConfig {
                timeout: Duration::from_millis(10),
                ..config.batch
            },
            retry: seedgate::delivery::backoff::RetryPolicy::from_config(&config.retry).unwrap(),
            store: Arc::clone(&store),
            writer: tx.clone(),
            metrics: Arc::clone(&metrics),
            heartbeat: Arc::default(),
            flow: Arc::new(seedgate::delivery::FlowControl::new(&config.batch, None)),
        },
        balance: None,
        ingest: Arc::clone(&destination),
        stages: None,
    };
    let ingest = Arc::new(Ingest::new(
        Snapshot::new(vec!["k8s.namespace.name".into()], [destination]),
        tx.clone(),
        Arc::clone(&metrics),
        Duration::from_secs(1),
    ));
    let health = HealthState::new();
    let ns = vec!["shoot--a--b".to_owned()];
    let send = |seq: u64| {
        let ingest = Arc::clone(&ingest);
        let body = Bytes::from(
            build_request(
                Signal::Logs,
                &RequestSpec {
                    first_seq: seq,
                    records: 100,
                    namespaces: &ns,
                    record_size: 100,
                    time_unix_nano: 1,
                },
            )
            .encode_to_vec(),
        );
        rt.spawn(async move { ingest.export(Signal::Logs, body).await })
    };

    let sys = actix::System::new();
    sys.block_on(async {
        let (sup, _children) = Supervisor::start(SupervisorArgs {
            rt: rt.handle().clone(),
            store: Arc::clone(&store),
            tx: tx.clone(),
            rx,
            metrics: Arc::clone(&metrics),
            plans: vec![plan],
            health: Arc::clone(&health),
            export_stuck_after: Duration::from_secs(60),
            shoots: None,
        });
        let mut seq = 0;
        let restarts = |actor: &str| {
            support::metric_value(
                &metrics.encode().unwrap(),
                "seedgate_actor_restarts_total",
                &[&format!("actor=\"{actor}\"")],
            )
        };
        // Each unit is restarted under load; the supervisor's next check
        // starts it again and counts it, once.
        for unit in ["exporter_pool", "batcher", "health", "none"] {
            for _ in 0..10 {
                send(seq).await.unwrap().unwrap();
                seq += 100;
            }
            if unit == "none" {
                assert!(!sup.send(Restart(unit)).await.unwrap(), "no such unit");
                continue;
            }
            assert!(sup.send(Restart(unit)).await.unwrap(), "{unit}");
            let deadline = std::time::Instant::now() + support::patience();
            while restarts(unit) != Some(1.0) {
                assert!(std::time::Instant::now() < deadline, "{unit} not restarted");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let acked = AckedSet::from_ranges([(0, seq - 1)]);
        let deadline = std::time::Instant::now() + support::patience();
        while backend.verify(&acked).missing > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                backend.verify(&acked)
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        for actor in ["exporter_pool", "batcher", "health"] {
            assert_eq!(restarts(actor), Some(1.0), "{actor}");
        }
        assert!(health.live().is_ok());
    });
}

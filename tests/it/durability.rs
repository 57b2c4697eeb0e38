//! Nothing acknowledged is ever lost: kill -9 under load, backend outage,
//! graceful shutdown. Every record carries a sequence number; the sink
//! counts what came out against what the load generator saw acknowledged.

use std::time::Duration;

use crate::support::config::{Pipeline, TestConfig, ms, secs};
use crate::support::{self, Seedgate, eventually};
use seedgate::config::WhenFull;
use seedgate::tools::acked::read_acked_file;
use seedgate::tools::loadgen;

/// loadgen at full speed → seedgate → sink; seedgate is killed with SIGKILL
/// three times mid-run and restarted on the same data directory. The sink
/// must have every sequence number that was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let (dir, backend) = support::with_backend().await;
    let (grpc, http) = (support::stable_port(), support::stable_port());
    let yaml = TestConfig::new(&dir.path().join("data"))
        .ports(grpc, http)
        .pipeline_to(&backend.grpc_endpoint())
        .yaml();
    std::fs::write(dir.path().join("seedgate.yaml"), &yaml).unwrap();
    let mut sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;

    let acked_path = dir.path().join("acked.txt");
    let args = support::grpc_load_args(
        format!("http://127.0.0.1:{grpc}"),
        Duration::from_secs(12),
        &acked_path,
    );
    let load = tokio::spawn(loadgen::run(args));

    let mut kills = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sg.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;
    }
    let summary = load.await.unwrap().unwrap();
    assert_eq!(kills, 3);
    let acked = read_acked_file(&acked_path).unwrap();
    assert!(
        acked.len() > 10_000,
        "too little was acknowledged to prove anything: {summary:?}"
    );
    assert!(
        summary.requests_failed + summary.requests_refused > 0,
        "the kills should have failed some requests: {summary:?}"
    );
    support::all_delivered(&backend, &acked).await;
    let v = backend.verify(&acked);
    eprintln!("kill -9 x{kills}: acked {} records; sink: {v}", acked.len());
    assert_eq!(v.missing, 0, "{v}");
    drop(sg);
}

/// The backend refuses connections for a while: data is acknowledged and
/// queued; the queue metrics rise; when it returns everything arrives and
/// the queue drains to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_queues_then_delivers_everything() {
    let (dir, backend) = support::with_backend().await;
    let sg = Seedgate::start_to(dir.path(), &backend).await;
    backend.go_down().await;

    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.http_endpoint(),
        &["--protocol", "http", "--count", "20000", "--tenants", "5"],
        Some(&acked_path),
    )
    .await;
    assert_eq!(summary.records_acked, 20_000, "{summary:?}");

    let queued = sg
        .metric(
            "seedgate_batcher_queue_records",
            &["destination=\"backend\"", "signal=\"logs\""],
        )
        .await;
    assert_eq!(
        queued,
        Some(20_000.0),
        "all records queued while the backend is down"
    );
    let failed = sg
        .metric(
            "seedgate_exporter_failed_requests_total",
            &["destination=\"backend\""],
        )
        .await
        .unwrap_or(0.0);
    assert!(failed >= 1.0, "failed attempts are counted");
    assert_eq!(backend.stats().records(), 0);

    backend.come_up().await.unwrap();
    let acked = read_acked_file(&acked_path).unwrap();
    deliver_everything(&sg, &backend, &acked).await;
    let retries = sg
        .metric(
            "seedgate_exporter_retries_total",
            &["destination=\"backend\""],
        )
        .await
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "retries are counted");
}

/// SIGTERM: stop accepting, drain, exit 0 within the deadline; what was
/// acknowledged and not yet delivered is delivered after the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_keeps_what_it_could_not_send() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline_to(&backend.grpc_endpoint())
        .with(|c| c.shutdown_timeout = secs(2))
        .yaml();
    let mut sg = Seedgate::start(dir.path(), &yaml).await;
    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.grpc_endpoint(),
        &["--protocol", "grpc", "--count", "5000"],
        Some(&acked_path),
    )
    .await;
    assert_eq!(summary.records_acked, 5000);

    let started = std::time::Instant::now();
    let status = sg.terminate();
    assert!(status.success(), "exit status {status}; log:\n{}", sg.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        sg.log().contains("Shutdown deadline reached"),
        "{}",
        sg.log()
    );

    backend.come_up().await.unwrap();
    let _sg = Seedgate::start_with(dir.path(), &dir.path().join("seedgate.yaml")).await;
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend, &acked).await;
}

/// SIGTERM with `shutdown_delay`: `/readyz` turns 503 at once while data is
/// still accepted for the delay (endpoints drop the pod before anything is
/// refused); then seedgate stops accepting and exits 0, having delivered
/// what it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_first_and_accepts_during_the_shutdown_delay() {
    let (dir, backend) = support::with_backend().await;
    let yaml = TestConfig::new(&dir.path().join("data"))
        .pipeline_to(&backend.grpc_endpoint())
        .with(|c| {
            c.shutdown_delay = secs(3);
            c.shutdown_timeout = secs(5);
        })
        .yaml();
    let mut sg = Seedgate::start(dir.path(), &yaml).await;
    let ready = reqwest::get(sg.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    sg.send_term();
    let body = support::eventually("/readyz to turn 503", async || {
        let r = reqwest::get(sg.admin_url("/readyz")).await.ok()?;
        (r.status() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert!(body.contains("shutting down"), "{body}");
    // Unready, and still accepting.
    let acked_path = dir.path().join("acked.txt");
    let summary = support::load(
        sg.grpc_endpoint(),
        &["--protocol", "grpc", "--count", "2000"],
        Some(&acked_path),
    )
    .await;
    assert_eq!(summary.records_acked, 2000, "refused during the delay");
    let status = sg.child.wait().unwrap();
    assert!(status.success(), "exit status {status}; log:\n{}", sg.log());
    let acked = read_acked_file(&acked_path).unwrap();
    support::all_delivered(&backend, &acked).await;
}

/// Records in one probe request; seqs advance by this much per request.
const PROBE_RECORDS: u64 = 100;

/// What a probe request got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Acked,
    /// HTTP 429 with `Retry-After`, or gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`.
    Backpressure,
}

/// Sends sequence-numbered ~100 KB logs requests, alternating OTLP/HTTP and
/// OTLP/gRPC, and remembers which seqs were acknowledged. Any answer but
/// success or backpressure with a retry delay fails the test: a full disk
/// or map must never look like an error (503 / `UNAVAILABLE`) or lose data.
struct Prober {
    http: reqwest::Client,
    http_url: String,
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
    next_seq: u64,
    acked: Vec<(u64, u64)>,
    sent: u64,
}

impl Prober {
    async fn new(sg: &Seedgate) -> Prober {
        let channel = tonic::transport::Endpoint::from_shared(sg.grpc_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Prober {
            http: reqwest::Client::new(),
            http_url: format!("{}/v1/logs", sg.http_endpoint()),
            grpc: tonic::client::Grpc::new(channel),
            next_seq: 0,
            acked: Vec::new(),
            sent: 0,
        }
    }

    fn acked(&self) -> seedgate::tools::acked::AckedSet {
        seedgate::tools::acked::AckedSet::from_ranges(self.acked.iter().copied())
    }

    /// One request over HTTP (`grpc == false`) or gRPC. A refused request's
    /// seqs are sent again by the next call: a client retries the same data.
    async fn send(&mut self, grpc: bool) -> Answer {
        let namespaces = vec!["shoot--p--full".to_owned()];
        let body = seedgate::tools::records::build_request(
            seedgate::signal::Signal::Logs,
            &seedgate::tools::records::RequestSpec {
                first_seq: self.next_seq,
                records: PROBE_RECORDS as usize,
                namespaces: &namespaces,
                record_size: 1000,
                time_unix_nano: 1,
            },
        )
        .encode_to_vec();
        self.sent += 1;
        let answer = if grpc {
            self.send_grpc(body).await
        } else {
            self.send_http(body).await
        };
        if answer == Answer::Acked {
            self.acked
                .push((self.next_seq, self.next_seq + PROBE_RECORDS - 1));
            self.next_seq += PROBE_RECORDS;
        }
        answer
    }

    async fn send_http(&self, body: Vec<u8>) -> Answer {
        let r = self
            .http
            .post(&self.http_url)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Answer::Acked,
            429 => {
                assert!(r.headers().contains_key("retry-after"), "{r:?}");
                Answer::Backpressure
            }
            other => panic!("HTTP {other}: {}", r.text().await.unwrap_or_default()),
        }
    }

    async fn send_grpc(&mut self, body: Vec<u8>) -> Answer {
        self.grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        );
        let result = self
            .grpc
            .unary(
                tonic::Request::new(bytes::Bytes::from(body)),
                path,
                seedgate::grpc_codec::RawCodec,
            )
            .await;
        match result {
            Ok(_) => Answer::Acked,
            Err(st) if st.code() == tonic::Code::ResourceExhausted => {
                let info = tonic_types::StatusExt::get_details_retry_info(&st);
                assert!(info.and_then(|i| i.retry_delay).is_some(), "{st:?}");
                Answer::Backpressure
            }
            Err(st) => panic!("gRPC {st:?}"),
        }
    }

    /// Sends until both protocols were refused with backpressure; returns
    /// how many requests were acknowledged on the way.
    async fn fill_until_refused(&mut self) -> u64 {
        let (mut http_refused, mut grpc_refused, mut acked) = (false, false, 0);
        for i in 0u32..5000 {
            let grpc = i % 2 == 1;
            match self.send(grpc).await {
                Answer::Acked => acked += 1,
                Answer::Backpressure if grpc => grpc_refused = true,
                Answer::Backpressure => http_refused = true,
            }
            if http_refused && grpc_refused {
                return acked;
            }
        }
        panic!("never refused: {acked} requests acknowledged");
    }

    /// Retries until one request is acknowledged again (no restart).
    async fn until_accepted(&mut self, what: &str) {
        let mut grpc = false;
        eventually(what, async || {
            grpc = !grpc;
            (self.send(grpc).await == Answer::Acked).then_some(())
        })
        .await;
    }
}

/// A tmpfs of a fixed size, mounted by the test and unmounted when dropped.
/// Mounting needs root (CAP_SYS_ADMIN); CI and the dev machine run tests as
/// root, so a failure to mount fails the test instead of skipping it.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size_mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m,mode=0700"))
            .arg("seedgate-diskfull")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => SmallFs { dir },
            Ok(o) => panic!(
                "this test needs a small real filesystem: `mount -t tmpfs -o size={size_mib}m` on {} failed ({}): {}; run it as root (CI does)",
                dir.path().display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test needs the `mount` command to make a small filesystem: {e}"),
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `path` until the file system is full.
    fn fill(&self, path: &std::path::Path) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(path).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }

    /// Bytes free for an unprivileged writer.
    fn available(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a child not yet reaped): detach it now, the kernel
            // frees it once the last user is gone.
            std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status()
                .ok();
        }
    }
}

/// seedgate whose storage fills up while its only backend is down; `extra`
/// goes into the `storage:` section.
async fn full_storage_seedgate(
    dir: &std::path::Path,
    data_dir: &std::path::Path,
    max_size: &str,
    backend: &seedgate::tools::sink::SinkHandle,
) -> Seedgate {
    let yaml = TestConfig::new(data_dir)
        .batch_timeout(ms(20))
        .retry(ms(50), ms(300))
        .pipeline(Pipeline::backend(&backend.grpc_endpoint()).queue("1GiB", WhenFull::Block))
        .storage_max_size(max_size)
        .yaml();
    Seedgate::start(dir, &yaml).await
}

/// After the storage was full: refusals were counted with `reason`, each
/// as `storage_full` at the receivers (never `storage_error`), and logged
/// without flooding the log.
async fn assert_full_refusals_counted(sg: &Seedgate, reason: &str, prober: &Prober) {
    let text = sg.metrics().await;
    let count = |name: &str, label: &str| support::metric_value(&text, name, &[label]);
    let refused = count(
        "seedgate_batcher_storage_full_refusals_total",
        &format!("reason=\"{reason}\""),
    );
    let receivers = "seedgate_receiver_refused_requests_total";
    let at_receivers = count(receivers, "reason=\"storage_full\"");
    let errors = count(receivers, "reason=\"storage_error\"");
    assert!(
        refused >= Some(2.0) && at_receivers >= Some(2.0) && errors.is_none_or(|n| n == 0.0),
        "{reason} refusals: {refused:?}, storage_full at receivers: {at_receivers:?}, storage errors: {errors:?}"
    );
    let log = sg.log();
    let warnings = log.lines().filter(|l| l.contains("buffer is full")).count();
    assert!(warnings >= 1, "a log line says the buffer is full:\n{log}");
    assert!(
        (warnings as u64) < prober.sent / 4,
        "the full warning is rate-limited: {warnings} lines for {} requests",
        prober.sent
    );
}

/// The backend comes back: every acknowledged record arrives and the queue
/// drains to zero.
async fn deliver_everything(
    sg: &Seedgate,
    backend: &seedgate::tools::sink::SinkHandle,
    acked: &seedgate::tools::acked::AckedSet,
) {
    support::all_delivered(backend, acked).await;
    let v = backend.verify(acked);
    assert_eq!(v.missing, 0, "{v}");
    eventually("the queue drained", async || {
        (sg.metric(
            "seedgate_batcher_queue_records",
            &["destination=\"backend\""],
        )
        .await
            == Some(0.0))
        .then_some(())
    })
    .await;
}

/// The backend comes back: seedgate accepts again (`what`) without a
/// restart, takes more, and delivers every acknowledged record.
async fn backend_returns(
    sg: &Seedgate,
    backend: &seedgate::tools::sink::SinkHandle,
    prober: &mut Prober,
    what: &str,
) {
    backend.come_up().await.unwrap();
    prober.until_accepted(what).await;
    for _ in 0..20 {
        prober.until_accepted("more data after the recovery").await;
    }
    deliver_everything(sg, backend, &prober.acked()).await;
}

/// The data directory is on a 48 MiB filesystem, a third of it taken by a
/// ballast file, and the backend is down. Once the disk is full, clients get
/// 429 / RESOURCE_EXHAUSTED with a retry delay. Deleting the ballast lets
/// seedgate accept again without a restart. Then it fills up once more,
/// another file takes the last free byte, and the backend comes back:
/// deliveries still delete on a disk with no byte left, and the pages they
/// free take new data. Every acknowledged record arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_backpressure_and_recovers_without_restart() {
    let (dir, backend) = support::with_backend().await;
    let fs = SmallFs::mount(48);
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0x5a; 16 << 20]).unwrap();
    backend.go_down().await;
    let sg = full_storage_seedgate(dir.path(), &fs.path().join("data"), "1GiB", &backend).await;
    let mut prober = Prober::new(&sg).await;

    let acked = prober.fill_until_refused().await;
    eprintln!(
        "disk full after {acked} requests; {} bytes left on the filesystem",
        fs.available()
    );
    assert!(
        acked > 50,
        "the disk held too little to prove anything: {acked}"
    );
    assert_full_refusals_counted(&sg, "disk_full", &prober).await;

    std::fs::remove_file(&ballast).unwrap();
    prober
        .until_accepted("accepted again after the ballast was deleted")
        .await;
    let more = prober.fill_until_refused().await;
    assert!(more > 20, "the freed space was used: {more} more requests");
    // Something else takes the space seedgate kept for its deletes, to
    // the last byte.
    fs.fill(&fs.path().join("filler"));
    assert_eq!(fs.available(), 0, "filled to the last byte");

    backend_returns(
        &sg,
        &backend,
        &mut prober,
        "accepted again on a full disk once deliveries freed pages",
    )
    .await;
    // The reserve for deletes is allocated inside the data file, so the
    // filler could not take it: every delete found room at once.
    let deferred = sg
        .metric("seedgate_batcher_write_errors_total", &["kind=\"full\""])
        .await;
    assert!(
        deferred.is_none_or(|n| n == 0.0),
        "deletes found no room on a disk filled by someone else: {deferred:?}"
    );
    drop(sg);
}

/// The same with a small LMDB map on a roomy disk: MDB_MAP_FULL is
/// backpressure and deliveries make room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lmdb_map_is_backpressure_and_recovers_without_restart() {
    let (dir, backend) = support::with_backend().await;
    backend.go_down().await;
    let sg = full_storage_seedgate(dir.path(), &dir.path().join("data"), "16MiB", &backend).await;
    let mut prober = Prober::new(&sg).await;

    let acked = prober.fill_until_refused().await;
    assert!(
        acked > 50,
        "the map held too little to prove anything: {acked}"
    );
    assert_full_refusals_counted(&sg, "map_full", &prober).await;

    backend_returns(
        &sg,
        &backend,
        &mut prober,
        "accepted again once deliveries freed pages",
    )
    .await;
    // seedgate filled the map itself: the reserve kept room for every delete.
    let write_errors = sg.metric("seedgate_batcher_write_errors_total", &[]).await;
    assert!(
        write_errors.is_none_or(|n| n == 0.0),
        "deletes always found room: {write_errors:?} write errors"
    );
}

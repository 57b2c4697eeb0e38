//! Memory is limited while bytes are read (issue 13): many clients slowly
//! streaming large bodies cannot push seedgate past `max_inflight_bytes`
//! (plus a stated overhead); the ones that do not fit get a retryable
//! refusal without their body being read; what was acknowledged arrives.
//! A silent connection is closed after `idle_timeout`; the process-wide
//! memory limiter refuses while resident memory is over its soft limit.
//!
//! Memory is read from `/proc/<pid>/status` of the real seedgate process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::config::{Pipeline, TestConfig, ms, secs, size};
use crate::support::{self, Seedgate, eventually};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use seedgate::config::ReceiversConfig;
use seedgate::signal::Signal;
use seedgate::tools::acked::AckedSet;
use seedgate::tools::records::{RequestSpec, build_request};
use seedgate::tools::sink::SinkHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
/// Records per request, each padded to [`RECORD_SIZE`]: 8 MB per request,
/// just under the default `max_request_bytes` (8 MiB).
const RECORDS: u64 = 800;
const RECORD_SIZE: usize = 10_000;
/// The budget under test, as deployed (deploy/single/seedgate.yaml,
/// deploy/ha/seedgate.yaml).
const MAX_INFLIGHT: u64 = 64 * MIB;
/// Slow senders: 64 KiB every 25 ms, so one 8 MB body takes ~3 s, longer
/// than the 2 s a request waits for room.
const CHUNK: usize = 64 * 1024;
const PAUSE: Duration = Duration::from_millis(25);

/// One client's request: `RECORDS` records with seqs from `client * RECORDS`.
fn request(client: u64) -> Vec<u8> {
    logs(client * RECORDS, RECORDS, RECORD_SIZE)
}

/// A logs request of `records` records of `size` bytes from seq `first`.
fn logs(first: u64, records: u64, size: usize) -> Vec<u8> {
    let ns = ["app".to_owned()];
    build_request(
        Signal::Logs,
        &RequestSpec {
            first_seq: first,
            records: records as usize,
            namespaces: &ns,
            record_size: size,
            time_unix_nano: 1,
        },
    )
    .encode_to_vec()
}

/// POSTs a small logs request from seq `first` over OTLP/HTTP.
async fn post_small(sg: &Seedgate, first: u64) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/logs", sg.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(logs(first, 10, 100))
        .send()
        .await
        .unwrap()
}

fn seqs_of(client: u64) -> (u64, u64) {
    (client * RECORDS, client * RECORDS + RECORDS - 1)
}

/// A `Key:  N kB` line of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    let kib: u64 = line[key.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

/// Samples the anonymous resident memory (`RssAnon`: what an OOM kill
/// counts, without the store's mapped file pages) every 10 ms until
/// `stop`; returns the peak.
fn sample_peak_anon(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(status_bytes(pid, "RssAnon:"));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// seedgate with `max_inflight_bytes: 64MiB` delivering to `sink`, its
/// receivers changed by `receivers`.
async fn seedgate(
    dir: &std::path::Path,
    sink: &SinkHandle,
    receivers: impl FnOnce(&mut ReceiversConfig),
) -> Seedgate {
    let yaml = TestConfig::new(&dir.join("data"))
        .pipeline(Pipeline::grpc("backend", &sink.grpc_endpoint()))
        .storage_max_size("2GiB")
        .with(|c| {
            c.receivers.max_inflight_bytes = size("64MiB");
            receivers(&mut c.receivers);
        })
        .yaml();
    let config_path = dir.join("seedgate.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    Seedgate::start_opts(dir, &config_path, &[], &[MALLOC_MMAP_THRESHOLD]).await
}

/// As the workloads set it (deploy/single/deployment.yaml,
/// deploy/ha/statefulset.yaml): glibc serves allocations from 128 KiB up
/// (request bodies) with their own mappings and unmaps them on free.
/// Without it glibc raises the threshold after the first large free and
/// serves later bodies from its arenas, which keep freed memory resident:
/// RSS then grows with how many arenas have held a body (+8 MiB per 8 MB
/// request in a probe), not with the budget.
const MALLOC_MMAP_THRESHOLD: (&str, &str) = ("MALLOC_MMAP_THRESHOLD_", "131072");

/// How one upload ended.
#[derive(Debug)]
enum Answer {
    /// 200 / OK: its records are acknowledged.
    Accepted,
    /// 429 with `Retry-After` / `RESOURCE_EXHAUSTED` with `RetryInfo`.
    Refused(Duration),
    /// Anything else: a failure of the test.
    Other(String),
}

/// POSTs `client`'s request over raw HTTP/1.1, slowly, with
/// `Content-Length` or chunked; reads the answer while still sending (a
/// refusal comes before the body is read).
async fn http_upload(addr: SocketAddr, client: u64, chunked: bool) -> Answer {
    let body = request(client);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {}", body.len())
    };
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: seedgate\r\ncontent-type: application/x-protobuf\r\n{framing}\r\n\r\n"
    );
    let (mut rd, mut wr) = stream.split();
    let send = async {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(CHUNK) {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                wr.write_all(chunk).await?;
                wr.write_all(b"\r\n").await?;
            } else {
                wr.write_all(chunk).await?;
            }
            tokio::time::sleep(PAUSE).await;
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        // Keep the write side open: the answer comes after the body.
        std::future::pending::<()>().await;
        std::io::Result::Ok(())
    };
    let answer = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(String::from_utf8_lossy(&got[..end]).into_owned());
            }
        }
    };
    // Whichever ends first: a write error after a refusal is expected, so
    // the answer is still read then.
    let head = tokio::select! {
        head = answer => head,
        _ = send => {
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.ok();
            got.windows(4).position(|w| w == b"\r\n\r\n")
                .map(|end| String::from_utf8_lossy(&got[..end]).into_owned())
        }
    };
    let Some(head) = head else {
        return Answer::Other("connection closed without an answer".to_owned());
    };
    let status = head.split(' ').nth(1).unwrap_or("");
    let retry_after = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs);
    match (status, retry_after) {
        ("200", _) => Answer::Accepted,
        ("429", Some(after)) => Answer::Refused(after),
        _ => Answer::Other(head),
    }
}

/// Sends `client`'s request as one OTLP/gRPC Export on its own connection,
/// slowly (the gRPC prefix, then 64 KiB frames).
async fn grpc_upload(endpoint: String, client: u64) -> Answer {
    let message = request(client);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&message);
    let chunks: Vec<Bytes> = framed.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
    let frames = futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(PAUSE).await;
        Ok::<_, tonic::Status>(http_body::Frame::data(c))
    });
    let req = http::Request::post(Signal::Logs.grpc_path())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .unwrap();
    let channel = match tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => return Answer::Other(format!("connect: {e}")),
    };
    let response = match tower::ServiceExt::oneshot(channel, req).await {
        Ok(r) => r,
        Err(e) => return Answer::Other(format!("call: {e}")),
    };
    let (parts, body) = response.into_parts();
    let status = match tonic::Status::from_header_map(&parts.headers) {
        Some(s) => s,
        None => match body.collect().await {
            Ok(b) => b
                .trailers()
                .and_then(tonic::Status::from_header_map)
                .unwrap_or_else(|| tonic::Status::unknown("no grpc-status")),
            Err(e) => tonic::Status::unknown(format!("body: {e}")),
        },
    };
    match status.code() {
        tonic::Code::Ok => Answer::Accepted,
        tonic::Code::ResourceExhausted => {
            match tonic_types::StatusExt::get_details_retry_info(&status)
                .and_then(|i| i.retry_delay)
            {
                Some(after) => Answer::Refused(after),
                None => Answer::Other(format!("RESOURCE_EXHAUSTED without RetryInfo: {status:?}")),
            }
        }
        _ => Answer::Other(format!("{status:?}")),
    }
}

/// What a run of uploads came to.
struct Outcome {
    acked: AckedSet,
    accepted: usize,
    refused: usize,
}

/// Checks every answer and collects the acknowledged seqs.
fn tally(answers: Vec<(u64, Answer)>) -> Outcome {
    let mut ranges = Vec::new();
    let mut refused = 0;
    for (client, answer) in answers {
        match answer {
            Answer::Accepted => ranges.push(seqs_of(client)),
            Answer::Refused(after) => {
                assert!(after >= Duration::from_secs(1), "retry delay {after:?}");
                refused += 1;
            }
            Answer::Other(what) => panic!("client {client}: {what}"),
        }
    }
    Outcome {
        accepted: ranges.len(),
        acked: AckedSet::from_ranges(ranges),
        refused,
    }
}

/// The memory measured around one load: the baseline before, the peak of
/// anonymous memory during, and `VmHWM` (all resident memory, including
/// the pages of the store file that delivery read) after.
struct Measured {
    baseline_anon: u64,
    baseline_rss: u64,
    peak_anon: u64,
    hwm: u64,
}

/// Runs `clients` concurrent `upload`s against `sg`, measuring its memory,
/// waits until every acknowledged record is at `sink`, and checks the
/// answers, the memory bound and that every reservation was given back.
async fn run_load<F, Fut>(
    sg: &Seedgate,
    sink: &SinkHandle,
    (transport, clients): (&str, u64),
    upload: F,
) where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let pid = sg.child.id();
    // Warm up the paths once (lazy allocations, the exporter's connection),
    // then take the baseline.
    assert_eq!(post_small(sg, 1 << 40).await.status(), 200);
    eventually("the warm-up record at the sink", async || {
        (sink.seqs().contains_key(&(1 << 40))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_anon = status_bytes(pid, "RssAnon:");
    let baseline_rss = status_bytes(pid, "VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak_anon(pid, Arc::clone(&stop));
    let started = Instant::now();
    let uploads: Vec<_> = (0..clients)
        .map(|client| {
            let upload = upload(client);
            tokio::spawn(async move { (client, upload.await) })
        })
        .collect();
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await.unwrap());
    }
    let outcome = tally(answers);
    eprintln!(
        "{} accepted, {} refused in {:?}",
        outcome.accepted,
        outcome.refused,
        started.elapsed()
    );
    support::all_delivered(sink, &outcome.acked).await;
    stop.store(true, Ordering::Relaxed);
    let peak_anon = sampler.join().unwrap();
    let hwm = status_bytes(pid, "VmHWM:");
    let m = Measured {
        baseline_anon,
        baseline_rss,
        peak_anon,
        hwm,
    };
    eprintln!(
        "baseline RssAnon {} MiB, VmRSS {} MiB; peak RssAnon {} MiB (+{} MiB); VmHWM {} MiB",
        m.baseline_anon / MIB,
        m.baseline_rss / MIB,
        m.peak_anon / MIB,
        m.peak_anon.saturating_sub(m.baseline_anon) / MIB,
        m.hwm / MIB,
    );
    assert!(outcome.accepted >= 1, "nothing was accepted");
    assert!(
        outcome.refused as u64 >= clients / 2,
        "only {} refused",
        outcome.refused
    );
    assert_bounded(&m, &outcome);
    assert_eq!(
        sg.metric("seedgate_receiver_inflight_bytes", &[]).await,
        Some(0.0),
        "every reservation was given back"
    );
    let refused = sg
        .metric(
            "seedgate_receiver_refused_requests_total",
            &[
                "reason=\"memory_limit\"",
                &format!("transport=\"{transport}\""),
            ],
        )
        .await;
    assert_eq!(refused, Some(outcome.refused as f64));
}

/// What seedgate may hold beyond `max_inflight_bytes` at this load (which
/// covers each admitted body *and* its copy in the store's commit): X =
/// 48 MiB, made of
/// - delivery of one batch: the 8 MB entry copied into the export request
///   and tonic's encode buffer, ~16 MiB;
/// - heap the allocator keeps after frees of smaller buffers (large ones are
///   unmapped, see [`MALLOC_MMAP_THRESHOLD`]), ~16 MiB;
/// - per connection: hyper's read buffer (8-16 KiB × 150) and, on gRPC, up
///   to one 256 KiB stream window buffered by each waiting request
///   (60 × 256 KiB = 15 MiB).
///
/// Measured (debug build, 2 cores): +50 to +66 MiB over the baseline for
/// HTTP, +69 MiB for gRPC; before reservations were taken ahead of the
/// read, the HTTP load drove it past 1.2 GiB.
const OVERHEAD: u64 = 48 * MIB;

fn assert_bounded(m: &Measured, outcome: &Outcome) {
    let bound = m.baseline_anon + MAX_INFLIGHT + OVERHEAD;
    assert!(
        m.peak_anon <= bound,
        "peak RssAnon {} MiB over baseline {} MiB + 64 MiB + {} MiB",
        m.peak_anon / MIB,
        m.baseline_anon / MIB,
        OVERHEAD / MIB
    );
    // VmHWM also counts the store file's pages that delivery read through
    // LMDB's map (page cache the kernel can drop): at most what was stored.
    let stored = outcome.accepted as u64 * RECORDS * RECORD_SIZE as u64;
    let hwm_bound = m.baseline_rss + MAX_INFLIGHT + OVERHEAD + stored;
    assert!(
        m.hwm <= hwm_bound,
        "VmHWM {} MiB over {} MiB",
        m.hwm / MIB,
        hwm_bound / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_large_http_uploads_stay_within_the_memory_budget() {
    let (dir, sink) = support::with_backend().await;
    let sg = seedgate(dir.path(), &sink, |_| {}).await;
    let addr = sg.addrs.http.unwrap();
    // 150 clients at once, every third one chunked (no Content-Length).
    run_load(&sg, &sink, ("http", 150), |client| {
        http_upload(addr, client, client % 3 == 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_large_grpc_uploads_stay_within_the_memory_budget() {
    let (dir, sink) = support::with_backend().await;
    let sg = seedgate(dir.path(), &sink, |_| {}).await;
    let endpoint = sg.grpc_endpoint();
    // 60 clients, each on its own HTTP/2 connection.
    run_load(&sg, &sink, ("grpc", 60), |client| {
        grpc_upload(endpoint.clone(), client)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (dir, sink) = support::with_backend().await;
    let sg = seedgate(dir.path(), &sink, |r| r.idle_timeout = secs(1)).await;
    let closed_within = async |addr: SocketAddr, send: &[u8]| {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(send).await.unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        // EOF or a reset: either way the server closed it.
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "still open after 10s");
        started.elapsed()
    };
    let http = sg.addrs.http.unwrap();
    let grpc = sg.addrs.grpc.unwrap();
    // Nothing at all, on both ports.
    let t = closed_within(http, b"").await;
    assert!(t >= Duration::from_millis(900), "closed after {t:?}");
    closed_within(grpc, b"").await;
    // Half the headers.
    closed_within(http, b"POST /v1/logs HTTP/1.1\r\nhost: x\r\n").await;
    // A body that stalls after its first bytes: its reservation is freed.
    closed_within(
        http,
        b"POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000000\r\n\r\n0123456789",
    )
    .await;
    assert_eq!(
        sg.metric("seedgate_receiver_inflight_bytes", &[]).await,
        Some(0.0)
    );
    for (transport, closed) in [("http", 3.0), ("grpc", 1.0)] {
        let timeouts = sg
            .metric(
                "seedgate_receiver_idle_timeouts_total",
                &[&format!("transport=\"{transport}\"")],
            )
            .await;
        assert!(timeouts >= Some(closed), "{transport}: {timeouts:?}");
    }
    // Clients that do send are served.
    assert_eq!(post_small(&sg, 0).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limiter_refuses_while_memory_is_over_its_soft_limit() {
    let (dir, sink) = support::with_backend().await;
    // A soft limit of 1 MiB: any process is over it.
    let sg = seedgate(dir.path(), &sink, |r| {
        r.memory_limiter.limit_mib = 2;
        r.memory_limiter.spike_limit_mib = 1;
        r.memory_limiter.check_interval = ms(100);
    })
    .await;
    eventually("the limiter to refuse", async || {
        (sg.metric("seedgate_receiver_memory_limiter_refusing", &[])
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;
    let r = post_small(&sg, 0).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let st = support::grpc_logs_export(sg.grpc_endpoint(), logs(10, 10, 100))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    let info = tonic_types::StatusExt::get_details_retry_info(&st).expect("RetryInfo");
    assert_eq!(info.retry_delay, Some(Duration::from_secs(1)));
    let refused = sg
        .metric(
            "seedgate_receiver_refused_requests_total",
            &["reason=\"memory_limiter\""],
        )
        .await;
    assert_eq!(refused, Some(2.0));
    assert_eq!(
        sg.metric("seedgate_receiver_memory_soft_limit_bytes", &[])
            .await,
        Some(MIB as f64)
    );
    assert!(
        sg.metric("seedgate_receiver_memory_rss_bytes", &[])
            .await
            .unwrap()
            > MIB as f64
    );
    assert!(sg.log().contains("refusing new requests"), "{}", sg.log());
    assert!(sink.seqs().is_empty(), "nothing refused was stored");
}

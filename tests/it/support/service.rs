//! A Kubernetes Service in miniature, for tests with several replicas: one
//! TCP port that hands each new connection to the next **ready** replica
//! (its `/readyz` answers 200), round robin, as kube-proxy does with a
//! Service's ready endpoints. A replica that is down or shutting down gets
//! no new connections; connections already made stay where they are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// One replica behind the Service: where its OTLP port and its admin port
/// are.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub otlp: SocketAddr,
    pub admin: SocketAddr,
}

pub struct Service {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    pub async fn start(endpoints: Vec<Endpoint>) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoints = Arc::new(endpoints);
        let next = Arc::new(AtomicUsize::new(0));
        // A readiness probe's default timeout in Kubernetes: long enough
        // that a live replica on a starved 2-core machine is not taken for
        // a dead one (a dead one refuses at once).
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (endpoints, next, http) =
                    (Arc::clone(&endpoints), Arc::clone(&next), http.clone());
                tokio::spawn(async move {
                    if let Some(mut server) = pick(&endpoints, &next, &http).await {
                        let mut client = client;
                        client.set_nodelay(true).ok();
                        server.set_nodelay(true).ok();
                        tokio::io::copy_bidirectional(&mut client, &mut server)
                            .await
                            .ok();
                    }
                });
            }
        });
        Service { addr, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next ready endpoint that takes the connection; `None` when none
/// does in three rounds (the client's connection is closed, as with no
/// endpoints).
async fn pick(
    endpoints: &[Endpoint],
    next: &AtomicUsize,
    http: &reqwest::Client,
) -> Option<TcpStream> {
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(s) = pick_once(endpoints, next, http).await {
            return Some(s);
        }
    }
    None
}

/// One round over the endpoints, from the next in turn.
async fn pick_once(
    endpoints: &[Endpoint],
    next: &AtomicUsize,
    http: &reqwest::Client,
) -> Option<TcpStream> {
    for _ in 0..endpoints.len() {
        let e = &endpoints[next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
        let ready = http
            .get(format!("http://{}/readyz", e.admin))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ready {
            continue;
        }
        if let Ok(s) = TcpStream::connect(e.otlp).await {
            return Some(s);
        }
    }
    None
}

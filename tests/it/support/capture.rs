//! A backend that keeps every request body it was sent (gzip undone),
//! with its path: for tests that check what arrived byte for byte.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use seedgate::receivers::decompress::{Encoding, decompress};

/// A backend that keeps every request body it was sent, per signal.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<Captured>>>);

/// A request path and its decompressed body.
pub type Captured = (String, Vec<u8>);

impl Capture {
    pub async fn start(&self) -> std::net::SocketAddr {
        let cap = self.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |path: axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: Bytes| {
                    let cap = cap.clone();
                    async move {
                        let mut body = body.to_vec();
                        if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                            body = decompress(Encoding::Gzip, &body, 64 << 20).unwrap();
                        }
                        cap.0.lock().unwrap().push((path.0, body));
                        (
                            [("content-type", "application/x-protobuf")],
                            Vec::<u8>::new(),
                        )
                    }
                },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    }

    pub fn bodies(&self, suffix: &str) -> Vec<Vec<u8>> {
        let suffix = suffix.trim_start_matches('/');
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, b)| b.clone())
            .collect()
    }
}

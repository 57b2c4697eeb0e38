//! The listeners: their own accept loops, so that going down really closes
//! the sockets and coming up binds the same ports again.

use super::*;

/// One listener: its fixed address, the app it serves, and the accept task
/// while it is up.
#[derive(Debug)]
pub(super) struct ListenerCtl {
    pub(super) addr: SocketAddr,
    pub(super) router: Router,
    pub(super) tls: Option<SinkTls>,
    pub(super) task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The TLS of both listeners and the client certificates they were shown.
#[derive(Debug, Clone)]
pub(super) struct SinkTls {
    pub(super) config: Arc<rustls::ServerConfig>,
    pub(super) client_certs: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[derive(Debug)]
pub(super) struct Listeners {
    pub(super) grpc: ListenerCtl,
    pub(super) http: ListenerCtl,
}

pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Coming back up on the same port must not fail on connections of the
    // previous incarnation that are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until aborted; aborting drops the listener (new
/// connections are refused) and the `JoinSet` (open connections are closed).
pub(super) async fn accept_loop(listener: TcpListener, router: Router, tls: Option<SinkTls>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "sink: set_nodelay failed");
                    }
                    let router = router.clone();
                    let tls = tls.clone();
                    connections.spawn(async move {
                        match tls {
                            None => serve_connection(stream, router).await,
                            Some(tls) => match tokio_rustls::TlsAcceptor::from(tls.config).accept(stream).await {
                                Ok(stream) => {
                                    if let Some(cert) = stream.get_ref().1.peer_certificates().and_then(<[_]>::first) {
                                        lock(&tls.client_certs).push(cert.to_vec());
                                    }
                                    serve_connection(stream, router).await;
                                }
                                Err(e) => tracing::debug!(error = %e, "sink: TLS handshake failed"),
                            },
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "sink: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves HTTP/1 and HTTP/2 on one connection until it ends.
pub(super) async fn serve_connection<I>(io: I, router: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(crate::grpc_codec::STREAM_WINDOW)
        .initial_connection_window_size(crate::grpc_codec::CONNECTION_WINDOW);
    let served = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
    // A connection error only concerns that client.
    if let Err(e) = served {
        tracing::debug!(error = %e, "sink: connection ended with an error");
    }
}

// === impl ListenerCtl ===

impl ListenerCtl {
    pub(super) async fn up(&self) -> anyhow::Result<()> {
        let mut task = self.task.lock().await;
        if task.is_none() {
            let listener = bind(self.addr).with_context(|| format!("binding {}", self.addr))?;
            *task = Some(tokio::spawn(accept_loop(
                listener,
                self.router.clone(),
                self.tls.clone(),
            )));
        }
        Ok(())
    }

    pub(super) async fn down(&self) {
        let handle = self.task.lock().await.take();
        if let Some(handle) = handle {
            handle.abort();
            // Resolves once the task is dropped, i.e. the socket is closed.
            if let Err(e) = handle.await
                && !e.is_cancelled()
            {
                tracing::error!(error = %e, "sink: accept loop panicked");
            }
        }
    }
}

impl Drop for ListenerCtl {
    fn drop(&mut self) {
        if let Some(handle) = self.task.get_mut().take() {
            handle.abort();
        }
    }
}

// === impl Listeners ===

impl Listeners {
    pub(super) async fn down(&self) {
        self.grpc.down().await;
        self.http.down().await;
    }

    pub(super) async fn up(&self) -> anyhow::Result<()> {
        self.grpc.up().await?;
        self.http.up().await
    }
}

/// Brings the listeners up after `after`, unless the sink is gone by then.
pub(super) fn schedule_up(listeners: Weak<Listeners>, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        if let Some(listeners) = listeners.upgrade()
            && let Err(e) = listeners.up().await
        {
            tracing::error!(error = %format!("{e:#}"), "sink: coming back up failed");
        }
    });
}

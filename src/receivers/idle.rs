//! `receivers.idle_timeout`: a connection that sends nothing for that long
//! is closed.
//!
//! One rule covers every way a client can hold the receiver's resources
//! while sending nothing: a connection that never sends its request
//! headers, a body that stalls half way (its request holds a memory
//! reservation until the read fails), and a kept-alive connection with no
//! next request. [`IdleIo`] wraps the connection below hyper: while hyper
//! waits for bytes and none have moved in either direction for the
//! timeout, the read fails with `TimedOut`, hyper drops the connection, and
//! a request still reading its body sees a body error. Bytes written count
//! as activity, so an answer being sent is never cut off.
//!
//! The clock is checked lazily: reads and writes only store the time, and
//! the one timer per connection is re-armed only when it fires early.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection closed when it is silent for `timeout`.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    timeouts: Counter,
}

// === impl IdleIo ===

impl<T> IdleIo<T> {
    /// Wraps `inner`; each timeout increments `timeouts`.
    pub fn new(inner: T, timeout: Duration, timeouts: Counter) -> Self {
        let last = Instant::now();
        Self {
            inner,
            timeout,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + timeout)),
            timeouts,
        }
    }

    /// Counts a successful write as activity.
    fn wrote(&mut self, r: std::io::Result<usize>) -> Poll<std::io::Result<usize>> {
        if matches!(r, Ok(n) if n > 0) {
            self.last = Instant::now();
        }
        Poll::Ready(r)
    }

    /// Pending until the connection has been silent for the timeout, then
    /// the error that closes it.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        loop {
            let deadline = self.last + self.timeout;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.last + self.timeout {
                self.timeouts.inc();
                // Later polls see the same deadline and fail again.
                return Poll::Ready(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client sent nothing for {:?}", self.timeout),
                ));
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        this.wrote(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        this.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for IdleIo<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// An axum listener whose connections are [`IdleIo`].
#[derive(Debug)]
pub struct IdleListener<L> {
    inner: L,
    timeout: Duration,
    timeouts: Counter,
}

impl<L> IdleListener<L> {
    /// Wraps the connections `inner` accepts.
    pub fn new(inner: L, timeout: Duration, timeouts: Counter) -> Self {
        Self {
            inner,
            timeout,
            timeouts,
        }
    }
}

impl<L> axum::serve::Listener for IdleListener<L>
where
    L: axum::serve::Listener,
    L::Io: Unpin,
{
    type Io = IdleIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (IdleIo::new(io, self.timeout, self.timeouts.clone()), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_times_out_and_an_active_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let timeouts = Counter::default();
        let timeout = Duration::from_millis(400);
        let mut io = IdleIo::new(a, timeout, timeouts.clone());
        let mut buf = [0u8; 8];
        // A byte every 250ms keeps it open well past the timeout.
        let started = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        // Our own writes count as activity too.
        tokio::time::sleep(Duration::from_millis(250)).await;
        io.write_all(b"y").await.unwrap();
        let silent = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(silent.elapsed() >= timeout, "{:?}", silent.elapsed());
        assert!(started.elapsed() >= Duration::from_millis(1400));
        assert_eq!(timeouts.get(), 1);
    }
}

//! The upstream side: [`SiteConnector`] opens one bidirectional byte stream per BAR exchange;
//! [`Upstream`] adds connect timeouts, one immediate reconnect attempt, health state and a
//! periodic health check above any connector.
//!
//! [`TcpBarConnector`] is the real implementation available today: one TCP connection per BAR
//! exchange to a site server that speaks BAR over TCP (`betanet_app::serve_tcp_bar`). An HTX
//! connector (multiplexed streams on pooled `betanet-net` connections) plugs in through the same
//! trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::metrics::Metrics;

/// A bidirectional byte stream to the site server.
pub trait SiteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SiteStream for T {}

/// A boxed [`SiteStream`].
pub type BoxSiteStream = Box<dyn SiteStream>;

/// The future returned by [`SiteConnector::open`].
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = io::Result<BoxSiteStream>> + Send + 'a>>;

/// Opens one stream per BAR exchange. The gateway writes `u32be len ‖ request head ‖ body`,
/// then shuts down its write half; the site answers `u32be len ‖ response head ‖ body` and
/// ends its side. A connector whose transport can tell an orderly end from an abort (HTX:
/// STREAM FIN vs RST/CLOSE) must report the abort as a read error.
pub trait SiteConnector: Send + Sync + 'static {
    /// Opens a fresh stream to the site.
    fn open(&self) -> OpenFuture<'_>;
    /// A short description for logs (address, peer id).
    fn describe(&self) -> String;
}

/// BAR over plain TCP: one connection per exchange (no multiplexing; the site server closes
/// the connection after each response).
#[derive(Clone, Debug)]
pub struct TcpBarConnector {
    addr: SocketAddr,
}

impl TcpBarConnector {
    /// A connector to `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        TcpBarConnector { addr }
    }
}

impl SiteConnector for TcpBarConnector {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(async move {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxSiteStream)
        })
    }

    fn describe(&self) -> String {
        format!("bar+tcp://{}", self.addr)
    }
}

/// Health, timeouts and reconnect above a connector.
pub struct Upstream {
    connector: Arc<dyn SiteConnector>,
    connect_timeout: Duration,
    healthy: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("connector", &self.connector.describe())
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish()
    }
}

impl Upstream {
    /// Wraps `connector`.
    pub fn new(
        connector: Arc<dyn SiteConnector>,
        connect_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.upstream_healthy.set(1);
        Upstream {
            connector,
            connect_timeout,
            healthy: AtomicBool::new(true),
            metrics,
        }
    }

    async fn try_open(&self) -> io::Result<BoxSiteStream> {
        let mut open = self.connector.open();
        // A pooled connector usually answers on the first poll (a new stream on a live
        // connection): then no timer is armed for the connect timeout.
        if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(open.as_mut().poll(cx))).await
        {
            return r;
        }
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "site connect timed out",
            )),
        }
    }

    fn set_health(&self, ok: bool) {
        // Written only on a change: every request reports health, and per-core gateways
        // share these cache lines between threads.
        if self.healthy.load(Ordering::Relaxed) != ok {
            self.healthy.store(ok, Ordering::Relaxed);
            self.metrics.upstream_healthy.set(i64::from(ok));
        }
    }

    /// Opens a stream; on failure retries once immediately (a pooled connector reconnects on
    /// the retry), then reports the error (the caller answers 502).
    pub async fn open(&self) -> io::Result<BoxSiteStream> {
        match self.try_open().await {
            Ok(s) => {
                self.set_health(true);
                Ok(s)
            }
            Err(_) => {
                self.metrics.upstream_failures.inc();
                match self.try_open().await {
                    Ok(s) => {
                        self.set_health(true);
                        Ok(s)
                    }
                    Err(e) => {
                        self.metrics.upstream_failures.inc();
                        self.set_health(false);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Whether the last attempt or check succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// One health check: opens a stream and drops it unused.
    pub async fn check(&self) -> bool {
        let ok = self.try_open().await.is_ok();
        self.set_health(ok);
        ok
    }

    /// Runs [`Self::check`] every `interval` forever.
    pub async fn health_loop(self: Arc<Self>, interval: Duration) {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            self.check().await;
        }
    }
}

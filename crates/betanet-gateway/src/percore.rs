//! One event loop per core: [`PerCoreGateway`] runs `workers` single-threaded tokio runtimes
//! on as many OS threads, each accepting on its own `SO_REUSEPORT` listener bound to the same
//! address (the kernel spreads new connections over them), with its **own** decoy client and
//! upstream (its own [`crate::HtxConnector`] pool, so an admitted request never leaves the
//! thread that accepted it: no work stealing, no cross-thread wake-ups on the hot path).
//!
//! Shared by all loops, because it must be: the ticket verifier with its replay store (a
//! ticket admitted on one loop is a replay on every other), the per-/24 and /56 token buckets,
//! the voucher verifier and spent set, the connection limit, the metrics and the TLS
//! acceptor. The replay store's periodic flush and the metrics listener run on loop 0.
//!
//! With a decoy origin, refused plain connections (after the first head is parsed and the
//! bucket or the ticket said no) are handed, with the bytes read so far, to one more thread,
//! the **decoy thread**, which relays them to the origin; so a flood's relay work (a loopback
//! TCP connect, copy and close per refused connection) does not queue in front of admitted
//! requests on the loops. The bytes on the wire are the same as an inline relay's; if the
//! hand-off queue is full the loop relays itself.
//!
//! [`crate::Gateway`] (one listener on whatever runtime the caller runs, e.g. tokio's
//! multi-threaded one) stays available; behaviour on the wire is identical.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::server::{
    Core, DecoyJob, accept_loop, decoy_thread, flush_loop, lock, serve_metrics, site_connector,
};
use crate::upstream::SiteConnector;

/// Makes the site connector of one loop (called once per loop, with the loop's index, on the
/// caller's thread). Each loop must get its own connector so each keeps its own pool.
pub type ConnectorFactory =
    dyn Fn(usize) -> Result<Arc<dyn SiteConnector>, GatewayError> + Send + Sync;

/// A running per-core gateway (see the module docs).
pub struct PerCoreGateway {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    core: Arc<Core>,
    accepted: Arc<[AtomicU64]>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    decoy_thread: Option<JoinHandle<()>>,
}

/// Refused connections waiting for the decoy thread; beyond this a loop relays itself.
const DECOY_QUEUE: usize = 1024;

impl std::fmt::Debug for PerCoreGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerCoreGateway")
            .field("local_addr", &self.local_addr)
            .field("loops", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// A listening TCP socket with `SO_REUSEPORT` (and `SO_REUSEADDR`), non-blocking.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<StdTcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

impl PerCoreGateway {
    /// Starts `workers` (at least 1) event loops with the connector `site` asks for
    /// ([`site_connector`]: HTX when `site.public_key` is set) — what `betanet gateway
    /// --workers N` runs for N ≥ 2. Returns once every loop listens.
    pub fn start(config: GatewayConfig, workers: usize) -> Result<PerCoreGateway, GatewayError> {
        let cfg = config.clone();
        Self::start_with(config, workers, Box::new(move |_| site_connector(&cfg)))
    }

    /// Like [`Self::start`] with a connector per loop from `connector` (tests plug in an
    /// [`crate::HtxConnector`] with their own settings here).
    pub fn start_with(
        config: GatewayConfig,
        workers: usize,
        connector: Box<ConnectorFactory>,
    ) -> Result<PerCoreGateway, GatewayError> {
        let workers = workers.max(1);
        let core = Arc::new(Core::new(&config)?);
        // All listeners are bound here, before any loop starts, so a port-0 address resolves
        // once and every loop shares it.
        let first = reuseport_listener(config.listen)
            .map_err(|e| GatewayError::io(format!("binding {}", config.listen), e))?;
        let local_addr = first
            .local_addr()
            .map_err(|e| GatewayError::io("local_addr", e))?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(
                reuseport_listener(local_addr)
                    .map_err(|e| GatewayError::io(format!("binding {local_addr}"), e))?,
            );
        }
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let l = StdTcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| GatewayError::io(format!("binding metrics {addr}"), e))?;
                Some(l)
            }
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let sem = Arc::new(Semaphore::new(config.limits.max_connections));
        let accepted: Arc<[AtomicU64]> = (0..workers).map(|_| AtomicU64::new(0)).collect();
        let health = Duration::from_millis(config.site.health_interval_ms.max(50));
        let config = Arc::new(config);
        let mut gw = PerCoreGateway {
            local_addr,
            metrics_addr,
            core: core.clone(),
            accepted: accepted.clone(),
            stops: Vec::new(),
            threads: Vec::new(),
            decoy_thread: None,
        };
        // The decoy thread: refused plain connections are relayed to the decoy origin here,
        // off the event loops that serve admitted requests.
        let decoy_tx = match config.decoy.origin {
            Some(origin) => {
                let (tx, rx) = tokio::sync::mpsc::channel::<DecoyJob>(DECOY_QUEUE);
                let metrics = core.metrics.clone();
                let t = std::thread::Builder::new()
                    .name("gateway-decoy".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(decoy_thread(origin, rx, metrics)),
                            Err(e) => tracing::warn!(error = %e, "decoy thread runtime"),
                        }
                    })
                    .map_err(|e| GatewayError::io("spawning the decoy thread", e))?;
                gw.decoy_thread = Some(t);
                Some(tx)
            }
            None => None,
        };
        let mut metrics_listener = metrics_listener;
        for (i, std_listener) in listeners.into_iter().enumerate() {
            let connector = connector(i)?;
            let mut state = core.loop_state(&config, connector)?;
            state.decoy_tx = decoy_tx.clone();
            let shared = Arc::new(state);
            let (stop_tx, stop_rx) = oneshot::channel();
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
            let sem = sem.clone();
            let accepted = accepted.clone();
            let metrics_l = if i == 0 {
                metrics_listener.take()
            } else {
                None
            };
            let verifier = core.verifier.clone();
            let metrics = core.metrics.clone();
            let t = std::thread::Builder::new()
                .name(format!("gateway-loop-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    rt.block_on(run_loop(LoopArgs {
                        index: i,
                        listener: std_listener,
                        metrics_listener: metrics_l,
                        shared,
                        sem,
                        accepted,
                        verifier,
                        metrics,
                        health,
                        stop: stop_rx,
                        ready: ready_tx,
                    }));
                })
                .map_err(|e| GatewayError::io("spawning an event-loop thread", e))?;
            gw.stops.push(stop_tx);
            gw.threads.push(t);
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    drop(decoy_tx);
                    gw.shutdown();
                    return Err(GatewayError::io(
                        format!("event loop {i}"),
                        std::io::Error::other(e),
                    ));
                }
                Err(_) => {
                    drop(decoy_tx);
                    gw.shutdown();
                    return Err(GatewayError::io(
                        format!("event loop {i}"),
                        std::io::Error::other("event-loop thread exited"),
                    ));
                }
            }
        }
        tracing::info!(%local_addr, loops = workers, "gateway listening (one event loop per core)");
        Ok(gw)
    }

    /// The bound listen address (shared by every loop).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound metrics address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics (shared by every loop).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.core.metrics.clone()
    }

    /// Number of event loops.
    pub fn loops(&self) -> usize {
        self.threads.len()
    }

    /// Connections accepted so far by each loop (index = loop).
    pub fn accepted_per_loop(&self) -> Vec<u64> {
        self.accepted
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops every loop (closing its connections), waits for the threads, then flushes and
    /// closes the replay store. Blocking: call it outside async code (or in
    /// `spawn_blocking`).
    pub fn shutdown(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Every loop (and so every sender) is gone: the decoy thread ends.
        if let Some(t) = self.decoy_thread.take() {
            let _ = t.join();
        }
        if let Some(mut v) = lock(&self.core.verifier).take() {
            let _ = v.flush();
        }
    }
}

struct LoopArgs {
    index: usize,
    listener: StdTcpListener,
    metrics_listener: Option<StdTcpListener>,
    shared: Arc<crate::server::Shared>,
    sem: Arc<Semaphore>,
    accepted: Arc<[AtomicU64]>,
    verifier: Arc<std::sync::Mutex<Option<crate::server::Verifier>>>,
    metrics: Arc<Metrics>,
    health: Duration,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
}

async fn run_loop(a: LoopArgs) {
    let listener = match TcpListener::from_std(a.listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = a.ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut background = JoinSet::new();
    background.spawn(a.shared.upstream.clone().health_loop(a.health));
    if a.index == 0 {
        background.spawn(flush_loop(a.verifier));
        if let Some(l) = a.metrics_listener {
            match TcpListener::from_std(l) {
                Ok(l) => {
                    background.spawn(serve_metrics(l, a.metrics));
                }
                Err(e) => {
                    let _ = a.ready.send(Err(e.to_string()));
                    return;
                }
            }
        }
    }
    let _ = a.ready.send(Ok(()));
    accept_loop(listener, a.shared, a.sem, a.stop, a.accepted.get(a.index)).await;
    background.shutdown().await;
}

/// Runs a per-core gateway from a config until Ctrl-C (what `betanet gateway --workers N`
/// should run for N ≥ 2). Blocking: call it from `main`, **not** inside a tokio runtime.
pub fn run_per_core(config: GatewayConfig, workers: usize) -> Result<(), GatewayError> {
    let gw = PerCoreGateway::start(config, workers)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GatewayError::io("starting the signal runtime", e))?;
    let r = rt.block_on(tokio::signal::ctrl_c());
    gw.shutdown();
    r.map_err(|e| GatewayError::io("waiting for Ctrl-C", e))
}

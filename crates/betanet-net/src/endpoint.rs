//! `dial` / `listen` / `accept` for every carriage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_htx::{Config as HtxConfig, Connection as Engine, HandshakeConfig, PqMode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::conn::{Connection, established, spawn_driver};
use crate::error::NetError;
use crate::tls::{TlsClient, TlsServer};

/// The outer carriage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Handshake and frames straight on TCP (development, tests, trusted links).
    Tcp12,
    /// TLS 1.3 carrying HTTP/2; HTX rides in a streaming POST (SPEC PD-1).
    Tls,
    /// Legacy HTX 1.1 framing straight on TCP (SPEC §4.7; opt-in, never the default). Same
    /// handshake and keys as `tcp12`; the selected L2 id is `betanet/htx/1.1.0`.
    Tcp11,
    /// QUIC v1 carrying HTTP/3 over UDP; HTX rides in a streaming POST (SPEC PD-1, §4.8).
    /// Uses the same TLS settings as [`Transport::Tls`].
    Quic,
    /// `auto`. Client: QUIC first; if it fails, TLS + HTTP/2 to the same address after a
    /// random 200–1200 ms (SPEC §4.8; `BETANET_DEV_FAST=1` skips the wait). Server: TLS +
    /// HTTP/2 on the TCP port and QUIC + HTTP/3 on the same UDP port, like a web server
    /// offering both.
    QuicThenTls,
}

impl Transport {
    /// Whether this carriage runs inside TLS (TCP or QUIC) and so needs the front's
    /// certificate and ticket key.
    #[must_use]
    pub fn uses_tls(self) -> bool {
        matches!(
            self,
            Transport::Tls | Transport::Quic | Transport::QuicThenTls
        )
    }

    /// The engine configuration for this carriage.
    pub(crate) fn engine_config(self, htx: &HtxConfig) -> HtxConfig {
        let mut c = htx.clone();
        if self == Transport::Tcp11 {
            c.framing = betanet_htx::Framing::V11;
        }
        c
    }

    pub(crate) fn adjust_caps(self, hs: &mut HandshakeConfig) {
        if self == Transport::Tcp11 {
            hs.caps.l2 = vec![betanet_wire::caps::HTX_1_1.to_owned()];
        }
    }
}

impl std::str::FromStr for Transport {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        match s {
            "tcp12" => Ok(Transport::Tcp12),
            "tls" => Ok(Transport::Tls),
            "tcp11" => Ok(Transport::Tcp11),
            "quic" => Ok(Transport::Quic),
            "auto" => Ok(Transport::QuicThenTls),
            other => Err(NetError::Config(format!(
                "unknown transport {other:?}: use tcp12, tls, quic, auto (QUIC, then TLS) or tcp11"
            ))),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp12 => "tcp12",
            Transport::Tls => "tls",
            Transport::Tcp11 => "tcp11",
            Transport::Quic => "quic",
            Transport::QuicThenTls => "auto",
        })
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a node dials.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our long-term identity.
    pub identity: SigningKey,
    /// Engine tunables.
    pub htx: HtxConfig,
    /// Post-quantum mode (hybrid by default).
    pub pq: PqMode,
    /// The carriage.
    pub transport: Transport,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// TLS settings (required for [`Transport::Tls`], [`Transport::Quic`] and
    /// [`Transport::QuicThenTls`]).
    pub tls: Option<TlsClient>,
    /// TLS carriage: the probability that a connection carries an HTTP/2 PRIORITY frame
    /// (SPEC §4.1 cover behaviour). [`ClientConfig::new`] draws it once per client,
    /// uniformly from [`crate::priority::PROBABILITY_RANGE`] ([0.5 %, 3 %]); 1 forces it.
    pub h2_priority_probability: f64,
    /// `auto`: unrelated origins (`host:port`) to open cover connections to around the TCP
    /// retry after QUIC fails (SPEC §4.8). [`ClientConfig::new`] reads them from
    /// `BETANET_COVER_DECOYS` (comma-separated); empty means no covers.
    pub cover_origins: Vec<String>,
    /// TLS carriage: origin calibration (SPEC §4.1). [`ClientConfig::new`] reads
    /// `BETANET_FP_POLICY` (DEV, REQUIRED or OFF; default DEV) and `BETANET_FP_DIR`.
    pub calibration: crate::calibrate::Calibration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// `tcp12` with defaults.
    #[must_use]
    pub fn new(identity: SigningKey) -> Self {
        ClientConfig {
            identity,
            htx: HtxConfig::default(),
            pq: PqMode::Hybrid,
            transport: Transport::Tcp12,
            connect_timeout: Duration::from_secs(10),
            tls: None,
            h2_priority_probability: crate::priority::draw_probability(&mut rand_core::OsRng),
            cover_origins: crate::cover::origins_from_env(),
            calibration: crate::calibrate::Calibration::from_env(),
        }
    }

    pub(crate) fn handshake(&self, exporter: [u8; 32]) -> HandshakeConfig {
        let mut hs = HandshakeConfig::new(self.identity.clone(), now_unix());
        hs.pq = self.pq;
        hs.tls_exporter = exporter;
        self.transport.adjust_caps(&mut hs);
        hs
    }

    /// A client engine for `remote`, the handshake bound to `exporter` (zeros without TLS).
    pub(crate) fn engine(
        &self,
        remote: &VerifyingKey,
        exporter: [u8; 32],
    ) -> Result<Engine, NetError> {
        Engine::client(
            self.transport.engine_config(&self.htx),
            self.handshake(exporter),
            remote,
            Instant::now(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| NetError::Config(e.to_string()))
    }
}

/// How a node listens.
#[derive(Clone)]
pub struct ServerConfig {
    /// Our long-term identity.
    pub identity: SigningKey,
    /// Engine tunables.
    pub htx: HtxConfig,
    /// Post-quantum mode.
    pub pq: PqMode,
    /// The carriage.
    pub transport: Transport,
    /// TLS settings (required for [`Transport::Tls`] and [`Transport::Quic`]).
    pub tls: Option<TlsServer>,
    /// Handshakes running at once (more connections wait).
    pub max_handshakes: usize,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// `tcp12` with defaults.
    #[must_use]
    pub fn new(identity: SigningKey) -> Self {
        ServerConfig {
            identity,
            htx: HtxConfig::default(),
            pq: PqMode::Hybrid,
            transport: Transport::Tcp12,
            tls: None,
            max_handshakes: 256,
        }
    }

    pub(crate) fn handshake(&self, exporter: [u8; 32]) -> HandshakeConfig {
        let mut hs = HandshakeConfig::new(self.identity.clone(), now_unix());
        hs.pq = self.pq;
        hs.tls_exporter = exporter;
        self.transport.adjust_caps(&mut hs);
        hs
    }

    /// A server engine, the handshake bound to `exporter` (zeros without TLS).
    pub(crate) fn engine(&self, exporter: [u8; 32]) -> Result<Engine, NetError> {
        Engine::server(
            self.transport.engine_config(&self.htx),
            self.handshake(exporter),
            Instant::now(),
            &mut rand_core::OsRng,
        )
        .map_err(|e| NetError::Config(e.to_string()))
    }
}

pub(crate) async fn connect_tcp(addr: &str, timeout: Duration) -> Result<TcpStream, NetError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(NetError::Timeout {
                what: "TCP connect",
                secs: timeout.as_secs(),
            });
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(NetError::Refused {
                addr: addr.to_owned(),
            });
        }
        Ok(Err(e)) => return Err(NetError::Io(e)),
        Ok(Ok(t)) => t,
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Dials `addr` (`host:port`) and authenticates the peer as `remote`.
pub async fn dial(
    addr: &str,
    remote: &VerifyingKey,
    cfg: &ClientConfig,
) -> Result<Connection, NetError> {
    let tls = || {
        cfg.tls.as_ref().ok_or_else(|| {
            NetError::Config(format!(
                "transport {} needs a TLS client configuration",
                cfg.transport
            ))
        })
    };
    match cfg.transport {
        Transport::Tcp12 | Transport::Tcp11 => {
            let tcp = connect_tcp(addr, cfg.connect_timeout).await?;
            let engine = cfg.engine(remote, [0; 32])?;
            let name = if cfg.transport == Transport::Tcp11 {
                "tcp11"
            } else {
                "tcp12"
            };
            established(spawn_driver(engine, tcp, name)).await
        }
        Transport::Tls => {
            let tls = tls()?;
            let tcp = connect_tcp(addr, cfg.connect_timeout).await?;
            crate::tls::dial(tcp, addr, remote, cfg, tls).await
        }
        Transport::Quic => crate::quic::dial(addr, remote, cfg, tls()?, cfg.connect_timeout).await,
        Transport::QuicThenTls => {
            let tls = tls()?;
            // Where UDP is blocked nothing answers: give QUIC at most 3 s before falling back.
            let quic_wait = cfg.connect_timeout.min(QUIC_FIRST_TIMEOUT);
            match crate::quic::dial(addr, remote, cfg, tls, quic_wait).await {
                Ok(c) => Ok(c),
                Err(e @ NetError::AuthFailed { .. }) => Err(e),
                Err(e) => {
                    // SPEC §4.8: retry over TCP after a random 200–1200 ms, with a fresh
                    // ClientHello (a new TLS session; nothing is resumed), surrounded by
                    // cover connections to unrelated origins when configured.
                    let wait = fallback_delay(&mut rand_core::OsRng);
                    tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, covers = cfg.cover_origins.len(), "QUIC failed; falling back to TLS over TCP");
                    tokio::time::sleep(wait).await;
                    let extra = crate::cover::start(&cfg.cover_origins, dev_fast());
                    tokio::time::sleep(extra).await;
                    let tcp = connect_tcp(addr, cfg.connect_timeout).await?;
                    crate::tls::dial(tcp, addr, remote, cfg, tls).await
                }
            }
        }
    }
}

/// `BETANET_DEV_FAST=1`: skip the artificial fallback delays (local development).
fn dev_fast() -> bool {
    std::env::var("BETANET_DEV_FAST").is_ok_and(|v| v == "1")
}

/// How long `auto` waits for the QUIC handshake before falling back to TCP.
pub const QUIC_FIRST_TIMEOUT: Duration = Duration::from_secs(3);

/// The wait before the TCP retry after a failed QUIC attempt: uniform in [200 ms, 1200 ms]
/// (SPEC §4.8), or none with `BETANET_DEV_FAST=1`.
pub(crate) fn fallback_delay<R: rand_core::RngCore>(rng: &mut R) -> Duration {
    if dev_fast() {
        return Duration::ZERO;
    }
    Duration::from_millis(200 + u64::from(rng.next_u32() % 1001))
}

/// Accepts HTX connections.
pub struct Listener {
    local_addr: SocketAddr,
    rx: mpsc::Receiver<Connection>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Listener {
    pub(crate) fn from_parts(
        local_addr: SocketAddr,
        rx: mpsc::Receiver<Connection>,
        task: JoinHandle<()>,
    ) -> Self {
        Listener {
            local_addr,
            rx,
            task,
        }
    }

    /// One listener for the sessions of both (same address, TCP and UDP).
    fn merge(mut a: Listener, mut b: Listener) -> Listener {
        let local_addr = a.local_addr;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let c = tokio::select! {
                    c = a.rx.recv() => c,
                    c = b.rx.recv() => c,
                };
                let Some(c) = c else { return };
                if tx.send(c).await.is_err() {
                    return;
                }
            }
        });
        Listener {
            local_addr,
            rx,
            task,
        }
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection whose handshake completed.
    pub async fn accept(&mut self) -> Result<Connection, NetError> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| NetError::Config("listener stopped".into()))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and starts accepting; handshakes run in their own tasks and failed ones are
/// dropped (a failure before keys exist just closes TCP, PD-7).
pub async fn listen(addr: &str, cfg: ServerConfig) -> Result<Listener, NetError> {
    match cfg.transport {
        Transport::Tls if cfg.tls.is_none() => {
            return Err(NetError::Config(
                "transport tls needs a TLS server configuration".into(),
            ));
        }
        Transport::Quic => return crate::quic::listen(addr, cfg),
        Transport::QuicThenTls => {
            let mut tls = cfg.clone();
            tls.transport = Transport::Tls;
            let tcp = Box::pin(listen(addr, tls)).await?;
            let mut quic = cfg;
            quic.transport = Transport::Quic;
            let udp = crate::quic::listen(&tcp.local_addr().to_string(), quic)?;
            return Ok(Listener::merge(tcp, udp));
        }
        _ => {}
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| NetError::File {
        what: "cannot listen on",
        path: addr.to_owned(),
        source: e,
    })?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(cfg.max_handshakes.max(1)));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let tx = tx.clone();
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let result = match cfg.transport {
                    Transport::Tcp12 | Transport::Tcp11 => accept_tcp(tcp, &cfg).await,
                    Transport::Tls => match &cfg.tls {
                        Some(tls) => crate::tls::accept(tcp, peer, &cfg, tls).await,
                        None => Err(NetError::Config("no TLS configuration".into())),
                    },
                    Transport::Quic | Transport::QuicThenTls => {
                        Err(NetError::Config("not a TCP transport".into()))
                    }
                };
                drop(permit);
                match result {
                    Ok(Some(conn)) => {
                        let _ = tx.send(conn).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(%peer, error = %e, "inbound handshake failed"),
                }
            });
        }
    });
    Ok(Listener {
        local_addr,
        rx,
        task,
    })
}

async fn accept_tcp(tcp: TcpStream, cfg: &ServerConfig) -> Result<Option<Connection>, NetError> {
    let engine = cfg.engine([0; 32])?;
    let name = if cfg.transport == Transport::Tcp11 {
        "tcp11"
    } else {
        "tcp12"
    };
    established(spawn_driver(engine, tcp, name)).await.map(Some)
}

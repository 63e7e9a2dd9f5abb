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
}

impl Transport {
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
            other => Err(NetError::Config(format!(
                "unknown transport {other:?}: use tcp12, tls or tcp11"
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
    /// TLS + HTTP/2 settings (required for [`Transport::Tls`]).
    pub tls: Option<TlsClient>,
    /// TLS carriage: the probability that a connection carries an HTTP/2 PRIORITY frame
    /// (SPEC §4.1 cover behaviour). [`ClientConfig::new`] draws it once per client,
    /// uniformly from [`crate::priority::PROBABILITY_RANGE`] ([0.5 %, 3 %]); 1 forces it.
    pub h2_priority_probability: f64,
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
        }
    }

    pub(crate) fn handshake(&self, exporter: [u8; 32]) -> HandshakeConfig {
        let mut hs = HandshakeConfig::new(self.identity.clone(), now_unix());
        hs.pq = self.pq;
        hs.tls_exporter = exporter;
        self.transport.adjust_caps(&mut hs);
        hs
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
    /// TLS + HTTP/2 settings (required for [`Transport::Tls`]).
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
    let tcp = connect_tcp(addr, cfg.connect_timeout).await?;
    match cfg.transport {
        Transport::Tcp12 | Transport::Tcp11 => {
            let engine = Engine::client(
                cfg.transport.engine_config(&cfg.htx),
                cfg.handshake([0; 32]),
                remote,
                Instant::now(),
                &mut rand_core::OsRng,
            )
            .map_err(|e| NetError::Config(e.to_string()))?;
            let name = if cfg.transport == Transport::Tcp11 {
                "tcp11"
            } else {
                "tcp12"
            };
            established(spawn_driver(engine, tcp, name)).await
        }
        Transport::Tls => {
            let tls = cfg.tls.as_ref().ok_or_else(|| {
                NetError::Config("transport tls needs a TLS client configuration".into())
            })?;
            crate::tls::dial(tcp, addr, remote, cfg, tls).await
        }
    }
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
    if cfg.transport == Transport::Tls && cfg.tls.is_none() {
        return Err(NetError::Config(
            "transport tls needs a TLS server configuration".into(),
        ));
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
    let engine = Engine::server(
        cfg.transport.engine_config(&cfg.htx),
        cfg.handshake([0; 32]),
        Instant::now(),
        &mut rand_core::OsRng,
    )
    .map_err(|e| NetError::Config(e.to_string()))?;
    let name = if cfg.transport == Transport::Tcp11 {
        "tcp11"
    } else {
        "tcp12"
    };
    established(spawn_driver(engine, tcp, name)).await.map(Some)
}

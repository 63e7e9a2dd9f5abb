//! Client API mirroring the seed's `BetanetTransport` (`discover_nodes`, `build_circuit`,
//! `send_packet`, `close_circuit`, `get_stats`), plus hidden services reached through
//! introduction and rendezvous points.
//!
//! A "circuit" in a mixnet is a fixed route of mixnodes used for a stream of packets; every
//! packet is still an independent layered packet, and every `send_packet` carries a fresh
//! single-use reply block over the reversed route, so the exit's handler can answer. Replies
//! arrive on the client's own TCP listener (`reply_listen`). Reply blocks need 2 KiB packets
//! (a SURB is 543 bytes; a 1 KiB packet carries 528).
//!
//! First hop: every packet is handed to its first hop either over plain length-prefixed TCP
//! or over one HTX (`tcp12`) stream pinned to the node's verified Ed25519 identity
//! ([`FirstHop`], default [`FirstHop::Auto`]). Later hops are the nodes' business.
//!
//! Hidden services: [`MixClient::connect_service`] gives an [`HsSession`]; [`HsSession::fetch`]
//! sends a request of up to 4 MiB and returns the response, both chunked end to end by
//! [`crate::hs_stream`]; [`HiddenService::serve`] answers such requests with an async handler,
//! many sessions at once. (`HsSession::request` / `HiddenService::serve_one` are the older
//! one-packet form; a session uses one form or the other.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::{OsRng, RngCore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::app::{self, COOKIE_LEN, Side, kind};
use crate::crypto::{self as mixcrypto, HsKeys, MixPublicKey, MixSecretKey};
use crate::descriptor::{
    self as mixdesc, IntroPoint, ServiceDescriptor, UncheckedMixDescriptor,
    UncheckedServiceDescriptor, parse_service_url, service_url,
};
use crate::error::MixError;
use crate::hs_stream::{self, Chunk, CounterWindow, Reassembler, ReplyBudget};
use crate::hsdir::{self, HSDIR_REPLICAS, HsDirReply, PublishStatus};
use crate::node::{CTRL_DESCRIBE, read_frame, write_frame};
use crate::packet::{
    self, MAX_HOPS, NodeAddr, PacketSize, RouteHop, SURB_ID_LEN, Surb, SurbSecret,
};
use crate::select::{self, Endpoints, HopSelector, MixNodeInfo, PrivacyMode};

/// Bound on outstanding reply blocks per client.
const MAX_PENDING: usize = 65_536;
/// Reply blocks a client deposits at the rendezvous before a response's size is known.
pub const HS_CLIENT_INITIAL_SURBS: u64 = 16;
/// Most reply blocks a client keeps ahead at the rendezvous for one response.
pub const HS_CLIENT_WINDOW: u64 = 128;
/// Reply blocks a service deposits for a new session (for the first request chunks).
pub const HS_SERVICE_INITIAL_SURBS: u64 = 8;
/// Most reply blocks a service keeps ahead at the rendezvous per session.
pub const HS_SERVICE_WINDOW: u64 = 64;
/// Sessions a [`HiddenService::serve`] loop keeps (oldest evicted).
pub const HS_MAX_SESSIONS: usize = 1024;
/// Bytes of partial requests a [`HiddenService::serve`] loop buffers over all sessions;
/// chunks beyond it are dropped (their request then times out at the client).
pub const HS_SERVICE_MAX_BUFFERED: usize = 64 << 20;
/// Complete requests a [`HiddenService::serve`] loop queues beyond those being handled;
/// more are dropped (the client times out).
pub const HS_MAX_QUEUED: usize = 256;
/// Inbox capacity of a client session (more than [`HS_CLIENT_WINDOW`]).
const HS_CLIENT_INBOX: usize = 512;
/// How often a serving hidden service re-deposits reply blocks at its introduction points
/// ([`HiddenService::set_intro_refresh`]): an intro point that restarted (and lost them), a
/// mix key rotation or a forgotten block secret must not leave the service unreachable. Kept
/// well under the 10 minutes after which a full client may forget unused block secrets.
pub const HS_INTRO_REFRESH: Duration = Duration::from_secs(300);
/// Inbox capacity of a hidden service (all sessions).
const HS_SERVICE_INBOX: usize = 2048;

/// How a [`MixClient`] hands packets to the first hop of a route.
///
/// The first hop is named by the address in its signed descriptor. A node that advertises its
/// HTX ingress (`advertise = "htx"`) names its HTX port there, which only speaks HTX.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirstHop {
    /// Plain length-prefixed TCP (`u32be len ‖ packet`), as nodes' TCP ingress expects. Each
    /// new connection is first probed with a describe request: the answer must be a valid
    /// descriptor of the expected node, else the send fails with [`MixError::FirstHop`] (this
    /// catches an HTX port at once; it is a sanity check, not authentication).
    Tcp,
    /// HTX `tcp12` pinned to the node's Ed25519 identity from its verified descriptor (learnt
    /// by [`MixClient::discover_nodes`] or [`MixClient::add_node_identity`]); one connection
    /// and one stream per first hop carrying the same frames, re-dialled when it dies. The
    /// client authenticates with an ephemeral identity made at [`MixClient::start`]. A first
    /// hop without a known identity is a [`MixError::FirstHop`] error, never a TCP fallback.
    Htx,
    /// Per node: HTX when the client knows the node's identity and the node's descriptor
    /// names a different address than the one the client described it at (the node
    /// advertises a separate, HTX, ingress), or it was added with `htx_ingress = true`;
    /// otherwise TCP. Default: it reaches both kinds of node with no setting, uses the
    /// authenticated link wherever the node offers one, and never downgrades an HTX node to
    /// TCP. (Behind NAT, where a node's advertised TCP address differs from the one dialled,
    /// set [`FirstHop::Tcp`].)
    #[default]
    Auto,
}

/// A node's verified identity as the client knows it.
#[derive(Clone, Copy, Debug)]
struct KnownIdentity {
    identity: [u8; 32],
    /// The directory address names an HTX ingress (see [`FirstHop::Auto`]).
    htx_ingress: bool,
}

/// A pooled link to one first hop.
enum FirstHopConn {
    Tcp(TcpStream),
    Htx(Box<HtxLink>),
}

/// An HTX connection to a first hop and the stream its packets ride on.
struct HtxLink {
    conn: betanet_net::Connection,
    stream: betanet_net::Stream,
}

/// Client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where replies arrive (127.0.0.1:0 picks a port).
    pub reply_listen: SocketAddr,
    /// Packet size (2 KiB needed for reply blocks).
    pub packet_size: PacketSize,
    /// Privacy mode: sets the minimum circuit length.
    pub mode: PrivacyMode,
    /// Default `send_packet` timeout.
    pub default_timeout: Duration,
    /// Connect timeout (TCP connect, describe answers, first-hop probe, HTX dial).
    pub connect_timeout: Duration,
    /// How packets reach their first hop (default [`FirstHop::Auto`]).
    pub first_hop: FirstHop,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            reply_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            packet_size: PacketSize::K2,
            mode: PrivacyMode::Strict,
            default_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            first_hop: FirstHop::Auto,
        }
    }
}

/// A circuit: a fixed route and its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circuit {
    /// Caller's id.
    pub id: String,
    /// Hops in order.
    pub hops: Vec<MixNodeInfo>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Packets sent.
    pub packets_sent: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
}

/// Client statistics (`get_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Verified mixnodes known.
    pub available_nodes: usize,
    /// Open circuits.
    pub active_circuits: usize,
    /// Packets sent.
    pub total_packets_sent: u64,
    /// Payload bytes sent.
    pub total_bytes_sent: u64,
    /// Sends that failed (first hop unreachable).
    pub failed_sends: u64,
    /// Replies received and opened.
    pub replies_received: u64,
    /// Sends that timed out waiting for a reply.
    pub reply_timeouts: u64,
    /// Hop selections that used the `bn-fallback` beacon.
    pub beacon_fallbacks: u64,
    /// First-hop links opened over plain TCP (probed).
    pub first_hop_tcp_links: u64,
    /// First-hop links opened over HTX (authenticated handshake + stream).
    pub first_hop_htx_links: u64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    replies: AtomicU64,
    timeouts: AtomicU64,
    fallbacks: AtomicU64,
    tcp_links: AtomicU64,
    htx_links: AtomicU64,
}

/// Reply-block secrets by id: the secret, where the reply goes, and when it was made.
type Pending = HashMap<[u8; SURB_ID_LEN], (SurbSecret, mpsc::Sender<Vec<u8>>, std::time::Instant)>;
/// Age after which an unused reply-block secret may be dropped when the table is full.
const PENDING_MAX_AGE: Duration = Duration::from_secs(600);

struct Inner {
    cfg: ClientConfig,
    reply_addr: NodeAddr,
    client_id: [u8; 32],
    k0c: zeroize::Zeroizing<[u8; 32]>,
    nodes: Mutex<Vec<MixNodeInfo>>,
    circuits: Mutex<HashMap<String, Circuit>>,
    selector: Mutex<HopSelector>,
    pending: Arc<Mutex<Pending>>,
    /// Verified identities by node id.
    idents: Mutex<HashMap<[u8; 32], KnownIdentity>>,
    /// How this client dials HTX first hops (ephemeral identity, `tcp12`).
    htx: betanet_net::ClientConfig,
    conns: tokio::sync::Mutex<HashMap<SocketAddr, FirstHopConn>>,
    rng: Mutex<StdRng>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The mixnet client (cheap to clone).
#[derive(Clone)]
pub struct MixClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MixClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixClient")
            .field("reply_addr", &self.inner.reply_addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn reply_listener(listener: TcpListener, pending: Arc<Mutex<Pending>>, c: Arc<Counters>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((mut s, _)) = acc else { continue };
                let (pending, c) = (pending.clone(), c.clone());
                conns.spawn(async move {
                    while let Ok(Some(f)) = read_frame(&mut s).await {
                        let Some(id) = f.get(..SURB_ID_LEN).and_then(|x| <[u8; 16]>::try_from(x).ok()) else {
                            return;
                        };
                        let entry = lock(&pending).remove(&id);
                        let Some((secret, tx, _)) = entry else { continue };
                        match secret.open(f.get(SURB_ID_LEN..).unwrap_or_default().to_vec()) {
                            Ok(msg) => {
                                c.replies.fetch_add(1, Ordering::Relaxed);
                                let _ = tx.try_send(msg);
                            }
                            Err(e) => tracing::debug!(error = %e, "reply rejected"),
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

impl MixClient {
    /// Binds the reply listener and starts the client.
    pub async fn start(cfg: ClientConfig) -> Result<MixClient, MixError> {
        let listener = TcpListener::bind(cfg.reply_listen)
            .await
            .map_err(|e| MixError::io(format!("reply listen {}", cfg.reply_listen), e))?;
        let reply_addr = NodeAddr(
            listener
                .local_addr()
                .map_err(|e| MixError::io("reply listener", e))?,
        );
        let mut rng = StdRng::from_rng(OsRng).map_err(|_| MixError::Crypto)?;
        let mut client_id = [0u8; 32];
        rng.fill_bytes(&mut client_id);
        let mut k0c = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k0c.as_mut());
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let counters = Arc::new(Counters::default());
        let mut htx =
            betanet_net::ClientConfig::new(betanet_crypto::sign::SigningKey::generate(&mut rng));
        htx.transport = betanet_net::Transport::Tcp12;
        htx.connect_timeout = cfg.connect_timeout;
        let accept = tokio::spawn(reply_listener(listener, pending.clone(), counters.clone()));
        Ok(MixClient {
            inner: Arc::new(Inner {
                cfg,
                reply_addr,
                client_id,
                k0c,
                nodes: Mutex::new(Vec::new()),
                circuits: Mutex::new(HashMap::new()),
                selector: Mutex::new(HopSelector::new()),
                pending,
                idents: Mutex::new(HashMap::new()),
                htx,
                conns: tokio::sync::Mutex::new(HashMap::new()),
                rng: Mutex::new(rng),
                counters,
                accept,
            }),
        })
    }

    /// Where replies arrive.
    pub fn reply_addr(&self) -> NodeAddr {
        self.inner.reply_addr
    }

    /// Asks each seed for its signed descriptor, verifies it and adds it to the directory.
    /// Unreachable seeds and bad descriptors are skipped. Returns the known nodes.
    pub async fn discover_nodes(&self, seeds: &[SocketAddr]) -> Vec<MixNodeInfo> {
        for &seed in seeds {
            match self.describe(seed).await {
                Ok(info) => {
                    let mut nodes = lock(&self.inner.nodes);
                    nodes.retain(|n| n.id != info.id);
                    nodes.push(info);
                }
                Err(e) => tracing::warn!(%seed, error = %e, "mixnode discovery failed"),
            }
        }
        lock(&self.inner.nodes).clone()
    }

    async fn describe(&self, seed: SocketAddr) -> Result<MixNodeInfo, MixError> {
        let io = |e| MixError::io(format!("describe {seed}"), e);
        let mut s = timeout(self.inner.cfg.connect_timeout, TcpStream::connect(seed))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?;
        write_frame(&mut s, &[CTRL_DESCRIBE]).await.map_err(io)?;
        let f = timeout(self.inner.cfg.connect_timeout, read_frame(&mut s))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?
            .ok_or_else(|| io(std::io::ErrorKind::UnexpectedEof.into()))?;
        let d = UncheckedMixDescriptor::decode(&f)?;
        let info = d.verify()?;
        lock(&self.inner.idents).insert(
            info.id,
            KnownIdentity {
                identity: d.identity(),
                htx_ingress: info.addr.0 != seed,
            },
        );
        Ok(info)
    }

    /// Records the Ed25519 identity of a node learnt elsewhere (e.g. from a verified
    /// consensus or descriptor), so it can be an HTX first hop. `htx_ingress` says that the
    /// node's directory address is its HTX ingress ([`FirstHop::Auto`] then uses HTX).
    /// Returns the node id (SHA-256 of the key); fails if the key is not a valid Ed25519 key.
    pub fn add_node_identity(
        &self,
        identity: [u8; 32],
        htx_ingress: bool,
    ) -> Result<[u8; 32], MixError> {
        betanet_crypto::sign::VerifyingKey::from_bytes(&identity)
            .map_err(|_| MixError::BadDescriptor("bad identity key"))?;
        let id = mixdesc::id_of(&identity);
        lock(&self.inner.idents).insert(
            id,
            KnownIdentity {
                identity,
                htx_ingress,
            },
        );
        Ok(id)
    }

    /// The verified Ed25519 identity of node `id`, if known.
    pub fn node_identity(&self, id: &[u8; 32]) -> Option<[u8; 32]> {
        lock(&self.inner.idents).get(id).map(|k| k.identity)
    }

    /// How this client reaches `node` as a first hop: [`FirstHop::Tcp`] or [`FirstHop::Htx`]
    /// ([`FirstHop::Auto`] resolved by its rule).
    pub fn first_hop_transport(&self, node: &MixNodeInfo) -> FirstHop {
        match self.inner.cfg.first_hop {
            FirstHop::Auto => {
                if lock(&self.inner.idents)
                    .get(&node.id)
                    .is_some_and(|k| k.htx_ingress)
                {
                    FirstHop::Htx
                } else {
                    FirstHop::Tcp
                }
            }
            m => m,
        }
    }

    /// Adds directory entries learnt elsewhere (e.g. a verified consensus).
    pub fn add_nodes(&self, infos: &[MixNodeInfo]) {
        let mut nodes = lock(&self.inner.nodes);
        for i in infos {
            nodes.retain(|n| n.id != i.id);
            nodes.push(*i);
        }
    }

    /// Builds circuit `id` with `hops` hops (raised to the privacy mode's minimum, at most 5).
    /// `preferred` nodes (by address) come first, the rest is drawn by the SPEC §7 lottery
    /// (beacon fallback, logged; no exact hop-set reuse until 8 sets were tried).
    pub fn build_circuit(
        &self,
        id: &str,
        hops: usize,
        preferred: &[SocketAddr],
    ) -> Result<Circuit, MixError> {
        let min = self.inner.cfg.mode.min_hops(0.0, false).max(1);
        let n = hops.max(min);
        if n > MAX_HOPS {
            return Err(MixError::PathLength(n));
        }
        let nodes = lock(&self.inner.nodes).clone();
        let mut route: Vec<MixNodeInfo> = Vec::new();
        for p in preferred.iter().take(n) {
            let node = nodes
                .iter()
                .find(|x| x.addr.0 == *p)
                .ok_or(MixError::NotEnoughNodes { need: n, have: 0 })?;
            route.push(*node);
        }
        let rest = n - route.len();
        if rest > 0 {
            let candidates: Vec<MixNodeInfo> = nodes
                .iter()
                .filter(|x| !route.iter().any(|r| r.id == x.id))
                .copied()
                .collect();
            let epoch = unix_now() / 3600;
            let (beacon, fallback) = select::beacon_set(None, &self.inner.k0c, epoch);
            if fallback {
                self.inner
                    .counters
                    .fallbacks
                    .fetch_add(1, Ordering::Relaxed);
            }
            let dst: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(id.as_bytes()).into()
            };
            let mut nonce = [0u8; 16];
            lock(&self.inner.rng).fill_bytes(&mut nonce);
            let seed = select::path_seed(&beacon, &self.inner.client_id, &dst, &nonce);
            let ends = Endpoints {
                src: self.inner.client_id,
                dst,
                src_as: None,
                dst_as: None,
            };
            let drawn =
                lock(&self.inner.selector).select(&seed, epoch, &candidates, rest, &ends)?;
            route.extend(drawn);
        }
        let c = Circuit {
            id: id.to_string(),
            hops: route,
            created_at: SystemTime::now(),
            packets_sent: 0,
            bytes_sent: 0,
        };
        lock(&self.inner.circuits).insert(id.to_string(), c.clone());
        Ok(c)
    }

    /// Closes a circuit; `false` if it did not exist.
    pub fn close_circuit(&self, id: &str) -> bool {
        lock(&self.inner.circuits).remove(id).is_some()
    }

    /// Statistics.
    pub fn get_stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            available_nodes: lock(&self.inner.nodes).len(),
            active_circuits: lock(&self.inner.circuits).len(),
            total_packets_sent: c.packets.load(Ordering::Relaxed),
            total_bytes_sent: c.bytes.load(Ordering::Relaxed),
            failed_sends: c.failed.load(Ordering::Relaxed),
            replies_received: c.replies.load(Ordering::Relaxed),
            reply_timeouts: c.timeouts.load(Ordering::Relaxed),
            beacon_fallbacks: c.fallbacks.load(Ordering::Relaxed),
            first_hop_tcp_links: c.tcp_links.load(Ordering::Relaxed),
            first_hop_htx_links: c.htx_links.load(Ordering::Relaxed),
        }
    }

    /// Creates a reply block over `route` whose reply is delivered to `inbox`.
    fn make_surb(
        &self,
        route: &[RouteHop],
        inbox: mpsc::Sender<Vec<u8>>,
    ) -> Result<Surb, MixError> {
        let (surb, secret) = {
            let mut rng = lock(&self.inner.rng);
            Surb::new(
                &mut *rng,
                self.inner.cfg.packet_size,
                route,
                self.inner.reply_addr,
            )?
        };
        let mut p = lock(&self.inner.pending);
        if p.len() >= MAX_PENDING {
            // Blocks left at rendezvous points by sessions that are gone, or never used.
            p.retain(|_, (_, tx, at)| !tx.is_closed() && at.elapsed() < PENDING_MAX_AGE);
        }
        if p.len() >= MAX_PENDING {
            return Err(MixError::UnknownSurb);
        }
        p.insert(secret.id, (secret, inbox, std::time::Instant::now()));
        Ok(surb)
    }

    /// Drops reply-block secrets whose waiter has gone (timed out or failed to send).
    fn forget_abandoned(&self) {
        lock(&self.inner.pending).retain(|_, (_, tx, _)| !tx.is_closed());
    }

    /// Builds and sends one packet carrying `message` over `route` to the exit.
    async fn send_message(&self, route: &[MixNodeInfo], message: &[u8]) -> Result<(), MixError> {
        let hops: Vec<RouteHop> = route.iter().map(MixNodeInfo::route_hop).collect();
        let (first, pkt) = {
            let mut rng = lock(&self.inner.rng);
            packet::build_packet(
                &mut *rng,
                self.inner.cfg.packet_size,
                &hops,
                [0u8; 32],
                message,
            )?
        };
        let c = &self.inner.counters;
        let Some(hop) = route.first() else {
            return Err(MixError::PathLength(0));
        };
        debug_assert_eq!(hop.addr, first);
        match self.send_raw(hop, &pkt).await {
            Ok(()) => {
                c.packets.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Hands one packet to its first hop `hop` over the pooled link ([`FirstHop`]); a dead
    /// link is replaced once.
    async fn send_raw(&self, hop: &MixNodeInfo, frame: &[u8]) -> Result<(), MixError> {
        let to = hop.addr.0;
        let identity = match self.first_hop_transport(hop) {
            FirstHop::Htx => Some(self.node_identity(&hop.id).ok_or_else(|| {
                MixError::FirstHop {
                    addr: to,
                    reason: "HTX first hop without a verified Ed25519 identity (learn it with \
                             discover_nodes or add_node_identity)"
                        .into(),
                }
            })?),
            _ => None,
        };
        let mut buf = Vec::with_capacity(frame.len() + 4);
        buf.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(0).to_be_bytes());
        buf.extend_from_slice(frame);
        let mut conns = self.inner.conns.lock().await;
        for _ in 0..2 {
            // A pooled link of the other kind, pinned to another key, or dead is replaced.
            let stale = match (conns.get(&to), &identity) {
                (Some(FirstHopConn::Tcp(_)), Some(_)) => true,
                (Some(FirstHopConn::Htx(_)), None) => true,
                (Some(FirstHopConn::Htx(l)), Some(id)) => {
                    l.conn.close_reason().is_some() || l.conn.peer_identity().to_bytes() != *id
                }
                _ => false,
            };
            if stale {
                conns.remove(&to);
            }
            let link = match conns.entry(to) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let c = match &identity {
                        Some(id) => self.dial_htx(to, id).await?,
                        None => self.dial_tcp(hop).await?,
                    };
                    v.insert(c)
                }
            };
            let written = match link {
                FirstHopConn::Tcp(s) => s.write_all(&buf).await.is_ok(),
                // Flow control may hold a write; bound it like a reply wait.
                FirstHopConn::Htx(l) => {
                    timeout(self.inner.cfg.default_timeout, l.stream.write_all(&buf))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
            };
            if written {
                return Ok(());
            }
            conns.remove(&to);
        }
        Err(MixError::io(
            format!("send {to}"),
            std::io::ErrorKind::BrokenPipe.into(),
        ))
    }

    /// A TCP link to first hop `hop`, probed with a describe request: the answer must be a
    /// valid descriptor of `hop` (so an HTX port or another service fails at once, clearly).
    async fn dial_tcp(&self, hop: &MixNodeInfo) -> Result<FirstHopConn, MixError> {
        let to = hop.addr.0;
        let t = self.inner.cfg.connect_timeout;
        let timed_out =
            || MixError::io(format!("connect {to}"), std::io::ErrorKind::TimedOut.into());
        let mut s = timeout(t, TcpStream::connect(to))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| MixError::io(format!("connect {to}"), e))?;
        let _ = s.set_nodelay(true);
        let not_mix = |why: &str| MixError::FirstHop {
            addr: to,
            reason: format!(
                "does not answer as a length-prefixed mix ingress ({why}); if the node \
                 advertises its HTX ingress, use FirstHop::Htx or FirstHop::Auto"
            ),
        };
        let answer = async {
            write_frame(&mut s, &[CTRL_DESCRIBE]).await?;
            read_frame(&mut s).await
        };
        let f = match timeout(t, answer).await {
            Err(_) => return Err(not_mix("no describe answer in time")),
            Ok(Err(_)) | Ok(Ok(None)) => return Err(not_mix("connection closed on describe")),
            Ok(Ok(Some(f))) => f,
        };
        let info = UncheckedMixDescriptor::decode(&f)
            .and_then(|d| d.verify())
            .map_err(|_| not_mix("no valid descriptor"))?;
        if info.id != hop.id {
            return Err(MixError::FirstHop {
                addr: to,
                reason: "answered with the descriptor of another node".into(),
            });
        }
        self.inner
            .counters
            .tcp_links
            .fetch_add(1, Ordering::Relaxed);
        Ok(FirstHopConn::Tcp(s))
    }

    /// An HTX (`tcp12`) connection to `to` authenticated as `identity`, and its packet stream.
    async fn dial_htx(
        &self,
        to: SocketAddr,
        identity: &[u8; 32],
    ) -> Result<FirstHopConn, MixError> {
        let vk = betanet_crypto::sign::VerifyingKey::from_bytes(identity)
            .map_err(|_| MixError::BadDescriptor("bad identity key"))?;
        let dialed = timeout(
            self.inner.cfg.connect_timeout,
            betanet_net::dial(&to.to_string(), &vk, &self.inner.htx),
        )
        .await;
        let conn = match dialed {
            Err(_) => {
                return Err(MixError::io(
                    format!("HTX connect {to}"),
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            // Unreachable (like a TCP connect failure), not a configuration problem.
            Ok(Err(betanet_net::NetError::Io(e))) => {
                return Err(MixError::io(format!("HTX connect {to}"), e));
            }
            Ok(Err(betanet_net::NetError::Refused { .. })) => {
                return Err(MixError::io(
                    format!("HTX connect {to}"),
                    std::io::ErrorKind::ConnectionRefused.into(),
                ));
            }
            Ok(Err(betanet_net::NetError::Timeout { .. })) => {
                return Err(MixError::io(
                    format!("HTX connect {to}"),
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            Ok(Err(e)) => {
                return Err(MixError::FirstHop {
                    addr: to,
                    reason: format!("HTX handshake failed: {e}"),
                });
            }
            Ok(Ok(c)) => c,
        };
        let stream = conn.open_stream().map_err(|e| MixError::FirstHop {
            addr: to,
            reason: format!("HTX stream: {e}"),
        })?;
        self.inner
            .counters
            .htx_links
            .fetch_add(1, Ordering::Relaxed);
        Ok(FirstHopConn::Htx(Box::new(HtxLink { conn, stream })))
    }

    /// Sends `payload` over circuit `id` with a fresh reply block; waits up to `wait` (default
    /// from the config) for the exit handler's response. Returns `(sent, response)`; `sent`
    /// is `false` when the first hop was unreachable. Fails with [`MixError::FirstHop`] when
    /// the first hop cannot be used with the configured [`FirstHop`] mode.
    pub async fn send_packet(
        &self,
        id: &str,
        payload: &[u8],
        wait: Option<Duration>,
    ) -> Result<(bool, Option<Vec<u8>>), MixError> {
        let circuit = lock(&self.inner.circuits)
            .get(id)
            .cloned()
            .ok_or(MixError::UnknownSurb)?;
        let back: Vec<RouteHop> = circuit
            .hops
            .iter()
            .rev()
            .map(MixNodeInfo::route_hop)
            .collect();
        let (tx, mut rx) = mpsc::channel(1);
        let surb = self.make_surb(&back, tx)?;
        let msg = app::request(Some(&surb), payload);
        if let Err(e) = self.send_message(&circuit.hops, &msg).await {
            drop(rx);
            self.forget_abandoned();
            // A first hop this client cannot use as configured is an error; an unreachable
            // one is `(false, None)`.
            if matches!(e, MixError::FirstHop { .. }) {
                return Err(e);
            }
            return Ok((false, None));
        }
        if let Some(c) = lock(&self.inner.circuits).get_mut(id) {
            c.packets_sent += 1;
            c.bytes_sent += payload.len() as u64;
        }
        let wait = wait.unwrap_or(self.inner.cfg.default_timeout);
        match timeout(wait, rx.recv()).await {
            Ok(Some(m)) if m.first() == Some(&kind::RESPONSE) => {
                Ok((true, Some(m.get(1..).unwrap_or_default().to_vec())))
            }
            Ok(_) => Ok((true, None)),
            Err(_) => {
                self.inner.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                drop(rx);
                self.forget_abandoned();
                Ok((true, None))
            }
        }
    }

    /// A random route of `n` hops ending at `last` (lottery with a fresh nonce).
    fn route_to(&self, last: &MixNodeInfo, n: usize) -> Result<Vec<MixNodeInfo>, MixError> {
        let nodes: Vec<MixNodeInfo> = lock(&self.inner.nodes)
            .iter()
            .filter(|x| x.id != last.id)
            .copied()
            .collect();
        let mut nonce = [0u8; 32];
        lock(&self.inner.rng).fill_bytes(&mut nonce);
        let ends = Endpoints {
            src: self.inner.client_id,
            dst: last.id,
            src_as: None,
            dst_as: None,
        };
        let idx = select::lottery(&nonce, &nodes, n.saturating_sub(1), &ends)?;
        let mut r: Vec<MixNodeInfo> = idx.iter().filter_map(|&i| nodes.get(i).copied()).collect();
        r.push(*last);
        Ok(r)
    }

    /// A random reply route of `n` hops (its last hop hands the reply to this client).
    fn reply_route(&self, n: usize) -> Result<Vec<RouteHop>, MixError> {
        let nodes = lock(&self.inner.nodes).clone();
        let mut nonce = [0u8; 32];
        lock(&self.inner.rng).fill_bytes(&mut nonce);
        let ends = Endpoints {
            src: self.inner.client_id,
            dst: self.inner.client_id,
            src_as: None,
            dst_as: None,
        };
        let idx = select::lottery(&nonce, &nodes, n, &ends)?;
        Ok(idx
            .iter()
            .filter_map(|&i| nodes.get(i).map(MixNodeInfo::route_hop))
            .collect())
    }

    /// Connects to the hidden service `url` (`betanet://<id>`) described by `descriptor`
    /// (verified here against the id and `now`): picks a rendezvous point, registers a reply
    /// block there, asks an introduction point to introduce it, and waits for the service to
    /// join the rendezvous. The descriptor's introduction points are tried in turn from a
    /// random one (each gets an equal share of `wait`), so one intro point that is down or has
    /// run out of the service's reply blocks does not make the service unreachable.
    pub async fn connect_service(
        &self,
        url: &str,
        descriptor: &[u8],
        now: u64,
        wait: Duration,
    ) -> Result<HsSession, MixError> {
        let sid = parse_service_url(url)?;
        let desc = UncheckedServiceDescriptor::decode(descriptor)?.verify(&sid, now)?;
        let n = desc.intro_points.len();
        if n == 0 {
            return Err(MixError::BadDescriptor("no introduction points"));
        }
        let start = (lock(&self.inner.rng).next_u32() as usize) % n;
        let deadline = tokio::time::Instant::now() + wait;
        let mut last = MixError::BadDescriptor("no introduction points");
        for k in 0..n {
            let Some(ip) = desc.intro_points.get((start + k) % n) else {
                continue;
            };
            let intro = MixNodeInfo {
                id: ip.node_id,
                addr: ip.addr,
                key: ip.key,
                key_epoch: ip.key_epoch,
                as_group: None,
                weight: 1,
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let share = left / u32::try_from(n - k).unwrap_or(1).max(1);
            match self.connect_via(&sid, &desc, &intro, share).await {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!(error = %e, attempt = k + 1, of = n, "introduction failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// One introduction attempt through `intro`.
    async fn connect_via(
        &self,
        sid: &[u8; 32],
        desc: &ServiceDescriptor,
        intro: &MixNodeInfo,
        wait: Duration,
    ) -> Result<HsSession, MixError> {
        let sid = *sid;
        let rv = {
            let nodes = lock(&self.inner.nodes).clone();
            let cands: Vec<MixNodeInfo> = nodes.into_iter().filter(|n| n.id != intro.id).collect();
            let mut nonce = [0u8; 32];
            lock(&self.inner.rng).fill_bytes(&mut nonce);
            let ends = Endpoints {
                src: self.inner.client_id,
                dst: sid,
                src_as: None,
                dst_as: None,
            };
            let i = select::lottery(&nonce, &cands, 1, &ends)?;
            i.first()
                .and_then(|&i| cands.get(i).copied())
                .ok_or(MixError::NotEnoughNodes { need: 1, have: 0 })?
        };
        let mut cookie = [0u8; COOKIE_LEN];
        let eph = {
            let mut rng = lock(&self.inner.rng);
            rng.fill_bytes(&mut cookie);
            MixSecretKey::generate(&mut *rng)?
        };
        let shared = eph.dh(&desc.service_x25519.0)?;
        let keys = HsKeys::derive(&shared, &eph.public().0, &desc.service_x25519.0);
        let mut intro_pt = app::encode_node(&rv).to_vec();
        intro_pt.extend_from_slice(&cookie);
        let mut sealed = eph.public().0.to_vec();
        sealed.extend_from_slice(&mixcrypto::seal(&keys.intro, 0, &intro_pt)?);
        let (tx, rx) = mpsc::channel(HS_CLIENT_INBOX);
        let surb = self.make_surb(&self.reply_route(2)?, tx.clone())?;
        self.send_message(&self.route_to(&rv, 3)?, &app::establish_rv(&cookie, &surb))
            .await?;
        self.send_message(&self.route_to(intro, 3)?, &app::introduce(&sid, &sealed))
            .await?;
        let mut s = HsSession {
            client: self.clone(),
            rv,
            cookie,
            keys,
            send_ctr: 0,
            recv_win: CounterWindow::default(),
            budget: ReplyBudget {
                deposited: 1,
                received: 0,
            },
            next_msg: 1,
            reasm: Reassembler::new(),
            tx,
            rx,
        };
        // The service's first RV message (empty) confirms the join.
        s.recv(wait).await?;
        Ok(s)
    }
}

/// The answer of one directory node to a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// The directory node.
    pub node: MixNodeInfo,
    /// Its answer; `None` if the publication could not be sent or no answer came in time.
    pub status: Option<PublishStatus>,
}

impl MixClient {
    /// The known nodes responsible for `service_id` on directory day `day`
    /// ([`hsdir::responsible`], [`HSDIR_REPLICAS`] of them), nearest first.
    pub fn hsdirs(&self, service_id: &[u8; 32], day: u64) -> Vec<MixNodeInfo> {
        hsdir::responsible(&lock(&self.inner.nodes), service_id, day, HSDIR_REPLICAS)
    }

    fn hsdirs_for_days(&self, service_id: &[u8; 32], days: &[u64]) -> Vec<MixNodeInfo> {
        let mut out: Vec<MixNodeInfo> = Vec::new();
        for &d in days {
            for n in self.hsdirs(service_id, d) {
                if !out.iter().any(|o| o.id == n.id) {
                    out.push(n);
                }
            }
        }
        out
    }

    /// Publishes a signed service `descriptor` to the directory nodes responsible for its id
    /// today and tomorrow (UTC days of `now`), each over a 3-hop route ending at the directory
    /// (so the directory does not learn the publisher's address), and waits up to `wait` for
    /// their acknowledgements (which come back through reply blocks). Returns one
    /// [`PublishAck`] per directory node.
    pub async fn publish_descriptor(
        &self,
        descriptor: &[u8],
        now: u64,
        wait: Duration,
    ) -> Result<Vec<PublishAck>, MixError> {
        if descriptor.len() > hsdir::MAX_HSDIR_DESCRIPTOR {
            return Err(MixError::BadHsDir("descriptor too large for a directory"));
        }
        let sid = UncheckedServiceDescriptor::decode(descriptor)?.service_id();
        let day = hsdir::epoch_day(now);
        let dirs = self.hsdirs_for_days(&sid, &[day, day + 1]);
        if dirs.is_empty() {
            return Err(MixError::NotEnoughNodes { need: 1, have: 0 });
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut waiting = Vec::with_capacity(dirs.len());
        for d in &dirs {
            let (tx, rx) = mpsc::channel(1);
            let sent = async {
                let surb = self.make_surb(&self.reply_route(2)?, tx)?;
                self.send_message(
                    &self.route_to(d, 3)?,
                    &hsdir::publish(Some(&surb), descriptor),
                )
                .await
            }
            .await;
            if let Err(e) = &sent {
                tracing::debug!(error = %e, "descriptor publication not sent");
            }
            waiting.push((*d, sent.is_ok().then_some(rx)));
        }
        let mut acks = Vec::with_capacity(waiting.len());
        for (node, rx) in waiting {
            let mut status = None;
            if let Some(mut rx) = rx
                && let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await
                && let Ok(HsDirReply::Published {
                    status: st,
                    service_id,
                }) = HsDirReply::decode(&m)
                && service_id == sid
            {
                status = Some(st);
            }
            acks.push(PublishAck { node, status });
        }
        self.forget_abandoned();
        Ok(acks)
    }

    /// Looks up the descriptor of `url` (`betanet://<id>`) at the directory nodes responsible
    /// for its id today and yesterday, through the mixnet (each lookup carries a reply block;
    /// the directory learns the id asked for, not who asked). Returns the first answer that
    /// verifies (signature, id, validity at the current time). Fails with
    /// [`MixError::DescriptorNotFound`] when the directories that answered hold none, and
    /// [`MixError::LookupTimeout`] when none answered within `wait`.
    pub async fn lookup_descriptor(&self, url: &str, wait: Duration) -> Result<Vec<u8>, MixError> {
        let sid = parse_service_url(url)?;
        let now = unix_now();
        let day = hsdir::epoch_day(now);
        let dirs = self.hsdirs_for_days(&sid, &[day, day.saturating_sub(1)]);
        if dirs.is_empty() {
            return Err(MixError::NotEnoughNodes { need: 1, have: 0 });
        }
        let deadline = tokio::time::Instant::now() + wait;
        let (tx, mut rx) = mpsc::channel(dirs.len());
        let mut asked = 0usize;
        for d in &dirs {
            let sent = async {
                let surb = self.make_surb(&self.reply_route(2)?, tx.clone())?;
                self.send_message(&self.route_to(d, 3)?, &hsdir::lookup(&sid, &surb))
                    .await
            }
            .await;
            match sent {
                Ok(()) => asked += 1,
                Err(e) => tracing::debug!(error = %e, "descriptor lookup not sent"),
            }
        }
        drop(tx);
        let mut answered = 0usize;
        let result = loop {
            if answered >= asked {
                break Err(MixError::DescriptorNotFound { asked });
            }
            let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break Err(if answered == 0 {
                    MixError::LookupTimeout { asked, answered }
                } else {
                    MixError::DescriptorNotFound { asked }
                });
            };
            let Ok(HsDirReply::Result {
                service_id,
                descriptor,
            }) = HsDirReply::decode(&m)
            else {
                continue;
            };
            if service_id != sid {
                continue;
            }
            answered += 1;
            if let Some(d) = descriptor {
                match UncheckedServiceDescriptor::decode(&d).and_then(|u| u.verify(&sid, now)) {
                    Ok(_) => break Ok(d),
                    Err(e) => tracing::debug!(error = %e, "directory answered a bad descriptor"),
                }
            }
        };
        drop(rx);
        self.forget_abandoned();
        result
    }

    /// [`MixClient::lookup_descriptor`] then [`MixClient::connect_service`]: reaches a hidden
    /// service knowing only its `betanet://` id (`wait` bounds each step).
    pub async fn connect_service_by_id(
        &self,
        url: &str,
        now: u64,
        wait: Duration,
    ) -> Result<HsSession, MixError> {
        let d = self.lookup_descriptor(url, wait).await?;
        self.connect_service(url, &d, now, wait).await
    }
}

/// A client's connection to a hidden service through a rendezvous point; data is sealed end to
/// end (ChaCha20-Poly1305, keys from X25519 with the service's descriptor key).
pub struct HsSession {
    client: MixClient,
    rv: MixNodeInfo,
    cookie: [u8; COOKIE_LEN],
    keys: HsKeys,
    send_ctr: u64,
    recv_win: CounterWindow,
    budget: ReplyBudget,
    next_msg: u32,
    reasm: Reassembler,
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl std::fmt::Debug for HsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsSession")
            .field("rendezvous", &self.rv.addr)
            .finish_non_exhaustive()
    }
}

/// Opens a sealed message and accepts its counter once (any order within the window), so a
/// replay by the rendezvous point is dropped.
fn open_once(key: &[u8; 32], win: &mut CounterWindow, sealed: &[u8]) -> Result<Vec<u8>, MixError> {
    let (ctr, pt) = mixcrypto::open(key, sealed)?;
    win.check(ctr)?;
    Ok(pt)
}

impl MixClient {
    /// Deposits `n` reply blocks for `side` at rendezvous `rv` (two per `RV_SEND` packet);
    /// replies through them go to `inbox`.
    async fn deposit_surbs(
        &self,
        cookie: &[u8; COOKIE_LEN],
        side: Side,
        rv: &MixNodeInfo,
        n: u64,
        inbox: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), MixError> {
        let mut left = n;
        while left > 0 {
            let k = left.min(app::MAX_SURBS_PER_SEND as u64);
            let mut surbs = Vec::with_capacity(2);
            for _ in 0..k {
                surbs.push(self.make_surb(&self.reply_route(2)?, inbox.clone())?);
            }
            let msg = app::rv_send(cookie, side, &surbs, &[]);
            self.send_message(&self.route_to(rv, 3)?, &msg).await?;
            left -= k;
        }
        Ok(())
    }

    /// Seals `chunk` with `key` and counter `ctr` and relays it to the other side of `rv`.
    async fn send_chunk(
        &self,
        cookie: &[u8; COOKIE_LEN],
        side: Side,
        rv: &MixNodeInfo,
        key: &[u8; 32],
        ctr: u64,
        chunk: &[u8],
    ) -> Result<(), MixError> {
        let sealed = mixcrypto::seal(key, ctr, chunk)?;
        let msg = app::rv_send(cookie, side, &[], &sealed);
        self.send_message(&self.route_to(rv, 3)?, &msg).await
    }
}

impl HsSession {
    async fn recv(&mut self, wait: Duration) -> Result<Vec<u8>, MixError> {
        loop {
            let m = timeout(wait, self.rx.recv())
                .await
                .map_err(|_| MixError::io("hidden service", std::io::ErrorKind::TimedOut.into()))?
                .ok_or(MixError::UnknownSurb)?;
            if m.first() == Some(&kind::RV_FORWARD)
                && m.get(1..1 + COOKIE_LEN) == Some(&self.cookie[..])
            {
                self.budget.received += 1;
                let sealed = m.get(1 + COOKIE_LEN..).unwrap_or_default();
                match open_once(&self.keys.s2c, &mut self.recv_win, sealed) {
                    Ok(pt) => return Ok(pt),
                    Err(e) => tracing::debug!(error = %e, "rendezvous message rejected"),
                }
            }
        }
    }

    /// Sends `data` to the service and waits for its answer.
    pub async fn request(&mut self, data: &[u8], wait: Duration) -> Result<Vec<u8>, MixError> {
        let surb = self
            .client
            .make_surb(&self.client.reply_route(2)?, self.tx.clone())?;
        self.send_ctr += 1;
        let sealed = mixcrypto::seal(&self.keys.c2s, self.send_ctr, data)?;
        let msg = app::rv_data(&self.cookie, Side::Client, &surb, &sealed);
        self.budget.deposited += 1;
        self.client
            .send_message(&self.client.route_to(&self.rv, 3)?, &msg)
            .await?;
        self.recv(wait).await
    }

    /// The rendezvous point of this session.
    pub fn rendezvous(&self) -> &MixNodeInfo {
        &self.rv
    }

    /// Reply blocks deposited and messages received so far.
    pub fn reply_budget(&self) -> ReplyBudget {
        self.budget
    }

    /// Tops up this side's reply blocks at the rendezvous for `expected` more messages.
    async fn top_up(&mut self, expected: u64) -> Result<(), MixError> {
        let n = self.budget.top_up(expected, HS_CLIENT_WINDOW);
        if n >= 2 || (n == 1 && self.budget.outstanding() == 0) {
            self.client
                .deposit_surbs(&self.cookie, Side::Client, &self.rv, n, &self.tx)
                .await?;
            self.budget.deposited += n;
        }
        Ok(())
    }

    /// Sends `request` (up to [`hs_stream::MAX_MESSAGE`] bytes, chunked) to the service and
    /// returns its response, reassembled from chunks arriving in any order. The client keeps
    /// up to [`HS_CLIENT_WINDOW`] reply blocks ahead at the rendezvous, so the service sends
    /// without waiting per chunk. Fails with [`MixError::StreamTimeout`] (naming the chunks
    /// received) if the whole response is not there within `wait`.
    pub async fn fetch(&mut self, request: &[u8], wait: Duration) -> Result<Vec<u8>, MixError> {
        let deadline = tokio::time::Instant::now() + wait;
        let id = self.next_msg;
        self.next_msg = self.next_msg.wrapping_add(1);
        let chunks = hs_stream::split_message(id, request)?;
        self.top_up(HS_CLIENT_INITIAL_SURBS).await?;
        for c in &chunks {
            self.send_ctr += 1;
            self.client
                .send_chunk(
                    &self.cookie,
                    Side::Client,
                    &self.rv,
                    &self.keys.c2s,
                    self.send_ctr,
                    c,
                )
                .await?;
        }
        loop {
            let Ok(m) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                let (have, total) = self.reasm.progress(id).unwrap_or((0, 0));
                self.reasm.forget(id);
                self.client
                    .inner
                    .counters
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
                return Err(MixError::StreamTimeout { have, total });
            };
            let m = m.ok_or(MixError::UnknownSurb)?;
            if m.first() != Some(&kind::RV_FORWARD)
                || m.get(1..1 + COOKIE_LEN) != Some(&self.cookie[..])
            {
                continue;
            }
            self.budget.received += 1;
            let sealed = m.get(1 + COOKIE_LEN..).unwrap_or_default();
            let chunk = match open_once(&self.keys.s2c, &mut self.recv_win, sealed)
                .and_then(|pt| Chunk::decode(&pt))
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "rendezvous chunk rejected");
                    continue;
                }
            };
            if chunk.msg_id != id {
                continue; // a late chunk of an earlier, abandoned exchange
            }
            match self.reasm.push(chunk) {
                Ok(Some((_, msg))) => return Ok(msg),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "rendezvous chunk ignored"),
            }
            let (have, total) = self.reasm.progress(id).unwrap_or((0, 0));
            self.top_up((total - have) as u64).await?;
        }
    }
}

/// A hidden service: an Ed25519 key, introduction points holding its reply blocks, and
/// rendezvous joins with clients. Its location is never revealed: every message to it travels
/// through one of its own reply blocks.
pub struct HiddenService {
    client: MixClient,
    key: SigningKey,
    x25519: MixSecretKey,
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
    rendezvous: HashMap<[u8; COOKIE_LEN], ServiceSession>,
    /// Registered introduction points and how many reply blocks each was given.
    intros: Vec<(MixNodeInfo, usize)>,
    introductions: usize,
    intro_refresh: Duration,
}

impl std::fmt::Debug for HiddenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiddenService")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

struct ServiceSession {
    rv: MixNodeInfo,
    keys: HsKeys,
    send_ctr: u64,
    recv_win: CounterWindow,
}

/// What response tasks of [`HiddenService::serve`] share with the loop for one session.
struct StreamShared {
    rv: MixNodeInfo,
    cookie: [u8; COOKIE_LEN],
    keys: HsKeys,
    send_ctr: AtomicU64,
}

/// Receive-side state of one session in [`HiddenService::serve`].
struct StreamSession {
    shared: Arc<StreamShared>,
    recv_win: CounterWindow,
    reasm: Reassembler,
    budget: ReplyBudget,
}

impl HiddenService {
    /// A service using `client` (its directory and reply listener) and `key`. Its X25519 key
    /// is derived from the Ed25519 seed (HKDF-SHA256), so it is stable across restarts.
    pub fn new(client: MixClient, key: SigningKey) -> Result<Self, MixError> {
        let (tx, rx) = mpsc::channel(HS_SERVICE_INBOX);
        let mut xs = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"betanet-mix/v1 hs x25519"), key.as_bytes())
            .expand(b"x25519", xs.as_mut())
            .map_err(|_| MixError::Crypto)?;
        let x25519 = MixSecretKey::from_bytes(&xs)?;
        Ok(HiddenService {
            client,
            key,
            x25519,
            tx,
            rx,
            rendezvous: HashMap::new(),
            intros: Vec::new(),
            introductions: 0,
            intro_refresh: HS_INTRO_REFRESH,
        })
    }

    /// [`HiddenService::new`] with the Ed25519 key given by its 32-byte seed.
    pub fn from_seed(client: MixClient, seed: &[u8; 32]) -> Result<Self, MixError> {
        HiddenService::new(client, SigningKey::from_bytes(seed))
    }

    /// The service's X25519 public key (published in the descriptor).
    pub fn x25519_public(&self) -> MixPublicKey {
        self.x25519.public()
    }

    /// `betanet://<hex SHA-256(pub)>`.
    pub fn url(&self) -> String {
        service_url(&self.key.verifying_key().to_bytes())
    }

    /// Leaves `surbs` reply blocks at introduction point `intro` (each in its own packet).
    /// Every introduction later received through the intro points is replaced by one fresh
    /// reply block (round robin over the registered intro points).
    pub async fn register_intro(
        &mut self,
        intro: &MixNodeInfo,
        surbs: usize,
    ) -> Result<(), MixError> {
        match self.intros.iter_mut().find(|(i, _)| i.id == intro.id) {
            Some(e) => e.1 = surbs.max(e.1),
            None => self.intros.push((*intro, surbs)),
        }
        self.send_intro_surbs(intro, surbs).await
    }

    /// How often [`HiddenService::serve`] re-deposits each intro point's reply blocks
    /// (default [`HS_INTRO_REFRESH`]; at least 100 ms).
    pub fn set_intro_refresh(&mut self, every: Duration) {
        self.intro_refresh = every.max(Duration::from_millis(100));
    }

    /// Re-deposits at every registered intro point as many reply blocks as it was given
    /// (the intro point keeps at most 32 per service and hands out the newest first).
    async fn refresh_intros(&self) {
        for (ip, n) in self.intros.clone() {
            if let Err(e) = self.send_intro_surbs(&ip, n).await {
                tracing::warn!(error = %e, intro = %hex::encode(&ip.id[..8]), "intro point refresh failed");
            }
        }
    }

    async fn send_intro_surbs(&self, intro: &MixNodeInfo, surbs: usize) -> Result<(), MixError> {
        for _ in 0..surbs {
            let surb = self
                .client
                .make_surb(&self.client.reply_route(2)?, self.tx.clone())?;
            let msg = app::establish_intro(&self.key, &intro.id, unix_now(), &surb);
            self.client
                .send_message(&self.client.route_to(intro, 3)?, &msg)
                .await?;
        }
        Ok(())
    }

    /// The signed descriptor listing `intros`, valid for `[from, until]` (unix seconds).
    pub fn descriptor(&self, intros: &[MixNodeInfo], from: u64, until: u64) -> Vec<u8> {
        let ips = intros
            .iter()
            .map(|n| IntroPoint {
                node_id: n.id,
                addr: n.addr,
                key_epoch: n.key_epoch,
                key: n.key,
            })
            .collect();
        ServiceDescriptor::sign(&self.key, self.x25519.public(), from, until, ips)
    }

    /// Publishes `descriptor` (from [`HiddenService::descriptor`]) to the responsible
    /// directory nodes ([`MixClient::publish_descriptor`]).
    pub async fn publish_descriptor(
        &self,
        descriptor: &[u8],
        now: u64,
        wait: Duration,
    ) -> Result<Vec<PublishAck>, MixError> {
        self.client.publish_descriptor(descriptor, now, wait).await
    }

    /// Handles the next message (introduction or client data), answering data with
    /// `handler`. Returns `false` on timeout.
    pub async fn serve_one(
        &mut self,
        handler: &(dyn Fn(&[u8]) -> Vec<u8> + Send + Sync),
        wait: Duration,
    ) -> Result<bool, MixError> {
        let Ok(Some(m)) = timeout(wait, self.rx.recv()).await else {
            return Ok(false);
        };
        match m.first().copied() {
            Some(kind::INTRO_FORWARD) => {
                let (cookie, rv, keys) = self.accept_intro(&m)?;
                if self.rendezvous.len() >= 4096 || self.rendezvous.contains_key(&cookie) {
                    return Err(MixError::Replay);
                }
                let mut sess = ServiceSession {
                    rv,
                    keys,
                    send_ctr: 0,
                    recv_win: CounterWindow::default(),
                };
                // The join message (empty, counter 0) proves to the client that the party at
                // the rendezvous holds the service key.
                let sealed = mixcrypto::seal(&sess.keys.s2c, sess.send_ctr, b"")?;
                sess.send_ctr += 1;
                self.send_rv(&cookie, &rv, &sealed).await?;
                self.rendezvous.insert(cookie, sess);
                self.replace_intro_surb().await?;
            }
            Some(kind::RV_FORWARD) => {
                let cookie: [u8; COOKIE_LEN] = m
                    .get(1..1 + COOKIE_LEN)
                    .and_then(|c| c.try_into().ok())
                    .ok_or(MixError::BadLength(m.len()))?;
                let sess = self
                    .rendezvous
                    .get_mut(&cookie)
                    .ok_or(MixError::UnknownSurb)?;
                let req = open_once(
                    &sess.keys.c2s,
                    &mut sess.recv_win,
                    m.get(1 + COOKIE_LEN..).unwrap_or_default(),
                )?;
                let resp = handler(&req);
                let sealed = mixcrypto::seal(&sess.keys.s2c, sess.send_ctr, &resp)?;
                sess.send_ctr += 1;
                let rv = sess.rv;
                self.send_rv(&cookie, &rv, &sealed).await?;
            }
            _ => return Err(MixError::UnknownCommand(m.first().copied().unwrap_or(0))),
        }
        Ok(true)
    }

    /// Opens an introduction: `(cookie, rendezvous point, session keys)`.
    fn accept_intro(&self, m: &[u8]) -> Result<([u8; COOKIE_LEN], MixNodeInfo, HsKeys), MixError> {
        let eph: [u8; 32] = m
            .get(1..33)
            .and_then(|c| c.try_into().ok())
            .ok_or(MixError::BadLength(m.len()))?;
        let shared = self.x25519.dh(&eph)?;
        let keys = HsKeys::derive(&shared, &eph, &self.x25519.public().0);
        let (_, pt) = mixcrypto::open(&keys.intro, m.get(33..).unwrap_or_default())?;
        let rv = app::decode_node(&pt)?;
        let cookie: [u8; COOKIE_LEN] = pt
            .get(app::NODE_REF_LEN..app::NODE_REF_LEN + COOKIE_LEN)
            .and_then(|c| c.try_into().ok())
            .ok_or(MixError::BadLength(pt.len()))?;
        Ok((cookie, rv, keys))
    }

    /// Replaces the intro reply block an introduction used up (round robin over intro points).
    async fn replace_intro_surb(&mut self) -> Result<(), MixError> {
        if let Some((ip, _)) = self
            .intros
            .get(self.introductions % self.intros.len().max(1))
        {
            let ip = *ip;
            self.send_intro_surbs(&ip, 1).await?;
        }
        self.introductions += 1;
        Ok(())
    }

    /// Serves sessions until the task is dropped or aborted: accepts introductions, joins
    /// their rendezvous points, reassembles chunked requests (up to
    /// [`hs_stream::MAX_MESSAGE`]) and answers each with `handler`, at most `max_concurrent`
    /// handlers at a time (and at most [`HS_MAX_QUEUED`] complete requests waiting), sessions
    /// served concurrently. Each response is chunked and sent
    /// without waiting per chunk (the client deposits the reply blocks). A response larger
    /// than [`hs_stream::MAX_MESSAGE`] is replaced by an empty one. Per-message failures
    /// (bad chunks, replays, unknown cookies) are logged at debug level and skipped.
    pub async fn serve<H, F>(mut self, handler: H, max_concurrent: usize)
    where
        H: Fn(Vec<u8>) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Vec<u8>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let permits = Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1)));
        let mut sessions: HashMap<[u8; COOKIE_LEN], StreamSession> = HashMap::new();
        let mut order: std::collections::VecDeque<[u8; COOKIE_LEN]> = Default::default();
        let mut buffered = 0usize;
        let mut tasks = tokio::task::JoinSet::new();
        let mut refresh = tokio::time::interval_at(
            tokio::time::Instant::now() + self.intro_refresh,
            self.intro_refresh,
        );
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let m = tokio::select! {
                m = self.rx.recv() => m,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                _ = refresh.tick() => {
                    self.refresh_intros().await;
                    continue;
                }
            };
            let Some(m) = m else { return };
            let r = match m.first().copied() {
                Some(kind::INTRO_FORWARD) => {
                    self.stream_join(&m, &mut sessions, &mut order, &mut buffered)
                        .await
                }
                Some(kind::RV_FORWARD) => {
                    match self.stream_data(&m, &mut sessions, &mut buffered).await {
                        Ok(Some(_)) if tasks.len() >= max_concurrent.max(1) + HS_MAX_QUEUED => {
                            Err(MixError::BadChunk("too many requests queued; dropped"))
                        }
                        Ok(Some((shared, id, req))) => {
                            let (h, permits, client) =
                                (handler.clone(), permits.clone(), self.client.clone());
                            tasks.spawn(async move {
                                let Ok(_permit) = permits.acquire_owned().await else {
                                    return;
                                };
                                let resp = h(req).await;
                                if let Err(e) = send_response(&client, &shared, id, &resp).await {
                                    tracing::debug!(error = %e, "hidden-service response failed");
                                }
                            });
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                other => Err(MixError::UnknownCommand(other.unwrap_or(0))),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "hidden-service message skipped");
            }
        }
    }

    async fn stream_join(
        &mut self,
        m: &[u8],
        sessions: &mut HashMap<[u8; COOKIE_LEN], StreamSession>,
        order: &mut std::collections::VecDeque<[u8; COOKIE_LEN]>,
        buffered: &mut usize,
    ) -> Result<(), MixError> {
        let (cookie, rv, keys) = self.accept_intro(m)?;
        if sessions.contains_key(&cookie) {
            return Err(MixError::Replay);
        }
        while sessions.len() >= HS_MAX_SESSIONS {
            let Some(old) = order.pop_front() else { break };
            if let Some(s) = sessions.remove(&old) {
                *buffered -= s.reasm.buffered();
            }
        }
        let sealed = mixcrypto::seal(&keys.s2c, 0, b"")?;
        self.send_rv(&cookie, &rv, &sealed).await?;
        self.client
            .deposit_surbs(
                &cookie,
                Side::Service,
                &rv,
                HS_SERVICE_INITIAL_SURBS,
                &self.tx,
            )
            .await?;
        sessions.insert(
            cookie,
            StreamSession {
                shared: Arc::new(StreamShared {
                    rv,
                    cookie,
                    keys,
                    send_ctr: AtomicU64::new(1),
                }),
                recv_win: CounterWindow::default(),
                reasm: Reassembler::new(),
                budget: ReplyBudget {
                    deposited: 1 + HS_SERVICE_INITIAL_SURBS,
                    received: 0,
                },
            },
        );
        order.push_back(cookie);
        self.replace_intro_surb().await
    }

    /// Handles one relayed chunk; returns a completed request.
    async fn stream_data(
        &mut self,
        m: &[u8],
        sessions: &mut HashMap<[u8; COOKIE_LEN], StreamSession>,
        buffered: &mut usize,
    ) -> Result<Option<(Arc<StreamShared>, u32, Vec<u8>)>, MixError> {
        let cookie: [u8; COOKIE_LEN] = m
            .get(1..1 + COOKIE_LEN)
            .and_then(|c| c.try_into().ok())
            .ok_or(MixError::BadLength(m.len()))?;
        let sess = sessions.get_mut(&cookie).ok_or(MixError::UnknownSurb)?;
        sess.budget.received += 1;
        let pt = open_once(
            &sess.shared.keys.c2s,
            &mut sess.recv_win,
            m.get(1 + COOKIE_LEN..).unwrap_or_default(),
        )?;
        let chunk = Chunk::decode(&pt)?;
        if *buffered + chunk.data.len() > HS_SERVICE_MAX_BUFFERED {
            return Err(MixError::BadChunk("service receive buffer full"));
        }
        let before = sess.reasm.buffered();
        let done = sess.reasm.push(chunk);
        *buffered = *buffered + sess.reasm.buffered() - before;
        let done = done?;
        // Keep reply blocks ahead for the chunks still expected (plus one for the next
        // request's first chunk).
        let expected = sess.reasm.outstanding() as u64 + 1;
        let n = sess.budget.top_up(expected, HS_SERVICE_WINDOW);
        if n >= 2 || (n == 1 && sess.budget.outstanding() == 0) {
            let shared = sess.shared.clone();
            sess.budget.deposited += n;
            self.client
                .deposit_surbs(&cookie, Side::Service, &shared.rv, n, &self.tx)
                .await?;
        }
        let Some(sess) = sessions.get(&cookie) else {
            return Ok(None);
        };
        Ok(done.map(|(id, req)| (sess.shared.clone(), id, req)))
    }

    async fn send_rv(
        &self,
        cookie: &[u8; 16],
        rv: &MixNodeInfo,
        data: &[u8],
    ) -> Result<(), MixError> {
        let surb = self
            .client
            .make_surb(&self.client.reply_route(2)?, self.tx.clone())?;
        let msg = app::rv_data(cookie, Side::Service, &surb, data);
        self.client
            .send_message(&self.client.route_to(rv, 3)?, &msg)
            .await
    }
}

/// Sends `resp` as chunks of message `id` to the client of `shared` (one packet per chunk, no
/// waiting: the client deposited the reply blocks at the rendezvous).
async fn send_response(
    client: &MixClient,
    shared: &StreamShared,
    id: u32,
    resp: &[u8],
) -> Result<(), MixError> {
    let chunks = match hs_stream::split_message(id, resp) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "hidden-service response too large; sending an empty one");
            hs_stream::split_message(id, b"")?
        }
    };
    for c in &chunks {
        let ctr = shared.send_ctr.fetch_add(1, Ordering::Relaxed);
        client
            .send_chunk(
                &shared.cookie,
                Side::Service,
                &shared.rv,
                &shared.keys.s2c,
                ctr,
                c,
            )
            .await?;
    }
    Ok(())
}

//! The mixnode: a thin tokio driver around the sans-IO packet core.
//!
//! ```text
//! TCP ingress (4-byte BE length | packet) ─┐
//! HTX ingress (same framing per stream)   ─┴► bounded queue per worker (round robin)
//!   ──► worker threads: batches of up to `batch_size` packets: X25519 + unwrap, then one
//!       replay-filter lock per batch (tags logged + flushed before anything is forwarded)
//!   ──► bounded channel ──► delay scheduler (binary heap, deadline = arrival + U[30,150] ms)
//!   ──► one pooled link per next hop (bounded queue; HTX pinned to the peer's Ed25519
//!       identity from `[[peers]]`, or plain length-prefixed TCP) / exit handler
//! ```
//!
//! The length-prefixed TCP ingress is the seed's simple-client interface; node-to-node traffic
//! goes over HTX (`tcp12`) when the next hop is a configured peer.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::OsRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use ed25519_dalek::SigningKey;

use crate::crypto::MixPublicKey;
use crate::delay::DelayDist;
use crate::descriptor;
use crate::error::MixError;
use crate::keys::KeyRing;
use crate::packet::{self, NodeAddr, Processed, ReplayTag, RouteHop};
use crate::replay::{PersistentReplayFilter, ReplayConfig};
use crate::select::MixNodeInfo;

/// Largest frame accepted by [`read_frame`].
pub const MAX_FRAME: usize = 4096;

/// Control frame (1 byte) asking a node for its signed descriptor; the node answers on the same
/// connection with one frame holding the descriptor ([`descriptor::UncheckedMixDescriptor`]).
pub const CTRL_DESCRIBE: u8 = 0x01;

/// Mixnode configuration.
#[derive(Clone, Debug)]
pub struct MixnodeConfig {
    /// TCP listen address for the length-prefixed ingress.
    pub listen: SocketAddr,
    /// Directory for the key ring and the replay filter.
    pub state_dir: PathBuf,
    /// Key epoch for a freshly created key.
    pub initial_epoch: u32,
    /// Worker threads (X25519 + unwrap).
    pub workers: usize,
    /// Packets per batch.
    pub batch_size: usize,
    /// Total ingress queue depth (split over the workers).
    pub queue_depth: usize,
    /// Mixing delay.
    pub delay: DelayDist,
    /// Replay filter sizing.
    pub replay: ReplayConfig,
    /// fsync the replay log after every batch (survives power loss; slower).
    pub sync_replay_log: bool,
    /// Maximum packets held in the delay queue.
    pub max_delayed: usize,
    /// Per-next-hop egress queue depth.
    pub egress_queue: usize,
    /// Connect timeout towards next hops (SPEC: buffer nothing longer than 2 s).
    pub connect_timeout: Duration,
    /// Optional Prometheus `/metrics` listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Automatic key rotation interval.
    pub key_rotation: Option<Duration>,
    /// Seed for the workers' delay RNGs (tests only; `None` = OS entropy).
    pub rng_seed: Option<u64>,
    /// Maximum concurrent ingress connections; further ones are closed at once.
    pub max_connections: usize,
    /// Optional HTX (tcp12) ingress, authenticated with the node's Ed25519 identity (the key
    /// of its descriptor). Each HTX stream carries the same length-prefixed framing.
    pub htx_listen: Option<SocketAddr>,
    /// Known next hops: how to reach each (HTX with a pinned identity, or plain TCP).
    pub peers: Vec<PeerConfig>,
    /// What to do with packets for a next hop that is not in [`MixnodeConfig::peers`].
    pub unknown_peers: UnknownPeers,
    /// Exit role: answer `REQUEST`s by echoing their data (diagnostics and tests).
    pub exit_echo: bool,
    /// Which ingress address the descriptor and route hops carry.
    pub advertise: Advertise,
}

/// The address a node publishes (in its descriptor) for others to route to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advertise {
    /// The length-prefixed TCP ingress (default; what simple clients dial).
    Tcp,
    /// The HTX ingress (requires `htx_listen`): node-to-node directories, where the
    /// descriptor's Ed25519 key is also the HTX identity to pin.
    Htx,
}

/// How a node reaches one next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTransport {
    /// Plain length-prefixed TCP (the seed's simple-client interface; unauthenticated).
    Tcp,
    /// An HTX connection (betanet-net `tcp12` or `tcp11`) authenticated as the peer's Ed25519
    /// identity; the packets ride on one stream with the same length-prefixed framing.
    Htx(betanet_net::Transport),
}

/// A configured next hop.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The address packets name as next hop (the peer's HTX or TCP ingress).
    pub addr: SocketAddr,
    /// The peer's Ed25519 identity (the key of its descriptor); required for HTX.
    pub public_key: Option<betanet_crypto::sign::VerifyingKey>,
    /// The carriage.
    pub transport: PeerTransport,
}

impl PeerConfig {
    /// A next hop from a signed mixnode descriptor: the signature is verified, the descriptor's
    /// address becomes the peer address and its Ed25519 key the pinned HTX identity (so the
    /// publishing node should advertise its HTX ingress). Returns the directory entry too.
    pub fn from_descriptor(
        bytes: &[u8],
        transport: betanet_net::Transport,
    ) -> Result<(PeerConfig, MixNodeInfo), MixError> {
        let d = descriptor::UncheckedMixDescriptor::decode(bytes)?;
        let info = d.verify()?;
        let vk = betanet_crypto::sign::VerifyingKey::from_bytes(&d.identity())
            .map_err(|_| MixError::BadDescriptor("bad identity key"))?;
        Ok((
            PeerConfig {
                addr: info.addr.0,
                public_key: Some(vk),
                transport: PeerTransport::Htx(transport),
            },
            info,
        ))
    }
}

/// Policy for next hops missing from the peer list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownPeers {
    /// Plain length-prefixed TCP (default: reply blocks end at simple clients).
    Tcp,
    /// Drop and count (`dropped_unknown_peer`): only configured peers are reachable.
    Drop,
}

impl MixnodeConfig {
    /// Defaults (2 workers, batches of 128, U(30 ms, 150 ms), 2 s connect timeout) for a listen
    /// address and state directory.
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        MixnodeConfig {
            listen,
            state_dir,
            initial_epoch: 1,
            workers: 2,
            batch_size: 128,
            queue_depth: 8192,
            delay: DelayDist::default(),
            replay: ReplayConfig::default(),
            sync_replay_log: false,
            max_delayed: 65_536,
            egress_queue: 4096,
            connect_timeout: Duration::from_secs(2),
            metrics_listen: None,
            key_rotation: None,
            rng_seed: None,
            max_connections: 4096,
            htx_listen: None,
            peers: Vec::new(),
            unknown_peers: UnknownPeers::Tcp,
            exit_echo: false,
            advertise: Advertise::Tcp,
        }
    }
}

/// The TOML form of [`MixnodeConfig`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: SocketAddr,
    state_dir: PathBuf,
    workers: Option<usize>,
    batch_size: Option<usize>,
    queue_depth: Option<usize>,
    delay: Option<String>,
    delay_min_ms: Option<u64>,
    delay_max_ms: Option<u64>,
    delay_mean_ms: Option<u64>,
    delay_cap_ms: Option<u64>,
    replay_capacity: Option<u64>,
    replay_fp_rate: Option<f64>,
    sync_replay_log: Option<bool>,
    metrics_listen: Option<SocketAddr>,
    key_rotation_secs: Option<u64>,
    initial_epoch: Option<u32>,
    max_delayed: Option<usize>,
    egress_queue: Option<usize>,
    max_connections: Option<usize>,
    htx_listen: Option<SocketAddr>,
    unknown_peers: Option<String>,
    exit_echo: Option<bool>,
    advertise: Option<String>,
    #[serde(default)]
    peers: Vec<FilePeer>,
}

/// `[[peers]]` in the TOML configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePeer {
    addr: SocketAddr,
    public_key: Option<String>,
    transport: Option<String>,
}

impl FilePeer {
    fn parse(self) -> Result<PeerConfig, MixError> {
        let transport = match self.transport.as_deref().unwrap_or("tcp12") {
            "tcp" => PeerTransport::Tcp,
            "tcp12" => PeerTransport::Htx(betanet_net::Transport::Tcp12),
            "tcp11" => PeerTransport::Htx(betanet_net::Transport::Tcp11),
            _ => return Err(MixError::ConfigValue("peers.transport")),
        };
        let public_key = match self.public_key {
            Some(h) => {
                let b: [u8; 32] = hex::decode(h.trim())
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or(MixError::ConfigValue("peers.public_key"))?;
                Some(
                    betanet_crypto::sign::VerifyingKey::from_bytes(&b)
                        .map_err(|_| MixError::ConfigValue("peers.public_key"))?,
                )
            }
            None => None,
        };
        if matches!(transport, PeerTransport::Htx(_)) && public_key.is_none() {
            return Err(MixError::ConfigValue("peers.public_key"));
        }
        Ok(PeerConfig {
            addr: self.addr,
            public_key,
            transport,
        })
    }
}

impl MixnodeConfig {
    /// Parses the TOML configuration of `betanet mixnode --config FILE` (all keys but `listen`
    /// and `state_dir` optional; unknown keys are rejected):
    ///
    /// ```toml
    /// listen = "0.0.0.0:9001"
    /// state_dir = "/var/lib/betanet/mix"
    /// workers = 2
    /// batch_size = 128
    /// queue_depth = 8192
    /// delay = "uniform"          # or "poisson" (exponential, capped)
    /// delay_min_ms = 30
    /// delay_max_ms = 150
    /// delay_mean_ms = 90         # poisson only
    /// delay_cap_ms = 600         # poisson only
    /// replay_capacity = 4000000
    /// replay_fp_rate = 1e-6
    /// sync_replay_log = false
    /// metrics_listen = "127.0.0.1:9101"
    /// key_rotation_secs = 86400
    /// initial_epoch = 1
    /// max_connections = 4096
    /// max_delayed = 65536
    /// egress_queue = 4096
    /// htx_listen = "0.0.0.0:9443"  # HTX (tcp12) ingress, keyed by the node identity
    /// unknown_peers = "tcp"        # next hops not listed below: "tcp" (plain) or "drop"
    /// exit_echo = false            # exit answers REQUESTs with their own data
    /// advertise = "tcp"            # address in the descriptor: "tcp" or "htx"
    ///
    /// [[peers]]                    # one per known next hop
    /// addr = "192.0.2.7:9443"      # the address packets name (its htx_listen)
    /// public_key = "<64 hex>"      # its Ed25519 identity (descriptor key)
    /// transport = "tcp12"          # "tcp12" (default), "tcp11" or "tcp" (plain, no key)
    /// ```
    pub fn from_toml_str(s: &str) -> Result<Self, MixError> {
        let f: FileConfig = toml::from_str(s).map_err(MixError::Config)?;
        let mut c = MixnodeConfig::new(f.listen, f.state_dir);
        let ms = Duration::from_millis;
        c.delay = match f.delay.as_deref().unwrap_or("uniform") {
            "uniform" => DelayDist::uniform(
                ms(f.delay_min_ms.unwrap_or(30)),
                ms(f.delay_max_ms.unwrap_or(150)),
            )?,
            "poisson" => DelayDist::exponential(
                ms(f.delay_mean_ms.unwrap_or(90)),
                ms(f.delay_cap_ms.unwrap_or(600)),
            )?,
            _ => return Err(MixError::ConfigValue("delay")),
        };
        if let Some(w) = f.workers {
            if w == 0 || w > 256 {
                return Err(MixError::ConfigValue("workers"));
            }
            c.workers = w;
        }
        if let Some(b) = f.batch_size {
            if b == 0 || b > 4096 {
                return Err(MixError::ConfigValue("batch_size"));
            }
            c.batch_size = b;
        }
        if let Some(q) = f.queue_depth {
            c.queue_depth = q.max(16);
        }
        if let Some(v) = f.replay_capacity {
            c.replay.capacity = v.max(1);
        }
        if let Some(v) = f.replay_fp_rate {
            if !(v > 0.0 && v < 0.5) {
                return Err(MixError::ConfigValue("replay_fp_rate"));
            }
            c.replay.fp_rate = v;
        }
        c.sync_replay_log = f.sync_replay_log.unwrap_or(false);
        c.metrics_listen = f.metrics_listen;
        c.key_rotation = f.key_rotation_secs.map(Duration::from_secs);
        if let Some(v) = f.max_connections {
            c.max_connections = v.max(1);
        }
        if let Some(e) = f.initial_epoch {
            c.initial_epoch = e;
        }
        if let Some(v) = f.max_delayed {
            c.max_delayed = v.max(16);
        }
        if let Some(v) = f.egress_queue {
            c.egress_queue = v.max(16);
        }
        c.htx_listen = f.htx_listen;
        c.unknown_peers = match f.unknown_peers.as_deref().unwrap_or("tcp") {
            "tcp" => UnknownPeers::Tcp,
            "drop" => UnknownPeers::Drop,
            _ => return Err(MixError::ConfigValue("unknown_peers")),
        };
        c.exit_echo = f.exit_echo.unwrap_or(false);
        c.advertise = match f.advertise.as_deref().unwrap_or("tcp") {
            "tcp" => Advertise::Tcp,
            "htx" if c.htx_listen.is_some() => Advertise::Htx,
            _ => return Err(MixError::ConfigValue("advertise")),
        };
        c.peers = f
            .peers
            .into_iter()
            .map(FilePeer::parse)
            .collect::<Result<_, _>>()?;
        Ok(c)
    }
}

/// A message delivered at this node acting as exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The sender-chosen destination tag.
    pub dest: [u8; 32],
    /// The message.
    pub message: Vec<u8>,
}

macro_rules! metrics {
    ($($name:ident => $help:literal),* $(,)?) => {
        /// Node counters, exported in the Prometheus text format by [`Metrics::render`].
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( #[doc = $help] pub $name: AtomicU64, )*
        }
        impl Metrics {
            /// Prometheus text exposition.
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(
                    s.push_str(concat!("# HELP betanet_mix_", stringify!($name), " ", $help, "\n"));
                    s.push_str(concat!("# TYPE betanet_mix_", stringify!($name), " counter\n"));
                    s.push_str(&format!(concat!("betanet_mix_", stringify!($name), " {}\n"),
                        self.$name.load(Ordering::Relaxed)));
                )*
                s
            }
        }
    };
}

metrics! {
    packets_received => "Packets read from ingress.",
    packets_forwarded => "Packets sent to a next hop.",
    packets_delivered => "Messages delivered to the local exit handler.",
    replies_sent => "Reply-block payloads sent to their creator.",
    dropped_replay => "Packets dropped as replays.",
    dropped_invalid => "Packets dropped for a bad header, MAC, version, length or key epoch.",
    dropped_tagged => "Packets dropped at the exit because the payload check failed.",
    dropped_overload => "Packets dropped because a bounded queue was full.",
    dropped_peer_down => "Packets dropped because the next hop was unreachable (PEER_DOWN).",
    dropped_exit_unhandled => "Exit messages dropped because no exit handler is attached.",
    dropped_unknown_peer => "Packets dropped because the next hop is not a configured peer.",
    htx_streams => "HTX ingress streams accepted (from other nodes and clients).",
    egress_connects => "Egress connections established to next hops (TCP or HTX).",
    egress_connect_failures => "Failed egress connection attempts (counted per attempt).",
    batches => "Worker batches processed.",
    delay_ns_total => "Sum of measured per-packet hold times in nanoseconds.",
}

impl Metrics {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

struct Inbound {
    packet: Vec<u8>,
    at: Instant,
}

enum Outbound {
    Frame {
        to: SocketAddr,
        frame: Vec<u8>,
        reply: bool,
    },
    Deliver(Delivery),
}

struct Scheduled {
    due: Instant,
    arrived: Instant,
    out: Outbound,
}

/// The delay queue: a min-heap of small `(due, seq, slot)` keys over a slab of packets, so
/// that heap operations move 32-byte keys rather than whole packet records.
#[derive(Default)]
struct DelayQueue {
    heap: BinaryHeap<std::cmp::Reverse<(Instant, u64, u32)>>,
    slab: Vec<Option<Scheduled>>,
    free: Vec<u32>,
    seq: u64,
}

impl DelayQueue {
    fn len(&self) -> usize {
        self.heap.len()
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    fn push(&mut self, s: Scheduled) {
        let due = s.due;
        let idx = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slab.get_mut(i as usize) {
                    *slot = Some(s);
                }
                i
            }
            None => {
                self.slab.push(Some(s));
                u32::try_from(self.slab.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.heap.push(std::cmp::Reverse((due, self.seq, idx)));
        self.seq = self.seq.wrapping_add(1);
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Scheduled> {
        loop {
            if self.heap.peek().is_none_or(|e| e.0.0 > now) {
                return None;
            }
            let std::cmp::Reverse((_, _, idx)) = self.heap.pop()?;
            let taken = self.slab.get_mut(idx as usize).and_then(Option::take);
            self.free.push(idx);
            if taken.is_some() {
                return taken;
            }
        }
    }
}

const DELAY_SAMPLES: usize = 8192;

struct Shared {
    identity: SigningKey,
    /// The address in this node's descriptor and route hops (TCP or HTX ingress).
    advertised: SocketAddr,
    keys: RwLock<KeyRing>,
    replay: Mutex<PersistentReplayFilter>,
    metrics: Metrics,
    /// (hold time, lateness) in seconds of recent packets.
    delay_samples: Mutex<VecDeque<(f64, f64)>>,
    /// Next hops by the address packets name (from the config, or added at run time).
    peers: RwLock<HashMap<SocketAddr, PeerConfig>>,
    unknown_peers: UnknownPeers,
    /// How this node dials HTX next hops (its own identity, `tcp12`).
    htx_client: betanet_net::ClientConfig,
    /// Next hops whose last dial failed, until when packets for them are dropped without a new
    /// dial (no dial storm towards a dead peer).
    down_until: Mutex<HashMap<SocketAddr, Instant>>,
}

/// Most next-hop links a node keeps at once.
const MAX_LINKS: usize = 4096;

/// How long a next hop whose dial failed is treated as down before the next attempt.
pub const PEER_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Writes one length-prefixed frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too long"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(frame).await
}

/// Reads one length-prefixed frame (at most [`MAX_FRAME`] bytes). `Ok(None)` on clean EOF.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame exceeds the maximum size",
        ));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// A running mixnode.
pub struct Mixnode {
    local_addr: SocketAddr,
    htx_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    senders: Arc<[mpsc::Sender<Vec<Inbound>>]>,
    rr: Arc<AtomicUsize>,
    inject: mpsc::Sender<Vec<Scheduled>>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Mixnode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixnode")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Mixnode {
    /// Opens the state, binds the listener and starts the pipeline. Messages for which this
    /// node is the exit go to `exit` (bounded; full means dropped and counted).
    pub async fn start(
        cfg: MixnodeConfig,
        exit: Option<mpsc::Sender<Delivery>>,
    ) -> Result<Mixnode, MixError> {
        let keys =
            KeyRing::open_or_create(&cfg.state_dir.join("keys"), cfg.initial_epoch, &mut OsRng)?;
        let replay = PersistentReplayFilter::open(
            &cfg.state_dir.join("replay"),
            cfg.replay,
            &keys.epochs(),
            cfg.sync_replay_log,
        )?;
        let identity = load_identity(&cfg.state_dir)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| MixError::io(format!("listen {}", cfg.listen), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| MixError::io("listener", e))?;
        let net_identity = betanet_crypto::sign::SigningKey::from_seed(identity.as_bytes());
        let mut htx_client = betanet_net::ClientConfig::new(net_identity.clone());
        htx_client.connect_timeout = cfg.connect_timeout;
        let htx_listener = match cfg.htx_listen {
            Some(a) => Some(
                betanet_net::listen(&a.to_string(), betanet_net::ServerConfig::new(net_identity))
                    .await
                    .map_err(|e| {
                        MixError::io(
                            format!("HTX listen {a}"),
                            std::io::Error::other(e.to_string()),
                        )
                    })?,
            ),
            None => None,
        };
        let htx_addr = htx_listener.as_ref().map(betanet_net::Listener::local_addr);
        let advertised = match (cfg.advertise, htx_addr) {
            (Advertise::Htx, Some(h)) => h,
            (Advertise::Htx, None) => return Err(MixError::ConfigValue("advertise")),
            (Advertise::Tcp, _) => local_addr,
        };
        let shared = Arc::new(Shared {
            identity,
            advertised,
            keys: RwLock::new(keys),
            replay: Mutex::new(replay),
            metrics: Metrics::default(),
            delay_samples: Mutex::new(VecDeque::with_capacity(DELAY_SAMPLES)),
            peers: RwLock::new(cfg.peers.iter().map(|p| (p.addr, p.clone())).collect()),
            unknown_peers: cfg.unknown_peers,
            htx_client,
            down_until: Mutex::new(HashMap::new()),
        });

        let workers_n = cfg.workers.max(1);
        // One message per worker batch (not per packet) keeps wake-ups off the hot path.
        let (sched_tx, sched_rx) = mpsc::channel::<Vec<Scheduled>>((cfg.queue_depth / 64).max(16));
        let mut senders = Vec::with_capacity(workers_n);
        let mut workers = Vec::with_capacity(workers_n);
        for i in 0..workers_n {
            // Bounded in reader batches of at most READER_BATCH packets: ≤ queue_depth in total.
            let (tx, rx) =
                mpsc::channel::<Vec<Inbound>>((cfg.queue_depth / workers_n / READER_BATCH).max(4));
            senders.push(tx);
            let sh = shared.clone();
            let out = sched_tx.clone();
            let bs = cfg.batch_size.max(1);
            let delay = cfg.delay;
            let rng = match cfg.rng_seed {
                Some(seed) => StdRng::seed_from_u64(seed.wrapping_add(i as u64)),
                None => StdRng::from_rng(OsRng).map_err(|_| MixError::Crypto)?,
            };
            let t = std::thread::Builder::new()
                .name(format!("mix-worker-{i}"))
                .spawn(move || worker(rx, sh, out, bs, delay, rng))
                .map_err(|e| MixError::io("worker thread", e))?;
            workers.push(t);
        }
        let mut tasks = Vec::new();
        let senders: Arc<[mpsc::Sender<Vec<Inbound>>]> = Arc::from(senders.into_boxed_slice());
        let rr = Arc::new(AtomicUsize::new(0));
        tasks.push(tokio::spawn(accept_loop(
            listener,
            senders.clone(),
            rr.clone(),
            shared.clone(),
            cfg.max_connections.max(1),
        )));
        if let Some(l) = htx_listener {
            tasks.push(tokio::spawn(htx_accept_loop(
                l,
                senders.clone(),
                rr.clone(),
                shared.clone(),
                cfg.max_connections.max(1),
            )));
        }
        tasks.push(tokio::spawn(scheduler(
            sched_rx,
            shared.clone(),
            exit,
            cfg.clone(),
        )));
        let mut metrics_addr = None;
        if let Some(m) = cfg.metrics_listen {
            let l = TcpListener::bind(m)
                .await
                .map_err(|e| MixError::io(format!("metrics listen {m}"), e))?;
            metrics_addr = l.local_addr().ok();
            tasks.push(tokio::spawn(metrics_loop(l, shared.clone())));
        }
        if let Some(every) = cfg.key_rotation {
            let sh = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut iv = tokio::time::interval(every);
                iv.tick().await;
                loop {
                    iv.tick().await;
                    if let Err(e) = rotate(&sh) {
                        tracing::error!(error = %e, "mix key rotation failed");
                    }
                }
            }));
        }
        tracing::info!(%local_addr, workers = workers_n, "mixnode started");
        Ok(Mixnode {
            local_addr,
            htx_addr,
            metrics_addr,
            shared,
            senders,
            rr,
            inject: sched_tx,
            tasks,
            workers,
        })
    }

    /// The bound ingress address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds (or replaces) a next hop at run time, e.g. one learnt from a verified descriptor
    /// ([`PeerConfig::from_descriptor`]). Existing links to it are kept.
    pub fn add_peer(&self, peer: PeerConfig) {
        let mut p = self.shared.peers.write().unwrap_or_else(|e| e.into_inner());
        p.insert(peer.addr, peer);
    }

    /// The bound HTX ingress address, if enabled.
    pub fn htx_addr(&self) -> Option<SocketAddr> {
        self.htx_addr
    }

    /// The node's Ed25519 identity (descriptor key and HTX identity).
    pub fn identity_public(&self) -> [u8; 32] {
        self.shared.identity.verifying_key().to_bytes()
    }

    /// The bound metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Current key epoch and public key.
    pub fn current_key(&self) -> (u32, MixPublicKey) {
        let k = self.shared.keys.read().unwrap_or_else(|p| p.into_inner());
        k.current_public().unwrap_or((0, MixPublicKey([0; 32])))
    }

    /// This node as a route hop (current key, advertised address).
    pub fn route_hop(&self) -> RouteHop {
        let (epoch, key) = self.current_key();
        RouteHop {
            addr: NodeAddr(self.shared.advertised),
            epoch,
            key,
        }
    }

    /// The signed descriptor of this node (current key).
    pub fn descriptor(&self) -> Vec<u8> {
        describe(&self.shared)
    }

    /// This node as a directory entry.
    pub fn info(&self) -> MixNodeInfo {
        let (key_epoch, key) = self.current_key();
        MixNodeInfo {
            id: descriptor::id_of(&self.shared.identity.verifying_key().to_bytes()),
            addr: NodeAddr(self.shared.advertised),
            key,
            key_epoch,
            as_group: None,
            weight: 1,
        }
    }

    /// A cheap handle to inject packets (e.g. replies built from SURBs) from other tasks.
    pub fn packet_sender(&self) -> PacketSender {
        PacketSender {
            inject: self.inject.clone(),
        }
    }

    /// Serves one more ingress byte stream with the same framing as the TCP ingress (`u32be
    /// length ‖ packet`, control frame `0x01`): how HTX streams from other nodes and clients
    /// reach the pipeline. Returns when the stream ends.
    pub async fn serve_stream<S: AsyncRead + AsyncWrite + Send + 'static>(&self, stream: S) {
        reader(
            stream,
            self.senders.clone(),
            self.rr.clone(),
            self.shared.clone(),
        )
        .await;
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Measured hold times (arrival to dispatch) of the most recent packets, in seconds.
    pub fn delay_samples(&self) -> Vec<f64> {
        let s = self
            .shared
            .delay_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.iter().map(|x| x.0).collect()
    }

    /// How late (dispatch minus deadline, seconds) the most recent packets left: the timer and
    /// OS scheduling lag included in [`Mixnode::delay_samples`].
    pub fn delay_lateness(&self) -> Vec<f64> {
        let s = self
            .shared
            .delay_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.iter().map(|x| x.1).collect()
    }

    /// Rotates the mix key (the previous key stays valid for one more epoch) and the replay
    /// filter with it. Returns the new epoch and key.
    pub fn rotate_key(&self) -> Result<(u32, MixPublicKey), MixError> {
        rotate(&self.shared)
    }

    /// Sends an already built packet (e.g. a reply made from a SURB) to `to` without delay.
    pub async fn send_packet(&self, to: NodeAddr, packet: Vec<u8>) -> Result<(), MixError> {
        self.packet_sender().send(to, packet).await
    }

    /// Stops all tasks and worker threads and snapshots the replay filter.
    pub async fn shutdown(self) -> Result<(), MixError> {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.inject);
        // Workers stop when every ingress sender is gone (stream ingresses still running keep
        // theirs until their stream ends).
        drop(self.senders);
        for w in self.workers {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        let mut r = self.shared.replay.lock().unwrap_or_else(|p| p.into_inner());
        r.snapshot()
    }
}

/// Injects packets into a node's egress (cheap to clone).
#[derive(Clone, Debug)]
pub struct PacketSender {
    inject: mpsc::Sender<Vec<Scheduled>>,
}

impl std::fmt::Debug for Scheduled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduled").finish_non_exhaustive()
    }
}

impl PacketSender {
    /// Sends `packet` to `to` without mixing delay (the next hop adds its own).
    pub async fn send(&self, to: NodeAddr, packet: Vec<u8>) -> Result<(), MixError> {
        let now = Instant::now();
        self.inject
            .send(vec![Scheduled {
                due: now,
                arrived: now,
                out: Outbound::Frame {
                    to: to.0,
                    frame: packet,
                    reply: false,
                },
            }])
            .await
            .map_err(|_| MixError::io("scheduler", std::io::ErrorKind::BrokenPipe.into()))
    }
}

fn describe(shared: &Shared) -> Vec<u8> {
    let (epoch, key) = {
        let k = shared.keys.read().unwrap_or_else(|p| p.into_inner());
        k.current_public().unwrap_or((0, MixPublicKey([0; 32])))
    };
    descriptor::sign_mix_descriptor(&shared.identity, epoch, &key, &NodeAddr(shared.advertised))
}

fn load_identity(dir: &std::path::Path) -> Result<SigningKey, MixError> {
    std::fs::create_dir_all(dir).map_err(|e| MixError::io(dir, e))?;
    let p = dir.join("identity.ed25519");
    if p.exists() {
        let b = zeroize::Zeroizing::new(std::fs::read(&p).map_err(|e| MixError::io(&p, e))?);
        let seed: [u8; 32] = b
            .as_slice()
            .try_into()
            .map_err(|_| MixError::CorruptState {
                path: p.clone(),
                what: "identity key file is not 32 bytes",
            })?;
        return Ok(SigningKey::from_bytes(&seed));
    }
    let sk = SigningKey::generate(&mut OsRng);
    crate::keys::write_secret(&p, sk.as_bytes())?;
    Ok(sk)
}

/// Runs a mixnode from a TOML configuration file until Ctrl-C (the library form of `betanet
/// mixnode --config FILE`). The exit role serves the [`crate::app`] protocol: introduction and
/// rendezvous points for hidden services, and with `exit_echo = true` an echo request handler.
pub async fn run_from_config_file(path: &std::path::Path) -> Result<(), MixError> {
    let text = std::fs::read_to_string(path).map_err(|e| MixError::io(path, e))?;
    let cfg = MixnodeConfig::from_toml_str(&text)?;
    let handler: Option<crate::app::RequestHandler> = if cfg.exit_echo {
        Some(Arc::new(|data: &[u8]| Some(data.to_vec())))
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(4096);
    let node = Mixnode::start(cfg, Some(tx)).await?;
    let app =
        crate::app::ExitApp::new(node.info().id, handler).spawn(rx, node.packet_sender(), None);
    let (epoch, key) = node.current_key();
    tracing::info!(
        addr = %node.local_addr(),
        htx = ?node.htx_addr(),
        epoch,
        mix_key = %hex::encode(key.0),
        "mixnode running; Ctrl-C to stop"
    );
    let _ = tokio::signal::ctrl_c().await;
    app.abort();
    node.shutdown().await
}

fn rotate(shared: &Shared) -> Result<(u32, MixPublicKey), MixError> {
    let mut keys = shared.keys.write().unwrap_or_else(|p| p.into_inner());
    let mut replay = shared.replay.lock().unwrap_or_else(|p| p.into_inner());
    let (epoch, _) = keys.rotate(&mut OsRng)?;
    replay.rotate(epoch)?;
    tracing::info!(epoch, "mix key rotated");
    let pk = keys
        .current_public()
        .map(|(_, k)| k)
        .ok_or(MixError::UnknownEpoch(epoch))?;
    Ok((epoch, pk))
}

async fn accept_loop(
    listener: TcpListener,
    senders: Arc<[mpsc::Sender<Vec<Inbound>>]>,
    rr: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    max_connections: usize,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, peer)) = acc else { continue };
                if conns.len() >= max_connections {
                    Metrics::inc(&shared.metrics.dropped_overload);
                    tracing::debug!(%peer, "connection limit reached; closing");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let (s, r, sh) = (senders.clone(), rr.clone(), shared.clone());
                conns.spawn(async move {
                    let span = tracing::debug_span!("mix-conn", %peer);
                    let _g = span.enter();
                    reader(stream, s, r, sh).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn htx_accept_loop(
    mut listener: betanet_net::Listener,
    senders: Arc<[mpsc::Sender<Vec<Inbound>>]>,
    rr: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    max_connections: usize,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok(conn) = acc else { return };
                if conns.len() >= max_connections {
                    Metrics::inc(&shared.metrics.dropped_overload);
                    conn.close(betanet_net::ErrorCode::Ok, "busy");
                    continue;
                }
                let (s, r, sh) = (senders.clone(), rr.clone(), shared.clone());
                conns.spawn(async move {
                    let mut streams = tokio::task::JoinSet::new();
                    loop {
                        tokio::select! {
                            st = conn.accept_stream() => {
                                let Ok(stream) = st else { break };
                                Metrics::inc(&sh.metrics.htx_streams);
                                streams.spawn(reader(stream, s.clone(), r.clone(), sh.clone()));
                            }
                            Some(_) = streams.join_next(), if !streams.is_empty() => {}
                        }
                    }
                    while streams.join_next().await.is_some() {}
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn reader<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    senders: Arc<[mpsc::Sender<Vec<Inbound>>]>,
    rr: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    let (rd, mut wr) = tokio::io::split(stream);
    let mut r = BufReader::with_capacity(64 * 1024, rd);
    let mut pending: Vec<Inbound> = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 1 {
            let mut c = [0u8; 1];
            if r.read_exact(&mut c).await.is_err() || c[0] != CTRL_DESCRIBE {
                Metrics::inc(&shared.metrics.dropped_invalid);
                return;
            }
            if write_frame(&mut wr, &describe(&shared)).await.is_err() {
                return;
            }
            continue;
        }
        if packet::PacketSize::from_len(n).is_err() {
            Metrics::inc(&shared.metrics.dropped_invalid);
            tracing::debug!(len = n, "bad frame length; closing connection");
            return;
        }
        let mut buf = vec![0u8; n];
        if r.read_exact(&mut buf).await.is_err() {
            return;
        }
        Metrics::inc(&shared.metrics.packets_received);
        pending.push(Inbound {
            packet: buf,
            at: Instant::now(),
        });
        // Keep reading while a whole next frame is already buffered (no waiting on the socket
        // while holding packets); hand over up to READER_BATCH packets per queue operation.
        let buffered = r.buffer();
        let next_complete = buffered
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .is_some_and(|l| buffered.len() >= 4 + l);
        if next_complete && pending.len() < READER_BATCH {
            continue;
        }
        let i = rr.fetch_add(1, Ordering::Relaxed) % senders.len().max(1);
        let Some(tx) = senders.get(i) else { return };
        if tx.send(std::mem::take(&mut pending)).await.is_err() {
            return;
        }
    }
}

/// Packets a connection reader hands to a worker per queue operation (at most).
const READER_BATCH: usize = 32;

fn worker(
    mut rx: mpsc::Receiver<Vec<Inbound>>,
    shared: Arc<Shared>,
    out: mpsc::Sender<Vec<Scheduled>>,
    batch_size: usize,
    delay: DelayDist,
    mut rng: StdRng,
) {
    let mut batch: Vec<Inbound> = Vec::with_capacity(batch_size);
    let mut done: Vec<(u32, ReplayTag, Processed, Instant)> = Vec::with_capacity(batch_size);
    let mut tags: Vec<(u32, ReplayTag)> = Vec::with_capacity(batch_size);
    let m = &shared.metrics;
    while let Some(first) = rx.blocking_recv() {
        batch.extend(first);
        while batch.len() < batch_size {
            match rx.try_recv() {
                Ok(x) => batch.extend(x),
                Err(_) => break,
            }
        }
        {
            let keys = shared.keys.read().unwrap_or_else(|p| p.into_inner());
            for inb in batch.drain(..) {
                let res = packet::peek_epoch(&inb.packet).and_then(|e| {
                    let k = keys.get(e).ok_or(MixError::UnknownEpoch(e))?;
                    packet::process(k, inb.packet).map(|(t, p)| (e, t, p))
                });
                match res {
                    Ok((e, t, p)) => done.push((e, t, p, inb.at)),
                    Err(MixError::Tagged) => Metrics::inc(&m.dropped_tagged),
                    Err(_) => Metrics::inc(&m.dropped_invalid),
                }
            }
        }
        Metrics::inc(&m.batches);
        tags.clear();
        tags.extend(done.iter().map(|d| (d.0, d.1)));
        let verdicts = {
            let mut r = shared.replay.lock().unwrap_or_else(|p| p.into_inner());
            r.check_batch(&tags)
        };
        let verdicts = match verdicts {
            Ok(v) => v,
            Err(e) => {
                // Fail closed: without a durable record nothing is forwarded.
                tracing::error!(error = %e, "replay log write failed; dropping batch");
                m.dropped_overload
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                done.clear();
                continue;
            }
        };
        let mut sched: Vec<Scheduled> = Vec::with_capacity(done.len());
        for ((_, _, p, at), v) in done.drain(..).zip(verdicts) {
            match v {
                Ok(true) => {}
                Ok(false) => {
                    Metrics::inc(&m.dropped_replay);
                    continue;
                }
                Err(_) => {
                    Metrics::inc(&m.dropped_invalid);
                    continue;
                }
            }
            let due = at + delay.sample(&mut rng);
            let out_msg = match p {
                Processed::Forward { next, packet } => Outbound::Frame {
                    to: next.0,
                    frame: packet,
                    reply: false,
                },
                Processed::Deliver { dest, message } => {
                    Outbound::Deliver(Delivery { dest, message })
                }
                Processed::Reply { to, surb_id, body } => {
                    let mut frame = Vec::with_capacity(surb_id.len() + body.len());
                    frame.extend_from_slice(&surb_id);
                    frame.extend_from_slice(&body);
                    Outbound::Frame {
                        to: to.0,
                        frame,
                        reply: true,
                    }
                }
            };
            sched.push(Scheduled {
                due,
                arrived: at,
                out: out_msg,
            });
        }
        if !sched.is_empty() && out.blocking_send(sched).is_err() {
            return;
        }
    }
}

async fn scheduler(
    mut rx: mpsc::Receiver<Vec<Scheduled>>,
    shared: Arc<Shared>,
    exit: Option<mpsc::Sender<Delivery>>,
    cfg: MixnodeConfig,
) {
    let mut heap = DelayQueue::default();
    let mut egress: HashMap<SocketAddr, mpsc::Sender<EgressBatch>> = HashMap::new();
    let m = &shared.metrics;
    loop {
        let next_due = heap.next_due();
        tokio::select! {
            msg = rx.recv() => {
                let Some(first) = msg else { break };
                let mut item = Some(first);
                let mut n = 0;
                while let Some(batch) = item.take() {
                    for s in batch {
                        if heap.len() >= cfg.max_delayed {
                            Metrics::inc(&m.dropped_overload);
                        } else {
                            heap.push(s);
                        }
                    }
                    n += 1;
                    if n < 16 {
                        item = rx.try_recv().ok();
                    }
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
        }
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(s) = heap.pop_due(now) {
            due.push(s);
        }
        if due.is_empty() {
            continue;
        }
        {
            // Record hold times before dispatching so observers see them with the delivery.
            let mut ds = shared
                .delay_samples
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for s in &due {
                let held = now.saturating_duration_since(s.arrived);
                m.delay_ns_total
                    .fetch_add(held.as_nanos() as u64, Ordering::Relaxed);
                if ds.len() >= DELAY_SAMPLES {
                    ds.pop_front();
                }
                let late = now.saturating_duration_since(s.due);
                ds.push_back((held.as_secs_f64(), late.as_secs_f64()));
            }
        }
        let mut frames: HashMap<SocketAddr, (Vec<Vec<u8>>, u64, u64)> = HashMap::new();
        for s in due {
            match s.out {
                // Counters are raised before the hand-off (and undone on failure) so that
                // whoever receives the packet already sees them.
                Outbound::Deliver(d) => match &exit {
                    Some(tx) => {
                        Metrics::inc(&m.packets_delivered);
                        if tx.try_send(d).is_err() {
                            m.packets_delivered.fetch_sub(1, Ordering::Relaxed);
                            Metrics::inc(&m.dropped_overload);
                        }
                    }
                    None => Metrics::inc(&m.dropped_exit_unhandled),
                },
                Outbound::Frame { to, frame, reply } => {
                    let e = frames.entry(to).or_default();
                    e.0.push(frame);
                    if reply {
                        e.2 += 1;
                    } else {
                        e.1 += 1;
                    }
                }
            }
        }
        for (to, (frames, forwarded, replies)) in frames {
            let batch = EgressBatch {
                frames,
                forwarded,
                replies,
            };
            dispatch(&mut egress, to, batch, &shared, &cfg);
        }
    }
}

/// Frames for one next hop from one scheduler wake-up, with what they count as once written.
struct EgressBatch {
    frames: Vec<Vec<u8>>,
    forwarded: u64,
    replies: u64,
}

fn dispatch(
    egress: &mut HashMap<SocketAddr, mpsc::Sender<EgressBatch>>,
    to: SocketAddr,
    frame: EgressBatch,
    shared: &Arc<Shared>,
    cfg: &MixnodeConfig,
) -> bool {
    let m = &shared.metrics;
    let n = frame.frames.len() as u64;
    let known = shared
        .peers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&to)
        .cloned();
    let link = match known {
        Some(p) => p,
        None if shared.unknown_peers == UnknownPeers::Tcp => PeerConfig {
            addr: to,
            public_key: None,
            transport: PeerTransport::Tcp,
        },
        None => {
            m.dropped_unknown_peer.fetch_add(n, Ordering::Relaxed);
            return false;
        }
    };
    // No live link: the hop may be in its back-off after a failed dial.
    if egress.get(&to).is_none_or(mpsc::Sender::is_closed) {
        let mut down = shared.down_until.lock().unwrap_or_else(|e| e.into_inner());
        match down.get(&to) {
            Some(&until) if until > Instant::now() => {
                egress.remove(&to);
                m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
                return false;
            }
            Some(_) => {
                down.remove(&to);
            }
            None => {}
        }
    }
    if egress.len() >= MAX_LINKS && !egress.contains_key(&to) {
        // Bounded: forget dead links; refuse new next hops while all are alive.
        egress.retain(|_, tx| !tx.is_closed());
        if egress.len() >= MAX_LINKS {
            m.dropped_overload.fetch_add(n, Ordering::Relaxed);
            return false;
        }
    }
    let mut frame = Some(frame);
    for _ in 0..2 {
        let tx = egress.entry(to).or_insert_with(|| {
            // Bounded in batches (one per scheduler wake-up).
            let (tx, rx) = mpsc::channel((cfg.egress_queue / 8).max(16));
            tokio::spawn(egress_conn(
                link.clone(),
                rx,
                shared.clone(),
                cfg.connect_timeout,
            ));
            tx
        });
        let Some(f) = frame.take() else { return false };
        match tx.try_send(f) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                m.dropped_overload.fetch_add(n, Ordering::Relaxed);
                return false;
            }
            Err(mpsc::error::TrySendError::Closed(f)) => {
                // The connection died: reconnect (a fresh task dials again).
                egress.remove(&to);
                frame = Some(f);
            }
        }
    }
    m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
    false
}

/// Closes the queue of a dead link and counts what was still in it as `PEER_DOWN`.
fn drain_peer_down(rx: &mut mpsc::Receiver<EgressBatch>, m: &Metrics) {
    rx.close();
    let mut n = 0u64;
    while let Ok(b) = rx.try_recv() {
        n += b.frames.len() as u64;
    }
    m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
}

/// A failed dial: counts it, marks the hop down for [`PEER_RETRY_BACKOFF`] and drops what was
/// queued for it.
fn dial_failed(shared: &Shared, to: SocketAddr, rx: &mut mpsc::Receiver<EgressBatch>) {
    Metrics::inc(&shared.metrics.egress_connect_failures);
    let now = Instant::now();
    let mut down = shared.down_until.lock().unwrap_or_else(|e| e.into_inner());
    if down.len() >= 4096 {
        // Bounded: forget expired entries first, everything if that is not enough.
        down.retain(|_, until| *until > now);
        if down.len() >= 4096 {
            down.clear();
        }
    }
    down.insert(to, now + PEER_RETRY_BACKOFF);
    drain_peer_down(rx, &shared.metrics);
}

/// One pooled link to a next hop: dials (plain TCP, or HTX authenticated as the peer's
/// identity), then writes queued batches until the link or the queue fails. A dead link ends
/// the task; the next packet for that hop starts a new one (reconnect on demand). Nothing
/// waits longer than the connect timeout.
async fn egress_conn(
    peer: PeerConfig,
    mut rx: mpsc::Receiver<EgressBatch>,
    shared: Arc<Shared>,
    connect_timeout: Duration,
) {
    let m = &shared.metrics;
    let to = peer.addr;
    match (peer.transport, peer.public_key) {
        (PeerTransport::Htx(t), Some(vk)) => {
            let mut cfg = shared.htx_client.clone();
            cfg.transport = t;
            let dialed = tokio::time::timeout(
                connect_timeout,
                betanet_net::dial(&to.to_string(), &vk, &cfg),
            )
            .await;
            let conn = match dialed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(%to, error = %e, "HTX next hop unreachable (PEER_DOWN)");
                    return dial_failed(&shared, to, &mut rx);
                }
                Err(_) => {
                    tracing::debug!(%to, "HTX next hop: connect timeout (PEER_DOWN)");
                    return dial_failed(&shared, to, &mut rx);
                }
            };
            let Ok(stream) = conn.open_stream() else {
                return dial_failed(&shared, to, &mut rx);
            };
            Metrics::inc(&m.egress_connects);
            let watch = conn.clone();
            let closed = async move {
                watch.closed().await;
            };
            pump(to, stream, closed, &mut rx, m).await;
            drop(conn);
        }
        _ => {
            let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(to)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(%to, "next hop unreachable (PEER_DOWN)");
                    return dial_failed(&shared, to, &mut rx);
                }
            };
            Metrics::inc(&m.egress_connects);
            let _ = stream.set_nodelay(true);
            let (mut rd, wr) = stream.into_split();
            // The peer never writes on an egress link; EOF or an error means it went away.
            let closed = async move {
                let mut b = [0u8; 256];
                while let Ok(n) = rd.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            pump(to, wr, closed, &mut rx, m).await;
        }
    }
    drain_peer_down(&mut rx, m);
}

/// Writes queued batches to `w` (up to 16 batches per flush) until the queue closes, a write
/// fails or `closed` completes.
async fn pump<W: AsyncWrite + Unpin>(
    to: SocketAddr,
    w: W,
    closed: impl std::future::Future<Output = ()>,
    rx: &mut mpsc::Receiver<EgressBatch>,
    m: &Metrics,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    tokio::pin!(closed);
    loop {
        let first = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
            () = &mut closed => {
                tracing::debug!(%to, "next hop closed the link");
                return;
            }
        };
        let (mut n, mut fwd, mut rep) = (0u64, 0u64, 0u64);
        let mut ok = true;
        let mut next = Some(first);
        let mut batches = 0;
        while let Some(b) = next.take() {
            n += b.frames.len() as u64;
            fwd += b.forwarded;
            rep += b.replies;
            for f in &b.frames {
                ok = ok && write_frame(&mut w, f).await.is_ok();
            }
            batches += 1;
            if ok && batches < 16 {
                next = rx.try_recv().ok();
            }
        }
        // Counters are raised before the flush hands the frames to the peer, so that whoever
        // receives them already sees the counts; undone if the write fails.
        m.packets_forwarded.fetch_add(fwd, Ordering::Relaxed);
        m.replies_sent.fetch_add(rep, Ordering::Relaxed);
        if !ok || w.flush().await.is_err() {
            // Frames of the failed write may or may not have left; count them as lost.
            tracing::debug!(%to, "next hop connection failed (PEER_DOWN)");
            m.packets_forwarded.fetch_sub(fwd, Ordering::Relaxed);
            m.replies_sent.fetch_sub(rep, Ordering::Relaxed);
            m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
            return;
        }
    }
}

async fn metrics_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let sh = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut got = 0usize;
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while got < buf.len() {
                    let Some(slot) = buf.get_mut(got..) else {
                        break;
                    };
                    match s.read(slot).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                    if buf
                        .get(..got)
                        .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                    {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let body = sh.metrics.render();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_config() {
        let c = MixnodeConfig::from_toml_str(
            "listen = \"127.0.0.1:9001\"\nstate_dir = \"/tmp/x\"\nworkers = 3\ndelay = \"poisson\"\ndelay_mean_ms = 50\nmetrics_listen = \"127.0.0.1:9101\"\n",
        )
        .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.delay,
            DelayDist::Exponential {
                mean: Duration::from_millis(50),
                cap: Duration::from_millis(600)
            }
        );
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        let d =
            MixnodeConfig::from_toml_str("listen = \"127.0.0.1:1\"\nstate_dir = \"x\"\n").unwrap();
        assert_eq!(d.delay, DelayDist::default());
        assert!(MixnodeConfig::from_toml_str("listen = \"x\"").is_err());
        assert!(
            MixnodeConfig::from_toml_str(
                "listen = \"127.0.0.1:1\"\nstate_dir = \"x\"\nbogus = 1\n"
            )
            .is_err()
        );
        assert!(
            MixnodeConfig::from_toml_str(
                "listen = \"127.0.0.1:1\"\nstate_dir = \"x\"\ndelay_max_ms = 5000\n"
            )
            .is_err()
        );
    }

    #[test]
    fn toml_peers() {
        let pk = betanet_crypto::sign::SigningKey::from_seed(&[4; 32])
            .verifying_key()
            .to_bytes();
        let base = "listen = \"127.0.0.1:1\"\nstate_dir = \"x\"\n";
        let c = MixnodeConfig::from_toml_str(&format!(
            "{base}htx_listen = \"127.0.0.1:2\"\nunknown_peers = \"drop\"\nexit_echo = true\nadvertise = \"htx\"\n\
             [[peers]]\naddr = \"10.0.0.1:9\"\npublic_key = \"{}\"\n\
             [[peers]]\naddr = \"10.0.0.2:9\"\ntransport = \"tcp\"\n",
            hex::encode(pk)
        ))
        .unwrap();
        assert_eq!(c.htx_listen, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(c.unknown_peers, UnknownPeers::Drop);
        assert_eq!(c.advertise, Advertise::Htx);
        assert!(c.exit_echo);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(
            c.peers[0].transport,
            PeerTransport::Htx(betanet_net::Transport::Tcp12)
        );
        assert_eq!(c.peers[0].public_key.unwrap().to_bytes(), pk);
        assert_eq!(c.peers[1].transport, PeerTransport::Tcp);
        assert!(c.peers[1].public_key.is_none());
        let d = MixnodeConfig::from_toml_str(base).unwrap();
        assert_eq!(d.unknown_peers, UnknownPeers::Tcp);
        assert!(d.peers.is_empty() && !d.exit_echo && d.htx_listen.is_none());
        // HTX without a key, a bad key, an unknown transport or policy: rejected.
        for bad in [
            "[[peers]]\naddr = \"10.0.0.1:9\"\n",
            "[[peers]]\naddr = \"10.0.0.1:9\"\npublic_key = \"abcd\"\n",
            "[[peers]]\naddr = \"10.0.0.1:9\"\ntransport = \"udp\"\n",
            "unknown_peers = \"maybe\"\n",
            "advertise = \"htx\"\n",
        ] {
            assert!(
                MixnodeConfig::from_toml_str(&format!("{base}{bad}")).is_err(),
                "{bad}"
            );
        }
    }
}

//! The mixnode: a thin tokio driver around the sans-IO packet core.
//!
//! ```text
//! TCP ingress (4-byte BE length | packet)  ──► bounded queue per worker (round robin)
//!   ──► worker threads: batches of up to `batch_size` packets: X25519 + unwrap, then one
//!       replay-filter lock per batch (tags logged + flushed before anything is forwarded)
//!   ──► bounded channel ──► delay scheduler (binary heap, deadline = arrival + U[30,150] ms)
//!   ──► per-next-hop bounded egress queue ──► TCP connection (length-prefixed) / exit handler
//! ```
//!
//! HTX ingress is not here yet (it lands with `betanet-htx`); the length-prefixed TCP ingress is
//! the seed's simple-client interface and also carries node-to-node traffic for now.

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

struct HeapEntry(Scheduled, u64);

impl PartialEq for HeapEntry {
    fn eq(&self, o: &Self) -> bool {
        self.0.due == o.0.due && self.1 == o.1
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // min-heap on (due, seq)
        (o.0.due, o.1).cmp(&(self.0.due, self.1))
    }
}

const DELAY_SAMPLES: usize = 8192;

struct Shared {
    identity: SigningKey,
    local_addr: SocketAddr,
    keys: RwLock<KeyRing>,
    replay: Mutex<PersistentReplayFilter>,
    metrics: Metrics,
    /// (hold time, lateness) in seconds of recent packets.
    delay_samples: Mutex<VecDeque<(f64, f64)>>,
}

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
        let shared = Arc::new(Shared {
            identity,
            local_addr,
            keys: RwLock::new(keys),
            replay: Mutex::new(replay),
            metrics: Metrics::default(),
            delay_samples: Mutex::new(VecDeque::with_capacity(DELAY_SAMPLES)),
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

    /// The bound metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Current key epoch and public key.
    pub fn current_key(&self) -> (u32, MixPublicKey) {
        let k = self.shared.keys.read().unwrap_or_else(|p| p.into_inner());
        k.current_public().unwrap_or((0, MixPublicKey([0; 32])))
    }

    /// This node as a route hop (current key).
    pub fn route_hop(&self) -> RouteHop {
        let (epoch, key) = self.current_key();
        RouteHop {
            addr: NodeAddr(self.local_addr),
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
            addr: NodeAddr(self.local_addr),
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
    descriptor::sign_mix_descriptor(&shared.identity, epoch, &key, &NodeAddr(shared.local_addr))
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

/// Runs a mixnode from a TOML configuration file until Ctrl-C (what `betanet mixnode --config
/// FILE` calls). The exit role serves the [`crate::app`] protocol without a request handler:
/// introduction and rendezvous points for hidden services.
pub async fn run_from_config_file(path: &std::path::Path) -> Result<(), MixError> {
    let text = std::fs::read_to_string(path).map_err(|e| MixError::io(path, e))?;
    let cfg = MixnodeConfig::from_toml_str(&text)?;
    let (tx, rx) = mpsc::channel(4096);
    let node = Mixnode::start(cfg, Some(tx)).await?;
    let app = crate::app::ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), None);
    let (epoch, key) = node.current_key();
    tracing::info!(
        addr = %node.local_addr(),
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
    let mut heap: BinaryHeap<HeapEntry> = BinaryHeap::new();
    let mut seq: u64 = 0;
    let mut egress: HashMap<SocketAddr, mpsc::Sender<EgressBatch>> = HashMap::new();
    let m = &shared.metrics;
    loop {
        let next_due = heap.peek().map(|e| e.0.due);
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
                            heap.push(HeapEntry(s, seq));
                            seq = seq.wrapping_add(1);
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
        while heap.peek().is_some_and(|e| e.0.due <= now) {
            let Some(HeapEntry(s, _)) = heap.pop() else {
                break;
            };
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
    let mut frame = Some(frame);
    for _ in 0..2 {
        let tx = egress.entry(to).or_insert_with(|| {
            // Bounded in batches (one per scheduler wake-up).
            let (tx, rx) = mpsc::channel((cfg.egress_queue / 8).max(16));
            tokio::spawn(egress_conn(to, rx, shared.clone(), cfg.connect_timeout));
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
                // The connection died: reconnect once.
                egress.remove(&to);
                frame = Some(f);
            }
        }
    }
    m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
    false
}

async fn egress_conn(
    to: SocketAddr,
    mut rx: mpsc::Receiver<EgressBatch>,
    shared: Arc<Shared>,
    connect_timeout: Duration,
) {
    let m = &shared.metrics;
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        _ => {
            tracing::debug!(%to, "next hop unreachable (PEER_DOWN)");
            rx.close();
            let mut n = 0u64;
            while let Ok(b) = rx.try_recv() {
                n += b.frames.len() as u64;
            }
            m.dropped_peer_down.fetch_add(n, Ordering::Relaxed);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    while let Some(first) = rx.recv().await {
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
}

//! The node: router, plugins, connections (any byte stream or UDP), requests, subscriptions
//! and peers. A TCP server, a TCP client holding several servers and a UDP node are all a
//! [`Node`] with listeners/connections attached.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

use crate::chunk::{self, Reassembler};
use crate::error::{MsgError, Result};
use crate::frame::{Message, MessageType, decode_frame};
use crate::handler::{ErasedHandler, Handler, Request};
use crate::plugin::{Peer, PluginCx, Plugins};
use crate::tcp_out::TcpOut;

/// Auth field carrying the request id (secure profile; echoed by responders).
pub const RID_FIELD: &str = "rid";

/// Any byte stream a node can run over: TCP, an in-memory duplex, an HTX stream, …
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Handler lookup key (netaio's key order: `(type, uri, addr)`, `(type, uri)`, `type`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Type, URI and remote address.
    TypeUriAddr(MessageType, Bytes, SocketAddr),
    /// Type and URI.
    TypeUri(MessageType, Bytes),
    /// Type only.
    Type(MessageType),
}

impl From<MessageType> for Key {
    fn from(t: MessageType) -> Self {
        Key::Type(t)
    }
}
impl From<(MessageType, &str)> for Key {
    fn from((t, u): (MessageType, &str)) -> Self {
        Key::TypeUri(t, Bytes::copy_from_slice(u.as_bytes()))
    }
}
impl From<(MessageType, &[u8])> for Key {
    fn from((t, u): (MessageType, &[u8])) -> Self {
        Key::TypeUri(t, Bytes::copy_from_slice(u))
    }
}
impl From<(MessageType, Bytes)> for Key {
    fn from((t, u): (MessageType, Bytes)) -> Self {
        Key::TypeUri(t, u)
    }
}
impl From<(MessageType, &str, SocketAddr)> for Key {
    fn from((t, u, a): (MessageType, &str, SocketAddr)) -> Self {
        Key::TypeUriAddr(t, Bytes::copy_from_slice(u.as_bytes()), a)
    }
}

#[derive(Clone)]
struct Entry {
    handler: ErasedHandler,
    plugins: Plugins,
}

/// Node configuration (see [`NodeBuilder`]).
#[derive(Clone)]
pub struct Config {
    /// Node-wide (outer) plugins.
    pub plugins: Plugins,
    /// Attach and echo request ids (`rid` auth field).
    pub request_ids: bool,
    /// Split messages that do not fit one frame into chunks (non-netaio extension).
    pub chunking: bool,
    /// Largest reassembled message accepted.
    pub max_message: usize,
    /// Outgoing queue depth per connection (frames); senders wait when it is full.
    pub queue: usize,
    /// Default request timeout.
    pub timeout: Duration,
    /// Peer-management app id (uri of ADVERTISE_PEER/PEER_DISCOVERED/DISCONNECT).
    pub app_id: Bytes,
    /// Drop UDP peers silent for this long.
    pub peer_timeout: Duration,
    /// Advertise interval for UDP multicast.
    pub advertise_every: Duration,
    /// Client reconnect policy for connections made with [`Node::connect`] (`None`: off).
    pub reconnect: Option<Reconnect>,
}

/// Reconnect policy for client connections made with [`Node::connect`].
///
/// netaio's client can reconnect after a request timeout (its `AutoReconnectTimeoutHandler`:
/// a few attempts with a fixed delay, the timeout error is still raised). This policy does
/// that and more: a connection that has dropped (server restart, reset, EOF) is re-dialled
/// transparently by the *next* request, with exponential backoff and jitter between attempts;
/// the [`Conn`] handle stays the same (same id, same subscriptions on our side are cleared as
/// the server forgets them too). Requests never wait for a reconnect they did not ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// Dial attempts per request that finds its connection closed (at least 1).
    pub attempts: u32,
    /// Delay after the first failed attempt; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff delay.
    pub max_backoff: Duration,
    /// Bound on each TCP connect.
    pub connect_timeout: Duration,
    /// A request timeout resets the connection so the next request re-dials (netaio's
    /// auto-reconnect-on-timeout). The timeout itself is still returned.
    pub on_timeout: bool,
    /// A `REQUEST_URI` (a read) whose connection closed before the answer arrived is sent once
    /// more on a fresh connection. Other types (create/update/delete/…) are never re-sent.
    pub retry_reads: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            on_timeout: true,
            retry_reads: true,
        }
    }
}

/// What [`Node::shutdown`] / [`Node::close`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownStats {
    /// Listeners stopped (their ports are free when the call returns).
    pub listeners: usize,
    /// Connections closed gracefully (in-flight handler finished, queue flushed, FIN sent).
    pub closed: usize,
    /// Connections cut after the grace period (handler or request still running).
    pub forced: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            plugins: Plugins::none(),
            request_ids: false,
            chunking: false,
            max_message: 16 << 20,
            queue: 1024,
            timeout: Duration::from_secs(10),
            app_id: Bytes::from_static(b"netaio"),
            peer_timeout: Duration::from_secs(60),
            advertise_every: Duration::from_secs(20),
            reconnect: Some(Reconnect::default()),
        }
    }
}

/// Builder for [`Node`].
#[derive(Clone, Default)]
pub struct NodeBuilder {
    cfg: Config,
    local_peer: Option<Peer>,
}

impl NodeBuilder {
    /// netaio-compatible defaults: no plugins, no request ids, no chunking.
    pub fn compat() -> Self {
        Self::default()
    }
    /// Secure profile from a shared secret: [`crate::secure::MacAuth`] (type/URI/body/fields,
    /// time window, replay cache) over [`crate::secure::AeadCipher`] (ChaCha20-Poly1305),
    /// request ids and chunking.
    pub fn secure(secret: &[u8]) -> Self {
        let mut b = Self::default();
        b.cfg.plugins = Plugins::none()
            .with_auth(crate::secure::MacAuth::new(secret))
            .with_cipher(crate::secure::AeadCipher::new(secret));
        b.cfg.request_ids = true;
        b.cfg.chunking = true;
        b
    }
    /// Replace the node-wide plugins.
    pub fn plugins(mut self, p: Plugins) -> Self {
        self.cfg.plugins = p;
        self
    }
    /// Enable/disable request ids.
    pub fn request_ids(mut self, yes: bool) -> Self {
        self.cfg.request_ids = yes;
        self
    }
    /// Enable/disable chunking of large messages.
    pub fn chunking(mut self, yes: bool) -> Self {
        self.cfg.chunking = yes;
        self
    }
    /// Largest reassembled message.
    pub fn max_message(mut self, n: usize) -> Self {
        self.cfg.max_message = n;
        self
    }
    /// Per-connection outgoing queue depth.
    pub fn queue(mut self, n: usize) -> Self {
        self.cfg.queue = n.max(1);
        self
    }
    /// Default request timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.cfg.timeout = d;
        self
    }
    /// Client reconnect policy (`None` turns automatic reconnect off; the default is
    /// [`Reconnect::default`]).
    pub fn reconnect(mut self, policy: Option<Reconnect>) -> Self {
        self.cfg.reconnect = policy;
        self
    }
    /// Peer management: local peer, app id, UDP advertise interval and peer timeout.
    pub fn peer(
        mut self,
        local: Peer,
        app_id: &[u8],
        advertise_every: Duration,
        peer_timeout: Duration,
    ) -> Self {
        self.local_peer = Some(local);
        self.cfg.app_id = Bytes::copy_from_slice(app_id);
        self.cfg.advertise_every = advertise_every;
        self.cfg.peer_timeout = peer_timeout;
        self
    }
    /// Build the node.
    pub fn build(self) -> Node {
        let node = Node {
            core: Arc::new(Core {
                cfg: self.cfg,
                handlers: Mutex::new(HashMap::new()),
                ephemeral: Mutex::new(HashMap::new()),
                conns: Mutex::new(HashMap::new()),
                subs: Mutex::new(HashMap::new()),
                peers: Mutex::new(HashMap::new()),
                local_peer: self.local_peer,
                next_id: AtomicU64::new(1),
                udp: Mutex::new(None),
                listeners: Mutex::new(Vec::new()),
                shut: AtomicBool::new(false),
                addr_keys: AtomicBool::new(false),
            }),
        };
        if node.core.local_peer.is_some() {
            crate::peers::install(&node);
        }
        node
    }
}

struct Core {
    cfg: Config,
    handlers: Mutex<HashMap<Key, Entry>>,
    ephemeral: Mutex<HashMap<Key, Entry>>,
    conns: Mutex<HashMap<u64, Conn>>,
    subs: Mutex<HashMap<Bytes, Vec<Conn>>>,
    peers: Mutex<HashMap<Bytes, Peer>>,
    local_peer: Option<Peer>,
    next_id: AtomicU64,
    udp: Mutex<Option<UdpState>>,
    listeners: Mutex<Vec<(SocketAddr, JoinHandle<()>)>>,
    shut: AtomicBool,
    /// Some handler is keyed by peer address (else routing skips that lookup).
    addr_keys: AtomicBool,
}

struct UdpState {
    sock: Arc<UdpSocket>,
    by_addr: HashMap<SocketAddr, Conn>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A message-framework node (server, client and/or UDP node). Cheap to clone.
#[derive(Clone)]
pub struct Node {
    core: Arc<Core>,
}

struct Pending {
    rid: Option<[u8; 8]>,
    uri: Bytes,
    ok_type: MessageType,
    inner: Plugins,
    tx: oneshot::Sender<Result<Message>>,
}

enum Out {
    /// TCP: direct writes, writer task only under load (see `tcp_out`).
    Tcp(Arc<TcpOut>),
    /// Any other byte stream: a bounded queue drained by a writer task. An empty frame is
    /// the close marker (flush, then shut the write side down).
    Stream(mpsc::Sender<Bytes>),
    Udp(Arc<UdpSocket>),
}

/// The tasks of the current link of a stream connection.
#[derive(Default)]
struct Link {
    generation: u64,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

struct ConnInner {
    id: u64,
    remote: Option<SocketAddr>,
    out: Out,
    accepted: bool,
    closed: AtomicBool,
    pending: Mutex<VecDeque<Pending>>,
    peer_id: Mutex<Option<Bytes>>,
    /// Where to re-dial (client connections made with `connect`).
    dial: Option<SocketAddr>,
    link: Mutex<Link>,
    /// Graceful close requested: the reader stops at its next read once no request waits.
    stopping: AtomicBool,
    stop: Notify,
    /// Wakes `Conn::closed` waiters.
    closed_note: Notify,
    redial: tokio::sync::Mutex<()>,
    /// Closed on purpose (`close`/`shutdown`): never re-dial.
    no_redial: AtomicBool,
    /// Reads completed on the current link (a request timed out on a *silent* link if this
    /// did not move while it waited).
    rx_reads: AtomicU64,
}

impl ConnInner {
    fn new(
        id: u64,
        remote: Option<SocketAddr>,
        out: Out,
        accepted: bool,
        dial: Option<SocketAddr>,
    ) -> Self {
        Self {
            id,
            remote,
            out,
            accepted,
            closed: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            peer_id: Mutex::new(None),
            dial,
            link: Mutex::new(Link::default()),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            closed_note: Notify::new(),
            redial: tokio::sync::Mutex::new(()),
            no_redial: AtomicBool::new(false),
            rx_reads: AtomicU64::new(0),
        }
    }
}

/// One connection (or, for UDP, one remote address). Cheap to clone; compares by identity.
#[derive(Clone)]
pub struct Conn(Arc<ConnInner>);

impl PartialEq for Conn {
    fn eq(&self, o: &Self) -> bool {
        self.0.id == o.0.id
    }
}
impl Eq for Conn {}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn#{}({:?})", self.0.id, self.0.remote)
    }
}

impl Conn {
    /// Connection id (unique per node).
    pub fn id(&self) -> u64 {
        self.0.id
    }
    /// Remote socket address, if any.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.0.remote
    }
    /// True while the connection is closed. A client connection made with
    /// [`Node::connect`] reopens on the next request when reconnect is on ([`Reconnect`]).
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
    /// Wait until the connection is closed (by either side). Returns at once if it is.
    /// UDP remotes have no connection and never close.
    pub async fn closed(&self) {
        loop {
            let n = self.0.closed_note.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.is_closed() {
                return;
            }
            n.await;
        }
    }
    /// The address this client connection re-dials, if it was made with [`Node::connect`].
    pub fn dial_addr(&self) -> Option<SocketAddr> {
        self.0.dial
    }
    /// Send already-encoded frame bytes (waits when the queue is full: backpressure). Does
    /// not re-dial a closed connection (use [`Node::send`]).
    pub async fn send_raw(&self, b: Bytes) -> Result<()> {
        match &self.0.out {
            Out::Tcp(o) => o.send(&b).await,
            Out::Stream(tx) => {
                if b.is_empty() {
                    return Ok(()); // the empty frame is the close marker
                }
                tx.send(b).await.map_err(|_| MsgError::Closed)
            }
            Out::Udp(s) => {
                let a = self.0.remote.ok_or(MsgError::Closed)?;
                s.send_to(&b, a).await?;
                Ok(())
            }
        }
    }
    /// Like `send_raw` for an owned encoding (no extra copy on any path).
    async fn send_vec(&self, v: Vec<u8>) -> Result<()> {
        match &self.0.out {
            Out::Tcp(o) => o.send(&v).await,
            _ => self.send_raw(Bytes::from(v)).await,
        }
    }
    fn fail_pending(&self) {
        for p in lock(&self.0.pending).drain(..) {
            let _ = p.tx.send(Err(MsgError::Closed));
        }
    }
}

fn rid_of(m: &Message) -> Option<[u8; 8]> {
    m.auth.get_bytes(RID_FIELD).and_then(|b| b.try_into().ok())
}

impl Node {
    /// Start building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }

    /// Register a handler for `key` (no per-handler plugins).
    pub fn on<H: Handler<T>, T>(&self, key: impl Into<Key>, h: H) {
        self.on_with(key, Plugins::none(), h)
    }
    /// Register a handler with per-handler (inner) plugins.
    pub fn on_with<H: Handler<T>, T>(&self, key: impl Into<Key>, plugins: Plugins, h: H) {
        let key = key.into();
        self.note_key(&key);
        lock(&self.core.handlers).insert(
            key,
            Entry {
                handler: h.erase(),
                plugins,
            },
        );
    }
    /// Register a one-shot handler (removed after its first call).
    pub fn once<H: Handler<T>, T>(&self, key: impl Into<Key>, h: H) {
        self.once_with(key, Plugins::none(), h)
    }
    /// One-shot handler with per-handler plugins.
    pub fn once_with<H: Handler<T>, T>(&self, key: impl Into<Key>, plugins: Plugins, h: H) {
        let key = key.into();
        self.note_key(&key);
        lock(&self.core.ephemeral).insert(
            key,
            Entry {
                handler: h.erase(),
                plugins,
            },
        );
    }
    fn note_key(&self, k: &Key) {
        if matches!(k, Key::TypeUriAddr(..)) {
            self.core.addr_keys.store(true, Ordering::Release);
        }
    }
    /// Remove a handler (regular and one-shot).
    pub fn remove_handler(&self, key: impl Into<Key>) {
        let k = key.into();
        lock(&self.core.handlers).remove(&k);
        lock(&self.core.ephemeral).remove(&k);
    }

    /// Listen for TCP connections (IPv4 or IPv6, `SO_REUSEADDR`); returns the bound address.
    /// [`Node::shutdown`] stops every listener and frees its port.
    pub async fn listen(&self, addr: SocketAddr) -> Result<SocketAddr> {
        if self.is_shut_down() {
            return Err(MsgError::Closed);
        }
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        let l = sock.listen(1024)?;
        let local = l.local_addr()?;
        let node = self.clone();
        let task = tokio::spawn(async move { node.accept_loop(l).await });
        lock(&self.core.listeners).push((local, task));
        Ok(local)
    }

    /// Addresses this node is listening on.
    pub fn listening(&self) -> Vec<SocketAddr> {
        lock(&self.core.listeners).iter().map(|(a, _)| *a).collect()
    }

    async fn accept_loop(self, l: TcpListener) {
        loop {
            match l.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    self.attach_tcp(s, Some(a), true, None);
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Connect to a TCP server; the node may hold many such connections. With a
    /// [`Reconnect`] policy (on by default) the returned [`Conn`] re-dials `addr` by itself
    /// on the next request or send after the connection dropped or a request timed out on a
    /// silent link.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Conn> {
        if self.is_shut_down() {
            return Err(MsgError::Closed);
        }
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let c = self.attach_tcp(s, Some(addr), false, Some(addr));
        crate::peers::on_connect(self, &c).await;
        Ok(c)
    }

    /// Run the node over any byte stream (client side of the stream). This is the transport
    /// abstraction: TCP is one implementation; HTX streams plug in here.
    pub fn attach<T: Transport>(&self, io: T, remote: Option<SocketAddr>) -> Conn {
        self.attach_inner(io, remote, false)
    }
    /// Serve one accepted byte stream (server side: unknown routes get NOT_FOUND).
    pub fn serve<T: Transport>(&self, io: T, remote: Option<SocketAddr>) -> Conn {
        self.attach_inner(io, remote, true)
    }

    fn new_conn(
        &self,
        remote: Option<SocketAddr>,
        out: Out,
        accepted: bool,
        dial: Option<SocketAddr>,
    ) -> Conn {
        let id = self.core.next_id.fetch_add(1, Ordering::Relaxed);
        Conn(Arc::new(ConnInner::new(id, remote, out, accepted, dial)))
    }

    fn attach_inner<T: Transport>(
        &self,
        io: T,
        remote: Option<SocketAddr>,
        accepted: bool,
    ) -> Conn {
        let (rd, wr) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel::<Bytes>(self.core.cfg.queue);
        let conn = self.new_conn(remote, Out::Stream(tx), accepted, None);
        let writer = tokio::spawn(writer_task(wr, rx));
        self.start_link(&conn, rd, 0, writer);
        conn
    }

    fn attach_tcp(
        &self,
        s: TcpStream,
        remote: Option<SocketAddr>,
        accepted: bool,
        dial: Option<SocketAddr>,
    ) -> Conn {
        let out = TcpOut::new(self.core.cfg.queue);
        let conn = self.new_conn(remote, Out::Tcp(out), accepted, dial);
        self.relink_tcp(&conn, s);
        conn
    }

    /// Make socket `s` the current link of TCP connection `c` and start its tasks.
    fn relink_tcp(&self, c: &Conn, s: TcpStream) {
        let Out::Tcp(out) = &c.0.out else { return };
        // Owned halves avoid the lock that generic `split` takes on every poll.
        let (rd, wr) = s.into_split();
        let (generation, w) = out.relink(wr);
        let writer = tokio::spawn(out.clone().writer(generation, w));
        self.start_link(c, rd, generation, writer);
    }

    fn start_link<R>(&self, c: &Conn, rd: R, generation: u64, writer: JoinHandle<()>)
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        c.0.stopping.store(false, Ordering::Release);
        c.0.closed.store(false, Ordering::Release);
        lock(&self.core.conns).insert(c.0.id, c.clone());
        let node = self.clone();
        let c2 = c.clone();
        let span = tracing::debug_span!("msg_conn", id = c.0.id, remote = ?c.0.remote, accepted = c.0.accepted, generation);
        let task = async move {
            let r = node.reader_task(rd, &c2).await;
            if let Err(e) = r {
                debug!(error = %e, "connection ended");
            }
            node.drop_link(&c2, generation);
        };
        // The span wrapper costs ~1 % of a round trip: only pay it when someone listens.
        let reader = if span.is_disabled() {
            tokio::spawn(task)
        } else {
            tokio::spawn(task.instrument(span))
        };
        let old = {
            let mut l = lock(&c.0.link);
            l.generation = generation;
            (l.reader.replace(reader), l.writer.replace(writer))
        };
        // Tasks of a previous link (already closed) must not linger.
        if let Some(h) = old.0 {
            h.abort();
        }
        if let Some(h) = old.1 {
            h.abort();
        }
    }

    /// The current link of `c` ended (EOF, error, close): mark the connection closed, fail
    /// its waiting requests, forget its subscriptions and peer, and send FIN after flushing.
    /// A no-op for a link that has already been replaced by a reconnect.
    fn drop_link(&self, c: &Conn, generation: u64) {
        if lock(&c.0.link).generation != generation {
            return;
        }
        c.0.closed.store(true, Ordering::Release);
        {
            let mut conns = lock(&self.core.conns);
            if conns.get(&c.0.id).is_some_and(|x| x == c) {
                conns.remove(&c.0.id);
            }
        }
        self.remove_subscriber(c);
        c.fail_pending();
        let pid = lock(&c.0.peer_id).take();
        if let Some(pid) = pid {
            lock(&self.core.peers).remove(&pid);
        }
        match &c.0.out {
            Out::Tcp(o) => o.close(Some(generation)),
            Out::Stream(tx) => {
                if let Err(mpsc::error::TrySendError::Full(m)) = tx.try_send(Bytes::new()) {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(m).await;
                    });
                }
            }
            Out::Udp(_) => {}
        }
        c.0.closed_note.notify_waiters();
    }

    /// Cut the current link of `c` at once (no flush): used when a request timed out on a
    /// silent link, so that the next request re-dials.
    fn reset_link(&self, c: &Conn) {
        let (generation, r, w) = {
            let mut l = lock(&c.0.link);
            (l.generation, l.reader.take(), l.writer.take())
        };
        if let Some(h) = r {
            h.abort();
        }
        if let Some(h) = w {
            h.abort();
        }
        if let Out::Tcp(o) = &c.0.out {
            o.abort();
        }
        self.drop_link(c, generation);
    }

    /// Re-dial a closed client connection following `p` (one at a time per connection).
    async fn redial(&self, c: &Conn, p: &Reconnect) -> Result<()> {
        let Some(addr) = c.0.dial else {
            return Err(MsgError::Closed);
        };
        let _g = c.0.redial.lock().await;
        if !c.is_closed() {
            return Ok(()); // another request re-dialled meanwhile
        }
        let mut delay = p.initial_backoff;
        let mut last = MsgError::Closed;
        for attempt in 0..p.attempts.max(1) {
            if self.is_shut_down() || c.0.no_redial.load(Ordering::Acquire) {
                return Err(MsgError::Closed);
            }
            if attempt > 0 {
                // Exponential backoff with jitter (50–100 % of the nominal delay).
                let nominal = delay.as_micros() as u64;
                let jittered = nominal / 2 + rand::thread_rng().next_u64() % (nominal / 2 + 1);
                tokio::time::sleep(Duration::from_micros(jittered)).await;
                delay = (delay * 2).min(p.max_backoff);
            }
            match tokio::time::timeout(p.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.relink_tcp(c, s);
                    debug!(conn = c.0.id, attempt, "reconnected");
                    Box::pin(crate::peers::on_connect(self, c)).await;
                    return Ok(());
                }
                Ok(Err(e)) => last = e.into(),
                Err(_) => last = MsgError::Timeout(p.connect_timeout),
            }
        }
        Err(last)
    }

    /// Re-dial `c` if it is a closed client connection and reconnect is on.
    async fn ensure_open(&self, c: &Conn) -> Result<()> {
        if !c.is_closed() {
            return Ok(());
        }
        match (&self.core.cfg.reconnect, c.0.dial) {
            (Some(p), Some(_)) if !c.0.no_redial.load(Ordering::Acquire) => self.redial(c, p).await,
            _ => Err(MsgError::Closed),
        }
    }

    /// True once [`Node::shutdown`] has been called.
    pub fn is_shut_down(&self) -> bool {
        self.core.shut.load(Ordering::Acquire)
    }

    /// Graceful shutdown of the whole node (server and client side):
    /// 1. stop accepting: every listener is closed and its port is free when this returns;
    ///    new `listen`/`connect`/`request` calls fail with [`MsgError::Closed`] and no
    ///    connection re-dials;
    /// 2. with peer management on, send DISCONNECT to connections and known peers; stop UDP;
    /// 3. on every connection, stop reading new messages, let the handler that is running
    ///    finish and its reply go out, and wait for answers to our own pending requests;
    /// 4. flush the outgoing queue and close the write side (FIN), so peers see a clean
    ///    close (pending requests on their side fail with [`MsgError::Closed`], not a hang).
    ///
    /// Steps 3–4 are bounded by `grace` (plus up to 250 ms to flush); connections still busy
    /// then are cut and counted in [`ShutdownStats::forced`].
    pub async fn shutdown(&self, grace: Duration) -> ShutdownStats {
        let deadline = tokio::time::Instant::now() + grace;
        self.core.shut.store(true, Ordering::Release);
        let listeners: Vec<_> = lock(&self.core.listeners).drain(..).collect();
        let n_listeners = listeners.len();
        for (_, h) in listeners {
            h.abort();
            let _ = h.await; // the listener socket is dropped when the task ends
        }
        if self.core.local_peer.is_some() {
            let _ = tokio::time::timeout_at(deadline, self.disconnect_peers()).await;
        }
        let udp = lock(&self.core.udp).take();
        if let Some(t) = udp.and_then(|u| u.task) {
            t.abort();
            let _ = t.await;
        }
        let conns = self.connections();
        let (closed, forced) = self.close_conns(&conns, deadline).await;
        ShutdownStats {
            listeners: n_listeners,
            closed,
            forced,
        }
    }

    /// Gracefully close one connection (as in [`Node::shutdown`], bounded by `grace`); it
    /// will not re-dial.
    pub async fn close(&self, c: &Conn, grace: Duration) -> ShutdownStats {
        let deadline = tokio::time::Instant::now() + grace;
        let (closed, forced) = self.close_conns(std::slice::from_ref(c), deadline).await;
        ShutdownStats {
            listeners: 0,
            closed,
            forced,
        }
    }

    async fn close_conns(&self, conns: &[Conn], deadline: tokio::time::Instant) -> (usize, usize) {
        for c in conns {
            c.0.no_redial.store(true, Ordering::Release);
            c.0.stopping.store(true, Ordering::Release);
            c.0.stop.notify_waiters();
        }
        let (mut closed, mut forced) = (0, 0);
        for c in conns {
            let (generation, reader) = {
                let mut l = lock(&c.0.link);
                (l.generation, l.reader.take())
            };
            let graceful = match reader {
                None => true,
                Some(mut h) => match tokio::time::timeout_at(deadline, &mut h).await {
                    Ok(_) => true,
                    Err(_) => {
                        h.abort();
                        let _ = h.await;
                        false
                    }
                },
            };
            // The reader's end marks the link closed; a cut reader did not get there.
            self.drop_link(c, generation);
            if graceful {
                closed += 1;
            } else {
                forced += 1;
            }
            let writer = lock(&c.0.link).writer.take();
            if let Some(mut h) = writer {
                let flush_by =
                    deadline.max(tokio::time::Instant::now() + Duration::from_millis(250));
                if tokio::time::timeout_at(flush_by, &mut h).await.is_err() {
                    h.abort();
                    if let Out::Tcp(o) = &c.0.out {
                        o.abort();
                    }
                }
            }
        }
        (closed, forced)
    }

    async fn reader_task<R: AsyncRead + Unpin>(&self, mut rd: R, c: &Conn) -> Result<()> {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut ra = Reassembler::new(self.core.cfg.max_message);
        let stop = c.0.stop.notified();
        tokio::pin!(stop);
        stop.as_mut().enable();
        let mut stop_seen = false;
        loop {
            while let Some(res) = decode_frame(&mut buf)? {
                match res {
                    Ok(m) => self.incoming(m, c, &mut ra).await,
                    Err(e) => {
                        debug!(conn = c.0.id, error = %e, "bad frame");
                        let err = Message::new(
                            MessageType::ERROR,
                            &b"ERROR"[..],
                            &b"invalid message"[..],
                        );
                        self.send_plain(c, &err).await;
                    }
                }
            }
            // Graceful close: stop once none of our requests waits for an answer here.
            if c.0.stopping.load(Ordering::Acquire) && lock(&c.0.pending).is_empty() {
                return Ok(());
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(64 * 1024);
            }
            tokio::select! {
                biased;
                r = rd.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Ok(());
                    }
                    c.0.rx_reads.fetch_add(1, Ordering::Relaxed);
                }
                _ = &mut stop, if !stop_seen => stop_seen = true,
            }
        }
    }

    async fn incoming(&self, m: Message, c: &Conn, ra: &mut Reassembler) {
        if m.auth.get(chunk::CHUNK_FIELD).is_some() {
            match ra.push(m) {
                Ok(Some(full)) => Box::pin(self.handle(full, c)).await,
                Ok(None) => {}
                Err(e) => debug!(conn = c.0.id, error = %e, "bad chunk"),
            }
        } else {
            self.handle(m, c).await
        }
    }

    /// Encode (chunking if needed and enabled) and queue on `c`.
    async fn send_encoded(&self, c: &Conn, m: &Message) -> Result<()> {
        match m.encode() {
            Ok(b) => c.send_vec(b).await,
            Err(MsgError::TooLarge { .. }) if self.core.cfg.chunking => {
                let id = rand::thread_rng().next_u64();
                for f in chunk::split(m, id)? {
                    c.send_vec(f).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn send_plain(&self, c: &Conn, m: &Message) {
        if let Err(e) = self.send_encoded(c, m).await {
            debug!(conn = c.0.id, error = %e, "send failed");
        }
    }

    fn peer_of(&self, c: &Conn) -> Option<Peer> {
        let pid = lock(&c.0.peer_id).clone()?;
        lock(&self.core.peers).get(&pid).cloned()
    }

    /// Seal `m` with inner then node plugins for `c` and send it.
    /// A closed client connection re-dials first when reconnect is on.
    pub async fn send_with(&self, c: &Conn, m: Message, inner: &Plugins) -> Result<()> {
        if c.0.dial.is_some() && c.is_closed() {
            self.ensure_open(c).await?;
        }
        if inner.is_empty() && self.core.cfg.plugins.is_empty() {
            return self.send_encoded(c, &m).await; // nothing to seal: no clock, no RNG
        }
        let peer = self.peer_of(c);
        let sealed = {
            let mut rng = rand::thread_rng();
            let mut cx = PluginCx {
                now_ms: now_ms(),
                rng: &mut rng,
                peer: peer.as_ref(),
            };
            let m = inner.seal(m, &mut cx)?;
            self.core.cfg.plugins.seal(m, &mut cx)?
        };
        self.send_encoded(c, &sealed).await
    }

    /// Seal `m` with the node plugins and send it on `c`.
    pub async fn send(&self, c: &Conn, m: Message) -> Result<()> {
        self.send_with(c, m, &Plugins::none()).await
    }

    async fn handle(&self, msg: Message, c: &Conn) {
        let peer = self.peer_of(c);
        let node_p = &self.core.cfg.plugins;
        // 1. node auth, 2. node cipher
        let opened = if node_p.is_empty() {
            Ok(Ok(msg))
        } else {
            let mut rng = rand::thread_rng();
            let mut cx = PluginCx {
                now_ms: now_ms(),
                rng: &mut rng,
                peer: peer.as_ref(),
            };
            match node_p.check(&msg, &mut cx) {
                Err(_) => Err(msg),
                Ok(()) => Ok(node_p.open(msg, &mut cx)),
            }
        };
        let msg = match opened {
            Err(msg) => {
                if msg.mtype.is_error() {
                    // Error replies travel without plugins: hand them to the waiting request.
                    self.deliver_unauthenticated_error(c, msg);
                    return;
                }
                let mut e = node_p
                    .auth
                    .as_ref()
                    .map(|a| a.error())
                    .unwrap_or_else(auth_failed);
                if let Some(rid) = msg.auth.get_bytes(RID_FIELD) {
                    e.auth.set_bytes(RID_FIELD, rid.to_vec());
                }
                self.send_plain(c, &e).await;
                return;
            }
            Ok(Err(e)) => {
                debug!(conn = c.0.id, error = %e, "decrypt failed; dropped");
                return;
            }
            Ok(Ok(m)) => m,
        };
        // 3. responses to our requests
        let msg = match self.complete_pending(c, msg, peer.as_ref()) {
            None => return,
            Some(m) => m,
        };
        // 4. route
        let keys = [
            c.0.remote
                .filter(|_| self.core.addr_keys.load(Ordering::Acquire))
                .map(|a| Key::TypeUriAddr(msg.mtype, msg.body.uri.clone(), a)),
            Some(Key::TypeUri(msg.mtype, msg.body.uri.clone())),
            Some(Key::Type(msg.mtype)),
        ];
        let entry = {
            let mut eph = lock(&self.core.ephemeral);
            let handlers = lock(&self.core.handlers);
            keys.iter().flatten().find_map(|k| {
                if !eph.is_empty()
                    && let Some(e) = eph.remove(k)
                {
                    return Some(e);
                }
                handlers.get(k).cloned()
            })
        };
        let rid = msg.auth.get_bytes(RID_FIELD).map(<[u8]>::to_vec);
        let mtype = msg.mtype;
        let (reply, inner) = match entry {
            None => {
                if !c.0.accepted || mtype.is_error() {
                    return;
                }
                let uri: &'static [u8] = if matches!(c.0.out, Out::Udp(_)) {
                    b"ERROR"
                } else {
                    b""
                };
                (
                    Some(Message::new(MessageType::NOT_FOUND, uri, &b"not found"[..])),
                    Plugins::none(),
                )
            }
            Some(e) => {
                let checked = if e.plugins.is_empty() {
                    Ok(Ok(msg))
                } else {
                    let mut rng = rand::thread_rng();
                    let mut cx = PluginCx {
                        now_ms: now_ms(),
                        rng: &mut rng,
                        peer: peer.as_ref(),
                    };
                    match e.plugins.check(&msg, &mut cx) {
                        Err(err) => Err(err),
                        Ok(()) => Ok(e.plugins.open(msg, &mut cx)),
                    }
                };
                let msg = match checked {
                    Err(_) => {
                        if !mtype.is_error() {
                            let mut er = e
                                .plugins
                                .auth
                                .as_ref()
                                .map(|a| a.error())
                                .unwrap_or_else(auth_failed);
                            if let Some(r) = &rid {
                                er.auth.set_bytes(RID_FIELD, r.clone());
                            }
                            self.send_plain(c, &er).await;
                        }
                        return;
                    }
                    Ok(Err(err)) => {
                        debug!(conn = c.0.id, error = %err, "inner decrypt failed; dropped");
                        return;
                    }
                    Ok(Ok(m)) => m,
                };
                let req = Request {
                    msg,
                    from: c.0.remote,
                    conn: c.clone(),
                    node: self.clone(),
                    peer,
                };
                ((e.handler)(req).await, e.plugins)
            }
        };
        if let Some(mut r) = reply {
            if let Some(rid) = rid
                && r.auth.get(RID_FIELD).is_none()
            {
                r.auth.set_bytes(RID_FIELD, rid);
            }
            if let Err(e) = self.send_with(c, r, &inner).await {
                debug!(conn = c.0.id, error = %e, "reply failed");
            }
        }
    }

    fn deliver_unauthenticated_error(&self, c: &Conn, m: Message) {
        let p = {
            let mut q = lock(&c.0.pending);
            let idx = match rid_of(&m) {
                Some(r) => q.iter().position(|p| p.rid == Some(r)),
                None => q.iter().position(|p| {
                    p.uri == m.body.uri || m.body.uri.as_ref() == b"ERROR" || m.body.uri.is_empty()
                }),
            };
            idx.and_then(|i| q.remove(i))
        };
        if let Some(p) = p {
            let _ = p.tx.send(Err(remote_err(&m)));
        }
    }

    /// If `m` answers a pending request on `c`, complete it and return None.
    fn complete_pending(&self, c: &Conn, m: Message, peer: Option<&Peer>) -> Option<Message> {
        let p = {
            let mut q = lock(&c.0.pending);
            if q.is_empty() {
                return Some(m);
            }
            let idx = match rid_of(&m) {
                Some(r) => q.iter().position(|p| p.rid == Some(r)),
                None => q
                    .iter()
                    .position(|p| {
                        p.uri == m.body.uri && (m.mtype == p.ok_type || m.mtype.is_error())
                    })
                    .or_else(|| {
                        (m.mtype.is_error()
                            && (m.body.uri.as_ref() == b"ERROR" || m.body.uri.is_empty()))
                        .then_some(0)
                    }),
            };
            match idx.and_then(|i| q.remove(i)) {
                Some(p) => p,
                None => return Some(m),
            }
        };
        let res = if m.mtype.is_error() && p.inner.is_empty() {
            Err(remote_err(&m))
        } else if p.inner.is_empty() {
            Ok(m)
        } else {
            let mut rng = rand::thread_rng();
            let mut cx = PluginCx {
                now_ms: now_ms(),
                rng: &mut rng,
                peer,
            };
            match p.inner.check(&m, &mut cx) {
                Err(_) if m.mtype.is_error() => Err(remote_err(&m)),
                Err(e) => Err(e),
                Ok(()) => p.inner.open(m, &mut cx).and_then(|m| {
                    if m.mtype.is_error() {
                        Err(remote_err(&m))
                    } else {
                        Ok(m)
                    }
                }),
            }
        };
        let _ = p.tx.send(res);
        None
    }

    /// Send a request and wait for its answer: RESPOND_URI for REQUEST_URI, OK for other
    /// types. Error replies (ERROR, AUTH_ERROR, NOT_FOUND, NOT_PERMITTED) come back as
    /// [`MsgError::Remote`], not as timeouts.
    ///
    /// Handlers run on their connection's reader task (in order, which gives backpressure):
    /// inside a handler, do not await a request on the *same* connection; spawn it instead.
    pub async fn request(
        &self,
        c: &Conn,
        mtype: MessageType,
        uri: &[u8],
        content: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Message> {
        self.request_with(c, mtype, uri, content, timeout, Plugins::none())
            .await
    }

    /// [`Node::request`] with per-request inner plugins.
    ///
    /// On a client connection made with [`Node::connect`] and a [`Reconnect`] policy: a
    /// closed connection is re-dialled first (backoff between attempts); a `REQUEST_URI`
    /// whose connection closes before the answer is sent once more on a fresh connection
    /// (`retry_reads`); a timeout on a link that stayed silent resets it (`on_timeout`).
    pub async fn request_with(
        &self,
        c: &Conn,
        mtype: MessageType,
        uri: &[u8],
        content: &[u8],
        timeout: Option<Duration>,
        inner: Plugins,
    ) -> Result<Message> {
        if self.is_shut_down() {
            return Err(MsgError::Closed);
        }
        let policy = self
            .core
            .cfg
            .reconnect
            .as_ref()
            .filter(|_| c.0.dial.is_some());
        let mut retries = match policy {
            Some(p) if p.retry_reads && mtype == MessageType::REQUEST_URI => 1,
            _ => 0,
        };
        loop {
            self.ensure_open(c).await?;
            let reads_before = c.0.rx_reads.load(Ordering::Relaxed);
            match self
                .request_once(c, mtype, uri, content, timeout, &inner)
                .await
            {
                Err(MsgError::Closed) if retries > 0 && !c.0.no_redial.load(Ordering::Acquire) => {
                    retries -= 1;
                }
                Err(MsgError::Timeout(d)) => {
                    if policy.is_some_and(|p| p.on_timeout)
                        && c.0.rx_reads.load(Ordering::Relaxed) == reads_before
                        && !c.is_closed()
                    {
                        debug!(
                            conn = c.0.id,
                            "request timed out on a silent link; resetting"
                        );
                        self.reset_link(c);
                    }
                    return Err(MsgError::Timeout(d));
                }
                r => return r,
            }
        }
    }

    async fn request_once(
        &self,
        c: &Conn,
        mtype: MessageType,
        uri: &[u8],
        content: &[u8],
        timeout: Option<Duration>,
        inner: &Plugins,
    ) -> Result<Message> {
        let timeout = timeout.unwrap_or(self.core.cfg.timeout);
        let mut m = Message::new(
            mtype,
            Bytes::copy_from_slice(uri),
            Bytes::copy_from_slice(content),
        );
        let rid = self.core.cfg.request_ids.then(|| {
            let mut r = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut r);
            r
        });
        if let Some(r) = rid {
            m.auth.set_bytes(RID_FIELD, r.to_vec());
        }
        let ok_type = if mtype == MessageType::REQUEST_URI {
            MessageType::RESPOND_URI
        } else {
            MessageType::OK
        };
        let (tx, rx) = oneshot::channel();
        lock(&c.0.pending).push_back(Pending {
            rid,
            uri: m.body.uri.clone(),
            ok_type,
            inner: inner.clone(),
            tx,
        });
        // The link may have closed between the caller's check and our push (its pending
        // queue was already failed): do not wait for an answer that cannot come.
        if c.is_closed() {
            drop(rx);
            self.forget(c, rid);
            return Err(MsgError::Closed);
        }
        let sent = self.send_with(c, m, inner).await;
        if let Err(e) = sent {
            drop(rx);
            self.forget(c, rid);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(MsgError::Closed),
            Err(_) => {
                self.forget(c, rid);
                Err(MsgError::Timeout(timeout))
            }
        }
    }

    /// Remove a request that gave up (its receiver must be dropped first), and any other
    /// entry whose requester is gone, so that no stale entry can swallow a later answer
    /// (without ids answers are matched first-in first-out per URI).
    fn forget(&self, c: &Conn, rid: Option<[u8; 8]>) {
        let mut q = lock(&c.0.pending);
        q.retain(|p| !p.tx.is_closed() && (rid.is_none() || p.rid != rid));
    }

    /// CREATE_URI request.
    pub async fn create(&self, c: &Conn, uri: &[u8], content: &[u8]) -> Result<Message> {
        self.request(c, MessageType::CREATE_URI, uri, content, None)
            .await
    }
    /// UPDATE_URI request.
    pub async fn update(&self, c: &Conn, uri: &[u8], content: &[u8]) -> Result<Message> {
        self.request(c, MessageType::UPDATE_URI, uri, content, None)
            .await
    }
    /// DELETE_URI request.
    pub async fn delete(&self, c: &Conn, uri: &[u8], content: &[u8]) -> Result<Message> {
        self.request(c, MessageType::DELETE_URI, uri, content, None)
            .await
    }

    /// Subscribe `c` to `key` (idempotent).
    pub fn subscribe(&self, key: &[u8], c: &Conn) {
        let mut s = lock(&self.core.subs);
        let v = s.entry(Bytes::copy_from_slice(key)).or_default();
        if !v.contains(c) {
            v.push(c.clone());
        }
    }
    /// Unsubscribe `c` from `key`; unknown subscribers are ignored (netaio closes the conn).
    pub fn unsubscribe(&self, key: &[u8], c: &Conn) {
        let mut s = lock(&self.core.subs);
        if let Some(v) = s.get_mut(key) {
            v.retain(|x| x != c);
            if v.is_empty() {
                s.remove(key);
            }
        }
    }
    fn remove_subscriber(&self, c: &Conn) {
        let mut s = lock(&self.core.subs);
        s.retain(|_, v| {
            v.retain(|x| x != c);
            !v.is_empty()
        });
    }
    /// Current subscribers of `key`.
    pub fn subscribers(&self, key: &[u8]) -> Vec<Conn> {
        lock(&self.core.subs).get(key).cloned().unwrap_or_default()
    }

    /// Send `m` to every subscriber of `key`; returns how many were sent to. The message is
    /// sealed once unless a plugin is per-peer.
    pub async fn notify(&self, key: &[u8], m: Message) -> Result<usize> {
        let targets = self.subscribers(key);
        self.send_many(&targets, m).await
    }

    /// Send `m` to every open connection (and, for UDP, every known peer).
    pub async fn broadcast(&self, m: Message) -> Result<usize> {
        let mut targets: Vec<Conn> = lock(&self.core.conns).values().cloned().collect();
        targets.extend(self.udp_peer_conns());
        self.send_many(&targets, m).await
    }

    async fn send_many(&self, targets: &[Conn], m: Message) -> Result<usize> {
        if targets.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        if self.core.cfg.plugins.is_peer_specific() {
            for c in targets {
                if self.send(c, m.clone()).await.is_ok() {
                    n += 1;
                }
            }
            return Ok(n);
        }
        let sealed = {
            let mut rng = rand::thread_rng();
            let mut cx = PluginCx {
                now_ms: now_ms(),
                rng: &mut rng,
                peer: None,
            };
            self.core.cfg.plugins.seal(m, &mut cx)?
        };
        for c in targets {
            if self.send_encoded(c, &sealed).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Open connections.
    pub fn connections(&self) -> Vec<Conn> {
        lock(&self.core.conns).values().cloned().collect()
    }

    /// Known peers.
    pub fn peers(&self) -> Vec<Peer> {
        lock(&self.core.peers).values().cloned().collect()
    }
    /// The local peer, when peer management is on.
    pub fn local_peer(&self) -> Option<&Peer> {
        self.core.local_peer.as_ref()
    }
    pub(crate) fn add_peer(&self, mut p: Peer, c: &Conn) {
        p.last_rx_ms = now_ms();
        if let Some(a) = c.0.remote
            && !p.addrs.contains(&a)
        {
            p.addrs.push(a);
        }
        *lock(&c.0.peer_id) = Some(p.id.clone());
        lock(&self.core.peers).insert(p.id.clone(), p);
    }
    pub(crate) fn remove_peer(&self, id: &[u8]) {
        let removed = lock(&self.core.peers).remove(id);
        if removed.is_some() {
            let conns: Vec<Conn> = self
                .all_conns()
                .into_iter()
                .filter(|c| lock(&c.0.peer_id).as_deref() == Some(id))
                .collect();
            for c in conns {
                *lock(&c.0.peer_id) = None;
                self.remove_subscriber(&c);
            }
        }
    }
    fn all_conns(&self) -> Vec<Conn> {
        let mut v: Vec<Conn> = lock(&self.core.conns).values().cloned().collect();
        if let Some(u) = lock(&self.core.udp).as_ref() {
            v.extend(u.by_addr.values().cloned());
        }
        v
    }
    /// Drop peers not heard from within `peer_timeout` (sub-second precision).
    pub fn expire_peers(&self) -> usize {
        let limit = self.core.cfg.peer_timeout.as_millis() as u64;
        let now = now_ms();
        let old: Vec<Bytes> = lock(&self.core.peers)
            .values()
            .filter(|p| now.saturating_sub(p.last_rx_ms) > limit)
            .map(|p| p.id.clone())
            .collect();
        for id in &old {
            self.remove_peer(id);
        }
        old.len()
    }

    // ---------------------------------------------------------------- UDP

    /// Bind a UDP socket (IPv4/IPv6, `SO_REUSEADDR` + `SO_REUSEPORT` so several nodes share a
    /// host and port) and start receiving. Returns the bound address.
    pub async fn bind_udp(&self, addr: SocketAddr) -> Result<SocketAddr> {
        let s = crate::udp::reuse_socket(addr)?;
        self.run_udp(s).await
    }

    /// Use an already configured UDP socket (e.g. with multicast membership).
    pub async fn run_udp(&self, s: std::net::UdpSocket) -> Result<SocketAddr> {
        s.set_nonblocking(true)?;
        let sock = Arc::new(UdpSocket::from_std(s)?);
        let local = sock.local_addr()?;
        *lock(&self.core.udp) = Some(UdpState {
            sock: sock.clone(),
            by_addr: HashMap::new(),
            task: None,
        });
        let node = self.clone();
        let task = tokio::spawn(async move { node.udp_loop(sock).await });
        if let Some(u) = lock(&self.core.udp).as_mut() {
            u.task = Some(task);
        }
        Ok(local)
    }

    /// Stop receiving on the UDP socket and close it (the node goes silent on UDP).
    pub fn close_udp(&self) {
        if let Some(u) = lock(&self.core.udp).take()
            && let Some(t) = u.task
        {
            t.abort();
        }
    }

    /// The virtual connection for a UDP remote address.
    pub fn udp_conn(&self, addr: SocketAddr) -> Result<Conn> {
        let mut g = lock(&self.core.udp);
        let u = g.as_mut().ok_or(MsgError::Plugin("no UDP socket bound"))?;
        if let Some(c) = u.by_addr.get(&addr) {
            return Ok(c.clone());
        }
        if u.by_addr.len() >= 4096 {
            // Bounded: forget addresses that are not peers.
            u.by_addr.retain(|_, c| lock(&c.0.peer_id).is_some());
        }
        let c = Conn(Arc::new(ConnInner::new(
            self.core.next_id.fetch_add(1, Ordering::Relaxed),
            Some(addr),
            Out::Udp(u.sock.clone()),
            true,
            None,
        )));
        u.by_addr.insert(addr, c.clone());
        Ok(c)
    }

    fn udp_peer_conns(&self) -> Vec<Conn> {
        let addrs: Vec<SocketAddr> = lock(&self.core.peers)
            .values()
            .filter_map(|p| p.addrs.first().copied())
            .collect();
        if lock(&self.core.udp).is_none() {
            return Vec::new();
        }
        addrs
            .into_iter()
            .filter_map(|a| self.udp_conn(a).ok())
            .collect()
    }

    async fn udp_loop(self, sock: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65536];
        let mut ras: HashMap<SocketAddr, Reassembler> = HashMap::new();
        loop {
            let (n, from) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "udp recv");
                    continue;
                }
            };
            let Ok(c) = self.udp_conn(from) else { return };
            match Message::decode(buf.get(..n).unwrap_or_default()) {
                Ok(m) => {
                    if m.auth.get(chunk::CHUNK_FIELD).is_some() {
                        if ras.len() > 256 {
                            ras.clear();
                        }
                        let ra = ras
                            .entry(from)
                            .or_insert_with(|| Reassembler::new(self.core.cfg.max_message));
                        if let Ok(Some(full)) = ra.push(m) {
                            self.handle(full, &c).await;
                        }
                    } else {
                        self.handle(m, &c).await;
                    }
                }
                Err(_) => {
                    let err =
                        Message::new(MessageType::ERROR, &b"ERROR"[..], &b"invalid message"[..]);
                    self.send_plain(&c, &err).await;
                }
            }
        }
    }
}

fn auth_failed() -> Message {
    Message::new(MessageType::AUTH_ERROR, &b"ERROR"[..], &b"auth failed"[..])
}

fn remote_err(m: &Message) -> MsgError {
    MsgError::Remote {
        kind: m.mtype,
        content: String::from_utf8_lossy(&m.body.content).into_owned(),
    }
}

async fn writer_task<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut closing = false;
    while let Some(first) = rx.recv().await {
        // An empty frame is the close marker: flush what came before it, then FIN.
        closing |= first.is_empty();
        buf.extend_from_slice(&first);
        while buf.len() < 256 * 1024 && !closing {
            match rx.try_recv() {
                Ok(b) => {
                    closing |= b.is_empty();
                    buf.extend_from_slice(&b);
                }
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            break;
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = w.shutdown().await;
}

//! One driver task per connection around the sans-IO engine, the cheap [`Connection`] handle
//! and [`Stream`] (`AsyncRead + AsyncWrite`).
//!
//! The engine lives in a mutex shared by the driver and the handles (quinn's design): handles
//! call the engine directly (a write is bounded by flow-control credit, so the queue inside
//! the engine is the only buffer) and wake the driver, which moves bytes between the engine
//! and the transport and wakes handles on engine events.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use betanet_crypto::sign::VerifyingKey;
use betanet_htx::{
    Connection as Engine, ConnectionError, ErrorCode, Event, Stats, StreamError, StreamId,
};
use betanet_wire::caps::Selection;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::io::poll_read_buf;

use crate::error::NetError;

/// Size of a receive buffer.
const READ_CHUNK: usize = 192 * 1024;
/// Below this much free space the read buffer is renewed (frames handed to the engine keep
/// the old one alive until the application has read them).
const READ_MIN: usize = 64 * 1024;
/// Retired receive buffers kept for reuse once the engine has released them: enough for
/// the unread data a 4 MiB stream window lets in (≈ 21 buffers), so a bulk transfer reuses
/// buffers instead of faulting in fresh pages (16 left a third of the reads in new memory).
const READ_SPARES: usize = 32;
/// How long the driver keeps its I/O buffers after the last byte moved.
const BUFFER_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes of frames the driver asks the engine for at once.
const WRITE_CHUNK: usize = 512 * 1024;

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    driver: Option<Waker>,
    readers: HashMap<u32, Waker>,
    writers: HashMap<u32, Waker>,
    accept_queue: VecDeque<StreamId>,
    accept_waker: Option<Waker>,
    resets: HashMap<u32, ErrorCode>,
    error: Option<ConnectionError>,
    connected: Option<(VerifyingKey, Selection, bool)>,
    waiters: Vec<Waker>,
    finished: bool,
    /// Live handles (connections and streams); the connection closes when it reaches 0.
    handles: usize,
    /// Extra counters kept by the carriage (e.g. TLS bytes).
    pub(crate) carriage: &'static str,
}

impl Inner {
    fn wake_driver(&mut self) {
        if let Some(w) = &self.driver {
            w.wake_by_ref();
        }
    }

    fn wake_all(&mut self) {
        for (_, w) in self.readers.drain() {
            w.wake();
        }
        for (_, w) in self.writers.drain() {
            w.wake();
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    fn dispatch_events(&mut self) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::Connected {
                    peer,
                    selection,
                    post_quantum,
                } => {
                    self.connected = Some((peer, selection, post_quantum));
                    for w in self.waiters.drain(..) {
                        w.wake();
                    }
                }
                Event::StreamOpened(id) => {
                    self.accept_queue.push_back(id);
                    if let Some(w) = self.accept_waker.take() {
                        w.wake();
                    }
                }
                Event::StreamReadable(id) => {
                    if let Some(w) = self.readers.remove(&id.0) {
                        w.wake();
                    }
                }
                Event::StreamWritable(id) => {
                    if let Some(w) = self.writers.remove(&id.0) {
                        w.wake();
                    }
                }
                Event::StreamReset(id, code) => {
                    self.resets.insert(id.0, code);
                    if let Some(w) = self.readers.remove(&id.0) {
                        w.wake();
                    }
                    if let Some(w) = self.writers.remove(&id.0) {
                        w.wake();
                    }
                }
                Event::Closed(e) => {
                    tracing::debug!(error = %e, "connection closed");
                    if self.error.is_none() {
                        self.error = Some(e);
                    }
                    self.wake_all();
                }
                _ => {}
            }
        }
    }

    fn conn_error(&self) -> ConnectionError {
        self.error
            .clone()
            .unwrap_or(ConnectionError::TransportClosed)
    }
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.lock();
        if inner.finished {
            return Poll::Ready(());
        }
        inner.waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// The carriage under the engine is gone (e.g. the HTTP/2 connection ended).
    pub(crate) fn transport_gone(&self) {
        let mut inner = self.lock();
        inner.engine.handle_transport_closed(Instant::now());
        inner.dispatch_events();
        inner.wake_driver();
    }

    pub(crate) fn close(&self, code: ErrorCode, reason: &str) {
        let mut inner = self.lock();
        inner.engine.close(code, reason, Instant::now());
        inner.dispatch_events();
        inner.wake_driver();
    }

    pub(crate) fn bn_ticket_token(&self, ctx: &str) -> Option<[u8; 120]> {
        self.lock().engine.bn_ticket_token(ctx)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock poisons it; the state is still consistent enough to
        // report errors, so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Creates the shared state and the driver future for an engine over `io`.
pub(crate) fn spawn_driver<T>(engine: Engine, io: T, carriage: &'static str) -> Arc<Shared>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            engine,
            driver: None,
            readers: HashMap::new(),
            writers: HashMap::new(),
            accept_queue: VecDeque::new(),
            accept_waker: None,
            resets: HashMap::new(),
            error: None,
            connected: None,
            waiters: Vec::new(),
            finished: false,
            handles: 0,
            carriage,
        }),
    });
    let vectored = io.is_write_vectored();
    let driver = Driver {
        io,
        shared: shared.clone(),
        rbuf: None,
        spares: VecDeque::new(),
        wbuf: Vec::new(),
        wpos: 0,
        vectored,
        wq: VecDeque::new(),
        written: Vec::new(),
        timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
        timer_at: None,
        eof: false,
        need_flush: false,
        shutdown: false,
        last_io: Instant::now(),
    };
    tokio::spawn(driver);
    shared
}

struct Driver<T> {
    io: T,
    shared: Arc<Shared>,
    /// The engine's receive buffer, lent while a read is pending: bytes are read straight
    /// into it and the engine cuts frames out of it and opens them in place, so received
    /// bytes are not copied before the application reads them.
    rbuf: Option<BytesMut>,
    /// Retired receive buffers, reused once every frame cut out of them is gone.
    spares: VecDeque<BytesMut>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// The transport takes vectored writes (a TCP socket): frames come out of the engine as
    /// separate buffers, each STREAM frame sealed in place where the application's bytes
    /// were first copied, and go to the kernel in one `writev` (no copy into `wbuf`).
    vectored: bool,
    /// Buffers waiting for the transport (vectored mode); the front one may be partly sent.
    wq: VecDeque<Bytes>,
    /// Buffers written, handed back to the engine's pool with the next engine call.
    written: Vec<Bytes>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    eof: bool,
    need_flush: bool,
    shutdown: bool,
    /// Last time bytes moved; the I/O buffers are released 1 s after it.
    last_io: Instant,
}

/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Driver<T> {
    /// Vectored output: takes frames from the engine as buffers and writes them with
    /// `poll_write_vectored` until the transport would block or nothing is left; returns
    /// whether bytes moved.
    fn write_vectored(&mut self, cx: &mut Context<'_>, shared: &Shared) -> bool {
        let mut progress = false;
        loop {
            if self.wq.is_empty() {
                let mut inner = shared.lock();
                for b in self.written.drain(..) {
                    inner.engine.recycle(b);
                }
                let n = inner
                    .engine
                    .poll_transmit_bufs(Instant::now(), &mut self.wq, WRITE_CHUNK);
                inner.dispatch_events();
                drop(inner);
                if n == 0 {
                    break;
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (s, b) in slices.iter_mut().zip(self.wq.iter()) {
                *s = IoSlice::new(b);
                count += 1;
            }
            let bufs = slices.get(..count).unwrap_or_default();
            match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.eof = true;
                    self.shutdown = true;
                    self.wq.clear();
                    let mut inner = shared.lock();
                    inner.engine.handle_transport_closed(Instant::now());
                    inner.dispatch_events();
                    break;
                }
                Poll::Ready(Ok(mut n)) => {
                    self.last_io = Instant::now();
                    self.need_flush = true;
                    progress = true;
                    while n > 0 {
                        let Some(front) = self.wq.front_mut() else {
                            break;
                        };
                        if front.len() <= n {
                            n -= front.len();
                            if let Some(b) = self.wq.pop_front() {
                                self.written.push(b);
                            }
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Poll::Pending => break,
            }
        }
        if self.need_flush && Pin::new(&mut self.io).poll_flush(cx).is_ready() {
            self.need_flush = false;
        }
        progress
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Future for Driver<T> {
    type Output = ();

    /// The engine lock is held only around engine calls, never across socket I/O, so stream
    /// handles on other worker threads are not blocked behind system calls.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        {
            let mut inner = shared.lock();
            if !inner
                .driver
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.driver = Some(cx.waker().clone());
            }
        }
        let mut budget = 64;
        loop {
            let mut progress = false;
            // 1. Input: one read, then the engine.
            if !this.eof {
                let rbuf = match this.rbuf.as_mut() {
                    Some(b) => b,
                    None => {
                        let mut b = shared.lock().engine.take_input_buffer();
                        renew(&mut b, &mut this.spares);
                        this.rbuf.insert(b)
                    }
                };
                let got = match poll_read_buf(Pin::new(&mut this.io), cx, rbuf) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => None,
                };
                match got {
                    Some(Ok(0)) | Some(Err(_)) => {
                        if let Some(Err(e)) = &got {
                            tracing::debug!(error = %e, "transport read failed");
                        }
                        this.eof = true;
                        let mut inner = shared.lock();
                        inner.engine.handle_transport_closed(Instant::now());
                        inner.dispatch_events();
                        progress = true;
                    }
                    Some(Ok(_)) => {
                        let data = this.rbuf.take().unwrap_or_default();
                        this.last_io = Instant::now();
                        let mut inner = shared.lock();
                        inner.engine.handle_input_owned(data, this.last_io);
                        inner.dispatch_events();
                        progress = true;
                    }
                    None => {}
                }
            }
            // 2. Timers.
            {
                let now = Instant::now();
                let mut inner = shared.lock();
                if inner.engine.poll_timeout().is_some_and(|t| t <= now) {
                    inner.engine.handle_timeout(now);
                    inner.dispatch_events();
                    progress = true;
                }
            }
            // 3. Output: frames from the engine, then the socket.
            if !this.shutdown && this.vectored {
                progress |= this.write_vectored(cx, &shared);
            } else if !this.shutdown {
                loop {
                    if this.wpos == this.wbuf.len() {
                        this.wbuf.clear();
                        this.wpos = 0;
                        if this.wbuf.capacity() == 0 {
                            this.wbuf.reserve(WRITE_CHUNK + 70 * 1024);
                        }
                        let mut inner = shared.lock();
                        let n =
                            inner
                                .engine
                                .poll_transmit(Instant::now(), &mut this.wbuf, WRITE_CHUNK);
                        inner.dispatch_events();
                        drop(inner);
                        if n == 0 {
                            break;
                        }
                    }
                    let pending = this.wbuf.get(this.wpos..).unwrap_or_default();
                    match Pin::new(&mut this.io).poll_write(cx, pending) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                            this.eof = true;
                            this.shutdown = true;
                            this.wbuf.clear();
                            this.wpos = 0;
                            let mut inner = shared.lock();
                            inner.engine.handle_transport_closed(Instant::now());
                            inner.dispatch_events();
                            break;
                        }
                        Poll::Ready(Ok(n)) => {
                            this.last_io = Instant::now();
                            this.wpos += n;
                            this.need_flush = true;
                            progress = true;
                        }
                        Poll::Pending => break,
                    }
                }
                if this.need_flush && Pin::new(&mut this.io).poll_flush(cx).is_ready() {
                    this.need_flush = false;
                }
            }
            // 4. Done?
            let closed = shared.lock().engine.is_closed();
            if closed && ((this.wpos == this.wbuf.len() && this.wq.is_empty()) || this.shutdown) {
                if !this.shutdown {
                    if Pin::new(&mut this.io).poll_shutdown(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.shutdown = true;
                }
                let mut inner = shared.lock();
                inner.finished = true;
                if inner.error.is_none() {
                    inner.error = Some(ConnectionError::TransportClosed);
                }
                inner.driver = None;
                inner.wake_all();
                return Poll::Ready(());
            }
            if !progress {
                break;
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        // Idle for a while: release the big buffers (memory per idle connection). Keeping
        // them during a busy period avoids allocator churn (page faults) per wake-up.
        let now = Instant::now();
        let holding = this.rbuf.is_some()
            || !this.spares.is_empty()
            || this.wbuf.capacity() > 0
            || !this.written.is_empty();
        let release_at = this.last_io + BUFFER_LINGER;
        if holding && now >= release_at && this.wpos == this.wbuf.len() && this.wq.is_empty() {
            this.wbuf = Vec::new();
            this.written = Vec::new();
            this.wpos = 0;
            if let Some(b) = this.rbuf.take() {
                // Back to the engine without the big allocation (a partial frame at most).
                let small = BytesMut::from(b.as_ref());
                shared.lock().engine.handle_input_owned(small, now);
            }
            this.spares = VecDeque::new();
            shared.lock().engine.release_buffers();
        }
        let holding = this.rbuf.is_some()
            || !this.spares.is_empty()
            || this.wbuf.capacity() > 0
            || !this.written.is_empty();
        // 5. Timer (the engine's, or the buffer release).
        let engine_next = shared.lock().engine.poll_timeout();
        let next = match (engine_next, holding) {
            (Some(t), true) => Some(t.min(release_at)),
            (None, true) => Some(release_at),
            (t, false) => t,
        };
        match next {
            Some(t) => {
                if this.timer_at != Some(t) {
                    this.timer_at = Some(t);
                    this.timer.as_mut().reset(tokio::time::Instant::from_std(t));
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.timer_at = None;
                    cx.waker().wake_by_ref();
                }
            }
            None => this.timer_at = None,
        }
        Poll::Pending
    }
}

/// Makes sure `buf` (holding the start of a partial frame) has room for a read: reclaims it
/// if the engine is done with the frames cut out of it, else moves its contents into a
/// retired buffer that is free again (or a new one) and retires it.
fn renew(buf: &mut BytesMut, spares: &mut VecDeque<BytesMut>) {
    if buf.capacity() - buf.len() >= READ_MIN || buf.try_reclaim(READ_CHUNK - buf.len()) {
        return;
    }
    let want = READ_CHUNK.max(buf.len() + READ_MIN);
    let fresh = spares
        .iter_mut()
        .position(|s| s.try_reclaim(want))
        .and_then(|i| spares.remove(i));
    let mut fresh = fresh.unwrap_or_else(|| BytesMut::with_capacity(want));
    fresh.extend_from_slice(buf);
    let mut old = std::mem::replace(buf, fresh);
    old.clear();
    if spares.len() >= READ_SPARES {
        spares.pop_front();
    }
    spares.push_back(old);
}

/// Keeps the connection open while any handle lives.
struct HandleGuard {
    shared: Arc<Shared>,
}

impl HandleGuard {
    fn new(shared: Arc<Shared>) -> Arc<HandleGuard> {
        shared.lock().handles += 1;
        Arc::new(HandleGuard { shared })
    }
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.handles -= 1;
        if inner.handles == 0 {
            inner.engine.close(ErrorCode::Ok, "", Instant::now());
            inner.dispatch_events();
            inner.wake_driver();
        }
    }
}

/// An established HTX connection (cheap to clone). The connection closes (CLOSE 0) when the
/// last clone and the last [`Stream`] are dropped, or on [`Connection::close`].
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    guard: Arc<HandleGuard>,
    peer: VerifyingKey,
    selection: Selection,
    post_quantum: bool,
    h2: Option<Arc<crate::tls::H2Side>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("l2", &self.selection.l2)
            .finish_non_exhaustive()
    }
}

/// Waits until the handshake is done; returns the connection handle.
pub(crate) async fn established(shared: Arc<Shared>) -> Result<Connection, NetError> {
    let guard = HandleGuard::new(shared.clone());
    let ready = std::future::poll_fn(|cx| {
        let mut inner = shared.lock();
        if let Some(c) = inner.connected.clone() {
            return Poll::Ready(Ok(c));
        }
        if inner.error.is_some() || inner.finished {
            return Poll::Ready(Err(inner.conn_error()));
        }
        inner.waiters.push(cx.waker().clone());
        Poll::Pending
    })
    .await;
    match ready {
        Ok((peer, selection, post_quantum)) => Ok(Connection {
            shared,
            guard,
            peer,
            selection,
            post_quantum,
            h2: None,
        }),
        Err(e) => Err(NetError::from_handshake(e)),
    }
}

/// Connection counters (a snapshot).
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    /// The engine's counters (bytes, frames, rekeys, RTT).
    pub htx: Stats,
    /// The carriage (`tcp12`, `tls`, ...).
    pub carriage: &'static str,
    /// Streams alive in the engine.
    pub open_streams: usize,
    /// Latest RTT sample (a PING and its echo), if any PING was answered yet.
    pub rtt: Option<Duration>,
    /// Smoothed RTT (RFC 6298 style, α = 1/8), if any PING was answered yet.
    pub srtt: Option<Duration>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in UNITS.iter().skip(1) {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "n/a".to_owned(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

impl ConnectionStats {
    /// The counters as one human-readable line (for `betanet stream --stats` and logs), e.g.
    /// `tls: sent 1.0 MiB / 17 frames (data 1.0 MiB), received 1.0 MiB / 21 frames (data
    /// 1.0 MiB), rekeys 0 sent / 0 received, rtt 0.21 ms (smoothed 0.21 ms, 1 pings), 0 open
    /// streams`.
    #[must_use]
    pub fn summary(&self) -> String {
        let h = &self.htx;
        format!(
            "{}: sent {} / {} frames (data {}), received {} / {} frames (data {}), rekeys {} sent \
             / {} received, rtt {} (smoothed {}, {} pings), {} open streams",
            if self.carriage.is_empty() {
                "htx"
            } else {
                self.carriage
            },
            human_bytes(h.bytes_sent),
            h.frames_sent,
            human_bytes(h.stream_bytes_sent),
            human_bytes(h.bytes_received),
            h.frames_received,
            human_bytes(h.stream_bytes_received),
            h.rekeys_sent,
            h.rekeys_received,
            ms(self.rtt),
            ms(self.srtt),
            h.pings_sent,
            self.open_streams,
        )
    }
}

impl std::fmt::Display for ConnectionStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl Connection {
    pub(crate) fn set_h2(&mut self, h2: crate::tls::H2Side) {
        self.h2 = Some(Arc::new(h2));
    }

    /// TLS carriage only: sends a later request of this session on the same HTTP/2
    /// connection with a fresh `BN-Ticket` header (`ctx = r<counter>`, SPEC §4.3); returns the
    /// status (204 from a Betanet front that accepted the ticket, the decoy's answer
    /// otherwise).
    pub async fn ticketed_request(&self, path: &str) -> Result<http::StatusCode, NetError> {
        let h2 = self
            .h2
            .as_ref()
            .ok_or_else(|| NetError::Config("ticketed requests need the tls carriage".into()))?;
        let ctx = format!("r{}", h2.next_ctx());
        let tok = self
            .bn_ticket_token(&ctx)
            .ok_or_else(|| NetError::Config("no session keys yet".into()))?;
        let value = betanet_wire::ticket_header::BnTicket {
            tok,
            ctx: Some(ctx),
        }
        .to_header_value()
        .map_err(|e| NetError::Carriage(e.to_string()))?;
        h2.request(path, &value).await
    }

    /// TLS carriage only: a later request with an arbitrary `BN-Ticket` header value (for
    /// tools and tests of the front's checks).
    pub async fn request_with_ticket_header(
        &self,
        path: &str,
        value: &str,
    ) -> Result<http::StatusCode, NetError> {
        let h2 = self
            .h2
            .as_ref()
            .ok_or_else(|| NetError::Config("ticketed requests need the tls carriage".into()))?;
        h2.request(path, value).await
    }

    /// TLS carriage only: whether this connection was chosen for the HTTP/2 PRIORITY cover
    /// frame (SPEC §4.1) and so sent one after its SETTINGS; `None` on other carriages and
    /// on the listening side.
    #[must_use]
    pub fn h2_priority_sent(&self) -> Option<bool> {
        self.h2.as_ref().map(|h| h.priority_sent)
    }

    /// The peer's verified Ed25519 key.
    #[must_use]
    pub fn peer_identity(&self) -> &VerifyingKey {
        &self.peer
    }

    /// The capability selection.
    #[must_use]
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Whether the ML-KEM-768 hybrid protected the handshake.
    #[must_use]
    pub fn is_post_quantum(&self) -> bool {
        self.post_quantum
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> ConnectionStats {
        let inner = self.shared.lock();
        let htx = inner.engine.stats();
        ConnectionStats {
            rtt: htx.rtt,
            srtt: htx.srtt,
            htx,
            carriage: inner.carriage,
            open_streams: inner.engine.stream_count(),
        }
    }

    /// Opens a stream.
    pub fn open_stream(&self) -> Result<Stream, NetError> {
        let mut inner = self.shared.lock();
        if let Some(e) = &inner.error {
            return Err(NetError::Connection(e.clone()));
        }
        let id = inner.engine.open_stream()?;
        drop(inner);
        Ok(Stream::new(self.shared.clone(), self.guard.clone(), id))
    }

    /// Waits for the peer to open a stream.
    pub async fn accept_stream(&self) -> Result<Stream, NetError> {
        let id = std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if let Some(id) = inner.accept_queue.pop_front() {
                return Poll::Ready(Ok(id));
            }
            if inner.error.is_some() || inner.finished {
                return Poll::Ready(Err(NetError::Connection(inner.conn_error())));
            }
            inner.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(Stream::new(self.shared.clone(), self.guard.clone(), id))
    }

    /// Closes the connection with `code` (CLOSE on stream 0 and the drain).
    pub fn close(&self, code: ErrorCode, reason: &str) {
        let mut inner = self.shared.lock();
        inner.engine.close(code, reason, Instant::now());
        inner.dispatch_events();
        inner.wake_driver();
    }

    /// Asks for a KEY_UPDATE.
    pub fn key_update(&self) {
        let mut inner = self.shared.lock();
        inner.engine.key_update();
        inner.wake_driver();
    }

    /// Sends a PING (liveness and an RTT sample in the stats).
    pub fn ping(&self) -> bool {
        let mut inner = self.shared.lock();
        let ok = inner.engine.ping(Instant::now());
        inner.wake_driver();
        ok
    }

    /// The `BN-Ticket` token of this session for `ctx` (SPEC §4.3).
    #[must_use]
    pub fn bn_ticket_token(&self, ctx: &str) -> Option<[u8; 120]> {
        self.shared.lock().engine.bn_ticket_token(ctx)
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.shared.lock().error.clone()
    }

    /// Waits until the connection has ended (after the drain); returns why.
    pub async fn closed(&self) -> ConnectionError {
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.finished {
                return Poll::Ready(inner.conn_error());
            }
            inner.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// One bidirectional HTX stream. `AsyncRead` ends at the peer's FIN; `poll_shutdown` sends
/// our FIN. Dropping it finishes the sending half and discards unread data.
pub struct Stream {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
    id: StreamId,
    read_done: bool,
    write_done: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn stream_io_error(e: StreamError, inner: &Inner) -> io::Error {
    match e {
        StreamError::NotOpen => {
            io::Error::new(io::ErrorKind::ConnectionAborted, inner.conn_error())
        }
        StreamError::Reset { .. } => io::Error::new(io::ErrorKind::ConnectionReset, e),
        other => io::Error::new(io::ErrorKind::BrokenPipe, other),
    }
}

impl Stream {
    fn new(shared: Arc<Shared>, guard: Arc<HandleGuard>, id: StreamId) -> Stream {
        Stream {
            shared,
            _guard: guard,
            id,
            read_done: false,
            write_done: false,
        }
    }

    /// The stream id (odd: opened by the dialer).
    #[must_use]
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Abandons the stream in both directions (CLOSE with `code` on it).
    pub fn reset(&mut self, code: ErrorCode) {
        let mut inner = self.shared.lock();
        let _ = inner.engine.reset(self.id, code);
        self.read_done = true;
        self.write_done = true;
        inner.wake_driver();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_done {
            return Poll::Ready(Ok(()));
        }
        let mut inner = this.shared.lock();
        if let Some(code) = inner.resets.get(&this.id.0) {
            let e = StreamError::Reset {
                id: this.id.0,
                code: *code,
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e)));
        }
        match inner.engine.read(this.id, buf.initialize_unfilled()) {
            Ok((0, false)) => {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                inner.readers.insert(this.id.0, cx.waker().clone());
                Poll::Pending
            }
            Ok((n, fin)) => {
                buf.advance(n);
                if fin {
                    this.read_done = true;
                }
                // Only a read that made credit due (a WINDOW_UPDATE) or finished the stream
                // needs the driver: most reads of a bulk transfer wake nobody.
                if fin || inner.engine.wants_transmit() || inner.engine.stream_count() == 0 {
                    inner.wake_driver();
                }
                Poll::Ready(Ok(()))
            }
            Err(StreamError::UnknownStream(_)) if inner.error.is_none() => {
                // Forgotten after both halves completed.
                this.read_done = true;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(stream_io_error(e, &inner))),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inner = this.shared.lock();
        if let Some(code) = inner.resets.get(&this.id.0) {
            let e = StreamError::Reset {
                id: this.id.0,
                code: *code,
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e)));
        }
        match inner.engine.write(this.id, buf) {
            Ok(0) => {
                inner.writers.insert(this.id.0, cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                inner.wake_driver();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(stream_io_error(e, &inner))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_done {
            return Poll::Ready(Ok(()));
        }
        let mut inner = this.shared.lock();
        let r = inner.engine.finish(this.id);
        this.write_done = true;
        inner.wake_driver();
        match r {
            Ok(()) | Err(StreamError::UnknownStream(_)) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(stream_io_error(e, &inner))),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.readers.remove(&self.id.0);
        inner.writers.remove(&self.id.0);
        inner.resets.remove(&self.id.0);
        if !self.write_done {
            let _ = inner.engine.finish(self.id);
        }
        if !self.read_done {
            let _ = inner.engine.stop_reading(self.id);
        }
        inner.wake_driver();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let mut st = ConnectionStats {
            carriage: "tcp12",
            open_streams: 2,
            ..ConnectionStats::default()
        };
        st.htx.bytes_sent = 3 * 1024 * 1024 + 512 * 1024;
        st.htx.frames_sent = 57;
        st.htx.stream_bytes_sent = 3 * 1024 * 1024;
        st.htx.bytes_received = 900;
        st.htx.frames_received = 4;
        st.htx.rekeys_sent = 1;
        st.htx.pings_sent = 1;
        st.rtt = Some(Duration::from_micros(250));
        st.srtt = Some(Duration::from_micros(1500));
        assert_eq!(
            st.summary(),
            "tcp12: sent 3.5 MiB / 57 frames (data 3.0 MiB), received 900 B / 4 frames (data 0 \
             B), rekeys 1 sent / 0 received, rtt 0.25 ms (smoothed 1.50 ms, 1 pings), 2 open \
             streams"
        );
        assert_eq!(st.to_string(), st.summary());
        st.rtt = None;
        st.srtt = None;
        assert!(st.summary().contains("rtt n/a (smoothed n/a, 1 pings)"));
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}

//! The sans-IO HTX connection ([`Connection`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use betanet_crypto::CryptoError;
use betanet_crypto::aead::TAG_LEN;
use betanet_crypto::handshake::{
    Established, HandshakeConfig, Initiator, InitiatorAwaitMsg2, Responder, ResponderAwaitMsg1,
    ResponderAwaitMsg3, split_prefixed,
};
use betanet_crypto::schedule::{FrameOpener, FrameSealer, KeySchedule, Role};
use betanet_crypto::sign::VerifyingKey;
use betanet_wire::ErrorCode;
use betanet_wire::caps::Selection;
use betanet_wire::frame::{
    AAD_NONE, AAD_PING_ACK, Close, FLAG_FIN, FrameDecoder, FrameHeader, FrameType, Ping,
    STREAM_OVERHEAD, Scope, StreamPayload, WindowUpdate,
};
use betanet_wire::frame11::{FrameDecoder11, FrameHeader11, FrameType11};
use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

use crate::config::{Config, Framing, INITIAL_CONN_WINDOW};
use crate::error::{ConnectionError, ProtocolViolation, SetupError, StreamError};
use crate::stream::{Chunk, HEADROOM, StreamId, StreamState};

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // `Connected` happens once per connection.
pub enum Event {
    /// The handshake completed.
    Connected {
        /// The peer's verified Ed25519 identity.
        peer: VerifyingKey,
        /// The capability selection both sides computed.
        selection: Selection,
        /// Whether the ML-KEM-768 hybrid was used.
        post_quantum: bool,
    },
    /// The peer opened a stream.
    StreamOpened(StreamId),
    /// A stream has data (or its FIN) to read.
    StreamReadable(StreamId),
    /// A stream that refused a write has credit again.
    StreamWritable(StreamId),
    /// The peer reset a stream (CLOSE on a non-zero stream) with this code.
    StreamReset(StreamId, ErrorCode),
    /// The connection ended (the engine may still transmit a CLOSE and drain).
    Closed(ConnectionError),
}

/// Counters of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes handed out by `poll_transmit` (handshake + frames).
    pub bytes_sent: u64,
    /// Bytes fed into `handle_input`.
    pub bytes_received: u64,
    /// Frames sealed.
    pub frames_sent: u64,
    /// Frames opened.
    pub frames_received: u64,
    /// Application stream bytes sent (excluding padding).
    pub stream_bytes_sent: u64,
    /// Application stream bytes received (excluding padding).
    pub stream_bytes_received: u64,
    /// Padding bytes sent on stream 0.
    pub padding_bytes_sent: u64,
    /// KEY_UPDATEs we sent.
    pub rekeys_sent: u64,
    /// KEY_UPDATEs we received.
    pub rekeys_received: u64,
    /// PINGs we sent.
    pub pings_sent: u64,
    /// Latest RTT sample from a PING echo.
    pub rtt: Option<Duration>,
    /// Smoothed RTT (RFC 6298 style, α = 1/8).
    pub srtt: Option<Duration>,
    /// Streams opened by us.
    pub streams_opened: u64,
    /// Streams opened by the peer.
    pub streams_accepted: u64,
    /// Frame buffers allocated (the rest were recycled).
    pub buffer_allocs: u64,
    /// Frame buffers recycled.
    pub buffer_reuses: u64,
}

enum Handshake {
    ClientAwait2(Box<InitiatorAwaitMsg2>),
    ServerAwait1(Box<ResponderAwaitMsg1>),
    ServerAwait3(Box<ResponderAwaitMsg3>),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    /// A connection-level CLOSE was sent or is queued; read and discard until `until`.
    Closing {
        until: Instant,
        peer_closed: bool,
    },
    /// Nothing more to do: the transport may be closed.
    Closed,
}

struct Keys {
    sealer: FrameSealer,
    opener: FrameOpener,
    schedule: KeySchedule,
}

/// The frame splitter of the connection's framing.
enum Decoder {
    V12(FrameDecoder),
    V11(FrameDecoder11),
}

/// A header as bytes with the offset where the AEAD associated data starts (1.2: the whole
/// header; 1.1: `type ‖ varint stream_id`, after the 3 length bytes).
struct HeaderBytes {
    buf: [u8; 12],
    len: usize,
    ad_start: usize,
}

impl HeaderBytes {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
    fn ad(&self) -> &[u8] {
        self.buf.get(self.ad_start..self.len).unwrap_or_default()
    }
}

/// A frame header for the framing in use (`pt_len` = plaintext length).
fn header_bytes(
    framing: Framing,
    ty: FrameType,
    sid: u32,
    aad: u16,
    pt_len: usize,
) -> Result<HeaderBytes, ()> {
    let mut buf = [0u8; 12];
    match framing {
        Framing::V12 => {
            let h = FrameHeader::for_plaintext(ty, sid, aad, pt_len).map_err(|_| ())?;
            buf.get_mut(..10).ok_or(())?.copy_from_slice(&h.encode());
            Ok(HeaderBytes {
                buf,
                len: 10,
                ad_start: 0,
            })
        }
        Framing::V11 => {
            let ty11 = match ty {
                FrameType::Stream => FrameType11::Stream,
                FrameType::WindowUpdate => FrameType11::WindowUpdate,
                FrameType::Ping => FrameType11::Ping,
                FrameType::KeyUpdate => FrameType11::KeyUpdate,
                FrameType::Close => FrameType11::Close,
                FrameType::PathControl => return Err(()),
            };
            let id = ty11.has_stream_id().then_some(u64::from(sid));
            let v = FrameHeader11::new(ty11, id, pt_len)
                .map_err(|_| ())?
                .to_vec();
            buf.get_mut(..v.len()).ok_or(())?.copy_from_slice(&v);
            Ok(HeaderBytes {
                buf,
                len: v.len(),
                ad_start: 3,
            })
        }
    }
}

/// Where `poll_transmit*` puts frames: one flat buffer, or a list of buffers for a vectored
/// write (STREAM frames sealed in place in their own buffers, small frames packed together).
enum Out<'a> {
    Flat(&'a mut Vec<u8>),
    Bufs {
        list: &'a mut VecDeque<Bytes>,
        small: &'a mut BytesMut,
        /// Bytes in `list` (kept so the length is not summed per frame).
        listed: usize,
    },
}

impl Out<'_> {
    /// Bytes held (flat) or listed plus packed (vectored).
    fn len(&self) -> usize {
        match self {
            Out::Flat(v) => v.len(),
            Out::Bufs { small, listed, .. } => *listed + small.len(),
        }
    }

    fn extend(&mut self, b: &[u8]) {
        match self {
            Out::Flat(v) => v.extend_from_slice(b),
            Out::Bufs { small, .. } => small.extend_from_slice(b),
        }
    }

    /// The buffer a copied frame of up to `need` bytes is built at the end of. Packed
    /// buffers are cut at 64 KiB instead of growing (a growing buffer would copy itself).
    fn buf(&mut self, need: usize) -> &mut dyn FrameBuf {
        if let Out::Bufs { small, .. } = self
            && small.capacity() - small.len() < need
        {
            self.flush_small();
        }
        match self {
            Out::Flat(v) => &mut **v,
            Out::Bufs { small, .. } => {
                if small.capacity() - small.len() < need {
                    small.reserve(need.max(PACK_BUF));
                }
                &mut **small
            }
        }
    }

    /// Moves packed small frames into the list.
    fn flush_small(&mut self) {
        if let Out::Bufs {
            list,
            small,
            listed,
        } = self
            && !small.is_empty()
        {
            *listed += small.len();
            list.push_back(small.split().freeze());
        }
    }
}

/// A growable output buffer a frame is built in (the flat output or the packing buffer).
pub(crate) trait FrameBuf {
    fn len(&self) -> usize;
    fn extend(&mut self, b: &[u8]);
    fn zeros(&mut self, n: usize);
    fn tail_mut(&mut self, from: usize) -> Option<&mut [u8]>;
}

impl FrameBuf for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn extend(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.resize(Vec::len(self) + n, 0);
    }
    fn tail_mut(&mut self, from: usize) -> Option<&mut [u8]> {
        self.get_mut(from..)
    }
}

impl FrameBuf for BytesMut {
    fn len(&self) -> usize {
        BytesMut::len(self)
    }
    fn extend(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn zeros(&mut self, n: usize) {
        self.resize(BytesMut::len(self) + n, 0);
    }
    fn tail_mut(&mut self, from: usize) -> Option<&mut [u8]> {
        self.get_mut(from..)
    }
}

/// Builds a STREAM frame of `n` data bytes at the end of `buf`: header, plaintext prefix,
/// the data appended by `fill` (exactly `n` bytes), sealed in place, tag.
#[allow(clippy::too_many_arguments)]
fn seal_stream_into(
    sealer: &mut FrameSealer,
    framing: Framing,
    buf: &mut dyn FrameBuf,
    sid: u32,
    fin: bool,
    offset: u64,
    n: usize,
    fill: &mut dyn FnMut(&mut dyn FrameBuf),
) -> Result<(), ()> {
    let len16 = u16::try_from(n).map_err(|_| ())?;
    let hdr = header_bytes(
        framing,
        FrameType::Stream,
        sid,
        AAD_NONE,
        STREAM_OVERHEAD + n,
    )?;
    buf.extend(hdr.bytes());
    let start = buf.len();
    // `StreamPayload::encode`: Flags u8 ‖ Offset u64 ‖ Len u16 ‖ data.
    buf.extend(&[if fin { FLAG_FIN } else { 0 }]);
    buf.extend(&offset.to_be_bytes());
    buf.extend(&len16.to_be_bytes());
    fill(buf);
    if buf.len() != start + STREAM_OVERHEAD + n {
        return Err(());
    }
    let tag = sealer
        .seal(hdr.ad(), buf.tail_mut(start).ok_or(())?)
        .map_err(|_| ())?;
    buf.extend(&tag);
    Ok(())
}

/// One frame cut from the byte stream, in framing-neutral form.
struct Incoming {
    ty: FrameType,
    sid: u32,
    /// 1.2: header `AAD = 1` (PD-5). 1.1 has no marker: decided by the token.
    ping_ack: Option<bool>,
    header: HeaderBytes,
    body: Body,
}

/// A frame body as the decoder hands it out.
enum Body {
    /// Split off the receive buffer: opened in place, no copy (1.2).
    Owned(BytesMut),
    /// Shared with the decoder's buffer: copied before opening (1.1).
    Shared(Bytes),
}

impl Decoder {
    fn feed(&mut self, data: &[u8]) -> usize {
        match self {
            Decoder::V12(d) => d.feed(data),
            Decoder::V11(d) => d.feed(data),
        }
    }

    /// Lends the buffer holding a partial frame (1.2 only; empty otherwise).
    fn take_buffer(&mut self) -> BytesMut {
        match self {
            Decoder::V12(d) => d.take_buffer(),
            Decoder::V11(_) => BytesMut::new(),
        }
    }

    /// Hands over owned bytes; returns them back if this framing copies anyway.
    fn feed_owned(&mut self, data: BytesMut) -> Option<BytesMut> {
        match self {
            Decoder::V12(d) => {
                d.feed_owned(data);
                None
            }
            Decoder::V11(_) => Some(data),
        }
    }

    fn next(&mut self) -> Result<Option<Incoming>, ProtocolViolation> {
        match self {
            Decoder::V12(d) => {
                let Some((header, body)) = d
                    .next_frame_mut()
                    .map_err(|e| ProtocolViolation::from(&e))?
                else {
                    return Ok(None);
                };
                let mut buf = [0u8; 12];
                if let Some(dst) = buf.get_mut(..10) {
                    dst.copy_from_slice(&header.encode());
                }
                Ok(Some(Incoming {
                    ty: header.frame_type(),
                    sid: header.stream_id(),
                    ping_ack: Some(header.is_ping_ack()),
                    header: HeaderBytes {
                        buf,
                        len: 10,
                        ad_start: 0,
                    },
                    body: Body::Owned(body),
                }))
            }
            Decoder::V11(d) => {
                let Some(raw) = d.next_frame().map_err(|e| ProtocolViolation::from(&e))? else {
                    return Ok(None);
                };
                let ty = match raw.header.frame_type() {
                    FrameType11::Stream => FrameType::Stream,
                    FrameType11::Ping => FrameType::Ping,
                    FrameType11::Close => FrameType::Close,
                    FrameType11::KeyUpdate => FrameType::KeyUpdate,
                    FrameType11::WindowUpdate => FrameType::WindowUpdate,
                };
                let sid = u32::try_from(raw.header.stream_id().unwrap_or(0))
                    .map_err(|_| ProtocolViolation::malformed("stream id above u32"))?;
                let v = raw.header.to_vec();
                let mut buf = [0u8; 12];
                let len = v.len().min(12);
                if let (Some(dst), Some(src)) = (buf.get_mut(..len), v.get(..len)) {
                    dst.copy_from_slice(src);
                }
                Ok(Some(Incoming {
                    ty,
                    sid,
                    ping_ack: None,
                    header: HeaderBytes {
                        buf,
                        len,
                        ad_start: 3,
                    },
                    body: Body::Shared(raw.body),
                }))
            }
        }
    }
}

/// A sans-IO HTX connection: feed it bytes and time, take bytes and events out.
///
/// Randomness is drawn once from the caller's CSPRNG at construction (a ChaCha20 seed); the
/// clock is always an argument.
pub struct Connection {
    cfg: Config,
    role: Role,
    rng: ChaCha20Rng,
    state: State,
    hs: Handshake,
    hs_buf: Vec<u8>,
    hs_out: Vec<u8>,
    hs_deadline: Instant,
    keys: Option<Keys>,
    peer: Option<VerifyingKey>,
    decoder: Decoder,
    streams: HashMap<u32, StreamState>,
    next_local: u64,
    local_announced: u32,
    peer_max: u32,
    peer_open: usize,
    conn_send_limit: u64,
    conn_send_reserved: u64,
    conn_blocked: VecDeque<u32>,
    conn_recv_limit: u64,
    conn_received: u64,
    conn_consumed: u64,
    conn_window: u64,
    conn_granted_at: u64,
    conn_update_queued: bool,
    send_queue: VecDeque<u32>,
    wu_queue: VecDeque<u32>,
    resets_out: VecDeque<(u32, ErrorCode)>,
    ping_acks_out: VecDeque<[u8; 8]>,
    pings_out: VecDeque<[u8; 8]>,
    outstanding_pings: VecDeque<([u8; 8], Instant)>,
    key_update_requested: bool,
    key_since: Instant,
    close_out: Option<Close>,
    close_sent: bool,
    events: VecDeque<Event>,
    next_cover_ping: Option<Instant>,
    last_data: Instant,
    padding_delay: Option<Duration>,
    padding_pending: Option<usize>,
    stats: Stats,
    pool: BufPool,
    spent: Vec<Bytes>,
    /// Small frames packed for `poll_transmit_bufs` (kept to reuse its allocation).
    small_out: BytesMut,
    /// Bytes in the buffer lent by `take_input_buffer` (not counted again on return).
    lent: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// Recycles frame-sized buffers so a busy connection does not churn the allocator (which
/// showed up as page faults costing a third of the CPU).
#[derive(Default)]
struct BufPool {
    free: Vec<BytesMut>,
    misses: u64,
    returned: u64,
    rejected: u64,
}

/// Capacity of a pooled buffer: any frame body (1.2 or 1.1) fits.
const POOL_BUF: usize = 65_600;
/// Most buffers kept (16 MiB, only while busy: released when idle).
const POOL_MAX: usize = 256;

impl BufPool {
    fn get(&mut self) -> BytesMut {
        match self.free.pop() {
            Some(b) => b,
            None => {
                self.misses += 1;
                BytesMut::with_capacity(POOL_BUF)
            }
        }
    }

    fn put(&mut self, b: Bytes) {
        if self.free.len() >= POOL_MAX {
            return;
        }
        if let Ok(mut m) = b.try_into_mut() {
            m.clear();
            // Receive buffers (a whole transport read) are not kept: too big.
            if m.capacity() <= 2 * POOL_BUF && m.try_reclaim(POOL_BUF) {
                self.returned += 1;
                self.free.push(m);
                return;
            }
        }
        self.rejected += 1;
    }
}

/// Size of the buffers small frames are packed into for `poll_transmit_bufs`.
const PACK_BUF: usize = 64 * 1024;
/// Room a copied STREAM frame needs around its data (largest header, prefix, tag).
const FRAME_ROOM: usize = HEADROOM + TAG_LEN;
/// Size of the chunks a write is stored in (one maximal frame's data).
const CHUNK: usize = betanet_wire::frame::MAX_STREAM_DATA;
/// STREAM frames with less plaintext than this (3/4 of a full frame) are copied out of the
/// receive buffer, so only near-full frames pin a receive buffer while they wait for the
/// application: with the driver's 192 KiB buffers, unread data (bounded by the connection
/// window) pins at most about 4× its size.
const SMALL_STREAM_FRAME: usize = betanet_wire::frame::MAX_PLAINTEXT_LEN / 4 * 3;
/// Most pending pings we track at once.
const MAX_OUTSTANDING_PINGS: usize = 4;
/// Most pending ping echoes we queue (more are dropped: the peer floods).
const MAX_PING_ACKS: usize = 16;

fn uniform(rng: &mut impl RngCore, lo: Duration, hi: Duration) -> Duration {
    let span = hi.saturating_sub(lo).as_nanos().min(u128::from(u64::MAX)) as u64;
    if span == 0 {
        return lo;
    }
    lo + Duration::from_nanos(rng.next_u64() % (span + 1))
}

fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Connection {
    fn new(cfg: Config, role: Role, hs: Handshake, now: Instant, seed: [u8; 32]) -> Self {
        let deadline = now + cfg.handshake_timeout;
        Connection {
            role,
            rng: ChaCha20Rng::from_seed(seed),
            state: State::Handshaking,
            hs,
            hs_buf: Vec::new(),
            hs_out: Vec::new(),
            hs_deadline: deadline,
            keys: None,
            peer: None,
            decoder: match cfg.framing {
                Framing::V12 => Decoder::V12(FrameDecoder::new()),
                Framing::V11 => Decoder::V11(FrameDecoder11::new()),
            },
            streams: HashMap::new(),
            next_local: if role == Role::Initiator { 1 } else { 2 },
            local_announced: 0,
            peer_max: 0,
            peer_open: 0,
            conn_send_limit: INITIAL_CONN_WINDOW,
            conn_send_reserved: 0,
            conn_blocked: VecDeque::new(),
            conn_recv_limit: INITIAL_CONN_WINDOW,
            conn_received: 0,
            conn_consumed: 0,
            conn_window: INITIAL_CONN_WINDOW,
            conn_granted_at: 0,
            conn_update_queued: false,
            send_queue: VecDeque::new(),
            wu_queue: VecDeque::new(),
            resets_out: VecDeque::new(),
            ping_acks_out: VecDeque::new(),
            pings_out: VecDeque::new(),
            outstanding_pings: VecDeque::new(),
            key_update_requested: false,
            key_since: now,
            close_out: None,
            close_sent: false,
            events: VecDeque::new(),
            next_cover_ping: None,
            last_data: now,
            padding_delay: None,
            padding_pending: None,
            stats: Stats::default(),
            pool: BufPool::default(),
            spent: Vec::new(),
            small_out: BytesMut::new(),
            lent: 0,
            cfg,
        }
    }

    /// A dialing connection towards the peer whose Ed25519 key is `remote`. Msg 1 is ready in
    /// `poll_transmit` at once.
    pub fn client<R: RngCore + CryptoRng>(
        cfg: Config,
        hs: HandshakeConfig,
        remote: &VerifyingKey,
        now: Instant,
        rng: &mut R,
    ) -> Result<Self, SetupError> {
        let (st, msg1) = Initiator::start(hs, remote, rng)?;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut c = Connection::new(
            cfg,
            Role::Initiator,
            Handshake::ClientAwait2(Box::new(st)),
            now,
            seed,
        );
        c.hs_out = msg1;
        Ok(c)
    }

    /// A listening connection; it waits for msg 1.
    pub fn server<R: RngCore + CryptoRng>(
        cfg: Config,
        hs: HandshakeConfig,
        now: Instant,
        rng: &mut R,
    ) -> Result<Self, SetupError> {
        let st = Responder::new(hs)?;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Ok(Connection::new(
            cfg,
            Role::Responder,
            Handshake::ServerAwait1(Box::new(st)),
            now,
            seed,
        ))
    }

    /// Our role (the dialer is the initiator).
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.buffer_allocs = self.pool.misses;
        s.buffer_reuses = self.pool.returned;
        s
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The verified peer identity once established.
    #[must_use]
    pub fn peer_identity(&self) -> Option<&VerifyingKey> {
        self.peer.as_ref()
    }

    /// Whether the handshake is still running.
    #[must_use]
    pub fn is_handshaking(&self) -> bool {
        self.state == State::Handshaking
    }

    /// Whether streams can be used.
    #[must_use]
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the connection is over (after the drain): the transport can be closed once
    /// `poll_transmit` returns nothing more.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Drops pooled I/O buffers (call when the connection has been idle for a while).
    pub fn release_buffers(&mut self) {
        self.pool.free = Vec::new();
        self.spent = Vec::new();
    }

    /// Streams currently tracked.
    #[must_use]
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The `BN-Ticket` token of this session for `ctx` (SPEC §4.3), once keys exist.
    #[must_use]
    pub fn bn_ticket_token(&self, ctx: &str) -> Option<[u8; 120]> {
        self.keys.as_ref().map(|k| k.schedule.bn_ticket_token(ctx))
    }

    /// Whether `poll_transmit` has something to send right now (handshake bytes, a control
    /// frame such as a WINDOW_UPDATE, stream data, padding, a KEY_UPDATE or a CLOSE). A
    /// driver can skip waking its transmit path after a read that queued nothing.
    #[must_use]
    pub fn wants_transmit(&self) -> bool {
        !self.hs_out.is_empty()
            || self.close_out.is_some()
            || (self.state == State::Established
                && (self.conn_update_queued
                    || !self.wu_queue.is_empty()
                    || !self.ping_acks_out.is_empty()
                    || !self.pings_out.is_empty()
                    || !self.resets_out.is_empty()
                    || !self.send_queue.is_empty()
                    || self.padding_pending.is_some()
                    || self.key_update_requested))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----------------------------------------------------------------- input

    /// Feeds bytes received from the transport.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.stats.bytes_received += data.len() as u64;
        match self.state {
            State::Handshaking => self.handshake_input(data, now),
            State::Established | State::Closing { .. } => self.frame_input(data, now),
            State::Closed => {}
        }
    }

    /// Feeds bytes received from the transport, taking ownership of them: with the 1.2
    /// framing, frames are cut out of `data` and opened in place (no copy). Best used with
    /// one read buffer whose filled part is handed over with `BytesMut::split`, so that a
    /// frame straddling two reads is joined without a copy.
    ///
    /// A buffer obtained from [`Connection::take_input_buffer`] must come back here (with
    /// the new bytes appended after its contents).
    pub fn handle_input_owned(&mut self, data: BytesMut, now: Instant) {
        let lent = std::mem::take(&mut self.lent);
        if self.state == State::Established || matches!(self.state, State::Closing { .. }) {
            self.stats.bytes_received += data.len().saturating_sub(lent) as u64;
            match self.decoder.feed_owned(data) {
                None => {
                    self.drain_frames(now);
                }
                Some(data) => self.frame_input(&data, now),
            }
        } else {
            self.handle_input(data.get(lent..).unwrap_or_default(), now);
        }
    }

    /// Lends out the receive buffer so the transport can be read straight into it (without
    /// holding the engine): append the bytes read after its current contents (the start of a
    /// partial frame, or nothing) and return it with [`Connection::handle_input_owned`].
    /// Frames are then cut out of it and opened in place.
    pub fn take_input_buffer(&mut self) -> BytesMut {
        let b = match self.state {
            State::Established | State::Closing { .. } => self.decoder.take_buffer(),
            State::Handshaking | State::Closed => BytesMut::new(),
        };
        self.lent = b.len();
        b
    }

    /// The transport reached end-of-file (or failed).
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        match self.state {
            State::Handshaking => {
                let err = if self.role == Role::Initiator {
                    ConnectionError::HandshakeFailed {
                        code: ErrorCode::AuthFailed,
                        reason: "the peer closed the connection during the handshake (wrong \
                                 server key, or not a Betanet node)"
                            .into(),
                    }
                } else {
                    ConnectionError::TransportClosed
                };
                self.events.push_back(Event::Closed(err));
            }
            State::Established => {
                self.events
                    .push_back(Event::Closed(ConnectionError::TransportClosed));
            }
            State::Closing { .. } | State::Closed => {}
        }
        self.discard_streams();
        self.state = State::Closed;
    }

    fn handshake_input(&mut self, data: &[u8], now: Instant) {
        self.hs_buf.extend_from_slice(data);
        loop {
            let Some((msg, used)) = split_prefixed(&self.hs_buf) else {
                return;
            };
            let msg = msg.to_vec();
            self.hs_buf.drain(..used);
            if let Err(e) = self.handshake_message(&msg, now) {
                self.events
                    .push_back(Event::Closed(ConnectionError::HandshakeFailed {
                        code: e.close_code(),
                        reason: e.to_string(),
                    }));
                self.hs = Handshake::Done;
                self.hs_out.clear();
                self.state = State::Closed;
                return;
            }
            if self.state != State::Handshaking {
                let rest = std::mem::take(&mut self.hs_buf);
                if !rest.is_empty() {
                    self.frame_input(&rest, now);
                }
                return;
            }
        }
    }

    fn handshake_message(&mut self, msg: &[u8], now: Instant) -> Result<(), CryptoError> {
        match std::mem::replace(&mut self.hs, Handshake::Done) {
            Handshake::ClientAwait2(st) => {
                let (est, msg3) = st.read_msg2(msg)?;
                self.hs_out.extend_from_slice(&msg3);
                self.establish(est, now);
            }
            Handshake::ServerAwait1(st) => {
                let (st, msg2) = st.read_msg1(msg, &mut self.rng)?;
                self.hs_out.extend_from_slice(&msg2);
                self.hs = Handshake::ServerAwait3(Box::new(st));
            }
            Handshake::ServerAwait3(st) => {
                let est = st.read_msg3(msg)?;
                if est.negotiation_failed() {
                    let (sealer, opener) = est.schedule.frame_keys(est.role);
                    self.keys = Some(Keys {
                        sealer,
                        opener,
                        schedule: est.schedule,
                    });
                    self.state = State::Established;
                    self.close(ErrorCode::VersionNegotiationFailed, "no common L2 id", now);
                } else {
                    self.establish(est, now);
                }
            }
            Handshake::Done => return Err(CryptoError::HandshakeMalformed("unexpected message")),
        }
        Ok(())
    }

    fn establish(&mut self, est: Established, now: Instant) {
        let (sealer, opener) = est.schedule.frame_keys(est.role);
        self.keys = Some(Keys {
            sealer,
            opener,
            schedule: est.schedule,
        });
        self.peer = Some(est.peer_identity);
        self.state = State::Established;
        self.key_since = now;
        self.last_data = now;
        self.arm_padding();
        self.arm_cover_ping(now);
        self.events.push_back(Event::Connected {
            peer: est.peer_identity,
            selection: est.selection,
            post_quantum: est.post_quantum,
        });
    }

    fn arm_cover_ping(&mut self, now: Instant) {
        if !self.cfg.cover.ping {
            self.next_cover_ping = None;
            return;
        }
        let (lo, hi) = self.cfg.cover.ping_interval;
        let base = uniform(&mut self.rng, lo, hi);
        let j = self.cfg.cover.ping_jitter.clamp(0.0, 0.9);
        let factor = 1.0 + j * (2.0 * unit(&mut self.rng) - 1.0);
        self.next_cover_ping = Some(now + base.mul_f64(factor));
    }

    fn arm_padding(&mut self) {
        if self.cfg.cover.padding && self.padding_delay.is_none() {
            let (lo, hi) = self.cfg.cover.padding_idle;
            self.padding_delay = Some(uniform(&mut self.rng, lo, hi));
        }
    }

    fn data_activity(&mut self, now: Instant) {
        self.last_data = now;
        self.arm_padding();
    }

    fn frame_input(&mut self, data: &[u8], now: Instant) {
        let mut rest = data;
        loop {
            let n = self.decoder.feed(rest);
            rest = rest.get(n..).unwrap_or_default();
            if !self.drain_frames(now) || rest.is_empty() || n == 0 {
                return;
            }
        }
    }

    /// Processes every complete buffered frame; `false` if the input must stop.
    fn drain_frames(&mut self, now: Instant) -> bool {
        loop {
            if self.state == State::Closed {
                return false;
            }
            match self.decoder.next() {
                Ok(Some(frame)) => {
                    if let Err(v) = self.on_frame(frame, now) {
                        self.violation(v, now);
                    }
                }
                Ok(None) => return true,
                Err(v) => {
                    self.violation(v, now);
                    return false;
                }
            }
        }
    }

    fn violation(&mut self, v: ProtocolViolation, now: Instant) {
        if self.state == State::Established {
            self.close(v.code, v.reason, now);
        }
    }

    fn on_frame(&mut self, frame: Incoming, now: Instant) -> Result<(), ProtocolViolation> {
        let Some(keys) = self.keys.as_mut() else {
            return Err(ProtocolViolation::malformed("frame before keys"));
        };
        let owned = matches!(frame.body, Body::Owned(_));
        let ty_is_stream = frame.ty == FrameType::Stream && frame.sid != 0;
        let mut body = match frame.body {
            Body::Owned(b) => b,
            Body::Shared(shared) => {
                // Only STREAM data outlives this call; small control frames use a plain
                // allocation.
                let mut b = if frame.ty == FrameType::Stream && shared.len() >= POOL_BUF / 2 {
                    self.pool.get()
                } else {
                    BytesMut::with_capacity(shared.len())
                };
                b.extend_from_slice(shared.as_ref());
                b
            }
        };
        let opened = keys.opener.open(frame.header.ad(), &mut body);
        let closing = matches!(self.state, State::Closing { .. });
        let opened = match opened {
            Ok(o) => o,
            // While draining, undecryptable bytes are simply dropped.
            Err(_) if closing => return Ok(()),
            Err(e) => return Err(ProtocolViolation::from(&e)),
        };
        body.truncate(opened.len);
        if owned && ty_is_stream && opened.len < SMALL_STREAM_FRAME {
            // A small frame must not pin the whole receive buffer it was read into while it
            // waits for the application (memory amplification): it gets its own allocation.
            body = BytesMut::from(body.as_ref());
        }
        let pt = body.freeze();
        self.stats.frames_received += 1;
        let sid = frame.sid;
        let ty = frame.ty;
        if closing {
            if ty == FrameType::KeyUpdate {
                keys.opener.key_update();
            } else if ty == FrameType::Close
                && sid == 0
                && let State::Closing { until, .. } = self.state
            {
                self.state = State::Closing {
                    until,
                    peer_closed: true,
                };
                if self.close_sent {
                    self.state = State::Closed;
                }
            }
            return Ok(());
        }
        let bad = |e: betanet_wire::WireError| ProtocolViolation::from(&e);
        match ty {
            FrameType::KeyUpdate => {
                if !pt.is_empty() {
                    return Err(ProtocolViolation::malformed("KEY_UPDATE with a payload"));
                }
                keys.opener.key_update();
                self.stats.rekeys_received += 1;
            }
            FrameType::Stream => {
                let p = StreamPayload::decode_bytes(&pt).map_err(bad)?;
                self.on_stream(sid, p, now)?;
            }
            FrameType::WindowUpdate => {
                let w = WindowUpdate::decode(&pt).map_err(bad)?;
                w.check_stream(sid).map_err(bad)?;
                self.on_window_update(sid, w)?;
            }
            FrameType::Ping => {
                let p = Ping::decode(&pt).map_err(bad)?;
                // 1.1 has no echo marker: a token we sent is an echo (random 8 bytes).
                let is_ack = frame
                    .ping_ack
                    .unwrap_or_else(|| self.outstanding_pings.iter().any(|(t, _)| *t == p.token));
                if is_ack {
                    self.on_ping_ack(p.token, now);
                } else if self.ping_acks_out.len() < MAX_PING_ACKS {
                    self.ping_acks_out.push_back(p.token);
                }
            }
            FrameType::Close => {
                let c = Close::decode(&pt).map_err(bad)?;
                self.on_close(sid, c, now);
            }
            FrameType::PathControl => {}
        }
        Ok(())
    }

    fn is_local(&self, sid: u32) -> bool {
        (sid % 2 == 1) == (self.role == Role::Initiator)
    }

    fn on_stream(
        &mut self,
        sid: u32,
        p: StreamPayload,
        now: Instant,
    ) -> Result<(), ProtocolViolation> {
        if sid == 0 {
            // PD-6/PD-7: padding, discarded and exempt from flow control.
            return Ok(());
        }
        let len = p.data.len() as u64;
        if self.conn_received + len > self.conn_recv_limit {
            return Err(ProtocolViolation::flow("connection credit exceeded"));
        }
        if !self.streams.contains_key(&sid) {
            let closed = if self.is_local(sid) {
                if u64::from(sid) >= self.next_local {
                    return Err(ProtocolViolation::malformed(
                        "stream id of the wrong parity",
                    ));
                }
                true
            } else {
                sid <= self.peer_max
            };
            if closed {
                // Data for a stream that is gone (reset): counted and dropped.
                self.conn_received += len;
                self.consume_conn(len);
                return Ok(());
            }
            self.peer_max = sid;
            if self.peer_open >= self.cfg.max_peer_streams {
                self.conn_received += len;
                self.consume_conn(len);
                self.resets_out.push_back((sid, ErrorCode::PolicyRejected));
                return Ok(());
            }
            self.peer_open += 1;
            self.stats.streams_accepted += 1;
            self.streams.insert(sid, StreamState::new());
            self.events.push_back(Event::StreamOpened(StreamId(sid)));
        }
        self.conn_received += len;
        self.stats.stream_bytes_received += len;
        let Some(st) = self.streams.get_mut(&sid) else {
            return Ok(());
        };
        if st.recv.is_done() {
            if p.fin || len > 0 {
                return Err(ProtocolViolation::malformed("data after FIN"));
            }
            return Ok(());
        }
        let acc = st.recv.accept(p.offset, p.data, p.fin)?;
        if st.recv.discard_incoming {
            let dropped = st.recv.discard();
            if st.recv.fin == Some(st.recv.contiguous) {
                st.recv.fin_delivered = true;
            }
            let queue = st.recv.wants_update() && !st.recv.update_queued;
            if queue {
                st.recv.update_queued = true;
            }
            let done = st.is_done();
            if queue {
                self.wu_queue.push_back(sid);
            }
            self.consume_conn(dropped);
            if done {
                self.remove_stream(sid);
            }
            return Ok(());
        }
        if acc.readable && !st.recv.notified {
            st.recv.notified = true;
            self.events.push_back(Event::StreamReadable(StreamId(sid)));
        }
        if len > 0 {
            self.data_activity(now);
        }
        Ok(())
    }

    fn on_window_update(&mut self, sid: u32, w: WindowUpdate) -> Result<(), ProtocolViolation> {
        let credit = u64::from(w.credit);
        match w.scope {
            Scope::Connection => {
                if sid != 0 {
                    return Err(ProtocolViolation::malformed(
                        "connection window on a stream",
                    ));
                }
                self.conn_send_limit = self.conn_send_limit.saturating_add(credit);
                while let Some(id) = self.conn_blocked.pop_front() {
                    if let Some(st) = self.streams.get_mut(&id) {
                        st.send.conn_blocked = false;
                        if st.send.want_writable && st.send.credit() > 0 {
                            st.send.want_writable = false;
                            self.events.push_back(Event::StreamWritable(StreamId(id)));
                        }
                    }
                }
            }
            Scope::Stream => {
                let conn_has_credit = self.conn_send_limit > self.conn_send_reserved;
                if let Some(st) = self.streams.get_mut(&sid) {
                    if st.send.is_done() || st.send.fin_pending {
                        return Ok(());
                    }
                    st.send.limit = st.send.limit.saturating_add(credit);
                    if st.send.want_writable {
                        if conn_has_credit {
                            st.send.want_writable = false;
                            self.events.push_back(Event::StreamWritable(StreamId(sid)));
                        } else if !st.send.conn_blocked {
                            st.send.conn_blocked = true;
                            self.conn_blocked.push_back(sid);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_ping_ack(&mut self, token: [u8; 8], now: Instant) {
        if let Some(i) = self.outstanding_pings.iter().position(|(t, _)| *t == token)
            && let Some((_, sent)) = self.outstanding_pings.remove(i)
        {
            {
                let rtt = now.saturating_duration_since(sent);
                self.stats.rtt = Some(rtt);
                self.stats.srtt = Some(match self.stats.srtt {
                    None => rtt,
                    Some(s) => s.mul_f64(0.875) + rtt.mul_f64(0.125),
                });
            }
        }
    }

    fn on_close(&mut self, sid: u32, c: Close, now: Instant) {
        if sid == 0 {
            let reason: String = c.reason_lossy().chars().take(256).collect();
            self.events
                .push_back(Event::Closed(ConnectionError::PeerClosed {
                    code: c.code,
                    reason,
                }));
            self.discard_streams();
            self.close_out = Some(Close::new(ErrorCode::Ok, ""));
            self.state = State::Closing {
                until: now + self.cfg.drain_timeout,
                peer_closed: true,
            };
            return;
        }
        if let Some(mut st) = self.streams.remove(&sid) {
            let dropped = st.recv.discard();
            self.consume_conn(dropped);
            self.conn_send_reserved -= st.send.discard();
            if !self.is_local(sid) {
                self.peer_open = self.peer_open.saturating_sub(1);
            }
            self.events
                .push_back(Event::StreamReset(StreamId(sid), c.code));
        } else if !self.is_local(sid) && sid > self.peer_max {
            self.peer_max = sid;
        }
    }

    fn consume_conn(&mut self, n: u64) {
        self.conn_consumed += n;
        if !self.conn_update_queued
            && self.conn_consumed - self.conn_granted_at >= self.conn_window / 2
        {
            self.conn_update_queued = true;
        }
    }

    fn discard_streams(&mut self) {
        self.streams.clear();
        self.send_queue.clear();
        self.wu_queue.clear();
        self.conn_blocked.clear();
        self.resets_out.clear();
    }

    // ----------------------------------------------------------------- streams

    /// Opens a new stream of our parity. The peer learns about it with its first frame.
    pub fn open_stream(&mut self) -> Result<StreamId, StreamError> {
        if self.state != State::Established {
            return Err(StreamError::NotOpen);
        }
        let id = u32::try_from(self.next_local).map_err(|_| StreamError::IdsExhausted)?;
        self.next_local += 2;
        self.streams.insert(id, StreamState::new());
        self.stats.streams_opened += 1;
        Ok(StreamId(id))
    }

    fn stream_mut(&mut self, id: StreamId) -> Result<&mut StreamState, StreamError> {
        if self.state != State::Established {
            return Err(StreamError::NotOpen);
        }
        self.streams
            .get_mut(&id.0)
            .ok_or(StreamError::UnknownStream(id.0))
    }

    /// Queues up to `data.len()` bytes on a stream, bounded by the stream and connection
    /// credit; returns how many were taken (0 means: wait for
    /// [`Event::StreamWritable`]).
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let conn_credit = self.conn_send_limit.saturating_sub(self.conn_send_reserved);
        if self.state != State::Established {
            return Err(StreamError::NotOpen);
        }
        let st = self
            .streams
            .get_mut(&id.0)
            .ok_or(StreamError::UnknownStream(id.0))?;
        if let Some(code) = st.send.reset {
            return Err(StreamError::Reset { id: id.0, code });
        }
        if st.send.fin_pending {
            return Err(StreamError::Finished(id.0));
        }
        let stream_credit = st.send.credit();
        let n = (data.len() as u64).min(stream_credit).min(conn_credit) as usize;
        let mut block_conn = false;
        if n < data.len() {
            st.send.want_writable = true;
            if conn_credit < stream_credit && !st.send.conn_blocked {
                st.send.conn_blocked = true;
                block_conn = true;
            }
        }
        if n > 0 {
            // Frame-sized pooled chunks, taken without another copy when frames are built. The
            // last chunk is topped up first, so writes of any size make full frames.
            // Each chunk keeps `HEADROOM` bytes of room in front for the frame header, and room
            // behind for the tag, so its frame is sealed in place.
            let mut rest = data.get(..n).unwrap_or_default();
            if let Some(last) = st.send.queued.back_mut()
                && last.len() < CHUNK
                && last.buf.capacity() >= last.start + CHUNK + TAG_LEN
            {
                let k = rest.len().min(CHUNK - last.len());
                last.buf
                    .extend_from_slice(rest.get(..k).unwrap_or_default());
                rest = rest.get(k..).unwrap_or_default();
            }
            for chunk in rest.chunks(CHUNK) {
                let c = Chunk::new(self.pool.get(), chunk);
                st.send.queued.push_back(c);
            }
            st.send.queued_len += n as u64;
        }
        let schedule = n > 0 && !st.scheduled;
        if schedule {
            st.scheduled = true;
        }
        if block_conn {
            self.conn_blocked.push_back(id.0);
        }
        if schedule {
            self.send_queue.push_back(id.0);
        }
        self.conn_send_reserved += n as u64;
        Ok(n)
    }

    /// Credit available for a write on this stream right now.
    pub fn write_credit(&self, id: StreamId) -> u64 {
        let conn = self.conn_send_limit.saturating_sub(self.conn_send_reserved);
        self.streams
            .get(&id.0)
            .map_or(0, |s| s.send.credit().min(conn))
    }

    /// Ends the sending half: a FIN follows the queued data.
    pub fn finish(&mut self, id: StreamId) -> Result<(), StreamError> {
        let st = self.stream_mut(id)?;
        if let Some(code) = st.send.reset {
            return Err(StreamError::Reset { id: id.0, code });
        }
        if st.send.fin_pending {
            return Ok(());
        }
        st.send.fin_pending = true;
        st.send.want_writable = false;
        if !st.scheduled {
            st.scheduled = true;
            self.send_queue.push_back(id.0);
        }
        Ok(())
    }

    /// Reads in-order data: `(bytes, fin)`. `(0, false)` means nothing is available yet.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<(usize, bool), StreamError> {
        if self.state != State::Established {
            return Err(StreamError::NotOpen);
        }
        let st = self
            .streams
            .get_mut(&id.0)
            .ok_or(StreamError::UnknownStream(id.0))?;
        if let Some(code) = st.recv.reset {
            return Err(StreamError::Reset { id: id.0, code });
        }
        let (n, fin) = st.recv.read(buf, &mut self.spent);
        if st.recv.ready_len == 0 {
            st.recv.notified = false;
        }
        let mut queue_update = false;
        if st.recv.wants_update() && !st.recv.update_queued {
            st.recv.update_queued = true;
            queue_update = true;
        }
        let done = st.is_done();
        if queue_update {
            self.wu_queue.push_back(id.0);
        }
        self.consume_conn(n as u64);
        // 1.1 frames were copied into pooled buffers: recycle them. 1.2 frames are views of
        // the transport's receive buffers; pooling one would pin its whole receive buffer
        // (the driver could no longer reuse it and would fault in fresh pages), so they are
        // dropped and the receive buffer is reused once its last frame is gone.
        let recycle = self.cfg.framing == Framing::V11;
        while let Some(b) = self.spent.pop() {
            if recycle {
                self.pool.put(b);
            }
        }
        if done {
            self.remove_stream(id.0);
        }
        Ok((n, fin))
    }

    /// Stops reading a stream without telling the peer: buffered and future data is dropped
    /// (and credited back), the stream is forgotten once both halves are done.
    pub fn stop_reading(&mut self, id: StreamId) -> Result<(), StreamError> {
        let st = self.stream_mut(id)?;
        st.recv.discard_incoming = true;
        let dropped = st.recv.discard();
        if st.recv.fin == Some(st.recv.contiguous) {
            st.recv.fin_delivered = true;
        }
        let queue = st.recv.wants_update() && !st.recv.update_queued;
        if queue {
            st.recv.update_queued = true;
        }
        let done = st.is_done();
        if queue {
            self.wu_queue.push_back(id.0);
        }
        self.consume_conn(dropped);
        if done {
            self.remove_stream(id.0);
        }
        Ok(())
    }

    /// Bytes ready to read on a stream.
    pub fn readable_bytes(&self, id: StreamId) -> u64 {
        self.streams.get(&id.0).map_or(0, |s| s.recv.ready_len)
    }

    /// Abandons a stream in both directions: sends CLOSE with `code` on it (PD-7).
    pub fn reset(&mut self, id: StreamId, code: ErrorCode) -> Result<(), StreamError> {
        if self.state != State::Established {
            return Err(StreamError::NotOpen);
        }
        let Some(mut st) = self.streams.remove(&id.0) else {
            return Err(StreamError::UnknownStream(id.0));
        };
        let dropped = st.recv.discard();
        self.consume_conn(dropped);
        self.conn_send_reserved -= st.send.discard();
        let local = self.is_local(id.0);
        if !local {
            self.peer_open = self.peer_open.saturating_sub(1);
        }
        // A local stream the peer never heard of needs no CLOSE.
        if !local || id.0 <= self.local_announced {
            self.resets_out.push_back((id.0, code));
        }
        Ok(())
    }

    fn remove_stream(&mut self, id: u32) {
        if self.streams.remove(&id).is_some() && !self.is_local(id) {
            self.peer_open = self.peer_open.saturating_sub(1);
        }
    }

    // ----------------------------------------------------------------- control

    /// Closes the connection with `code` (CLOSE on stream 0, then a drain of up to 2 s).
    pub fn close(&mut self, code: ErrorCode, reason: &str, now: Instant) {
        match self.state {
            State::Handshaking => {
                self.events
                    .push_back(Event::Closed(ConnectionError::LocallyClosed {
                        code,
                        reason: reason.into(),
                    }));
                self.state = State::Closed;
            }
            State::Established => {
                self.events
                    .push_back(Event::Closed(ConnectionError::LocallyClosed {
                        code,
                        reason: reason.into(),
                    }));
                self.discard_streams();
                let reason: String = reason.chars().take(512).collect();
                self.close_out = Some(Close::new(code, &reason));
                self.state = State::Closing {
                    until: now + self.cfg.drain_timeout,
                    peer_closed: false,
                };
            }
            State::Closing { .. } | State::Closed => {}
        }
    }

    /// Asks for a KEY_UPDATE with the next transmission.
    pub fn key_update(&mut self) {
        if self.state == State::Established {
            self.key_update_requested = true;
        }
    }

    /// Sends a PING; its echo gives an RTT sample, and its absence within the ping timeout
    /// ends the connection. Returns `false` if too many are outstanding.
    pub fn ping(&mut self, now: Instant) -> bool {
        if self.state != State::Established
            || self.outstanding_pings.len() + self.pings_out.len() >= MAX_OUTSTANDING_PINGS
        {
            return false;
        }
        let mut token = [0u8; 8];
        self.rng.fill_bytes(&mut token);
        self.pings_out.push_back(token);
        let _ = now;
        true
    }

    // ----------------------------------------------------------------- timers

    /// When [`Connection::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking => Some(self.hs_deadline),
            State::Closing { until, .. } => Some(until),
            State::Closed => None,
            State::Established => {
                let mut t = self.key_since + self.cfg.rekey_interval;
                let mut consider = |x: Option<Instant>| {
                    if let Some(x) = x {
                        t = t.min(x);
                    }
                };
                consider(
                    self.outstanding_pings
                        .front()
                        .map(|(_, s)| *s + self.cfg.ping_timeout),
                );
                consider(self.next_cover_ping);
                consider(self.padding_delay.map(|d| self.last_data + d));
                Some(t)
            }
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Handshaking => {
                if now >= self.hs_deadline {
                    self.events
                        .push_back(Event::Closed(ConnectionError::HandshakeTimeout));
                    self.hs = Handshake::Done;
                    self.state = State::Closed;
                }
            }
            State::Closing { until, .. } => {
                if now >= until {
                    self.state = State::Closed;
                }
            }
            State::Closed => {}
            State::Established => {
                if self
                    .outstanding_pings
                    .front()
                    .is_some_and(|(_, s)| now >= *s + self.cfg.ping_timeout)
                {
                    self.events
                        .push_back(Event::Closed(ConnectionError::PingTimeout));
                    self.discard_streams();
                    self.state = State::Closed;
                    return;
                }
                if now >= self.key_since + self.cfg.rekey_interval {
                    self.key_update_requested = true;
                }
                if self.next_cover_ping.is_some_and(|t| now >= t) {
                    self.ping(now);
                    self.arm_cover_ping(now);
                }
                if let Some(d) = self.padding_delay
                    && now >= self.last_data + d
                {
                    {
                        let max = self.cfg.cover.padding_max as u64;
                        let len = (self.rng.next_u64() % (max + 1)) as usize;
                        self.padding_pending = Some(len);
                        self.padding_delay = None;
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------- output

    /// Appends whole frames (and handshake messages) to `out` until about `limit` bytes were
    /// added or nothing is left; returns the number of bytes appended.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>, limit: usize) -> usize {
        self.transmit(now, Out::Flat(out), limit)
    }

    /// Like [`Connection::poll_transmit`], for a vectored write: appends buffers to `out`
    /// (in transmission order) until about `limit` bytes were added or nothing is left;
    /// returns the number of bytes added. Each full STREAM frame is built and sealed in
    /// place in the buffer its data was written into, so the application's bytes are copied
    /// once (by [`Connection::write`]) before the transport takes them; small frames are
    /// packed together. Hand the buffers back with [`Connection::recycle`] once written.
    pub fn poll_transmit_bufs(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Bytes>,
        limit: usize,
    ) -> usize {
        let mut small = std::mem::take(&mut self.small_out);
        let n = self.transmit(
            now,
            Out::Bufs {
                listed: out.iter().map(Bytes::len).sum(),
                list: out,
                small: &mut small,
            },
            limit,
        );
        self.small_out = small;
        n
    }

    /// Returns a buffer from [`Connection::poll_transmit_bufs`] after it was written, so its
    /// memory is reused for later writes (optional: dropping it is fine).
    pub fn recycle(&mut self, buf: Bytes) {
        self.pool.put(buf);
    }

    fn transmit(&mut self, now: Instant, mut out: Out<'_>, limit: usize) -> usize {
        let start = out.len();
        if !self.hs_out.is_empty() {
            out.extend(&self.hs_out);
            self.hs_out.clear();
        }
        match self.state {
            State::Established => self.transmit_frames(now, &mut out, start, limit),
            State::Closing { .. } => {
                if let Some(c) = self.close_out.take() {
                    let mut pt = Vec::with_capacity(c.encoded_len());
                    if c.encode(&mut pt).is_ok() {
                        let _ = self.seal(&mut out, FrameType::Close, 0, AAD_NONE, pt);
                    }
                    self.close_sent = true;
                    if let State::Closing {
                        peer_closed: true, ..
                    } = self.state
                    {
                        self.state = State::Closed;
                    }
                }
            }
            State::Handshaking | State::Closed => {}
        }
        out.flush_small();
        let n = out.len() - start;
        self.stats.bytes_sent += n as u64;
        n
    }

    fn header_bytes(
        &self,
        ty: FrameType,
        sid: u32,
        aad: u16,
        pt_len: usize,
    ) -> Result<HeaderBytes, ()> {
        header_bytes(self.cfg.framing, ty, sid, aad, pt_len)
    }

    fn seal(
        &mut self,
        out: &mut Out<'_>,
        ty: FrameType,
        sid: u32,
        aad: u16,
        mut pt: Vec<u8>,
    ) -> Result<(), ()> {
        let hdr = self.header_bytes(ty, sid, aad, pt.len())?;
        let Some(keys) = self.keys.as_mut() else {
            return Err(());
        };
        let tag = keys.sealer.seal(hdr.ad(), &mut pt).map_err(|_| ())?;
        out.extend(hdr.bytes());
        out.extend(&pt);
        out.extend(&tag);
        self.stats.frames_sent += 1;
        Ok(())
    }

    /// Seals a STREAM frame around `piece` (`HEADROOM` bytes of room, then the data): the
    /// header and the plaintext prefix are written into the room, the plaintext is sealed in
    /// place and the tag appended, so the frame is one contiguous buffer. Flat output copies
    /// it and recycles the buffer; vectored output lists it.
    fn seal_stream(
        &mut self,
        out: &mut Out<'_>,
        sid: u32,
        fin: bool,
        offset: u64,
        mut piece: BytesMut,
    ) -> Result<(), ()> {
        let n = piece.len().checked_sub(HEADROOM).ok_or(())?;
        let len16 = u16::try_from(n).map_err(|_| ())?;
        let hdr = self.header_bytes(FrameType::Stream, sid, AAD_NONE, STREAM_OVERHEAD + n)?;
        let Some(keys) = self.keys.as_mut() else {
            return Err(());
        };
        let pre = HEADROOM - STREAM_OVERHEAD;
        let at = pre.checked_sub(hdr.len).ok_or(())?;
        {
            // Must match `StreamPayload::encode`: Flags u8 ‖ Offset u64 ‖ Len u16.
            let room = piece.get_mut(at..HEADROOM).ok_or(())?;
            let (h, prefix) = room.split_at_mut(hdr.len);
            h.copy_from_slice(hdr.bytes());
            let (flags, rest) = prefix.split_first_mut().ok_or(())?;
            *flags = if fin { FLAG_FIN } else { 0 };
            let (off, len) = rest.split_at_mut(8);
            off.copy_from_slice(&offset.to_be_bytes());
            len.copy_from_slice(&len16.to_be_bytes());
        }
        let tag = keys
            .sealer
            .seal(hdr.ad(), piece.get_mut(pre..).ok_or(())?)
            .map_err(|_| ())?;
        piece.extend_from_slice(&tag);
        self.stats.frames_sent += 1;
        match out {
            Out::Flat(v) => {
                v.extend_from_slice(piece.get(at..).unwrap_or_default());
                self.pool.put(piece.freeze());
            }
            Out::Bufs { .. } => {
                out.flush_small();
                if let Out::Bufs { list, listed, .. } = out {
                    bytes::Buf::advance(&mut piece, at);
                    *listed += piece.len();
                    list.push_back(piece.freeze());
                }
            }
        }
        Ok(())
    }

    /// A STREAM frame of `len` zero bytes (padding on stream 0, or an empty announcement).
    fn seal_zeros(&mut self, out: &mut Out<'_>, sid: u32, len: usize) -> Result<(), ()> {
        let Some(keys) = self.keys.as_mut() else {
            return Err(());
        };
        seal_stream_into(
            &mut keys.sealer,
            self.cfg.framing,
            out.buf(len + FRAME_ROOM),
            sid,
            false,
            0,
            len,
            &mut |b| b.zeros(len),
        )?;
        self.stats.frames_sent += 1;
        Ok(())
    }

    fn maybe_rekey(&mut self, now: Instant, out: &mut Out<'_>) -> Result<(), ()> {
        let Some(keys) = self.keys.as_ref() else {
            return Err(());
        };
        let due = self.key_update_requested
            || keys.sealer.frames_under_key() >= self.cfg.rekey_frames
            || keys.sealer.bytes_under_key() >= self.cfg.rekey_bytes
            || now >= self.key_since + self.cfg.rekey_interval;
        if !due {
            return Ok(());
        }
        self.seal(out, FrameType::KeyUpdate, 0, AAD_NONE, Vec::new())?;
        if let Some(keys) = self.keys.as_mut() {
            keys.sealer.key_update();
        }
        self.key_update_requested = false;
        self.key_since = now;
        self.stats.rekeys_sent += 1;
        Ok(())
    }

    fn internal_failure(&mut self, now: Instant) {
        // Sealing failed (nonce exhaustion or an encoding bug): nothing can be sent safely.
        self.events
            .push_back(Event::Closed(ConnectionError::LocallyClosed {
                code: ErrorCode::InternalError,
                reason: "frame sealing failed".into(),
            }));
        self.discard_streams();
        let _ = now;
        self.state = State::Closed;
    }

    fn transmit_frames(&mut self, now: Instant, out: &mut Out<'_>, start: usize, limit: usize) {
        while out.len() - start < limit && self.state == State::Established {
            let r = match self.next_control(now, out) {
                Some(r) => r,
                None => match self.next_stream_frame(now, out) {
                    Some(r) => r,
                    None => match self.padding_pending.take() {
                        Some(len) => {
                            self.stats.padding_bytes_sent += len as u64;
                            self.seal_zeros(out, 0, len)
                        }
                        None => {
                            if self.key_update_requested {
                                Ok(())
                            } else {
                                break;
                            }
                        }
                    },
                },
            };
            if r.and_then(|()| self.maybe_rekey(now, out)).is_err() {
                self.internal_failure(now);
                return;
            }
        }
    }

    /// One control frame, if any is pending.
    fn next_control(&mut self, now: Instant, out: &mut Out<'_>) -> Option<Result<(), ()>> {
        if let Some(token) = self.ping_acks_out.pop_front() {
            return Some(self.seal(out, FrameType::Ping, 0, AAD_PING_ACK, token.to_vec()));
        }
        if let Some(token) = self.pings_out.pop_front() {
            self.outstanding_pings.push_back((token, now));
            self.stats.pings_sent += 1;
            return Some(self.seal(out, FrameType::Ping, 0, AAD_NONE, token.to_vec()));
        }
        if self.conn_update_queued {
            self.conn_update_queued = false;
            self.conn_window =
                (self.conn_window * 2).min(self.cfg.max_conn_window.max(INITIAL_CONN_WINDOW));
            let target = self.conn_consumed + self.conn_window;
            let credit = target
                .saturating_sub(self.conn_recv_limit)
                .min(u64::from(u32::MAX));
            self.conn_recv_limit += credit;
            self.conn_granted_at = self.conn_consumed;
            if credit > 0 {
                let mut pt = Vec::with_capacity(WindowUpdate::LEN);
                WindowUpdate {
                    scope: Scope::Connection,
                    credit: credit as u32,
                }
                .encode(&mut pt);
                return Some(self.seal(out, FrameType::WindowUpdate, 0, AAD_NONE, pt));
            }
        }
        while let Some(id) = self.wu_queue.pop_front() {
            let max = self.cfg.max_stream_window;
            let Some(st) = self.streams.get_mut(&id) else {
                continue;
            };
            st.recv.update_queued = false;
            if !st.recv.wants_update() {
                continue;
            }
            let credit = st.recv.grant(max);
            if credit == 0 {
                continue;
            }
            let mut pt = Vec::with_capacity(WindowUpdate::LEN);
            WindowUpdate {
                scope: Scope::Stream,
                credit,
            }
            .encode(&mut pt);
            return Some(self.seal(out, FrameType::WindowUpdate, id, AAD_NONE, pt));
        }
        if self.cfg.framing == Framing::V11 {
            // 1.1 CLOSE carries no stream id: a reset stays local (data is dropped and
            // credited on arrival).
            self.resets_out.clear();
        }
        if let Some((id, code)) = self.resets_out.pop_front() {
            let mut pt = Vec::new();
            if Close::new(code, "").encode(&mut pt).is_err() {
                return Some(Err(()));
            }
            return Some(self.seal(out, FrameType::Close, id, AAD_NONE, pt));
        }
        None
    }

    /// Announces local streams below `sid` that the peer has not seen (ids must increase on
    /// the wire, PD-7): one empty STREAM frame each.
    fn announce_below(&mut self, sid: u32, out: &mut Out<'_>) -> Result<(), ()> {
        if sid <= self.local_announced {
            return Ok(());
        }
        let first = if self.local_announced == 0 {
            if self.role == Role::Initiator { 1 } else { 2 }
        } else {
            u64::from(self.local_announced) + 2
        };
        let mut id = first;
        while id < u64::from(sid) {
            let id32 = id as u32;
            if self
                .streams
                .get(&id32)
                .is_some_and(|s| s.send.offset == 0 && !s.send.fin_sent)
            {
                self.seal_zeros(out, id32, 0)?;
            }
            id += 2;
        }
        self.local_announced = sid;
        Ok(())
    }

    fn next_stream_frame(&mut self, now: Instant, out: &mut Out<'_>) -> Option<Result<(), ()>> {
        let max = self.cfg.frame_data();
        while let Some(id) = self.send_queue.pop_front() {
            let Some(st) = self.streams.get_mut(&id) else {
                continue;
            };
            st.scheduled = false;
            if !st.send.has_output() {
                continue;
            }
            // Lower local streams the peer has not seen go first (ids increase on the wire).
            if self.is_local(id) && self.announce_below(id, out).is_err() {
                return Some(Err(()));
            }
            let Some(st) = self.streams.get_mut(&id) else {
                continue;
            };
            let Some(keys) = self.keys.as_mut() else {
                return Some(Err(()));
            };
            let offset = st.send.offset;
            // A whole chunk is sealed in place where `write` put it; anything else (small
            // pieces coalesced, or a chunk cut into smaller frames) is copied straight into
            // the output and sealed there.
            let (whole, n) = match st.send.take_whole(max) {
                Some(p) => {
                    let n = p.len() - HEADROOM;
                    (Some(p), n)
                }
                None => (None, st.send.queued_len.min(max as u64) as usize),
            };
            let left = st.send.queued_len - if whole.is_some() { 0 } else { n as u64 };
            let fin = st.send.fin_pending && left == 0;
            let r = match whole {
                Some(p) => Ok(p),
                None => {
                    let pool = &mut self.pool;
                    let send = &mut st.send;
                    seal_stream_into(
                        &mut keys.sealer,
                        self.cfg.framing,
                        out.buf(n + FRAME_ROOM),
                        id,
                        fin,
                        offset,
                        n,
                        &mut |b| send.copy_out(n, b, &mut |c| pool.put(c.freeze())),
                    )
                    .map(|()| BytesMut::new())
                }
            };
            st.send.offset += n as u64;
            if fin {
                st.send.fin_sent = true;
            }
            let more = st.send.has_output();
            if more {
                st.scheduled = true;
                self.send_queue.push_back(id);
            }
            let done = st.is_done();
            let r = match r {
                Ok(piece) if piece.is_empty() => {
                    self.stats.frames_sent += 1;
                    Ok(())
                }
                Ok(piece) => self.seal_stream(out, id, fin, offset, piece),
                Err(()) => Err(()),
            };
            self.stats.stream_bytes_sent += n as u64;
            if n > 0 {
                self.data_activity(now);
            }
            if done {
                self.remove_stream(id);
            }
            return Some(r);
        }
        None
    }
}

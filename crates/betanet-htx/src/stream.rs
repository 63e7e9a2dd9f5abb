//! Per-stream state: the send queue with its credit, and in-order reassembly on receipt.

use std::collections::{BTreeMap, VecDeque};

use betanet_wire::ErrorCode;
use betanet_wire::frame::STREAM_OVERHEAD;
use bytes::{Buf, Bytes, BytesMut};

use crate::config::{GAP_LIMIT, INITIAL_STREAM_WINDOW};
use crate::error::ProtocolViolation;

/// A stream id (u32; initiator odd, responder even; 0 is the padding/control stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    /// Whether the dialer (initiator) opens streams with this id (odd ids).
    #[must_use]
    pub fn is_initiator_opened(self) -> bool {
        self.0 % 2 == 1
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Room kept in front of queued stream data for the largest frame header (12 bytes, 1.1
/// framing) and the STREAM plaintext prefix (11 bytes): a frame is built around the data
/// where it lies and sealed in place, without copying the data again.
pub(crate) const HEADROOM: usize = 12 + STREAM_OVERHEAD;

/// A queued piece of stream data: `buf[start..]` (what lies before `start` is headroom or
/// data already taken).
#[derive(Debug)]
pub(crate) struct Chunk {
    pub buf: BytesMut,
    pub start: usize,
}

impl Chunk {
    /// A chunk holding `data` after [`HEADROOM`] bytes of room, in `buf` (cleared).
    pub fn new(mut buf: BytesMut, data: &[u8]) -> Self {
        buf.clear();
        buf.resize(HEADROOM, 0);
        buf.extend_from_slice(data);
        Chunk {
            buf,
            start: HEADROOM,
        }
    }

    /// Data bytes held.
    pub fn len(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }
}

/// The sending half.
#[derive(Debug)]
pub(crate) struct SendState {
    /// Bytes already put into frames.
    pub offset: u64,
    /// Accepted, not yet framed (already within credit).
    pub queued: VecDeque<Chunk>,
    pub queued_len: u64,
    /// Absolute offset the peer allows us to reach.
    pub limit: u64,
    /// `finish` was called.
    pub fin_pending: bool,
    /// The FIN went out.
    pub fin_sent: bool,
    /// A writer was refused for lack of credit and wants a `StreamWritable` event.
    pub want_writable: bool,
    /// Queued in the connection's list of writers waiting for connection credit.
    pub conn_blocked: bool,
    /// Reset locally or by the peer.
    pub reset: Option<ErrorCode>,
}

impl SendState {
    pub fn new() -> Self {
        SendState {
            offset: 0,
            queued: VecDeque::new(),
            queued_len: 0,
            limit: INITIAL_STREAM_WINDOW,
            fin_pending: false,
            fin_sent: false,
            want_writable: false,
            conn_blocked: false,
            reset: None,
        }
    }

    /// Credit left for new writes.
    pub fn credit(&self) -> u64 {
        self.limit.saturating_sub(self.offset + self.queued_len)
    }

    /// Whether a frame is waiting to be built (data, or a bare FIN).
    pub fn has_output(&self) -> bool {
        self.reset.is_none() && (self.queued_len > 0 || (self.fin_pending && !self.fin_sent))
    }

    pub fn is_done(&self) -> bool {
        self.reset.is_some() || self.fin_sent
    }

    /// Takes the front chunk as a frame piece ([`HEADROOM`] bytes of room, then the data)
    /// if it can go out as it is: untouched, at most `max` bytes, and at least half a frame
    /// or the only chunk (smaller pieces are better coalesced). Its frame is then built and
    /// sealed in place, without copying the data again.
    pub fn take_whole(&mut self, max: usize) -> Option<BytesMut> {
        let single = self.queued.len() == 1;
        let front = self.queued.front()?;
        if front.start == HEADROOM && front.len() <= max && (front.len() >= max / 2 || single) {
            let c = self.queued.pop_front()?;
            self.queued_len -= c.len() as u64;
            return Some(c.buf);
        }
        None
    }

    /// Appends `n` queued bytes (at most `queued_len`) to `dst`; chunks emptied go to `spent`.
    pub fn copy_out(
        &mut self,
        n: usize,
        dst: &mut dyn crate::connection::FrameBuf,
        spent: &mut dyn FnMut(BytesMut),
    ) {
        let mut done = 0;
        while done < n {
            let Some(c) = self.queued.front_mut() else {
                break;
            };
            let k = c.len().min(n - done);
            dst.extend(c.buf.get(c.start..c.start + k).unwrap_or_default());
            c.start += k;
            done += k;
            if c.len() == 0
                && let Some(c) = self.queued.pop_front()
            {
                spent(c.buf);
            }
        }
        self.queued_len -= done as u64;
    }

    /// Drops everything queued; returns the number of bytes dropped.
    pub fn discard(&mut self) -> u64 {
        let n = self.queued_len;
        self.queued.clear();
        self.queued_len = 0;
        n
    }
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct RecvState {
    /// All bytes below this offset have arrived.
    pub contiguous: u64,
    /// In-order bytes waiting for the application.
    pub ready: VecDeque<Bytes>,
    pub ready_len: u64,
    /// Out-of-order segments by offset.
    pub gaps: BTreeMap<u64, Bytes>,
    pub gap_bytes: u64,
    /// Highest end offset seen.
    pub max_seen: u64,
    /// Final size, once a FIN arrived.
    pub fin: Option<u64>,
    /// Bytes delivered to the application.
    pub consumed: u64,
    /// Absolute offset the peer may reach (what we granted).
    pub limit: u64,
    /// Current window size (grows toward the configured maximum).
    pub window: u64,
    /// `consumed` when we last granted credit.
    pub granted_at: u64,
    /// The application saw the FIN.
    pub fin_delivered: bool,
    /// The peer reset the stream.
    pub reset: Option<ErrorCode>,
    /// A `StreamReadable` event is outstanding.
    pub notified: bool,
    /// A WINDOW_UPDATE is scheduled.
    pub update_queued: bool,
    /// The application stopped reading: arriving data is dropped and counted as consumed.
    pub discard_incoming: bool,
}

/// What accepting a STREAM frame produced.
pub(crate) struct Accepted {
    /// New data or FIN became readable.
    pub readable: bool,
}

impl RecvState {
    pub fn new() -> Self {
        RecvState {
            contiguous: 0,
            ready: VecDeque::new(),
            ready_len: 0,
            gaps: BTreeMap::new(),
            gap_bytes: 0,
            max_seen: 0,
            fin: None,
            consumed: 0,
            limit: INITIAL_STREAM_WINDOW,
            window: INITIAL_STREAM_WINDOW,
            granted_at: 0,
            fin_delivered: false,
            reset: None,
            notified: false,
            update_queued: false,
            discard_incoming: false,
        }
    }

    /// Applies a STREAM frame (PD-7 rules: no overlap, no data after FIN, credit respected).
    pub fn accept(
        &mut self,
        offset: u64,
        data: Bytes,
        fin: bool,
    ) -> Result<Accepted, ProtocolViolation> {
        let len = data.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or(ProtocolViolation::malformed("stream offset overflow"))?;
        if let Some(f) = self.fin
            && (end > f || (fin && end != f))
        {
            return Err(ProtocolViolation::malformed("data after FIN"));
        }
        if fin && end < self.max_seen {
            return Err(ProtocolViolation::malformed(
                "FIN below data already received",
            ));
        }
        if end > self.limit {
            return Err(ProtocolViolation::flow("stream credit exceeded"));
        }
        if len > 0 {
            if offset < self.contiguous {
                return Err(ProtocolViolation::malformed("overlapping stream data"));
            }
            if let Some((&o, b)) = self.gaps.range(..end).next_back()
                && o + b.len() as u64 > offset
            {
                return Err(ProtocolViolation::malformed("overlapping stream data"));
            }
        }
        let mut readable = false;
        if fin && self.fin.is_none() {
            self.fin = Some(end);
            readable = true;
        }
        self.max_seen = self.max_seen.max(end);
        if len > 0 {
            if offset == self.contiguous {
                self.contiguous = end;
                self.ready_len += len;
                self.ready.push_back(data);
                while let Some(entry) = self.gaps.first_entry() {
                    if *entry.key() != self.contiguous {
                        break;
                    }
                    let b = entry.remove();
                    self.gap_bytes -= b.len() as u64;
                    self.contiguous += b.len() as u64;
                    self.ready_len += b.len() as u64;
                    self.ready.push_back(b);
                }
                readable = true;
            } else {
                if self.gap_bytes + len > GAP_LIMIT {
                    return Err(ProtocolViolation::malformed(
                        "out-of-order data beyond 64 KiB",
                    ));
                }
                self.gap_bytes += len;
                self.gaps.insert(offset, data);
            }
        }
        Ok(Accepted {
            readable: readable && self.is_readable(),
        })
    }

    /// Whether a read would return data or the FIN.
    pub fn is_readable(&self) -> bool {
        self.ready_len > 0 || self.fin_ready() || self.reset.is_some()
    }

    fn fin_ready(&self) -> bool {
        !self.fin_delivered && self.fin == Some(self.contiguous) && self.ready_len == 0
    }

    /// Copies in-order data out; returns `(bytes, fin)`.
    pub fn read(&mut self, out: &mut [u8], spent: &mut Vec<Bytes>) -> (usize, bool) {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.ready.front_mut() else {
                break;
            };
            let k = front.len().min(out.len() - n);
            if let (Some(dst), Some(src)) = (out.get_mut(n..n + k), front.get(..k)) {
                dst.copy_from_slice(src);
            }
            front.advance(k);
            if front.is_empty()
                && let Some(b) = self.ready.pop_front()
            {
                spent.push(b);
            }
            n += k;
        }
        self.ready_len -= n as u64;
        self.consumed += n as u64;
        let fin = self.fin_ready();
        if fin {
            self.fin_delivered = true;
        }
        (n, fin)
    }

    /// Drops everything buffered (the stream is reset); returns the bytes that were never
    /// delivered (they count as consumed for the connection window).
    pub fn discard(&mut self) -> u64 {
        let n = self.ready_len + self.gap_bytes;
        self.ready.clear();
        self.gaps.clear();
        self.ready_len = 0;
        self.gap_bytes = 0;
        self.consumed += n;
        n
    }

    /// Whether the receive half is complete (FIN delivered, or reset).
    pub fn is_done(&self) -> bool {
        self.fin_delivered || self.reset.is_some()
    }

    /// Whether credit should be granted now (≥ 50 % of the window consumed, FIN not seen).
    pub fn wants_update(&self) -> bool {
        self.fin.is_none()
            && self.reset.is_none()
            && self.consumed - self.granted_at >= self.window / 2
    }

    /// Computes the credit to grant, growing the window toward `max`.
    pub fn grant(&mut self, max: u64) -> u32 {
        self.window = (self.window * 2).min(max.max(INITIAL_STREAM_WINDOW));
        let target = self.consumed + self.window;
        let credit = target.saturating_sub(self.limit).min(u64::from(u32::MAX));
        self.limit += credit;
        self.granted_at = self.consumed;
        u32::try_from(credit).unwrap_or(u32::MAX)
    }
}

/// Both halves.
#[derive(Debug)]
pub(crate) struct StreamState {
    pub send: SendState,
    pub recv: RecvState,
    /// In the connection's send queue.
    pub scheduled: bool,
}

impl StreamState {
    pub fn new() -> Self {
        StreamState {
            send: SendState::new(),
            recv: RecvState::new(),
            scheduled: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.send.is_done() && self.recv.is_done() && !self.send.has_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn reassembly_in_and_out_of_order() {
        let mut r = RecvState::new();
        r.accept(5, b(b"world"), true).unwrap();
        assert!(!r.is_readable());
        let a = r.accept(0, b(b"hello"), false).unwrap();
        assert!(a.readable);
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out, &mut Vec::new()), (10, true));
        assert_eq!(&out[..10], b"helloworld");
        assert!(r.is_done());
    }

    #[test]
    fn overlap_and_after_fin_rejected() {
        let mut r = RecvState::new();
        r.accept(0, b(b"abc"), false).unwrap();
        assert_eq!(
            r.accept(2, b(b"x"), false).err().unwrap().code,
            ErrorCode::MalformedFrame
        );
        r.accept(10, b(b"zz"), false).unwrap();
        assert!(r.accept(9, b(b"yy"), false).is_err());
        r.accept(3, b(b"d"), true).err().unwrap();
        let mut r = RecvState::new();
        r.accept(0, b(b"abc"), true).unwrap();
        assert!(r.accept(3, b(b"d"), false).is_err());
        assert!(r.accept(3, b(b""), true).is_ok());
        assert!(r.accept(4, b(b""), true).is_err());
    }

    #[test]
    fn credit_and_gap_limits() {
        let mut r = RecvState::new();
        let big = Bytes::from(vec![0u8; INITIAL_STREAM_WINDOW as usize + 1]);
        assert_eq!(
            r.accept(0, big, false).err().unwrap().code,
            ErrorCode::FlowControlViolation
        );
        let mut r = RecvState::new();
        r.limit = 1 << 20;
        r.accept(1, Bytes::from(vec![0u8; 65536]), false).unwrap();
        assert!(r.accept(70_000, b(b"x"), false).is_err());
    }

    #[test]
    fn window_grows_and_grants_increment() {
        let mut r = RecvState::new();
        r.accept(0, Bytes::from(vec![1u8; 20_000]), false).unwrap();
        let mut out = vec![0u8; 20_000];
        r.read(&mut out, &mut Vec::new());
        assert!(r.wants_update());
        let c = r.grant(1 << 20);
        assert_eq!(r.window, 65_536);
        assert_eq!(u64::from(c), 20_000 + 65_536 - 32_768);
        assert_eq!(r.limit, 20_000 + 65_536);
        assert!(!r.wants_update());
    }

    #[test]
    fn send_take_whole_or_copy() {
        let mut s = SendState::new();
        let push = |s: &mut SendState, c: &[u8]| {
            s.queued
                .push_back(Chunk::new(BytesMut::with_capacity(64), c));
            s.queued_len += c.len() as u64;
        };
        for c in [b"ab".as_slice(), b"cd", b"efg"] {
            push(&mut s, c);
        }
        // Small pieces are not taken whole while others follow: they are coalesced.
        assert!(s.take_whole(8).is_none());
        let mut out = Vec::new();
        let mut spent = 0;
        s.copy_out(7, &mut out, &mut |_| spent += 1);
        assert_eq!(out, b"abcdefg");
        assert_eq!((spent, s.queued_len), (3, 0));
        // A chunk of at least half a frame is taken whole: the same buffer, data after the
        // headroom.
        for c in [b"abcd".as_slice(), b"ef"] {
            push(&mut s, c);
        }
        let ptr = s.queued.front().unwrap().buf.as_ptr();
        let p = s.take_whole(8).unwrap();
        assert_eq!(p.as_ptr(), ptr);
        assert_eq!(&p[HEADROOM..], b"abcd");
        // The last chunk goes whole even when small.
        assert_eq!(&s.take_whole(8).unwrap()[HEADROOM..], b"ef");
        assert_eq!(s.queued_len, 0);
        // A chunk bigger than a frame is copied frame by frame.
        push(&mut s, b"0123456789");
        assert!(s.take_whole(4).is_none());
        let mut out = BytesMut::new();
        s.copy_out(4, &mut out, &mut |_| {});
        s.copy_out(4, &mut out, &mut |_| {});
        assert_eq!(&out[..], b"01234567");
        assert!(
            s.take_whole(4).is_none(),
            "a partly sent chunk has no headroom left"
        );
        s.copy_out(2, &mut out, &mut |_| {});
        assert_eq!(&out[..], b"0123456789");
        assert_eq!(s.queued_len, 0);
        assert!(s.queued.is_empty());
    }
}

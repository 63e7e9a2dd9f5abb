//! Messages of any size (up to [`MAX_MESSAGE`]) over a hidden-service rendezvous session:
//! the sans-IO part (chunk codec, reassembly, counter replay window, reply-block budget).
//!
//! A message is cut into chunks of [`CHUNK_DATA`] bytes (the last one shorter); each chunk is
//! one end-to-end sealed rendezvous message (ChaCha20-Poly1305 under the session key, nonce =
//! a per-direction counter), relayed by the rendezvous point in one `RV_SEND` packet:
//!
//! ```text
//! chunk = type(1)=0x01 | msg_id(4, BE) | seq(4, BE) | n_chunks(4, BE) | total_len(4, BE)
//!         | data | zero padding            (always CHUNK_HEADER + CHUNK_DATA = 1505 bytes)
//! ```
//!
//! `n_chunks = max(1, ceil(total_len / CHUNK_DATA))`, `seq < n_chunks`, and every chunk but the
//! last carries exactly `CHUNK_DATA` bytes; the last is zero-padded, so every sealed chunk has
//! the same length and the rendezvous point learns a message's size only in whole chunks. A
//! receiver checks each chunk's data length from its position and the padding exactly, and
//! never trusts a length it cannot verify. Mix delays reorder packets: chunks are reassembled by
//! `(msg_id, seq)` in any order; a duplicate chunk is reported ([`MixError::DuplicateChunk`]) and
//! ignored; a chunk that never arrives shows up as [`MixError::StreamTimeout`] naming how many
//! chunks were missing. A response carries the request's `msg_id`.
//!
//! Sealed-message counters are checked with a sliding window ([`CounterWindow`], 4096
//! counters) instead of "strictly increasing", so reordered chunks are accepted and a replay by
//! the rendezvous point is still rejected.
//!
//! Reply-block budget ([`ReplyBudget`]): every relayed message consumes one reply block of its
//! receiver at the rendezvous point. Each side deposits its own blocks ahead (two per `RV_SEND`
//! packet) and keeps `deposited - received` at the number of chunks it still expects, capped
//! by a window; the sender never waits for a round trip per chunk, and what the window holds
//! back waits at the rendezvous point (bounded queue) until the next deposit arrives.

use std::collections::{HashMap, VecDeque};

use crate::error::MixError;

/// Largest message (request or response) carried over a session.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Data bytes per chunk (fits a 2 KiB packet with the `RV_SEND`/`RV_FORWARD` and seal
/// overheads; see the test below).
pub const CHUNK_DATA: usize = 1488;
/// Chunk header length.
pub const CHUNK_HEADER: usize = 17;
/// Length of every encoded chunk (header, data, zero padding).
pub const CHUNK_FRAME: usize = CHUNK_HEADER + CHUNK_DATA;
/// Chunk type byte.
pub const CHUNK_TYPE_DATA: u8 = 0x01;
/// Sealing overhead (counter + Poly1305 tag).
pub const SEAL_OVERHEAD: usize = 8 + 16;
/// Partially received messages kept per session.
pub const MAX_PARTIAL: usize = 8;
/// Width of the counter replay window.
pub const COUNTER_WINDOW: u64 = 4096;

/// Number of chunks of a message of `total_len` bytes.
pub fn chunk_count(total_len: usize) -> usize {
    total_len.div_ceil(CHUNK_DATA).max(1)
}

/// One decoded chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Message id (a response carries its request's id).
    pub msg_id: u32,
    /// Index of this chunk.
    pub seq: u32,
    /// Chunks in the message.
    pub n_chunks: u32,
    /// Message length.
    pub total_len: u32,
    /// This chunk's bytes.
    pub data: Vec<u8>,
}

impl Chunk {
    /// Encodes the chunk, zero-padded to [`CHUNK_FRAME`] bytes (no validation: use
    /// [`split_message`] to make valid chunks).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(CHUNK_FRAME.max(CHUNK_HEADER + self.data.len()));
        v.push(CHUNK_TYPE_DATA);
        v.extend_from_slice(&self.msg_id.to_be_bytes());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.n_chunks.to_be_bytes());
        v.extend_from_slice(&self.total_len.to_be_bytes());
        v.extend_from_slice(&self.data);
        if v.len() < CHUNK_FRAME {
            v.resize(CHUNK_FRAME, 0);
        }
        v
    }

    /// Decodes and validates a chunk from untrusted bytes.
    pub fn decode(b: &[u8]) -> Result<Chunk, MixError> {
        let u32_at = |off: usize| -> Result<u32, MixError> {
            b.get(off..off + 4)
                .and_then(|x| <[u8; 4]>::try_from(x).ok())
                .map(u32::from_be_bytes)
                .ok_or(MixError::BadChunk("truncated header"))
        };
        if b.len() != CHUNK_FRAME {
            return Err(MixError::BadChunk("chunk frame length"));
        }
        match b.first() {
            Some(&CHUNK_TYPE_DATA) => {}
            Some(_) => return Err(MixError::BadChunk("unknown chunk type")),
            None => return Err(MixError::BadChunk("empty")),
        }
        let msg_id = u32_at(1)?;
        let seq = u32_at(5)?;
        let n_chunks = u32_at(9)?;
        let total_len = u32_at(13)?;
        let total = usize::try_from(total_len).map_err(|_| MixError::BadChunk("length"))?;
        if total > MAX_MESSAGE {
            return Err(MixError::MessageTooLong {
                len: total,
                max: MAX_MESSAGE,
            });
        }
        let n = chunk_count(total);
        if usize::try_from(n_chunks).ok() != Some(n) {
            return Err(MixError::BadChunk("chunk count does not match the length"));
        }
        let s = usize::try_from(seq).map_err(|_| MixError::BadChunk("seq"))?;
        if s >= n {
            return Err(MixError::BadChunk("seq out of range"));
        }
        let want = if s + 1 == n {
            total - s * CHUNK_DATA
        } else {
            CHUNK_DATA
        };
        let data = b
            .get(CHUNK_HEADER..CHUNK_HEADER + want)
            .ok_or(MixError::BadChunk("chunk length"))?;
        if b.get(CHUNK_HEADER + want..)
            .is_some_and(|p| p.iter().any(|&x| x != 0))
        {
            return Err(MixError::BadChunk("non-zero padding"));
        }
        Ok(Chunk {
            msg_id,
            seq,
            n_chunks,
            total_len,
            data: data.to_vec(),
        })
    }
}

/// Cuts `message` into encoded chunks for `msg_id`.
pub fn split_message(msg_id: u32, message: &[u8]) -> Result<Vec<Vec<u8>>, MixError> {
    if message.len() > MAX_MESSAGE {
        return Err(MixError::MessageTooLong {
            len: message.len(),
            max: MAX_MESSAGE,
        });
    }
    let n = chunk_count(message.len());
    let n32 = u32::try_from(n).map_err(|_| MixError::BadChunk("count"))?;
    let total = u32::try_from(message.len()).map_err(|_| MixError::BadChunk("length"))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let start = i * CHUNK_DATA;
        let end = (start + CHUNK_DATA).min(message.len());
        out.push(
            Chunk {
                msg_id,
                seq: u32::try_from(i).map_err(|_| MixError::BadChunk("seq"))?,
                n_chunks: n32,
                total_len: total,
                data: message.get(start..end).unwrap_or_default().to_vec(),
            }
            .encode(),
        );
    }
    Ok(out)
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
}

/// Reassembles messages from chunks arriving in any order; bounded to [`MAX_PARTIAL`]
/// partial messages of at most [`MAX_MESSAGE`] bytes each.
#[derive(Default)]
pub struct Reassembler {
    partial: HashMap<u32, Partial>,
    done: VecDeque<u32>,
    buffered: usize,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("partial", &self.partial.len())
            .finish_non_exhaustive()
    }
}

const DONE_MEMORY: usize = 256;

impl Reassembler {
    /// A new, empty reassembler.
    pub fn new() -> Self {
        Reassembler::default()
    }

    /// Adds a chunk; returns `(msg_id, message)` when it completes a message.
    pub fn push(&mut self, c: Chunk) -> Result<Option<(u32, Vec<u8>)>, MixError> {
        if self.done.contains(&c.msg_id) {
            return Err(MixError::DuplicateChunk {
                msg_id: c.msg_id,
                seq: c.seq,
            });
        }
        let n = usize::try_from(c.n_chunks).map_err(|_| MixError::BadChunk("count"))?;
        let seq = usize::try_from(c.seq).map_err(|_| MixError::BadChunk("seq"))?;
        if n == 1 {
            self.remember(c.msg_id);
            return Ok(Some((c.msg_id, c.data)));
        }
        if !self.partial.contains_key(&c.msg_id) && self.partial.len() >= MAX_PARTIAL {
            return Err(MixError::BadChunk("too many partial messages"));
        }
        let p = self.partial.entry(c.msg_id).or_insert_with(|| Partial {
            parts: vec![None; n],
            have: 0,
            bytes: 0,
        });
        if p.parts.len() != n {
            return Err(MixError::BadChunk("chunk count changed within a message"));
        }
        let slot = p
            .parts
            .get_mut(seq)
            .ok_or(MixError::BadChunk("seq out of range"))?;
        if slot.is_some() {
            return Err(MixError::DuplicateChunk {
                msg_id: c.msg_id,
                seq: c.seq,
            });
        }
        p.bytes += c.data.len();
        self.buffered += c.data.len();
        *slot = Some(c.data);
        p.have += 1;
        if p.have < n {
            return Ok(None);
        }
        let Some(p) = self.partial.remove(&c.msg_id) else {
            return Ok(None);
        };
        self.buffered -= p.bytes;
        let total = usize::try_from(c.total_len).map_err(|_| MixError::BadChunk("length"))?;
        let mut msg = Vec::with_capacity(total);
        for part in p.parts.into_iter().flatten() {
            msg.extend_from_slice(&part);
        }
        self.remember(c.msg_id);
        Ok(Some((c.msg_id, msg)))
    }

    fn remember(&mut self, id: u32) {
        if self.done.len() >= DONE_MEMORY {
            self.done.pop_front();
        }
        self.done.push_back(id);
    }

    /// `(received, total)` chunks of a partial message.
    pub fn progress(&self, msg_id: u32) -> Option<(usize, usize)> {
        self.partial.get(&msg_id).map(|p| (p.have, p.parts.len()))
    }

    /// Chunks still expected over all partial messages.
    pub fn outstanding(&self) -> usize {
        self.partial.values().map(|p| p.parts.len() - p.have).sum()
    }

    /// Drops a partial message (e.g. after a timeout).
    pub fn forget(&mut self, msg_id: u32) {
        if let Some(p) = self.partial.remove(&msg_id) {
            self.buffered -= p.bytes;
        }
    }

    /// Bytes held in partial messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

/// Sliding replay window over sealed-message counters: accepts each counter once, in any
/// order, within [`COUNTER_WINDOW`] of the highest seen.
#[derive(Clone, Debug)]
pub struct CounterWindow {
    top: Option<u64>,
    bits: [u64; (COUNTER_WINDOW / 64) as usize],
}

impl Default for CounterWindow {
    fn default() -> Self {
        CounterWindow {
            top: None,
            bits: [0; (COUNTER_WINDOW / 64) as usize],
        }
    }
}

impl CounterWindow {
    /// Records `ctr`; [`MixError::Replay`] if it was seen or is too old.
    pub fn check(&mut self, ctr: u64) -> Result<(), MixError> {
        let words = self.bits.len();
        let bit = |c: u64| (((c / 64) % words as u64) as usize, 1u64 << (c % 64));
        match self.top {
            Some(top) if ctr <= top => {
                if top / 64 - ctr / 64 >= words as u64 {
                    return Err(MixError::Replay);
                }
                let (w, m) = bit(ctr);
                let word = self.bits.get_mut(w).ok_or(MixError::Replay)?;
                if *word & m != 0 {
                    return Err(MixError::Replay);
                }
                *word |= m;
            }
            _ => {
                // Advance: clear the words that fall out of the window.
                let from = self.top.map_or(0, |t| t / 64 + 1);
                let to = ctr / 64;
                if self.top.is_none() || to - from.min(to) >= words as u64 {
                    self.bits = [0; (COUNTER_WINDOW / 64) as usize];
                } else {
                    for w in from..=to {
                        if let Some(x) = self.bits.get_mut((w % words as u64) as usize) {
                            *x = 0;
                        }
                    }
                }
                let (w, m) = bit(ctr);
                if let Some(x) = self.bits.get_mut(w) {
                    *x |= m;
                }
                self.top = Some(ctr);
            }
        }
        Ok(())
    }
}

/// Reply blocks one side keeps at the rendezvous point: `deposited - received` is what is
/// still there (or in flight to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyBudget {
    /// Reply blocks sent to the rendezvous point for this side.
    pub deposited: u64,
    /// Messages received through them.
    pub received: u64,
}

impl ReplyBudget {
    /// Blocks believed to be at (or on the way to) the rendezvous point.
    pub fn outstanding(&self) -> u64 {
        self.deposited.saturating_sub(self.received)
    }

    /// How many blocks to deposit now so that `expected` more messages (capped at `window`)
    /// can arrive without waiting.
    pub fn top_up(&self, expected: u64, window: u64) -> u64 {
        expected.min(window).saturating_sub(self.outstanding())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{COOKIE_LEN, RV_SEND_HEADER};
    use crate::packet::PacketSize;
    use proptest::prelude::*;

    #[test]
    fn chunk_fits_a_2k_packet() {
        let sealed = CHUNK_HEADER + CHUNK_DATA + SEAL_OVERHEAD;
        assert!(RV_SEND_HEADER + sealed <= PacketSize::K2.max_message());
        assert!(1 + COOKIE_LEN + sealed <= PacketSize::K2.max_message());
    }

    #[test]
    fn split_and_reassemble_in_any_order_with_duplicates() {
        let msg: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut chunks = split_message(9, &msg).unwrap();
        assert_eq!(chunks.len(), chunk_count(msg.len()));
        chunks.reverse();
        let mut r = Reassembler::new();
        let mut out = None;
        for (i, c) in chunks.iter().enumerate() {
            let got = r.push(Chunk::decode(c).unwrap()).unwrap();
            if i == 0 {
                assert!(matches!(
                    r.push(Chunk::decode(c).unwrap()),
                    Err(MixError::DuplicateChunk { msg_id: 9, .. })
                ));
            }
            if i + 1 < chunks.len() {
                assert!(got.is_none());
                assert_eq!(r.progress(9), Some((i + 1, chunks.len())));
            } else {
                out = got;
            }
        }
        assert_eq!(out, Some((9, msg)));
        assert_eq!(r.outstanding(), 0);
        assert_eq!(r.buffered(), 0);
        // a late duplicate of a completed message is reported
        assert!(matches!(
            r.push(Chunk::decode(&chunks[0]).unwrap()),
            Err(MixError::DuplicateChunk { .. })
        ));
        // empty message: one chunk
        let e = split_message(1, b"").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            r.push(Chunk::decode(&e[0]).unwrap()).unwrap(),
            Some((1, vec![]))
        );
    }

    #[test]
    fn decoder_rejects_inconsistent_chunks() {
        let good = split_message(1, &[5u8; 3000]).unwrap();
        assert!(Chunk::decode(&good[0]).is_ok());
        let mut c = good[0].clone();
        c.pop();
        assert!(matches!(Chunk::decode(&c), Err(MixError::BadChunk(_))));
        let mut c = good[2].clone();
        c.push(0);
        assert!(Chunk::decode(&c).is_err());
        let mut c = good[2].clone();
        *c.last_mut().unwrap() = 1; // padding of the short last chunk
        assert!(matches!(Chunk::decode(&c), Err(MixError::BadChunk(_))));
        assert!(good.iter().all(|c| c.len() == CHUNK_FRAME));
        let mut c = good[0].clone();
        c[12] = 9; // n_chunks
        assert!(Chunk::decode(&c).is_err());
        let mut c = good[0].clone();
        c[8] = 3; // seq == n_chunks
        assert!(Chunk::decode(&c).is_err());
        let mut c = good[0].clone();
        c[0] = 7;
        assert!(Chunk::decode(&c).is_err());
        let big = Chunk {
            msg_id: 0,
            seq: 0,
            n_chunks: u32::MAX,
            total_len: u32::MAX,
            data: vec![],
        };
        assert!(matches!(
            Chunk::decode(&big.encode()),
            Err(MixError::MessageTooLong { .. })
        ));
        assert!(Chunk::decode(&[]).is_err());
        assert!(Chunk::decode(&[1, 2, 3]).is_err());
        assert!(split_message(0, &vec![0; MAX_MESSAGE + 1]).is_err());
    }

    #[test]
    fn partial_messages_are_bounded() {
        let mut r = Reassembler::new();
        for id in 0..MAX_PARTIAL as u32 {
            let c = split_message(id, &[1u8; 2000]).unwrap();
            assert!(r.push(Chunk::decode(&c[0]).unwrap()).unwrap().is_none());
        }
        let c = split_message(99, &[1u8; 2000]).unwrap();
        assert!(r.push(Chunk::decode(&c[0]).unwrap()).is_err());
        assert_eq!(r.outstanding(), MAX_PARTIAL);
        assert_eq!(r.buffered(), MAX_PARTIAL * CHUNK_DATA);
        r.forget(0);
        assert_eq!(r.buffered(), (MAX_PARTIAL - 1) * CHUNK_DATA);
        assert!(r.push(Chunk::decode(&c[0]).unwrap()).is_ok());
    }

    #[test]
    fn counter_window() {
        let mut w = CounterWindow::default();
        for c in [5u64, 3, 4, 0, 100, 50] {
            w.check(c).unwrap();
        }
        for c in [5u64, 3, 0, 100, 50] {
            assert!(w.check(c).is_err(), "{c}");
        }
        w.check(10_000).unwrap();
        assert!(w.check(100).is_err(), "out of window");
        w.check(9_000).unwrap();
        assert!(w.check(9_000).is_err());
        w.check(10_001).unwrap();
        w.check(u64::MAX).unwrap();
        assert!(w.check(u64::MAX).is_err());
    }

    #[test]
    fn budget() {
        let b = ReplyBudget {
            deposited: 10,
            received: 4,
        };
        assert_eq!(b.outstanding(), 6);
        assert_eq!(b.top_up(100, 32), 26);
        assert_eq!(b.top_up(3, 32), 0);
    }

    proptest! {
        #[test]
        fn roundtrip(id in any::<u32>(), len in 0usize..20_000, seed in any::<u8>()) {
            let msg: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let mut r = Reassembler::new();
            let mut got = None;
            for c in split_message(id, &msg).unwrap().iter().rev() {
                got = r.push(Chunk::decode(c).unwrap()).unwrap();
            }
            prop_assert_eq!(got, Some((id, msg)));
        }

        #[test]
        fn mutated_chunks_decode_consistently(
            len in 0usize..5000, pos in 0usize..CHUNK_FRAME, x in 1u8..=255, which in 0usize..4
        ) {
            let chunks = split_message(3, &vec![7u8; len]).unwrap();
            let mut c = chunks[which % chunks.len()].clone();
            c[pos] ^= x;
            // either rejected, or (data, msg_id or an equivalent seq) decoded to these bytes
            if let Ok(d) = Chunk::decode(&c) {
                prop_assert_eq!(d.encode(), c);
            }
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut b = b;
            if b.len() > CHUNK_FRAME {
                b.truncate(CHUNK_FRAME); // also reach the checks behind the length check
            }
            if let Ok(c) = Chunk::decode(&b) {
                prop_assert_eq!(c.encode(), b);
            }
        }
    }
}

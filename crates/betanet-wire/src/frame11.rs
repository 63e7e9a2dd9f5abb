//! Legacy HTX 1.1 framing (`tcp11`, opt-in; SPEC §4.7).
//!
//! ```text
//! len u24 | type u8 | varint stream_id (types 0 and 4 only) | ciphertext ‖ tag(16)
//! ```
//!
//! `len` is the ciphertext length **excluding** the 16-byte tag (Betanet 1.0/1.1 §5.4:
//! "ciphertext length (excl. tag)"). The AEAD associated data is `type ‖ varint stream_id`
//! (just `type` for frames without a stream id). The stream id is a QUIC varint decoded in
//! strict (shortest-form) mode. This profile bounds `len` to [`MAX_CIPHERTEXT_LEN`] (65 535,
//! the same plaintext bound as 1.2) so receive buffers stay bounded; 1.1 itself leaves it open.
//! The plaintext payloads are those of [`crate::frame`] (STREAM, PING, CLOSE, WINDOW_UPDATE;
//! KEY_UPDATE empty).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::WireError;
use crate::frame::TAG_LEN;
use crate::reader::{Reader, Writer};
use crate::varint;

/// Largest `len` (ciphertext without tag) accepted by this profile.
pub const MAX_CIPHERTEXT_LEN: u32 = 65535;
/// Longest 1.1 header: 3 + 1 + 8-byte varint.
pub const MAX_HEADER_LEN: usize = 12;

/// HTX 1.1 frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType11 {
    /// `0` STREAM (has a stream id).
    Stream = 0,
    /// `1` PING.
    Ping = 1,
    /// `2` CLOSE.
    Close = 2,
    /// `3` KEY_UPDATE.
    KeyUpdate = 3,
    /// `4` WINDOW_UPDATE (has a stream id).
    WindowUpdate = 4,
}

impl FrameType11 {
    /// Parses a type byte.
    pub fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => FrameType11::Stream,
            1 => FrameType11::Ping,
            2 => FrameType11::Close,
            3 => FrameType11::KeyUpdate,
            4 => FrameType11::WindowUpdate,
            other => return Err(WireError::UnknownFrameType(other)),
        })
    }

    /// The type byte.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// Whether frames of this type carry a stream id.
    #[must_use]
    pub fn has_stream_id(self) -> bool {
        matches!(self, FrameType11::Stream | FrameType11::WindowUpdate)
    }
}

/// A validated 1.1 frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader11 {
    ct_len: u32,
    ty: FrameType11,
    stream_id: Option<u64>,
}

impl FrameHeader11 {
    /// A header for a ciphertext of `ct_len` bytes (without tag). `stream_id` must be present
    /// exactly for STREAM and WINDOW_UPDATE and be at most `2^62 - 1`.
    pub fn new(ty: FrameType11, stream_id: Option<u64>, ct_len: usize) -> Result<Self, WireError> {
        let ct_len32 = u32::try_from(ct_len)
            .ok()
            .filter(|l| *l <= MAX_CIPHERTEXT_LEN)
            .ok_or(WireError::FrameTooLarge { len: ct_len })?;
        match (ty.has_stream_id(), stream_id) {
            (true, Some(id)) => {
                varint::encoded_len(id)?;
            }
            (false, None) => {}
            (_, v) => {
                return Err(WireError::InvalidValue {
                    what: "1.1 stream id presence",
                    value: v.unwrap_or(0),
                });
            }
        }
        Ok(FrameHeader11 {
            ct_len: ct_len32,
            ty,
            stream_id,
        })
    }

    /// Decodes a header from the start of `buf`; returns it and the header length. Checks
    /// `len` before anything else.
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), WireError> {
        let mut r = Reader::new(buf);
        let ct_len = r.u24()?;
        if ct_len > MAX_CIPHERTEXT_LEN {
            return Err(WireError::FrameTooLarge {
                len: ct_len as usize,
            });
        }
        let ty = FrameType11::from_u8(r.u8()?)?;
        let stream_id = if ty.has_stream_id() {
            Some(r.varint()?)
        } else {
            None
        };
        Ok((
            FrameHeader11 {
                ct_len,
                ty,
                stream_id,
            },
            r.consumed(),
        ))
    }

    /// Appends the header bytes.
    pub fn encode(&self, out: &mut impl BufMut) {
        let l = self.ct_len.to_be_bytes();
        out.put_slice(&l[1..]);
        self.ad_into(out);
    }

    /// The header as a vector.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAX_HEADER_LEN);
        self.encode(&mut v);
        v
    }

    /// Appends the AEAD associated data `type ‖ varint stream_id`.
    pub fn ad_into(&self, out: &mut impl BufMut) {
        out.put_u8(self.ty.to_u8());
        if let Some(id) = self.stream_id {
            // The id was range-checked at construction, so this cannot fail.
            let _ = out.put_varint(id);
        }
    }

    /// The AEAD associated data `type ‖ varint stream_id`.
    #[must_use]
    pub fn ad(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9);
        self.ad_into(&mut v);
        v
    }

    /// Frame type.
    #[must_use]
    pub fn frame_type(&self) -> FrameType11 {
        self.ty
    }

    /// Stream id (STREAM and WINDOW_UPDATE only).
    #[must_use]
    pub fn stream_id(&self) -> Option<u64> {
        self.stream_id
    }

    /// Ciphertext length without the tag (= plaintext length).
    #[must_use]
    pub fn ciphertext_len(&self) -> usize {
        self.ct_len as usize
    }

    /// Bytes after the header: ciphertext ‖ tag.
    #[must_use]
    pub fn body_len(&self) -> usize {
        self.ct_len as usize + TAG_LEN
    }
}

/// One complete 1.1 frame, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame11 {
    /// The header.
    pub header: FrameHeader11,
    /// Ciphertext ‖ tag.
    pub body: Bytes,
}

/// A bounded streaming splitter for 1.1 frames (same contract as
/// [`crate::frame::FrameDecoder`]: sticky errors, never panics).
#[derive(Debug)]
pub struct FrameDecoder11 {
    buf: BytesMut,
    capacity: usize,
    failed: Option<WireError>,
}

impl Default for FrameDecoder11 {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder11 {
    /// Smallest buffer that holds any legal frame.
    pub const MIN_CAPACITY: usize = MAX_HEADER_LEN + MAX_CIPHERTEXT_LEN as usize + TAG_LEN;

    /// A decoder buffering at most two maximal frames.
    #[must_use]
    pub fn new() -> Self {
        FrameDecoder11 {
            buf: BytesMut::new(),
            capacity: 2 * Self::MIN_CAPACITY,
            failed: None,
        }
    }

    /// Free buffer space.
    #[must_use]
    pub fn space(&self) -> usize {
        self.capacity.saturating_sub(self.buf.len())
    }

    /// Buffers as much of `data` as fits; returns how many bytes were taken.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.buf.extend_from_slice(data.get(..n).unwrap_or(&[]));
        n
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the sticky error.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame11>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let (header, hlen) = match FrameHeader11::decode(&self.buf) {
            Ok(v) => v,
            Err(WireError::Truncated { .. }) => return Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let total = hlen + header.body_len();
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(hlen);
        let body = self.buf.split_to(header.body_len()).freeze();
        Ok(Some(RawFrame11 { header, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn golden() {
        let s = FrameHeader11::new(FrameType11::Stream, Some(5), 13).unwrap();
        assert_eq!(s.to_vec(), h("00000d 00 05"));
        assert_eq!(s.ad(), h("00 05"));
        assert_eq!(s.body_len(), 29);
        let w = FrameHeader11::new(FrameType11::WindowUpdate, Some(300), 5).unwrap();
        assert_eq!(w.to_vec(), h("000005 04 412c"));
        assert_eq!(w.ad(), h("04 412c"));
        let p = FrameHeader11::new(FrameType11::Ping, None, 8).unwrap();
        assert_eq!(p.to_vec(), h("000008 01"));
        assert_eq!(p.ad(), h("01"));
        assert_eq!(FrameHeader11::decode(&h("000008 01 ffff")).unwrap(), (p, 4));
        assert_eq!(FrameHeader11::decode(&h("000005 04 412c")).unwrap(), (w, 6));
    }

    #[test]
    fn rejections() {
        assert_eq!(
            FrameHeader11::decode(&h("010000 01")),
            Err(WireError::FrameTooLarge { len: 65536 })
        );
        assert_eq!(
            FrameHeader11::decode(&h("000000 05")),
            Err(WireError::UnknownFrameType(5))
        );
        assert_eq!(
            FrameHeader11::decode(&h("000000 00 4005")),
            Err(WireError::NonCanonical { what: "varint" })
        );
        assert_eq!(
            FrameHeader11::decode(&h("000000 00 40")),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        assert!(FrameHeader11::new(FrameType11::Stream, None, 0).is_err());
        assert!(FrameHeader11::new(FrameType11::Ping, Some(1), 0).is_err());
        assert!(FrameHeader11::new(FrameType11::Stream, Some(1 << 62), 0).is_err());
        assert!(FrameHeader11::new(FrameType11::Close, None, 65536).is_err());
    }

    #[test]
    fn decoder() {
        let mut wire = h("000002 00 01 aabb");
        wire.extend([0x11; 16]);
        wire.extend(h("000000 03"));
        wire.extend([0x22; 16]);
        let mut d = FrameDecoder11::new();
        let mut got = Vec::new();
        for b in &wire {
            d.feed(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header.stream_id(), Some(1));
        assert_eq!(&got[0].body[..2], &[0xaa, 0xbb]);
        assert_eq!(got[0].body.len(), 18);
        assert_eq!(got[1].header.frame_type(), FrameType11::KeyUpdate);
        let mut d = FrameDecoder11::new();
        d.feed(&h("000000 09"));
        assert_eq!(d.next_frame(), Err(WireError::UnknownFrameType(9)));
        assert_eq!(d.next_frame(), Err(WireError::UnknownFrameType(9)));
    }

    proptest! {
        #[test]
        fn round_trip(ty in 0u8..5, sid in 0..=varint::MAX_VARINT, len in 0usize..=65535) {
            let ty = FrameType11::from_u8(ty).unwrap();
            let sid = ty.has_stream_id().then_some(sid);
            let hdr = FrameHeader11::new(ty, sid, len).unwrap();
            let bytes = hdr.to_vec();
            prop_assert_eq!(FrameHeader11::decode(&bytes).unwrap(), (hdr, bytes.len()));
            prop_assert_eq!(&bytes[3..], &hdr.ad()[..]);
        }

        #[test]
        fn decode_reencodes(data in proptest::collection::vec(any::<u8>(), 0..14)) {
            if let Ok((hdr, n)) = FrameHeader11::decode(&data) {
                prop_assert_eq!(&hdr.to_vec()[..], &data[..n]);
            }
        }
    }
}

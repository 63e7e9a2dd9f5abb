//! HTX 1.2 frames (SPEC §4.6, §4.6a).
//!
//! ```text
//! Len u24 | Type u8 | StreamID u32 | AAD u16 | ciphertext | tag(16)
//! ```
//!
//! `Len` counts Type through Tag. The first [`HEADER_LEN`] bytes are the AEAD associated data
//! ([`FrameHeader::aad`]). This module only handles bytes: the HTX engine seals/opens the
//! ciphertext with `betanet-crypto` and hands the plaintext to [`Payload::decode`].
//!
//! Checks done here (all map to CLOSE 7 `MALFORMED_FRAME`):
//! `Len < 23` or `Len + 3 > 65535` (before the body is read), unknown type, header `AAD` other
//! than 0 (or 1 on PING, PD-5), reserved STREAM flag bits, bad WINDOW_UPDATE scope, and
//! trailing bytes in any plaintext.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, WireError};
use crate::reader::{Reader, Writer};

/// Bytes of the frame header (`Len ‖ Type ‖ StreamID ‖ AAD`), also the AEAD associated data.
pub const HEADER_LEN: usize = 10;
/// AEAD tag length (ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// Smallest legal `Len`: Type(1) + StreamID(4) + AAD(2) + tag(16) (an empty plaintext).
pub const MIN_LEN: u32 = 23;
/// Largest legal `Len` (`Len + 3 <= 65535`).
pub const MAX_LEN: u32 = 65535 - 3;
/// Bytes of `Len` counted in the header but not in `Len` itself.
const LEN_FIELD: usize = 3;
/// Header bytes after the `Len` field (Type + StreamID + AAD).
const HEADER_AFTER_LEN: u32 = 7;
/// Largest plaintext that fits one frame (65 509 bytes).
pub const MAX_PLAINTEXT_LEN: usize = (MAX_LEN - HEADER_AFTER_LEN) as usize - TAG_LEN;
/// Largest complete frame on the wire (65 535 bytes).
pub const MAX_FRAME_LEN: usize = MAX_LEN as usize + LEN_FIELD;
/// STREAM plaintext overhead: Flags u8 + Offset u64 + varstr length u16.
pub const STREAM_OVERHEAD: usize = 1 + 8 + 2;
/// Largest STREAM `data` that fits one frame (65 498 bytes).
pub const MAX_STREAM_DATA: usize = MAX_PLAINTEXT_LEN - STREAM_OVERHEAD;
/// Header `AAD` value of every frame except a PING echo.
pub const AAD_NONE: u16 = 0;
/// Header `AAD` value of a PING echo (PD-5).
pub const AAD_PING_ACK: u16 = 1;

/// The largest STREAM data that fits one frame: [`MAX_STREAM_DATA`].
#[must_use]
pub const fn max_stream_data() -> usize {
    MAX_STREAM_DATA
}

/// Which side a stream id belongs to (SPEC §4.6: initiator odd, responder even; stream 0
/// carries connection-level frames and padding, PD-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamOwner {
    /// Stream 0.
    Connection,
    /// Odd ids: opened by the initiator (dialer).
    Initiator,
    /// Even non-zero ids: opened by the responder.
    Responder,
}

impl StreamOwner {
    /// The owner of `stream_id`.
    #[must_use]
    pub fn of(stream_id: u32) -> Self {
        match stream_id {
            0 => StreamOwner::Connection,
            id if id % 2 == 1 => StreamOwner::Initiator,
            _ => StreamOwner::Responder,
        }
    }
}

/// HTX 1.2 frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// `0x00` STREAM.
    Stream = 0x00,
    /// `0x01` WINDOW_UPDATE.
    WindowUpdate = 0x01,
    /// `0x02` PING.
    Ping = 0x02,
    /// `0x03` KEY_UPDATE.
    KeyUpdate = 0x03,
    /// `0x04` CLOSE.
    Close = 0x04,
    /// `0x20` PATH_CONTROL (L1 structures, SPEC §5).
    PathControl = 0x20,
}

impl FrameType {
    /// Parses a type byte; unknown values are [`WireError::UnknownFrameType`].
    pub fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0x00 => FrameType::Stream,
            0x01 => FrameType::WindowUpdate,
            0x02 => FrameType::Ping,
            0x03 => FrameType::KeyUpdate,
            0x04 => FrameType::Close,
            0x20 => FrameType::PathControl,
            other => return Err(WireError::UnknownFrameType(other)),
        })
    }

    /// The type byte.
    #[must_use]
    pub fn to_u8(self) -> u8 {
        self as u8
    }
}

/// A validated HTX 1.2 frame header.
///
/// Constructed only through [`FrameHeader::new`], [`FrameHeader::for_plaintext`] or
/// [`FrameHeader::decode`], so every value satisfies the §4.6a rules and encodes without
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    len: u32,
    ty: FrameType,
    stream_id: u32,
    aad: u16,
}

fn check_aad(ty: FrameType, aad: u16) -> Result<(), WireError> {
    match (ty, aad) {
        (_, AAD_NONE) | (FrameType::Ping, AAD_PING_ACK) => Ok(()),
        _ => Err(WireError::BadAad {
            ty: ty.to_u8(),
            aad,
        }),
    }
}

fn check_len(len: u32) -> Result<(), WireError> {
    if len < MIN_LEN {
        return Err(WireError::FrameTooShort { len: len as usize });
    }
    if len > MAX_LEN {
        return Err(WireError::FrameTooLarge { len: len as usize });
    }
    Ok(())
}

impl FrameHeader {
    /// A header with an explicit `Len` (Type through Tag).
    pub fn new(ty: FrameType, stream_id: u32, aad: u16, len: u32) -> Result<Self, WireError> {
        check_len(len)?;
        check_aad(ty, aad)?;
        Ok(FrameHeader {
            len,
            ty,
            stream_id,
            aad,
        })
    }

    /// The header of a frame whose plaintext is `plaintext_len` bytes
    /// (`Len = 7 + plaintext_len + 16`); fails above [`MAX_PLAINTEXT_LEN`].
    pub fn for_plaintext(
        ty: FrameType,
        stream_id: u32,
        aad: u16,
        plaintext_len: usize,
    ) -> Result<Self, WireError> {
        let len = plaintext_len
            .checked_add(HEADER_AFTER_LEN as usize + TAG_LEN)
            .ok_or(WireError::FrameTooLarge { len: usize::MAX })?;
        let len32 = u32::try_from(len).map_err(|_| WireError::FrameTooLarge { len })?;
        Self::new(ty, stream_id, aad, len32)
    }

    /// Decodes and validates the first [`HEADER_LEN`] bytes of `buf` (extra bytes are
    /// ignored: they are the body). Checks the length bounds, the type and the `AAD` field
    /// before any body byte is needed.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let len = r.u24()?;
        // Check the length first: it is what bounds the read that follows.
        check_len(len)?;
        let ty = FrameType::from_u8(r.u8()?)?;
        let stream_id = r.u32()?;
        let aad = r.u16()?;
        check_aad(ty, aad)?;
        Ok(FrameHeader {
            len,
            ty,
            stream_id,
            aad,
        })
    }

    /// [`FrameHeader::decode`] on exactly the header bytes.
    pub fn decode_array(buf: &[u8; HEADER_LEN]) -> Result<Self, WireError> {
        Self::decode(buf)
    }

    /// The 10 header bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let l = self.len.to_be_bytes();
        out[..3].copy_from_slice(&l[1..]);
        out[3] = self.ty.to_u8();
        out[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        out[8..10].copy_from_slice(&self.aad.to_be_bytes());
        out
    }

    /// The AEAD associated data: the 10 header bytes (SPEC §4.6).
    #[must_use]
    pub fn aad(&self) -> [u8; HEADER_LEN] {
        self.encode()
    }

    /// The `Len` field (Type through Tag).
    #[must_use]
    pub fn len_field(&self) -> u32 {
        self.len
    }

    /// Frame type.
    #[must_use]
    pub fn frame_type(&self) -> FrameType {
        self.ty
    }

    /// Stream id.
    #[must_use]
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The header `AAD` field (0, or 1 on a PING echo).
    #[must_use]
    pub fn aad_field(&self) -> u16 {
        self.aad
    }

    /// `true` for a PING echo (`AAD = 1`, PD-5).
    #[must_use]
    pub fn is_ping_ack(&self) -> bool {
        self.ty == FrameType::Ping && self.aad == AAD_PING_ACK
    }

    /// Bytes that follow the header: ciphertext ‖ tag (`Len - 7`, at least 16).
    #[must_use]
    pub fn body_len(&self) -> usize {
        (self.len - HEADER_AFTER_LEN) as usize
    }

    /// Plaintext (= ciphertext) length: `Len - 23`.
    #[must_use]
    pub fn plaintext_len(&self) -> usize {
        self.body_len() - TAG_LEN
    }

    /// Whole frame length on the wire: `Len + 3`.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        self.len as usize + LEN_FIELD
    }
}

/// One complete frame cut out of the byte stream, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The validated header.
    pub header: FrameHeader,
    /// Ciphertext ‖ tag (exactly [`FrameHeader::body_len`] bytes).
    pub body: Bytes,
}

/// A streaming, bounded frame splitter: feed it bytes as they arrive, take complete
/// [`RawFrame`]s out.
///
/// The header is validated as soon as its 10 bytes are buffered (so an oversized `Len` is
/// rejected before any body is read). After an error the decoder is poisoned: it returns the
/// same error forever, because the stream can no longer be re-synchronised. Never panics.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    capacity: usize,
    pending: Option<FrameHeader>,
    failed: Option<WireError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// Default buffer bound: two maximal frames.
    pub const DEFAULT_CAPACITY: usize = 2 * MAX_FRAME_LEN;

    /// A decoder with [`FrameDecoder::DEFAULT_CAPACITY`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A decoder that buffers at most `capacity` bytes (raised to [`MAX_FRAME_LEN`] so any
    /// legal frame fits).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(MAX_FRAME_LEN);
        FrameDecoder {
            buf: BytesMut::new(),
            capacity,
            pending: None,
            failed: None,
        }
    }

    /// Bytes buffered and not yet returned as frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Free buffer space.
    #[must_use]
    pub fn space(&self) -> usize {
        self.capacity.saturating_sub(self.buf.len())
    }

    /// Buffers as much of `data` as fits; returns how many bytes were taken. The caller keeps
    /// the rest and feeds it after draining frames with [`FrameDecoder::next_frame`].
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.buf.extend_from_slice(data.get(..n).unwrap_or(&[]));
        n
    }

    /// Buffers all of `data` or nothing ([`WireError::BufferFull`]).
    pub fn push(&mut self, data: &[u8]) -> Result<(), WireError> {
        if data.len() > self.space() {
            return Err(WireError::BufferFull {
                capacity: self.capacity,
            });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the (sticky) error.
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, WireError> {
        Ok(self.next_frame_mut()?.map(|(header, body)| RawFrame {
            header,
            body: body.freeze(),
        }))
    }

    /// Appends bytes the caller gives away, without copying them when they directly follow
    /// the buffered bytes in memory (the usual case when the caller reads the transport into
    /// one `BytesMut` and hands over `split()` parts), or when nothing is buffered.
    ///
    /// Unlike [`FrameDecoder::feed`] this does not enforce the capacity bound: the caller's
    /// read size bounds the memory.
    pub fn feed_owned(&mut self, data: BytesMut) {
        if self.buf.is_empty() {
            self.buf = data;
        } else {
            self.buf.unsplit(data);
        }
    }

    /// Lends the internal buffer out (leaving the decoder empty): the caller appends transport
    /// bytes after its contents (a partial frame) and gives it back with
    /// [`FrameDecoder::feed_owned`]. This lets a reader read straight into the decoder's
    /// buffer without holding a borrow of the decoder during the read.
    pub fn take_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    /// Like [`FrameDecoder::next_frame`], but the body (ciphertext ‖ tag) stays mutable so it
    /// can be opened in place: no copy of the frame is made (it is split off the buffer).
    pub fn next_frame_mut(&mut self) -> Result<Option<(FrameHeader, BytesMut)>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(hdr_bytes) = self.buf.get(..HEADER_LEN) else {
                    if let Some(&[a, b, c]) = self.buf.get(..LEN_FIELD)
                        && let Err(e) = check_len(u32::from_be_bytes([0, a, b, c]))
                    {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                    return Ok(None);
                };
                match FrameHeader::decode(hdr_bytes) {
                    Ok(h) => {
                        self.buf.advance(HEADER_LEN);
                        self.pending = Some(h);
                        h
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let body_len = header.body_len();
        if self.buf.len() < body_len {
            return Ok(None);
        }
        let body = self.buf.split_to(body_len);
        self.pending = None;
        Ok(Some((header, body)))
    }

    /// `true` once a malformed header was seen.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }
}

/// Builds a complete frame from a header and ciphertext ‖ tag; fails if `body` does not have
/// the length the header announces.
pub fn encode_frame(
    header: &FrameHeader,
    body: &[u8],
    out: &mut impl BufMut,
) -> Result<(), WireError> {
    if body.len() != header.body_len() {
        return Err(WireError::InvalidValue {
            what: "frame body length",
            value: body.len() as u64,
        });
    }
    out.put_slice(&header.encode());
    out.put_slice(body);
    Ok(())
}

/// A frame whose plaintext is ready to be sealed: the engine encrypts [`UnsealedFrame::body`]
/// in place with [`FrameHeader::aad`] as associated data, appends the 16-byte tag, then calls
/// [`UnsealedFrame::finish`], which checks the length and yields the wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealedFrame {
    /// The header (its `Len` already counts the tag).
    pub header: FrameHeader,
    /// The plaintext (capacity reserved for the tag); ciphertext ‖ tag after sealing.
    pub body: Vec<u8>,
}

impl UnsealedFrame {
    /// `header ‖ body`; fails unless `body` is exactly ciphertext ‖ tag for this header.
    pub fn finish(self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.header.frame_len());
        encode_frame(&self.header, &self.body, &mut out)?;
        Ok(out)
    }
}

/// STREAM plaintext: `Flags u8 (bit0 FIN) ‖ Offset u64 ‖ Data varstr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPayload {
    /// Last data of the stream.
    pub fin: bool,
    /// Byte offset of `data` within the stream.
    pub offset: u64,
    /// Stream bytes (at most [`MAX_STREAM_DATA`] to fit one frame; 65 535 by format).
    pub data: Bytes,
}

/// FIN bit of the STREAM flags.
pub const FLAG_FIN: u8 = 0x01;

impl StreamPayload {
    /// Encoded length: 11 + data length.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        STREAM_OVERHEAD + self.data.len()
    }

    /// Appends the plaintext; fails if `data` exceeds 65 535 bytes.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        if self.data.len() > usize::from(u16::MAX) {
            return Err(WireError::OutOfRange { what: "varstr" });
        }
        out.put_u8(if self.fin { FLAG_FIN } else { 0 });
        out.put_u64(self.offset);
        out.put_varstr(&self.data)
    }

    /// Decodes a plaintext (copies the data).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let (fin, offset, data) = Self::parse(buf)?;
        Ok(StreamPayload {
            fin,
            offset,
            data: Bytes::copy_from_slice(data),
        })
    }

    /// Decodes a plaintext without copying the data.
    pub fn decode_bytes(buf: &Bytes) -> Result<Self, WireError> {
        let (fin, offset, data) = Self::parse(buf)?;
        Ok(StreamPayload {
            fin,
            offset,
            data: buf.slice_ref(data),
        })
    }

    fn parse(buf: &[u8]) -> Result<(bool, u64, &[u8]), WireError> {
        let mut r = Reader::new(buf);
        let flags = r.u8()?;
        if flags & !FLAG_FIN != 0 {
            return Err(WireError::BadFlags(flags));
        }
        let offset = r.u64()?;
        let data = r.varstr()?;
        r.finish()?;
        Ok((flags & FLAG_FIN != 0, offset, data))
    }
}

/// WINDOW_UPDATE scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `0`: the connection window (sent on stream 0).
    Connection = 0,
    /// `1`: the window of the stream named in the header.
    Stream = 1,
}

/// WINDOW_UPDATE plaintext: `Scope u8 ‖ Credit u32` (credit is an increment, PD-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowUpdate {
    /// Which window.
    pub scope: Scope,
    /// Credit increment in STREAM data bytes.
    pub credit: u32,
}

impl WindowUpdate {
    /// Encoded length (5).
    pub const LEN: usize = 5;

    /// Appends the plaintext.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(self.scope as u8);
        out.put_u32(self.credit);
    }

    /// Decodes a plaintext; a scope other than 0/1 is [`WireError::InvalidValue`].
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let scope = match r.u8()? {
            0 => Scope::Connection,
            1 => Scope::Stream,
            v => {
                return Err(WireError::InvalidValue {
                    what: "window scope",
                    value: v.into(),
                });
            }
        };
        let credit = r.u32()?;
        r.finish()?;
        Ok(WindowUpdate { scope, credit })
    }

    /// PD-7: scope 1 on stream 0 is malformed.
    pub fn check_stream(&self, stream_id: u32) -> Result<(), WireError> {
        if self.scope == Scope::Stream && stream_id == 0 {
            return Err(WireError::InvalidValue {
                what: "stream-scope window on stream 0",
                value: 0,
            });
        }
        Ok(())
    }
}

/// PING plaintext: an 8-byte token. Whether it is an echo is the header's `AAD` (PD-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ping {
    /// Opaque token, echoed back unchanged.
    pub token: [u8; 8],
}

impl Ping {
    /// Encoded length (8).
    pub const LEN: usize = 8;

    /// Appends the plaintext.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&self.token);
    }

    /// Decodes a plaintext (exactly 8 bytes).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let token = r.array()?;
        r.finish()?;
        Ok(Ping { token })
    }
}

/// CLOSE plaintext: `Code u16 ‖ Reason varstr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Error code.
    pub code: ErrorCode,
    /// Free-form reason (normally UTF-8, not enforced on receipt; never log peer reasons
    /// unescaped).
    pub reason: Bytes,
}

impl Close {
    /// A CLOSE with a text reason.
    #[must_use]
    pub fn new(code: ErrorCode, reason: &str) -> Self {
        Close {
            code,
            reason: Bytes::copy_from_slice(reason.as_bytes()),
        }
    }

    /// Encoded length: 4 + reason length.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        4 + self.reason.len()
    }

    /// The reason as text, replacing invalid UTF-8.
    #[must_use]
    pub fn reason_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.reason)
    }

    /// Appends the plaintext; fails if the reason exceeds 65 535 bytes.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        if self.reason.len() > usize::from(u16::MAX) {
            return Err(WireError::OutOfRange { what: "varstr" });
        }
        out.put_u16(self.code.to_u16());
        out.put_varstr(&self.reason)
    }

    /// Decodes a plaintext.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let code = ErrorCode::from_u16(r.u16()?);
        let reason = Bytes::copy_from_slice(r.varstr()?);
        r.finish()?;
        Ok(Close { code, reason })
    }
}

/// A decoded frame plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// STREAM.
    Stream(StreamPayload),
    /// WINDOW_UPDATE.
    WindowUpdate(WindowUpdate),
    /// PING (echo or not: see the header).
    Ping(Ping),
    /// KEY_UPDATE (empty).
    KeyUpdate,
    /// CLOSE.
    Close(Close),
    /// PATH_CONTROL: opaque L1 bytes (decode with [`crate::l1`] if this node has an L1 role).
    PathControl(Bytes),
}

impl Payload {
    /// The frame type that carries this payload.
    #[must_use]
    pub fn frame_type(&self) -> FrameType {
        match self {
            Payload::Stream(_) => FrameType::Stream,
            Payload::WindowUpdate(_) => FrameType::WindowUpdate,
            Payload::Ping(_) => FrameType::Ping,
            Payload::KeyUpdate => FrameType::KeyUpdate,
            Payload::Close(_) => FrameType::Close,
            Payload::PathControl(_) => FrameType::PathControl,
        }
    }

    /// Plaintext length.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        match self {
            Payload::Stream(s) => s.encoded_len(),
            Payload::WindowUpdate(_) => WindowUpdate::LEN,
            Payload::Ping(_) => Ping::LEN,
            Payload::KeyUpdate => 0,
            Payload::Close(c) => c.encoded_len(),
            Payload::PathControl(b) => b.len(),
        }
    }

    /// Appends the plaintext.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        match self {
            Payload::Stream(s) => s.encode(out)?,
            Payload::WindowUpdate(w) => w.encode(out),
            Payload::Ping(p) => p.encode(out),
            Payload::KeyUpdate => {}
            Payload::Close(c) => c.encode(out)?,
            Payload::PathControl(b) => out.put_slice(b),
        }
        Ok(())
    }

    /// The plaintext as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes the plaintext of a frame of type `ty` (strict: trailing bytes rejected).
    pub fn decode(ty: FrameType, plaintext: &[u8]) -> Result<Self, WireError> {
        Ok(match ty {
            FrameType::Stream => Payload::Stream(StreamPayload::decode(plaintext)?),
            FrameType::WindowUpdate => Payload::WindowUpdate(WindowUpdate::decode(plaintext)?),
            FrameType::Ping => Payload::Ping(Ping::decode(plaintext)?),
            FrameType::KeyUpdate => {
                Reader::new(plaintext).finish()?;
                Payload::KeyUpdate
            }
            FrameType::Close => Payload::Close(Close::decode(plaintext)?),
            FrameType::PathControl => Payload::PathControl(Bytes::copy_from_slice(plaintext)),
        })
    }

    /// Like [`Payload::decode`] but without copying: STREAM data and PATH_CONTROL bytes are
    /// slices of `plaintext` (wrap the opened AEAD buffer with `Bytes::from(vec)`).
    pub fn decode_bytes(ty: FrameType, plaintext: &Bytes) -> Result<Self, WireError> {
        Ok(match ty {
            FrameType::Stream => Payload::Stream(StreamPayload::decode_bytes(plaintext)?),
            FrameType::PathControl => Payload::PathControl(plaintext.clone()),
            other => Self::decode(other, plaintext)?,
        })
    }

    /// Header and plaintext of a frame carrying this payload, ready for sealing.
    pub fn unsealed(&self, stream_id: u32, aad: u16) -> Result<UnsealedFrame, WireError> {
        let header = self.header(stream_id, aad)?;
        let mut body = Vec::with_capacity(self.encoded_len() + TAG_LEN);
        self.encode(&mut body)?;
        Ok(UnsealedFrame { header, body })
    }

    /// The header for this payload on `stream_id` with header field `aad`.
    pub fn header(&self, stream_id: u32, aad: u16) -> Result<FrameHeader, WireError> {
        FrameHeader::for_plaintext(self.frame_type(), stream_id, aad, self.encoded_len())
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
    fn constants() {
        assert_eq!(MAX_LEN, 65532);
        assert_eq!(MAX_FRAME_LEN, 65535);
        assert_eq!(MAX_PLAINTEXT_LEN, 65509);
        assert_eq!(MAX_STREAM_DATA, 65498);
        assert_eq!(max_stream_data(), MAX_STREAM_DATA);
    }

    #[test]
    fn stream_owner() {
        assert_eq!(StreamOwner::of(0), StreamOwner::Connection);
        assert_eq!(StreamOwner::of(1), StreamOwner::Initiator);
        assert_eq!(StreamOwner::of(2), StreamOwner::Responder);
        assert_eq!(StreamOwner::of(u32::MAX), StreamOwner::Initiator);
    }

    #[test]
    fn header_golden() {
        // STREAM on stream 1 carrying a 14-byte plaintext ("hi" with FIN at offset 0):
        // Len = 7 + 13 + 16 = 36 = 0x000024.
        let p = Payload::Stream(StreamPayload {
            fin: true,
            offset: 0,
            data: Bytes::from_static(b"hi"),
        });
        let hdr = p.header(1, 0).unwrap();
        assert_eq!(hdr.encode().to_vec(), h("000024 00 00000001 0000"));
        assert_eq!(p.to_vec().unwrap(), h("01 0000000000000000 0002 6869"));
        assert_eq!(hdr.body_len(), 29);
        assert_eq!(hdr.plaintext_len(), 13);
        assert_eq!(hdr.frame_len(), 39);
        // PING echo on stream 0: AAD = 1.
        let ping = FrameHeader::for_plaintext(FrameType::Ping, 0, AAD_PING_ACK, 8).unwrap();
        assert_eq!(ping.aad().to_vec(), h("00001f 02 00000000 0001"));
        assert!(ping.is_ping_ack());
        let d = FrameHeader::decode(&h("00001f 02 00000000 0001 ffff")).unwrap();
        assert_eq!(d, ping);
        // PATH_CONTROL type byte 0x20, stream 0x01020304, max length.
        let pc = FrameHeader::new(FrameType::PathControl, 0x0102_0304, 0, MAX_LEN).unwrap();
        assert_eq!(pc.encode().to_vec(), h("00fffc 20 01020304 0000"));
    }

    #[test]
    fn header_rejections() {
        // Len 22 < 23.
        assert_eq!(
            FrameHeader::decode(&h("000016 00 00000001 0000")),
            Err(WireError::FrameTooShort { len: 22 })
        );
        // Len 23 is the minimum (empty plaintext).
        assert_eq!(
            FrameHeader::decode(&h("000017 03 00000000 0000"))
                .unwrap()
                .plaintext_len(),
            0
        );
        // Len 65533: Len + 3 > 65535. Checked before the type (even an unknown type).
        assert_eq!(
            FrameHeader::decode(&h("00fffd 99 00000000 0000")),
            Err(WireError::FrameTooLarge { len: 65533 })
        );
        assert_eq!(
            FrameHeader::decode(&h("ffffff")),
            Err(WireError::FrameTooLarge { len: 0xffffff })
        );
        // Unknown type.
        assert_eq!(
            FrameHeader::decode(&h("000017 05 00000000 0000")),
            Err(WireError::UnknownFrameType(5))
        );
        assert_eq!(
            FrameHeader::decode(&h("000017 21 00000000 0000")),
            Err(WireError::UnknownFrameType(0x21))
        );
        // AAD 1 outside PING; AAD 2 anywhere.
        assert_eq!(
            FrameHeader::decode(&h("000017 00 00000001 0001")),
            Err(WireError::BadAad { ty: 0, aad: 1 })
        );
        assert_eq!(
            FrameHeader::decode(&h("00001f 02 00000000 0002")),
            Err(WireError::BadAad { ty: 2, aad: 2 })
        );
        // Truncated header.
        assert_eq!(
            FrameHeader::decode(&h("000017 00 000000")),
            Err(WireError::Truncated { need: 4, have: 3 })
        );
        // Constructors enforce the same rules.
        assert!(FrameHeader::for_plaintext(FrameType::Stream, 1, 0, MAX_PLAINTEXT_LEN).is_ok());
        assert_eq!(
            FrameHeader::for_plaintext(FrameType::Stream, 1, 0, MAX_PLAINTEXT_LEN + 1),
            Err(WireError::FrameTooLarge { len: 65533 })
        );
        assert!(FrameHeader::for_plaintext(FrameType::Stream, 1, 0, usize::MAX).is_err());
        assert!(FrameHeader::new(FrameType::Close, 0, 1, 30).is_err());
    }

    #[test]
    fn payload_golden() {
        let w = Payload::WindowUpdate(WindowUpdate {
            scope: Scope::Stream,
            credit: 0x0001_0000,
        });
        assert_eq!(w.to_vec().unwrap(), h("01 00010000"));
        let p = Payload::Ping(Ping {
            token: *b"\x01\x02\x03\x04\x05\x06\x07\x08",
        });
        assert_eq!(p.to_vec().unwrap(), h("0102030405060708"));
        let c = Payload::Close(Close::new(ErrorCode::FlowControlViolation, "fc"));
        assert_eq!(c.to_vec().unwrap(), h("0005 0002 6663"));
        assert_eq!(Payload::KeyUpdate.to_vec().unwrap(), Vec::<u8>::new());
        let s = Payload::Stream(StreamPayload {
            fin: false,
            offset: 0x0102,
            data: Bytes::new(),
        });
        assert_eq!(s.to_vec().unwrap(), h("00 0000000000000102 0000"));
        for (ty, bytes, want) in [
            (FrameType::WindowUpdate, "0100010000", w),
            (FrameType::Ping, "0102030405060708", p),
            (FrameType::Close, "000500026663", c),
            (FrameType::KeyUpdate, "", Payload::KeyUpdate),
            (FrameType::Stream, "0000000000000001020000", s),
            (
                FrameType::PathControl,
                "abcd",
                Payload::PathControl(Bytes::from_static(&[0xab, 0xcd])),
            ),
        ] {
            assert_eq!(Payload::decode(ty, &h(bytes)).unwrap(), want);
        }
        let c = Close::decode(&h("8001 0000")).unwrap();
        assert_eq!(c.code, ErrorCode::L2_TICKET_INVALID);
        assert_eq!(
            Close::decode(&h("0007 0002 ff41")).unwrap().reason_lossy(),
            "\u{fffd}A"
        );
    }

    #[test]
    fn payload_rejections() {
        use FrameType as T;
        let cases: &[(FrameType, &str, WireError)] = &[
            (
                T::Stream,
                "02 0000000000000000 0000",
                WireError::BadFlags(2),
            ),
            (
                T::Stream,
                "81 0000000000000000 0000",
                WireError::BadFlags(0x81),
            ),
            (
                T::Stream,
                "01 0000000000000000 0002 68",
                WireError::Truncated { need: 2, have: 1 },
            ),
            (
                T::Stream,
                "01 0000000000000000 0001 6869",
                WireError::TrailingBytes { count: 1 },
            ),
            (
                T::Stream,
                "01 00000000",
                WireError::Truncated { need: 8, have: 4 },
            ),
            (T::Stream, "", WireError::Truncated { need: 1, have: 0 }),
            (
                T::WindowUpdate,
                "02 00000001",
                WireError::InvalidValue {
                    what: "window scope",
                    value: 2,
                },
            ),
            (
                T::WindowUpdate,
                "00 000001",
                WireError::Truncated { need: 4, have: 3 },
            ),
            (
                T::WindowUpdate,
                "00 00000001 00",
                WireError::TrailingBytes { count: 1 },
            ),
            (
                T::Ping,
                "01020304050607",
                WireError::Truncated { need: 8, have: 7 },
            ),
            (
                T::Ping,
                "010203040506070809",
                WireError::TrailingBytes { count: 1 },
            ),
            (T::KeyUpdate, "00", WireError::TrailingBytes { count: 1 }),
            (T::Close, "0007", WireError::Truncated { need: 2, have: 0 }),
            (
                T::Close,
                "0007 0000 00",
                WireError::TrailingBytes { count: 1 },
            ),
        ];
        for (ty, bytes, err) in cases {
            assert_eq!(
                &Payload::decode(*ty, &h(bytes)).unwrap_err(),
                err,
                "{ty:?} {bytes}"
            );
            assert_eq!(err.close_code(), ErrorCode::MalformedFrame);
        }
        let w = WindowUpdate {
            scope: Scope::Stream,
            credit: 1,
        };
        assert!(w.check_stream(0).is_err());
        assert!(w.check_stream(3).is_ok());
        assert!(
            WindowUpdate {
                scope: Scope::Connection,
                credit: 1
            }
            .check_stream(0)
            .is_ok()
        );
        let big = StreamPayload {
            fin: false,
            offset: 0,
            data: Bytes::from(vec![0u8; 65536]),
        };
        assert!(big.encode(&mut Vec::new()).is_err());
        let max = Payload::Stream(StreamPayload {
            fin: false,
            offset: 0,
            data: Bytes::from(vec![0u8; MAX_STREAM_DATA]),
        });
        assert_eq!(max.header(1, 0).unwrap().len_field(), MAX_LEN);
        let over = Payload::Stream(StreamPayload {
            fin: false,
            offset: 0,
            data: Bytes::from(vec![0u8; MAX_STREAM_DATA + 1]),
        });
        assert!(over.header(1, 0).is_err());
    }

    fn frame_bytes(ty: FrameType, sid: u32, body_len: usize, fill: u8) -> Vec<u8> {
        let hdr = FrameHeader::for_plaintext(ty, sid, 0, body_len - TAG_LEN).unwrap();
        let mut out = Vec::new();
        encode_frame(&hdr, &vec![fill; body_len], &mut out).unwrap();
        out
    }

    #[test]
    fn decoder_splits_byte_by_byte() {
        let mut wire = frame_bytes(FrameType::Stream, 1, 20, 0xaa);
        wire.extend(frame_bytes(FrameType::KeyUpdate, 0, 16, 0xbb));
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &wire {
            assert_eq!(d.feed(&[*b]), 1);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header.stream_id(), 1);
        assert_eq!(&got[0].body[..], &[0xaa; 20]);
        assert_eq!(got[1].header.frame_type(), FrameType::KeyUpdate);
        assert_eq!(&got[1].body[..], &[0xbb; 16]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decoder_owned_feeding_splits_in_place() {
        let mut wire = frame_bytes(FrameType::Stream, 1, 20, 0xaa);
        wire.extend(frame_bytes(FrameType::KeyUpdate, 0, 16, 0xbb));
        wire.extend(frame_bytes(FrameType::Stream, 3, 40, 0xcc));
        // One read buffer, handed over in pieces that cut frames anywhere.
        let mut rbuf = BytesMut::with_capacity(wire.len());
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in wire.chunks(7) {
            rbuf.extend_from_slice(piece);
            d.feed_owned(rbuf.split());
            while let Some((h, mut body)) = d.next_frame_mut().unwrap() {
                body[0] ^= 0xff; // writable in place
                got.push((h, body));
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0.stream_id(), 1);
        assert_eq!(got[0].1[0], 0x55);
        assert_eq!(&got[0].1[1..], &[0xaa; 19]);
        assert_eq!(got[1].0.frame_type(), FrameType::KeyUpdate);
        assert_eq!(&got[1].1[1..], &[0xbb; 15]);
        assert_eq!(got[2].0.stream_id(), 3);
        assert_eq!(got[2].1.len(), 40);
        assert_eq!(d.buffered(), 0);
        // Non-contiguous pieces are copied, with the same result.
        let mut d = FrameDecoder::new();
        let mut n = 0;
        for piece in wire.chunks(5) {
            d.feed_owned(BytesMut::from(piece));
            while d.next_frame_mut().unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, 3);
        // Lending the buffer: a read appends to the partial frame, which is then complete.
        let mut d = FrameDecoder::new();
        d.feed_owned(BytesMut::from(&wire[..31]));
        assert!(d.next_frame_mut().unwrap().is_some());
        assert!(d.next_frame_mut().unwrap().is_none());
        let mut lent = d.take_buffer();
        assert_eq!(lent.len(), 1);
        assert_eq!(d.buffered(), 0);
        lent.extend_from_slice(&wire[31..]);
        d.feed_owned(lent);
        let (h2, _) = d.next_frame_mut().unwrap().unwrap();
        assert_eq!(h2.frame_type(), FrameType::KeyUpdate);
        assert_eq!(d.next_frame_mut().unwrap().unwrap().0.stream_id(), 3);
        // Errors stay sticky on this path too.
        let mut d = FrameDecoder::new();
        d.feed_owned(BytesMut::from(&h("000005 00 00000001 0000")[..]));
        assert_eq!(d.next_frame_mut(), Err(WireError::FrameTooShort { len: 5 }));
        assert_eq!(d.next_frame(), Err(WireError::FrameTooShort { len: 5 }));
    }

    #[test]
    fn decoder_rejects_oversize_before_body_and_stays_failed() {
        let mut d = FrameDecoder::new();
        d.push(&h("00fffd 00 00000001 0000")).unwrap();
        assert_eq!(d.next_frame(), Err(WireError::FrameTooLarge { len: 65533 }));
        assert!(d.is_failed());
        d.push(&frame_bytes(FrameType::Ping, 0, 24, 1)).unwrap();
        assert_eq!(d.next_frame(), Err(WireError::FrameTooLarge { len: 65533 }));
    }

    #[test]
    fn decoder_is_bounded() {
        let mut d = FrameDecoder::with_capacity(0);
        assert_eq!(d.space(), MAX_FRAME_LEN);
        let big = vec![0u8; MAX_FRAME_LEN + 10];
        assert_eq!(d.feed(&big), MAX_FRAME_LEN);
        assert_eq!(
            d.push(&[0]),
            Err(WireError::BufferFull {
                capacity: MAX_FRAME_LEN
            })
        );
        assert_eq!(d.space(), 0);
        // The buffered zeros start with Len 0: too short.
        assert_eq!(d.next_frame(), Err(WireError::FrameTooShort { len: 0 }));
        let mut d = FrameDecoder::with_capacity(0);
        let f = frame_bytes(FrameType::Stream, 3, MAX_LEN as usize - 7, 7);
        assert_eq!(f.len(), MAX_FRAME_LEN);
        assert_eq!(d.feed(&f), MAX_FRAME_LEN);
        let got = d.next_frame().unwrap().unwrap();
        assert_eq!(got.body.len(), MAX_LEN as usize - 7);
        assert_eq!(d.space(), MAX_FRAME_LEN);
    }

    #[test]
    fn decoder_checks_len_from_three_bytes() {
        let mut d = FrameDecoder::new();
        d.push(&h("0000")).unwrap();
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&h("05")).unwrap();
        assert_eq!(d.next_frame(), Err(WireError::FrameTooShort { len: 5 }));
    }

    #[test]
    fn unsealed_frame() {
        let p = Payload::Ping(Ping { token: [9; 8] });
        let mut f = p.unsealed(0, AAD_PING_ACK).unwrap();
        assert_eq!(f.body, [9; 8]);
        assert_eq!(f.header.aad().to_vec(), h("00001f 02 00000000 0001"));
        // Forgetting the tag is caught.
        assert!(f.clone().finish().is_err());
        f.body.extend_from_slice(&[0xee; TAG_LEN]);
        let wire = f.finish().unwrap();
        assert_eq!(wire.len(), 34);
        let mut d = FrameDecoder::new();
        d.push(&wire).unwrap();
        let raw = d.next_frame().unwrap().unwrap();
        assert!(raw.header.is_ping_ack());
        assert_eq!(&raw.body[..8], &[9; 8]);
    }

    #[test]
    fn encode_frame_checks_body() {
        let hdr = FrameHeader::for_plaintext(FrameType::Ping, 0, 0, 8).unwrap();
        assert!(encode_frame(&hdr, &[0; 23], &mut Vec::new()).is_err());
        assert!(encode_frame(&hdr, &[0; 24], &mut Vec::new()).is_ok());
    }

    #[test]
    fn stream_decode_bytes_is_zero_copy() {
        let buf = Bytes::from(h("01 0000000000000005 0003 616263"));
        let s = StreamPayload::decode_bytes(&buf).unwrap();
        assert_eq!(&s.data[..], b"abc");
        assert!(s.fin);
        assert_eq!(s.offset, 5);
        assert_eq!(s.data.as_ptr(), buf[11..].as_ptr());
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            (
                any::<bool>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(fin, offset, d)| Payload::Stream(StreamPayload {
                    fin,
                    offset,
                    data: Bytes::from(d)
                })),
            (any::<bool>(), any::<u32>()).prop_map(|(s, credit)| Payload::WindowUpdate(
                WindowUpdate {
                    scope: if s { Scope::Stream } else { Scope::Connection },
                    credit
                }
            )),
            any::<[u8; 8]>().prop_map(|token| Payload::Ping(Ping { token })),
            Just(Payload::KeyUpdate),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..100)).prop_map(|(c, r)| {
                Payload::Close(Close {
                    code: ErrorCode::from_u16(c),
                    reason: Bytes::from(r),
                })
            }),
            proptest::collection::vec(any::<u8>(), 0..100)
                .prop_map(|b| Payload::PathControl(Bytes::from(b))),
        ]
    }

    proptest! {
        #[test]
        fn payload_round_trip(p in arb_payload(), sid in any::<u32>()) {
            let pt = p.to_vec().unwrap();
            prop_assert_eq!(pt.len(), p.encoded_len());
            let hdr = p.header(sid, 0).unwrap();
            let back = FrameHeader::decode(&hdr.encode()).unwrap();
            prop_assert_eq!(back, hdr);
            prop_assert_eq!(back.plaintext_len(), pt.len());
            prop_assert_eq!(Payload::decode(back.frame_type(), &pt).unwrap(), p);
        }

        #[test]
        fn decode_bytes_agrees(ty in prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(0x20)],
                               data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ty = FrameType::from_u8(ty).unwrap();
            let shared = Bytes::from(data.clone());
            prop_assert_eq!(Payload::decode_bytes(ty, &shared), Payload::decode(ty, &data));
        }

        #[test]
        fn header_decode_reencodes(bytes in any::<[u8; 10]>()) {
            if let Ok(hdr) = FrameHeader::decode_array(&bytes) {
                prop_assert_eq!(hdr.encode(), bytes);
            }
        }

        #[test]
        fn payload_decode_reencodes(ty in prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(0x20)],
                                    data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ty = FrameType::from_u8(ty).unwrap();
            if let Ok(p) = Payload::decode(ty, &data) {
                prop_assert_eq!(p.to_vec().unwrap(), data);
            }
        }

        #[test]
        fn decoder_chunking_is_irrelevant(lens in proptest::collection::vec(16usize..200, 1..6), chunk in 1usize..64) {
            let mut wire = Vec::new();
            for (i, l) in lens.iter().enumerate() {
                wire.extend(frame_bytes(FrameType::Stream, i as u32, *l, i as u8));
            }
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                d.push(c).unwrap();
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got.len(), lens.len());
            for (i, (f, l)) in got.iter().zip(&lens).enumerate() {
                prop_assert_eq!(f.header.stream_id(), i as u32);
                prop_assert_eq!(&f.body[..], &vec![i as u8; *l][..]);
            }
        }
    }
}

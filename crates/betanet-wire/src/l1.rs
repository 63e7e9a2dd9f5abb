//! L1 path header, segments and congestion feedback (SPEC §5), carried in `PATH_CONTROL`
//! frames (never on the wire by themselves).
//!
//! ```text
//! Version u8 = 0x02 | Type u8 (0x01 single, 0x03 list) | HeaderLen u16 | PayloadLen u16 |
//! Flags u8 (bit0 encrypted meta, bit1 congestion feedback) | SegCnt u8 | segments
//! [ | congestion feedback (if Flags bit1) ] | payload
//! segment  = NextNode[20] | Expiry u32 | Timestamp u64 | SigLen u16 | Sig
//! feedback = ECN u8 | LossPct u8 | RTTms u16 | Spare u16
//! ```
//!
//! Profile decisions (SPEC §5 leaves them open): `HeaderLen` counts every header byte from
//! `Version` through the last segment **and** the feedback block when present; `PayloadLen`
//! counts the bytes after the header; a `PATH_CONTROL` plaintext is exactly
//! `HeaderLen + PayloadLen` bytes. `Type` single requires exactly one segment, list at least
//! one. `Expiry` is Unix seconds, `Timestamp` Unix milliseconds. `LossPct` above 100 is
//! rejected; `Spare` is carried unchanged. Decoding never verifies signatures: use
//! [`PathHeader::segment_signed_bytes`] and `betanet-crypto` (SHA-256 then Ed25519 verify).

use bytes::{BufMut, Bytes};

use crate::WireError;
use crate::reader::{Reader, Writer};

/// The L1 header version.
pub const L1_VERSION: u8 = 0x02;
/// NodeID length (SPEC §3).
pub const NODE_ID_LEN: usize = 20;
/// Domain separator of segment signatures.
pub const SEG_SIG_CONTEXT: &[u8] = b"BN-L1-seg";
/// Fixed header bytes before the segments.
pub const FIXED_HEADER_LEN: usize = 8;
/// Encoded feedback length.
pub const FEEDBACK_LEN: usize = 6;
/// Flags bit 0: encrypted metadata.
pub const FLAG_ENCRYPTED_META: u8 = 0x01;
/// Flags bit 1: congestion feedback present.
pub const FLAG_CONGESTION_FEEDBACK: u8 = 0x02;

/// A NodeID (`SHA-256(ed25519_pub)[0..20]`).
pub type NodeId = [u8; NODE_ID_LEN];

/// Path header type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathType {
    /// `0x01`: a single segment.
    Single = 0x01,
    /// `0x03`: a list of segments.
    List = 0x03,
}

impl PathType {
    /// Parses the type byte.
    pub fn from_u8(b: u8) -> Result<Self, WireError> {
        match b {
            0x01 => Ok(PathType::Single),
            0x03 => Ok(PathType::List),
            v => Err(WireError::InvalidValue {
                what: "L1 path type",
                value: v.into(),
            }),
        }
    }
}

/// One path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The hop this segment forwards to.
    pub next_node: NodeId,
    /// Expiry, Unix seconds.
    pub expiry: u32,
    /// Creation time, Unix milliseconds.
    pub timestamp: u64,
    /// Signature bytes (Ed25519: 64).
    pub sig: Bytes,
}

impl Segment {
    /// Encoded length.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        NODE_ID_LEN + 4 + 8 + 2 + self.sig.len()
    }

    fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        out.put_slice(&self.next_node);
        out.put_u32(self.expiry);
        out.put_u64(self.timestamp);
        out.put_varstr(&self.sig)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Segment {
            next_node: r.array()?,
            expiry: r.u32()?,
            timestamp: r.u64()?,
            sig: Bytes::copy_from_slice(r.varstr()?),
        })
    }

    /// The exact bytes whose SHA-256 the sender signs:
    /// `"BN-L1-seg" ‖ Version ‖ Type ‖ Flags ‖ NextNode ‖ Expiry(u32be) ‖ PrevNode ‖
    /// Timestamp(u64be)`.
    #[must_use]
    pub fn signed_bytes(
        &self,
        version: u8,
        ty: PathType,
        flags: u8,
        prev_node: &NodeId,
    ) -> Vec<u8> {
        let mut v = Vec::with_capacity(SEG_SIG_CONTEXT.len() + 3 + 2 * NODE_ID_LEN + 12);
        v.extend_from_slice(SEG_SIG_CONTEXT);
        v.push(version);
        v.push(ty as u8);
        v.push(flags);
        v.extend_from_slice(&self.next_node);
        v.extend_from_slice(&self.expiry.to_be_bytes());
        v.extend_from_slice(prev_node);
        v.extend_from_slice(&self.timestamp.to_be_bytes());
        v
    }
}

/// Congestion feedback block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CongestionFeedback {
    /// ECN marking state.
    pub ecn: u8,
    /// Loss in percent (0..=100).
    pub loss_pct: u8,
    /// Smoothed RTT in milliseconds.
    pub rtt_ms: u16,
    /// Spare (carried unchanged; senders write 0).
    pub spare: u16,
}

impl CongestionFeedback {
    /// Appends the 6 bytes; fails if `loss_pct > 100`.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        self.check()?;
        out.put_u8(self.ecn);
        out.put_u8(self.loss_pct);
        out.put_u16(self.rtt_ms);
        out.put_u16(self.spare);
        Ok(())
    }

    fn check(&self) -> Result<(), WireError> {
        if self.loss_pct > 100 {
            return Err(WireError::InvalidValue {
                what: "LossPct",
                value: self.loss_pct.into(),
            });
        }
        Ok(())
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let fb = CongestionFeedback {
            ecn: r.u8()?,
            loss_pct: r.u8()?,
            rtt_ms: r.u16()?,
            spare: r.u16()?,
        };
        fb.check()?;
        Ok(fb)
    }

    /// Decodes exactly 6 bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let fb = Self::read(&mut r)?;
        r.finish()?;
        Ok(fb)
    }
}

/// An L1 path header (unverified: signatures are not checked by decoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHeader {
    /// Single or list.
    pub ty: PathType,
    /// Flags bit 0.
    pub encrypted_meta: bool,
    /// Segments (1 for single, 1..=255 for list).
    pub segments: Vec<Segment>,
    /// Congestion feedback (Flags bit 1).
    pub feedback: Option<CongestionFeedback>,
}

impl PathHeader {
    /// The Flags byte.
    #[must_use]
    pub fn flags(&self) -> u8 {
        let mut f = 0;
        if self.encrypted_meta {
            f |= FLAG_ENCRYPTED_META;
        }
        if self.feedback.is_some() {
            f |= FLAG_CONGESTION_FEEDBACK;
        }
        f
    }

    /// `HeaderLen`: fixed part + segments + feedback.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN
            + self
                .segments
                .iter()
                .map(Segment::encoded_len)
                .sum::<usize>()
            + if self.feedback.is_some() {
                FEEDBACK_LEN
            } else {
                0
            }
    }

    /// The signed bytes of segment `index`; the previous node of segment 0 is `origin` (the
    /// sender's NodeID), of segment `i > 0` the `next_node` of segment `i - 1`.
    #[must_use]
    pub fn segment_signed_bytes(&self, index: usize, origin: &NodeId) -> Option<Vec<u8>> {
        let seg = self.segments.get(index)?;
        let prev = match index.checked_sub(1) {
            None => origin,
            Some(p) => &self.segments.get(p)?.next_node,
        };
        Some(seg.signed_bytes(L1_VERSION, self.ty, self.flags(), prev))
    }

    fn check_count(ty: PathType, n: usize) -> Result<u8, WireError> {
        let ok = match ty {
            PathType::Single => n == 1,
            PathType::List => (1..=255).contains(&n),
        };
        if !ok {
            return Err(WireError::InvalidValue {
                what: "L1 SegCnt",
                value: n as u64,
            });
        }
        Ok(n as u8)
    }
}

/// A `PATH_CONTROL` plaintext: an L1 header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathControl {
    /// The header.
    pub header: PathHeader,
    /// The payload after the header (`PayloadLen` bytes).
    pub payload: Bytes,
}

impl PathControl {
    /// Appends the encoding; fails on a bad segment count, a header or payload above 65 535
    /// bytes, or invalid feedback.
    pub fn encode(&self, out: &mut impl BufMut) -> Result<(), WireError> {
        let h = &self.header;
        let cnt = PathHeader::check_count(h.ty, h.segments.len())?;
        let hlen = u16::try_from(h.encoded_len()).map_err(|_| WireError::OutOfRange {
            what: "L1 HeaderLen",
        })?;
        let plen = u16::try_from(self.payload.len()).map_err(|_| WireError::OutOfRange {
            what: "L1 PayloadLen",
        })?;
        if let Some(fb) = &h.feedback {
            fb.check()?;
        }
        if h.segments
            .iter()
            .any(|s| s.sig.len() > usize::from(u16::MAX))
        {
            return Err(WireError::OutOfRange { what: "L1 SigLen" });
        }
        out.put_u8(L1_VERSION);
        out.put_u8(h.ty as u8);
        out.put_u16(hlen);
        out.put_u16(plen);
        out.put_u8(h.flags());
        out.put_u8(cnt);
        for s in &h.segments {
            s.encode(out)?;
        }
        if let Some(fb) = &h.feedback {
            fb.encode(out)?;
        }
        out.put_slice(&self.payload);
        Ok(())
    }

    /// The encoding as a vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut v = Vec::with_capacity(self.header.encoded_len() + self.payload.len());
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decodes a `PATH_CONTROL` plaintext (strict: lengths must match, no trailing bytes).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        if version != L1_VERSION {
            return Err(WireError::InvalidValue {
                what: "L1 version",
                value: version.into(),
            });
        }
        let ty = PathType::from_u8(r.u8()?)?;
        let hlen = usize::from(r.u16()?);
        let plen = usize::from(r.u16()?);
        let flags = r.u8()?;
        if flags & !(FLAG_ENCRYPTED_META | FLAG_CONGESTION_FEEDBACK) != 0 {
            return Err(WireError::BadFlags(flags));
        }
        let cnt = usize::from(r.u8()?);
        PathHeader::check_count(ty, cnt)?;
        let mut segments = Vec::with_capacity(cnt.min(r.remaining() / 34 + 1));
        for _ in 0..cnt {
            segments.push(Segment::decode(&mut r)?);
        }
        let feedback = if flags & FLAG_CONGESTION_FEEDBACK != 0 {
            Some(CongestionFeedback::read(&mut r)?)
        } else {
            None
        };
        if r.consumed() != hlen {
            return Err(WireError::InvalidValue {
                what: "L1 HeaderLen",
                value: hlen as u64,
            });
        }
        let payload = Bytes::copy_from_slice(r.take(plen)?);
        r.finish()?;
        Ok(PathControl {
            header: PathHeader {
                ty,
                encrypted_meta: flags & FLAG_ENCRYPTED_META != 0,
                segments,
                feedback,
            },
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn seg(n: u8) -> Segment {
        Segment {
            next_node: [n; 20],
            expiry: 0x6000_0000,
            timestamp: 0x0102,
            sig: Bytes::from(vec![0xee; 2]),
        }
    }

    #[test]
    fn golden() {
        let pc = PathControl {
            header: PathHeader {
                ty: PathType::Single,
                encrypted_meta: false,
                segments: vec![seg(0x11)],
                feedback: Some(CongestionFeedback {
                    ecn: 1,
                    loss_pct: 5,
                    rtt_ms: 300,
                    spare: 0,
                }),
            },
            payload: Bytes::from_static(b"hi"),
        };
        // HeaderLen = 8 + (20+4+8+2+2) + 6 = 50 = 0x32.
        let want = h(concat!(
            "02 01 0032 0002 02 01",
            "1111111111111111111111111111111111111111 60000000 0000000000000102 0002 eeee",
            "01 05 012c 0000",
            "6869"
        ));
        assert_eq!(pc.to_vec().unwrap(), want);
        assert_eq!(PathControl::decode(&want).unwrap(), pc);
        let origin = [0xaa; 20];
        assert_eq!(
            pc.header.segment_signed_bytes(0, &origin).unwrap(),
            h(concat!(
                "424e2d4c312d736567 02 01 02",
                "1111111111111111111111111111111111111111 60000000",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 0000000000000102"
            ))
        );
        assert!(pc.header.segment_signed_bytes(1, &origin).is_none());
        let list = PathHeader {
            ty: PathType::List,
            encrypted_meta: true,
            segments: vec![seg(1), seg(2)],
            feedback: None,
        };
        let sb = list.segment_signed_bytes(1, &origin).unwrap();
        assert_eq!(&sb[9..12], &[0x02, 0x03, 0x01]);
        assert_eq!(&sb[36..56], &[1u8; 20]);
        assert_eq!(
            CongestionFeedback::decode(&h("0005012c0000"))
                .unwrap()
                .rtt_ms,
            300
        );
    }

    #[test]
    fn rejections() {
        let good = PathControl {
            header: PathHeader {
                ty: PathType::List,
                encrypted_meta: false,
                segments: vec![seg(1)],
                feedback: None,
            },
            payload: Bytes::new(),
        }
        .to_vec()
        .unwrap();
        assert_eq!(&good[..8], &h("02 03 002c 0000 00 01")[..]);
        let mut b = good.clone();
        b[0] = 1;
        assert_eq!(
            PathControl::decode(&b),
            Err(WireError::InvalidValue {
                what: "L1 version",
                value: 1
            })
        );
        let mut b = good.clone();
        b[1] = 2;
        assert!(PathControl::decode(&b).is_err());
        let mut b = good.clone();
        b[6] = 0x04;
        assert_eq!(PathControl::decode(&b), Err(WireError::BadFlags(4)));
        let mut b = good.clone();
        b[7] = 0;
        assert!(PathControl::decode(&b).is_err());
        let mut b = good.clone();
        b[3] = 0x2d; // HeaderLen off by one
        assert_eq!(
            PathControl::decode(&b),
            Err(WireError::InvalidValue {
                what: "L1 HeaderLen",
                value: 0x2d
            })
        );
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            PathControl::decode(&b),
            Err(WireError::TrailingBytes { count: 1 })
        );
        let mut b = good.clone();
        b[5] = 1; // PayloadLen 1 but no payload
        assert_eq!(
            PathControl::decode(&b),
            Err(WireError::Truncated { need: 1, have: 0 })
        );
        assert!(PathControl::decode(&good[..good.len() - 1]).is_err());
        // Single with two segments cannot be encoded; LossPct > 100 rejected both ways.
        let bad = PathControl {
            header: PathHeader {
                ty: PathType::Single,
                encrypted_meta: false,
                segments: vec![seg(1), seg(2)],
                feedback: None,
            },
            payload: Bytes::new(),
        };
        assert!(bad.to_vec().is_err());
        assert!(CongestionFeedback::decode(&h("0065012c0000")).is_err());
        assert!(CongestionFeedback::decode(&h("0064012c0000")).is_ok());
    }

    fn arb_pc() -> impl Strategy<Value = PathControl> {
        let seg = (
            any::<[u8; 20]>(),
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..70),
        )
            .prop_map(|(next_node, expiry, timestamp, sig)| Segment {
                next_node,
                expiry,
                timestamp,
                sig: Bytes::from(sig),
            });
        let fb = (any::<u8>(), 0u8..=100, any::<u16>(), any::<u16>()).prop_map(
            |(ecn, loss_pct, rtt_ms, spare)| CongestionFeedback {
                ecn,
                loss_pct,
                rtt_ms,
                spare,
            },
        );
        (
            any::<bool>(),
            any::<bool>(),
            proptest::collection::vec(seg, 1..5),
            proptest::option::of(fb),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |(single, encrypted_meta, mut segments, feedback, payload)| {
                    let ty = if single {
                        segments.truncate(1);
                        PathType::Single
                    } else {
                        PathType::List
                    };
                    PathControl {
                        header: PathHeader {
                            ty,
                            encrypted_meta,
                            segments,
                            feedback,
                        },
                        payload: Bytes::from(payload),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(pc in arb_pc()) {
            let enc = pc.to_vec().unwrap();
            prop_assert_eq!(usize::from(u16::from_be_bytes([enc[2], enc[3]])), pc.header.encoded_len());
            prop_assert_eq!(PathControl::decode(&enc).unwrap(), pc);
        }

        #[test]
        fn decode_reencodes(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(pc) = PathControl::decode(&data) {
                prop_assert_eq!(pc.to_vec().unwrap(), data);
            }
        }
    }
}

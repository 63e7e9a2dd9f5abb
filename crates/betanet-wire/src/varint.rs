//! Variable-length integers: QUIC varints (RFC 9000 §16, SPEC §1), unsigned LEB128 (multihash
//! / multiformats), and `varstr` (u16 length + bytes).

use crate::WireError;
use crate::reader::{Reader, Writer};

/// Largest value a QUIC varint can carry: `2^62 - 1`.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Number of bytes of the shortest QUIC varint encoding of `v`.
pub fn encoded_len(v: u64) -> Result<usize, WireError> {
    match v {
        0..=0x3f => Ok(1),
        0x40..=0x3fff => Ok(2),
        0x4000..=0x3fff_ffff => Ok(4),
        0x4000_0000..=MAX_VARINT => Ok(8),
        _ => Err(WireError::OutOfRange { what: "varint" }),
    }
}

/// Writes the shortest QUIC varint encoding of `v` into `out`; returns its length.
pub fn encode_into(v: u64, out: &mut [u8; 8]) -> Result<usize, WireError> {
    let n = encoded_len(v)?;
    let prefix: u64 = match n {
        1 => 0,
        2 => 0b01,
        4 => 0b10,
        _ => 0b11,
    };
    let shift = 8 * n as u32 - 2;
    let tagged = v | (prefix << shift);
    let be = tagged.to_be_bytes();
    out[..n].copy_from_slice(&be[8 - n..]);
    Ok(n)
}

/// The shortest QUIC varint encoding of `v` as a vector.
pub fn encode(v: u64) -> Result<Vec<u8>, WireError> {
    let mut tmp = [0u8; 8];
    let n = encode_into(v, &mut tmp)?;
    Ok(tmp[..n].to_vec())
}

fn decode_any(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let first = *buf
        .first()
        .ok_or(WireError::Truncated { need: 1, have: 0 })?;
    let n = 1usize << (first >> 6);
    let bytes = buf.get(..n).ok_or(WireError::Truncated {
        need: n,
        have: buf.len(),
    })?;
    let mut v = u64::from(first & 0x3f);
    for b in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(*b);
    }
    Ok((v, n))
}

/// Decodes a QUIC varint from the start of `buf`, rejecting non-shortest forms (SPEC §1
/// strict mode). Returns the value and the number of bytes used.
pub fn decode_strict(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let (v, n) = decode_any(buf)?;
    if encoded_len(v)? != n {
        return Err(WireError::NonCanonical { what: "varint" });
    }
    Ok((v, n))
}

/// Decodes a QUIC varint from the start of `buf`, accepting non-shortest forms (as RFC 9000
/// itself does). Returns the value and the number of bytes used.
pub fn decode_lenient(buf: &[u8]) -> Result<(u64, usize), WireError> {
    decode_any(buf)
}

/// Maximum length of an unsigned LEB128 encoding of a `u64`.
pub const LEB128_MAX_LEN: usize = 10;

/// Unsigned LEB128 encoding of `v` (7 bits per byte, low group first, continuation bit 0x80).
#[must_use]
pub fn leb128_encode(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEB128_MAX_LEN);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Decodes an unsigned LEB128 value from the start of `buf`. Rejects overlong encodings (a
/// final byte of `0x00` after a continuation, e.g. `80 00`) and values that overflow `u64`.
/// Returns the value and the number of bytes used.
pub fn leb128_decode(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut v: u64 = 0;
    for i in 0..LEB128_MAX_LEN {
        let byte = *buf.get(i).ok_or(WireError::Truncated {
            need: i + 1,
            have: buf.len(),
        })?;
        let low = u64::from(byte & 0x7f);
        if i == LEB128_MAX_LEN - 1 && (byte & 0x80 != 0 || low > 1) {
            return Err(WireError::OutOfRange { what: "leb128" });
        }
        v |= low << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(WireError::NonCanonical { what: "leb128" });
            }
            return Ok((v, i + 1));
        }
    }
    Err(WireError::OutOfRange { what: "leb128" })
}

/// Encodes a `varstr` (u16 big-endian length + bytes); fails above 65 535 bytes.
pub fn encode_varstr(data: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    out.put_varstr(data)
}

/// Decodes a `varstr` from the start of `buf`; returns the content and the bytes used.
pub fn decode_varstr(buf: &[u8]) -> Result<(&[u8], usize), WireError> {
    let mut r = Reader::new(buf);
    let s = r.varstr()?;
    Ok((s, r.consumed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn rfc9000_vectors() {
        // RFC 9000 §A.1 sample encodings.
        assert_eq!(
            decode_strict(&h("c2197c5eff14e88c")).unwrap(),
            (151_288_809_941_952_652, 8)
        );
        assert_eq!(decode_strict(&h("9d7f3e7d")).unwrap(), (494_878_333, 4));
        assert_eq!(decode_strict(&h("7bbd")).unwrap(), (15_293, 2));
        assert_eq!(decode_strict(&h("25")).unwrap(), (37, 1));
        // "40 25" is a valid but non-shortest encoding of 37.
        assert_eq!(decode_lenient(&h("4025")).unwrap(), (37, 2));
        assert_eq!(
            decode_strict(&h("4025")),
            Err(WireError::NonCanonical { what: "varint" })
        );
        assert_eq!(
            encode(151_288_809_941_952_652).unwrap(),
            h("c2197c5eff14e88c")
        );
        assert_eq!(encode(494_878_333).unwrap(), h("9d7f3e7d"));
        assert_eq!(encode(15_293).unwrap(), h("7bbd"));
        assert_eq!(encode(37).unwrap(), h("25"));
    }

    #[test]
    fn boundaries() {
        assert_eq!(encode(63).unwrap(), h("3f"));
        assert_eq!(encode(64).unwrap(), h("4040"));
        assert_eq!(encode(16383).unwrap(), h("7fff"));
        assert_eq!(encode(16384).unwrap(), h("80004000"));
        assert_eq!(encode(0x3fff_ffff).unwrap(), h("bfffffff"));
        assert_eq!(encode(0x4000_0000).unwrap(), h("c000000040000000"));
        assert_eq!(encode(MAX_VARINT).unwrap(), h("ffffffffffffffff"));
        assert_eq!(
            encode(MAX_VARINT + 1),
            Err(WireError::OutOfRange { what: "varint" })
        );
        assert_eq!(
            decode_strict(&h("ffffffffffffffff")).unwrap(),
            (MAX_VARINT, 8)
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(
            decode_strict(&[]),
            Err(WireError::Truncated { need: 1, have: 0 })
        );
        assert_eq!(
            decode_strict(&h("40")),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        assert_eq!(
            decode_strict(&h("c0000000")),
            Err(WireError::Truncated { need: 8, have: 4 })
        );
        // Non-shortest at each width.
        assert!(decode_strict(&h("4000")).is_err());
        assert!(decode_strict(&h("80003fff")).is_err());
        assert!(decode_strict(&h("c00000003fffffff")).is_err());
        assert!(decode_lenient(&h("c00000003fffffff")).is_ok());
    }

    #[test]
    fn leb128_vectors() {
        assert_eq!(leb128_encode(0), h("00"));
        assert_eq!(leb128_encode(1), h("01"));
        assert_eq!(leb128_encode(127), h("7f"));
        assert_eq!(leb128_encode(128), h("8001"));
        assert_eq!(leb128_encode(300), h("ac02"));
        assert_eq!(leb128_encode(0x12), h("12")); // sha2-256 multihash code
        assert_eq!(leb128_encode(u64::MAX), h("ffffffffffffffffff01"));
        assert_eq!(leb128_decode(&h("ac02ff")).unwrap(), (300, 2));
        assert_eq!(
            leb128_decode(&h("ffffffffffffffffff01")).unwrap(),
            (u64::MAX, 10)
        );
        // Overlong: trailing zero group.
        assert_eq!(
            leb128_decode(&h("8000")),
            Err(WireError::NonCanonical { what: "leb128" })
        );
        assert_eq!(
            leb128_decode(&h("ff00")),
            Err(WireError::NonCanonical { what: "leb128" })
        );
        // Overflow.
        assert_eq!(
            leb128_decode(&h("ffffffffffffffffff02")),
            Err(WireError::OutOfRange { what: "leb128" })
        );
        assert!(leb128_decode(&h("ffffffffffffffffff8100")).is_err());
        // Truncated.
        assert_eq!(
            leb128_decode(&h("80")),
            Err(WireError::Truncated { need: 2, have: 1 })
        );
        assert_eq!(
            leb128_decode(&[]),
            Err(WireError::Truncated { need: 1, have: 0 })
        );
    }

    #[test]
    fn varstr_helpers() {
        let mut out = Vec::new();
        encode_varstr(b"hi", &mut out).unwrap();
        assert_eq!(out, h("00026869"));
        assert_eq!(decode_varstr(&h("0002686921")).unwrap(), (&b"hi"[..], 4));
        assert!(decode_varstr(&h("0003")).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trip(v in 0..=MAX_VARINT) {
            let enc = encode(v).unwrap();
            prop_assert_eq!(enc.len(), encoded_len(v).unwrap());
            prop_assert_eq!(decode_strict(&enc).unwrap(), (v, enc.len()));
            prop_assert_eq!(decode_lenient(&enc).unwrap(), (v, enc.len()));
        }

        #[test]
        fn varint_decoders_agree_or_strict_rejects(data in proptest::collection::vec(any::<u8>(), 0..10)) {
            match (decode_strict(&data), decode_lenient(&data)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Ok((v, n))) => prop_assert!(encoded_len(v).unwrap() < n),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (Ok(_), Err(_)) => prop_assert!(false, "strict accepted what lenient rejected"),
            }
        }

        #[test]
        fn leb128_round_trip(v in any::<u64>()) {
            let enc = leb128_encode(v);
            prop_assert_eq!(leb128_decode(&enc).unwrap(), (v, enc.len()));
        }

        #[test]
        fn leb128_decode_is_canonical(data in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((v, n)) = leb128_decode(&data) {
                prop_assert_eq!(&leb128_encode(v)[..], &data[..n]);
            }
        }
    }
}

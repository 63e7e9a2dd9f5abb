//! A bounds-checked [`Reader`] over untrusted bytes and a [`Writer`] extension for output
//! buffers (`Vec<u8>`, `BytesMut`).
//!
//! The reader never panics: every accessor checks the remaining length and returns
//! [`WireError::Truncated`]. Use [`Reader::finish`] where a format forbids trailing bytes.

use bytes::BufMut;

use crate::WireError;
use crate::varint;

/// A cursor over a byte slice that never panics on short or hostile input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Bytes consumed so far.
    #[must_use]
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The unconsumed rest of the input (does not advance).
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let have = self.remaining();
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WireError::Truncated { need: n, have })?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated { need: n, have })?;
        self.pos = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Takes all remaining bytes.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = self.rest();
        self.pos = self.buf.len();
        out
    }

    /// Looks at the next byte without consuming it.
    pub fn peek_u8(&self) -> Result<u8, WireError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(WireError::Truncated { need: 1, have: 0 })
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u24` into a `u32`.
    pub fn u24(&mut self) -> Result<u32, WireError> {
        let [a, b, c] = self.array::<3>()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a QUIC varint in strict mode (non-shortest encodings are rejected).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let (v, n) = varint::decode_strict(self.rest())?;
        self.pos += n;
        Ok(v)
    }

    /// Reads a QUIC varint accepting non-shortest encodings.
    pub fn varint_lenient(&mut self) -> Result<u64, WireError> {
        let (v, n) = varint::decode_lenient(self.rest())?;
        self.pos += n;
        Ok(v)
    }

    /// Reads a `varstr` (u16 length + bytes).
    pub fn varstr(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// Succeeds only if the whole input was consumed.
    pub fn finish(self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { count }),
        }
    }
}

/// Big-endian writing helpers for any [`BufMut`] (`Vec<u8>`, `BytesMut`, ...).
///
/// Methods that take a value with a range narrower than its Rust type return
/// [`WireError::OutOfRange`] instead of truncating silently; nothing is written then.
pub trait Writer: BufMut {
    /// Writes a big-endian `u24`; fails if `v >= 2^24`.
    fn put_u24_checked(&mut self, v: u32) -> Result<(), WireError> {
        if v > 0x00FF_FFFF {
            return Err(WireError::OutOfRange { what: "u24" });
        }
        let b = v.to_be_bytes();
        self.put_slice(&b[1..]);
        Ok(())
    }

    /// Writes a shortest-form QUIC varint; fails above `2^62 - 1`.
    fn put_varint(&mut self, v: u64) -> Result<(), WireError> {
        let mut tmp = [0u8; 8];
        let n = varint::encode_into(v, &mut tmp)?;
        self.put_slice(tmp.get(..n).unwrap_or(&[]));
        Ok(())
    }

    /// Writes a `varstr` (u16 length + bytes); fails above 65 535 bytes.
    fn put_varstr(&mut self, data: &[u8]) -> Result<(), WireError> {
        let len =
            u16::try_from(data.len()).map_err(|_| WireError::OutOfRange { what: "varstr" })?;
        self.put_u16(len);
        self.put_slice(data);
        Ok(())
    }
}

impl<T: BufMut + ?Sized> Writer for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn reads_fixed_width() {
        let data =
            hex::decode("01 0203 040506 0708090a 0b0c0d0e0f101112".replace(' ', "")).unwrap();
        let mut r = Reader::new(&data);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0203);
        assert_eq!(r.u24().unwrap(), 0x040506);
        assert_eq!(r.u32().unwrap(), 0x0708090a);
        assert_eq!(r.u64().unwrap(), 0x0b0c0d0e0f101112);
        assert_eq!(r.remaining(), 0);
        r.finish().unwrap();
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), Err(WireError::Truncated { need: 4, have: 3 }));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 3);
        assert_eq!(
            r.take(usize::MAX),
            Err(WireError::Truncated {
                need: usize::MAX,
                have: 3
            })
        );
        assert_eq!(r.take(2).unwrap(), &[1, 2]);
        assert_eq!(
            r.clone().finish(),
            Err(WireError::TrailingBytes { count: 1 })
        );
        assert_eq!(r.u8().unwrap(), 3);
        assert!(r.u8().is_err());
        assert!(r.peek_u8().is_err());
    }

    #[test]
    fn varstr_round_trip_and_truncation() {
        let mut out = Vec::new();
        out.put_varstr(b"abc").unwrap();
        assert_eq!(out, [0x00, 0x03, b'a', b'b', b'c']);
        let mut r = Reader::new(&out);
        assert_eq!(r.varstr().unwrap(), b"abc");
        r.finish().unwrap();
        let mut r = Reader::new(&[0x00, 0x04, b'a']);
        assert_eq!(r.varstr(), Err(WireError::Truncated { need: 4, have: 1 }));
        let big = vec![0u8; 65536];
        assert!(Vec::new().put_varstr(&big).is_err());
    }

    #[test]
    fn writer_on_bytesmut() {
        let mut b = BytesMut::new();
        b.put_u24_checked(0x123456).unwrap();
        assert!(b.put_u24_checked(0x0100_0000).is_err());
        b.put_varint(0x3fff).unwrap();
        assert!(b.put_varint(1 << 62).is_err());
        assert_eq!(&b[..], &[0x12, 0x34, 0x56, 0x7f, 0xff]);
    }
}

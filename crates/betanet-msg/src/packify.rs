//! packify: the self-describing binary encoding netaio uses for auth fields and peer data.
//!
//! Byte-exact with the Python `packify` package: a tag byte (high 2 bits: width of the
//! following length/count/int, low 6 bits: type), containers with a table of item lengths,
//! and dicts/sets sorted by their encoded bytes. Decoding never panics and bounds nesting.

use crate::error::{Result, malformed};

const T_NONE: u8 = 0;
const T_BYTES: u8 = 1;
const T_BYTEARRAY: u8 = 2;
const T_STR: u8 = 3;
const T_INT: u8 = 4;
const T_NEG: u8 = 5;
const T_BOOL: u8 = 6;
const T_FLOAT: u8 = 7;
const T_DECIMAL: u8 = 8;
const T_LIST: u8 = 10;
const T_SET: u8 = 11;
const T_TUPLE: u8 = 12;
const T_DICT: u8 = 13;
const T_PACKABLE: u8 = 20;
const MAX_DEPTH: usize = 32;

/// A packify value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `bytearray`.
    ByteArray(Vec<u8>),
    /// `str`.
    Str(String),
    /// `int` (this implementation supports |v| < 2^127).
    Int(i128),
    /// `bool`.
    Bool(bool),
    /// `float`.
    Float(f64),
    /// `Decimal`, as its string form.
    Decimal(String),
    /// `list`.
    List(Vec<Value>),
    /// `set` (encoded sorted).
    Set(Vec<Value>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `dict` (encoded as sorted 2-tuples).
    Dict(Vec<(Value, Value)>),
    /// A `Packable` instance: class name and its own packed bytes.
    Packable(String, Vec<u8>),
}

fn width_for(n: u64) -> (u8, usize) {
    if n < 1 << 8 {
        (0x40, 1)
    } else if n < 1 << 16 {
        (0x80, 2)
    } else {
        (0xc0, 4)
    }
}

fn put_n(out: &mut Vec<u8>, v: u64, w: usize) {
    let b = v.to_be_bytes();
    out.extend_from_slice(&b[8 - w..]);
}

fn len_prefixed(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    let (cat, w) = width_for(data.len() as u64);
    out.push(cat | code);
    put_n(out, data.len() as u64, w);
    out.extend_from_slice(data);
}

fn packed_items(out: &mut Vec<u8>, code: u8, items: &[Vec<u8>]) {
    let (cat, w) = width_for(items.len() as u64);
    let max = items.iter().map(Vec::len).max().unwrap_or(0);
    let (icat, iw) = width_for(max as u64);
    out.push(cat | code);
    out.push(icat);
    put_n(out, items.len() as u64, w);
    for it in items {
        put_n(out, it.len() as u64, iw);
    }
    for it in items {
        out.extend_from_slice(it);
    }
}

fn pair(k: &[u8], v: &Value) -> Vec<u8> {
    let mut o = Vec::new();
    packed_items(&mut o, T_TUPLE, &[k.to_vec(), v.encode()]);
    o
}

/// Encode a `dict[str, value]` without building a [`Value::Dict`] (sorted like packify).
pub fn encode_str_dict<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> Vec<u8> {
    let mut items: Vec<Vec<u8>> = pairs
        .map(|(k, v)| {
            let mut kb = Vec::with_capacity(k.len() + 3);
            len_prefixed(&mut kb, T_STR, k.as_bytes());
            pair(&kb, v)
        })
        .collect();
    items.sort();
    let mut out = Vec::new();
    packed_items(&mut out, T_DICT, &items);
    out
}

impl Value {
    /// Convenience constructor for a bytes value.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(b.into())
    }

    /// The bytes of a `Bytes`/`ByteArray` value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) | Value::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// Encode to packify bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Encode, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::None => out.push(T_NONE),
            Value::Bytes(b) => len_prefixed(out, T_BYTES, b),
            Value::ByteArray(b) => len_prefixed(out, T_BYTEARRAY, b),
            Value::Str(s) => len_prefixed(out, T_STR, s.as_bytes()),
            Value::Decimal(s) => len_prefixed(out, T_DECIMAL, s.as_bytes()),
            Value::Int(i) => {
                let code = if *i < 0 { T_NEG } else { T_INT };
                let mag = i.unsigned_abs();
                if mag < 1 << 32 {
                    let (cat, w) = width_for(mag as u64);
                    out.push(cat | code);
                    put_n(out, mag as u64, w);
                } else {
                    let bytes = mag.to_be_bytes();
                    let skip = bytes.iter().take_while(|b| **b == 0).count();
                    out.push(code);
                    out.push((16 - skip) as u8);
                    out.extend_from_slice(bytes.get(skip..).unwrap_or_default());
                }
            }
            Value::Bool(b) => {
                out.push(T_BOOL);
                out.push(u8::from(*b));
            }
            Value::Float(f) => {
                out.push(T_FLOAT);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Value::List(v) => packed_items(
                out,
                T_LIST,
                &v.iter().map(Value::encode).collect::<Vec<_>>(),
            ),
            Value::Tuple(v) => packed_items(
                out,
                T_TUPLE,
                &v.iter().map(Value::encode).collect::<Vec<_>>(),
            ),
            Value::Set(v) => {
                let mut items: Vec<_> = v.iter().map(Value::encode).collect();
                items.sort();
                packed_items(out, T_SET, &items);
            }
            Value::Dict(kv) => {
                let mut items: Vec<_> = kv.iter().map(|(k, v)| pair(&k.encode(), v)).collect();
                items.sort();
                packed_items(out, T_DICT, &items);
            }
            Value::Packable(name, data) => {
                let (cat, w) = width_for(name.len().max(data.len()) as u64);
                out.push(cat | T_PACKABLE);
                put_n(out, name.len() as u64, w);
                put_n(out, data.len() as u64, w);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(data);
            }
        }
    }

    /// Decode one value that must span all of `data`.
    pub fn decode(data: &[u8]) -> Result<Value> {
        let mut r = Reader { d: data, p: 0 };
        let v = r.value(0)?;
        if r.p != data.len() {
            return Err(malformed("packify", "trailing bytes"));
        }
        Ok(v)
    }
}

struct Reader<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .p
            .checked_add(n)
            .ok_or_else(|| malformed("packify", "length overflow"))?;
        let s = self
            .d
            .get(self.p..end)
            .ok_or_else(|| malformed("packify", "truncated"))?;
        self.p = end;
        Ok(s)
    }
    fn uint(&mut self, w: usize) -> Result<u64> {
        Ok(self
            .take(w)?
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }
    fn width(cat: u8) -> Result<usize> {
        match cat {
            0x40 => Ok(1),
            0x80 => Ok(2),
            0xc0 => Ok(4),
            _ => Err(malformed("packify", "invalid length category")),
        }
    }
    fn usize_(&mut self, w: usize) -> Result<usize> {
        usize::try_from(self.uint(w)?).map_err(|_| malformed("packify", "length overflow"))
    }
    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(malformed("packify", "nesting too deep"));
        }
        let tag = *self
            .take(1)?
            .first()
            .ok_or_else(|| malformed("packify", "truncated"))?;
        let cat = tag & 0xc0;
        let ty = tag & 0x3f;
        match ty {
            T_NONE if cat == 0 => Ok(Value::None),
            T_BOOL if cat == 0 => match self.take(1)? {
                [0] => Ok(Value::Bool(false)),
                [1] => Ok(Value::Bool(true)),
                _ => Err(malformed("packify", "bad bool")),
            },
            T_FLOAT if cat == 0 => {
                let b: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| malformed("packify", "truncated"))?;
                Ok(Value::Float(f64::from_be_bytes(b)))
            }
            T_INT | T_NEG => {
                let mag: u128 = if cat == 0 {
                    let n = self.usize_(1)?;
                    if n > 16 {
                        return Err(malformed("packify", "integer too large"));
                    }
                    self.take(n)?
                        .iter()
                        .fold(0u128, |a, b| (a << 8) | u128::from(*b))
                } else {
                    u128::from(self.uint(Self::width(cat)?)?)
                };
                let v =
                    i128::try_from(mag).map_err(|_| malformed("packify", "integer too large"))?;
                Ok(Value::Int(if ty == T_NEG { -v } else { v }))
            }
            T_BYTES | T_BYTEARRAY | T_STR | T_DECIMAL => {
                let n = self.usize_(Self::width(cat)?)?;
                let b = self.take(n)?;
                match ty {
                    T_BYTES => Ok(Value::Bytes(b.to_vec())),
                    T_BYTEARRAY => Ok(Value::ByteArray(b.to_vec())),
                    _ => {
                        let s = std::str::from_utf8(b)
                            .map_err(|_| malformed("packify", "invalid utf-8"))?;
                        Ok(if ty == T_STR {
                            Value::Str(s.to_owned())
                        } else {
                            Value::Decimal(s.to_owned())
                        })
                    }
                }
            }
            T_LIST | T_SET | T_TUPLE | T_DICT => {
                let w = Self::width(cat)?;
                let icat = *self
                    .take(1)?
                    .first()
                    .ok_or_else(|| malformed("packify", "truncated"))?;
                let iw = Self::width(icat)?;
                let count = self.usize_(w)?;
                // Each item needs at least its length entry and one byte: bound before allocating.
                if count > self.d.len().saturating_sub(self.p) {
                    return Err(malformed("packify", "item count exceeds data"));
                }
                let mut lens = Vec::with_capacity(count);
                for _ in 0..count {
                    lens.push(self.usize_(iw)?);
                }
                let mut items = Vec::with_capacity(count);
                for n in lens {
                    let b = self.take(n)?;
                    let mut sub = Reader { d: b, p: 0 };
                    let v = sub.value(depth + 1)?;
                    if sub.p != b.len() {
                        return Err(malformed("packify", "item length mismatch"));
                    }
                    items.push(v);
                }
                Ok(match ty {
                    T_LIST => Value::List(items),
                    T_SET => Value::Set(items),
                    T_TUPLE => Value::Tuple(items),
                    _ => {
                        let mut kv = Vec::with_capacity(items.len());
                        for it in items {
                            match it {
                                Value::Tuple(mut t) if t.len() == 2 => {
                                    let v = t.pop().unwrap_or(Value::None);
                                    let k = t.pop().unwrap_or(Value::None);
                                    kv.push((k, v));
                                }
                                _ => {
                                    return Err(malformed("packify", "dict item is not a 2-tuple"));
                                }
                            }
                        }
                        Value::Dict(kv)
                    }
                })
            }
            T_PACKABLE if cat != 0 => {
                let w = Self::width(cat)?;
                let nl = self.usize_(w)?;
                let dl = self.usize_(w)?;
                let name = std::str::from_utf8(self.take(nl)?)
                    .map_err(|_| malformed("packify", "invalid utf-8"))?
                    .to_owned();
                Ok(Value::Packable(name, self.take(dl)?.to_vec()))
            }
            _ => Err(malformed("packify", "unknown type code")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Golden bytes produced by Python packify 0.4.0 (the version netaio 0.0.9 installs).
    #[test]
    fn golden_values() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Dict(vec![]), "4d4000"),
            (
                Value::Dict(vec![(Value::Str("a".into()), Value::bytes(*b"x"))]),
                "4d40010b4c40020303430161410178",
            ),
            (
                Value::Tuple(vec![Value::bytes(*b"id"), Value::bytes(*b"data")]),
                "4c4002040641026964410464617461",
            ),
            (Value::Int(5), "4405"),
            (Value::Int(300), "84012c"),
            (Value::Int(1 << 40), "0406010000000000"),
            (Value::Int(-3), "4503"),
            (Value::Bool(true), "0601"),
            (Value::None, "00"),
            (Value::Str("hé".into()), "430368c3a9"),
            (
                Value::List(vec![Value::Int(1), Value::Int(2)]),
                "4a4002020244014402",
            ),
            (Value::Float(1.5), "073ff8000000000000"),
        ];
        for (v, hx) in cases {
            assert_eq!(hex::encode(v.encode()), hx, "{v:?}");
            assert_eq!(Value::decode(&h(hx)).unwrap(), v);
        }
    }

    #[test]
    fn golden_sorted_dict() {
        let d = Value::Dict(vec![
            (Value::Str("hmac".into()), Value::bytes([1u8; 32])),
            (Value::Str("nonce".into()), Value::bytes([2u8; 16])),
            (Value::Str("ts".into()), Value::bytes([0, 0, 0, 5])),
        ]);
        let want = "4d40030f2d1e4c40020406430274734104000000054c400206224304686d6163412001010101010101010101010101010101010101010101010101010101010101014c4002071243056e6f6e6365411002020202020202020202020202020202";
        assert_eq!(hex::encode(d.encode()), want);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"\x41\x05ab",
            b"\x4d\x40\x01\x02\x44\x01",
            b"\x3f",
            b"\x0a",
            b"\x06\x02",
        ] {
            assert!(Value::decode(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300), s in ".{0,20}", i in proptest::num::i64::ANY) {
            let v = Value::Dict(vec![
                (Value::Str(s.clone()), Value::Bytes(b.clone())),
                (Value::Int(i.into()), Value::List(vec![Value::Str(s), Value::Int(i.into()), Value::None])),
            ]);
            let enc = v.encode();
            let back = Value::decode(&enc).unwrap();
            proptest::prop_assert_eq!(back.encode(), enc);
        }

        #[test]
        fn decode_never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Value::decode(&d);
        }
    }
}

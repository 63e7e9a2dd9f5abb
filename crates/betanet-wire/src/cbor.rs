//! Deterministic CBOR (SPEC §1).
//!
//! The subset Betanet uses for everything that is hashed, signed or bound into keys:
//! unsigned and negative integers, byte strings, text strings, arrays, maps, `true`, `false`
//! and `null`. Lengths are definite, integers and lengths use the shortest form, and map keys
//! are unique and sorted by the bytewise order of their encoded form.
//!
//! [`encode`] always produces that canonical form (it sorts map keys itself and refuses
//! duplicate keys); [`decode`] accepts **only** that form, so `encode(decode(x)?) == x` holds
//! for every accepted input. Floats, tags, indefinite lengths, simple values other than
//! `false`/`true`/`null`, invalid UTF-8, non-shortest heads, unsorted or duplicate keys,
//! trailing bytes and nesting deeper than [`MAX_DEPTH`] are all rejected with a typed
//! [`CborError`]. The decoder never panics and never allocates more than the input can justify.

use std::cmp::Ordering;

/// Deepest nesting of arrays and maps the decoder accepts.
pub const MAX_DEPTH: usize = 32;

/// A deterministic-CBOR value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Major type 0: an unsigned integer.
    Uint(u64),
    /// Major type 1: the negative integer `-1 - n`.
    Nint(u64),
    /// Major type 2: a byte string.
    Bytes(Vec<u8>),
    /// Major type 3: a UTF-8 text string.
    Text(String),
    /// Major type 4: an array.
    Array(Vec<Value>),
    /// Major type 5: a map. [`encode`] sorts the entries; [`decode`] returns them sorted.
    Map(Vec<(Value, Value)>),
    /// `false` / `true`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Why a byte string is not deterministic CBOR (or not CBOR at all).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside an item.
    #[error("CBOR input truncated at offset {0}")]
    Truncated(usize),
    /// Bytes follow the top-level item.
    #[error("{0} trailing bytes after the CBOR item")]
    TrailingBytes(usize),
    /// An integer or length was not encoded in its shortest form.
    #[error("non-shortest integer or length at offset {0}")]
    NonShortest(usize),
    /// An indefinite-length item (additional info 31).
    #[error("indefinite length at offset {0}")]
    Indefinite(usize),
    /// Additional info 28..=30 (reserved).
    #[error("reserved additional information at offset {0}")]
    Reserved(usize),
    /// A float (major type 7, additional info 25..=27).
    #[error("floating-point value at offset {0}")]
    Float(usize),
    /// A tag (major type 6).
    #[error("tag at offset {0}")]
    Tag(usize),
    /// A simple value other than false/true/null (including `undefined`).
    #[error("simple value {value} at offset {offset}")]
    Simple {
        /// Offset of the item.
        offset: usize,
        /// The simple value.
        value: u64,
    },
    /// A text string that is not valid UTF-8.
    #[error("invalid UTF-8 in text string at offset {0}")]
    InvalidUtf8(usize),
    /// Map keys out of canonical order.
    #[error("map keys not in canonical order at offset {0}")]
    UnsortedKeys(usize),
    /// The same map key twice.
    #[error("duplicate map key at offset {0}")]
    DuplicateKey(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A length that cannot fit in the remaining input.
    #[error("declared length {len} at offset {offset} exceeds the input")]
    LengthTooLarge {
        /// Offset of the item.
        offset: usize,
        /// The declared length.
        len: u64,
    },
    /// The encoder was given a map with two equal keys.
    #[error("map to encode has duplicate keys")]
    EncodeDuplicateKey,
}

impl Value {
    /// A text value.
    pub fn text(s: impl Into<String>) -> Self {
        Value::Text(s.into())
    }

    /// A byte-string value.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(b.into())
    }

    /// A map with text keys; order does not matter, [`encode`] sorts.
    pub fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.to_owned()), v))
                .collect(),
        )
    }

    /// The value of text key `key` in a map (`None` for non-maps or a missing key).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is an unsigned integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Uint(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text, if this is a text string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The boolean, if this is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Encodes this value canonically (see [`encode`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CborError> {
        encode(self)
    }
}

/// Encodes `value` in deterministic CBOR, sorting map keys by their encoded bytes.
///
/// Fails only when a map holds two equal keys.
pub fn encode(value: &Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CborError> {
    match value {
        Value::Uint(n) => head(out, 0, *n),
        Value::Nint(n) => head(out, 1, *n),
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                encode_into(item, out)?;
            }
        }
        Value::Map(entries) => {
            let mut encoded = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let mut kb = Vec::new();
                encode_into(k, &mut kb)?;
                encoded.push((kb, v));
            }
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            if encoded.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(CborError::EncodeDuplicateKey);
            }
            head(out, 5, encoded.len() as u64);
            for (kb, v) in encoded {
                out.extend_from_slice(&kb);
                encode_into(v, out)?;
            }
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
    Ok(())
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Decodes exactly one canonical item filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder { buf: input, pos: 0 };
    let v = d.item(0)?;
    if d.pos != input.len() {
        return Err(CborError::TrailingBytes(input.len() - d.pos));
    }
    Ok(v)
}

/// Decodes one canonical item from the front of `input`, returning it and the bytes consumed.
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), CborError> {
    let mut d = Decoder { buf: input, pos: 0 };
    let v = d.item(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(CborError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }

    /// Reads an item head, returning (major, argument) with shortest-form checks.
    fn head(&mut self, start: usize) -> Result<(u8, u8, u64), CborError> {
        let ib = self.byte()?;
        let major = ib >> 5;
        let info = ib & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.byte()?);
                if v < 24 && major != 7 {
                    return Err(CborError::NonShortest(start));
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if v <= u64::from(u8::MAX) && major != 7 {
                    return Err(CborError::NonShortest(start));
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if v <= u64::from(u16::MAX) && major != 7 {
                    return Err(CborError::NonShortest(start));
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if v <= u64::from(u32::MAX) && major != 7 {
                    return Err(CborError::NonShortest(start));
                }
                v
            }
            28..=30 => return Err(CborError::Reserved(start)),
            _ => return Err(CborError::Indefinite(start)),
        };
        Ok((major, info, arg))
    }

    fn len(&self, start: usize, n: u64, min_item: u64) -> Result<usize, CborError> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item) > remaining {
            return Err(CborError::LengthTooLarge {
                offset: start,
                len: n,
            });
        }
        usize::try_from(n).map_err(|_| CborError::LengthTooLarge {
            offset: start,
            len: n,
        })
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let start = self.pos;
        let (major, info, arg) = self.head(start)?;
        match major {
            0 => Ok(Value::Uint(arg)),
            1 => Ok(Value::Nint(arg)),
            2 => {
                let n = self.len(start, arg, 1)?;
                Ok(Value::Bytes(self.take(n)?.to_vec()))
            }
            3 => {
                let n = self.len(start, arg, 1)?;
                let b = self.take(n)?;
                let s = std::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8(start))?;
                Ok(Value::Text(s.to_owned()))
            }
            4 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep);
                }
                let n = self.len(start, arg, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep);
                }
                let n = self.len(start, arg, 2)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(n);
                let mut prev_key: Option<(usize, usize)> = None;
                for _ in 0..n {
                    let kstart = self.pos;
                    let k = self.item(depth + 1)?;
                    let kend = self.pos;
                    if let Some((ps, pe)) = prev_key {
                        let prev = self.buf.get(ps..pe).unwrap_or_default();
                        let cur = self.buf.get(kstart..kend).unwrap_or_default();
                        match prev.cmp(cur) {
                            Ordering::Less => {}
                            Ordering::Equal => return Err(CborError::DuplicateKey(kstart)),
                            Ordering::Greater => return Err(CborError::UnsortedKeys(kstart)),
                        }
                    }
                    prev_key = Some((kstart, kend));
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            6 => Err(CborError::Tag(start)),
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                25..=27 => Err(CborError::Float(start)),
                _ => Err(CborError::Simple {
                    offset: start,
                    value: arg,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn rfc8949_examples() {
        let cases: &[(Value, &str)] = &[
            (Value::Uint(0), "00"),
            (Value::Uint(23), "17"),
            (Value::Uint(24), "1818"),
            (Value::Uint(100), "1864"),
            (Value::Uint(1000), "1903e8"),
            (Value::Uint(1_000_000), "1a000f4240"),
            (Value::Uint(1_000_000_000_000), "1b000000e8d4a51000"),
            (Value::Uint(u64::MAX), "1bffffffffffffffff"),
            (Value::Nint(0), "20"),
            (Value::Nint(9), "29"),
            (Value::Nint(99), "3863"),
            (Value::Bytes(vec![]), "40"),
            (Value::Bytes(vec![1, 2, 3, 4]), "4401020304"),
            (Value::text(""), "60"),
            (Value::text("a"), "6161"),
            (Value::text("IETF"), "6449455446"),
            (Value::text("\u{00fc}"), "62c3bc"),
            (Value::Bool(false), "f4"),
            (Value::Bool(true), "f5"),
            (Value::Null, "f6"),
            (Value::Array(vec![]), "80"),
            (
                Value::Array(vec![Value::Uint(1), Value::Uint(2), Value::Uint(3)]),
                "83010203",
            ),
            (Value::Map(vec![]), "a0"),
        ];
        for (v, hx) in cases {
            assert_eq!(encode(v).unwrap(), h(hx), "{v:?}");
            assert_eq!(&decode(&h(hx)).unwrap(), v, "{hx}");
        }
    }

    #[test]
    fn map_keys_sorted_by_encoded_bytes() {
        // Length-first ordering falls out of bytewise order of encodings: "b" < "aa".
        let v = Value::map([
            ("aa", Value::Uint(2)),
            ("b", Value::Uint(1)),
            ("", Value::Null),
        ]);
        let e = encode(&v).unwrap();
        assert_eq!(e, h("a3 60 f6 6162 01 626161 02".replace(' ', "").as_str()));
        // Mixed key types: integers (major 0) sort before text (major 3).
        let v = Value::Map(vec![
            (Value::text("a"), Value::Uint(1)),
            (Value::Uint(10), Value::Uint(2)),
            (Value::Nint(0), Value::Uint(3)),
        ]);
        assert_eq!(
            encode(&v).unwrap(),
            h("a30a0220036161 01".replace(' ', "").as_str())
        );
    }

    #[test]
    fn decoded_map_is_sorted_and_get_works() {
        let v = decode(&h("a2616101616202")).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Uint(1)));
        assert_eq!(v.get("b"), Some(&Value::Uint(2)));
        assert_eq!(v.get("c"), None);
    }

    #[test]
    fn encoder_rejects_duplicate_keys() {
        let v = Value::Map(vec![
            (Value::text("a"), Value::Uint(1)),
            (Value::text("a"), Value::Uint(2)),
        ]);
        assert_eq!(encode(&v), Err(CborError::EncodeDuplicateKey));
    }

    #[test]
    fn rejects_non_canonical() {
        type Pred = fn(&CborError) -> bool;
        let bad: &[(&str, Pred)] = &[
            ("1817", |e| matches!(e, CborError::NonShortest(0))),
            ("190017", |e| matches!(e, CborError::NonShortest(0))),
            ("1900ff", |e| matches!(e, CborError::NonShortest(0))),
            ("1a0000ffff", |e| matches!(e, CborError::NonShortest(0))),
            ("1b00000000ffffffff", |e| {
                matches!(e, CborError::NonShortest(0))
            }),
            ("5801ff", |e| matches!(e, CborError::NonShortest(0))),
            ("3817", |e| matches!(e, CborError::NonShortest(0))),
            ("5fff", |e| matches!(e, CborError::Indefinite(0))),
            ("9fff", |e| matches!(e, CborError::Indefinite(0))),
            ("bfff", |e| matches!(e, CborError::Indefinite(0))),
            ("7fff", |e| matches!(e, CborError::Indefinite(0))),
            ("f93c00", |e| matches!(e, CborError::Float(0))),
            ("fa3f800000", |e| matches!(e, CborError::Float(0))),
            ("fb3ff0000000000000", |e| matches!(e, CborError::Float(0))),
            ("c100", |e| matches!(e, CborError::Tag(0))),
            ("f7", |e| matches!(e, CborError::Simple { value: 23, .. })),
            ("f0", |e| matches!(e, CborError::Simple { value: 16, .. })),
            ("f820", |e| matches!(e, CborError::Simple { value: 32, .. })),
            ("1c", |e| matches!(e, CborError::Reserved(0))),
            ("62c328", |e| matches!(e, CborError::InvalidUtf8(0))),
            ("a2616202616101", |e| {
                matches!(e, CborError::UnsortedKeys(4))
            }),
            ("a2616101616102", |e| {
                matches!(e, CborError::DuplicateKey(4))
            }),
            ("a2616101", |e| {
                matches!(e, CborError::LengthTooLarge { .. })
            }),
            ("1900", |e| matches!(e, CborError::Truncated(_))),
            ("0000", |e| matches!(e, CborError::TrailingBytes(1))),
            ("", |e| matches!(e, CborError::Truncated(0))),
            ("5b0000000100000000", |e| {
                matches!(e, CborError::LengthTooLarge { .. })
            }),
            ("9b0000000100000000", |e| {
                matches!(e, CborError::LengthTooLarge { .. })
            }),
        ];
        for (hx, pred) in bad {
            let bytes = h(&hx.replace(' ', ""));
            let err = decode(&bytes).expect_err(hx);
            assert!(pred(&err), "{hx}: {err:?}");
        }
    }

    #[test]
    fn unsorted_by_length_first_is_rejected() {
        // {"aa": 1, "b": 2} — lexicographic by text but not by encoded bytes.
        assert!(matches!(
            decode(&h("a262616101616202")),
            Err(CborError::UnsortedKeys(_))
        ));
    }

    #[test]
    fn depth_limit() {
        let mut deep = vec![0x81u8; MAX_DEPTH + 1];
        deep.push(0x00);
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
        let mut ok = vec![0x81u8; MAX_DEPTH];
        ok.push(0x00);
        assert!(decode(&ok).is_ok());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(Value::Uint),
            any::<u64>().prop_map(Value::Nint),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            ".{0,12}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{0,4}", inner, 0..6).prop_map(|m| {
                    Value::Map(m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn roundtrip(v in arb_value()) {
            let bytes = encode(&v).unwrap();
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(encode(&back).unwrap(), bytes);
        }

        #[test]
        fn accepted_input_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = decode(&bytes) {
                prop_assert_eq!(encode(&v).unwrap(), bytes);
            }
        }
    }
}

//! The netaio frame: 9-byte header, packify auth fields, body (`u16 uri_len ‖ uri ‖ content`).
//!
//! ```text
//! off size field
//! 0   1    message type
//! 1   2    auth length A (u16 BE)
//! 3   2    body length B (u16 BE)
//! 5   4    CRC-32 (zlib) of the body bytes (u32 BE)
//! 9   A    auth fields (packify dict str -> value)
//! 9+A B    body
//! ```

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{MsgError, Result, malformed};
use crate::packify::Value;

/// Header length in bytes.
pub const HEADER_LEN: usize = 9;
/// Largest body a single frame can carry (u16 length field).
pub const MAX_BODY: usize = u16::MAX as usize;
/// Encoded empty auth-field dict.
pub const EMPTY_AUTH: [u8; 3] = [0x4d, 0x40, 0x00];

/// A netaio message type (0–30 reserved for the protocol, 31–255 for applications).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageType(pub u8);

macro_rules! mtypes {
    ($($name:ident = $v:expr),* $(,)?) => {
        impl MessageType {
            $(#[doc = concat!("`", stringify!($name), "` (", stringify!($v), ").")]
            pub const $name: MessageType = MessageType($v);)*
            /// The netaio name of this type, if it is a built-in one.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($name)),)* _ => None }
            }
        }
    };
}
mtypes! {
    REQUEST_URI = 0, RESPOND_URI = 1, CREATE_URI = 2, UPDATE_URI = 3, DELETE_URI = 4,
    SUBSCRIBE_URI = 5, UNSUBSCRIBE_URI = 6, PUBLISH_URI = 7, NOTIFY_URI = 8, ADVERTISE_PEER = 9,
    OK = 10, CONFIRM_SUBSCRIBE = 11, CONFIRM_UNSUBSCRIBE = 12, PEER_DISCOVERED = 13,
    ERROR = 20, AUTH_ERROR = 23, NOT_FOUND = 24, NOT_PERMITTED = 25, DISCONNECT = 30,
}

impl MessageType {
    /// True for the error types (ERROR, AUTH_ERROR, NOT_FOUND, NOT_PERMITTED): nodes never
    /// answer these (netaio's rule that stops error ping-pong).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Self::ERROR | Self::AUTH_ERROR | Self::NOT_FOUND | Self::NOT_PERMITTED
        )
    }
}

impl fmt::Debug for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "MessageType({})", self.0),
        }
    }
}

/// Auth fields: netaio's `dict[str, bytes]` (values may be any packify value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthFields {
    fields: Vec<(String, Value)>,
}

impl AuthFields {
    /// Empty field set.
    pub fn new() -> Self {
        Self::default()
    }
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    /// Get a field.
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }
    /// Get a bytes field.
    pub fn get_bytes(&self, k: &str) -> Option<&[u8]> {
        self.get(k).and_then(Value::as_bytes)
    }
    /// Set (insert or replace) a field.
    pub fn set(&mut self, k: &str, v: Value) {
        match self.fields.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v,
            None => self.fields.push((k.to_owned(), v)),
        }
    }
    /// Set a bytes field.
    pub fn set_bytes(&mut self, k: &str, v: impl Into<Vec<u8>>) {
        self.set(k, Value::Bytes(v.into()));
    }
    /// Remove a field, returning it.
    pub fn remove(&mut self, k: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(n, _)| n == k)?;
        Some(self.fields.remove(i).1)
    }
    /// Iterate over the fields.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// packify encoding (sorted dict).
    pub fn encode(&self) -> Vec<u8> {
        if self.fields.is_empty() {
            return EMPTY_AUTH.to_vec();
        }
        crate::packify::encode_str_dict(self.fields.iter().map(|(k, v)| (k.as_str(), v)))
    }
    /// packify encoding of all fields except `skip` (what a MAC layer covers).
    pub fn encode_without(&self, skip: &str) -> Vec<u8> {
        crate::packify::encode_str_dict(
            self.fields
                .iter()
                .filter(|(k, _)| k != skip)
                .map(|(k, v)| (k.as_str(), v)),
        )
    }
    /// Decode from packify bytes; the value must be a dict with `str` keys.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b == EMPTY_AUTH {
            return Ok(Self::default());
        }
        match Value::decode(b)? {
            Value::Dict(kv) => {
                let mut fields = Vec::with_capacity(kv.len());
                for (k, v) in kv {
                    match k {
                        Value::Str(s) => fields.push((s, v)),
                        _ => return Err(malformed("auth fields", "non-string key")),
                    }
                }
                Ok(Self { fields })
            }
            _ => Err(malformed("auth fields", "not a dict")),
        }
    }
}

/// A message body: routing URI and content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// The URI (routing key; may be encrypted by an outer cipher).
    pub uri: Bytes,
    /// The content.
    pub content: Bytes,
}

impl Body {
    /// Build a body.
    pub fn new(uri: impl Into<Bytes>, content: impl Into<Bytes>) -> Self {
        Self {
            uri: uri.into(),
            content: content.into(),
        }
    }
    /// Encoded length (`2 + uri + content`).
    pub fn encoded_len(&self) -> usize {
        2 + self.uri.len() + self.content.len()
    }
    /// Encode as `u16 uri_len ‖ uri ‖ content` (URIs longer than 65535 bytes are an error).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let ul = u16::try_from(self.uri.len()).map_err(|_| MsgError::TooLarge {
            len: self.uri.len(),
            limit: MAX_BODY,
        })?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&ul.to_be_bytes());
        out.extend_from_slice(&self.uri);
        out.extend_from_slice(&self.content);
        Ok(out)
    }
    /// Decode a body (zero-copy from `b`).
    pub fn decode(b: Bytes) -> Result<Self> {
        let l = b
            .get(..2)
            .ok_or_else(|| malformed("body", "shorter than the uri length"))?;
        let ul = usize::from(u16::from_be_bytes([l[0], l[1]]));
        if b.len() < 2 + ul {
            return Err(malformed("body", "uri longer than body"));
        }
        Ok(Self {
            uri: b.slice(2..2 + ul),
            content: b.slice(2 + ul..),
        })
    }
}

/// A complete message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Message type.
    pub mtype: MessageType,
    /// Auth fields (filled in by auth/cipher plugins).
    pub auth: AuthFields,
    /// Body.
    pub body: Body,
}

impl Message {
    /// A message with no auth fields.
    pub fn new(mtype: MessageType, uri: impl Into<Bytes>, content: impl Into<Bytes>) -> Self {
        Self {
            mtype,
            auth: AuthFields::new(),
            body: Body::new(uri, content),
        }
    }

    /// Encode one frame. Fails with [`MsgError::TooLarge`] if body or auth exceed 65535 bytes
    /// (use chunking for larger messages).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Encode one frame, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let auth = if self.auth.is_empty() {
            None
        } else {
            Some(self.auth.encode())
        };
        let auth_bytes: &[u8] = auth.as_deref().unwrap_or(&EMPTY_AUTH);
        let bl = self.body.encoded_len();
        if bl > MAX_BODY {
            return Err(MsgError::TooLarge {
                len: bl,
                limit: MAX_BODY,
            });
        }
        if auth_bytes.len() > MAX_BODY {
            return Err(MsgError::TooLarge {
                len: auth_bytes.len(),
                limit: MAX_BODY,
            });
        }
        let ul = self.body.uri.len() as u16; // <= bl <= u16::MAX
        let mut h = crc32fast::Hasher::new();
        h.update(&ul.to_be_bytes());
        h.update(&self.body.uri);
        h.update(&self.body.content);
        let crc = h.finalize();
        out.reserve(HEADER_LEN + auth_bytes.len() + bl);
        out.push(self.mtype.0);
        out.extend_from_slice(&(auth_bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&(bl as u16).to_be_bytes());
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(auth_bytes);
        out.extend_from_slice(&ul.to_be_bytes());
        out.extend_from_slice(&self.body.uri);
        out.extend_from_slice(&self.body.content);
        Ok(())
    }

    /// Decode one frame from a datagram (trailing bytes are ignored, as netaio does).
    pub fn decode(data: &[u8]) -> Result<Self> {
        let mut b = BytesMut::from(data);
        match decode_frame(&mut b)? {
            Some(m) => m,
            None => Err(malformed("frame", "truncated")),
        }
    }
}

/// Frame length announced by a header, if `buf` holds at least a header.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..HEADER_LEN)?;
    let al = usize::from(u16::from_be_bytes([h[1], h[2]]));
    let bl = usize::from(u16::from_be_bytes([h[3], h[4]]));
    Some(HEADER_LEN + al + bl)
}

/// Streaming decoder for TCP: takes one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(Ok(msg)))` for a good frame and
/// `Ok(Some(Err(e)))` for a frame that was consumed but is bad (CRC mismatch, malformed auth
/// or body): the stream stays in sync and the caller may answer with ERROR and continue.
/// Never panics on hostile input.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Result<Message>>> {
    let Some(total) = frame_len(buf) else {
        return Ok(None);
    };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let h: [u8; HEADER_LEN] = match buf.get(..HEADER_LEN).and_then(|s| s.try_into().ok()) {
        Some(h) => h,
        None => return Ok(None),
    };
    let al = usize::from(u16::from_be_bytes([h[1], h[2]]));
    let crc = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
    let mut frame = buf.split_to(total).freeze();
    frame.advance(HEADER_LEN);
    let auth_b = frame.split_to(al);
    let body_b = frame;
    let actual = crc32fast::hash(&body_b);
    if actual != crc {
        return Ok(Some(Err(MsgError::Checksum {
            expected: crc,
            actual,
        })));
    }
    let auth = match AuthFields::decode(&auth_b) {
        Ok(a) => a,
        Err(e) => return Ok(Some(Err(e))),
    };
    let body = match Body::decode(body_b) {
        Ok(b) => b,
        Err(e) => return Ok(Some(Err(e))),
    };
    Ok(Some(Ok(Message {
        mtype: MessageType(h[0]),
        auth,
        body,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_request() {
        let m = Message::new(MessageType::REQUEST_URI, &b"echo"[..], &b"hello"[..]);
        let e = m.encode().unwrap();
        assert_eq!(
            hex::encode(&e),
            "000003000b9b359cb34d4000000465636 86f68656c6c6f".replace(' ', "")
        );
        assert_eq!(Message::decode(&e).unwrap(), m);
    }

    #[test]
    fn crc_error_consumes_frame() {
        let m = Message::new(MessageType::REQUEST_URI, &b"echo"[..], &b"hello"[..]);
        let mut e = m.encode().unwrap();
        let last = e.len() - 1;
        e[last] ^= 1;
        let mut buf = BytesMut::from(&e[..]);
        buf.extend_from_slice(&m.encode().unwrap());
        assert!(matches!(
            decode_frame(&mut buf),
            Ok(Some(Err(MsgError::Checksum { .. })))
        ));
        assert_eq!(decode_frame(&mut buf).unwrap().unwrap().unwrap(), m);
        assert!(buf.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(t in 0u8.., uri in proptest::collection::vec(0u8.., 0..40), c in proptest::collection::vec(0u8.., 0..500), k in "[a-z]{1,8}", v in proptest::collection::vec(0u8.., 0..40)) {
            let mut m = Message::new(MessageType(t), uri, c);
            m.auth.set_bytes(&k, v);
            let e = m.encode().unwrap();
            let d = Message::decode(&e).unwrap();
            proptest::prop_assert_eq!(&d, &m);
            proptest::prop_assert_eq!(d.encode().unwrap(), e);
        }
        #[test]
        fn decode_never_panics(d in proptest::collection::vec(0u8.., 0..100)) {
            let mut b = BytesMut::from(&d[..]);
            for _ in 0..10 { if !matches!(decode_frame(&mut b), Ok(Some(_))) { break; } }
        }
    }
}

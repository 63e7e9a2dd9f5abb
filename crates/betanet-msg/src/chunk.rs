//! Chunking of messages that do not fit one netaio frame (body or auth > 65535 bytes).
//!
//! A large logical message is serialized as `type u8 ‖ u32 auth_len ‖ auth ‖ u32 uri_len ‖ uri
//! ‖ content` and cut into pieces of at most [`PIECE`] bytes. Each piece travels as an ordinary
//! frame of the same type with an empty URI, the piece as content and one auth field
//! `chunk = id u64 ‖ index u32 ‖ count u32`. Authentication and decryption apply to the
//! reassembled message, so pieces need no plugins. netaio peers do not understand chunks.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::{MsgError, Result, malformed};
use crate::frame::{AuthFields, Body, Message, MessageType};

/// Auth field that marks a chunk piece.
pub const CHUNK_FIELD: &str = "chunk";
/// Largest piece carried in one frame.
pub const PIECE: usize = 60_000;
const MAX_INFLIGHT: usize = 8;

/// Serialize `m` and split it into encoded frames.
pub fn split(m: &Message, id: u64) -> Result<Vec<Vec<u8>>> {
    let auth = m.auth.encode();
    let mut all = Vec::with_capacity(9 + auth.len() + m.body.uri.len() + m.body.content.len());
    all.push(m.mtype.0);
    all.extend_from_slice(
        &u32::try_from(auth.len())
            .map_err(|_| MsgError::TooLarge {
                len: auth.len(),
                limit: u32::MAX as usize,
            })?
            .to_be_bytes(),
    );
    all.extend_from_slice(&auth);
    let ul = m.body.uri.len();
    all.extend_from_slice(
        &u32::try_from(ul)
            .map_err(|_| MsgError::TooLarge {
                len: ul,
                limit: u32::MAX as usize,
            })?
            .to_be_bytes(),
    );
    all.extend_from_slice(&m.body.uri);
    all.extend_from_slice(&m.body.content);
    let pieces: Vec<&[u8]> = all.chunks(PIECE).collect();
    let count = u32::try_from(pieces.len()).map_err(|_| MsgError::TooLarge {
        len: all.len(),
        limit: PIECE * u32::MAX as usize,
    })?;
    let mut out = Vec::with_capacity(pieces.len());
    for (i, p) in pieces.into_iter().enumerate() {
        let mut f = AuthFields::new();
        let mut tag = Vec::with_capacity(16);
        tag.extend_from_slice(&id.to_be_bytes());
        tag.extend_from_slice(&(i as u32).to_be_bytes());
        tag.extend_from_slice(&count.to_be_bytes());
        f.set_bytes(CHUNK_FIELD, tag);
        let piece = Message {
            mtype: m.mtype,
            auth: f,
            body: Body::new(Bytes::new(), Bytes::copy_from_slice(p)),
        };
        out.push(piece.encode()?);
    }
    Ok(out)
}

struct Partial {
    count: u32,
    next: u32,
    data: Vec<u8>,
}

/// Bounded reassembly of chunked messages for one connection.
pub struct Reassembler {
    max: usize,
    parts: HashMap<u64, Partial>,
}

impl Reassembler {
    /// Accept messages up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            parts: HashMap::new(),
        }
    }

    /// Add a piece; returns the logical message when complete. Pieces must arrive in order
    /// (streams guarantee it; out-of-order UDP pieces drop the message).
    pub fn push(&mut self, m: Message) -> Result<Option<Message>> {
        let tag = m
            .auth
            .get_bytes(CHUNK_FIELD)
            .ok_or_else(|| malformed("chunk", "no chunk field"))?;
        let tag: [u8; 16] = tag
            .try_into()
            .map_err(|_| malformed("chunk", "bad chunk field"))?;
        let [
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            i0,
            i1,
            i2,
            i3,
            c0,
            c1,
            c2,
            c3,
        ] = tag;
        let id = u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let idx = u32::from_be_bytes([i0, i1, i2, i3]);
        let count = u32::from_be_bytes([c0, c1, c2, c3]);
        if count == 0 || idx >= count {
            return Err(malformed("chunk", "index out of range"));
        }
        if idx == 0 {
            if self.parts.len() >= MAX_INFLIGHT {
                return Err(malformed("chunk", "too many chunked messages in flight"));
            }
            self.parts.insert(
                id,
                Partial {
                    count,
                    next: 0,
                    data: Vec::new(),
                },
            );
        }
        let Some(p) = self.parts.get_mut(&id) else {
            return Err(malformed("chunk", "unknown chunk id"));
        };
        if p.count != count || p.next != idx {
            self.parts.remove(&id);
            return Err(malformed("chunk", "out-of-order piece"));
        }
        if p.data.len() + m.body.content.len() > self.max.saturating_add(9) {
            let len = p.data.len() + m.body.content.len();
            self.parts.remove(&id);
            return Err(MsgError::TooLarge {
                len,
                limit: self.max,
            });
        }
        p.data.extend_from_slice(&m.body.content);
        p.next += 1;
        if p.next < p.count {
            return Ok(None);
        }
        let Some(p) = self.parts.remove(&id) else {
            return Ok(None);
        };
        decode_logical(&p.data).map(Some)
    }
}

fn decode_logical(d: &[u8]) -> Result<Message> {
    let mut r = d;
    let mut take = |n: usize| -> Result<&[u8]> {
        if r.len() < n {
            return Err(malformed("chunked message", "truncated"));
        }
        let (a, b) = r.split_at(n);
        r = b;
        Ok(a)
    };
    let t = *take(1)?
        .first()
        .ok_or_else(|| malformed("chunked message", "truncated"))?;
    let al = u32::from_be_bytes(
        take(4)?
            .try_into()
            .map_err(|_| malformed("chunked message", "truncated"))?,
    ) as usize;
    let auth = AuthFields::decode(take(al)?)?;
    let ul = u32::from_be_bytes(
        take(4)?
            .try_into()
            .map_err(|_| malformed("chunked message", "truncated"))?,
    ) as usize;
    let uri = Bytes::copy_from_slice(take(ul)?);
    let content = Bytes::copy_from_slice(r);
    Ok(Message {
        mtype: MessageType(t),
        auth,
        body: Body { uri, content },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reassemble() {
        let mut m = Message::new(MessageType::CREATE_URI, &b"big"[..], vec![7u8; 200_000]);
        m.auth.set_bytes("x", vec![1, 2, 3]);
        let frames = split(&m, 42).unwrap();
        assert_eq!(frames.len(), 4);
        let mut r = Reassembler::new(1 << 20);
        let mut got = None;
        for f in &frames {
            got = r.push(Message::decode(f).unwrap()).unwrap();
        }
        assert_eq!(got.unwrap(), m);
        let mut small = Reassembler::new(100_000);
        let mut res = Ok(None);
        for f in &frames {
            res = small.push(Message::decode(f).unwrap());
            if res.is_err() {
                break;
            }
        }
        assert!(matches!(res, Err(MsgError::TooLarge { .. })));
    }
}

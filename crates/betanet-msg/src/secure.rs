//! The secure profile (default for Betanet apps): fixes netaio's weaknesses.
//!
//! * [`MacAuth`]: HMAC-SHA256 over a domain label, the **message type**, every other auth
//!   field (timestamp, nonce, request id, IV …, canonical packify) and the body; a ±window on
//!   the millisecond timestamp and a bounded nonce replay cache (fails closed when full).
//! * [`AeadCipher`]: ChaCha20-Poly1305 with a per-message key derived from a 16-byte random
//!   salt (HKDF), AAD = message type; the URI is encrypted by default (outer layer).
//! * [`PowAuth`]: Hashcash-style proof of work (anti-spam), bound to type, time and body.
//!
//! TODO(lead): move HKDF/AEAD calls to `betanet_crypto::{kdf, aead}` (not yet available when
//! this was written; RustCrypto `hkdf`/`hmac`/`chacha20poly1305` are used privately).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{MsgError, Result};
use crate::frame::{AuthFields, Body, Message, MessageType};
use crate::node::lock;
use crate::plugin::{AuthPlugin, CipherPlugin, PluginCx};

fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(b"betanet-msg v1"), secret);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(label, &mut out[..]);
    out
}

/// Bounded set of recently seen nonces with expiry.
struct ReplayCache {
    cap: usize,
    seen: HashMap<Vec<u8>, u64>,
}

impl ReplayCache {
    fn new(cap: usize) -> Self {
        Self { cap, seen: HashMap::new() }
    }
    /// Record `nonce` until `expires_ms`; false if already present or the cache is full.
    fn insert(&mut self, nonce: &[u8], now_ms: u64, expires_ms: u64) -> std::result::Result<(), &'static str> {
        if self.seen.contains_key(nonce) {
            return Err("replayed nonce");
        }
        if self.seen.len() >= self.cap {
            self.seen.retain(|_, e| *e > now_ms);
            if self.seen.len() >= self.cap {
                return Err("replay cache full");
            }
        }
        self.seen.insert(nonce.to_vec(), expires_ms);
        Ok(())
    }
}

fn ts_field(auth: &AuthFields, name: &str) -> Result<u64> {
    let b: [u8; 8] = auth.get_bytes(name).and_then(|b| b.try_into().ok()).ok_or(MsgError::Auth("missing or bad timestamp"))?;
    Ok(u64::from_be_bytes(b))
}

fn in_window(ts: u64, now: u64, window: Duration) -> bool {
    now.abs_diff(ts) <= window.as_millis() as u64
}

/// Secure MAC auth (fields `ts`, `nonce`, `mac`).
pub struct MacAuth {
    key: Zeroizing<[u8; 32]>,
    window: Duration,
    cache: Mutex<ReplayCache>,
}

impl MacAuth {
    /// Key derived from a shared secret; ±30 s window; 100 000-entry replay cache.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: derive(secret, b"mac key"), window: Duration::from_secs(30), cache: Mutex::new(ReplayCache::new(100_000)) }
    }
    /// Change the accepted clock skew.
    pub fn window(mut self, w: Duration) -> Self {
        self.window = w;
        self
    }
    fn mac(&self, t: MessageType, auth: &AuthFields, body: &Body) -> Result<[u8; 32]> {
        let mut f = auth.clone();
        f.remove("mac");
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).map_err(|_| MsgError::Plugin("hmac key"))?;
        m.update(b"betanet-msg mac v1\0");
        m.update(&[t.0]);
        let fe = f.encode();
        m.update(&(fe.len() as u32).to_be_bytes());
        m.update(&fe);
        m.update(&body.encode()?);
        Ok(m.finalize().into_bytes().into())
    }
}

impl AuthPlugin for MacAuth {
    fn make(&self, t: MessageType, auth: &mut AuthFields, body: &Body, cx: &mut PluginCx<'_>) -> Result<()> {
        let mut n = [0u8; 16];
        cx.rng.fill_bytes(&mut n);
        auth.set_bytes("nonce", n.to_vec());
        auth.set_bytes("ts", cx.now_ms.to_be_bytes().to_vec());
        let mac = self.mac(t, auth, body)?;
        auth.set_bytes("mac", mac.to_vec());
        Ok(())
    }

    fn check(&self, t: MessageType, auth: &AuthFields, body: &Body, cx: &mut PluginCx<'_>) -> Result<()> {
        let ts = ts_field(auth, "ts")?;
        let nonce = auth.get_bytes("nonce").filter(|n| n.len() == 16).ok_or(MsgError::Auth("missing nonce"))?;
        let mac = auth.get_bytes("mac").ok_or(MsgError::Auth("missing mac"))?;
        let want = self.mac(t, auth, body)?;
        if mac.len() != 32 || !bool::from(want.ct_eq(mac)) {
            return Err(MsgError::Auth("mac mismatch"));
        }
        if !in_window(ts, cx.now_ms, self.window) {
            return Err(MsgError::Auth("timestamp outside window"));
        }
        let exp = ts + self.window.as_millis() as u64 + 1;
        lock(&self.cache).insert(nonce, cx.now_ms, exp).map_err(MsgError::Auth)
    }
}

/// ChaCha20-Poly1305 cipher layer (field `n`: 16-byte per-message salt).
pub struct AeadCipher {
    key: Zeroizing<[u8; 32]>,
    field: String,
    encrypt_uri: bool,
}

impl AeadCipher {
    /// Outer layer (encrypts the URI) keyed from a shared secret.
    pub fn new(secret: &[u8]) -> Self {
        Self { key: derive(secret, b"aead key"), field: "n".into(), encrypt_uri: true }
    }
    /// Inner layer: URI stays in clear for routing; own field name.
    pub fn inner(secret: &[u8], field: &str) -> Self {
        Self { key: derive(secret, b"aead key"), field: field.into(), encrypt_uri: false }
    }
    fn cipher(&self, salt: &[u8]) -> Result<ChaCha20Poly1305> {
        let hk = Hkdf::<Sha256>::from_prk(&self.key[..]).map_err(|_| MsgError::Plugin("aead prk"))?;
        let mut k = Zeroizing::new([0u8; 32]);
        let mut info = Vec::with_capacity(40);
        info.extend_from_slice(b"betanet-msg aead v1");
        info.extend_from_slice(salt);
        hk.expand(&info, &mut k[..]).map_err(|_| MsgError::Plugin("aead expand"))?;
        Ok(ChaCha20Poly1305::new((&*k).into()))
    }
    fn aad(&self, t: MessageType, uri: &[u8]) -> Vec<u8> {
        let mut a = vec![t.0];
        if !self.encrypt_uri {
            a.extend_from_slice(uri);
        }
        a
    }
}

impl CipherPlugin for AeadCipher {
    fn encrypt(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        let mut salt = [0u8; 16];
        cx.rng.fill_bytes(&mut salt);
        let mut buf = if self.encrypt_uri { m.body.encode()? } else { m.body.content.to_vec() };
        let aad = self.aad(m.mtype, &m.body.uri);
        self.cipher(&salt)?
            .encrypt_in_place(&[0u8; 12].into(), &aad, &mut buf)
            .map_err(|_| MsgError::Plugin("aead encrypt"))?;
        if self.encrypt_uri {
            m.body = Body { uri: Bytes::new(), content: Bytes::from(buf) };
        } else {
            m.body.content = Bytes::from(buf);
        }
        m.auth.set_bytes(&self.field, salt.to_vec());
        Ok(m)
    }

    fn decrypt(&self, mut m: Message, _cx: &mut PluginCx<'_>) -> Result<Message> {
        let salt = m.auth.get_bytes(&self.field).filter(|s| s.len() == 16).ok_or(MsgError::Decrypt("missing salt"))?.to_vec();
        let aad = self.aad(m.mtype, &m.body.uri);
        let mut buf = m.body.content.to_vec();
        self.cipher(&salt)?.decrypt_in_place(&[0u8; 12].into(), &aad, &mut buf).map_err(|_| MsgError::Decrypt("aead tag mismatch"))?;
        if self.encrypt_uri {
            m.body = Body::decode(Bytes::from(buf)).map_err(|_| MsgError::Decrypt("bad inner body"))?;
        } else {
            m.body.content = Bytes::from(buf);
        }
        m.auth.remove(&self.field);
        Ok(m)
    }
}

/// Hashcash-style proof-of-work auth (fields `pow_ts`, `pow`): `SHA-256(label ‖ type ‖ ts ‖
/// SHA-256(body) ‖ counter)` must start with `bits` zero bits; the timestamp must be within
/// the window and each solution is accepted once.
pub struct PowAuth {
    bits: u32,
    window: Duration,
    cache: Mutex<ReplayCache>,
    max_iters: u64,
}

impl PowAuth {
    /// Require `bits` leading zero bits (each bit doubles the sender's work).
    pub fn new(bits: u32) -> Self {
        Self { bits: bits.min(40), window: Duration::from_secs(60), cache: Mutex::new(ReplayCache::new(100_000)), max_iters: 1 << 42 }
    }
    fn digest(t: MessageType, ts: &[u8], body_hash: &[u8; 32], counter: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"betanet-msg pow v1\0");
        h.update([t.0]);
        h.update(ts);
        h.update(body_hash);
        h.update(counter.to_be_bytes());
        h.finalize().into()
    }
    fn zeros(d: &[u8; 32]) -> u32 {
        let mut n = 0;
        for b in d {
            if *b == 0 {
                n += 8;
            } else {
                n += b.leading_zeros();
                break;
            }
        }
        n
    }
}

impl AuthPlugin for PowAuth {
    fn make(&self, t: MessageType, auth: &mut AuthFields, body: &Body, cx: &mut PluginCx<'_>) -> Result<()> {
        let ts = cx.now_ms.to_be_bytes();
        let bh: [u8; 32] = Sha256::digest(body.encode()?).into();
        let start = cx.rng.next_u64() >> 20;
        for i in 0..self.max_iters {
            let c = start.wrapping_add(i);
            if Self::zeros(&Self::digest(t, &ts, &bh, c)) >= self.bits {
                auth.set_bytes("pow_ts", ts.to_vec());
                auth.set_bytes("pow", c.to_be_bytes().to_vec());
                return Ok(());
            }
        }
        Err(MsgError::Plugin("proof of work not found"))
    }

    fn check(&self, t: MessageType, auth: &AuthFields, body: &Body, cx: &mut PluginCx<'_>) -> Result<()> {
        let ts = ts_field(auth, "pow_ts")?;
        let c: [u8; 8] = auth.get_bytes("pow").and_then(|b| b.try_into().ok()).ok_or(MsgError::Auth("missing proof of work"))?;
        if !in_window(ts, cx.now_ms, self.window) {
            return Err(MsgError::Auth("proof of work too old"));
        }
        let bh: [u8; 32] = Sha256::digest(body.encode()?).into();
        let d = Self::digest(t, &ts.to_be_bytes(), &bh, u64::from_be_bytes(c));
        if Self::zeros(&d) < self.bits {
            return Err(MsgError::Auth("insufficient proof of work"));
        }
        lock(&self.cache).insert(&d, cx.now_ms, ts + self.window.as_millis() as u64 + 1).map_err(MsgError::Auth)
    }

    fn error(&self) -> Message {
        Message::new(MessageType::AUTH_ERROR, &b"ERROR"[..], &b"proof of work auth failed"[..])
    }
}

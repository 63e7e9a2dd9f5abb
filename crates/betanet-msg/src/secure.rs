//! The secure profile (default for Betanet apps): fixes netaio's weaknesses.
//!
//! * [`MacAuth`]: HMAC-SHA256 over a domain label, the **message type**, every other auth
//!   field (timestamp, nonce, request id, IV …, canonical packify) and the body; a ±window on
//!   the millisecond timestamp and a bounded nonce replay cache (fails closed when full).
//! * [`AeadCipher`]: ChaCha20-Poly1305 with a per-message key derived from a 16-byte random
//!   salt (HKDF), AAD = message type; the URI is encrypted by default (outer layer).
//! * [`PowAuth`]: Hashcash-style proof of work (anti-spam), bound to type, time and body.
//!
//! All primitives come from `betanet_crypto` (`kdf`, `aead`, `hash`, `ct`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use betanet_crypto::hash::{Sha256, sha256};
use betanet_crypto::{aead, ct, kdf};
use bytes::Bytes;
use zeroize::Zeroizing;

use crate::error::{MsgError, Result};
use crate::frame::{AuthFields, Body, Message, MessageType};
use crate::node::lock;
use crate::plugin::{AuthPlugin, CipherPlugin, PluginCx};

fn derive(secret: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let prk = kdf::hkdf_extract(b"betanet-msg v1", secret);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = kdf::hkdf_expand(&prk[..], &[label], &mut out[..]);
    out
}

/// Bounded set of recently seen nonces with expiry.
struct ReplayCache {
    cap: usize,
    seen: HashMap<Vec<u8>, u64>,
}

impl ReplayCache {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: HashMap::new(),
        }
    }
    /// Record `nonce` until `expires_ms`; false if already present or the cache is full.
    fn insert(
        &mut self,
        nonce: &[u8],
        now_ms: u64,
        expires_ms: u64,
    ) -> std::result::Result<(), &'static str> {
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
    let b: [u8; 8] = auth
        .get_bytes(name)
        .and_then(|b| b.try_into().ok())
        .ok_or(MsgError::Auth("missing or bad timestamp"))?;
    Ok(u64::from_be_bytes(b))
}

fn in_window(ts: u64, now: u64, window: Duration) -> bool {
    now.abs_diff(ts) <= window.as_millis() as u64
}

/// Sliding anti-replay window for one sender session (WireGuard/IPsec style).
struct SessionWindow {
    highest: u64,
    bits: [u64; WINDOW_WORDS],
    last_ts: u64,
}

const WINDOW_WORDS: usize = 16;
const WINDOW_BITS: u64 = (WINDOW_WORDS * 64) as u64;

impl SessionWindow {
    fn bit(&mut self, ctr: u64) -> (&mut u64, u64) {
        let i = (ctr % WINDOW_BITS) as usize;
        // i / 64 < WINDOW_WORDS because i < WINDOW_BITS.
        (&mut self.bits[(i / 64) % WINDOW_WORDS], 1u64 << (i % 64))
    }
    /// Accept `ctr` once; counters more than the window below the highest are rejected.
    fn accept(&mut self, ctr: u64) -> bool {
        if ctr > self.highest {
            let gap = ctr - self.highest;
            if gap >= WINDOW_BITS {
                self.bits = [0; WINDOW_WORDS];
            } else {
                for c in self.highest + 1..ctr {
                    let (w, m) = self.bit(c);
                    *w &= !m;
                }
            }
            self.highest = ctr;
            let (w, m) = self.bit(ctr);
            *w |= m;
            return true;
        }
        if self.highest - ctr >= WINDOW_BITS {
            return false;
        }
        let (w, m) = self.bit(ctr);
        if *w & m != 0 {
            return false;
        }
        *w |= m;
        true
    }
}

struct Replay {
    cap: usize,
    sessions: HashMap<[u8; 16], SessionWindow>,
}

/// Secure MAC auth (fields `ts` = u64 ms, `nonce` = 16-byte sender session ‖ u64 counter,
/// `mac`). Replay protection is a per-sender-session sliding window of 1024 counters plus the
/// timestamp window, so its memory does not grow with the message rate.
pub struct MacAuth {
    key: Zeroizing<[u8; 32]>,
    window: Duration,
    session: [u8; 16],
    counter: std::sync::atomic::AtomicU64,
    replay: Mutex<Replay>,
}

impl MacAuth {
    /// Key derived from a shared secret; ±30 s window; up to 65 536 tracked sender sessions.
    /// The sending session id is drawn from the OS RNG once, here.
    pub fn new(secret: &[u8]) -> Self {
        let mut session = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut session);
        Self::with_session(secret, session)
    }
    /// Explicit sending session id (tests, deterministic vectors).
    pub fn with_session(secret: &[u8], session: [u8; 16]) -> Self {
        Self {
            key: derive(secret, b"mac key"),
            window: Duration::from_secs(30),
            session,
            counter: std::sync::atomic::AtomicU64::new(1),
            replay: Mutex::new(Replay {
                cap: 65_536,
                sessions: HashMap::new(),
            }),
        }
    }
    /// Change the accepted clock skew.
    pub fn window(mut self, w: Duration) -> Self {
        self.window = w;
        self
    }
    fn mac(&self, t: MessageType, auth: &AuthFields, body: &Body) -> Result<[u8; 32]> {
        let fe = auth.encode_without("mac");
        let body = body.encode()?;
        let len = (fe.len() as u32).to_be_bytes();
        Ok(kdf::hmac_sha256_parts(
            &self.key[..],
            &[b"betanet-msg mac v1\0", &[t.0], &len, &fe, &body],
        ))
    }
}

impl AuthPlugin for MacAuth {
    fn make(
        &self,
        t: MessageType,
        auth: &mut AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let ctr = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut n = Vec::with_capacity(24);
        n.extend_from_slice(&self.session);
        n.extend_from_slice(&ctr.to_be_bytes());
        auth.set_bytes("nonce", n);
        auth.set_bytes("ts", cx.now_ms.to_be_bytes().to_vec());
        let mac = self.mac(t, auth, body)?;
        auth.set_bytes("mac", mac.to_vec());
        Ok(())
    }

    fn check(
        &self,
        t: MessageType,
        auth: &AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let ts = ts_field(auth, "ts")?;
        let nonce: [u8; 24] = auth
            .get_bytes("nonce")
            .and_then(|n| n.try_into().ok())
            .ok_or(MsgError::Auth("missing nonce"))?;
        let mac = auth.get_bytes("mac").ok_or(MsgError::Auth("missing mac"))?;
        let want = self.mac(t, auth, body)?;
        if !ct::ct_eq(&want, mac) {
            return Err(MsgError::Auth("mac mismatch"));
        }
        if !in_window(ts, cx.now_ms, self.window) {
            return Err(MsgError::Auth("timestamp outside window"));
        }
        let (sess, ctr) = nonce.split_at(16);
        let sess: [u8; 16] = sess
            .try_into()
            .map_err(|_| MsgError::Auth("missing nonce"))?;
        let ctr = u64::from_be_bytes(
            ctr.try_into()
                .map_err(|_| MsgError::Auth("missing nonce"))?,
        );
        let win = self.window.as_millis() as u64;
        let mut r = lock(&self.replay);
        if !r.sessions.contains_key(&sess) && r.sessions.len() >= r.cap {
            // Forget only sessions whose newest message is already outside the time window:
            // their old messages can no longer pass the timestamp check.
            let now = cx.now_ms;
            r.sessions
                .retain(|_, w| now.saturating_sub(w.last_ts) <= win);
            if r.sessions.len() >= r.cap {
                return Err(MsgError::Auth("replay cache full"));
            }
        }
        let w = r.sessions.entry(sess).or_insert(SessionWindow {
            highest: 0,
            bits: [0; WINDOW_WORDS],
            last_ts: 0,
        });
        if !w.accept(ctr) {
            return Err(MsgError::Auth("replayed nonce"));
        }
        w.last_ts = w.last_ts.max(ts);
        Ok(())
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
        Self {
            key: derive(secret, b"aead key"),
            field: "n".into(),
            encrypt_uri: true,
        }
    }
    /// Inner layer: URI stays in clear for routing; own field name.
    pub fn inner(secret: &[u8], field: &str) -> Self {
        Self {
            key: derive(secret, b"aead key"),
            field: field.into(),
            encrypt_uri: false,
        }
    }
    fn subkey(&self, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let mut k = Zeroizing::new([0u8; 32]);
        kdf::hkdf_expand(&self.key[..], &[b"betanet-msg aead v1", salt], &mut k[..])
            .map_err(|_| MsgError::Plugin("aead expand"))?;
        Ok(k)
    }

    /// Outer layer: AAD = message type. Inner layer: AAD = URI only, so a relay may forward
    /// the ciphertext under another type (e.g. PUBLISH → NOTIFY); the outer MAC binds the type
    /// hop by hop.
    fn aad(&self, t: MessageType, uri: &[u8]) -> Vec<u8> {
        if self.encrypt_uri {
            vec![t.0]
        } else {
            let mut a = b"uri:".to_vec();
            a.extend_from_slice(uri);
            a
        }
    }
}

impl CipherPlugin for AeadCipher {
    fn encrypt(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        let mut salt = [0u8; 16];
        cx.rng.fill_bytes(&mut salt);
        let mut buf = if self.encrypt_uri {
            m.body.encode()?
        } else {
            m.body.content.to_vec()
        };
        let aad = self.aad(m.mtype, &m.body.uri);
        // Each message has its own key (fresh 128-bit salt), so the zero nonce is unique.
        let k = self.subkey(&salt)?;
        aead::seal(&k, [0u8; 12], &aad, &mut buf).map_err(|_| MsgError::Plugin("aead encrypt"))?;
        if self.encrypt_uri {
            m.body = Body {
                uri: Bytes::new(),
                content: Bytes::from(buf),
            };
        } else {
            m.body.content = Bytes::from(buf);
        }
        m.auth.set_bytes(&self.field, salt.to_vec());
        Ok(m)
    }

    fn decrypt(&self, mut m: Message, _cx: &mut PluginCx<'_>) -> Result<Message> {
        let salt = m
            .auth
            .get_bytes(&self.field)
            .filter(|s| s.len() == 16)
            .ok_or(MsgError::Decrypt("missing salt"))?
            .to_vec();
        let aad = self.aad(m.mtype, &m.body.uri);
        let mut buf = m.body.content.to_vec();
        let k = self.subkey(&salt)?;
        aead::open(&k, [0u8; 12], &aad, &mut buf)
            .map_err(|_| MsgError::Decrypt("aead tag mismatch"))?;
        if self.encrypt_uri {
            m.body =
                Body::decode(Bytes::from(buf)).map_err(|_| MsgError::Decrypt("bad inner body"))?;
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
        Self {
            bits: bits.min(40),
            window: Duration::from_secs(60),
            cache: Mutex::new(ReplayCache::new(100_000)),
            max_iters: 1 << 42,
        }
    }
    fn digest(t: MessageType, ts: &[u8], body_hash: &[u8; 32], counter: u64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"betanet-msg pow v1\0");
        h.update(&[t.0]);
        h.update(ts);
        h.update(body_hash);
        h.update(&counter.to_be_bytes());
        h.finish()
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
    fn make(
        &self,
        t: MessageType,
        auth: &mut AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let ts = cx.now_ms.to_be_bytes();
        let bh = sha256(&body.encode()?);
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

    fn check(
        &self,
        t: MessageType,
        auth: &AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let ts = ts_field(auth, "pow_ts")?;
        let c: [u8; 8] = auth
            .get_bytes("pow")
            .and_then(|b| b.try_into().ok())
            .ok_or(MsgError::Auth("missing proof of work"))?;
        if !in_window(ts, cx.now_ms, self.window) {
            return Err(MsgError::Auth("proof of work too old"));
        }
        let bh = sha256(&body.encode()?);
        let d = Self::digest(t, &ts.to_be_bytes(), &bh, u64::from_be_bytes(c));
        if Self::zeros(&d) < self.bits {
            return Err(MsgError::Auth("insufficient proof of work"));
        }
        lock(&self.cache)
            .insert(&d, cx.now_ms, ts + self.window.as_millis() as u64 + 1)
            .map_err(MsgError::Auth)
    }

    fn error(&self) -> Message {
        Message::new(
            MessageType::AUTH_ERROR,
            &b"ERROR"[..],
            &b"proof of work auth failed"[..],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let mut w = SessionWindow {
            highest: 0,
            bits: [0; WINDOW_WORDS],
            last_ts: 0,
        };
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(2000));
        assert!(!w.accept(5), "far below the window");
        assert!(w.accept(1999));
        assert!(w.accept(2000 - 1023));
        assert!(!w.accept(2000 - 1024));
        assert!(!w.accept(1999));
    }

    #[test]
    fn mac_covers_type_and_fields() {
        let a = MacAuth::with_session(b"k", [1; 16]);
        let mut rng = rand::thread_rng();
        let mut cx = PluginCx {
            now_ms: 1_000_000,
            rng: &mut rng,
            peer: None,
        };
        let body = Body::new(&b"u"[..], &b"c"[..]);
        let mut f = AuthFields::new();
        f.set_bytes("rid", vec![1; 8]);
        a.make(MessageType::REQUEST_URI, &mut f, &body, &mut cx)
            .unwrap();
        let b = MacAuth::with_session(b"k", [2; 16]);
        assert!(
            b.check(MessageType::DELETE_URI, &f, &body, &mut cx)
                .is_err()
        );
        let mut g = f.clone();
        g.set_bytes("rid", vec![2; 8]);
        assert!(
            b.check(MessageType::REQUEST_URI, &g, &body, &mut cx)
                .is_err()
        );
        b.check(MessageType::REQUEST_URI, &f, &body, &mut cx)
            .unwrap();
        assert!(
            b.check(MessageType::REQUEST_URI, &f, &body, &mut cx)
                .is_err(),
            "replay"
        );
        cx.now_ms += 31_000;
        let mut h = AuthFields::new();
        a.make(
            MessageType::REQUEST_URI,
            &mut h,
            &body,
            &mut PluginCx {
                now_ms: 1_000_000,
                rng: &mut rand::thread_rng(),
                peer: None,
            },
        )
        .unwrap();
        assert!(
            b.check(MessageType::REQUEST_URI, &h, &body, &mut cx)
                .is_err(),
            "stale"
        );
    }
}

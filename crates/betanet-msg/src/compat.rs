//! netaio-compatible plugins, byte-exact with netaio 0.0.9.
//!
//! These reproduce netaio's own constructions so Rust nodes can talk to Python nodes. They
//! carry netaio's weaknesses (see [`crate::secure`] for the default profile): the HMAC covers
//! neither the message type nor the other auth fields, there is no replay protection, and the
//! stream cipher is unauthenticated. Documented exception to "crypto lives in one crate": these
//! foreign primitives use RustCrypto crates directly.

use bytes::Bytes;
use crypto_box::aead::Aead;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{MsgError, Result};
use crate::frame::{AuthFields, Body, Message, MessageType};
use crate::packify::Value;
use crate::plugin::{AuthPlugin, CipherPlugin, PluginCx};

const IV_SIZE: usize = 16;

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// netaio `crypto.derive_key`: `SHA-256(SHA-256(p1) ‖ SHA-256(p2) ‖ …)`.
pub fn derive_key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(Sha256::digest(p));
    }
    h.finalize().into()
}

/// netaio `crypto.hmac(key, iv, message)`: HMAC-like construction with a 136-byte block over
/// a key derived from `(key, iv, "mac")`. Not RFC 2104; reproduced byte for byte.
pub fn netaio_hmac(key: &[u8], iv: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = Zeroizing::new([0u8; 136]);
    let dk = Zeroizing::new(derive_key(&[key, iv, b"mac"]));
    k[..32].copy_from_slice(&dk[..]);
    let mut ipad = Zeroizing::new([0u8; 136]);
    let mut opad = Zeroizing::new([0u8; 136]);
    for i in 0..136 {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    let mut h = Sha256::new();
    h.update(&ipad[..]);
    h.update(message);
    let partial = h.finalize();
    let mut h = Sha256::new();
    h.update(&opad[..]);
    h.update(partial);
    h.finalize().into()
}

/// netaio `crypto.symcrypt(key, iv, data)`: XOR with `SHA-256(E ‖ u32be(i))` blocks where
/// `E = derive_key(key, iv, "enc")`. Encrypts and decrypts.
pub fn netaio_symcrypt(key: &[u8], iv: &[u8], data: &mut [u8]) {
    let mut e = derive_key(&[key, iv, b"enc"]);
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(e);
        h.update((i as u32).to_be_bytes());
        let mut ks: [u8; 32] = h.finalize().into();
        for (d, k) in chunk.iter_mut().zip(ks.iter()) {
            *d ^= *k;
        }
        ks.zeroize();
    }
    e.zeroize();
}

/// netaio's `HMACAuthPlugin` (fields `hmac`, `nonce`, `ts` by default).
pub struct HmacAuth {
    secret: Zeroizing<[u8; 32]>,
    hmac_field: String,
    nonce_field: String,
    ts_field: String,
}

impl HmacAuth {
    /// From the shared secret (netaio stores `SHA-256(secret)`).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self::with_fields(secret, "hmac", "nonce", "ts")
    }
    /// With custom field names (needed when two HMAC layers are stacked).
    pub fn with_fields(secret: impl AsRef<[u8]>, hmac: &str, nonce: &str, ts: &str) -> Self {
        Self {
            secret: Zeroizing::new(sha256(secret.as_ref())),
            hmac_field: hmac.into(),
            nonce_field: nonce.into(),
            ts_field: ts.into(),
        }
    }
}

fn ts_bytes(v: Option<&Value>) -> Option<[u8; 4]> {
    match v? {
        Value::Int(i) => u32::try_from(*i).ok().map(u32::to_be_bytes),
        Value::Bytes(b) | Value::ByteArray(b) => {
            // netaio uses the raw bytes (normally 4) in the MAC input; we require exactly 4.
            b.as_slice().try_into().ok()
        }
        _ => None,
    }
}

impl AuthPlugin for HmacAuth {
    fn make(
        &self,
        _t: MessageType,
        auth: &mut AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let nonce = match auth.get_bytes(&self.nonce_field) {
            Some(n) if n.len() == IV_SIZE => n.to_vec(),
            _ => {
                let mut n = vec![0u8; IV_SIZE];
                cx.rng.fill_bytes(&mut n);
                n
            }
        };
        let ts = ts_bytes(auth.get(&self.ts_field))
            .unwrap_or_else(|| ((cx.now_ms / 1000) as u32).to_be_bytes());
        let mut input = Vec::with_capacity(4 + body.encoded_len());
        input.extend_from_slice(&ts);
        input.extend_from_slice(&body.encode()?);
        let mac = netaio_hmac(&self.secret[..], &nonce, &input);
        auth.set_bytes(&self.nonce_field, nonce);
        auth.set_bytes(&self.ts_field, ts.to_vec());
        auth.set_bytes(&self.hmac_field, mac.to_vec());
        Ok(())
    }

    fn check(
        &self,
        _t: MessageType,
        auth: &AuthFields,
        body: &Body,
        _cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        let ts = match auth.get(&self.ts_field) {
            None | Some(Value::Int(0)) => return Err(MsgError::Auth("missing timestamp")),
            Some(v) => ts_bytes(Some(v)).ok_or(MsgError::Auth("bad timestamp"))?,
        };
        let nonce = auth
            .get_bytes(&self.nonce_field)
            .ok_or(MsgError::Auth("missing nonce"))?;
        let mac = auth
            .get_bytes(&self.hmac_field)
            .ok_or(MsgError::Auth("missing hmac"))?;
        let mut input = Vec::with_capacity(4 + body.encoded_len());
        input.extend_from_slice(&ts);
        input.extend_from_slice(&body.encode()?);
        let want = netaio_hmac(&self.secret[..], nonce, &input);
        if mac.len() == 32 && bool::from(want.ct_eq(mac)) {
            Ok(())
        } else {
            Err(MsgError::Auth("hmac mismatch"))
        }
    }

    fn error(&self) -> Message {
        Message::new(
            MessageType::AUTH_ERROR,
            &b"ERROR"[..],
            &b"HMAC auth failed"[..],
        )
    }
}

fn split_point(len: usize, cx: &mut PluginCx<'_>) -> usize {
    // netaio: randint(1, len - 1); len >= 2 always holds (the plaintext starts with u16 uri_len).
    if len < 2 {
        return len;
    }
    1 + (cx.rng.next_u64() % (len as u64 - 1)) as usize
}

fn join_uri(uri: Bytes, content: Bytes) -> Vec<u8> {
    let mut v = Vec::with_capacity(uri.len() + content.len());
    v.extend_from_slice(&uri);
    v.extend_from_slice(&content);
    v
}

fn uri_plaintext(body: &Body) -> Result<Vec<u8>> {
    body.encode()
}

fn parse_uri_plaintext(p: Vec<u8>) -> Result<Body> {
    Body::decode(Bytes::from(p)).map_err(|_| MsgError::Decrypt("decrypted uri length out of range"))
}

/// netaio's `Sha256StreamCipherPlugin` (field `iv`; `encrypt_uri` true by default).
pub struct Sha256StreamCipher {
    key: Zeroizing<[u8; 32]>,
    iv_field: String,
    encrypt_uri: bool,
}

impl Sha256StreamCipher {
    /// Outer-layer cipher (encrypts the URI too).
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self::with_options(key, "iv", true)
    }
    /// Custom IV field and URI handling (`encrypt_uri = false` for inner layers).
    pub fn with_options(key: impl AsRef<[u8]>, iv_field: &str, encrypt_uri: bool) -> Self {
        Self {
            key: Zeroizing::new(sha256(key.as_ref())),
            iv_field: iv_field.into(),
            encrypt_uri,
        }
    }
}

impl CipherPlugin for Sha256StreamCipher {
    fn encrypt(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        let mut iv = [0u8; IV_SIZE];
        cx.rng.fill_bytes(&mut iv);
        if self.encrypt_uri {
            let mut p = uri_plaintext(&m.body)?;
            netaio_symcrypt(&self.key[..], &iv, &mut p);
            let at = split_point(p.len(), cx);
            let mut ct = Bytes::from(p);
            let uri = ct.split_to(at);
            m.body = Body { uri, content: ct };
        } else {
            let mut p = m.body.content.to_vec();
            netaio_symcrypt(&self.key[..], &iv, &mut p);
            m.body.content = Bytes::from(p);
        }
        m.auth.set_bytes(&self.iv_field, iv.to_vec());
        Ok(m)
    }

    fn decrypt(&self, mut m: Message, _cx: &mut PluginCx<'_>) -> Result<Message> {
        let iv = m
            .auth
            .get_bytes(&self.iv_field)
            .ok_or(MsgError::Decrypt("missing iv"))?
            .to_vec();
        if self.encrypt_uri {
            let mut p = join_uri(m.body.uri.clone(), m.body.content.clone());
            netaio_symcrypt(&self.key[..], &iv, &mut p);
            m.body = parse_uri_plaintext(p)?;
        } else {
            let mut p = m.body.content.to_vec();
            netaio_symcrypt(&self.key[..], &iv, &mut p);
            m.body.content = Bytes::from(p);
        }
        Ok(m)
    }
}

/// netaio's `X25519CipherPlugin`: NaCl `crypto_box` (X25519 + XSalsa20-Poly1305) to the peer's
/// `pubkey` (from its peer data); content = `nonce24 ‖ tag16 ‖ ciphertext`.
pub struct X25519Cipher {
    secret: crypto_box::SecretKey,
    public: [u8; 32],
    encrypt_uri: bool,
}

impl X25519Cipher {
    /// From a 32-byte Ed25519 seed, as PyNaCl's `SigningKey(seed).to_curve25519_private_key()`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let h = Zeroizing::new(<[u8; 64]>::from(Sha512::digest(seed)));
        let mut sk = Zeroizing::new([0u8; 32]);
        sk.copy_from_slice(&h[..32]);
        sk[0] &= 248;
        sk[31] &= 127;
        sk[31] |= 64;
        let secret = crypto_box::SecretKey::from_bytes(*sk);
        let public = *secret.public_key().as_bytes();
        Self {
            secret,
            public,
            encrypt_uri: false,
        }
    }
    /// Also encrypt the URI (only for an outer layer with manually set peers).
    pub fn encrypt_uri(mut self, yes: bool) -> Self {
        self.encrypt_uri = yes;
        self
    }
    /// The X25519 public key to publish as peer data `pubkey`.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }
    fn peer_box(&self, cx: &PluginCx<'_>) -> Result<crypto_box::SalsaBox> {
        let peer = cx
            .peer
            .ok_or(MsgError::Plugin("X25519 cipher needs a known peer"))?;
        let pk: [u8; 32] = peer
            .data_field("pubkey")
            .and_then(|v| v.try_into().ok())
            .ok_or(MsgError::Plugin("peer data has no 32-byte pubkey"))?;
        Ok(crypto_box::SalsaBox::new(
            &crypto_box::PublicKey::from(pk),
            &self.secret,
        ))
    }
}

impl CipherPlugin for X25519Cipher {
    fn encrypt(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        let b = self.peer_box(cx)?;
        let p = if self.encrypt_uri {
            uri_plaintext(&m.body)?
        } else {
            m.body.content.to_vec()
        };
        let mut nonce = [0u8; 24];
        cx.rng.fill_bytes(&mut nonce);
        let ct = b
            .encrypt(&nonce.into(), p.as_slice())
            .map_err(|_| MsgError::Plugin("crypto_box encrypt failed"))?;
        let mut out = Vec::with_capacity(24 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        if self.encrypt_uri {
            let at = split_point(out.len(), cx);
            let mut ct = Bytes::from(out);
            let uri = ct.split_to(at);
            m.body = Body { uri, content: ct };
        } else {
            m.body.content = Bytes::from(out);
        }
        Ok(m)
    }

    fn decrypt(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        let b = self.peer_box(cx)?;
        let c = if self.encrypt_uri {
            join_uri(m.body.uri.clone(), m.body.content.clone())
        } else {
            m.body.content.to_vec()
        };
        let nonce: [u8; 24] = c
            .get(..24)
            .and_then(|n| n.try_into().ok())
            .ok_or(MsgError::Decrypt("short box"))?;
        let p = b
            .decrypt(&nonce.into(), c.get(24..).unwrap_or_default())
            .map_err(|_| MsgError::Decrypt("crypto_box tag mismatch"))?;
        if self.encrypt_uri {
            m.body = parse_uri_plaintext(p)?;
        } else {
            m.body.content = Bytes::from(p);
        }
        Ok(m)
    }

    fn is_peer_specific(&self) -> bool {
        true
    }
}

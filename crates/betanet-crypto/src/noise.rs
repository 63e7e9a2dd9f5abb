//! `Noise_XK_25519_ChaChaPoly_SHA256` (Noise revision 34) with typed handshake phases.
//!
//! ```text
//! XK:  <- s
//!      ...
//!      -> e, es
//!      <- e, ee
//!      -> s, se
//! ```
//!
//! Each phase is its own type and each step consumes it, so messages cannot be processed out
//! of order, and a failed step drops (and so zeroizes) every secret of the handshake. Ephemeral
//! keys are passed in by the caller, who draws them from its RNG (which also makes the
//! published test vectors reproducible). Betanet's own payloads and checks live in
//! [`crate::handshake`]; this module is plain Noise and interoperates with any Noise library.

use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{AeadKey, TAG_LEN};
use crate::dh::{X25519Public, X25519Secret};
use crate::hash::{sha256, sha256_concat};
use crate::kdf::{hkdf_expand, hkdf_extract};

/// The protocol name (exactly 32 bytes, so `h` starts as the name itself).
pub const PROTOCOL_NAME: &[u8; 32] = b"Noise_XK_25519_ChaChaPoly_SHA256";
/// Noise's maximum message size.
pub const MAX_MESSAGE_LEN: usize = 65535;
const DHLEN: usize = 32;

/// A Noise CipherState: a key and a 64-bit nonce (nonce = 0^32 ‖ u64le(n)).
pub struct CipherState {
    key: Option<AeadKey>,
    n: u64,
}

impl std::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherState")
            .field("has_key", &self.key.is_some())
            .field("n", &self.n)
            .finish()
    }
}

impl CipherState {
    fn empty() -> Self {
        CipherState { key: None, n: 0 }
    }

    fn with_key(k: &[u8; 32]) -> Self {
        CipherState {
            key: Some(AeadKey::new(k)),
            n: 0,
        }
    }

    fn nonce(&self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.n.to_le_bytes());
        nonce
    }

    /// `EncryptWithAd`: appends the ciphertext of `pt` (and tag) to `out`.
    pub fn encrypt_with_ad(
        &mut self,
        ad: &[u8],
        pt: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let Some(key) = &self.key else {
            out.extend_from_slice(pt);
            return Ok(());
        };
        if self.n == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        let start = out.len();
        out.extend_from_slice(pt);
        let tag = key.seal_in_place(self.nonce(), ad, out.get_mut(start..).unwrap_or_default())?;
        out.extend_from_slice(&tag);
        self.n += 1;
        Ok(())
    }

    /// `DecryptWithAd`: appends the plaintext of `ct` to `out`.
    pub fn decrypt_with_ad(
        &mut self,
        ad: &[u8],
        ct: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let Some(key) = &self.key else {
            out.extend_from_slice(ct);
            return Ok(());
        };
        if self.n == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        if ct.len() < TAG_LEN {
            return Err(CryptoError::HandshakeMalformed(
                "ciphertext shorter than a tag",
            ));
        }
        let start = out.len();
        out.extend_from_slice(ct);
        let n = match key.open_in_place(self.nonce(), ad, out.get_mut(start..).unwrap_or_default())
        {
            Ok(pt) => pt.len(),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        out.truncate(start + n);
        self.n += 1;
        Ok(())
    }
}

struct SymmetricState {
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
    cs: CipherState,
}

impl SymmetricState {
    fn new() -> Self {
        // The name is exactly HASHLEN bytes: h = name, no hashing.
        SymmetricState {
            ck: Zeroizing::new(*PROTOCOL_NAME),
            h: *PROTOCOL_NAME,
            cs: CipherState::empty(),
        }
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = sha256_concat(&[&self.h, data]);
    }

    fn hkdf2(&self, ikm: &[u8]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        let prk = hkdf_extract(self.ck.as_ref(), ikm);
        let mut out = Zeroizing::new([0u8; 64]);
        let _ = hkdf_expand(prk.as_ref(), &[], out.as_mut());
        let mut a = Zeroizing::new([0u8; 32]);
        let mut b = Zeroizing::new([0u8; 32]);
        a.copy_from_slice(&out[..32]);
        b.copy_from_slice(&out[32..]);
        (a, b)
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = self.hkdf2(ikm);
        self.ck = ck;
        self.cs = CipherState::with_key(&k);
    }

    fn encrypt_and_hash(&mut self, pt: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let start = out.len();
        let h = self.h;
        self.cs.encrypt_with_ad(&h, pt, out)?;
        let ct = out.get(start..).unwrap_or_default().to_vec();
        self.mix_hash(&ct);
        Ok(())
    }

    fn decrypt_and_hash(&mut self, ct: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let h = self.h;
        self.cs.decrypt_with_ad(&h, ct, out)?;
        self.mix_hash(ct);
        Ok(())
    }

    fn split(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        self.hkdf2(&[])
    }
}

fn dh(s: &X25519Secret, p: &X25519Public) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    s.diffie_hellman(p)
}

fn read_key(msg: &[u8]) -> Result<(X25519Public, &[u8]), CryptoError> {
    if msg.len() < DHLEN {
        return Err(CryptoError::HandshakeMalformed(
            "message shorter than a public key",
        ));
    }
    let (k, rest) = msg.split_at(DHLEN);
    let mut key = [0u8; 32];
    key.copy_from_slice(k);
    Ok((X25519Public(key), rest))
}

fn check_len(n: usize) -> Result<(), CryptoError> {
    if n > MAX_MESSAGE_LEN {
        Err(CryptoError::TooLarge(n))
    } else {
        Ok(())
    }
}

/// The result of a completed handshake.
pub struct Completed {
    /// The final handshake hash `h`.
    pub handshake_hash: [u8; 32],
    /// First Split() key (initiator → responder in plain Noise).
    pub k1: Zeroizing<[u8; 32]>,
    /// Second Split() key.
    pub k2: Zeroizing<[u8; 32]>,
    /// The peer's static key.
    pub remote_static: X25519Public,
}

impl std::fmt::Debug for Completed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completed")
            .field("handshake_hash", &hex::encode(self.handshake_hash))
            .field("remote_static", &self.remote_static)
            .finish()
    }
}

impl Completed {
    /// Plain Noise transport mode: `(send, receive)` cipher states for the given side.
    pub fn into_transport(self, initiator: bool) -> (CipherState, CipherState) {
        let c1 = CipherState::with_key(&self.k1);
        let c2 = CipherState::with_key(&self.k2);
        if initiator { (c1, c2) } else { (c2, c1) }
    }
}

/// Initiator, before message 1.
pub struct InitiatorStart {
    ss: SymmetricState,
    s: X25519Secret,
    s_pub: Option<X25519Public>,
    rs: X25519Public,
}

/// Initiator, message 1 sent, waiting for message 2.
pub struct InitiatorSentMsg1 {
    ss: SymmetricState,
    s: X25519Secret,
    s_pub: Option<X25519Public>,
    e: X25519Secret,
    rs: X25519Public,
}

/// Initiator, message 2 received, ready to send message 3.
pub struct InitiatorGotMsg2 {
    ss: SymmetricState,
    s: X25519Secret,
    s_pub: Option<X25519Public>,
    re: X25519Public,
    rs: X25519Public,
}

impl InitiatorStart {
    /// Starts a handshake with static key `s` towards responder static `rs`.
    pub fn new(s: X25519Secret, rs: X25519Public, prologue: &[u8]) -> Self {
        let mut ss = SymmetricState::new();
        ss.mix_hash(prologue);
        ss.mix_hash(&rs.0);
        InitiatorStart {
            ss,
            s,
            s_pub: None,
            rs,
        }
    }

    /// Like [`InitiatorStart::new`] with the public half of `s` precomputed (saves one scalar
    /// multiplication per handshake). `s_pub` must be `s.public()`.
    pub fn with_public(
        s: X25519Secret,
        s_pub: X25519Public,
        rs: X25519Public,
        prologue: &[u8],
    ) -> Self {
        let mut st = Self::new(s, rs, prologue);
        st.s_pub = Some(s_pub);
        st
    }

    /// `-> e, es` with `payload`, appended to `out`.
    pub fn write_message1(
        mut self,
        e: X25519Secret,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<InitiatorSentMsg1, CryptoError> {
        check_len(DHLEN + payload.len() + TAG_LEN)?;
        let epub = e.public()?;
        out.extend_from_slice(&epub.0);
        self.ss.mix_hash(&epub.0);
        let k = dh(&e, &self.rs)?;
        self.ss.mix_key(k.as_ref());
        self.ss.encrypt_and_hash(payload, out)?;
        Ok(InitiatorSentMsg1 {
            ss: self.ss,
            s: self.s,
            s_pub: self.s_pub,
            e,
            rs: self.rs,
        })
    }
}

impl InitiatorSentMsg1 {
    /// `<- e, ee`; appends the decrypted payload to `payload`.
    pub fn read_message2(
        mut self,
        msg: &[u8],
        payload: &mut Vec<u8>,
    ) -> Result<InitiatorGotMsg2, CryptoError> {
        check_len(msg.len())?;
        let (re, rest) = read_key(msg)?;
        self.ss.mix_hash(&re.0);
        let k = dh(&self.e, &re)?;
        self.ss.mix_key(k.as_ref());
        self.ss.decrypt_and_hash(rest, payload)?;
        Ok(InitiatorGotMsg2 {
            ss: self.ss,
            s: self.s,
            s_pub: self.s_pub,
            re,
            rs: self.rs,
        })
    }
}

impl InitiatorGotMsg2 {
    /// `-> s, se` with `payload`, appended to `out`; completes the handshake.
    pub fn write_message3(
        mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Completed, CryptoError> {
        check_len(DHLEN + TAG_LEN + payload.len() + TAG_LEN)?;
        let spub = match self.s_pub {
            Some(p) => p,
            None => self.s.public()?,
        };
        self.ss.encrypt_and_hash(&spub.0, out)?;
        let k = dh(&self.s, &self.re)?;
        self.ss.mix_key(k.as_ref());
        self.ss.encrypt_and_hash(payload, out)?;
        let (k1, k2) = self.ss.split();
        Ok(Completed {
            handshake_hash: self.ss.h,
            k1,
            k2,
            remote_static: self.rs,
        })
    }

    /// The handshake hash so far (after message 2).
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.ss.h
    }
}

/// Responder, before message 1.
pub struct ResponderStart {
    ss: SymmetricState,
    s: X25519Secret,
}

/// Responder, message 1 received, ready to send message 2.
pub struct ResponderGotMsg1 {
    ss: SymmetricState,
    re: X25519Public,
}

/// Responder, message 2 sent, waiting for message 3.
pub struct ResponderSentMsg2 {
    ss: SymmetricState,
    e: X25519Secret,
}

impl ResponderStart {
    /// Starts a handshake with static key `s` (whose public half the initiator knows).
    pub fn new(s: X25519Secret, prologue: &[u8]) -> Result<Self, CryptoError> {
        let s_pub = s.public()?;
        Ok(Self::with_public(s, s_pub, prologue))
    }

    /// Like [`ResponderStart::new`] with the public half of `s` precomputed (saves one scalar
    /// multiplication per handshake). `s_pub` must be `s.public()`.
    pub fn with_public(s: X25519Secret, s_pub: X25519Public, prologue: &[u8]) -> Self {
        let mut ss = SymmetricState::new();
        ss.mix_hash(prologue);
        ss.mix_hash(&s_pub.0);
        ResponderStart { ss, s }
    }

    /// `-> e, es`; appends the decrypted payload to `payload`.
    pub fn read_message1(
        mut self,
        msg: &[u8],
        payload: &mut Vec<u8>,
    ) -> Result<ResponderGotMsg1, CryptoError> {
        check_len(msg.len())?;
        let (re, rest) = read_key(msg)?;
        self.ss.mix_hash(&re.0);
        let k = dh(&self.s, &re)?;
        self.ss.mix_key(k.as_ref());
        self.ss.decrypt_and_hash(rest, payload)?;
        Ok(ResponderGotMsg1 { ss: self.ss, re })
    }
}

impl ResponderGotMsg1 {
    /// `<- e, ee` with `payload`, appended to `out`.
    pub fn write_message2(
        mut self,
        e: X25519Secret,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<ResponderSentMsg2, CryptoError> {
        check_len(DHLEN + payload.len() + TAG_LEN)?;
        let epub = e.public()?;
        out.extend_from_slice(&epub.0);
        self.ss.mix_hash(&epub.0);
        let k = dh(&e, &self.re)?;
        self.ss.mix_key(k.as_ref());
        self.ss.encrypt_and_hash(payload, out)?;
        Ok(ResponderSentMsg2 { ss: self.ss, e })
    }
}

impl ResponderSentMsg2 {
    /// `-> s, se`; appends the decrypted payload to `payload`; completes the handshake.
    pub fn read_message3(
        mut self,
        msg: &[u8],
        payload: &mut Vec<u8>,
    ) -> Result<Completed, CryptoError> {
        check_len(msg.len())?;
        if msg.len() < DHLEN + TAG_LEN {
            return Err(CryptoError::HandshakeMalformed("message 3 too short"));
        }
        let (enc_s, rest) = msg.split_at(DHLEN + TAG_LEN);
        let mut s_plain = Vec::with_capacity(DHLEN);
        self.ss.decrypt_and_hash(enc_s, &mut s_plain)?;
        let (rs, _) = read_key(&s_plain)?;
        let k = dh(&self.e, &rs)?;
        self.ss.mix_key(k.as_ref());
        self.ss.decrypt_and_hash(rest, payload)?;
        let (k1, k2) = self.ss.split();
        Ok(Completed {
            handshake_hash: self.ss.h,
            k1,
            k2,
            remote_static: rs,
        })
    }
}

/// SHA-256 of the protocol name, for logs (never secret).
pub fn protocol_id() -> [u8; 32] {
    sha256(PROTOCOL_NAME)
}

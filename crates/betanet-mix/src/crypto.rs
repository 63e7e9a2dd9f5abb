//! Mix-layer primitives: X25519 mix keys, the per-hop key schedule, the header stream cipher and
//! MAC, and the LIONESS wide-block payload cipher.
//!
//! X25519 comes from `betanet_crypto::dh` (a parsed key, one scalar multiplication per packet).
//! The ChaCha20 keystream and LIONESS stay here until the packet format is frozen; then they move
//! into `betanet-crypto` (see docs/ARCHITECTURE.md, "Exceptions").

use betanet_crypto::dh::{X25519Public, X25519Secret};
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::MixError;

type HmacSha256 = Hmac<Sha256>;

/// Length of the per-hop replay tag.
pub const REPLAY_TAG_LEN: usize = 16;
/// Length of the truncated header MAC.
pub const MAC_LEN: usize = 16;

const KDF_SALT: &[u8] = b"betanet-mix/v1 hop keys";

/// A mixnode's (or a one-time sender's) X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MixPublicKey(pub [u8; 32]);

/// A mixnode's X25519 secret key for one key epoch.
pub struct MixSecretKey {
    key: X25519Secret,
    public: MixPublicKey,
}

impl std::fmt::Debug for MixSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixSecretKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl MixSecretKey {
    /// Generates a fresh key from the caller's RNG.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Result<Self, MixError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(raw.as_mut());
        Self::from_bytes(&raw)
    }

    /// Rebuilds a key from its 32 secret bytes (as persisted by [`MixSecretKey::to_bytes`]).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, MixError> {
        let key = X25519Secret::from_bytes(*bytes);
        let public = MixPublicKey(key.public().map_err(|_| MixError::Crypto)?.0);
        Ok(MixSecretKey { key, public })
    }

    /// The secret bytes, for persistence only. Handle with care.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.key.as_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> MixPublicKey {
        self.public
    }

    /// X25519 with a peer key. Rejects invalid points and an all-zero (low-order) result.
    pub fn dh(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, MixError> {
        self.key
            .diffie_hellman(&X25519Public(*peer))
            .map_err(|_| MixError::KeyAgreement)
    }
}

/// Keys for the LIONESS payload cipher of one hop: two ChaCha20 keys and two HMAC keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PayloadKey {
    k1: [u8; 32],
    k2: [u8; 32],
    k3: [u8; 32],
    k4: [u8; 32],
}

impl PayloadKey {
    /// Expands a 32-byte seed into the four LIONESS subkeys.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut okm = Zeroizing::new([0u8; 128]);
        hkdf_expand(seed, b"betanet-mix/v1 lioness", okm.as_mut());
        Self::from_okm(&okm)
    }

    fn from_okm(okm: &[u8; 128]) -> Self {
        let mut k = PayloadKey {
            k1: [0; 32],
            k2: [0; 32],
            k3: [0; 32],
            k4: [0; 32],
        };
        k.k1.copy_from_slice(&okm[0..32]);
        k.k2.copy_from_slice(&okm[32..64]);
        k.k3.copy_from_slice(&okm[64..96]);
        k.k4.copy_from_slice(&okm[96..128]);
        k
    }
}

/// All keys one hop derives from its X25519 shared secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct HopKeys {
    /// ChaCha20 key for the routing header.
    pub header: [u8; 32],
    /// HMAC-SHA256 key for the routing-header MAC.
    pub mac: [u8; 32],
    /// LIONESS keys for the payload.
    #[zeroize(skip)]
    pub payload: PayloadKey,
    /// Replay tag (public; stored in the replay filter).
    pub replay_tag: [u8; REPLAY_TAG_LEN],
}

impl HopKeys {
    /// HKDF-SHA256 from the shared secret: one extract, one 208-byte expand.
    pub fn derive(shared: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(KDF_SALT), shared);
        let mut okm = Zeroizing::new([0u8; 32 + 32 + 128 + REPLAY_TAG_LEN]);
        // 208 bytes is far below HKDF's 255*32 limit, so this cannot fail.
        if hk.expand(b"hop", okm.as_mut()).is_err() {
            okm.zeroize();
        }
        let mut header = [0u8; 32];
        let mut mac = [0u8; 32];
        let mut lion = Zeroizing::new([0u8; 128]);
        let mut replay_tag = [0u8; REPLAY_TAG_LEN];
        header.copy_from_slice(&okm[0..32]);
        mac.copy_from_slice(&okm[32..64]);
        lion.copy_from_slice(&okm[64..192]);
        replay_tag.copy_from_slice(&okm[192..208]);
        HopKeys {
            header,
            mac,
            payload: PayloadKey::from_okm(&lion),
            replay_tag,
        }
    }
}

fn hkdf_expand(prk_like: &[u8; 32], info: &[u8], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(KDF_SALT), prk_like);
    if hk.expand(info, out).is_err() {
        out.zeroize();
    }
}

/// XORs the ChaCha20 keystream (key, all-zero nonce) into `buf`.
///
/// Each key is used for exactly one keystream (fresh per hop and packet), so the fixed nonce is
/// safe.
pub fn xor_keystream(key: &[u8; 32], buf: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &[0u8; 12].into());
    c.apply_keystream(buf);
}

/// Truncated HMAC-SHA256 header MAC.
pub fn header_mac(key: &[u8; 32], data: &[u8]) -> [u8; MAC_LEN] {
    let full = hmac32(key, data);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// Constant-time comparison of a received MAC with the computed one.
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

fn hmac32(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail here.
    let mut out = [0u8; 32];
    if let Ok(mut m) = HmacSha256::new_from_slice(key) {
        m.update(data);
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// Length of the LIONESS left half (the ChaCha20 key-sized part).
pub const LIONESS_LEFT: usize = 32;

fn lioness_round_stream(left: &[u8], k: &[u8; 32], right: &mut [u8]) {
    let mut key = Zeroizing::new([0u8; 32]);
    for (i, b) in key.iter_mut().enumerate() {
        *b = left.get(i).copied().unwrap_or(0) ^ k[i];
    }
    xor_keystream(&key, right);
}

fn lioness_round_hash(right: &[u8], k: &[u8; 32], left: &mut [u8]) {
    let h = hmac32(k, right);
    for (l, x) in left.iter_mut().zip(h.iter()) {
        *l ^= x;
    }
}

/// LIONESS encryption of a whole block (length > 32) in place.
///
/// A wide-block cipher: flipping any bit of the ciphertext turns the whole decryption into
/// pseudorandom bytes, which the exit detects through its all-zero prefix.
pub fn lioness_encrypt(k: &PayloadKey, block: &mut [u8]) {
    if block.len() <= LIONESS_LEFT {
        return;
    }
    let (l, r) = block.split_at_mut(LIONESS_LEFT);
    lioness_round_stream(l, &k.k1, r);
    lioness_round_hash(r, &k.k2, l);
    lioness_round_stream(l, &k.k3, r);
    lioness_round_hash(r, &k.k4, l);
}

/// LIONESS decryption (inverse of [`lioness_encrypt`]).
pub fn lioness_decrypt(k: &PayloadKey, block: &mut [u8]) {
    if block.len() <= LIONESS_LEFT {
        return;
    }
    let (l, r) = block.split_at_mut(LIONESS_LEFT);
    lioness_round_hash(r, &k.k4, l);
    lioness_round_stream(l, &k.k3, r);
    lioness_round_hash(r, &k.k2, l);
    lioness_round_stream(l, &k.k1, r);
}

/// End-to-end keys between a hidden-service client and the service, from
/// `X25519(client ephemeral, service X25519 key)`; the rendezvous point never sees them.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct HsKeys {
    /// Seals the INTRODUCE payload (rendezvous point and cookie) for the service.
    pub intro: [u8; 32],
    /// Client-to-service data.
    pub c2s: [u8; 32],
    /// Service-to-client data.
    pub s2c: [u8; 32],
}

impl HsKeys {
    /// HKDF-SHA256 over the shared secret, salted with both public keys (transcript binding).
    pub fn derive(shared: &[u8; 32], client_eph: &[u8; 32], service_pub: &[u8; 32]) -> Self {
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(client_eph);
        salt[32..].copy_from_slice(service_pub);
        let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), shared);
        let mut okm = Zeroizing::new([0u8; 96]);
        if hk.expand(b"betanet-mix/v1 hs", okm.as_mut()).is_err() {
            okm.zeroize();
        }
        let mut k = HsKeys {
            intro: [0; 32],
            c2s: [0; 32],
            s2c: [0; 32],
        };
        k.intro.copy_from_slice(&okm[..32]);
        k.c2s.copy_from_slice(&okm[32..64]);
        k.s2c.copy_from_slice(&okm[64..96]);
        k
    }
}

/// ChaCha20-Poly1305 with a 64-bit message counter as nonce: `counter(8, BE) | ct | tag`.
/// The caller never reuses a counter under one key.
pub fn seal(key: &[u8; 32], counter: u64, plaintext: &[u8]) -> Result<Vec<u8>, MixError> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let c = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let ct = c
        .encrypt((&nonce).into(), plaintext)
        .map_err(|_| MixError::Crypto)?;
    let mut out = Vec::with_capacity(8 + ct.len());
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens [`seal`]'s output; returns the counter and the plaintext.
pub fn open(key: &[u8; 32], sealed: &[u8]) -> Result<(u64, Vec<u8>), MixError> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let ctr: [u8; 8] = sealed
        .get(..8)
        .and_then(|c| c.try_into().ok())
        .ok_or(MixError::Tagged)?;
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&ctr);
    let c = chacha20poly1305::ChaCha20Poly1305::new(key.into());
    let pt = c
        .decrypt((&nonce).into(), sealed.get(8..).unwrap_or_default())
        .map_err(|_| MixError::Tagged)?;
    Ok((u64::from_be_bytes(ctr), pt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hs_seal_open() {
        let k = HsKeys::derive(&[1; 32], &[2; 32], &[3; 32]);
        assert_ne!(k.c2s, k.s2c);
        let s = seal(&k.c2s, 5, b"data").unwrap();
        assert_eq!(open(&k.c2s, &s).unwrap(), (5, b"data".to_vec()));
        assert!(open(&k.s2c, &s).is_err());
        let mut t = s.clone();
        t[10] ^= 1;
        assert!(open(&k.c2s, &t).is_err());
        let mut t = s;
        t[7] ^= 1; // counter is authenticated through the nonce
        assert!(open(&k.c2s, &t).is_err());
        assert!(open(&k.c2s, &[1, 2]).is_err());
    }

    #[test]
    fn dh_agrees_and_rejects_low_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = MixSecretKey::generate(&mut rng).unwrap();
        let b = MixSecretKey::generate(&mut rng).unwrap();
        let s1 = a.dh(&b.public().0).unwrap();
        let s2 = b.dh(&a.public().0).unwrap();
        assert_eq!(*s1, *s2);
        assert!(a.dh(&[0u8; 32]).is_err());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.dh(&one).is_err());
        let c = MixSecretKey::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(c.public(), a.public());
    }

    #[test]
    fn lioness_roundtrip_and_diffusion() {
        let k = PayloadKey::from_seed(&[7u8; 32]);
        let orig: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let mut b = orig.clone();
        lioness_encrypt(&k, &mut b);
        assert_ne!(b, orig);
        let mut flipped = b.clone();
        lioness_decrypt(&k, &mut b);
        assert_eq!(b, orig);
        flipped[500] ^= 1;
        lioness_decrypt(&k, &mut flipped);
        // a one-bit change scrambles the start of the block too
        assert_ne!(&flipped[..16], &orig[..16]);
        let differing = flipped.iter().zip(&orig).filter(|(a, b)| a != b).count();
        assert!(differing > 550, "only {differing} bytes differ");
    }

    #[test]
    fn hop_keys_are_deterministic_and_distinct() {
        let a = HopKeys::derive(&[1u8; 32]);
        let b = HopKeys::derive(&[1u8; 32]);
        let c = HopKeys::derive(&[2u8; 32]);
        assert_eq!(a.replay_tag, b.replay_tag);
        assert_ne!(a.replay_tag, c.replay_tag);
        assert_ne!(a.header, a.mac);
    }
}

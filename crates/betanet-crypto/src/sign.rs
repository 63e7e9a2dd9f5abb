//! Ed25519 node keys and signatures (ed25519-dalek, strict verification).

use ed25519_dalek::{Signer, Verifier};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::dh::{X25519Public, X25519Secret};

/// An Ed25519 signing key (the node's long-term identity). Zeroized on drop.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.verifying_key())
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", hex::encode(self.to_bytes()))
    }
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(self.to_bytes()))
    }
}

impl SigningKey {
    /// A fresh key from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key with the given 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed (secret; zeroized when dropped).
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg))
    }

    /// The X25519 static secret of this identity (SPEC §3: clamped first half of
    /// SHA-512(seed)).
    pub fn to_x25519(&self) -> X25519Secret {
        let h = Zeroizing::new(crate::hash::sha512(&self.0.to_bytes()));
        let mut s = [0u8; 32];
        s.copy_from_slice(&h[..32]);
        s[0] &= 248;
        s[31] &= 127;
        s[31] |= 64;
        X25519Secret::from_bytes(s)
    }
}

impl VerifyingKey {
    /// Parses a 32-byte compressed Edwards point; rejects encodings that do not decompress.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(VerifyingKey)
            .map_err(|_| CryptoError::InvalidPublicKey { kind: "Ed25519" })
    }

    /// Parses from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidPublicKey { kind: "Ed25519" })?;
        Self::from_bytes(arr)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies `sig` over `msg` with RFC 8032 strict rules (no small-order keys or
    /// non-canonical signatures).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), CryptoError> {
        self.0
            .verify_strict(msg, &sig.0)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies with the cofactorless rules of plain RFC 8032 (for interoperability checks).
    pub fn verify_lenient(&self, msg: &[u8], sig: &Signature) -> Result<(), CryptoError> {
        self.0
            .verify(msg, &sig.0)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// The X25519 (Montgomery) form of this key (SPEC §3).
    pub fn to_x25519(&self) -> X25519Public {
        X25519Public(self.0.to_montgomery().to_bytes())
    }
}

impl Signature {
    /// From 64 bytes (`R ‖ s`). Structural checks happen at verification.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Signature(ed25519_dalek::Signature::from_bytes(bytes))
    }

    /// From a slice that must be exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 64] = bytes.try_into().map_err(|_| CryptoError::BadSignature)?;
        Ok(Self::from_bytes(arr))
    }

    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 §7.1 test 1.
    #[test]
    fn rfc8032_test1() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let sk = SigningKey::from_seed(&seed);
        assert_eq!(
            hex::encode(sk.verifying_key().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = sk.sign(b"");
        assert_eq!(
            hex::encode(sig.to_bytes()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        sk.verifying_key().verify(b"", &sig).unwrap();
        assert!(sk.verifying_key().verify(b"x", &sig).is_err());
    }

    #[test]
    fn x25519_conversion_is_consistent() {
        let sk = SigningKey::from_seed(&[42u8; 32]);
        let xs = sk.to_x25519();
        assert_eq!(xs.public().unwrap(), sk.verifying_key().to_x25519());
    }
}

//! X25519 (aws-lc-rs): static and ephemeral secrets, public keys, and the DH function.

use std::sync::Arc;

use aws_lc_rs::agreement;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::CryptoError;

/// An X25519 secret scalar (32 bytes), kept parsed together with its public key so that each
/// Diffie-Hellman costs exactly one scalar multiplication. The raw bytes are zeroized on drop.
#[derive(Clone)]
pub struct X25519Secret {
    bytes: Zeroizing<[u8; 32]>,
    parsed: Option<(Arc<agreement::PrivateKey>, X25519Public)>,
}

/// An X25519 public key (Montgomery u-coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519Public(pub [u8; 32]);

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519Secret(<redacted>)")
    }
}

impl std::fmt::Debug for X25519Public {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Public({})", hex::encode(self.0))
    }
}

fn parse(bytes: &[u8; 32]) -> Option<(Arc<agreement::PrivateKey>, X25519Public)> {
    let key = agreement::PrivateKey::from_private_key(&agreement::X25519, bytes).ok()?;
    let public = key.compute_public_key().ok()?;
    let public: [u8; 32] = public.as_ref().try_into().ok()?;
    Some((Arc::new(key), X25519Public(public)))
}

impl X25519Secret {
    /// A fresh secret from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(s.as_mut());
        Self::from_bytes(*s)
    }

    /// A secret from raw bytes (clamping happens inside X25519). Computes the public key once.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let parsed = parse(&bytes);
        X25519Secret { bytes, parsed }
    }

    /// The raw secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The public key `X25519(secret, 9)` (computed when the secret was created).
    pub fn public(&self) -> Result<X25519Public, CryptoError> {
        self.parsed
            .as_ref()
            .map(|(_, p)| *p)
            .ok_or(CryptoError::Internal)
    }

    /// `X25519(self, peer)`; fails on an all-zero result (a low-order `peer`).
    pub fn diffie_hellman(&self, peer: &X25519Public) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        x25519(self, peer)
    }
}

/// `X25519(secret, public)`; fails on an all-zero shared secret (RFC 7748 §6.1 check).
pub fn x25519(
    secret: &X25519Secret,
    public: &X25519Public,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let (sk, _) = secret.parsed.as_ref().ok_or(CryptoError::Internal)?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, &public.0);
    agreement::agree(sk, peer, CryptoError::LowOrderPoint, |shared| {
        if shared.len() != 32 {
            return Err(CryptoError::Internal);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared);
        if crate::ct::ct_eq(out.as_ref(), &[0u8; 32]) {
            return Err(CryptoError::LowOrderPoint);
        }
        Ok(out)
    })
}

/// Whether `public` is one of the X25519 inputs whose product with every scalar is zero
/// (low order), checked by trying a fixed scalar.
pub fn is_low_order(public: &X25519Public) -> bool {
    let probe = X25519Secret::from_bytes([0x5a; 32]);
    matches!(x25519(&probe, public), Err(CryptoError::LowOrderPoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7748 §6.1.
    #[test]
    fn rfc7748_vector() {
        let a: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let b: [u8; 32] =
            hex::decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
                .unwrap()
                .try_into()
                .unwrap();
        let a = X25519Secret::from_bytes(a);
        let b = X25519Secret::from_bytes(b);
        assert_eq!(
            hex::encode(a.public().unwrap().0),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let k = a.diffie_hellman(&b.public().unwrap()).unwrap();
        assert_eq!(
            hex::encode(k.as_ref()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn low_order_rejected() {
        let zero = X25519Public([0u8; 32]);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&zero));
        assert!(is_low_order(&X25519Public(one)));
        let s = X25519Secret::from_bytes([3u8; 32]);
        assert!(!is_low_order(&s.public().unwrap()));
    }
}

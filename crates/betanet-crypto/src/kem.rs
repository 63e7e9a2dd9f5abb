//! ML-KEM-768 (FIPS 203) for the post-quantum half of the hybrid handshake, backed by
//! aws-lc-rs.
//!
//! Randomness for key generation and encapsulation is drawn by AWS-LC's own DRBG (the library
//! offers no way to pass it in); everything else in this crate takes randomness as an argument.

use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::suite::ML_KEM_768 as PARAMS;

/// Encapsulation key length (1184 bytes).
pub const EK_LEN: usize = PARAMS.ek_len;
/// Ciphertext length (1088 bytes).
pub const CT_LEN: usize = PARAMS.ct_len;

/// An ML-KEM-768 decapsulation (private) key.
pub struct KemSecret(DecapsulationKey);

impl std::fmt::Debug for KemSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSecret(<redacted>)")
    }
}

impl KemSecret {
    /// A fresh key pair; returns the secret and the 1184-byte encapsulation key.
    pub fn generate() -> Result<(Self, Vec<u8>), CryptoError> {
        let dk = DecapsulationKey::generate(&ML_KEM_768).map_err(|_| CryptoError::Internal)?;
        let ek = dk.encapsulation_key().map_err(|_| CryptoError::Internal)?;
        let bytes = ek
            .key_bytes()
            .map_err(|_| CryptoError::Internal)?
            .as_ref()
            .to_vec();
        Ok((KemSecret(dk), bytes))
    }

    /// Recovers the shared secret from a 1088-byte ciphertext.
    pub fn decapsulate(&self, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if ct.len() != CT_LEN {
            return Err(CryptoError::HandshakeMalformed(
                "ML-KEM ciphertext must be 1088 bytes",
            ));
        }
        let ss = self
            .0
            .decapsulate(Ciphertext::from(ct))
            .map_err(|_| CryptoError::HandshakeMalformed("ML-KEM decapsulation failed"))?;
        Ok(Zeroizing::new(ss.as_ref().to_vec()))
    }
}

/// Encapsulates to a peer's 1184-byte encapsulation key: `(ciphertext, shared secret)`.
pub fn encapsulate(ek: &[u8]) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), CryptoError> {
    if ek.len() != EK_LEN {
        return Err(CryptoError::HandshakeMalformed(
            "ML-KEM key must be 1184 bytes",
        ));
    }
    let ek = EncapsulationKey::new(&ML_KEM_768, ek)
        .map_err(|_| CryptoError::HandshakeMalformed("invalid ML-KEM encapsulation key"))?;
    let (ct, ss) = ek.encapsulate().map_err(|_| CryptoError::Internal)?;
    Ok((ct.as_ref().to_vec(), Zeroizing::new(ss.as_ref().to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_sizes() {
        let (sk, ek) = KemSecret::generate().unwrap();
        assert_eq!(ek.len(), EK_LEN);
        let (ct, ss) = encapsulate(&ek).unwrap();
        assert_eq!(ct.len(), CT_LEN);
        assert_eq!(ss.len(), 32);
        assert_eq!(*sk.decapsulate(&ct).unwrap(), *ss);
        assert!(encapsulate(&ek[1..]).is_err());
        assert!(sk.decapsulate(&ct[1..]).is_err());
        // Implicit rejection: a modified ciphertext gives a different secret.
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_ne!(*sk.decapsulate(&bad).unwrap(), *ss);
    }
}

//! ChaCha20-Poly1305 (IETF: 32-byte key, 12-byte nonce, 16-byte tag), backed by aws-lc-rs.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::CryptoError;

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Tag length in bytes.
pub const TAG_LEN: usize = 16;

/// An expanded ChaCha20-Poly1305 key, reusable for many messages.
pub struct AeadKey(LessSafeKey);

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

impl AeadKey {
    /// Expands `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        // A 32-byte key is always accepted by CHACHA20_POLY1305.
        match UnboundKey::new(&aead::CHACHA20_POLY1305, key) {
            Ok(k) => AeadKey(LessSafeKey::new(k)),
            Err(_) => unreachable_key(),
        }
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub fn seal_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| CryptoError::Internal)?;
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_append(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let tag = self.seal_in_place(nonce, aad, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts `ciphertext_and_tag` in place; returns the plaintext prefix.
    pub fn open_in_place<'a>(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext_and_tag: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                ciphertext_and_tag,
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cold]
fn unreachable_key() -> ! {
    // CHACHA20_POLY1305 accepts every 32-byte key; reaching this is a library bug.
    panic!("aws-lc-rs rejected a 32-byte ChaCha20-Poly1305 key")
}

/// One-shot seal: encrypts `buf` in place and appends the tag.
pub fn seal(
    key: &[u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    AeadKey::new(key).seal_append(nonce, aad, buf)
}

/// One-shot open: verifies and decrypts `buf` (ciphertext‖tag) in place, truncating the tag.
pub fn open(
    key: &[u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let n = AeadKey::new(key).open_in_place(nonce, aad, buf)?.len();
    buf.truncate(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8439 §2.8.2.
    #[test]
    fn rfc8439_vector() {
        let key: [u8; 32] =
            hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .unwrap()
                .try_into()
                .unwrap();
        let nonce: [u8; 12] = hex::decode("070000004041424344454647")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let mut buf = pt.to_vec();
        seal(&key, nonce, &aad, &mut buf).unwrap();
        assert_eq!(
            hex::encode(&buf[buf.len() - 16..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
        assert_eq!(hex::encode(&buf[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        open(&key, nonce, &aad, &mut buf).unwrap();
        assert_eq!(&buf[..], &pt[..]);
        let mut bad = buf.clone();
        seal(&key, nonce, &aad, &mut bad).unwrap();
        bad[0] ^= 1;
        assert!(matches!(
            open(&key, nonce, &aad, &mut bad),
            Err(CryptoError::Decrypt)
        ));
    }
}

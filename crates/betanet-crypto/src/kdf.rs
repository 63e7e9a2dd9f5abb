//! HKDF-SHA256, HMAC-SHA256 and Betanet's `Expand-Label` (SPEC §2).

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::CryptoError;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_sha256_parts(key, &[data])
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// `HKDF-Extract(salt, ikm)` = HMAC-SHA256(salt, ikm) (RFC 5869; an empty salt means 32 zero
/// bytes, which HMAC treats identically).
pub fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hmac_sha256(salt, ikm))
}

/// `HKDF-Extract` over the concatenation of `ikm_parts`, without copying them together.
pub fn hkdf_extract_parts(salt: &[u8], ikm_parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hmac_sha256_parts(salt, ikm_parts))
}

/// `HKDF-Expand(prk, info, out.len())` with `info` given as parts (RFC 5869).
///
/// Fails when more than 255 × 32 bytes are requested.
pub fn hkdf_expand(prk: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
    if out.len() > 255 * 32 {
        return Err(CryptoError::InvalidLength);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, prk);
    let mut t = Zeroizing::new([0u8; 32]);
    let mut t_len = 0usize;
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(t.get(..t_len).unwrap_or_default());
        for p in info {
            ctx.update(p);
        }
        // i < 255 by the length check above.
        ctx.update(&[(i + 1) as u8]);
        t.copy_from_slice(ctx.sign().as_ref());
        t_len = 32;
        let n = chunk.len();
        chunk.copy_from_slice(t.get(..n).unwrap_or_default());
    }
    Ok(())
}

/// `Expand-Label(secret, label, L) = HKDF-Expand(secret, "betanet " ‖ label, L)`.
pub fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) -> Result<(), CryptoError> {
    hkdf_expand(secret, &[b"betanet ", label.as_bytes()], out)
}

/// `Expand-Label` to a 32-byte secret.
pub fn expand_label32(secret: &[u8], label: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-Expand length.
    let _ = expand_label(secret, label, out.as_mut());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 5869 test case 1.
    #[test]
    fn rfc5869_case1() {
        let ikm = [0x0bu8; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let prk = hkdf_extract(&salt, &ikm);
        assert_eq!(
            hex::encode(prk.as_ref()),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        let mut okm = [0u8; 42];
        hkdf_expand(prk.as_ref(), &[&info], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    // RFC 5869 test case 3 (empty salt and info).
    #[test]
    fn rfc5869_case3() {
        let prk = hkdf_extract(&[], &[0x0b; 22]);
        let mut okm = [0u8; 42];
        hkdf_expand(prk.as_ref(), &[], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn expand_label_is_prefixed_hkdf_expand() {
        let secret = [7u8; 32];
        let mut a = [0u8; 12];
        expand_label(&secret, "nonce", &mut a).unwrap();
        let mut b = [0u8; 12];
        hkdf_expand(&secret, &[b"betanet nonce"], &mut b).unwrap();
        assert_eq!(a, b);
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert!(hkdf_expand(&secret, &[], &mut too_long).is_err());
    }
}

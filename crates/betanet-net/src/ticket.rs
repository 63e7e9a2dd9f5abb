//! Minimal access tickets (SPEC §4.2) for admission at the TLS front.
//!
//! TODO(lead): replace with the `betanet-ticket` crate (carrier policy, token buckets per
//! prefix, a replay store that survives restarts) once it lands; this module keeps only what
//! the carriage needs: make, verify, and an in-memory replay window.

use std::collections::HashMap;
use std::sync::Mutex;

use betanet_crypto::ct::ct_eq;
use betanet_crypto::dh::{X25519Public, X25519Secret, is_low_order};
use betanet_crypto::hash::sha256_concat;
use betanet_crypto::kdf::{hkdf_expand, hkdf_extract};
use betanet_wire::b64;
use rand_core::{CryptoRng, RngCore};

/// Cookie name of the ticket carrier (`__Host-bn1=<b64>`).
pub const COOKIE_NAME: &str = "__Host-bn1";

fn access_ticket(shared: &[u8; 32], key_id: &[u8; 8], hour: u64) -> [u8; 32] {
    let salt = sha256_concat(&[b"betanet-ticket-v1", key_id, &hour.to_be_bytes()]);
    let prk = hkdf_extract(&salt, shared);
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hkdf_expand(prk.as_ref(), &[], &mut out);
    out
}

/// What a client needs to make tickets for a site: `ticketPub` and `ticketKeyID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketPublic {
    /// The site's X25519 ticket key.
    pub public: [u8; 32],
    /// Its key id.
    pub key_id: [u8; 8],
}

impl TicketPublic {
    /// A fresh ticket payload, Base64URL: `0x01 ‖ cliPub ‖ keyID ‖ nonce32 ‖ ticket32 ‖ pad`.
    pub fn make<R: RngCore + CryptoRng>(&self, now_unix: u64, rng: &mut R) -> Option<String> {
        let cli = X25519Secret::generate(rng);
        let cli_pub = cli.public().ok()?;
        let shared = cli.diffie_hellman(&X25519Public(self.public)).ok()?;
        let ticket = access_ticket(&shared, &self.key_id, now_unix / 3600);
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let pad_len = 24 + (rng.next_u32() % 41) as usize;
        let mut pad = vec![0u8; pad_len];
        rng.fill_bytes(&mut pad);
        let mut p = Vec::with_capacity(1 + 32 + 8 + 32 + 32 + pad_len);
        p.push(0x01);
        p.extend_from_slice(&cli_pub.0);
        p.extend_from_slice(&self.key_id);
        p.extend_from_slice(&nonce);
        p.extend_from_slice(&ticket);
        p.extend_from_slice(&pad);
        Some(b64::encode(&p))
    }
}

/// The site's ticket key with an in-memory replay window.
pub struct TicketKeys {
    secret: X25519Secret,
    public: TicketPublic,
    seen: Mutex<HashMap<([u8; 32], u64), u64>>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("key_id", &hex::encode(self.public.key_id))
            .finish()
    }
}

/// Most remembered `(cliPub, hour)` pairs (older ones are pruned first).
const MAX_SEEN: usize = 1 << 16;

impl TicketKeys {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Option<Self> {
        let secret = X25519Secret::generate(rng);
        let mut key_id = [0u8; 8];
        rng.fill_bytes(&mut key_id);
        Self::from_secret(*secret.as_bytes(), key_id)
    }

    /// From stored bytes.
    #[must_use]
    pub fn from_secret(secret: [u8; 32], key_id: [u8; 8]) -> Option<Self> {
        let secret = X25519Secret::from_bytes(secret);
        let public = secret.public().ok()?;
        Some(TicketKeys {
            secret,
            public: TicketPublic {
                public: public.0,
                key_id,
            },
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// What clients need.
    #[must_use]
    pub fn public(&self) -> TicketPublic {
        self.public
    }

    /// Checks a Base64URL payload: fields in order (trailing bytes ignored), hours now−1..now+1,
    /// no low-order `cliPub`, no replay of `(cliPub, hour)` within 2 h.
    #[must_use]
    pub fn verify(&self, b64_payload: &str, now_unix: u64) -> bool {
        let Ok(p) = b64::decode(b64_payload) else {
            return false;
        };
        let (Some(&1), Some(cli), Some(kid), Some(ticket)) =
            (p.first(), p.get(1..33), p.get(33..41), p.get(73..105))
        else {
            return false;
        };
        if !ct_eq(kid, &self.public.key_id) {
            return false;
        }
        let Ok(cli) = <[u8; 32]>::try_from(cli) else {
            return false;
        };
        let cli_pub = X25519Public(cli);
        if is_low_order(&cli_pub) {
            return false;
        }
        let Ok(shared) = self.secret.diffie_hellman(&cli_pub) else {
            return false;
        };
        let now_hour = now_unix / 3600;
        let hour = [now_hour, now_hour.saturating_sub(1), now_hour + 1]
            .into_iter()
            .find(|h| ct_eq(&access_ticket(&shared, &self.public.key_id, *h), ticket));
        let Some(hour) = hour else { return false };
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, exp| *exp > now_unix);
        if seen.len() >= MAX_SEEN || seen.contains_key(&(cli, hour)) {
            return false;
        }
        seen.insert((cli, hour), now_unix + 7200);
        true
    }
}

/// Finds the ticket in a `cookie` header value.
#[must_use]
pub fn from_cookie(cookie: &str) -> Option<&str> {
    cookie.split(';').map(str::trim).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == COOKIE_NAME).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_verify_replay_and_hours() {
        let mut rng = rand_core::OsRng;
        let keys = TicketKeys::generate(&mut rng).unwrap();
        let now = 1_780_000_000;
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(keys.verify(&t, now));
        assert!(!keys.verify(&t, now), "replay");
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(keys.verify(&t, now + 3600), "next hour accepted");
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(!keys.verify(&t, now + 3 * 3600), "stale");
        let other = TicketKeys::generate(&mut rng).unwrap();
        let t = other.public().make(now, &mut rng).unwrap();
        assert!(!keys.verify(&t, now));
        assert!(!keys.verify("not base64!", now));
        assert!(!keys.verify("AQ", now));
        assert_eq!(from_cookie("a=b; __Host-bn1=xyz; c=d"), Some("xyz"));
    }
}

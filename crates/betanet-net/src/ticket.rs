//! Access tickets (SPEC §4.2) at the TLS front, on top of `betanet-ticket`.
//!
//! The client side ([`TicketPublic::make`]) builds the payload the TLS carriage puts in its
//! first POST; the server side ([`TicketKeys`]) verifies it with `betanet-ticket`'s
//! [`TicketVerifier`]: fields in order (trailing bytes ignored), hours now−1..now+1, no
//! low-order `cliPub`, token buckets per IPv4 /24 and IPv6 /56, and a replay set of
//! `(cliPub, hour)` kept for 2 h — in memory, or in a redb file that survives restarts
//! ([`TicketKeys::with_replay_db`], what `betanet serve` and `echo-server` use).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use betanet_crypto::dh::{X25519Public, X25519Secret};
use betanet_ticket::replay::{MemoryReplayStore, RedbReplayStore, ReplayStore};
use betanet_ticket::verifier::{TicketVerifier, VerifierConfig};
use betanet_ticket::{CarrierPolicy, SiteInfo, SiteTicketKey, make_ticket};
use betanet_wire::b64;
use rand_core::{CryptoRng, RngCore};

use crate::error::NetError;

/// Cookie name of the ticket carrier (`__Host-bn1=<b64>`).
pub const COOKIE_NAME: &str = "__Host-bn1";

/// Most `(cliPub, hour)` pairs an in-memory replay window keeps.
const MEMORY_REPLAY_CAPACITY: usize = 1 << 16;

/// What a client needs to make tickets for a site: `ticketPub` and `ticketKeyID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketPublic {
    /// The site's X25519 ticket key.
    pub public: [u8; 32],
    /// Its key id.
    pub key_id: [u8; 8],
}

impl TicketPublic {
    /// A fresh ticket payload, Base64URL: `0x01 ‖ cliPub ‖ keyID ‖ nonce32 ‖ ticket32 ‖ pad`
    /// with 24..=64 random pad bytes (built by `betanet_ticket::make_ticket`).
    pub fn make<R: RngCore + CryptoRng>(&self, now_unix: u64, rng: &mut R) -> Option<String> {
        let site = SiteInfo {
            keys: betanet_ticket::TicketKeys {
                ticket_pub: X25519Public(self.public),
                ticket_key_id: self.key_id,
            },
            policy: CarrierPolicy::default(),
        };
        let t = make_ticket(&site, now_unix, rng).ok()?;
        Some(b64::encode(&t.payload))
    }
}

type Verifier = TicketVerifier<Box<dyn ReplayStore + Send>>;

/// The site's ticket key and its verifier (replay set and rate buckets).
pub struct TicketKeys {
    public: TicketPublic,
    verifier: Mutex<Verifier>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("key_id", &hex::encode(self.public.key_id))
            .finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// A fresh key with an in-memory replay window.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Option<Self> {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut key_id = [0u8; 8];
        rng.fill_bytes(&mut key_id);
        Self::from_secret(secret, key_id)
    }

    /// From stored bytes, with an in-memory replay window (lost on restart: tests and
    /// throwaway listeners; nodes use [`TicketKeys::with_replay_db`]).
    #[must_use]
    pub fn from_secret(secret: [u8; 32], key_id: [u8; 8]) -> Option<Self> {
        let store: Box<dyn ReplayStore + Send> =
            Box::new(MemoryReplayStore::new(MEMORY_REPLAY_CAPACITY));
        Self::build(secret, key_id, store).ok()
    }

    /// From stored bytes, with the replay set in the redb file at `path` (created if absent),
    /// so a replayed ticket is refused also after a restart. Every admission is committed
    /// durably before the connection is admitted.
    pub fn with_replay_db(
        secret: [u8; 32],
        key_id: [u8; 8],
        path: &Path,
    ) -> Result<Self, NetError> {
        let store = RedbReplayStore::open(path).map_err(|e| {
            NetError::Config(format!(
                "cannot open the ticket replay database {}: {e}",
                path.display()
            ))
        })?;
        Self::build(secret, key_id, Box::new(store))
    }

    fn build(
        secret: [u8; 32],
        key_id: [u8; 8],
        store: Box<dyn ReplayStore + Send>,
    ) -> Result<Self, NetError> {
        let key = SiteTicketKey::from_secret(X25519Secret::from_bytes(secret), key_id)
            .map_err(|e| NetError::Config(format!("invalid ticket key: {e}")))?;
        let public = TicketPublic {
            public: key.keys().ticket_pub.0,
            key_id,
        };
        let verifier = TicketVerifier::new(vec![key], store, VerifierConfig::default())
            .map_err(|e| NetError::Config(format!("ticket verifier: {e}")))?;
        Ok(TicketKeys {
            public,
            verifier: Mutex::new(verifier),
        })
    }

    /// What clients need.
    #[must_use]
    pub fn public(&self) -> TicketPublic {
        self.public
    }

    /// Checks a Base64URL payload from `peer` at `now_unix` (SPEC §4.2): rate bucket of the
    /// peer's prefix, fields in order (trailing bytes ignored), hours now−1..now+1, no
    /// low-order `cliPub`, no replay of `(cliPub, hour)` within 2 h.
    #[must_use]
    pub fn verify(&self, b64_payload: &str, now_unix: u64, peer: IpAddr) -> bool {
        let Ok(p) = b64::decode(b64_payload) else {
            return false;
        };
        let mut v = self
            .verifier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.verify(&p, now_unix, peer).is_ok()
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

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn make_verify_replay_and_hours() {
        let mut rng = rand_core::OsRng;
        let keys = TicketKeys::generate(&mut rng).unwrap();
        let now = 1_780_000_000;
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(keys.verify(&t, now, PEER));
        assert!(!keys.verify(&t, now, PEER), "replay");
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(keys.verify(&t, now + 3600, PEER), "next hour accepted");
        let t = keys.public().make(now, &mut rng).unwrap();
        assert!(!keys.verify(&t, now + 3 * 3600, PEER), "stale");
        let other = TicketKeys::generate(&mut rng).unwrap();
        let t = other.public().make(now, &mut rng).unwrap();
        assert!(!keys.verify(&t, now, PEER));
        assert!(!keys.verify("not base64!", now, PEER));
        assert!(!keys.verify("AQ", now, PEER));
        assert_eq!(from_cookie("a=b; __Host-bn1=xyz; c=d"), Some("xyz"));
    }

    #[test]
    fn replay_is_refused_after_a_restart_with_the_redb_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.redb");
        let (secret, key_id) = ([9u8; 32], [3u8; 8]);
        let now = 1_780_000_000;
        let keys = TicketKeys::with_replay_db(secret, key_id, &path).unwrap();
        let t = keys.public().make(now, &mut rand_core::OsRng).unwrap();
        assert!(keys.verify(&t, now, PEER));
        drop(keys);
        let keys = TicketKeys::with_replay_db(secret, key_id, &path).unwrap();
        assert!(!keys.verify(&t, now + 5, PEER), "replay after restart");
        let fresh = keys.public().make(now, &mut rand_core::OsRng).unwrap();
        assert!(keys.verify(&fresh, now + 5, PEER));
    }
}

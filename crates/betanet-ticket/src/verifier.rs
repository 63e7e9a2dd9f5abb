//! Access tickets, server side (SPEC §4.2 step 4).
//!
//! [`TicketVerifier::verify`] runs, in this order:
//! 1. the token bucket of the peer's IPv4 /24 or IPv6 /56 (and AS when known), before any
//!    cryptography so floods cost little;
//! 2. the payload codec: version byte `0x01`, fields in order, trailing bytes ignored;
//! 3. `ticketKeyID` against every configured key (constant time; several keys allow rotation);
//! 4. `X25519(ticketPriv, cliPub)`: an all-zero result means a low-order `cliPub`, refused;
//! 5. `accessTicket` recomputed for hours now−1, now, now+1, each compared in constant time;
//! 6. the replay store: `(cliPub, hour)` checked and recorded.
//!
//! Each failure is a typed [`Refusal`]; the gateway answers every refusal with the decoy.

use std::net::IpAddr;

use betanet_crypto::CryptoError;
use betanet_crypto::ct::ct_eq;
use betanet_crypto::dh::{X25519Public, x25519};

use crate::carrier::{Candidate, TicketRequest, extract_from_request};
use crate::error::{Refusal, TicketError};
use crate::policy::Carrier;
use crate::ratelimit::{AdmissionLimits, PrefixLimiter};
use crate::replay::ReplayStore;
use crate::ticket::{
    KEY_ID_LEN, SiteTicketKey, TicketPayload, access_ticket_from_shared, ticket_hour,
};

/// Verifier configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Token buckets.
    pub limits: AdmissionLimits,
    /// How often (seconds of the passed-in clock) the replay store is pruned.
    pub prune_interval_secs: u64,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            limits: AdmissionLimits::default(),
            prune_interval_secs: 60,
        }
    }
}

/// An admitted ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The client's ephemeral key.
    pub cli_pub: X25519Public,
    /// The hour the ticket was made for.
    pub hour: u64,
    /// Which of our keys it was made for.
    pub key_id: [u8; KEY_ID_LEN],
    /// Where it was found (when it came through [`TicketVerifier::admit`]).
    pub carrier: Option<Carrier>,
}

/// The server side of access tickets.
#[derive(Debug)]
pub struct TicketVerifier<S: ReplayStore> {
    keys: Vec<SiteTicketKey>,
    store: S,
    limiter: PrefixLimiter,
    prune_interval_secs: u64,
    last_prune: Option<u64>,
}

impl<S: ReplayStore> TicketVerifier<S> {
    /// A verifier accepting tickets for any of `keys` (current first; older keys during a
    /// rotation).
    pub fn new(
        keys: Vec<SiteTicketKey>,
        store: S,
        config: VerifierConfig,
    ) -> Result<Self, TicketError> {
        if keys.is_empty() {
            return Err(TicketError::Config("at least one ticket key is required"));
        }
        Ok(TicketVerifier {
            keys,
            store,
            limiter: PrefixLimiter::new(&config.limits)?,
            prune_interval_secs: config.prune_interval_secs.max(1),
            last_prune: None,
        })
    }

    /// Finds the single ticket in a request (see [`crate::carrier`]).
    pub fn extract_from_request(req: &TicketRequest<'_>) -> Result<Candidate, Refusal> {
        extract_from_request(req)
    }

    /// Extracts and verifies the ticket of a request.
    pub fn admit(
        &mut self,
        req: &TicketRequest<'_>,
        now_unix_secs: u64,
        peer: IpAddr,
        asn: Option<u32>,
    ) -> Result<Admitted, Refusal> {
        // Rate limiting first, so that even requests without a ticket are charged.
        if !self.limiter.try_take(peer, asn, now_unix_secs) {
            return Err(Refusal::RateLimited);
        }
        let c = extract_from_request(req)?;
        let mut a = self.verify_unlimited(&c.payload, now_unix_secs)?;
        a.carrier = Some(c.carrier);
        Ok(a)
    }

    /// Verifies a decoded payload from `peer` at `now_unix_secs`.
    pub fn verify(
        &mut self,
        payload: &[u8],
        now_unix_secs: u64,
        peer: IpAddr,
    ) -> Result<Admitted, Refusal> {
        self.verify_with_as(payload, now_unix_secs, peer, None)
    }

    /// [`Self::verify`] with the peer's autonomous system when known.
    pub fn verify_with_as(
        &mut self,
        payload: &[u8],
        now_unix_secs: u64,
        peer: IpAddr,
        asn: Option<u32>,
    ) -> Result<Admitted, Refusal> {
        if !self.limiter.try_take(peer, asn, now_unix_secs) {
            return Err(Refusal::RateLimited);
        }
        self.verify_unlimited(payload, now_unix_secs)
    }

    fn verify_unlimited(
        &mut self,
        payload: &[u8],
        now_unix_secs: u64,
    ) -> Result<Admitted, Refusal> {
        self.maybe_prune(now_unix_secs)?;
        let p = TicketPayload::parse(payload)?;
        // Constant-time over all keys: no early exit.
        let mut key: Option<&SiteTicketKey> = None;
        for k in &self.keys {
            if ct_eq(&k.keys().ticket_key_id, &p.key_id) && key.is_none() {
                key = Some(k);
            }
        }
        let key = key.ok_or(Refusal::UnknownKeyId)?;
        let cli_pub = X25519Public(p.cli_pub);
        let shared = match x25519(key.secret(), &cli_pub) {
            Ok(s) => s,
            Err(CryptoError::LowOrderPoint) => return Err(Refusal::LowOrderKey),
            Err(_) => return Err(Refusal::Malformed),
        };
        let now_hour = ticket_hour(now_unix_secs);
        let mut matched: Option<u64> = None;
        let hours = [
            now_hour.checked_sub(1),
            Some(now_hour),
            now_hour.checked_add(1),
        ];
        for hour in hours.into_iter().flatten() {
            let expected = access_ticket_from_shared(&shared, &p.key_id, hour);
            if ct_eq(expected.as_ref(), &p.access_ticket) && matched.is_none() {
                matched = Some(hour);
            }
        }
        let hour = matched.ok_or(Refusal::BadAccessTicket)?;
        match self.store.check_and_insert(&p.cli_pub, hour, now_unix_secs) {
            Ok(true) => Ok(Admitted {
                cli_pub,
                hour,
                key_id: p.key_id,
                carrier: None,
            }),
            Ok(false) => Err(Refusal::Replay),
            Err(_) => Err(Refusal::StoreUnavailable),
        }
    }

    fn maybe_prune(&mut self, now: u64) -> Result<(), Refusal> {
        let due = match self.last_prune {
            None => true,
            Some(t) => now.saturating_sub(t) >= self.prune_interval_secs,
        };
        if due {
            self.store
                .prune(now)
                .map_err(|_| Refusal::StoreUnavailable)?;
            self.last_prune = Some(now);
        }
        Ok(())
    }

    /// Prunes the replay store now (e.g. from a timer); returns how many entries were removed.
    pub fn prune(&mut self, now_unix_secs: u64) -> Result<usize, TicketError> {
        let n = self.store.prune(now_unix_secs)?;
        self.last_prune = Some(now_unix_secs);
        Ok(n)
    }

    /// Makes the replay store's recent admissions durable (call from a short timer when the
    /// store batches, e.g. `RedbReplayStore` with `ReplayDurability::AtPrune`).
    pub fn flush(&mut self) -> Result<(), TicketError> {
        self.store.flush()
    }

    /// The replay store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Consumes the verifier, returning the replay store.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Tokens left for `peer`'s prefix.
    pub fn tokens_left(&self, peer: IpAddr, now_unix_secs: u64) -> u32 {
        self.limiter.available(peer, now_unix_secs)
    }
}

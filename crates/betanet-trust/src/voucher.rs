//! L6 vouchers (SPEC §9): the 128-byte voucher, legacy 64-byte vouchers, redemption with a
//! persistent double-spend set and rate limits, and settlement behind a trait.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use betanet_crypto::hash::sha256_concat;
use betanet_crypto::kdf::hmac_sha256_parts;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::TrustError;
use crate::mint::{Keyset, KeysetInfo, MemberShare, MintAnnouncement, threshold_sign};
use crate::store::{Store, Table};

/// Length of a voucher.
pub const VOUCHER_LEN: usize = 128;
/// Length of a legacy (1.0) voucher.
pub const LEGACY_VOUCHER_LEN: usize = 64;
/// Smallest amount settled at once (SPEC §9: relays redeem >= 10 000 sat).
pub const MIN_SETTLEMENT_SAT: u64 = 10_000;
/// Domain of the legacy voucher tag.
pub const LEGACY_TAG_DOMAIN: &[u8] = b"bn-legacy-voucher";

/// A voucher: `keysetID32 ‖ secret32 ‖ aggregatedSig64`, the signature being the keyset's
/// group Ed25519 signature over `secret32`. `Debug` does not print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Voucher {
    /// Keyset id.
    pub keyset: [u8; 32],
    /// The bearer secret.
    pub secret: [u8; 32],
    /// Group signature over `secret`.
    pub sig: [u8; 64],
}

impl fmt::Debug for Voucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Voucher(keyset={}, secret=<redacted>)",
            hex::encode(self.keyset)
        )
    }
}

impl Voucher {
    /// Parses exactly 128 bytes (no verification).
    pub fn parse(bytes: &[u8]) -> Result<Self, TrustError> {
        let malformed = TrustError::VoucherMalformed { len: bytes.len() };
        if bytes.len() != VOUCHER_LEN {
            return Err(malformed);
        }
        let (k, rest) = bytes.split_at(32);
        let (s, g) = rest.split_at(32);
        Ok(Voucher {
            keyset: k
                .try_into()
                .map_err(|_| TrustError::VoucherMalformed { len: 128 })?,
            secret: s
                .try_into()
                .map_err(|_| TrustError::VoucherMalformed { len: 128 })?,
            sig: g.try_into().map_err(|_| malformed)?,
        })
    }

    /// The 128 bytes.
    pub fn to_bytes(&self) -> [u8; VOUCHER_LEN] {
        let mut out = [0u8; VOUCHER_LEN];
        out[..32].copy_from_slice(&self.keyset);
        out[32..64].copy_from_slice(&self.secret);
        out[64..].copy_from_slice(&self.sig);
        out
    }

    /// Issues a voucher for `secret` with `t` members of the federation.
    pub fn issue<R: RngCore + CryptoRng>(
        keyset: &Keyset,
        signers: &[&MemberShare],
        secret: [u8; 32],
        rng: &mut R,
    ) -> Result<Self, TrustError> {
        let sig = threshold_sign(keyset, signers, &secret, rng)?;
        Ok(Voucher {
            keyset: keyset.id(),
            secret,
            sig,
        })
    }

    /// Verifies the signature under `info` (whose id must be the voucher's keyset).
    pub fn verify(&self, info: &KeysetInfo) -> Result<(), TrustError> {
        if info.id() != self.keyset {
            return Err(TrustError::VoucherUnknownKeyset {
                keyset_hex: hex::encode(self.keyset),
            });
        }
        info.verify(&self.secret, &self.sig)
    }

    /// The key under which the voucher is recorded as spent:
    /// `SHA-256("bn-spent" ‖ keyset ‖ secret)`.
    pub fn spend_key(&self) -> [u8; 32] {
        sha256_concat(&[b"bn-spent", &self.keyset, &self.secret])
    }
}

/// A legacy 1.0 voucher, `secret32 ‖ tag32` (see the crate README, "Protocol decisions": 1.0's
/// 32-byte "aggregatedSig" cannot be an Ed25519 signature, so this profile defines it as
/// `HMAC-SHA256(legacy mint key, "bn-legacy-voucher" ‖ secret32)`, checkable only by holders of
/// a configured legacy key and only inside the deprecation window).
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyVoucher {
    /// The bearer secret.
    pub secret: [u8; 32],
    /// The mint's tag.
    pub tag: [u8; 32],
}

impl fmt::Debug for LegacyVoucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LegacyVoucher(<redacted>)")
    }
}

fn legacy_tag(key: &[u8; 32], secret: &[u8; 32]) -> Result<[u8; 32], TrustError> {
    Ok(hmac_sha256_parts(key, &[LEGACY_TAG_DOMAIN, secret]))
}

impl LegacyVoucher {
    /// Parses exactly 64 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, TrustError> {
        let malformed = || TrustError::VoucherMalformed { len: bytes.len() };
        let secret = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(malformed)?;
        let tag = bytes
            .get(32..)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(malformed)?;
        Ok(LegacyVoucher { secret, tag })
    }

    /// Issues a legacy voucher (what a 1.0 mint holding `key` produced).
    pub fn issue(key: &[u8; 32], secret: [u8; 32]) -> Result<Self, TrustError> {
        Ok(LegacyVoucher {
            secret,
            tag: legacy_tag(key, &secret)?,
        })
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; LEGACY_VOUCHER_LEN] {
        let mut out = [0u8; LEGACY_VOUCHER_LEN];
        out[..32].copy_from_slice(&self.secret);
        out[32..].copy_from_slice(&self.tag);
        out
    }

    /// Spent-set key: `SHA-256("bn-spent-legacy" ‖ secret)`.
    pub fn spend_key(&self) -> [u8; 32] {
        sha256_concat(&[b"bn-spent-legacy", &self.secret])
    }
}

/// Either kind of voucher, told apart by length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyVoucher {
    /// A 128-byte voucher.
    Current(Voucher),
    /// A 64-byte legacy voucher.
    Legacy(LegacyVoucher),
}

impl AnyVoucher {
    /// Parses 128 or 64 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, TrustError> {
        match bytes.len() {
            VOUCHER_LEN => Voucher::parse(bytes).map(AnyVoucher::Current),
            LEGACY_VOUCHER_LEN => LegacyVoucher::parse(bytes).map(AnyVoucher::Legacy),
            len => Err(TrustError::VoucherMalformed { len }),
        }
    }
}

/// A token bucket configuration: `capacity` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Burst size.
    pub capacity: u32,
    /// Tokens added per second.
    pub per_second: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    last_ms: u64,
}

/// Bounded set of token buckets.
#[derive(Debug)]
struct Buckets<K> {
    limit: RateLimit,
    map: HashMap<K, Bucket>,
    max: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(limit: RateLimit, max: usize) -> Self {
        Buckets {
            limit,
            map: HashMap::new(),
            max,
        }
    }

    fn take(&mut self, key: &K, now_ms: u64) -> bool {
        let cap = u64::from(self.limit.capacity) * 1000;
        if !self.map.contains_key(key) && self.map.len() >= self.max {
            // Forget buckets that have refilled completely: they carry no information.
            let per_ms = u64::from(self.limit.per_second);
            self.map.retain(|_, b| {
                b.milli_tokens
                    .saturating_add(now_ms.saturating_sub(b.last_ms).saturating_mul(per_ms))
                    < cap
            });
            if self.map.len() >= self.max {
                return false;
            }
        }
        let b = self.map.entry(key.clone()).or_insert(Bucket {
            milli_tokens: cap,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.last_ms);
        b.milli_tokens = b
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.limit.per_second)))
            .min(cap);
        b.last_ms = b.last_ms.max(now_ms);
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// A legacy mint key accepted during the deprecation window.
#[derive(Clone)]
pub struct LegacyKey {
    /// The 32-byte HMAC key.
    pub key: Zeroizing<[u8; 32]>,
    /// Value of one voucher in satoshi.
    pub value_sat: u64,
}

impl fmt::Debug for LegacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LegacyKey(<redacted>, {} sat)", self.value_sat)
    }
}

/// The deprecation window for legacy vouchers: accepted when `start_ms <= now < end_ms`.
#[derive(Clone, Debug)]
pub struct LegacyWindow {
    /// First accepted instant.
    pub start_ms: u64,
    /// First instant no longer accepted.
    pub end_ms: u64,
    /// The configured legacy keys.
    pub keys: Vec<LegacyKey>,
}

/// Redemption policy.
#[derive(Clone, Debug)]
pub struct VoucherPolicy {
    /// Bucket per keyset.
    pub per_keyset: RateLimit,
    /// Bucket per peer.
    pub per_peer: RateLimit,
    /// Legacy acceptance, if any.
    pub legacy: Option<LegacyWindow>,
    /// How many unknown keyset ids to remember pending validation.
    pub max_pending: usize,
    /// Most buckets kept per kind.
    pub max_buckets: usize,
}

impl Default for VoucherPolicy {
    fn default() -> Self {
        VoucherPolicy {
            per_keyset: RateLimit {
                capacity: 1000,
                per_second: 100,
            },
            per_peer: RateLimit {
                capacity: 20,
                per_second: 5,
            },
            legacy: None,
            max_pending: 1024,
            max_buckets: 65_536,
        }
    }
}

/// A successfully redeemed voucher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeemed {
    /// Keyset id (all zero for a legacy voucher).
    pub keyset: [u8; 32],
    /// Value credited.
    pub value_sat: u64,
    /// Whether it was a legacy voucher.
    pub legacy: bool,
}

/// Verifies and redeems vouchers: known keysets, signature, rate limits, and a double-spend
/// set kept in a [`Store`] (so a spent voucher stays spent across restarts).
#[derive(Debug)]
pub struct Redeemer<S: Store> {
    store: S,
    policy: VoucherPolicy,
    keysets: HashMap<[u8; 32], (KeysetInfo, u64)>,
    pending: VecDeque<[u8; 32]>,
    pending_set: HashSet<[u8; 32]>,
    peer_buckets: Buckets<Vec<u8>>,
    keyset_buckets: Buckets<[u8; 32]>,
}

impl<S: Store> Redeemer<S> {
    /// A redeemer over `store`.
    pub fn new(store: S, policy: VoucherPolicy) -> Self {
        Redeemer {
            store,
            peer_buckets: Buckets::new(policy.per_peer, policy.max_buckets),
            keyset_buckets: Buckets::new(policy.per_keyset, policy.max_buckets),
            policy,
            keysets: HashMap::new(),
            pending: VecDeque::new(),
            pending_set: HashSet::new(),
        }
    }

    /// Accepts a keyset (validated) whose vouchers are worth `value_sat` each.
    pub fn add_keyset(&mut self, info: KeysetInfo, value_sat: u64) -> Result<[u8; 32], TrustError> {
        info.validate()?;
        let id = info.id();
        self.keysets.insert(id, (info, value_sat));
        if self.pending_set.remove(&id) {
            self.pending.retain(|p| *p != id);
        }
        Ok(id)
    }

    /// Accepts the keyset of a verified announcement (proof of work >= `min_pow_bits`).
    pub fn add_announcement(
        &mut self,
        ann: &MintAnnouncement,
        min_pow_bits: u32,
        value_sat: u64,
        now_ms: u64,
    ) -> Result<[u8; 32], TrustError> {
        ann.verify(min_pow_bits, now_ms)?;
        self.add_keyset(ann.keyset.clone(), value_sat)
    }

    /// Unknown keyset ids seen in vouchers, oldest first, awaiting an announcement.
    pub fn pending_keysets(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.pending.iter()
    }

    fn note_pending(&mut self, id: [u8; 32]) {
        if self.policy.max_pending == 0 || self.pending_set.contains(&id) {
            return;
        }
        if self.pending.len() >= self.policy.max_pending
            && let Some(old) = self.pending.pop_front()
        {
            self.pending_set.remove(&old);
        }
        self.pending.push_back(id);
        self.pending_set.insert(id);
    }

    /// Checks a voucher without spending it. Returns the value and the spent-set key.
    pub fn check(&mut self, bytes: &[u8], now_ms: u64) -> Result<(Redeemed, [u8; 32]), TrustError> {
        match AnyVoucher::parse(bytes)? {
            AnyVoucher::Current(v) => {
                let Some((info, value)) = self.keysets.get(&v.keyset) else {
                    self.note_pending(v.keyset);
                    return Err(TrustError::VoucherUnknownKeyset {
                        keyset_hex: hex::encode(v.keyset),
                    });
                };
                v.verify(info)?;
                Ok((
                    Redeemed {
                        keyset: v.keyset,
                        value_sat: *value,
                        legacy: false,
                    },
                    v.spend_key(),
                ))
            }
            AnyVoucher::Legacy(v) => {
                let w = self
                    .policy
                    .legacy
                    .as_ref()
                    .ok_or(TrustError::LegacyVoucherRejected {
                        reason: "legacy vouchers are not accepted",
                    })?;
                if now_ms < w.start_ms || now_ms >= w.end_ms {
                    return Err(TrustError::LegacyVoucherRejected {
                        reason: "outside the deprecation window",
                    });
                }
                for k in &w.keys {
                    let tag = legacy_tag(&k.key, &v.secret)?;
                    if betanet_crypto::ct::ct_eq(&tag, &v.tag) {
                        return Ok((
                            Redeemed {
                                keyset: [0; 32],
                                value_sat: k.value_sat,
                                legacy: true,
                            },
                            v.spend_key(),
                        ));
                    }
                }
                Err(TrustError::LegacyVoucherRejected {
                    reason: "no legacy key accepts the tag",
                })
            }
        }
    }

    /// Redeems a voucher presented by `peer`: rate limits, verification, then an atomic insert
    /// into the spent set. A voucher already spent (now or before a restart) is refused.
    pub fn redeem(
        &mut self,
        bytes: &[u8],
        peer: &[u8],
        now_ms: u64,
    ) -> Result<Redeemed, TrustError> {
        if !self.peer_buckets.take(&peer.to_vec(), now_ms) {
            return Err(TrustError::RateLimited);
        }
        if let Some(ks) = bytes.get(..32).filter(|_| bytes.len() == VOUCHER_LEN) {
            let mut id = [0u8; 32];
            id.copy_from_slice(ks);
            if self.keysets.contains_key(&id) && !self.keyset_buckets.take(&id, now_ms) {
                return Err(TrustError::RateLimited);
            }
        }
        let (r, key) = self.check(bytes, now_ms)?;
        if !self
            .store
            .insert_new(Table::Spent, &key, &now_ms.to_be_bytes())?
        {
            return Err(TrustError::VoucherDoubleSpend);
        }
        Ok(r)
    }

    /// [`Redeemer::redeem`], then credits the value to `settlement` (owed by the keyset's mint).
    pub fn redeem_into(
        &mut self,
        bytes: &[u8],
        peer: &[u8],
        now_ms: u64,
        settlement: &mut impl Settlement,
    ) -> Result<Redeemed, TrustError> {
        let r = self.redeem(bytes, peer, now_ms)?;
        settlement.credit(r.keyset, r.value_sat)?;
        Ok(r)
    }

    /// Whether a voucher's spend key is in the spent set.
    pub fn is_spent(&self, bytes: &[u8]) -> Result<bool, TrustError> {
        let key = match AnyVoucher::parse(bytes)? {
            AnyVoucher::Current(v) => v.spend_key(),
            AnyVoucher::Legacy(v) => v.spend_key(),
        };
        Ok(self.store.get(Table::Spent, &key)?.is_some())
    }
}

/// A completed settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementReceipt {
    /// Sequential id within the settlement backend.
    pub id: u64,
    /// Which mint paid.
    pub keyset: [u8; 32],
    /// Amount settled.
    pub amount_sat: u64,
    /// When.
    pub at_ms: u64,
}

/// Turning redeemed voucher value into money (Lightning or a peer swap).
pub trait Settlement {
    /// Records that `amount_sat` of vouchers of `keyset` were redeemed and are owed to us.
    fn credit(&mut self, keyset: [u8; 32], amount_sat: u64) -> Result<(), TrustError>;
    /// What `keyset`'s mint currently owes.
    fn owed(&self, keyset: &[u8; 32]) -> u64;
    /// Settles `amount_sat` (>= [`MIN_SETTLEMENT_SAT`]) of what `keyset` owes.
    fn settle(
        &mut self,
        keyset: [u8; 32],
        amount_sat: u64,
        now_ms: u64,
    ) -> Result<SettlementReceipt, TrustError>;
}

/// **Local** settlement: an accounting ledger in memory that records what mints owe and what
/// was settled. It does not contact a Lightning node and moves no money; it is the
/// implementation for local networks and tests, and the reference for what a Lightning backend
/// must do (same checks, same receipts).
#[derive(Debug, Default)]
pub struct LocalLedger {
    owed: BTreeMap<[u8; 32], u64>,
    receipts: Vec<SettlementReceipt>,
}

impl LocalLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// All settlements so far.
    pub fn receipts(&self) -> &[SettlementReceipt] {
        &self.receipts
    }
}

impl Settlement for LocalLedger {
    fn credit(&mut self, keyset: [u8; 32], amount_sat: u64) -> Result<(), TrustError> {
        let e = self.owed.entry(keyset).or_insert(0);
        *e = e.checked_add(amount_sat).ok_or(TrustError::Settlement {
            reason: "balance overflow",
        })?;
        Ok(())
    }

    fn owed(&self, keyset: &[u8; 32]) -> u64 {
        self.owed.get(keyset).copied().unwrap_or(0)
    }

    fn settle(
        &mut self,
        keyset: [u8; 32],
        amount_sat: u64,
        now_ms: u64,
    ) -> Result<SettlementReceipt, TrustError> {
        if amount_sat < MIN_SETTLEMENT_SAT {
            return Err(TrustError::Settlement {
                reason: "below the 10 000 sat minimum",
            });
        }
        let owed = self.owed.get_mut(&keyset).ok_or(TrustError::Settlement {
            reason: "nothing owed by this keyset",
        })?;
        if *owed < amount_sat {
            return Err(TrustError::Settlement {
                reason: "amount exceeds what the keyset owes",
            });
        }
        *owed -= amount_sat;
        let r = SettlementReceipt {
            id: self.receipts.len() as u64 + 1,
            keyset,
            amount_sat,
            at_ms: now_ms,
        };
        self.receipts.push(r.clone());
        Ok(r)
    }
}

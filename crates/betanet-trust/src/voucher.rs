//! L6 vouchers (SPEC §9) on the mint side: issuing with a FROST federation, redemption with
//! keyset values and a [`Store`]-backed double-spend set, and settlement behind a trait.
//!
//! The voucher codec and the redemption rules (known keysets, pending cache, per-peer and
//! per-keyset token buckets, legacy window, spent-set keys) live in one place,
//! [`betanet_ticket::voucher`], shared with the gateway; this module re-exports the codec and
//! wraps [`VoucherVerifier`] with what only the trust layer knows: FROST keysets, the value of
//! each keyset's vouchers and settlement.

use std::collections::{BTreeMap, HashMap};

use betanet_ticket::VoucherRefusal;
use betanet_ticket::voucher::{SpentSet, VoucherConfig, VoucherVerifier};
use rand_core::{CryptoRng, RngCore};

pub use betanet_ticket::RateLimit;
pub use betanet_ticket::voucher::{
    AnyVoucher, LEGACY_TAG_DOMAIN, LEGACY_VOUCHER_LEN, LegacyVoucher, LegacyWindow, VOUCHER_LEN,
    Voucher,
};

use crate::error::TrustError;
use crate::mint::{Keyset, KeysetInfo, MemberShare, MintAnnouncement, threshold_sign};
use crate::store::{Store, Table};

/// Smallest amount settled at once (SPEC §9: relays redeem >= 10 000 sat).
pub const MIN_SETTLEMENT_SAT: u64 = 10_000;

/// Issuing and checking [`Voucher`]s with a FROST federation.
pub trait MintVoucher: Sized {
    /// Issues a voucher for `secret`, threshold-signed by `signers` of `keyset`.
    fn issue<R: RngCore + CryptoRng>(
        keyset: &Keyset,
        signers: &[&MemberShare],
        secret: [u8; 32],
        rng: &mut R,
    ) -> Result<Self, TrustError>;

    /// Verifies the group signature under `info`, whose id must be the voucher's keyset.
    fn verify_keyset(&self, info: &KeysetInfo) -> Result<(), TrustError>;
}

impl MintVoucher for Voucher {
    fn issue<R: RngCore + CryptoRng>(
        keyset: &Keyset,
        signers: &[&MemberShare],
        secret: [u8; 32],
        rng: &mut R,
    ) -> Result<Self, TrustError> {
        let sig = threshold_sign(keyset, signers, &secret, rng)?;
        Ok(Voucher {
            keyset_id: keyset.id(),
            secret: zeroize::Zeroizing::new(secret),
            sig,
        })
    }

    fn verify_keyset(&self, info: &KeysetInfo) -> Result<(), TrustError> {
        if info.id() != self.keyset_id {
            return Err(TrustError::VoucherUnknownKeyset {
                keyset_hex: hex::encode(self.keyset_id),
            });
        }
        info.verify(self.secret.as_ref(), &self.sig)
    }
}

/// Legacy acceptance: the window and keys (Unix seconds, see [`LegacyWindow`]) and what one
/// legacy voucher is worth.
#[derive(Clone, Debug)]
pub struct LegacyPolicy {
    /// Keys and deprecation window.
    pub window: LegacyWindow,
    /// Value of one legacy voucher in satoshi.
    pub value_sat: u64,
}

/// Redemption policy.
#[derive(Clone, Debug)]
pub struct VoucherPolicy {
    /// Bucket per keyset.
    pub per_keyset: RateLimit,
    /// Bucket per peer.
    pub per_peer: RateLimit,
    /// Legacy acceptance, if any.
    pub legacy: Option<LegacyPolicy>,
    /// How many unknown keyset ids to remember pending validation.
    pub max_pending: usize,
    /// Most buckets kept per kind.
    pub max_buckets: usize,
}

impl Default for VoucherPolicy {
    fn default() -> Self {
        let c = VoucherConfig::default();
        VoucherPolicy {
            per_keyset: c.per_keyset,
            per_peer: c.per_peer,
            legacy: None,
            max_pending: c.max_pending,
            max_buckets: c.max_buckets,
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

/// The trust layer's [`Store`] as the shared verifier's spent set (table [`Table::Spent`],
/// value: redemption time, big-endian Unix seconds).
#[derive(Debug)]
struct StoreSpentSet<S>(S);

fn store_failed(e: TrustError) -> betanet_ticket::TicketError {
    match e {
        TrustError::Store { source } => betanet_ticket::TicketError::Store { source },
        _ => betanet_ticket::TicketError::Config("spent-set store failed"),
    }
}

impl<S: Store> SpentSet for StoreSpentSet<S> {
    fn insert_if_absent(
        &mut self,
        spend_key: &[u8; 32],
        now_unix_secs: u64,
    ) -> Result<bool, betanet_ticket::TicketError> {
        self.0
            .insert_new(Table::Spent, spend_key, &now_unix_secs.to_be_bytes())
            .map_err(store_failed)
    }

    fn contains(&self, spend_key: &[u8; 32]) -> Result<bool, betanet_ticket::TicketError> {
        Ok(self
            .0
            .get(Table::Spent, spend_key)
            .map_err(store_failed)?
            .is_some())
    }
}

/// Verifies and redeems vouchers with the shared [`VoucherVerifier`] (known keysets, pending
/// cache, token buckets, legacy window) over a double-spend set kept in a [`Store`], so a spent
/// voucher stays spent across restarts; adds each keyset's value.
#[derive(Debug)]
pub struct Redeemer<S: Store> {
    verifier: VoucherVerifier<StoreSpentSet<S>>,
    values: HashMap<[u8; 32], u64>,
    legacy_value: u64,
}

/// Milliseconds (this crate's clock) to the verifier's Unix seconds.
fn secs(now_ms: u64) -> u64 {
    now_ms / 1000
}

impl<S: Store> Redeemer<S> {
    /// A redeemer over `store`.
    pub fn new(store: S, policy: VoucherPolicy) -> Result<Self, TrustError> {
        let legacy_value = policy.legacy.as_ref().map_or(0, |l| l.value_sat);
        let config = VoucherConfig {
            per_keyset: policy.per_keyset,
            per_peer: policy.per_peer,
            max_buckets: policy.max_buckets,
            max_pending: policy.max_pending,
            legacy: policy.legacy.map(|l| l.window),
        };
        let verifier = VoucherVerifier::new(StoreSpentSet(store), config).map_err(|_| {
            TrustError::InvalidParameters {
                reason: "voucher rate limits must be non-zero",
            }
        })?;
        Ok(Redeemer {
            verifier,
            values: HashMap::new(),
            legacy_value,
        })
    }

    /// Accepts a keyset (validated) whose vouchers are worth `value_sat` each.
    pub fn add_keyset(&mut self, info: KeysetInfo, value_sat: u64) -> Result<[u8; 32], TrustError> {
        info.validate()?;
        let id = info.id();
        let key = betanet_crypto::sign::VerifyingKey::from_bytes(&info.group_key)
            .map_err(|_| TrustError::VoucherSignatureInvalid)?;
        self.verifier.registry_mut().insert(id, key);
        self.values.insert(id, value_sat);
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
        self.verifier.registry().pending()
    }

    /// Redeems a voucher presented by `peer`: rate limits, verification, then an atomic insert
    /// into the spent set. A voucher already spent (now or before a restart) is refused.
    pub fn redeem(
        &mut self,
        bytes: &[u8],
        peer: &[u8],
        now_ms: u64,
    ) -> Result<Redeemed, TrustError> {
        let r = self
            .verifier
            .redeem(bytes, peer, secs(now_ms))
            .map_err(|e| refusal(e, bytes))?;
        Ok(match r.keyset_id {
            Some(keyset) => Redeemed {
                keyset,
                value_sat: self.values.get(&keyset).copied().unwrap_or(0),
                legacy: false,
            },
            None => Redeemed {
                keyset: [0; 32],
                value_sat: self.legacy_value,
                legacy: true,
            },
        })
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
        let key = match AnyVoucher::parse(bytes).map_err(|e| refusal(e, bytes))? {
            AnyVoucher::Current(v) => v.spend_key(),
            AnyVoucher::Legacy(v) => v.spend_key(),
        };
        self.verifier
            .spent()
            .contains(&key)
            .map_err(|_| TrustError::SpentSetUnavailable)
    }
}

/// The shared verifier's refusal as this crate's error.
fn refusal(e: VoucherRefusal, bytes: &[u8]) -> TrustError {
    match e {
        VoucherRefusal::Malformed => TrustError::VoucherMalformed { len: bytes.len() },
        VoucherRefusal::PendingValidation => TrustError::VoucherUnknownKeyset {
            keyset_hex: hex::encode(bytes.get(..32).unwrap_or_default()),
        },
        VoucherRefusal::BadSignature => TrustError::VoucherSignatureInvalid,
        VoucherRefusal::DoubleSpend => TrustError::VoucherDoubleSpend,
        VoucherRefusal::KeysetRateLimited | VoucherRefusal::PeerRateLimited => {
            TrustError::RateLimited
        }
        VoucherRefusal::LegacyNotAccepted => TrustError::LegacyVoucherRejected {
            reason: "no legacy key configured, or outside the deprecation window",
        },
        VoucherRefusal::StoreUnavailable => TrustError::SpentSetUnavailable,
        _ => TrustError::SpentSetUnavailable,
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

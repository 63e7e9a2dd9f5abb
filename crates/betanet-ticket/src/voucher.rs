//! L6 vouchers at a gateway (SPEC §9).
//!
//! * A voucher is 128 bytes: `keysetID32 ‖ secret32 ‖ aggregatedSig64`, the signature being the
//!   mint group's Ed25519 signature over `secret32` (a FROST-Ed25519 aggregate is an ordinary
//!   Ed25519 signature, so one verification with the group key suffices; keyset ids and group
//!   keys come from `betanet-trust`, which computes `keysetID = SHA-256(sorted member keys)`).
//! * **Legacy 64-byte vouchers (our reading, same as `betanet-trust`):** `secret32 ‖ tag32` with
//!   `tag = HMAC-SHA256(legacyKey, "bn-legacy-voucher" ‖ secret32)`. 1.0's 32-byte
//!   "aggregatedSig" cannot be an Ed25519 signature, so only a gateway configured with the
//!   legacy mint key can check one, and only inside the configured deprecation window
//!   `[start, end)` (Unix seconds).
//! * Only known keysets are accepted; an unknown id is refused as
//!   [`VoucherRefusal::PendingValidation`] and remembered (bounded FIFO) so the node can fetch
//!   and validate the mint's announcement.
//! * Double spending: a spent set keyed by `SHA-256("bn-spent" ‖ keysetID ‖ secret)` (legacy:
//!   `SHA-256("bn-spent-legacy" ‖ secret)`), in memory or in redb (table
//!   `betanet_ticket_voucher_spent_v1`, key 32 bytes, value `u64` redemption time), surviving
//!   restarts. Spent entries are never pruned (a voucher has no expiry).
//! * Rate limits: a token bucket per peer and one per keyset, charged before the signature
//!   check.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use betanet_crypto::ct::ct_eq;
use betanet_crypto::hash::{sha256, sha256_concat};
use betanet_crypto::kdf::hmac_sha256_parts;
use betanet_crypto::sign::{Signature, SigningKey, VerifyingKey};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use zeroize::Zeroizing;

use crate::error::{TicketError, VoucherRefusal};
use crate::ratelimit::{BucketMap, RateLimit};

/// Length of a voucher.
pub const VOUCHER_LEN: usize = 128;
/// Length of a legacy voucher.
pub const LEGACY_VOUCHER_LEN: usize = 64;
/// Domain of the legacy tag.
pub const LEGACY_TAG_DOMAIN: &[u8] = b"bn-legacy-voucher";
/// The redb spent-set table.
pub const SPENT_TABLE: TableDefinition<'static, &'static [u8], u64> =
    TableDefinition::new("betanet_ticket_voucher_spent_v1");

/// A 128-byte voucher (parsed, not verified). `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The keyset id.
    pub keyset_id: [u8; 32],
    /// The bearer secret.
    pub secret: Zeroizing<[u8; 32]>,
    /// The group's Ed25519 signature over `secret`.
    pub sig: [u8; 64],
}

impl core::fmt::Debug for Voucher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Voucher(keyset={}, secret=<redacted>)",
            hex::encode(self.keyset_id)
        )
    }
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], VoucherRefusal> {
    b.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(VoucherRefusal::Malformed)
}

impl Voucher {
    /// Parses exactly 128 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, VoucherRefusal> {
        if bytes.len() != VOUCHER_LEN {
            return Err(VoucherRefusal::Malformed);
        }
        Ok(Voucher {
            keyset_id: arr::<32>(bytes, 0)?,
            secret: Zeroizing::new(arr::<32>(bytes, 32)?),
            sig: arr::<64>(bytes, 64)?,
        })
    }

    /// The 128 bytes.
    pub fn to_bytes(&self) -> Zeroizing<[u8; VOUCHER_LEN]> {
        let mut out = Zeroizing::new([0u8; VOUCHER_LEN]);
        out[..32].copy_from_slice(&self.keyset_id);
        out[32..64].copy_from_slice(self.secret.as_ref());
        out[64..].copy_from_slice(&self.sig);
        out
    }

    /// Signs `secret` with a single group signing key (what a FROST group's aggregate
    /// produces; used by tests and single-key development mints).
    pub fn sign_with(group: &SigningKey, keyset_id: [u8; 32], secret: [u8; 32]) -> Self {
        let sig = group.sign(&secret).to_bytes();
        Voucher {
            keyset_id,
            secret: Zeroizing::new(secret),
            sig,
        }
    }

    /// Verifies the signature with `group_key` (strict RFC 8032).
    pub fn verify(&self, group_key: &VerifyingKey) -> Result<(), VoucherRefusal> {
        group_key
            .verify(self.secret.as_ref(), &Signature::from_bytes(&self.sig))
            .map_err(|_| VoucherRefusal::BadSignature)
    }

    /// Spent-set key `SHA-256("bn-spent" ‖ keysetID ‖ secret)`.
    pub fn spend_key(&self) -> [u8; 32] {
        sha256_concat(&[b"bn-spent", &self.keyset_id, self.secret.as_ref()])
    }
}

/// A legacy 64-byte voucher `secret32 ‖ tag32` (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyVoucher {
    /// The bearer secret.
    pub secret: Zeroizing<[u8; 32]>,
    /// `HMAC-SHA256(legacyKey, "bn-legacy-voucher" ‖ secret)`.
    pub tag: [u8; 32],
}

impl core::fmt::Debug for LegacyVoucher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LegacyVoucher(<redacted>)")
    }
}

impl LegacyVoucher {
    /// Parses exactly 64 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, VoucherRefusal> {
        if bytes.len() != LEGACY_VOUCHER_LEN {
            return Err(VoucherRefusal::Malformed);
        }
        Ok(LegacyVoucher {
            secret: Zeroizing::new(arr::<32>(bytes, 0)?),
            tag: arr::<32>(bytes, 32)?,
        })
    }

    /// What a legacy mint holding `key` issued for `secret`.
    pub fn issue(key: &[u8; 32], secret: [u8; 32]) -> Self {
        LegacyVoucher {
            tag: legacy_tag(key, &secret),
            secret: Zeroizing::new(secret),
        }
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> Zeroizing<[u8; LEGACY_VOUCHER_LEN]> {
        let mut out = Zeroizing::new([0u8; LEGACY_VOUCHER_LEN]);
        out[..32].copy_from_slice(self.secret.as_ref());
        out[32..].copy_from_slice(&self.tag);
        out
    }

    /// Spent-set key `SHA-256("bn-spent-legacy" ‖ secret)`.
    pub fn spend_key(&self) -> [u8; 32] {
        sha256_concat(&[b"bn-spent-legacy", self.secret.as_ref()])
    }
}

fn legacy_tag(key: &[u8; 32], secret: &[u8; 32]) -> [u8; 32] {
    hmac_sha256_parts(key, &[LEGACY_TAG_DOMAIN, secret])
}

/// Either kind, told apart by length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyVoucher {
    /// 128 bytes.
    Current(Voucher),
    /// 64 bytes.
    Legacy(LegacyVoucher),
}

impl AnyVoucher {
    /// Parses 128 or 64 bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, VoucherRefusal> {
        match bytes.len() {
            VOUCHER_LEN => Voucher::parse(bytes).map(AnyVoucher::Current),
            LEGACY_VOUCHER_LEN => LegacyVoucher::parse(bytes).map(AnyVoucher::Legacy),
            _ => Err(VoucherRefusal::Malformed),
        }
    }
}

/// Known keysets (id → group verifying key) and a bounded FIFO of unknown ids pending
/// validation.
#[derive(Debug)]
pub struct KeysetRegistry {
    known: HashMap<[u8; 32], VerifyingKey>,
    pending: VecDeque<[u8; 32]>,
    pending_set: HashSet<[u8; 32]>,
    max_pending: usize,
}

impl KeysetRegistry {
    /// An empty registry remembering at most `max_pending` unknown ids.
    pub fn new(max_pending: usize) -> Self {
        KeysetRegistry {
            known: HashMap::new(),
            pending: VecDeque::new(),
            pending_set: HashSet::new(),
            max_pending,
        }
    }

    /// Adds (or replaces) a validated keyset; it leaves the pending list.
    pub fn insert(&mut self, keyset_id: [u8; 32], group_key: VerifyingKey) {
        self.known.insert(keyset_id, group_key);
        if self.pending_set.remove(&keyset_id) {
            self.pending.retain(|k| *k != keyset_id);
        }
    }

    /// Removes a keyset (e.g. a revoked mint).
    pub fn remove(&mut self, keyset_id: &[u8; 32]) -> bool {
        self.known.remove(keyset_id).is_some()
    }

    /// The group key of a known keyset.
    pub fn group_key(&self, keyset_id: &[u8; 32]) -> Option<&VerifyingKey> {
        self.known.get(keyset_id)
    }

    /// Records an unknown id (oldest forgotten first when full).
    pub fn note_unknown(&mut self, keyset_id: [u8; 32]) {
        if self.max_pending == 0 || self.known.contains_key(&keyset_id) {
            return;
        }
        if !self.pending_set.insert(keyset_id) {
            return;
        }
        self.pending.push_back(keyset_id);
        while self.pending.len() > self.max_pending {
            if let Some(old) = self.pending.pop_front() {
                self.pending_set.remove(&old);
            }
        }
    }

    /// Unknown ids awaiting validation, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.pending.iter()
    }
}

/// The set of redeemed vouchers.
pub trait SpentSet {
    /// Marks `spend_key` spent unless it already is. `Ok(true)`: newly spent.
    fn insert_if_absent(
        &mut self,
        spend_key: &[u8; 32],
        now_unix_secs: u64,
    ) -> Result<bool, TicketError>;
    /// Whether `spend_key` is spent.
    fn contains(&self, spend_key: &[u8; 32]) -> Result<bool, TicketError>;
}

impl<T: SpentSet + ?Sized> SpentSet for Box<T> {
    fn insert_if_absent(
        &mut self,
        spend_key: &[u8; 32],
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        (**self).insert_if_absent(spend_key, now_unix_secs)
    }

    fn contains(&self, spend_key: &[u8; 32]) -> Result<bool, TicketError> {
        (**self).contains(spend_key)
    }
}

/// An in-memory spent set (tests; does not survive a restart). `Debug` shows only the size.
#[derive(Default)]
pub struct MemorySpentSet {
    set: HashMap<[u8; 32], u64>,
}

impl core::fmt::Debug for MemorySpentSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MemorySpentSet({} spent)", self.set.len())
    }
}

impl SpentSet for MemorySpentSet {
    fn insert_if_absent(
        &mut self,
        spend_key: &[u8; 32],
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        if self.set.contains_key(spend_key) {
            return Ok(false);
        }
        self.set.insert(*spend_key, now_unix_secs);
        Ok(true)
    }

    fn contains(&self, spend_key: &[u8; 32]) -> Result<bool, TicketError> {
        Ok(self.set.contains_key(spend_key))
    }
}

/// A spent set in a redb file (durable commit per redemption).
pub struct RedbSpentSet {
    db: Arc<redb::Database>,
}

impl core::fmt::Debug for RedbSpentSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RedbSpentSet")
    }
}

impl RedbSpentSet {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, TicketError> {
        Self::from_database(Arc::new(redb::Database::create(path)?))
    }

    /// Uses an open database (e.g. the one of [`crate::replay::RedbReplayStore`]).
    pub fn from_database(db: Arc<redb::Database>) -> Result<Self, TicketError> {
        let tx = db.begin_write()?;
        tx.open_table(SPENT_TABLE)?;
        tx.commit()?;
        Ok(RedbSpentSet { db })
    }
}

impl SpentSet for RedbSpentSet {
    fn insert_if_absent(
        &mut self,
        spend_key: &[u8; 32],
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        let tx = self.db.begin_write()?;
        let fresh = {
            let mut t = tx.open_table(SPENT_TABLE)?;
            let seen = t.get(spend_key.as_slice())?.is_some();
            if !seen {
                t.insert(spend_key.as_slice(), now_unix_secs)?;
            }
            !seen
        };
        if fresh {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(fresh)
    }

    fn contains(&self, spend_key: &[u8; 32]) -> Result<bool, TicketError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SPENT_TABLE)?;
        Ok(t.get(spend_key.as_slice())?.is_some())
    }
}

/// Legacy acceptance: keys and the deprecation window `[start, end)` in Unix seconds.
#[derive(Clone)]
pub struct LegacyWindow {
    /// The legacy mint HMAC keys.
    pub keys: Vec<Zeroizing<[u8; 32]>>,
    /// First accepted second.
    pub start_unix_secs: u64,
    /// First second no longer accepted.
    pub end_unix_secs: u64,
}

impl core::fmt::Debug for LegacyWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "LegacyWindow({} keys, {}..{})",
            self.keys.len(),
            self.start_unix_secs,
            self.end_unix_secs
        )
    }
}

/// Redemption configuration.
#[derive(Clone, Debug)]
pub struct VoucherConfig {
    /// Bucket per keyset.
    pub per_keyset: RateLimit,
    /// Bucket per peer.
    pub per_peer: RateLimit,
    /// Most buckets kept per kind.
    pub max_buckets: usize,
    /// Most unknown keyset ids remembered.
    pub max_pending: usize,
    /// Legacy acceptance, if any.
    pub legacy: Option<LegacyWindow>,
}

impl Default for VoucherConfig {
    fn default() -> Self {
        VoucherConfig {
            per_keyset: RateLimit::per_second(1000, 100),
            per_peer: RateLimit::per_second(20, 5),
            max_buckets: 65_536,
            max_pending: 1024,
            legacy: None,
        }
    }
}

/// A redeemed voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redeemed {
    /// The keyset (`None` for a legacy voucher).
    pub keyset_id: Option<[u8; 32]>,
    /// The spent-set key now recorded.
    pub spend_key: [u8; 32],
}

/// Verifies and redeems vouchers.
#[derive(Debug)]
pub struct VoucherVerifier<S: SpentSet> {
    registry: KeysetRegistry,
    spent: S,
    per_keyset: BucketMap<[u8; 32]>,
    per_peer: BucketMap<[u8; 32]>,
    legacy: Option<LegacyWindow>,
}

impl<S: SpentSet> VoucherVerifier<S> {
    /// A verifier with an empty registry.
    pub fn new(spent: S, config: VoucherConfig) -> Result<Self, TicketError> {
        Ok(VoucherVerifier {
            registry: KeysetRegistry::new(config.max_pending),
            spent,
            per_keyset: BucketMap::new(config.per_keyset, config.max_buckets)?,
            per_peer: BucketMap::new(config.per_peer, config.max_buckets)?,
            legacy: config.legacy,
        })
    }

    /// The keyset registry.
    pub fn registry(&self) -> &KeysetRegistry {
        &self.registry
    }

    /// The keyset registry, for adding validated keysets.
    pub fn registry_mut(&mut self) -> &mut KeysetRegistry {
        &mut self.registry
    }

    /// The spent set.
    pub fn spent(&self) -> &S {
        &self.spent
    }

    /// Redeems `bytes` (128-byte or, inside the window, 64-byte legacy) presented by `peer`
    /// (any stable peer identifier, e.g. its PeerID bytes; hashed to a bucket key).
    pub fn redeem(
        &mut self,
        bytes: &[u8],
        peer: &[u8],
        now_unix_secs: u64,
    ) -> Result<Redeemed, VoucherRefusal> {
        let v = AnyVoucher::parse(bytes)?;
        if !self.per_peer.try_take(&sha256(peer), now_unix_secs) {
            return Err(VoucherRefusal::PeerRateLimited);
        }
        let (keyset_id, spend_key) = match &v {
            AnyVoucher::Current(v) => {
                let Some(key) = self.registry.group_key(&v.keyset_id).copied() else {
                    self.registry.note_unknown(v.keyset_id);
                    return Err(VoucherRefusal::PendingValidation);
                };
                if !self.per_keyset.try_take(&v.keyset_id, now_unix_secs) {
                    return Err(VoucherRefusal::KeysetRateLimited);
                }
                v.verify(&key)?;
                (Some(v.keyset_id), v.spend_key())
            }
            AnyVoucher::Legacy(l) => {
                let Some(w) = &self.legacy else {
                    return Err(VoucherRefusal::LegacyNotAccepted);
                };
                if !(w.start_unix_secs..w.end_unix_secs).contains(&now_unix_secs) {
                    return Err(VoucherRefusal::LegacyNotAccepted);
                }
                if !self.per_keyset.try_take(&[0u8; 32], now_unix_secs) {
                    return Err(VoucherRefusal::KeysetRateLimited);
                }
                let mut ok = false;
                for k in &w.keys {
                    ok |= ct_eq(&legacy_tag(k, &l.secret), &l.tag);
                }
                if !ok {
                    return Err(VoucherRefusal::BadSignature);
                }
                (None, l.spend_key())
            }
        };
        match self.spent.insert_if_absent(&spend_key, now_unix_secs) {
            Ok(true) => Ok(Redeemed {
                keyset_id,
                spend_key,
            }),
            Ok(false) => Err(VoucherRefusal::DoubleSpend),
            Err(_) => Err(VoucherRefusal::StoreUnavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn setup<S: SpentSet>(spent: S) -> (VoucherVerifier<S>, SigningKey, [u8; 32]) {
        let group = SigningKey::from_seed(&[5u8; 32]);
        let id = sha256(b"keyset");
        let mut v = VoucherVerifier::new(spent, VoucherConfig::default()).unwrap();
        v.registry_mut().insert(id, group.verifying_key());
        (v, group, id)
    }

    #[test]
    fn good_bad_and_double_spend() {
        let (mut ver, group, id) = setup(MemorySpentSet::default());
        let v = Voucher::sign_with(&group, id, [1u8; 32]);
        let bytes = v.to_bytes();
        assert_eq!(Voucher::parse(bytes.as_ref()).unwrap(), v);
        let r = ver.redeem(bytes.as_ref(), b"peer", 100).unwrap();
        assert_eq!(r.keyset_id, Some(id));
        assert_eq!(r.spend_key, v.spend_key());
        assert_eq!(
            ver.redeem(bytes.as_ref(), b"peer2", 100),
            Err(VoucherRefusal::DoubleSpend)
        );
        // Bad signature: flip a bit of the secret.
        let mut bad = *bytes;
        bad[40] ^= 1;
        assert_eq!(
            ver.redeem(&bad, b"peer", 100),
            Err(VoucherRefusal::BadSignature)
        );
        // Signed by someone else.
        let other = Voucher::sign_with(&SigningKey::from_seed(&[6u8; 32]), id, [2u8; 32]);
        assert_eq!(
            ver.redeem(other.to_bytes().as_ref(), b"peer", 100),
            Err(VoucherRefusal::BadSignature)
        );
        assert_eq!(
            ver.redeem(&[0u8; 127], b"peer", 100),
            Err(VoucherRefusal::Malformed)
        );
        assert_eq!(
            ver.redeem(&[0u8; 64], b"peer", 100),
            Err(VoucherRefusal::LegacyNotAccepted)
        );
    }

    #[test]
    fn unknown_keyset_is_pending() {
        let (mut ver, group, _) = setup(MemorySpentSet::default());
        let unknown = sha256(b"other keyset");
        let v = Voucher::sign_with(&group, unknown, [3u8; 32]);
        assert_eq!(
            ver.redeem(v.to_bytes().as_ref(), b"p", 1),
            Err(VoucherRefusal::PendingValidation)
        );
        assert_eq!(ver.registry().pending().collect::<Vec<_>>(), vec![&unknown]);
        ver.registry_mut().insert(unknown, group.verifying_key());
        assert_eq!(ver.registry().pending().count(), 0);
        assert!(ver.redeem(v.to_bytes().as_ref(), b"p", 1).is_ok());
        let mut reg = KeysetRegistry::new(2);
        for i in 0..5u8 {
            reg.note_unknown([i; 32]);
        }
        assert_eq!(
            reg.pending().copied().collect::<Vec<_>>(),
            vec![[3u8; 32], [4u8; 32]]
        );
    }

    #[test]
    fn rate_limits() {
        let cfg = VoucherConfig {
            per_peer: RateLimit::per_minute(2, 1),
            per_keyset: RateLimit::per_minute(3, 1),
            ..VoucherConfig::default()
        };
        let group = SigningKey::from_seed(&[5u8; 32]);
        let id = [7u8; 32];
        let mut ver = VoucherVerifier::new(MemorySpentSet::default(), cfg).unwrap();
        ver.registry_mut().insert(id, group.verifying_key());
        let v = |i: u8| Voucher::sign_with(&group, id, [i; 32]).to_bytes();
        assert!(ver.redeem(v(1).as_ref(), b"a", 0).is_ok());
        assert!(ver.redeem(v(2).as_ref(), b"a", 0).is_ok());
        assert_eq!(
            ver.redeem(v(3).as_ref(), b"a", 0),
            Err(VoucherRefusal::PeerRateLimited)
        );
        assert!(ver.redeem(v(3).as_ref(), b"b", 0).is_ok());
        assert_eq!(
            ver.redeem(v(4).as_ref(), b"c", 0),
            Err(VoucherRefusal::KeysetRateLimited)
        );
        assert!(ver.redeem(v(4).as_ref(), b"c", 60).is_ok());
    }

    #[test]
    fn legacy_window() {
        let key = [9u8; 32];
        let cfg = VoucherConfig {
            legacy: Some(LegacyWindow {
                keys: vec![Zeroizing::new(key)],
                start_unix_secs: 100,
                end_unix_secs: 200,
            }),
            ..VoucherConfig::default()
        };
        let mut ver = VoucherVerifier::new(MemorySpentSet::default(), cfg).unwrap();
        let l = LegacyVoucher::issue(&key, [4u8; 32]);
        let b = l.to_bytes();
        assert_eq!(LegacyVoucher::parse(b.as_ref()).unwrap(), l);
        assert_eq!(
            ver.redeem(b.as_ref(), b"p", 99),
            Err(VoucherRefusal::LegacyNotAccepted)
        );
        assert_eq!(
            ver.redeem(b.as_ref(), b"p", 200),
            Err(VoucherRefusal::LegacyNotAccepted)
        );
        let r = ver.redeem(b.as_ref(), b"p", 150).unwrap();
        assert_eq!(r.keyset_id, None);
        assert_eq!(
            ver.redeem(b.as_ref(), b"p", 151),
            Err(VoucherRefusal::DoubleSpend)
        );
        let forged = LegacyVoucher::issue(&[8u8; 32], [5u8; 32]);
        assert_eq!(
            ver.redeem(forged.to_bytes().as_ref(), b"p", 150),
            Err(VoucherRefusal::BadSignature)
        );
    }

    #[test]
    fn double_spend_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spent.redb");
        let group = SigningKey::from_seed(&[5u8; 32]);
        let id = [1u8; 32];
        let v = Voucher::sign_with(&group, id, [42u8; 32]).to_bytes();
        {
            let mut ver =
                VoucherVerifier::new(RedbSpentSet::open(&path).unwrap(), VoucherConfig::default())
                    .unwrap();
            ver.registry_mut().insert(id, group.verifying_key());
            assert!(ver.redeem(v.as_ref(), b"p", 1).is_ok());
        }
        let mut ver =
            VoucherVerifier::new(RedbSpentSet::open(&path).unwrap(), VoucherConfig::default())
                .unwrap();
        ver.registry_mut().insert(id, group.verifying_key());
        assert!(
            ver.spent()
                .contains(&Voucher::parse(v.as_ref()).unwrap().spend_key())
                .unwrap()
        );
        assert_eq!(
            ver.redeem(v.as_ref(), b"p", 2),
            Err(VoucherRefusal::DoubleSpend)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            match AnyVoucher::parse(&b) {
                Ok(AnyVoucher::Current(v)) => prop_assert_eq!(v.to_bytes().to_vec(), b),
                Ok(AnyVoucher::Legacy(l)) => prop_assert_eq!(l.to_bytes().to_vec(), b),
                Err(e) => {
                    prop_assert!(b.len() != 128 && b.len() != 64);
                    prop_assert_eq!(e, VoucherRefusal::Malformed);
                }
            }
        }
    }
}

//! The one error type of this crate.

/// Everything that can go wrong in the trust layer.
///
/// Peer-supplied objects (alias records, vouchers, announcements, certificates) that fail a rule
/// produce the variant naming that rule; the caller rejects *that object* only (SPEC §8: an alias
/// error rejects the record, not the connection). Local misuse (bad parameters) and storage
/// failures have their own variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A `betanet://` id, `bn1:` name or key string could not be parsed.
    #[error("invalid name or id: {reason}")]
    NameInvalid {
        /// What was wrong.
        reason: &'static str,
    },
    /// A presented public key does not hash to the id it claims to own.
    #[error("the presented key does not match the self-certifying id")]
    KeyMismatch,
    /// `ALIAS_SIG_INVALID`: the record's signature does not verify under any current maintainer
    /// (or a rotation record is not endorsed by two distinct current maintainers).
    #[error("ALIAS_SIG_INVALID: {reason}")]
    AliasSigInvalid {
        /// Which check failed.
        reason: &'static str,
    },
    /// `ALIAS_SEQ_REPLAY`: `seq` is not greater than the latest final `seq` for the alias.
    #[error("ALIAS_SEQ_REPLAY: seq {seq} is not above the latest final seq {latest}")]
    AliasSeqReplay {
        /// The record's seq.
        seq: u64,
        /// The latest accepted seq.
        latest: u64,
    },
    /// `ALIAS_ROTATION_CONFLICT`: a rotation record contradicts the current maintainer set.
    #[error("ALIAS_ROTATION_CONFLICT: {reason}")]
    AliasRotationConflict {
        /// Which check failed.
        reason: &'static str,
    },
    /// An alias or rotation record is structurally invalid (bad CBOR, missing field, bad length).
    #[error("malformed alias record: {reason}")]
    AliasMalformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// A record's timestamp is further in the future than the allowed clock skew.
    #[error("record timestamp {ts_ms} ms is more than the allowed skew ahead of now {now_ms} ms")]
    FromTheFuture {
        /// The record's timestamp.
        ts_ms: u64,
        /// The local time.
        now_ms: u64,
    },
    /// A deterministic-CBOR decoding failure.
    #[error("deterministic CBOR: {reason}")]
    Cbor {
        /// What was wrong.
        reason: &'static str,
    },
    /// A 1.1 ledger payload (`betanet1 pk=.. seq=.. sig=.. exp=..`) is malformed or badly signed.
    #[error("invalid 1.1 ledger payload: {reason}")]
    LedgerPayloadInvalid {
        /// What was wrong.
        reason: &'static str,
    },
    /// An Emergency Advance quorum certificate failed a check.
    #[error("invalid quorum certificate: {reason}")]
    QuorumCertificateInvalid {
        /// What was wrong.
        reason: &'static str,
    },
    /// A chain source could not provide observations.
    #[error("chain source: {reason}")]
    ChainSource {
        /// What went wrong.
        reason: String,
    },
    /// A FROST operation failed (bad share, bad package, cheating participant...).
    #[error("FROST: {source}")]
    Frost {
        /// The underlying error.
        #[source]
        source: frost_ed25519::Error,
    },
    /// Fewer signers than the threshold took part.
    #[error("threshold not met: {have} signers, {need} needed")]
    ThresholdNotMet {
        /// Signers present.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Federation parameters outside the allowed range (n >= 5, t = 3 by default policy).
    #[error("invalid federation parameters: {reason}")]
    InvalidParameters {
        /// What was wrong.
        reason: &'static str,
    },
    /// A voucher has the wrong length or layout.
    #[error("malformed voucher: {len} bytes (expected 128, or 64 for legacy)")]
    VoucherMalformed {
        /// Length seen.
        len: usize,
    },
    /// A voucher names a keyset that this node does not know (cache it pending validation).
    #[error("voucher keyset {keyset_hex} is unknown")]
    VoucherUnknownKeyset {
        /// Hex keyset id.
        keyset_hex: String,
    },
    /// A voucher's signature does not verify under its keyset's group key.
    #[error("voucher signature invalid")]
    VoucherSignatureInvalid,
    /// The voucher has already been redeemed.
    #[error("voucher already spent")]
    VoucherDoubleSpend,
    /// A legacy 64-byte voucher arrived outside the configured deprecation window, or no legacy
    /// key accepts it.
    #[error("legacy voucher rejected: {reason}")]
    LegacyVoucherRejected {
        /// Why.
        reason: &'static str,
    },
    /// A per-keyset or per-peer rate limit was exceeded.
    #[error("voucher rate limit exceeded")]
    RateLimited,
    /// The double-spend set could not be read or written; the voucher is refused (fail closed).
    #[error("the spent-voucher store is unavailable; voucher refused")]
    SpentSetUnavailable,
    /// A mint announcement's proof of work is below the required difficulty.
    #[error("proof of work too weak: {have} leading zero bits, {need} required")]
    PowInsufficient {
        /// Leading zero bits of the announcement hash.
        have: u32,
        /// Required bits.
        need: u32,
    },
    /// A mint announcement failed a structural or signature check.
    #[error("invalid mint announcement: {reason}")]
    AnnouncementInvalid {
        /// What was wrong.
        reason: &'static str,
    },
    /// Settlement failed (insufficient balance, amount below the minimum...).
    #[error("settlement: {reason}")]
    Settlement {
        /// What went wrong.
        reason: &'static str,
    },
    /// A governance tally input is inconsistent (unknown node in an ACK, bad numbers...).
    #[error("governance input: {reason}")]
    GovernanceInput {
        /// What was wrong.
        reason: String,
    },
    /// JSON input or output failed.
    #[error("JSON: {source}")]
    Json {
        /// The underlying error.
        #[from]
        source: serde_json::Error,
    },
    /// Reading or writing a local file failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The persistent store failed.
    #[error("store: {source}")]
    Store {
        /// The underlying redb error.
        #[source]
        source: Box<redb::Error>,
    },
}

impl From<frost_ed25519::Error> for TrustError {
    fn from(source: frost_ed25519::Error) -> Self {
        TrustError::Frost { source }
    }
}

macro_rules! store_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TrustError {
            fn from(e: $t) -> Self {
                TrustError::Store { source: Box::new(redb::Error::from(e)) }
            }
        }
    )*};
}
store_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

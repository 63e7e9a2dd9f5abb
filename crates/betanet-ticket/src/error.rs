//! The crate's error type and the typed refusal reasons.
//!
//! [`TicketError`] is for local failures and misuse (a bad policy string, a failing store, an
//! invalid configuration). A peer that presents a bad credential gets a *refusal*, not an
//! error: [`Refusal`] (access tickets), [`TokenRefusal`] (`BN-Ticket` tokens) and
//! [`VoucherRefusal`] (vouchers) are small `Copy` enums whose [`Refusal::as_str`]-style labels
//! are meant for metrics. The gateway maps **every** [`Refusal`] to the decoy response
//! (SPEC §4.1/§4.2) and every [`TokenRefusal`] to `L2_TICKET_INVALID`.

use betanet_crypto::CryptoError;
use betanet_wire::{ErrorCode, WireError};

/// Local failures of `betanet-ticket`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// A carrier-policy header is malformed or out of range.
    #[error("invalid carrier policy: {0}")]
    Policy(#[from] PolicyError),
    /// The persistent store (redb) failed.
    #[error("persistent store failed: {source}")]
    Store {
        /// The underlying redb error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A bounded in-memory store is full even after pruning expired entries.
    #[error("in-memory store full ({capacity} entries); raise the capacity or prune more often")]
    StoreFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A cryptographic primitive failed (bad key material supplied by the caller).
    #[error("cryptography: {0}")]
    Crypto(#[from] CryptoError),
    /// Encoding a wire structure failed.
    #[error("wire encoding: {0}")]
    Wire(#[from] WireError),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A token issuer ran out of request counters (after 2^64 requests).
    #[error("BN-Ticket request counter exhausted; open a new session")]
    CounterExhausted,
}

macro_rules! store_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TicketError {
            fn from(e: $t) -> Self {
                TicketError::Store { source: Box::new(redb::Error::from(e)) }
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

/// What is wrong with a carrier-policy header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The value does not start with `v1`.
    #[error("unsupported or missing version (expected `v1`)")]
    Version,
    /// A parameter is not `name=value`.
    #[error("parameter syntax")]
    Syntax,
    /// A parameter appears twice.
    #[error("duplicate parameter")]
    Duplicate,
    /// `carriers=` is missing.
    #[error("missing `carriers=`")]
    MissingCarriers,
    /// An unknown carrier name (only `cookie`, `query`, `body`).
    #[error("unknown carrier")]
    UnknownCarrier,
    /// A carrier is listed twice.
    #[error("carrier listed twice")]
    DuplicateCarrier,
    /// A weight is not a decimal in `[0, 1]` with at most 6 fraction digits.
    #[error("weight must be a decimal in [0, 1] with at most 6 fraction digits")]
    Weight,
    /// The weights do not sum to 1 (±0.01) or are all zero.
    #[error("weights must sum to 1 (±0.01)")]
    WeightSum,
    /// `len=` is not `a..b` with `24 <= a <= b <= 64`.
    #[error("len must be `a..b` with 24 <= a <= b <= 64")]
    Len,
    /// The header is longer than 256 bytes.
    #[error("policy header too long")]
    TooLong,
}

/// Why an access ticket was refused (SPEC §4.2). Every value maps to the decoy response; the
/// distinction exists for metrics only and must never be shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No carrier held a ticket.
    #[error("no ticket")]
    NoTicket,
    /// More than one carrier (or the same carrier twice) held a ticket.
    #[error("ticket in more than one carrier")]
    AmbiguousCarrier,
    /// The carrier text is too long to be a ticket.
    #[error("ticket carrier too long")]
    Oversize,
    /// Bad percent-encoding, bad Base64URL, or a payload shorter than the fixed fields.
    #[error("malformed ticket")]
    Malformed,
    /// The form body's content type is not `application/x-www-form-urlencoded`.
    #[error("body carrier with a wrong content type")]
    BadContentType,
    /// The version byte is not `0x01`.
    #[error("unsupported ticket version")]
    BadVersion,
    /// `ticketKeyID` is not one of ours.
    #[error("unknown ticket key id")]
    UnknownKeyId,
    /// `cliPub` is a low-order X25519 point.
    #[error("low-order client key")]
    LowOrderKey,
    /// `accessTicket` matches none of the hours now−1, now, now+1 (wrong key, forged, or
    /// clock skew beyond one hour).
    #[error("access ticket does not verify for hours now-1..=now+1")]
    BadAccessTicket,
    /// `(cliPub, hour)` was already admitted.
    #[error("replayed ticket")]
    Replay,
    /// The peer's prefix (IPv4 /24, IPv6 /56) or AS is over its token bucket.
    #[error("rate limited")]
    RateLimited,
    /// The replay store failed or is full; we fail closed.
    #[error("replay store unavailable")]
    StoreUnavailable,
}

impl Refusal {
    /// A stable lowercase label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoTicket => "no_ticket",
            Refusal::AmbiguousCarrier => "ambiguous_carrier",
            Refusal::Oversize => "oversize",
            Refusal::Malformed => "malformed",
            Refusal::BadContentType => "bad_content_type",
            Refusal::BadVersion => "bad_version",
            Refusal::UnknownKeyId => "unknown_key_id",
            Refusal::LowOrderKey => "low_order_key",
            Refusal::BadAccessTicket => "bad_access_ticket",
            Refusal::Replay => "replay",
            Refusal::RateLimited => "rate_limited",
            Refusal::StoreUnavailable => "store_unavailable",
        }
    }

    /// Every refusal, for metric registration.
    pub const ALL: [Refusal; 12] = [
        Refusal::NoTicket,
        Refusal::AmbiguousCarrier,
        Refusal::Oversize,
        Refusal::Malformed,
        Refusal::BadContentType,
        Refusal::BadVersion,
        Refusal::UnknownKeyId,
        Refusal::LowOrderKey,
        Refusal::BadAccessTicket,
        Refusal::Replay,
        Refusal::RateLimited,
        Refusal::StoreUnavailable,
    ];
}

/// Why a `BN-Ticket` request header was refused (SPEC §4.3). Every value closes the connection
/// with `L2_TICKET_INVALID` ([`TokenRefusal::close_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRefusal {
    /// The header value is not a valid `BN-Ticket` dictionary (see `betanet_wire::ticket_header`).
    #[error("BN-Ticket header syntax")]
    Syntax,
    /// `tok` is not the token of this session for `ctx`.
    #[error("BN-Ticket token mismatch")]
    BadToken,
    /// This `ctx` was already used in this session.
    #[error("BN-Ticket ctx repeated")]
    ReplayedCtx,
    /// An `r<n>` ctx older than the replay window.
    #[error("BN-Ticket ctx too old")]
    StaleCtx,
    /// The session used more distinct non-counter contexts than we remember.
    #[error("too many BN-Ticket contexts in one session")]
    TooManyContexts,
}

impl TokenRefusal {
    /// A stable lowercase label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRefusal::Syntax => "syntax",
            TokenRefusal::BadToken => "bad_token",
            TokenRefusal::ReplayedCtx => "replayed_ctx",
            TokenRefusal::StaleCtx => "stale_ctx",
            TokenRefusal::TooManyContexts => "too_many_contexts",
        }
    }

    /// The HTX CLOSE code: always `L2_TICKET_INVALID`.
    pub fn close_code(self) -> ErrorCode {
        ErrorCode::L2_TICKET_INVALID
    }
}

/// Why a voucher was refused (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum VoucherRefusal {
    /// Not 128 bytes (or 64 for a legacy voucher).
    #[error("malformed voucher")]
    Malformed,
    /// The keyset id is not known yet; it is cached pending validation.
    #[error("unknown keyset, pending validation")]
    PendingValidation,
    /// The group signature over `secret32` does not verify.
    #[error("bad voucher signature")]
    BadSignature,
    /// The voucher was already redeemed.
    #[error("voucher already spent")]
    DoubleSpend,
    /// The keyset's token bucket is empty.
    #[error("keyset rate limit")]
    KeysetRateLimited,
    /// The peer's token bucket is empty.
    #[error("peer rate limit")]
    PeerRateLimited,
    /// A legacy 64-byte voucher outside the deprecation window (or with no legacy key).
    #[error("legacy voucher not accepted")]
    LegacyNotAccepted,
    /// The spent-set store failed; we fail closed.
    #[error("spent-set store unavailable")]
    StoreUnavailable,
}

impl VoucherRefusal {
    /// A stable lowercase label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherRefusal::Malformed => "malformed",
            VoucherRefusal::PendingValidation => "pending_validation",
            VoucherRefusal::BadSignature => "bad_signature",
            VoucherRefusal::DoubleSpend => "double_spend",
            VoucherRefusal::KeysetRateLimited => "keyset_rate_limited",
            VoucherRefusal::PeerRateLimited => "peer_rate_limited",
            VoucherRefusal::LegacyNotAccepted => "legacy_not_accepted",
            VoucherRefusal::StoreUnavailable => "store_unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = Refusal::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Refusal::ALL.len());
        assert_eq!(
            TokenRefusal::BadToken.close_code(),
            ErrorCode::L2_TICKET_INVALID
        );
        assert_eq!(VoucherRefusal::DoubleSpend.as_str(), "double_spend");
    }
}

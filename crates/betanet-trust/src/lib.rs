//! # betanet-trust
//!
//! The trust layer of Betanet (SPEC §3, §8, §9, §11): who a name belongs to, which money is
//! valid and how the network upgrades.
//!
//! * [`names`]: verification that a presented Ed25519 key owns a `betanet://` id, a PeerID or a
//!   `bn1:` name (the encodings themselves live in `betanet_crypto::identity`).
//! * [`alias`]: the 1.2 alias ledger (det-CBOR records, 2-of-3 maintainer finality, strictly
//!   increasing `seq`, rotation records, history) and [`ledger11`], the 1.1 rule over a
//!   [`ledger11::ChainSource`] trait with Emergency Advance quorum certificates.
//! * [`mint`]: FROST-Ed25519 mints (dealer and distributed key generation, threshold signing),
//!   keyset ids, mint announcements with proof of work; [`voucher`]: 128-byte vouchers, legacy
//!   64-byte vouchers, redemption with a persistent double-spend set and a [`voucher::Settlement`]
//!   trait.
//! * [`governance`]: uptime score, vote weights, AS/organisation caps, the pass rule and the
//!   activation schedule; [`tally`]: the JSON front end of `betanet governance tally`.
//! * [`store`]: the small key-value [`store::Store`] trait with an in-memory and a `redb`
//!   implementation; [`cli`]: library functions behind the `betanet name|mint|voucher|governance`
//!   subcommands.
//!
//! What it is not: no networking, no clock, no randomness of its own. Time (`now_ms`, ms since
//! the Unix epoch) and randomness (`&mut (impl RngCore + CryptoRng)`) are arguments; the only
//! I/O is the `redb` store (behind [`store::Store`]) and the explicitly file-based helpers
//! (`ledger11::FileChainSource`, the CLI functions). It sits on `betanet-wire` (det-CBOR) and
//! `betanet-crypto` (hashes, Ed25519, identities) and is used by the gateway, the mesh and the
//! `betanet` binary.

pub mod alias;
pub mod cli;
pub mod error;
pub mod governance;
pub mod ledger11;
pub mod mint;
pub mod names;
pub mod store;
pub mod tally;
pub mod voucher;

pub use error::TrustError;

/// Clock skew tolerated on timestamps (SPEC §1: ±120 s), in milliseconds.
pub const MAX_SKEW_MS: u64 = 120_000;

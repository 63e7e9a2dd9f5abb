//! # betanet-ticket
//!
//! Admission control for Betanet fronts and gateways, sans-IO: the clock (`now_unix_secs`) and
//! randomness (`&mut impl RngCore + CryptoRng`) are arguments, and the only I/O is the optional
//! redb-backed persistence of the replay and spent sets.
//!
//! * [`ticket`]: access tickets, client side (SPEC §4.2, byte-compatible with the Python
//!   library): `salt = SHA-256("betanet-ticket-v1" ‖ keyID ‖ u64be(hour))`,
//!   `accessTicket = HKDF(X25519(cliPriv, ticketPub), salt, "", 32)`, payload
//!   `0x01 ‖ cliPub ‖ keyID ‖ nonce ‖ accessTicket ‖ pad(24..=64)`, rendered into a cookie
//!   (`__Host-bn1=`), a query parameter or a form body (`bn1=`).
//! * [`policy`]: the site's carrier-policy header (`v1; carriers=cookie:0.5,...; len=24..64`)
//!   and the weighted carrier choice.
//! * [`carrier`]: finding the ticket in a request's cookies, query string or form body.
//! * [`verifier`]: the server side: field order, trailing bytes ignored, constant-time key id
//!   and ticket comparison, hours now−1..=now+1, low-order `cliPub` refused, replay check,
//!   per-prefix token buckets. Every failure is a typed [`Refusal`] that the gateway turns into
//!   the decoy response.
//! * [`replay`]: the [`ReplayStore`] trait, [`MemoryReplayStore`] and the persistent
//!   [`RedbReplayStore`] (`(cliPub, hour)` kept ≥ 2 h, survives restarts).
//! * [`ratelimit`]: integer token buckets keyed by IPv4 /24, IPv6 /56 and AS; bounded memory.
//! * [`token`]: `BN-Ticket` request-header tokens (SPEC §4.3, PD-2) from the session's
//!   `KeySchedule`: [`TokenIssuer`] (`ctx = r<n>`) and [`TokenChecker`] (constant-time, no
//!   repeated `ctx`, bounded memory).
//! * [`voucher`]: L6 vouchers (SPEC §9): 128-byte parse, legacy 64-byte form inside a window,
//!   known keysets verified with the group Ed25519 key, persistent spent set, per-keyset and
//!   per-peer limits, unknown keysets cached pending validation.
//!
//! What it is **not**: no HTTP parsing or decoy serving (the gateway in `betanet-htx` /
//! `betanet` does that and passes the header values in), no primitives (those are
//! `betanet-crypto`), no header syntax (`betanet-wire::ticket_header`), no mint/keyset
//! validation (`betanet-trust`).

pub mod carrier;
mod error;
pub mod policy;
pub mod ratelimit;
pub mod replay;
pub mod ticket;
pub mod token;
pub mod verifier;
pub mod voucher;

pub use carrier::{Candidate, TicketRequest};
pub use error::{PolicyError, Refusal, TicketError, TokenRefusal, VoucherRefusal};
pub use policy::{Carrier, CarrierPolicy};
pub use ratelimit::{AdmissionLimits, RateLimit};
pub use replay::{MemoryReplayStore, RedbReplayStore, ReplayStore};
pub use ticket::{IssuedTicket, SiteInfo, SiteTicketKey, TicketKeys, make_ticket};
pub use token::{TokenChecker, TokenIssuer};
pub use verifier::{Admitted, TicketVerifier, VerifierConfig};
pub use voucher::{Voucher, VoucherVerifier};

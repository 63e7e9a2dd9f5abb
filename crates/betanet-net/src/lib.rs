//! # betanet-net
//!
//! The tokio side of HTX (SPEC §4): outer carriages, `dial` / `listen` / `accept`, and async
//! [`Connection`] / [`Stream`] handles around the sans-IO engine of `betanet-htx`.
//!
//! * One driver task per connection owns the transport; handles share the engine through a
//!   mutex (quinn's design) so a write is bounded by flow-control credit and wakes the driver.
//! * [`Stream`] implements `AsyncRead + AsyncWrite`; `shutdown` sends FIN.
//! * Carriages ([`Transport`]): `tcp12` (handshake and frames straight on TCP), `tls`
//!   (TLS 1.3 via rustls, HTTP/2 via h2, HTX inside one streaming POST with an access ticket,
//!   decoy answers for everything else, TLS exporter bound into the Noise prologue, later
//!   requests checked against a fresh `BN-Ticket`) and the opt-in legacy `tcp11` framing.
//!   Client TLS sits behind [`tls::ClientTls`] so a browser-identical ClientHello can be
//!   plugged in. `quic` ([`quic`]): QUIC v1 + HTTP/3 (quinn, h3) with the same rules and the
//!   same front settings; `auto` on the client tries QUIC and falls back to TLS over TCP
//!   after a random 200–1200 ms, with [`cover`] connections to unrelated origins around the
//!   retry (SPEC §4.8).
//! * [`cli`]: the `echo-server` and `stream` commands as library functions.
//!
//! What it is **not**: no protocol logic (frames, flow control, keys live in `betanet-htx`,
//! `betanet-wire`, `betanet-crypto`; ticket checks in `betanet-ticket`, which [`ticket`] wraps
//! for the TLS front: rate buckets per prefix and a replay set that survives restarts). Not yet
//! here: connection pools (the gateway's `HtxConnector` pools), QUIC calibration. Origin
//! calibration of the TLS carriage: [`calibrate`]. The HTTP/2 PRIORITY cover ([`priority`]) is a raw frame injected by the client
//! because `h2` cannot send PRIORITY.

pub mod calibrate;
pub mod cli;
mod conn;
pub mod cover;
mod endpoint;
mod error;
mod h2io;
pub mod priority;
pub mod quic;
pub mod ticket;
pub mod tls;

pub use betanet_htx::{Config as HtxConfig, CoverConfig, ErrorCode, PqMode};
pub use conn::{Connection, ConnectionStats, Stream};
pub use endpoint::{ClientConfig, Listener, ServerConfig, Transport, dial, listen};
pub use error::NetError;

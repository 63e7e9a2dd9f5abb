//! # betanet-mix — Betanet L4 privacy hops (mixnet)
//!
//! What it is: the sans-IO core of the Betanet mixnet (SPEC §7) plus a tokio mixnode driver.
//!
//! * [`packet`]: fixed-size (1 KiB / 2 KiB) layered packets for up to 5 hops with one X25519
//!   per hop (a per-layer ephemeral key instead of Sphinx blinding), an HMAC-authenticated
//!   routing header per hop, a LIONESS wide-block payload cipher (tagging is detected at the
//!   exit), per-hop replay tags and single-use reply blocks ([`packet::Surb`]).
//! * [`replay`]: per-key-epoch Bloom replay filters, persisted (snapshot + append log) so a
//!   restart does not reopen the replay window, rotated with the mix key.
//! * [`delay`]: the per-packet mixing delay sampler (U[30 ms, 150 ms] by default, exponential
//!   "Poisson mixing" option); randomness is an argument.
//! * [`select`]: hop selection per SPEC §7 (beacon seed with logged fallback, verifiable
//!   lottery, AS diversity, no exact hop-set reuse until 8 sets were tried); pure.
//! * [`node`]: the mixnode (length-prefixed TCP and HTX ingress, batch workers fed by bounded
//!   queues, replay filter, delay queue, one pooled link per next hop over HTX pinned to the
//!   peer's Ed25519 identity or plain TCP, local exit delivery, Prometheus text metrics, signed
//!   descriptor on request, TOML configuration); [`keys`]: its persisted key ring.
//! * [`descriptor`]: signed mixnode and hidden-service descriptors, `betanet://` service ids.
//! * [`app`]: the exit application protocol (request/response through reply blocks,
//!   introduction and rendezvous points for hidden services).
//! * [`client`]: the client API mirroring the seed's `BetanetTransport` (`discover_nodes`,
//!   `build_circuit`, `send_packet`, `close_circuit`, `get_stats`) and hidden services
//!   (`HsSession::fetch` / `HiddenService::serve`: messages up to 4 MiB over a rendezvous).
//! * [`hsdir`]: hidden-service directories: which mixnodes hold a service's descriptor
//!   (XOR-closest to `SHA-256("bn-hsdir" ‖ id ‖ day)`), the publish/lookup messages and the
//!   bounded, verifying descriptor store a directory node keeps.
//! * [`hs_stream`]: the sans-IO chunking, reassembly, counter window and reply-block budget
//!   behind those hidden-service messages.
//!
//! What it is not: the HTX transport itself (it uses `betanet-net`'s `dial`/`listen` and
//! streams), the directory of mixnodes, or the end-to-end encryption between a client and its
//! destination (the exit sees the message; applications encrypt end to end above this layer).
//!
//! How it fits: the packet core depends only on crypto primitives (X25519 via aws-lc-rs,
//! HKDF/HMAC-SHA256, ChaCha20); the node reaches other nodes through `betanet-net`; the `betanet` binary runs [`node::Mixnode`] for
//! `betanet mixnode --config FILE` ([`node::MixnodeConfig::from_toml_str`]); clients use
//! [`client::MixClient`], which builds packets with [`packet::build_packet`] over routes chosen
//! by [`select`]. The security argument is in `MIXNET.md`.

pub mod app;
pub mod client;
pub mod crypto;
pub mod delay;
pub mod descriptor;
pub mod error;
pub mod hs_stream;
pub mod hsdir;
pub mod keys;
pub mod node;
pub mod packet;
pub mod replay;
pub mod select;

pub use error::MixError;

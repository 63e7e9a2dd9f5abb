//! # betanet-crypto
//!
//! The only crate of Betanet that touches cryptographic primitives (SPEC §2–§4.6). It is
//! sans-IO: randomness comes in as `&mut (impl RngCore + CryptoRng)`, time as arguments, and
//! nothing here reads a clock, a socket or a file.
//!
//! * [`suite`]: the cipher-suite registry (one place naming every primitive and limit).
//! * [`hash`], [`kdf`] (HKDF-SHA256, `Expand-Label`), [`aead`] (ChaCha20-Poly1305),
//!   [`dh`] (X25519), [`kem`] (ML-KEM-768), [`sign`] (Ed25519), [`ct`] (constant-time
//!   comparison). Hot primitives are backed by aws-lc-rs, which measured fastest on our
//!   machines for X25519, ChaCha20-Poly1305 and ML-KEM-768; Ed25519 uses ed25519-dalek.
//! * [`noise`]: `Noise_XK_25519_ChaChaPoly_SHA256` with typed handshake phases, checked against
//!   the cacophony vectors and against `snow`.
//! * [`handshake`]: the Betanet inner handshake on top of it (SPEC §4.4, PD-3, PD-7): prologue
//!   binding, u16 length prefixes, det-CBOR payloads, identity checks, the ML-KEM-768 hybrid
//!   (on by default), capability selection and the EKM.
//! * [`schedule`]: the key schedule from EKM (SPEC §4.5) and per-direction frame sealing and
//!   opening with the nonce lifecycle and KEY_UPDATE generations (SPEC §4.6).
//! * [`identity`]: PeerID, NodeID, `betanet://` URLs and `bn1:` names (SPEC §3).
//!
//! What it is **not**: no framing (that is `betanet-wire`), no connection state machine (that
//! is `betanet-htx`). Secrets are zeroized on drop and never printed by `Debug`.

pub mod aead;
pub mod ct;
pub mod dh;
mod error;
pub mod handshake;
pub mod hash;
pub mod identity;
pub mod kdf;
pub mod kem;
pub mod keyfile;
pub mod noise;
pub mod schedule;
pub mod sign;
pub mod suite;

pub use error::CryptoError;

//! # betanet-wire
//!
//! Sans-IO byte formats of Betanet 1.2 as profiled by this project (`SPEC.md`): the pieces
//! every other crate parses from or writes to the network.
//!
//! * [`varint`]: QUIC varints (strict and lenient), LEB128, `varstr`; [`b64`]: unpadded
//!   Base64URL; [`reader`]: a never-panicking [`Reader`] and a [`Writer`] extension.
//! * [`frame`]: HTX 1.2 frames (SPEC §4.6/§4.6a): the 10-byte header (also the AEAD
//!   associated data), a bounded streaming [`frame::FrameDecoder`], and the plaintext
//!   payloads (STREAM, WINDOW_UPDATE, PING, KEY_UPDATE, CLOSE, PATH_CONTROL).
//! * [`frame11`]: the opt-in legacy 1.1 framing (SPEC §4.7).
//! * [`ticket_header`]: the `BN-Ticket` request header (SPEC §4.3, RFC 8941 dictionary).
//! * [`l1`]: L1 path headers, segments and congestion feedback (SPEC §5).
//! * [`cbor`]: deterministic CBOR (SPEC §1); [`caps`]: capability messages and selection
//!   (SPEC §4.5); [`bar`]: BAR request/response maps (SPEC §10).
//! * [`error`]: [`WireError`] and the CLOSE-code registry [`ErrorCode`].
//!
//! What it is **not**: no cryptography (frames are carried as ciphertext‖tag; signatures are
//! neither made nor checked here: [`l1::Segment::signed_bytes`] only produces the bytes to
//! sign), no I/O, no clocks, no randomness. Every decoder of peer bytes is total: it returns a
//! typed [`WireError`] (which maps to a CLOSE code with [`WireError::close_code`]) and never
//! panics. The HTX engine (`betanet-htx`) feeds socket bytes into [`frame::FrameDecoder`],
//! opens the ciphertext with `betanet-crypto` using [`frame::FrameHeader::aad`], and decodes
//! the plaintext with [`frame::Payload::decode`]; outgoing frames are built with
//! [`frame::Payload::unsealed`], sealed in place, and finished with
//! [`frame::UnsealedFrame::finish`].

pub mod b64;
pub mod bar;
pub mod caps;
pub mod cbor;
pub mod error;
pub mod frame;
pub mod frame11;
pub mod l1;
pub mod reader;
pub mod ticket_header;
pub mod varint;

pub use error::{ErrorCode, WireError};
pub use reader::{Reader, Writer};

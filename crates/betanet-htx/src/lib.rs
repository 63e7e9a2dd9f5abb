//! # betanet-htx
//!
//! The HTX connection engine (SPEC §4.4–§4.6a), sans-IO in the quinn-proto style: bytes come
//! in through [`Connection::handle_input`], go out through [`Connection::poll_transmit`],
//! time through [`Connection::poll_timeout`] / [`Connection::handle_timeout`], and what the
//! application must know through [`Connection::poll_event`].
//!
//! * Handshake driving for both roles (Noise XK + ML-KEM-768 hybrid from `betanet-crypto`),
//!   with the 10 s handshake timeout and CLOSE 1 on a failed negotiation (PD-7).
//! * Streams: odd ids for the dialer, even for the listener, ids increase on the wire
//!   (skipped local ids are announced with an empty STREAM frame), STREAM offsets, FIN,
//!   in-order reassembly with a 64 KiB gap buffer; stream 0 is padding.
//! * Flow control: connection window 65 535 and stream window 32 768 at start, WINDOW_UPDATE
//!   increments when half the window was consumed by the application, windows doubling up to
//!   [`Config::max_conn_window`] / [`Config::max_stream_window`]. Writes are bounded by
//!   credit: the rest is the caller's backpressure.
//! * KEY_UPDATE after 8 GiB / 2¹⁶ frames / 1 h under a key or on demand; PING with echo, RTT
//!   and a 5 s liveness timeout; cover PINGs at random [10 s, 60 s] ±10 % intervals and
//!   [0, 3 KiB] of padding on stream 0 after a random [200, 1200] ms without data.
//! * CLOSE with codes and the 2 s drain; every peer error maps to its close code (PD-7).
//! * Zero-copy input: [`Connection::take_input_buffer`] lends the receive buffer, the
//!   transport is read straight into it and [`Connection::handle_input_owned`] takes it back;
//!   1.2 frames are split off it and opened in place. [`Stats`] carries the RTT (latest PING
//!   echo sample and the smoothed value).
//! * One-copy output: [`Connection::write`] copies the application's bytes into frame-sized
//!   chunks with room for the header in front and the tag behind; with
//!   [`Connection::poll_transmit_bufs`] each full STREAM frame is built and sealed in place
//!   in its chunk and handed out as its own buffer (small frames packed together) for a
//!   vectored write, then returned with [`Connection::recycle`]. [`Connection::poll_transmit`]
//!   gives the same bytes in one flat buffer.
//!
//! What it is **not**: no sockets, no tokio, no clock and no RNG reads (a ChaCha20 generator is
//! seeded from the caller's CSPRNG at construction). Frame formats live in `betanet-wire`,
//! keys, nonces and the handshake in `betanet-crypto`; `betanet-net` drives this engine over
//! TCP and TLS + HTTP/2.

mod config;
mod connection;
mod error;
mod stream;

pub use config::{
    Config, CoverConfig, Framing, GAP_LIMIT, INITIAL_CONN_WINDOW, INITIAL_STREAM_WINDOW,
};
pub use connection::{Connection, Event, Stats};
pub use error::{ConnectionError, ProtocolViolation, SetupError, StreamError};
pub use stream::StreamId;

pub use betanet_crypto::handshake::{HandshakeConfig, PqMode};
pub use betanet_crypto::schedule::Role;
pub use betanet_wire::ErrorCode;

//! Connection configuration.

use std::time::Duration;

use betanet_crypto::suite::{REKEY_BYTES, REKEY_FRAMES, REKEY_SECS};
use betanet_wire::frame::MAX_STREAM_DATA;

/// Initial connection window every HTX 1.2 peer starts with (SPEC §4.6).
pub const INITIAL_CONN_WINDOW: u64 = 65_535;
/// Initial per-stream window every HTX 1.2 peer starts with (SPEC §4.6).
pub const INITIAL_STREAM_WINDOW: u64 = 32_768;
/// Out-of-order bytes a receiver buffers per stream (SPEC §4.6).
pub const GAP_LIMIT: u64 = 64 * 1024;

/// The frame layout on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// HTX 1.2 frames (SPEC §4.6), the default.
    #[default]
    V12,
    /// Legacy 1.1 framing (SPEC §4.7, `tcp11`, opt-in): same keys and nonces, different header
    /// and associated data. PING echoes are recognised by their token, and stream resets are
    /// not sent (1.1 CLOSE has no stream id).
    V11,
}

/// Cover-traffic behaviour (SPEC §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct CoverConfig {
    /// Send PINGs at random intervals (never periodic).
    pub ping: bool,
    /// Bounds of the PING interval before jitter (default [10 s, 60 s]).
    pub ping_interval: (Duration, Duration),
    /// Relative jitter applied on top (default 0.10 = ±10 %).
    pub ping_jitter: f64,
    /// Send padding on stream 0 after a random idle delay.
    pub padding: bool,
    /// Bounds of the idle delay (default [200 ms, 1200 ms]).
    pub padding_idle: (Duration, Duration),
    /// Largest padding burst in bytes (default 3072).
    pub padding_max: usize,
}

impl Default for CoverConfig {
    fn default() -> Self {
        CoverConfig {
            ping: true,
            ping_interval: (Duration::from_secs(10), Duration::from_secs(60)),
            ping_jitter: 0.10,
            padding: true,
            padding_idle: (Duration::from_millis(200), Duration::from_millis(1200)),
            padding_max: 3 * 1024,
        }
    }
}

impl CoverConfig {
    /// No cover traffic at all (benchmarks, tests of other features).
    #[must_use]
    pub fn off() -> Self {
        CoverConfig {
            ping: false,
            padding: false,
            ..CoverConfig::default()
        }
    }
}

/// Tunables of one connection. The defaults follow SPEC §4.6/§4.6a.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Largest connection receive window we grow to (default 16 MiB; SPEC: ≥ 256 KiB).
    pub max_conn_window: u64,
    /// Largest per-stream receive window we grow to (default 4 MiB).
    pub max_stream_window: u64,
    /// Peer-opened streams alive at once; further ones are reset with `POLICY_REJECTED`.
    pub max_peer_streams: usize,
    /// Largest STREAM data per frame (default and maximum 65 498).
    pub max_frame_data: usize,
    /// KEY_UPDATE after this many plaintext bytes under one key (8 GiB).
    pub rekey_bytes: u64,
    /// KEY_UPDATE after this many frames under one key (2¹⁶).
    pub rekey_frames: u64,
    /// KEY_UPDATE after this long under one key (1 h).
    pub rekey_interval: Duration,
    /// Time allowed for the handshake (10 s).
    pub handshake_timeout: Duration,
    /// Time allowed for a PING echo (5 s).
    pub ping_timeout: Duration,
    /// Drain period after a connection-level CLOSE (2 s).
    pub drain_timeout: Duration,
    /// Cover traffic.
    pub cover: CoverConfig,
    /// Frame layout (1.2 unless the legacy `tcp11` profile was asked for).
    pub framing: Framing,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_conn_window: 16 << 20,
            max_stream_window: 4 << 20,
            max_peer_streams: 4096,
            max_frame_data: MAX_STREAM_DATA,
            rekey_bytes: REKEY_BYTES,
            rekey_frames: REKEY_FRAMES,
            rekey_interval: Duration::from_secs(REKEY_SECS),
            handshake_timeout: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
            cover: CoverConfig::default(),
            framing: Framing::V12,
        }
    }
}

impl Config {
    /// `max_frame_data` clamped to what a frame can carry (at least 1).
    pub(crate) fn frame_data(&self) -> usize {
        self.max_frame_data.clamp(1, MAX_STREAM_DATA)
    }
}

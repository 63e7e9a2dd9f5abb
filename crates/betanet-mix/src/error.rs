//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the mix layer.
///
/// Peer misbehaviour (bad packets), local misuse (bad arguments) and local I/O are separate
/// variants so a driver can count and log them differently.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MixError {
    /// The packet is not one of the supported fixed sizes.
    #[error("packet length {0} is not a supported packet size (1024 or 2048 bytes)")]
    BadLength(usize),
    /// The packet's version byte is unknown.
    #[error("unsupported mix packet version {0}")]
    BadVersion(u8),
    /// The packet names a key epoch this node holds no key for (expired or from the future).
    #[error("no mix key for key epoch {0}")]
    UnknownEpoch(u32),
    /// X25519 failed: the ephemeral key is invalid or of low order.
    #[error("x25519 key agreement failed (invalid or low-order ephemeral key)")]
    KeyAgreement,
    /// The routing header's MAC did not verify: the header was modified or not meant for us.
    #[error("routing header MAC mismatch (modified header or wrong key)")]
    HeaderMac,
    /// The decrypted routing slot carries an unknown command.
    #[error("unknown routing command {0}")]
    UnknownCommand(u8),
    /// The payload failed its integrity check at the exit: it was tagged or corrupted.
    #[error("payload integrity check failed (tagged or corrupted payload)")]
    Tagged,
    /// The decrypted payload length field is out of range.
    #[error("payload length field {len} exceeds the capacity {max}")]
    BadPayloadLength {
        /// Length found.
        len: usize,
        /// Capacity of the packet size.
        max: usize,
    },
    /// The caller's message does not fit into one packet.
    #[error("message of {len} bytes does not fit a packet (max {max}); split it first")]
    MessageTooLong {
        /// Message length.
        len: usize,
        /// Capacity of the packet size.
        max: usize,
    },
    /// The route has an unsupported number of hops.
    #[error("route has {0} hops; the packet format supports 1..=5")]
    PathLength(usize),
    /// The packet was seen before (replay filter hit).
    #[error("replayed packet dropped")]
    Replay,
    /// A node address could not be decoded.
    #[error("malformed node address encoding")]
    BadAddress,
    /// Not enough eligible mixnodes for the requested route.
    #[error("not enough eligible mixnodes: need {need}, have {have}")]
    NotEnoughNodes {
        /// Hops requested.
        need: usize,
        /// Eligible nodes.
        have: usize,
    },
    /// AS diversity was required but no eligible hop lies outside both endpoints' AS groups.
    #[error("no eligible mixnode outside both endpoints' AS groups")]
    NoAsDiversity,
    /// Delay configuration out of range.
    #[error("invalid delay configuration: {0}")]
    BadDelayConfig(&'static str),
    /// A persisted file (replay filter or key store) is corrupt.
    #[error(
        "persisted mix state at {path} is corrupt ({what}); delete it only if the mix key is rotated too"
    )]
    CorruptState {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// Local I/O failure on persisted state.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A SURB was already used or is unknown to this client.
    #[error("unknown or already used reply block")]
    UnknownSurb,
    /// A hidden-service descriptor failed verification.
    #[error("hidden-service descriptor invalid: {0}")]
    BadDescriptor(&'static str),
    /// The mixnode configuration file could not be parsed.
    #[error("invalid mixnode configuration: {0}")]
    Config(#[source] toml::de::Error),
    /// A configuration value is out of range.
    #[error("invalid mixnode configuration value for `{0}`")]
    ConfigValue(&'static str),
    /// Internal failure of a crypto primitive (not caused by the peer).
    #[error("internal crypto failure")]
    Crypto,
    /// A hidden-service stream chunk is malformed.
    #[error("malformed hidden-service chunk: {0}")]
    BadChunk(&'static str),
    /// A hidden-service stream chunk arrived twice.
    #[error("duplicate chunk {seq} of message {msg_id}")]
    DuplicateChunk {
        /// Message id.
        msg_id: u32,
        /// Chunk index.
        seq: u32,
    },
    /// A hidden-service message did not complete in time (chunks lost or the peer is gone).
    #[error(
        "hidden-service message timed out with {have} of {total} chunks received (total 0 = none yet)"
    )]
    StreamTimeout {
        /// Chunks received.
        have: usize,
        /// Chunks in the message (0 if no chunk arrived).
        total: usize,
    },
    /// A hidden-service directory message is malformed.
    #[error("malformed hidden-service directory message: {0}")]
    BadHsDir(&'static str),
    /// Every responsible directory answered and none holds a valid descriptor for the id.
    #[error("no directory holds a valid descriptor for this service id ({asked} asked)")]
    DescriptorNotFound {
        /// Directory nodes asked.
        asked: usize,
    },
    /// Directory nodes did not answer in time.
    #[error("descriptor lookup timed out ({answered} of {asked} directories answered)")]
    LookupTimeout {
        /// Directory nodes asked.
        asked: usize,
        /// Answers received.
        answered: usize,
    },
    /// The client cannot hand packets to this first hop with its first-hop setting
    /// ([`crate::client::FirstHop`]): no verified identity for HTX, the HTX handshake failed,
    /// or the address does not answer as a length-prefixed mix ingress (e.g. it is an HTX port).
    #[error("first hop {addr}: {reason}")]
    FirstHop {
        /// The first hop's address.
        addr: std::net::SocketAddr,
        /// What is wrong and what to do about it.
        reason: String,
    },
}

impl MixError {
    /// Helper to wrap an I/O error with its path.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MixError::Io {
            path: path.into(),
            source,
        }
    }
}

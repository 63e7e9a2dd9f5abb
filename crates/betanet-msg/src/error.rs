//! The crate's error type.

use std::io;

/// Everything that can go wrong in `betanet-msg`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// A peer sent bytes that do not decode (frame, packify value, body, chunk).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure failed to decode.
        what: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The body CRC-32 in the header does not match the body.
    #[error("checksum mismatch (header {expected:#010x}, body {actual:#010x})")]
    Checksum {
        /// CRC from the header.
        expected: u32,
        /// CRC computed over the body.
        actual: u32,
    },
    /// A message is too large for the frame format or a configured limit.
    #[error(
        "message too large: {len} bytes exceeds the limit of {limit}; enable chunking or send less"
    )]
    TooLarge {
        /// Offending length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Authentication of a received message failed.
    #[error("authentication failed: {0}")]
    Auth(&'static str),
    /// Decryption of a received message failed.
    #[error("decryption failed: {0}")]
    Decrypt(&'static str),
    /// A plugin was used without the data it needs (e.g. no peer public key).
    #[error("plugin misconfigured: {0}")]
    Plugin(&'static str),
    /// The remote side answered a request with an error-type message.
    #[error("remote returned {kind:?}: {content}")]
    Remote {
        /// The error message type (ERROR, AUTH_ERROR, NOT_FOUND, NOT_PERMITTED).
        kind: crate::MessageType,
        /// The error content as (lossy) text.
        content: String,
    },
    /// A request did not get an answer in time.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The connection is closed (or was never opened).
    #[error("connection closed")]
    Closed,
    /// Not connected to the requested server.
    #[error("not connected to {0}")]
    NotConnected(std::net::SocketAddr),
    /// Socket-level failure.
    #[error("i/o error")]
    Io(#[from] io::Error),
}

/// Shorthand result type.
pub type Result<T, E = MsgError> = std::result::Result<T, E>;

pub(crate) fn malformed(what: &'static str, detail: &'static str) -> MsgError {
    MsgError::Malformed { what, detail }
}

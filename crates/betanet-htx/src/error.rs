//! The crate's error types.
//!
//! [`ConnectionError`] says why a connection ended (and which CLOSE code was on the wire);
//! [`StreamError`] is local misuse of the stream API or a stream that can no longer be used.

use betanet_crypto::CryptoError;
use betanet_wire::{ErrorCode, WireError};

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer sent a CLOSE on stream 0.
    #[error("closed by peer: {code}{}", fmt_reason(reason))]
    PeerClosed {
        /// The code the peer sent.
        code: ErrorCode,
        /// The peer's reason (lossily decoded, never trusted).
        reason: String,
    },
    /// We closed the connection (the application asked for it, or the peer misbehaved and we
    /// sent this code).
    #[error("closed locally: {code}{}", fmt_reason(reason))]
    LocallyClosed {
        /// The code we sent (or would have sent before keys existed).
        code: ErrorCode,
        /// Our reason.
        reason: String,
    },
    /// The handshake failed before keys existed (no CLOSE frame is possible, PD-7).
    #[error("handshake failed: {code}: {reason}")]
    HandshakeFailed {
        /// The code that describes the failure.
        code: ErrorCode,
        /// What went wrong.
        reason: String,
    },
    /// The handshake did not complete within the handshake timeout (10 s, PD-7).
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A PING was not echoed within the ping timeout (5 s): the peer is considered dead.
    #[error("peer did not answer a PING in time (dead peer)")]
    PingTimeout,
    /// The underlying transport ended without a CLOSE.
    #[error("transport closed without a CLOSE frame")]
    TransportClosed,
}

fn fmt_reason(r: &str) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(": {r}")
    }
}

impl ConnectionError {
    /// The wire close code that best describes this end.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnectionError::PeerClosed { code, .. }
            | ConnectionError::LocallyClosed { code, .. }
            | ConnectionError::HandshakeFailed { code, .. } => *code,
            ConnectionError::HandshakeTimeout
            | ConnectionError::PingTimeout
            | ConnectionError::TransportClosed => ErrorCode::InternalError,
        }
    }

    /// Whether this was an orderly close (code 0).
    #[must_use]
    pub fn is_ok_close(&self) -> bool {
        matches!(
            self,
            ConnectionError::PeerClosed {
                code: ErrorCode::Ok,
                ..
            } | ConnectionError::LocallyClosed {
                code: ErrorCode::Ok,
                ..
            }
        )
    }
}

/// A protocol violation by the peer, with the CLOSE code it maps to (PD-7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct ProtocolViolation {
    /// The close code to send.
    pub code: ErrorCode,
    /// Description (ours, not the peer's bytes).
    pub reason: &'static str,
}

impl ProtocolViolation {
    pub(crate) fn malformed(reason: &'static str) -> Self {
        ProtocolViolation {
            code: ErrorCode::MalformedFrame,
            reason,
        }
    }
    pub(crate) fn flow(reason: &'static str) -> Self {
        ProtocolViolation {
            code: ErrorCode::FlowControlViolation,
            reason,
        }
    }
}

impl From<&WireError> for ProtocolViolation {
    fn from(e: &WireError) -> Self {
        ProtocolViolation {
            code: e.close_code(),
            reason: "frame failed to decode",
        }
    }
}

impl From<&CryptoError> for ProtocolViolation {
    fn from(e: &CryptoError) -> Self {
        ProtocolViolation {
            code: e.close_code(),
            reason: "frame failed to authenticate",
        }
    }
}

/// Errors of the stream API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No such stream (never opened, or already fully closed and forgotten).
    #[error("unknown stream {0}")]
    UnknownStream(u32),
    /// The send side was already finished with [`crate::Connection::finish`].
    #[error("stream {0} is finished for writing")]
    Finished(u32),
    /// The stream was reset (by us or by the peer) with this code.
    #[error("stream {id} was reset: {code}")]
    Reset {
        /// The stream.
        id: u32,
        /// The reset code.
        code: ErrorCode,
    },
    /// The connection is not established (handshake running) or is closing/closed.
    #[error("connection is not open")]
    NotOpen,
    /// Every stream id of our parity has been used.
    #[error("stream ids exhausted")]
    IdsExhausted,
}

/// Errors while creating a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The handshake could not start (bad key, KEM failure).
    #[error("handshake setup failed: {0}")]
    Crypto(#[from] CryptoError),
}

//! The crate's error type.

use betanet_htx::{ConnectionError, ErrorCode, StreamError};

/// Everything that can go wrong in `betanet-net`. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The TCP connection was refused.
    #[error("connection to {addr} refused: is a Betanet node listening there?")]
    Refused {
        /// The address dialed.
        addr: String,
    },
    /// Connecting, the handshake or an operation did not finish in time.
    #[error("{what} timed out after {secs} s: check the address and that the peer is alive")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit in seconds.
        secs: u64,
    },
    /// The peer did not prove the key we dialed (or dropped us during the handshake).
    #[error(
        "authentication failed: the server did not prove the public key you gave ({reason}); \
         check the server's public key"
    )]
    AuthFailed {
        /// Details.
        reason: String,
    },
    /// The connection ended (or could not be established) for this reason.
    #[error("connection failed: {0}")]
    Connection(#[from] ConnectionError),
    /// A stream operation failed.
    #[error("stream: {0}")]
    Stream(#[from] StreamError),
    /// The TLS layer failed (certificate, handshake, exporter).
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP/2 carriage failed or the server answered like a plain web site.
    #[error("HTTP/2 carriage: {0}")]
    Carriage(String),
    /// Origin calibration refused the connection (policy REQUIRED) or could not run.
    #[error("calibration: {0}")]
    Calibration(String),
    /// The QUIC + HTTP/3 carriage failed or the server answered like a plain web site.
    #[error("QUIC/HTTP/3 carriage: {0}")]
    Quic(String),
    /// A key, certificate or data file could not be read or written.
    #[error("{what} {path}: {source}")]
    File {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl NetError {
    /// The HTX close code that best describes this error, when there is one.
    #[must_use]
    pub fn close_code(&self) -> Option<ErrorCode> {
        match self {
            NetError::AuthFailed { .. } => Some(ErrorCode::AuthFailed),
            NetError::Connection(e) => Some(e.code()),
            _ => None,
        }
    }

    pub(crate) fn from_handshake(e: ConnectionError) -> NetError {
        match e {
            ConnectionError::HandshakeFailed {
                code: ErrorCode::AuthFailed,
                reason,
            } => NetError::AuthFailed { reason },
            ConnectionError::HandshakeTimeout => NetError::Timeout {
                what: "handshake",
                secs: 10,
            },
            other => NetError::Connection(other),
        }
    }
}

//! The crate's error type.

use betanet_wire::ErrorCode;

/// Everything that can go wrong in `betanet-crypto`.
///
/// Peer misbehaviour (bad handshake messages, failed authentication) and local misuse (an
/// exhausted nonce counter, a bad key file) are separate variants; [`CryptoError::close_code`]
/// maps each to the HTX CLOSE code the peer should see.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An AEAD tag did not verify.
    #[error("authentication failed (bad AEAD tag)")]
    Decrypt,
    /// A frame opened under a key generation older than the previous one.
    #[error("frame protected with a retired key generation")]
    OldKeyFrame,
    /// The per-direction frame counter would wrap; the connection must rekey or close.
    #[error("nonce counter exhausted; a KEY_UPDATE was required")]
    NonceExhausted,
    /// A Diffie-Hellman result was all zero (low-order peer key).
    #[error("X25519 with a low-order public key")]
    LowOrderPoint,
    /// A public key has the wrong length or encoding.
    #[error("invalid {kind} public key")]
    InvalidPublicKey {
        /// Which kind of key.
        kind: &'static str,
    },
    /// An Ed25519 signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A handshake message is malformed or out of place.
    #[error("malformed handshake message: {0}")]
    HandshakeMalformed(&'static str),
    /// The peer's static key does not match the identity it presented or the one we expected.
    #[error("peer authentication failed: {0}")]
    AuthFailed(&'static str),
    /// The peer refused or omitted the post-quantum key agreement when it was required.
    #[error("post-quantum key agreement: {0}")]
    PqPolicy(&'static str),
    /// No common L2 protocol id.
    #[error("no common L2 protocol id")]
    VersionNegotiation,
    /// A handshake payload is not valid deterministic CBOR or lacks a required field.
    #[error("handshake payload: {0}")]
    Payload(String),
    /// An identifier string (`betanet://`, `bn1:`, PeerID hex) is malformed.
    #[error("invalid identifier: {0}")]
    InvalidId(&'static str),
    /// A message exceeds the Noise or frame size limit.
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    /// An output buffer or requested length is invalid (local misuse).
    #[error("invalid length requested from the KDF")]
    InvalidLength,
    /// The underlying cryptographic library failed (internal).
    #[error("cryptographic library failure")]
    Internal,
}

impl CryptoError {
    /// The HTX CLOSE code for this error (SPEC §4.6).
    pub fn close_code(&self) -> ErrorCode {
        match self {
            CryptoError::Decrypt | CryptoError::HandshakeMalformed(_) | CryptoError::Payload(_) => {
                ErrorCode::MalformedFrame
            }
            CryptoError::OldKeyFrame => ErrorCode::OldKeyFrame,
            CryptoError::AuthFailed(_)
            | CryptoError::BadSignature
            | CryptoError::LowOrderPoint
            | CryptoError::InvalidPublicKey { .. } => ErrorCode::AuthFailed,
            CryptoError::PqPolicy(_) => ErrorCode::PolicyRejected,
            CryptoError::VersionNegotiation => ErrorCode::VersionNegotiationFailed,
            CryptoError::TooLarge(_) => ErrorCode::MalformedFrame,
            CryptoError::InvalidId(_) => ErrorCode::InternalError,
            CryptoError::NonceExhausted | CryptoError::InvalidLength | CryptoError::Internal => {
                ErrorCode::InternalError
            }
        }
    }
}

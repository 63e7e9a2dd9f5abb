//! The crate's error type ([`WireError`]) and the registry of wire close codes
//! ([`ErrorCode`], SPEC §4.6).

use core::fmt;

/// Everything that can go wrong while encoding or decoding Betanet byte formats.
///
/// Variants describe *peer* misbehaviour (malformed input) unless their documentation says
/// they are local misuse (a value that cannot be encoded). Map a decoding error to the
/// close code to send with [`WireError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before a complete field: `need` bytes were required, `have` remained.
    #[error("truncated input: needed {need} bytes, {have} available")]
    Truncated {
        /// Bytes the field needed.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// An encoding that is valid but not the canonical (shortest / strict) one.
    #[error("non-canonical encoding of {what}")]
    NonCanonical {
        /// Which field or form was non-canonical.
        what: &'static str,
    },
    /// A number does not fit its field (varint above 2^62-1, LEB128 overflow, u24 overflow,
    /// a `varstr` longer than 65 535 bytes, ...).
    #[error("value out of range for {what}")]
    OutOfRange {
        /// Which field overflowed.
        what: &'static str,
    },
    /// An HTX frame whose `Len` (plus the 3 length bytes) exceeds 65 535, or a payload too
    /// large to fit one frame.
    #[error("frame too large: length field {len}")]
    FrameTooLarge {
        /// The offending `Len` value (or required length when encoding).
        len: usize,
    },
    /// An HTX frame whose `Len` is below the minimum (header fields + tag).
    #[error("frame too short: length field {len}")]
    FrameTooShort {
        /// The offending `Len` value.
        len: usize,
    },
    /// A frame type this implementation does not know.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// Reserved flag bits set (STREAM flags, L1 header flags, ...).
    #[error("reserved flag bits set: 0x{0:02x}")]
    BadFlags(u8),
    /// The header `AAD` field has a value the profile forbids (anything but 0, or 1 on PING).
    #[error("invalid header AAD field 0x{aad:04x} for frame type 0x{ty:02x}")]
    BadAad {
        /// Frame type byte.
        ty: u8,
        /// The AAD field value.
        aad: u16,
    },
    /// An enumerated field held a value outside its set (WINDOW_UPDATE scope, L1 type, ...).
    #[error("invalid value {value} for {what}")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The value received.
        value: u64,
    },
    /// Bytes left over after a structure that must fill its input exactly.
    #[error("{count} trailing bytes after a complete structure")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// Text that is not valid UTF-8 where UTF-8 is required.
    #[error("invalid UTF-8 in {what}")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// Base64URL input with padding, characters outside the alphabet, or non-zero trailing
    /// bits.
    #[error("invalid base64url (no padding allowed)")]
    InvalidBase64,
    /// A `BN-Ticket` header that does not follow SPEC §4.3 (close code `L2_TICKET_INVALID`).
    #[error("invalid BN-Ticket header: {0}")]
    InvalidTicketHeader(TicketHeaderError),
    /// A BAR request or response (SPEC §10) with a missing/mistyped field.
    #[error("invalid BAR message: {0}")]
    Bar(BarError),
    /// Deterministic-CBOR decoding failed (non-canonical or malformed input).
    #[error("CBOR: {0}")]
    Cbor(#[from] crate::cbor::CborError),
    /// A streaming frame decoder was fed more bytes than its buffer bound (local misuse:
    /// the caller must drain frames before feeding more).
    #[error("frame decoder buffer full ({capacity} bytes)")]
    BufferFull {
        /// The configured bound.
        capacity: usize,
    },
}

/// Why a `BN-Ticket` header was rejected (detail of [`WireError::InvalidTicketHeader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketHeaderError {
    /// Header name + value longer than 256 bytes.
    #[error("header longer than 256 bytes")]
    TooLong,
    /// Not a syntactically valid RFC 8941 dictionary.
    #[error("not an RFC 8941 dictionary")]
    Syntax,
    /// A key appears twice.
    #[error("duplicate key")]
    DuplicateKey,
    /// A key other than `v`, `tok`, `ctx`.
    #[error("unknown key")]
    UnknownKey,
    /// A member carries parameters or is an inner list.
    #[error("member has parameters or is an inner list")]
    Shape,
    /// `v` missing or not the token `v1`.
    #[error("bad or missing version")]
    Version,
    /// `tok` missing, not a string/token, not 160 base64url characters.
    #[error("bad or missing tok")]
    Tok,
    /// `ctx` not 1..=32 characters of `[A-Za-z0-9_-]`.
    #[error("bad ctx")]
    Ctx,
}

/// Why a BAR message (SPEC §10) was rejected (detail of [`WireError::Bar`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarError {
    /// The top-level value is not a map.
    #[error("not a map")]
    NotAMap,
    /// A required key is missing.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A field has the wrong CBOR type or is out of range.
    #[error("field {0:?} has the wrong type")]
    WrongType(&'static str),
    /// A header name that is not lowercase (or is not text).
    #[error("header name is not lowercase")]
    HeaderNameNotLowercase,
    /// A header name appears twice (only possible after case folding by a sender bug).
    #[error("duplicate header name")]
    DuplicateHeader,
}

impl WireError {
    /// The SPEC §4.6 close code a receiver sends when a peer's bytes fail to decode with this
    /// error. Almost every decoding failure is `MALFORMED_FRAME` (7); a bad `BN-Ticket` header
    /// is [`ErrorCode::L2_TICKET_INVALID`]; a local buffer bound is `INTERNAL_ERROR` (8).
    #[must_use]
    pub fn close_code(&self) -> ErrorCode {
        match self {
            WireError::InvalidTicketHeader(_) => ErrorCode::L2_TICKET_INVALID,
            WireError::BufferFull { .. } => ErrorCode::InternalError,
            _ => ErrorCode::MalformedFrame,
        }
    }
}

impl From<TicketHeaderError> for WireError {
    fn from(e: TicketHeaderError) -> Self {
        WireError::InvalidTicketHeader(e)
    }
}

impl From<BarError> for WireError {
    fn from(e: BarError) -> Self {
        WireError::Bar(e)
    }
}

/// A CLOSE-frame error code (u16, SPEC §4.6).
///
/// `0..=10` are the registered codes; `0x8000..=0xFFFF` is private use (this profile
/// assigns `0x8001` to `L2_TICKET_INVALID`, see [`ErrorCode::L2_TICKET_INVALID`]); anything
/// else decodes as [`ErrorCode::Unknown`] so a receiver can still log it. Build values with
/// [`ErrorCode::from_u16`] to get the canonical variant for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 0: orderly close, no error.
    Ok,
    /// 1: no common L2 version/capability.
    VersionNegotiationFailed,
    /// 2: handshake authentication failed.
    AuthFailed,
    /// 3: an L1 path or segment failed validation.
    PathInvalid,
    /// 4: replayed message.
    Replay,
    /// 5: a sender exceeded its flow-control credit.
    FlowControlViolation,
    /// 6: a frame under a retired key generation.
    OldKeyFrame,
    /// 7: a frame that cannot be parsed or authenticated.
    MalformedFrame,
    /// 8: local failure.
    InternalError,
    /// 9: refused by local policy.
    PolicyRejected,
    /// 10: a feature the peer asked for is not supported.
    UnsupportedFeature,
    /// `0x8001` (private use): the `BN-Ticket` request header was invalid (SPEC §4.3).
    TicketInvalid,
    /// Any other private-use code (`0x8000..=0xFFFF`).
    Private(u16),
    /// A code outside the registry and the private range (`11..=0x7FFF`).
    Unknown(u16),
}

impl ErrorCode {
    /// `L2_TICKET_INVALID` (SPEC §4.3) as this profile encodes it: private-use code `0x8001`.
    pub const L2_TICKET_INVALID: ErrorCode = ErrorCode::TicketInvalid;
    /// Numeric value of [`ErrorCode::L2_TICKET_INVALID`].
    pub const L2_TICKET_INVALID_CODE: u16 = 0x8001;

    /// The canonical variant for a wire value.
    #[must_use]
    pub fn from_u16(v: u16) -> ErrorCode {
        match v {
            0 => ErrorCode::Ok,
            1 => ErrorCode::VersionNegotiationFailed,
            2 => ErrorCode::AuthFailed,
            3 => ErrorCode::PathInvalid,
            4 => ErrorCode::Replay,
            5 => ErrorCode::FlowControlViolation,
            6 => ErrorCode::OldKeyFrame,
            7 => ErrorCode::MalformedFrame,
            8 => ErrorCode::InternalError,
            9 => ErrorCode::PolicyRejected,
            10 => ErrorCode::UnsupportedFeature,
            Self::L2_TICKET_INVALID_CODE => ErrorCode::TicketInvalid,
            0x8000..=0xFFFF => ErrorCode::Private(v),
            _ => ErrorCode::Unknown(v),
        }
    }

    /// The wire value.
    #[must_use]
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Ok => 0,
            ErrorCode::VersionNegotiationFailed => 1,
            ErrorCode::AuthFailed => 2,
            ErrorCode::PathInvalid => 3,
            ErrorCode::Replay => 4,
            ErrorCode::FlowControlViolation => 5,
            ErrorCode::OldKeyFrame => 6,
            ErrorCode::MalformedFrame => 7,
            ErrorCode::InternalError => 8,
            ErrorCode::PolicyRejected => 9,
            ErrorCode::UnsupportedFeature => 10,
            ErrorCode::TicketInvalid => Self::L2_TICKET_INVALID_CODE,
            ErrorCode::Private(v) | ErrorCode::Unknown(v) => v,
        }
    }

    /// The registry name (`"MALFORMED_FRAME"`, ...); `"PRIVATE"` / `"UNKNOWN"` otherwise.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Ok => "OK",
            ErrorCode::VersionNegotiationFailed => "VERSION_NEGOTIATION_FAILED",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::PathInvalid => "PATH_INVALID",
            ErrorCode::Replay => "REPLAY",
            ErrorCode::FlowControlViolation => "FLOW_CONTROL_VIOLATION",
            ErrorCode::OldKeyFrame => "OLD_KEY_FRAME",
            ErrorCode::MalformedFrame => "MALFORMED_FRAME",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::PolicyRejected => "POLICY_REJECTED",
            ErrorCode::UnsupportedFeature => "UNSUPPORTED_FEATURE",
            ErrorCode::TicketInvalid => "L2_TICKET_INVALID",
            ErrorCode::Private(_) => "PRIVATE",
            ErrorCode::Unknown(_) => "UNKNOWN",
        }
    }

    /// Looks a registry name up (the inverse of [`ErrorCode::name`] for named codes).
    #[must_use]
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        (0..=10u16)
            .chain(core::iter::once(Self::L2_TICKET_INVALID_CODE))
            .map(ErrorCode::from_u16)
            .find(|c| c.name() == name)
    }
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> Self {
        ErrorCode::from_u16(v)
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> Self {
        c.to_u16()
    }
}

impl From<&WireError> for ErrorCode {
    fn from(e: &WireError) -> Self {
        e.close_code()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_values() {
        assert_eq!(ErrorCode::Ok.to_u16(), 0);
        assert_eq!(ErrorCode::MalformedFrame.to_u16(), 7);
        assert_eq!(ErrorCode::UnsupportedFeature.to_u16(), 10);
        assert_eq!(ErrorCode::from_u16(5), ErrorCode::FlowControlViolation);
        assert_eq!(ErrorCode::from_u16(11), ErrorCode::Unknown(11));
        assert_eq!(ErrorCode::from_u16(0x7FFF), ErrorCode::Unknown(0x7FFF));
        assert_eq!(ErrorCode::from_u16(0x8000), ErrorCode::Private(0x8000));
        assert_eq!(ErrorCode::from_u16(0x8001), ErrorCode::L2_TICKET_INVALID);
        assert_eq!(ErrorCode::from_u16(0xFFFF), ErrorCode::Private(0xFFFF));
        assert_eq!(ErrorCode::from_name("REPLAY"), Some(ErrorCode::Replay));
        assert_eq!(
            ErrorCode::from_name("L2_TICKET_INVALID"),
            Some(ErrorCode::TicketInvalid)
        );
        assert_eq!(ErrorCode::from_name("PRIVATE"), None);
        assert_eq!(ErrorCode::AuthFailed.to_string(), "AUTH_FAILED (2)");
    }

    #[test]
    fn every_u16_round_trips() {
        for v in 0..=u16::MAX {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
    }

    #[test]
    fn close_codes() {
        assert_eq!(
            WireError::Truncated { need: 2, have: 1 }.close_code(),
            ErrorCode::MalformedFrame
        );
        assert_eq!(WireError::UnknownFrameType(9).close_code().to_u16(), 7);
        assert_eq!(
            WireError::InvalidTicketHeader(TicketHeaderError::Tok)
                .close_code()
                .to_u16(),
            0x8001
        );
    }
}

//! The `BN-Ticket` request header (SPEC §4.3, PD-1/PD-2).
//!
//! The value is an RFC 8941 dictionary:
//!
//! ```text
//! BN-Ticket: v=v1, tok="<160 base64url chars>", ctx="r7"
//! ```
//!
//! * `v`: the token `v1` (required).
//! * `tok`: 160 unpadded Base64URL characters decoding to 120 bytes (required). **Form:** an
//!   sf-string (quoted) is what [`BnTicket::to_header_value`] emits, because RFC 8941 tokens
//!   cannot start with a digit (or `-`/`_`) while a base64url text can; a conforming
//!   serializer handed a string therefore produces the quoted form. The parser also accepts
//!   the bare sf-token form (possible only when the text starts with a letter), so a peer
//!   whose serializer chose a token still interoperates. Byte sequences (`:...:`) are not
//!   accepted.
//! * `ctx`: optional, 1..=32 characters of `[A-Za-z0-9_-]`, as sf-string (emitted) or sf-token
//!   (accepted). An empty `ctx` is rejected: omit the key instead.
//! * `"BN-Ticket".len() + value.len() <= 256` bytes, checked before parsing.
//! * Unknown keys, duplicate keys, parameters on any member, inner lists: rejected.
//!
//! Every failure is [`WireError::InvalidTicketHeader`], whose close code is
//! [`ErrorCode::L2_TICKET_INVALID`](crate::ErrorCode::L2_TICKET_INVALID).
//! The parser runs in RFC 8941 mode (no dates or display strings).
//! No cryptography here: deriving and checking `tok` (constant-time) is the HTX layer's job.

use core::fmt;
use std::convert::Infallible;

use sfv::visitor::{DictionaryVisitor, EntryVisitor};
use sfv::{BareItem, DictSerializer, KeyRef, ListEntry, Parser, StringRef, TokenRef};

use crate::b64;
use crate::error::{TicketHeaderError as E, WireError};

/// The header name.
pub const HEADER_NAME: &str = "BN-Ticket";
/// Decoded `tok` length.
pub const TOK_LEN: usize = 120;
/// Encoded `tok` length (unpadded Base64URL of 120 bytes).
pub const TOK_B64_LEN: usize = 160;
/// Longest `ctx`.
pub const MAX_CTX_LEN: usize = 32;
/// Limit on header name + value bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// The only version.
pub const VERSION: &str = "v1";

/// A parsed `BN-Ticket` header value. `Debug` redacts `tok`.
#[derive(Clone, PartialEq, Eq)]
pub struct BnTicket {
    /// The 120-byte ticket (`HKDF-Expand(exporter_secret, "BN-Ticket v1" ‖ ctx, 120)`).
    pub tok: [u8; TOK_LEN],
    /// Per-request context (`r<counter>` from our senders).
    pub ctx: Option<String>,
}

impl fmt::Debug for BnTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BnTicket")
            .field("tok", &"<redacted>")
            .field("ctx", &self.ctx)
            .finish()
    }
}

/// Checks a `ctx` value: 1..=32 characters of `[A-Za-z0-9_-]`.
pub fn validate_ctx(ctx: &str) -> Result<(), WireError> {
    let ok = (1..=MAX_CTX_LEN).contains(&ctx.len())
        && ctx
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(E::Ctx.into()) }
}

/// Dictionary visitor that records whether a key repeats (RFC 8941 would silently keep the
/// last one; we reject).
struct DupCheck {
    dict: sfv::Dictionary,
    dup: bool,
}

impl<'de> DictionaryVisitor<'de> for DupCheck {
    type Out = DupCheck;
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        if self.dict.contains_key(key.as_str()) {
            self.dup = true;
        }
        DictionaryVisitor::entry(&mut self.dict, key)
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(self)
    }
}

/// The text of a string or token member without parameters.
fn text_member(entry: &ListEntry, err: E) -> Result<&str, WireError> {
    let ListEntry::Item(item) = entry else {
        return Err(E::Shape.into());
    };
    if !item.params.is_empty() {
        return Err(E::Shape.into());
    }
    match &item.bare_item {
        BareItem::String(s) => Ok(s.as_str()),
        BareItem::Token(t) => Ok(t.as_str()),
        _ => Err(err.into()),
    }
}

impl BnTicket {
    /// Parses a header value (bytes as received; must be ASCII per RFC 8941).
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        if HEADER_NAME.len() + value.len() > MAX_FIELD_LEN {
            return Err(E::TooLong.into());
        }
        let parsed = Parser::new(value)
            .with_version(sfv::Version::Rfc8941)
            .parse_dictionary_with_visitor(DupCheck {
                dict: sfv::Dictionary::new(),
                dup: false,
            })
            .map_err(|_| E::Syntax)?;
        if parsed.dup {
            return Err(E::DuplicateKey.into());
        }
        let dict = parsed.dict;
        if dict
            .keys()
            .any(|k| !matches!(k.as_str(), "v" | "tok" | "ctx"))
        {
            return Err(E::UnknownKey.into());
        }
        // Shape errors (parameters, inner lists) anywhere take precedence.
        for entry in dict.values() {
            match entry {
                ListEntry::Item(i) if i.params.is_empty() => {}
                _ => return Err(E::Shape.into()),
            }
        }
        match dict.get("v") {
            Some(ListEntry::Item(i)) if matches!(&i.bare_item, BareItem::Token(t) if t.as_str() == VERSION) =>
                {}
            _ => return Err(E::Version.into()),
        }
        let tok_text = text_member(dict.get("tok").ok_or(E::Tok)?, E::Tok)?;
        if tok_text.len() != TOK_B64_LEN {
            return Err(E::Tok.into());
        }
        let tok_vec = b64::decode(tok_text).map_err(|_| E::Tok)?;
        let tok = <[u8; TOK_LEN]>::try_from(tok_vec.as_slice()).map_err(|_| E::Tok)?;
        let ctx = match dict.get("ctx") {
            None => None,
            Some(entry) => {
                let c = text_member(entry, E::Ctx)?;
                validate_ctx(c)?;
                Some(c.to_owned())
            }
        };
        Ok(BnTicket { tok, ctx })
    }

    /// Serializes the header value: `v=v1, tok="...", ctx="..."` (sf-strings for `tok` and
    /// `ctx`). Fails only for an invalid `ctx`.
    pub fn to_header_value(&self) -> Result<String, WireError> {
        let tok = b64::encode(&self.tok);
        let mut ser = DictSerializer::new();
        let key = |k: &'static str| KeyRef::from_str(k).map_err(|_| WireError::from(E::Syntax));
        let _ = ser.bare_item(
            key("v")?,
            TokenRef::from_str(VERSION).map_err(|_| E::Version)?,
        );
        let _ = ser.bare_item(key("tok")?, StringRef::from_str(&tok).map_err(|_| E::Tok)?);
        if let Some(ctx) = &self.ctx {
            validate_ctx(ctx)?;
            let _ = ser.bare_item(key("ctx")?, StringRef::from_str(ctx).map_err(|_| E::Ctx)?);
        }
        ser.finish().ok_or_else(|| E::Syntax.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tok_bytes() -> [u8; 120] {
        core::array::from_fn(|i| i as u8)
    }

    // base64url of 0x00..0x77 (hand-checkable: starts "AAECAwQF", ends "...dHV2dw").
    const TOK_TEXT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3";

    fn err(v: &str) -> TicketHeaderErrorKind {
        match BnTicket::parse(v.as_bytes()) {
            Err(WireError::InvalidTicketHeader(e)) => e,
            other => panic!("{v:?} gave {other:?}"),
        }
    }
    type TicketHeaderErrorKind = E;

    #[test]
    fn golden_serialization() {
        assert_eq!(TOK_TEXT.len(), 160);
        let t = BnTicket {
            tok: tok_bytes(),
            ctx: Some("r7".into()),
        };
        let v = t.to_header_value().unwrap();
        assert_eq!(v, format!("v=v1, tok=\"{TOK_TEXT}\", ctx=\"r7\""));
        assert_eq!(BnTicket::parse(v.as_bytes()).unwrap(), t);
        let t2 = BnTicket {
            tok: tok_bytes(),
            ctx: None,
        };
        assert_eq!(
            t2.to_header_value().unwrap(),
            format!("v=v1, tok=\"{TOK_TEXT}\"")
        );
        assert!(!format!("{t:?}").contains("AAEC"));
    }

    #[test]
    fn accepted_variants() {
        // Any member order, OWS, token forms of tok (starts with a letter) and ctx.
        let v = format!("ctx=r0,tok=\"{TOK_TEXT}\" ,  v=v1");
        assert_eq!(
            BnTicket::parse(v.as_bytes()).unwrap().ctx.as_deref(),
            Some("r0")
        );
        let v = format!("v=v1, tok={TOK_TEXT}");
        assert_eq!(BnTicket::parse(v.as_bytes()).unwrap().tok, tok_bytes());
        let ctx32 = "a".repeat(32);
        let v = format!("v=v1, tok=\"{TOK_TEXT}\", ctx=\"{ctx32}\"");
        assert!(HEADER_NAME.len() + v.len() <= MAX_FIELD_LEN);
        assert_eq!(BnTicket::parse(v.as_bytes()).unwrap().ctx.unwrap(), ctx32);
        let v = format!("v=v1, tok=\"{TOK_TEXT}\", ctx=\"0_-Z\"");
        assert!(BnTicket::parse(v.as_bytes()).is_ok());
    }

    #[test]
    fn rejections() {
        let tok = format!("tok=\"{TOK_TEXT}\"");
        let short = &TOK_TEXT[..159];
        let cases: Vec<(String, E)> = vec![
            (format!("v=v2, {tok}"), E::Version),
            (format!("v=\"v1\", {tok}"), E::Version),
            (tok.clone(), E::Version),
            (format!("v, {tok}"), E::Version),
            ("v=v1".into(), E::Tok),
            (format!("v=v1, tok=\"{short}\""), E::Tok),
            (format!("v=v1, tok=\"{short}=\""), E::Tok),
            (format!("v=v1, tok=\"{}+\"", &TOK_TEXT[..159]), E::Tok),
            (format!("v=v1, tok=:{}:", "AAAA"), E::Tok),
            ("v=v1, tok=12".to_string(), E::Tok),
            (format!("v=v1, {tok}, ctx=\"\""), E::Ctx),
            (format!("v=v1, {tok}, ctx=\"a.b\""), E::Ctx),
            (format!("v=v1, {tok}, ctx=\"{}\"", "a".repeat(33)), E::Ctx),
            (format!("v=v1, {tok}, ctx=?1"), E::Ctx),
            (format!("v=v1, {tok}, ctx"), E::Ctx),
            (format!("v=v1, {tok}, x=1"), E::UnknownKey),
            (format!("v=v1, {tok}, v=v1"), E::DuplicateKey),
            (format!("v=v1;a=1, {tok}"), E::Shape),
            (format!("v=v1, {tok};x"), E::Shape),
            (format!("v=(v1), {tok}"), E::Shape),
            (format!("v=v1 {tok}"), E::Syntax),
            (format!("V=v1, {tok}"), E::Syntax),
            (format!("v=v1, {tok},"), E::Syntax),
            ("".into(), E::Version),
            (
                format!("v=v1, {tok}, ctx=\"{}\"x", "a".repeat(20)),
                E::Syntax,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(err(&v), want, "{v}");
        }
        // Length limit: 248 bytes of value (+9 name) is too long even if otherwise valid.
        let v = format!("v=v1, {tok}, ctx=\"r1\"{}", " ".repeat(248 - 182));
        assert_eq!(v.len(), 248);
        assert_eq!(err(&v), E::TooLong);
        // 247 bytes (trailing SP is allowed by RFC 8941) is accepted.
        assert!(BnTicket::parse(&v.as_bytes()[..247]).is_ok());
        // Non-ASCII / non-UTF-8 bytes.
        assert!(BnTicket::parse(b"v=v1, tok=\"\xff\"").is_err());
        // Bad ctx is refused by the serializer too.
        let t = BnTicket {
            tok: tok_bytes(),
            ctx: Some("a b".into()),
        };
        assert_eq!(
            t.to_header_value(),
            Err(WireError::InvalidTicketHeader(E::Ctx))
        );
        assert_eq!(
            WireError::from(E::Tok).close_code(),
            crate::ErrorCode::L2_TICKET_INVALID
        );
    }

    proptest! {
        #[test]
        fn round_trip(tok in any::<[u8; 32]>(), rest in any::<[u8; 88]>(), ctx in proptest::option::of("[A-Za-z0-9_-]{1,32}")) {
            let mut full = [0u8; 120];
            full[..32].copy_from_slice(&tok);
            full[32..].copy_from_slice(&rest);
            let t = BnTicket { tok: full, ctx };
            let v = t.to_header_value().unwrap();
            prop_assert!(HEADER_NAME.len() + v.len() <= MAX_FIELD_LEN);
            prop_assert_eq!(BnTicket::parse(v.as_bytes()).unwrap(), t);
        }

        #[test]
        fn never_panics(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BnTicket::parse(&v);
        }
    }
}

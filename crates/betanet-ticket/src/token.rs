//! `BN-Ticket` request-header tokens (SPEC §4.3, PD-2).
//!
//! `tok = HKDF-Expand(exporter_secret, "BN-Ticket v1" ‖ ctx, 120)` with
//! `exporter_secret = Expand-Label(K0, "bn-ticket", 32)`; both come from the session's
//! [`KeySchedule`] (`betanet-crypto`), the header syntax from `betanet_wire::ticket_header`.
//!
//! * [`TokenIssuer`] (sender): one per session; request `n` uses `ctx = "r<n>"` (n = 0, 1, …).
//! * [`TokenChecker`] (receiver): one per session; recomputes the token for the received `ctx`,
//!   compares in constant time, and refuses a `ctx` already used in the session. Memory is
//!   bounded: `r<n>` contexts (canonical decimal) are tracked with a 128-entry sliding window
//!   (older ones are refused as [`TokenRefusal::StaleCtx`]); other contexts (peers with another
//!   scheme, including an absent `ctx`, which counts as the empty context) go into a set of at
//!   most `max_other_contexts` entries, after which [`TokenRefusal::TooManyContexts`].
//!
//! Both take the session's `KeySchedule` by reference per call, so they can live next to it in
//! the session state without borrowing it.

use std::collections::HashSet;

use betanet_crypto::ct::ct_eq;
use betanet_crypto::schedule::KeySchedule;
use betanet_wire::ticket_header::{BnTicket, HEADER_NAME};

use crate::error::{TicketError, TokenRefusal};

/// The header name, `BN-Ticket`.
pub const TOKEN_HEADER_NAME: &str = HEADER_NAME;
/// Width of the `r<n>` replay window.
pub const CTX_WINDOW: u64 = 128;
/// Default bound on non-counter contexts remembered per session.
pub const DEFAULT_MAX_OTHER_CONTEXTS: usize = 256;

/// A header to send.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The `ctx` used.
    pub ctx: String,
    /// The `BN-Ticket` header value.
    pub header_value: String,
}

impl core::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// The sending side: one per session.
#[derive(Debug, Default)]
pub struct TokenIssuer {
    next: u64,
}

impl TokenIssuer {
    /// A fresh issuer (first `ctx` is `r0`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The header for the next request of the session whose key schedule is `schedule`.
    pub fn issue(&mut self, schedule: &KeySchedule) -> Result<IssuedToken, TicketError> {
        let n = self.next;
        self.next = n.checked_add(1).ok_or(TicketError::CounterExhausted)?;
        let ctx = format!("r{n}");
        let t = BnTicket {
            tok: schedule.bn_ticket_token(&ctx),
            ctx: Some(ctx.clone()),
        };
        Ok(IssuedToken {
            header_value: t.to_header_value()?,
            ctx,
        })
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.next
    }
}

/// `r<n>` with `n` in canonical decimal (no leading zeros) → `n`.
fn counter_ctx(ctx: &str) -> Option<u64> {
    let digits = ctx.strip_prefix('r')?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The receiving side: one per session.
#[derive(Debug)]
pub struct TokenChecker {
    highest: Option<u64>,
    /// Bit `i` set: `highest - i` was seen.
    window: u128,
    others: HashSet<String>,
    max_others: usize,
}

impl Default for TokenChecker {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_OTHER_CONTEXTS)
    }
}

impl TokenChecker {
    /// A checker remembering at most `max_other_contexts` non-counter contexts.
    pub fn new(max_other_contexts: usize) -> Self {
        TokenChecker {
            highest: None,
            window: 0,
            others: HashSet::new(),
            max_others: max_other_contexts,
        }
    }

    /// Checks a received `BN-Ticket` header value against the session's `schedule`; on
    /// success returns the `ctx` (empty when absent) and records it.
    pub fn check(&mut self, schedule: &KeySchedule, value: &[u8]) -> Result<String, TokenRefusal> {
        let t = BnTicket::parse(value).map_err(|_| TokenRefusal::Syntax)?;
        let ctx = t.ctx.unwrap_or_default();
        let expected = schedule.bn_ticket_token(&ctx);
        if !ct_eq(&expected, &t.tok) {
            return Err(TokenRefusal::BadToken);
        }
        self.record(&ctx)?;
        Ok(ctx)
    }

    fn record(&mut self, ctx: &str) -> Result<(), TokenRefusal> {
        match counter_ctx(ctx) {
            Some(n) => self.record_counter(n),
            None => {
                if self.others.contains(ctx) {
                    return Err(TokenRefusal::ReplayedCtx);
                }
                if self.others.len() >= self.max_others {
                    return Err(TokenRefusal::TooManyContexts);
                }
                self.others.insert(ctx.to_owned());
                Ok(())
            }
        }
    }

    fn record_counter(&mut self, n: u64) -> Result<(), TokenRefusal> {
        let Some(h) = self.highest else {
            self.highest = Some(n);
            self.window = 1;
            return Ok(());
        };
        if n > h {
            let shift = n - h;
            self.window = if shift >= CTX_WINDOW {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.highest = Some(n);
            return Ok(());
        }
        let back = h - n;
        if back >= CTX_WINDOW {
            return Err(TokenRefusal::StaleCtx);
        }
        let bit = 1u128 << back;
        if self.window & bit != 0 {
            return Err(TokenRefusal::ReplayedCtx);
        }
        self.window |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(b: u8) -> KeySchedule {
        KeySchedule::from_ekm(&[b; 32])
    }

    #[test]
    fn issue_then_check() {
        let s = schedule(1);
        let mut issuer = TokenIssuer::new();
        let mut checker = TokenChecker::default();
        let mut values = Vec::new();
        for i in 0..5u64 {
            let t = issuer.issue(&s).unwrap();
            assert_eq!(t.ctx, format!("r{i}"));
            assert!(t.header_value.contains(&format!("ctx=\"r{i}\"")));
            let parsed = BnTicket::parse(t.header_value.as_bytes()).unwrap();
            assert_eq!(parsed.tok, s.bn_ticket_token(&t.ctx));
            values.push(t.header_value);
        }
        // Out of order is fine, repeats are not.
        assert_eq!(checker.check(&s, values[3].as_bytes()).unwrap(), "r3");
        assert_eq!(checker.check(&s, values[0].as_bytes()).unwrap(), "r0");
        assert_eq!(checker.check(&s, values[4].as_bytes()).unwrap(), "r4");
        assert_eq!(
            checker.check(&s, values[3].as_bytes()),
            Err(TokenRefusal::ReplayedCtx)
        );
        assert_eq!(
            checker.check(&s, values[0].as_bytes()),
            Err(TokenRefusal::ReplayedCtx)
        );
        // Another session's token fails.
        let other = schedule(2);
        let mut i2 = TokenIssuer::new();
        let v = i2.issue(&other).unwrap();
        assert_eq!(
            checker.check(&s, v.header_value.as_bytes()),
            Err(TokenRefusal::BadToken)
        );
        assert_eq!(checker.check(&s, b"v=v1"), Err(TokenRefusal::Syntax));
        assert_eq!(issuer.issued(), 5);
    }

    fn header(s: &KeySchedule, ctx: Option<&str>) -> String {
        BnTicket {
            tok: s.bn_ticket_token(ctx.unwrap_or("")),
            ctx: ctx.map(str::to_owned),
        }
        .to_header_value()
        .unwrap()
    }

    #[test]
    fn window_and_other_contexts() {
        let s = schedule(3);
        let mut c = TokenChecker::new(2);
        assert!(c.check(&s, header(&s, Some("r1000")).as_bytes()).is_ok());
        assert!(c.check(&s, header(&s, Some("r873")).as_bytes()).is_ok());
        assert_eq!(
            c.check(&s, header(&s, Some("r872")).as_bytes()),
            Err(TokenRefusal::StaleCtx)
        );
        assert!(c.check(&s, header(&s, Some("r2000")).as_bytes()).is_ok());
        assert_eq!(
            c.check(&s, header(&s, Some("r1000")).as_bytes()),
            Err(TokenRefusal::StaleCtx)
        );
        // Absent ctx = the empty context, usable once.
        assert_eq!(c.check(&s, header(&s, None).as_bytes()).unwrap(), "");
        assert_eq!(
            c.check(&s, header(&s, None).as_bytes()),
            Err(TokenRefusal::ReplayedCtx)
        );
        // Non-canonical counter goes to the bounded set.
        assert!(c.check(&s, header(&s, Some("r01")).as_bytes()).is_ok());
        assert_eq!(
            c.check(&s, header(&s, Some("abc")).as_bytes()),
            Err(TokenRefusal::TooManyContexts)
        );
        assert_eq!(counter_ctx("r0"), Some(0));
        assert_eq!(counter_ctx("r18446744073709551615"), Some(u64::MAX));
        assert_eq!(counter_ctx("r18446744073709551616"), None);
        assert_eq!(counter_ctx("r"), None);
        assert_eq!(counter_ctx("x1"), None);
    }

    #[test]
    fn counter_exhaustion() {
        let s = schedule(4);
        let mut i = TokenIssuer { next: u64::MAX };
        assert!(matches!(i.issue(&s), Err(TicketError::CounterExhausted)));
    }
}

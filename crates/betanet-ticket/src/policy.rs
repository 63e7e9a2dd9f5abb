//! The carrier-policy header a site publishes (SPEC §4.2 step 1):
//!
//! ```text
//! BN-Ticket: v1; carriers=cookie:0.5,query:0.3,body:0.2; len=24..64
//! ```
//!
//! Our reading (not fixed by the SPEC, written into `docs/PROTOCOL.md`):
//! * The value starts with the token `v1`; parameters are `;`-separated `name=value` pairs with
//!   optional spaces/tabs around `;`, `=`, `,` and `:`. The header name (`BN-Ticket:`) may be
//!   included or not ([`CarrierPolicy::parse`] strips it).
//! * `carriers` is required: comma-separated `name:weight` with names `cookie`, `query`, `body`
//!   (each at most once) and weights decimals in `[0, 1]` with at most 6 fraction digits (kept
//!   as parts per million, so no floating point anywhere). The weights must sum to 1 ± 0.01;
//!   the choice is proportional to the weights (so a sum of 0.999 is normalised).
//! * `len=a..b` is optional (default `24..64`), **inclusive**, with `24 <= a <= b <= 64`.
//! * Unknown parameters with a lowercase token name are ignored (forward compatibility);
//!   duplicates are rejected. The whole value is at most 256 bytes.

use core::fmt;

use rand_core::{CryptoRng, RngCore};

use crate::error::PolicyError;
use crate::ticket::{MAX_PAD, MIN_PAD};

/// Parts per million in a weight of 1.
pub const PPM: u32 = 1_000_000;
/// Longest accepted policy value.
pub const MAX_POLICY_LEN: usize = 256;

/// Where a client puts its access ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Carrier {
    /// `Cookie: __Host-bn1=<b64>` (recommended).
    Cookie,
    /// Query parameter `bn1=<b64>`.
    Query,
    /// `application/x-www-form-urlencoded` POST body `bn1=<b64>`.
    Body,
}

impl Carrier {
    /// The name used in the policy header.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Cookie => "cookie",
            Carrier::Query => "query",
            Carrier::Body => "body",
        }
    }

    /// Parses a policy carrier name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "cookie" => Some(Carrier::Cookie),
            "query" => Some(Carrier::Query),
            "body" => Some(Carrier::Body),
            _ => None,
        }
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated carrier policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierPolicy {
    weights: Vec<(Carrier, u32)>,
    min_pad: usize,
    max_pad: usize,
}

impl Default for CarrierPolicy {
    /// The SPEC example: `cookie:0.5,query:0.3,body:0.2; len=24..64`.
    fn default() -> Self {
        CarrierPolicy {
            weights: vec![
                (Carrier::Cookie, 500_000),
                (Carrier::Query, 300_000),
                (Carrier::Body, 200_000),
            ],
            min_pad: MIN_PAD,
            max_pad: MAX_PAD,
        }
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses a weight `0`, `1`, `0.5`, `1.000` into parts per million.
fn parse_weight(s: &str) -> Result<u32, PolicyError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_val: u32 = match int {
        "0" => 0,
        "1" => 1,
        _ => return Err(PolicyError::Weight),
    };
    let mut ppm = int_val * PPM;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyError::Weight);
        }
        let mut digits: u32 = 0;
        for b in f.bytes() {
            digits = digits * 10 + u32::from(b - b'0');
        }
        for _ in f.len()..6 {
            digits *= 10;
        }
        ppm += digits;
    }
    if ppm > PPM {
        return Err(PolicyError::Weight);
    }
    Ok(ppm)
}

fn fmt_weight(ppm: u32, out: &mut String) {
    out.push_str(&(ppm / PPM).to_string());
    let frac = ppm % PPM;
    if frac != 0 {
        let s = format!("{frac:06}");
        out.push('.');
        out.push_str(s.trim_end_matches('0'));
    }
}

fn parse_len(s: &str) -> Result<(usize, usize), PolicyError> {
    let (a, b) = s.split_once("..").ok_or(PolicyError::Len)?;
    let num = |t: &str| -> Result<usize, PolicyError> {
        if t.is_empty() || t.len() > 3 || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PolicyError::Len);
        }
        t.parse().map_err(|_| PolicyError::Len)
    };
    let (a, b) = (num(a.trim_matches(is_ows))?, num(b.trim_matches(is_ows))?);
    if !(MIN_PAD <= a && a <= b && b <= MAX_PAD) {
        return Err(PolicyError::Len);
    }
    Ok((a, b))
}

fn parse_carriers(s: &str) -> Result<Vec<(Carrier, u32)>, PolicyError> {
    let mut out: Vec<(Carrier, u32)> = Vec::with_capacity(3);
    for item in s.split(',') {
        let (name, weight) = item.split_once(':').ok_or(PolicyError::Syntax)?;
        let c = Carrier::from_name(name.trim_matches(is_ows)).ok_or(PolicyError::UnknownCarrier)?;
        if out.iter().any(|(d, _)| *d == c) {
            return Err(PolicyError::DuplicateCarrier);
        }
        out.push((c, parse_weight(weight.trim_matches(is_ows))?));
    }
    let sum: u32 = out.iter().map(|(_, w)| *w).sum();
    if sum == 0 || sum.abs_diff(PPM) > PPM / 100 {
        return Err(PolicyError::WeightSum);
    }
    Ok(out)
}

impl CarrierPolicy {
    /// A policy from weights in parts per million and an inclusive pad range.
    pub fn new(
        weights: Vec<(Carrier, u32)>,
        min_pad: usize,
        max_pad: usize,
    ) -> Result<Self, PolicyError> {
        let mut seen = Vec::new();
        for (c, w) in &weights {
            if seen.contains(c) {
                return Err(PolicyError::DuplicateCarrier);
            }
            if *w > PPM {
                return Err(PolicyError::Weight);
            }
            seen.push(*c);
        }
        if weights.is_empty() {
            return Err(PolicyError::MissingCarriers);
        }
        let sum: u32 = weights.iter().map(|(_, w)| *w).sum();
        if sum == 0 || sum.abs_diff(PPM) > PPM / 100 {
            return Err(PolicyError::WeightSum);
        }
        if !(MIN_PAD <= min_pad && min_pad <= max_pad && max_pad <= MAX_PAD) {
            return Err(PolicyError::Len);
        }
        Ok(CarrierPolicy {
            weights,
            min_pad,
            max_pad,
        })
    }

    /// A policy that always uses `carrier`.
    pub fn only(carrier: Carrier) -> Self {
        CarrierPolicy {
            weights: vec![(carrier, PPM)],
            min_pad: MIN_PAD,
            max_pad: MAX_PAD,
        }
    }

    /// The carriers and their weights (parts per million), in header order.
    pub fn weights(&self) -> &[(Carrier, u32)] {
        &self.weights
    }

    /// The inclusive pad-length range.
    pub fn pad_range(&self) -> (usize, usize) {
        (self.min_pad, self.max_pad)
    }

    /// Parses a policy value (with or without the `BN-Ticket:` name).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLong);
        }
        let mut value = text.trim_matches(is_ows);
        if let Some((name, rest)) = value.split_once(':')
            && name.trim_matches(is_ows).eq_ignore_ascii_case("bn-ticket")
        {
            value = rest.trim_matches(is_ows);
        }
        let mut parts = value.split(';');
        if parts.next().map(|v| v.trim_matches(is_ows)) != Some("v1") {
            return Err(PolicyError::Version);
        }
        let mut carriers = None;
        let mut len = None;
        let mut seen: Vec<&str> = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('=').ok_or(PolicyError::Syntax)?;
            let (k, v) = (k.trim_matches(is_ows), v.trim_matches(is_ows));
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(PolicyError::Syntax);
            }
            if seen.contains(&k) {
                return Err(PolicyError::Duplicate);
            }
            seen.push(k);
            match k {
                "carriers" => carriers = Some(parse_carriers(v)?),
                "len" => len = Some(parse_len(v)?),
                _ => {}
            }
        }
        let weights = carriers.ok_or(PolicyError::MissingCarriers)?;
        let (min_pad, max_pad) = len.unwrap_or((MIN_PAD, MAX_PAD));
        Ok(CarrierPolicy {
            weights,
            min_pad,
            max_pad,
        })
    }

    /// The canonical header value, e.g. `v1; carriers=cookie:0.5,query:0.3,body:0.2; len=24..64`.
    pub fn to_header_value(&self) -> String {
        let mut s = String::from("v1; carriers=");
        for (i, (c, w)) in self.weights.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(c.name());
            s.push(':');
            fmt_weight(*w, &mut s);
        }
        s.push_str(&format!("; len={}..{}", self.min_pad, self.max_pad));
        s
    }

    /// Chooses a carrier with probability proportional to its weight.
    pub fn choose<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Carrier {
        let total: u32 = self.weights.iter().map(|(_, w)| *w).sum();
        let mut r = uniform_below(rng, total.max(1));
        for (c, w) in &self.weights {
            if r < *w {
                return *c;
            }
            r -= *w;
        }
        // Unreachable for a validated policy (total > 0); the recommended carrier otherwise.
        Carrier::Cookie
    }

    /// Chooses a pad length uniformly in the inclusive range.
    pub fn choose_pad_len<R: RngCore + CryptoRng>(&self, rng: &mut R) -> usize {
        let span = (self.max_pad - self.min_pad + 1) as u32;
        self.min_pad + uniform_below(rng, span) as usize
    }
}

/// Uniform in `0..n` (n ≥ 1) without modulo bias.
pub(crate) fn uniform_below<R: RngCore + CryptoRng>(rng: &mut R, n: u32) -> u32 {
    let n = n.max(1);
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let v = rng.next_u32();
        if v < zone {
            return v % n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn spec_example() {
        let p = CarrierPolicy::parse(
            "BN-Ticket: v1; carriers=cookie:0.5,query:0.3,body:0.2; len=24..64",
        )
        .unwrap();
        assert_eq!(p, CarrierPolicy::default());
        assert_eq!(
            p.to_header_value(),
            "v1; carriers=cookie:0.5,query:0.3,body:0.2; len=24..64"
        );
        let q =
            CarrierPolicy::parse("v1;carriers = cookie : 1.000000 ;len=30..40;future=x").unwrap();
        assert_eq!(q.weights(), &[(Carrier::Cookie, PPM)]);
        assert_eq!(q.pad_range(), (30, 40));
        assert_eq!(q.to_header_value(), "v1; carriers=cookie:1; len=30..40");
        let r = CarrierPolicy::parse("v1; carriers=query:0.333,body:0.333,cookie:0.334").unwrap();
        assert_eq!(r.pad_range(), (24, 64));
    }

    #[test]
    fn rejections() {
        use PolicyError as E;
        let cases = [
            ("v2; carriers=cookie:1", E::Version),
            ("carriers=cookie:1", E::Version),
            ("v1", E::MissingCarriers),
            ("v1; len=24..64", E::MissingCarriers),
            ("v1; carriers=cookie:1; carriers=query:1", E::Duplicate),
            ("v1; carriers=cookie:1; x", E::Syntax),
            ("v1; carriers=cookie", E::Syntax),
            ("v1; carriers=header:1", E::UnknownCarrier),
            ("v1; carriers=cookie:0.5,cookie:0.5", E::DuplicateCarrier),
            ("v1; carriers=cookie:1.5", E::Weight),
            ("v1; carriers=cookie:.5,query:.5", E::Weight),
            ("v1; carriers=cookie:0.5e0,query:0.5", E::Weight),
            ("v1; carriers=cookie:0.1234567,query:0.9", E::Weight),
            ("v1; carriers=cookie:-0.5,query:1", E::Weight),
            ("v1; carriers=cookie:0.5,query:0.3", E::WeightSum),
            ("v1; carriers=cookie:0", E::WeightSum),
            ("v1; carriers=cookie:1; len=23..64", E::Len),
            ("v1; carriers=cookie:1; len=24..65", E::Len),
            ("v1; carriers=cookie:1; len=40..30", E::Len),
            ("v1; carriers=cookie:1; len=24-64", E::Len),
            ("v1; carriers=cookie:1; LEN=24..64", E::Syntax),
        ];
        for (s, e) in cases {
            assert_eq!(CarrierPolicy::parse(s), Err(e), "{s}");
        }
        assert_eq!(CarrierPolicy::parse(&"v1; x=y".repeat(40)), Err(E::TooLong));
        assert!(CarrierPolicy::new(vec![], 24, 64).is_err());
        assert!(CarrierPolicy::new(vec![(Carrier::Body, PPM)], 24, 23).is_err());
    }

    #[test]
    fn choice_follows_weights() {
        let p = CarrierPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            match p.choose(&mut rng) {
                Carrier::Cookie => counts[0] += 1,
                Carrier::Query => counts[1] += 1,
                Carrier::Body => counts[2] += 1,
            }
        }
        // Expected 5000/3000/2000; 5 sigma is < 250.
        assert!((4750..5250).contains(&counts[0]), "{counts:?}");
        assert!((2750..3250).contains(&counts[1]), "{counts:?}");
        assert!((1750..2250).contains(&counts[2]), "{counts:?}");
        let only = CarrierPolicy::parse("v1; carriers=cookie:0,body:1").unwrap();
        for _ in 0..100 {
            assert_eq!(only.choose(&mut rng), Carrier::Body);
        }
        let mut seen = [false; 41];
        for _ in 0..2000 {
            let n = p.choose_pad_len(&mut rng);
            assert!((24..=64).contains(&n));
            seen[n - 24] = true;
        }
        assert!(seen.iter().all(|s| *s), "every pad length occurs");
    }

    fn arb_policy() -> impl Strategy<Value = CarrierPolicy> {
        (0u32..=PPM, 0u32..=PPM, 24usize..=64, 0usize..=40).prop_filter_map(
            "valid",
            |(a, b, lo, span)| {
                let a = a.min(PPM);
                let b = b.min(PPM - a);
                let c = PPM - a - b;
                CarrierPolicy::new(
                    vec![
                        (Carrier::Body, a),
                        (Carrier::Cookie, b),
                        (Carrier::Query, c),
                    ],
                    lo,
                    (lo + span).min(64),
                )
                .ok()
            },
        )
    }

    proptest! {
        #[test]
        fn round_trip(p in arb_policy()) {
            let s = p.to_header_value();
            prop_assert_eq!(CarrierPolicy::parse(&s).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = CarrierPolicy::parse(&s);
        }

        #[test]
        fn parse_never_panics_near_valid(s in "v1; ?(carriers|len|x)=[a-z0-9.:, ]{0,40}(; ?len=[0-9.]{0,8})?") {
            if let Ok(p) = CarrierPolicy::parse(&s) {
                prop_assert_eq!(CarrierPolicy::parse(&p.to_header_value()).unwrap(), p);
            }
        }
    }
}

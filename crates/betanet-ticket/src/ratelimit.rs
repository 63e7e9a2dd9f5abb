//! Token buckets (sans-IO: time is an argument) and their keying by network prefix.
//!
//! SPEC §4.2: buckets per IPv4 /24 and per IPv6 /56 (and per AS when known). An IPv4-mapped
//! IPv6 address (`::ffff:a.b.c.d`) is keyed as the IPv4 /24 it maps, so a dual-stack listener
//! cannot be used to dodge the IPv4 bucket.
//!
//! Memory is bounded: a [`BucketMap`] holds at most `max_buckets` buckets. When it is full,
//! buckets that have refilled completely (they carry no information) are dropped first; if that
//! is not enough, the oldest-inserted bucket is evicted (O(1)), so a flood of fresh prefixes can
//! reset its own buckets but never blocks other prefixes.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

use crate::error::TicketError;

/// A token bucket configuration: at most `capacity` tokens, `refill_tokens` added every
/// `refill_secs` seconds (continuously; exact integer accounting in units of
/// `1 / refill_secs` token, so no refill is ever lost to rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Burst size.
    pub capacity: u32,
    /// Tokens added per `refill_secs`.
    pub refill_tokens: u32,
    /// The refill period in seconds (must be > 0).
    pub refill_secs: u32,
}

impl RateLimit {
    /// `capacity` tokens, refilled at `per_sec` tokens per second.
    pub const fn per_second(capacity: u32, per_sec: u32) -> Self {
        RateLimit {
            capacity,
            refill_tokens: per_sec,
            refill_secs: 1,
        }
    }

    /// `capacity` tokens, refilled at `per_min` tokens per minute.
    pub const fn per_minute(capacity: u32, per_min: u32) -> Self {
        RateLimit {
            capacity,
            refill_tokens: per_min,
            refill_secs: 60,
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), TicketError> {
        if self.refill_secs == 0 {
            return Err(TicketError::Config("rate limit refill_secs must be > 0"));
        }
        if self.capacity == 0 {
            return Err(TicketError::Config("rate limit capacity must be > 0"));
        }
        Ok(())
    }

    /// Units per token.
    fn unit(&self) -> u128 {
        u128::from(self.refill_secs.max(1))
    }

    fn cap_units(&self) -> u128 {
        u128::from(self.capacity) * self.unit()
    }

    fn refill_units(&self, elapsed_secs: u64) -> u128 {
        u128::from(elapsed_secs) * u128::from(self.refill_tokens)
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    units: u128,
    last_secs: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_secs`.
    pub fn full(limit: &RateLimit, now_secs: u64) -> Self {
        TokenBucket {
            units: limit.cap_units(),
            last_secs: now_secs,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now_secs: u64) {
        // Time going backwards is ignored (no refill, no panic).
        let elapsed = now_secs.saturating_sub(self.last_secs);
        self.units = self
            .units
            .saturating_add(limit.refill_units(elapsed))
            .min(limit.cap_units());
        self.last_secs = self.last_secs.max(now_secs);
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, limit: &RateLimit, now_secs: u64) -> bool {
        self.refill(limit, now_secs);
        if self.units >= limit.unit() {
            self.units -= limit.unit();
            true
        } else {
            false
        }
    }

    /// Whole tokens available at `now_secs` (without taking one).
    pub fn available(&self, limit: &RateLimit, now_secs: u64) -> u32 {
        let mut b = *self;
        b.refill(limit, now_secs);
        u32::try_from(b.units / limit.unit()).unwrap_or(u32::MAX)
    }

    fn is_full(&self, limit: &RateLimit, now_secs: u64) -> bool {
        let mut b = *self;
        b.refill(limit, now_secs);
        b.units >= limit.cap_units()
    }
}

/// A bounded map of token buckets sharing one [`RateLimit`].
#[derive(Debug)]
pub struct BucketMap<K> {
    limit: RateLimit,
    max_buckets: usize,
    map: HashMap<K, TokenBucket>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> BucketMap<K> {
    /// An empty map holding at most `max_buckets` (≥ 1) buckets.
    pub fn new(limit: RateLimit, max_buckets: usize) -> Result<Self, TicketError> {
        limit.validate()?;
        if max_buckets == 0 {
            return Err(TicketError::Config("max_buckets must be > 0"));
        }
        Ok(BucketMap {
            limit,
            max_buckets,
            map: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Number of buckets currently held.
    pub fn bucket_count(&self) -> usize {
        self.map.len()
    }

    /// Takes one token from `key`'s bucket (creating a full one if absent).
    pub fn try_take(&mut self, key: &K, now_secs: u64) -> bool {
        if let Some(b) = self.map.get_mut(key) {
            return b.try_take(&self.limit, now_secs);
        }
        if self.map.len() >= self.max_buckets {
            self.make_room(now_secs);
        }
        let mut b = TokenBucket::full(&self.limit, now_secs);
        let ok = b.try_take(&self.limit, now_secs);
        self.map.insert(key.clone(), b);
        self.order.push_back(key.clone());
        if self.order.len() > self.max_buckets.saturating_mul(2) {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        ok
    }

    /// Whole tokens `key` has at `now_secs` (capacity for an unknown key).
    pub fn available(&self, key: &K, now_secs: u64) -> u32 {
        self.map
            .get(key)
            .map_or(self.limit.capacity, |b| b.available(&self.limit, now_secs))
    }

    fn make_room(&mut self, now_secs: u64) {
        let limit = self.limit;
        self.map.retain(|_, b| !b.is_full(&limit, now_secs));
        while self.map.len() >= self.max_buckets {
            match self.order.pop_front() {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// The bucket a peer address falls into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrefixKey {
    /// An IPv4 /24: the address with the low 8 bits cleared.
    V4(u32),
    /// An IPv6 /56: the top 56 bits of the address (in the low bits of the `u64`).
    V6(u64),
}

impl PrefixKey {
    /// The bucket key of `ip` (IPv4 /24, IPv6 /56; IPv4-mapped IPv6 counts as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => PrefixKey::V4(u32::from(v4) & 0xFFFF_FF00),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PrefixKey::V4(u32::from(v4) & 0xFFFF_FF00),
                None => PrefixKey::V6((u128::from(v6) >> 72) as u64),
            },
        }
    }
}

/// Limits for ticket admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Bucket per IPv4 /24.
    pub per_v4_24: RateLimit,
    /// Bucket per IPv6 /56.
    pub per_v6_56: RateLimit,
    /// Bucket per autonomous system, used when the caller knows the peer's AS.
    pub per_as: Option<RateLimit>,
    /// Most buckets kept per kind.
    pub max_buckets: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            per_v4_24: RateLimit::per_second(64, 8),
            per_v6_56: RateLimit::per_second(64, 8),
            per_as: Some(RateLimit::per_second(1024, 128)),
            max_buckets: 65_536,
        }
    }
}

/// Per-prefix (and optionally per-AS) admission limiter.
#[derive(Debug)]
pub struct PrefixLimiter {
    v4: BucketMap<u32>,
    v6: BucketMap<u64>,
    asn: Option<BucketMap<u32>>,
}

impl PrefixLimiter {
    /// A limiter with the given limits.
    pub fn new(limits: &AdmissionLimits) -> Result<Self, TicketError> {
        Ok(PrefixLimiter {
            v4: BucketMap::new(limits.per_v4_24, limits.max_buckets)?,
            v6: BucketMap::new(limits.per_v6_56, limits.max_buckets)?,
            asn: match limits.per_as {
                Some(l) => Some(BucketMap::new(l, limits.max_buckets)?),
                None => None,
            },
        })
    }

    /// Takes a token for `ip` (and for `asn` when given and configured). Both buckets must
    /// have a token; the prefix bucket is charged first.
    pub fn try_take(&mut self, ip: IpAddr, asn: Option<u32>, now_secs: u64) -> bool {
        let prefix_ok = match PrefixKey::of(ip) {
            PrefixKey::V4(k) => self.v4.try_take(&k, now_secs),
            PrefixKey::V6(k) => self.v6.try_take(&k, now_secs),
        };
        if !prefix_ok {
            return false;
        }
        match (asn, self.asn.as_mut()) {
            (Some(a), Some(m)) => m.try_take(&a, now_secs),
            _ => true,
        }
    }

    /// Tokens left for `ip`'s prefix at `now_secs`.
    pub fn available(&self, ip: IpAddr, now_secs: u64) -> u32 {
        match PrefixKey::of(ip) {
            PrefixKey::V4(k) => self.v4.available(&k, now_secs),
            PrefixKey::V6(k) => self.v6.available(&k, now_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn bucket_refills_continuously() {
        let l = RateLimit::per_minute(2, 1);
        let mut b = TokenBucket::full(&l, 1000);
        assert!(b.try_take(&l, 1000));
        assert!(b.try_take(&l, 1000));
        assert!(!b.try_take(&l, 1000));
        assert!(!b.try_take(&l, 1059));
        assert!(b.try_take(&l, 1060));
        assert!(!b.try_take(&l, 1060));
        // Refill stops at capacity; time going backwards does not panic or refill.
        assert_eq!(b.available(&l, 10_000), 2);
        assert!(!b.try_take(&l, 0));
    }

    #[test]
    fn prefix_keys() {
        let a = PrefixKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let b = PrefixKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254)));
        let c = PrefixKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 3, 1)));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, PrefixKey::V4(0xC000_0200));
        let mapped = PrefixKey::of(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()));
        assert_eq!(mapped, a);
        let x: Ipv6Addr = "2001:db8:0:1200::1".parse().unwrap();
        let y: Ipv6Addr = "2001:db8:0:12ff:ffff::9".parse().unwrap();
        let z: Ipv6Addr = "2001:db8:0:1300::1".parse().unwrap();
        assert_eq!(PrefixKey::of(x.into()), PrefixKey::of(y.into()));
        assert_ne!(PrefixKey::of(x.into()), PrefixKey::of(z.into()));
        assert_eq!(
            PrefixKey::of(x.into()),
            PrefixKey::V6(0x0020_010d_b800_0012)
        );
    }

    #[test]
    fn limiter_keys_by_prefix_and_as() {
        let limits = AdmissionLimits {
            per_v4_24: RateLimit::per_minute(2, 1),
            per_v6_56: RateLimit::per_minute(1, 1),
            per_as: Some(RateLimit::per_minute(3, 1)),
            max_buckets: 16,
        };
        let mut l = PrefixLimiter::new(&limits).unwrap();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(l.try_take(ip("198.51.100.1"), None, 0));
        assert!(l.try_take(ip("198.51.100.200"), None, 0));
        assert!(
            !l.try_take(ip("198.51.100.7"), None, 0),
            "same /24 shares the bucket"
        );
        assert!(
            l.try_take(ip("198.51.101.7"), None, 0),
            "next /24 is separate"
        );
        assert!(l.try_take(ip("2001:db8:0:aa00::1"), None, 0));
        assert!(!l.try_take(ip("2001:db8:0:aaff::2"), None, 0), "same /56");
        assert!(l.try_take(ip("2001:db8:0:ab00::1"), None, 0), "next /56");
        // AS bucket: capacity 3 across different prefixes.
        assert!(l.try_take(ip("203.0.113.1"), Some(64500), 0));
        assert!(l.try_take(ip("203.0.114.1"), Some(64500), 0));
        assert!(l.try_take(ip("203.0.115.1"), Some(64500), 0));
        assert!(!l.try_take(ip("203.0.116.1"), Some(64500), 0));
        assert!(l.try_take(ip("203.0.116.1"), Some(64501), 0));
        assert_eq!(l.available(ip("198.51.100.1"), 0), 0);
        assert_eq!(l.available(ip("198.51.100.1"), 60), 1);
    }

    #[test]
    fn bucket_map_is_bounded() {
        let mut m = BucketMap::new(RateLimit::per_minute(1, 1), 4).unwrap();
        for k in 0u32..100 {
            assert!(m.try_take(&k, 0));
            assert!(m.bucket_count() <= 4);
        }
        assert!(m.order.len() <= 8 + 1);
        // A recent key is still limited.
        assert!(!m.try_take(&99, 0));
        assert!(BucketMap::<u32>::new(RateLimit::per_minute(1, 1), 0).is_err());
        assert!(
            RateLimit {
                capacity: 1,
                refill_tokens: 1,
                refill_secs: 0
            }
            .validate()
            .is_err()
        );
    }
}

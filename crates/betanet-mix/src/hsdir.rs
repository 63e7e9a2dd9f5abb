//! Hidden-service directories (HS directory): where a service publishes its signed descriptor
//! and where clients look it up by service id, all through the mixnet.
//!
//! **Responsibility rule.** For service id `S` and UTC day `d = floor(unix_now / 86400)`, the
//! directory key is `K(S, d) = SHA-256("bn-hsdir" ‖ S ‖ u64be(d))`. The responsible directory
//! nodes are the [`HSDIR_REPLICAS`] known mixnodes whose node ids are closest to `K` by XOR
//! distance (ties impossible: ids are distinct). A service publishes to the nodes responsible
//! for day `d` and `d + 1` (so the set is already populated when the day turns); a client asks
//! the nodes responsible for `d` and `d - 1`. Service and client must know the same node set
//! (the directory consensus); a node outside the set that receives a publication still stores
//! it (it cannot know the full set).
//!
//! **Messages** (app message kinds, see [`crate::app`]):
//!
//! ```text
//! 0x07 HSDIR_PUBLISH   | has_surb(1) | [SURB] | descriptor         service -> directory
//! 0x08 HSDIR_LOOKUP    | service_id(32) | SURB                     client -> directory
//! 0x17 HSDIR_PUBLISHED | status(1) | service_id(32)               directory -> service (SURB)
//! 0x18 HSDIR_RESULT    | found(1) | service_id(32) | [descriptor] directory -> client (SURB)
//! ```
//!
//! Both requests travel as ordinary forward packets over a 3-hop route ending at the directory
//! node, and answers come back through the sender's single-use reply block, so the directory
//! learns neither the service's nor the client's address. A directory stores only descriptors
//! that verify ([`HsDirStore::insert`]: signature, key hashes to the id, `now` inside the
//! validity window, validity ending at most [`MAX_HSDIR_VALIDITY`] seconds from now, at most
//! [`MAX_HSDIR_DESCRIPTOR`] bytes); the newest (`valid_from`) wins; expired entries are
//! dropped; at most [`MAX_HSDIR_ENTRIES`] entries (when full, the entry expiring soonest is
//! evicted).

use std::collections::HashMap;

use crate::descriptor::UncheckedServiceDescriptor;
use crate::error::MixError;
use crate::packet::{PacketSize, SURB_LEN, Surb};
use crate::select::MixNodeInfo;

/// Directory nodes responsible for one (service id, day).
pub const HSDIR_REPLICAS: usize = 3;
/// Descriptors a directory node keeps.
pub const MAX_HSDIR_ENTRIES: usize = 4096;
/// Largest descriptor a directory accepts: 8 introduction points (81 + 8 × 100 + 64 bytes),
/// so a publication with a reply block fits one 2 KiB packet.
pub const MAX_HSDIR_DESCRIPTOR: usize = 945;
/// Longest remaining validity (seconds after `now`) a directory accepts.
pub const MAX_HSDIR_VALIDITY: u64 = 2 * 86_400;
/// Seconds per directory epoch (one UTC day).
pub const HSDIR_EPOCH_SECS: u64 = 86_400;
const HSDIR_CTX: &[u8] = b"bn-hsdir";

/// Message kind bytes of the directory protocol (shared numbering with [`crate::app::kind`]).
pub mod kind {
    /// Service publishes a descriptor.
    pub const HSDIR_PUBLISH: u8 = 0x07;
    /// Client looks a descriptor up.
    pub const HSDIR_LOOKUP: u8 = 0x08;
    /// Directory acknowledges a publication.
    pub const HSDIR_PUBLISHED: u8 = 0x17;
    /// Directory answers a lookup.
    pub const HSDIR_RESULT: u8 = 0x18;
}

/// The directory epoch (UTC day) of `now`.
pub fn epoch_day(now: u64) -> u64 {
    now / HSDIR_EPOCH_SECS
}

/// `SHA-256("bn-hsdir" ‖ service_id ‖ u64be(day))`.
pub fn hsdir_key(service_id: &[u8; 32], day: u64) -> [u8; 32] {
    betanet_crypto::hash::sha256_concat(&[HSDIR_CTX, service_id, &day.to_be_bytes()])
}

/// The `k` nodes of `nodes` closest (XOR on node ids) to [`hsdir_key`], nearest first;
/// duplicate ids count once.
pub fn responsible(
    nodes: &[MixNodeInfo],
    service_id: &[u8; 32],
    day: u64,
    k: usize,
) -> Vec<MixNodeInfo> {
    let key = hsdir_key(service_id, day);
    let dist = |n: &MixNodeInfo| -> [u8; 32] {
        let mut d = [0u8; 32];
        for (o, (a, b)) in d.iter_mut().zip(n.id.iter().zip(key.iter())) {
            *o = a ^ b;
        }
        d
    };
    let mut v: Vec<MixNodeInfo> = nodes.to_vec();
    v.sort_by_key(|n| (dist(n), n.id));
    v.dedup_by_key(|n| n.id);
    v.truncate(k);
    v
}

/// Outcome of a publication, as a directory reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishStatus {
    /// Stored (or replaced an older descriptor).
    Stored,
    /// Malformed, too large, bad signature or no introduction points.
    Invalid,
    /// `now` is outside the validity window.
    Expired,
    /// Validity ends more than [`MAX_HSDIR_VALIDITY`] seconds from now.
    TooLong,
    /// The directory holds a newer descriptor (larger `valid_from`) for this id.
    Older,
}

impl PublishStatus {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            PublishStatus::Stored => 0,
            PublishStatus::Invalid => 1,
            PublishStatus::Expired => 2,
            PublishStatus::TooLong => 3,
            PublishStatus::Older => 4,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Result<Self, MixError> {
        Ok(match c {
            0 => PublishStatus::Stored,
            1 => PublishStatus::Invalid,
            2 => PublishStatus::Expired,
            3 => PublishStatus::TooLong,
            4 => PublishStatus::Older,
            _ => return Err(MixError::BadHsDir("unknown publish status")),
        })
    }
}

/// A directory request as a directory node receives it.
#[derive(Clone, Debug)]
pub enum HsDirRequest {
    /// `HSDIR_PUBLISH`.
    Publish {
        /// Reply block for the acknowledgement.
        surb: Option<Surb>,
        /// The signed descriptor (unverified).
        descriptor: Vec<u8>,
    },
    /// `HSDIR_LOOKUP`.
    Lookup {
        /// The id looked up.
        service_id: [u8; 32],
        /// Reply block for the answer.
        surb: Surb,
    },
}

/// Encodes `HSDIR_PUBLISH`.
pub fn publish(surb: Option<&Surb>, descriptor: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + SURB_LEN + descriptor.len());
    m.push(kind::HSDIR_PUBLISH);
    m.push(u8::from(surb.is_some()));
    if let Some(s) = surb {
        m.extend_from_slice(&s.encode());
    }
    m.extend_from_slice(descriptor);
    m
}

/// Encodes `HSDIR_LOOKUP`.
pub fn lookup(service_id: &[u8; 32], surb: &Surb) -> Vec<u8> {
    let mut m = Vec::with_capacity(33 + SURB_LEN);
    m.push(kind::HSDIR_LOOKUP);
    m.extend_from_slice(service_id);
    m.extend_from_slice(&surb.encode());
    m
}

fn id_at(b: &[u8], off: usize) -> Result<[u8; 32], MixError> {
    b.get(off..off + 32)
        .and_then(|s| s.try_into().ok())
        .ok_or(MixError::BadHsDir("truncated"))
}

fn surb_at(b: &[u8], off: usize) -> Result<Surb, MixError> {
    Surb::decode(
        b.get(off..off + SURB_LEN)
            .ok_or(MixError::BadHsDir("truncated reply block"))?,
    )
}

impl HsDirRequest {
    /// Decodes a request (the first byte is the kind). Never panics.
    pub fn decode(m: &[u8]) -> Result<Self, MixError> {
        match m.first().copied() {
            Some(kind::HSDIR_PUBLISH) => {
                let (surb, off) = match m.get(1).copied() {
                    Some(0) => (None, 2),
                    Some(1) => (Some(surb_at(m, 2)?), 2 + SURB_LEN),
                    Some(_) => return Err(MixError::BadHsDir("bad reply-block flag")),
                    None => return Err(MixError::BadHsDir("truncated")),
                };
                let descriptor = m.get(off..).unwrap_or_default();
                if descriptor.is_empty() || descriptor.len() > MAX_HSDIR_DESCRIPTOR {
                    return Err(MixError::BadHsDir("descriptor empty or too large"));
                }
                Ok(HsDirRequest::Publish {
                    surb,
                    descriptor: descriptor.to_vec(),
                })
            }
            Some(kind::HSDIR_LOOKUP) => {
                if m.len() != 33 + SURB_LEN {
                    return Err(MixError::BadHsDir("lookup has the wrong length"));
                }
                Ok(HsDirRequest::Lookup {
                    service_id: id_at(m, 1)?,
                    surb: surb_at(m, 33)?,
                })
            }
            _ => Err(MixError::BadHsDir("not a directory request")),
        }
    }
}

/// A directory answer as the requester receives it (through its reply block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HsDirReply {
    /// `HSDIR_PUBLISHED`.
    Published {
        /// Outcome.
        status: PublishStatus,
        /// The id the descriptor claimed (zeros if it could not be decoded).
        service_id: [u8; 32],
    },
    /// `HSDIR_RESULT`.
    Result {
        /// The id looked up.
        service_id: [u8; 32],
        /// The stored descriptor, if any (the requester must verify it).
        descriptor: Option<Vec<u8>>,
    },
}

impl HsDirReply {
    /// Encodes the reply message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            HsDirReply::Published { status, service_id } => {
                let mut m = vec![kind::HSDIR_PUBLISHED, status.code()];
                m.extend_from_slice(service_id);
                m
            }
            HsDirReply::Result {
                service_id,
                descriptor,
            } => {
                let mut m = vec![kind::HSDIR_RESULT, u8::from(descriptor.is_some())];
                m.extend_from_slice(service_id);
                if let Some(d) = descriptor {
                    m.extend_from_slice(d);
                }
                m
            }
        }
    }

    /// Decodes a reply. Never panics.
    pub fn decode(m: &[u8]) -> Result<Self, MixError> {
        match m.first().copied() {
            Some(kind::HSDIR_PUBLISHED) => {
                if m.len() != 34 {
                    return Err(MixError::BadHsDir("publish ack has the wrong length"));
                }
                Ok(HsDirReply::Published {
                    status: PublishStatus::from_code(
                        m.get(1).copied().ok_or(MixError::BadHsDir("truncated"))?,
                    )?,
                    service_id: id_at(m, 2)?,
                })
            }
            Some(kind::HSDIR_RESULT) => {
                let service_id = id_at(m, 2)?;
                let rest = m.get(34..).unwrap_or_default();
                let descriptor = match m.get(1).copied() {
                    Some(0) if rest.is_empty() => None,
                    Some(1) if !rest.is_empty() && rest.len() <= MAX_HSDIR_DESCRIPTOR => {
                        Some(rest.to_vec())
                    }
                    _ => return Err(MixError::BadHsDir("bad lookup result")),
                };
                Ok(HsDirReply::Result {
                    service_id,
                    descriptor,
                })
            }
            _ => Err(MixError::BadHsDir("not a directory reply")),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    descriptor: Vec<u8>,
    valid_from: u64,
    valid_until: u64,
}

/// A directory node's bounded descriptor store (sans-IO; `now` is an argument).
#[derive(Debug, Default)]
pub struct HsDirStore {
    map: HashMap<[u8; 32], Entry>,
}

impl HsDirStore {
    /// An empty store.
    pub fn new() -> Self {
        HsDirStore::default()
    }

    /// Descriptors held (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops expired descriptors.
    pub fn purge(&mut self, now: u64) {
        self.map.retain(|_, e| e.valid_until >= now);
    }

    /// Verifies and stores `descriptor` at `now`; returns the status and the claimed id (zeros
    /// when the bytes do not decode).
    pub fn insert(&mut self, descriptor: &[u8], now: u64) -> (PublishStatus, [u8; 32]) {
        if descriptor.len() > MAX_HSDIR_DESCRIPTOR {
            return (PublishStatus::Invalid, [0; 32]);
        }
        let Ok(u) = UncheckedServiceDescriptor::decode(descriptor) else {
            return (PublishStatus::Invalid, [0; 32]);
        };
        let id = u.service_id();
        let (from, until) = (u.valid_from(), u.valid_until());
        if now < from || now > until {
            return (PublishStatus::Expired, id);
        }
        if until - now > MAX_HSDIR_VALIDITY {
            return (PublishStatus::TooLong, id);
        }
        if u.verify(&id, now).is_err() {
            return (PublishStatus::Invalid, id);
        }
        if let Some(old) = self.map.get(&id)
            && old.valid_until >= now
            && old.valid_from > from
        {
            return (PublishStatus::Older, id);
        }
        if !self.map.contains_key(&id) && self.map.len() >= MAX_HSDIR_ENTRIES {
            self.purge(now);
            if self.map.len() >= MAX_HSDIR_ENTRIES
                && let Some(victim) = self
                    .map
                    .iter()
                    .min_by_key(|(k, e)| (e.valid_until, **k))
                    .map(|(k, _)| *k)
            {
                self.map.remove(&victim);
            }
        }
        self.map.insert(
            id,
            Entry {
                descriptor: descriptor.to_vec(),
                valid_from: from,
                valid_until: until,
            },
        );
        (PublishStatus::Stored, id)
    }

    /// The stored descriptor for `service_id` if it is still valid at `now` (an expired one is
    /// dropped).
    pub fn get(&mut self, service_id: &[u8; 32], now: u64) -> Option<&[u8]> {
        if self
            .map
            .get(service_id)
            .is_some_and(|e| e.valid_until < now)
        {
            self.map.remove(service_id);
        }
        self.map
            .get(service_id)
            .filter(|e| e.valid_from <= now)
            .map(|e| e.descriptor.as_slice())
    }
}

/// Largest message an `HSDIR_PUBLISH` with a reply block makes (fits a 2 KiB packet).
pub const MAX_PUBLISH_MESSAGE: usize = 2 + SURB_LEN + MAX_HSDIR_DESCRIPTOR;
const _: () = assert!(MAX_PUBLISH_MESSAGE <= PacketSize::K2.max_message());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MixPublicKey;
    use crate::descriptor::{IntroPoint, ServiceDescriptor, id_of};
    use crate::packet::NodeAddr;
    use ed25519_dalek::SigningKey;

    fn desc(seed: u8, from: u64, until: u64, n: usize) -> Vec<u8> {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let ips = (0..n)
            .map(|i| IntroPoint {
                node_id: [i as u8; 32],
                addr: NodeAddr("127.0.0.1:9".parse().unwrap()),
                key_epoch: 1,
                key: MixPublicKey([7; 32]),
            })
            .collect();
        ServiceDescriptor::sign(&sk, MixPublicKey([4; 32]), from, until, ips)
    }

    fn sid(seed: u8) -> [u8; 32] {
        id_of(
            &SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
        )
    }

    #[test]
    fn store_verifies_bounds_and_keeps_the_newest() {
        let mut s = HsDirStore::new();
        let now = 1_000_000;
        let d = desc(1, now - 10, now + 100, 1);
        assert_eq!(s.insert(&d, now), (PublishStatus::Stored, sid(1)));
        assert_eq!(s.get(&sid(1), now), Some(&d[..]));
        // forged: one flipped byte in the body
        let mut f = desc(2, now - 10, now + 100, 1);
        f[40] ^= 1; // inside the X25519 key
        assert_eq!(s.insert(&f, now).0, PublishStatus::Invalid);
        assert_eq!(s.get(&sid(2), now), None);
        // expired, not yet valid, too long
        assert_eq!(
            s.insert(&desc(3, now - 100, now - 1, 1), now).0,
            PublishStatus::Expired
        );
        assert_eq!(
            s.insert(&desc(3, now + 5, now + 100, 1), now).0,
            PublishStatus::Expired
        );
        assert_eq!(
            s.insert(&desc(3, now, now + MAX_HSDIR_VALIDITY + 1, 1), now)
                .0,
            PublishStatus::TooLong
        );
        // no intro points, too many bytes, garbage
        assert_eq!(
            s.insert(&desc(3, now, now + 10, 0), now).0,
            PublishStatus::Invalid
        );
        assert_eq!(
            s.insert(&desc(3, now, now + 10, 9), now).0,
            PublishStatus::Invalid
        );
        assert_eq!(s.insert(b"junk", now).0, PublishStatus::Invalid);
        // newest wins; an older one is refused
        let newer = desc(1, now - 5, now + 200, 2);
        assert_eq!(s.insert(&newer, now).0, PublishStatus::Stored);
        assert_eq!(s.get(&sid(1), now), Some(&newer[..]));
        assert_eq!(s.insert(&d, now).0, PublishStatus::Older);
        assert_eq!(s.len(), 1);
        // expiry drops it
        assert_eq!(s.get(&sid(1), now + 201), None);
        assert!(s.is_empty());
    }

    #[test]
    fn store_is_bounded() {
        let mut s = HsDirStore::new();
        let now = 5_000;
        for i in 0..MAX_HSDIR_ENTRIES {
            let mut e = desc(1, now, now + 10, 1);
            // distinct ids without signing: insert directly
            e[0] = (i % 256) as u8;
            s.map.insert(
                [
                    (i % 256) as u8,
                    (i / 256) as u8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                ],
                Entry {
                    descriptor: e,
                    valid_from: now,
                    valid_until: now + 10 + i as u64,
                },
            );
        }
        assert_eq!(s.len(), MAX_HSDIR_ENTRIES);
        assert_eq!(
            s.insert(&desc(7, now, now + 50_000, 1), now).0,
            PublishStatus::Stored
        );
        assert_eq!(s.len(), MAX_HSDIR_ENTRIES);
        assert!(s.get(&sid(7), now).is_some());
    }

    #[test]
    fn responsible_set_is_stable_and_distinct() {
        let nodes: Vec<MixNodeInfo> = (0..10u8)
            .map(|i| MixNodeInfo {
                id: [i; 32],
                addr: NodeAddr("127.0.0.1:1".parse().unwrap()),
                key: MixPublicKey([1; 32]),
                key_epoch: 1,
                as_group: None,
                weight: 1,
            })
            .collect();
        let a = responsible(&nodes, &[5; 32], 100, 3);
        assert_eq!(a.len(), 3);
        let mut rev = nodes.clone();
        rev.reverse();
        rev.extend(nodes.iter().copied());
        assert_eq!(responsible(&rev, &[5; 32], 100, 3), a);
        let ids: std::collections::HashSet<_> = a.iter().map(|n| n.id).collect();
        assert_eq!(ids.len(), 3);
        assert_ne!(hsdir_key(&[5; 32], 100), hsdir_key(&[5; 32], 101));
        assert_eq!(epoch_day(86_400 * 3 + 5), 3);
    }

    proptest::proptest! {
        #[test]
        fn replies_roundtrip(id: [u8; 32], st in 0u8..5, d in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..MAX_HSDIR_DESCRIPTOR)) {
            let p = HsDirReply::Published { status: PublishStatus::from_code(st).unwrap(), service_id: id };
            proptest::prop_assert_eq!(HsDirReply::decode(&p.encode()).unwrap(), p);
            let r = HsDirReply::Result { service_id: id, descriptor: (!d.is_empty()).then_some(d) };
            proptest::prop_assert_eq!(HsDirReply::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200), now: u64) {
            let _ = HsDirRequest::decode(&b);
            let _ = HsDirReply::decode(&b);
            let _ = HsDirStore::new().insert(&b, now);
        }
    }
}

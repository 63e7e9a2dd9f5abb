//! Hop selection per SPEC §7 (pure: the beacon value, the node set and the nonce are inputs).
//!
//! * seed = `SHA-256(BeaconSet(epoch) ‖ srcPeerID ‖ dstPeerID ‖ streamNonce16)`;
//!   without a beacon, `BeaconSet = SHA-256("bn-fallback" ‖ K0c ‖ u64be(epoch))`, and the
//!   fallback is logged.
//! * A verifiable, weighted lottery: every node gets the ticket
//!   `-ln(u) / weight` with `u` from `SHA-256("bn-mix-lottery" ‖ attemptSeed ‖ nodeId)`; the
//!   lowest tickets win, in ticket order. Anyone holding the seed and the node set can recompute
//!   the draw ([`lottery`]).
//! * At least one hop outside both endpoints' AS groups when those are known.
//! * The exact hop set is not reused within `(src, dst, epoch)` until 8 distinct sets were
//!   tried ([`HopSelector`]).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::crypto::MixPublicKey;
use crate::error::MixError;
use crate::packet::{NodeAddr, RouteHop};

/// Distinct hop sets that must be tried before one may repeat.
pub const DISTINCT_SETS_BEFORE_REUSE: usize = 8;

/// Privacy mode (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PrivacyMode {
    /// Every stream through ≥ 3 hops.
    Strict,
    /// ≥ 2 hops until the peer's trust is ≥ 0.8 (default).
    #[default]
    Balanced,
    /// No hops unless the destination is labelled `.mixreq`.
    Performance,
}

impl PrivacyMode {
    /// Minimum number of mix hops for a stream to a peer with `peer_trust` (0..=1), whose name
    /// is or is not labelled `.mixreq`.
    pub fn min_hops(self, peer_trust: f64, dst_mixreq: bool) -> usize {
        match self {
            PrivacyMode::Strict => 3,
            PrivacyMode::Balanced => {
                if peer_trust >= 0.8 && !dst_mixreq {
                    0
                } else {
                    2
                }
            }
            PrivacyMode::Performance => {
                if dst_mixreq {
                    2
                } else {
                    0
                }
            }
        }
    }
}

/// An advertised mixnode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixNodeInfo {
    /// Node identity (SPEC §3 PeerID / NodeId bytes).
    pub id: [u8; 32],
    /// Where to reach it.
    pub addr: NodeAddr,
    /// Its current mix key and key epoch.
    pub key: MixPublicKey,
    /// Key epoch of `key`.
    pub key_epoch: u32,
    /// AS group, when known.
    pub as_group: Option<u32>,
    /// Lottery weight (e.g. advertised capacity); 0 is treated as 1.
    pub weight: u32,
}

impl MixNodeInfo {
    /// The route hop for packet construction.
    pub fn route_hop(&self) -> RouteHop {
        RouteHop {
            addr: self.addr,
            epoch: self.key_epoch,
            key: self.key,
        }
    }
}

/// `BeaconSet(epoch)`: the beacon value if one was reached, else the SPEC fallback (logged).
/// Returns the value and whether the fallback was used.
pub fn beacon_set(beacon: Option<[u8; 32]>, k0c: &[u8; 32], epoch: u64) -> ([u8; 32], bool) {
    match beacon {
        Some(b) => (b, false),
        None => {
            tracing::warn!(
                epoch,
                "no beacon source reachable: using bn-fallback BeaconSet"
            );
            let mut h = Sha256::new();
            h.update(b"bn-fallback");
            h.update(k0c);
            h.update(epoch.to_be_bytes());
            (h.finalize().into(), true)
        }
    }
}

/// The path seed.
pub fn path_seed(
    beacon_set: &[u8; 32],
    src: &[u8; 32],
    dst: &[u8; 32],
    stream_nonce: &[u8; 16],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(beacon_set);
    h.update(src);
    h.update(dst);
    h.update(stream_nonce);
    h.finalize().into()
}

fn ticket(seed: &[u8; 32], node: &MixNodeInfo) -> f64 {
    let mut h = Sha256::new();
    h.update(b"bn-mix-lottery");
    h.update(seed);
    h.update(node.id);
    let d: [u8; 32] = h.finalize().into();
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[..8]);
    let u = ((u64::from_be_bytes(a) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -u.ln() / f64::from(node.weight.max(1))
}

/// Endpoints of a stream, for exclusion and AS diversity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Source peer id.
    pub src: [u8; 32],
    /// Destination peer id.
    pub dst: [u8; 32],
    /// Source AS group, when known.
    pub src_as: Option<u32>,
    /// Destination AS group, when known.
    pub dst_as: Option<u32>,
}

/// The verifiable lottery: indexes into `nodes` of `hops` winners, in route order.
pub fn lottery(
    seed: &[u8; 32],
    nodes: &[MixNodeInfo],
    hops: usize,
    ends: &Endpoints,
) -> Result<Vec<usize>, MixError> {
    let mut ranked: Vec<(f64, usize)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.id != ends.src && n.id != ends.dst)
        .map(|(i, n)| (ticket(seed, n), i))
        .collect();
    if ranked.len() < hops {
        return Err(MixError::NotEnoughNodes {
            need: hops,
            have: ranked.len(),
        });
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = ranked.iter().take(hops).map(|r| r.1).collect();
    let known = ends.src_as.is_some() || ends.dst_as.is_some();
    if known && hops > 0 {
        let diverse = |i: usize| {
            nodes
                .get(i)
                .and_then(|n| n.as_group)
                .is_some_and(|g| Some(g) != ends.src_as && Some(g) != ends.dst_as)
        };
        if !chosen.iter().any(|&i| diverse(i)) {
            let best = ranked
                .iter()
                .skip(hops)
                .map(|r| r.1)
                .find(|&i| diverse(i))
                .ok_or(MixError::NoAsDiversity)?;
            // Replace the lowest-ranked winner (keeps the draw verifiable).
            if let Some(last) = chosen.last_mut() {
                *last = best;
            }
        }
    }
    Ok(chosen)
}

type HistKey = ([u8; 32], [u8; 32], u64);

/// Remembers which hop sets were used per `(src, dst, epoch)` and redraws to avoid reuse.
#[derive(Debug, Default)]
pub struct HopSelector {
    history: HashMap<HistKey, Vec<Vec<[u8; 32]>>>,
    order: VecDeque<HistKey>,
}

/// Bound on remembered `(src, dst, epoch)` triples.
const MAX_HISTORY: usize = 4096;
/// Bound on redraws per selection.
const MAX_ATTEMPTS: u32 = 64;

impl HopSelector {
    /// Empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects `hops` mixnodes for a stream. `seed` is [`path_seed`]'s output; redraws use
    /// `SHA-256(seed ‖ u32be(attempt))`.
    pub fn select(
        &mut self,
        seed: &[u8; 32],
        epoch: u64,
        nodes: &[MixNodeInfo],
        hops: usize,
        ends: &Endpoints,
    ) -> Result<Vec<MixNodeInfo>, MixError> {
        let key = (ends.src, ends.dst, epoch);
        let used = self.history.get(&key).cloned().unwrap_or_default();
        let mut first: Option<Vec<usize>> = None;
        let mut pick: Option<Vec<usize>> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let s = if attempt == 0 {
                *seed
            } else {
                let mut h = Sha256::new();
                h.update(seed);
                h.update(attempt.to_be_bytes());
                h.finalize().into()
            };
            let idx = lottery(&s, nodes, hops, ends)?;
            let set = set_of(nodes, &idx);
            if !used.contains(&set) {
                pick = Some(idx);
                break;
            }
            if first.is_none() {
                first = Some(idx);
            }
        }
        // Either a fresh set, or (space exhausted) the first draw.
        let idx = pick.or(first).ok_or(MixError::NotEnoughNodes {
            need: hops,
            have: nodes.len(),
        })?;
        let set = set_of(nodes, &idx);
        if !self.history.contains_key(&key) {
            if self.order.len() >= MAX_HISTORY
                && let Some(old) = self.order.pop_front()
            {
                self.history.remove(&old);
            }
            self.order.push_back(key);
        }
        let h = self.history.entry(key).or_default();
        if !h.contains(&set) {
            h.push(set);
        }
        if h.len() >= DISTINCT_SETS_BEFORE_REUSE {
            // 8 distinct sets were tried: reuse is allowed again from now on.
            h.clear();
        }
        Ok(idx.iter().filter_map(|&i| nodes.get(i).copied()).collect())
    }
}

fn set_of(nodes: &[MixNodeInfo], idx: &[usize]) -> Vec<[u8; 32]> {
    let mut s: Vec<[u8; 32]> = idx
        .iter()
        .filter_map(|&i| nodes.get(i).map(|n| n.id))
        .collect();
    s.sort_unstable();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8, as_group: Option<u32>) -> MixNodeInfo {
        MixNodeInfo {
            id: [i; 32],
            addr: NodeAddr(
                format!("127.0.0.1:{}", 1000 + u16::from(i))
                    .parse()
                    .unwrap(),
            ),
            key: MixPublicKey([i; 32]),
            key_epoch: 1,
            as_group,
            weight: 1,
        }
    }

    fn ends() -> Endpoints {
        Endpoints {
            src: [200; 32],
            dst: [201; 32],
            src_as: None,
            dst_as: None,
        }
    }

    #[test]
    fn fallback_beacon_is_spec_hash_and_flagged() {
        let (b, fb) = beacon_set(None, &[7; 32], 42);
        assert!(fb);
        let mut h = Sha256::new();
        h.update(b"bn-fallback");
        h.update([7u8; 32]);
        h.update(42u64.to_be_bytes());
        assert_eq!(b, <[u8; 32]>::from(h.finalize()));
        assert_eq!(beacon_set(Some([1; 32]), &[7; 32], 42), ([1; 32], false));
    }

    #[test]
    fn lottery_is_deterministic_excludes_endpoints_and_is_fair() {
        let mut nodes: Vec<_> = (0..10).map(|i| node(i, None)).collect();
        nodes.push(node(200, None)); // the source itself
        let seed = path_seed(&[1; 32], &[200; 32], &[201; 32], &[0; 16]);
        let a = lottery(&seed, &nodes, 3, &ends()).unwrap();
        assert_eq!(a, lottery(&seed, &nodes, 3, &ends()).unwrap());
        assert_eq!(a.len(), 3);
        assert!(!a.contains(&10));
        let mut counts = [0u32; 10];
        for n in 0..3000u32 {
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&n.to_be_bytes());
            let s = path_seed(&[1; 32], &[200; 32], &[201; 32], &nonce);
            for i in lottery(&s, &nodes, 3, &ends()).unwrap() {
                counts[i] += 1;
            }
        }
        // 900 expected per node
        assert!(
            counts.iter().all(|&c| (750..1050).contains(&c)),
            "{counts:?}"
        );
        assert!(matches!(
            lottery(&seed, &nodes[..2], 3, &ends()),
            Err(MixError::NotEnoughNodes { need: 3, have: 2 })
        ));
    }

    #[test]
    fn weights_bias_the_lottery() {
        let mut nodes: Vec<_> = (0..4).map(|i| node(i, None)).collect();
        nodes[0].weight = 10;
        let mut c0 = 0;
        for n in 0..2000u32 {
            let s = path_seed(&[2; 32], &[200; 32], &[201; 32], &[n as u8; 16]);
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&n.to_be_bytes());
            let s = path_seed(&s, &[0; 32], &[0; 32], &nonce);
            if lottery(&s, &nodes, 1, &ends()).unwrap()[0] == 0 {
                c0 += 1;
            }
        }
        // P = 10/13 ≈ 0.77
        assert!((1400..1700).contains(&c0), "{c0}");
    }

    #[test]
    fn as_diversity_enforced() {
        // All nodes in the endpoints' AS except node 9.
        let mut nodes: Vec<_> = (0..10).map(|i| node(i, Some(1))).collect();
        nodes[9].as_group = Some(2);
        let e = Endpoints {
            src_as: Some(1),
            dst_as: Some(1),
            ..ends()
        };
        for n in 0..50u8 {
            let s = path_seed(&[3; 32], &[200; 32], &[201; 32], &[n; 16]);
            let idx = lottery(&s, &nodes, 3, &e).unwrap();
            assert!(idx.contains(&9), "{idx:?}");
        }
        nodes[9].as_group = Some(1);
        let s = path_seed(&[3; 32], &[200; 32], &[201; 32], &[0; 16]);
        assert!(matches!(
            lottery(&s, &nodes, 3, &e),
            Err(MixError::NoAsDiversity)
        ));
    }

    #[test]
    fn no_exact_reuse_until_eight_sets() {
        let nodes: Vec<_> = (0..6).map(|i| node(i, None)).collect();
        let mut sel = HopSelector::new();
        let seed = [9u8; 32];
        let mut seen: Vec<Vec<[u8; 32]>> = Vec::new();
        for _ in 0..DISTINCT_SETS_BEFORE_REUSE {
            // same seed every time: without the history this would repeat
            let hops = sel.select(&seed, 5, &nodes, 3, &ends()).unwrap();
            let mut s: Vec<_> = hops.iter().map(|h| h.id).collect();
            s.sort_unstable();
            assert!(!seen.contains(&s), "reused {s:?} after {} sets", seen.len());
            seen.push(s);
        }
        // after 8 distinct sets, the first draw may come back
        let hops = sel.select(&seed, 5, &nodes, 3, &ends()).unwrap();
        let mut s: Vec<_> = hops.iter().map(|h| h.id).collect();
        s.sort_unstable();
        assert_eq!(s, seen[0]);
        // a different epoch has its own history
        let other = sel.select(&seed, 6, &nodes, 3, &ends()).unwrap();
        let mut s2: Vec<_> = other.iter().map(|h| h.id).collect();
        s2.sort_unstable();
        assert_eq!(s2, seen[0]);
    }

    #[test]
    fn modes() {
        assert_eq!(PrivacyMode::Strict.min_hops(1.0, false), 3);
        assert_eq!(PrivacyMode::Balanced.min_hops(0.5, false), 2);
        assert_eq!(PrivacyMode::Balanced.min_hops(0.9, false), 0);
        assert_eq!(PrivacyMode::Performance.min_hops(0.0, false), 0);
        assert_eq!(PrivacyMode::Performance.min_hops(0.0, true), 2);
    }
}

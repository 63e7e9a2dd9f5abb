//! The layered packet format (sans-IO): construction, per-hop processing and reply blocks.
//!
//! Layout of every packet (fixed size, 1024 or 2048 bytes):
//!
//! ```text
//! version(1)=0x01 | key_epoch(4, BE) | alpha(32) | gamma(16) | beta(5 × 85 = 425) | payload
//! ```
//!
//! * `alpha` is the hop's own one-time X25519 public key (one scalar multiplication per hop; no
//!   Sphinx blinding), `gamma` the truncated HMAC-SHA256 of `beta` under the hop's MAC key.
//! * `beta` is the Sphinx-style onion of routing slots (with filler so every hop sees the same
//!   length). A slot is `command(1) | next_epoch(4) | address(32) | next_alpha(32) |
//!   next_gamma(16)`.
//! * The payload is LIONESS-encrypted once per hop; its plaintext is `0^16 | len(2, BE) |
//!   message | zero padding`, so the exit detects any modification (tagging) with probability
//!   1 - 2^-128.

use rand_core::{CryptoRng, RngCore};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::crypto::{
    self, HopKeys, MAC_LEN, MixPublicKey, MixSecretKey, PayloadKey, REPLAY_TAG_LEN,
};
use crate::error::MixError;

/// Packet format version byte.
pub const VERSION: u8 = 1;
/// Maximum number of hops a header can carry.
pub const MAX_HOPS: usize = 5;
/// Size of one routing slot.
pub const SLOT_LEN: usize = 1 + 4 + 32 + 32 + MAC_LEN;
/// Size of the routing onion `beta`.
pub const BETA_LEN: usize = MAX_HOPS * SLOT_LEN;
/// Total header size.
pub const HEADER_LEN: usize = 1 + 4 + 32 + MAC_LEN + BETA_LEN;
/// Length of the all-zero integrity prefix of the payload plaintext.
pub const ZERO_PREFIX: usize = 16;
/// Length of a SURB identifier.
pub const SURB_ID_LEN: usize = 16;

const OFF_EPOCH: usize = 1;
const OFF_ALPHA: usize = 5;
const OFF_GAMMA: usize = 37;
const OFF_BETA: usize = 37 + MAC_LEN;

const CMD_FORWARD: u8 = 0;
const CMD_DELIVER: u8 = 1;
const CMD_REPLY: u8 = 2;

/// Supported fixed packet sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PacketSize {
    /// 1 KiB packets.
    K1,
    /// 2 KiB packets (default).
    #[default]
    K2,
}

impl PacketSize {
    /// Total bytes on the wire.
    pub const fn len(self) -> usize {
        match self {
            PacketSize::K1 => 1024,
            PacketSize::K2 => 2048,
        }
    }

    /// Always false (packets are never empty); present for API symmetry with `len`.
    pub const fn is_empty(self) -> bool {
        false
    }

    /// Payload bytes (after the header).
    pub const fn payload_len(self) -> usize {
        self.len() - HEADER_LEN
    }

    /// Largest message one packet carries.
    pub const fn max_message(self) -> usize {
        self.payload_len() - ZERO_PREFIX - 2
    }

    /// Size class of a received packet, from its length.
    pub fn from_len(len: usize) -> Result<Self, MixError> {
        match len {
            1024 => Ok(PacketSize::K1),
            2048 => Ok(PacketSize::K2),
            other => Err(MixError::BadLength(other)),
        }
    }
}

/// Where a node forwards a packet: an IP socket address in a fixed 32-byte encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr(pub SocketAddr);

impl NodeAddr {
    /// Encodes as `4 | ip4 | port | 0…` or `6 | ip6 | port | 0…`.
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self.0.ip() {
            IpAddr::V4(ip) => {
                out[0] = 4;
                out[1..5].copy_from_slice(&ip.octets());
                out[5..7].copy_from_slice(&self.0.port().to_be_bytes());
            }
            IpAddr::V6(ip) => {
                out[0] = 6;
                out[1..17].copy_from_slice(&ip.octets());
                out[17..19].copy_from_slice(&self.0.port().to_be_bytes());
            }
        }
        out
    }

    /// Decodes [`NodeAddr::encode`]'s output; rejects unknown tags and non-zero padding.
    pub fn decode(b: &[u8; 32]) -> Result<Self, MixError> {
        let (ip, port, used): (IpAddr, u16, usize) = match b[0] {
            4 => {
                let mut o = [0u8; 4];
                o.copy_from_slice(&b[1..5]);
                (
                    IpAddr::V4(Ipv4Addr::from(o)),
                    u16::from_be_bytes([b[5], b[6]]),
                    7,
                )
            }
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[1..17]);
                (
                    IpAddr::V6(Ipv6Addr::from(o)),
                    u16::from_be_bytes([b[17], b[18]]),
                    19,
                )
            }
            _ => return Err(MixError::BadAddress),
        };
        if b[used..].iter().any(|&x| x != 0) {
            return Err(MixError::BadAddress);
        }
        Ok(NodeAddr(SocketAddr::new(ip, port)))
    }
}

/// One hop of a route, as the sender knows it from the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHop {
    /// Where to reach the node.
    pub addr: NodeAddr,
    /// The node's key epoch the packet is built for.
    pub epoch: u32,
    /// The node's mix public key for that epoch.
    pub key: MixPublicKey,
}

/// A per-hop replay tag (derived from the shared secret, so equal for every re-encoding of a
/// packet's ephemeral key).
pub type ReplayTag = [u8; REPLAY_TAG_LEN];

/// Result of processing one layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Processed {
    /// Relay: send `packet` (same size) to `next` after the mixing delay.
    Forward {
        /// Next hop.
        next: NodeAddr,
        /// The re-wrapped packet.
        packet: Vec<u8>,
    },
    /// Exit: the payload verified; hand `message` to the local handler for `dest`.
    Deliver {
        /// 32-byte destination chosen by the sender (service id or application tag).
        dest: [u8; 32],
        /// The end-to-end message.
        message: Vec<u8>,
    },
    /// Last hop of a reply block: send `body` with `surb_id` to the SURB's creator at `to`.
    /// The body is still encrypted for the creator.
    Reply {
        /// Creator's address.
        to: NodeAddr,
        /// Identifies the creator's stored [`SurbSecret`].
        surb_id: [u8; SURB_ID_LEN],
        /// Payload, opened by [`SurbSecret::open`].
        body: Vec<u8>,
    },
}

/// Reads the key epoch of a packet without touching the crypto (to pick the node key).
pub fn peek_epoch(packet: &[u8]) -> Result<u32, MixError> {
    PacketSize::from_len(packet.len())?;
    let v = packet.first().copied().ok_or(MixError::BadLength(0))?;
    if v != VERSION {
        return Err(MixError::BadVersion(v));
    }
    let e = packet
        .get(OFF_EPOCH..OFF_EPOCH + 4)
        .ok_or(MixError::BadLength(packet.len()))?;
    Ok(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
}

fn arr32(b: &[u8]) -> Result<[u8; 32], MixError> {
    b.try_into().map_err(|_| MixError::BadLength(b.len()))
}

/// Processes one layer with this node's key. Returns the replay tag (which the caller must check
/// and record *before* acting on the result) and what to do with the packet.
///
/// The function is pure: no clock, no RNG, no I/O. It never panics on hostile input.
pub fn process(
    key: &MixSecretKey,
    mut packet: Vec<u8>,
) -> Result<(ReplayTag, Processed), MixError> {
    let size = PacketSize::from_len(packet.len())?;
    peek_epoch(&packet)?;
    let alpha = arr32(
        packet
            .get(OFF_ALPHA..OFF_ALPHA + 32)
            .ok_or(MixError::BadLength(0))?,
    )?;
    let shared = key.dh(&alpha)?;
    let keys = HopKeys::derive(&shared);
    let gamma = packet
        .get(OFF_GAMMA..OFF_GAMMA + MAC_LEN)
        .ok_or(MixError::BadLength(0))?;
    let beta = packet
        .get(OFF_BETA..OFF_BETA + BETA_LEN)
        .ok_or(MixError::BadLength(0))?;
    let expect = crypto::header_mac(&keys.mac, beta);
    if !crypto::mac_eq(gamma, &expect) {
        return Err(MixError::HeaderMac);
    }
    // Decrypt beta || 0^SLOT.
    let mut ext = [0u8; BETA_LEN + SLOT_LEN];
    ext[..BETA_LEN].copy_from_slice(beta);
    crypto::xor_keystream(&keys.header, &mut ext);
    let (slot, next_beta) = ext.split_at(SLOT_LEN);
    let cmd = slot[0];
    let next_epoch = [slot[1], slot[2], slot[3], slot[4]];
    let addr = arr32(&slot[5..37])?;
    let next_alpha = &slot[37..69];
    let next_gamma = &slot[69..69 + MAC_LEN];

    let payload = packet
        .get_mut(HEADER_LEN..)
        .ok_or(MixError::BadLength(size.len()))?;
    crypto::lioness_decrypt(&keys.payload, payload);

    let out = match cmd {
        CMD_FORWARD => {
            let next = NodeAddr::decode(&addr)?;
            let hdr = packet
                .get_mut(..HEADER_LEN)
                .ok_or(MixError::BadLength(size.len()))?;
            hdr[OFF_EPOCH..OFF_EPOCH + 4].copy_from_slice(&next_epoch);
            hdr[OFF_ALPHA..OFF_ALPHA + 32].copy_from_slice(next_alpha);
            hdr[OFF_GAMMA..OFF_GAMMA + MAC_LEN].copy_from_slice(next_gamma);
            hdr[OFF_BETA..OFF_BETA + BETA_LEN].copy_from_slice(next_beta);
            Processed::Forward { next, packet }
        }
        CMD_DELIVER => {
            let payload = packet.get(HEADER_LEN..).ok_or(MixError::Tagged)?;
            let message = unframe(payload)?;
            Processed::Deliver {
                dest: addr,
                message,
            }
        }
        CMD_REPLY => {
            let to = NodeAddr::decode(&addr)?;
            let mut surb_id = [0u8; SURB_ID_LEN];
            surb_id.copy_from_slice(&next_alpha[..SURB_ID_LEN]);
            let body = packet.split_off(HEADER_LEN);
            Processed::Reply { to, surb_id, body }
        }
        other => return Err(MixError::UnknownCommand(other)),
    };
    Ok((keys.replay_tag, out))
}

fn frame(size: PacketSize, message: &[u8]) -> Result<Vec<u8>, MixError> {
    let max = size.max_message();
    if message.len() > max {
        return Err(MixError::MessageTooLong {
            len: message.len(),
            max,
        });
    }
    let mut p = vec![0u8; size.payload_len()];
    let len = u16::try_from(message.len()).map_err(|_| MixError::MessageTooLong {
        len: message.len(),
        max,
    })?;
    p[ZERO_PREFIX..ZERO_PREFIX + 2].copy_from_slice(&len.to_be_bytes());
    p[ZERO_PREFIX + 2..ZERO_PREFIX + 2 + message.len()].copy_from_slice(message);
    Ok(p)
}

fn unframe(payload: &[u8]) -> Result<Vec<u8>, MixError> {
    let prefix = payload.get(..ZERO_PREFIX).ok_or(MixError::Tagged)?;
    if !crypto::mac_eq(prefix, &[0u8; ZERO_PREFIX]) {
        return Err(MixError::Tagged);
    }
    let l = payload
        .get(ZERO_PREFIX..ZERO_PREFIX + 2)
        .ok_or(MixError::Tagged)?;
    let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
    let max = payload.len().saturating_sub(ZERO_PREFIX + 2);
    if len > max {
        return Err(MixError::BadPayloadLength { len, max });
    }
    payload
        .get(ZERO_PREFIX + 2..ZERO_PREFIX + 2 + len)
        .map(<[u8]>::to_vec)
        .ok_or(MixError::BadPayloadLength { len, max })
}

/// The final routing command of a header.
enum Final {
    Deliver([u8; 32]),
    Reply(NodeAddr, [u8; SURB_ID_LEN]),
}

/// Builds the header; returns it and the per-hop payload keys (in route order).
fn build_header(
    rng: &mut (impl RngCore + CryptoRng),
    route: &[RouteHop],
    last: Final,
) -> Result<(Vec<u8>, Vec<PayloadKey>), MixError> {
    let n = route.len();
    if n == 0 || n > MAX_HOPS {
        return Err(MixError::PathLength(n));
    }
    let mut alphas = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    for hop in route {
        let eph = MixSecretKey::generate(rng)?;
        let shared = eph.dh(&hop.key.0)?;
        alphas.push(eph.public().0);
        keys.push(HopKeys::derive(&shared));
    }
    // Filler: what hops 0..n-2 append (zeros, then their keystream) and the later hops see.
    let mut filler: Vec<u8> = Vec::with_capacity((n - 1) * SLOT_LEN);
    for k in keys.iter().take(n - 1) {
        filler.extend_from_slice(&[0u8; SLOT_LEN]);
        let mut stream = [0u8; BETA_LEN + SLOT_LEN];
        crypto::xor_keystream(&k.header, &mut stream);
        let start = BETA_LEN + SLOT_LEN - filler.len();
        for (f, s) in filler.iter_mut().zip(&stream[start..]) {
            *f ^= s;
        }
    }
    // Last hop's beta.
    let mut slot = [0u8; SLOT_LEN];
    match last {
        Final::Deliver(dest) => {
            slot[0] = CMD_DELIVER;
            slot[5..37].copy_from_slice(&dest);
        }
        Final::Reply(addr, id) => {
            slot[0] = CMD_REPLY;
            slot[5..37].copy_from_slice(&addr.encode());
            slot[37..37 + SURB_ID_LEN].copy_from_slice(&id);
        }
    }
    let head_len = BETA_LEN - (n - 1) * SLOT_LEN;
    let mut beta = vec![0u8; BETA_LEN];
    beta[..SLOT_LEN].copy_from_slice(&slot);
    crypto::xor_keystream(&keys[n - 1].header, &mut beta[..head_len]);
    beta[head_len..].copy_from_slice(&filler);
    let mut gamma = crypto::header_mac(&keys[n - 1].mac, &beta);

    for i in (0..n - 1).rev() {
        let mut nb = vec![0u8; BETA_LEN];
        nb[0] = CMD_FORWARD;
        nb[1..5].copy_from_slice(&route[i + 1].epoch.to_be_bytes());
        nb[5..37].copy_from_slice(&route[i + 1].addr.encode());
        nb[37..69].copy_from_slice(&alphas[i + 1]);
        nb[69..69 + MAC_LEN].copy_from_slice(&gamma);
        nb[SLOT_LEN..].copy_from_slice(&beta[..BETA_LEN - SLOT_LEN]);
        crypto::xor_keystream(&keys[i].header, &mut nb);
        beta = nb;
        gamma = crypto::header_mac(&keys[i].mac, &beta);
    }
    let mut hdr = Vec::with_capacity(HEADER_LEN);
    hdr.push(VERSION);
    hdr.extend_from_slice(&route[0].epoch.to_be_bytes());
    hdr.extend_from_slice(&alphas[0]);
    hdr.extend_from_slice(&gamma);
    hdr.extend_from_slice(&beta);
    let pkeys = keys.iter().map(|k| k.payload.clone()).collect();
    Ok((hdr, pkeys))
}

/// Builds a forward packet along `route` whose exit delivers `message` to `dest`.
/// Returns the first hop's address and the packet bytes.
pub fn build_packet(
    rng: &mut (impl RngCore + CryptoRng),
    size: PacketSize,
    route: &[RouteHop],
    dest: [u8; 32],
    message: &[u8],
) -> Result<(NodeAddr, Vec<u8>), MixError> {
    let mut payload = frame(size, message)?;
    let (mut pkt, keys) = build_header(rng, route, Final::Deliver(dest))?;
    for k in keys.iter().rev() {
        crypto::lioness_encrypt(k, &mut payload);
    }
    pkt.extend_from_slice(&payload);
    Ok((route[0].addr, pkt))
}

/// A single-use reply block, handed to a responder inside a message.
///
/// Using it consumes it; the mixnodes' replay filters drop a second packet built on the same
/// block (its header, and so its replay tags, repeat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Surb {
    /// First hop of the reply route.
    pub first_hop: NodeAddr,
    /// Packet size the reply must use.
    pub size: PacketSize,
    /// The prepared header.
    pub header: Vec<u8>,
    /// Seed of the LIONESS key the responder encrypts the reply with.
    pub key_seed: [u8; 32],
}

/// What the creator of a [`Surb`] keeps to open the reply.
pub struct SurbSecret {
    /// Identifier the last hop returns with the reply.
    pub id: [u8; SURB_ID_LEN],
    key_seed: zeroize::Zeroizing<[u8; 32]>,
    hop_keys: Vec<PayloadKey>,
}

impl std::fmt::Debug for SurbSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurbSecret")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Encoded length of a SURB.
pub const SURB_LEN: usize = 1 + 32 + HEADER_LEN + 32;

impl Surb {
    /// Creates a reply block whose route ends by handing the reply to `reply_to`.
    pub fn new(
        rng: &mut (impl RngCore + CryptoRng),
        size: PacketSize,
        route: &[RouteHop],
        reply_to: NodeAddr,
    ) -> Result<(Surb, SurbSecret), MixError> {
        let mut id = [0u8; SURB_ID_LEN];
        rng.fill_bytes(&mut id);
        let mut key_seed = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key_seed.as_mut());
        let (header, hop_keys) = build_header(rng, route, Final::Reply(reply_to, id))?;
        Ok((
            Surb {
                first_hop: route[0].addr,
                size,
                header,
                key_seed: *key_seed,
            },
            SurbSecret {
                id,
                key_seed,
                hop_keys,
            },
        ))
    }

    /// Builds the reply packet (consumes the block).
    pub fn into_packet(self, message: &[u8]) -> Result<(NodeAddr, Vec<u8>), MixError> {
        let mut payload = frame(self.size, message)?;
        crypto::lioness_encrypt(&PayloadKey::from_seed(&self.key_seed), &mut payload);
        let mut pkt = self.header;
        pkt.extend_from_slice(&payload);
        Ok((self.first_hop, pkt))
    }

    /// Encoding: `size(1: 1|2) | first_hop(32) | header | key_seed(32)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(SURB_LEN);
        v.push(match self.size {
            PacketSize::K1 => 1,
            PacketSize::K2 => 2,
        });
        v.extend_from_slice(&self.first_hop.encode());
        v.extend_from_slice(&self.header);
        v.extend_from_slice(&self.key_seed);
        v
    }

    /// Decodes [`Surb::encode`]; exact length required.
    pub fn decode(b: &[u8]) -> Result<Surb, MixError> {
        if b.len() != SURB_LEN {
            return Err(MixError::BadLength(b.len()));
        }
        let size = match b.first() {
            Some(1) => PacketSize::K1,
            Some(2) => PacketSize::K2,
            _ => return Err(MixError::BadLength(b.len())),
        };
        let first_hop = NodeAddr::decode(&arr32(b.get(1..33).ok_or(MixError::BadAddress)?)?)?;
        let header = b
            .get(33..33 + HEADER_LEN)
            .ok_or(MixError::BadLength(b.len()))?
            .to_vec();
        let key_seed = arr32(
            b.get(33 + HEADER_LEN..)
                .ok_or(MixError::BadLength(b.len()))?,
        )?;
        Ok(Surb {
            first_hop,
            size,
            header,
            key_seed,
        })
    }
}

impl SurbSecret {
    /// Opens a reply body delivered with this block's id (consumes the secret: single use).
    pub fn open(self, mut body: Vec<u8>) -> Result<Vec<u8>, MixError> {
        for k in self.hop_keys.iter().rev() {
            crypto::lioness_encrypt(k, &mut body);
        }
        crypto::lioness_decrypt(&PayloadKey::from_seed(&self.key_seed), &mut body);
        unframe(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    pub(crate) fn nodes(rng: &mut StdRng, n: usize) -> (Vec<MixSecretKey>, Vec<RouteHop>) {
        let mut sks = Vec::new();
        let mut hops = Vec::new();
        for i in 0..n {
            let sk = MixSecretKey::generate(rng).unwrap();
            hops.push(RouteHop {
                addr: NodeAddr(format!("127.0.0.1:{}", 9000 + i).parse().unwrap()),
                epoch: 7 + i as u32,
                key: sk.public(),
            });
            sks.push(sk);
        }
        (sks, hops)
    }

    fn run(
        sks: &[MixSecretKey],
        hops: &[RouteHop],
        mut pkt: Vec<u8>,
    ) -> Result<Processed, MixError> {
        let mut tags = Vec::new();
        for (i, sk) in sks.iter().enumerate() {
            assert_eq!(peek_epoch(&pkt).unwrap(), hops[i].epoch);
            let (tag, out) = process(sk, pkt)?;
            assert!(!tags.contains(&tag));
            tags.push(tag);
            match out {
                Processed::Forward { next, packet } => {
                    assert_eq!(next, hops[i + 1].addr);
                    pkt = packet;
                }
                other => {
                    assert_eq!(i, sks.len() - 1);
                    return Ok(other);
                }
            }
        }
        panic!("route ended without delivery")
    }

    #[test]
    fn wrap_unwrap_all_sizes_and_lengths() {
        let mut rng = StdRng::seed_from_u64(42);
        for size in [PacketSize::K1, PacketSize::K2] {
            for n in 1..=MAX_HOPS {
                let (sks, hops) = nodes(&mut rng, n);
                for msg_len in [0usize, 1, 100, size.max_message()] {
                    let msg: Vec<u8> = (0..msg_len).map(|i| (i * 7 + n) as u8).collect();
                    let (first, pkt) =
                        build_packet(&mut rng, size, &hops, [9u8; 32], &msg).unwrap();
                    assert_eq!(first, hops[0].addr);
                    assert_eq!(pkt.len(), size.len());
                    match run(&sks, &hops, pkt).unwrap() {
                        Processed::Deliver { dest, message } => {
                            assert_eq!(dest, [9u8; 32]);
                            assert_eq!(message, msg);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn too_long_and_bad_route() {
        let mut rng = StdRng::seed_from_u64(1);
        let (_, hops) = nodes(&mut rng, 6);
        let big = vec![0u8; PacketSize::K1.max_message() + 1];
        assert!(matches!(
            build_packet(&mut rng, PacketSize::K1, &hops[..3], [0; 32], &big),
            Err(MixError::MessageTooLong { .. })
        ));
        assert!(matches!(
            build_packet(&mut rng, PacketSize::K1, &hops, [0; 32], b"x"),
            Err(MixError::PathLength(6))
        ));
        assert!(matches!(
            build_packet(&mut rng, PacketSize::K1, &[], [0; 32], b"x"),
            Err(MixError::PathLength(0))
        ));
    }

    #[test]
    fn header_mac_failure_detected_at_every_hop() {
        let mut rng = StdRng::seed_from_u64(2);
        let (sks, hops) = nodes(&mut rng, 3);
        let (_, pkt) = build_packet(&mut rng, PacketSize::K1, &hops, [1; 32], b"hi").unwrap();
        // Flip every byte position in gamma and beta, one at a time (sampled).
        for pos in (OFF_GAMMA..HEADER_LEN).step_by(7) {
            let mut p = pkt.clone();
            p[pos] ^= 0x40;
            assert!(
                matches!(process(&sks[0], p), Err(MixError::HeaderMac)),
                "pos {pos}"
            );
        }
        // Flipping alpha changes the shared secret: MAC fails too.
        let mut p = pkt.clone();
        p[OFF_ALPHA + 3] ^= 1;
        assert!(matches!(
            process(&sks[0], p),
            Err(MixError::HeaderMac | MixError::KeyAgreement)
        ));
        // Wrong node key.
        assert!(matches!(
            process(&sks[1], pkt.clone()),
            Err(MixError::HeaderMac)
        ));
        // Header of hop 2 modified in transit after hop 1: hop 2 rejects.
        let (_, out) = process(&sks[0], pkt).unwrap();
        let Processed::Forward { mut packet, .. } = out else {
            panic!()
        };
        packet[OFF_BETA + 100] ^= 1;
        assert!(matches!(process(&sks[1], packet), Err(MixError::HeaderMac)));
    }

    #[test]
    fn tagged_payload_detected_at_exit() {
        let mut rng = StdRng::seed_from_u64(3);
        for size in [PacketSize::K1, PacketSize::K2] {
            let (sks, hops) = nodes(&mut rng, 3);
            let (_, pkt) = build_packet(&mut rng, size, &hops, [1; 32], b"secret").unwrap();
            for pos in [
                HEADER_LEN,
                HEADER_LEN + 17,
                HEADER_LEN + 300,
                size.len() - 1,
            ] {
                let mut p = pkt.clone();
                p[pos] ^= 0x01;
                // The mixes cannot see it: every relay forwards.
                let res = run(&sks, &hops, p);
                assert!(matches!(res, Err(MixError::Tagged)), "pos {pos}: {res:?}");
            }
            // Tagging after the first hop is detected too.
            let (_, out) = process(&sks[0], pkt).unwrap();
            let Processed::Forward { mut packet, .. } = out else {
                panic!()
            };
            packet[HEADER_LEN + 5] ^= 0x80;
            let (_, out) = process(&sks[1], packet).unwrap();
            let Processed::Forward { packet, .. } = out else {
                panic!()
            };
            assert!(matches!(process(&sks[2], packet), Err(MixError::Tagged)));
        }
    }

    #[test]
    fn replay_tags_repeat_for_same_packet_and_differ_otherwise() {
        let mut rng = StdRng::seed_from_u64(4);
        let (sks, hops) = nodes(&mut rng, 2);
        let (_, pkt) = build_packet(&mut rng, PacketSize::K1, &hops, [1; 32], b"a").unwrap();
        let (t1, _) = process(&sks[0], pkt.clone()).unwrap();
        let (t2, _) = process(&sks[0], pkt).unwrap();
        assert_eq!(t1, t2);
        let (_, pkt2) = build_packet(&mut rng, PacketSize::K1, &hops, [1; 32], b"a").unwrap();
        let (t3, _) = process(&sks[0], pkt2).unwrap();
        assert_ne!(t1, t3);
    }

    #[test]
    fn surb_roundtrip_and_single_use() {
        let mut rng = StdRng::seed_from_u64(5);
        for size in [PacketSize::K1, PacketSize::K2] {
            for n in 1..=MAX_HOPS {
                let (sks, hops) = nodes(&mut rng, n);
                let me = NodeAddr("127.0.0.1:4444".parse().unwrap());
                let (surb, secret) = Surb::new(&mut rng, size, &hops, me).unwrap();
                let enc = surb.encode();
                assert_eq!(enc.len(), SURB_LEN);
                let surb2 = Surb::decode(&enc).unwrap();
                assert_eq!(surb2, surb);
                let (first, pkt) = surb2.into_packet(b"the reply").unwrap();
                assert_eq!(first, hops[0].addr);
                assert_eq!(pkt.len(), size.len());
                let Processed::Reply { to, surb_id, body } = run(&sks, &hops, pkt.clone()).unwrap()
                else {
                    panic!()
                };
                assert_eq!(to, me);
                assert_eq!(surb_id, secret.id);
                assert_eq!(secret.open(body).unwrap(), b"the reply");
                // Same header again produces the same replay tag at the first hop.
                let (t1, _) = process(&sks[0], pkt.clone()).unwrap();
                let (t2, _) = process(&sks[0], pkt).unwrap();
                assert_eq!(t1, t2);
            }
        }
    }

    #[test]
    fn surb_reply_tagging_detected_by_creator() {
        let mut rng = StdRng::seed_from_u64(6);
        let (sks, hops) = nodes(&mut rng, 3);
        let me = NodeAddr("[::1]:4444".parse().unwrap());
        let (surb, secret) = Surb::new(&mut rng, PacketSize::K2, &hops, me).unwrap();
        let (_, mut pkt) = surb.into_packet(b"reply").unwrap();
        pkt[HEADER_LEN + 1000] ^= 4;
        let Processed::Reply { body, .. } = run(&sks, &hops, pkt).unwrap() else {
            panic!()
        };
        assert!(matches!(secret.open(body), Err(MixError::Tagged)));
    }

    #[test]
    fn bad_lengths_and_versions() {
        let mut rng = StdRng::seed_from_u64(7);
        let (sks, hops) = nodes(&mut rng, 1);
        assert!(matches!(
            process(&sks[0], vec![1u8; 1000]),
            Err(MixError::BadLength(1000))
        ));
        let (_, mut pkt) = build_packet(&mut rng, PacketSize::K1, &hops, [0; 32], b"").unwrap();
        pkt[0] = 9;
        assert!(matches!(
            process(&sks[0], pkt),
            Err(MixError::BadVersion(9))
        ));
        assert!(Surb::decode(&[0u8; 10]).is_err());
    }

    #[test]
    fn addr_codec() {
        for s in ["127.0.0.1:1", "[::1]:65535", "10.1.2.3:8080"] {
            let a = NodeAddr(s.parse().unwrap());
            assert_eq!(NodeAddr::decode(&a.encode()).unwrap(), a);
        }
        let mut bad = NodeAddr("127.0.0.1:1".parse().unwrap()).encode();
        bad[31] = 1;
        assert!(NodeAddr::decode(&bad).is_err());
        assert!(NodeAddr::decode(&[0u8; 32]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn addr_and_surb_codec_roundtrip(ip in proptest::prelude::any::<[u8; 16]>(), v4 in proptest::prelude::any::<[u8; 4]>(), port: u16, six: bool, seed: u64) {
            let sa = if six {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v4)), port)
            };
            let a = NodeAddr(sa);
            proptest::prop_assert_eq!(NodeAddr::decode(&a.encode()).unwrap(), a);
            let mut rng = StdRng::seed_from_u64(seed);
            let (_, hops) = nodes(&mut rng, (seed % 5) as usize + 1);
            let (surb, _) = Surb::new(&mut rng, PacketSize::K2, &hops, a).unwrap();
            let enc = surb.encode();
            proptest::prop_assert_eq!(Surb::decode(&enc).unwrap(), surb);
        }

        #[test]
        fn process_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2100), seed in 0u64..4) {
            let mut rng = StdRng::seed_from_u64(seed);
            let sk = MixSecretKey::generate(&mut rng).unwrap();
            let _ = process(&sk, bytes.clone());
            let mut b = bytes;
            b.resize(1024, 0);
            b[0] = VERSION;
            proptest::prop_assert!(process(&sk, b).is_err());
        }

        #[test]
        fn roundtrip_any_message(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..500), n in 1usize..=5, seed: u64) {
            let mut rng = StdRng::seed_from_u64(seed);
            let (sks, hops) = nodes(&mut rng, n);
            let (_, pkt) = build_packet(&mut rng, PacketSize::K1, &hops, [3; 32], &msg).unwrap();
            match run(&sks, &hops, pkt).unwrap() {
                Processed::Deliver { message, .. } => proptest::prop_assert_eq!(message, msg),
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}

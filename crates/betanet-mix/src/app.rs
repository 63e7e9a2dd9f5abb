//! The exit application protocol carried inside mix messages, and the exit-side roles a
//! mixnode plays for it: request/response through reply blocks, hidden-service introduction
//! points and rendezvous points.
//!
//! Messages (first byte = type):
//!
//! ```text
//! 0x01 REQUEST        | has_surb(1) | [SURB] | data              client -> exit handler
//! 0x02 ESTABLISH_INTRO| service_pub(32) | ts(8) | sig(64) | SURB  service -> intro point
//! 0x03 INTRODUCE      | service_id(32) | sealed intro (≤ 512)    client -> intro point
//! 0x04 ESTABLISH_RV   | cookie(16) | SURB                        client -> rendezvous point
//! 0x05 RV_DATA        | cookie(16) | side(1) | SURB | data       either side -> rendezvous point
//! 0x06 RV_SEND        | cookie(16) | side(1) | n(1) | SURB×n | data   (n ≤ 2, data may be empty)
//! 0x07 HSDIR_PUBLISH  | has_surb(1) | [SURB] | descriptor       service -> directory node
//! 0x08 HSDIR_LOOKUP   | service_id(32) | SURB                   client -> directory node
//! 0x11 RESPONSE       | data                                     exit -> client (via SURB)
//! 0x13 INTRO_FORWARD  | sealed intro                            intro point -> service (via SURB)
//! 0x15 RV_FORWARD     | cookie(16) | data                        rendezvous point -> peer (via SURB)
//! 0x17 HSDIR_PUBLISHED| status(1) | service_id(32)             directory -> service (via SURB)
//! 0x18 HSDIR_RESULT   | found(1) | service_id(32) | [descriptor] directory -> client (via SURB)
//! ```
//!
//! Every node is also a hidden-service directory ([`crate::hsdir`]): it stores verified
//! descriptors and answers lookups through the requester's reply block.
//!
//! `ESTABLISH_INTRO`'s signature covers `"bn-hs-intro" ‖ intro_node_id ‖ ts`, so only the
//! holder of the service key can register SURBs for its id at an introduction point, and a
//! registration cannot be replayed at another node. A rendezvous point joins a client and a
//! service by a random 16-byte cookie and relays through each side's reply blocks, so neither
//! side (nor the rendezvous point) learns the other's address. The sealed intro is
//! `client_eph_x25519(32) | seal(k_intro, 0, rendezvous(100) | cookie(16))` and rendezvous
//! data is sealed end to end with keys from `X25519(client_eph, service_x25519)`
//! ([`crate::crypto::HsKeys`]), so introduction and rendezvous points relay ciphertext only.
//!
//! `RV_SEND` is the bulk form used by [`crate::hs_stream`]: it deposits 0, 1 or 2 reply blocks
//! for the sending side and relays `data` (if any) to the other side. A rendezvous point keeps
//! up to [`MAX_RV_SURBS_PER_KEY`] reply blocks per (cookie, side) and queues up to
//! [`MAX_RV_WAITING_PER_KEY`] relayed messages per (cookie, side) until a reply block of that
//! side arrives (mix delays reorder packets), with global caps on both.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::crypto::MixPublicKey;
use crate::descriptor::id_of;
use crate::error::MixError;
use crate::hsdir::{self, HsDirReply, HsDirRequest, HsDirStore, PublishStatus};
use crate::node::{Delivery, PacketSender};
use crate::packet::{NodeAddr, SURB_LEN, Surb};
use crate::select::MixNodeInfo;

/// Message type bytes.
pub mod kind {
    /// Request to the exit's handler.
    pub const REQUEST: u8 = 0x01;
    /// Service registers a SURB at an intro point.
    pub const ESTABLISH_INTRO: u8 = 0x02;
    /// Client asks an intro point to introduce it.
    pub const INTRODUCE: u8 = 0x03;
    /// Client registers a SURB at a rendezvous point.
    pub const ESTABLISH_RV: u8 = 0x04;
    /// Data for the other side of a rendezvous.
    pub const RV_DATA: u8 = 0x05;
    /// Reply-block deposit (0..=2) plus optional data for the other side of a rendezvous.
    pub const RV_SEND: u8 = 0x06;
    /// Response of an exit handler.
    pub const RESPONSE: u8 = 0x11;
    /// Introduction forwarded to the service.
    pub const INTRO_FORWARD: u8 = 0x13;
    /// Rendezvous data forwarded to a side.
    pub const RV_FORWARD: u8 = 0x15;
}

/// Length of a rendezvous cookie.
pub const COOKIE_LEN: usize = 16;
/// Encoded length of a node reference inside app messages.
pub const NODE_REF_LEN: usize = 32 + 32 + 4 + 32;
const INTRO_CTX: &[u8] = b"bn-hs-intro";
/// Maximum clock skew accepted for `ESTABLISH_INTRO` timestamps (seconds).
pub const INTRO_MAX_SKEW: u64 = 600;
const MAX_SURBS_PER_KEY: usize = 32;
const MAX_KEYS: usize = 4096;
/// Reply blocks a rendezvous point keeps per (cookie, side) (enough for a 4 MiB message).
pub const MAX_RV_SURBS_PER_KEY: usize = 4096;
/// Reply blocks a rendezvous point keeps in all (≈ 35 MiB of 543-byte blocks).
pub const MAX_RV_SURBS_TOTAL: usize = 65_536;
/// Relayed messages a rendezvous point queues per (cookie, side) while no reply block is there.
pub const MAX_RV_WAITING_PER_KEY: usize = 4096;
/// Relayed messages a rendezvous point queues in all (≈ 25 MiB of ≤ 1.5 KiB messages).
pub const MAX_RV_WAITING_TOTAL: usize = 16_384;
/// A relayed message waits at most this long (seconds) for a reply block of its side.
pub const RV_WAIT_MAX_SECS: u64 = 120;
/// A rendezvous side's reply blocks are dropped after this long (seconds) unused.
pub const RV_IDLE_MAX_SECS: u64 = 900;
/// A service's intro reply blocks are dropped after this long (seconds) without a deposit or
/// an introduction (serving services re-deposit every 5 minutes).
pub const INTRO_IDLE_MAX_SECS: u64 = 3600;
/// Reply blocks one `RV_SEND` may carry (two fill a 2 KiB packet's message).
pub const MAX_SURBS_PER_SEND: usize = 2;
/// Fixed overhead of an `RV_SEND` message before its reply blocks and data.
pub const RV_SEND_HEADER: usize = 1 + COOKIE_LEN + 1 + 1;

/// Encodes a node reference (`id | addr | epoch | key`).
pub fn encode_node(n: &MixNodeInfo) -> [u8; NODE_REF_LEN] {
    let mut b = [0u8; NODE_REF_LEN];
    b[..32].copy_from_slice(&n.id);
    b[32..64].copy_from_slice(&n.addr.encode());
    b[64..68].copy_from_slice(&n.key_epoch.to_be_bytes());
    b[68..100].copy_from_slice(&n.key.0);
    b
}

fn take<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], MixError> {
    b.get(off..off + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(MixError::BadLength(b.len()))
}

/// Decodes [`encode_node`].
pub fn decode_node(b: &[u8]) -> Result<MixNodeInfo, MixError> {
    Ok(MixNodeInfo {
        id: take(b, 0)?,
        addr: NodeAddr::decode(&take(b, 32)?)?,
        key_epoch: u32::from_be_bytes(take(b, 64)?),
        key: MixPublicKey(take(b, 68)?),
        as_group: None,
        weight: 1,
    })
}

/// `REQUEST` with an optional reply block.
pub fn request(surb: Option<&Surb>, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind::REQUEST, u8::from(surb.is_some())];
    if let Some(s) = surb {
        m.extend_from_slice(&s.encode());
    }
    m.extend_from_slice(data);
    m
}

/// `ESTABLISH_INTRO` signed by the service key for the intro node `intro_id` at `ts`.
pub fn establish_intro(key: &SigningKey, intro_id: &[u8; 32], ts: u64, surb: &Surb) -> Vec<u8> {
    let mut signed = INTRO_CTX.to_vec();
    signed.extend_from_slice(intro_id);
    signed.extend_from_slice(&ts.to_be_bytes());
    let sig = key.sign(&signed);
    let mut m = vec![kind::ESTABLISH_INTRO];
    m.extend_from_slice(&key.verifying_key().to_bytes());
    m.extend_from_slice(&ts.to_be_bytes());
    m.extend_from_slice(&sig.to_bytes());
    m.extend_from_slice(&surb.encode());
    m
}

/// Largest sealed introduction an intro point forwards.
pub const MAX_SEALED_INTRO: usize = 512;

/// `INTRODUCE` carrying a sealed introduction (opaque to the intro point).
pub fn introduce(service_id: &[u8; 32], sealed_intro: &[u8]) -> Vec<u8> {
    let mut m = vec![kind::INTRODUCE];
    m.extend_from_slice(service_id);
    m.extend_from_slice(sealed_intro);
    m
}

/// `ESTABLISH_RV`.
pub fn establish_rv(cookie: &[u8; 16], surb: &Surb) -> Vec<u8> {
    let mut m = vec![kind::ESTABLISH_RV];
    m.extend_from_slice(cookie);
    m.extend_from_slice(&surb.encode());
    m
}

/// `RV_SEND`: deposits `surbs` (at most [`MAX_SURBS_PER_SEND`]) for `side` and relays `data`
/// (when non-empty) to the other side.
pub fn rv_send(cookie: &[u8; 16], side: Side, surbs: &[Surb], data: &[u8]) -> Vec<u8> {
    let n = surbs.len().min(MAX_SURBS_PER_SEND);
    let mut m = Vec::with_capacity(RV_SEND_HEADER + n * SURB_LEN + data.len());
    m.push(kind::RV_SEND);
    m.extend_from_slice(cookie);
    m.push(side as u8);
    m.push(n as u8);
    for s in surbs.iter().take(n) {
        m.extend_from_slice(&s.encode());
    }
    m.extend_from_slice(data);
    m
}

/// Which side of a rendezvous sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The connecting client.
    Client = 0,
    /// The hidden service.
    Service = 1,
}

/// `RV_DATA`.
pub fn rv_data(cookie: &[u8; 16], side: Side, surb: &Surb, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind::RV_DATA];
    m.extend_from_slice(cookie);
    m.push(side as u8);
    m.extend_from_slice(&surb.encode());
    m.extend_from_slice(data);
    m
}

/// Handler for `REQUEST`s: gets the data, returns an optional response.
pub type RequestHandler = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// Counters of the exit application.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExitAppStats {
    /// Requests handled.
    pub requests: u64,
    /// Intro registrations accepted.
    pub intros_registered: u64,
    /// Introductions forwarded to a service.
    pub introductions: u64,
    /// Rendezvous messages relayed.
    pub rv_relayed: u64,
    /// Messages rejected (bad format, bad signature, no SURB available, ...).
    pub rejected: u64,
    /// Hidden-service descriptors stored (directory role).
    pub descriptors_stored: u64,
    /// Hidden-service descriptor publications refused (forged, expired, older, ...).
    pub descriptors_refused: u64,
    /// Descriptor lookups answered (found or not).
    pub descriptor_lookups: u64,
    /// Waiting messages and idle reply blocks dropped for age.
    pub expired: u64,
}

/// Bounded SURB queues keyed by id: at most `MAX_KEYS` keys (oldest key evicted), `per_key`
/// blocks per key (oldest dropped) and `max_total` blocks in all (new ones refused).
struct SurbTable<K: std::hash::Hash + Eq + Copy> {
    map: HashMap<K, VecDeque<Surb>>,
    /// When each key last had a block deposited or taken (unix seconds).
    touched: HashMap<K, u64>,
    order: VecDeque<K>,
    per_key: usize,
    max_total: usize,
    total: usize,
}

impl<K: std::hash::Hash + Eq + Copy> SurbTable<K> {
    fn new(per_key: usize, max_total: usize) -> Self {
        SurbTable {
            map: HashMap::new(),
            touched: HashMap::new(),
            order: VecDeque::new(),
            per_key,
            max_total,
            total: 0,
        }
    }

    fn push(&mut self, k: K, s: Surb, now: u64) -> Result<(), MixError> {
        if !self.map.contains_key(&k) {
            if self.order.len() >= MAX_KEYS
                && let Some(old) = self.order.pop_front()
                && let Some(q) = self.map.remove(&old)
            {
                self.total -= q.len();
                self.touched.remove(&old);
            }
            self.order.push_back(k);
        }
        self.touched.insert(k, now);
        let q = self.map.entry(k).or_default();
        if q.len() >= self.per_key {
            q.pop_front();
            self.total -= 1;
        } else if self.total >= self.max_total {
            return Err(MixError::UnknownSurb);
        }
        q.push_back(s);
        self.total += 1;
        Ok(())
    }

    fn pop(&mut self, k: &K, now: u64) -> Option<Surb> {
        let s = self.map.get_mut(k).and_then(VecDeque::pop_front);
        if s.is_some() {
            self.total -= 1;
            self.touched.insert(*k, now);
        }
        s
    }

    /// The most recently deposited block for `k` (intro points: a service refreshes its
    /// blocks periodically, and the newest are the ones most likely still usable).
    fn pop_newest(&mut self, k: &K, now: u64) -> Option<Surb> {
        let s = self.map.get_mut(k).and_then(VecDeque::pop_back);
        if s.is_some() {
            self.total -= 1;
            self.touched.insert(*k, now);
        }
        s
    }

    /// Drops every key untouched for `max_idle` seconds at `now`; returns the blocks dropped.
    fn expire_idle(&mut self, now: u64, max_idle: u64) -> usize {
        let stale: Vec<K> = self
            .touched
            .iter()
            .filter(|(_, t)| now.saturating_sub(**t) >= max_idle)
            .map(|(k, _)| *k)
            .collect();
        let mut dropped = 0;
        for k in &stale {
            self.touched.remove(k);
            if let Some(q) = self.map.remove(k) {
                dropped += q.len();
                self.total -= q.len();
            }
        }
        if !stale.is_empty() {
            self.order.retain(|k| self.map.contains_key(k));
        }
        dropped
    }
}

type RvKey = ([u8; 16], u8);

/// Relayed messages waiting for a reply block of the side they go to, bounded per key and in
/// all (when full, the oldest key's queue is dropped).
#[derive(Default)]
struct Waiting {
    /// Messages with the unix second they arrived.
    map: HashMap<RvKey, VecDeque<(u64, Vec<u8>)>>,
    order: VecDeque<RvKey>,
    total: usize,
}

impl Waiting {
    fn push(&mut self, k: RvKey, msg: Vec<u8>, now: u64) -> Result<(), MixError> {
        if self
            .map
            .get(&k)
            .is_some_and(|q| q.len() >= MAX_RV_WAITING_PER_KEY)
        {
            return Err(MixError::UnknownSurb);
        }
        while self.total >= MAX_RV_WAITING_TOTAL {
            let Some(old) = self.order.pop_front() else {
                return Err(MixError::UnknownSurb);
            };
            if let Some(q) = self.map.remove(&old) {
                self.total -= q.len();
            }
        }
        if !self.map.contains_key(&k) {
            self.order.push_back(k);
        }
        self.map.entry(k).or_default().push_back((now, msg));
        self.total += 1;
        Ok(())
    }

    /// Drops messages that waited `max_age` seconds at `now`; returns how many.
    fn expire(&mut self, now: u64, max_age: u64) -> usize {
        let mut dropped = 0;
        self.map.retain(|_, q| {
            let before = q.len();
            q.retain(|(t, _)| now.saturating_sub(*t) < max_age);
            dropped += before - q.len();
            !q.is_empty()
        });
        if dropped > 0 {
            self.total -= dropped;
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        dropped
    }

    fn pop(&mut self, k: &RvKey) -> Option<(u64, Vec<u8>)> {
        let q = self.map.get_mut(k)?;
        let m = q.pop_front();
        if m.is_some() {
            self.total -= 1;
        }
        if q.is_empty() {
            self.map.remove(k);
            self.order.retain(|x| x != k);
        }
        m
    }

    fn push_front(&mut self, k: RvKey, msg: (u64, Vec<u8>)) {
        if !self.map.contains_key(&k) {
            self.order.push_back(k);
        }
        self.map.entry(k).or_default().push_front(msg);
        self.total += 1;
    }
}

/// The exit application state of one mixnode (sans-IO: `handle` returns the packets to send).
pub struct ExitApp {
    node_id: [u8; 32],
    handler: Option<RequestHandler>,
    intros: SurbTable<[u8; 32]>,
    rv: SurbTable<RvKey>,
    /// Relayed messages waiting for a SURB of the side they go to.
    rv_waiting: Waiting,
    hsdir: HsDirStore,
    stats: ExitAppStats,
    /// The unix second of the message being handled.
    now: u64,
    /// The last second expired state was swept.
    swept: u64,
}

impl std::fmt::Debug for ExitApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitApp")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn surb_at(b: &[u8], off: usize) -> Result<Surb, MixError> {
    Surb::decode(
        b.get(off..off + SURB_LEN)
            .ok_or(MixError::BadLength(b.len()))?,
    )
}

impl ExitApp {
    /// State for the node `node_id`, with an optional request handler.
    pub fn new(node_id: [u8; 32], handler: Option<RequestHandler>) -> Self {
        ExitApp {
            node_id,
            handler,
            intros: SurbTable::new(MAX_SURBS_PER_KEY, MAX_KEYS * MAX_SURBS_PER_KEY),
            rv: SurbTable::new(MAX_RV_SURBS_PER_KEY, MAX_RV_SURBS_TOTAL),
            rv_waiting: Waiting::default(),
            hsdir: HsDirStore::new(),
            stats: ExitAppStats::default(),
            now: 0,
            swept: 0,
        }
    }

    /// Counters.
    pub fn stats(&self) -> ExitAppStats {
        self.stats
    }

    /// Handles one delivered message at unix time `now`; returns packets to send.
    pub fn handle(&mut self, message: &[u8], now: u64) -> Vec<(NodeAddr, Vec<u8>)> {
        self.now = now;
        if now != self.swept {
            // At most once per second: state nobody came back for.
            self.swept = now;
            let n = self.rv_waiting.expire(now, RV_WAIT_MAX_SECS)
                + self.rv.expire_idle(now, RV_IDLE_MAX_SECS)
                + self.intros.expire_idle(now, INTRO_IDLE_MAX_SECS);
            self.stats.expired += n as u64;
        }
        match self.handle_inner(message, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "exit app message rejected");
                self.stats.rejected += 1;
                Vec::new()
            }
        }
    }

    fn handle_inner(&mut self, m: &[u8], now: u64) -> Result<Vec<(NodeAddr, Vec<u8>)>, MixError> {
        let t = *m.first().ok_or(MixError::BadLength(0))?;
        let mut out = Vec::new();
        match t {
            kind::REQUEST => {
                let has = *m.get(1).ok_or(MixError::BadLength(m.len()))? == 1;
                let (surb, data) = if has {
                    (
                        Some(surb_at(m, 2)?),
                        m.get(2 + SURB_LEN..).unwrap_or_default(),
                    )
                } else {
                    (None, m.get(2..).unwrap_or_default())
                };
                self.stats.requests += 1;
                let resp = self.handler.as_ref().and_then(|h| h(data));
                if let (Some(s), Some(r)) = (surb, resp) {
                    let mut msg = vec![kind::RESPONSE];
                    msg.extend_from_slice(&r);
                    out.push(s.into_packet(&msg)?);
                }
            }
            kind::ESTABLISH_INTRO => {
                let pk: [u8; 32] = take(m, 1)?;
                let ts = u64::from_be_bytes(take(m, 33)?);
                let sig: [u8; 64] = take(m, 41)?;
                let surb = surb_at(m, 105)?;
                if now.abs_diff(ts) > INTRO_MAX_SKEW {
                    return Err(MixError::BadDescriptor(
                        "intro registration timestamp skewed",
                    ));
                }
                let vk = VerifyingKey::from_bytes(&pk)
                    .map_err(|_| MixError::BadDescriptor("bad service key"))?;
                let mut signed = INTRO_CTX.to_vec();
                signed.extend_from_slice(&self.node_id);
                signed.extend_from_slice(&ts.to_be_bytes());
                vk.verify_strict(&signed, &Signature::from_bytes(&sig))
                    .map_err(|_| MixError::BadDescriptor("bad intro registration signature"))?;
                self.intros.push(id_of(&pk), surb, now)?;
                self.stats.intros_registered += 1;
            }
            kind::INTRODUCE => {
                let sid: [u8; 32] = take(m, 1)?;
                let rest = m.get(33..).unwrap_or_default();
                if rest.is_empty() || rest.len() > MAX_SEALED_INTRO {
                    return Err(MixError::BadLength(m.len()));
                }
                let surb = self
                    .intros
                    .pop_newest(&sid, now)
                    .ok_or(MixError::UnknownSurb)?;
                let mut msg = vec![kind::INTRO_FORWARD];
                msg.extend_from_slice(rest);
                out.push(surb.into_packet(&msg)?);
                self.stats.introductions += 1;
            }
            kind::ESTABLISH_RV => {
                let cookie: [u8; 16] = take(m, 1)?;
                self.rv
                    .push((cookie, Side::Client as u8), surb_at(m, 17)?, now)?;
                self.flush_waiting(cookie, Side::Client as u8, &mut out)?;
            }
            kind::RV_DATA => {
                let cookie: [u8; 16] = take(m, 1)?;
                let side = *m.get(17).ok_or(MixError::BadLength(m.len()))?;
                if side > 1 {
                    return Err(MixError::UnknownCommand(side));
                }
                let surb = surb_at(m, 18)?;
                let data = m.get(18 + SURB_LEN..).unwrap_or_default();
                self.rv.push((cookie, side), surb, now)?;
                self.flush_waiting(cookie, side, &mut out)?;
                self.relay(cookie, side, data, &mut out)?;
            }
            kind::RV_SEND => {
                let cookie: [u8; 16] = take(m, 1)?;
                let side = *m.get(17).ok_or(MixError::BadLength(m.len()))?;
                if side > 1 {
                    return Err(MixError::UnknownCommand(side));
                }
                let n = usize::from(*m.get(18).ok_or(MixError::BadLength(m.len()))?);
                if n > MAX_SURBS_PER_SEND {
                    return Err(MixError::BadLength(m.len()));
                }
                let data_off = RV_SEND_HEADER + n * SURB_LEN;
                if m.len() < data_off {
                    return Err(MixError::BadLength(m.len()));
                }
                for i in 0..n {
                    let s = surb_at(m, RV_SEND_HEADER + i * SURB_LEN)?;
                    self.rv.push((cookie, side), s, now)?;
                }
                self.flush_waiting(cookie, side, &mut out)?;
                let data = m.get(data_off..).unwrap_or_default();
                if !data.is_empty() {
                    self.relay(cookie, side, data, &mut out)?;
                }
            }
            hsdir::kind::HSDIR_PUBLISH | hsdir::kind::HSDIR_LOOKUP => {
                match HsDirRequest::decode(m)? {
                    HsDirRequest::Publish { surb, descriptor } => {
                        let (status, service_id) = self.hsdir.insert(&descriptor, now);
                        if status == PublishStatus::Stored {
                            self.stats.descriptors_stored += 1;
                        } else {
                            self.stats.descriptors_refused += 1;
                            tracing::debug!(?status, "descriptor publication refused");
                        }
                        if let Some(s) = surb {
                            let ack = HsDirReply::Published { status, service_id };
                            out.push(s.into_packet(&ack.encode())?);
                        }
                    }
                    HsDirRequest::Lookup { service_id, surb } => {
                        self.stats.descriptor_lookups += 1;
                        let descriptor = self.hsdir.get(&service_id, now).map(<[u8]>::to_vec);
                        let r = HsDirReply::Result {
                            service_id,
                            descriptor,
                        };
                        out.push(surb.into_packet(&r.encode())?);
                    }
                }
            }
            other => return Err(MixError::UnknownCommand(other)),
        }
        Ok(out)
    }

    /// Relays `data` from `side` to the other side, or queues it until the other side's
    /// reply block arrives (mix delays reorder messages).
    fn relay(
        &mut self,
        cookie: [u8; 16],
        side: u8,
        data: &[u8],
        out: &mut Vec<(NodeAddr, Vec<u8>)>,
    ) -> Result<(), MixError> {
        let mut msg = Vec::with_capacity(1 + COOKIE_LEN + data.len());
        msg.push(kind::RV_FORWARD);
        msg.extend_from_slice(&cookie);
        msg.extend_from_slice(data);
        match self.rv.pop(&(cookie, 1 - side), self.now) {
            Some(peer) => {
                out.push(peer.into_packet(&msg)?);
                self.stats.rv_relayed += 1;
            }
            None => self.rv_waiting.push((cookie, 1 - side), msg, self.now)?,
        }
        Ok(())
    }

    /// Sends queued messages for `(cookie, side)` while reply blocks of that side are there.
    fn flush_waiting(
        &mut self,
        cookie: [u8; 16],
        side: u8,
        out: &mut Vec<(NodeAddr, Vec<u8>)>,
    ) -> Result<(), MixError> {
        while let Some(msg) = self.rv_waiting.pop(&(cookie, side)) {
            if let Some(s) = self.rv.pop(&(cookie, side), self.now) {
                out.push(s.into_packet(&msg.1)?);
                self.stats.rv_relayed += 1;
            } else {
                self.rv_waiting.push_front((cookie, side), msg);
                break;
            }
        }
        Ok(())
    }

    /// Runs the application on a node's deliveries until the channel closes.
    pub fn spawn(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        sender: PacketSender,
        stats: Option<Arc<std::sync::Mutex<ExitAppStats>>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                for (to, pkt) in self.handle(&d.message, now) {
                    if sender.send(to, pkt).await.is_err() {
                        return;
                    }
                }
                if let Some(s) = &stats {
                    *s.lock().unwrap_or_else(|p| p.into_inner()) = self.stats;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MixSecretKey;
    use crate::packet::{PacketSize, RouteHop};
    use rand::SeedableRng;

    fn surb(rng: &mut rand::rngs::StdRng) -> Surb {
        let k = MixSecretKey::generate(rng).unwrap();
        let hop = RouteHop {
            addr: NodeAddr("127.0.0.1:1".parse().unwrap()),
            epoch: 1,
            key: k.public(),
        };
        Surb::new(
            rng,
            PacketSize::K2,
            &[hop],
            NodeAddr("127.0.0.1:2".parse().unwrap()),
        )
        .unwrap()
        .0
    }

    #[test]
    fn intro_registration_is_authenticated_and_bound_to_the_node() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let svc = SigningKey::from_bytes(&[5; 32]);
        let sid = id_of(&svc.verifying_key().to_bytes());
        let mut app = ExitApp::new([9; 32], None);
        // registration signed for another intro node: rejected
        let m = establish_intro(&svc, &[8; 32], 1000, &surb(&mut rng));
        assert!(app.handle(&m, 1000).is_empty());
        assert_eq!(app.stats().rejected, 1);
        // skewed timestamp: rejected
        let m = establish_intro(&svc, &[9; 32], 1000, &surb(&mut rng));
        app.handle(&m, 1000 + INTRO_MAX_SKEW + 1);
        assert_eq!(app.stats().rejected, 2);
        // tampered signature: rejected
        let mut bad = establish_intro(&svc, &[9; 32], 1000, &surb(&mut rng));
        bad[50] ^= 1;
        app.handle(&bad, 1000);
        assert_eq!(app.stats().rejected, 3);
        assert_eq!(app.stats().intros_registered, 0);
        // introduce without a registration: rejected
        let rv = MixNodeInfo {
            id: [1; 32],
            addr: NodeAddr("127.0.0.1:3".parse().unwrap()),
            key: MixPublicKey([2; 32]),
            key_epoch: 1,
            as_group: None,
            weight: 1,
        };
        assert!(
            app.handle(&introduce(&sid, &encode_node(&rv)), 1000)
                .is_empty()
        );
        // valid registration, then the introduction is forwarded through the service's SURB
        let m = establish_intro(&svc, &[9; 32], 1000, &surb(&mut rng));
        assert!(app.handle(&m, 1000).is_empty());
        assert_eq!(app.stats().intros_registered, 1);
        let out = app.handle(&introduce(&sid, &encode_node(&rv)), 1000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, NodeAddr("127.0.0.1:1".parse().unwrap()));
        assert_eq!(out[0].1.len(), PacketSize::K2.len());
        // the SURB was single-use: a second introduction finds none
        assert!(
            app.handle(&introduce(&sid, &encode_node(&rv)), 1000)
                .is_empty()
        );
        assert_eq!(decode_node(&encode_node(&rv)).unwrap(), rv);
    }

    #[test]
    fn rv_send_deposits_blocks_and_queues_until_they_arrive() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut app = ExitApp::new([9; 32], None);
        let c = [4u8; 16];
        // three service chunks before any client block: all queued, in order
        for i in 0..3u8 {
            assert!(
                app.handle(&rv_send(&c, Side::Service, &[], &[i; 10]), 0)
                    .is_empty()
            );
        }
        // a deposit of two client blocks releases two of them
        let two = [surb(&mut rng), surb(&mut rng)];
        let out = app.handle(&rv_send(&c, Side::Client, &two, &[]), 0);
        assert_eq!(out.len(), 2);
        assert_eq!(app.stats().rv_relayed, 2);
        // the next block releases the third; a further one is kept for later data
        assert_eq!(
            app.handle(&rv_send(&c, Side::Client, &[surb(&mut rng)], &[]), 0)
                .len(),
            1
        );
        assert!(
            app.handle(&rv_send(&c, Side::Client, &[surb(&mut rng)], &[]), 0)
                .is_empty()
        );
        assert_eq!(
            app.handle(&rv_send(&c, Side::Service, &[], b"late"), 0)
                .len(),
            1
        );
        assert_eq!(app.stats().rv_relayed, 4);
        // malformed: too many blocks, truncated block list, bad side
        let mut m = rv_send(&c, Side::Client, &[], &[]);
        m[18] = 3;
        app.handle(&m, 0);
        let mut m = rv_send(&c, Side::Client, &[surb(&mut rng)], &[]);
        m.truncate(RV_SEND_HEADER + 10);
        app.handle(&m, 0);
        let mut m = rv_send(&c, Side::Client, &[], b"x");
        m[17] = 2;
        app.handle(&m, 0);
        assert_eq!(app.stats().rejected, 3);
        // per-key queue bound
        let c2 = [5u8; 16];
        for _ in 0..MAX_RV_WAITING_PER_KEY {
            app.handle(&rv_send(&c2, Side::Client, &[], b"q"), 0);
        }
        assert_eq!(app.stats().rejected, 3);
        app.handle(&rv_send(&c2, Side::Client, &[], b"q"), 0);
        assert_eq!(app.stats().rejected, 4);
    }

    #[test]
    fn directory_role_stores_verified_descriptors_and_answers_lookups() {
        use crate::descriptor::{IntroPoint, ServiceDescriptor};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut app = ExitApp::new([9; 32], None);
        let sk = SigningKey::from_bytes(&[6; 32]);
        let ip = IntroPoint {
            node_id: [1; 32],
            addr: NodeAddr("127.0.0.1:5".parse().unwrap()),
            key_epoch: 1,
            key: MixPublicKey([2; 32]),
        };
        let d = ServiceDescriptor::sign(&sk, MixPublicKey([3; 32]), 900, 2000, vec![ip]);
        // publish with a reply block: one ack packet; without: none
        let out = app.handle(&hsdir::publish(Some(&surb(&mut rng)), &d), 1000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), PacketSize::K2.len());
        assert!(app.handle(&hsdir::publish(None, &d), 1000).is_empty());
        assert_eq!(app.stats().descriptors_stored, 2);
        // forged: refused (counted), the good one stays
        let mut f = d.clone();
        f[100] ^= 1;
        app.handle(&hsdir::publish(None, &f), 1000);
        assert_eq!(app.stats().descriptors_refused, 1);
        let sid = id_of(&sk.verifying_key().to_bytes());
        assert_eq!(app.hsdir.get(&sid, 1000), Some(&d[..]));
        // lookups are answered through the reply block, found or not
        assert_eq!(
            app.handle(&hsdir::lookup(&sid, &surb(&mut rng)), 1000)
                .len(),
            1
        );
        assert_eq!(
            app.handle(&hsdir::lookup(&[0; 32], &surb(&mut rng)), 1000)
                .len(),
            1
        );
        assert_eq!(app.stats().descriptor_lookups, 2);
        // malformed lookup: rejected
        let mut bad = hsdir::lookup(&sid, &surb(&mut rng));
        bad.pop();
        assert!(app.handle(&bad, 1000).is_empty());
        assert_eq!(app.stats().rejected, 1);
        // after expiry the directory forgets it
        assert_eq!(app.hsdir.get(&sid, 2001), None);
    }

    #[test]
    fn waiting_messages_and_idle_blocks_expire() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut app = ExitApp::new([9; 32], None);
        let t0 = 1_700_000_000;
        // Service data waits for the client's block; the client never comes.
        let c = [4u8; 16];
        assert!(
            app.handle(&rv_data(&c, Side::Service, &surb(&mut rng), b"hi"), t0)
                .is_empty()
        );
        // Within 120 s the client's block still gets it.
        let c2 = [5u8; 16];
        app.handle(&rv_data(&c2, Side::Service, &surb(&mut rng), b"x"), t0);
        let out = app.handle(
            &establish_rv(&c2, &surb(&mut rng)),
            t0 + RV_WAIT_MAX_SECS - 1,
        );
        assert_eq!(out.len(), 1);
        // After 120 s the first message is gone: a late client block gets nothing.
        let out = app.handle(&establish_rv(&c, &surb(&mut rng)), t0 + RV_WAIT_MAX_SECS);
        assert!(out.is_empty());
        assert!(app.stats().expired >= 1);
        // Reply blocks nobody used for 15 minutes are dropped too: the service's block left
        // with its data (side Service) expires, so later client data waits instead of going.
        let before = app.stats().expired;
        let out = app.handle(
            &rv_data(&c2, Side::Client, &surb(&mut rng), b"late"),
            t0 + RV_WAIT_MAX_SECS + RV_IDLE_MAX_SECS,
        );
        assert!(out.is_empty());
        assert!(app.stats().expired > before);
    }

    #[test]
    fn rendezvous_waits_for_the_other_side() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut app = ExitApp::new([9; 32], None);
        let c = [3u8; 16];
        // service data first: held until the client's SURB arrives
        assert!(
            app.handle(&rv_data(&c, Side::Service, &surb(&mut rng), b"hi"), 0)
                .is_empty()
        );
        let out = app.handle(&establish_rv(&c, &surb(&mut rng)), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(app.stats().rv_relayed, 1);
        // client data goes through the service SURB left with the first message
        assert_eq!(
            app.handle(&rv_data(&c, Side::Client, &surb(&mut rng), b"q"), 0)
                .len(),
            1
        );
        // request handler answers only with a SURB
        let h: RequestHandler = Arc::new(|d: &[u8]| Some(d.to_vec()));
        let mut app = ExitApp::new([9; 32], Some(h));
        assert_eq!(
            app.handle(&request(Some(&surb(&mut rng)), b"x"), 0).len(),
            1
        );
        assert!(app.handle(&request(None, b"x"), 0).is_empty());
        assert_eq!(app.stats().requests, 2);
        assert!(app.handle(&[0xee], 0).is_empty());
        assert_eq!(app.stats().rejected, 1);
    }
}

//! The exit application protocol carried inside mix messages, and the exit-side roles a
//! mixnode plays for it: request/response through reply blocks, hidden-service introduction
//! points and rendezvous points.
//!
//! Messages (first byte = type):
//!
//! ```text
//! 0x01 REQUEST        | has_surb(1) | [SURB] | data              client -> exit handler
//! 0x02 ESTABLISH_INTRO| service_pub(32) | ts(8) | sig(64) | SURB  service -> intro point
//! 0x03 INTRODUCE      | service_id(32) | rendezvous(100) | cookie(16)   client -> intro point
//! 0x04 ESTABLISH_RV   | cookie(16) | SURB                        client -> rendezvous point
//! 0x05 RV_DATA        | cookie(16) | side(1) | SURB | data       either side -> rendezvous point
//! 0x11 RESPONSE       | data                                     exit -> client (via SURB)
//! 0x13 INTRO_FORWARD  | rendezvous(100) | cookie(16)             intro point -> service (via SURB)
//! 0x15 RV_FORWARD     | cookie(16) | data                        rendezvous point -> peer (via SURB)
//! ```
//!
//! `ESTABLISH_INTRO`'s signature covers `"bn-hs-intro" ‖ intro_node_id ‖ ts`, so only the
//! holder of the service key can register SURBs for its id at an introduction point, and a
//! registration cannot be replayed at another node. A rendezvous point joins a client and a
//! service by a random 16-byte cookie and relays through each side's reply blocks, so neither
//! side (nor the rendezvous point) learns the other's address.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::crypto::MixPublicKey;
use crate::descriptor::id_of;
use crate::error::MixError;
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

/// `INTRODUCE`.
pub fn introduce(service_id: &[u8; 32], rendezvous: &MixNodeInfo, cookie: &[u8; 16]) -> Vec<u8> {
    let mut m = vec![kind::INTRODUCE];
    m.extend_from_slice(service_id);
    m.extend_from_slice(&encode_node(rendezvous));
    m.extend_from_slice(cookie);
    m
}

/// `ESTABLISH_RV`.
pub fn establish_rv(cookie: &[u8; 16], surb: &Surb) -> Vec<u8> {
    let mut m = vec![kind::ESTABLISH_RV];
    m.extend_from_slice(cookie);
    m.extend_from_slice(&surb.encode());
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
}

/// Bounded SURB queues keyed by id.
#[derive(Default)]
struct SurbTable<K: std::hash::Hash + Eq + Copy> {
    map: HashMap<K, VecDeque<Surb>>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Copy> SurbTable<K> {
    fn push(&mut self, k: K, s: Surb) {
        if !self.map.contains_key(&k) {
            if self.order.len() >= MAX_KEYS
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(k);
        }
        let q = self.map.entry(k).or_default();
        if q.len() >= MAX_SURBS_PER_KEY {
            q.pop_front();
        }
        q.push_back(s);
    }

    fn pop(&mut self, k: &K) -> Option<Surb> {
        self.map.get_mut(k).and_then(VecDeque::pop_front)
    }
}

/// The exit application state of one mixnode (sans-IO: `handle` returns the packets to send).
pub struct ExitApp {
    node_id: [u8; 32],
    handler: Option<RequestHandler>,
    intros: SurbTable<[u8; 32]>,
    rv: SurbTable<([u8; 16], u8)>,
    /// Relayed messages waiting for a SURB of the side they go to (at most one per key).
    rv_waiting: HashMap<([u8; 16], u8), Vec<u8>>,
    stats: ExitAppStats,
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
            intros: SurbTable::default(),
            rv: SurbTable::default(),
            rv_waiting: HashMap::new(),
            stats: ExitAppStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ExitAppStats {
        self.stats
    }

    /// Handles one delivered message at unix time `now`; returns packets to send.
    pub fn handle(&mut self, message: &[u8], now: u64) -> Vec<(NodeAddr, Vec<u8>)> {
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
                self.intros.push(id_of(&pk), surb);
                self.stats.intros_registered += 1;
            }
            kind::INTRODUCE => {
                let sid: [u8; 32] = take(m, 1)?;
                let rest = m
                    .get(33..33 + NODE_REF_LEN + COOKIE_LEN)
                    .ok_or(MixError::BadLength(m.len()))?;
                let surb = self.intros.pop(&sid).ok_or(MixError::UnknownSurb)?;
                let mut msg = vec![kind::INTRO_FORWARD];
                msg.extend_from_slice(rest);
                out.push(surb.into_packet(&msg)?);
                self.stats.introductions += 1;
            }
            kind::ESTABLISH_RV => {
                let cookie: [u8; 16] = take(m, 1)?;
                self.rv.push((cookie, Side::Client as u8), surb_at(m, 17)?);
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
                self.rv.push((cookie, side), surb);
                self.flush_waiting(cookie, side, &mut out)?;
                let mut msg = vec![kind::RV_FORWARD];
                msg.extend_from_slice(&cookie);
                msg.extend_from_slice(data);
                match self.rv.pop(&(cookie, 1 - side)) {
                    Some(peer) => {
                        out.push(peer.into_packet(&msg)?);
                        self.stats.rv_relayed += 1;
                    }
                    None => {
                        // The other side's reply block has not arrived yet (mix delays reorder
                        // messages): hold one message until it does.
                        if self.rv_waiting.len() >= MAX_KEYS {
                            return Err(MixError::UnknownSurb);
                        }
                        self.rv_waiting.insert((cookie, 1 - side), msg);
                    }
                }
            }
            other => return Err(MixError::UnknownCommand(other)),
        }
        Ok(out)
    }

    fn flush_waiting(
        &mut self,
        cookie: [u8; 16],
        side: u8,
        out: &mut Vec<(NodeAddr, Vec<u8>)>,
    ) -> Result<(), MixError> {
        if let Some(msg) = self.rv_waiting.remove(&(cookie, side)) {
            if let Some(s) = self.rv.pop(&(cookie, side)) {
                out.push(s.into_packet(&msg)?);
                self.stats.rv_relayed += 1;
            } else {
                self.rv_waiting.insert((cookie, side), msg);
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

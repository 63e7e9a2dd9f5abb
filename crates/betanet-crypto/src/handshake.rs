//! The Betanet inner handshake (SPEC §4.4, §4.5, PD-3, PD-7) on top of [`crate::noise`].
//!
//! * Prologue = `"betanet/1.2" ‖ tls_exporter` (32 zero bytes for `tcp12`).
//! * Every handshake message goes on the wire as `u16be length ‖ message`
//!   ([`prefix_message`], [`split_prefixed`]).
//! * msg 1 payload: the initiator's ML-KEM-768 encapsulation key (1184 B) when PQ is on, else
//!   empty; msg 2: det-CBOR `{"id", "caps", "kem"?}`; msg 3: det-CBOR `{"id", "caps"}`.
//! * Each side checks that the peer's Noise static key is the X25519 form of the `id` it sent;
//!   the initiator also checks `id` byte for byte against the key it dialed.
//! * The EKM binds the Noise `Split()` keys, the final handshake hash, the ML-KEM secret and
//!   the det-CBOR `ctx` (selected ids, both capability maps, TemplateID).
//!
//! Phases are types: [`Initiator::start`] → [`InitiatorAwaitMsg2::read_msg2`] →
//! [`Established`]; [`Responder::new`] → [`ResponderAwaitMsg1::read_msg1`] →
//! [`ResponderAwaitMsg3::read_msg3`] → [`Established`]. A failed step consumes the state, which
//! zeroizes every handshake secret.

use betanet_wire::caps::{self, CapMsg, Selection};
use betanet_wire::cbor::{self, Value};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::dh::{X25519Public, X25519Secret};
use crate::kem::{self, KemSecret};
use crate::noise::{self, Completed};
use crate::schedule::{KeySchedule, Role, derive_ekm};
use crate::sign::{SigningKey, VerifyingKey};
use crate::suite::PQ_MANDATORY_FROM_UNIX;

/// The fixed part of the prologue.
pub const PROLOGUE_LABEL: &[u8] = b"betanet/1.2";
/// The TLS exporter label bound into the prologue.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-betanet/1.2/inner";

/// Post-quantum policy of one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PqMode {
    /// Hybrid X25519 + ML-KEM-768 (the default). A responder still accepts an initiator that
    /// offers no key until 2027-01-01 (SPEC §2), or later with `allow_classic_peers`.
    #[default]
    Hybrid,
    /// Classic X25519 only (only for peers that do not offer PQ).
    Classic,
}

/// Everything one side brings to a handshake.
#[derive(Clone)]
pub struct HandshakeConfig {
    identity: SigningKey,
    static_x: X25519Secret,
    static_x_pub: X25519Public,
    /// Our capabilities.
    pub caps: CapMsg,
    /// Our PQ policy.
    pub pq: PqMode,
    /// Responder: accept initiators without a PQ key even after 2027-01-01 (operator opt-out).
    pub allow_classic_peers: bool,
    /// The 32-byte TLS/QUIC exporter (`EXPORTER-betanet/1.2/inner`), zeros for `tcp12`.
    pub tls_exporter: [u8; 32],
    /// The TemplateID of the calibrated origin, zeros without calibration.
    pub template: [u8; 32],
    /// Current Unix time in seconds (for the 2027 PQ rule).
    pub now_unix: u64,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("identity", &self.identity.verifying_key())
            .field("pq", &self.pq)
            .finish_non_exhaustive()
    }
}

impl HandshakeConfig {
    /// Defaults: Betanet capabilities, hybrid PQ, no TLS exporter (tcp12), no template.
    pub fn new(identity: SigningKey, now_unix: u64) -> Self {
        let static_x = identity.to_x25519();
        let static_x_pub = identity.verifying_key().to_x25519();
        HandshakeConfig {
            identity,
            static_x,
            static_x_pub,
            caps: CapMsg::betanet_default(false),
            pq: PqMode::Hybrid,
            allow_classic_peers: false,
            tls_exporter: [0; 32],
            template: [0; 32],
            now_unix,
        }
    }

    /// Our long-term identity.
    pub fn identity(&self) -> &SigningKey {
        &self.identity
    }

    fn prologue(&self) -> Vec<u8> {
        let mut p = PROLOGUE_LABEL.to_vec();
        p.extend_from_slice(&self.tls_exporter);
        p
    }
}

/// Prepends the u16be length to a handshake message.
pub fn prefix_message(msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let len = u16::try_from(msg.len()).map_err(|_| CryptoError::TooLarge(msg.len()))?;
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(out)
}

/// Splits one `u16be length ‖ message` off the front of `buf`: `Some((message, consumed))`
/// once complete, `None` while more bytes are needed.
pub fn split_prefixed(buf: &[u8]) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    let msg = buf.get(2..2 + len)?;
    Some((msg, 2 + len))
}

/// A completed handshake: the key schedule and what was learned about the peer.
pub struct Established {
    /// The session's key schedule (frame keys, BN-Ticket tokens).
    pub schedule: KeySchedule,
    /// Our role.
    pub role: Role,
    /// The peer's Ed25519 identity (verified against its Noise static key).
    pub peer_identity: VerifyingKey,
    /// The peer's capabilities.
    pub peer_caps: CapMsg,
    /// The per-layer selection both sides computed.
    pub selection: Selection,
    /// The final Noise handshake hash (safe to log).
    pub handshake_hash: [u8; 32],
    /// Whether the ML-KEM-768 hybrid was used.
    pub post_quantum: bool,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("role", &self.role)
            .field("peer_identity", &self.peer_identity)
            .field("selection", &self.selection)
            .field("handshake_hash", &hex::encode(self.handshake_hash))
            .field("post_quantum", &self.post_quantum)
            .finish()
    }
}

impl Established {
    /// Whether no common L2 id was found (the responder must send CLOSE 1 and close).
    pub fn negotiation_failed(&self) -> bool {
        !self.selection.has_l2()
    }
}

fn identity_payload(cfg: &HandshakeConfig, kem_ct: Option<&[u8]>) -> Result<Vec<u8>, CryptoError> {
    let mut entries = vec![
        (
            "id",
            Value::bytes(cfg.identity.verifying_key().to_bytes().to_vec()),
        ),
        ("caps", cfg.caps.to_value()),
    ];
    if let Some(ct) = kem_ct {
        entries.push(("kem", Value::bytes(ct.to_vec())));
    }
    cbor::encode(&Value::map(entries)).map_err(|e| CryptoError::Payload(e.to_string()))
}

struct PeerPayload {
    id: VerifyingKey,
    caps: CapMsg,
    caps_value: Value,
    kem: Option<Vec<u8>>,
}

fn parse_payload(bytes: &[u8]) -> Result<PeerPayload, CryptoError> {
    let v = cbor::decode(bytes).map_err(|e| CryptoError::Payload(e.to_string()))?;
    if v.as_map().is_none() {
        return Err(CryptoError::Payload("payload is not a map".into()));
    }
    let id = v
        .get("id")
        .and_then(Value::as_bytes)
        .ok_or_else(|| CryptoError::Payload("missing or non-bytes \"id\"".into()))?;
    let id = VerifyingKey::from_slice(id)
        .map_err(|_| CryptoError::AuthFailed("\"id\" is not an Ed25519 key"))?;
    let caps_value = v
        .get("caps")
        .cloned()
        .ok_or_else(|| CryptoError::Payload("missing \"caps\"".into()))?;
    let caps = CapMsg::from_value(&caps_value).map_err(|e| CryptoError::Payload(e.to_string()))?;
    let kem = match v.get("kem") {
        None => None,
        Some(k) => Some(
            k.as_bytes()
                .filter(|b| b.len() == kem::CT_LEN)
                .ok_or_else(|| CryptoError::Payload("\"kem\" must be 1088 bytes".into()))?
                .to_vec(),
        ),
    };
    Ok(PeerPayload {
        id,
        caps,
        caps_value,
        kem,
    })
}

fn finish(
    done: &Completed,
    ss_pq: Option<&[u8]>,
    sel: &Selection,
    caps_client: &Value,
    caps_server: &Value,
    template: &[u8; 32],
) -> Result<KeySchedule, CryptoError> {
    let ctx = caps::inner_ctx(sel, caps_client, caps_server, template)
        .map_err(|e| CryptoError::Payload(e.to_string()))?;
    let ekm = derive_ekm(&done.handshake_hash, &done.k1, &done.k2, ss_pq, &ctx);
    Ok(KeySchedule::from_ekm(&ekm))
}

/// Entry point for the dialing side.
pub struct Initiator;

/// Initiator after sending msg 1.
pub struct InitiatorAwaitMsg2 {
    noise: noise::InitiatorSentMsg1,
    cfg: HandshakeConfig,
    expected: VerifyingKey,
    kem: Option<KemSecret>,
}

impl Initiator {
    /// Starts a handshake towards `remote` (the Ed25519 key we dialed); returns the state and
    /// the length-prefixed msg 1 to send.
    pub fn start<R: RngCore + CryptoRng>(
        cfg: HandshakeConfig,
        remote: &VerifyingKey,
        rng: &mut R,
    ) -> Result<(InitiatorAwaitMsg2, Vec<u8>), CryptoError> {
        let rs = remote.to_x25519();
        let (kem, payload) = match cfg.pq {
            PqMode::Hybrid => {
                let (sk, ek) = KemSecret::generate()?;
                (Some(sk), ek)
            }
            PqMode::Classic => (None, Vec::new()),
        };
        let st = noise::InitiatorStart::with_public(
            cfg.static_x.clone(),
            cfg.static_x_pub,
            rs,
            &cfg.prologue(),
        );
        let mut msg = Vec::with_capacity(32 + payload.len() + 16);
        let noise = st.write_message1(X25519Secret::generate(rng), &payload, &mut msg)?;
        Ok((
            InitiatorAwaitMsg2 {
                noise,
                cfg,
                expected: *remote,
                kem,
            },
            prefix_message(&msg)?,
        ))
    }
}

impl InitiatorAwaitMsg2 {
    /// Processes msg 2 (without its length prefix); returns the session and the
    /// length-prefixed msg 3 to send.
    pub fn read_msg2(self, msg: &[u8]) -> Result<(Established, Vec<u8>), CryptoError> {
        let mut payload = Vec::new();
        let got = self.noise.read_message2(msg, &mut payload)?;
        let peer = parse_payload(&payload)?;
        if !crate::ct::ct_eq(&peer.id.to_bytes(), &self.expected.to_bytes()) {
            return Err(CryptoError::AuthFailed(
                "responder identity differs from the dialed key",
            ));
        }
        let ss = match (&self.kem, &peer.kem) {
            (Some(sk), Some(ct)) => Some(sk.decapsulate(ct)?),
            (Some(_), None) => {
                return Err(CryptoError::PqPolicy("responder refused the ML-KEM hybrid"));
            }
            (None, Some(_)) => return Err(CryptoError::PqPolicy("unrequested ML-KEM ciphertext")),
            (None, None) => None,
        };
        let selection = caps::select(&self.cfg.caps, &peer.caps);
        if !selection.has_l2() {
            return Err(CryptoError::VersionNegotiation);
        }
        let mut out = Vec::new();
        let done = got.write_message3(&identity_payload(&self.cfg, None)?, &mut out)?;
        let ours = self.cfg.caps.to_value();
        let schedule = finish(
            &done,
            ss.as_ref().map(|s| s.as_slice()),
            &selection,
            &ours,
            &peer.caps_value,
            &self.cfg.template,
        )?;
        let est = Established {
            schedule,
            role: Role::Initiator,
            peer_identity: peer.id,
            peer_caps: peer.caps,
            selection,
            handshake_hash: done.handshake_hash,
            post_quantum: ss.is_some(),
        };
        Ok((est, prefix_message(&out)?))
    }
}

/// Entry point for the listening side.
pub struct Responder;

/// Responder waiting for msg 1.
pub struct ResponderAwaitMsg1 {
    noise: noise::ResponderStart,
    cfg: HandshakeConfig,
}

/// Responder after sending msg 2.
pub struct ResponderAwaitMsg3 {
    noise: noise::ResponderSentMsg2,
    cfg: HandshakeConfig,
    ss_pq: Option<Zeroizing<Vec<u8>>>,
}

impl Responder {
    /// A responder with our configuration (its first phase).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cfg: HandshakeConfig) -> Result<ResponderAwaitMsg1, CryptoError> {
        let noise = noise::ResponderStart::with_public(
            cfg.static_x.clone(),
            cfg.static_x_pub,
            &cfg.prologue(),
        );
        Ok(ResponderAwaitMsg1 { noise, cfg })
    }
}

impl ResponderAwaitMsg1 {
    /// Processes msg 1 (without its length prefix); returns the state and the length-prefixed
    /// msg 2 to send.
    pub fn read_msg1<R: RngCore + CryptoRng>(
        self,
        msg: &[u8],
        rng: &mut R,
    ) -> Result<(ResponderAwaitMsg3, Vec<u8>), CryptoError> {
        let mut payload = Vec::new();
        let got = self.noise.read_message1(msg, &mut payload)?;
        let (ct, ss_pq) = match (payload.len(), self.cfg.pq) {
            (0, _) => {
                let deadline_passed = self.cfg.now_unix >= PQ_MANDATORY_FROM_UNIX;
                if self.cfg.pq == PqMode::Hybrid && deadline_passed && !self.cfg.allow_classic_peers
                {
                    return Err(CryptoError::PqPolicy("initiator offered no ML-KEM key"));
                }
                (None, None)
            }
            (kem::EK_LEN, PqMode::Hybrid) => {
                let (ct, ss) = kem::encapsulate(&payload)?;
                (Some(ct), Some(ss))
            }
            (kem::EK_LEN, PqMode::Classic) => (None, None),
            _ => {
                return Err(CryptoError::HandshakeMalformed(
                    "msg 1 payload must be 0 or 1184 bytes",
                ));
            }
        };
        let body = identity_payload(&self.cfg, ct.as_deref())?;
        let mut out = Vec::with_capacity(32 + body.len() + 16);
        let noise = got.write_message2(X25519Secret::generate(rng), &body, &mut out)?;
        Ok((
            ResponderAwaitMsg3 {
                noise,
                cfg: self.cfg,
                ss_pq,
            },
            prefix_message(&out)?,
        ))
    }
}

impl ResponderAwaitMsg3 {
    /// Processes msg 3 (without its length prefix) and completes the handshake.
    ///
    /// When the peers share no L2 id the handshake still completes (keys exist) and
    /// [`Established::negotiation_failed`] is true: send CLOSE 1 and close (PD-7).
    pub fn read_msg3(self, msg: &[u8]) -> Result<Established, CryptoError> {
        let mut payload = Vec::new();
        let done = self.noise.read_message3(msg, &mut payload)?;
        let peer = parse_payload(&payload)?;
        if peer.kem.is_some() {
            return Err(CryptoError::Payload("\"kem\" not allowed in msg 3".into()));
        }
        if !crate::ct::ct_eq(&peer.id.to_x25519().0, &done.remote_static.0) {
            return Err(CryptoError::AuthFailed(
                "initiator static key is not the X25519 form of its id",
            ));
        }
        let selection = caps::select(&peer.caps, &self.cfg.caps);
        let ours = self.cfg.caps.to_value();
        let schedule = finish(
            &done,
            self.ss_pq.as_ref().map(|s| s.as_slice()),
            &selection,
            &peer.caps_value,
            &ours,
            &self.cfg.template,
        )?;
        Ok(Established {
            schedule,
            role: Role::Responder,
            peer_identity: peer.id,
            peer_caps: peer.caps,
            selection,
            handshake_hash: done.handshake_hash,
            post_quantum: self.ss_pq.is_some(),
        })
    }
}

#[cfg(test)]
mod tests;

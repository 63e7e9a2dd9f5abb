//! The 1.1 alias ledger rule (SPEC §8), behind a [`ChainSource`] trait.
//!
//! A payload `betanet1 pk=<hex32> seq=<u64> sig=<base64url> exp=<unixSec>` is valid for a name
//! when the identical payload (same SHA-256) is final on 2 of the 3 chains (Handshake: >= 12
//! confirmations and 1 h without reorg; Filecoin FVM: finalized; Ethereum L2: finalized), its
//! self-signature verifies and it has not expired; among valid payloads the higher `seq` wins.
//! When fewer than 2 chains have finalized a payload for >= 14 days since it was first seen,
//! an Emergency Advance quorum certificate with >= 67 % of the governance weight makes it valid.
//!
//! Nothing here talks to a blockchain: a real deployment implements [`ChainSource`] over its
//! chain clients. [`FileChainSource`] reads observations from a local JSON file — it is for
//! local networks and tests, and trusts the file completely.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use betanet_crypto::hash::sha256;
use betanet_crypto::sign::{Signature, SigningKey, VerifyingKey};
use betanet_wire::cbor::{self, Value};

use crate::error::TrustError;
use crate::governance::DAY_MS;

/// Confirmations a Handshake record needs.
pub const HANDSHAKE_CONFIRMATIONS: u64 = 12;
/// Time a Handshake record must have gone without reorg.
pub const HANDSHAKE_STABLE_MS: u64 = 3_600_000;
/// Stall after which Emergency Advance is allowed.
pub const EMERGENCY_STALL_MS: u64 = 14 * DAY_MS;
/// Domain of the quorum certificate signatures.
pub const QC_DOMAIN: &[u8] = b"bn-aa1";

/// The three ledger chains.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// Handshake layer 1.
    Handshake,
    /// Filecoin FVM.
    Filecoin,
    /// An Ethereum L2.
    EthL2,
}

/// What a chain client reports about one record of a name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainObservation {
    /// The exact payload bytes as stored on chain (UTF-8 text).
    pub payload: String,
    /// Confirmations (Handshake).
    #[serde(default)]
    pub confirmations: u64,
    /// Since when the record has not been touched by a reorg (Handshake), ms.
    #[serde(default)]
    pub stable_since_ms: Option<u64>,
    /// Whether the chain reports the record finalized (Filecoin, Ethereum L2).
    #[serde(default)]
    pub finalized: bool,
    /// When the record was first seen on this chain, ms.
    pub first_seen_ms: u64,
}

impl ChainObservation {
    /// Whether the record is final on `chain` at `now_ms` under that chain's rule.
    pub fn is_final(&self, chain: Chain, now_ms: u64) -> bool {
        match chain {
            Chain::Handshake => {
                self.confirmations >= HANDSHAKE_CONFIRMATIONS
                    && self
                        .stable_since_ms
                        .is_some_and(|s| s.saturating_add(HANDSHAKE_STABLE_MS) <= now_ms)
            }
            Chain::Filecoin | Chain::EthL2 => self.finalized,
        }
    }
}

/// Access to one chain.
pub trait ChainSource {
    /// Which chain this is.
    fn chain(&self) -> Chain;
    /// The records currently stored for `name`.
    fn observations(&self, name: &str) -> Result<Vec<ChainObservation>, TrustError>;
}

/// A chain source backed by a local JSON file. **Local networks and tests only**: it performs
/// no chain verification and trusts the file.
///
/// File format: `{"handshake": {"<name>": [ChainObservation, ...]}, "filecoin": {...},
/// "eth_l2": {...}}` (each chain optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChainSource {
    chain: Chain,
    records: BTreeMap<String, Vec<ChainObservation>>,
}

impl FileChainSource {
    /// Parses the JSON text into one source per chain present.
    pub fn from_json(text: &str) -> Result<Vec<Self>, TrustError> {
        let m: BTreeMap<Chain, BTreeMap<String, Vec<ChainObservation>>> =
            serde_json::from_str(text)?;
        Ok(m.into_iter()
            .map(|(chain, records)| FileChainSource { chain, records })
            .collect())
    }

    /// Reads the file.
    pub fn load(path: &Path) -> Result<Vec<Self>, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }
}

impl ChainSource for FileChainSource {
    fn chain(&self) -> Chain {
        self.chain
    }
    fn observations(&self, name: &str) -> Result<Vec<ChainObservation>, TrustError> {
        Ok(self.records.get(name).cloned().unwrap_or_default())
    }
}

fn bad(reason: &'static str) -> TrustError {
    TrustError::LedgerPayloadInvalid { reason }
}

fn parse_dec(s: &str) -> Result<u64, TrustError> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("numbers are canonical decimal"));
    }
    s.parse().map_err(|_| bad("number out of range"))
}

/// A parsed 1.1 ledger payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerPayload {
    /// The owner's Ed25519 key.
    pub pk: [u8; 32],
    /// Sequence number.
    pub seq: u64,
    /// Self-signature.
    pub sig: [u8; 64],
    /// Expiry (Unix seconds).
    pub exp_s: u64,
}

impl LedgerPayload {
    /// The signed text: `betanet1 pk=<hex> seq=<seq> exp=<exp>` (the payload without `sig=`).
    pub fn signed_text(pk: &[u8; 32], seq: u64, exp_s: u64) -> String {
        format!("betanet1 pk={} seq={seq} exp={exp_s}", hex::encode(pk))
    }

    /// Signs a payload with the owner's key.
    pub fn sign(key: &SigningKey, seq: u64, exp_s: u64) -> Self {
        let pk = key.verifying_key().to_bytes();
        let sig = key
            .sign(Self::signed_text(&pk, seq, exp_s).as_bytes())
            .to_bytes();
        LedgerPayload {
            pk,
            seq,
            sig,
            exp_s,
        }
    }

    /// Strict parse of `betanet1 pk=<64 lowercase hex> seq=<dec> sig=<base64url> exp=<dec>`.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let mut it = text.split(' ');
        if it.next() != Some("betanet1") {
            return Err(bad("payload must start with betanet1"));
        }
        let mut field = |name: &'static str| -> Result<&str, TrustError> {
            it.next()
                .and_then(|f| f.strip_prefix(name))
                .ok_or(bad("fields must be pk=, seq=, sig=, exp= in that order"))
        };
        let pk_hex = field("pk=")?;
        let seq = field("seq=")?;
        let sig = field("sig=")?;
        let exp = field("exp=")?;
        if it.next().is_some() {
            return Err(bad("trailing fields"));
        }
        if pk_hex.len() != 64 || pk_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("pk must be 64 lowercase hex digits"));
        }
        let mut pk = [0u8; 32];
        hex::decode_to_slice(pk_hex, &mut pk).map_err(|_| bad("pk must be hex"))?;
        let sig_bytes = betanet_wire::b64::decode(sig)
            .map_err(|_| bad("sig must be base64url without padding"))?;
        let sig =
            <[u8; 64]>::try_from(sig_bytes.as_slice()).map_err(|_| bad("sig must be 64 bytes"))?;
        Ok(LedgerPayload {
            pk,
            seq: parse_dec(seq)?,
            sig,
            exp_s: parse_dec(exp)?,
        })
    }

    /// Verifies the self-signature and that `exp` is after `now_ms`.
    pub fn verify(&self, now_ms: u64) -> Result<(), TrustError> {
        let vk = VerifyingKey::from_bytes(&self.pk).map_err(|_| bad("pk is not an Ed25519 key"))?;
        vk.verify(
            Self::signed_text(&self.pk, self.seq, self.exp_s).as_bytes(),
            &Signature::from_bytes(&self.sig),
        )
        .map_err(|_| bad("signature does not verify"))?;
        if self.exp_s.saturating_mul(1000) <= now_ms {
            return Err(bad("expired"));
        }
        Ok(())
    }
}

impl std::fmt::Display for LedgerPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "betanet1 pk={} seq={} sig={} exp={}",
            hex::encode(self.pk),
            self.seq,
            betanet_wire::b64::encode(&self.sig),
            self.exp_s
        )
    }
}

/// Governance weights for an epoch, in integer micro-units (exact threshold arithmetic).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GovernanceWeights {
    /// The epoch these weights belong to.
    pub epoch: u64,
    /// Weight of each governance key.
    pub weights: BTreeMap<[u8; 32], u64>,
}

impl GovernanceWeights {
    /// Converts real weights (e.g. capped vote weights) to micro-units (floor(w × 10⁶)).
    pub fn from_f64(epoch: u64, weights: impl IntoIterator<Item = ([u8; 32], f64)>) -> Self {
        GovernanceWeights {
            epoch,
            weights: weights
                .into_iter()
                .map(|(k, w)| (k, (w.max(0.0) * 1e6).floor() as u64))
                .collect(),
        }
    }

    fn total(&self) -> u128 {
        self.weights.values().map(|w| u128::from(*w)).sum()
    }
}

/// An Emergency Advance quorum certificate
/// `{payloadHash, epoch, signers[], weights[], sigs[]}` (det-CBOR, keys as written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumCertificate {
    /// SHA-256 of the payload being advanced.
    pub payload_hash: [u8; 32],
    /// Governance epoch.
    pub epoch: u64,
    /// Signer keys.
    pub signers: Vec<[u8; 32]>,
    /// Claimed weights (micro-units), parallel to `signers`.
    pub weights: Vec<u64>,
    /// Signatures over `"bn-aa1" ‖ payloadHash ‖ u64be(epoch)`, parallel to `signers`.
    pub sigs: Vec<[u8; 64]>,
}

impl QuorumCertificate {
    /// The message each signer signs.
    pub fn message(payload_hash: &[u8; 32], epoch: u64) -> Vec<u8> {
        [QC_DOMAIN, payload_hash.as_slice(), &epoch.to_be_bytes()].concat()
    }

    /// Builds a certificate from signer keys and their weights.
    pub fn sign(payload_hash: [u8; 32], epoch: u64, signers: &[(&SigningKey, u64)]) -> Self {
        let msg = Self::message(&payload_hash, epoch);
        QuorumCertificate {
            payload_hash,
            epoch,
            signers: signers
                .iter()
                .map(|(k, _)| k.verifying_key().to_bytes())
                .collect(),
            weights: signers.iter().map(|(_, w)| *w).collect(),
            sigs: signers
                .iter()
                .map(|(k, _)| k.sign(&msg).to_bytes())
                .collect(),
        }
    }

    /// det-CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TrustError> {
        cbor::encode(&Value::map([
            ("payloadHash", Value::bytes(self.payload_hash.to_vec())),
            ("epoch", Value::Uint(self.epoch)),
            (
                "signers",
                Value::Array(
                    self.signers
                        .iter()
                        .map(|k| Value::bytes(k.to_vec()))
                        .collect(),
                ),
            ),
            (
                "weights",
                Value::Array(self.weights.iter().map(|w| Value::Uint(*w)).collect()),
            ),
            (
                "sigs",
                Value::Array(self.sigs.iter().map(|s| Value::bytes(s.to_vec())).collect()),
            ),
        ]))
        .map_err(|_| TrustError::Cbor {
            reason: "encoding failed",
        })
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        let q = |reason| TrustError::QuorumCertificateInvalid { reason };
        let v = cbor::decode(bytes).map_err(|_| TrustError::Cbor {
            reason: "certificate is not deterministic CBOR",
        })?;
        if v.as_map().map(<[_]>::len) != Some(5) {
            return Err(q("certificate must have exactly five fields"));
        }
        let arr = |k: &'static str| v.get(k).and_then(Value::as_array).ok_or(q(k));
        let fixed = |e: &Value| -> Option<Vec<u8>> { e.as_bytes().map(<[u8]>::to_vec) };
        Ok(QuorumCertificate {
            payload_hash: v
                .get("payloadHash")
                .and_then(Value::as_bytes)
                .and_then(|b| b.try_into().ok())
                .ok_or(q("payloadHash"))?,
            epoch: v.get("epoch").and_then(Value::as_u64).ok_or(q("epoch"))?,
            signers: arr("signers")?
                .iter()
                .map(|e| fixed(e).and_then(|b| b.try_into().ok()).ok_or(q("signer")))
                .collect::<Result<_, _>>()?,
            weights: arr("weights")?
                .iter()
                .map(|e| e.as_u64().ok_or(q("weight")))
                .collect::<Result<_, _>>()?,
            sigs: arr("sigs")?
                .iter()
                .map(|e| fixed(e).and_then(|b| b.try_into().ok()).ok_or(q("sig")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Checks the certificate against the governance weights: same epoch, parallel lists,
    /// distinct known signers, each claimed weight equal to the known weight, every signature
    /// valid, and the signed weight >= 67 % of the total weight (exact integer comparison).
    pub fn verify(&self, gov: &GovernanceWeights) -> Result<(), TrustError> {
        let q = |reason| TrustError::QuorumCertificateInvalid { reason };
        if self.epoch != gov.epoch {
            return Err(q("epoch does not match the governance epoch"));
        }
        if self.signers.len() != self.weights.len() || self.signers.len() != self.sigs.len() {
            return Err(q("signers, weights and sigs must have the same length"));
        }
        let msg = Self::message(&self.payload_hash, self.epoch);
        let mut seen = BTreeSet::new();
        let mut signed: u128 = 0;
        for ((k, w), s) in self.signers.iter().zip(&self.weights).zip(&self.sigs) {
            if !seen.insert(*k) {
                return Err(q("duplicate signer"));
            }
            let known = gov
                .weights
                .get(k)
                .ok_or(q("signer has no governance weight"))?;
            if known != w {
                return Err(q("claimed weight differs from the governance weight"));
            }
            let vk = VerifyingKey::from_bytes(k).map_err(|_| q("signer key invalid"))?;
            vk.verify(&msg, &Signature::from_bytes(s))
                .map_err(|_| q("signature does not verify"))?;
            signed += u128::from(*w);
        }
        let total = gov.total();
        if total == 0 || signed * 100 < total * 67 {
            return Err(q("signed weight is below 67 % of the governance weight"));
        }
        Ok(())
    }
}

/// How a resolved payload became valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finality {
    /// Final on these chains (at least two).
    Chains(Vec<Chain>),
    /// Valid through an Emergency Advance certificate.
    EmergencyAdvance,
}

/// The winning payload for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The payload.
    pub payload: LedgerPayload,
    /// SHA-256 of its exact bytes.
    pub payload_hash: [u8; 32],
    /// Why it is valid.
    pub finality: Finality,
}

/// Resolves `name` over the chain sources at `now_ms`, optionally with an Emergency Advance
/// certificate and the governance weights to check it against.
///
/// Ties in `seq` between different valid payloads are broken by the lower payload hash so that
/// every node picks the same one.
pub fn resolve(
    name: &str,
    sources: &[&dyn ChainSource],
    now_ms: u64,
    emergency: Option<(&QuorumCertificate, &GovernanceWeights)>,
) -> Result<Option<Resolved>, TrustError> {
    struct Seen {
        payload: String,
        final_on: BTreeSet<Chain>,
        first_seen_ms: u64,
    }
    let mut by_hash: BTreeMap<[u8; 32], Seen> = BTreeMap::new();
    let mut chains_done = BTreeSet::new();
    for src in sources {
        let chain = src.chain();
        if !chains_done.insert(chain) {
            continue; // one vote per chain
        }
        for ob in src.observations(name)? {
            let h = sha256(ob.payload.as_bytes());
            let e = by_hash.entry(h).or_insert_with(|| Seen {
                payload: ob.payload.clone(),
                final_on: BTreeSet::new(),
                first_seen_ms: ob.first_seen_ms,
            });
            e.first_seen_ms = e.first_seen_ms.min(ob.first_seen_ms);
            if ob.is_final(chain, now_ms) {
                e.final_on.insert(chain);
            }
        }
    }
    let mut best: Option<Resolved> = None;
    for (h, seen) in &by_hash {
        let finality = if seen.final_on.len() >= 2 {
            Finality::Chains(seen.final_on.iter().copied().collect())
        } else if let Some((qc, gov)) = emergency.filter(|(qc, _)| qc.payload_hash == *h) {
            if seen.first_seen_ms.saturating_add(EMERGENCY_STALL_MS) > now_ms {
                continue; // not stalled long enough
            }
            if qc.verify(gov).is_err() {
                continue;
            }
            Finality::EmergencyAdvance
        } else {
            continue;
        };
        let Ok(payload) = LedgerPayload::parse(&seen.payload) else {
            continue;
        };
        if payload.verify(now_ms).is_err() {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => payload.seq > b.payload.seq,
        };
        if better {
            best = Some(Resolved {
                payload,
                payload_hash: *h,
                finality,
            });
        }
    }
    Ok(best)
}

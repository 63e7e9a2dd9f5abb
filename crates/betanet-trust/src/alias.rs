//! The 1.2 alias ledger (SPEC §8): human-readable aliases mapped to NodeIDs.
//!
//! * A record is det-CBOR `{"alias": text, "node": bstr20, "seq": u64, "sig": bstr64, "ts": u64}`
//!   with `sig` = Ed25519 over `SHA-256("BN-L5" ‖ alias(UTF-8) ‖ node(20) ‖ u64be(seq) ‖
//!   u64be(ts))`, `ts` in milliseconds.
//! * **2-of-3 signer finality** (profile decision): the ledger has three maintainer keys; each
//!   maintainer publishes its own signed copy of a record. A record is *final* once two distinct
//!   current maintainers signed identical `(alias, node, seq, ts)`; until then it is pending.
//! * `seq` strictly increases per alias (a record at or below the latest final `seq` is
//!   `ALIAS_SEQ_REPLAY`); the latest final record and 5 earlier ones are kept; records whose
//!   `ts` is older than 365 days are ignored (at ingestion and at lookup).
//! * Maintainer rotation: `{"new": [3 keys], "prev": [3 keys], "seq": u64, "sig": [sig, sig],
//!   "type": "rot"}` signed by two distinct current maintainers over
//!   `SHA-256("BN-L5-rot" ‖ u64be(seq) ‖ u8(len prev) ‖ prev keys ‖ u8(len new) ‖ new keys)`.
//!
//! Errors reject the record only; the ledger state is unchanged by a rejected record.

use betanet_crypto::hash::sha256_concat;
use betanet_crypto::sign::{Signature, SigningKey, VerifyingKey};
use betanet_wire::cbor::{self, Value};

use crate::error::TrustError;
use crate::governance::DAY_MS;
use crate::store::{Store, Table};

/// Final records kept besides the latest.
pub const HISTORY: usize = 5;
/// Records older than this are ignored.
pub const MAX_AGE_MS: u64 = 365 * DAY_MS;
/// Longest alias in bytes.
pub const MAX_ALIAS_LEN: usize = 253;
/// Number of maintainers.
pub const MAINTAINERS: usize = 3;
/// Signatures needed for finality.
pub const FINALITY: usize = 2;
/// Distinct pending candidates kept per alias.
pub const MAX_PENDING: usize = 8;

const META_KEY: &[u8] = b"maintainers";

fn malformed(reason: &'static str) -> TrustError {
    TrustError::AliasMalformed { reason }
}

fn check_alias(alias: &str) -> Result<(), TrustError> {
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN {
        return Err(malformed("alias must be 1..=253 bytes"));
    }
    if alias.chars().any(char::is_control) {
        return Err(malformed("alias contains control characters"));
    }
    Ok(())
}

/// The content of an alias record (everything but the signature).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AliasContent {
    /// The alias.
    pub alias: String,
    /// The NodeID it names.
    pub node: [u8; 20],
    /// Sequence number.
    pub seq: u64,
    /// Timestamp (ms).
    pub ts_ms: u64,
}

impl AliasContent {
    /// `SHA-256("BN-L5" ‖ alias ‖ node ‖ u64be(seq) ‖ u64be(ts))`, the signed message.
    pub fn signed_hash(&self) -> [u8; 32] {
        sha256_concat(&[
            b"BN-L5",
            self.alias.as_bytes(),
            &self.node,
            &self.seq.to_be_bytes(),
            &self.ts_ms.to_be_bytes(),
        ])
    }
}

/// A signed 1.2 alias record (one maintainer's copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasRecord {
    /// What is asserted.
    pub content: AliasContent,
    /// A maintainer's signature over [`AliasContent::signed_hash`].
    pub sig: [u8; 64],
}

impl AliasRecord {
    /// Signs `content` with a maintainer key.
    pub fn sign(key: &SigningKey, content: AliasContent) -> Result<Self, TrustError> {
        check_alias(&content.alias)?;
        let sig = key.sign(&content.signed_hash()).to_bytes();
        Ok(AliasRecord { content, sig })
    }

    /// The det-CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TrustError> {
        let c = &self.content;
        cbor::encode(&Value::map([
            ("alias", Value::text(c.alias.clone())),
            ("node", Value::bytes(c.node.to_vec())),
            ("seq", Value::Uint(c.seq)),
            ("sig", Value::bytes(self.sig.to_vec())),
            ("ts", Value::Uint(c.ts_ms)),
        ]))
        .map_err(|_| TrustError::Cbor {
            reason: "encoding failed",
        })
    }

    /// Strict decoding: canonical det-CBOR with exactly the five fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        let v = cbor::decode(bytes).map_err(|_| TrustError::Cbor {
            reason: "alias record is not deterministic CBOR",
        })?;
        let m = v.as_map().ok_or(malformed("record is not a map"))?;
        if m.len() != 5 {
            return Err(malformed(
                "record must have exactly alias, node, seq, sig, ts",
            ));
        }
        let alias = v
            .get("alias")
            .and_then(Value::as_text)
            .ok_or(malformed("alias"))?
            .to_owned();
        check_alias(&alias)?;
        let node = v
            .get("node")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .ok_or(malformed("node must be 20 bytes"))?;
        let seq = v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or(malformed("seq"))?;
        let ts_ms = v.get("ts").and_then(Value::as_u64).ok_or(malformed("ts"))?;
        let sig = v
            .get("sig")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or(malformed("sig must be 64 bytes"))?;
        Ok(AliasRecord {
            content: AliasContent {
                alias,
                node,
                seq,
                ts_ms,
            },
            sig,
        })
    }

    /// Which of `keys` signed this record, if any.
    pub fn signer(&self, keys: &[[u8; 32]]) -> Option<[u8; 32]> {
        let h = self.content.signed_hash();
        let sig = Signature::from_bytes(&self.sig);
        keys.iter().copied().find(|k| {
            VerifyingKey::from_bytes(k)
                .map(|vk| vk.verify(&h, &sig).is_ok())
                .unwrap_or(false)
        })
    }
}

/// A maintainer rotation record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRecord {
    /// The next maintainer set (3 distinct keys).
    pub new: Vec<[u8; 32]>,
    /// The current set this rotation replaces.
    pub prev: Vec<[u8; 32]>,
    /// Rotation sequence number (strictly increasing).
    pub seq: u64,
    /// Two signatures by distinct members of `prev`.
    pub sigs: Vec<[u8; 64]>,
}

impl RotationRecord {
    /// `SHA-256("BN-L5-rot" ‖ u64be(seq) ‖ u8(len prev) ‖ prev ‖ u8(len new) ‖ new)`.
    pub fn signed_hash(new: &[[u8; 32]], prev: &[[u8; 32]], seq: u64) -> [u8; 32] {
        let mut buf = Vec::with_capacity(9 + 2 + 32 * (new.len() + prev.len()));
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.push(u8::try_from(prev.len()).unwrap_or(u8::MAX));
        for k in prev {
            buf.extend_from_slice(k);
        }
        buf.push(u8::try_from(new.len()).unwrap_or(u8::MAX));
        for k in new {
            buf.extend_from_slice(k);
        }
        sha256_concat(&[b"BN-L5-rot", &buf])
    }

    /// Builds and signs a rotation with two current maintainers.
    pub fn sign(
        signers: [&SigningKey; 2],
        new: Vec<[u8; 32]>,
        prev: Vec<[u8; 32]>,
        seq: u64,
    ) -> Self {
        let h = Self::signed_hash(&new, &prev, seq);
        let sigs = signers.iter().map(|k| k.sign(&h).to_bytes()).collect();
        RotationRecord {
            new,
            prev,
            seq,
            sigs,
        }
    }

    /// det-CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TrustError> {
        let keys =
            |v: &[[u8; 32]]| Value::Array(v.iter().map(|k| Value::bytes(k.to_vec())).collect());
        cbor::encode(&Value::map([
            ("new", keys(&self.new)),
            ("prev", keys(&self.prev)),
            ("seq", Value::Uint(self.seq)),
            (
                "sig",
                Value::Array(self.sigs.iter().map(|s| Value::bytes(s.to_vec())).collect()),
            ),
            ("type", Value::text("rot")),
        ]))
        .map_err(|_| TrustError::Cbor {
            reason: "encoding failed",
        })
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        let v = cbor::decode(bytes).map_err(|_| TrustError::Cbor {
            reason: "rotation record is not deterministic CBOR",
        })?;
        let m = v.as_map().ok_or(malformed("rotation is not a map"))?;
        if m.len() != 5 || v.get("type").and_then(Value::as_text) != Some("rot") {
            return Err(malformed(
                "rotation must have new, prev, seq, sig, type=rot",
            ));
        }
        let keys = |k: &'static str| -> Result<Vec<[u8; 32]>, TrustError> {
            let a = v.get(k).and_then(Value::as_array).ok_or(malformed(k))?;
            if a.len() > 16 {
                return Err(malformed("too many keys"));
            }
            a.iter()
                .map(|e| {
                    e.as_bytes()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or(malformed("keys must be 32 bytes"))
                })
                .collect()
        };
        let new = keys("new")?;
        let prev = keys("prev")?;
        let seq = v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or(malformed("seq"))?;
        let sa = v
            .get("sig")
            .and_then(Value::as_array)
            .ok_or(malformed("sig"))?;
        if sa.len() != FINALITY {
            return Err(malformed("rotation needs exactly two signatures"));
        }
        let sigs = sa
            .iter()
            .map(|e| {
                e.as_bytes()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or(malformed("signatures must be 64 bytes"))
            })
            .collect::<Result<_, _>>()?;
        Ok(RotationRecord {
            new,
            prev,
            seq,
            sigs,
        })
    }
}

/// A final alias binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalRecord {
    /// The record content.
    pub content: AliasContent,
    /// The maintainer copies that made it final: `(maintainer key, signature)`.
    pub signatures: Vec<([u8; 32], [u8; 64])>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AliasState {
    latest: Option<FinalRecord>,
    history: Vec<FinalRecord>,
    pending: Vec<FinalRecord>,
}

fn enc_final(r: &FinalRecord) -> Value {
    Value::map([
        ("node", Value::bytes(r.content.node.to_vec())),
        ("seq", Value::Uint(r.content.seq)),
        ("ts", Value::Uint(r.content.ts_ms)),
        (
            "sigs",
            Value::Array(
                r.signatures
                    .iter()
                    .map(|(k, s)| {
                        Value::Array(vec![Value::bytes(k.to_vec()), Value::bytes(s.to_vec())])
                    })
                    .collect(),
            ),
        ),
    ])
}

fn dec_final(alias: &str, v: &Value) -> Option<FinalRecord> {
    let node = v.get("node")?.as_bytes()?.try_into().ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let ts_ms = v.get("ts")?.as_u64()?;
    let mut signatures = Vec::new();
    for e in v.get("sigs")?.as_array()? {
        let pair = e.as_array()?;
        let k = pair.first()?.as_bytes()?.try_into().ok()?;
        let s = pair.get(1)?.as_bytes()?.try_into().ok()?;
        signatures.push((k, s));
    }
    Some(FinalRecord {
        content: AliasContent {
            alias: alias.to_owned(),
            node,
            seq,
            ts_ms,
        },
        signatures,
    })
}

impl AliasState {
    fn encode(&self) -> Result<Vec<u8>, TrustError> {
        let list = |v: &[FinalRecord]| Value::Array(v.iter().map(enc_final).collect());
        let latest = self.latest.as_ref().map_or(Value::Null, enc_final);
        cbor::encode(&Value::map([
            ("latest", latest),
            ("history", list(&self.history)),
            ("pending", list(&self.pending)),
        ]))
        .map_err(|_| TrustError::Cbor {
            reason: "encoding failed",
        })
    }

    fn decode(alias: &str, bytes: &[u8]) -> Result<Self, TrustError> {
        let corrupt = TrustError::Cbor {
            reason: "stored alias state is corrupt",
        };
        let v = cbor::decode(bytes).map_err(|_| TrustError::Cbor {
            reason: "stored alias state is corrupt",
        })?;
        let list = |k: &str| -> Option<Vec<FinalRecord>> {
            v.get(k)?
                .as_array()?
                .iter()
                .map(|e| dec_final(alias, e))
                .collect()
        };
        let latest = match v.get("latest") {
            Some(Value::Null) => None,
            Some(x) => Some(dec_final(alias, x).ok_or(TrustError::Cbor {
                reason: "stored alias state is corrupt",
            })?),
            None => return Err(corrupt),
        };
        Ok(AliasState {
            latest,
            history: list("history").ok_or(TrustError::Cbor {
                reason: "stored alias state is corrupt",
            })?,
            pending: list("pending").ok_or(corrupt)?,
        })
    }
}

/// The current maintainer set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maintainers {
    /// The three keys.
    pub keys: Vec<[u8; 32]>,
    /// Sequence number of the rotation that installed them (0 = genesis).
    pub seq: u64,
    /// Hash of that rotation (zero for genesis).
    pub rotation_hash: [u8; 32],
}

impl Maintainers {
    fn encode(&self) -> Result<Vec<u8>, TrustError> {
        cbor::encode(&Value::map([
            (
                "keys",
                Value::Array(self.keys.iter().map(|k| Value::bytes(k.to_vec())).collect()),
            ),
            ("seq", Value::Uint(self.seq)),
            ("rot", Value::bytes(self.rotation_hash.to_vec())),
        ]))
        .map_err(|_| TrustError::Cbor {
            reason: "encoding failed",
        })
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let v = cbor::decode(bytes).ok()?;
        let keys = v
            .get("keys")?
            .as_array()?
            .iter()
            .map(|k| k.as_bytes().and_then(|b| b.try_into().ok()))
            .collect::<Option<Vec<[u8; 32]>>>()?;
        Some(Maintainers {
            keys,
            seq: v.get("seq")?.as_u64()?,
            rotation_hash: v.get("rot")?.as_bytes()?.try_into().ok()?,
        })
    }
}

fn check_key_set(keys: &[[u8; 32]]) -> Result<(), TrustError> {
    if keys.len() != MAINTAINERS {
        return Err(malformed("a maintainer set has exactly 3 keys"));
    }
    let mut s = keys.to_vec();
    s.sort_unstable();
    s.dedup();
    if s.len() != MAINTAINERS {
        return Err(malformed("maintainer keys must be distinct"));
    }
    for k in keys {
        VerifyingKey::from_bytes(k).map_err(|_| malformed("maintainer key is not Ed25519"))?;
    }
    Ok(())
}

/// What happened to an accepted record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Signed by `signers` distinct maintainers so far (fewer than 2): not yet final.
    Pending {
        /// Distinct current maintainers that signed this content.
        signers: usize,
    },
    /// The record became the alias's latest final record.
    Final,
    /// The record is older than 365 days and was ignored.
    Expired,
}

/// The alias ledger over a [`Store`].
#[derive(Debug)]
pub struct AliasLedger<S: Store> {
    store: S,
    maintainers: Maintainers,
}

impl<S: Store> AliasLedger<S> {
    /// Opens the ledger. When the store already holds a maintainer set (from earlier rotations),
    /// that set is used; otherwise `genesis` (3 distinct Ed25519 keys) is installed.
    pub fn open(store: S, genesis: &[[u8; 32]]) -> Result<Self, TrustError> {
        let maintainers = match store.get(Table::Meta, META_KEY)? {
            Some(b) => Maintainers::decode(&b).ok_or(TrustError::Cbor {
                reason: "stored maintainer set is corrupt",
            })?,
            None => {
                check_key_set(genesis)?;
                let m = Maintainers {
                    keys: genesis.to_vec(),
                    seq: 0,
                    rotation_hash: [0; 32],
                };
                store.put(Table::Meta, META_KEY, &m.encode()?)?;
                m
            }
        };
        Ok(AliasLedger { store, maintainers })
    }

    /// The current maintainers.
    pub fn maintainers(&self) -> &Maintainers {
        &self.maintainers
    }

    fn load(&self, alias: &str) -> Result<AliasState, TrustError> {
        match self.store.get(Table::Alias, alias.as_bytes())? {
            Some(b) => AliasState::decode(alias, &b),
            None => Ok(AliasState::default()),
        }
    }

    /// Ingests one maintainer's copy of a record at `now_ms`.
    pub fn apply(&mut self, rec: &AliasRecord, now_ms: u64) -> Result<Outcome, TrustError> {
        let c = &rec.content;
        check_alias(&c.alias)?;
        if c.ts_ms.saturating_add(MAX_AGE_MS) < now_ms {
            return Ok(Outcome::Expired);
        }
        if c.ts_ms > now_ms.saturating_add(crate::MAX_SKEW_MS) {
            return Err(TrustError::FromTheFuture {
                ts_ms: c.ts_ms,
                now_ms,
            });
        }
        let signer = rec
            .signer(&self.maintainers.keys)
            .ok_or(TrustError::AliasSigInvalid {
                reason: "not signed by a current maintainer",
            })?;
        let mut st = self.load(&c.alias)?;
        if let Some(latest) = &st.latest
            && c.seq <= latest.content.seq
        {
            return Err(TrustError::AliasSeqReplay {
                seq: c.seq,
                latest: latest.content.seq,
            });
        }
        let idx = match st.pending.iter().position(|p| p.content == *c) {
            Some(i) => i,
            None => {
                if st.pending.len() >= MAX_PENDING {
                    // evict the candidate with the lowest seq (oldest intent)
                    if let Some((j, _)) = st
                        .pending
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| (p.content.seq, p.content.ts_ms))
                    {
                        st.pending.remove(j);
                    }
                }
                st.pending.push(FinalRecord {
                    content: c.clone(),
                    signatures: Vec::new(),
                });
                st.pending.len() - 1
            }
        };
        let keys = &self.maintainers.keys;
        let Some(entry) = st.pending.get_mut(idx) else {
            return Err(malformed("internal: pending entry missing"));
        };
        if !entry.signatures.iter().any(|(k, _)| *k == signer) {
            entry.signatures.push((signer, rec.sig));
        }
        let count = entry
            .signatures
            .iter()
            .filter(|(k, _)| keys.contains(k))
            .count();
        let outcome = if count >= FINALITY {
            let fin = st.pending.remove(idx);
            let seq = fin.content.seq;
            if let Some(old) = st.latest.replace(fin) {
                st.history.insert(0, old);
                st.history.truncate(HISTORY);
            }
            st.pending.retain(|p| p.content.seq > seq);
            Outcome::Final
        } else {
            Outcome::Pending { signers: count }
        };
        self.store
            .put(Table::Alias, c.alias.as_bytes(), &st.encode()?)?;
        Ok(outcome)
    }

    /// Decodes and ingests a record.
    pub fn apply_bytes(&mut self, bytes: &[u8], now_ms: u64) -> Result<Outcome, TrustError> {
        self.apply(&AliasRecord::decode(bytes)?, now_ms)
    }

    /// Applies a maintainer rotation.
    pub fn rotate(&mut self, rot: &RotationRecord) -> Result<(), TrustError> {
        let hash = RotationRecord::signed_hash(&rot.new, &rot.prev, rot.seq);
        if rot.seq <= self.maintainers.seq {
            if rot.seq == self.maintainers.seq && hash == self.maintainers.rotation_hash {
                return Err(TrustError::AliasSeqReplay {
                    seq: rot.seq,
                    latest: self.maintainers.seq,
                });
            }
            return Err(TrustError::AliasRotationConflict {
                reason: "a rotation with this or a higher seq was already applied",
            });
        }
        let mut prev = rot.prev.clone();
        prev.sort_unstable();
        let mut cur = self.maintainers.keys.clone();
        cur.sort_unstable();
        if prev != cur {
            return Err(TrustError::AliasRotationConflict {
                reason: "prev is not the current maintainer set",
            });
        }
        check_key_set(&rot.new)?;
        if rot.sigs.len() != FINALITY {
            return Err(TrustError::AliasSigInvalid {
                reason: "rotation needs two signatures",
            });
        }
        let mut endorsers = Vec::new();
        for s in &rot.sigs {
            let sig = Signature::from_bytes(s);
            let who = self.maintainers.keys.iter().find(|k| {
                !endorsers.contains(*k)
                    && VerifyingKey::from_bytes(k)
                        .map(|vk| vk.verify(&hash, &sig).is_ok())
                        .unwrap_or(false)
            });
            match who {
                Some(k) => endorsers.push(*k),
                None => {
                    return Err(TrustError::AliasSigInvalid {
                        reason: "rotation not endorsed by two distinct current maintainers",
                    });
                }
            }
        }
        let next = Maintainers {
            keys: rot.new.clone(),
            seq: rot.seq,
            rotation_hash: hash,
        };
        self.store.put(Table::Meta, META_KEY, &next.encode()?)?;
        self.maintainers = next;
        Ok(())
    }

    /// The latest final record of `alias`, unless it is older than 365 days at `now_ms`.
    pub fn resolve(&self, alias: &str, now_ms: u64) -> Result<Option<FinalRecord>, TrustError> {
        Ok(self
            .load(alias)?
            .latest
            .filter(|r| r.content.ts_ms.saturating_add(MAX_AGE_MS) >= now_ms))
    }

    /// The final records kept for `alias`, newest first (latest + up to 5).
    pub fn history(&self, alias: &str) -> Result<Vec<FinalRecord>, TrustError> {
        let st = self.load(alias)?;
        Ok(st.latest.into_iter().chain(st.history).collect())
    }
}

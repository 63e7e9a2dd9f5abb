//! L6 mints (SPEC §9): FROST-Ed25519 federations (n >= 5, t = 3), keyset ids, threshold
//! signing and mint announcements with proof of work.
//!
//! A federation's group signature is an ordinary Ed25519 signature (FROST(Ed25519, SHA-512),
//! RFC 9591), so anybody verifies vouchers with a plain Ed25519 verifier and the group key.
//!
//! The two-round signing protocol is exposed step by step ([`MemberShare::commit`],
//! [`signing_package`], [`MemberShare::sign`], [`Keyset::aggregate`]) so the members can run it
//! over any transport; [`threshold_sign`] runs all rounds in one process (CLI, tests).

use std::collections::BTreeMap;

use betanet_wire::cbor::{self, Value};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use frost_ed25519 as frost;
use frost_ed25519::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use rand_core::{CryptoRng, RngCore};
use sha2::digest::generic_array::GenericArray;

use crate::error::TrustError;

/// The FROST threshold mandated by SPEC §9.
pub const THRESHOLD: u16 = 3;
/// The smallest federation SPEC §9 allows.
pub const MIN_MEMBERS: u16 = 5;
/// Largest federation this implementation accepts (bounds work on peer-supplied keysets).
pub const MAX_MEMBERS: u16 = 64;
/// Gossip topic mints announce on.
pub const MINT_TOPIC: &str = "betanet.mints";
/// Minimum proof of work of an announcement, in leading zero bits.
pub const MIN_POW_BITS: u32 = 22;
/// Domain separator of the group signature over an announcement.
pub const ANNOUNCE_SIG_DOMAIN: &[u8] = b"bn-mint-ann";

fn check_params(n: u16, t: u16) -> Result<(), TrustError> {
    if n < MIN_MEMBERS {
        return Err(TrustError::InvalidParameters {
            reason: "a mint needs at least 5 members",
        });
    }
    if n > MAX_MEMBERS {
        return Err(TrustError::InvalidParameters {
            reason: "a mint may have at most 64 members",
        });
    }
    if t != THRESHOLD {
        return Err(TrustError::InvalidParameters {
            reason: "the mint threshold is 3",
        });
    }
    Ok(())
}

/// `keyset id = SHA-256(sorted member pubkeys)`: the members' FROST verifying shares (32-byte
/// compressed Edwards points), sorted bytewise and concatenated.
pub fn keyset_id(member_keys: &[[u8; 32]]) -> [u8; 32] {
    let mut keys = member_keys.to_vec();
    keys.sort_unstable();
    let parts: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    betanet_crypto::hash::sha256_concat(&parts)
}

/// The public description of a federation: enough to verify its signatures and to check that
/// its member keys, threshold and group key are consistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysetInfo {
    /// The group's Ed25519 public key.
    pub group_key: [u8; 32],
    /// Signing threshold t.
    pub threshold: u16,
    /// `(identifier, verifying share)` of each member, by identifier.
    pub members: Vec<(u16, [u8; 32])>,
}

impl KeysetInfo {
    /// The keyset id (SHA-256 of the sorted member keys).
    pub fn id(&self) -> [u8; 32] {
        let keys: Vec<[u8; 32]> = self.members.iter().map(|(_, k)| *k).collect();
        keyset_id(&keys)
    }

    /// Checks the SPEC §9 parameters and that the member keys lie on one polynomial of degree
    /// `t - 1` whose value at 0 is the group key (so `t` members really control the group key
    /// and no smaller set does).
    pub fn validate(&self) -> Result<(), TrustError> {
        let n = u16::try_from(self.members.len()).map_err(|_| TrustError::InvalidParameters {
            reason: "too many members",
        })?;
        check_params(n, self.threshold)?;
        let mut xs = Vec::with_capacity(self.members.len());
        let mut pts = Vec::with_capacity(self.members.len());
        for (i, (x, k)) in self.members.iter().enumerate() {
            if *x == 0 || (i > 0 && self.members.get(i - 1).is_some_and(|(p, _)| p >= x)) {
                return Err(TrustError::AnnouncementInvalid {
                    reason: "member identifiers must be non-zero and strictly increasing",
                });
            }
            let p = decompress(k).ok_or(TrustError::AnnouncementInvalid {
                reason: "member key is not a valid Edwards point",
            })?;
            xs.push(Scalar::from(u64::from(*x)));
            pts.push(p);
        }
        let group = decompress(&self.group_key).ok_or(TrustError::AnnouncementInvalid {
            reason: "group key is not a valid Edwards point",
        })?;
        let t = usize::from(self.threshold);
        let (base_x, base_p) = (
            xs.get(..t).unwrap_or_default(),
            pts.get(..t).unwrap_or_default(),
        );
        let interpolate = |at: Scalar| -> EdwardsPoint {
            let mut acc = EdwardsPoint::default();
            for (i, (xi, pi)) in base_x.iter().zip(base_p).enumerate() {
                let mut num = Scalar::ONE;
                let mut den = Scalar::ONE;
                for (j, xj) in base_x.iter().enumerate() {
                    if i != j {
                        num *= at - xj;
                        den *= xi - xj;
                    }
                }
                acc += pi * (num * den.invert());
            }
            acc
        };
        if interpolate(Scalar::ZERO) != group {
            return Err(TrustError::AnnouncementInvalid {
                reason: "group key is not the interpolation of the member keys",
            });
        }
        for (x, p) in xs.iter().zip(&pts).skip(t) {
            if interpolate(*x) != *p {
                return Err(TrustError::AnnouncementInvalid {
                    reason: "member keys do not lie on one threshold polynomial",
                });
            }
        }
        Ok(())
    }

    /// Verifies a group signature with a plain (strict) Ed25519 verifier.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), TrustError> {
        let vk = betanet_crypto::sign::VerifyingKey::from_bytes(&self.group_key)
            .map_err(|_| TrustError::VoucherSignatureInvalid)?;
        vk.verify(msg, &betanet_crypto::sign::Signature::from_bytes(sig))
            .map_err(|_| TrustError::VoucherSignatureInvalid)
    }
}

fn decompress(k: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*k).decompress()
}

/// A federation's public key material: the FROST public key package plus its [`KeysetInfo`].
#[derive(Clone, Debug, PartialEq)]
pub struct Keyset {
    info: KeysetInfo,
    public: PublicKeyPackage,
}

fn to32(v: &[u8]) -> Result<[u8; 32], TrustError> {
    v.try_into().map_err(|_| TrustError::InvalidParameters {
        reason: "FROST element is not 32 bytes",
    })
}

fn id_to_u16(id: &frost::Identifier) -> Result<u16, TrustError> {
    // Identifiers are scalars serialised little-endian; ours come from u16 values.
    let bytes = id.serialize();
    let (lo, hi) = (bytes.first(), bytes.get(1));
    let rest_zero = bytes.get(2..).is_some_and(|r| r.iter().all(|b| *b == 0));
    match (lo, hi, rest_zero) {
        (Some(lo), Some(hi), true) => Ok(u16::from_le_bytes([*lo, *hi])),
        _ => Err(TrustError::InvalidParameters {
            reason: "member identifier is not a small integer",
        }),
    }
}

impl Keyset {
    /// Wraps a FROST public key package (threshold taken from `threshold`).
    pub fn from_public(public: PublicKeyPackage, threshold: u16) -> Result<Self, TrustError> {
        let group_key = to32(&public.verifying_key().serialize()?)?;
        let mut members = Vec::with_capacity(public.verifying_shares().len());
        for (id, share) in public.verifying_shares() {
            members.push((id_to_u16(id)?, to32(&share.serialize()?)?));
        }
        members.sort_unstable();
        let info = KeysetInfo {
            group_key,
            threshold,
            members,
        };
        info.validate()?;
        Ok(Keyset { info, public })
    }

    /// Public description.
    pub fn info(&self) -> &KeysetInfo {
        &self.info
    }

    /// Keyset id.
    pub fn id(&self) -> [u8; 32] {
        self.info.id()
    }

    /// The FROST public key package.
    pub fn public_package(&self) -> &PublicKeyPackage {
        &self.public
    }

    /// Aggregates signature shares into the group's Ed25519 signature (verifying every share;
    /// a cheating member is reported in the error).
    pub fn aggregate(
        &self,
        package: &frost::SigningPackage,
        shares: &BTreeMap<frost::Identifier, frost::round2::SignatureShare>,
    ) -> Result<[u8; 64], TrustError> {
        let have = shares.len();
        let need = usize::from(self.info.threshold);
        if have < need {
            return Err(TrustError::ThresholdNotMet { have, need });
        }
        let sig = frost::aggregate(package, shares, &self.public)?;
        sig.serialize()?
            .as_slice()
            .try_into()
            .map_err(|_| TrustError::InvalidParameters {
                reason: "FROST signature is not 64 bytes",
            })
    }
}

/// One member's secret share of a federation (zeroized on drop by `frost-ed25519`; `Debug`
/// does not print it).
#[derive(Clone, PartialEq, Eq)]
pub struct MemberShare {
    key: KeyPackage,
}

impl std::fmt::Debug for MemberShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberShare({:?}, <secret>)", self.index().ok())
    }
}

impl MemberShare {
    /// Wraps a FROST key package.
    pub fn from_key_package(key: KeyPackage) -> Self {
        MemberShare { key }
    }

    /// The FROST key package (secret!).
    pub fn key_package(&self) -> &KeyPackage {
        &self.key
    }

    /// The member's identifier (1..=n).
    pub fn index(&self) -> Result<u16, TrustError> {
        id_to_u16(self.key.identifier())
    }

    /// The FROST identifier.
    pub fn identifier(&self) -> frost::Identifier {
        *self.key.identifier()
    }

    /// Round 1: fresh nonces (keep secret, use once) and the commitments to send.
    pub fn commit<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> (
        frost::round1::SigningNonces,
        frost::round1::SigningCommitments,
    ) {
        frost::round1::commit(self.key.signing_share(), rng)
    }

    /// Round 2: this member's signature share over the package's message.
    pub fn sign(
        &self,
        package: &frost::SigningPackage,
        nonces: &frost::round1::SigningNonces,
    ) -> Result<frost::round2::SignatureShare, TrustError> {
        Ok(frost::round2::sign(package, nonces, &self.key)?)
    }
}

/// Builds the signing package the coordinator sends to the members in round 2.
pub fn signing_package(
    commitments: BTreeMap<frost::Identifier, frost::round1::SigningCommitments>,
    msg: &[u8],
) -> frost::SigningPackage {
    frost::SigningPackage::new(commitments, msg)
}

/// Trusted-dealer key generation for `n` members with threshold `t` (must be 3).
pub fn dealer_keygen<R: RngCore + CryptoRng>(
    n: u16,
    t: u16,
    rng: &mut R,
) -> Result<(Keyset, Vec<MemberShare>), TrustError> {
    check_params(n, t)?;
    let (shares, public) = frost::keys::generate_with_dealer(n, t, IdentifierList::Default, rng)?;
    let mut members = Vec::with_capacity(shares.len());
    for (_, s) in shares {
        members.push(MemberShare::from_key_package(KeyPackage::try_from(s)?));
    }
    Ok((Keyset::from_public(public, t)?, members))
}

/// One participant of a distributed key generation (no dealer), driven step by step.
///
/// Each participant calls [`DkgParticipant::round1`], broadcasts the package, then
/// [`DkgParticipant::round2`] with everybody else's round-1 packages and sends each resulting
/// round-2 package privately to its addressee, then [`DkgParticipant::finish`].
pub struct DkgParticipant {
    id: frost::Identifier,
    t: u16,
    r1: Option<frost::keys::dkg::round1::SecretPackage>,
    r2: Option<frost::keys::dkg::round2::SecretPackage>,
}

/// Round-1 broadcast package of a DKG.
pub type DkgRound1Package = frost::keys::dkg::round1::Package;
/// Round-2 private package of a DKG.
pub type DkgRound2Package = frost::keys::dkg::round2::Package;

impl std::fmt::Debug for DkgParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DkgParticipant({:?}, <secret>)",
            id_to_u16(&self.id).ok()
        )
    }
}

impl DkgParticipant {
    /// Starts round 1 for member `index` (1..=n) of `n`.
    pub fn round1<R: RngCore + CryptoRng>(
        index: u16,
        n: u16,
        t: u16,
        rng: &mut R,
    ) -> Result<(Self, DkgRound1Package), TrustError> {
        check_params(n, t)?;
        let id = frost::Identifier::try_from(index)?;
        let (secret, package) = frost::keys::dkg::part1(id, n, t, rng)?;
        Ok((
            DkgParticipant {
                id,
                t,
                r1: Some(secret),
                r2: None,
            },
            package,
        ))
    }

    /// The participant's FROST identifier.
    pub fn identifier(&self) -> frost::Identifier {
        self.id
    }

    /// Round 2: given everybody else's round-1 packages, the private packages to send.
    pub fn round2(
        &mut self,
        round1: &BTreeMap<frost::Identifier, DkgRound1Package>,
    ) -> Result<BTreeMap<frost::Identifier, DkgRound2Package>, TrustError> {
        let secret = self.r1.take().ok_or(TrustError::InvalidParameters {
            reason: "DKG round 2 called twice or before round 1",
        })?;
        let (secret2, out) = frost::keys::dkg::part2(secret, round1)?;
        self.r2 = Some(secret2);
        Ok(out)
    }

    /// Final step: this member's share and the federation's keyset.
    pub fn finish(
        self,
        round1: &BTreeMap<frost::Identifier, DkgRound1Package>,
        round2: &BTreeMap<frost::Identifier, DkgRound2Package>,
    ) -> Result<(Keyset, MemberShare), TrustError> {
        let secret = self.r2.as_ref().ok_or(TrustError::InvalidParameters {
            reason: "DKG finish called before round 2",
        })?;
        let (key, public) = frost::keys::dkg::part3(secret, round1, round2)?;
        Ok((
            Keyset::from_public(public, self.t)?,
            MemberShare::from_key_package(key),
        ))
    }
}

/// Runs a complete DKG for `n` members inside one process (every message delivered locally).
/// All members must end with the same keyset; that is checked.
pub fn dkg_keygen<R: RngCore + CryptoRng>(
    n: u16,
    t: u16,
    rng: &mut R,
) -> Result<(Keyset, Vec<MemberShare>), TrustError> {
    check_params(n, t)?;
    let mut parts = Vec::with_capacity(usize::from(n));
    let mut r1_all = BTreeMap::new();
    for i in 1..=n {
        let (p, pkg) = DkgParticipant::round1(i, n, t, rng)?;
        r1_all.insert(p.identifier(), pkg);
        parts.push(p);
    }
    let others = |me: &frost::Identifier| -> BTreeMap<frost::Identifier, DkgRound1Package> {
        r1_all
            .iter()
            .filter(|(k, _)| *k != me)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    };
    // inbox[receiver][sender]
    let mut inbox: BTreeMap<frost::Identifier, BTreeMap<frost::Identifier, DkgRound2Package>> =
        BTreeMap::new();
    for p in &mut parts {
        let out = p.round2(&others(&p.identifier()))?;
        for (to, pkg) in out {
            inbox.entry(to).or_default().insert(p.identifier(), pkg);
        }
    }
    let mut keyset: Option<Keyset> = None;
    let mut members = Vec::with_capacity(parts.len());
    for p in parts {
        let id = p.identifier();
        let mine = inbox.remove(&id).unwrap_or_default();
        let (ks, share) = p.finish(&others(&id), &mine)?;
        match &keyset {
            Some(k) if k.info() != ks.info() => {
                return Err(TrustError::InvalidParameters {
                    reason: "DKG participants disagree on the keyset",
                });
            }
            Some(_) => {}
            None => keyset = Some(ks),
        }
        members.push(share);
    }
    let keyset = keyset.ok_or(TrustError::InvalidParameters {
        reason: "DKG produced no keyset",
    })?;
    Ok((keyset, members))
}

/// Runs both signing rounds in one process with the given members and returns the group's
/// Ed25519 signature over `msg`. Fewer than `t` members: [`TrustError::ThresholdNotMet`].
pub fn threshold_sign<R: RngCore + CryptoRng>(
    keyset: &Keyset,
    signers: &[&MemberShare],
    msg: &[u8],
    rng: &mut R,
) -> Result<[u8; 64], TrustError> {
    let need = usize::from(keyset.info().threshold);
    if signers.len() < need {
        return Err(TrustError::ThresholdNotMet {
            have: signers.len(),
            need,
        });
    }
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (n, c) = s.commit(rng);
        nonces.insert(s.identifier(), n);
        commitments.insert(s.identifier(), c);
    }
    let package = signing_package(commitments, msg);
    let mut shares = BTreeMap::new();
    for s in signers {
        let n = nonces
            .get(&s.identifier())
            .ok_or(TrustError::InvalidParameters {
                reason: "missing nonce",
            })?;
        shares.insert(s.identifier(), s.sign(&package, n)?);
    }
    keyset.aggregate(&package, &shares)
}

/// Leading zero bits of a hash.
pub fn leading_zero_bits(h: &[u8]) -> u32 {
    let mut bits = 0;
    for b in h {
        if *b == 0 {
            bits += 8;
        } else {
            bits += b.leading_zeros();
            break;
        }
    }
    bits
}

/// A mint announcement on topic `betanet.mints`.
///
/// Encoding (det-CBOR map): `{"contact": text, "group": bstr32, "id": bstr32, "members":
/// [[u16, bstr32], ...], "nonce": bstr8, "sig": bstr64, "t": uint, "ts": u64 ms}`.
/// Proof of work = leading zero bits of `SHA-256(det-CBOR(map without "sig"))` (the nonce is
/// inside); `sig` = the group's Ed25519 signature over `"bn-mint-ann" ‖ that hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintAnnouncement {
    /// The federation.
    pub keyset: KeysetInfo,
    /// HTX contact (a `betanet://` URL or `host:port`).
    pub contact: String,
    /// Creation time (ms).
    pub ts_ms: u64,
    /// Proof-of-work nonce.
    pub nonce: [u8; 8],
    /// Group signature.
    pub sig: [u8; 64],
}

fn body_value(keyset: &KeysetInfo, contact: &str, ts_ms: u64, nonce: &[u8; 8]) -> Value {
    let members = keyset
        .members
        .iter()
        .map(|(i, k)| Value::Array(vec![Value::Uint(u64::from(*i)), Value::bytes(k.to_vec())]))
        .collect();
    Value::map([
        ("contact", Value::text(contact)),
        ("group", Value::bytes(keyset.group_key.to_vec())),
        ("id", Value::bytes(keyset.id().to_vec())),
        ("members", Value::Array(members)),
        ("nonce", Value::bytes(nonce.to_vec())),
        ("t", Value::Uint(u64::from(keyset.threshold))),
        ("ts", Value::Uint(ts_ms)),
    ])
}

fn cbor_err(_: betanet_wire::cbor::CborError) -> TrustError {
    TrustError::Cbor {
        reason: "encoding failed",
    }
}

/// Searches a nonce that gives `bits` leading zero bits over the announcement body, trying at
/// most `max_tries` nonces starting from a random one. Returns the nonce and the body hash.
pub fn mine_pow<R: RngCore + CryptoRng>(
    keyset: &KeysetInfo,
    contact: &str,
    ts_ms: u64,
    bits: u32,
    max_tries: u64,
    rng: &mut R,
) -> Result<([u8; 8], [u8; 32]), TrustError> {
    // Locate the nonce bytes by encoding twice with different nonces.
    let a = cbor::encode(&body_value(keyset, contact, ts_ms, &[0; 8])).map_err(cbor_err)?;
    let b = cbor::encode(&body_value(keyset, contact, ts_ms, &[0xff; 8])).map_err(cbor_err)?;
    let pos =
        a.iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .ok_or(TrustError::AnnouncementInvalid {
                reason: "nonce not found in encoding",
            })?;
    let (prefix, rest) = a.split_at(pos);
    let suffix = rest.get(8..).ok_or(TrustError::AnnouncementInvalid {
        reason: "nonce not found in encoding",
    })?;
    // Midstate: compress the whole 64-byte blocks of the prefix once, then per nonce only the
    // padded tail (prefix remainder ‖ nonce ‖ suffix ‖ SHA-256 padding).
    const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let full = prefix.len() / 64 * 64;
    let (head, rem) = prefix.split_at(full);
    let mut mid = IV;
    let head_blocks: Vec<_> = head
        .chunks_exact(64)
        .map(|c| *GenericArray::from_slice(c))
        .collect();
    sha2::compress256(&mut mid, &head_blocks);
    let total_bits = (a.len() as u64).wrapping_mul(8);
    let mut tail = Vec::with_capacity(rem.len() + 8 + suffix.len() + 72);
    tail.extend_from_slice(rem);
    tail.extend_from_slice(&[0u8; 8]);
    tail.extend_from_slice(suffix);
    tail.push(0x80);
    while tail.len() % 64 != 56 {
        tail.push(0);
    }
    tail.extend_from_slice(&total_bits.to_be_bytes());
    let mut blocks: Vec<_> = tail
        .chunks_exact(64)
        .map(|c| *GenericArray::from_slice(c))
        .collect();
    // the nonce sits in block `at / 64` at offset `at % 64` (it may straddle two blocks)
    let at = rem.len();
    let start = rng.next_u64();
    for i in 0..max_tries {
        let nonce = start.wrapping_add(i).to_be_bytes();
        for (j, byte) in nonce.iter().enumerate() {
            let p = at + j;
            if let Some(slot) = blocks.get_mut(p / 64).and_then(|b| b.get_mut(p % 64)) {
                *slot = *byte;
            }
        }
        let mut st = mid;
        sha2::compress256(&mut st, &blocks);
        let mut digest = [0u8; 32];
        for (out, w) in digest.chunks_exact_mut(4).zip(st) {
            out.copy_from_slice(&w.to_be_bytes());
        }
        if leading_zero_bits(&digest) >= bits {
            return Ok((nonce, digest));
        }
    }
    Err(TrustError::PowInsufficient {
        have: 0,
        need: bits,
    })
}

impl MintAnnouncement {
    /// Message the group signs: `"bn-mint-ann" ‖ SHA-256(body)`.
    pub fn signed_message(body_hash: &[u8; 32]) -> Vec<u8> {
        [ANNOUNCE_SIG_DOMAIN, body_hash.as_slice()].concat()
    }

    /// Creates a signed announcement: mines `bits` of proof of work (at most `max_tries`) and
    /// threshold-signs it with `signers`.
    pub fn create<R: RngCore + CryptoRng>(
        keyset: &Keyset,
        signers: &[&MemberShare],
        contact: &str,
        ts_ms: u64,
        bits: u32,
        max_tries: u64,
        rng: &mut R,
    ) -> Result<Self, TrustError> {
        let (nonce, hash) = mine_pow(keyset.info(), contact, ts_ms, bits, max_tries, rng)?;
        let sig = threshold_sign(keyset, signers, &Self::signed_message(&hash), rng)?;
        Ok(MintAnnouncement {
            keyset: keyset.info().clone(),
            contact: contact.to_owned(),
            ts_ms,
            nonce,
            sig,
        })
    }

    /// SHA-256 of the body (the map without `sig`).
    pub fn body_hash(&self) -> Result<[u8; 32], TrustError> {
        let body = cbor::encode(&body_value(
            &self.keyset,
            &self.contact,
            self.ts_ms,
            &self.nonce,
        ))
        .map_err(cbor_err)?;
        Ok(betanet_crypto::hash::sha256(&body))
    }

    /// Proof-of-work bits of this announcement.
    pub fn pow_bits(&self) -> Result<u32, TrustError> {
        Ok(leading_zero_bits(&self.body_hash()?))
    }

    /// det-CBOR encoding.
    pub fn encode(&self) -> Result<Vec<u8>, TrustError> {
        let mut v = body_value(&self.keyset, &self.contact, self.ts_ms, &self.nonce);
        if let Value::Map(m) = &mut v {
            m.push((Value::text("sig"), Value::bytes(self.sig.to_vec())));
        }
        cbor::encode(&v).map_err(cbor_err)
    }

    /// Strict decoding (no verification; see [`MintAnnouncement::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        let bad = |reason| TrustError::AnnouncementInvalid { reason };
        let v = cbor::decode(bytes).map_err(|_| TrustError::Cbor {
            reason: "announcement is not deterministic CBOR",
        })?;
        let m = v.as_map().ok_or(bad("not a map"))?;
        if m.len() != 8 {
            return Err(bad("wrong number of fields"));
        }
        let b32 = |k: &'static str| -> Result<[u8; 32], TrustError> {
            v.get(k)
                .and_then(Value::as_bytes)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(bad(k))
        };
        let group_key = b32("group")?;
        let id = b32("id")?;
        let threshold = v
            .get("t")
            .and_then(Value::as_u64)
            .and_then(|t| u16::try_from(t).ok())
            .ok_or(bad("t"))?;
        let ts_ms = v.get("ts").and_then(Value::as_u64).ok_or(bad("ts"))?;
        let contact = v
            .get("contact")
            .and_then(Value::as_text)
            .ok_or(bad("contact"))?
            .to_owned();
        let nonce = v
            .get("nonce")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or(bad("nonce"))?;
        let sig = v
            .get("sig")
            .and_then(Value::as_bytes)
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or(bad("sig"))?;
        let arr = v
            .get("members")
            .and_then(Value::as_array)
            .ok_or(bad("members"))?;
        if arr.len() > usize::from(MAX_MEMBERS) {
            return Err(bad("too many members"));
        }
        let mut members = Vec::with_capacity(arr.len());
        for e in arr {
            let pair = e.as_array().ok_or(bad("member entry"))?;
            let (Some(i), Some(k), 2) = (pair.first(), pair.get(1), pair.len()) else {
                return Err(bad("member entry"));
            };
            let i = i
                .as_u64()
                .and_then(|i| u16::try_from(i).ok())
                .ok_or(bad("member index"))?;
            let k = k
                .as_bytes()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(bad("member key"))?;
            members.push((i, k));
        }
        let keyset = KeysetInfo {
            group_key,
            threshold,
            members,
        };
        if keyset.id() != id {
            return Err(bad("id is not SHA-256 of the sorted member keys"));
        }
        Ok(MintAnnouncement {
            keyset,
            contact,
            ts_ms,
            nonce,
            sig,
        })
    }

    /// Full verification: keyset consistency, proof of work >= `min_bits` (at least
    /// [`MIN_POW_BITS`] in production), timestamp not in the future beyond 120 s, group
    /// signature.
    pub fn verify(&self, min_bits: u32, now_ms: u64) -> Result<[u8; 32], TrustError> {
        self.keyset.validate()?;
        let hash = self.body_hash()?;
        let have = leading_zero_bits(&hash);
        if have < min_bits {
            return Err(TrustError::PowInsufficient {
                have,
                need: min_bits,
            });
        }
        if self.ts_ms > now_ms.saturating_add(crate::MAX_SKEW_MS) {
            return Err(TrustError::FromTheFuture {
                ts_ms: self.ts_ms,
                now_ms,
            });
        }
        self.keyset
            .verify(&Self::signed_message(&hash), &self.sig)
            .map_err(|_| TrustError::AnnouncementInvalid {
                reason: "group signature does not verify",
            })?;
        Ok(self.keyset.id())
    }
}

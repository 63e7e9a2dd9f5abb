//! Library functions behind `betanet name`, `betanet mint`, `betanet voucher` and
//! `betanet governance tally`. Each returns a value that prints (via `Display`) what the command
//! shows; the binary only parses flags, reads the clock and the RNG, and prints.
//!
//! File formats (JSON): a *federation file* holds a mint's public keyset **and the members'
//! secret key packages** (for local networks and tests — in production each member keeps only
//! its own share); a *keyset file* holds only the public part.

use std::fmt;
use std::path::Path;

use betanet_crypto::identity::{Bn1Name, NodeId};
use betanet_crypto::sign::SigningKey;
use frost_ed25519::keys::KeyPackage;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use crate::alias::{AliasContent, AliasRecord};
use crate::error::TrustError;
use crate::mint::{self, Keyset, KeysetInfo, MemberShare, MintAnnouncement};
use crate::names::{KeyNames, Name, names_of, parse_key_hex};
use crate::store::RedbStore;
use crate::tally::{Report, TallyInput, tally_report};
use crate::voucher::{MintVoucher, Redeemed, Redeemer, Voucher, VoucherPolicy};

fn read(path: &Path) -> Result<String, TrustError> {
    std::fs::read_to_string(path).map_err(|source| TrustError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn hex32(s: &str, what: &'static str) -> Result<[u8; 32], TrustError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|_| TrustError::NameInvalid { reason: what })?;
    Ok(out)
}

// ---------------------------------------------------------------- names

/// `betanet name show KEY`: every name form of a public key (64 hex digits).
pub fn name_show(pubkey_hex: &str) -> Result<KeyNames, TrustError> {
    names_of(&parse_key_hex(pubkey_hex)?)
}

/// Result of `betanet name verify NAME KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameCheck {
    /// The name as given.
    pub name: String,
    /// The key checked.
    pub key_hex: String,
}

impl fmt::Display for NameCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "OK: {} belongs to key {}", self.name, self.key_hex)
    }
}

/// `betanet name verify NAME KEY`: checks that the key owns the name (error otherwise).
pub fn name_verify(name: &str, pubkey_hex: &str) -> Result<NameCheck, TrustError> {
    let key = parse_key_hex(pubkey_hex)?;
    let n: Name = name.parse()?;
    n.verify(&key)?;
    Ok(NameCheck {
        name: name.to_owned(),
        key_hex: hex::encode(key),
    })
}

/// A signed alias record, printable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasOut {
    /// The record.
    pub record: AliasRecord,
    /// Its det-CBOR encoding, hex.
    pub cbor_hex: String,
    /// Index (0-based) of the maintainer that signed it, when known.
    pub signer: Option<usize>,
}

impl fmt::Display for AliasOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.record.content;
        writeln!(f, "alias: {}", c.alias)?;
        writeln!(
            f,
            "node:  {} ({})",
            hex::encode(c.node),
            Bn1Name(NodeId(c.node))
        )?;
        writeln!(f, "seq:   {}", c.seq)?;
        writeln!(f, "ts:    {} ms", c.ts_ms)?;
        if let Some(i) = self.signer {
            writeln!(f, "signed by maintainer #{i}")?;
        }
        writeln!(f, "record: {}", self.cbor_hex)
    }
}

fn parse_node(node: &str) -> Result<[u8; 20], TrustError> {
    if node.starts_with("bn1:") {
        let n: Bn1Name = node.parse().map_err(|_| TrustError::NameInvalid {
            reason: "bn1: name is malformed or its checksum is wrong",
        })?;
        return Ok(n.node_id().0);
    }
    let mut out = [0u8; 20];
    hex::decode_to_slice(node.trim(), &mut out).map_err(|_| TrustError::NameInvalid {
        reason: "node must be a bn1: name or 40 hex digits",
    })?;
    Ok(out)
}

/// `betanet name alias-sign`: a maintainer (secret seed, 64 hex digits) signs
/// `alias -> node` (a `bn1:` name or NodeID hex) at `seq` and `ts_ms`.
pub fn alias_sign(
    maintainer_seed_hex: &str,
    alias: &str,
    node: &str,
    seq: u64,
    ts_ms: u64,
) -> Result<AliasOut, TrustError> {
    let mut seed = hex32(maintainer_seed_hex, "a secret seed is 64 hex digits")?;
    let key = SigningKey::from_seed(&seed);
    seed.zeroize();
    let record = AliasRecord::sign(
        &key,
        AliasContent {
            alias: alias.to_owned(),
            node: parse_node(node)?,
            seq,
            ts_ms,
        },
    )?;
    Ok(AliasOut {
        cbor_hex: hex::encode(record.encode()?),
        record,
        signer: None,
    })
}

/// `betanet name alias-verify RECORD MAINTAINER...`: decodes a hex record and checks that one
/// of the maintainer keys signed it.
pub fn alias_verify(record_hex: &str, maintainers_hex: &[String]) -> Result<AliasOut, TrustError> {
    let bytes = hex::decode(record_hex.trim()).map_err(|_| TrustError::AliasMalformed {
        reason: "record must be hex",
    })?;
    let record = AliasRecord::decode(&bytes)?;
    let keys = maintainers_hex
        .iter()
        .map(|k| parse_key_hex(k))
        .collect::<Result<Vec<_>, _>>()?;
    let who = record.signer(&keys).ok_or(TrustError::AliasSigInvalid {
        reason: "not signed by any of the given maintainers",
    })?;
    Ok(AliasOut {
        signer: keys.iter().position(|k| *k == who),
        cbor_hex: hex::encode(&bytes),
        record,
    })
}

// ---------------------------------------------------------------- mints

/// The public part of a federation (keyset file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysetFile {
    /// Keyset id, hex.
    pub id: String,
    /// Group key, hex.
    pub group_key: String,
    /// Threshold.
    pub threshold: u16,
    /// `[index, verifying share hex]`.
    pub members: Vec<(u16, String)>,
}

impl KeysetFile {
    /// From a keyset.
    pub fn from_info(info: &KeysetInfo) -> Self {
        KeysetFile {
            id: hex::encode(info.id()),
            group_key: hex::encode(info.group_key),
            threshold: info.threshold,
            members: info
                .members
                .iter()
                .map(|(i, k)| (*i, hex::encode(k)))
                .collect(),
        }
    }

    /// To a validated keyset (the id must match the members).
    pub fn to_info(&self) -> Result<KeysetInfo, TrustError> {
        let info = KeysetInfo {
            group_key: hex32(&self.group_key, "group_key is 64 hex digits")?,
            threshold: self.threshold,
            members: self
                .members
                .iter()
                .map(|(i, k)| Ok((*i, hex32(k, "member key is 64 hex digits")?)))
                .collect::<Result<_, TrustError>>()?,
        };
        info.validate()?;
        if hex::encode(info.id()) != self.id {
            return Err(TrustError::AnnouncementInvalid {
                reason: "keyset id does not match the member keys",
            });
        }
        Ok(info)
    }
}

/// One member's secret share in a federation file.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// Member index (1..=n).
    pub index: u16,
    /// The serialised FROST key package, hex (secret).
    pub key_package: String,
}

impl fmt::Debug for MemberEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberEntry({}, <secret>)", self.index)
    }
}

impl Drop for MemberEntry {
    fn drop(&mut self) {
        self.key_package.zeroize();
    }
}

/// A federation file: the public keyset plus every member's secret share.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationFile {
    /// `"dealer"` or `"dkg"`.
    pub keygen: String,
    /// Public keyset.
    pub keyset: KeysetFile,
    /// The FROST public key package, hex.
    pub public_package: String,
    /// Member secrets.
    pub members: Vec<MemberEntry>,
}

impl fmt::Display for FederationFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "mint federation ({} key generation): {}-of-{}",
            self.keygen,
            self.keyset.threshold,
            self.keyset.members.len()
        )?;
        writeln!(f, "keyset id: {}", self.keyset.id)?;
        writeln!(f, "group key: {}", self.keyset.group_key)?;
        for (i, k) in &self.keyset.members {
            writeln!(f, "member {i}: {k}")?;
        }
        Ok(())
    }
}

impl FederationFile {
    /// Builds the file from a keyset and its members.
    pub fn new(keygen: &str, keyset: &Keyset, members: &[MemberShare]) -> Result<Self, TrustError> {
        Ok(FederationFile {
            keygen: keygen.to_owned(),
            keyset: KeysetFile::from_info(keyset.info()),
            public_package: hex::encode(keyset.public_package().serialize()?),
            members: members
                .iter()
                .map(|m| {
                    Ok(MemberEntry {
                        index: m.index()?,
                        key_package: hex::encode(m.key_package().serialize()?),
                    })
                })
                .collect::<Result<_, TrustError>>()?,
        })
    }

    /// Restores the keyset and the member shares.
    pub fn open(&self) -> Result<(Keyset, Vec<MemberShare>), TrustError> {
        let bad = |reason| TrustError::InvalidParameters { reason };
        let pkg =
            hex::decode(&self.public_package).map_err(|_| bad("public_package is not hex"))?;
        let public = frost_ed25519::keys::PublicKeyPackage::deserialize(&pkg)?;
        let keyset = Keyset::from_public(public, self.keyset.threshold)?;
        if keyset.info() != &self.keyset.to_info()? {
            return Err(bad("keyset does not match the public package"));
        }
        let mut members = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let mut raw = hex::decode(&m.key_package).map_err(|_| bad("key_package is not hex"))?;
            let kp = KeyPackage::deserialize(&raw);
            raw.zeroize();
            let share = MemberShare::from_key_package(kp?);
            if share.index()? != m.index {
                return Err(bad("member index does not match its key package"));
            }
            members.push(share);
        }
        Ok((keyset, members))
    }

    /// JSON text.
    pub fn to_json(&self) -> Result<String, TrustError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Parses JSON text.
    pub fn from_json(text: &str) -> Result<Self, TrustError> {
        Ok(serde_json::from_str(text)?)
    }
}

/// `betanet mint create --members N [--dkg]`: a new federation (t = 3).
pub fn mint_create<R: RngCore + CryptoRng>(
    n: u16,
    dkg: bool,
    rng: &mut R,
) -> Result<FederationFile, TrustError> {
    let (ks, members) = if dkg {
        mint::dkg_keygen(n, mint::THRESHOLD, rng)?
    } else {
        mint::dealer_keygen(n, mint::THRESHOLD, rng)?
    };
    FederationFile::new(if dkg { "dkg" } else { "dealer" }, &ks, &members)
}

/// A freshly signed voucher, printable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherOut {
    /// The voucher.
    pub voucher: Voucher,
    /// The member indices that signed.
    pub signers: Vec<u16>,
}

impl fmt::Display for VoucherOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "voucher signed by members {:?} of keyset {}",
            self.signers,
            hex::encode(self.voucher.keyset_id)
        )?;
        writeln!(f, "{}", hex::encode(self.voucher.to_bytes()))
    }
}

fn pick<'a>(
    members: &'a [MemberShare],
    indices: &[u16],
) -> Result<Vec<&'a MemberShare>, TrustError> {
    indices
        .iter()
        .map(|i| {
            members.iter().find(|m| m.index().ok() == Some(*i)).ok_or(
                TrustError::InvalidParameters {
                    reason: "no member with that index in the federation file",
                },
            )
        })
        .collect()
}

/// `betanet mint sign --members 1,3,5`: the listed members threshold-sign a voucher over
/// `secret` (fresh random when `None`).
pub fn mint_sign_voucher<R: RngCore + CryptoRng>(
    fed: &FederationFile,
    member_indices: &[u16],
    secret: Option<[u8; 32]>,
    rng: &mut R,
) -> Result<VoucherOut, TrustError> {
    let (ks, members) = fed.open()?;
    let signers = pick(&members, member_indices)?;
    let secret = secret.unwrap_or_else(|| {
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        s
    });
    Ok(VoucherOut {
        voucher: Voucher::issue(&ks, &signers, secret, rng)?,
        signers: member_indices.to_vec(),
    })
}

/// `betanet mint announce`: a signed announcement with `bits` of proof of work, hex det-CBOR.
pub fn mint_announce<R: RngCore + CryptoRng>(
    fed: &FederationFile,
    member_indices: &[u16],
    contact: &str,
    now_ms: u64,
    bits: u32,
    rng: &mut R,
) -> Result<String, TrustError> {
    let (ks, members) = fed.open()?;
    let signers = pick(&members, member_indices)?;
    let ann = MintAnnouncement::create(&ks, &signers, contact, now_ms, bits, 1 << 32, rng)?;
    Ok(hex::encode(ann.encode()?))
}

// ---------------------------------------------------------------- vouchers

/// Result of `betanet voucher verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherCheck {
    /// Keyset id, hex.
    pub keyset: String,
}

impl fmt::Display for VoucherCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "OK: valid voucher of keyset {}", self.keyset)
    }
}

fn parse_voucher_hex(s: &str) -> Result<Vec<u8>, TrustError> {
    hex::decode(s.trim()).map_err(|_| TrustError::VoucherMalformed { len: s.len() / 2 })
}

/// `betanet voucher verify VOUCHER --keyset FILE`: signature check with the group key.
pub fn voucher_verify(voucher_hex: &str, keyset: &KeysetFile) -> Result<VoucherCheck, TrustError> {
    let bytes = parse_voucher_hex(voucher_hex)?;
    let v =
        Voucher::parse(&bytes).map_err(|_| TrustError::VoucherMalformed { len: bytes.len() })?;
    v.verify_keyset(&keyset.to_info()?)?;
    Ok(VoucherCheck {
        keyset: hex::encode(v.keyset_id),
    })
}

/// Result of `betanet voucher redeem`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedeemOut(pub Redeemed);

impl fmt::Display for RedeemOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "redeemed {} sat ({} voucher, keyset {})",
            self.0.value_sat,
            if self.0.legacy { "legacy" } else { "128-byte" },
            hex::encode(self.0.keyset)
        )
    }
}

/// `betanet voucher redeem VOUCHER --keyset FILE --db PATH`: verifies and records the voucher
/// as spent in the redb database at `db` (refused if already spent, also across runs).
pub fn voucher_redeem(
    voucher_hex: &str,
    keysets: &[KeysetFile],
    value_sat: u64,
    db: &Path,
    now_ms: u64,
) -> Result<RedeemOut, TrustError> {
    let mut r = Redeemer::new(RedbStore::open(db)?, VoucherPolicy::default())?;
    for k in keysets {
        r.add_keyset(k.to_info()?, value_sat)?;
    }
    r.redeem(&parse_voucher_hex(voucher_hex)?, b"cli", now_ms)
        .map(RedeemOut)
}

// ---------------------------------------------------------------- governance

/// `betanet governance tally FILE`.
pub fn governance_tally(path: &Path, now_ms: u64) -> Result<Report, TrustError> {
    Ok(tally_report(&TallyInput::from_json(&read(path)?)?, now_ms))
}

/// Reads a keyset file.
pub fn read_keyset_file(path: &Path) -> Result<KeysetFile, TrustError> {
    Ok(serde_json::from_str(&read(path)?)?)
}

/// Reads a federation file.
pub fn read_federation_file(path: &Path) -> Result<FederationFile, TrustError> {
    FederationFile::from_json(&read(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn name_commands() {
        let key = SigningKey::from_seed(&[3; 32]).verifying_key().to_bytes();
        let kh = hex::encode(key);
        let names = name_show(&kh).unwrap();
        assert!(names.to_string().contains(&names.bn1));
        assert!(name_verify(&names.bn1, &kh).is_ok());
        assert!(name_verify(&names.url, &kh).is_ok());
        let other = hex::encode(SigningKey::from_seed(&[4; 32]).verifying_key().to_bytes());
        assert!(matches!(
            name_verify(&names.bn1, &other),
            Err(TrustError::KeyMismatch)
        ));
    }

    #[test]
    fn alias_commands() {
        let seed = hex::encode([5u8; 32]);
        let m = hex::encode(SigningKey::from_seed(&[5; 32]).verifying_key().to_bytes());
        let other = hex::encode(SigningKey::from_seed(&[6; 32]).verifying_key().to_bytes());
        let node_key = SigningKey::from_seed(&[7; 32]).verifying_key().to_bytes();
        let bn1 = names_of(&node_key).unwrap().bn1;
        let out = alias_sign(&seed, "shop", &bn1, 3, 1000).unwrap();
        assert!(out.to_string().contains(&bn1));
        let v = alias_verify(&out.cbor_hex, &[other.clone(), m]).unwrap();
        assert_eq!(v.signer, Some(1));
        assert_eq!(v.record, out.record);
        assert!(alias_verify(&out.cbor_hex, &[other]).is_err());
    }

    #[test]
    fn mint_and_voucher_commands() {
        let mut rng = StdRng::seed_from_u64(1);
        let fed = mint_create(5, false, &mut rng).unwrap();
        let text = fed.to_json().unwrap();
        let fed = FederationFile::from_json(&text).unwrap();
        assert!(fed.to_string().contains("3-of-5"));
        let out = mint_sign_voucher(&fed, &[1, 3, 5], Some([9; 32]), &mut rng).unwrap();
        let vh = hex::encode(out.voucher.to_bytes());
        assert!(out.to_string().contains(&vh));
        voucher_verify(&vh, &fed.keyset).unwrap();
        assert!(mint_sign_voucher(&fed, &[1, 3], None, &mut rng).is_err());
        assert!(mint_sign_voucher(&fed, &[1, 3, 9], None, &mut rng).is_err());
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v.redb");
        let r = voucher_redeem(&vh, std::slice::from_ref(&fed.keyset), 5, &db, 1).unwrap();
        assert_eq!(r.0.value_sat, 5);
        assert!(matches!(
            voucher_redeem(&vh, std::slice::from_ref(&fed.keyset), 5, &db, 2),
            Err(TrustError::VoucherDoubleSpend)
        ));
        let ann = mint_announce(&fed, &[2, 3, 4], "127.0.0.1:4433", 1000, 8, &mut rng).unwrap();
        let a = MintAnnouncement::decode(&hex::decode(ann).unwrap()).unwrap();
        a.verify(8, 1000).unwrap();
    }

    #[test]
    fn dkg_federation_file_roundtrip() {
        let mut rng = StdRng::seed_from_u64(2);
        let fed = mint_create(5, true, &mut rng).unwrap();
        assert_eq!(fed.keygen, "dkg");
        let (ks, members) = fed.open().unwrap();
        assert_eq!(members.len(), 5);
        assert_eq!(hex::encode(ks.id()), fed.keyset.id);
        let mut tampered = fed.clone();
        tampered.keyset.id = hex::encode([0u8; 32]);
        assert!(tampered.open().is_err());
    }
}

//! Node identities and names (SPEC §3): PeerID, NodeID, `betanet://` self-certifying URLs and
//! `bn1:` short names.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};

use crate::CryptoError;
use crate::hash::{sha256, sha256_concat};
use crate::sign::VerifyingKey;

/// Lowercase RFC 4648 base32 without padding, rejecting non-zero trailing bits.
static BASE32_LOWER: LazyLock<Option<Encoding>> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.check_trailing_bits = true;
    spec.encoding().ok()
});

fn base32() -> Result<&'static Encoding, CryptoError> {
    BASE32_LOWER.as_ref().ok_or(CryptoError::Internal)
}

/// `PeerID = 0x12 0x20 ‖ SHA-256(ed25519_pub)` (a sha2-256 multihash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 34]);

impl PeerId {
    /// The PeerID of an Ed25519 public key.
    pub fn from_ed25519(key: &VerifyingKey) -> Self {
        let mut out = [0u8; 34];
        out[0] = 0x12;
        out[1] = 0x20;
        out[2..].copy_from_slice(&sha256(&key.to_bytes()));
        PeerId(out)
    }

    /// The SHA-256 digest part.
    pub fn digest(&self) -> &[u8] {
        &self.0[2..]
    }

    /// Lowercase hex of all 34 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.to_hex())
    }
}

impl FromStr for PeerId {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        if s.len() != 68 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(CryptoError::InvalidId(
                "PeerID must be 68 lowercase hex digits",
            ));
        }
        let mut out = [0u8; 34];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| CryptoError::InvalidId("PeerID must be 68 lowercase hex digits"))?;
        if out[0] != 0x12 || out[1] != 0x20 {
            return Err(CryptoError::InvalidId(
                "PeerID must start with multihash prefix 1220",
            ));
        }
        Ok(PeerId(out))
    }
}

/// `NodeID = SHA-256(ed25519_pub)[0..20]` (L1 addressing).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// The NodeID of an Ed25519 public key.
    pub fn from_ed25519(key: &VerifyingKey) -> Self {
        let mut out = [0u8; 20];
        out.copy_from_slice(&sha256(&key.to_bytes())[..20]);
        NodeId(out)
    }

    /// The `bn1:` name of this node.
    pub fn name(&self) -> Bn1Name {
        Bn1Name(*self)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", hex::encode(self.0))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A `bn1:` short name: `bn1:` + base32-lower-no-pad(NodeID ‖ SHA-256("BN-NAME" ‖ NodeID)[0..4]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Bn1Name(pub NodeId);

impl Bn1Name {
    /// The 4-byte checksum of a NodeID.
    pub fn checksum(node: &NodeId) -> [u8; 4] {
        let h = sha256_concat(&[b"BN-NAME", &node.0]);
        [h[0], h[1], h[2], h[3]]
    }

    /// The NodeID the name stands for.
    pub fn node_id(&self) -> NodeId {
        self.0
    }

    /// Whether `key` is the key this name was made from.
    pub fn matches(&self, key: &VerifyingKey) -> bool {
        crate::ct::ct_eq(&NodeId::from_ed25519(key).0, &self.0.0)
    }
}

impl fmt::Display for Bn1Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 24];
        raw[..20].copy_from_slice(&self.0.0);
        raw[20..].copy_from_slice(&Self::checksum(&self.0));
        match base32() {
            Ok(enc) => write!(f, "bn1:{}", enc.encode(&raw)),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Bn1Name {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let body = s
            .strip_prefix("bn1:")
            .ok_or(CryptoError::InvalidId("name must start with bn1:"))?;
        let raw = base32()?
            .decode(body.as_bytes())
            .map_err(|_| CryptoError::InvalidId("name is not lowercase unpadded base32"))?;
        if raw.len() != 24 {
            return Err(CryptoError::InvalidId("name must encode 24 bytes"));
        }
        let mut node = [0u8; 20];
        node.copy_from_slice(&raw[..20]);
        let node = NodeId(node);
        if !crate::ct::ct_eq(&raw[20..], &Self::checksum(&node)) {
            return Err(CryptoError::InvalidId("name checksum mismatch"));
        }
        Ok(Bn1Name(node))
    }
}

/// A self-certifying service id: `SHA-256(service ed25519 pub)`, written
/// `betanet://<64 hex>[/resource]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub [u8; 32]);

impl ServiceId {
    /// The id of a service key.
    pub fn from_ed25519(key: &VerifyingKey) -> Self {
        ServiceId(sha256(&key.to_bytes()))
    }

    /// Whether `key` hashes to this id (the check a client makes on the key the peer proved in
    /// the handshake).
    pub fn matches(&self, key: &VerifyingKey) -> bool {
        crate::ct::ct_eq(&sha256(&key.to_bytes()), &self.0)
    }

    /// Checks `key` against this id.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CryptoError> {
        if self.matches(key) {
            Ok(())
        } else {
            Err(CryptoError::AuthFailed(
                "service key does not match the betanet:// id",
            ))
        }
    }

    /// `betanet://<hex>`.
    pub fn to_url(&self) -> String {
        format!("betanet://{}", hex::encode(self.0))
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_url())
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceId({})", hex::encode(self.0))
    }
}

/// A parsed `betanet://<id>[/resource]` URL.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BetanetUrl {
    /// The service id.
    pub id: ServiceId,
    /// The resource path including its leading `/`, or empty.
    pub resource: String,
}

impl FromStr for BetanetUrl {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let rest = s
            .strip_prefix("betanet://")
            .ok_or(CryptoError::InvalidId("URL must start with betanet://"))?;
        let (idhex, resource) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if idhex.len() != 64 || idhex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(CryptoError::InvalidId(
                "betanet:// id must be 64 lowercase hex digits",
            ));
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(idhex, &mut id)
            .map_err(|_| CryptoError::InvalidId("betanet:// id must be 64 lowercase hex digits"))?;
        Ok(BetanetUrl {
            id: ServiceId(id),
            resource: resource.to_owned(),
        })
    }
}

impl fmt::Display for BetanetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.id.to_url(), self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningKey;

    fn key() -> VerifyingKey {
        SigningKey::from_seed(&[1u8; 32]).verifying_key()
    }

    #[test]
    fn peer_id_roundtrip() {
        let p = PeerId::from_ed25519(&key());
        assert_eq!(&p.0[..2], &[0x12, 0x20]);
        assert_eq!(p.digest(), &sha256(&key().to_bytes()));
        assert_eq!(p.to_hex().parse::<PeerId>().unwrap(), p);
        assert!(p.to_hex().to_uppercase().parse::<PeerId>().is_err());
        assert!(p.to_hex()[2..].parse::<PeerId>().is_err());
        let mut bad = p.to_hex();
        bad.replace_range(0..2, "13");
        assert!(bad.parse::<PeerId>().is_err());
    }

    #[test]
    fn bn1_names() {
        let n = NodeId::from_ed25519(&key()).name();
        let s = n.to_string();
        assert!(s.starts_with("bn1:"));
        assert_eq!(s.len(), 4 + 39);
        assert_eq!(s.parse::<Bn1Name>().unwrap(), n);
        assert!(n.matches(&key()));
        // Flip one character: checksum (or trailing-bit) failure.
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let bad: String = chars.into_iter().collect();
        assert!(bad.parse::<Bn1Name>().is_err());
        assert!(s.to_uppercase().parse::<Bn1Name>().is_err());
        assert!(s.trim_start_matches("bn1:").parse::<Bn1Name>().is_err());
    }

    #[test]
    fn known_name_vector() {
        // NodeID of all zeros: checksum = SHA-256("BN-NAME" ‖ 0^20)[0..4].
        let n = Bn1Name(NodeId([0u8; 20]));
        let ck = Bn1Name::checksum(&NodeId([0u8; 20]));
        let mut raw = [0u8; 24];
        raw[20..].copy_from_slice(&ck);
        let expected = format!(
            "bn1:{}",
            data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase()
        );
        assert_eq!(n.to_string(), expected);
    }

    #[test]
    fn betanet_urls() {
        let id = ServiceId::from_ed25519(&key());
        let url = format!("{}/index.html", id.to_url());
        let parsed: BetanetUrl = url.parse().unwrap();
        assert_eq!(parsed.id, id);
        assert_eq!(parsed.resource, "/index.html");
        assert_eq!(parsed.to_string(), url);
        assert!(parsed.id.verify(&key()).is_ok());
        let other = SigningKey::from_seed(&[2u8; 32]).verifying_key();
        assert!(parsed.id.verify(&other).is_err());
        assert!("betanet://abc".parse::<BetanetUrl>().is_err());
        assert!("https://x".parse::<BetanetUrl>().is_err());
    }
}

//! Self-certifying names (SPEC §3): parsing any of the name forms and checking that a presented
//! Ed25519 key owns it. The encodings live in `betanet_crypto::identity`; this module adds the
//! verification API (an unverified [`Name`] becomes a [`VerifiedName`] only through
//! [`Name::verify`]).

use std::fmt;
use std::str::FromStr;

use betanet_crypto::identity::{BetanetUrl, Bn1Name, NodeId, PeerId, ServiceId};
use betanet_crypto::sign::VerifyingKey;

use crate::error::TrustError;

/// A parsed, not yet verified name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// `betanet://<hex SHA-256(pub)>[/resource]`.
    Url(BetanetUrl),
    /// `bn1:<base32>` short name (NodeID + checksum).
    Bn1(Bn1Name),
    /// A PeerID in lowercase hex (`1220...`).
    Peer(PeerId),
}

impl FromStr for Name {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Self, TrustError> {
        if s.starts_with("betanet://") {
            return BetanetUrl::from_str(s)
                .map(Name::Url)
                .map_err(|_| TrustError::NameInvalid {
                    reason: "betanet:// id must be 64 lowercase hex digits",
                });
        }
        if s.starts_with("bn1:") {
            return Bn1Name::from_str(s)
                .map(Name::Bn1)
                .map_err(|_| TrustError::NameInvalid {
                    reason: "bn1: name is malformed or its checksum is wrong",
                });
        }
        PeerId::from_str(s)
            .map(Name::Peer)
            .map_err(|_| TrustError::NameInvalid {
                reason: "expected betanet://<id>, bn1:<name> or a hex PeerID",
            })
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Url(u) => write!(f, "{u}"),
            Name::Bn1(n) => write!(f, "{n}"),
            Name::Peer(p) => write!(f, "{p}"),
        }
    }
}

/// A name whose key has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedName {
    /// The name as presented.
    pub name: Name,
    /// The key that owns it.
    pub key: [u8; 32],
}

impl Name {
    /// Checks that `key` (an Ed25519 public key, e.g. the one the peer proved in the handshake)
    /// is the key this name was derived from. Constant-time comparison of the digests.
    pub fn verify(self, key: &[u8; 32]) -> Result<VerifiedName, TrustError> {
        let vk = VerifyingKey::from_bytes(key).map_err(|_| TrustError::NameInvalid {
            reason: "presented key is not a valid Ed25519 public key",
        })?;
        let ok = match &self {
            Name::Url(u) => u.id.matches(&vk),
            Name::Bn1(n) => n.matches(&vk),
            Name::Peer(p) => betanet_crypto::ct::ct_eq(&PeerId::from_ed25519(&vk).0, &p.0),
        };
        if ok {
            Ok(VerifiedName {
                name: self,
                key: *key,
            })
        } else {
            Err(TrustError::KeyMismatch)
        }
    }
}

/// Every name form of one Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyNames {
    /// The key, hex.
    pub key_hex: String,
    /// PeerID, hex.
    pub peer_id: String,
    /// NodeID, hex.
    pub node_id: String,
    /// `bn1:` short name.
    pub bn1: String,
    /// `betanet://` URL (the key used as a service key).
    pub url: String,
}

/// All name forms of `key`.
pub fn names_of(key: &[u8; 32]) -> Result<KeyNames, TrustError> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| TrustError::NameInvalid {
        reason: "not a valid Ed25519 public key",
    })?;
    let node = NodeId::from_ed25519(&vk);
    Ok(KeyNames {
        key_hex: hex::encode(key),
        peer_id: PeerId::from_ed25519(&vk).to_hex(),
        node_id: hex::encode(node.0),
        bn1: node.name().to_string(),
        url: ServiceId::from_ed25519(&vk).to_url(),
    })
}

impl fmt::Display for KeyNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key:     {}", self.key_hex)?;
        writeln!(f, "peer id: {}", self.peer_id)?;
        writeln!(f, "node id: {}", self.node_id)?;
        writeln!(f, "name:    {}", self.bn1)?;
        writeln!(f, "url:     {}", self.url)
    }
}

/// Parses a 32-byte key from 64 hex digits.
pub fn parse_key_hex(s: &str) -> Result<[u8; 32], TrustError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| TrustError::NameInvalid {
        reason: "a key is 64 hex digits",
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use betanet_crypto::sign::SigningKey;

    fn key(seed: u8) -> [u8; 32] {
        SigningKey::from_seed(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    #[test]
    fn every_form_verifies_with_its_key_only() {
        let k = key(1);
        let other = key(2);
        let n = names_of(&k).unwrap();
        for s in [
            n.url.clone(),
            format!("{}/a/b", n.url),
            n.bn1.clone(),
            n.peer_id.clone(),
        ] {
            let name: Name = s.parse().unwrap();
            assert_eq!(name.clone().verify(&k).unwrap().key, k, "{s}");
            assert!(
                matches!(name.verify(&other), Err(TrustError::KeyMismatch)),
                "{s}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_key_owns_its_names(seed in proptest::prelude::any::<[u8; 32]>(), flip in 0usize..24) {
            let k = SigningKey::from_seed(&seed).verifying_key().to_bytes();
            let n = names_of(&k).unwrap();
            for s in [&n.url, &n.bn1, &n.peer_id] {
                let name: Name = s.parse().unwrap();
                proptest::prop_assert_eq!(name.verify(&k).unwrap().key, k);
            }
            // corrupting one byte of the encoded bn1 payload is caught by the checksum
            let id = betanet_crypto::identity::NodeId(n.node_id.as_bytes().chunks(2)
                .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                .collect::<Vec<_>>().try_into().unwrap());
            let mut raw = [0u8; 24];
            raw[..20].copy_from_slice(&id.0);
            raw[20..].copy_from_slice(&Bn1Name::checksum(&id));
            raw[flip] ^= 0x01;
            let text = format!("bn1:{}", data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase());
            let parsed = text.parse::<Name>();
            proptest::prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn display_roundtrips() {
        let n = names_of(&key(3)).unwrap();
        for s in [n.url, n.bn1, n.peer_id] {
            assert_eq!(s.parse::<Name>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_checksum_and_garbage_are_rejected() {
        let n = names_of(&key(4)).unwrap();
        // flip the last character of the bn1 name (part of the checksum)
        let mut bad = n.bn1.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'a' { 'b' } else { 'a' });
        assert!(matches!(
            bad.parse::<Name>(),
            Err(TrustError::NameInvalid { .. })
        ));
        assert!("betanet://xyz".parse::<Name>().is_err());
        assert!(n.url.to_uppercase().parse::<Name>().is_err());
        assert!("hello".parse::<Name>().is_err());
        assert!("".parse::<Name>().is_err());
        assert!(parse_key_hex("00").is_err());
        assert_eq!(parse_key_hex(&hex::encode(key(4))).unwrap(), key(4));
    }

    #[test]
    fn invalid_presented_key_is_an_error_not_a_match() {
        let n: Name = names_of(&key(5)).unwrap().bn1.parse().unwrap();
        // y = 2 is not on the curve in compressed form for most sign bits; find one that fails
        let mut bad = [0u8; 32];
        let mut found = false;
        for b in 2u8..=255 {
            bad[0] = b;
            if VerifyingKey::from_bytes(&bad).is_err() {
                found = true;
                break;
            }
        }
        assert!(found);
        assert!(n.verify(&bad).is_err());
    }
}

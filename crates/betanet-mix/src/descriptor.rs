//! Signed descriptors: a mixnode's (identity, key epoch, mix key, address) and a hidden
//! service's list of introduction points, plus `betanet://` service ids (SPEC §3).
//!
//! Decoding never verifies: [`UncheckedMixDescriptor`] / [`UncheckedServiceDescriptor`] become
//! usable ([`MixNodeInfo`], [`ServiceDescriptor`]) only through an explicit `verify` step.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::crypto::MixPublicKey;
use crate::error::MixError;
use crate::packet::NodeAddr;
use crate::select::MixNodeInfo;

const MIX_DESC_CTX: &[u8] = b"bn-mix-descriptor-v1";
const SVC_DESC_CTX: &[u8] = b"bn-hs-descriptor-v1";

/// Encoded length of a mixnode descriptor.
pub const MIX_DESC_LEN: usize = 32 + 4 + 32 + 32 + 64;

/// `SHA-256(ed25519_pub)`: the 32-byte id of a node or service (SPEC §3).
pub fn id_of(ed25519_pub: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(ed25519_pub).into()
}

/// The self-certifying URL `betanet://<hex id>` of a service key.
pub fn service_url(ed25519_pub: &[u8; 32]) -> String {
    format!("betanet://{}", hex::encode(id_of(ed25519_pub)))
}

/// Parses `betanet://<64 hex>[/resource]` into the service id.
pub fn parse_service_url(url: &str) -> Result<[u8; 32], MixError> {
    let rest = url
        .strip_prefix("betanet://")
        .ok_or(MixError::BadDescriptor("URL must start with betanet://"))?;
    let id_hex = rest.split('/').next().unwrap_or("");
    if id_hex.len() != 64 || id_hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(MixError::BadDescriptor(
            "service id must be 64 lowercase hex digits",
        ));
    }
    let v = hex::decode(id_hex).map_err(|_| MixError::BadDescriptor("service id is not hex"))?;
    v.try_into()
        .map_err(|_| MixError::BadDescriptor("service id is not 32 bytes"))
}

fn mix_signed_bytes(id_pub: &[u8; 32], epoch: u32, key: &[u8; 32], addr: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MIX_DESC_CTX.len() + 100);
    m.extend_from_slice(MIX_DESC_CTX);
    m.extend_from_slice(id_pub);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(key);
    m.extend_from_slice(addr);
    m
}

/// Signs a mixnode descriptor with the node's identity key.
pub fn sign_mix_descriptor(
    identity: &SigningKey,
    epoch: u32,
    key: &MixPublicKey,
    addr: &NodeAddr,
) -> Vec<u8> {
    let id_pub = identity.verifying_key().to_bytes();
    let a = addr.encode();
    let sig = identity.sign(&mix_signed_bytes(&id_pub, epoch, &key.0, &a));
    let mut v = Vec::with_capacity(MIX_DESC_LEN);
    v.extend_from_slice(&id_pub);
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(&key.0);
    v.extend_from_slice(&a);
    v.extend_from_slice(&sig.to_bytes());
    v
}

/// A decoded, not yet verified mixnode descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncheckedMixDescriptor {
    id_pub: [u8; 32],
    epoch: u32,
    key: [u8; 32],
    addr: [u8; 32],
    sig: [u8; 64],
}

fn arr<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], MixError> {
    b.get(off..off + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(MixError::BadDescriptor("truncated"))
}

impl UncheckedMixDescriptor {
    /// Decodes (exact length).
    pub fn decode(b: &[u8]) -> Result<Self, MixError> {
        if b.len() != MIX_DESC_LEN {
            return Err(MixError::BadDescriptor(
                "mix descriptor has the wrong length",
            ));
        }
        Ok(UncheckedMixDescriptor {
            id_pub: arr(b, 0)?,
            epoch: u32::from_be_bytes(arr(b, 32)?),
            key: arr(b, 36)?,
            addr: arr(b, 68)?,
            sig: arr(b, 100)?,
        })
    }

    /// The node's Ed25519 identity key as carried (meaningful once [`Self::verify`] passed).
    pub fn identity(&self) -> [u8; 32] {
        self.id_pub
    }

    /// Verifies the signature (strict Ed25519) and returns the node entry (AS group unknown,
    /// weight 1).
    pub fn verify(&self) -> Result<MixNodeInfo, MixError> {
        let vk = VerifyingKey::from_bytes(&self.id_pub)
            .map_err(|_| MixError::BadDescriptor("bad identity key"))?;
        let msg = mix_signed_bytes(&self.id_pub, self.epoch, &self.key, &self.addr);
        vk.verify_strict(&msg, &Signature::from_bytes(&self.sig))
            .map_err(|_| MixError::BadDescriptor("bad mix descriptor signature"))?;
        Ok(MixNodeInfo {
            id: id_of(&self.id_pub),
            addr: NodeAddr::decode(&self.addr)?,
            key: MixPublicKey(self.key),
            key_epoch: self.epoch,
            as_group: None,
            weight: 1,
        })
    }
}

/// An introduction point in a service descriptor: a mixnode (its route hop data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntroPoint {
    /// The mixnode's id.
    pub node_id: [u8; 32],
    /// Address.
    pub addr: NodeAddr,
    /// Key epoch.
    pub key_epoch: u32,
    /// Mix key.
    pub key: MixPublicKey,
}

const INTRO_LEN: usize = 32 + 32 + 4 + 32;

/// A verified hidden-service descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDescriptor {
    /// The service's Ed25519 public key.
    pub service_pub: [u8; 32],
    /// The service's X25519 key: clients seal their introduction and derive the end-to-end
    /// session keys with it.
    pub service_x25519: MixPublicKey,
    /// Validity start (unix seconds).
    pub valid_from: u64,
    /// Validity end (unix seconds).
    pub valid_until: u64,
    /// Introduction points.
    pub intro_points: Vec<IntroPoint>,
}

impl ServiceDescriptor {
    /// The service id (`SHA-256(service_pub)`).
    pub fn service_id(&self) -> [u8; 32] {
        id_of(&self.service_pub)
    }

    fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(81 + self.intro_points.len() * INTRO_LEN);
        v.extend_from_slice(&self.service_pub);
        v.extend_from_slice(&self.service_x25519.0);
        v.extend_from_slice(&self.valid_from.to_be_bytes());
        v.extend_from_slice(&self.valid_until.to_be_bytes());
        v.push(u8::try_from(self.intro_points.len()).unwrap_or(u8::MAX));
        for ip in self.intro_points.iter().take(usize::from(u8::MAX)) {
            v.extend_from_slice(&ip.node_id);
            v.extend_from_slice(&ip.addr.encode());
            v.extend_from_slice(&ip.key_epoch.to_be_bytes());
            v.extend_from_slice(&ip.key.0);
        }
        v
    }

    /// Signs and encodes: `body | sig(64)`; the signature covers the context string and body.
    pub fn sign(
        key: &SigningKey,
        service_x25519: MixPublicKey,
        valid_from: u64,
        valid_until: u64,
        intro_points: Vec<IntroPoint>,
    ) -> Vec<u8> {
        let d = ServiceDescriptor {
            service_pub: key.verifying_key().to_bytes(),
            service_x25519,
            valid_from,
            valid_until,
            intro_points,
        };
        let body = d.body();
        let mut m = SVC_DESC_CTX.to_vec();
        m.extend_from_slice(&body);
        let sig = key.sign(&m);
        let mut out = body;
        out.extend_from_slice(&sig.to_bytes());
        out
    }
}

/// A decoded, unverified service descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncheckedServiceDescriptor {
    desc: ServiceDescriptor,
    body: Vec<u8>,
    sig: [u8; 64],
}

impl UncheckedServiceDescriptor {
    /// Decodes without verifying.
    pub fn decode(b: &[u8]) -> Result<Self, MixError> {
        let n = usize::from(*b.get(80).ok_or(MixError::BadDescriptor("truncated"))?);
        let body_len = 81 + n * INTRO_LEN;
        if b.len() != body_len + 64 {
            return Err(MixError::BadDescriptor(
                "service descriptor has the wrong length",
            ));
        }
        let mut intro_points = Vec::with_capacity(n);
        for i in 0..n {
            let o = 81 + i * INTRO_LEN;
            intro_points.push(IntroPoint {
                node_id: arr(b, o)?,
                addr: NodeAddr::decode(&arr(b, o + 32)?)?,
                key_epoch: u32::from_be_bytes(arr(b, o + 64)?),
                key: MixPublicKey(arr(b, o + 68)?),
            });
        }
        Ok(UncheckedServiceDescriptor {
            desc: ServiceDescriptor {
                service_pub: arr(b, 0)?,
                service_x25519: MixPublicKey(arr(b, 32)?),
                valid_from: u64::from_be_bytes(arr(b, 64)?),
                valid_until: u64::from_be_bytes(arr(b, 72)?),
                intro_points,
            },
            body: b.get(..body_len).unwrap_or_default().to_vec(),
            sig: arr(b, body_len)?,
        })
    }

    /// The id the descriptor claims (`SHA-256(service_pub)`; meaningful once verified).
    pub fn service_id(&self) -> [u8; 32] {
        id_of(&self.desc.service_pub)
    }

    /// Claimed validity start (unix seconds; meaningful once verified).
    pub fn valid_from(&self) -> u64 {
        self.desc.valid_from
    }

    /// Claimed validity end (unix seconds; meaningful once verified).
    pub fn valid_until(&self) -> u64 {
        self.desc.valid_until
    }

    /// Verifies that the descriptor belongs to `expected_id` (the `betanet://` id the client
    /// asked for), that the signature is valid, and that `now` (unix seconds) is inside the
    /// validity window.
    pub fn verify(self, expected_id: &[u8; 32], now: u64) -> Result<ServiceDescriptor, MixError> {
        if &id_of(&self.desc.service_pub) != expected_id {
            return Err(MixError::BadDescriptor(
                "key does not hash to the service id",
            ));
        }
        let vk = VerifyingKey::from_bytes(&self.desc.service_pub)
            .map_err(|_| MixError::BadDescriptor("bad service key"))?;
        let mut m = SVC_DESC_CTX.to_vec();
        m.extend_from_slice(&self.body);
        vk.verify_strict(&m, &Signature::from_bytes(&self.sig))
            .map_err(|_| MixError::BadDescriptor("bad service descriptor signature"))?;
        if now < self.desc.valid_from || now > self.desc.valid_until {
            return Err(MixError::BadDescriptor(
                "descriptor expired or not yet valid",
            ));
        }
        if self.desc.intro_points.is_empty() {
            return Err(MixError::BadDescriptor("no introduction points"));
        }
        Ok(self.desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mix_descriptor_sign_verify_and_tamper() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = SigningKey::generate(&mut rng);
        let addr = NodeAddr("127.0.0.1:9".parse().unwrap());
        let d = sign_mix_descriptor(&id, 3, &MixPublicKey([5; 32]), &addr);
        let info = UncheckedMixDescriptor::decode(&d)
            .unwrap()
            .verify()
            .unwrap();
        assert_eq!(info.id, id_of(&id.verifying_key().to_bytes()));
        assert_eq!(info.key_epoch, 3);
        assert_eq!(info.addr, addr);
        for pos in [0, 33, 40, 70, 120] {
            let mut t = d.clone();
            t[pos] ^= 1;
            let r = UncheckedMixDescriptor::decode(&t).and_then(|u| u.verify());
            assert!(r.is_err(), "pos {pos}");
        }
        assert!(UncheckedMixDescriptor::decode(&d[..10]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn mix_descriptor_roundtrip(seed: [u8; 32], epoch: u32, key: [u8; 32], port: u16, ip: [u8; 4]) {
            let id = SigningKey::from_bytes(&seed);
            let addr = NodeAddr(std::net::SocketAddr::from((ip, port)));
            let d = sign_mix_descriptor(&id, epoch, &MixPublicKey(key), &addr);
            proptest::prop_assert_eq!(d.len(), MIX_DESC_LEN);
            let info = UncheckedMixDescriptor::decode(&d).unwrap().verify().unwrap();
            proptest::prop_assert_eq!(info.key, MixPublicKey(key));
            proptest::prop_assert_eq!(info.key_epoch, epoch);
            proptest::prop_assert_eq!(info.addr, addr);
        }

        #[test]
        fn service_descriptor_roundtrip(seed: [u8; 32], n in 1usize..6, from in 0u64..1000, len in 0u64..1000) {
            let sk = SigningKey::from_bytes(&seed);
            let ips: Vec<IntroPoint> = (0..n)
                .map(|i| IntroPoint {
                    node_id: [i as u8; 32],
                    addr: NodeAddr(std::net::SocketAddr::from(([127, 0, 0, 1], i as u16))),
                    key_epoch: i as u32,
                    key: MixPublicKey([i as u8 + 1; 32]),
                })
                .collect();
            let enc = ServiceDescriptor::sign(&sk, MixPublicKey([9; 32]), from, from + len, ips.clone());
            let id = id_of(&sk.verifying_key().to_bytes());
            let d = UncheckedServiceDescriptor::decode(&enc).unwrap().verify(&id, from).unwrap();
            proptest::prop_assert_eq!(d.intro_points, ips);
            proptest::prop_assert_eq!(d.service_x25519, MixPublicKey([9; 32]));
        }

        #[test]
        fn descriptor_decoders_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = UncheckedMixDescriptor::decode(&b).map(|d| d.verify());
            let _ = UncheckedServiceDescriptor::decode(&b).map(|d| d.verify(&[0; 32], 0));
        }
    }

    #[test]
    fn service_descriptor_and_url() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let sk = SigningKey::generate(&mut rng);
        let ip = IntroPoint {
            node_id: [1; 32],
            addr: NodeAddr("127.0.0.1:7".parse().unwrap()),
            key_epoch: 2,
            key: MixPublicKey([3; 32]),
        };
        let enc = ServiceDescriptor::sign(&sk, MixPublicKey([4; 32]), 100, 200, vec![ip]);
        let url = service_url(&sk.verifying_key().to_bytes());
        let id = parse_service_url(&format!("{url}/index.html")).unwrap();
        let d = UncheckedServiceDescriptor::decode(&enc)
            .unwrap()
            .verify(&id, 150)
            .unwrap();
        assert_eq!(d.intro_points, vec![ip]);
        assert_eq!(d.service_id(), id);
        let u = || UncheckedServiceDescriptor::decode(&enc).unwrap();
        assert!(u().verify(&id, 201).is_err());
        assert!(u().verify(&[0; 32], 150).is_err());
        let mut t = enc.clone();
        t[60] ^= 1;
        assert!(
            UncheckedServiceDescriptor::decode(&t)
                .unwrap()
                .verify(&id, 150)
                .is_err()
        );
        assert!(parse_service_url("http://x").is_err());
        assert!(parse_service_url("betanet://ABCD").is_err());
    }
}

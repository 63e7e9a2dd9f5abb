//! The 1.1 ledger rule over chain sources.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_crypto::sign::SigningKey;
use betanet_trust::TrustError;
use betanet_trust::ledger11::{
    Chain, ChainObservation, ChainSource, FileChainSource, Finality, GovernanceWeights,
    LedgerPayload, QuorumCertificate, resolve,
};

const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;

fn owner() -> SigningKey {
    SigningKey::from_seed(&[9; 32])
}

fn payload(seq: u64) -> String {
    LedgerPayload::sign(&owner(), seq, NOW / 1000 + 86_400).to_string()
}

struct Src {
    chain: Chain,
    obs: Vec<ChainObservation>,
}

impl ChainSource for Src {
    fn chain(&self) -> Chain {
        self.chain
    }
    fn observations(&self, _name: &str) -> Result<Vec<ChainObservation>, TrustError> {
        Ok(self.obs.clone())
    }
}

fn hns(p: &str, conf: u64, stable_since: u64) -> Src {
    Src {
        chain: Chain::Handshake,
        obs: vec![ChainObservation {
            payload: p.into(),
            confirmations: conf,
            stable_since_ms: Some(stable_since),
            finalized: false,
            first_seen_ms: NOW - DAY,
        }],
    }
}

fn fin(chain: Chain, p: &str, finalized: bool) -> Src {
    Src {
        chain,
        obs: vec![ChainObservation {
            payload: p.into(),
            confirmations: 0,
            stable_since_ms: None,
            finalized,
            first_seen_ms: NOW - DAY,
        }],
    }
}

#[test]
fn payload_text_roundtrip_and_strictness() {
    let p = LedgerPayload::sign(&owner(), 3, 2_000_000_000);
    let s = p.to_string();
    assert!(s.starts_with("betanet1 pk="));
    assert_eq!(LedgerPayload::parse(&s).unwrap(), p);
    p.verify(NOW).unwrap();
    assert!(LedgerPayload::parse(&s.replace("seq=3", "seq=03")).is_err());
    assert!(LedgerPayload::parse(&format!("{s} x=1")).is_err());
    assert!(LedgerPayload::parse(&s.replace("betanet1", "betanet2")).is_err());
    assert!(LedgerPayload::parse(&format!("{s}=")).is_err());
    // tampered seq: parses, does not verify
    let t = LedgerPayload::parse(&s.replace("seq=3", "seq=4")).unwrap();
    assert!(t.verify(NOW).is_err());
    // expired
    let e = LedgerPayload::sign(&owner(), 1, NOW / 1000);
    assert!(e.verify(NOW).is_err());
}

#[test]
fn two_of_three_chains_with_their_rules() {
    let p = payload(1);
    // Handshake: 12 confirmations and 1 h stable; Filecoin finalized
    let h = hns(&p, 12, NOW - HOUR);
    let f = fin(Chain::Filecoin, &p, true);
    let r = resolve("n", &[&h, &f], NOW, None).unwrap().unwrap();
    assert_eq!(r.payload.seq, 1);
    assert_eq!(
        r.finality,
        Finality::Chains(vec![Chain::Handshake, Chain::Filecoin])
    );
    // 11 confirmations: only one chain final
    let h11 = hns(&p, 11, NOW - HOUR);
    assert!(resolve("n", &[&h11, &f], NOW, None).unwrap().is_none());
    // stable for one millisecond less than an hour
    let young = hns(&p, 50, NOW - HOUR + 1);
    assert!(resolve("n", &[&young, &f], NOW, None).unwrap().is_none());
    // the same chain twice counts once
    let f2 = fin(Chain::Filecoin, &p, true);
    assert!(resolve("n", &[&f, &f2], NOW, None).unwrap().is_none());
    // Filecoin not finalized but Ethereum L2 is
    let fno = fin(Chain::Filecoin, &p, false);
    let e = fin(Chain::EthL2, &p, true);
    assert!(resolve("n", &[&h, &fno, &e], NOW, None).unwrap().is_some());
}

#[test]
fn different_payload_bytes_do_not_combine_and_higher_seq_wins() {
    let p1 = payload(1);
    let p2 = payload(2);
    let h = Src {
        chain: Chain::Handshake,
        obs: vec![
            ChainObservation {
                payload: p1.clone(),
                confirmations: 20,
                stable_since_ms: Some(NOW - 2 * HOUR),
                finalized: false,
                first_seen_ms: 0,
            },
            ChainObservation {
                payload: p2.clone(),
                confirmations: 20,
                stable_since_ms: Some(NOW - 2 * HOUR),
                finalized: false,
                first_seen_ms: 0,
            },
        ],
    };
    let f = Src {
        chain: Chain::Filecoin,
        obs: vec![
            ChainObservation {
                payload: p1.clone(),
                confirmations: 0,
                stable_since_ms: None,
                finalized: true,
                first_seen_ms: 0,
            },
            ChainObservation {
                payload: p2.clone(),
                confirmations: 0,
                stable_since_ms: None,
                finalized: true,
                first_seen_ms: 0,
            },
        ],
    };
    let r = resolve("n", &[&h, &f], NOW, None).unwrap().unwrap();
    assert_eq!(r.payload.seq, 2);
    // p2 only on one chain: p1 wins
    let e = fin(Chain::EthL2, &p1, true);
    let f1 = fin(Chain::Filecoin, &p1, true);
    let r = resolve("n", &[&f1, &e, &hns(&p2, 20, 0)], NOW, None)
        .unwrap()
        .unwrap();
    assert_eq!(r.payload.seq, 1);
    // a payload final on two chains but with a bad signature is not valid
    let forged = p2.replace("seq=2", "seq=9");
    let r = resolve(
        "n",
        &[
            &fin(Chain::Filecoin, &forged, true),
            &fin(Chain::EthL2, &forged, true),
        ],
        NOW,
        None,
    )
    .unwrap();
    assert!(r.is_none());
}

fn gov_keys() -> Vec<SigningKey> {
    (1..=4u8).map(|i| SigningKey::from_seed(&[i; 32])).collect()
}

fn gov() -> GovernanceWeights {
    GovernanceWeights {
        epoch: 7,
        weights: gov_keys()
            .iter()
            .map(|k| (k.verifying_key().to_bytes(), 25))
            .collect(),
    }
}

#[test]
fn emergency_advance() {
    let p = payload(5);
    let h = betanet_crypto::hash::sha256(p.as_bytes());
    let keys = gov_keys();
    let g = gov();
    // 3 of 4 equal weights = 75 % >= 67 %
    let qc = QuorumCertificate::sign(h, 7, &[(&keys[0], 25), (&keys[1], 25), (&keys[2], 25)]);
    let bytes = qc.encode().unwrap();
    assert_eq!(QuorumCertificate::decode(&bytes).unwrap(), qc);
    qc.verify(&g).unwrap();
    let stalled = Src {
        chain: Chain::Filecoin,
        obs: vec![ChainObservation {
            payload: p.clone(),
            confirmations: 0,
            stable_since_ms: None,
            finalized: true,
            first_seen_ms: NOW - 14 * DAY,
        }],
    };
    let r = resolve("n", &[&stalled], NOW, Some((&qc, &g)))
        .unwrap()
        .unwrap();
    assert_eq!(r.finality, Finality::EmergencyAdvance);
    // stalled for 1 ms less than 14 days: not yet
    assert!(
        resolve("n", &[&stalled], NOW - 1, Some((&qc, &g)))
            .unwrap()
            .is_none()
    );
    // 2 of 4 = 50 %: below quorum
    let weak = QuorumCertificate::sign(h, 7, &[(&keys[0], 25), (&keys[1], 25)]);
    assert!(matches!(
        weak.verify(&g),
        Err(TrustError::QuorumCertificateInvalid { .. })
    ));
    assert!(
        resolve("n", &[&stalled], NOW, Some((&weak, &g)))
            .unwrap()
            .is_none()
    );
    // exactly 67 %: passes; 66 %: fails
    let mut g2 = GovernanceWeights {
        epoch: 7,
        ..Default::default()
    };
    g2.weights.insert(keys[0].verifying_key().to_bytes(), 67);
    g2.weights.insert(keys[1].verifying_key().to_bytes(), 33);
    QuorumCertificate::sign(h, 7, &[(&keys[0], 67)])
        .verify(&g2)
        .unwrap();
    g2.weights.insert(keys[0].verifying_key().to_bytes(), 66);
    g2.weights.insert(keys[1].verifying_key().to_bytes(), 34);
    assert!(
        QuorumCertificate::sign(h, 7, &[(&keys[0], 66)])
            .verify(&g2)
            .is_err()
    );
    // inflated claimed weight, wrong epoch, duplicate signer, outsider
    assert!(
        QuorumCertificate::sign(h, 7, &[(&keys[0], 99)])
            .verify(&g)
            .is_err()
    );
    assert!(
        QuorumCertificate::sign(h, 8, &[(&keys[0], 25), (&keys[1], 25), (&keys[2], 25)])
            .verify(&g)
            .is_err()
    );
    assert!(
        QuorumCertificate::sign(h, 7, &[(&keys[0], 25), (&keys[0], 25), (&keys[1], 25)])
            .verify(&g)
            .is_err()
    );
    let outsider = SigningKey::from_seed(&[77; 32]);
    assert!(
        QuorumCertificate::sign(h, 7, &[(&keys[0], 25), (&keys[1], 25), (&outsider, 25)])
            .verify(&g)
            .is_err()
    );
    // a bad signature
    let mut bad = qc.clone();
    bad.sigs[1][0] ^= 1;
    assert!(bad.verify(&g).is_err());
}

#[test]
fn file_chain_source() {
    let p = payload(4);
    let json = format!(
        r#"{{
  "handshake": {{ "shop": [ {{ "payload": "{p}", "confirmations": 12, "stable_since_ms": {s}, "first_seen_ms": 0 }} ] }},
  "eth_l2": {{ "shop": [ {{ "payload": "{p}", "finalized": true, "first_seen_ms": 0 }} ] }}
}}"#,
        s = NOW - HOUR
    );
    let srcs = FileChainSource::from_json(&json).unwrap();
    assert_eq!(srcs.len(), 2);
    let dyns: Vec<&dyn ChainSource> = srcs.iter().map(|s| s as &dyn ChainSource).collect();
    let r = resolve("shop", &dyns, NOW, None).unwrap().unwrap();
    assert_eq!(r.payload.seq, 4);
    assert!(resolve("other", &dyns, NOW, None).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chains.json");
    std::fs::write(&path, &json).unwrap();
    assert_eq!(FileChainSource::load(&path).unwrap(), srcs);
    assert!(FileChainSource::from_json(r#"{"bitcoin": {}}"#).is_err());
}

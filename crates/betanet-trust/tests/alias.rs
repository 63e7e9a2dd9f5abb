//! The 1.2 alias ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_crypto::sign::SigningKey;
use betanet_trust::TrustError;
use betanet_trust::alias::{
    AliasContent, AliasLedger, AliasRecord, MAX_AGE_MS, Outcome, RotationRecord,
};
use betanet_trust::store::{MemStore, RedbStore};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000_000;

fn sk(i: u8) -> SigningKey {
    SigningKey::from_seed(&[i; 32])
}

fn pk(i: u8) -> [u8; 32] {
    sk(i).verifying_key().to_bytes()
}

fn genesis() -> Vec<[u8; 32]> {
    vec![pk(1), pk(2), pk(3)]
}

fn content(alias: &str, node: u8, seq: u64, ts: u64) -> AliasContent {
    AliasContent {
        alias: alias.into(),
        node: [node; 20],
        seq,
        ts_ms: ts,
    }
}

fn rec(signer: u8, c: &AliasContent) -> AliasRecord {
    AliasRecord::sign(&sk(signer), c.clone()).unwrap()
}

#[test]
fn signed_bytes_are_the_specified_hash() {
    let c = content("shop", 0xab, 7, 1234);
    let mut msg = b"BN-L5".to_vec();
    msg.extend_from_slice(b"shop");
    msg.extend_from_slice(&[0xab; 20]);
    msg.extend_from_slice(&7u64.to_be_bytes());
    msg.extend_from_slice(&1234u64.to_be_bytes());
    assert_eq!(c.signed_hash(), betanet_crypto::hash::sha256(&msg));
    let r = rec(1, &c);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk(1)).unwrap();
    vk.verify_strict(
        &c.signed_hash(),
        &ed25519_dalek::Signature::from_bytes(&r.sig),
    )
    .unwrap();
}

#[test]
fn record_encoding_is_canonical_cbor_with_five_fields() {
    let r = rec(1, &content("a", 1, 1, 1));
    let b = r.encode().unwrap();
    // map(5) then "alias" (keys sorted by encoded bytes: shorter first, then bytewise)
    assert_eq!(b[0], 0xa5);
    assert_eq!(AliasRecord::decode(&b).unwrap(), r);
    let v = betanet_wire::cbor::decode(&b).unwrap();
    let keys: Vec<_> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["ts", "seq", "sig", "node", "alias"]);
    // extra field / truncated / empty alias
    assert!(AliasRecord::decode(&b[..b.len() - 1]).is_err());
    assert!(AliasRecord::sign(&sk(1), content("", 1, 1, 1)).is_err());
}

#[test]
fn exactly_two_of_three_signers_make_a_record_final() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let c = content("shop", 9, 1, NOW);
    assert_eq!(
        l.apply(&rec(1, &c), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
    assert_eq!(
        l.resolve("shop", NOW).unwrap(),
        None,
        "one signer is not final"
    );
    // the same signer again does not count twice
    assert_eq!(
        l.apply(&rec(1, &c), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
    assert_eq!(l.apply(&rec(3, &c), NOW).unwrap(), Outcome::Final);
    let r = l.resolve("shop", NOW).unwrap().unwrap();
    assert_eq!(r.content, c);
    assert_eq!(r.signatures.len(), 2);
}

#[test]
fn signers_of_different_content_do_not_combine() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let a = content("x", 1, 5, NOW);
    let b = content("x", 2, 5, NOW);
    assert_eq!(
        l.apply(&rec(1, &a), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
    assert_eq!(
        l.apply(&rec(2, &b), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
    assert_eq!(l.resolve("x", NOW).unwrap(), None);
    assert_eq!(l.apply(&rec(3, &b), NOW).unwrap(), Outcome::Final);
    assert_eq!(l.resolve("x", NOW).unwrap().unwrap().content.node, [2; 20]);
    // the losing candidate at the same seq is now a replay
    assert!(matches!(
        l.apply(&rec(2, &a), NOW),
        Err(TrustError::AliasSeqReplay { seq: 5, latest: 5 })
    ));
}

#[test]
fn non_maintainer_signature_is_alias_sig_invalid() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let c = content("x", 1, 1, NOW);
    assert!(matches!(
        l.apply(&rec(4, &c), NOW),
        Err(TrustError::AliasSigInvalid { .. })
    ));
    let mut r = rec(1, &c);
    r.content.seq = 2; // signature no longer matches
    assert!(matches!(
        l.apply(&r, NOW),
        Err(TrustError::AliasSigInvalid { .. })
    ));
    // the rejection changed nothing: the valid record still works
    assert_eq!(
        l.apply(&rec(1, &c), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
}

#[test]
fn seq_must_strictly_increase() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let c = content("x", 1, 10, NOW);
    l.apply(&rec(1, &c), NOW).unwrap();
    l.apply(&rec(2, &c), NOW).unwrap();
    for seq in [0, 9, 10] {
        let old = content("x", 7, seq, NOW);
        assert!(matches!(
            l.apply(&rec(1, &old), NOW),
            Err(TrustError::AliasSeqReplay { seq: s, latest: 10 }) if s == seq
        ));
    }
    // replaying the very record that became final
    assert!(matches!(
        l.apply(&rec(3, &c), NOW),
        Err(TrustError::AliasSeqReplay { .. })
    ));
    let next = content("x", 2, 11, NOW + 1);
    l.apply(&rec(2, &next), NOW + 1).unwrap();
    assert_eq!(l.apply(&rec(3, &next), NOW + 1).unwrap(), Outcome::Final);
}

#[test]
fn latest_plus_five_history() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    for seq in 1..=9u64 {
        let c = content("h", seq as u8, seq, NOW);
        l.apply(&rec(1, &c), NOW).unwrap();
        assert_eq!(l.apply(&rec(2, &c), NOW).unwrap(), Outcome::Final);
    }
    let h = l.history("h").unwrap();
    let seqs: Vec<u64> = h.iter().map(|r| r.content.seq).collect();
    assert_eq!(seqs, [9, 8, 7, 6, 5, 4]);
}

#[test]
fn records_older_than_365_days_are_ignored() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let old = content("o", 1, 1, NOW - MAX_AGE_MS - 1);
    assert_eq!(l.apply(&rec(1, &old), NOW).unwrap(), Outcome::Expired);
    assert_eq!(l.apply(&rec(2, &old), NOW).unwrap(), Outcome::Expired);
    assert_eq!(l.resolve("o", NOW).unwrap(), None);
    // exactly 365 days old is still accepted
    let edge = content("o", 1, 1, NOW - MAX_AGE_MS);
    l.apply(&rec(1, &edge), NOW).unwrap();
    assert_eq!(l.apply(&rec(2, &edge), NOW).unwrap(), Outcome::Final);
    assert!(l.resolve("o", NOW).unwrap().is_some());
    // ...and expires from lookups one millisecond later
    assert_eq!(l.resolve("o", NOW + 1).unwrap(), None);
    // from the future beyond the 120 s skew
    let fut = content("f", 1, 1, NOW + 120_001);
    assert!(matches!(
        l.apply(&rec(1, &fut), NOW),
        Err(TrustError::FromTheFuture { .. })
    ));
    let ok = content("f", 1, 1, NOW + 120_000);
    assert!(l.apply(&rec(1, &ok), NOW).is_ok());
}

#[test]
fn rotation_rules() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let new = vec![pk(4), pk(5), pk(6)];
    // endorsed by only one maintainer (its signature twice)
    let one = RotationRecord::sign([&sk(1), &sk(1)], new.clone(), genesis(), 1);
    assert!(matches!(
        l.rotate(&one),
        Err(TrustError::AliasSigInvalid { .. })
    ));
    // endorsed by a non-maintainer
    let outsider = RotationRecord::sign([&sk(1), &sk(4)], new.clone(), genesis(), 1);
    assert!(matches!(
        l.rotate(&outsider),
        Err(TrustError::AliasSigInvalid { .. })
    ));
    // prev is not the current set
    let wrong_prev =
        RotationRecord::sign([&sk(1), &sk(2)], new.clone(), vec![pk(1), pk(2), pk(7)], 1);
    assert!(matches!(
        l.rotate(&wrong_prev),
        Err(TrustError::AliasRotationConflict { .. })
    ));
    // not three distinct keys
    let dup = RotationRecord::sign([&sk(1), &sk(2)], vec![pk(4), pk(4), pk(5)], genesis(), 1);
    assert!(matches!(
        l.rotate(&dup),
        Err(TrustError::AliasMalformed { .. })
    ));
    // valid, order of prev does not matter
    let good = RotationRecord::sign([&sk(3), &sk(1)], new.clone(), vec![pk(3), pk(2), pk(1)], 1);
    let bytes = good.encode().unwrap();
    assert_eq!(RotationRecord::decode(&bytes).unwrap(), good);
    l.rotate(&RotationRecord::decode(&bytes).unwrap()).unwrap();
    assert_eq!(l.maintainers().keys, new);
    // replay of the same rotation
    assert!(matches!(
        l.rotate(&good),
        Err(TrustError::AliasSeqReplay { .. })
    ));
    // a different rotation at the same seq
    let fork = RotationRecord::sign([&sk(4), &sk(5)], vec![pk(7), pk(8), pk(9)], new.clone(), 1);
    assert!(matches!(
        l.rotate(&fork),
        Err(TrustError::AliasRotationConflict { .. })
    ));
    // old maintainers no longer sign records; new ones do
    let c = content("r", 1, 1, NOW);
    assert!(matches!(
        l.apply(&rec(1, &c), NOW),
        Err(TrustError::AliasSigInvalid { .. })
    ));
    l.apply(&rec(4, &c), NOW).unwrap();
    assert_eq!(l.apply(&rec(6, &c), NOW).unwrap(), Outcome::Final);
    // next rotation by the new set at seq 2
    let next = RotationRecord::sign([&sk(5), &sk(6)], vec![pk(7), pk(8), pk(9)], new, 2);
    l.rotate(&next).unwrap();
    assert_eq!(l.maintainers().seq, 2);
}

#[test]
fn pending_signatures_of_rotated_out_maintainers_do_not_count() {
    let mut l = AliasLedger::open(MemStore::new(), &genesis()).unwrap();
    let c = content("p", 1, 1, NOW);
    l.apply(&rec(1, &c), NOW).unwrap();
    let new = vec![pk(2), pk(3), pk(4)];
    l.rotate(&RotationRecord::sign([&sk(2), &sk(3)], new, genesis(), 1))
        .unwrap();
    // maintainer 1 is gone; one current signature is not enough
    assert_eq!(
        l.apply(&rec(4, &c), NOW).unwrap(),
        Outcome::Pending { signers: 1 }
    );
    assert_eq!(l.apply(&rec(2, &c), NOW).unwrap(), Outcome::Final);
}

#[test]
fn ledger_survives_restart_in_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let c = content("persist", 3, 4, NOW);
    let new = vec![pk(4), pk(5), pk(6)];
    {
        let mut l = AliasLedger::open(RedbStore::open(&path).unwrap(), &genesis()).unwrap();
        l.apply(&rec(1, &c), NOW).unwrap();
        l.apply(&rec(2, &c), NOW).unwrap();
        let pend = content("pending", 1, 1, NOW);
        l.apply(&rec(1, &pend), NOW).unwrap();
        l.rotate(&RotationRecord::sign(
            [&sk(1), &sk(2)],
            new.clone(),
            genesis(),
            1,
        ))
        .unwrap();
    }
    // reopened with the *old* genesis: the stored rotation wins
    let mut l = AliasLedger::open(RedbStore::open(&path).unwrap(), &genesis()).unwrap();
    assert_eq!(l.maintainers().keys, new);
    assert_eq!(l.resolve("persist", NOW).unwrap().unwrap().content, c);
    assert!(matches!(
        l.apply(&rec(4, &c), NOW),
        Err(TrustError::AliasSeqReplay { .. })
    ));
}

#[test]
fn genesis_must_be_three_distinct_keys() {
    assert!(AliasLedger::open(MemStore::new(), &[pk(1), pk(2)]).is_err());
    assert!(AliasLedger::open(MemStore::new(), &[pk(1), pk(1), pk(2)]).is_err());
}

proptest! {
    #[test]
    fn record_roundtrip(alias in "[a-z0-9.-]{1,40}", node in any::<[u8; 20]>(), seq in any::<u64>(), ts in any::<u64>()) {
        let r = AliasRecord::sign(&sk(1), AliasContent { alias, node, seq, ts_ms: ts }).unwrap();
        let b = r.encode().unwrap();
        prop_assert_eq!(AliasRecord::decode(&b).unwrap(), r);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = AliasRecord::decode(&bytes);
        let _ = RotationRecord::decode(&bytes);
    }
}

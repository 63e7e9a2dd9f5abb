//! Mints (FROST), vouchers, announcements, redemption and settlement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_trust::TrustError;
use betanet_trust::mint::{
    self, DkgParticipant, MintAnnouncement, dealer_keygen, dkg_keygen, keyset_id, threshold_sign,
};
use betanet_trust::store::{MemStore, RedbStore};
use betanet_trust::voucher::{
    LegacyPolicy, LegacyVoucher, LegacyWindow, LocalLedger, MintVoucher, RateLimit, Redeemer,
    Settlement, Voucher, VoucherPolicy,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The "plain verifier" of the issue: ed25519-dalek's strict verification.
fn plain_verify(group_key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(group_key).unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

#[test]
fn dealer_3_of_5_voucher_verifies_with_plain_ed25519() {
    let mut r = rng(1);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    assert_eq!(members.len(), 5);
    let secret = [7u8; 32];
    let signers: Vec<_> = members.iter().take(3).collect();
    let v = Voucher::issue(&ks, &signers, secret, &mut r).unwrap();
    let bytes = v.to_bytes();
    assert_eq!(bytes.len(), 128);
    assert_eq!(&bytes[..32], &ks.id());
    assert_eq!(&bytes[32..64], &secret);
    let sig: [u8; 64] = bytes[64..].try_into().unwrap();
    assert!(plain_verify(&ks.info().group_key, &secret, &sig));
    // a different message does not verify
    assert!(!plain_verify(&ks.info().group_key, &[8u8; 32], &sig));
    // every 3-subset works, and a 4- and 5-subset too
    for subset in [[0usize, 1, 2], [0, 2, 4], [1, 3, 4], [2, 3, 4]] {
        let s: Vec<_> = subset.iter().map(|i| &members[*i]).collect();
        let sig = threshold_sign(&ks, &s, b"msg", &mut r).unwrap();
        assert!(plain_verify(&ks.info().group_key, b"msg", &sig));
    }
    let all: Vec<_> = members.iter().collect();
    let sig = threshold_sign(&ks, &all, b"all", &mut r).unwrap();
    assert!(plain_verify(&ks.info().group_key, b"all", &sig));
}

#[test]
fn two_of_five_cannot_sign() {
    let mut r = rng(2);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let two: Vec<_> = members.iter().take(2).collect();
    assert!(matches!(
        threshold_sign(&ks, &two, b"x", &mut r),
        Err(TrustError::ThresholdNotMet { have: 2, need: 3 })
    ));
    assert!(Voucher::issue(&ks, &two, [1; 32], &mut r).is_err());
    // Driving the rounds by hand with only two commitments fails inside FROST too.
    let mut nonces = BTreeMap::new();
    let mut comms = BTreeMap::new();
    for m in &two {
        let (n, c) = m.commit(&mut r);
        nonces.insert(m.identifier(), n);
        comms.insert(m.identifier(), c);
    }
    let pkg = mint::signing_package(comms, b"x");
    let shares: Result<BTreeMap<_, _>, _> = two
        .iter()
        .map(|m| {
            m.sign(&pkg, &nonces[&m.identifier()])
                .map(|s| (m.identifier(), s))
        })
        .collect();
    match shares {
        Err(TrustError::Frost { .. }) => {}
        Ok(shares) => assert!(ks.aggregate(&pkg, &shares).is_err()),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn dkg_3_of_5_voucher_verifies() {
    let mut r = rng(3);
    let (ks, members) = dkg_keygen(5, 3, &mut r).unwrap();
    assert_eq!(members.len(), 5);
    for (i, m) in members.iter().enumerate() {
        assert_eq!(m.index().unwrap() as usize, i + 1);
    }
    let s: Vec<_> = [&members[4], &members[1], &members[2]].to_vec();
    let v = Voucher::issue(&ks, &s, [9; 32], &mut r).unwrap();
    assert!(plain_verify(&ks.info().group_key, &v.secret[..], &v.sig));
    v.verify_keyset(ks.info()).unwrap();
}

#[test]
fn dkg_round_order_is_enforced() {
    let mut r = rng(4);
    let (p, _) = DkgParticipant::round1(1, 5, 3, &mut r).unwrap();
    assert!(p.finish(&BTreeMap::new(), &BTreeMap::new()).is_err());
}

#[test]
fn federation_parameters_follow_spec() {
    let mut r = rng(5);
    assert!(matches!(
        dealer_keygen(4, 3, &mut r),
        Err(TrustError::InvalidParameters { .. })
    ));
    assert!(matches!(
        dealer_keygen(5, 2, &mut r),
        Err(TrustError::InvalidParameters { .. })
    ));
    assert!(matches!(
        dkg_keygen(4, 3, &mut r),
        Err(TrustError::InvalidParameters { .. })
    ));
    assert!(dealer_keygen(7, 3, &mut r).is_ok());
}

#[test]
fn keyset_id_is_sha256_of_sorted_member_keys() {
    let mut r = rng(6);
    let (ks, _) = dealer_keygen(5, 3, &mut r).unwrap();
    let mut keys: Vec<[u8; 32]> = ks.info().members.iter().map(|(_, k)| *k).collect();
    keys.sort();
    let mut concat = Vec::new();
    for k in &keys {
        concat.extend_from_slice(k);
    }
    let expect = betanet_crypto::hash::sha256(&concat);
    assert_eq!(ks.id(), expect);
    keys.reverse();
    assert_eq!(keyset_id(&keys), expect, "order of input does not matter");
}

#[test]
fn keyset_validation_rejects_inconsistent_keys() {
    let mut r = rng(7);
    let (ks, _) = dealer_keygen(5, 3, &mut r).unwrap();
    ks.info().validate().unwrap();
    let (other, _) = dealer_keygen(5, 3, &mut r).unwrap();
    let mut bad = ks.info().clone();
    bad.group_key = other.info().group_key;
    assert!(bad.validate().is_err());
    let mut bad = ks.info().clone();
    bad.members[4].1 = other.info().members[4].1;
    assert!(bad.validate().is_err(), "a share off the polynomial");
}

#[test]
fn announcement_roundtrip_pow_and_one_bit_short() {
    let mut r = rng(8);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().take(3).collect();
    let now = 1_800_000_000_000;
    let ann =
        MintAnnouncement::create(&ks, &s, "betanet://00ff", now, 12, 1 << 24, &mut r).unwrap();
    let bytes = ann.encode().unwrap();
    let back = MintAnnouncement::decode(&bytes).unwrap();
    assert_eq!(back, ann);
    assert_eq!(back.encode().unwrap(), bytes);
    let have = ann.pow_bits().unwrap();
    assert!(have >= 12);
    assert_eq!(ann.verify(have, now).unwrap(), ks.id());
    assert!(matches!(
        ann.verify(have + 1, now),
        Err(TrustError::PowInsufficient { have: h, need }) if h == have && need == have + 1
    ));
    // tampering breaks the signature (or the pow)
    let mut t = ann.clone();
    t.contact = "betanet://00fe".into();
    assert!(t.verify(0, now).is_err());
    // from the future
    assert!(matches!(
        ann.verify(0, now - 121_000),
        Err(TrustError::FromTheFuture { .. })
    ));
    // garbage
    assert!(MintAnnouncement::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(MintAnnouncement::decode(b"").is_err());
}

#[test]
fn announcement_with_full_22_bit_pow() {
    let mut r = rng(9);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().take(3).collect();
    let now = 1_800_000_000_000;
    let ann = MintAnnouncement::create(
        &ks,
        &s,
        "mint.example:443",
        now,
        mint::MIN_POW_BITS,
        1 << 28,
        &mut r,
    )
    .unwrap();
    assert!(ann.pow_bits().unwrap() >= 22);
    ann.verify(mint::MIN_POW_BITS, now).unwrap();
    let mut red = Redeemer::new(MemStore::new(), VoucherPolicy::default()).unwrap();
    red.add_announcement(&ann, mint::MIN_POW_BITS, 100, now)
        .unwrap();
    let v = Voucher::issue(&ks, &s, [3; 32], &mut r).unwrap();
    assert_eq!(
        red.redeem(&v.to_bytes()[..], b"peer", now)
            .unwrap()
            .value_sat,
        100
    );
}

#[test]
fn spent_voucher_is_refused_after_restart() {
    let mut r = rng(10);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().skip(2).collect();
    let v = Voucher::issue(&ks, &s, [42; 32], &mut r).unwrap();
    let v2 = Voucher::issue(&ks, &s, [43; 32], &mut r).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let now = 1_800_000_000_000;
    {
        let mut red =
            Redeemer::new(RedbStore::open(&path).unwrap(), VoucherPolicy::default()).unwrap();
        red.add_keyset(ks.info().clone(), 10).unwrap();
        let got = red.redeem(&v.to_bytes()[..], b"p", now).unwrap();
        assert_eq!(got.keyset, ks.id());
        assert_eq!(got.value_sat, 10);
        assert!(matches!(
            red.redeem(&v.to_bytes()[..], b"p", now),
            Err(TrustError::VoucherDoubleSpend)
        ));
    }
    // reopen the redb file: still spent; the other voucher is still good
    let mut red = Redeemer::new(RedbStore::open(&path).unwrap(), VoucherPolicy::default()).unwrap();
    red.add_keyset(ks.info().clone(), 10).unwrap();
    assert!(red.is_spent(&v.to_bytes()[..]).unwrap());
    assert!(matches!(
        red.redeem(&v.to_bytes()[..], b"q", now + 1),
        Err(TrustError::VoucherDoubleSpend)
    ));
    red.redeem(&v2.to_bytes()[..], b"q", now + 1).unwrap();
}

#[test]
fn bad_vouchers_are_rejected() {
    let mut r = rng(11);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().take(3).collect();
    let v = Voucher::issue(&ks, &s, [5; 32], &mut r).unwrap();
    let mut red = Redeemer::new(MemStore::new(), VoucherPolicy::default()).unwrap();
    // unknown keyset: rejected and remembered as pending
    assert!(matches!(
        red.redeem(&v.to_bytes()[..], b"p", 0),
        Err(TrustError::VoucherUnknownKeyset { .. })
    ));
    assert_eq!(red.pending_keysets().collect::<Vec<_>>(), vec![&ks.id()]);
    red.add_keyset(ks.info().clone(), 1).unwrap();
    assert_eq!(red.pending_keysets().count(), 0);
    // flipped secret bit
    let mut b = v.to_bytes().to_vec();
    b[40] ^= 1;
    assert!(matches!(
        red.redeem(&b, b"p", 0),
        Err(TrustError::VoucherSignatureInvalid)
    ));
    // flipped signature bit
    let mut b = v.to_bytes().to_vec();
    b[100] ^= 1;
    assert!(red.redeem(&b, b"p", 0).is_err());
    // wrong lengths
    for len in [0usize, 63, 65, 127, 129] {
        assert!(matches!(
            red.redeem(&vec![0; len], b"p", 0),
            Err(TrustError::VoucherMalformed { len: l }) if l == len
        ));
    }
    red.redeem(&v.to_bytes()[..], b"p", 0).unwrap();
}

#[test]
fn legacy_vouchers_only_inside_the_window() {
    let key = [0x11u8; 32];
    let lv = LegacyVoucher::issue(&key, [6; 32]);
    let policy = VoucherPolicy {
        legacy: Some(LegacyPolicy {
            window: LegacyWindow {
                start_unix_secs: 1,
                end_unix_secs: 2,
                keys: vec![Zeroizing::new(key)],
            },
            value_sat: 7,
        }),
        ..VoucherPolicy::default()
    };
    let mut red = Redeemer::new(MemStore::new(), policy).unwrap();
    assert!(matches!(
        red.redeem(&lv.to_bytes()[..], b"p", 999),
        Err(TrustError::LegacyVoucherRejected { .. })
    ));
    assert!(matches!(
        red.redeem(&lv.to_bytes()[..], b"p", 2000),
        Err(TrustError::LegacyVoucherRejected { .. })
    ));
    let forged = LegacyVoucher::issue(&[0x12; 32], [6; 32]);
    assert!(red.redeem(&forged.to_bytes()[..], b"p", 1500).is_err());
    let got = red.redeem(&lv.to_bytes()[..], b"p", 1500).unwrap();
    assert!(got.legacy);
    assert_eq!(got.value_sat, 7);
    assert!(matches!(
        red.redeem(&lv.to_bytes()[..], b"p", 1501),
        Err(TrustError::VoucherDoubleSpend)
    ));
    // no window configured: refused
    let mut red = Redeemer::new(MemStore::new(), VoucherPolicy::default()).unwrap();
    assert!(red.redeem(&lv.to_bytes()[..], b"p", 1500).is_err());
}

#[test]
fn per_peer_rate_limit() {
    let mut red = Redeemer::new(
        MemStore::new(),
        VoucherPolicy {
            per_peer: RateLimit::per_second(2, 1),
            ..VoucherPolicy::default()
        },
    )
    .unwrap();
    // well-formed vouchers of an unknown keyset: each costs the peer a token
    let unknown = [7u8; 128];
    assert!(matches!(
        red.redeem(&unknown, b"a", 0),
        Err(TrustError::VoucherUnknownKeyset { .. })
    ));
    assert!(red.redeem(&unknown, b"a", 0).is_err());
    assert!(matches!(
        red.redeem(&unknown, b"a", 0),
        Err(TrustError::RateLimited)
    ));
    // malformed input is refused before any bucket is touched
    assert!(matches!(
        red.redeem(&[0u8; 10], b"a", 0),
        Err(TrustError::VoucherMalformed { .. })
    ));
    // another peer is unaffected; one second later one more token
    assert!(matches!(
        red.redeem(&unknown, b"b", 0),
        Err(TrustError::VoucherUnknownKeyset { .. })
    ));
    assert!(matches!(
        red.redeem(&unknown, b"a", 1000),
        Err(TrustError::VoucherUnknownKeyset { .. })
    ));
}

#[test]
fn local_ledger_settlement() {
    let mut l = LocalLedger::new();
    let k = [1u8; 32];
    l.credit(k, 9_000).unwrap();
    assert!(l.settle(k, 9_000, 1).is_err(), "below 10 000 sat");
    l.credit(k, 2_000).unwrap();
    assert_eq!(l.owed(&k), 11_000);
    assert!(l.settle(k, 12_000, 1).is_err(), "more than owed");
    let rc = l.settle(k, 10_000, 5).unwrap();
    assert_eq!(rc.amount_sat, 10_000);
    assert_eq!(rc.id, 1);
    assert_eq!(l.owed(&k), 1_000);
    assert_eq!(l.receipts().len(), 1);
    assert!(l.settle([2; 32], 10_000, 1).is_err());
}

#[test]
fn announcement_one_bit_short_of_22_is_refused() {
    let mut r = rng(12);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().take(3).collect();
    let now = 1_800_000_000_000;
    // find an announcement with exactly 21 leading zero bits
    let mut found = None;
    for ts in 0..16u64 {
        let a = MintAnnouncement::create(&ks, &s, "c", now - ts, 21, 1 << 28, &mut r).unwrap();
        if a.pow_bits().unwrap() == 21 {
            found = Some(a);
            break;
        }
    }
    let a = found.expect("an exactly-21-bit announcement within 16 tries");
    assert!(matches!(
        a.verify(mint::MIN_POW_BITS, now),
        Err(TrustError::PowInsufficient { have: 21, need: 22 })
    ));
    let mut red = Redeemer::new(MemStore::new(), VoucherPolicy::default()).unwrap();
    assert!(
        red.add_announcement(&a, mint::MIN_POW_BITS, 1, now)
            .is_err()
    );
    a.verify(21, now).unwrap();
}

#[test]
fn redeemed_value_is_credited_for_settlement() {
    let mut r = rng(13);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let s: Vec<_> = members.iter().take(3).collect();
    let mut red = Redeemer::new(MemStore::new(), VoucherPolicy::default()).unwrap();
    red.add_keyset(ks.info().clone(), 4_000).unwrap();
    let mut ledger = LocalLedger::new();
    for i in 0..3u8 {
        let v = Voucher::issue(&ks, &s, [i; 32], &mut r).unwrap();
        red.redeem_into(&v.to_bytes()[..], b"p", 0, &mut ledger)
            .unwrap();
    }
    assert_eq!(ledger.owed(&ks.id()), 12_000);
    ledger.settle(ks.id(), 10_000, 1).unwrap();
    assert_eq!(ledger.owed(&ks.id()), 2_000);
}

mod props {
    use super::*;
    use betanet_trust::voucher::AnyVoucher;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn voucher_parse_roundtrip(k in any::<[u8; 32]>(), s in any::<[u8; 32]>(), g in proptest::collection::vec(any::<u8>(), 64)) {
            let v = Voucher { keyset_id: k, secret: Zeroizing::new(s), sig: g.try_into().unwrap() };
            prop_assert_eq!(Voucher::parse(&v.to_bytes()[..]).unwrap(), v.clone());
            prop_assert_eq!(AnyVoucher::parse(&v.to_bytes()[..]).unwrap(), AnyVoucher::Current(v));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = AnyVoucher::parse(&bytes);
            let _ = MintAnnouncement::decode(&bytes);
            let _ = betanet_trust::ledger11::QuorumCertificate::decode(&bytes);
            let _ = betanet_trust::ledger11::LedgerPayload::parse(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn secrets_are_not_in_debug_output() {
    let mut r = rng(14);
    let (ks, members) = dealer_keygen(5, 3, &mut r).unwrap();
    let m = &members[0];
    let share_hex = hex::encode(m.key_package().signing_share().serialize());
    let dbg = format!("{m:?}");
    assert!(!dbg.contains(&share_hex), "{dbg}");
    assert!(dbg.contains("<secret>"));
    let s: Vec<_> = members.iter().take(3).collect();
    let v = Voucher::issue(&ks, &s, [0xab; 32], &mut r).unwrap();
    assert!(!format!("{v:?}").contains(&hex::encode([0xab; 32])));
    let (p, _) = DkgParticipant::round1(1, 5, 3, &mut r).unwrap();
    assert!(format!("{p:?}").contains("<secret>"));
}

//! Byte vectors in `testdata/`: decode, re-encode, compare, verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_crypto::sign::SigningKey;
use betanet_trust::alias::{AliasContent, AliasRecord, RotationRecord};
use betanet_trust::tally::{TallyInput, tally_report};

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    hex::decode(text.trim()).unwrap()
}

fn sk(i: u8) -> SigningKey {
    SigningKey::from_seed(&[i; 32])
}

fn alias_record() -> AliasRecord {
    AliasRecord::sign(
        &sk(1),
        AliasContent {
            alias: "shop.example".into(),
            node: [0x42; 20],
            seq: 7,
            ts_ms: 1_767_225_600_000,
        },
    )
    .unwrap()
}

fn rotation() -> RotationRecord {
    let pk = |i: u8| sk(i).verifying_key().to_bytes();
    RotationRecord::sign(
        [&sk(1), &sk(2)],
        vec![pk(4), pk(5), pk(6)],
        vec![pk(1), pk(2), pk(3)],
        1,
    )
}

#[test]
fn print_vectors() {
    // `cargo test -p betanet-trust --test vectors -- --nocapture print_vectors` regenerates them.
    println!(
        "alias_record.hex {}",
        hex::encode(alias_record().encode().unwrap())
    );
    println!(
        "rotation_record.hex {}",
        hex::encode(rotation().encode().unwrap())
    );
}

#[test]
fn alias_record_vector() {
    let bytes = vector("alias_record.hex");
    let r = AliasRecord::decode(&bytes).unwrap();
    assert_eq!(r.encode().unwrap(), bytes);
    assert_eq!(r, alias_record());
    assert_eq!(
        r.signer(&[sk(1).verifying_key().to_bytes()]),
        Some(sk(1).verifying_key().to_bytes())
    );
}

#[test]
fn rotation_record_vector() {
    let bytes = vector("rotation_record.hex");
    let r = RotationRecord::decode(&bytes).unwrap();
    assert_eq!(r.encode().unwrap(), bytes);
    assert_eq!(r, rotation());
}

#[test]
fn tally_example_file() {
    let path = format!("{}/testdata/tally_example.json", env!("CARGO_MANIFEST_DIR"));
    let input = TallyInput::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let r = tally_report(&input, 0);
    let text = r.to_string();
    println!("{text}");
    assert!(!r.passed());
    assert!(text.contains("verdict: FAIL (AS diversity"), "{text}");
    assert!(text.contains("AS cap 20 %: AS64500"), "{text}");
    assert!(
        !text.contains("also failed"),
        "the caps bring AS64500 to 20 %: {text}"
    );
}

//! Golden access-ticket vectors (`testdata/ticket_v1.txt`), produced by an independent Python
//! implementation of the SPEC §4.2 formula (`testdata/gen_ticket_vectors.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;

use betanet_crypto::dh::X25519Secret;
use betanet_ticket::ticket::{access_ticket_from_shared, build_payload, ticket_salt};
use betanet_ticket::verifier::VerifierConfig;
use betanet_ticket::{MemoryReplayStore, SiteTicketKey, TicketVerifier};

const VECTORS: &str = include_str!("../testdata/ticket_v1.txt");

fn vectors() -> Vec<HashMap<String, String>> {
    VECTORS
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        })
        .collect()
}

fn h32(v: &HashMap<String, String>, k: &str) -> [u8; 32] {
    hex::decode(&v[k]).unwrap().try_into().unwrap()
}

#[test]
fn golden_vectors_match() {
    let vs = vectors();
    assert_eq!(vs.len(), 2);
    for v in vs {
        let key_id: [u8; 8] = hex::decode(&v["ticket_key_id"])
            .unwrap()
            .try_into()
            .unwrap();
        let site =
            SiteTicketKey::from_secret(X25519Secret::from_bytes(h32(&v, "ticket_priv")), key_id)
                .unwrap();
        assert_eq!(hex::encode(site.keys().ticket_pub.0), v["ticket_pub"]);
        let cli = X25519Secret::from_bytes(h32(&v, "cli_priv"));
        assert_eq!(hex::encode(cli.public().unwrap().0), v["cli_pub"]);
        let hour: u64 = v["hour"].parse().unwrap();
        assert_eq!(hex::encode(ticket_salt(&key_id, hour)), v["salt"]);
        let shared = cli.diffie_hellman(&site.keys().ticket_pub).unwrap();
        assert_eq!(
            hex::encode(access_ticket_from_shared(&shared, &key_id, hour).as_ref()),
            v["access_ticket"]
        );
        let pad = hex::decode(&v["pad"]).unwrap();
        let payload = build_payload(&site.keys(), &cli, &h32(&v, "nonce"), &pad, hour).unwrap();
        assert_eq!(hex::encode(payload.as_slice()), v["payload"]);
        assert_eq!(betanet_wire::b64::encode(&payload), v["payload_b64"]);
        // And the server side admits it at that hour (and refuses the replay).
        let mut ver = TicketVerifier::new(
            vec![site],
            MemoryReplayStore::default(),
            VerifierConfig::default(),
        )
        .unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = ver.verify(&payload, hour * 3600 + 1800, ip).unwrap();
        assert_eq!(a.hour, hour);
        assert_eq!(hex::encode(a.cli_pub.0), v["cli_pub"]);
        assert!(ver.verify(&payload, hour * 3600 + 1801, ip).is_err());
    }
}

/// A python3 that can `import cryptography`: the venv made by `testdata/setup_venv.sh` under
/// the workspace `target/`, else the system `python3`.
fn python_with_cryptography() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let candidates = [
        format!("{dir}/../../target/ticket-venv/bin/python3"),
        "python3".to_owned(),
    ];
    candidates.into_iter().find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Re-runs the Python generator when python3 + `cryptography` are available and checks that it
/// still prints the committed file (skipped with a message otherwise).
#[test]
fn python_cross_check() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let Some(py) = python_with_cryptography() else {
        eprintln!(
            "SKIPPED python_cross_check: no python3 with `cryptography` \
             (run crates/betanet-ticket/testdata/setup_venv.sh)"
        );
        return;
    };
    let out = std::process::Command::new(py)
        .arg(format!("{dir}/testdata/gen_ticket_vectors.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), VECTORS);
}

//! Format-stability vectors: packets built from a fixed seed must match the stored bytes, and
//! the stored bytes must decode (process) to the stored message at every hop.
//! Regenerate (only on an intended format change) with `BETANET_MIX_REGEN=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_mix::crypto::MixSecretKey;
use betanet_mix::packet::{self, NodeAddr, PacketSize, Processed, RouteHop, Surb};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn route(n: usize) -> (Vec<MixSecretKey>, Vec<RouteHop>) {
    let mut keys = Vec::new();
    let mut hops = Vec::new();
    for i in 0..n {
        let k = MixSecretKey::from_bytes(&[i as u8 + 1; 32]).unwrap();
        hops.push(RouteHop {
            addr: NodeAddr(format!("127.0.0.1:{}", 9001 + i).parse().unwrap()),
            epoch: 100 + i as u32,
            key: k.public(),
        });
        keys.push(k);
    }
    (keys, hops)
}

fn check(name: &str, bytes: &[u8]) {
    let path = format!("{}/testdata/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("BETANET_MIX_REGEN").is_some() {
        std::fs::write(&path, hex::encode(bytes)).unwrap();
    }
    let stored = hex::decode(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    assert_eq!(
        stored, bytes,
        "{name} changed: the packet format is not stable"
    );
}

#[test]
fn forward_packet_vectors() {
    for (name, size, n) in [
        ("fwd_3hop_1k", PacketSize::K1, 3),
        ("fwd_5hop_2k", PacketSize::K2, 5),
    ] {
        let (keys, hops) = route(n);
        let mut rng = StdRng::seed_from_u64(0xbe7a);
        let (_, pkt) =
            packet::build_packet(&mut rng, size, &hops, [0xdd; 32], b"betanet vector").unwrap();
        check(name, &pkt);
        // decode the stored bytes
        let path = format!("{}/testdata/{name}.hex", env!("CARGO_MANIFEST_DIR"));
        let mut p = hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap();
        for (i, k) in keys.iter().enumerate() {
            match packet::process(k, p).unwrap().1 {
                Processed::Forward { next, packet } => {
                    assert_eq!(next, hops[i + 1].addr);
                    p = packet;
                }
                Processed::Deliver { dest, message } => {
                    assert_eq!(i, n - 1);
                    assert_eq!(dest, [0xdd; 32]);
                    assert_eq!(message, b"betanet vector");
                    p = Vec::new();
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(p.is_empty());
    }
}

#[test]
fn surb_vector_roundtrips() {
    let (_, hops) = route(3);
    let mut rng = StdRng::seed_from_u64(0x5b);
    let me = NodeAddr("127.0.0.1:7000".parse().unwrap());
    let (surb, _) = Surb::new(&mut rng, PacketSize::K2, &hops, me).unwrap();
    let enc = surb.encode();
    check("surb_3hop_2k", &enc);
    assert_eq!(Surb::decode(&enc).unwrap().encode(), enc);
}

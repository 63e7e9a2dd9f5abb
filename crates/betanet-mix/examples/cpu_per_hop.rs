//! Per-hop unwrap cost in *CPU time* (from `/proc/thread-self/schedstat`), so the numbers stay
//! meaningful on a shared, overloaded machine where wall-clock benchmarks are inflated by
//! waiting for a core. Betanet vs Nym `sphinx-packet` at equal total packet sizes.
//!
//! `cargo run --release -p betanet-mix --example cpu_per_hop`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use betanet_mix::crypto::{self, HopKeys, MixSecretKey, PayloadKey};
use betanet_mix::packet::{self, NodeAddr, PacketSize, RouteHop};
use rand::SeedableRng;
use sphinx_packet::SphinxPacket;
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
};
use sphinx_packet::crypto::{PrivateKey, PublicKey};
use sphinx_packet::header::delays;
use sphinx_packet::packet::builder::SphinxPacketBuilder;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};

/// Nanoseconds this thread has run on a CPU.
fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn measure(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let t0 = cpu_ns();
    for _ in 0..iters {
        f();
    }
    (cpu_ns() - t0) as f64 / f64::from(iters) / 1000.0
}

/// Wall-clock microseconds per call over a short batch (no preemption inside most batches, so
/// the fastest batches show the cost when this core is not shared).
fn wall_batch(iters: u32, mut f: impl FnMut()) -> f64 {
    let t = std::time::Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
}

fn main() {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a = MixSecretKey::generate(&mut rng).unwrap();
        let b = MixSecretKey::generate(&mut rng).unwrap().public();
        let dh = measure(iters, || {
            black_box(a.dh(black_box(&b.0)).unwrap());
        });
        let kdf = measure(iters, || {
            black_box(HopKeys::derive(black_box(&[7u8; 32])));
        });
        let pk = PayloadKey::from_seed(&[1; 32]);
        let mut buf = vec![0u8; 2048 - 478];
        let lion = measure(iters, || crypto::lioness_decrypt(&pk, black_box(&mut buf)));
        let mut hdr = vec![0u8; 425 + 85];
        let hdrc = measure(iters, || {
            black_box(crypto::header_mac(&[3; 32], black_box(&hdr[..425])));
            crypto::xor_keystream(&[4; 32], black_box(&mut hdr));
        });
        // Short batches: the fastest batches approximate the cost without a busy SMT sibling
        // or cache pollution from other processes on this shared machine.
        let mut per: Vec<f64> = (0..200)
            .map(|_| {
                wall_batch(100, || {
                    black_box(a.dh(black_box(&b.0)).unwrap());
                })
            })
            .collect();
        per.sort_by(f64::total_cmp);
        println!(
            "x25519 over 200 batches of 100 (wall us): min {:.2}, 10th percentile {:.2}, median {:.2}",
            per[0], per[20], per[100]
        );
        let mut kg = rand::rngs::StdRng::seed_from_u64(3);
        let mut base: Vec<f64> = (0..200)
            .map(|_| {
                wall_batch(100, || {
                    black_box(MixSecretKey::generate(&mut kg).unwrap());
                })
            })
            .collect();
        base.sort_by(f64::total_cmp);
        println!(
            "x25519 fixed base (key generation) over 200 batches of 100 (wall us): min {:.2}, median {:.2}",
            base[0], base[100]
        );
        let mut pkt_per: Vec<f64> = {
            let mut rng = rand::rngs::StdRng::seed_from_u64(2);
            let sk = MixSecretKey::generate(&mut rng).unwrap();
            let hop = RouteHop {
                addr: NodeAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 9000))),
                epoch: 1,
                key: sk.public(),
            };
            let (_, pkt) =
                packet::build_packet(&mut rng, PacketSize::K1, &[hop], [3; 32], &[1; 20]).unwrap();
            (0..200)
                .map(|_| {
                    wall_batch(100, || {
                        black_box(packet::process(&sk, black_box(pkt.clone())).unwrap());
                    })
                })
                .collect()
        };
        pkt_per.sort_by(f64::total_cmp);
        println!(
            "1 KiB unwrap over 200 batches of 100 (wall us): min {:.2}, 10th percentile {:.2}, median {:.2}",
            pkt_per[0], pkt_per[20], pkt_per[100]
        );
        println!(
            "components (CPU us): x25519 {dh:.2}, hkdf 208 B {kdf:.2}, lioness 1570 B {lion:.2}, header mac+stream {hdrc:.2}"
        );
    }
    println!("size  betanet_us  nym_sphinx_us  ratio  betanet_pps_per_core  nym_pps_per_core");
    for size in [PacketSize::K1, PacketSize::K2] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut sks = Vec::new();
        let mut hops = Vec::new();
        for i in 0..3u16 {
            let sk = MixSecretKey::generate(&mut rng).unwrap();
            hops.push(RouteHop {
                addr: NodeAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i))),
                epoch: 1,
                key: sk.public(),
            });
            sks.push(sk);
        }
        let (_, pkt) = packet::build_packet(&mut rng, size, &hops, [3; 32], &[0x42; 200]).unwrap();
        let ours = measure(iters, || {
            black_box(packet::process(&sks[0], black_box(pkt.clone())).unwrap());
        });

        let mut route = Vec::new();
        let mut first = None;
        for i in 0..3u8 {
            let sk = PrivateKey::random();
            route.push(Node::new(
                NodeAddressBytes::from_bytes([i + 1; NODE_ADDRESS_LENGTH]),
                PublicKey::from(&sk),
            ));
            first.get_or_insert(sk);
        }
        let nsk = first.unwrap();
        let dest = Destination::new(
            DestinationAddressBytes::from_bytes([3; DESTINATION_ADDRESS_LENGTH]),
            [4; IDENTIFIER_LENGTH],
        );
        let d = delays::generate_from_average_duration(3, Duration::from_millis(10));
        let probe = SphinxPacketBuilder::new()
            .with_payload_size(1024)
            .build_packet([0x42u8; 200], &route, &dest, &d)
            .unwrap();
        let hdr = probe.len() - 1024;
        let npkt = SphinxPacketBuilder::new()
            .with_payload_size(size.len() - hdr)
            .build_packet([0x42u8; 200], &route, &dest, &d)
            .unwrap();
        assert_eq!(npkt.len(), size.len());
        let bytes = npkt.to_bytes();
        let nym = measure(iters / 4, || {
            black_box(
                SphinxPacket::from_bytes(black_box(&bytes))
                    .unwrap()
                    .process(&nsk)
                    .unwrap(),
            );
        });
        println!(
            "{:5} {:10.2} {:14.2} {:6.2} {:21.0} {:17.0}",
            size.len(),
            ours,
            nym,
            nym / ours,
            1e6 / ours,
            1e6 / nym
        );
    }
}

//! Per-hop unwrap cost of the Betanet mix packet versus Nym's `sphinx-packet`, measured in the
//! same run at equal total packet sizes (1 KiB and 2 KiB), plus packet creation (3 hops).
//!
//! Run: `cargo bench -p betanet-mix --bench packet -- --measurement-time 3`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use betanet_mix::crypto::MixSecretKey;
use betanet_mix::packet::{self, NodeAddr, PacketSize, RouteHop};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sphinx_packet::SphinxPacket;
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
};
use sphinx_packet::crypto::{PrivateKey, PublicKey};
use sphinx_packet::header::delays;
use sphinx_packet::packet::builder::SphinxPacketBuilder;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};

fn ours(size: PacketSize) -> (MixSecretKey, Vec<u8>, Vec<RouteHop>) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut sks = Vec::new();
    let mut hops = Vec::new();
    for i in 0..3u16 {
        let sk = MixSecretKey::generate(&mut rng).unwrap();
        hops.push(RouteHop {
            addr: NodeAddr(format!("127.0.0.1:{}", 9000 + i).parse().unwrap()),
            epoch: 1,
            key: sk.public(),
        });
        sks.push(sk);
    }
    let msg = vec![0x42u8; 200];
    let (_, pkt) = packet::build_packet(&mut rng, size, &hops, [3u8; 32], &msg).unwrap();
    (sks.remove(0), pkt, hops)
}

fn nym_route() -> (PrivateKey, Vec<Node>, Destination) {
    let mut nodes = Vec::new();
    let mut first = None;
    for i in 0..3u8 {
        let sk = PrivateKey::random();
        let pk = PublicKey::from(&sk);
        nodes.push(Node::new(
            NodeAddressBytes::from_bytes([i + 1; NODE_ADDRESS_LENGTH]),
            pk,
        ));
        if i == 0 {
            first = Some(sk);
        }
    }
    let dest = Destination::new(
        DestinationAddressBytes::from_bytes([3u8; DESTINATION_ADDRESS_LENGTH]),
        [4u8; IDENTIFIER_LENGTH],
    );
    (first.unwrap(), nodes, dest)
}

/// A Nym packet whose total length equals `total` bytes.
fn nym_packet(total: usize) -> (PrivateKey, SphinxPacket, Vec<Node>, Destination) {
    let (sk, route, dest) = nym_route();
    let d = delays::generate_from_average_duration(route.len(), Duration::from_millis(10));
    let probe = SphinxPacketBuilder::new()
        .with_payload_size(1024)
        .build_packet(vec![0x42u8; 200], &route, &dest, &d)
        .unwrap();
    let header_len = probe.len() - 1024;
    let pkt = SphinxPacketBuilder::new()
        .with_payload_size(total - header_len)
        .build_packet(vec![0x42u8; 200], &route, &dest, &d)
        .unwrap();
    assert_eq!(pkt.len(), total);
    (sk, pkt, route, dest)
}

fn per_hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("per_hop_unwrap");
    g.throughput(Throughput::Elements(1));
    for size in [PacketSize::K1, PacketSize::K2] {
        let (sk, pkt, _) = ours(size);
        g.bench_with_input(BenchmarkId::new("betanet", size.len()), &pkt, |b, pkt| {
            b.iter(|| packet::process(black_box(&sk), black_box(pkt.clone())).unwrap())
        });
        let (nsk, npkt, _, _) = nym_packet(size.len());
        let bytes = npkt.to_bytes();
        g.bench_with_input(
            BenchmarkId::new("nym_sphinx", size.len()),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    SphinxPacket::from_bytes(black_box(bytes))
                        .unwrap()
                        .process(black_box(&nsk))
                        .unwrap()
                })
            },
        );
    }
    g.finish();
}

fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("create_3_hops");
    for size in [PacketSize::K1, PacketSize::K2] {
        let (_, _, hops) = ours(size);
        let mut rng = StdRng::seed_from_u64(2);
        let msg = vec![0x42u8; 200];
        g.bench_function(BenchmarkId::new("betanet", size.len()), |b| {
            b.iter(|| {
                packet::build_packet(&mut rng, size, black_box(&hops), [3; 32], &msg).unwrap()
            })
        });
        let (_, npkt, route, dest) = nym_packet(size.len());
        let payload = npkt.payload.len();
        let d = delays::generate_from_average_duration(route.len(), Duration::from_millis(10));
        g.bench_function(BenchmarkId::new("nym_sphinx", size.len()), |b| {
            b.iter(|| {
                SphinxPacketBuilder::new()
                    .with_payload_size(payload)
                    .build_packet(black_box(&msg), &route, &dest, &d)
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// Primitive costs: one X25519 with a parsed key, and parsing a raw key (what a DH helper that
/// re-parses its secret per call pays extra).
fn primitives(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let a = MixSecretKey::generate(&mut rng).unwrap();
    let b = MixSecretKey::generate(&mut rng).unwrap().public();
    let raw = a.to_bytes();
    c.bench_function("x25519_dh_parsed_key", |bn| {
        bn.iter(|| a.dh(black_box(&b.0)).unwrap())
    });
    c.bench_function("x25519_parse_raw_key", |bn| {
        bn.iter(|| MixSecretKey::from_bytes(black_box(&raw)).unwrap())
    });
}

criterion_group!(benches, per_hop, create, primitives);
criterion_main!(benches);

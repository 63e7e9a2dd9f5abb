#![no_main]
//! Structure-aware: arbitrary message and route length -> build -> unwrap at every hop ->
//! the exit must deliver exactly the message.

use arbitrary::Arbitrary;
use betanet_mix::crypto::MixSecretKey;
use betanet_mix::packet::{self, NodeAddr, PacketSize, Processed, RouteHop};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

#[derive(Arbitrary, Debug)]
struct Input {
    message: Vec<u8>,
    hops: u8,
    big: bool,
    seed: u64,
    dest: [u8; 32],
}

fuzz_target!(|inp: Input| {
    let size = if inp.big {
        PacketSize::K2
    } else {
        PacketSize::K1
    };
    let n = usize::from(inp.hops % 5) + 1;
    if inp.message.len() > size.max_message() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(inp.seed);
    let mut keys = Vec::new();
    let mut route = Vec::new();
    for i in 0..n {
        let k = MixSecretKey::generate(&mut rng).unwrap();
        route.push(RouteHop {
            addr: NodeAddr(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                1000 + i as u16,
            ))),
            epoch: i as u32,
            key: k.public(),
        });
        keys.push(k);
    }
    let (_, mut pkt) =
        packet::build_packet(&mut rng, size, &route, inp.dest, &inp.message).unwrap();
    for (i, k) in keys.iter().enumerate() {
        match packet::process(k, pkt).unwrap().1 {
            Processed::Forward { next, packet } => {
                assert_eq!(next, route[i + 1].addr);
                pkt = packet;
            }
            Processed::Deliver { dest, message } => {
                assert_eq!(i, n - 1);
                assert_eq!(dest, inp.dest);
                assert_eq!(message, inp.message);
                return;
            }
            Processed::Reply { .. } => panic!("unexpected reply"),
        }
    }
    panic!("no delivery");
});

//! Structure-aware: a signed service descriptor published through `HSDIR_PUBLISH` decodes to
//! the same bytes, is stored by a directory (when its validity is acceptable) and returned by
//! a lookup; any single flipped byte makes the directory refuse it; replies round-trip.
#![no_main]
use arbitrary::Arbitrary;
use betanet_mix::crypto::MixPublicKey;
use betanet_mix::descriptor::{IntroPoint, ServiceDescriptor};
use betanet_mix::hsdir::{
    self, HsDirReply, HsDirRequest, HsDirStore, MAX_HSDIR_VALIDITY, PublishStatus,
};
use betanet_mix::packet::NodeAddr;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: [u8; 32],
    x25519: [u8; 32],
    from: u32,
    len: u32,
    at: u32,
    intros: u8,
    flip_at: u16,
    flip_bit: u8,
    status: u8,
}

fuzz_target!(|inp: Input| {
    let sk = ed25519_dalek::SigningKey::from_bytes(&inp.seed);
    let n = usize::from(inp.intros % 9);
    let ips = (0..n)
        .map(|i| IntroPoint {
            node_id: [i as u8; 32],
            addr: NodeAddr(std::net::SocketAddr::from(([127, 0, 0, 1], i as u16))),
            key_epoch: i as u32,
            key: MixPublicKey([i as u8; 32]),
        })
        .collect();
    let from = u64::from(inp.from);
    let until = from + u64::from(inp.len);
    let desc = ServiceDescriptor::sign(&sk, MixPublicKey(inp.x25519), from, until, ips);
    let msg = hsdir::publish(None, &desc);
    match HsDirRequest::decode(&msg).expect("publish decodes") {
        HsDirRequest::Publish { surb, descriptor } => {
            assert!(surb.is_none());
            assert_eq!(descriptor, desc);
        }
        HsDirRequest::Lookup { .. } => panic!("decoded as a lookup"),
    }
    let now = from + u64::from(inp.at) % (u64::from(inp.len) + 1);
    let mut store = HsDirStore::new();
    let (st, id) = store.insert(&desc, now);
    let expect = if until - now > MAX_HSDIR_VALIDITY {
        PublishStatus::TooLong
    } else if n == 0 {
        PublishStatus::Invalid
    } else {
        PublishStatus::Stored
    };
    assert_eq!(st, expect);
    if st == PublishStatus::Stored {
        assert_eq!(store.get(&id, now), Some(&desc[..]));
    }
    let mut bad = desc.clone();
    let i = usize::from(inp.flip_at) % bad.len();
    bad[i] ^= 1 << (inp.flip_bit % 8);
    assert_ne!(HsDirStore::new().insert(&bad, now).0, PublishStatus::Stored);
    let reply = HsDirReply::Result {
        service_id: id,
        descriptor: Some(desc),
    };
    assert_eq!(HsDirReply::decode(&reply.encode()).expect("result"), reply);
    if let Ok(status) = PublishStatus::from_code(inp.status) {
        let ack = HsDirReply::Published {
            status,
            service_id: id,
        };
        assert_eq!(HsDirReply::decode(&ack.encode()).expect("ack"), ack);
    }
});

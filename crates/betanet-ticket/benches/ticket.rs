//! Access-ticket throughput: client `make_ticket`, server `verify` (memory and redb replay
//! stores), `BN-Ticket` token issue + check, voucher redemption.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use betanet_crypto::schedule::KeySchedule;
use betanet_crypto::sign::SigningKey;
use betanet_ticket::ratelimit::AdmissionLimits;
use betanet_ticket::replay::RedbReplayStore;
use betanet_ticket::verifier::VerifierConfig;
use betanet_ticket::voucher::{MemorySpentSet, VoucherConfig};
use betanet_ticket::{
    CarrierPolicy, MemoryReplayStore, RateLimit, SiteInfo, SiteTicketKey, TicketVerifier,
    TokenChecker, TokenIssuer, Voucher, VoucherVerifier, make_ticket,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_790_000_000;

fn config() -> VerifierConfig {
    let big = RateLimit::per_second(u32::MAX, u32::MAX);
    VerifierConfig {
        limits: AdmissionLimits {
            per_v4_24: big,
            per_v6_56: big,
            per_as: None,
            max_buckets: 16,
        },
        prune_interval_secs: 3600,
    }
}

fn tickets(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let key = SiteTicketKey::generate(&mut rng).unwrap();
    let site = SiteInfo {
        keys: key.keys(),
        policy: CarrierPolicy::default(),
    };
    let peer: IpAddr = "192.0.2.1".parse().unwrap();

    c.bench_function("make_ticket", |b| {
        b.iter(|| make_ticket(&site, NOW, &mut rng).unwrap())
    });

    let mut v =
        TicketVerifier::new(vec![key.clone()], MemoryReplayStore::default(), config()).unwrap();
    let mut rng2 = StdRng::seed_from_u64(2);
    c.bench_function("verify_memory_store", |b| {
        b.iter_batched(
            || make_ticket(&site, NOW, &mut rng2).unwrap(),
            |t| v.verify(&t.payload, NOW, peer).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let dir = tempfile::tempdir().unwrap();
    let store = RedbReplayStore::open(&dir.path().join("bench.redb")).unwrap();
    let mut v = TicketVerifier::new(vec![key.clone()], store, config()).unwrap();
    c.bench_function("verify_redb_store_durable", |b| {
        b.iter_batched(
            || make_ticket(&site, NOW, &mut rng2).unwrap(),
            |t| v.verify(&t.payload, NOW, peer).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let mut store = RedbReplayStore::open(&dir.path().join("bench2.redb")).unwrap();
    store.set_durability(betanet_ticket::replay::ReplayDurability::AtPrune);
    let mut v = TicketVerifier::new(vec![key], store, config()).unwrap();
    c.bench_function("verify_redb_store_at_prune", |b| {
        b.iter_batched(
            || make_ticket(&site, NOW, &mut rng2).unwrap(),
            |t| v.verify(&t.payload, NOW, peer).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

fn tokens(c: &mut Criterion) {
    let s = KeySchedule::from_ekm(&[7u8; 32]);
    let mut issuer = TokenIssuer::new();
    let mut checker = TokenChecker::default();
    c.bench_function("bn_ticket_issue_and_check", |b| {
        b.iter(|| {
            let t = issuer.issue(&s).unwrap();
            checker.check(&s, t.header_value.as_bytes()).unwrap()
        })
    });
}

fn vouchers(c: &mut Criterion) {
    let group = SigningKey::from_seed(&[5u8; 32]);
    let id = [1u8; 32];
    let cfg = VoucherConfig {
        per_keyset: RateLimit::per_second(u32::MAX, u32::MAX),
        per_peer: RateLimit::per_second(u32::MAX, u32::MAX),
        ..VoucherConfig::default()
    };
    let mut v = VoucherVerifier::new(MemorySpentSet::default(), cfg).unwrap();
    v.registry_mut().insert(id, group.verifying_key());
    let mut n: u64 = 0;
    c.bench_function("voucher_redeem_memory", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&n.to_be_bytes());
                Voucher::sign_with(&group, id, secret).to_bytes()
            },
            |bytes| v.redeem(bytes.as_ref(), b"peer", NOW).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, tickets, tokens, vouchers);
criterion_main!(benches);

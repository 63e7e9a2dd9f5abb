//! Voucher verification / redemption and FROST threshold signing.
#![allow(missing_docs, clippy::unwrap_used)]

use betanet_trust::mint::{dealer_keygen, threshold_sign};
use betanet_trust::store::MemStore;
use betanet_trust::voucher::{Redeemer, Voucher, VoucherPolicy};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let (ks, members) = dealer_keygen(5, 3, &mut rng).unwrap();
    let signers: Vec<_> = members.iter().take(3).collect();
    let v = Voucher::issue(&ks, &signers, [7; 32], &mut rng).unwrap();
    c.bench_function("voucher_verify", |b| {
        b.iter(|| black_box(&v).verify(ks.info()).unwrap())
    });
    c.bench_function("frost_threshold_sign_3_of_5", |b| {
        b.iter(|| threshold_sign(&ks, &signers, black_box(&[1u8; 32]), &mut rng).unwrap())
    });
    let mut red = Redeemer::new(
        MemStore::new(),
        VoucherPolicy {
            per_peer: betanet_trust::voucher::RateLimit {
                capacity: u32::MAX,
                per_second: u32::MAX,
            },
            per_keyset: betanet_trust::voucher::RateLimit {
                capacity: u32::MAX,
                per_second: u32::MAX,
            },
            ..VoucherPolicy::default()
        },
    );
    red.add_keyset(ks.info().clone(), 1).unwrap();
    // a pool of distinct vouchers; redeeming a spent one measures the full check + store probe
    let spent = v.to_bytes();
    red.redeem(&spent, b"p", 0).unwrap();
    c.bench_function("voucher_redeem_memstore_spent", |b| {
        b.iter(|| red.redeem(black_box(&spent), b"p", 0).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

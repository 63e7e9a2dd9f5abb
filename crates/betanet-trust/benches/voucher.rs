//! Voucher verification / redemption and FROST threshold signing.
#![allow(missing_docs, clippy::unwrap_used)]

use betanet_trust::mint::{dealer_keygen, threshold_sign};
use betanet_trust::store::MemStore;
use betanet_trust::voucher::{MintVoucher, RateLimit, Redeemer, Voucher, VoucherPolicy};
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
        b.iter(|| black_box(&v).verify_keyset(ks.info()).unwrap())
    });
    c.bench_function("frost_threshold_sign_3_of_5", |b| {
        b.iter(|| threshold_sign(&ks, &signers, black_box(&[1u8; 32]), &mut rng).unwrap())
    });
    let mut red = Redeemer::new(
        MemStore::new(),
        VoucherPolicy {
            per_peer: RateLimit::per_second(1 << 30, 1 << 30),
            per_keyset: RateLimit::per_second(1 << 30, 1 << 30),
            ..VoucherPolicy::default()
        },
    )
    .unwrap();
    red.add_keyset(ks.info().clone(), 1).unwrap();
    // a pool of distinct vouchers; redeeming a spent one measures the full check + store probe
    let spent = v.to_bytes().to_vec();
    red.redeem(&spent, b"p", 0).unwrap();
    c.bench_function("voucher_redeem_memstore_spent", |b| {
        b.iter(|| red.redeem(black_box(&spent), b"p", 0).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

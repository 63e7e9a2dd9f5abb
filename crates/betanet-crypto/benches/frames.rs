//! Frame seal + open throughput (SPEC §4.6 frame protection) at 1 KiB, 16 KiB and the largest
//! frame (65 505 plaintext bytes ≈ 64 KiB), beside a bare ChaCha20-Poly1305 seal+open on the
//! same buffer (the AEAD ceiling) in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use betanet_crypto::aead::AeadKey;
use betanet_crypto::schedule::{KeySchedule, Role};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const MAX_PLAINTEXT: usize = 65535 - 3 - 7 - 16;

fn frames(c: &mut Criterion) {
    let ks = KeySchedule::from_ekm(&[7u8; 32]);
    let mut g = c.benchmark_group("frame_seal_open");
    for &size in &[1024usize, 16 * 1024, MAX_PLAINTEXT] {
        g.throughput(Throughput::Bytes(size as u64));
        let label = if size == MAX_PLAINTEXT {
            "64KiB".to_string()
        } else {
            format!("{}KiB", size / 1024)
        };
        g.bench_function(format!("betanet/{label}"), |b| {
            let (mut tx, _) = ks.frame_keys(Role::Initiator);
            let (_, mut rx) = ks.frame_keys(Role::Responder);
            let mut buf = vec![0xabu8; size + 16];
            let header = [0u8; 10];
            b.iter(|| {
                let (pt, tag) = buf.split_at_mut(size);
                let t = tx.seal(&header, pt).unwrap();
                tag.copy_from_slice(&t);
                let o = rx.open(&header, &mut buf).unwrap();
                black_box(o.len);
            });
        });
        g.bench_function(format!("aead_ceiling/{label}"), |b| {
            let key = AeadKey::new(&[1u8; 32]);
            let mut buf = vec![0xabu8; size + 16];
            let mut n: u64 = 0;
            b.iter(|| {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                n += 1;
                let (pt, tag) = buf.split_at_mut(size);
                let t = key.seal_in_place(nonce, &[0u8; 10], pt).unwrap();
                tag.copy_from_slice(&t);
                black_box(
                    key.open_in_place(nonce, &[0u8; 10], &mut buf)
                        .unwrap()
                        .len(),
                );
            });
        });
    }
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);

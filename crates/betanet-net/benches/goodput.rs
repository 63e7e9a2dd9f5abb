//! Goodput over loopback: single-stream `tcp12`, `tls` and `quic` against the AEAD ceiling measured in
//! the same run (sealing 64 KiB frames on one core) and against a plain rustls TLS transfer;
//! end-to-end handshakes per second; memory per idle connection (RSS delta).
//!
//! `cargo bench -p betanet-net --bench goodput -- --quick`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use betanet_crypto::sign::SigningKey;
use betanet_net::{ClientConfig, ServerConfig, Transport, dial, listen};
use common::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn goodput(c: &mut Criterion) {
    let mut g = c.benchmark_group("goodput");
    g.throughput(Throughput::Bytes(TRANSFER as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("aead_ceiling_seal_64k_frames", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| seal_ceiling()).sum());
    });
    g.bench_function("aead_ceiling_seal_open_64k_frames", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| seal_open_ceiling()).sum());
    });
    for transport in [Transport::Tcp12, Transport::Tls, Transport::Quic] {
        let rt = rt();
        let (cc, sc) = rt.block_on(pair(transport));
        g.bench_function(format!("htx_{transport}_single_stream"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += one_stream(&cc, &sc).await;
                    }
                    total
                })
            });
        });
        drop((cc, sc));
    }
    let rt = rt();
    let (mut s, srv) = rt.block_on(plain_tls_pair());
    g.bench_function("plain_rustls_tls13", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += plain_tls_transfer(&mut s).await;
                }
                total
            })
        });
    });
    drop(s);
    let _ = rt.block_on(srv);
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    for (name, pq) in [
        ("tcp12_hybrid", betanet_net::PqMode::Hybrid),
        ("tcp12_classic", betanet_net::PqMode::Classic),
    ] {
        let rt = rt();
        let skey = SigningKey::from_seed(&[2; 32]);
        let spub = skey.verifying_key();
        let mut scfg = ServerConfig::new(skey);
        scfg.htx = htx();
        let mut l = rt.block_on(listen("127.0.0.1:0", scfg)).unwrap();
        let addr = l.local_addr().to_string();
        let mut ccfg = ClientConfig::new(SigningKey::from_seed(&[1; 32]));
        ccfg.htx = htx();
        ccfg.pq = pq;
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let (c, s) = tokio::join!(dial(&addr, &spub, &ccfg), l.accept());
                    std::hint::black_box((c.unwrap(), s.unwrap()));
                })
            });
        });
    }
    g.finish();
}

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Not a criterion measurement: prints RSS per idle connection end.
fn idle_memory(_c: &mut Criterion) {
    let rt = rt();
    rt.block_on(async {
        let skey = SigningKey::from_seed(&[2; 32]);
        let spub = skey.verifying_key();
        let mut scfg = ServerConfig::new(skey);
        scfg.pq = betanet_net::PqMode::Classic;
        let mut l = listen("127.0.0.1:0", scfg).await.unwrap();
        let addr = l.local_addr().to_string();
        let mut ccfg = ClientConfig::new(SigningKey::from_seed(&[1; 32]));
        ccfg.pq = betanet_net::PqMode::Classic;
        let mut keep = Vec::new();
        for _ in 0..50 {
            let (c, s) = tokio::join!(dial(&addr, &spub, &ccfg), l.accept());
            keep.push((c.unwrap(), s.unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss();
        const N: usize = 400;
        for _ in 0..N {
            let (c, s) = tokio::join!(dial(&addr, &spub, &ccfg), l.accept());
            keep.push((c.unwrap(), s.unwrap()));
        }
        // Cover timers fire within 1.2 s and every driver releases its buffers when idle.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after = rss();
        let per_end = (after.saturating_sub(before)) as f64 / (2 * N) as f64;
        println!(
            "idle_memory: {N} idle connections (both ends in this process): RSS +{} KiB, {:.1} KiB per connection end",
            (after.saturating_sub(before)) / 1024,
            per_end / 1024.0
        );
    });
}

criterion_group!(benches, goodput, handshakes, idle_memory);
criterion_main!(benches);

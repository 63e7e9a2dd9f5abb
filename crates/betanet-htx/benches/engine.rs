//! The engine alone on one thread: 64 MiB through a client→server pair (write, frame, seal,
//! open, reassemble, read), against the AEAD seal+open ceiling on the same thread.
//!
//! `cargo bench -p betanet-htx --bench engine -- --quick`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use betanet_crypto::schedule::{KeySchedule, Role};
use betanet_crypto::sign::SigningKey;
use betanet_htx::{Config, Connection, CoverConfig, HandshakeConfig, PqMode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_core::SeedableRng;

const TRANSFER: usize = 64 << 20;

fn pair() -> (Connection, Connection, Instant) {
    let now = Instant::now();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let cfg = Config {
        cover: CoverConfig::off(),
        ..Config::default()
    };
    let hs = |s: u8| {
        let mut h = HandshakeConfig::new(SigningKey::from_seed(&[s; 32]), 1_780_000_000);
        h.pq = PqMode::Classic;
        h
    };
    let server_vk = SigningKey::from_seed(&[2; 32]).verifying_key();
    let mut c = Connection::client(cfg.clone(), hs(1), &server_vk, now, &mut rng).unwrap();
    let mut s = Connection::server(cfg, hs(2), now, &mut rng).unwrap();
    for _ in 0..4 {
        let mut a = Vec::new();
        c.poll_transmit(now, &mut a, 1 << 20);
        s.handle_input(&a, now);
        let mut b = Vec::new();
        s.poll_transmit(now, &mut b, 1 << 20);
        c.handle_input(&b, now);
    }
    (c, s, now)
}

/// `vectored`: the sender hands out frames sealed in place in their own buffers
/// (`poll_transmit_bufs`, as the tokio driver does for a TCP socket) instead of appending
/// them to one buffer.
fn transfer(c: &mut Connection, s: &mut Connection, now: Instant, vectored: bool) -> Duration {
    let id = c.open_stream().unwrap();
    let chunk = vec![0x5au8; 256 * 1024];
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut wire = Vec::with_capacity(1 << 20);
    let mut back = Vec::with_capacity(1 << 16);
    let mut bufs = std::collections::VecDeque::new();
    let (mut sent, mut got) = (0usize, 0usize);
    let t0 = Instant::now();
    while got < TRANSFER {
        while sent < TRANSFER {
            let n = c
                .write(id, &chunk[..chunk.len().min(TRANSFER - sent)])
                .unwrap();
            if n == 0 {
                break;
            }
            sent += n;
        }
        // As the tokio driver does: the bytes land in the engine's own receive buffer (one
        // copy, like the socket read), frames are opened in place there.
        let mut input = s.take_input_buffer();
        if vectored {
            c.poll_transmit_bufs(now, &mut bufs, 1 << 20);
            for b in bufs.drain(..) {
                input.extend_from_slice(&b);
                c.recycle(b);
            }
        } else {
            wire.clear();
            c.poll_transmit(now, &mut wire, 1 << 20);
            input.extend_from_slice(&wire);
        }
        s.handle_input_owned(input, now);
        loop {
            let (n, _) = s.read(id, &mut rbuf).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        back.clear();
        s.poll_transmit(now, &mut back, 1 << 20);
        c.handle_input(&back, now);
    }
    t0.elapsed()
}

fn bench(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("engine");
    g.throughput(Throughput::Bytes(TRANSFER as u64));
    g.sample_size(10);
    g.bench_function("aead_seal_open_64k_frames", |b| {
        let ks = KeySchedule::from_ekm(&[7u8; 32]);
        let (mut sealer, _) = ks.frame_keys(Role::Initiator);
        let (_, mut opener) = ks.frame_keys(Role::Responder);
        let mut frame = vec![0u8; 65_509 + 16];
        b.iter(|| {
            for _ in 0..TRANSFER / 65_498 + 1 {
                let (pt, tag) = frame.split_at_mut(65_509);
                let t = sealer.seal(&[0u8; 10], pt).unwrap();
                tag.copy_from_slice(&t);
                opener.open(&[0u8; 10], &mut frame).unwrap();
            }
        });
    });
    let (mut c, mut s, now) = pair();
    g.bench_function("pair_single_stream_one_thread", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| transfer(&mut c, &mut s, now, false))
                .sum()
        });
    });
    g.bench_function("pair_single_stream_one_thread_vectored", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| transfer(&mut c, &mut s, now, true))
                .sum()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

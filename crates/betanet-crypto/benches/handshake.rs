//! Responder-side handshake cost: the Betanet responder (classic and ML-KEM-768 hybrid, with
//! its det-CBOR payloads and identity checks), our plain Noise XK responder, and `snow`'s XK
//! responder with its default resolver, all in one run. Only the responder's own work is
//! timed (`iter_custom`); the initiator's messages are produced untimed.
//!
//! Time is the benchmark thread's **CPU time** (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so
//! that other load on a shared machine (which deschedules the thread) does not count.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use cpu_time::ThreadTime as Instant;

use betanet_crypto::dh::X25519Secret;
use betanet_crypto::handshake::{HandshakeConfig, Initiator, PqMode, Responder};
use betanet_crypto::noise::{InitiatorStart, ResponderStart};
use betanet_crypto::sign::SigningKey;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_790_000_000;

fn betanet(c: &mut Criterion, pq: PqMode, name: &str) {
    let server = SigningKey::from_seed(&[1; 32]);
    let client = SigningKey::from_seed(&[2; 32]);
    let mut rng = StdRng::seed_from_u64(1);
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut icfg = HandshakeConfig::new(client.clone(), NOW);
                icfg.pq = pq;
                let mut rcfg = HandshakeConfig::new(server.clone(), NOW);
                rcfg.pq = pq;
                let (ist, m1) = Initiator::start(icfg, &server.verifying_key(), &mut rng).unwrap();
                let t = Instant::now();
                let (rst, m2) = Responder::new(rcfg)
                    .unwrap()
                    .read_msg1(&m1[2..], &mut rng)
                    .unwrap();
                total += t.elapsed();
                let (_, m3) = ist.read_msg2(&m2[2..]).unwrap();
                let t = Instant::now();
                let est = rst.read_msg3(&m3[2..]).unwrap();
                let keys = est.schedule.frame_keys(est.role);
                total += t.elapsed();
                std::hint::black_box(keys);
            }
            total
        });
    });
}

fn noise_only(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let r_s = X25519Secret::generate(&mut rng);
    let r_pub = r_s.public().unwrap();
    let i_s = X25519Secret::generate(&mut rng);
    c.bench_function("responder/noise_xk_ours", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut m1 = Vec::new();
                let ist = InitiatorStart::new(i_s.clone(), r_pub, b"p")
                    .write_message1(X25519Secret::generate(&mut rng), &[], &mut m1)
                    .unwrap();
                let e = X25519Secret::generate(&mut rng);
                let t = Instant::now();
                let mut p = Vec::new();
                let mut m2 = Vec::new();
                let rst = ResponderStart::new(r_s.clone(), b"p")
                    .unwrap()
                    .read_message1(&m1, &mut p)
                    .unwrap()
                    .write_message2(e, &[], &mut m2)
                    .unwrap();
                total += t.elapsed();
                let mut m3 = Vec::new();
                ist.read_message2(&m2, &mut p)
                    .unwrap()
                    .write_message3(&[], &mut m3)
                    .unwrap();
                let t = Instant::now();
                std::hint::black_box(rst.read_message3(&m3, &mut p).unwrap());
                total += t.elapsed();
            }
            total
        });
    });
}

fn snow_xk(c: &mut Criterion) {
    let params: snow::params::NoiseParams = "Noise_XK_25519_ChaChaPoly_SHA256".parse().unwrap();
    let kp_r = snow::Builder::new(params.clone())
        .generate_keypair()
        .unwrap();
    let kp_i = snow::Builder::new(params.clone())
        .generate_keypair()
        .unwrap();
    c.bench_function("responder/snow_xk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut buf1 = [0u8; 1024];
            let mut buf2 = [0u8; 1024];
            let mut pl = [0u8; 1024];
            for _ in 0..iters {
                let mut ini = snow::Builder::new(params.clone())
                    .local_private_key(&kp_i.private)
                    .unwrap()
                    .remote_public_key(&kp_r.public)
                    .unwrap()
                    .prologue(b"p")
                    .unwrap()
                    .build_initiator()
                    .unwrap();
                let n1 = ini.write_message(&[], &mut buf1).unwrap();
                let t = Instant::now();
                let mut resp = snow::Builder::new(params.clone())
                    .local_private_key(&kp_r.private)
                    .unwrap()
                    .prologue(b"p")
                    .unwrap()
                    .build_responder()
                    .unwrap();
                resp.read_message(&buf1[..n1], &mut pl).unwrap();
                let n2 = resp.write_message(&[], &mut buf2).unwrap();
                total += t.elapsed();
                ini.read_message(&buf2[..n2], &mut pl).unwrap();
                let n3 = ini.write_message(&[], &mut buf1).unwrap();
                let t = Instant::now();
                resp.read_message(&buf1[..n3], &mut pl).unwrap();
                std::hint::black_box(resp.into_transport_mode().unwrap());
                total += t.elapsed();
            }
            total
        });
    });
}

fn all(c: &mut Criterion) {
    snow_xk(c);
    noise_only(c);
    betanet(c, PqMode::Classic, "responder/betanet_classic");
    betanet(c, PqMode::Hybrid, "responder/betanet_hybrid");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = all
}
criterion_main!(benches);

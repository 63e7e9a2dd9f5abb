//! Structure-aware: random operation sequences on an honest engine pair must deliver every
//! byte exactly once and in order (compared after the run), whatever the interleaving.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use betanet_crypto::sign::SigningKey;
use betanet_htx::{Config, Connection, HandshakeConfig, PqMode, StreamId};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[derive(Arbitrary, Debug)]
enum Op {
    Open(bool),
    Write(bool, u8, u16),
    Finish(bool, u8),
    Read(bool, u8, u16),
    KeyUpdate(bool),
    Ping(bool),
    Deliver,
    Tick(u16),
}

fn hs(seed: u8) -> HandshakeConfig {
    let mut h = HandshakeConfig::new(SigningKey::from_seed(&[seed; 32]), 1_780_000_000);
    h.pq = PqMode::Classic;
    h
}

fn deliver(c: &mut Connection, s: &mut Connection, now: Instant) {
    for _ in 0..64 {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let n = c.poll_transmit(now, &mut a, 1 << 18) + s.poll_transmit(now, &mut b, 1 << 18);
        s.handle_input(&a, now);
        c.handle_input(&b, now);
        if n == 0 {
            break;
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut now = Instant::now();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let cfg = Config { rekey_frames: 8, max_frame_data: 3000, ..Config::default() };
    let mut c = Connection::client(cfg.clone(), hs(1), &SigningKey::from_seed(&[2; 32]).verifying_key(), now, &mut rng).unwrap();
    let mut s = Connection::server(cfg, hs(2), now, &mut rng).unwrap();
    deliver(&mut c, &mut s, now);
    let mut ids: Vec<StreamId> = Vec::new();
    let mut sent: HashMap<(bool, u32), Vec<u8>> = HashMap::new();
    let mut got: HashMap<(bool, u32), Vec<u8>> = HashMap::new();
    for op in ops.into_iter().take(200) {
        match op {
            Op::Open(side) => {
                let conn = if side { &mut c } else { &mut s };
                if let Ok(id) = conn.open_stream() {
                    ids.push(id);
                }
            }
            Op::Write(side, i, len) => {
                if let Some(&id) = ids.get(usize::from(i) % ids.len().max(1)) {
                    let conn = if side { &mut c } else { &mut s };
                    let data = vec![i ^ (len as u8); usize::from(len)];
                    if let Ok(n) = conn.write(id, &data) {
                        sent.entry((side, id.0)).or_default().extend_from_slice(&data[..n]);
                    }
                }
            }
            Op::Finish(side, i) => {
                if let Some(&id) = ids.get(usize::from(i) % ids.len().max(1)) {
                    let conn = if side { &mut c } else { &mut s };
                    let _ = conn.finish(id);
                }
            }
            Op::Read(side, i, max) => {
                if let Some(&id) = ids.get(usize::from(i) % ids.len().max(1)) {
                    let conn = if side { &mut c } else { &mut s };
                    let mut buf = vec![0u8; usize::from(max)];
                    if let Ok((n, _)) = conn.read(id, &mut buf) {
                        got.entry((!side, id.0)).or_default().extend_from_slice(&buf[..n]);
                    }
                }
            }
            Op::KeyUpdate(side) => if side { c.key_update() } else { s.key_update() },
            Op::Ping(side) => {
                let _ = if side { c.ping(now) } else { s.ping(now) };
            }
            Op::Deliver => deliver(&mut c, &mut s, now),
            Op::Tick(ms) => {
                deliver(&mut c, &mut s, now);
                now += Duration::from_millis(u64::from(ms));
                c.handle_timeout(now);
                s.handle_timeout(now);
            }
        }
    }
    deliver(&mut c, &mut s, now);
    for &id in &ids {
        for side in [true, false] {
            let conn = if side { &mut c } else { &mut s };
            let mut buf = vec![0u8; 1 << 16];
            while let Ok((n, _)) = conn.read(id, &mut buf) {
                if n == 0 {
                    break;
                }
                got.entry((!side, id.0)).or_default().extend_from_slice(&buf[..n]);
            }
            deliver(&mut c, &mut s, now);
        }
    }
    assert!(c.is_established() && s.is_established());
    for (k, v) in &got {
        let want = sent.get(k).map(Vec::as_slice).unwrap_or_default();
        assert!(want.starts_with(v), "stream {k:?} delivered bytes that were not sent");
    }
});

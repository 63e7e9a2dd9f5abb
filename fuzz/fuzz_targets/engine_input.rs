//! Raw peer bytes into a responder (handshake parser) and into an established connection
//! (frame decoder, AEAD, payload decoders): never panics, and any failure ends in a close.
#![no_main]

use std::time::Instant;

use betanet_crypto::sign::SigningKey;
use betanet_htx::{Config, Connection, HandshakeConfig, PqMode};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

fn hs(seed: u8) -> HandshakeConfig {
    let mut h = HandshakeConfig::new(SigningKey::from_seed(&[seed; 32]), 1_780_000_000);
    h.pq = PqMode::Classic;
    h
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    // 1. Bytes as the first flight of a handshake.
    let mut s = Connection::server(Config::default(), hs(2), now, &mut rng).unwrap();
    s.handle_input(data, now);
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out, 1 << 20);
    // 2. Bytes after an honest handshake.
    let mut c = Connection::client(Config::default(), hs(1), &SigningKey::from_seed(&[2; 32]).verifying_key(), now, &mut rng).unwrap();
    let mut s = Connection::server(Config::default(), hs(2), now, &mut rng).unwrap();
    for _ in 0..4 {
        let mut a = Vec::new();
        c.poll_transmit(now, &mut a, 1 << 20);
        s.handle_input(&a, now);
        let mut b = Vec::new();
        s.poll_transmit(now, &mut b, 1 << 20);
        c.handle_input(&b, now);
    }
    assert!(s.is_established());
    s.handle_input(data, now);
    let mut out = Vec::new();
    s.poll_transmit(now, &mut out, 1 << 20);
    while s.poll_event().is_some() {}
});

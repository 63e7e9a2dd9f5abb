#![no_main]
//! Raw bytes into the per-hop packet processor: must never panic.

use betanet_mix::crypto::MixSecretKey;
use betanet_mix::packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = MixSecretKey::from_bytes(&[7u8; 32]) else {
        return;
    };
    let _ = packet::peek_epoch(data);
    let _ = packet::process(&key, data.to_vec());
    // Also at a valid size with the fuzz bytes as content.
    let mut fixed = data.to_vec();
    fixed.resize(1024, 0);
    if let Some(b) = fixed.first_mut() {
        *b = packet::VERSION;
    }
    let _ = packet::process(&key, fixed);
});

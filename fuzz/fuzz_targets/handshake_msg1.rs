#![no_main]
//! A responder processes an arbitrary message 1 (both PQ modes). Must never panic.
use betanet_crypto::handshake::{Responder, split_prefixed};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    for pq in [PqMode::Hybrid, PqMode::Classic] {
        let Ok(r) = Responder::new(server_cfg(pq)) else { return };
        let _ = r.read_msg1(data, &mut rng());
    }
    let _ = split_prefixed(data);
});

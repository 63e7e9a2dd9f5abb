//! Raw bytes into the hidden-service chunk decoder and the reassembler: never panics, and a
//! decoded chunk re-encodes to the same bytes.
#![no_main]
use betanet_mix::hs_stream::{Chunk, Reassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frames: Vec<Vec<u8>>| {
    let mut r = Reassembler::new();
    for f in frames.iter().take(256) {
        if let Ok(c) = Chunk::decode(f) {
            assert_eq!(&c.encode(), f);
            let _ = r.push(c);
        }
    }
    let _ = r.outstanding();
});

#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frames: Vec<Vec<u8>>| {
    let mut r = betanet_msg::chunk::Reassembler::new(1 << 20);
    for f in frames.iter().take(64) {
        if let Ok(m) = betanet_msg::Message::decode(f) {
            let _ = r.push(m);
        }
    }
});

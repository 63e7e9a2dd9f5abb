#![no_main]
//! Arbitrary bytes as a frame stream: split with the wire decoder, open with a real session's
//! opener (rekeying on KEY_UPDATE frames), decode payloads. Must never panic.
use betanet_crypto::schedule::{KeySchedule, Role};
use betanet_wire::frame::{FrameDecoder, FrameType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ks = KeySchedule::from_ekm(&[3u8; 32]);
    let (_, mut rx) = ks.frame_keys(Role::Responder);
    let mut dec = FrameDecoder::new();
    let _ = dec.push(data);
    while let Ok(Some(f)) = dec.next_frame() {
        let mut body = f.body.to_vec();
        if let Ok(o) = rx.open(&f.header.aad(), &mut body) {
            if f.header.frame_type() == FrameType::KeyUpdate {
                rx.key_update();
            }
            let _ = o.len;
        }
    }
});

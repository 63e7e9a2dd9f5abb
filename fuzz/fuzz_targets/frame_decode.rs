#![no_main]
//! Raw bytes into every frame-level decoder: the streaming decoders (chunked by the first
//! byte), the 1.2 header, each payload decoder, 1.1 headers and L1 PATH_CONTROL.

use betanet_wire::frame::{FrameDecoder, FrameHeader, FrameType, Payload};
use betanet_wire::frame11::{FrameDecoder11, FrameHeader11};
use betanet_wire::l1::PathControl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut d = FrameDecoder::new();
    for c in rest.chunks(chunk) {
        d.feed(c);
        while let Ok(Some(f)) = d.next_frame() {
            assert_eq!(f.body.len(), f.header.body_len());
        }
    }
    let mut d11 = FrameDecoder11::new();
    d11.feed(rest);
    while let Ok(Some(f)) = d11.next_frame() {
        assert_eq!(f.body.len(), f.header.body_len());
    }
    if let Ok(h) = FrameHeader::decode(rest) {
        assert_eq!(&h.encode()[..], &rest[..10]);
    }
    for ty in [
        FrameType::Stream,
        FrameType::WindowUpdate,
        FrameType::Ping,
        FrameType::KeyUpdate,
        FrameType::Close,
        FrameType::PathControl,
    ] {
        if let Ok(p) = Payload::decode(ty, rest) {
            assert_eq!(p.to_vec().ok().as_deref(), Some(rest));
        }
    }
    let _ = FrameHeader11::decode(rest);
    if let Ok(pc) = PathControl::decode(rest) {
        assert_eq!(pc.to_vec().ok().as_deref(), Some(rest));
    }
});

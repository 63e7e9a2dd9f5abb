#![no_main]
//! Structure-aware: arbitrary payload -> plaintext + header -> decode -> compare.

use arbitrary::Arbitrary;
use betanet_wire::ErrorCode;
use betanet_wire::frame::{Close, FrameHeader, Payload, Ping, Scope, StreamPayload, WindowUpdate};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum In {
    Stream { fin: bool, offset: u64, data: Vec<u8> },
    Window { stream: bool, credit: u32 },
    Ping([u8; 8]),
    KeyUpdate,
    Close { code: u16, reason: Vec<u8> },
    Path(Vec<u8>),
}

fuzz_target!(|x: (In, u32, bool)| {
    let (input, stream_id, ack) = x;
    let p = match input {
        In::Stream { fin, offset, data } => {
            Payload::Stream(StreamPayload { fin, offset, data: Bytes::from(data) })
        }
        In::Window { stream, credit } => Payload::WindowUpdate(WindowUpdate {
            scope: if stream { Scope::Stream } else { Scope::Connection },
            credit,
        }),
        In::Ping(token) => Payload::Ping(Ping { token }),
        In::KeyUpdate => Payload::KeyUpdate,
        In::Close { code, reason } => {
            Payload::Close(Close { code: ErrorCode::from_u16(code), reason: Bytes::from(reason) })
        }
        In::Path(b) => Payload::PathControl(Bytes::from(b)),
    };
    let aad = u16::from(ack && matches!(p, Payload::Ping(_)));
    let (Ok(pt), Ok(hdr)) = (p.to_vec(), p.header(stream_id, aad)) else { return };
    let back = FrameHeader::decode(&hdr.encode()).expect("own header decodes");
    assert_eq!(back, hdr);
    assert_eq!(back.plaintext_len(), pt.len());
    assert_eq!(Payload::decode(back.frame_type(), &pt).expect("own payload decodes"), p);
});

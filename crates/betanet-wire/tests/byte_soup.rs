//! Random byte soup into every decoder: nothing panics, and whatever a strict decoder accepts
//! re-encodes to exactly the input (so acceptance implies canonical form).

use betanet_wire::frame::{FrameDecoder, FrameHeader, FrameType, MAX_FRAME_LEN, Payload};
use betanet_wire::frame11::{FrameDecoder11, FrameHeader11};
use betanet_wire::l1::PathControl;
use betanet_wire::ticket_header::BnTicket;
use betanet_wire::{WireError, b64, bar, cbor, varint};
use proptest::prelude::*;

const TYPES: [FrameType; 6] = [
    FrameType::Stream,
    FrameType::WindowUpdate,
    FrameType::Ping,
    FrameType::KeyUpdate,
    FrameType::Close,
    FrameType::PathControl,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoders(data in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..40) {
        let mut d = FrameDecoder::new();
        let mut total = 0usize;
        for c in data.chunks(chunk) {
            prop_assert_eq!(d.feed(c), c.len());
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        total += f.header.frame_len();
                        prop_assert_eq!(f.body.len(), f.header.body_len());
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert_eq!(e.close_code().to_u16(), 7);
                        prop_assert!(d.next_frame().is_err());
                        break;
                    }
                }
            }
            if d.is_failed() { break; }
        }
        prop_assert!(total <= data.len());
        prop_assert!(d.buffered() <= MAX_FRAME_LEN * 2);

        if let Ok(h) = FrameHeader::decode(&data) {
            prop_assert_eq!(&h.encode()[..], &data[..10]);
        }
        for ty in TYPES {
            if let Ok(p) = Payload::decode(ty, &data) {
                prop_assert_eq!(p.to_vec().unwrap(), data.clone());
            }
        }

        let mut d11 = FrameDecoder11::new();
        d11.feed(&data);
        while let Ok(Some(f)) = d11.next_frame() {
            prop_assert_eq!(f.body.len(), f.header.body_len());
        }
        if let Ok((h, n)) = FrameHeader11::decode(&data) {
            prop_assert_eq!(&h.to_vec()[..], &data[..n]);
        }
    }

    #[test]
    fn structured_decoders(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = cbor::decode(&data) {
            prop_assert_eq!(cbor::encode(&v).unwrap(), data.clone());
        }
        if let Ok(r) = bar::Request::decode(&data) {
            // Only canonical CBOR gets here; unknown top-level keys may be dropped on re-encode.
            prop_assert!(r.encode().is_ok());
        }
        if let Ok(r) = bar::Response::decode(&data) {
            prop_assert!(r.encode().is_ok());
        }
        if let Ok(pc) = PathControl::decode(&data) {
            prop_assert_eq!(pc.to_vec().unwrap(), data.clone());
        }
        if let Ok((v, n)) = varint::decode_strict(&data) {
            prop_assert_eq!(varint::encode(v).unwrap(), data[..n].to_vec());
        }
        if let Ok((v, n)) = varint::leb128_decode(&data) {
            prop_assert_eq!(varint::leb128_encode(v), data[..n].to_vec());
        }
        match BnTicket::parse(&data) {
            Ok(t) => prop_assert!(t.to_header_value().is_ok()),
            Err(e) => prop_assert!(matches!(e, WireError::InvalidTicketHeader(_))),
        }
    }

    #[test]
    fn text_decoders(s in "[ -~]{0,300}") {
        match BnTicket::parse(s.as_bytes()) {
            Ok(t) => prop_assert!(t.to_header_value().is_ok()),
            Err(e) => prop_assert_eq!(e.close_code(), betanet_wire::ErrorCode::L2_TICKET_INVALID),
        }
        if let Ok(d) = b64::decode(&s) {
            prop_assert_eq!(b64::encode(&d), s);
        }
    }
}

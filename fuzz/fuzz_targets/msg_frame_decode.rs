#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = bytes::BytesMut::from(data);
    for _ in 0..64 {
        match betanet_msg::frame::decode_frame(&mut buf) {
            Ok(Some(Ok(m))) => {
                let e = m.encode().expect("decoded frames re-encode");
                let again = betanet_msg::Message::decode(&e).expect("re-decode");
                assert_eq!(again.encode().expect("re-encode"), e);
            }
            Ok(Some(Err(_))) => {}
            _ => break,
        }
    }
    let _ = betanet_msg::Message::decode(data);
});

#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = betanet_msg::packify::Value::decode(data) {
        let e = v.encode();
        let _ = betanet_msg::packify::Value::decode(&e).expect("re-decode");
    }
    let _ = betanet_msg::AuthFields::decode(data);
    let _ = betanet_msg::Peer::unpack(data);
});

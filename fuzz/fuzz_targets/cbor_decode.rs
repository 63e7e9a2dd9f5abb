#![no_main]
//! Raw bytes into the deterministic-CBOR decoder; accepted input must be canonical.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = betanet_wire::cbor::decode(data) {
        assert_eq!(betanet_wire::cbor::encode(&v).expect("decoded value re-encodes"), data);
    }
});

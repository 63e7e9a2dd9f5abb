#![no_main]
//! Raw bytes into the BAR decoders; whatever decodes must re-encode and decode to the same.

use betanet_wire::bar::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        let enc = r.encode().expect("decoded request re-encodes");
        assert_eq!(Request::decode(&enc).expect("re-decodes"), r);
    }
    if let Ok(r) = Response::decode(data) {
        let enc = r.encode().expect("decoded response re-encodes");
        assert_eq!(Response::decode(&enc).expect("re-decodes"), r);
    }
});

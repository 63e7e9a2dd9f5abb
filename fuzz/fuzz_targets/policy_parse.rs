//! Carrier-policy header parse; whatever parses re-serializes to a value that parses equal.
#![no_main]

use betanet_ticket::CarrierPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = CarrierPolicy::parse(s) {
        let again = CarrierPolicy::parse(&p.to_header_value()).unwrap();
        assert_eq!(again, p);
    }
});

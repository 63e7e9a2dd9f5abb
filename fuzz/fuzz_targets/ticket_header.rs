#![no_main]
//! Raw bytes into the BN-Ticket header parser; accepted values survive a serialize/parse trip.

use betanet_wire::ticket_header::BnTicket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = BnTicket::parse(data) {
        let v = t.to_header_value().expect("accepted ticket serializes");
        assert_eq!(BnTicket::parse(v.as_bytes()).expect("reparses"), t);
    }
});

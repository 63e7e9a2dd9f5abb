#![no_main]
//! Raw bytes: the pre-admission classifier and the ticket strippers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = betanet_gateway::classify_first_bytes(data, 4096);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = betanet_gateway::barmap::strip_ticket_cookie(s);
        let _ = betanet_gateway::barmap::strip_ticket_param(s);
    }
});

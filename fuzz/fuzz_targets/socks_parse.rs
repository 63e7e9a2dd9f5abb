//! Raw bytes into protocol detection and the SOCKS5 greeting/request parsers: no panic, and
//! a parsed message never claims more bytes than it was given.
#![no_main]

use betanet_proxy::socks::{detect, parse_greeting, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    if let Ok(Some((_, n))) = parse_greeting(data) {
        assert!(n <= data.len());
    }
    if let Ok(Some((_, n))) = parse_request(data) {
        assert!(n <= data.len());
    }
});

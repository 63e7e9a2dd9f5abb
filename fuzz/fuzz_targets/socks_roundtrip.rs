//! Structure-aware: an arbitrary CONNECT request -> encode -> parse -> the same request
//! (domain names the parser accepts), plus trailing bytes left unconsumed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use betanet_proxy::socks::{Request, Target, parse_request, valid_host};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum In {
    V4([u8; 4]),
    V6([u8; 16]),
    Domain(String),
}

fuzz_target!(|input: (In, u16, Vec<u8>)| {
    let (target, port, trailing) = input;
    let target = match target {
        In::V4(a) => Target::Ip(IpAddr::V4(Ipv4Addr::from(a))),
        In::V6(a) => Target::Ip(IpAddr::V6(Ipv6Addr::from(a))),
        In::Domain(d) => {
            if !valid_host(&d) {
                return;
            }
            Target::Domain(d)
        }
    };
    let req = Request { target, port };
    let mut bytes = req.encode();
    let len = bytes.len();
    bytes.extend_from_slice(&trailing);
    let (back, used) = parse_request(&bytes).unwrap().unwrap();
    assert_eq!(used, len);
    assert_eq!(back, req);
});

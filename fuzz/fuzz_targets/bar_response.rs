#![no_main]
//! Structure-aware: an arbitrary BAR response head → encode → decode → HTTP mapping; the
//! mapping keeps the status when it is a valid final status.
use arbitrary::Arbitrary;
use betanet_wire::bar::{HeaderValue, Response};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|h: Head| {
    let mut headers: Vec<(String, HeaderValue)> = Vec::new();
    for (k, v) in h.headers {
        let k = k.to_lowercase();
        if headers.iter().any(|(n, _)| *n == k) {
            continue;
        }
        headers.push((k, HeaderValue::Bytes(v)));
    }
    let resp = Response {
        status: h.status,
        headers,
        body: h.body,
    };
    let Ok(enc) = resp.encode() else { return };
    let dec = Response::decode(&enc).expect("own encoding decodes");
    assert_eq!(dec.status, resp.status);
    if let Some((status, _, _)) = betanet_gateway::barmap::response_head(&dec) {
        assert_eq!(status.as_u16(), resp.status);
    }
});

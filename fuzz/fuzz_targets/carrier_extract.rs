//! Arbitrary cookie / query / body strings -> carrier extraction (never panics).
#![no_main]

use arbitrary::Arbitrary;
use betanet_ticket::TicketRequest;
use betanet_ticket::carrier::{extract_from_request, from_cookies, from_form_body, from_query};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    cookies: Vec<&'a str>,
    query: Option<&'a str>,
    content_type: Option<&'a str>,
    body: Option<&'a [u8]>,
}

fuzz_target!(|inp: Input<'_>| {
    let req = TicketRequest {
        cookies: &inp.cookies,
        query: inp.query,
        content_type: inp.content_type,
        body: inp.body,
    };
    let _ = extract_from_request(&req);
    let _ = from_cookies(&inp.cookies);
    if let Some(q) = inp.query {
        let _ = from_query(q);
    }
    if let Some(b) = inp.body {
        let _ = from_form_body(inp.content_type, b);
    }
});

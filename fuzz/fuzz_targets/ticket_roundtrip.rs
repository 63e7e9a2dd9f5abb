//! Structure-aware: arbitrary client inputs -> payload -> every carrier -> extraction ->
//! verification admits it exactly once.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use arbitrary::Arbitrary;
use betanet_crypto::dh::X25519Secret;
use betanet_ticket::ticket::{build_payload, render_cookie, render_form_body, render_query, FORM_CONTENT_TYPE};
use betanet_ticket::verifier::VerifierConfig;
use betanet_ticket::{MemoryReplayStore, Refusal, SiteTicketKey, TicketRequest, TicketVerifier};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    site_secret: [u8; 32],
    key_id: [u8; 8],
    cli_secret: [u8; 32],
    nonce: [u8; 32],
    pad: Vec<u8>,
    hour_offset: u8,
    carrier: u8,
}

fuzz_target!(|inp: Input| {
    if inp.pad.len() > 200 {
        return;
    }
    let site = SiteTicketKey::from_secret(X25519Secret::from_bytes(inp.site_secret), inp.key_id).unwrap();
    let cli = X25519Secret::from_bytes(inp.cli_secret);
    let now: u64 = 1_790_000_000;
    let hour = now / 3600 + u64::from(inp.hour_offset % 3) - 1;
    let Ok(payload) = build_payload(&site.keys(), &cli, &inp.nonce, &inp.pad, hour) else {
        return;
    };
    let text = betanet_wire::b64::encode(&payload);
    let cookie = render_cookie(&text);
    let cookies = [cookie.as_str()];
    let query = render_query(&text);
    let body = render_form_body(&text);
    let req = match inp.carrier % 3 {
        0 => TicketRequest { cookies: &cookies, ..Default::default() },
        1 => TicketRequest { query: Some(&query), ..Default::default() },
        _ => TicketRequest {
            content_type: Some(FORM_CONTENT_TYPE),
            body: Some(body.as_bytes()),
            ..Default::default()
        },
    };
    let mut v = TicketVerifier::new(vec![site], MemoryReplayStore::new(16), VerifierConfig::default()).unwrap();
    let peer = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let a = v.admit(&req, now, peer, None).unwrap();
    assert_eq!(a.hour, hour);
    assert_eq!(v.admit(&req, now, peer, None), Err(Refusal::Replay));
});

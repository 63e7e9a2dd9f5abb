//! Raw bytes -> ticket payload parse and full server-side verification (never panics; a
//! random payload is never admitted).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use betanet_crypto::dh::X25519Secret;
use betanet_ticket::ticket::TicketPayload;
use betanet_ticket::verifier::VerifierConfig;
use betanet_ticket::{MemoryReplayStore, SiteTicketKey, TicketVerifier};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static SiteTicketKey {
    static KEY: OnceLock<SiteTicketKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SiteTicketKey::from_secret(X25519Secret::from_bytes([0x11; 32]), *b"\0\x01\x02\x03\x04\x05\x06\x07")
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = TicketPayload::parse(data);
    let mut v = TicketVerifier::new(vec![key().clone()], MemoryReplayStore::new(16), VerifierConfig::default())
        .unwrap();
    let r = v.verify(data, 1_790_000_000, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    if parsed.is_err() {
        assert!(r.is_err());
    }
    // Forging a ticket without the client secret is infeasible: anything admitted must at
    // least carry our key id.
    if let Ok(a) = r {
        assert_eq!(a.key_id, key().keys().ticket_key_id);
    }
});

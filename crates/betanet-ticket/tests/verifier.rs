//! Server-side ticket verification: skew, key ids, low-order keys, trailing bytes, replay
//! across a restart, and per-prefix buckets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use betanet_crypto::dh::X25519Secret;
use betanet_ticket::ratelimit::AdmissionLimits;
use betanet_ticket::replay::RedbReplayStore;
use betanet_ticket::ticket::{FIXED_LEN, build_payload};
use betanet_ticket::verifier::VerifierConfig;
use betanet_ticket::{
    Carrier, CarrierPolicy, MemoryReplayStore, RateLimit, Refusal, SiteInfo, SiteTicketKey,
    TicketRequest, TicketVerifier, make_ticket,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_790_000_000; // 2026-09
const H: u64 = 3600;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn setup(seed: u64) -> (StdRng, SiteTicketKey, SiteInfo) {
    let mut rng = StdRng::seed_from_u64(seed);
    let key = SiteTicketKey::generate(&mut rng).unwrap();
    let site = SiteInfo {
        keys: key.keys(),
        policy: CarrierPolicy::default(),
    };
    (rng, key, site)
}

fn verifier(key: &SiteTicketKey) -> TicketVerifier<MemoryReplayStore> {
    TicketVerifier::new(
        vec![key.clone()],
        MemoryReplayStore::default(),
        VerifierConfig::default(),
    )
    .unwrap()
}

#[test]
fn skew_of_one_hour_accepted_two_refused() {
    let (mut rng, key, site) = setup(1);
    let mut v = verifier(&key);
    let peer = ip("192.0.2.10");
    // Client clock ahead/behind by one hour: accepted.
    for skew in [-(H as i64), 0, H as i64] {
        let t = make_ticket(&site, NOW.checked_add_signed(skew).unwrap(), &mut rng).unwrap();
        let a = v.verify(&t.payload, NOW, peer).unwrap();
        assert_eq!(a.hour, t.hour);
    }
    // Two hours: refused.
    for skew in [-2 * H as i64, 2 * H as i64] {
        let t = make_ticket(&site, NOW.checked_add_signed(skew).unwrap(), &mut rng).unwrap();
        assert_eq!(
            v.verify(&t.payload, NOW, peer),
            Err(Refusal::BadAccessTicket)
        );
    }
}

#[test]
fn wrong_key_id_wrong_key_and_version() {
    let (mut rng, key, site) = setup(2);
    let mut v = verifier(&key);
    let peer = ip("192.0.2.10");
    let t = make_ticket(&site, NOW, &mut rng).unwrap();
    let mut p = t.payload.to_vec();
    p[33] ^= 0x80;
    assert_eq!(v.verify(&p, NOW, peer), Err(Refusal::UnknownKeyId));
    let mut p = t.payload.to_vec();
    p[0] = 2;
    assert_eq!(v.verify(&p, NOW, peer), Err(Refusal::BadVersion));
    // Same key id, different ticket key: the ticket does not verify.
    let other =
        SiteTicketKey::from_secret(X25519Secret::generate(&mut rng), key.keys().ticket_key_id)
            .unwrap();
    let other_site = SiteInfo {
        keys: other.keys(),
        policy: CarrierPolicy::default(),
    };
    let t2 = make_ticket(&other_site, NOW, &mut rng).unwrap();
    assert_eq!(
        v.verify(&t2.payload, NOW, peer),
        Err(Refusal::BadAccessTicket)
    );
    // Tampered accessTicket.
    let mut p = t.payload.to_vec();
    p[80] ^= 1;
    assert_eq!(v.verify(&p, NOW, peer), Err(Refusal::BadAccessTicket));
    assert_eq!(
        v.verify(&t.payload[..FIXED_LEN - 1], NOW, peer),
        Err(Refusal::Malformed)
    );
    // The untouched ticket still verifies (no state consumed by the failures).
    assert!(v.verify(&t.payload, NOW, peer).is_ok());
}

#[test]
fn key_rotation_accepts_both_keys() {
    let (mut rng, key, site) = setup(3);
    let old = SiteTicketKey::generate(&mut rng).unwrap();
    let old_site = SiteInfo {
        keys: old.keys(),
        policy: CarrierPolicy::default(),
    };
    let mut v = TicketVerifier::new(
        vec![key.clone(), old.clone()],
        Box::new(MemoryReplayStore::default()) as Box<dyn betanet_ticket::ReplayStore>,
        VerifierConfig::default(),
    )
    .unwrap();
    let peer = ip("192.0.2.10");
    let a = v
        .verify(
            &make_ticket(&site, NOW, &mut rng).unwrap().payload,
            NOW,
            peer,
        )
        .unwrap();
    assert_eq!(a.key_id, key.keys().ticket_key_id);
    let b = v
        .verify(
            &make_ticket(&old_site, NOW, &mut rng).unwrap().payload,
            NOW,
            peer,
        )
        .unwrap();
    assert_eq!(b.key_id, old.keys().ticket_key_id);
}

#[test]
fn low_order_client_keys_refused() {
    let (_, key, site) = setup(4);
    let mut v = verifier(&key);
    let peer = ip("192.0.2.10");
    let mut one = [0u8; 32];
    one[0] = 1;
    // A point of order 8 (RFC 7748 / libsodium blocklist).
    let order8 =
        hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
    for low in [[0u8; 32], one, order8.try_into().unwrap()] {
        let mut p = vec![1u8];
        p.extend_from_slice(&low);
        p.extend_from_slice(&site.keys.ticket_key_id);
        p.extend_from_slice(&[0u8; 64]);
        p.extend_from_slice(&[0u8; 24]);
        assert_eq!(v.verify(&p, NOW, peer), Err(Refusal::LowOrderKey));
    }
}

#[test]
fn trailing_bytes_ignored() {
    let (mut rng, key, site) = setup(5);
    let mut v = verifier(&key);
    let peer = ip("192.0.2.10");
    let cli = X25519Secret::generate(&mut rng);
    let hour = NOW / H;
    // No pad at all, and a long pad: both parse and verify (the server ignores trailing bytes).
    let p0 = build_payload(&site.keys, &cli, &[1u8; 32], &[], hour).unwrap();
    assert_eq!(p0.len(), FIXED_LEN);
    assert!(v.verify(&p0, NOW, peer).is_ok());
    let cli2 = X25519Secret::generate(&mut rng);
    let p1 = build_payload(&site.keys, &cli2, &[1u8; 32], &[0xee; 300], hour).unwrap();
    assert!(v.verify(&p1, NOW, peer).is_ok());
}

#[test]
fn replay_refused_even_after_restart() {
    let (mut rng, key, site) = setup(6);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.redb");
    let peer = ip("198.51.100.7");
    let t = make_ticket(&site, NOW, &mut rng).unwrap();
    {
        let store = RedbReplayStore::open(&path).unwrap();
        let mut v =
            TicketVerifier::new(vec![key.clone()], store, VerifierConfig::default()).unwrap();
        v.verify(&t.payload, NOW, peer).unwrap();
        assert_eq!(v.verify(&t.payload, NOW + 5, peer), Err(Refusal::Replay));
        // Same cliPub with another pad (trailing bytes) is still a replay.
        let mut p = t.payload.to_vec();
        p.push(0);
        assert_eq!(v.verify(&p, NOW + 5, peer), Err(Refusal::Replay));
    }
    let store = RedbReplayStore::open(&path).unwrap();
    let mut v = TicketVerifier::new(vec![key], store, VerifierConfig::default()).unwrap();
    assert_eq!(v.verify(&t.payload, NOW + 60, peer), Err(Refusal::Replay));
    // A fresh ticket is admitted after the restart.
    let t2 = make_ticket(&site, NOW, &mut rng).unwrap();
    assert!(v.verify(&t2.payload, NOW + 60, peer).is_ok());
}

#[test]
fn buckets_per_v4_24_and_v6_56() {
    let (mut rng, key, site) = setup(7);
    let cfg = VerifierConfig {
        limits: AdmissionLimits {
            per_v4_24: RateLimit::per_minute(2, 1),
            per_v6_56: RateLimit::per_minute(2, 1),
            per_as: None,
            max_buckets: 1024,
        },
        ..VerifierConfig::default()
    };
    let mut v = TicketVerifier::new(vec![key], MemoryReplayStore::default(), cfg).unwrap();
    let mut fresh = || make_ticket(&site, NOW, &mut rng).unwrap();
    assert!(v.verify(&fresh().payload, NOW, ip("203.0.113.1")).is_ok());
    assert!(v.verify(&fresh().payload, NOW, ip("203.0.113.250")).is_ok());
    assert_eq!(
        v.verify(&fresh().payload, NOW, ip("203.0.113.9")),
        Err(Refusal::RateLimited)
    );
    assert!(v.verify(&fresh().payload, NOW, ip("203.0.112.9")).is_ok());
    assert!(
        v.verify(&fresh().payload, NOW, ip("2001:db8:1:ff00::1"))
            .is_ok()
    );
    assert!(
        v.verify(&fresh().payload, NOW, ip("2001:db8:1:ffff::2"))
            .is_ok()
    );
    assert_eq!(
        v.verify(&fresh().payload, NOW, ip("2001:db8:1:ff12:3::3")),
        Err(Refusal::RateLimited)
    );
    assert!(
        v.verify(&fresh().payload, NOW, ip("2001:db8:1:fe00::1"))
            .is_ok()
    );
    // Garbage is charged too (limits run before any parsing).
    assert_eq!(
        v.verify(b"\x01junk", NOW, ip("203.0.112.10")),
        Err(Refusal::Malformed)
    );
    assert_eq!(
        v.verify(&fresh().payload, NOW, ip("203.0.112.11")),
        Err(Refusal::RateLimited)
    );
    // Refill after a minute.
    assert!(
        v.verify(&fresh().payload, NOW + 60, ip("203.0.113.9"))
            .is_ok()
    );
}

#[test]
fn admit_from_each_carrier() {
    let (mut rng, key, site) = setup(8);
    let mut v = verifier(&key);
    let peer = ip("192.0.2.55");
    for carrier in [Carrier::Cookie, Carrier::Query, Carrier::Body] {
        let s = SiteInfo {
            keys: site.keys,
            policy: CarrierPolicy::only(carrier),
        };
        let t = make_ticket(&s, NOW, &mut rng).unwrap();
        assert_eq!(t.carrier, carrier);
        let rendered = t.render();
        let a = match &rendered {
            betanet_ticket::ticket::RenderedCarrier::Cookie(c) => {
                let cookies = ["theme=dark", c.as_str()];
                v.admit(
                    &TicketRequest {
                        cookies: &cookies,
                        ..Default::default()
                    },
                    NOW,
                    peer,
                    None,
                )
            }
            betanet_ticket::ticket::RenderedCarrier::Query(q) => {
                let q = format!("page=2&{q}");
                v.admit(
                    &TicketRequest {
                        query: Some(&q),
                        ..Default::default()
                    },
                    NOW,
                    peer,
                    None,
                )
            }
            betanet_ticket::ticket::RenderedCarrier::Body { content_type, body } => v.admit(
                &TicketRequest {
                    content_type: Some(content_type),
                    body: Some(body.as_bytes()),
                    ..Default::default()
                },
                NOW,
                peer,
                None,
            ),
        }
        .unwrap();
        assert_eq!(a.carrier, Some(carrier));
        assert_eq!(a.cli_pub, t.cli_pub);
    }
    assert_eq!(
        v.admit(&TicketRequest::default(), NOW, peer, None),
        Err(Refusal::NoTicket)
    );
}

//! RTT from PING/echo timing on a link with a simulated one-way delay, on the virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use betanet_crypto::sign::SigningKey;
use betanet_htx::{Config, Connection, CoverConfig, HandshakeConfig, PqMode};
use betanet_testkit::VirtualClock;
use betanet_testkit::rng::seeded;

/// Two engines joined by a link that delivers every transmission `delay` after it was sent.
struct DelayedPair {
    clock: VirtualClock,
    client: Connection,
    server: Connection,
    c2s: VecDeque<(Instant, Vec<u8>)>,
    s2c: VecDeque<(Instant, Vec<u8>)>,
    delay: Duration,
}

impl DelayedPair {
    fn new(delay: Duration) -> DelayedPair {
        let clock = VirtualClock::new();
        let mut rng = seeded(11);
        let cfg = Config {
            cover: CoverConfig::off(),
            ..Config::default()
        };
        let hs = |s: u8| {
            let mut h = HandshakeConfig::new(SigningKey::from_seed(&[s; 32]), 1_780_000_000);
            h.pq = PqMode::Classic;
            h
        };
        let server_vk = SigningKey::from_seed(&[2; 32]).verifying_key();
        let client =
            Connection::client(cfg.clone(), hs(1), &server_vk, clock.now(), &mut rng).unwrap();
        let server = Connection::server(cfg, hs(2), clock.now(), &mut rng).unwrap();
        DelayedPair {
            clock,
            client,
            server,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            delay,
        }
    }

    /// Sends what both sides have, delivers what is due, then jumps to the next delivery;
    /// stops when nothing is in flight (bounded).
    fn run(&mut self) {
        for _ in 0..1000 {
            let now = self.clock.now();
            let mut out = Vec::new();
            if self.client.poll_transmit(now, &mut out, 1 << 20) > 0 {
                self.c2s
                    .push_back((now + self.delay, std::mem::take(&mut out)));
            }
            if self.server.poll_transmit(now, &mut out, 1 << 20) > 0 {
                self.s2c.push_back((now + self.delay, out));
            }
            let mut delivered = false;
            while self.c2s.front().is_some_and(|(t, _)| *t <= now) {
                let (_, b) = self.c2s.pop_front().unwrap();
                self.server.handle_input(&b, now);
                delivered = true;
            }
            while self.s2c.front().is_some_and(|(t, _)| *t <= now) {
                let (_, b) = self.s2c.pop_front().unwrap();
                self.client.handle_input(&b, now);
                delivered = true;
            }
            if delivered {
                // The receivers may answer at this same instant.
                continue;
            }
            let next = [self.c2s.front(), self.s2c.front()]
                .into_iter()
                .flatten()
                .map(|(t, _)| *t)
                .min();
            match next {
                Some(t) => self.clock.advance_to(t),
                None => return,
            }
        }
        panic!("the link did not settle");
    }
}

#[test]
fn rtt_equals_the_simulated_round_trip() {
    let one_way = Duration::from_millis(40);
    let mut p = DelayedPair::new(one_way);
    p.run();
    assert!(p.client.is_established() && p.server.is_established());
    assert_eq!(p.client.stats().rtt, None);
    assert_eq!(p.client.stats().srtt, None);

    // First sample: RTT and smoothed RTT are both the round trip.
    assert!(p.client.ping(p.clock.now()));
    p.run();
    let s = p.client.stats();
    assert_eq!(s.pings_sent, 1);
    assert_eq!(s.rtt, Some(2 * one_way));
    assert_eq!(s.srtt, Some(2 * one_way));

    // The link slows down: the latest sample follows at once, the smoothed value by 1/8.
    p.delay = Duration::from_millis(100);
    assert!(p.server.ping(p.clock.now()));
    assert!(p.client.ping(p.clock.now()));
    p.run();
    let s = p.client.stats();
    assert_eq!(s.rtt, Some(Duration::from_millis(200)));
    let srtt = s.srtt.unwrap().as_secs_f64();
    assert!(
        (srtt - (0.875 * 0.080 + 0.125 * 0.200)).abs() < 1e-6,
        "{srtt}"
    );
    // The server measured its own ping on the slow link.
    assert_eq!(p.server.stats().rtt, Some(Duration::from_millis(200)));
}

//! Two-engine harness on a virtual clock (quinn's `Pair` idea).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use betanet_crypto::sign::SigningKey;
use betanet_htx::{Config, Connection, Event, HandshakeConfig, PqMode, StreamId};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub const NOW_UNIX: u64 = 1_780_000_000;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

pub fn hs(seed: u8, pq: PqMode) -> HandshakeConfig {
    let mut h = HandshakeConfig::new(key(seed), NOW_UNIX);
    h.pq = pq;
    h
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    /// Bytes in flight client → server / server → client.
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    /// When false, bytes from the server are dropped (dead peer).
    pub deliver_s2c: bool,
    pub deliver_c2s: bool,
}

impl Pair {
    pub fn new(ccfg: Config, scfg: Config) -> Pair {
        Self::with(ccfg, scfg, PqMode::Classic, 7)
    }

    pub fn with(ccfg: Config, scfg: Config, pq: PqMode, seed: u64) -> Pair {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let server_key = key(2);
        let client =
            Connection::client(ccfg, hs(1, pq), &server_key.verifying_key(), now, &mut rng)
                .unwrap();
        let server = Connection::server(scfg, hs(2, pq), now, &mut rng).unwrap();
        Pair {
            client,
            server,
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            c2s: Vec::new(),
            s2c: Vec::new(),
            deliver_s2c: true,
            deliver_c2s: true,
        }
    }

    /// A pair with the handshake done.
    pub fn connected(ccfg: Config, scfg: Config) -> Pair {
        let mut p = Pair::new(ccfg, scfg);
        p.drive();
        assert!(p.client.is_established() && p.server.is_established());
        p
    }

    fn collect(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    /// Moves bytes both ways until nothing moves (bounded).
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let a = self
                .client
                .poll_transmit(self.now, &mut self.c2s, 256 * 1024);
            let b = self
                .server
                .poll_transmit(self.now, &mut self.s2c, 256 * 1024);
            if self.deliver_c2s && !self.c2s.is_empty() {
                let d = std::mem::take(&mut self.c2s);
                self.server.handle_input(&d, self.now);
            } else {
                self.c2s.clear();
            }
            if self.deliver_s2c && !self.s2c.is_empty() {
                let d = std::mem::take(&mut self.s2c);
                self.client.handle_input(&d, self.now);
            } else {
                self.s2c.clear();
            }
            self.collect();
            if a == 0 && b == 0 {
                return;
            }
        }
        panic!("drive did not settle");
    }

    /// Advances the virtual clock to `t`, firing timers on the way and driving after each.
    pub fn run_until(&mut self, t: Instant) {
        for _ in 0..1_000_000 {
            self.drive();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                _ => {
                    self.now = t;
                    self.drive();
                    return;
                }
            }
        }
        panic!("run_until did not finish");
    }

    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Reads everything available on a stream of `conn`.
    pub fn read_all(conn: &mut Connection, id: StreamId) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        loop {
            match conn.read(id, &mut buf) {
                Ok((0, fin)) => return (out, fin),
                Ok((n, fin)) => {
                    out.extend_from_slice(&buf[..n]);
                    if fin {
                        return (out, true);
                    }
                }
                Err(_) => return (out, false),
            }
        }
    }
}

pub fn quiet() -> Config {
    Config {
        cover: betanet_htx::CoverConfig::off(),
        ..Config::default()
    }
}

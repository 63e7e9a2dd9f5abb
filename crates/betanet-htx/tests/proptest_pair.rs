//! Random operation sequences on an engine pair: every byte written is delivered exactly
//! once, in order, on the right stream, whatever the interleaving of writes, reads, rekeys,
//! pings, resets and clock steps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use betanet_htx::{Config, CoverConfig, StreamId};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Open(bool),
    Write {
        side: bool,
        stream: usize,
        len: usize,
    },
    Finish {
        side: bool,
        stream: usize,
    },
    Read {
        side: bool,
        stream: usize,
        max: usize,
    },
    KeyUpdate(bool),
    Ping(bool),
    Drive,
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Open),
        (any::<bool>(), 0..8usize, 0..100_000usize).prop_map(|(side, stream, len)| Op::Write {
            side,
            stream,
            len
        }),
        (any::<bool>(), 0..8usize).prop_map(|(side, stream)| Op::Finish { side, stream }),
        (any::<bool>(), 0..8usize, 1..70_000usize).prop_map(|(side, stream, max)| Op::Read {
            side,
            stream,
            max
        }),
        any::<bool>().prop_map(Op::KeyUpdate),
        any::<bool>().prop_map(Op::Ping),
        Just(Op::Drive),
        (0..3000u64).prop_map(Op::Tick),
    ]
}

#[derive(Default)]
struct Track {
    sent: Vec<u8>,
    received: Vec<u8>,
    finished: bool,
    fin_seen: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]
    #[test]
    fn exactly_once_in_order(ops in proptest::collection::vec(op(), 1..80)) {
        let cfg = Config { rekey_frames: 8, max_frame_data: 5000, cover: CoverConfig::default(), ..Config::default() };
        let mut p = Pair::connected(cfg.clone(), cfg);
        // (opener is client?, id) in open order.
        let mut streams: Vec<(bool, StreamId)> = Vec::new();
        let mut track: HashMap<(bool, StreamId, bool), Track> = HashMap::new();
        let mut counter = 0u8;
        for o in ops {
            match o {
                Op::Open(side) => {
                    let c = if side { &mut p.client } else { &mut p.server };
                    let id = c.open_stream().unwrap();
                    streams.push((side, id));
                }
                Op::Write { side, stream, len } => {
                    if let Some(&(_, id)) = streams.get(stream) {
                        let c = if side { &mut p.client } else { &mut p.server };
                        let data: Vec<u8> = (0..len).map(|i| { counter = counter.wrapping_add(1); (i as u8) ^ counter }).collect();
                        let t = track.entry((side, id, true)).or_default();
                        if !t.finished && let Ok(n) = c.write(id, &data) {
                            t.sent.extend_from_slice(&data[..n]);
                        }
                    }
                }
                Op::Finish { side, stream } => {
                    if let Some(&(_, id)) = streams.get(stream) {
                        let c = if side { &mut p.client } else { &mut p.server };
                        if c.finish(id).is_ok() {
                            track.entry((side, id, true)).or_default().finished = true;
                        }
                    }
                }
                Op::Read { side, stream, max } => {
                    if let Some(&(_, id)) = streams.get(stream) {
                        let c = if side { &mut p.client } else { &mut p.server };
                        let mut buf = vec![0u8; max];
                        if let Ok((n, fin)) = c.read(id, &mut buf) {
                            // What `side` reads was written by the other side.
                            let t = track.entry((!side, id, true)).or_default();
                            t.received.extend_from_slice(&buf[..n]);
                            if fin { t.fin_seen = true; }
                        }
                    }
                }
                Op::KeyUpdate(side) => if side { p.client.key_update() } else { p.server.key_update() },
                Op::Ping(side) => { let now = p.now; if side { p.client.ping(now); } else { p.server.ping(now); } }
                Op::Drive => p.drive(),
                Op::Tick(ms) => p.advance(Duration::from_millis(ms)),
            }
        }
        // Drain everything: read all streams until no progress.
        for _ in 0..2000 {
            p.drive();
            let mut progress = false;
            for &(_, id) in &streams {
                for side in [true, false] {
                    let c = if side { &mut p.client } else { &mut p.server };
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok((n, fin)) = c.read(id, &mut buf) {
                        let t = track.entry((!side, id, true)).or_default();
                        t.received.extend_from_slice(&buf[..n]);
                        if fin { t.fin_seen = true; }
                        if n == 0 { break; }
                        progress = true;
                    }
                }
            }
            if !progress { break; }
        }
        prop_assert!(p.client.is_established(), "client closed: {:?}", p.client_events);
        prop_assert!(p.server.is_established(), "server closed: {:?}", p.server_events);
        for (k, t) in &track {
            prop_assert_eq!(t.received.len(), t.sent.len(), "stream {:?}", k);
            prop_assert!(t.received == t.sent, "stream {:?} corrupted", k);
            prop_assert_eq!(t.fin_seen, t.finished, "fin on {:?}", k);
        }
    }
}

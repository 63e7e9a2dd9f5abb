//! The zero-copy input path (`take_input_buffer` / `handle_input_owned`): frames cut out of
//! the lent receive buffer at arbitrary read boundaries, small and large frames, interleaved
//! with unread data, give exactly the bytes that were written.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use betanet_htx::Connection;
use common::*;
use proptest::prelude::*;

/// Moves `wire` into `to` in reads of the given sizes, through the lent buffer (as the tokio
/// driver does).
fn deliver(to: &mut Connection, wire: &[u8], cuts: &[usize], now: std::time::Instant) {
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts[i % cuts.len()].clamp(1, rest.len());
        i += 1;
        let mut buf = to.take_input_buffer();
        buf.extend_from_slice(&rest[..n]);
        to.handle_input_owned(buf, now);
        rest = &rest[n..];
    }
}

fn run(writes: &[usize], cuts: &[usize], read_every: usize) {
    let mut p = Pair::connected(quiet(), quiet());
    let id = p.client.open_stream().unwrap();
    let data: Vec<u8> = (0..writes.iter().sum::<usize>())
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let mut written = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 100_000];
    let before = p.server.stats().bytes_received;
    let mut wire_total = 0u64;
    for (k, &w) in writes.iter().enumerate() {
        let mut off = 0;
        // Bounded: credit comes back as the server reads.
        for _ in 0..10_000 {
            if off == w {
                break;
            }
            let n = p
                .client
                .write(id, &data[written + off..written + w])
                .unwrap();
            off += n;
            let mut wire = Vec::new();
            p.client.poll_transmit(p.now, &mut wire, 1 << 20);
            wire_total += wire.len() as u64;
            deliver(&mut p.server, &wire, cuts, p.now);
            if n == 0 || k % read_every == 0 {
                loop {
                    let (r, _) = p.server.read(id, &mut buf).unwrap_or((0, false));
                    if r == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..r]);
                }
                let mut back = Vec::new();
                p.server.poll_transmit(p.now, &mut back, 1 << 20);
                p.client.handle_input(&back, p.now);
            }
        }
        written += w;
    }
    p.client.finish(id).unwrap();
    let mut wire = Vec::new();
    p.client.poll_transmit(p.now, &mut wire, 1 << 20);
    wire_total += wire.len() as u64;
    deliver(&mut p.server, &wire, cuts, p.now);
    loop {
        let (r, fin) = p.server.read(id, &mut buf).unwrap();
        got.extend_from_slice(&buf[..r]);
        if fin {
            break;
        }
        assert!(r > 0, "stalled after {} of {} bytes", got.len(), data.len());
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data, "payload differs");
    // Lent bytes are not counted twice.
    assert_eq!(p.server.stats().bytes_received - before, wire_total);
}

#[test]
fn large_writes_arbitrary_reads() {
    run(
        &[300_000, 65_498, 1, 70_000, 5, 1 << 20],
        &[1, 9, 65_535, 200_000, 3000],
        2,
    );
}

#[test]
fn small_frames_unread_for_a_while() {
    run(&[10; 300], &[7, 33, 1024], 50);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_cuts(
        writes in proptest::collection::vec(1usize..150_000, 1..6),
        cuts in proptest::collection::vec(1usize..140_000, 1..5),
        read_every in 1usize..4,
    ) {
        run(&writes, &cuts, read_every);
    }
}

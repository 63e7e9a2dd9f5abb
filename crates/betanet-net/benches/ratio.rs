//! Interleaved goodput comparison that tolerates a noisy machine: each round measures the AEAD
//! ceiling, one `tcp12` and one `tls` single-stream transfer and a plain rustls transfer back to
//! back; the best of the rounds is reported with the ratios.
//!
//! `cargo bench -p betanet-net --bench ratio`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use betanet_net::Transport;
use common::*;

fn mibs(d: Duration) -> f64 {
    (TRANSFER / MIB) as f64 / d.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let rt = rt();
    if std::env::var("BETANET_RATIO_ONLY").is_ok_and(|v| v == "tcp12") {
        let (c, s) = rt.block_on(pair(Transport::Tcp12));
        let best = (0..10)
            .map(|_| rt.block_on(one_stream(&c, &s)))
            .min()
            .unwrap_or_default();
        println!("tcp12 single stream best of 10: {:.0} MiB/s", mibs(best));
        let (cs, ss) = (c.stats().htx, s.stats().htx);
        println!(
            "frames {} / {}, buffers allocated {} / {}, reused {} / {}",
            cs.frames_sent,
            ss.frames_received,
            cs.buffer_allocs,
            ss.buffer_allocs,
            cs.buffer_reuses,
            ss.buffer_reuses
        );
        return;
    }
    let (c12, s12) = rt.block_on(pair(Transport::Tcp12));
    let (ctls, stls) = rt.block_on(pair(Transport::Tls));
    let (mut plain, srv) = rt.block_on(plain_tls_pair());
    let mut best = [Duration::MAX; 5];
    for _ in 0..7 {
        best[0] = best[0].min(seal_ceiling());
        best[1] = best[1].min(seal_open_ceiling());
        best[2] = best[2].min(rt.block_on(one_stream(&c12, &s12)));
        best[3] = best[3].min(rt.block_on(one_stream(&ctls, &stls)));
        best[4] = best[4].min(rt.block_on(plain_tls_transfer(&mut plain)));
    }
    drop(plain);
    let _ = rt.block_on(srv);
    let [seal, seal_open, t12, ttls, tplain] = best.map(mibs);
    println!("best of 7 rounds, {} MiB each:", TRANSFER / MIB);
    println!("  AEAD ceiling (seal 64 KiB frames, 1 core)     {seal:8.0} MiB/s");
    println!("  AEAD seal+open on 1 core                      {seal_open:8.0} MiB/s");
    println!(
        "  HTX tcp12 single stream                       {t12:8.0} MiB/s  = {:.0} % of seal ceiling, {:.0} % of seal+open",
        100.0 * t12 / seal,
        100.0 * t12 / seal_open
    );
    println!(
        "  HTX tls (TLS 1.3 + HTTP/2) single stream      {ttls:8.0} MiB/s  = {:.0} % of seal ceiling, {:.0} % of plain rustls",
        100.0 * ttls / seal,
        100.0 * ttls / tplain
    );
    println!("  plain rustls TLS 1.3 (default suite)          {tplain:8.0} MiB/s");
}

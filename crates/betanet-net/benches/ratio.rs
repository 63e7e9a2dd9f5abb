//! Interleaved goodput comparison that tolerates a noisy machine: each round measures the AEAD
//! ceiling, one `tcp12` and one `tls` single-stream transfer and a plain rustls transfer back to
//! back; the medians of the rounds are reported with the ratios (best in brackets).
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
    // Profiling aid: `BETANET_RATIO_ONLY=tcp12` (or `tls`) runs only that transfer 10 times.
    if let Ok(only) = std::env::var("BETANET_RATIO_ONLY") {
        let t = if only == "tls" {
            Transport::Tls
        } else {
            Transport::Tcp12
        };
        let (c, s) = rt.block_on(pair(t));
        let best = (0..10)
            .map(|_| rt.block_on(one_stream(&c, &s)))
            .min()
            .unwrap_or_default();
        println!("{only} single stream best of 10: {:.0} MiB/s", mibs(best));
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
    let rounds: usize = std::env::var("BETANET_RATIO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let (c12, s12) = rt.block_on(pair(Transport::Tcp12));
    let (ctls, stls) = rt.block_on(pair(Transport::Tls));
    let (mut plain, srv) = rt.block_on(plain_tls_pair());
    // All rows in every round, interleaved, so that load from other processes hits them alike.
    let mut rows: [Vec<f64>; 5] = Default::default();
    for _ in 0..rounds {
        rows[0].push(mibs(seal_ceiling()));
        rows[1].push(mibs(seal_open_ceiling()));
        rows[2].push(mibs(rt.block_on(one_stream(&c12, &s12))));
        rows[3].push(mibs(rt.block_on(one_stream(&ctls, &stls))));
        rows[4].push(mibs(rt.block_on(plain_tls_transfer(&mut plain))));
    }
    drop(plain);
    let _ = rt.block_on(srv);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let best = |v: &Vec<f64>| v.iter().copied().fold(0.0, f64::max);
    let [seal, seal_open, t12, ttls, tplain] = rows.clone().map(|mut v| median(&mut v));
    println!(
        "median of {rounds} interleaved rounds, {} MiB each (best in brackets):",
        TRANSFER / MIB
    );
    let b = |i: usize| best(&rows[i]);
    println!(
        "  AEAD ceiling (seal 64 KiB frames, 1 core)     {seal:8.0} MiB/s  [{:.0}]",
        b(0)
    );
    println!(
        "  AEAD seal+open on 1 core                      {seal_open:8.0} MiB/s  [{:.0}]",
        b(1)
    );
    println!(
        "  HTX tcp12 single stream                       {t12:8.0} MiB/s  [{:.0}]  = {:.0} % of seal ceiling, {:.0} % of seal+open",
        b(2),
        100.0 * t12 / seal,
        100.0 * t12 / seal_open
    );
    println!(
        "  HTX tls (TLS 1.3 + HTTP/2) single stream      {ttls:8.0} MiB/s  [{:.0}]  = {:.0} % of seal ceiling, {:.0} % of seal+open, {:.0} % of plain rustls",
        b(3),
        100.0 * ttls / seal,
        100.0 * ttls / seal_open,
        100.0 * ttls / tplain
    );
    println!(
        "  plain rustls TLS 1.3 (default suite)          {tplain:8.0} MiB/s  [{:.0}]",
        b(4)
    );
    // Per-round ratios (same round), median: robust against load that moves between rounds.
    let mut r12: Vec<f64> = (0..rounds).map(|i| rows[2][i] / rows[1][i]).collect();
    let mut rtls: Vec<f64> = (0..rounds).map(|i| rows[3][i] / rows[4][i]).collect();
    println!(
        "  per-round ratio medians: tcp12 / seal+open {:.0} %, tls / plain rustls {:.0} %",
        100.0 * median(&mut r12),
        100.0 * median(&mut rtls)
    );
}

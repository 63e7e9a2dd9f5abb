//! Governance tally over a generated population of 10 000 nodes.
#![allow(missing_docs)]

use betanet_trust::governance::{DAY_MS, Node, Params, PartitionSample};
use betanet_trust::tally::{AckInput, TallyInput, tally_report};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

const NOW: u64 = 1_800_000_000_000;

fn population(n: usize, seed: u64) -> TallyInput {
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node {
            id: format!("node-{i:05}"),
            uptime_seconds: rng.gen_range(0..400 * 86_400),
            staked_sat: rng.gen_range(0..50_000_000),
            as_group: format!("AS{}", rng.gen_range(0..600)),
            org: format!("org{}", rng.gen_range(0..80)),
            isd: format!("{}", rng.gen_range(1..12)),
            last_seen_ms: NOW - rng.gen_range(0..20 * DAY_MS),
        })
        .collect();
    let mut acks = Vec::new();
    for n in &nodes {
        if rng.gen_bool(0.8) {
            acks.push(AckInput {
                node: n.id.clone(),
                path_classes: vec![["scion", "ip", "mesh"][rng.gen_range(0..3)].to_owned()],
            });
        }
    }
    TallyInput {
        now_ms: Some(NOW),
        params: Params::default(),
        nodes,
        acks,
        partition: (0..14)
            .map(|d| PartitionSample {
                ts_ms: NOW - d * DAY_MS / 2,
                degradation: 0.03,
            })
            .collect(),
        activation: None,
    }
}

fn bench(c: &mut Criterion) {
    let input = population(10_000, 42);
    let r = tally_report(&input, NOW);
    println!("{r}");
    c.bench_function("tally_report_10k_nodes", |b| {
        b.iter(|| tally_report(black_box(&input), NOW))
    });
    // a skewed population: 30 % of the nodes in one AS and 40 % in one organisation
    let mut skewed = population(10_000, 7);
    for (i, n) in skewed.nodes.iter_mut().enumerate() {
        if i % 10 < 3 {
            n.as_group = "AS-big".into();
        }
        if i % 10 >= 6 {
            n.org = "org-big".into();
        }
    }
    let r = tally_report(&skewed, NOW);
    println!("{r}");
    c.bench_function("tally_report_10k_nodes_capped", |b| {
        b.iter(|| tally_report(black_box(&skewed), NOW))
    });
    c.bench_function("tally_report_10k_nodes_with_display", |b| {
        b.iter(|| tally_report(black_box(&input), NOW).to_string())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

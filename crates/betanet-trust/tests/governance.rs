//! Governance weights, caps, the pass rule, activation and the tally front end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_trust::governance::{
    Ack, Activation, DAY_MS, Failure, Node, Params, PartitionSample, activation_status,
    compute_weights, evaluate, uptime_score, vote_weight_raw,
};
use betanet_trust::tally::{TallyInput, tally_report};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000_000;

fn node(i: usize, as_group: String, org: String, isd: String) -> Node {
    Node {
        id: format!("n{i}"),
        uptime_seconds: 30 * 86_400,
        staked_sat: 100_000,
        as_group,
        org,
        isd,
        last_seen_ms: NOW - DAY_MS,
    }
}

/// `n` equal-weight nodes over `ases` AS groups, 5 orgs, 3 ISDs.
fn population(n: usize, ases: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            node(
                i,
                format!("AS{}", i % ases),
                format!("org{}", i % 5),
                format!("{}", i % 3),
            )
        })
        .collect()
}

fn acks(nodes: impl IntoIterator<Item = usize>) -> Vec<Ack> {
    nodes
        .into_iter()
        .map(|i| Ack {
            node: i,
            path_classes: vec![if i % 2 == 0 { "scion" } else { "ip" }.into()],
        })
        .collect()
}

fn healthy() -> Vec<PartitionSample> {
    vec![PartitionSample {
        ts_ms: NOW - DAY_MS,
        degradation: 0.05,
    }]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn uptime_and_raw_weight_formulas() {
    assert_eq!(uptime_score(0), 0.0);
    assert!(close(uptime_score(86_400), 1.0));
    assert!(close(uptime_score(3 * 86_400), 2.0));
    assert!(close(uptime_score(u64::MAX), 16.0));
    // log2(1 + d) = 16 at d = 65535 days
    assert!(close(uptime_score(65_535 * 86_400), 16.0));
    assert!(uptime_score(65_534 * 86_400) < 16.0);
    assert!(close(vote_weight_raw(86_400, 9_000), 2.0));
    assert!(close(vote_weight_raw(0, 0), 0.0));
    assert!(close(vote_weight_raw(0, 999_000), 3.0));
}

#[test]
fn full_population_passes() {
    let nodes = population(100, 25);
    let v = evaluate(&nodes, &acks(0..100), &healthy(), NOW, &Params::default());
    assert!(v.passed(), "{:?}", v.failures);
    assert_eq!(v.ack_as_groups, 25);
    assert_eq!(v.ack_isds, 3);
    assert_eq!(v.path_classes, 2);
}

#[test]
fn quorum_edge_67_percent() {
    let nodes = population(100, 25);
    let v = evaluate(&nodes, &acks(0..67), &healthy(), NOW, &Params::default());
    assert!(v.passed(), "exactly 67 %: {:?}", v.failures);
    let v = evaluate(&nodes, &acks(0..66), &healthy(), NOW, &Params::default());
    assert!(matches!(v.failures.first(), Some(Failure::Quorum { .. })));
    assert_eq!(v.failures.len(), 1, "{:?}", v.failures);
}

#[test]
fn duplicate_acks_count_once() {
    let nodes = population(100, 25);
    let mut a = acks(0..66);
    a.extend(acks(0..10));
    let v = evaluate(&nodes, &a, &healthy(), NOW, &Params::default());
    assert_eq!(v.ack_count, 66);
    assert!(!v.passed());
}

#[test]
fn inactive_nodes_are_not_counted() {
    let mut nodes = population(100, 25);
    // 40 nodes last seen 14 days + 1 ms ago: inactive
    for n in nodes.iter_mut().skip(60) {
        n.last_seen_ms = NOW - 14 * DAY_MS - 1;
    }
    // exactly 14 days ago: still active
    nodes[0].last_seen_ms = NOW - 14 * DAY_MS;
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert_eq!(w.active_nodes, 60);
    // 41 of 60 active = 68.3 % (ACKs from inactive nodes are ignored)
    let v = evaluate(
        &nodes,
        &acks((0..41).chain(60..100)),
        &healthy(),
        NOW,
        &Params::default(),
    );
    assert_eq!(v.ack_count, 41);
    assert!(
        !v.failures
            .iter()
            .any(|f| matches!(f, Failure::Quorum { .. })),
        "{:?}",
        v.failures
    );
}

#[test]
fn as_cap_exactly_20_percent_is_not_capped() {
    // 125 equal nodes: AS "big" holds 25 = exactly 20 %; the rest in 100 single-node ASes.
    let mut nodes: Vec<Node> = (0..125)
        .map(|i| {
            let asg = if i < 25 {
                "big".into()
            } else {
                format!("AS{i}")
            };
            node(i, asg, format!("org{}", i % 5), format!("{}", i % 3))
        })
        .collect();
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert!(w.as_caps.is_empty(), "{:?}", w.as_caps);
    assert!(close(w.active_total, w.raw_total));
    // one more node in "big": 26/126 > 20 % -> capped to exactly 20 % of the raw total
    nodes.push(node(125, "big".into(), "org0".into(), "0".into()));
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert_eq!(w.as_caps.len(), 1);
    let cap = &w.as_caps[0];
    assert_eq!(cap.group, "big");
    assert!(close(cap.after, 0.2 * w.active_total));
    assert!(w.active_total < w.raw_total);
    let big: f64 = nodes
        .iter()
        .zip(&w.per_node)
        .filter(|(n, _)| n.as_group == "big")
        .map(|(_, c)| c.unwrap())
        .sum();
    assert!(
        close(big, 0.2 * w.active_total),
        "AS holds exactly 20 % of the capped total"
    );
}

#[test]
fn water_filling_is_exact() {
    // AS weights 50, 10, 10, 10, 10, 10 (one node each, equal raw weight per unit): the big
    // AS must end at exactly 20 % of the new total: C = 0.2 (50 + C)... with the others 50:
    // C = 0.2 * (C + 50) -> C = 12.5.
    let mut nodes = Vec::new();
    let mut i = 0;
    for (asg, count) in [("big", 5), ("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)] {
        for _ in 0..count {
            nodes.push(node(i, asg.into(), format!("org{i}"), "1".into()));
            i += 1;
        }
    }
    let w = compute_weights(&nodes, NOW, &Params::default());
    let unit = w.raw_total / 10.0;
    let cap = &w.as_caps[0];
    assert_eq!(cap.group, "big");
    assert!(
        close(cap.after, 1.25 * unit),
        "{} vs {}",
        cap.after,
        1.25 * unit
    );
    assert!(close(w.active_total, 6.25 * unit));
    assert!(w.as_cap_feasible);
}

#[test]
fn as_cap_with_too_few_groups_is_infeasible() {
    let nodes: Vec<Node> = (0..8)
        .map(|i| node(i, format!("AS{}", i % 4), format!("org{i}"), "1".into()))
        .collect();
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert!(!w.as_cap_feasible);
    // five equal groups are exactly feasible: nothing to cap
    let nodes: Vec<Node> = (0..10)
        .map(|i| node(i, format!("AS{}", i % 5), format!("org{i}"), "1".into()))
        .collect();
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert!(w.as_cap_feasible);
    assert!(w.as_caps.is_empty());
}

#[test]
fn org_cap_25_percent() {
    // org "mega" holds 40 of 100 nodes
    let nodes: Vec<Node> = (0..100)
        .map(|i| {
            let org = if i < 40 {
                "mega".into()
            } else {
                format!("org{}", i % 4)
            };
            node(i, format!("AS{}", i % 25), org, format!("{}", i % 3))
        })
        .collect();
    let w = compute_weights(&nodes, NOW, &Params::default());
    assert_eq!(w.org_caps.len(), 1);
    assert_eq!(w.org_caps[0].group, "mega");
    assert!(close(w.org_caps[0].after, 0.25 * w.active_total));
    assert!(w.org_cap_feasible && w.as_cap_feasible);
}

#[test]
fn ack_share_limits() {
    // 25 ASes of 4 nodes; ACKs from all nodes of 24 ASes except that one AS gets extra weight
    let nodes = population(100, 25);
    // ACK set where AS0 has exactly 20 % of ACK weight: AS0's 4 nodes + 16 others from 16 ASes
    // gives 4/20 = 20 % but only 17 AS groups; use the diversity-free params to isolate it.
    let p = Params {
        min_as_groups: 1,
        quorum: 0.0,
        ..Params::default()
    };
    let as0: Vec<usize> = (0..100).filter(|i| i % 25 == 0).collect();
    let others: Vec<usize> = (0..100).filter(|i| i % 25 != 0).take(16).collect();
    let v = evaluate(
        &nodes,
        &acks(as0.iter().copied().chain(others.iter().copied())),
        &healthy(),
        NOW,
        &p,
    );
    let (g, s) = v.max_as_share.clone().unwrap();
    assert_eq!(g, "AS0");
    assert!(close(s, 0.2));
    assert!(
        !v.failures
            .iter()
            .any(|f| matches!(f, Failure::AsAckShare { .. })),
        "{:?}",
        v.failures
    );
    // one fewer other node: 4/19 > 20 %
    let v = evaluate(
        &nodes,
        &acks(as0.iter().copied().chain(others.iter().copied().take(15))),
        &healthy(),
        NOW,
        &p,
    );
    assert!(
        v.failures
            .iter()
            .any(|f| matches!(f, Failure::AsAckShare { group, .. } if group == "AS0"))
    );
}

#[test]
fn diversity_rules() {
    // 23 AS groups only
    let nodes = population(92, 23);
    let v = evaluate(&nodes, &acks(0..92), &healthy(), NOW, &Params::default());
    assert!(
        v.failures
            .contains(&Failure::AsDiversity { have: 23, need: 24 })
    );
    // exactly 24 passes that rule
    let nodes = population(96, 24);
    let v = evaluate(&nodes, &acks(0..96), &healthy(), NOW, &Params::default());
    assert!(v.passed(), "{:?}", v.failures);
    // two ISDs
    let mut nodes = population(100, 25);
    for n in &mut nodes {
        if n.isd == "2" {
            n.isd = "1".into();
        }
    }
    let v = evaluate(&nodes, &acks(0..100), &healthy(), NOW, &Params::default());
    assert!(
        v.failures
            .contains(&Failure::IsdDiversity { have: 2, need: 3 })
    );
}

#[test]
fn weightless_acks_do_not_add_diversity() {
    // 92 real nodes in 23 AS groups + one weightless node in a 24th AS
    let mut nodes = population(92, 23);
    let mut ghost = node(92, "AS-ghost".into(), "org0".into(), "0".into());
    ghost.uptime_seconds = 0;
    ghost.staked_sat = 0;
    nodes.push(ghost);
    let v = evaluate(&nodes, &acks(0..93), &healthy(), NOW, &Params::default());
    assert_eq!(v.ack_count, 93);
    assert!(
        v.failures
            .contains(&Failure::AsDiversity { have: 23, need: 24 })
    );
}

#[test]
fn path_classes_rule() {
    let nodes = population(100, 25);
    let one: Vec<Ack> = (0..100)
        .map(|i| Ack {
            node: i,
            path_classes: vec!["ip".into()],
        })
        .collect();
    let v = evaluate(&nodes, &one, &healthy(), NOW, &Params::default());
    assert_eq!(v.failures, vec![Failure::PathClasses { have: 1, need: 2 }]);
}

#[test]
fn partition_check() {
    let nodes = population(100, 25);
    let a = acks(0..100);
    let at = |d: f64, ts: u64| {
        vec![PartitionSample {
            ts_ms: ts,
            degradation: d,
        }]
    };
    assert!(evaluate(&nodes, &a, &at(0.20, NOW - DAY_MS), NOW, &Params::default()).passed());
    let v = evaluate(
        &nodes,
        &a,
        &at(0.2001, NOW - DAY_MS),
        NOW,
        &Params::default(),
    );
    assert!(matches!(
        v.failures[..],
        [Failure::PartitionDegraded { .. }]
    ));
    // a bad sample older than 7 days does not count, but then nothing was measured
    let v = evaluate(
        &nodes,
        &a,
        &at(0.9, NOW - 7 * DAY_MS - 1),
        NOW,
        &Params::default(),
    );
    assert_eq!(v.failures, vec![Failure::PartitionUnmeasured]);
    assert!(
        evaluate(
            &nodes,
            &a,
            &at(0.1, NOW - 7 * DAY_MS),
            NOW,
            &Params::default()
        )
        .passed()
    );
}

#[test]
fn activation_schedule() {
    let p = NOW;
    let planned = p + 30 * DAY_MS;
    let daily = |fail_days: &[u64], upto: u64| -> Vec<(u64, bool)> {
        (1..=upto)
            .map(|d| (p + d * DAY_MS, !fail_days.contains(&d)))
            .collect()
    };
    // all good: active exactly at +30 d
    assert_eq!(
        activation_status(p, &daily(&[], 31), p + 31 * DAY_MS),
        Activation::Active { at_ms: planned }
    );
    // before then: scheduled
    assert_eq!(
        activation_status(p, &daily(&[], 10), p + 10 * DAY_MS),
        Activation::Scheduled { at_ms: planned }
    );
    // a failure more than 7 days before activation (day 20), recovered on day 21: on time
    assert_eq!(
        activation_status(p, &daily(&[20], 31), p + 31 * DAY_MS),
        Activation::Active { at_ms: planned }
    );
    // a failure within the last 7 days (day 25): deferred until 7 days after recovery (26 + 7)
    assert_eq!(
        activation_status(p, &daily(&[25], 29), p + 29 * DAY_MS),
        Activation::Deferred {
            earliest_ms: Some(p + 33 * DAY_MS)
        }
    );
    assert_eq!(
        activation_status(p, &daily(&[25], 40), p + 40 * DAY_MS),
        Activation::Active {
            at_ms: p + 33 * DAY_MS
        }
    );
    // failing right now near activation
    assert_eq!(
        activation_status(p, &daily(&[28, 29], 29), p + 29 * DAY_MS),
        Activation::Deferred { earliest_ms: None }
    );
    // failure exactly 7 days before planned activation (day 23) defers too
    assert!(matches!(
        activation_status(p, &daily(&[23], 29), p + 29 * DAY_MS),
        Activation::Deferred { .. }
    ));
}

#[test]
fn tally_json_report() {
    let nodes = population(100, 25);
    let input = TallyInput {
        now_ms: Some(NOW),
        params: Params::default(),
        nodes: nodes.clone(),
        acks: (0..100)
            .map(|i| betanet_trust::tally::AckInput {
                node: format!("n{i}"),
                path_classes: vec!["scion".into(), "ip".into()],
            })
            .collect(),
        partition: healthy(),
        activation: None,
    };
    let json = serde_json::to_string(&input).unwrap();
    let back = TallyInput::from_json(&json).unwrap();
    assert_eq!(back, input);
    let r = tally_report(&back, 0);
    assert!(r.passed());
    let text = r.to_string();
    assert!(text.contains("verdict: PASS"), "{text}");
    assert!(text.contains("caps applied: none"), "{text}");

    // too few ACKs, an unknown node
    let mut bad = input.clone();
    bad.acks.truncate(50);
    let r = tally_report(&bad, 0);
    let text = r.to_string();
    assert!(text.contains("verdict: FAIL (quorum"), "{text}");
    bad.acks.push(betanet_trust::tally::AckInput {
        node: "ghost".into(),
        path_classes: vec![],
    });
    let r = tally_report(&bad, 0);
    assert!(!r.passed());
    assert!(r.to_string().contains("ACK from unknown node \"ghost\""));
    // unknown fields are rejected
    assert!(TallyInput::from_json(r#"{"nodes": [], "nodez": 1}"#).is_err());
    // a minimal document
    let r = tally_report(&TallyInput::from_json(r#"{"nodes": []}"#).unwrap(), NOW);
    assert!(!r.passed());
}

proptest! {
    #[test]
    fn caps_hold_for_random_populations(
        spec in proptest::collection::vec((0u64..10_000_000, 0u64..10_000_000_000, 0usize..8, 0usize..6), 60..200)
    ) {
        // every one of the 8 AS groups and 6 orgs present (so both caps are feasible)
        let nodes: Vec<Node> = spec.iter().enumerate().map(|(i, (up, st, a, o))| Node {
            id: format!("n{i}"),
            uptime_seconds: *up,
            staked_sat: *st,
            as_group: format!("AS{}", if i < 8 { i } else { *a }),
            org: format!("org{}", if i < 6 { i } else { *o }),
            isd: "1".into(),
            last_seen_ms: NOW,
        }).collect();
        let w = compute_weights(&nodes, NOW, &Params::default());
        let tol = 1e-6 * w.raw_total.max(1.0);
        prop_assert!(w.as_cap_feasible && w.org_cap_feasible);
        let mut per_as = std::collections::HashMap::new();
        let mut per_org = std::collections::HashMap::new();
        for (n, c) in nodes.iter().zip(&w.per_node) {
            let c = c.unwrap();
            prop_assert!(c >= 0.0);
            *per_as.entry(&n.as_group).or_insert(0.0) += c;
            *per_org.entry(&n.org).or_insert(0.0) += c;
        }
        for v in per_as.values() { prop_assert!(*v <= 0.2 * w.active_total + tol, "AS {} of {}", v, w.active_total); }
        for v in per_org.values() { prop_assert!(*v <= 0.25 * w.active_total + tol, "org {} of {}", v, w.active_total); }
        prop_assert!(w.active_total <= w.raw_total + tol);
    }
}

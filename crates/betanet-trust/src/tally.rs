//! `betanet governance tally FILE`: the JSON input schema and a printable report.
//!
//! ```json
//! {
//!   "now_ms": 1767225600000,
//!   "params": { "quorum": 0.67 },
//!   "nodes": [ { "id": "n1", "uptime_seconds": 864000, "staked_sat": 50000,
//!                "as": "AS64500", "org": "acme", "isd": "1", "last_seen_ms": 1767225000000 } ],
//!   "acks": [ { "node": "n1", "path_classes": ["scion", "ip"] } ],
//!   "partition": [ { "ts_ms": 1767000000000, "degradation": 0.05 } ],
//!   "activation": { "passed_at_ms": 1764000000000, "evaluations": [[1764086400000, true]] }
//! }
//! ```
//! `now_ms`, `params`, `acks`, `partition` and `activation` are optional; unknown fields are
//! rejected so that a typo does not silently change a verdict.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::error::TrustError;
use crate::governance::{
    self, Ack, Activation, Node, Params, PartitionSample, Verdict, activation_status,
};

/// An ACK in the JSON input: the node's `id` and the path classes it was seen over.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckInput {
    /// The `id` of a node in `nodes`.
    pub node: String,
    /// Labels of the disjoint path classes the ACK was observed over.
    #[serde(default)]
    pub path_classes: Vec<String>,
}

/// Activation tracking of a proposal that already passed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationInput {
    /// When the proposal passed (ms).
    pub passed_at_ms: u64,
    /// Re-evaluations of the criteria: `[time_ms, held]`.
    #[serde(default)]
    pub evaluations: Vec<(u64, bool)>,
}

/// The whole tally input.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyInput {
    /// Evaluation time; when absent the caller's `now` is used.
    #[serde(default)]
    pub now_ms: Option<u64>,
    /// Threshold overrides (defaults are SPEC §11).
    #[serde(default)]
    pub params: Params,
    /// The population.
    pub nodes: Vec<Node>,
    /// ACKs of the proposal.
    #[serde(default)]
    pub acks: Vec<AckInput>,
    /// Partition measurements.
    #[serde(default)]
    pub partition: Vec<PartitionSample>,
    /// Optional activation tracking.
    #[serde(default)]
    pub activation: Option<ActivationInput>,
}

impl TallyInput {
    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, TrustError> {
        Ok(serde_json::from_str(text)?)
    }
}

/// The result of a tally, printable with `Display`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The time the tally was evaluated at.
    pub now_ms: u64,
    /// Problems in the input (unknown or duplicate node ids). Any makes the verdict FAIL.
    pub input_errors: Vec<String>,
    /// The verdict of the pass rule.
    pub verdict: Verdict,
    /// Activation status, when the input tracked one.
    pub activation: Option<Activation>,
    node_labels: Vec<(String, String)>,
}

impl Report {
    /// True when the input was consistent and every rule held.
    pub fn passed(&self) -> bool {
        self.input_errors.is_empty() && self.verdict.passed()
    }
}

/// Tallies `input` at `input.now_ms` (or `now_ms` when the input has none).
pub fn tally_report(input: &TallyInput, now_ms: u64) -> Report {
    let now_ms = input.now_ms.unwrap_or(now_ms);
    let mut input_errors = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(input.nodes.len());
    for (i, n) in input.nodes.iter().enumerate() {
        if index.insert(n.id.as_str(), i).is_some() {
            input_errors.push(format!("duplicate node id {:?}", n.id));
        }
    }
    let mut acks = Vec::with_capacity(input.acks.len());
    let mut seen = HashSet::new();
    for a in &input.acks {
        match index.get(a.node.as_str()) {
            Some(&i) => {
                if !seen.insert(i) {
                    input_errors.push(format!("node {:?} ACKed more than once", a.node));
                }
                acks.push(Ack {
                    node: i,
                    path_classes: a.path_classes.clone(),
                });
            }
            None => input_errors.push(format!("ACK from unknown node {:?}", a.node)),
        }
    }
    for p in &input.partition {
        if !(0.0..=1.0).contains(&p.degradation) {
            input_errors.push(format!(
                "partition degradation {} at {} is not in [0, 1]",
                p.degradation, p.ts_ms
            ));
        }
    }
    let verdict =
        governance::evaluate(&input.nodes, &acks, &input.partition, now_ms, &input.params);
    let activation = input
        .activation
        .as_ref()
        .map(|a| activation_status(a.passed_at_ms, &a.evaluations, now_ms));
    Report {
        now_ms,
        input_errors,
        verdict,
        activation,
        node_labels: input
            .nodes
            .iter()
            .map(|n| (n.as_group.clone(), n.org.clone()))
            .collect(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verdict;
        let w = &v.weights;
        writeln!(f, "governance tally at {} ms", self.now_ms)?;
        writeln!(
            f,
            "  nodes active (14 d): {} of {}",
            w.active_nodes,
            w.per_node.len()
        )?;
        writeln!(f, "  raw weight total:    {:.4}", w.raw_total)?;
        writeln!(f, "  active weight (capped): {:.4}", w.active_total)?;
        if w.as_caps.is_empty() && w.org_caps.is_empty() {
            writeln!(f, "  caps applied: none")?;
        }
        if !w.as_cap_feasible {
            writeln!(
                f,
                "  AS cap infeasible (fewer than 5 AS groups): AS weights equalised"
            )?;
        }
        if !w.org_cap_feasible {
            writeln!(
                f,
                "  org cap infeasible (fewer than 4 organisations): org weights equalised"
            )?;
        }
        for c in &w.as_caps {
            writeln!(
                f,
                "  AS cap 20 %: {} {:.4} -> {:.4}",
                c.group, c.before, c.after
            )?;
        }
        for c in &w.org_caps {
            writeln!(
                f,
                "  org cap 25 %: {} {:.4} -> {:.4}",
                c.group, c.before, c.after
            )?;
        }
        // top groups by capped weight
        let mut as_tot: HashMap<&str, f64> = HashMap::new();
        for ((a, _), c) in self.node_labels.iter().zip(&w.per_node) {
            if let Some(c) = c {
                *as_tot.entry(a.as_str()).or_insert(0.0) += c;
            }
        }
        let mut top: Vec<(&str, f64)> = as_tot.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        for (g, c) in top.iter().take(5) {
            let share = if w.active_total > 0.0 {
                c / w.active_total * 100.0
            } else {
                0.0
            };
            writeln!(f, "  top AS {g}: {c:.4} ({share:.2} % of active weight)")?;
        }
        writeln!(
            f,
            "  ACKs: {} counted, weight {:.4}, needed {:.4} ({:.2} % of active weight)",
            v.ack_count,
            v.ack_weight,
            v.needed_weight,
            if w.active_total > 0.0 {
                v.ack_weight / w.active_total * 100.0
            } else {
                0.0
            }
        )?;
        writeln!(
            f,
            "  ACK spread: {} AS groups, {} ISDs, {} path classes",
            v.ack_as_groups, v.ack_isds, v.path_classes
        )?;
        if let Some((g, s)) = &v.max_as_share {
            writeln!(f, "  largest AS share of ACKs: {g} {:.2} %", s * 100.0)?;
        }
        if let Some((g, s)) = &v.max_org_share {
            writeln!(f, "  largest org share of ACKs: {g} {:.2} %", s * 100.0)?;
        }
        for e in &self.input_errors {
            writeln!(f, "  input error: {e}")?;
        }
        if self.passed() {
            writeln!(f, "verdict: PASS")?;
        } else {
            let first = self
                .input_errors
                .first()
                .map(|e| format!("input: {e}"))
                .or_else(|| v.failures.first().map(ToString::to_string))
                .unwrap_or_default();
            writeln!(f, "verdict: FAIL ({first})")?;
            for fl in v
                .failures
                .iter()
                .skip(usize::from(self.input_errors.is_empty()))
            {
                writeln!(f, "  also failed: {fl}")?;
            }
        }
        match self.activation {
            Some(Activation::Active { at_ms }) => {
                writeln!(f, "activation: active since {at_ms} ms")?
            }
            Some(Activation::Scheduled { at_ms }) => {
                writeln!(f, "activation: scheduled at {at_ms} ms")?
            }
            Some(Activation::Deferred {
                earliest_ms: Some(t),
            }) => writeln!(f, "activation: deferred, earliest {t} ms")?,
            Some(Activation::Deferred { earliest_ms: None }) => writeln!(
                f,
                "activation: deferred until the criteria hold 7 consecutive days"
            )?,
            None => {}
        }
        Ok(())
    }
}

//! L7 governance (SPEC §11): uptime score, vote weight, AS / organisation caps, the pass rule
//! and the activation schedule.
//!
//! Everything here is pure arithmetic over a population description; time comes in as `now_ms`.
//! Weights are `f64`; threshold comparisons use a relative tolerance of [`EPSILON`] so that a
//! share that is *exactly* at a limit in real arithmetic (for example five equal AS groups at
//! 20 % each) is treated as at the limit despite rounding.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// Relative tolerance used in every threshold comparison.
pub const EPSILON: f64 = 1e-9;

/// `uptime_score = min(16, log2(1 + uptime_seconds / 86400))`.
pub fn uptime_score(uptime_seconds: u64) -> f64 {
    let days = uptime_seconds as f64 / 86_400.0;
    (1.0 + days).log2().min(16.0)
}

/// `vote_weight_raw = uptime_score + log10(staked_sat / 1000 + 1)` (real division).
pub fn vote_weight_raw(uptime_seconds: u64, staked_sat: u64) -> f64 {
    uptime_score(uptime_seconds) + (staked_sat as f64 / 1000.0 + 1.0).log10()
}

/// The thresholds of the pass rule. [`Default`] gives the SPEC §11 values.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Fraction of active weight the ACKs must reach (0.67).
    pub quorum: f64,
    /// Largest share of the global total one AS may hold (0.20).
    pub as_cap: f64,
    /// Largest share of the global total one organisation may hold (0.25).
    pub org_cap: f64,
    /// Minimum number of distinct AS groups among the ACKs (24).
    pub min_as_groups: usize,
    /// Minimum number of distinct ISDs among the ACKs (3).
    pub min_isds: usize,
    /// Minimum number of distinct (disjoint) path classes the ACKs were seen over (2).
    pub min_path_classes: usize,
    /// A node is active when seen within this many days (14).
    pub active_days: u64,
    /// Window of the partition check in days (7).
    pub partition_days: u64,
    /// Largest tolerated degradation in the partition window (0.20).
    pub max_degradation: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            quorum: 0.67,
            as_cap: 0.20,
            org_cap: 0.25,
            min_as_groups: 24,
            min_isds: 3,
            min_path_classes: 2,
            active_days: 14,
            partition_days: 7,
            max_degradation: 0.20,
        }
    }
}

/// One node of the population.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Any unique label (PeerID hex, name...).
    pub id: String,
    /// Continuous uptime in seconds.
    pub uptime_seconds: u64,
    /// Ecash staked, in satoshi.
    pub staked_sat: u64,
    /// AS group label.
    #[serde(rename = "as")]
    pub as_group: String,
    /// Organisation label.
    pub org: String,
    /// ISD label.
    pub isd: String,
    /// When the node was last seen (ms since the epoch).
    pub last_seen_ms: u64,
}

/// An ACK of the proposal by one node, with the path classes it was observed over.
#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    /// Index into the node slice.
    pub node: usize,
    /// Labels of the (disjoint) path classes over which this ACK was seen.
    pub path_classes: Vec<String>,
}

/// One partition measurement: the fraction of expected reachability lost at `ts_ms`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSample {
    /// Time of the measurement (ms).
    pub ts_ms: u64,
    /// Degradation as a fraction, 0.0 = none, 1.0 = total.
    pub degradation: f64,
}

/// A cap that was applied to a group.
#[derive(Clone, Debug, PartialEq)]
pub struct CapApplied {
    /// AS or organisation label.
    pub group: String,
    /// Its raw weight.
    pub before: f64,
    /// Its weight after all caps.
    pub after: f64,
}

/// Weights of the active population after the caps.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// Per node (same order as the input): `None` for inactive nodes, else the capped weight.
    pub per_node: Vec<Option<f64>>,
    /// Raw weights per node (`None` for inactive nodes).
    pub raw: Vec<Option<f64>>,
    /// Sum of raw weights of active nodes.
    pub raw_total: f64,
    /// Sum of capped weights of active nodes (the "14-day active weight").
    pub active_total: f64,
    /// Number of active nodes.
    pub active_nodes: usize,
    /// AS caps applied.
    pub as_caps: Vec<CapApplied>,
    /// Organisation caps applied.
    pub org_caps: Vec<CapApplied>,
    /// False when the AS cap cannot be met (too few AS groups); weights were equalised.
    pub as_cap_feasible: bool,
    /// False when the organisation cap cannot be met (too few organisations).
    pub org_cap_feasible: bool,
}

fn exceeds(value: f64, limit: f64) -> bool {
    value > limit * (1.0 + EPSILON) + f64::MIN_POSITIVE
}

/// Computes raw weights of the nodes active at `now_ms` and applies the caps.
///
/// Profile decision: after the caps, no AS holds more than `as_cap` and no organisation more
/// than `org_cap` of the **resulting** (capped) total. Each cap is applied by exact
/// water-filling: the over-weight groups are scaled (all nodes of a group by one factor) to a
/// common level `C` with `C = cap × (sum of all groups after capping)`; the uncapped groups keep
/// their weight. The AS and organisation passes alternate until both hold (at most
/// [`MAX_CAP_ROUNDS`] rounds; each pass only lowers weights). When a cap cannot be met at all
/// (fewer groups than `1 / cap`, e.g. four AS groups), every group is lowered to the weight of
/// the lightest one, the closest possible, and the weights say so (`*_cap_feasible = false`).
pub fn compute_weights(nodes: &[Node], now_ms: u64, params: &Params) -> Weights {
    let active_window = params.active_days.saturating_mul(DAY_MS);
    let raw: Vec<Option<f64>> = nodes
        .iter()
        .map(|n| {
            (n.last_seen_ms.saturating_add(active_window) >= now_ms)
                .then(|| vote_weight_raw(n.uptime_seconds, n.staked_sat))
        })
        .collect();
    let raw_total: f64 = raw.iter().flatten().sum();
    let active_nodes = raw.iter().flatten().count();

    // Intern group labels once so the passes work on indices.
    let mut as_ids: HashMap<&str, usize> = HashMap::new();
    let mut org_ids: HashMap<&str, usize> = HashMap::new();
    let mut as_of = Vec::with_capacity(nodes.len());
    let mut org_of = Vec::with_capacity(nodes.len());
    for n in nodes {
        let next = as_ids.len();
        as_of.push(*as_ids.entry(n.as_group.as_str()).or_insert(next));
        let next = org_ids.len();
        org_of.push(*org_ids.entry(n.org.as_str()).or_insert(next));
    }
    let mut w: Vec<f64> = raw.iter().map(|r| r.unwrap_or(0.0)).collect();
    let mut as_capped = vec![false; as_ids.len()];
    let mut org_capped = vec![false; org_ids.len()];
    let mut as_cap_feasible = true;
    let mut org_cap_feasible = true;
    for _ in 0..MAX_CAP_ROUNDS {
        let a = cap_pass(&mut w, &as_of, as_ids.len(), params.as_cap, &mut as_capped);
        as_cap_feasible &= a.feasible;
        let o = cap_pass(
            &mut w,
            &org_of,
            org_ids.len(),
            params.org_cap,
            &mut org_capped,
        );
        org_cap_feasible &= o.feasible;
        if !o.changed || !a.feasible || !o.feasible {
            break;
        }
    }
    let per_node: Vec<Option<f64>> = raw.iter().zip(&w).map(|(r, w)| r.map(|_| *w)).collect();
    let active_total = per_node.iter().flatten().sum();
    let report = |ids: &HashMap<&str, usize>, of: &[usize], capped: &[bool]| {
        let mut before = vec![0.0; ids.len()];
        let mut after = vec![0.0; ids.len()];
        for ((g, r), c) in of.iter().zip(&raw).zip(&per_node) {
            if let (Some(r), Some(c), Some(b), Some(a)) =
                (r, c, before.get_mut(*g), after.get_mut(*g))
            {
                *b += r;
                *a += c;
            }
        }
        let mut v: Vec<CapApplied> = ids
            .iter()
            .filter(|(_, i)| capped.get(**i).copied().unwrap_or(false))
            .map(|(name, i)| CapApplied {
                group: (*name).to_owned(),
                before: before.get(*i).copied().unwrap_or(0.0),
                after: after.get(*i).copied().unwrap_or(0.0),
            })
            .collect();
        v.sort_by(|a, b| a.group.cmp(&b.group));
        v
    };
    Weights {
        as_caps: report(&as_ids, &as_of, &as_capped),
        org_caps: report(&org_ids, &org_of, &org_capped),
        per_node,
        raw,
        raw_total,
        active_total,
        active_nodes,
        as_cap_feasible,
        org_cap_feasible,
    }
}

/// Most alternations of the AS and organisation cap passes.
pub const MAX_CAP_ROUNDS: usize = 16;

struct PassResult {
    changed: bool,
    feasible: bool,
}

/// One water-filling pass over the groups given by `group_of`.
fn cap_pass(
    w: &mut [f64],
    group_of: &[usize],
    groups: usize,
    frac: f64,
    capped: &mut [bool],
) -> PassResult {
    let mut sums = vec![0.0f64; groups];
    for (g, x) in group_of.iter().zip(w.iter()) {
        if let Some(s) = sums.get_mut(*g) {
            *s += *x;
        }
    }
    let total: f64 = sums.iter().sum();
    if total <= 0.0 {
        return PassResult {
            changed: false,
            feasible: true,
        };
    }
    let mut order: Vec<usize> = (0..groups).filter(|g| sums[*g] > 0.0).collect();
    order.sort_by(|a, b| sums[*b].total_cmp(&sums[*a]));
    let sorted: Vec<f64> = order.iter().map(|g| sums[*g]).collect();
    let Some(&largest) = sorted.first() else {
        return PassResult {
            changed: false,
            feasible: true,
        };
    };
    if !exceeds(largest, frac * total) {
        return PassResult {
            changed: false,
            feasible: true,
        };
    }
    // Find m (number of capped groups) and the level C = frac * R_m / (1 - frac * m), where
    // R_m is the weight of the uncapped groups, such that the m-th group >= C >= the (m+1)-th.
    let mut level = None;
    let mut rest = total;
    for m in 1..sorted.len() {
        rest -= sorted[m - 1];
        let denom = 1.0 - frac * m as f64;
        if denom <= 0.0 {
            break;
        }
        let c = frac * rest / denom;
        let above = sorted[m - 1] >= c * (1.0 - EPSILON);
        let below = sorted
            .get(m)
            .is_none_or(|next| *next <= c * (1.0 + EPSILON));
        if above && below {
            level = Some((m, c));
            break;
        }
    }
    let (m, c, feasible) = match level {
        Some((m, c)) => (m, c, true),
        // Infeasible: too few groups. Lower every group to the lightest one.
        None => (
            sorted.len(),
            sorted.last().copied().unwrap_or(0.0),
            (sorted.len() as f64) * frac >= 1.0 - EPSILON,
        ),
    };
    let mut factor = vec![1.0f64; groups];
    let mut changed = false;
    for g in order.iter().take(m) {
        let s = sums[*g];
        if s > c * (1.0 + EPSILON) {
            factor[*g] = c / s;
            changed = true;
            if let Some(flag) = capped.get_mut(*g) {
                *flag = true;
            }
        }
    }
    for (g, x) in group_of.iter().zip(w.iter_mut()) {
        *x *= factor.get(*g).copied().unwrap_or(1.0);
    }
    PassResult { changed, feasible }
}

/// A rule of the pass test that failed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Failure {
    /// ACK weight below `quorum × active weight`.
    Quorum {
        /// ACK weight.
        ack: f64,
        /// Required weight.
        needed: f64,
    },
    /// Too few distinct AS groups among the ACKs.
    AsDiversity {
        /// Groups seen.
        have: usize,
        /// Required.
        need: usize,
    },
    /// Too few distinct ISDs among the ACKs.
    IsdDiversity {
        /// ISDs seen.
        have: usize,
        /// Required.
        need: usize,
    },
    /// One AS holds more than the AS cap of the ACK weight.
    AsAckShare {
        /// The AS.
        group: String,
        /// Its share of the ACK weight.
        share: f64,
    },
    /// One organisation holds more than the org cap of the ACK weight.
    OrgAckShare {
        /// The organisation.
        group: String,
        /// Its share of the ACK weight.
        share: f64,
    },
    /// ACKs were seen over too few disjoint path classes.
    PathClasses {
        /// Classes seen.
        have: usize,
        /// Required.
        need: usize,
    },
    /// No partition measurement in the window, so the check cannot show health.
    PartitionUnmeasured,
    /// A degradation above the limit was measured in the window.
    PartitionDegraded {
        /// Worst degradation.
        worst: f64,
        /// When.
        ts_ms: u64,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Quorum { ack, needed } => write!(
                f,
                "quorum: ACK weight {ack:.4} < required {needed:.4} (0.67 x 14-day active weight)"
            ),
            Failure::AsDiversity { have, need } => {
                write!(
                    f,
                    "AS diversity: ACKs span {have} AS groups, need >= {need}"
                )
            }
            Failure::IsdDiversity { have, need } => {
                write!(f, "ISD diversity: ACKs span {have} ISDs, need >= {need}")
            }
            Failure::AsAckShare { group, share } => write!(
                f,
                "AS ACK share: {group} holds {:.2} % of ACK weight (> 20 %)",
                share * 100.0
            ),
            Failure::OrgAckShare { group, share } => write!(
                f,
                "org ACK share: {group} holds {:.2} % of ACK weight (> 25 %)",
                share * 100.0
            ),
            Failure::PathClasses { have, need } => write!(
                f,
                "path classes: ACKs seen over {have} disjoint path classes, need >= {need}"
            ),
            Failure::PartitionUnmeasured => {
                write!(f, "partition check: no measurement in the prior 7 days")
            }
            Failure::PartitionDegraded { worst, ts_ms } => write!(
                f,
                "partition check: {:.2} % degradation at {ts_ms} ms (> 20 %)",
                worst * 100.0
            ),
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The weights (after caps) the verdict is based on.
    pub weights: Weights,
    /// Sum of capped weights of the active nodes that ACKed.
    pub ack_weight: f64,
    /// `quorum × active_total`.
    pub needed_weight: f64,
    /// Number of counted ACKs (active, de-duplicated).
    pub ack_count: usize,
    /// Distinct AS groups among counted ACKs.
    pub ack_as_groups: usize,
    /// Distinct ISDs among counted ACKs.
    pub ack_isds: usize,
    /// Distinct path classes the counted ACKs were seen over.
    pub path_classes: usize,
    /// Largest AS share of ACK weight (group, share).
    pub max_as_share: Option<(String, f64)>,
    /// Largest organisation share of ACK weight (group, share).
    pub max_org_share: Option<(String, f64)>,
    /// Every rule that failed, in the order of SPEC §11. Empty = passed.
    pub failures: Vec<Failure>,
}

impl Verdict {
    /// True when every rule held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Applies the full SPEC §11 pass rule.
///
/// Profile decisions: only ACKs of nodes active in the 14-day window count, each node at most
/// once; ACKs of weightless nodes do not count towards AS / ISD diversity; the path-class rule counts the distinct class labels over all counted ACKs; the
/// partition check needs at least one sample in `[now - 7 d, now]` and every such sample at or
/// below the limit.
///
/// # Panics
/// Never; ACK indices out of range are ignored (the JSON front end reports them as input errors).
pub fn evaluate(
    nodes: &[Node],
    acks: &[Ack],
    partition: &[PartitionSample],
    now_ms: u64,
    params: &Params,
) -> Verdict {
    let weights = compute_weights(nodes, now_ms, params);
    let mut counted = vec![false; nodes.len()];
    let mut classes: BTreeSet<&str> = BTreeSet::new();
    let mut ack_weight = 0.0;
    let mut ack_count = 0;
    let mut as_w: HashMap<&str, f64> = HashMap::new();
    let mut org_w: HashMap<&str, f64> = HashMap::new();
    let mut isds: BTreeSet<&str> = BTreeSet::new();
    for a in acks {
        let (Some(node), Some(Some(w)), Some(seen)) = (
            nodes.get(a.node),
            weights.per_node.get(a.node),
            counted.get_mut(a.node),
        ) else {
            continue;
        };
        if *seen {
            // still merge path classes of a duplicate ACK
            classes.extend(a.path_classes.iter().map(String::as_str));
            continue;
        }
        *seen = true;
        ack_count += 1;
        ack_weight += w;
        classes.extend(a.path_classes.iter().map(String::as_str));
        if *w <= 0.0 {
            // weightless nodes (no uptime, no stake) cannot buy AS / ISD diversity
            continue;
        }
        *as_w.entry(node.as_group.as_str()).or_insert(0.0) += w;
        *org_w.entry(node.org.as_str()).or_insert(0.0) += w;
        isds.insert(node.isd.as_str());
    }

    let needed_weight = params.quorum * weights.active_total;
    let mut failures = Vec::new();
    if ack_weight < needed_weight * (1.0 - EPSILON) || ack_count == 0 {
        failures.push(Failure::Quorum {
            ack: ack_weight,
            needed: needed_weight,
        });
    }
    if as_w.len() < params.min_as_groups {
        failures.push(Failure::AsDiversity {
            have: as_w.len(),
            need: params.min_as_groups,
        });
    }
    if isds.len() < params.min_isds {
        failures.push(Failure::IsdDiversity {
            have: isds.len(),
            need: params.min_isds,
        });
    }
    let max_share = |m: &HashMap<&str, f64>| -> Option<(String, f64)> {
        let mut v: Vec<(&str, f64)> = m.iter().map(|(k, w)| (*k, *w)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        v.first().map(|(g, w)| {
            let share = if ack_weight > 0.0 {
                w / ack_weight
            } else {
                0.0
            };
            ((*g).to_owned(), share)
        })
    };
    let max_as_share = max_share(&as_w);
    let max_org_share = max_share(&org_w);
    if let Some((g, s)) = &max_as_share
        && exceeds(*s, params.as_cap)
    {
        failures.push(Failure::AsAckShare {
            group: g.clone(),
            share: *s,
        });
    }
    if let Some((g, s)) = &max_org_share
        && exceeds(*s, params.org_cap)
    {
        failures.push(Failure::OrgAckShare {
            group: g.clone(),
            share: *s,
        });
    }
    if classes.len() < params.min_path_classes {
        failures.push(Failure::PathClasses {
            have: classes.len(),
            need: params.min_path_classes,
        });
    }
    let window_start = now_ms.saturating_sub(params.partition_days.saturating_mul(DAY_MS));
    let in_window: Vec<&PartitionSample> = partition
        .iter()
        .filter(|s| s.ts_ms >= window_start && s.ts_ms <= now_ms)
        .collect();
    match in_window
        .iter()
        .max_by(|a, b| a.degradation.total_cmp(&b.degradation))
    {
        None => failures.push(Failure::PartitionUnmeasured),
        Some(worst) if exceeds(worst.degradation, params.max_degradation) => {
            failures.push(Failure::PartitionDegraded {
                worst: worst.degradation,
                ts_ms: worst.ts_ms,
            })
        }
        Some(_) => {}
    }

    Verdict {
        weights,
        ack_weight,
        needed_weight,
        ack_count,
        ack_as_groups: as_w.len(),
        ack_isds: isds.len(),
        path_classes: classes.len(),
        max_as_share,
        max_org_share,
        failures,
    }
}

/// Days a passed proposal waits before activation (30).
pub const ACTIVATION_DELAY_DAYS: u64 = 30;
/// Days the criteria must hold continuously before activation (7).
pub const HOLD_DAYS: u64 = 7;

/// Where a passed proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The proposal activated at this time (ms).
    Active {
        /// Activation time.
        at_ms: u64,
    },
    /// Activation is scheduled at this time; the criteria have held so far.
    Scheduled {
        /// Planned activation time.
        at_ms: u64,
    },
    /// Activation is deferred because the criteria failed within 7 days of it. `earliest_ms` is
    /// the earliest possible activation if the criteria keep holding (`None` while they fail).
    Deferred {
        /// Earliest possible activation, if the criteria currently hold.
        earliest_ms: Option<u64>,
    },
}

/// Activation of a proposal that passed at `passed_at_ms`, given the daily re-evaluations of
/// the criteria (`(time, held)` pairs, any order) up to `now_ms`.
///
/// Rule (SPEC §11): activation waits >= 30 days (`A = passed + 30 d`); the criteria must hold
/// over the 7 days before activation, otherwise activation is deferred until they have held for
/// 7 consecutive days. The criteria are taken to hold between two passing evaluations; a
/// streak starts at the first passing evaluation after a failure (or at `passed_at_ms`).
pub fn activation_status(
    passed_at_ms: u64,
    evaluations: &[(u64, bool)],
    now_ms: u64,
) -> Activation {
    let planned = passed_at_ms.saturating_add(ACTIVATION_DELAY_DAYS * DAY_MS);
    let hold = HOLD_DAYS * DAY_MS;
    let mut evs: Vec<(u64, bool)> = evaluations
        .iter()
        .copied()
        .filter(|(t, _)| *t >= passed_at_ms && *t <= now_ms)
        .collect();
    evs.sort_unstable();
    let mut streak: Option<u64> = Some(passed_at_ms);
    let mut deferred = false;
    for (t, held) in evs {
        if held {
            let s = *streak.get_or_insert(t);
            let candidate = planned.max(s.saturating_add(hold));
            if candidate <= t {
                // the criteria held continuously from `s` through `t >= candidate`
                return Activation::Active { at_ms: candidate };
            }
        } else {
            streak = None;
            if t.saturating_add(hold) >= planned {
                deferred = true;
            }
        }
    }
    match streak {
        Some(s) => {
            let candidate = planned.max(s.saturating_add(hold));
            if deferred || candidate > planned {
                Activation::Deferred {
                    earliest_ms: Some(candidate),
                }
            } else {
                Activation::Scheduled { at_ms: candidate }
            }
        }
        None if deferred => Activation::Deferred { earliest_ms: None },
        None => Activation::Scheduled { at_ms: planned },
    }
}

/// Per-group totals (raw and capped) of the active population, sorted by label.
pub fn group_totals(
    nodes: &[Node],
    weights: &Weights,
    by_org: bool,
) -> BTreeMap<String, (f64, f64)> {
    let mut m: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for ((n, raw), capped) in nodes.iter().zip(&weights.raw).zip(&weights.per_node) {
        if let (Some(r), Some(c)) = (raw, capped) {
            let key = if by_org { &n.org } else { &n.as_group };
            let e = m.entry(key.clone()).or_insert((0.0, 0.0));
            e.0 += r;
            e.1 += c;
        }
    }
    m
}

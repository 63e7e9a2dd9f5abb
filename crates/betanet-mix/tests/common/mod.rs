//! Shared set-up for the mixnode integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use betanet_mix::delay::DelayDist;
use betanet_mix::node::MixnodeConfig;
use betanet_mix::replay::ReplayConfig;

/// A test mixnode: one unwrap worker, per-hop delays U[1 ms, `max_delay_ms`], a replay filter
/// for `replay_capacity` packets, state in `dir`.
pub fn node_config(
    listen: SocketAddr,
    dir: &Path,
    max_delay_ms: u64,
    replay_capacity: u64,
) -> MixnodeConfig {
    let mut c = MixnodeConfig::new(listen, dir.to_path_buf());
    c.delay = DelayDist::uniform(
        Duration::from_millis(1),
        Duration::from_millis(max_delay_ms),
    )
    .unwrap();
    c.replay = ReplayConfig {
        capacity: replay_capacity,
        fp_rate: 1e-9,
    };
    c.workers = 1;
    c
}

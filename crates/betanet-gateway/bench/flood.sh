#!/usr/bin/env bash
# Ticket flood vs a legitimate client, gateway in its own process (SPEC §4.2 rate limiting).
#
#   bash crates/betanet-gateway/bench/flood.sh [pairs] [flood_count] [flood_per_sec]
#
# Starts (all on 127.0.0.1, release build of examples/bench.rs) the backend (HTX site + decoy
# origin + the same App over plain HTTP) and the gateway with the default token buckets (64
# burst, 8/s per /24). Then `bench floodbench` runs `pairs` (default 9) interleaved pairs of
# rounds, the order inside a pair alternating: the legitimate client from 127.0.2.x alone
# ("base"), and while a separate `bench flood` process sends `flood_count` connections with
# bad tickets (right key id, random key and MAC) from 127.0.1.1-254 at `flood_per_sec`
# ("flood"). In every round a control client (127.0.3.x, same pacing) talks to the backend's
# HTTP face directly: its p99 ratio is the machine's own noise. Prints each round's legit
# p50/p99, control p99, the gateway's CPU time and the flood's answers (all must be the
# decoy's 404), each pair's ratios, and the medians of the per-pair ratios (target: legit p99
# flood/base <= 1.10). ~11 s per pair (9 pairs ≈ 100 s). GW_PER_CORE=N runs the gateway with N
# single-threaded event loops (run_per_core), GW_WORKERS=N picks tokio's runtime.
set -euo pipefail
ROUNDS=${1:-9}
COUNT=${2:-10000}
RATE=${3:-2000}
PER_ROUND=${PER_ROUND:-1000}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$ROOT"
cargo build --release -p betanet-gateway --example bench
BIN="$ROOT/target/release/examples/bench"
# Ports below the ephemeral range and random per run (the flood leaves ~20 000 sockets in
# TIME_WAIT on the decoy port).
B=$((20000 + RANDOM % 12000 / 10 * 10))
HTX=127.0.0.1:$B; HTTP=127.0.0.1:$((B + 1)); GW=127.0.0.1:$((B + 2)); DECOY=127.0.0.1:$((B + 3)); METRICS=127.0.0.1:$((B + 4))
read -r SECRET PUB KID SEED SITEPUB < <("$BIN" keygen)
"$BIN" backend $HTX $HTTP $DECOY "$SEED" & PIDS+=($!)
cat > "$WORK/gw.toml" <<TOML
listen = "$GW"
metrics_listen = "$METRICS"
[decoy]
origin = "$DECOY"
[site]
addr = "$HTX"
public_key = "$SITEPUB"
[ticket]
secret_hex = "$SECRET"
key_id_hex = "$KID"
replay_db = "$WORK/replay.redb"
replay_durability = "batched"
per_prefix_burst = 64
per_prefix_per_sec = 8
TOML
sleep 0.5
BENCH_WORKERS=${GW_WORKERS:-} BENCH_PER_CORE=${GW_PER_CORE:-} "$BIN" gateway "$WORK/gw.toml" & GWPID=$!
PIDS+=($GWPID)
sleep 1
echo "== $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); pairs=$ROUNDS gateway_workers=${GW_WORKERS:-auto} gateway_per_core=${GW_PER_CORE:-off} flood=$COUNT at $RATE/s, legit $PER_ROUND requests/round"
FLOOD_GW_PID=$GWPID FLOOD_CONTROL=$HTTP "$BIN" floodbench $GW "$PUB" "$KID" "$ROUNDS" "$PER_ROUND" "$COUNT" "$RATE"
echo "== gateway counters:"
curl -fsS "http://$METRICS/metrics" | grep -E '^betanet_gateway_(admissions|requests)_total' || true
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

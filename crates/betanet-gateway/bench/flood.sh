#!/usr/bin/env bash
# Ticket flood vs a legitimate client, gateway in its own process (SPEC §4.2 rate limiting).
#
#   bash crates/betanet-gateway/bench/flood.sh [rounds] [flood_count] [flood_per_sec]
#
# Starts (all on 127.0.0.1, release build of examples/bench.rs) the backend (HTX site + decoy
# origin) and the gateway with the default token buckets (64 burst, 8/s per /24). Then
# `bench floodbench` runs interleaved rounds: the legitimate client from 127.0.2.x alone
# ("base"), then while a separate `bench flood` process sends `flood_count` connections with
# bad tickets (right key id, random key and MAC) from 127.0.1.1-254 at `flood_per_sec`
# ("flood"). Prints each round's legit p50/p99, the flood's answers (all must be the decoy's
# 404), the median p99s and their ratio (target: flood/base <= 1.10).
set -euo pipefail
ROUNDS=${1:-3}
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
"$BIN" gateway "$WORK/gw.toml" & PIDS+=($!)
sleep 1
echo "== $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); rounds=$ROUNDS flood=$COUNT at $RATE/s, legit $PER_ROUND requests/round"
"$BIN" floodbench $GW "$PUB" "$KID" "$ROUNDS" "$PER_ROUND" "$COUNT" "$RATE"
echo "== gateway counters:"
curl -fsS "http://$METRICS/metrics" | grep -E '^betanet_gateway_(admissions|requests)_total' || true
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Gateway CPU per request, run modes compared in interleaved rounds (noise-robust: a busy
# machine changes req/s much more than CPU time per request).
#
#   bash crates/betanet-gateway/bench/cpu.sh [connections] [seconds] [rounds]
#
# Starts (all on 127.0.0.1, release build of examples/bench.rs) ONE backend (HTX site) and
# three gateways on it: `mt` (tokio multi-threaded runtime, one worker per core), `ct`
# (tokio current-thread runtime) and `pc` (run_per_core with 2 loops; POOL HTX connections
# per loop). Each round runs wrk (1 thread, keep-alive, fresh ticket per connection) against
# each gateway in turn and prints requests, the gateway process's CPU time (utime + stime from
# /proc, 10 ms ticks) per request in µs, and req/s; then the medians per mode.
set -euo pipefail
CONNS=${1:-32}
SECS=${2:-5}
ROUNDS=${3:-5}
POOL=${POOL:-1}
MODES=${MODES:-mt ct pc}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE="$ROOT/crates/betanet-gateway/bench"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$ROOT"
cargo build --release -p betanet-gateway --example bench
BIN="$ROOT/target/release/examples/bench"
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)"; exit 1; }
B=$((20000 + RANDOM % 12000 / 10 * 10))
HTX=127.0.0.1:$B; HTTP=127.0.0.1:$((B + 1)); DECOY=127.0.0.1:$((B + 3))
read -r SECRET PUB KID SEED SITEPUB < <("$BIN" keygen)
"$BIN" backend $HTX $HTTP $DECOY "$SEED" >/dev/null & PIDS+=($!)
BACKEND=$!
sleep 0.5
declare -A PORT GWPID
i=5
for m in $MODES; do
  PORT[$m]=$((B + i)); i=$((i + 1))
  cat > "$WORK/$m.toml" <<TOML
listen = "127.0.0.1:${PORT[$m]}"
[decoy]
origin = "$DECOY"
[site]
addr = "$HTX"
public_key = "$SITEPUB"
pool_size = $POOL
[ticket]
secret_hex = "$SECRET"
key_id_hex = "$KID"
per_prefix_burst = 1000000
per_prefix_per_sec = 1000000
TOML
  case $m in
    mt) "$BIN" gateway "$WORK/$m.toml" & ;;
    ct) BENCH_WORKERS=1 "$BIN" gateway "$WORK/$m.toml" & ;;
    pc) BENCH_PER_CORE=${LOOPS:-2} "$BIN" gateway "$WORK/$m.toml" & ;;
  esac
  GWPID[$m]=$!; PIDS+=($!)
done
sleep 1
cpu_ms() { awk '{ sub(/.*\) /, ""); print ($12 + $13) * 10 }' "/proc/$1/stat"; }
echo "== $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); connections=$CONNS seconds=$SECS rounds=$ROUNDS pool=$POOL modes=$MODES"
declare -A US RPS
for r in $(seq 1 "$ROUNDS"); do
  for m in $MODES; do
    "$BIN" tickets "$PUB" "$KID" $((4 * CONNS)) > "$WORK/tickets.txt"
    c0=$(cpu_ms "${GWPID[$m]}"); s0=$(cpu_ms "$BACKEND")
    out=$(TICKETS="$WORK/tickets.txt" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$HERE/ticket.lua" "http://127.0.0.1:${PORT[$m]}/bench" -- "$CONNS")
    c1=$(cpu_ms "${GWPID[$m]}"); s1=$(cpu_ms "$BACKEND")
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    us=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }')
    sus=$(awk -v a="$s0" -v b="$s1" -v n="$reqs" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }')
    echo "round $r $m: requests=$reqs rps=$rps gateway_cpu_us_per_req=$us site_cpu_us_per_req=$sus non2xx=${bad:-0} load=$(cut -d' ' -f1 /proc/loadavg)"
    US[$m]="${US[$m]:-} $us"; RPS[$m]="${RPS[$m]:-} $rps"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for m in $MODES; do
  # shellcheck disable=SC2086
  echo "median $m: gateway_cpu_us_per_req=$(median ${US[$m]}) rps=$(median ${RPS[$m]})"
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

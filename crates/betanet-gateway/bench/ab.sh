#!/usr/bin/env bash
# A/B of two builds of examples/bench.rs by CPU per request (noise-robust on a shared machine).
#
#   cp target/release/examples/bench /tmp/bench_a   # before a change
#   ... change, cargo build --release -p betanet-gateway --example bench ...
#   bash crates/betanet-gateway/bench/ab.sh /tmp/bench_a target/release/examples/bench [conns] [secs] [rounds]
#
# Starts two full stacks on 127.0.0.1 (backend = HTX site + HTTP face, and a gateway with
# GW_PER_CORE (default 2) event loops, HTX pool 1 per loop), one per binary, then runs wrk
# (1 thread, keep-alive, fresh ticket per connection) against each in interleaved rounds
# (A B, B A, ...). Prints per round: requests, req/s, and the gateway's and the site's CPU time
# (utime + stime from /proc, 10 ms ticks) per request in µs.
set -euo pipefail
A=$1; B=$2; CONNS=${3:-32}; SECS=${4:-5}; ROUNDS=${5:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
read -r SECRET PUB KID SEED SITEPUB < <("$A" keygen)
declare -A BK GW PORT
base=$((20000 + RANDOM % 12000 / 10 * 10))
i=0
for s in A B; do
  bin=${!s}
  P=$((base + i*10)); i=$((i+1))
  "$bin" backend 127.0.0.1:$P 127.0.0.1:$((P+1)) 127.0.0.1:$((P+3)) "$SEED" >/dev/null & PIDS+=($!); BK[$s]=$!
  cat > "$WORK/$s.toml" <<TOML
listen = "127.0.0.1:$((P+2))"
[decoy]
origin = "127.0.0.1:$((P+3))"
[site]
addr = "127.0.0.1:$P"
public_key = "$SITEPUB"
transport = "tcp12"
pool_size = 1
[ticket]
secret_hex = "$SECRET"
key_id_hex = "$KID"
per_prefix_burst = 1000000
per_prefix_per_sec = 1000000
TOML
  sleep 0.3
  BENCH_PER_CORE=${GW_PER_CORE:-2} "$bin" gateway "$WORK/$s.toml" & PIDS+=($!); GW[$s]=$!
  PORT[$s]=$((P+2))
done
sleep 1
tick() { awk '{ sub(/.*\) /, ""); print ($12 + $13) }' "/proc/$1/stat"; }
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
  order="A B"; [ $((r % 2)) -eq 0 ] && order="B A"
  for s in $order; do
    "$A" tickets "$PUB" "$KID" $((4 * CONNS)) > "$WORK/tickets.txt"
    g0=$(tick ${GW[$s]}); b0=$(tick ${BK[$s]})
    out=$(TICKETS="$WORK/tickets.txt" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$HERE/ticket.lua" "http://127.0.0.1:${PORT[$s]}/bench" -- "$CONNS")
    g1=$(tick ${GW[$s]}); b1=$(tick ${BK[$s]})
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    awk -v s=$s -v r=$r -v n=$reqs -v rps=$rps -v g=$((g1-g0)) -v b=$((b1-b0)) -v bad=${bad:-0} -v l="$(cut -d' ' -f1 /proc/loadavg)" \
      'BEGIN { printf "round %d %s: reqs=%d rps=%s gw_us=%.2f site_us=%.2f non2xx=%s load=%s\n", r, s, n, rps, g*10000/n, b*10000/n, bad, l }'
  done
done

#!/usr/bin/env bash
# Gateway vs nginx, same backend process, same run, same load generator (wrk).
#
#   bash crates/betanet-gateway/bench/nginx.sh [connections] [seconds] [rounds]
#
# Starts (all on 127.0.0.1), from the release build of examples/bench.rs:
#   * the backend: ONE betanet-app `App` (GET /bench -> "hello from the site\n") behind two
#     faces: HTX/tcp12 (betanet_app::htx::serve_listener, what `betanet serve` runs) for the
#     gateway, and HTTP/1.1 (hyper, same App) for nginx; plus a decoy origin (404 "decoy");
#   * the gateway with its production upstream: the pooled, multiplexed HtxConnector
#     (`site.public_key` set, `pool_size` connections, one HTX stream per request);
#   * nginx (installed from Debian with apt-get if missing) proxying to the HTTP face with
#     upstream keepalive (both sides reuse upstream connections: the fair comparison).
# Load: wrk (Debian, installed if missing), 1 thread, keep-alive connections, bounded by
# time; against the gateway each connection's first request carries a fresh ticket cookie
# (bench/ticket.lua), later ones none (admission is per connection). Rounds are interleaved
# (gateway, nginx, gateway, nginx, ...); the script prints each round and the medians.
set -euo pipefail
CONNS=${1:-32}
SECS=${2:-10}
ROUNDS=${3:-3}
# HTX connections per gateway (per event loop with GW_PER_CORE).
if [ -n "${GW_PER_CORE:-}" ]; then POOL=${POOL:-1}; else POOL=${POOL:-2}; fi
THREADS=${WRK_THREADS:-1}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE="$ROOT/crates/betanet-gateway/bench"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

need_apt() { # $1 = command, $2.. = packages to try in order
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] && return 0
  apt-get update -qq
  for p in "$@"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null && return 0
  done
  return 1
}
need_apt nginx nginx-light nginx
need_apt wrk wrk
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cd "$ROOT"
cargo build --release -p betanet-gateway --example bench
BIN="$ROOT/target/release/examples/bench"

# Ports below the ephemeral range (32768+) and random per run, so TIME_WAIT sockets of an
# earlier run (or of the flood bench) never collide with a listener.
B=$((20000 + RANDOM % 12000 / 10 * 10))
HTX=127.0.0.1:$B; HTTP=127.0.0.1:$((B + 1)); GW=127.0.0.1:$((B + 2)); DECOY=127.0.0.1:$((B + 3)); NGXKA=$((B + 4))
read -r SECRET PUB KID SEED SITEPUB < <("$BIN" keygen)
"$BIN" backend $HTX $HTTP $DECOY "$SEED" & PIDS+=($!)
cat > "$WORK/gw.toml" <<TOML
listen = "$GW"
[decoy]
origin = "$DECOY"
[site]
addr = "$HTX"
public_key = "$SITEPUB"
transport = "tcp12"
pool_size = $POOL
[ticket]
secret_hex = "$SECRET"
key_id_hex = "$KID"
per_prefix_burst = 1000000
per_prefix_per_sec = 1000000
TOML
sleep 0.5
# GW_WORKERS=1 runs the gateway on tokio's single-threaded runtime (default: one worker per
# core, like `betanet gateway`); GW_PER_CORE=N runs N single-threaded event loops with
# SO_REUSEPORT listeners, an HTX pool each (`betanet_gateway::run_per_core`).
BENCH_WORKERS=${GW_WORKERS:-} BENCH_PER_CORE=${GW_PER_CORE:-} "$BIN" gateway "$WORK/gw.toml" & PIDS+=($!)

mkdir -p "$WORK/ngx"
cat > "$WORK/nginx.conf" <<NGX
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/ngx; proxy_temp_path $WORK/ngx;
  fastcgi_temp_path $WORK/ngx; uwsgi_temp_path $WORK/ngx; scgi_temp_path $WORK/ngx;
  upstream backend_ka { server $HTTP; keepalive 64; }
  server { listen 127.0.0.1:$NGXKA; location / { proxy_pass http://backend_ka;
           proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" & PIDS+=($!)
sleep 1.5

# Sanity: the gateway answers an admitted request with the site's body, nginx too.
curl -fsS -H "Cookie: $("$BIN" tickets "$PUB" "$KID" 1)" "http://$GW/bench" | grep -q "hello from the site"
curl -fsS "http://127.0.0.1:$NGXKA/bench" | grep -q "hello from the site"

# wrk output -> "rps p99_ms non2xx"
summarize() {
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    /Socket errors/ { err = $0 }
    END { printf "%s %.3f %d\n", rps, p99, bad + 0 }'
}

run_wrk() { # $1 = url, [TICKETS env] -> summary line
  local out
  if [ -n "${TICKETS:-}" ]; then
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$HERE/ticket.lua" "$1" -- $((CONNS / THREADS)))
  else
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$1")
  fi
  echo "$out" >> "$WORK/wrk.log"
  echo "$out" | summarize
}

echo "== $(date -u +%FT%TZ) machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== connections=$CONNS seconds=$SECS rounds=$ROUNDS wrk_threads=$THREADS htx_pool=$POOL gateway_workers=${GW_WORKERS:-auto} gateway_per_core=${GW_PER_CORE:-off} nginx=$("$NGINX" -v 2>&1 | cut -d/ -f2)"
GW_RPS=(); GW_P99=(); NG_RPS=(); NG_P99=()
for r in $(seq 1 "$ROUNDS"); do
  "$BIN" tickets "$PUB" "$KID" $((4 * CONNS)) > "$WORK/tickets.txt"
  read -r rps p99 bad < <(TICKETS="$WORK/tickets.txt" run_wrk "http://$GW/bench")
  echo "round $r gateway(htx pool=$POOL): rps=$rps p99_ms=$p99 non2xx=$bad load=$(cut -d' ' -f1 /proc/loadavg)"
  GW_RPS+=("$rps"); GW_P99+=("$p99")
  read -r rps p99 bad < <(TICKETS= run_wrk "http://127.0.0.1:$NGXKA/bench")
  echo "round $r nginx(keepalive):     rps=$rps p99_ms=$p99 non2xx=$bad load=$(cut -d' ' -f1 /proc/loadavg)"
  NG_RPS+=("$rps"); NG_P99+=("$p99")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
g_rps=$(median "${GW_RPS[@]}"); g_p99=$(median "${GW_P99[@]}")
n_rps=$(median "${NG_RPS[@]}"); n_p99=$(median "${NG_P99[@]}")
echo "median gateway: rps=$g_rps p99_ms=$g_p99"
echo "median nginx:   rps=$n_rps p99_ms=$n_p99"
awk -v a="$g_rps" -v b="$n_rps" -v c="$g_p99" -v d="$n_p99" \
  'BEGIN { printf "ratios: throughput gateway/nginx = %.2f (target >= 1), p99 gateway/nginx = %.2f (target <= 2)\n", a/b, c/d }'
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${KEEP_WRK_LOG:-}" ]; then cp "$WORK/wrk.log" "$KEEP_WRK_LOG"; fi

#!/usr/bin/env bash
# Gateway vs nginx, same backend, same run, same load generator.
#
#   bash crates/betanet-gateway/bench/nginx.sh [connections] [seconds]
#
# Starts (all on 127.0.0.1): the bench backend (one handler: BAR over TCP for the gateway,
# HTTP/1.1 for nginx), the gateway (release build) forwarding admitted requests to the BAR
# face, and nginx (installed from Debian with apt-get if missing) proxying to the HTTP face.
# Drives both with the same closed-loop keep-alive load generator (examples/bench.rs `load`);
# against the gateway every connection presents a fresh ticket on its first request only.
# nginx runs its default proxy shape (a new upstream connection per request, like the
# gateway's TcpBarConnector) and, second, with upstream keepalive.
set -euo pipefail
CONNS=${1:-32}
SECS=${2:-10}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v nginx >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cd "$ROOT"
cargo build --release -p betanet-gateway --example bench
BIN="$ROOT/target/release/examples/bench"

BAR=127.0.0.1:38101; HTTP=127.0.0.1:38102; GW=127.0.0.1:38103; NGX=38104; NGXKA=38105
"$BIN" backend $BAR $HTTP & PIDS+=($!)
read -r SECRET PUB KID < <("$BIN" keygen)
cat > "$WORK/gw.toml" <<TOML
listen = "$GW"
[decoy]
origin = "$HTTP"
[site]
addr = "$BAR"
[ticket]
secret_hex = "$SECRET"
key_id_hex = "$KID"
per_prefix_burst = 1000000
per_prefix_per_sec = 1000000
TOML
"$BIN" gateway "$WORK/gw.toml" & PIDS+=($!)

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
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://$HTTP; } }
  server { listen 127.0.0.1:$NGXKA; location / { proxy_pass http://backend_ka;
           proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
"$NGINX" -c "$WORK/nginx.conf" & PIDS+=($!)
sleep 1.5

echo "== machine: $(nproc) cores, $(uname -r); connections=$CONNS seconds=$SECS"
echo "-- gateway (ticket once per connection, BAR over TCP, new site connection per request)"
"$BIN" load $GW "$CONNS" "$SECS" "$PUB" "$KID"
echo "-- nginx proxy_pass (new upstream connection per request)"
"$BIN" load 127.0.0.1:$NGX "$CONNS" "$SECS"
echo "-- nginx proxy_pass with upstream keepalive"
"$BIN" load 127.0.0.1:$NGXKA "$CONNS" "$SECS"

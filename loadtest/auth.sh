#!/usr/bin/env bash
# Subscribe cost with and without a token: the same connect storm against spout with --auth none and with --auth
# jwt, each subscriber presenting an HS256, RS256 or ES256 token (minted by loadtest/mint_token.mjs, Node's own
# crypto) in its Authorization header. Reports, per mode, spout's CPU per subscribe, the storm's wall time and
# spout's RSS per connection, the median of --rounds runs, and each mode's CPU against --auth none.
#
#   loadtest/auth.sh                              # 10,000 subscribers, 3 rounds per mode
#   loadtest/auth.sh --subscribers 5000 --rounds 5 --results FILE
#
# spout runs pinned to core 0 with one worker, spout-load on core 1. Every step is bounded (timeout); each server
# is stopped after its run. Needs node and openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBS=10000
ROUNDS=3
RESULTS=$ROOT/loadtest/results/auth.jsonl
PORT=18795
while [ $# -gt 0 ]; do
    case "$1" in
        --subscribers) SUBS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

SPOUT=$ROOT/target/release/spout
LOAD=$ROOT/target/release/spout-load
(cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$RESULTS")"
KEYS=$(mktemp -d)
SERVER=""
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$KEYS"' EXIT

head -c 32 /dev/urandom | base64 >"$KEYS/secret"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/rsa.pem" 2>/dev/null
openssl pkey -in "$KEYS/rsa.pem" -pubout -out "$KEYS/rsa.pub"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEYS/p256.pem"
openssl pkey -in "$KEYS/p256.pem" -pubout -out "$KEYS/p256.pub"
CLAIMS="{\"sub\":\"load\",\"exp\":$(($(date +%s) + 3600)),\"spout\":{\"subscribe\":[\"c*\"]}}"
mint() { node "$ROOT/loadtest/mint_token.mjs" "$1" "$2" "$CLAIMS"; }
declare -A TOKEN=(
    [hs256]=$(mint HS256 "$KEYS/secret")
    [rs256]=$(mint RS256 "$KEYS/rsa.pem")
    [es256]=$(mint ES256 "$KEYS/p256.pem")
)
AUTH_ARGS=(--auth jwt --jwt-secret-file "$KEYS/secret" --jwt-public-key "$KEYS/rsa.pub,$KEYS/p256.pub")

# One storm; appends "cpu_us_per_subscribe connect_seconds rss_bytes_per_connection" to $KEYS/runs-MODE. Runs in
# this shell (not a subshell), so the EXIT trap sees the server it started.
storm() {
    local mode=$1
    local server_args=() header=()
    if [ "$mode" != none ]; then
        server_args=("${AUTH_ARGS[@]}")
        header=(--header "Authorization: Bearer ${TOKEN[$mode]}")
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "port $PORT is in use by another process; pass --port" >&2
        exit 1
    fi
    taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 "${server_args[@]}" >/tmp/spout-auth.log 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    timeout 180 taskset -c 1 "$LOAD" -q --target-name spout --tag "auth-$mode" --server-pid "$SERVER" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        "${header[@]}" --json "$RESULTS" connect-storm -n "$SUBS" >/tmp/spout-auth-storm.log
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    tail -n 1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"]
assert r["subscribed"] == r["subscribers"], "only %d of %d subscribed" % (r["subscribed"], r["subscribers"])
s = r["server"]
print(s["subscribe_cpu_us_each"], r["connect_seconds"], s["rss_bytes_per_connection"])' >>"$KEYS/runs-$mode"
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "mode   cpu_us_per_subscribe  vs_none  storm_seconds  rss_bytes_per_connection  (median of $ROUNDS, $SUBS subscribers)"
base=""
for mode in none hs256 rs256 es256; do
    for _ in $(seq "$ROUNDS"); do storm "$mode"; done
    runs=$(cat "$KEYS/runs-$mode")
    cpu=$(awk '{print $1}' <<<"$runs" | median)
    secs=$(awk '{print $2}' <<<"$runs" | median)
    rss=$(awk '{print $3}' <<<"$runs" | median)
    [ -n "$base" ] || base=$cpu
    printf '%-6s %20.1f  %6.2fx  %13.2f  %24.0f\n' "$mode" "$cpu" "$(echo "$cpu / $base" | bc -l)" "$secs" "$rss"
done

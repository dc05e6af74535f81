#!/usr/bin/env bash
# Subscribe cost with and without a token, and with the auth hook: the same connect storm against spout with --auth
# none, with --auth jwt, each subscriber presenting an HS256, RS256 or ES256 token (minted by
# loadtest/mint_token.mjs, Node's own crypto) in its Authorization header, and with --auth hook asking a local hook
# (loadtest/hook_server.mjs, which allows every subscribe) with the HS256 token in the header. Reports, per mode,
# spout's CPU per subscribe (its hook threads included), the subscribe time p50/p99 in the storm (request sent →
# stream head read, as spout-load sees it) and alone (300 subscribes one after another on a fresh connection each,
# before the storm: a check's round trip without queueing), the storm's wall time and spout's RSS per connection,
# the median of --rounds runs, and each mode's CPU against the first mode (--auth none by default).
#
#   loadtest/auth.sh                              # 10,000 subscribers, 3 rounds per mode
#   loadtest/auth.sh --subscribers 5000 --rounds 5 --modes "none hs256 hook" --results FILE
#
# spout runs pinned to core 0 with one worker, spout-load and the hook server on core 1. Every step is bounded
# (timeout); each server is stopped after its run. Needs node and openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBS=10000
ROUNDS=3
RESULTS=$ROOT/loadtest/results/auth.jsonl
PORT=18795
MODES="none hs256 rs256 es256 hook"
while [ $# -gt 0 ]; do
    case "$1" in
        --subscribers) SUBS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
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
HOOK=""
HOOK_PORT=$((PORT + 1))
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; [ -n "$HOOK" ] && kill "$HOOK" 2>/dev/null; rm -rf "$KEYS"' EXIT

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
# The storm asks for 10,000 subscribes at once: a timeout long enough that none waits out its turn in the hook's
# queue, so the figure is the round trip's cost, not refusals.
HOOK_ARGS=(--auth hook --auth-hook "http://127.0.0.1:$HOOK_PORT/check" --auth-hook-timeout 60s)
TOKEN[hook]=${TOKEN[hs256]}
if [[ " $MODES " == *" hook "* ]]; then
    taskset -c 1 node "$ROOT/loadtest/hook_server.mjs" "$HOOK_PORT" &
    HOOK=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$HOOK_PORT") 2>/dev/null && break; sleep 0.1; done
fi

# One storm; appends "cpu_us_per_subscribe connect_seconds rss_bytes_per_connection" to $KEYS/runs-MODE. Runs in
# this shell (not a subshell), so the EXIT trap sees the server it started.
storm() {
    local mode=$1
    local server_args=() header=()
    case "$mode" in
        none) ;;
        hook) server_args=("${HOOK_ARGS[@]}") ;;
        *) server_args=("${AUTH_ARGS[@]}") ;;
    esac
    [ "$mode" = none ] || header=(--header "Authorization: Bearer ${TOKEN[$mode]}")
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "port $PORT is in use by another process; pass --port" >&2
        exit 1
    fi
    taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 "${server_args[@]}" >/tmp/spout-auth.log 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    local alone
    alone=$(timeout 60 taskset -c 1 python3 - "$PORT" "${header[1]:-}" <<'PY'
import socket, sys, time
port, header = int(sys.argv[1]), sys.argv[2]
request = ("GET /sub/c0 HTTP/1.1\r\nHost: load\r\n" + (header + "\r\n" if header else "") + "\r\n").encode()
times = []
for _ in range(300):
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.perf_counter()
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed before the stream's head"
        head += chunk
    times.append(time.perf_counter() - started)
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    sock.close()
times.sort()
print(round(times[len(times) // 2] * 1e6), round(times[int(len(times) * 0.99)] * 1e6))
PY
)
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
t = r["connect_time_us"]
print(s["subscribe_cpu_us_each"], r["connect_seconds"], s["rss_bytes_per_connection"], t["p50"], t["p99"], sys.argv[1])' \
        "$alone" >>"$KEYS/runs-$mode"
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "mode   cpu_us_per_subscribe  vs_first  storm_subscribe_p50_us  storm_subscribe_p99_us  alone_p50_us  alone_p99_us  storm_seconds  rss_bytes_per_connection  (median of $ROUNDS, $SUBS subscribers)"
base=""
for mode in $MODES; do
    for _ in $(seq "$ROUNDS"); do storm "$mode"; done
    runs=$(cat "$KEYS/runs-$mode")
    cpu=$(awk '{print $1}' <<<"$runs" | median)
    secs=$(awk '{print $2}' <<<"$runs" | median)
    rss=$(awk '{print $3}' <<<"$runs" | median)
    p50=$(awk '{print $4}' <<<"$runs" | median)
    p99=$(awk '{print $5}' <<<"$runs" | median)
    alone50=$(awk '{print $6}' <<<"$runs" | median)
    alone99=$(awk '{print $7}' <<<"$runs" | median)
    [ -n "$base" ] || base=$cpu
    printf '%-6s %20.1f  %7.2fx  %22.0f  %22.0f  %12.0f  %12.0f  %13.2f  %24.0f\n' "$mode" "$cpu" \
        "$(echo "$cpu / $base" | bc -l)" "$p50" "$p99" "$alone50" "$alone99" "$secs" "$rss"
done

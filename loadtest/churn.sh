#!/usr/bin/env bash
# Churn: the same connect/subscribe/disconnect storm, repeated against one spout process, to show that nothing
# (slab, hub, channel table, buffers) is left behind by connections that came and went.
#
#   loadtest/churn.sh                          # 19,000 subscribers on 19,000 channels, 10 cycles
#   loadtest/churn.sh --subscribers 5000 --cycles 3 --results FILE
#
# spout runs pinned to core 0 with one worker, the tool on core 1 (two processes of 9,500 subscribers each over 4
# source addresses, so neither process passes its descriptor limit). Each cycle is spout-load's `connect-storm`:
# all subscribers connect as fast as 512 in flight allow, then the tool exits and its sockets close. After each
# cycle the script waits until spout reports no connection left, then records spout's VmRSS. It prints, per
# cycle, the server CPU per subscribe and the RSS after the disconnect, and the last cycle's RSS against the
# first's. Every step is bounded (timeout); the server is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBS=19000
CYCLES=10
RESULTS=$ROOT/loadtest/results/churn.jsonl
PORT=8094
while [ $# -gt 0 ]; do
    case "$1" in
        --subscribers) SUBS=$2; shift 2 ;;
        --cycles) CYCLES=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

SPOUT=$ROOT/target/release/spout
LOAD=$ROOT/target/release/spout-load
(cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$RESULTS")"

taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --max-connections 19900 >/tmp/spout-churn.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }
connections() {
    curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^spout_connections[{ ]/ {n += $2} END {print n + 0}'
}

echo "cycle  cpu_us_per_subscribe  rss_after_kib"
first=""
for cycle in $(seq "$CYCLES"); do
    timeout 180 taskset -c 1 "$LOAD" -q --target-name spout --tag "churn$SUBS" --server-pid "$SERVER" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --processes 2 --source-addrs 4 --json "$RESULTS" connect-storm -n "$SUBS" >/tmp/spout-churn-cycle.log
    # The last connection counted by /metrics is this probe's own.
    for _ in $(seq 100); do [ "$(connections)" -le 1 ] && break; sleep 0.2; done
    rss=$(rss_kib)
    cpu=$(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; s=json.load(sys.stdin)["results"].get("server", {}); v=s.get("subscribe_cpu_us_each"); print("?" if v is None else f"{v:.1f}")')
    [ -n "$first" ] || first=$rss
    printf '%5d  %20s  %13d\n' "$cycle" "$cpu" "$rss"
done
python3 -c "import sys; f, l = $first, $rss; print(f'RSS after the last cycle: {l} KiB, {100 * (l - f) / f:+.1f}% against the first ({f} KiB)')"

#!/usr/bin/env bash
# Heartbeats at scale: what per-stream heartbeats cost on idle subscribers, and whether a wave of them delays paced
# events. Two runs against a fresh spout each (pinned to core 0, one worker; the tool on core 1):
#
#   loadtest/heartbeat.sh                      # --heartbeat 1s, then --heartbeat 1h (no heartbeat in the window)
#   loadtest/heartbeat.sh --idle 18000 --beat 1s --results FILE
#
# In each run: IDLE subscribers (default 18,000, two tool processes over 4 source addresses) connect to their own
# channels and stay idle; the server's CPU is read from /proc over a 10 s window of idleness (so the difference
# between the runs, divided by the heartbeats sent, is the CPU of one heartbeat); then 1,000 more subscribers on
# one channel get 65 events/s for 10 s while the idle ones keep getting heartbeats, and the paced events' latency
# is recorded (spout-load fanout). Bounded: every step has a timeout; servers are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IDLE=18000
BEAT=1s
RESULTS=$ROOT/loadtest/results/heartbeat.jsonl
PORT=8095
while [ $# -gt 0 ]; do
    case "$1" in
        --idle) IDLE=$2; shift 2 ;;
        --beat) BEAT=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
SPOUT=$ROOT/target/release/spout
LOAD=$ROOT/target/release/spout-load
(cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$RESULTS")"
SERVER=""
IDLERS=""
trap '[ -n "$IDLERS" ] && kill $IDLERS 2>/dev/null; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; true' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for beat in "$BEAT" 1h; do
    taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --heartbeat "$beat" >/tmp/spout-heartbeat.log 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    timeout 120 taskset -c 1 "$LOAD" -q --target-name "spout-heartbeat-$beat" --tag "idle$IDLE-beat$beat" \
        --sub-url "http://127.0.0.1:$PORT/sub/idle{channel}" --pub-url "http://127.0.0.1:$PORT/pub/idle{channel}" \
        --processes 2 --source-addrs 4 idle -n "$IDLE" --hold 40s >/tmp/spout-heartbeat-idle.log 2>&1 &
    IDLERS=$!
    # Wait until every idle subscriber is connected (the server's open-streams gauge), then a little more.
    for _ in $(seq 600); do
        n=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^spout_subscribers[{ ]/ {n += $2} END {print n + 0}')
        [ "$n" -ge "$IDLE" ] && break
        sleep 0.1
    done
    sleep 2
    before=$(cpu_ticks "$SERVER")
    sleep 10
    after=$(cpu_ticks "$SERVER")
    hz=$(getconf CLK_TCK)
    idle_cpu_ms=$(( (after - before) * 1000 / hz ))
    timeout 60 taskset -c 1 "$LOAD" -q --target-name "spout-heartbeat-$beat" --tag "paced1k-beside-idle$IDLE-beat$beat" \
        --sub-url "http://127.0.0.1:$PORT/sub/paced{channel}" --pub-url "http://127.0.0.1:$PORT/pub/paced{channel}" \
        --server-pid "$SERVER" --json "$RESULTS" fanout -n 1000 --rate 65 --duration 10s --drain 3s \
        >/tmp/spout-heartbeat-paced.log
    p99=$(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; l=r.get("latency_us", {}); print(l.get("p50"), l.get("p99"))')
    echo "--heartbeat $beat: server CPU over 10 s with $IDLE idle subscribers: ${idle_cpu_ms} ms; paced events beside them, latency p50 p99 (us): $p99"
    kill $IDLERS 2>/dev/null || true; wait $IDLERS 2>/dev/null || true; IDLERS=""
    kill $SERVER; wait $SERVER 2>/dev/null || true; SERVER=""
done

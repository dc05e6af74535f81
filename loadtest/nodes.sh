#!/usr/bin/env bash
# Several spout nodes on one Redis Cluster, on this box.
#
#   loadtest/nodes.sh grid [--rounds 3]     1, 2 and 3 nodes × 1 and 3 shards: deliveries/s, publishes/s, p99
#   loadtest/nodes.sh wide [--subscribers 95000] [--nodes 5]
#                                           past one process's descriptor limit: idle subscribers spread over
#                                           the nodes, then one publish that must reach all of them
#   common: --results FILE (default loadtest/results/nodes.jsonl)
#
# Every spout node runs with one worker and every redis-server (cluster mode, no persistence) on core 0;
# spout-load runs on core 1, one process per node, each subscribing through its own node (`--sub-url` with one
# template per node), so that no process passes its descriptor limit. Publishers post to the first node. `grid`
# runs `many-channels` (3,000 SSE subscribers on 300 channels, 8 publishers, closed loop, 5 s) per cell and round;
# `wide` runs `fanout --events 1` and reports the time until the last subscriber had the event and the memory per
# connection summed over the nodes. Every run is bounded in time; every process is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-}
[ -n "$MODE" ] && shift
ROUNDS=3
SUBS=95000
WIDE_NODES=5
RESULTS=$ROOT/loadtest/results/nodes.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --subscribers) SUBS=$2; shift 2 ;;
        --nodes) WIDE_NODES=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        -h|--help) sed -n 2,17p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case "$MODE" in grid|wide) ;; *) sed -n 2,17p "$0"; exit 2 ;; esac

SPOUT=$ROOT/target/release/spout
LOAD=$ROOT/target/release/spout-load
(cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$RESULTS")"
SCRATCH=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

REDIS_BASE=7421
SPOUT_BASE=8421

# cluster SHARDS: a Redis Cluster of SHARDS masters on core 0.
cluster() {
    local shards=$1 ports=()
    for i in $(seq 0 $((shards - 1))); do
        local port=$((REDIS_BASE + i))
        ports+=("127.0.0.1:$port")
        taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file "$SCRATCH/nodes-$port.conf" --dir "$SCRATCH" --save "" --appendonly no \
            >"$SCRATCH/redis-$port.log" 2>&1 &
        PIDS+=($!)
        for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    if [ "$shards" -eq 1 ]; then
        redis-cli -p "$REDIS_BASE" cluster addslotsrange 0 16383 >/dev/null
    else
        redis-cli --cluster create "${ports[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    fi
    for _ in $(seq 200); do redis-cli -p "$REDIS_BASE" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
    BROKER="redis://$(IFS=,; echo "${ports[*]}")"
}

# nodes N: N spout nodes on the cluster; sets NODE_PIDS, SUB_URLS, PUB_URL.
nodes() {
    local count=$1
    NODE_PIDS=()
    SUB_URLS=""
    for i in $(seq 0 $((count - 1))); do
        local port=$((SPOUT_BASE + i))
        taskset -c 0 "$SPOUT" --listen "127.0.0.1:$port" --workers 1 --broker "$BROKER" \
            --max-connections 19900 >>"$SCRATCH/spout-$port.log" 2>&1 &
        PIDS+=($!)
        NODE_PIDS+=($!)
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
        SUB_URLS="$SUB_URLS http://127.0.0.1:$port/sub/{channel}"
    done
    PUB_URL="http://127.0.0.1:$SPOUT_BASE/pub/{channel}"
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    rm -rf "${SCRATCH:?}"/*
}

load() {
    local tag=$1 processes=$2
    shift 2
    timeout 300 taskset -c 1 "$LOAD" -q --target-name spout --tag "$tag" \
        --server-pid "$(IFS=,; echo "${NODE_PIDS[*]}")" --sub-url "${SUB_URLS# }" --pub-url "$PUB_URL" \
        --processes "$processes" --source-addrs 4 --json "$RESULTS" "$@" >/dev/null
}

if [ "$MODE" = grid ]; then
    for round in $(seq "$ROUNDS"); do
        for shards in 1 3; do
            for count in 1 2 3; do
                cluster "$shards"
                nodes "$count"
                load "nodes$count-shards$shards" "$count" many-channels -n 3000 --channels 300 --publishers 8 --duration 5s
                stop_all
                echo "round $round: $count node(s), $shards shard(s) done" >&2
            done
        done
    done
    python3 - "$RESULTS" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    tag = r["common"]["tag"]
    if tag.startswith("nodes") and r["results"]["publish"]["ok"]:
        runs[tag].append(r["results"])
med = lambda xs: statistics.median(xs)
base = None
print(f"{'cell':18} {'runs':>4} {'deliveries/s':>12} {'publishes/s':>11} {'latency p50/p99 us':>19} {'cpu us/delivery':>15} {'lost':>5}")
for tag in sorted(runs, key=lambda t: (t.split("-")[1], t)):
    rs = runs[tag]
    d = med([r["deliveries_per_s"] for r in rs])
    line = (f"{tag:18} {len(rs):>4} {d:>12,.0f} {med([r['publish']['events_per_s'] for r in rs]):>11,.0f} "
            f"{med([r['latency_us']['p50'] for r in rs]):>9.0f}/{med([r['latency_us']['p99'] for r in rs]):<9.0f} "
            f"{med([r['server']['cpu_us_per_delivery'] for r in rs]):>15.2f} {sum(r['loss']['missing'] for r in rs):>5}")
    print(line)
PY
else
    cluster 3
    nodes "$WIDE_NODES"
    rss_before=0
    for pid in "${NODE_PIDS[@]}"; do
        rss_before=$((rss_before + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") * 1024))
    done
    load "wide$SUBS-nodes$WIDE_NODES" "$WIDE_NODES" fanout -n "$SUBS" --events 1 --ramp 5000 --drain 30s
    python3 - "$RESULTS" "$rss_before" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).readlines()[-1])["results"]
after = r.get("server", {}).get("rss_bytes_after")
per = (after - int(sys.argv[2])) / max(r["subscribed"], 1) if after else float("nan")
print(f"subscribed {r['subscribed']} of {r['subscribers']}; delivered {r['delivered']} of {r['expected_deliveries']}; "
      f"the last subscriber had the event {r['latency_us']['max'] / 1000:.1f} ms after it was sent "
      f"(p50 {r['latency_us']['p50'] / 1000:.1f} ms); spout's memory (RSS, all nodes) {per:.0f} bytes per connection")
PY
fi

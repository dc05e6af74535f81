#!/usr/bin/env bash
# The cost of the Redis broker on one node: the same scenarios against spout with --broker local and with
# --broker redis:// (a one-shard Redis Cluster), round after round, and the medians side by side.
#
#   loadtest/broker.sh                        # 3 rounds, results in loadtest/results/broker.jsonl
#   loadtest/broker.sh --rounds 5 --results FILE
#
# spout (one worker) and redis-server share core 0; spout-load runs on core 1. Per run the tool records spout's CPU
# per delivery (from /proc/PID, so Redis's share of the core is not counted in it) and the publish round trip; the
# script adds Redis's CPU per publish (from /proc/PID/stat of redis-server). Scenarios: one channel with 1,000 SSE
# subscribers, closed loop with 1 and with 8 publisher connections; the same paced at 65 events/s; 1,000
# subscribers on 1,000 channels with 8 publishers (the publish path). Every run is bounded in time; every process
# is stopped on exit.
set -euo pipefail

PORT=8095
source "$(dirname "$0")/lib.sh"
ROUNDS=3
RESULTS=$ROOT/loadtest/results/broker.jsonl
REDIS_PORT=7411
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

build
mkdir -p "$(dirname "$RESULTS")"
SCRATCH=$(mktemp -d)
# spout's log is kept (a run that finds the server gone points here).
LOG=${RESULTS%.jsonl}-spout.log
SERVER=""
trap 'stop_all; rm -rf "$SCRATCH"' EXIT

one_shard_redis "$REDIS_PORT" "$SCRATCH" 0

redis_ticks() { awk '{print $14 + $15}' "/proc/$REDIS/stat"; }

start_spout() {
    local broker=$1
    taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --broker "$broker" >>"$LOG" 2>&1 &
    SERVER=$!
    started "$SERVER"
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
}

stop_spout() {
    stop "$SERVER"
    SERVER=""
}

# run BROKER_NAME TAG SPOUT-LOAD-ARGS...: one measured run, its JSON line extended with Redis's CPU per publish.
run() {
    local name=$1 tag=$2
    shift 2
    local before after line
    before=$(redis_ticks)
    timeout 120 taskset -c 1 "$LOAD" -q --target-name "spout-$name" --tag "$tag" --server-pid "$SERVER" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --json "$SCRATCH/run.jsonl" "$@" >/dev/null
    after=$(redis_ticks)
    line=$(tail -n 1 "$SCRATCH/run.jsonl")
    kill -0 "$SERVER" 2>/dev/null || { echo "spout exited during $tag ($name); its log: $LOG" >&2; exit 1; }
    python3 - "$line" "$((after - before))" "$(getconf CLK_TCK)" "$name" >>"$RESULTS" <<'PY'
import json, sys
run, ticks, hz, broker = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ok = run["results"]["publish"]["ok"]
run["broker"] = broker
run["results"]["redis_cpu_us_per_publish"] = (ticks / hz * 1e6 / ok) if broker == "redis" and ok else None
print(json.dumps(run))
PY
}

for round in $(seq "$ROUNDS"); do
    for broker in local "redis://127.0.0.1:$REDIS_PORT"; do
        name=${broker%%:*}
        start_spout "$broker"
        run "$name" fanout1k-pub1 fanout -n 1000 --publishers 1 --duration 5s
        run "$name" fanout1k-pub8 fanout -n 1000 --publishers 8 --duration 5s
        run "$name" paced1k fanout -n 1000 --rate 65 --duration 5s
        run "$name" many1k-pub8 many-channels -n 1000 --channels 1000 --publishers 8 --duration 5s
        stop_spout
        echo "round $round: $name done" >&2
    done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "broker" in r:
        runs[(r["common"]["tag"], r["broker"])].append(r["results"])
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
def ok(r):
    return r["publish"]["ok"] > 0 and r["latency_us"] is not None
for key in runs:
    runs[key] = [r for r in runs[key] if ok(r)]
print(f"{'scenario':14} {'broker':6} {'runs':>4} {'deliveries/s':>12} {'cpu us/deliv':>12} {'pub rtt p50/p99 us':>19} {'latency p50/p99 us':>19} {'redis us/pub':>12}")
for tag in sorted({t for t, _ in runs}):
    local = runs.get((tag, "local"), [])
    for broker in ("local", "redis"):
        rs = runs.get((tag, broker), [])
        if not rs:
            continue
        cpu = med([r["server"].get("cpu_us_per_delivery") for r in rs])
        line = (f"{tag:14} {broker:6} {len(rs):>4} {med([r['deliveries_per_s'] for r in rs]):>12,.0f} {cpu:>12.3f} "
                f"{med([r['publish']['rtt_us']['p50'] for r in rs]):>9.0f}/{med([r['publish']['rtt_us']['p99'] for r in rs]):<9.0f} "
                f"{med([r['latency_us']['p50'] for r in rs]):>9.0f}/{med([r['latency_us']['p99'] for r in rs]):<9.0f} "
                f"{med([r.get('redis_cpu_us_per_publish') for r in rs]):>12.1f}")
        if broker == "redis" and local:
            base = med([r["server"].get("cpu_us_per_delivery") for r in local])
            line += f"   cpu/delivery {cpu / base:.2f}x local"
        print(line)
PY

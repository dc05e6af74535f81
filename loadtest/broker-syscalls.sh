#!/usr/bin/env bash
# System calls and context switches per publish, by thread, with --broker local and with --broker redis:// (a
# one-shard Redis Cluster). Counts, unlike CPU time, barely depend on what else the machine is doing, so they
# compare builds and brokers on a shared, noisy box.
#
#   loadtest/broker-syscalls.sh                              # this checkout's build, 3 runs per broker
#   loadtest/broker-syscalls.sh --spout OTHER/spout --runs 5 # another build (a before/after comparison)
#
# spout (one worker) and redis-server share core 0; spout-load runs on core 1 with the publish path's shape:
# 1,000 channels with one SSE subscriber each, 8 publisher connections in a closed loop for 5 s. `perf stat`
# counts every system call (raw_syscalls:sys_enter) and context switch of spout's threads over the whole load;
# the script divides by the publishes answered 200 and prints the median of the runs. Needs perf with
# tracepoints (linux-perf, run as root). Every process is stopped on exit; each run is bounded in time.
set -euo pipefail

PORT=8094
source "$(dirname "$0")/lib.sh"
RUNS=3
REDIS_PORT=7412
OTHER_SPOUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --spout) OTHER_SPOUT=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
SPOUT=${OTHER_SPOUT:-$SPOUT}
build
SCRATCH=$(mktemp -d)
trap 'stop_all; rm -rf "$SCRATCH"' EXIT

one_shard_redis "$REDIS_PORT" "$SCRATCH" 0

for broker in local "redis://127.0.0.1:$REDIS_PORT"; do
    name=${broker%%:*}
    for run in $(seq "$RUNS"); do
        taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --broker "$broker" >>"$SCRATCH/spout.log" 2>&1 &
        SERVER=$!
        started "$SERVER"
        wait_port "$PORT"
        perf stat --per-thread -x, -e raw_syscalls:sys_enter,context-switches -p "$SERVER" \
            -o "$SCRATCH/stat.$name.$run" &
        counting=$!
        sleep 0.5
        timeout 120 taskset -c 1 "$LOAD" -q --sub-url "http://127.0.0.1:$PORT/sub/{channel}" \
            --pub-url "http://127.0.0.1:$PORT/pub/{channel}" --json "$SCRATCH/run.$name.$run.jsonl" \
            many-channels -n 1000 --channels 1000 --publishers 8 --duration 5s >/dev/null
        kill -INT "$counting"
        wait "$counting" || true
        stop "$SERVER"
    done
done

python3 - "$SCRATCH" "$RUNS" <<'PY'
import json, statistics, sys
from collections import defaultdict
scratch, runs = sys.argv[1], int(sys.argv[2])
print(f"{'broker':6} {'thread':8} {'syscalls/publish':>17} {'switches/publish':>17}   (median of {runs} runs)")
for broker in ("local", "redis"):
    per = defaultdict(lambda: defaultdict(list))
    for run in range(1, runs + 1):
        record = json.loads(open(f"{scratch}/run.{broker}.{run}.jsonl").read().splitlines()[-1])
        published = record["results"]["publish"]["ok"]
        counts = defaultdict(lambda: defaultdict(float))
        for line in open(f"{scratch}/stat.{broker}.{run}"):
            fields = line.strip().split(",")
            if len(fields) < 4 or not fields[0].startswith("spout-"):
                continue
            thread = "broker" if fields[0].startswith("spout-broker") else "worker" if "worker" in fields[0] else None
            if thread and fields[1].replace(".", "").isdigit():
                counts[thread][fields[3]] += float(fields[1])
        for thread, events in counts.items():
            for event, n in events.items():
                per[thread][event].append(n / published)
    for thread in ("worker", "broker"):
        if thread in per:
            sys_ = statistics.median(per[thread]["raw_syscalls:sys_enter"])
            sw = statistics.median(per[thread]["context-switches"])
            print(f"{broker:6} {thread:8} {sys_:17.2f} {sw:17.2f}")
PY

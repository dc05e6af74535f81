#!/usr/bin/env bash
# Where a node's instructions go per publish, with --broker local and with --broker redis:// (a one-shard Redis
# Cluster), counted by callgrind: instruction counts do not depend on what else the machine is doing, so this
# compares the two brokers exactly on a shared, noisy box (timing cannot).
#
#   loadtest/broker-profile.sh                     # 2,000 publishes to one channel with one subscriber
#   loadtest/broker-profile.sh --publishes 5000 --out DIR
#   loadtest/broker-profile.sh --publishers 8      # closed loop, 8 publisher connections, for 20 s
#   loadtest/broker-profile.sh --spout OTHER/spout # another build of spout (a before/after comparison)
#
# spout (one worker) runs under `valgrind --tool=callgrind --separate-threads=yes`; spout-load publishes to one
# channel with one SSE subscriber, paced (200/s, so that valgrind's slowness never backs up the queues), or closed
# loop with --publishers N (requests then queue at the node, as under load). The script prints each thread's
# instructions per publish and the top functions of the broker thread; the callgrind files stay in DIR for
# callgrind_annotate. Every process is stopped on exit; each run is bounded in time.
set -euo pipefail

PORT=8097
source "$(dirname "$0")/lib.sh"
PUBLISHES=2000
PUBLISHERS=""
OTHER_SPOUT=""
OUT=$ROOT/loadtest/results/broker-profile
REDIS_PORT=7413
while [ $# -gt 0 ]; do
    case "$1" in
        --publishes) PUBLISHES=$2; shift 2 ;;
        --publishers) PUBLISHERS=$2; shift 2 ;;
        --spout) OTHER_SPOUT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n 2,16p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

SPOUT=${OTHER_SPOUT:-$SPOUT}
build
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
SERVER=""
trap 'stop_all; rm -rf "$SCRATCH"' EXIT

one_shard_redis "$REDIS_PORT" "$SCRATCH"

RATE=200
if [ -n "$PUBLISHERS" ]; then
    SECONDS_OF_LOAD=20
    PACE=(--publishers "$PUBLISHERS")
else
    SECONDS_OF_LOAD=$(( (PUBLISHES + RATE - 1) / RATE ))
    PACE=(--rate "$RATE")
fi
for broker in local "redis://127.0.0.1:$REDIS_PORT"; do
    name=${broker%%:*}
    rm -f "$OUT/$name".*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$OUT/$name.%p" \
        "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --broker "$broker" >"$SCRATCH/spout.log" 2>&1 &
    SERVER=$!
    started "$SERVER"
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
    timeout $((SECONDS_OF_LOAD + 120)) "$LOAD" -q --sub-url "http://127.0.0.1:$PORT/sub/{channel}" \
        --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --json "$SCRATCH/$name.jsonl" fanout -n 1 "${PACE[@]}" --duration "${SECONDS_OF_LOAD}s" >/dev/null
    kill -INT "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    forget "$SERVER"
    SERVER=""
    published=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["results"]["publish"]["ok"])' "$SCRATCH/$name.jsonl")
    echo "== --broker $name: instructions per publish, by thread ($published publishes)"
    for file in "$OUT/$name".*-*; do
        total=$(sed -n 's/^summary: //p' "$file")
        top=$(callgrind_annotate --inclusive=yes "$file" 2>/dev/null | grep -m1 -o 'spout::[a-z_:]*Worker::run\|spout::broker::redis::Node::run' || true)
        printf '  %-40s %8d\n' "${top:-other thread}" $(( total / published ))
    done
done
broker_thread=$(grep -l 'Node::run' "$OUT"/redis.*-* | head -n 1)
echo "== the broker thread's top functions (inclusive), from $broker_thread"
callgrind_annotate --inclusive=yes "$broker_thread" 2>/dev/null | sed -n 25,60p | cut -c1-150

#!/usr/bin/env bash
# How long a subscribe waits when the node must first take its channels from Redis (follow each channel's shard
# channel, read its stream): the time to the response head of a subscribe to CHANNELS channels that no node has
# held before, on a 3-master Redis Cluster, one node.
#
#   loadtest/warm.sh                                   # this checkout's build, 10 channels, 30 subscribes
#   loadtest/warm.sh --channels 1 --tries 50
#   loadtest/warm.sh --spout A/spout --spout B/spout   # builds side by side, alternating, 3 rounds each
#
# Each subscribe asks for channels with new names (so every one needs its two round trips), through curl; the
# script prints the median and p90 per build and round. Every process is stopped on exit; every request is
# bounded by curl's --max-time.
set -euo pipefail

PORT=8093
source "$(dirname "$0")/lib.sh"
CHANNELS=10
TRIES=30
ROUNDS=3
BUILDS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --channels) CHANNELS=$2; shift 2 ;;
        --tries) TRIES=$2; shift 2 ;;
        --spout) BUILDS+=("$2"); shift 2 ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ ${#BUILDS[@]} -gt 0 ] || { build; BUILDS=("$SPOUT"); ROUNDS=1; }
SCRATCH=$(mktemp -d)
trap 'stop_all; rm -rf "$SCRATCH"' EXIT

seeds=()
for port in 7621 7622 7623; do
    mkdir -p "$SCRATCH/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$SCRATCH/$port/nodes.conf" \
        --dir "$SCRATCH/$port" --save "" --appendonly no >"$SCRATCH/$port/redis.log" 2>&1 &
    started $!
    seeds+=("127.0.0.1:$port")
done
for port in 7621 7622 7623; do wait_port "$port"; done
redis-cli --cluster create "${seeds[@]}" --cluster-yes >/dev/null
for _ in $(seq 100); do redis-cli -p 7621 cluster info | grep -q cluster_state:ok && break; sleep 0.1; done

for round in $(seq "$ROUNDS"); do
    for spout in "${BUILDS[@]}"; do
        "$spout" --listen "127.0.0.1:$PORT" --workers 1 --broker "redis://127.0.0.1:7621" >>"$SCRATCH/spout.log" 2>&1 &
        server=$!
        started "$server"
        for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
        : >"$SCRATCH/times"
        for try in $(seq "$TRIES"); do
            names=$(for c in $(seq "$CHANNELS"); do printf 'warm-%s-%s-%s-%s,' "$round" "$server" "$try" "$c"; done)
            curl -s -o /dev/null --max-time 0.5 -w '%{time_starttransfer}\n' \
                "http://127.0.0.1:$PORT/sub/${names%,}" >>"$SCRATCH/times" || true
        done
        sort -n "$SCRATCH/times" | awk -v build="$spout" -v s="$round" '{t[NR] = $1 * 1000}
            END {printf "round %s  %-50s median %6.2f ms  p90 %6.2f ms  (%d subscribes)\n", s, build,
                 t[int((NR + 1) / 2)], t[int(NR * 0.9)], NR}'
        stop "$server"
    done
done

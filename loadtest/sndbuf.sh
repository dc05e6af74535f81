#!/usr/bin/env bash
# What a stream's kernel send buffer (--socket-send-buffer) costs and buys. For each value (default: 0, the
# kernel's autotuning, then 16KiB, 64KiB, 256KiB), against a fresh spout (one worker, pinned to core 0; the tool on
# core 1):
#
#   loadtest/sndbuf.sh
#   loadtest/sndbuf.sh --values "0 64KiB" --results FILE
#
# 1. slow consumers (spout-load slow): 500 subscribers on one channel, 100 of which stop reading (8 KiB receive
#    windows), 100 events/s of 2,000 bytes for 10 s without and then with them. Reported: the fast subscribers'
#    latency p99 in both phases, how many slow subscribers the server closed, and the peak of the kernel's TCP
#    memory (/proc/net/sockstat, pages of 4 KiB, machine-wide, sampled every 100 ms) over the run, minus what it
#    was before: what the slow subscribers' unsent bytes held in the kernel, per slow subscriber.
# 2. throughput (spout-load fanout): 1,000 subscribers that all read, closed-loop publishing of 1,000-byte events
#    for 5 s: deliveries/s and latency p99, to see what a smaller buffer costs a fast subscriber.
# Bounded: every step has a timeout; the server is stopped on exit. Port 8096, or SPOUT_LOAD_PORT.
set -euo pipefail

PORT=8096
source "$(dirname "$0")/lib.sh"
VALUES="0 16KiB 64KiB 256KiB"
RESULTS=$ROOT/loadtest/results/sndbuf.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --values) VALUES=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        -h|--help) sed -n 2,18p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
build
mkdir -p "$(dirname "$RESULTS")"

for value in $VALUES; do
    taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --socket-send-buffer "$value" \
        >/tmp/spout-sndbuf.log 2>&1 &
    SERVER=$!
    started $SERVER
    wait_port "$PORT"
    base=$(tcp_mem_pages)
    peak_file=$(mktemp)
    ( peak=0; while true; do m=$(tcp_mem_pages); [ "$m" -gt "$peak" ] && peak=$m && echo "$peak" >"$peak_file"; sleep 0.1; done ) &
    SAMPLER=$!
    started $SAMPLER
    timeout 120 taskset -c 1 "$LOAD" -q --target-name spout --tag "sndbuf-$value-slow" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --server-pid "$SERVER" --size 2000 --json "$RESULTS" \
        slow -n 500 --slow-share 0.2 --rate 100 --duration 10s --probe 3s >/tmp/spout-sndbuf-slow.log
    stop $SAMPLER
    peak=$(cat "$peak_file" 2>/dev/null || echo "$base"); rm -f "$peak_file"
    kernel_kib=$(( (peak - base) * 4 ))
    echo "--socket-send-buffer $value: slow: fast p99 $(field "r['baseline']['latency_us']['p99']" "$RESULTS") us without, $(field "r['with_slow']['latency_us']['p99']" "$RESULTS") us with 100 slow; slow closed by the server $(field "r['slow']['closed_by_server']" "$RESULTS"); kernel TCP memory peak +${kernel_kib} KiB (+$(( kernel_kib / 100 )) KiB per slow subscriber)"
    timeout 60 taskset -c 1 "$LOAD" -q --target-name spout --tag "sndbuf-$value-fanout" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --server-pid "$SERVER" --size 1000 --json "$RESULTS" \
        fanout -n 1000 --duration 5s --drain 3s >/tmp/spout-sndbuf-fanout.log
    echo "--socket-send-buffer $value: fanout 1,000 x 1,000-byte events: $(field "r['deliveries_per_s']" "$RESULTS") deliveries/s, p99 $(field "r['latency_us']['p99']" "$RESULTS") us"
    stop_all
done

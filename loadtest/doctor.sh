#!/usr/bin/env bash
# Checks `spout doctor`'s memory estimate against a real run, and re-measures the figures behind it:
#
#   loadtest/doctor.sh                     # 19,000 idle SSE subscribers of one channel, spout with 2 workers
#   loadtest/doctor.sh -n 10000 --workers 1
#
# A fresh release spout holds N idle subscribers (spout-load idle, two processes over 4 source addresses); then
#   - spout's RSS is compared with `spout doctor --target-connections N --channels 1`'s estimate (within 25%);
#   - the RSS growth over N is the per-connection figure (doctor's USER_BYTES_PER_CONNECTION);
#   - the growth of the kernel's slab caches (/proc/slabinfo, root only) over 2N (both ends of each loopback
#     connection are on this machine) is the kernel's per-connection figure (KERNEL_BYTES_PER_CONNECTION),
#     compared with doctor's within 25%. proc_inode_cache is left out: it grows when something lists
#     /proc/PID/fd, not with sockets.
# Bounded: every step has a timeout; the server and the tool are stopped on exit. Exit 1 when an estimate is off.
# Port 8096, or SPOUT_LOAD_PORT.
set -euo pipefail

PORT=8096
source "$(dirname "$0")/lib.sh"
N=19000
WORKERS=2
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        -h|--help) sed -n 2,15p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
build

# Bytes held by each slab cache: slabs × pages per slab × page size.
slab() { [ -r /proc/slabinfo ] && awk 'NR > 2 && $1 != "proc_inode_cache" {s += $15 * $6 * 4096} END {print s}' /proc/slabinfo || echo ""; }

"$SPOUT" --listen "127.0.0.1:$PORT" --workers "$WORKERS" --log-level warn >/tmp/spout-doctor.log 2>&1 &
SERVER=$!
started $SERVER
wait_port "$PORT"
sleep 0.5
rss_before=$(rss "$SERVER")
slab_before=$(slab)
timeout 120 "$LOAD" -q --server-pid "$SERVER" --sub-url "http://127.0.0.1:$PORT/sub/doctor{channel}" \
    --pub-url "http://127.0.0.1:$PORT/pub/doctor{channel}" --processes 2 --source-addrs 4 \
    idle -n "$N" --hold 15s >/tmp/spout-doctor-idle.log 2>&1 &
LOADER=$!
started $LOADER
for _ in $(seq 600); do
    n=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^spout_subscribers[{ ]/ {n += $2} END {print n + 0}')
    [ "$n" -ge "$N" ] && break
    sleep 0.1
done
[ "$n" -ge "$N" ] || { echo "only $n of $N subscribers connected" >&2; exit 1; }
sleep 3
rss_after=$(rss "$SERVER")
slab_after=$(slab)

report=$("$SPOUT" doctor --workers "$WORKERS" --target-connections "$N" --channels 1 --json)
predicted_rss=$(echo "$report" | sed -E 's/.*"spout_rss_bytes":([0-9]+),"kernel_bytes":([0-9]+)\},"changes".*/\1/')
predicted_kernel=$(echo "$report" | sed -E 's/.*"spout_rss_bytes":([0-9]+),"kernel_bytes":([0-9]+)\},"changes".*/\2/')

status=0
within() { # name measured predicted
    local pct=$(( $2 * 100 / $3 ))
    local verdict=ok
    if [ "$pct" -lt 75 ] || [ "$pct" -gt 125 ]; then verdict=OFF; status=1; fi
    printf '  %-34s measured %12d B, doctor %12d B: %3d%% %s\n' "$1" "$2" "$3" "$pct" "$verdict"
}
echo "spout --workers $WORKERS holding $N idle SSE subscribers of one channel ($(uname -r), $(nproc) cores)"
within "spout RSS" "$rss_after" "$predicted_rss"
echo "  spout per connection: $(( (rss_after - rss_before) / N )) B (RSS $rss_before -> $rss_after)"
if [ -n "$slab_before" ]; then
    kernel=$(( (slab_after - slab_before) / 2 ))
    within "kernel slab, one end of each" "$kernel" "$predicted_kernel"
    echo "  kernel per connection: $(( kernel / N )) B (slab growth over $((2 * N)) socket ends)"
else
    echo "  kernel: /proc/slabinfo is not readable (run as root to measure it)"
fi
wait "$LOADER" || true
forget "$LOADER"
tail -n 4 /tmp/spout-doctor-idle.log
exit $status

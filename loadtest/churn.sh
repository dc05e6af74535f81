#!/usr/bin/env bash
# Churn: the same connect/subscribe/disconnect storm, repeated against one server process, to show that nothing
# (slab, hub, channel table, buffers) is left behind by connections that came and went, and what a subscribe
# costs the server, spout side by side with nchan in the same run.
#
#   loadtest/churn.sh                          # spout and nchan, 19,000 subscribers of one channel,
#                                              # 10 cycles per run, 3 rounds
#   loadtest/churn.sh --targets spout --rounds 1 --subscribers 5000 --cycles 3 --results FILE
#   loadtest/churn.sh --targets spout --spout /tmp/spout-before     # another build of spout (before/after)
#
# Each run starts its server fresh, pinned to core 0 with one worker (spout --workers 1; nginx/nchan with
# worker_processes 1, loadtest/compare/nchan/nginx.conf on --port), the tool on core 1 (two processes of 9,500
# subscribers each over 4 source addresses, so neither process passes its descriptor limit). Rounds interleave
# the targets (spout, nchan, spout, nchan, ...) so that the shared machine's drifts fall on both alike. Each cycle
# is spout-load's `connect-storm` (all subscribers on one channel): they connect as fast as 512 in flight allow,
# then the tool exits and its sockets close. After each cycle the script waits until the server holds no
# connection on its port (ss), then records its VmRSS. It prints, per cycle, the server CPU per subscribe (the
# connect phase, as spout-load measures it), the server CPU per connection over the whole cycle (connect and
# disconnect, from /proc/PID/stat) and the RSS after the disconnect; per run, the median CPU per subscribe and the last cycle's RSS against the first's; at
# the end, per target the median over the runs and spout's ratio to nchan. Every step is bounded (timeout); the
# servers are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBS=19000
CYCLES=10
ROUNDS=3
TARGETS="spout nchan"
RESULTS=$ROOT/loadtest/results/churn.jsonl
PORT=23094
SPOUT=$ROOT/target/release/spout
while [ $# -gt 0 ]; do
    case "$1" in
        --subscribers) SUBS=$2; shift 2 ;;
        --cycles) CYCLES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --spout) SPOUT=$2; shift 2 ;;
        -h|--help) sed -n 2,20p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

LOAD=$ROOT/target/release/spout-load
(cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load)
case " $TARGETS " in
    *" nchan "*)
        if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan
        fi
        ;;
esac
ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$RESULTS")"
TMP=$(mktemp -d /tmp/spout-churn.XXXXXX)
GROUP=""

stop_server() {
    [ -n "$GROUP" ] || return 0
    kill -TERM -- "-$GROUP" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$GROUP" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$GROUP" 2>/dev/null || true
    GROUP=""
}
trap 'stop_server; rm -rf "$TMP"' EXIT

# Starts a target fresh in its own process group; sets GROUP, PIDS (every process, for CPU) and MEM_PID (the one
# whose RSS is read: spout itself, nginx's worker).
start_server() {
    case "$1" in
        spout)
            setsid taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --max-connections 19900 \
                --log-level warn >"$TMP/spout.log" 2>&1 &
            ;;
        nchan)
            rm -rf "$TMP/nchan"; mkdir -p "$TMP/nchan/tmp"
            sed "s/listen 127.0.0.1:8081 /listen 127.0.0.1:$PORT /" "$ROOT/loadtest/compare/nchan/nginx.conf" \
                >"$TMP/nchan/nginx.conf"
            setsid taskset -c 0 nginx -p "$TMP/nchan/" -c "$TMP/nchan/nginx.conf" -g 'daemon off;' \
                >"$TMP/nchan.log" 2>&1 &
            ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
    GROUP=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    MEM_PID=$GROUP
    local children
    children=$( (pgrep -P "$GROUP" || true) | tr '\n' ',')
    PIDS="$GROUP${children:+,${children%,}}"
    [ "$1" = nchan ] && MEM_PID=${children%%,*}
    return 0
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$MEM_PID/status"; }
# utime + stime of the server's processes, in clock ticks.
cpu_ticks() {
    local total=0 pid
    for pid in ${PIDS//,/ }; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}
TICKS=$(getconf CLK_TCK)
# Server-side sockets on the port that the server still holds: the listener and TIME-WAIT are left out (the port
# probe above leaves two in TIME-WAIT for a minute, which the server closed and no longer holds).
held() { ss -Htn state connected exclude time-wait "( sport = :$PORT )" | wc -l; }

RUNS=$TMP/runs.tsv
for round in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
        start_server "$target"
        echo "== $target, round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
        echo "cycle  cpu_us_per_subscribe  cpu_us_per_connection_cycle  rss_after_kib"
        first=""
        for cycle in $(seq "$CYCLES"); do
            ticks0=$(cpu_ticks)
            timeout 180 taskset -c 1 "$LOAD" -q --target-name "$target" --tag "churn$SUBS" --server-pid "$PIDS" \
                --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
                --processes 2 --source-addrs 4 --json "$RESULTS" connect-storm -n "$SUBS" >"$TMP/cycle.log"
            for _ in $(seq 150); do [ "$(held)" -eq 0 ] && break; sleep 0.2; done
            rss=$(rss_kib)
            whole=$(python3 -c "print(f'{($(cpu_ticks) - $ticks0) / $TICKS * 1e6 / $SUBS:.2f}')")
            cpu=$(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; s=json.load(sys.stdin)["results"].get("server", {}); v=s.get("subscribe_cpu_us_each"); print("nan" if v is None else f"{v:.2f}")')
            [ -n "$first" ] || first=$rss
            printf '%5d  %20s  %27s  %13d\n' "$cycle" "$cpu" "$whole" "$rss"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$cycle" "$cpu" "$whole" "$rss" >>"$RUNS"
        done
        stop_server
    done
done

python3 - "$RUNS" "$TARGETS" <<'EOF'
import statistics, sys
from collections import defaultdict

path, targets = sys.argv[1], sys.argv[2].split()
runs = defaultdict(list)  # (target, round) -> [(cpu, whole, rss)] in cycle order
for line in open(path):
    target, rnd, _cycle, cpu, whole, rss = line.split("\t")
    runs[(target, int(rnd))].append((float(cpu), float(whole), int(rss)))
medians = {}
for target in targets:
    cpus, wholes, drifts = [], [], []
    for (t, rnd), cycles in sorted(runs.items()):
        if t != target:
            continue
        cpu = statistics.median(c[0] for c in cycles)
        whole = statistics.median(c[1] for c in cycles)
        first, last = cycles[0][2], cycles[-1][2]
        drift = 100 * (last - first) / first
        cpus.append(cpu)
        wholes.append(whole)
        drifts.append(drift)
        print(f"{target} round {rnd}: median {cpu:.1f} µs per subscribe, {whole:.1f} µs per connection over the "
              f"cycle; RSS {first} → {last} KiB ({drift:+.1f}%)")
    if cpus:
        medians[target] = (statistics.median(cpus), statistics.median(wholes))
        print(f"{target}: median over {len(cpus)} runs {medians[target][0]:.1f} µs per subscribe "
              f"(runs {min(cpus):.1f}–{max(cpus):.1f}), {medians[target][1]:.1f} µs per connection over the cycle "
              f"(runs {min(wholes):.1f}–{max(wholes):.1f}); RSS last against first {min(drifts):+.1f}% to "
              f"{max(drifts):+.1f}%")
if "spout" in medians and "nchan" in medians:
    (sc, sw), (nc, nw) = medians["spout"], medians["nchan"]
    print(f"spout ÷ nchan: CPU per subscribe {sc / nc:.2f}×, per connection over the cycle {sw / nw:.2f}×")
EOF

#!/usr/bin/env bash
# The side-by-side comparison: spout against nchan, Pushpin, a tokio + axum SSE server, uWebSockets and the
# physical-limit floor, with the same spout-load scenarios and sizes, and spout's WebSocket subscribers (target
# spout-ws) beside its SSE ones. One command on a fresh Debian machine:
#
#   loadtest/compare/run.sh                      # everything, 3 runs each, results in loadtest/results/compare.jsonl
#                                                # (the stored result sets are the dated files beside it)
#   loadtest/compare/run.sh --runs 1 --targets "spout nchan" --scenarios "fanout1k-paced idle19k"
#
# Options: --results FILE, --runs N (per target and scenario), --targets "...", --scenarios "...", --no-install,
# --no-build, --plots DIR (default docs/), --no-plots, --port-base P (spout on P, nchan P+1, axum P+2, uWebSockets
# P+3, the floor P+10; default 8080, so that runs beside other servers on the same box can keep out of their way;
# Pushpin keeps the ports of its config). Resumable: a (target, scenario) pair that already has N runs
# in the results file is skipped, so an interrupted comparison continues where it stopped.
# loadtest/compare/report.py turns the file into the tables of docs/BENCHMARKS.md; at the end, plot.py redraws its
# charts (bench-cpu.svg, bench-latency.svg, bench-idle.svg in DIR) from the whole results file.
#
# Every server is started fresh for each run, pinned to core 0 (one worker/process each), the tool pinned to
# core 1; "spout2" is spout unpinned with 2 workers (the tool then shares the cores with it); "spout-ws" is spout
# exactly as "spout", with subscribers on its native WebSocket (`--transport ws`, same URLs); "uws" is the
# uWebSockets.js pub/sub server in loadtest/baselines/uws (npm `uwebsockets`, one Node process), driven over
# WebSocket only, so it compares with spout-ws. The other servers are driven over SSE only. Every run is bounded
# (spout-load's own --duration/--drain/--stall, and `timeout` around it); every server started here is stopped on
# exit (trap), by its process group.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/loadtest/compare
RESULTS=$ROOT/loadtest/results/compare.jsonl
RUNS=3
TARGETS="spout spout-ws uws nchan pushpin axum floor floor8 spout2"
SCENARIOS="fanout1k-paced fanout10k-paced fanout1k-cap fanout10k-cap many10k idle19k slow1k resume1k"
INSTALL=1
BUILD=1
PLOTS=$ROOT/docs
PORT_BASE=8080
while [ $# -gt 0 ]; do
    case "$1" in
        --results) RESULTS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --no-build) BUILD=0; shift ;;
        --plots) PLOTS=$2; shift 2 ;;
        --no-plots) PLOTS=""; shift ;;
        --port-base) PORT_BASE=$2; shift 2 ;;
        -h|--help) sed -n 2,22p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

LOAD=$ROOT/target/release/spout-load
SPOUT=$ROOT/target/release/spout
AXUM=$ROOT/loadtest/baselines/axum-sse/target/release/axum-sse
UWS=$ROOT/loadtest/baselines/uws
TMP=$(mktemp -d /tmp/spout-compare.XXXXXX)
SERVER_GROUP=""
ORIGIN_GROUP=""

log() { echo "[compare] $*" >&2; }

stop_group() {
    local pgid=$1
    [ -n "$pgid" ] || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

stop_servers() {
    stop_group "$SERVER_GROUP"
    SERVER_GROUP=""
    stop_group "$ORIGIN_GROUP"
    ORIGIN_GROUP=""
}

cleanup() {
    stop_servers
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- install and build ---------------------------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
    if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ] \
        || ! command -v pushpin >/dev/null; then
        log "installing nginx, libnginx-mod-nchan, pushpin"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan pushpin
    fi
    if ! command -v python3 >/dev/null; then
        # The Pushpin origin, the count of runs already done (done_runs), report.py and plot.py.
        log "installing python3"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3
    fi
    # The packages' own services are not used (they would take ports 80, 7999 and 5561).
    for svc in nginx pushpin; do
        service "$svc" stop >/dev/null 2>&1 || true
    done
    case " $TARGETS " in
        *" uws "*)
            if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
                log "installing nodejs, npm"
                apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
            fi
            # npm keeps its own record of what it installed: install again when the lock file is newer.
            if [ ! -e "$UWS/node_modules/.package-lock.json" ] \
                || [ "$UWS/package-lock.json" -nt "$UWS/node_modules/.package-lock.json" ]; then
                log "installing the uWebSockets baseline (npm ci)"
                (cd "$UWS" && npm ci --no-audit --no-fund --loglevel=error)
            fi
            ;;
    esac
fi
if [ "$BUILD" = 1 ]; then
    log "building spout, spout-load and the axum baseline (release)"
    (cd "$ROOT" && cargo build --release --bin spout --bin spout-load -q)
    (cd "$ROOT/loadtest/baselines/axum-sse" && cargo build --release -q)
fi

# Servers inherit this; the hard limit (20,000 here) cannot be raised.
ulimit -n "$(ulimit -Hn)"

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "port $port did not open"
    return 1
}

# All PIDs of a process tree, comma-separated (Pushpin is several processes; nginx a master and a worker).
tree_pids() {
    local pids=$1 next=$1
    while [ -n "$next" ]; do
        local children=""
        for p in $next; do
            children="$children $(pgrep -P "$p" | tr '\n' ' ')"
        done
        next=$(echo $children)
        [ -n "$next" ] && pids="$pids $next"
    done
    echo $pids | tr ' ' ','
}

# Starts one target fresh. Sets SUB_URL, PUB_URL, BODY, SIZE, PIDS, PIN (CPU of the server or empty), TRANSPORT,
# CONNECT (spout-load's connect pacing, when a target needs its own).
start_target() {
    local name=$1
    SUB_URL=""; PUB_URL=""; BODY='seq={seq} ts={ts} {pad}'; SIZE=100; PIN=0; TRANSPORT=sse; CONNECT=()
    local port
    case "$name" in
        spout|spout-ws)
            [ "$name" = spout-ws ] && TRANSPORT=ws
            port=$PORT_BASE
            setsid taskset -c 0 "$SPOUT" --listen "127.0.0.1:$port" --workers 1 --log-level warn \
                >"$TMP/spout.log" 2>&1 &
            ;;
        spout2)
            port=$PORT_BASE; PIN=""
            setsid "$SPOUT" --listen "127.0.0.1:$port" --workers 2 --log-level warn >"$TMP/spout.log" 2>&1 &
            ;;
        nchan)
            port=$((PORT_BASE + 1))
            rm -rf "$TMP/nchan"; mkdir -p "$TMP/nchan/tmp"
            sed "s/listen 127.0.0.1:8081 /listen 127.0.0.1:$port /" "$HERE/nchan/nginx.conf" >"$TMP/nchan/nginx.conf"
            setsid taskset -c 0 nginx -p "$TMP/nchan/" -c "$TMP/nchan/nginx.conf" -g 'daemon off;' \
                >"$TMP/nchan.log" 2>&1 &
            ;;
        pushpin)
            port=7999
            rm -rf "$TMP/pushpin"; mkdir -p "$TMP/pushpin/run" "$TMP/pushpin/log"
            sed -e "s#@RUNDIR@#$TMP/pushpin/run#" -e "s#@LOGDIR@#$TMP/pushpin/log#" -e "s#@CONFDIR@#$HERE/pushpin#" \
                "$HERE/pushpin/pushpin.conf.in" >"$TMP/pushpin/pushpin.conf"
            setsid taskset -c 0 python3 "$HERE/pushpin/origin.py" 8098 >"$TMP/origin.log" 2>&1 &
            ORIGIN_GROUP=$!
            setsid taskset -c 0 pushpin --config "$TMP/pushpin/pushpin.conf" >"$TMP/pushpin.log" 2>&1 &
            PUB_URL='http://127.0.0.1:5561/publish/'
            # The SSE text travels inside Pushpin's JSON publish format; {pad} fills the JSON body, so the size
            # adds the JSON around the data (~100-byte data: lines, like the other targets).
            BODY='{"items":[{"channel":"{channel}","formats":{"http-stream":{"content":"data: seq={seq} ts={ts} {pad}\n\n"}}}]}'
            SIZE=174
            # At spout-load's default pacing (5,000 connects/s, 512 in flight) Pushpin's proxy answered ~40% of
            # the subscribes with 502 "Error while proxying to origin" or 500 "Accept service unavailable"; a
            # subscribe through it takes ~110 ms (proxy, zurl, the origin, the handler). Paced like this it holds
            # them all. The connect phase is not part of any figure but the idle run's subscribe CPU.
            CONNECT=(--ramp 500 --connect-concurrency 64)
            ;;
        uws)
            port=$((PORT_BASE + 3)); TRANSPORT=ws
            setsid taskset -c 0 node "$UWS/server.mjs" "$port" >"$TMP/uws.log" 2>&1 &
            ;;
        axum)
            port=$((PORT_BASE + 2))
            setsid taskset -c 0 "$AXUM" --listen "127.0.0.1:$port" --workers 1 >"$TMP/axum.log" 2>&1 &
            ;;
        floor|floor8)
            port=$((PORT_BASE + 10))
            local batch=1
            [ "$name" = floor8 ] && batch=8
            setsid taskset -c 0 "$LOAD" floor --listen "127.0.0.1:$port" --batch "$batch" --duration 5m \
                >"$TMP/floor.log" 2>&1 &
            ;;
        *) log "unknown target $name"; return 1 ;;
    esac
    SERVER_GROUP=$!
    SUB_URL="http://127.0.0.1:$port/sub/{channel}"
    [ -n "$PUB_URL" ] || PUB_URL="http://127.0.0.1:$port/pub/{channel}"
    wait_port "$port"
    [ "$name" = pushpin ] && { wait_port 5561; wait_port 8098; }
    sleep 0.5
    PIDS=$(tree_pids "$SERVER_GROUP")
}

# Scenario presets: the same arguments for every target. Paced rates are about what nchan sustains on one core
# (65 events/s to 1,000 subscribers and 5.7 events/s to 10,000); capacity runs are closed loop with 8 publisher
# connections and a window of 32 events in flight; the -cap1 and -cap2 presets are the same with one and two
# publisher connections (one application server publishing back to back, the most common shape). rtt-idle and
# rtt10k publish 20 events/s to 1 and to 10,000 subscribers: the publisher's round trip without and with a long
# fan-out going on (the subscribers in child processes, so that the tool's own reading of 10,000 sockets does not
# delay the publisher's). slow1k: 200 of 1,000 subscribers stop reading; the figure is
# the other 800's latency with them against without them (at 100-byte events, 6 s do not fill any server's queue
# cap: it measures the slow subscribers' presence, not their eviction). resume1k: 1,000 clients on 4 channels drop
# 3 times each and come back 200 ms later with Last-Event-ID (about 10 events of their channel missed each time).
scenario_args() {
    case "$1" in
        fanout1k-paced) echo "fanout -n 1000 --rate 65 --duration 6s --drain 3s" ;;
        fanout10k-paced) echo "fanout -n 10000 --rate 5.7 --duration 6s --drain 3s" ;;
        fanout1k-cap) echo "fanout -n 1000 --publishers 8 --duration 6s --drain 5s" ;;
        fanout10k-cap) echo "fanout -n 10000 --publishers 8 --duration 6s --drain 5s" ;;
        fanout1k-cap1) echo "fanout -n 1000 --publishers 1 --duration 6s --drain 5s" ;;
        fanout1k-cap2) echo "fanout -n 1000 --publishers 2 --duration 6s --drain 5s" ;;
        fanout10k-cap1) echo "fanout -n 10000 --publishers 1 --duration 6s --drain 5s" ;;
        fanout10k-cap2) echo "fanout -n 10000 --publishers 2 --duration 6s --drain 5s" ;;
        rtt-idle) echo "fanout -n 1 --rate 20 --duration 6s --drain 3s --processes 2" ;;
        rtt10k) echo "fanout -n 10000 --rate 20 --duration 6s --drain 3s --processes 2" ;;
        many10k) echo "many-channels -n 10000 --rate 2000 --publishers 8 --duration 6s --drain 3s" ;;
        idle19k) echo "idle -n 19000 --hold 5s --processes 2 --source-addrs 4" ;;
        slow1k) echo "slow -n 1000 --slow-share 0.2 --rate 65 --duration 6s --drain 3s" ;;
        resume1k) echo "resume -n 1000 --channels 4 --rate 200 --duration 6s --drain 5s" ;;
        *) return 1 ;;
    esac
}

# Which scenarios make sense for a target: the floor has no idle cost of its own worth comparing (it keeps no
# per-connection state but the socket), batching 8 frames needs a busy channel, spout2 is for capacity. Only spout
# and nchan keep a history to resume from: Pushpin (no history in this setup), the axum and uWebSockets baselines
# (a broadcast channel, a pub/sub topic) and the floor (no ids) are not run in resume1k, and the report says so.
applies() {
    local target=$1 scenario=$2
    case "$target:$scenario" in
        floor:idle19k|floor8:idle19k|floor8:many10k|floor8:slow1k) return 1 ;;
        spout2:*-paced|spout2:many10k|spout2:idle19k|spout2:slow1k|spout2:resume1k) return 1 ;;
        pushpin:resume1k|axum:resume1k|uws:resume1k|floor:resume1k|floor8:resume1k) return 1 ;;
    esac
    return 0
}

done_runs() {
    [ -f "$RESULTS" ] || { echo 0; return; }
    python3 - "$RESULTS" "$1" "$2" <<'EOF'
import json, sys
path, target, tag = sys.argv[1:4]
n = 0
for line in open(path):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    # A run in which nothing subscribed (a target that failed to start) does not count: it is run again.
    if (r.get("target") == target and r.get("common", {}).get("tag") == tag
            and r.get("results", {}).get("subscribed", 0) > 0):
        n += 1
print(n)
EOF
}

mkdir -p "$(dirname "$RESULTS")"
# Runs go round by round (run 1 of every target, then run 2, ...), so that the machine's slow drifts, which on a
# shared VM move every figure by 10-30% over minutes, fall on all targets alike instead of on one target's block.
for scenario in $SCENARIOS; do
    args=$(scenario_args "$scenario") || { log "unknown scenario $scenario"; exit 2; }
    failed=" "
    for round in $(seq "$RUNS"); do
        for target in $TARGETS; do
            applies "$target" "$scenario" || continue
            case "$failed" in *" $target "*) continue ;; esac
            [ "$(done_runs "$target" "$scenario")" -lt "$round" ] || continue
            log "$target / $scenario: run $round of $RUNS"
            start_target "$target"
            pin_args=()
            [ -n "$PIN" ] && pin_args=(--server-cpu "$PIN")
            tool=(taskset -c 1)
            [ "$target" = spout2 ] && tool=()
            # shellcheck disable=SC2086
            if ! timeout 120 "${tool[@]}" "$LOAD" -q --target-name "$target" --tag "$scenario" \
                --sub-url "$SUB_URL" --pub-url "$PUB_URL" --body "$BODY" --size "$SIZE" --transport "$TRANSPORT" \
                --server-pid "$PIDS" "${pin_args[@]}" "${CONNECT[@]}" --json "$RESULTS" $args; then
                log "$target / $scenario: run failed (see above); its other runs of this scenario are skipped"
                failed="$failed$target "
            fi
            stop_servers
        done
    done
done
if [ -n "$PLOTS" ]; then
    python3 "$HERE/plot.py" "$RESULTS" --out "$PLOTS"
fi
log "results in $RESULTS; tables: python3 $HERE/report.py $RESULTS${PLOTS:+; charts: $PLOTS/bench-*.svg}"

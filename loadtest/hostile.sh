#!/usr/bin/env bash
# Hostile clients against spout, and against nchan where it has the same shape. The server is fresh for each run,
# pinned to core 0 (spout with one worker, nginx with one worker); the clients (loadtest/hostile.py, spout-load,
# HAProxy) on core 1. Every client is bounded in count and in time, targets loopback and spreads its sockets over
# 127.0.0.2-5.
#
#   loadtest/hostile.sh pings    [--targets "spout nchan"]   # WebSocket ping flood
#   loadtest/hostile.sh bodies   [--targets "spout nchan"]   # slow request bodies
#   loadtest/hostile.sh dropped  [--targets "spout spout-1MiB nchan"]   # stalled subscribers, then dropped
#   loadtest/hostile.sh perip                                # --max-connections-per-ip, direct and through HAProxy
#   loadtest/hostile.sh idle     [-n 19000]                  # user-space bytes per idle SSE subscriber
#
# pings:   200 WebSocket subscribers send empty pings as fast as they can (up to 16 MiB each, 30 s at most) and
#          never read: the server's RSS growth per flooder and the time until each is cut.
# bodies:  300 publishes announce Content-Length 1 MiB, send all but 100 bytes, then a byte every 3 s (45 s at
#          most): the server's RSS growth (and nginx's body files) and the time until each is cut, with its answer.
# dropped: 100 SSE subscribers with 4 KiB receive windows never read while 100 events/s of 4,000 bytes flow for
#          15 s; then what the server's side of them holds in the kernel (ss -tmi per TCP state, /proc/net/sockstat
#          mem) --hold s later (3 s; nchan closes a stalled stream only after nginx's send_timeout, 60 s, so its
#          run holds 65 s), and once the clients close. "spout-1MiB" is spout with --socket-send-buffer 1MiB.
# perip:   spout --max-connections-per-ip 100; 600 subscribes from 4 addresses (150 each), held open: directly, through
#          HAProxy without the PROXY protocol, and through HAProxy with send-proxy-v2 to a +proxy listener. Then
#          the server CPU per subscribe of a 5,000-subscriber connect storm through HAProxy with and without
#          send-proxy-v2 (--runs times each, alternating), which is the PROXY header's cost.
# idle:    N idle SSE subscribers of one channel (spout-load idle, 2 processes): RSS and PSS growth per subscriber.
#
# Results: one JSON line per run in --results (default loadtest/results/hostile.jsonl), with the scenario, the
# target, the date, the load average and the command. Ports: PORT (8099, or SPOUT_LOAD_PORT) for the server,
# PORT+1 for HAProxy, PORT+2 for spout's +proxy listener.
set -euo pipefail

PORT=8099
source "$(dirname "$0")/lib.sh"
SCENARIO=${1:-}
[ -n "$SCENARIO" ] && shift
RESULTS=$ROOT/loadtest/results/hostile.jsonl
N=19000
RUNS=3
case "$SCENARIO" in
    dropped) TARGETS="spout spout-1MiB nchan" ;;
    pings|bodies) TARGETS="spout nchan" ;;
    perip|idle) TARGETS=spout ;;
    *) sed -n 2,29p "$0"; exit 2 ;;
esac
while [ $# -gt 0 ]; do
    case "$1" in
        --targets) TARGETS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -n) N=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
build
mkdir -p "$(dirname "$RESULTS")"
HOSTILE=(taskset -c 1 timeout 120 python3 "$ROOT/loadtest/hostile.py" --port "$PORT")
TMP=$(mktemp -d /tmp/spout-hostile.XXXXXX)
trap 'stop_all; rm -rf "$TMP"' EXIT

# Starts TARGET on PORT; sets PIDS (the processes whose memory counts: spout, or nginx's worker).
start() {
    case "$1" in
        spout*)
            local extra=()
            [ "$1" = spout-1MiB ] && extra=(--socket-send-buffer 1MiB)
            setsid taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --log-level warn "${extra[@]}" \
                "${@:2}" >"$TMP/spout.log" 2>&1 &
            started $!; PIDS=$!
            ;;
        nchan)
            # The comparison's nchan (loadtest/compare/nchan/nginx.conf) on this port, with WebSocket subscribers
            # too; every other setting is nginx's and nchan's default.
            # nginx started as root runs its worker as nobody, which writes request bodies to tmp/body.
            rm -rf "$TMP/nchan"; mkdir -p "$TMP/nchan/tmp"; chmod 755 "$TMP"; chmod 777 "$TMP/nchan/tmp"
            sed -e "s/127.0.0.1:8081/127.0.0.1:$PORT/" -e 's/nchan_subscriber eventsource;/nchan_subscriber websocket eventsource;/' \
                "$ROOT/loadtest/compare/nchan/nginx.conf" >"$TMP/nchan/nginx.conf"
            setsid taskset -c 0 nginx -p "$TMP/nchan/" -c "$TMP/nchan/nginx.conf" -g 'daemon off;' \
                >"$TMP/nchan.log" 2>&1 &
            started $!
            wait_port "$PORT"
            PIDS=$(pgrep -P "$!" | head -n 1)
            ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
    wait_port "$PORT"
    sleep 0.5
}

# Appends one record: scenario, target, date, load average, command, and the client's JSON result.
record() { # TARGET COMMAND JSON
    python3 - "$SCENARIO" "$1" "$2" "$3" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git -C "$ROOT" rev-parse --short HEAD)" \
        >>"$RESULTS" <<'EOF'
import json, sys, datetime
scenario, target, command, result, load, commit = sys.argv[1:]
print(json.dumps({"scenario": scenario, "target": target, "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
                  "loadavg": load, "commit": commit, "command": command, "results": json.loads(result)}))
EOF
    echo "$SCENARIO $1: $3"
}

run_client() { # TARGET ARGS...: hostile.py ARGS against the running server, recorded
    local target=$1; shift
    local out
    out=$("${HOSTILE[@]}" --pid "$PIDS" "$@")
    if [ "$target" = nchan ]; then
        out=$(echo "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); r['nginx_body_files_bytes']=int(sys.argv[1]); print(json.dumps(r))" \
            "$(du -sb "$TMP/nchan/tmp" | cut -f1)")
    fi
    record "$target" "hostile.py $*" "$out"
}

case "$SCENARIO" in
    pings|bodies)
        for target in $TARGETS; do
            start "$target"
            if [ "$SCENARIO" = pings ]; then
                run_client "$target" pings -n 200 --duration 30
            else
                run_client "$target" bodies -n 300 --drip 3 --duration 45
            fi
            stop_all
        done
        ;;
    dropped)
        for target in $TARGETS; do
            start "$target"
            hold=3
            [ "$target" = nchan ] && hold=65
            run_client "$target" stalled -n 100 --rate 100 --size 4000 --duration 15 --hold "$hold"
            stop_all
        done
        ;;
    perip)
        HAPROXY_PORT=$((PORT + 1))
        start spout --listen "127.0.0.1:$((PORT + 2))+proxy" --max-connections-per-ip 100
        haproxy() { # BACKEND-PORT SEND-PROXY-OPTION: HAProxy on HAPROXY_PORT in front of it, on core 1
            printf 'global\n  maxconn 6000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server spout 127.0.0.1:%s %s\n' \
                "$HAPROXY_PORT" "$1" "$2" >"$TMP/haproxy.cfg"
            setsid taskset -c 1 /usr/sbin/haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
            started $!; HAPROXY=$!
            wait_port "$HAPROXY_PORT"
        }
        run_client spout conns -n 600 --sources 4
        haproxy "$PORT" ""
        out=$(taskset -c 1 timeout 120 python3 "$ROOT/loadtest/hostile.py" --port "$HAPROXY_PORT" conns -n 600 --sources 4)
        record spout-via-haproxy "hostile.py --port HAPROXY conns -n 600 --sources 4 (HAProxy without the PROXY protocol)" "$out"
        stop "$HAPROXY"
        haproxy "$((PORT + 2))" send-proxy-v2
        out=$(taskset -c 1 timeout 120 python3 "$ROOT/loadtest/hostile.py" --port "$HAPROXY_PORT" conns -n 600 --sources 4)
        record spout-via-haproxy-v2 "hostile.py --port HAPROXY conns -n 600 --sources 4 (HAProxy send-proxy-v2, +proxy listener)" "$out"
        stop "$HAPROXY"
        stop_all
        # The PROXY header's cost: the same connect storm through HAProxy, with and without it.
        start spout --listen "127.0.0.1:$((PORT + 2))+proxy"
        for run in $(seq "$RUNS"); do
            for mode in plain v2; do
                if [ $mode = plain ]; then haproxy "$PORT" ""; else haproxy "$((PORT + 2))" send-proxy-v2; fi
                args=(-q --server-pid "$PIDS" --server-cpu 0 --source-addrs 4 --processes 2
                      --sub-url "http://127.0.0.1:$HAPROXY_PORT/sub/storm{channel}"
                      --pub-url "http://127.0.0.1:$HAPROXY_PORT/pub/storm{channel}"
                      --json "$TMP/storm.jsonl" connect-storm -n 5000 --connect-concurrency 256)
                taskset -c 1 timeout 120 "$LOAD" "${args[@]}" >/dev/null
                out=$(tail -n 1 "$TMP/storm.jsonl" | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"]; print(json.dumps({k: r.get(k) for k in ("subscribed", "connect_failures", "connect_time_us", "server")}))')
                record "spout-via-haproxy-$mode" "spout-load ${args[*]}" "$out"
                stop "$HAPROXY"
                sleep 2
            done
        done
        ;;
    idle)
        start spout
        args=(-q --server-pid "$PIDS" --source-addrs 4 --processes 2
              --sub-url "http://127.0.0.1:$PORT/sub/idle{channel}" --pub-url "http://127.0.0.1:$PORT/pub/idle{channel}"
              --json "$TMP/idle.jsonl" idle -n "$N" --hold 10s)
        taskset -c 1 timeout 180 "$LOAD" "${args[@]}" >/dev/null
        record spout "spout-load ${args[*]}" "$(tail -n 1 "$TMP/idle.jsonl" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["results"]))')"
        ;;
esac

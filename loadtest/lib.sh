# The preamble the loadtest/*.sh scripts share; sourced, not run. It sets ROOT, SPOUT, LOAD and PORT (the script's
# default unless SPOUT_LOAD_PORT is set, so that runs on a shared machine can keep to their own ports), builds the
# release binaries, raises the descriptor limit, and stops on exit every process a script registered with
# `started PID` (by its process group when the script started it with setsid, so nginx's worker goes too).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SPOUT=$ROOT/target/release/spout
LOAD=$ROOT/target/release/spout-load
PORT=${SPOUT_LOAD_PORT:-$PORT}
STARTED=()

build() { (cd "$ROOT" && cargo build --release -q --bin spout --bin spout-load); }

started() { STARTED+=("$1"); }
forget() { # PID: no longer ours to stop (it ended and was waited for)
    local pid rest=()
    for pid in "${STARTED[@]}"; do [ "$pid" = "$1" ] || rest+=("$pid"); done
    STARTED=("${rest[@]}")
}
stop() { # PID: stop one process this script started (its group when it leads one), wait for it, forget it
    # Only while it is still this shell's child: a PID that ended may have been reused by someone else's process.
    if [ "$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null)" = "$$" ]; then
        kill -- "-$1" 2>/dev/null || kill "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || true
    forget "$1"
}
stop_all() { while [ ${#STARTED[@]} -gt 0 ]; do stop "${STARTED[0]}"; done; }
trap stop_all EXIT
ulimit -n "$(ulimit -Hn)"

wait_port() { # PORT: until it accepts (10 s at most)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "port $1 did not open" >&2
    return 1
}

rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
tcp_mem_pages() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1)}' /proc/net/sockstat; }
# FIELD of the last JSON line of FILE, a Python expression over `r` (that line's "results").
field() { tail -n 1 "$2" | python3 -c "import json,sys; r=json.load(sys.stdin)['results']; print($1)"; }

one_shard_redis() { # PORT DIR [CPU]: a Redis Cluster of one master holding every slot, no persistence, its files
    # in DIR, pinned to CPU when given; sets REDIS to its pid (registered with `started`) once the cluster is ok.
    local port=$1 dir=$2 pin=()
    [ -n "${3:-}" ] && pin=(taskset -c "$3")
    "${pin[@]}" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$dir/nodes.conf" --dir "$dir" --save "" --appendonly no >"$dir/redis.log" 2>&1 &
    REDIS=$!
    started "$REDIS"
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" cluster addslotsrange 0 16383 >/dev/null
    for _ in $(seq 100); do redis-cli -p "$port" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
}

#!/usr/bin/env bash
# Deliveries while clients page through a large channel listing. Against a fresh spout (one worker, pinned to
# core 0; the tool and the listers on core 1):
#
#   loadtest/listing.sh
#   loadtest/listing.sh --channels 100000 --listers 4 --results FILE
#
# CHANNELS channels (default 100,000) are created with batch publishes; then 100 subscribers on one channel get
# 200 events/s for 10 s (spout-load fanout) twice: alone, and while LISTERS clients (default 4) walk the whole
# `GET /channels` listing page by page in a loop (1,000 channels a page, the default; at nice 19, so that they do
# not delay the tool that measures on the same core). Reported: the events' publish-to-receipt latency in both
# runs, their p99 ratio, and how many full listings the listers made. Bounded: every step has a timeout; the
# server and the listers are stopped on exit. Port 8097, or SPOUT_LOAD_PORT.
set -euo pipefail

PORT=8097
source "$(dirname "$0")/lib.sh"
CHANNELS=100000
LISTERS=4
RESULTS=$ROOT/loadtest/results/listing.jsonl
while [ $# -gt 0 ]; do
    case "$1" in
        --channels) CHANNELS=$2; shift 2 ;;
        --listers) LISTERS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
build
mkdir -p "$(dirname "$RESULTS")"

taskset -c 0 "$SPOUT" --listen "127.0.0.1:$PORT" --workers 1 --max-channels $((CHANNELS + 1000)) \
    >/tmp/spout-listing.log 2>&1 &
SERVER=$!
started $SERVER
wait_port "$PORT"

# The channels, 10,000 to a batch.
python3 - "$PORT" "$CHANNELS" <<'EOF'
import json, sys, urllib.request
port, channels = int(sys.argv[1]), int(sys.argv[2])
for start in range(0, channels, 10000):
    events = [{"channel": f"idle{i}", "data": "x"} for i in range(start, min(start + 10000, channels))]
    body = json.dumps({"events": events}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/pub", data=body,
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
EOF

fanout() {
    timeout 60 taskset -c 1 "$LOAD" -q --target-name spout --tag "$1" \
        --sub-url "http://127.0.0.1:$PORT/sub/{channel}" --pub-url "http://127.0.0.1:$PORT/pub/{channel}" \
        --server-pid "$SERVER" --json "$RESULTS" fanout -n 100 --rate 200 --duration 10s --drain 3s \
        >/tmp/spout-listing-fanout.log
    tail -n 1 "$RESULTS" | python3 -c 'import json,sys; l=json.load(sys.stdin)["results"]["latency_us"]; print("p50", l["p50"], "p99", l["p99"], "max", l["max"], "(us)")'
}
p99() { field "r['latency_us']['p99']" "$RESULTS"; }

echo "alone: $(fanout "listing-$CHANNELS-none")"
alone_p99=$(p99)

passes_file=$(mktemp)
timeout 40 taskset -c 1 nice -n 19 python3 - "$PORT" "$LISTERS" "$passes_file" <<'EOF' &
import http.client, json, sys, threading
port, listers, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
passes = [0] * listers
def walk(i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        path = "/channels"
        while True:
            conn.request("GET", path)
            page = json.loads(conn.getresponse().read())
            if "next" not in page:
                break
            path = "/channels?cursor=" + page["next"]
        passes[i] += 1
        with open(out, "w") as f:
            f.write(str(sum(passes)))
for i in range(listers):
    threading.Thread(target=walk, args=(i,), daemon=True).start()
threading.Event().wait()
EOF
LISTING=$!
started $LISTING
sleep 2
echo "while $LISTERS clients list $CHANNELS channels: $(fanout "listing-$CHANNELS-listers$LISTERS")"
echo "p99 with listers / alone: $(python3 -c "print(f'{$(p99) / $alone_p99:.2f}')")"
stop $LISTING
echo "full listings made meanwhile: $(cat "$passes_file")"
rm -f "$passes_file"

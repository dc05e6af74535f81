"""Reading the comparison's JSON lines (loadtest/compare/run.sh), shared by report.py (tables) and plot.py (SVGs).

Both must show the same numbers, so the choices live here once: which runs count (only those in which something
subscribed: a failed start is not a result), how the runs of one (scenario, target) combine (the median, with
min-max), and which field of spout-load's JSON each figure comes from. Older result files lack some fields
(`pss_bytes_per_connection`, `core_busy_us_per_delivery`, ...); a missing field reads as None and shows as no value.
"""
import json
import statistics
from collections import defaultdict, namedtuple

TARGETS = ["spout", "spout-ws", "uws", "spout2", "nchan", "pushpin", "axum", "floor", "floor8"]
SCENARIOS = ["fanout1k-paced", "fanout10k-paced", "fanout1k-cap", "fanout10k-cap", "many10k", "idle19k", "slow1k",
             "resume1k"]
SSE_ONLY = ["nchan", "pushpin", "axum", "floor", "floor8"]
# Targets driven over WebSocket only: their ×spout column is against spout's WebSocket subscribers.
WS_ONLY = ["uws"]
NO_RESUME = ["pushpin", "axum", "uws", "floor", "floor8"]

# The median of a figure over the runs that have it, its range, and how many runs that was.
Median = namedtuple("Median", "value low high runs")


def get(r, *path):
    for p in path:
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


def load(path):
    """{(scenario tag, target): [run, ...]} in file order, for the runs in which something subscribed."""
    runs = defaultdict(list)
    with open(path) as lines:
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            tag = get(r, "common", "tag")
            if not tag or (get(r, "results", "subscribed") or 0) <= 0:
                continue
            runs[(tag, r.get("target"))].append(r)
    return runs


def by_target(runs, scenario):
    """(target, its runs) for each target that has runs in the scenario, in the order of TARGETS."""
    return [(t, runs[(scenario, t)]) for t in TARGETS if runs.get((scenario, t))]


def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return Median(statistics.median(values), min(values), max(values), len(values))


def delivery_metrics(rs):
    """The figures of a fan-out or many-channels scenario's runs (latencies in µs, CPU in µs per delivery)."""
    x = [r["results"] for r in rs]
    total = lambda *path: sum(get(v, *path) or 0 for v in x)
    return {
        "dps": med([get(v, "deliveries_per_s") for v in x]),
        "p50": med([get(v, "latency_us", "p50") for v in x]),
        "p90": med([get(v, "latency_us", "p90") for v in x]),
        "p99": med([get(v, "latency_us", "p99") for v in x]),
        "p99_9": med([get(v, "latency_us", "p99_9") for v in x]),
        # Process CPU (utime+stime of every server process) and the pinned core's busy time, per delivery.
        "cpu": med([get(v, "server", "cpu_us_per_delivery") for v in x]),
        "core": med([get(v, "server", "core_busy_us_per_delivery") for v in x]),
        "missing": total("loss", "missing"),
        "dup": total("loss", "duplicates"),
        "failed": total("connect_failures", "bad_status") + total("connect_failures", "timeout")
        + total("connect_failures", "connect_error"),
        "subscribers": med([get(v, "subscribers") for v in x]),
        "subscribed": med([get(v, "subscribed") for v in x]),
        "tool": max(get(v, "tool_cpu", "max_share_of_core") or 0 for v in x),
        "n": len(rs),
    }


def not_connected(v):
    """Subscribers of a run that neither subscribed nor failed: the connect phase ended first. Results from before
    spout-load counted them lack the field; for those it is what the other counts leave of the number asked for."""
    n = get(v, "not_connected")
    if n is not None:
        return n
    failed = sum((get(v, "connect_failures") or {}).values())
    return max(0, (get(v, "subscribers") or 0) - (get(v, "subscribed") or 0) - failed)


def idle_metrics(rs):
    """The figures of an idle scenario's runs: user-space bytes per held subscriber and subscribe CPU."""
    x = [r["results"] for r in rs]
    return {
        "not_connected": med([not_connected(v) for v in x]),
        "pss": med([get(v, "server", "pss_bytes_per_connection") for v in x]),
        "rss": med([get(v, "server", "rss_bytes_per_connection") for v in x]),
        "sub": med([get(v, "server", "subscribe_cpu_us_each") for v in x]),
        "subscribers": med([get(v, "subscribers") for v in x]),
        "subscribed": med([get(v, "subscribed") for v in x]),
        "n": len(rs),
    }

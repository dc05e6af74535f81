#!/usr/bin/env python3
"""Tables for docs/BENCHMARKS.md from the comparison's JSON lines (loadtest/compare/run.sh).

    python3 loadtest/compare/report.py loadtest/results/compare.jsonl > /tmp/tables.md

For each (scenario, target): the median of the runs, with min-max, and the ratio of the median to spout's and to
the floor's. Only runs in which something subscribed count (a failed start is not a result).

Rows: `spout-ws` is spout with WebSocket subscribers (its native `ws://.../sub/{channel}`), beside `spout` over SSE;
its ×spout column is WebSocket against SSE on the same server. `uws` is the uWebSockets baseline, driven over
WebSocket only: its ×spout column is against `spout-ws`, never against spout's SSE. nchan, Pushpin, axum and the
floor are driven over SSE only. `slow1k` compares the fast subscribers' latency with and without slow ones;
`resume1k` checks that every client ends with exactly the published events (Pushpin, axum, uws and the floor keep
no history to resume from and are not run there).
"""
import sys

from results import (NO_RESUME, SCENARIOS, SSE_ONLY, WS_ONLY, by_target, delivery_metrics, get, idle_metrics, load,
                     med)

TRANSPORT_NOTE = ("spout-ws: spout's WebSocket subscribers (×spout: against its SSE ones); "
                  + ", ".join(WS_ONLY) + ": WebSocket only (×spout: against spout-ws); "
                  + ", ".join(SSE_ONLY) + ": SSE only.")


def spout_base(target):
    """The spout row a target's ×spout column divides by: the same transport's."""
    return "spout-ws" if target in WS_ONLY else "spout"


def fmt(m, scale=1.0, digits=2, unit=""):
    if m is None:
        return "–"
    v, lo, hi, n = m
    if lo == hi or n == 1:
        return f"{v * scale:,.{digits}f}{unit}"
    return f"{v * scale:,.{digits}f}{unit} ({lo * scale:,.{digits}f}–{hi * scale:,.{digits}f})"


def ratio(m, base):
    if m is None or base is None or base[0] == 0:
        return "–"
    return f"{m[0] / base[0]:.2f}×"


def delivery_table(runs, scenario):
    rows = []
    metrics = {}
    for t, rs in by_target(runs, scenario):
        metrics[t] = delivery_metrics(rs)
    if not metrics:
        return ""
    floor = metrics.get("floor", {})
    rows.append(
        "| target | runs | deliveries/s | latency p50 / p99 (ms) | server CPU µs/delivery (process) "
        "| ×spout | ×floor | pinned core busy µs/delivery | ×spout | ×floor | missing / dup / failed subscribes |"
    )
    rows.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for t, m in metrics.items():
        spout = metrics.get(spout_base(t), {})
        lat = "–"
        if m["p50"] and m["p99"]:
            lat = f"{m['p50'][0] / 1000:,.1f} / {m['p99'][0] / 1000:,.1f}"
        warn = " ⚠tool" if m["tool"] > 0.9 else ""
        rows.append(
            f"| {t} | {m['n']} | {fmt(m['dps'], 1, 0)}{warn} | {lat} | {fmt(m['cpu'])} | {ratio(m['cpu'], spout.get('cpu'))} "
            f"| {ratio(m['cpu'], floor.get('cpu'))} | {fmt(m['core'])} | {ratio(m['core'], spout.get('core'))} "
            f"| {ratio(m['core'], floor.get('core'))} | {m['missing']} / {m['dup']} / {m['failed']} |"
        )
    return "\n".join(rows)


def connected_cell(m):
    """Subscribed (median, range), and the subscribers the connect phase ended without when any run had some:
    a run that holds fewer without failing says why."""
    cell = fmt(m["subscribed"], 1, 0)
    nc = m["not_connected"]
    if nc is not None and nc.high > 0:
        cell += f"; not connected {fmt(nc, 1, 0)}"
    return cell


def idle_table(runs, scenario):
    rows = [
        "| target | runs | connected of 19,000 | RSS B/conn | PSS B/conn | ×spout (PSS) | subscribe CPU µs each | ×spout |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    bases = {}
    out = []
    for t, rs in by_target(runs, scenario):
        m = idle_metrics(rs)
        bases[t] = (m["pss"], m["sub"])
        out.append((t, m["n"], connected_cell(m), m["rss"], m["pss"], m["sub"]))
    for t, n, conn, rss, pss, sub in out:
        base = bases.get(spout_base(t))
        rows.append(
            f"| {t} | {n} | {conn} | {fmt(rss, 1, 0)} | {fmt(pss, 1, 0)} | "
            f"{ratio(pss, base[0] if base else None)} | {fmt(sub, 1, 1)} | {ratio(sub, base[1] if base else None)} |"
        )
    return "\n".join(rows) if out else ""


def ms(m, digits=1):
    return fmt(m, 1 / 1000, digits)


def slow_table(runs, scenario):
    rows = [
        "| target | runs | fast p50 / p99 without slow (ms) | with slow (ms) | ×p50 | ×p99 "
        "| slow closed by the server / open | fast missing / dup / disconnects |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    out = []
    for t, rs in by_target(runs, scenario):
        x = [r["results"] for r in rs]
        base = [med([get(v, "baseline", "latency_us", q) for v in x]) for q in ("p50", "p99")]
        slow = [med([get(v, "with_slow", "latency_us", q) for v in x]) for q in ("p50", "p99")]
        ratio50 = med([get(v, "latency_ratio", "p50") for v in x])
        ratio99 = med([get(v, "latency_ratio", "p99") for v in x])
        closed = med([get(v, "slow", "closed_by_server") for v in x])
        still = med([get(v, "slow", "open_at_end") for v in x])
        missing = sum(get(v, "loss", "missing") or 0 for v in x)
        dup = sum(get(v, "loss", "duplicates") or 0 for v in x)
        disc = sum(get(v, "disconnects") or 0 for v in x)
        out.append(
            f"| {t} | {len(rs)} | {ms(base[0])} / {ms(base[1])} | {ms(slow[0])} / {ms(slow[1])} "
            f"| {fmt(ratio50)}× | {fmt(ratio99)}× | {fmt(closed, 1, 0)} / {fmt(still, 1, 0)} "
            f"| {missing} / {dup} / {disc} |"
        )
    return "\n".join(rows + out) if out else ""


def resume_table(runs, scenario):
    rows = [
        "| target | runs | clients exact | missing / dup / out of order / unexpected | resets | "
        "drops / reconnected / failed | reconnect p50 / p99 (ms) | gave up / not connected at the end |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    out = []
    for t, rs in by_target(runs, scenario):
        x = [r["results"] for r in rs]
        total = lambda *path: sum(get(v, *path) or 0 for v in x)
        exact = f"{total('clients', 'exact'):,} of {total('clients', 'clients'):,}"
        problems = " / ".join(
            str(total("clients", k)) for k in ("missing", "duplicates", "out_of_order", "unexpected"))
        conns = " / ".join(
            str(total("connections", k)) for k in ("drops", "reconnected", "failed_reconnects"))
        p50 = med([get(v, "reconnect_time_us", "p50") for v in x])
        p99 = med([get(v, "reconnect_time_us", "p99") for v in x])
        out.append(
            f"| {t} | {len(rs)} | {exact} | {problems} | {total('clients', 'resets')} | {conns} "
            f"| {ms(p50)} / {ms(p99)} | {total('clients', 'gave_up')} / {total('clients', 'not_connected_at_end')} |"
        )
    if not out:
        return ""
    return "\n".join(rows + out) + "\n\nNot run (no history to resume from): " + ", ".join(NO_RESUME) + "."


def main():
    runs = load(sys.argv[1] if len(sys.argv) > 1 else "loadtest/results/compare.jsonl")
    for s in SCENARIOS:
        if s.startswith("idle"):
            table = idle_table(runs, s)
        elif s.startswith("slow"):
            table = slow_table(runs, s)
        elif s.startswith("resume"):
            table = resume_table(runs, s)
        else:
            table = delivery_table(runs, s)
        if table:
            print(f"### {s}\n\n{table}\n\n{TRANSPORT_NOTE}\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""SVG charts for docs/BENCHMARKS.md from the comparison's JSON lines (loadtest/compare/run.sh).

    python3 loadtest/compare/plot.py loadtest/results/compare.jsonl --out docs/

writes, for the scenarios the file holds:
- bench-cpu.svg: server CPU per delivery (µs, log scale) per fan-out scenario, grouped bars per target (median of
  the runs, whisker min-max), the floor's median as a dashed reference line across each group;
- bench-latency.svg: publish-to-receipt latency p50, p90, p99, p99.9 (log scale) in the paced fan-out scenarios,
  one line per target;
- bench-idle.svg: user-space bytes per held idle subscriber (PSS, or RSS where a result has no PSS), log scale.

The figures are the ones report.py puts in the tables (both read them through results.py). A value marked `*` comes
from runs in which not every subscriber connected or events went missing: the tables say how many.

Standard library only, so that it runs wherever run.sh does (a fresh Debian with python3), and the SVGs are
self-contained (no fonts, scripts or links to load), drawn on white so they read on light and dark pages alike.
The output depends only on the results file: running it twice writes the same bytes.
"""
import argparse
import math
import os
import sys
from xml.sax.saxutils import escape, quoteattr

from results import SCENARIOS, TARGETS, by_target, delivery_metrics, get, idle_metrics, load

CPU_SCENARIOS = ["fanout1k-paced", "fanout10k-paced", "fanout1k-cap", "fanout10k-cap", "many10k"]
LATENCY_SCENARIOS = ["fanout1k-paced", "fanout10k-paced"]
IDLE_SCENARIO = next(s for s in SCENARIOS if s.startswith("idle"))
PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9")]

# One colour per target in every chart (Okabe-Ito hues: told apart with the common colour-vision deficiencies);
# spout's three variants are blues, the two floors greys.
STYLE = {
    "spout": ("#0072B2", "spout (SSE)"),
    "spout-ws": ("#56B4E9", "spout-ws (WebSocket)"),
    "uws": ("#CC79A7", "uWebSockets (WebSocket)"),
    "spout2": ("#1F3B73", "spout2 (2 workers, unpinned)"),
    "nchan": ("#E69F00", "nchan (nginx)"),
    "pushpin": ("#009E73", "Pushpin"),
    "axum": ("#D55E00", "tokio + axum"),
    "floor": ("#6E7781", "floor (a write per frame)"),
    "floor8": ("#AFB8C1", "floor8 (8 frames per writev)"),
}
FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif"
INK = "#1F2328"
MUTED = "#59636E"
GRID = "#D1D9E0"
WIDTH = 1000
CAVEAT_NOTE = ("* not every subscriber connected, or events went missing, in these runs "
               "(see the tables in docs/BENCHMARKS.md)")


class Svg:
    """An SVG document built element by element; attribute names take `_` for `-` (font_size=...)."""

    def __init__(self, width, height, title):
        self.width, self.height, self.title = width, height, title
        self.parts = []

    def add(self, tag, text=None, tooltip=None, **attrs):
        attributes = "".join(f" {k.rstrip('_').replace('_', '-')}={quoteattr(number(v))}"
                             for k, v in attrs.items() if v is not None)
        inner = escape(text) if text is not None else ""
        if tooltip:
            inner = f"<title>{escape(tooltip)}</title>" + inner
        if inner:
            self.parts.append(f"<{tag}{attributes}>{inner}</{tag}>")
        else:
            self.parts.append(f"<{tag}{attributes}/>")

    def text(self, x, y, s, size=12, fill=INK, anchor="start", weight=None, rotate=False, halo=False):
        """`halo`: a white outline under the glyphs, for a label that may cross a line."""
        self.add("text", s, x=x, y=y, font_size=size, fill=fill, text_anchor=anchor, font_weight=weight,
                 transform=f"rotate(-90 {number(x)} {number(y)})" if rotate else None,
                 stroke="#FFFFFF" if halo else None, stroke_width=6 if halo else None,
                 stroke_linejoin="round" if halo else None, paint_order="stroke" if halo else None)

    def line(self, x1, y1, x2, y2, stroke=GRID, width=1, dash=None):
        self.add("line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=stroke, stroke_width=width, stroke_dasharray=dash)

    def render(self):
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{number(self.height)}" '
                f'viewBox="0 0 {self.width} {number(self.height)}" font-family={quoteattr(FONT)} role="img">\n'
                f"<title>{escape(self.title)}</title>\n"
                f'<rect width="100%" height="100%" fill="#FFFFFF"/>\n')
        return head + "\n".join(self.parts) + "\n</svg>\n"


def number(v):
    """Coordinates with at most one decimal, so that the files stay small and diff cleanly."""
    if isinstance(v, float):
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return str(v)


def darker(colour):
    """The colour at 70% brightness: text in a target's hue that stays legible on white (light blues, greys)."""
    r, g, b = (int(colour[i:i + 2], 16) * 7 // 10 for i in (1, 3, 5))
    return f"#{r:02X}{g:02X}{b:02X}"


def plural(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def whisker(svg, m, scale, at, vertical):
    """The min-max range of a Median across `at` (x of a vertical bar, y of a horizontal one), with end caps."""
    if m.high <= m.low:
        return
    a, b = scale(m.low), scale(m.high)
    for p, q, r, s in ((a, b, at, at), (a, a, at - 3, at + 3), (b, b, at - 3, at + 3)):
        if vertical:
            svg.line(r, p, s, q, stroke=INK, width=1.2)
        else:
            svg.line(p, r, q, s, stroke=INK, width=1.2)


def text_width(s, size):
    return len(s) * size * 0.56


def value_label(v):
    """Three significant digits: 0.483, 3.46, 8.00, 29.2, 1,234."""
    return f"{v:,.0f}" if v >= 100 else f"{v:#.3g}"


class LogScale:
    """Maps values on [lo, hi] logarithmically onto pixels [p_lo, p_hi] (p_hi < p_lo for a vertical axis)."""

    def __init__(self, vmin, vmax, p_lo, p_hi, headroom=0.0):
        self.lo = math.floor(math.log10(vmin))
        top = max(math.log10(vmax), self.lo + 1)
        # `headroom` of the axis stays free above the largest value, for the labels printed there.
        self.hi = self.lo + (top - self.lo) / (1 - headroom)
        self.p_lo, self.p_hi = p_lo, p_hi

    def __call__(self, v):
        f = (math.log10(v) - self.lo) / (self.hi - self.lo)
        return self.p_lo + f * (self.p_hi - self.p_lo)

    def ticks(self):
        """(value, labelled) for 1, 2 and 5 times each power of ten in range; 2 and 5 unlabelled past 3 decades."""
        few = self.hi - self.lo <= 3.2
        out = []
        for k in range(self.lo, math.ceil(self.hi) + 1):
            for m in (1, 2, 5):
                v = m * 10.0 ** k
                if math.log10(v) <= self.hi + 1e-9:
                    out.append((v, m == 1 or few))
        return out


def tick_label(v, unit=""):
    return (f"{v:,.0f}" if v >= 1 else f"{v:g}") + unit


def log_grid_y(svg, scale, x0, x1, unit="", label=True):
    """Horizontal grid lines and their labels left of x0."""
    for v, labelled in scale.ticks():
        y = scale(v)
        svg.line(x0, y, x1, y, stroke=GRID if labelled else "#EEF1F4")
        if labelled and label:
            svg.text(x0 - 6, y + 4, tick_label(v, unit), size=11, fill=MUTED, anchor="end")


def legend(svg, items, x0, y0, x1):
    """Swatch-and-label items in rows from (x0, y0), wrapping at x1; returns the y below the last row."""
    x, y = x0, y0
    for kind, colour, label in items:
        w = 22 + text_width(label, 12) + 18
        if x + w > x1 and x > x0:
            x, y = x0, y + 20
        if kind == "box":
            svg.add("rect", x=x, y=y - 10, width=14, height=12, fill=colour, rx=2)
        else:
            svg.line(x, y - 4, x + 16, y - 4, stroke=colour, width=2, dash="5 3" if kind == "dash" else None)
            if kind == "marker":
                svg.add("circle", cx=x + 8, cy=y - 4, r=3.5, fill=colour)
        svg.text(x + 22, y, label, size=12)
        x += w
    return y + 12


def heading(svg, title, subtitle_lines):
    svg.text(20, 30, title, size=17, weight="600")
    y = 50
    for line in subtitle_lines:
        svg.text(20, y, line, size=12, fill=MUTED)
        y += 17
    return y + 8


def provenance(runs, path):
    """The footer: which file, machine and commit(s) the figures come from."""
    rs = [r for group in runs.values() for r in group]
    if not rs:
        return os.path.basename(path)
    m = rs[-1].get("machine") or {}
    stamps = [(r.get("time_unix") or 0, (get(r, "machine", "git_commit") or "")[:7]
               + ("+dirty" if get(r, "machine", "git_dirty") else "")) for r in rs]
    commits = list(dict.fromkeys(c for _, c in sorted(stamps) if c))
    parts = [os.path.basename(path)]
    if m.get("nproc"):
        parts.append(f"{m['nproc']} vCPU {m.get('cpu_model', '')}".strip())
    if m.get("kernel"):
        parts.append(f"Linux {m['kernel']}")
    if commits:
        if len(commits) <= 3:
            parts.append("git " + ", ".join(commits))
        else:
            parts.append(f"git {commits[0]} … {commits[-1]} ({len(commits)} commits)")
    return " · ".join(parts)


def finish(svg, y, runs, path, flagged):
    """The footer from y down (the `*` note if some value has one, then the provenance); the document's text."""
    for line in ([CAVEAT_NOTE] if flagged else []) + [provenance(runs, path)]:
        svg.text(20, y, line, size=11, fill=MUTED)
        y += 16
    svg.height = y + 4
    return svg.render()


def incomplete(m):
    """Not every subscriber connected, or events went missing."""
    want, got = m.get("subscribers"), m.get("subscribed")
    short = want is not None and got is not None and got.value < want.value
    return short or (m.get("missing") or 0) > 0


def scenario_caption(runs, scenario):
    """Lines under a scenario's name, from the recorded parameters of its first run."""
    first = next((rs[0] for (s, _), rs in runs.items() if s == scenario), None)
    params = (first or {}).get("params") or {}
    lines = []
    if params.get("subscribers"):
        lines.append(f"{params['subscribers']:,} subscribers")
    channels = params.get("channels", 1)
    lines.append(f"{channels:,} channel" + ("s" if channels != 1 else ""))
    rate = get(params, "publish", "rate")
    lines.append(f"{rate:,g} events/s" if rate else "closed loop")
    return lines


def cpu_chart(runs, path):
    groups = []
    for s in CPU_SCENARIOS:
        bars = []
        for t, rs in by_target(runs, s):
            m = delivery_metrics(rs)
            if m["cpu"] and m["cpu"].low > 0:
                bars.append((t, m["cpu"], incomplete(m)))
        if bars:
            groups.append((s, bars))
    if not groups:
        return None
    targets = [t for t in TARGETS if any(t == b[0] for _, bars in groups for b in bars)]
    flagged = any(f for _, bars in groups for _, _, f in bars)

    svg = Svg(WIDTH, 0, "Server CPU per delivery, by scenario and server")
    top = heading(svg, "Server CPU per delivery (lower is better)", [
        "Process CPU (user + system, every server process) per event delivered to one subscriber, in µs; "
        "log scale. One core per server (spout2: two).",
        "Bar: median of the runs; whisker: min–max; dashed line: the floor's median (one write per frame and "
        "subscriber, nothing else).",
    ])
    items = [("box", STYLE[t][0], STYLE[t][1]) for t in targets]
    if "floor" in targets:
        items.append(("dash", INK, "floor median"))
    left, right = 76, WIDTH - 20
    top = legend(svg, items, left, top + 6, right) + 10
    plot_h = 330
    bottom = top + plot_h

    lows = [m.low for _, bars in groups for _, m, _ in bars]
    highs = [m.high for _, bars in groups for _, m, _ in bars]
    scale = LogScale(min(lows), max(highs), bottom, top, headroom=0.16)
    log_grid_y(svg, scale, left, right, "")
    svg.text(22, (top + bottom) / 2, "µs per delivery (log scale)", size=12, fill=MUTED, anchor="middle",
             rotate=True)

    # Bars at most 30 px apart; the groups share out what is left, at least 30 px between two.
    bar_gap = 3
    n_bars = sum(len(bars) for _, bars in groups)
    slot = min(30, (right - left - 30 * len(groups)) / n_bars)
    group_gap = (right - left - slot * n_bars) / len(groups)
    bar_w = slot - bar_gap
    x = left + group_gap / 2
    for s, bars in groups:
        x0 = x
        floor_cpu = next((m.value for t, m, _ in bars if t == "floor"), None)
        labels = []  # drawn after the floor's line, over it
        for t, m, flag in bars:
            colour = STYLE[t][0]
            y = scale(m.value)
            svg.add("rect", x=x, y=y, width=bar_w, height=bottom - y, fill=colour,
                    tooltip=f"{t}, {s}: {m.value:.3f} µs/delivery "
                            f"(min {m.low:.3f}, max {m.high:.3f}, {plural(m.runs, 'run')})")
            cx = x + bar_w / 2
            whisker(svg, m, scale, cx, vertical=True)
            label_y = min(y, scale(m.high)) - 5
            labels.append((cx + 4, label_y, value_label(m.value) + ("*" if flag else "")))
            x += slot
        x_end = x - bar_gap
        if floor_cpu:
            yf = scale(floor_cpu)
            svg.line(x0 - 4, yf, x_end + 4, yf, stroke=INK, width=1.2, dash="5 3")
        for lx, ly, label in labels:
            svg.text(lx, ly, label, size=11, rotate=True, halo=True)
        centre = (x0 + x_end) / 2
        svg.text(centre, bottom + 18, s, size=12, weight="600", anchor="middle")
        for i, line in enumerate(scenario_caption(runs, s)):
            svg.text(centre, bottom + 34 + 14 * i, line, size=11, fill=MUTED, anchor="middle")
        x += group_gap
    svg.line(left, bottom, right, bottom, stroke=MUTED)
    return finish(svg, bottom + 96, runs, path, flagged)


def latency_chart(runs, path):
    panels = []
    for s in LATENCY_SCENARIOS:
        lines = []
        for t, rs in by_target(runs, s):
            m = delivery_metrics(rs)
            points = [m[key].value if m[key] else None for key, _ in PERCENTILES]
            if all(p and p > 0 for p in points):
                lines.append((t, points, incomplete(m), m["n"]))
        if lines:
            panels.append((s, lines))
    if not panels:
        return None
    targets = [t for t in TARGETS if any(t == line[0] for _, lines in panels for line in lines)]
    flagged = any(line[2] for _, lines in panels for line in lines)

    svg = Svg(WIDTH, 0, "Publish-to-receipt latency percentiles, paced fan-out")
    top = heading(svg, "Publish-to-receipt latency (lower is better)", [
        "From the publisher's send time to a subscriber's receipt, over every delivery; log scale. "
        "Paced publishing (the rate nchan sustains on one core).",
        "Each point: the median over the runs of that percentile. Labels at the right: the target and its p99.9.",
    ])
    left, right = 76, WIDTH - 20
    top = legend(svg, [("marker", STYLE[t][0], STYLE[t][1]) for t in targets], left, top + 6, right) + 10
    plot_h = 300
    bottom = top + plot_h
    values = [v for _, lines in panels for line in lines for v in line[1]]
    scale = LogScale(min(values) / 1000, max(values) / 1000, bottom, top, headroom=0.04)
    svg.text(22, (top + bottom) / 2, "latency, ms (log scale)", size=12, fill=MUTED, anchor="middle", rotate=True)

    panel_gap, label_room = 36, 128
    panel_w = (right - left - panel_gap * (len(panels) - 1)) / len(panels)
    for i, (s, lines) in enumerate(panels):
        x0 = left + i * (panel_w + panel_gap)
        x1 = x0 + panel_w - label_room
        log_grid_y(svg, scale, x0, x1, " ms", label=True)
        svg.line(x0, bottom, x1, bottom, stroke=MUTED)
        step = (x1 - x0 - 40) / (len(PERCENTILES) - 1)
        xs = [x0 + 20 + k * step for k in range(len(PERCENTILES))]
        for x, (_, name) in zip(xs, PERCENTILES):
            svg.text(x, bottom + 17, name, size=12, anchor="middle")
        caption = ", ".join(scenario_caption(runs, s))
        svg.text((x0 + x1) / 2, bottom + 38, f"{s}: {caption}", size=12, weight="600", anchor="middle")
        ends = []
        for t, points, flag, n in lines:
            colour = STYLE[t][0]
            coords = [(x, scale(v / 1000)) for x, v in zip(xs, points)]
            svg.add("polyline", points=" ".join(f"{number(x)},{number(y)}" for x, y in coords), fill="none",
                    stroke=colour, stroke_width=2.2, stroke_linejoin="round")
            for (x, y), v, (_, name) in zip(coords, points, PERCENTILES):
                svg.add("circle", cx=x, cy=y, r=3.8, fill=colour, stroke="#FFFFFF", stroke_width=1,
                        tooltip=f"{t}, {s}: {name} {v / 1000:,.2f} ms (median of {plural(n, 'run')})")
            label = f"{t} {value_label(points[-1] / 1000)} ms" + ("*" if flag else "")
            ends.append([coords[-1][1], coords[-1][0], t, label])
        # End labels in the lines' order, pushed apart to at least one line of text.
        ends.sort()
        for k in range(1, len(ends)):
            ends[k][0] = max(ends[k][0], ends[k - 1][0] + 13)
        for y, x, t, label in ends:
            svg.text(x + 10, y + 4, label, size=11, fill=darker(STYLE[t][0]), halo=True)
    return finish(svg, bottom + 64, runs, path, flagged)


def idle_chart(runs, path):
    rows = []
    for t, rs in by_target(runs, IDLE_SCENARIO):
        m = idle_metrics(rs)
        field = "PSS" if m["pss"] else "RSS"
        value = m["pss"] or m["rss"]
        if value and value.low > 0:
            rows.append((t, value, field, m))
    if not rows:
        return None
    svg = Svg(WIDTH, 0, "Memory per held idle subscriber, by server")
    want = rows[0][3]["subscribers"]
    held = f"{want.value:,.0f} " if want else ""
    measure = "PSS (RSS where a result has no PSS)" if any(f == "RSS" for _, _, f, _ in rows) else "PSS"
    top = heading(svg, "Memory per idle subscriber (lower is better)", [
        f"{IDLE_SCENARIO}: {held}subscribers connected and held; the growth of the server's {measure}, "
        "every process,",
        "over the subscribers that connected. User space only: the kernel's socket buffers are not in it. "
        "Log scale.",
        "Bar: median of the runs; whisker: min–max.",
    ])
    left, right = 210, WIDTH - 110
    row_h = 38
    bottom = top + 10 + row_h * len(rows)
    scale = LogScale(min(v.low for _, v, _, _ in rows), max(v.high for _, v, _, _ in rows), left, right)
    for v, labelled in scale.ticks():
        x = scale(v)
        svg.line(x, top, x, bottom, stroke=GRID if labelled else "#EEF1F4")
        if labelled:
            svg.text(x, bottom + 16, tick_label(v), size=11, fill=MUTED, anchor="middle")
    svg.text((left + right) / 2, bottom + 36, "bytes per idle subscriber (log scale)", size=12, fill=MUTED,
             anchor="middle")
    for i, (t, v, field, m) in enumerate(rows):
        y = top + 10 + i * row_h
        bar_h = row_h - 12
        colour, name = STYLE[t]
        got, want = m["subscribed"], m["subscribers"]
        if got and want and got.value < want.value:
            svg.text(left - 10, y + bar_h / 2, name, size=12, anchor="end")
            svg.text(left - 10, y + bar_h / 2 + 13, f"only {got.value:,.0f} of {want.value:,.0f} connected",
                     size=11, fill=MUTED, anchor="end")
        else:
            svg.text(left - 10, y + bar_h / 2 + 4, name, size=12, anchor="end")
        x = scale(v.value)
        svg.add("rect", x=left, y=y, width=x - left, height=bar_h, fill=colour,
                tooltip=f"{t}: {v.value:,.0f} B per subscriber ({field}; min {v.low:,.0f}, max {v.high:,.0f}, "
                        f"{plural(v.runs, 'run')})")
        cy = y + bar_h / 2
        whisker(svg, v, scale, cy, vertical=False)
        label = f"{v.value:,.0f} B" + (" (RSS)" if field == "RSS" else "")
        svg.text(max(x, scale(v.high)) + 6, cy + 4, label, size=12)
    svg.line(left, top, left, bottom, stroke=MUTED)
    return finish(svg, bottom + 62, runs, path, flagged=False)


CHARTS = [("bench-cpu.svg", cpu_chart), ("bench-latency.svg", latency_chart), ("bench-idle.svg", idle_chart)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="the comparison's JSON lines (run.sh --results)")
    parser.add_argument("--out", default="docs", help="directory for the SVG files (default: docs)")
    args = parser.parse_args()
    runs = load(args.results)
    os.makedirs(args.out, exist_ok=True)
    for name, chart in CHARTS:
        svg = chart(runs, args.results)
        target = os.path.join(args.out, name)
        if svg is None:
            print(f"[plot] {name}: no runs for it in {args.results}; not written", file=sys.stderr)
            continue
        with open(target, "w", encoding="utf-8") as out:
            out.write(svg)
        print(f"[plot] wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()

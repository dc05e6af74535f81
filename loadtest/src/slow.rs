//! The `slow` scenario (slow consumers): a share of the subscribers stop reading, and the others' latency must
//! not move.
//!
//! Phases, in one run against one server:
//! 1. the fast subscribers (the share that keeps reading) connect to channel `c0`;
//! 2. baseline: publish at `--rate` for `--duration` with no slow subscriber; their latency is marked;
//! 3. the slow subscribers connect to the same channel, read their response head, and then read nothing (their
//!    sockets have a small receive buffer, `--slow-rcvbuf`, so the backlog reaches the server soon);
//! 4. publish again at the same rate for the same time: the fast subscribers' latency with slow ones present;
//! 5. probe: read the slow subscribers for at most `--probe`, to learn which ones the server closed (the stream
//!    ends after what the kernel still held) and which it kept.
//!
//! The report compares the fast subscribers' latency percentiles with and without slow subscribers (the ratio is
//! the figure that must stay near 1), their missing and duplicate events over both phases, and how many slow
//! subscribers the server closed.
//!
//! What it must not do: count a slow subscriber's events (it reads none) or mix the phases' latencies.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::engine::Role;
use crate::report;
use crate::run::{
    latency_line, loss_line, publish_report, server_cpu_report, subscribe_line, Run, ServerSnapshot,
};
use crate::side::Stop;
use crate::{procfs, Common, Scenario};

/// With nothing new for this long, a probed slow subscriber that has not ended is open.
const PROBE_QUIET: Duration = Duration::from_secs(1);

/// How many of `n` subscribers are slow at `share`: at least one of each kind.
pub fn split(n: usize, share: f64) -> Result<(usize, usize), String> {
    if !(share > 0.0 && share < 1.0) {
        return Err(format!("--slow-share {share} must be between 0 and 1"));
    }
    let slow = ((n as f64) * share).round() as usize;
    if n < 2 || slow == 0 || slow == n {
        return Err(format!(
            "{n} subscribers at --slow-share {share} leave no fast or no slow subscriber"
        ));
    }
    Ok((n - slow, slow))
}

/// One publishing phase's figures.
struct Phase {
    latency: Histogram<u64>,
    publish: Value,
    publish_line: String,
    server: Value,
    server_line: Option<String>,
}

pub fn run(c: &Common, scenario: &Scenario) -> Result<(), String> {
    let Scenario::Slow {
        subscribers,
        slow_share,
        slow_rcvbuf,
        probe,
        publish,
    } = scenario
    else {
        return Err("not the slow scenario".into());
    };
    let rate = publish.required_rate("slow")?;
    let (fast_n, slow_n) = split(*subscribers, *slow_share)?;
    let params = json!({
        "subscribers": subscribers,
        "slow_share": slow_share,
        "fast": fast_n,
        "slow": slow_n,
        "slow_rcvbuf": slow_rcvbuf,
        "probe_s": probe.as_secs_f64(),
        "publish": publish,
    });
    let mut run = Run::prepare(c, "slow", *subscribers, 1, |_| {})?;
    let plan = publish.plan(1, false);

    let connect_cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let t0 = std::time::Instant::now();
    let fast = run.connect(&vec![0; fast_n], Role::Measure)?;
    run.require_subscribers(&fast, "fast subscriber")?;
    let connect_elapsed = t0.elapsed();
    let connect_cpu = procfs::cpu_seconds("self").unwrap_or(0.0) - connect_cpu0;
    std::thread::sleep(Duration::from_millis(500));
    run.begin_measure();

    let before = run.snapshot();
    let outcome = run.publish(&plan, &fast.receivers, " baseline")?;
    let after_baseline = run.snapshot();
    let baseline_ok = run.engine.counters.published_ok;
    let latency = run.mark()?;
    let baseline = phase(
        &run,
        &outcome,
        baseline_ok,
        latency,
        &before,
        &after_baseline,
    );
    // The second phase's publish round trips are its own.
    run.engine.publish_rtt = crate::engine::new_histogram();

    let slow = run.connect(
        &vec![0; slow_n],
        Role::Slow {
            rcvbuf: *slow_rcvbuf,
        },
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let slow_joined = run.snapshot();
    let outcome = run.publish(&plan, &slow.receivers, " with slow")?;
    let after_slow = run.snapshot();
    let with_slow_ok = run.engine.counters.published_ok - baseline_ok;
    let merged = run.finish(Stop {
        probe: Stop::probe(*probe, PROBE_QUIET.min(*probe)),
        acked: Vec::new(),
    })?;
    let with_slow = phase(
        &run,
        &outcome,
        with_slow_ok,
        merged.latency.clone(),
        &slow_joined,
        &after_slow,
    );

    let published = run.engine.published_per_channel.clone();
    let loss = report::loss(&merged.subs, &published);
    let ratio = |q: f64| {
        (!baseline.latency.is_empty() && !with_slow.latency.is_empty()).then(|| {
            let a = baseline.latency.value_at_quantile(q) as f64;
            let b = with_slow.latency.value_at_quantile(q) as f64;
            (b / a.max(1.0) * 100.0).round() / 100.0
        })
    };
    let (p50, p99) = (ratio(0.5), ratio(0.99));
    let s = merged.slow;
    let closed = s.closed_while_stalled + s.closed_in_probe;
    let rss_growth = match (slow_joined.mem.rss, after_slow.mem.rss) {
        (Some(a), Some(b)) => Some(b as f64 - a as f64),
        _ => None,
    };
    let mut results = json!({
        "subscribers": subscribers,
        "subscribed": merged.subscribed,
        "subscribed_fast": fast.subscribed,
        "subscribed_slow": slow.subscribed,
        "connect_failures": merged.failures,
        "not_connected": merged.not_connected.total(),
        "not_connected_detail": merged.not_connected,
        "connect_time_us": report::percentiles_us(&merged.connect_time),
        "baseline": {
            "publish": baseline.publish,
            "latency_us": report::percentiles_us(&baseline.latency),
            "server": baseline.server,
        },
        "with_slow": {
            "publish": with_slow.publish,
            "latency_us": report::percentiles_us(&with_slow.latency),
            "server": with_slow.server,
        },
        "latency_ratio": {"p50": p50, "p99": p99},
        "delivered": merged.delivered,
        "loss": loss,
        "disconnects": merged.disconnects,
        "foreign_events": merged.foreign_events,
        "slow": {
            "closed_by_server": closed,
            "closed_while_stalled": s.closed_while_stalled,
            "closed_in_probe": s.closed_in_probe,
            "open_at_end": s.open_at_end,
            "probe_bytes": s.probe_bytes,
        },
        "server_rss": {
            "before_slow": slow_joined.mem.rss,
            "end_of_slow_phase": after_slow.mem.rss,
            "growth_bytes": rss_growth,
        },
    });
    let processes = run.processes();
    let ratio_text = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("×{r:.2}"));
    let summary = vec![
        format!(
            "slow against {} ({:?}) — {subscribers} subscribers on 1 channel: {fast_n} fast, {slow_n} slow \
             ({:.0}%), {rate}/s for {:.0}s per phase, {processes} process(es)",
            c.target_name,
            run.cfg.transport,
            slow_share * 100.0,
            publish.duration.as_secs_f64(),
        ),
        subscribe_line(&merged, *subscribers, connect_elapsed),
        format!(
            "  fast subscribers subscribed {}, slow {}",
            fast.subscribed, slow.subscribed
        ),
        format!("  baseline, no slow subscriber: {}", baseline.publish_line),
        format!("    fast latency µs: {}", latency_line(&baseline.latency)),
        format!("  with {} slow subscribers: {}", slow.subscribed, with_slow.publish_line),
        format!("    fast latency µs: {}", latency_line(&with_slow.latency)),
        format!(
            "  fast subscribers' latency with / without slow ones: p50 {}, p99 {}",
            ratio_text(p50),
            ratio_text(p99)
        ),
        format!(
            "  fast subscribers: delivered {}; {}",
            merged.delivered,
            loss_line(&loss, &merged)
        ),
        format!(
            "  slow subscribers: {closed} closed by the server ({} seen while stalled, {} found by the probe), \
             {} still open; the probe read {} bytes",
            s.closed_while_stalled, s.closed_in_probe, s.open_at_end, s.probe_bytes
        ),
        format!(
            "  server RSS while slow subscribers were connected: {} → {} ({:+.0} KiB)",
            crate::run::opt(slow_joined.mem.rss.map(|b| b as f64)),
            crate::run::opt(after_slow.mem.rss.map(|b| b as f64)),
            rss_growth.map_or(0.0, |g| g / 1024.0)
        ),
    ];
    run.summary = summary;
    for (label, p) in [("baseline", &baseline), ("with slow", &with_slow)] {
        if let Some(line) = &p.server_line {
            run.summary.push(format!("  {label}: {line}"));
        }
    }
    run.tool_cpu(&merged, &mut results, connect_cpu);
    run.emit(params, results)
}

fn phase(
    run: &Run,
    outcome: &crate::publish::PublishOutcome,
    ok: u64,
    latency: Histogram<u64>,
    from: &ServerSnapshot,
    to: &ServerSnapshot,
) -> Phase {
    let (publish, publish_line) = publish_report(&run.engine, outcome, ok);
    let (server, server_line) = server_cpu_report(from, to, latency.len());
    Phase {
        latency,
        publish,
        publish_line,
        server,
        server_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_both_kinds() {
        assert_eq!(split(200, 0.2), Ok((160, 40)));
        assert_eq!(split(3, 0.5), Ok((1, 2)));
        assert!(split(10, 0.0).is_err());
        assert!(split(10, 1.0).is_err());
        assert!(split(10, f64::NAN).is_err());
        assert!(split(10, 0.01).is_err()); // rounds to no slow subscriber
        assert!(split(1, 0.5).is_err());
    }
}

//! One run of a scenario, and the four scenarios that connect once and measure once: `fanout`, `many-channels`,
//! `idle` and `connect-storm`.
//!
//! What this file owns: `Run`, what every scenario does the same way (check the fd limit, build the engine and
//! the subscriber side, connect with progress lines, publish with progress lines, read the server's CPU and
//! memory, build the JSON record and the human summary, warn when the tool is the limit), and the report of the
//! classic scenarios. `slow.rs` and `resume.rs` use `Run` for their phases.
//!
//! What it must not do: print results anywhere but stdout (progress goes to stderr, `-q` silences it), or
//! append a partial record: the JSON line is written once, at the end.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::engine::{DropPlan, Engine, EngineConfig, NotConnected, Role};
use crate::publish::{PublishOutcome, PublishPlan};
use crate::report::{self, Loss, Merged, SideResult};
use crate::side::{ChildSpec, Connected, Side, Stop};
use crate::{engine_config, procfs, Common, Scenario};

/// Server-side readings at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerSnapshot {
    pub cpu: Option<f64>,
    pub core: Option<procfs::CpuTimes>,
    pub mem: procfs::Memory,
    pub tcp_kernel: Option<u64>,
}

impl ServerSnapshot {
    /// Server process CPU seconds from `self` to `later`.
    pub fn cpu_until(&self, later: &ServerSnapshot) -> Option<f64> {
        Some(later.cpu? - self.cpu?)
    }

    /// Busy seconds of the server's pinned core from `self` to `later`.
    pub fn busy_until(&self, later: &ServerSnapshot) -> Option<f64> {
        Some(procfs::busy_seconds(self.core?, later.core?))
    }
}

/// A scenario in progress.
pub struct Run {
    pub c: Common,
    pub name: &'static str,
    pub cfg: EngineConfig,
    pub engine: Engine,
    side: Option<Side>,
    processes: usize,
    /// This process's CPU seconds and the instant when the measured part began.
    measured: (f64, Instant),
    pub summary: Vec<String>,
}

impl Run {
    /// Checks the fd limit for `subscribers` and starts the engine and the subscriber side.
    pub fn prepare(
        c: &Common,
        name: &'static str,
        subscribers: usize,
        channels: u32,
        adjust: impl FnOnce(&mut EngineConfig),
    ) -> Result<Run, String> {
        let mut cfg = engine_config(c)?;
        adjust(&mut cfg);
        let processes = c.processes.max(1);
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
        if (subscribers / processes) as u64 + 64 > hard {
            return Err(format!(
                "{subscribers} subscribers in {processes} process(es) exceed the fd limit of {hard} per process: \
                 use --processes {}",
                (subscribers as u64).div_ceil(hard.saturating_sub(100).max(1))
            ));
        }
        let engine = Engine::new(cfg.clone(), channels).map_err(|e| e.to_string())?;
        let templates = crate::sub_url_templates(c)?;
        let spec = |index: usize| ChildSpec {
            sub_url: templates[index % templates.len()].to_string(),
            body: c.body.clone(),
            size: c.size,
            seq_marker: c.seq_marker.clone(),
            ts_marker: c.ts_marker.clone(),
            transport: cfg.transport,
            headers: c.headers.clone(),
            source_addrs: cfg.source_addrs.clone(),
            ramp: cfg.ramp / processes as f64,
            connect_concurrency: cfg.connect_concurrency.div_ceil(processes),
            connect_timeout_ms: cfg.connect_timeout.as_millis() as u64,
            channels,
        };
        let side = Side::start(&cfg, spec, processes, channels)?;
        progress_line(
            c.quiet,
            format!(
                "[{name}] target {} ({}, {:?}), {subscribers} subscribers on {channels} channel(s), {processes} process(es)",
                c.target_name, c.sub_url, cfg.transport
            ),
        );
        Ok(Run {
            c: c.clone(),
            name,
            cfg,
            engine,
            side: Some(side),
            processes,
            measured: (0.0, Instant::now()),
            summary: Vec::new(),
        })
    }

    pub fn processes(&self) -> usize {
        self.processes
    }

    fn side(&mut self) -> Result<&mut Side, String> {
        self.side
            .as_mut()
            .ok_or_else(|| "the run has finished".into())
    }

    /// Connects `plan` (one subscriber per entry, its channel) in `role`, with progress lines.
    pub fn connect(&mut self, plan: &[u32], role: Role) -> Result<Connected, String> {
        let (quiet, name) = (self.c.quiet, self.name);
        let mut last = Instant::now();
        let side = self.side.as_mut().ok_or("the run has finished")?;
        let connected = side.connect(&mut self.engine, plan, role, |k, started| {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                progress_line(
                    quiet,
                    format!(
                        "[{name}] connecting: started {started}, subscribed {}, failed {}",
                        k.subscribed,
                        k.failures.total()
                    ),
                );
            }
        })?;
        if self.processes() > 1 {
            progress_line(
                quiet,
                format!(
                    "[{name}] children ready: subscribed {}, failed {}",
                    connected.subscribed,
                    connected.failures.total()
                ),
            );
        }
        Ok(connected)
    }

    /// Stops a scenario whose phases would measure nothing.
    pub fn require_subscribers(&self, connected: &Connected, who: &str) -> Result<(), String> {
        if connected.subscribed > 0 {
            return Ok(());
        }
        Err(format!(
            "no {who} could subscribe ({:?}): is the server at {} running?",
            connected.failures, self.c.sub_url
        ))
    }

    /// The measured part begins now (for the tool's own CPU share).
    pub fn begin_measure(&mut self) {
        self.measured = (procfs::cpu_seconds("self").unwrap_or(0.0), Instant::now());
    }

    /// Publishes by `plan` to `receivers` subscribers per channel, with progress lines.
    pub fn publish(
        &mut self,
        plan: &PublishPlan,
        receivers: &[u64],
        label: &str,
    ) -> Result<PublishOutcome, String> {
        let external = self.side()?.external();
        let (quiet, name) = (self.c.quiet, self.name);
        let t0 = Instant::now();
        self.engine
            .publish(plan, receivers, &external, |k, sent, delivered| {
                progress_line(
                    quiet,
                    format!(
                        "[{name}{label}] {:>5.1}s published {sent} (ok {}), received {delivered}",
                        t0.elapsed().as_secs_f64(),
                        k.published_ok
                    ),
                )
            })
            .map_err(|e| format!("publishing: {e}"))
    }

    pub fn mark(&mut self) -> Result<Histogram<u64>, String> {
        let side = self.side.as_mut().ok_or("the run has finished")?;
        side.mark(&mut self.engine)
    }

    /// Starts the resuming clients' drops, in every process.
    pub fn start_drops(&mut self, plan: DropPlan) -> Result<(), String> {
        let side = self.side.as_mut().ok_or("the run has finished")?;
        side.start_drops(&mut self.engine, plan)
    }

    /// Ends the subscriber side and merges every process's result.
    pub fn finish(&mut self, stop: Stop) -> Result<Merged, String> {
        let side = self.side.take().ok_or("the run has finished")?;
        let sides: Vec<SideResult> = side.finish(&mut self.engine, stop, self.measured)?;
        self.engine.close_all();
        report::merge(&sides)
    }

    /// The server's table-lock histograms (`None` for a target that does not report them).
    pub fn lock_holds(&self) -> Option<crate::lockhold::Holds> {
        let url = crate::target::UrlTemplate::parse(&self.c.pub_url).ok()?;
        crate::lockhold::scrape(url.addr, &url.host_header)
    }

    pub fn snapshot(&self) -> ServerSnapshot {
        let c = &self.c;
        let pids: Vec<String> = c.server_pid.iter().map(u32::to_string).collect();
        // Several PIDs (a multi-process server) are summed; one unreadable PID makes the figure "not measured".
        let cpu = (!pids.is_empty())
            .then(|| {
                pids.iter()
                    .map(|p| procfs::cpu_seconds(p))
                    .sum::<Option<f64>>()
            })
            .flatten();
        let mems: Vec<procfs::Memory> = pids.iter().map(|p| procfs::memory(p)).collect();
        let sum = |f: fn(&procfs::Memory) -> Option<u64>| {
            (!mems.is_empty())
                .then(|| mems.iter().map(f).sum::<Option<u64>>())
                .flatten()
        };
        ServerSnapshot {
            cpu,
            core: c.server_cpu.and_then(procfs::cpu_times),
            mem: procfs::Memory {
                rss: sum(|m| m.rss),
                pss: sum(|m| m.pss),
            },
            tcp_kernel: procfs::tcp_kernel_bytes(),
        }
    }

    /// The tool's CPU (the highest share of a core among its processes) into `results`, with the summary line
    /// and a warning above 90%.
    pub fn tool_cpu(&mut self, merged: &Merged, results: &mut Value, connect_cpu: f64) {
        let parent = procfs::cpu_seconds("self").unwrap_or(0.0) - self.measured.0;
        let wall = self.measured.1.elapsed().as_secs_f64();
        let parent_share = if wall > 0.0 { parent / wall } else { 0.0 };
        let share = merged.max_tool_cpu_share.max(parent_share);
        results["tool_cpu"] = json!({
            "max_share_of_core": (share * 1000.0).round() / 1000.0,
            "parent_seconds": parent,
            "children_seconds": if self.processes() > 1 { merged.tool_cpu_seconds } else { 0.0 },
            "connect_phase_seconds": connect_cpu,
        });
        self.summary.push(format!(
            "  tool CPU: {:.0}% of a core at most (per process)",
            share * 100.0
        ));
        if share > 0.9 {
            let warning =
                "the tool used more than 90% of a core: it, not the server, may be the limit \
                           (add --processes, or pin the tool to a free core)";
            self.summary.push(format!("  WARNING: {warning}"));
            results["warning"] = json!(warning);
        }
    }

    /// Prints the summary and appends the JSON record (`params`: the scenario's arguments).
    pub fn emit(&self, params: Value, results: Value) -> Result<(), String> {
        let c = &self.c;
        let record = json!({
            "time_unix": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "scenario": self.name,
            "target": c.target_name,
            "transport": self.cfg.transport,
            "params": params,
            "common": c,
            "machine": procfs::machine(),
            "results": results,
        });
        println!("{}", self.summary.join("\n"));
        if let Some(path) = &c.json {
            report::append_json(path, &record).map_err(|e| format!("--json {path}: {e}"))?;
        }
        Ok(())
    }
}

pub fn progress_line(quiet: bool, text: String) {
    if !quiet {
        eprintln!("{text}");
    }
}

/// The publish figures of one publishing phase: JSON and one summary line.
pub fn publish_report(engine: &Engine, o: &PublishOutcome, ok: u64) -> (Value, String) {
    let seconds = o.publishing_time.as_secs_f64().max(1e-9);
    let json = json!({
        "sent": o.sent,
        "ok": ok,
        "failed": engine.counters.published_failed,
        "errors": engine.counters.publish_errors,
        "publishing_seconds": o.publishing_time.as_secs_f64(),
        "events_per_s": ok as f64 / seconds,
        "rtt_us": report::percentiles_us(&engine.publish_rtt),
        "end": o.end_reason,
    });
    let line = format!(
        "published {} ok of {} sent in {:.2}s ({:.0}/s, {}), rtt p50 {} p99 {} µs",
        ok,
        o.sent,
        o.publishing_time.as_secs_f64(),
        ok as f64 / seconds,
        o.end_reason,
        fmt_us(&engine.publish_rtt, 0.5),
        fmt_us(&engine.publish_rtt, 0.99),
    );
    (json, line)
}

/// `p50 … max` of a latency histogram, in µs.
pub fn latency_line(h: &Histogram<u64>) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {}",
        fmt_us(h, 0.5),
        fmt_us(h, 0.9),
        fmt_us(h, 0.99),
        fmt_us(h, 0.999),
        fmt_us(h, 1.0),
    )
}

/// The subscribe line of the summary, and a warning line below it when the connect phase ended before every
/// subscriber subscribed or failed.
pub fn subscribe_line(merged: &Merged, subscribers: usize, connect_elapsed: Duration) -> String {
    let mut line = format!(
        "  connected {} / {subscribers}, failed {} {:?}, not connected {}, in {:.1}s; \
         subscribe time p50 {} p99 {} max {} (µs)",
        merged.subscribed,
        merged.failures.total(),
        merged.failures,
        merged.not_connected.total(),
        connect_elapsed.as_secs_f64(),
        fmt_us(&merged.connect_time, 0.5),
        fmt_us(&merged.connect_time, 0.99),
        fmt_us(&merged.connect_time, 1.0),
    );
    if let Some(warning) = not_connected_warning(&merged.not_connected) {
        line.push_str("\n  WARNING: ");
        line.push_str(&warning);
    }
    line
}

/// Why the run holds fewer subscribers than asked for without failures, when it does.
pub fn not_connected_warning(n: &NotConnected) -> Option<String> {
    (n.total() > 0).then(|| {
        format!(
            "{} subscribers not connected when the connect phase ended ({} never started, {} still connecting): \
             connects were slower than --ramp allows (at most --connect-concurrency in flight, each taking long: \
             a server slow to accept or answer, SYNs dropped and retransmitted, or the tool short of CPU)",
            n.total(),
            n.never_started,
            n.still_connecting
        )
    })
}

/// Missing and duplicate events of the measured subscribers, disconnects and foreign events.
pub fn loss_line(loss: &Loss, merged: &Merged) -> String {
    format!(
        "missing {} ({} subscribers), duplicates {} ({} subscribers), disconnects {}, foreign events {}",
        loss.missing,
        loss.subscribers_missing,
        loss.duplicates,
        loss.subscribers_with_duplicates,
        merged.disconnects,
        merged.foreign_events
    )
}

/// The server's CPU per delivery from `a` to `b`: JSON and an optional summary line.
pub fn server_cpu_report(
    a: &ServerSnapshot,
    b: &ServerSnapshot,
    deliveries: u64,
) -> (Value, Option<String>) {
    let cpu = a.cpu_until(b);
    let busy = a.busy_until(b);
    let per = |v: Option<f64>| v.map(|s| s * 1e6 / deliveries.max(1) as f64);
    let json = json!({
        "cpu_seconds": cpu,
        "cpu_us_per_delivery": per(cpu),
        "core_busy_seconds": busy,
        "core_busy_us_per_delivery": per(busy),
        "rss_bytes_after": b.mem.rss,
    });
    let line = cpu.map(|cpu| {
        format!(
            "server CPU {:.2}s = {:.3} µs per delivery{}",
            cpu,
            cpu * 1e6 / deliveries.max(1) as f64,
            busy.map_or(String::new(), |b| format!(
                "; its core busy {:.2}s = {:.3} µs per delivery",
                b,
                b * 1e6 / deliveries.max(1) as f64
            ))
        )
    });
    (json, line)
}

pub fn fmt_us(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        return "-".into();
    }
    let v = if q >= 1.0 {
        h.max()
    } else {
        h.value_at_quantile(q)
    };
    format!("{:.0}", v as f64 / 1000.0)
}

pub fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.0}"))
}

/// `fanout`, `many-channels`, `idle`, `connect-storm`: connect once, then publish, hold, or nothing.
pub fn classic(c: &Common, scenario: &Scenario) -> Result<(), String> {
    let (name, params, subscribers, channels, publish) = match scenario {
        Scenario::Fanout {
            subscribers,
            publish,
        } => (
            "fanout",
            json!({"subscribers": subscribers, "publish": publish}),
            *subscribers,
            1,
            Some(publish),
        ),
        Scenario::ManyChannels {
            subscribers,
            channels,
            publish,
        } => {
            let channels = channels.unwrap_or(*subscribers as u32).max(1);
            (
                "many-channels",
                json!({"subscribers": subscribers, "channels": channels, "publish": publish}),
                *subscribers,
                channels,
                Some(publish),
            )
        }
        Scenario::Idle { subscribers, hold } => (
            "idle",
            json!({"subscribers": subscribers, "hold_s": hold.as_secs_f64()}),
            *subscribers,
            1,
            None,
        ),
        Scenario::ConnectStorm { subscribers } => (
            "connect-storm",
            json!({"subscribers": subscribers}),
            *subscribers,
            1,
            None,
        ),
        _ => return Err("not a classic scenario".into()),
    };
    let storm = matches!(scenario, Scenario::ConnectStorm { .. });
    let mut run = Run::prepare(c, name, subscribers, channels, |cfg| {
        if storm {
            cfg.ramp = 1e9;
        }
    })?;
    let plan: Vec<u32> = (0..subscribers).map(|i| (i as u32) % channels).collect();

    let before_connect = run.snapshot();
    let connect_start = Instant::now();
    let connect_cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let connected = run.connect(&plan, Role::Measure)?;
    let connect_elapsed = connect_start.elapsed();
    let connect_cpu = procfs::cpu_seconds("self").unwrap_or(0.0) - connect_cpu0;
    // Let the server settle (finish writing stream heads, free accept-time buffers) before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    let after_connect = run.snapshot();

    run.begin_measure();
    let holds_before = run.lock_holds();
    let publish_start_ns = crate::engine::unix_nanos();
    let mut outcome = None;
    if let Some(p) = publish {
        outcome = Some(run.publish(&p.plan(channels, false), &connected.receivers, "")?);
    }
    if let Scenario::Idle { hold, .. } = scenario {
        let (quiet, t0) = (c.quiet, Instant::now());
        let mut last = Instant::now();
        run.engine.hold(*hold, |k| {
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                progress_line(
                    quiet,
                    format!(
                        "[idle] holding {:.0}s/{:.0}s, disconnects {}",
                        t0.elapsed().as_secs_f64(),
                        hold.as_secs_f64(),
                        k.disconnects
                    ),
                );
            }
            true
        });
    }
    let after_measure = run.snapshot();
    let holds_after = run.lock_holds();
    let merged = run.finish(Stop::default())?;

    let processes = run.processes();
    let published = run.engine.published_per_channel.clone();
    let loss = report::loss(&merged.subs, &published);
    let mut results = json!({
        "subscribers": subscribers,
        "subscribed": merged.subscribed,
        "connect_failures": merged.failures,
        "not_connected": merged.not_connected.total(),
        "not_connected_detail": merged.not_connected,
        "connect_seconds": connect_elapsed.as_secs_f64(),
        "connect_time_us": report::percentiles_us(&merged.connect_time),
        "disconnects": merged.disconnects,
    });
    run.summary.push(format!(
        "{name} against {} ({:?}) — {subscribers} subscribers on {channels} channel(s), {processes} process(es)",
        c.target_name, run.cfg.transport
    ));
    run.summary
        .push(subscribe_line(&merged, subscribers, connect_elapsed));
    if let Some(o) = &outcome {
        let last_delivery_s = if merged.last_delivery_ns > publish_start_ns {
            (merged.last_delivery_ns - publish_start_ns) as f64 / 1e9
        } else {
            o.elapsed.as_secs_f64()
        };
        let deliveries_per_s = merged.delivered as f64 / last_delivery_s.max(1e-9);
        // Per channel as planned: subscribers that failed to connect show up as a shortfall.
        let mut planned = vec![0u64; channels as usize];
        for ch in &plan {
            planned[*ch as usize] += 1;
        }
        let expected: u64 = published.iter().zip(&planned).map(|(p, s)| p * s).sum();
        let (publish_json, publish_line) =
            publish_report(&run.engine, o, run.engine.counters.published_ok);
        results["publish"] = publish_json;
        results["delivered"] = json!(merged.delivered);
        results["expected_deliveries"] = json!(expected);
        results["deliveries_per_s"] = json!(deliveries_per_s.round());
        results["seconds_to_last_delivery"] = json!(last_delivery_s);
        results["latency_us"] = report::percentiles_us(&merged.latency);
        results["loss"] = json!(loss);
        results["foreign_events"] = json!(merged.foreign_events);
        let (server_json, server_line) =
            server_cpu_report(&after_connect, &after_measure, merged.delivered);
        results["server"] = server_json;
        if let (Some(before), Some(after)) = (&holds_before, &holds_after) {
            let (holds_json, holds_line) = crate::lockhold::report(before, after);
            results["server"]["table_lock_hold"] = holds_json;
            run.summary.push(format!("  {holds_line}"));
        }
        run.summary.push(format!("  {publish_line}"));
        run.summary.push(format!(
            "  delivered {} of {} expected: {:.0} deliveries/s",
            merged.delivered, expected, deliveries_per_s
        ));
        run.summary
            .push(format!("  latency µs: {}", latency_line(&merged.latency)));
        run.summary.push(format!("  {}", loss_line(&loss, &merged)));
        if let Some(line) = server_line {
            run.summary.push(format!("  {line}"));
        }
    }
    if outcome.is_none() {
        let n = merged.subscribed.max(1) as f64;
        let delta = |a: Option<u64>, b: Option<u64>| Some(b? as f64 - a? as f64);
        let rss = delta(before_connect.mem.rss, after_connect.mem.rss);
        let pss = delta(before_connect.mem.pss, after_connect.mem.pss);
        // Machine-wide and noisy (other sockets come and go): a drop is "not measured", not negative memory.
        let kernel =
            delta(before_connect.tcp_kernel, after_connect.tcp_kernel).filter(|d| *d >= 0.0);
        let subscribe_cpu = before_connect.cpu_until(&after_connect);
        results["server"] = json!({
            "rss_before": before_connect.mem.rss,
            "rss_after": after_connect.mem.rss,
            "pss_before": before_connect.mem.pss,
            "pss_after": after_connect.mem.pss,
            "rss_bytes_per_connection": rss.map(|d| (d / n).round()),
            "pss_bytes_per_connection": pss.map(|d| (d / n).round()),
            "rss_after_hold": after_measure.mem.rss,
            "tcp_kernel_bytes_per_connection_both_ends": kernel.map(|d| (d / n).round()),
            "subscribe_cpu_seconds": subscribe_cpu,
            "subscribe_cpu_us_each": subscribe_cpu.map(|s| s * 1e6 / n),
            "core_busy_us_per_subscribe": before_connect.busy_until(&after_connect).map(|s| s * 1e6 / n),
        });
        run.summary.push(format!(
            "  server memory per connection: RSS {} B, PSS {} B (kernel TCP buffers, both ends: {} B); \
             subscribe CPU {} µs each",
            opt(rss.map(|d| d / n)),
            opt(pss.map(|d| d / n)),
            opt(kernel.map(|d| d / n)),
            opt(subscribe_cpu.map(|s| s * 1e6 / n)),
        ));
        if let Scenario::Idle { hold, .. } = scenario {
            run.summary.push(format!(
                "  held {:.0}s: disconnects {}, RSS after hold {}",
                hold.as_secs_f64(),
                merged.disconnects,
                opt(after_measure.mem.rss.map(|b| b as f64)),
            ));
        }
    }
    run.tool_cpu(&merged, &mut results, connect_cpu);
    run.emit(params, results)
}

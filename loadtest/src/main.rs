//! `spout-load`: a load generator and measuring client for SSE push servers (spout, nchan, Pushpin, ...).
//!
//! What this file owns: the command line, the scenarios (`fanout`, `many-channels`, `idle`, `connect-storm`),
//! splitting subscribers over child processes (`--processes`) and the parent/child protocol, and the report.
//!
//! Parent/child protocol (JSON lines): the parent starts `spout-load __child` and writes one `ChildSpec` line to
//! its stdin. The child connects its subscribers and writes `{"t":"ready",...}`, then `{"t":"progress",
//! "delivered":N}` about every 20 ms while it receives; when the parent writes `stop`, it answers one
//! `{"t":"result",...}` line carrying its `SideResult` and exits. Progress for humans goes to stderr.
//!
//! What it must not do: target anything but loopback (`target.rs` refuses), or run unbounded: every scenario has
//! a count and a time limit.

mod engine;
mod floor;
mod procfs;
mod report;
mod stream;
mod target;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use engine::{Engine, EngineConfig, PublishPlan};
use report::{encode_histogram, SideResult};
use target::{BodyTemplate, UrlTemplate};

#[derive(Parser, Debug)]
#[command(
    name = "spout-load",
    version,
    about = "Load generator for SSE push servers (loopback only)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug, Clone, Serialize)]
struct Common {
    /// Subscribe URL template; `{channel}` is replaced by the channel name (c0, c1, ...).
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080/sub/{channel}"
    )]
    sub_url: String,
    /// Publish URL template (POST).
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080/pub/{channel}"
    )]
    pub_url: String,
    /// Publish body template: {seq} and {ts} required; {channel}, {pad} optional.
    #[arg(long, global = true, default_value = BodyTemplate::DEFAULT)]
    body: String,
    /// Body size in bytes when the template has {pad}.
    #[arg(long, global = true, default_value_t = 100)]
    size: usize,
    /// Text right before the sequence number in received data (derived from --body when omitted).
    #[arg(long, global = true)]
    seq_marker: Option<String>,
    /// Text right before the timestamp in received data (derived from --body when omitted).
    #[arg(long, global = true)]
    ts_marker: Option<String>,
    /// Extra header for subscribe requests, `Name: value` (repeatable).
    #[arg(long = "header", global = true)]
    headers: Vec<String>,
    /// Name of the server under test, recorded with the results (spout, nchan, pushpin, ...).
    #[arg(long, global = true, default_value = "spout")]
    target_name: String,
    /// Free-form label recorded with the results (the compare driver names its scenario presets with it).
    #[arg(long, global = true, default_value = "")]
    tag: String,
    /// PID of the server: CPU time per delivery and memory per connection come from /proc/PID. A
    /// comma-separated list (Pushpin's several processes) is summed.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// CPU the server is pinned to: its busy time from /proc/stat (softirq included) per delivery.
    #[arg(long, global = true)]
    server_cpu: Option<usize>,
    /// Spread subscriber sockets over source addresses 127.0.0.2 ..= 127.0.0.(N+1) (0: kernel's choice).
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=250))]
    source_addrs: u8,
    /// Child processes holding the subscribers (each under the per-process fd limit); 1: all in this process.
    #[arg(long, global = true, default_value_t = 1)]
    processes: usize,
    /// New subscriber connections per second (all processes together).
    #[arg(long, global = true, default_value_t = 5000.0)]
    ramp: f64,
    /// Subscriber connects in flight at most (all processes together).
    #[arg(long, global = true, default_value_t = 512)]
    connect_concurrency: usize,
    /// A subscriber without a response head after this long counts as failed.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    connect_timeout: Duration,
    /// Append one JSON line with the run's parameters, results and machine to this file.
    #[arg(long, global = true)]
    json: Option<String>,
    /// No progress on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
struct PublishArgs {
    /// Publisher connections (keep-alive HTTP/1.1, one request in flight each).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Publish at this many events per second (paced); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop publishing after this many events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Stop publishing after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    duration: Duration,
    /// Closed loop: events published but not yet received by all their subscribers, at most.
    #[arg(long, default_value_t = 32)]
    window: u64,
    /// After publishing ends, wait at most this long for the last deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    drain: Duration,
    /// End the run when nothing was delivered or answered for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    stall: Duration,
}

#[derive(Subcommand, Debug, Clone)]
enum Scenario {
    /// One channel, N subscribers, one publisher side (closed loop or --rate).
    Fanout {
        #[arg(long, short = 'n', default_value_t = 1000)]
        subscribers: usize,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// N subscribers spread over C channels (default one each), a random channel per publish.
    ManyChannels {
        #[arg(long, short = 'n', default_value_t = 1000)]
        subscribers: usize,
        /// Channels (default: as many as subscribers).
        #[arg(long)]
        channels: Option<u32>,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Open N subscribers at --ramp per second and hold them: connected/failed and server memory per connection.
    Idle {
        #[arg(long, short = 'n', default_value_t = 1000)]
        subscribers: usize,
        /// How long to hold the connections once all are open.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        hold: Duration,
    },
    /// Open N subscribers as fast as the tool can (no ramp): subscribe time, refusals, server CPU per subscribe.
    ConnectStorm {
        #[arg(long, short = 'n', default_value_t = 5000)]
        subscribers: usize,
    },
    /// The physical-limit baseline: serve /sub/{ch} and /pub/{ch} with one thread writing one pre-serialized
    /// frame per event to every subscriber (`--batch K`: K frames per writev).
    Floor {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Frames per write: 1 is one plain write per event per subscriber; K > 1 holds a channel's frames until
        /// K are queued and writes them with one writev.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// With --batch > 1: flush a partial batch when no publish arrived for this long.
        #[arg(long, default_value = "20ms", value_parser = parse_duration)]
        linger: Duration,
        /// Exit after this long.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Internal: a child process holding a share of the subscribers.
    #[command(name = "__child", hide = true)]
    Child,
}

/// Durations go into the JSON record as seconds.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses `15s`, `500ms`, `2m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms, 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// What a child needs to connect its share of subscribers.
#[derive(Debug, Serialize, Deserialize)]
struct ChildSpec {
    sub_url: String,
    body: String,
    size: usize,
    seq_marker: Option<String>,
    ts_marker: Option<String>,
    headers: Vec<String>,
    source_addrs: Vec<IpAddr>,
    ramp: f64,
    connect_concurrency: usize,
    connect_timeout_ms: u64,
    channels: u32,
    plan: Vec<u32>,
    quiet: bool,
    index: usize,
}

fn main() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise RLIMIT_NOFILE: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Child => run_child(),
        Scenario::Floor {
            listen,
            batch,
            linger,
            duration,
        } => {
            if listen.ip().is_loopback() {
                floor::run(floor::FloorConfig {
                    listen,
                    batch: batch.max(1),
                    linger,
                    duration,
                })
                .map_err(|e| format!("floor: {e}"))
            } else {
                Err(format!("floor: {listen} is not a loopback address"))
            }
        }
        _ => run(cli),
    };
    if let Err(e) = result {
        eprintln!("spout-load: {e}");
        std::process::exit(1);
    }
}

fn engine_config(c: &Common) -> Result<EngineConfig, String> {
    let sub_url = UrlTemplate::parse(&c.sub_url).map_err(|e| format!("--sub-url: {e}"))?;
    let pub_url = UrlTemplate::parse(&c.pub_url).map_err(|e| format!("--pub-url: {e}"))?;
    let template = BodyTemplate::parse(
        &c.body,
        c.size,
        c.seq_marker.as_deref(),
        c.ts_marker.as_deref(),
    )
    .map_err(|e| format!("--body: {e}"))?;
    let source_addrs = engine::source_addresses(c.source_addrs);
    if !source_addrs.is_empty() && sub_url.addr.is_ipv6() {
        return Err("--source-addrs needs an IPv4 --sub-url".into());
    }
    Ok(EngineConfig {
        sub_url,
        pub_url: Some(pub_url),
        template,
        sub_headers: c.headers.clone(),
        source_addrs,
        ramp: c.ramp.max(1.0),
        connect_concurrency: c.connect_concurrency.max(1),
        connect_timeout: c.connect_timeout,
    })
}

/// Server-side readings at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct ServerSnapshot {
    cpu: Option<f64>,
    core: Option<procfs::CpuTimes>,
    mem: procfs::Memory,
    tcp_kernel: Option<u64>,
}

fn server_snapshot(c: &Common) -> ServerSnapshot {
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

/// The subscriber side: in this process, or in children.
enum Side {
    Local,
    Children(Vec<ChildHandle>),
}

struct ChildHandle {
    child: Child,
    stdin: ChildStdin,
    delivered: Arc<AtomicU64>,
}

enum ChildMsg {
    Ready(engine::Counters),
    Result(usize, Box<SideResult>),
    Gone(usize, String),
}

fn progress_line(quiet: bool, text: String) {
    if !quiet {
        eprintln!("{text}");
    }
}

/// Splits `plan` round-robin over `k` processes.
fn split_plan(plan: &[u32], k: usize) -> Vec<Vec<u32>> {
    let mut parts = vec![Vec::new(); k];
    for (i, ch) in plan.iter().enumerate() {
        parts[i % k].push(*ch);
    }
    parts
}

fn spawn_children(
    c: &Common,
    cfg: &EngineConfig,
    plan: &[u32],
    channels: u32,
) -> Result<(Vec<ChildHandle>, mpsc::Receiver<ChildMsg>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let (to_parent, from_children) = mpsc::channel();
    let k = c.processes;
    let mut handles = Vec::new();
    for (index, part) in split_plan(plan, k).into_iter().enumerate() {
        let spec = ChildSpec {
            sub_url: c.sub_url.clone(),
            body: c.body.clone(),
            size: c.size,
            seq_marker: c.seq_marker.clone(),
            ts_marker: c.ts_marker.clone(),
            headers: c.headers.clone(),
            source_addrs: cfg.source_addrs.clone(),
            ramp: cfg.ramp / k as f64,
            connect_concurrency: cfg.connect_concurrency.div_ceil(k),
            connect_timeout_ms: cfg.connect_timeout.as_millis() as u64,
            channels,
            plan: part,
            quiet: c.quiet,
            index,
        };
        let mut child = Command::new(&exe)
            .arg("__child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start child process: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("child has no stdin")?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        let line = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
        writeln!(stdin, "{line}").map_err(|e| format!("child {index}: {e}"))?;
        let delivered = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&delivered);
        let tx = to_parent.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                match v["t"].as_str() {
                    Some("progress") => {
                        counter.store(v["delivered"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    }
                    Some("ready") => {
                        let counters = engine::Counters {
                            subscribed: v["subscribed"].as_u64().unwrap_or(0),
                            failures: serde_json::from_value(v["failures"].clone())
                                .unwrap_or_default(),
                            ..Default::default()
                        };
                        let _ = tx.send(ChildMsg::Ready(counters));
                    }
                    Some("result") => match serde_json::from_value::<SideResult>(v["side"].clone())
                    {
                        Ok(side) => {
                            counter.store(side.delivered, Ordering::Relaxed);
                            let _ = tx.send(ChildMsg::Result(index, Box::new(side)));
                        }
                        Err(e) => {
                            let _ = tx.send(ChildMsg::Gone(index, format!("bad result: {e}")));
                        }
                    },
                    _ => {}
                }
            }
            let _ = tx.send(ChildMsg::Gone(index, "exited".into()));
        });
        handles.push(ChildHandle {
            child,
            stdin,
            delivered,
        });
    }
    Ok((handles, from_children))
}

/// Runs the hidden `__child` subcommand: reads its spec, connects, streams progress, reports on `stop`.
fn run_child() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let spec: ChildSpec =
        serde_json::from_str(&line).map_err(|e| format!("bad child spec: {e}"))?;
    let cfg = EngineConfig {
        sub_url: UrlTemplate::parse(&spec.sub_url).map_err(|e| e.to_string())?,
        pub_url: None,
        template: BodyTemplate::parse(
            &spec.body,
            spec.size,
            spec.seq_marker.as_deref(),
            spec.ts_marker.as_deref(),
        )
        .map_err(|e| e.to_string())?,
        sub_headers: spec.headers.clone(),
        source_addrs: spec.source_addrs.clone(),
        ramp: spec.ramp,
        connect_concurrency: spec.connect_concurrency,
        connect_timeout: Duration::from_millis(spec.connect_timeout_ms),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        flag.store(true, Ordering::Relaxed);
    });
    let mut out = std::io::stdout().lock();
    let mut engine = Engine::new(cfg.clone(), spec.channels).map_err(|e| e.to_string())?;
    let deadline = Instant::now()
        + Duration::from_secs_f64(spec.plan.len() as f64 / spec.ramp.max(1.0))
        + cfg.connect_timeout
        + Duration::from_secs(5);
    engine.connect_subscribers(&spec.plan, deadline, |_, _| {});
    let ready = json!({
        "t": "ready",
        "subscribed": engine.counters.subscribed,
        "failures": engine.counters.failures,
    });
    writeln!(out, "{ready}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let t0 = Instant::now();
    let mut last = u64::MAX;
    loop {
        let mut failed = false;
        engine.hold(Duration::from_millis(20), |_| false);
        if engine.counters.delivered != last {
            last = engine.counters.delivered;
            failed = writeln!(out, "{}", json!({"t": "progress", "delivered": last}))
                .and_then(|()| out.flush())
                .is_err();
        }
        if failed || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let side = side_result(&engine, cpu0, t0);
    engine.close_all();
    writeln!(out, "{}", json!({"t": "result", "side": side})).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let _ = spec.quiet;
    let _ = spec.index;
    Ok(())
}

fn side_result(engine: &Engine, cpu0: f64, t0: Instant) -> SideResult {
    let c = &engine.counters;
    let last_delivery_ns = c.last_delivery.map_or(0, |t| {
        let ago = t.elapsed();
        engine::unix_nanos().saturating_sub(ago.as_nanos() as u64)
    });
    SideResult {
        subscribed: c.subscribed,
        failures: c.failures.clone(),
        disconnects: c.disconnects,
        delivered: c.delivered,
        foreign_events: c.foreign_events,
        subs: engine.sub_results(),
        latency: encode_histogram(&engine.latency),
        connect_time: encode_histogram(&engine.connect_time),
        cpu_seconds: procfs::cpu_seconds("self").unwrap_or(0.0) - cpu0,
        wall_seconds: t0.elapsed().as_secs_f64(),
        last_delivery_ns,
    }
}

/// The parameters of a scenario, for the JSON record.
fn scenario_params(s: &Scenario) -> (&'static str, Value) {
    match s {
        Scenario::Fanout {
            subscribers,
            publish,
        } => (
            "fanout",
            json!({"subscribers": subscribers, "publish": publish}),
        ),
        Scenario::ManyChannels {
            subscribers,
            channels,
            publish,
        } => (
            "many-channels",
            json!({"subscribers": subscribers, "channels": channels.unwrap_or(*subscribers as u32), "publish": publish}),
        ),
        Scenario::Idle { subscribers, hold } => (
            "idle",
            json!({"subscribers": subscribers, "hold_s": hold.as_secs_f64()}),
        ),
        Scenario::ConnectStorm { subscribers } => {
            ("connect-storm", json!({"subscribers": subscribers}))
        }
        Scenario::Child => ("child", json!({})),
        Scenario::Floor { .. } => ("floor", json!({})),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let c = cli.common.clone();
    let mut cfg = engine_config(&c)?;
    let (name, params) = scenario_params(&cli.scenario);
    let (subscribers, channels, publish) = match &cli.scenario {
        Scenario::Fanout {
            subscribers,
            publish,
        } => (*subscribers, 1, Some(publish.clone())),
        Scenario::ManyChannels {
            subscribers,
            channels,
            publish,
        } => (
            *subscribers,
            channels.unwrap_or(*subscribers as u32).max(1),
            Some(publish.clone()),
        ),
        Scenario::Idle { subscribers, .. } => (*subscribers, 1, None),
        Scenario::ConnectStorm { subscribers } => {
            cfg.ramp = 1e9;
            (*subscribers, 1, None)
        }
        Scenario::Child | Scenario::Floor { .. } => unreachable!("handled in main"),
    };
    let processes = c.processes.max(1);
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    if (subscribers / processes) as u64 + 64 > hard {
        return Err(format!(
            "{subscribers} subscribers in {processes} process(es) exceed the fd limit of {hard} per process: \
             use --processes {}",
            (subscribers as u64).div_ceil(hard.saturating_sub(100).max(1))
        ));
    }
    let plan: Vec<u32> = (0..subscribers).map(|i| (i as u32) % channels).collect();
    let mut engine = Engine::new(cfg.clone(), channels).map_err(|e| e.to_string())?;
    progress_line(
        c.quiet,
        format!(
            "[{name}] target {} ({}), {subscribers} subscribers on {channels} channel(s), {processes} process(es)",
            c.target_name, c.sub_url
        ),
    );

    let before_connect = server_snapshot(&c);
    let connect_start = Instant::now();
    let connect_cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let deadline = connect_start
        + Duration::from_secs_f64(subscribers as f64 / cfg.ramp)
        + c.connect_timeout
        + Duration::from_secs(5);
    let (side, from_children) = if processes == 1 {
        let mut last = Instant::now();
        engine.connect_subscribers(&plan, deadline, |k, started| {
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                progress_line(
                    c.quiet,
                    format!(
                        "[{name}] connecting: started {started}, subscribed {}, failed {}",
                        k.subscribed,
                        k.failures.total()
                    ),
                );
            }
        });
        (Side::Local, None)
    } else {
        let (handles, rx) = spawn_children(&c, &cfg, &plan, channels)?;
        let mut ready = 0;
        let mut subscribed = 0;
        let mut failed = 0;
        while ready < handles.len() {
            match rx.recv_timeout(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5),
            ) {
                Ok(ChildMsg::Ready(k)) => {
                    ready += 1;
                    subscribed += k.subscribed;
                    failed += k.failures.total();
                }
                Ok(ChildMsg::Gone(i, why)) => {
                    return Err(format!("child {i} {why} while connecting"))
                }
                Ok(ChildMsg::Result(..)) => {}
                Err(_) => return Err("children did not finish connecting in time".into()),
            }
        }
        progress_line(
            c.quiet,
            format!("[{name}] children ready: subscribed {subscribed}, failed {failed}"),
        );
        (Side::Children(handles), Some(rx))
    };
    let connect_elapsed = connect_start.elapsed();
    let connect_cpu = procfs::cpu_seconds("self").unwrap_or(0.0) - connect_cpu0;
    // Let the server settle (finish writing stream heads, free accept-time buffers) before reading its memory.
    std::thread::sleep(Duration::from_millis(500));
    let after_connect = server_snapshot(&c);

    let measure_cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let measure_t0 = Instant::now();
    let publish_start_ns = engine::unix_nanos();
    let mut outcome = None;
    let mut local_subs_per_channel = vec![0u64; channels as usize];
    match (&cli.scenario, &publish) {
        (_, Some(p)) => {
            // Subscribers per channel that are actually streaming: the expected deliveries per event.
            let subs_per_channel: Vec<u64> = match &side {
                Side::Local => {
                    for r in engine.sub_results() {
                        local_subs_per_channel[r.channel as usize] += 1;
                    }
                    local_subs_per_channel.clone()
                }
                Side::Children(_) => {
                    // Children report only totals when ready; failures are rare, assume the plan.
                    let mut v = vec![0u64; channels as usize];
                    for ch in &plan {
                        v[*ch as usize] += 1;
                    }
                    v
                }
            };
            let publish_plan = PublishPlan {
                channels,
                rate: p.rate,
                events: p.events,
                duration: p.duration,
                publishers: p.publishers.max(1),
                window: p.window.max(1),
                drain: p.drain,
                stall: p.stall,
            };
            let counters: Vec<Arc<AtomicU64>> = match &side {
                Side::Local => Vec::new(),
                Side::Children(h) => h.iter().map(|h| Arc::clone(&h.delivered)).collect(),
            };
            let external = move || {
                counters
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum::<u64>()
            };
            let quiet = c.quiet;
            let t0 = Instant::now();
            let o = engine
                .publish(
                    &publish_plan,
                    &subs_per_channel,
                    &external,
                    |k, sent, delivered| {
                        progress_line(
                            quiet,
                            format!(
                                "[{name}] {:>5.1}s published {sent} (ok {}), delivered {delivered}",
                                t0.elapsed().as_secs_f64(),
                                k.published_ok
                            ),
                        )
                    },
                )
                .map_err(|e| format!("publishing: {e}"))?;
            outcome = Some(o);
        }
        (Scenario::Idle { hold, .. }, None) => {
            let quiet = c.quiet;
            let t0 = Instant::now();
            let mut last = Instant::now();
            engine.hold(*hold, |k| {
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
        _ => {}
    }
    let after_measure = server_snapshot(&c);

    // Collect the subscriber side.
    let sides = match side {
        Side::Local => vec![side_result(&engine, measure_cpu0, measure_t0)],
        Side::Children(mut handles) => {
            for h in &mut handles {
                let _ = writeln!(h.stdin, "stop");
                let _ = h.stdin.flush();
            }
            let rx = from_children.expect("children have a receiver");
            let mut results: Vec<Option<SideResult>> = vec![None; handles.len()];
            let until = Instant::now() + Duration::from_secs(30);
            while results.iter().any(Option::is_none) {
                match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                    Ok(ChildMsg::Result(i, side)) => results[i] = Some(*side),
                    Ok(ChildMsg::Gone(i, why)) if results[i].is_none() => {
                        return Err(format!("child {i} {why} before reporting"))
                    }
                    Ok(_) => {}
                    Err(_) => return Err("children did not report in time".into()),
                }
            }
            for h in &mut handles {
                let _ = h.child.wait();
            }
            results.into_iter().flatten().collect()
        }
    };
    let parent_cpu = procfs::cpu_seconds("self").unwrap_or(0.0) - measure_cpu0;
    let measure_wall = measure_t0.elapsed().as_secs_f64();
    engine.close_all();

    let merged = report::merge(&sides)?;
    let published = &engine.published_per_channel;
    let loss = report::loss(&merged.subs, published);
    let mut record = json!({
        "time_unix": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "scenario": name,
        "target": c.target_name,
        "params": params,
        "common": c,
        "machine": procfs::machine(),
    });
    let mut results = json!({
        "subscribers": subscribers,
        "subscribed": merged.subscribed,
        "connect_failures": merged.failures,
        "connect_seconds": connect_elapsed.as_secs_f64(),
        "connect_time_us": report::percentiles_us(&merged.connect_time),
        "disconnects": merged.disconnects,
    });
    let tool_share_parent = if measure_wall > 0.0 {
        parent_cpu / measure_wall
    } else {
        0.0
    };
    let tool_share = merged.max_tool_cpu_share.max(tool_share_parent);
    results["tool_cpu"] = json!({
        "max_share_of_core": (tool_share * 1000.0).round() / 1000.0,
        "parent_seconds": parent_cpu,
        "children_seconds": if processes > 1 { merged.tool_cpu_seconds } else { 0.0 },
        "connect_phase_seconds": connect_cpu,
    });
    let server_cpu = |a: &ServerSnapshot, b: &ServerSnapshot| match (a.cpu, b.cpu) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let core_busy = |a: &ServerSnapshot, b: &ServerSnapshot| match (a.core, b.core) {
        (Some(x), Some(y)) => Some(procfs::busy_seconds(x, y)),
        _ => None,
    };
    let mut summary = Vec::new();
    summary.push(format!(
        "{name} against {} — {} subscribers on {channels} channel(s), {processes} process(es)",
        c.target_name, subscribers
    ));
    summary.push(format!(
        "  connected {} / {subscribers}, failed {} {:?}, in {:.1}s; subscribe time p50 {} p99 {} max {} (µs)",
        merged.subscribed,
        merged.failures.total(),
        merged.failures,
        connect_elapsed.as_secs_f64(),
        fmt_us(&merged.connect_time, 0.5),
        fmt_us(&merged.connect_time, 0.99),
        fmt_us(&merged.connect_time, 1.0),
    ));
    if let Some(o) = &outcome {
        let last_delivery_s = if merged.last_delivery_ns > publish_start_ns {
            (merged.last_delivery_ns - publish_start_ns) as f64 / 1e9
        } else {
            o.elapsed.as_secs_f64()
        };
        let deliveries_per_s = merged.delivered as f64 / last_delivery_s.max(1e-9);
        let ok = engine.counters.published_ok;
        let expected: u64 = published
            .iter()
            .zip(&local_or_plan(&plan, channels))
            .map(|(p, s)| p * s)
            .sum();
        results["publish"] = json!({
            "sent": o.sent,
            "ok": ok,
            "failed": engine.counters.published_failed,
            "errors": engine.counters.publish_errors,
            "publishing_seconds": o.publishing_time.as_secs_f64(),
            "events_per_s": ok as f64 / o.publishing_time.as_secs_f64().max(1e-9),
            "rtt_us": report::percentiles_us(&engine.publish_rtt),
            "end": o.end_reason,
        });
        results["delivered"] = json!(merged.delivered);
        results["expected_deliveries"] = json!(expected);
        results["deliveries_per_s"] = json!(deliveries_per_s.round());
        results["seconds_to_last_delivery"] = json!(last_delivery_s);
        results["latency_us"] = report::percentiles_us(&merged.latency);
        results["loss"] = json!(loss);
        results["foreign_events"] = json!(merged.foreign_events);
        let cpu = server_cpu(&after_connect, &after_measure);
        let busy = core_busy(&after_connect, &after_measure);
        let per = |v: Option<f64>| v.map(|s| s * 1e6 / merged.delivered.max(1) as f64);
        results["server"] = json!({
            "cpu_seconds": cpu,
            "cpu_us_per_delivery": per(cpu),
            "core_busy_seconds": busy,
            "core_busy_us_per_delivery": per(busy),
            "rss_bytes_after": after_measure.mem.rss,
        });
        summary.push(format!(
            "  published {} ok of {} sent in {:.2}s ({:.0}/s, {}), rtt p50 {} p99 {} µs",
            ok,
            o.sent,
            o.publishing_time.as_secs_f64(),
            ok as f64 / o.publishing_time.as_secs_f64().max(1e-9),
            o.end_reason,
            fmt_us(&engine.publish_rtt, 0.5),
            fmt_us(&engine.publish_rtt, 0.99),
        ));
        summary.push(format!(
            "  delivered {} of {} expected: {:.0} deliveries/s",
            merged.delivered, expected, deliveries_per_s
        ));
        summary.push(format!(
            "  latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
            fmt_us(&merged.latency, 0.5),
            fmt_us(&merged.latency, 0.9),
            fmt_us(&merged.latency, 0.99),
            fmt_us(&merged.latency, 0.999),
            fmt_us(&merged.latency, 1.0),
        ));
        summary.push(format!(
            "  missing {} ({} subscribers), duplicates {} ({} subscribers), disconnects {}, foreign events {}",
            loss.missing,
            loss.subscribers_missing,
            loss.duplicates,
            loss.subscribers_with_duplicates,
            merged.disconnects,
            merged.foreign_events
        ));
        if let Some(cpu) = cpu {
            summary.push(format!(
                "  server CPU {:.2}s = {:.3} µs per delivery{}",
                cpu,
                cpu * 1e6 / merged.delivered.max(1) as f64,
                busy.map_or(String::new(), |b| format!(
                    "; its core busy {:.2}s = {:.3} µs per delivery",
                    b,
                    b * 1e6 / merged.delivered.max(1) as f64
                ))
            ));
        }
    }
    if matches!(
        cli.scenario,
        Scenario::Idle { .. } | Scenario::ConnectStorm { .. }
    ) {
        let n = merged.subscribed.max(1) as f64;
        let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(y as f64 - x as f64),
            _ => None,
        };
        let rss = delta(before_connect.mem.rss, after_connect.mem.rss);
        let pss = delta(before_connect.mem.pss, after_connect.mem.pss);
        // Machine-wide and noisy (other sockets come and go): a drop is "not measured", not negative memory.
        let kernel =
            delta(before_connect.tcp_kernel, after_connect.tcp_kernel).filter(|d| *d >= 0.0);
        let subscribe_cpu = server_cpu(&before_connect, &after_connect);
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
            "core_busy_us_per_subscribe": core_busy(&before_connect, &after_connect).map(|s| s * 1e6 / n),
        });
        summary.push(format!(
            "  server memory per connection: RSS {} B, PSS {} B (kernel TCP buffers, both ends: {} B); \
             subscribe CPU {} µs each",
            opt(rss.map(|d| d / n)),
            opt(pss.map(|d| d / n)),
            opt(kernel.map(|d| d / n)),
            opt(subscribe_cpu.map(|s| s * 1e6 / n)),
        ));
        if let Scenario::Idle { hold, .. } = cli.scenario {
            summary.push(format!(
                "  held {:.0}s: disconnects {}, RSS after hold {}",
                hold.as_secs_f64(),
                merged.disconnects,
                opt(after_measure.mem.rss.map(|b| b as f64)),
            ));
        }
    }
    summary.push(format!(
        "  tool CPU: {:.0}% of a core at most (per process)",
        tool_share * 100.0
    ));
    if tool_share > 0.9 {
        let warning =
            "the tool used more than 90% of a core: it, not the server, may be the limit \
                       (add --processes, or pin the tool to a free core)";
        summary.push(format!("  WARNING: {warning}"));
        results["warning"] = json!(warning);
    }
    record["results"] = results;
    println!("{}", summary.join("\n"));
    if let Some(path) = &c.json {
        report::append_json(path, &record).map_err(|e| format!("--json {path}: {e}"))?;
    }
    Ok(())
}

/// Subscribers per channel from the plan (what was asked for; failures show up as missing events).
fn local_or_plan(plan: &[u32], channels: u32) -> Vec<u64> {
    let mut v = vec![0u64; channels as usize];
    for ch in plan {
        v[*ch as usize] += 1;
    }
    v
}

fn fmt_us(h: &hdrhistogram::Histogram<u64>, q: f64) -> String {
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

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.0}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("10s", Some(Duration::from_secs(10))),
            ("10", Some(Duration::from_secs(10))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("", None),
            ("s", None),
            ("10x", None),
            ("-1s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text).ok(), *expected, "{text}");
        }
    }

    #[test]
    fn plan_split_is_round_robin_and_complete() {
        let plan: Vec<u32> = (0..10).collect();
        let parts = split_plan(&plan, 3);
        assert_eq!(parts, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
    }

    #[test]
    fn cli_parses_and_refuses_remote_targets() {
        let cli = Cli::try_parse_from([
            "spout-load",
            "fanout",
            "-n",
            "10",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--target-name",
            "nchan",
        ])
        .unwrap();
        assert_eq!(cli.common.target_name, "nchan");
        assert!(engine_config(&cli.common).is_ok());
        let remote = Cli::try_parse_from([
            "spout-load",
            "--sub-url",
            "http://192.168.1.1/sub/{channel}",
            "idle",
        ])
        .unwrap();
        assert!(engine_config(&remote.common)
            .unwrap_err()
            .contains("not loopback"));
    }
}

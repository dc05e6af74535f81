//! `spout-load`: a load generator and measuring client for SSE and WebSocket push servers (spout, nchan,
//! Pushpin, ...).
//!
//! What this file owns: the command line and the dispatch to the scenarios: `fanout`, `many-channels`, `idle`
//! and `connect-storm` (`run.rs`), `slow` (`slow.rs`), `resume` (`resume.rs`), the `floor` baseline server
//! (`floor.rs`) and the hidden `__child` that holds a share of the subscribers (`side.rs`).
//!
//! Module map: `engine.rs` (the client event loop and subscriber roles), `publish.rs` (publishers),
//! `receive.rs` (wire → events → accounting), `stream.rs` (HTTP head, chunked, SSE parsers), `ws.rs` (client
//! WebSocket framing), `ledger.rs` (exact per-client record for `resume`), `target.rs` (URL and body
//! templates), `report.rs` (results and their merge), `procfs.rs` (server and machine readings).
//!
//! What it must not do: target anything but loopback (`target.rs` refuses), or run unbounded: every scenario has
//! a count and a time limit.

mod engine;
mod floor;
mod ledger;
mod lockhold;
mod procfs;
mod publish;
mod receive;
mod report;
mod resume;
mod run;
mod side;
mod slow;
mod stream;
mod target;
mod ws;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use engine::{EngineConfig, Transport};
use publish::PublishPlan;
use target::{BodyTemplate, UrlTemplate};

#[derive(Parser, Debug)]
#[command(
    name = "spout-load",
    version,
    about = "Load generator for SSE and WebSocket push servers (loopback only)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Subscribe URL template; `{channel}` is replaced by the channel name (c0, c1, ...). `ws://` means
    /// `--transport ws`. Several templates separated by spaces spread the `--processes` over them (process i
    /// subscribes through template i mod n): the nodes of one cluster, each under its own descriptor limit.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080/sub/{channel}"
    )]
    pub sub_url: String,
    /// Publish URL template (POST).
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080/pub/{channel}"
    )]
    pub pub_url: String,
    /// How subscribers receive: `sse` (text/event-stream) or `ws` (a WebSocket upgrade of the subscribe URL,
    /// one JSON text message per event, as spout's native API sends). Default: `ws` for a `ws://` --sub-url,
    /// else `sse`.
    #[arg(long, global = true, value_enum)]
    pub transport: Option<Transport>,
    /// Publish body template: {seq} and {ts} required; {channel}, {pad} optional.
    #[arg(long, global = true, default_value = BodyTemplate::DEFAULT)]
    pub body: String,
    /// Body size in bytes when the template has {pad}.
    #[arg(long, global = true, default_value_t = 100)]
    pub size: usize,
    /// Text right before the sequence number in received data (derived from --body when omitted).
    #[arg(long, global = true)]
    pub seq_marker: Option<String>,
    /// Text right before the timestamp in received data (derived from --body when omitted).
    #[arg(long, global = true)]
    pub ts_marker: Option<String>,
    /// Extra header for subscribe requests, `Name: value` (repeatable).
    #[arg(long = "header", global = true)]
    pub headers: Vec<String>,
    /// Name of the server under test, recorded with the results (spout, nchan, pushpin, ...).
    #[arg(long, global = true, default_value = "spout")]
    pub target_name: String,
    /// Free-form label recorded with the results (the compare driver names its scenario presets with it).
    #[arg(long, global = true, default_value = "")]
    pub tag: String,
    /// PID of the server: CPU time per delivery and memory per connection come from /proc/PID. A
    /// comma-separated list (Pushpin's several processes) is summed.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// CPU the server is pinned to: its busy time from /proc/stat (softirq included) per delivery.
    #[arg(long, global = true)]
    pub server_cpu: Option<usize>,
    /// Spread subscriber sockets over source addresses 127.0.0.2 ..= 127.0.0.(N+1) (0: kernel's choice).
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=250))]
    pub source_addrs: u8,
    /// Child processes holding the subscribers (each under the per-process fd limit); 1: all in this process.
    #[arg(long, global = true, default_value_t = 1)]
    pub processes: usize,
    /// New subscriber connections per second (all processes together).
    #[arg(long, global = true, default_value_t = 5000.0)]
    pub ramp: f64,
    /// Subscriber connects in flight at most (all processes together).
    #[arg(long, global = true, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// A subscriber without a response head after this long counts as failed.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    pub connect_timeout: Duration,
    /// Append one JSON line with the run's parameters, results and machine to this file.
    #[arg(long, global = true)]
    pub json: Option<String>,
    /// No progress on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct PublishArgs {
    /// Publisher connections (keep-alive HTTP/1.1, one request in flight each).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Publish at this many events per second (paced); without it, closed loop (`slow` and `resume` need it).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop publishing after this many events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Stop publishing after this long (`slow`: each of its two phases).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Closed loop: events published but not yet received by all their subscribers, at most.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// After publishing ends, wait at most this long for the last deliveries.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    pub drain: Duration,
    /// End the run when nothing was delivered or answered for this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    pub stall: Duration,
}

impl PublishArgs {
    pub fn plan(&self, channels: u32, ordered: bool) -> PublishPlan {
        PublishPlan {
            channels,
            rate: self.rate,
            events: self.events,
            duration: self.duration,
            publishers: self.publishers.max(1),
            window: self.window.max(1),
            drain: self.drain,
            stall: self.stall,
            ordered,
        }
    }

    /// The rate of a paced scenario, which has no closed loop.
    pub fn required_rate(&self, scenario: &str) -> Result<f64, String> {
        match self.rate {
            Some(r) if r > 0.0 && r.is_finite() => Ok(r),
            _ => Err(format!(
                "{scenario} publishes at a paced rate: give --rate (events/s)"
            )),
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
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
    /// Slow consumers: N subscribers on one channel, a share of which stop reading. Publishes at --rate for
    /// --duration without them (the baseline), then again with them: the fast subscribers' latency in both phases.
    Slow {
        #[arg(long, short = 'n', default_value_t = 1000)]
        subscribers: usize,
        /// Share of the subscribers that stop reading (0 < share < 1).
        #[arg(long, default_value_t = 0.2)]
        slow_share: f64,
        /// Receive buffer of a slow subscriber's socket in bytes, so its backlog reaches the server soon
        /// (0: the kernel's default, which autotunes up to several MiB).
        #[arg(long, default_value_t = 8192)]
        slow_rcvbuf: usize,
        /// At the end, read the slow subscribers for at most this long to learn which the server closed.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        probe: Duration,
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Resume storm: N subscribers on C channels drop their connections at random moments and reconnect with
    /// Last-Event-ID while publishing goes on; each must end with exactly the events published on its channel.
    Resume {
        #[arg(long, short = 'n', default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 4)]
        channels: u32,
        /// Planned drops per client, at moments drawn uniformly over --duration.
        #[arg(long, default_value_t = 3)]
        drops: u32,
        /// Reconnect attempts per client at most (planned drops, losses and failed attempts together).
        #[arg(long, default_value_t = 20)]
        max_reconnects: u32,
        /// A client waits this long after a drop before it reconnects, so that it misses events the server
        /// must replay (0: at once).
        #[arg(long, default_value = "200ms", value_parser = parse_duration)]
        reconnect_delay: Duration,
        #[command(flatten)]
        publish: PublishArgs,
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

fn main() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise RLIMIT_NOFILE: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Child => side::run_child(),
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
        Scenario::Slow { .. } => slow::run(&cli.common, &cli.scenario),
        Scenario::Resume { .. } => resume::run(&cli.common, &cli.scenario),
        _ => run::classic(&cli.common, &cli.scenario),
    };
    if let Err(e) = result {
        eprintln!("spout-load: {e}");
        std::process::exit(1);
    }
}

/// The `--sub-url` templates, each checked; several need as many `--processes` at least (each process uses one).
pub fn sub_url_templates(c: &Common) -> Result<Vec<&str>, String> {
    let templates: Vec<&str> = c.sub_url.split_whitespace().collect();
    for template in &templates {
        UrlTemplate::parse(template).map_err(|e| format!("--sub-url {template}: {e}"))?;
    }
    if templates.len() > 1 && c.processes < templates.len() {
        return Err(format!(
            "--sub-url names {} templates: use --processes {} or more (each process subscribes through one)",
            templates.len(),
            templates.len()
        ));
    }
    Ok(templates)
}

pub fn engine_config(c: &Common) -> Result<EngineConfig, String> {
    let templates = sub_url_templates(c)?;
    let first = templates.first().ok_or("--sub-url: no template")?;
    let sub_url = UrlTemplate::parse(first).map_err(|e| format!("--sub-url: {e}"))?;
    let pub_url = UrlTemplate::parse(&c.pub_url).map_err(|e| format!("--pub-url: {e}"))?;
    if pub_url.websocket {
        return Err("--pub-url: publishing is an HTTP POST (http://)".into());
    }
    let transport = match (c.transport, sub_url.websocket) {
        (Some(Transport::Sse), true) => {
            return Err("--transport sse with a ws:// --sub-url: pick one".into())
        }
        (Some(t), _) => t,
        (None, true) => Transport::Ws,
        (None, false) => Transport::Sse,
    };
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
        transport,
        sub_headers: c.headers.clone(),
        source_addrs,
        ramp: c.ramp.max(1.0),
        connect_concurrency: c.connect_concurrency.max(1),
        connect_timeout: c.connect_timeout,
    })
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

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("spout-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn cli_parses_and_refuses_remote_targets() {
        let cli = parse(&[
            "fanout",
            "-n",
            "10",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--target-name",
            "nchan",
        ]);
        assert_eq!(cli.common.target_name, "nchan");
        assert!(engine_config(&cli.common).is_ok());
        let remote = parse(&["--sub-url", "http://192.168.1.1/sub/{channel}", "idle"]);
        assert!(engine_config(&remote.common)
            .unwrap_err()
            .contains("not loopback"));
    }

    #[test]
    fn transport_follows_flag_or_scheme() {
        let transport = |args: &[&str]| engine_config(&parse(args).common).map(|c| c.transport);
        assert_eq!(transport(&["idle"]), Ok(Transport::Sse));
        assert_eq!(transport(&["--transport", "ws", "idle"]), Ok(Transport::Ws));
        assert_eq!(
            transport(&["--sub-url", "ws://127.0.0.1:8080/sub/{channel}", "idle"]),
            Ok(Transport::Ws)
        );
        assert!(transport(&[
            "--transport",
            "sse",
            "--sub-url",
            "ws://127.0.0.1:8080/sub/{channel}",
            "idle"
        ])
        .is_err());
        assert!(transport(&["--pub-url", "ws://127.0.0.1:8080/pub/{channel}", "idle"]).is_err());
    }

    #[test]
    fn paced_scenarios_need_a_rate() {
        let cli = parse(&["slow", "-n", "10", "--slow-share", "0.5"]);
        let Scenario::Slow { publish, .. } = &cli.scenario else {
            panic!("not slow");
        };
        assert!(publish.required_rate("slow").is_err());
        let cli = parse(&["resume", "--rate", "50", "--channels", "2", "--drops", "1"]);
        let Scenario::Resume {
            publish, channels, ..
        } = &cli.scenario
        else {
            panic!("not resume");
        };
        assert_eq!((publish.required_rate("resume"), *channels), (Ok(50.0), 2));
    }
}

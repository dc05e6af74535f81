//! The subscriber side of a run: in this process (the engine that also publishes), or spread over child
//! processes (`--processes K`, each under the per-process fd limit), behind one interface the scenarios use:
//! `connect` a plan of subscribers in a role, `mark` the end of a measured phase, `start_drops` for resuming
//! clients, and `finish`.
//!
//! Parent/child protocol (JSON lines): the parent starts `spout-load __child` and writes one `ChildSpec` line to
//! its stdin, then `Command`s, one per line. The child answers each `connect` with `ready`, each `mark` with
//! `mark`, and `stop` with `result` (its `SideResult`), then exits; `drops` has no answer. In between it writes
//! `{"t":"progress","distinct":N}` about every 20 ms while events arrive. Progress for humans goes to stderr.
//! A child whose stdin closes (the parent died) stops.
//!
//! What it must not do: hide a child's failure. A child that exits or answers garbage before its `result` fails
//! the run with a message, and every wait on children has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::{self, ConnectFailures, DropPlan, Engine, EngineConfig, Role, Transport};
use crate::ledger::SeqSet;
use crate::procfs;
use crate::report::{decode_histogram, encode_histogram, SideResult};
use crate::target::{BodyTemplate, UrlTemplate};

/// What a child needs to build its engine.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    pub sub_url: String,
    pub body: String,
    pub size: usize,
    pub seq_marker: Option<String>,
    pub ts_marker: Option<String>,
    pub transport: Transport,
    pub headers: Vec<String>,
    pub source_addrs: Vec<IpAddr>,
    pub ramp: f64,
    pub connect_concurrency: usize,
    pub connect_timeout_ms: u64,
    pub channels: u32,
}

impl ChildSpec {
    fn engine_config(&self) -> Result<EngineConfig, String> {
        Ok(EngineConfig {
            sub_url: UrlTemplate::parse(&self.sub_url).map_err(|e| e.to_string())?,
            pub_url: None,
            template: BodyTemplate::parse(
                &self.body,
                self.size,
                self.seq_marker.as_deref(),
                self.ts_marker.as_deref(),
            )
            .map_err(|e| e.to_string())?,
            transport: self.transport,
            sub_headers: self.headers.clone(),
            source_addrs: self.source_addrs.clone(),
            ramp: self.ramp,
            connect_concurrency: self.connect_concurrency,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
        })
    }
}

/// How the subscribers end: `Slow` ones are probed first (at most `max`, done when each had nothing new for
/// `quiet`); resuming clients are compared with `acked` (per channel, the acknowledged publishes).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stop {
    pub probe: Option<(u64, u64)>,
    pub acked: Vec<SeqSet>,
}

impl Stop {
    pub fn probe(max: Duration, quiet: Duration) -> Option<(u64, u64)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Some((ms(max), ms(quiet)))
    }

    fn run_probe(&self, engine: &mut Engine) {
        if let Some((max, quiet)) = self.probe {
            engine.probe_slow(Duration::from_millis(max), Duration::from_millis(quiet));
        }
    }

    fn probe_max(&self) -> Duration {
        Duration::from_millis(self.probe.map_or(0, |(max, _)| max))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
enum Command {
    Connect { plan: Vec<u32>, role: Role },
    Mark,
    Drops { plan: DropPlan },
    Stop { stop: Stop },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
enum Reply {
    Ready(Connected),
    Progress { distinct: u64 },
    Mark { latency: String },
    Result { side: Box<SideResult> },
}

/// The outcome of one `connect`: subscribes and failures of this call, and the subscribers that receive, per
/// channel, after it (all calls so far).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Connected {
    pub subscribed: u64,
    pub failures: ConnectFailures,
    pub receivers: Vec<u64>,
}

impl Connected {
    fn add(&mut self, o: &Connected) {
        self.subscribed += o.subscribed;
        self.failures.add(&o.failures);
        if self.receivers.len() < o.receivers.len() {
            self.receivers.resize(o.receivers.len(), 0);
        }
        for (a, b) in self.receivers.iter_mut().zip(&o.receivers) {
            *a += b;
        }
    }
}

/// Connects `plan` in `engine` and says what changed.
fn connect_local(
    engine: &mut Engine,
    plan: &[u32],
    role: Role,
    channels: u32,
    mut progress: impl FnMut(&engine::Counters, usize),
) -> Connected {
    let (subscribed0, failures0) = (engine.counters.subscribed, engine.counters.failures.clone());
    let deadline = connect_deadline(plan.len(), &engine.cfg.clone());
    engine.connect_subscribers(plan, role, deadline, &mut progress);
    let f = &engine.counters.failures;
    Connected {
        subscribed: engine.counters.subscribed - subscribed0,
        failures: ConnectFailures {
            connect_error: f.connect_error - failures0.connect_error,
            timeout: f.timeout - failures0.timeout,
            bad_status: f.bad_status - failures0.bad_status,
            closed: f.closed - failures0.closed,
            malformed: f.malformed - failures0.malformed,
        },
        receivers: engine.receivers_per_channel(channels),
    }
}

/// How long connecting `n` subscribers may take: the ramp, the connect timeout and some slack.
fn connect_deadline(n: usize, cfg: &EngineConfig) -> Instant {
    Instant::now()
        + Duration::from_secs_f64(n as f64 / cfg.ramp.max(1.0))
        + cfg.connect_timeout
        + Duration::from_secs(5)
}

/// Child `i`'s share of `plan` among `k`: every k-th entry from the i-th (round-robin).
fn share(plan: &[u32], i: usize, k: usize) -> Vec<u32> {
    plan.iter().skip(i).step_by(k.max(1)).copied().collect()
}

/// This process's side, as a `SideResult`: `measured` is the CPU seconds and the instant at which the
/// measured part began.
pub fn side_result(engine: &Engine, acked: &[SeqSet], measured: (f64, Instant)) -> SideResult {
    let c = &engine.counters;
    let last_delivery_ns = c.last_delivery.map_or(0, |t| {
        let ago = t.elapsed();
        engine::unix_nanos().saturating_sub(ago.as_nanos() as u64)
    });
    SideResult {
        subscribed: c.subscribed,
        failures: c.failures.clone(),
        not_connected: c.not_connected,
        disconnects: c.disconnects,
        delivered: c.delivered,
        distinct: c.distinct,
        foreign_events: c.foreign_events,
        subs: engine.sub_results(),
        latency: encode_histogram(&engine.latency),
        connect_time: encode_histogram(&engine.connect_time),
        reconnect_time: encode_histogram(&engine.reconnect_time),
        slow: c.slow,
        resume: c.resume,
        clients: engine.client_results(acked),
        cpu_seconds: procfs::cpu_seconds("self").unwrap_or(0.0) - measured.0,
        wall_seconds: measured.1.elapsed().as_secs_f64(),
        last_delivery_ns,
    }
}

/// The subscriber side.
pub enum Side {
    Local { channels: u32 },
    Children(Children),
}

pub struct Children {
    handles: Vec<ChildHandle>,
    replies: mpsc::Receiver<ChildMsg>,
    ramp: f64,
    connect_timeout: Duration,
}

struct ChildHandle {
    child: Child,
    stdin: ChildStdin,
    distinct: Arc<AtomicU64>,
}

enum ChildMsg {
    Reply(usize, Reply),
    Gone(usize, String),
}

impl Side {
    /// This process for one process; otherwise `processes` children, started and given their spec.
    pub fn start(
        cfg: &EngineConfig,
        spec: impl Fn(usize) -> ChildSpec,
        processes: usize,
        channels: u32,
    ) -> Result<Side, String> {
        if processes <= 1 {
            return Ok(Side::Local { channels });
        }
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let (to_parent, replies) = mpsc::channel();
        let mut handles = Vec::new();
        for index in 0..processes {
            let mut child = Process::new(&exe)
                .arg("__child")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start child process: {e}"))?;
            let mut stdin = child.stdin.take().ok_or("child has no stdin")?;
            let stdout = child.stdout.take().ok_or("child has no stdout")?;
            let line = serde_json::to_string(&spec(index)).map_err(|e| e.to_string())?;
            writeln!(stdin, "{line}").map_err(|e| format!("child {index}: {e}"))?;
            let distinct = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&distinct);
            let tx = to_parent.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Reply>(&line) {
                        Ok(Reply::Progress { distinct }) => {
                            counter.store(distinct, Ordering::Relaxed)
                        }
                        Ok(reply) => {
                            if tx.send(ChildMsg::Reply(index, reply)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ =
                                tx.send(ChildMsg::Gone(index, format!("answered {line:?}: {e}")));
                        }
                    }
                }
                let _ = tx.send(ChildMsg::Gone(index, "exited".into()));
            });
            handles.push(ChildHandle {
                child,
                stdin,
                distinct,
            });
        }
        Ok(Side::Children(Children {
            handles,
            replies,
            ramp: cfg.ramp,
            connect_timeout: cfg.connect_timeout,
        }))
    }

    /// Connects one subscriber per entry of `plan` (its channel), playing `role`; children share it round-robin.
    pub fn connect(
        &mut self,
        engine: &mut Engine,
        plan: &[u32],
        role: Role,
        progress: impl FnMut(&engine::Counters, usize),
    ) -> Result<Connected, String> {
        match self {
            Side::Local { channels } => Ok(connect_local(engine, plan, role, *channels, progress)),
            Side::Children(c) => {
                let k = c.handles.len();
                for (i, h) in c.handles.iter_mut().enumerate() {
                    let plan = share(plan, i, k);
                    h.send(i, &Command::Connect { plan, role })?;
                }
                let mut total = Connected::default();
                let until = Instant::now()
                    + Duration::from_secs_f64(plan.len() as f64 / c.ramp.max(1.0))
                    + c.connect_timeout
                    + Duration::from_secs(10);
                c.collect(until, "connecting", |reply| match reply {
                    Reply::Ready(r) => {
                        total.add(&r);
                        true
                    }
                    _ => false,
                })?;
                Ok(total)
            }
        }
    }

    /// Distinct deliveries counted in child processes (0 when local): what `Engine::publish` waits for.
    pub fn external(&self) -> impl Fn() -> u64 + 'static {
        let counters: Vec<Arc<AtomicU64>> = match self {
            Side::Local { .. } => Vec::new(),
            Side::Children(c) => c.handles.iter().map(|h| Arc::clone(&h.distinct)).collect(),
        };
        move || counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Ends a measured phase: the latency recorded since the last mark (or the start), over all processes.
    pub fn mark(&mut self, engine: &mut Engine) -> Result<Histogram<u64>, String> {
        match self {
            Side::Local { .. } => Ok(engine.take_latency()),
            Side::Children(c) => {
                for (i, h) in c.handles.iter_mut().enumerate() {
                    h.send(i, &Command::Mark)?;
                }
                let mut merged = engine::new_histogram();
                let mut bad = None;
                c.collect(
                    Instant::now() + Duration::from_secs(30),
                    "marking",
                    |reply| {
                        let Reply::Mark { latency } = reply else {
                            return false;
                        };
                        match decode_histogram(&latency)
                            .and_then(|h| merged.add(h).map_err(|e| format!("{e:?}")))
                        {
                            Ok(()) => {}
                            Err(e) => bad = Some(e),
                        }
                        true
                    },
                )?;
                bad.map_or(Ok(merged), Err)
            }
        }
    }

    /// Starts the resuming clients' drops; each child draws its own moments.
    pub fn start_drops(&mut self, engine: &mut Engine, plan: DropPlan) -> Result<(), String> {
        match self {
            Side::Local { .. } => {
                engine.start_drops(&plan);
                Ok(())
            }
            Side::Children(c) => {
                for (i, h) in c.handles.iter_mut().enumerate() {
                    let plan = DropPlan {
                        seed: plan
                            .seed
                            .wrapping_add(i as u64)
                            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        ..plan
                    };
                    h.send(i, &Command::Drops { plan })?;
                }
                Ok(())
            }
        }
    }

    /// Ends the run: probes, compares, and returns every process's side. `measured` is when this process's
    /// measured part began (CPU seconds, instant), for the local side.
    pub fn finish(
        self,
        engine: &mut Engine,
        stop: Stop,
        measured: (f64, Instant),
    ) -> Result<Vec<SideResult>, String> {
        match self {
            Side::Local { .. } => {
                stop.run_probe(engine);
                Ok(vec![side_result(engine, &stop.acked, measured)])
            }
            Side::Children(mut c) => {
                let until = Instant::now() + stop.probe_max() + Duration::from_secs(30);
                let command = Command::Stop { stop };
                for (i, h) in c.handles.iter_mut().enumerate() {
                    h.send(i, &command)?;
                }
                let mut results: Vec<Option<SideResult>> = vec![None; c.handles.len()];
                let mut index = 0;
                c.collect_indexed(until, "finishing", |i, reply| match reply {
                    Reply::Result { side } => {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Some(*side);
                        }
                        index += 1;
                        true
                    }
                    _ => false,
                })?;
                for h in &mut c.handles {
                    let _ = h.child.wait();
                }
                Ok(results.into_iter().flatten().collect())
            }
        }
    }
}

impl ChildHandle {
    fn send(&mut self, index: usize, command: &Command) -> Result<(), String> {
        let line = serde_json::to_string(command).map_err(|e| e.to_string())?;
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("child {index}: {e}"))
    }
}

impl Children {
    /// Waits until every child gave one reply that `take` accepts (true), or `until`.
    fn collect(
        &mut self,
        until: Instant,
        doing: &str,
        mut take: impl FnMut(Reply) -> bool,
    ) -> Result<(), String> {
        self.collect_indexed(until, doing, |_, reply| take(reply))
    }

    fn collect_indexed(
        &mut self,
        until: Instant,
        doing: &str,
        mut take: impl FnMut(usize, Reply) -> bool,
    ) -> Result<(), String> {
        let mut answered = vec![false; self.handles.len()];
        while answered.iter().any(|a| !a) {
            match self
                .replies
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(ChildMsg::Reply(i, reply)) => {
                    if answered.get(i) == Some(&false) && take(i, reply) {
                        answered[i] = true;
                    }
                }
                Ok(ChildMsg::Gone(i, why)) if answered.get(i) == Some(&false) => {
                    return Err(format!("child {i} {why} while {doing}"))
                }
                Ok(ChildMsg::Gone(..)) => {}
                Err(_) => return Err(format!("children did not answer in time while {doing}")),
            }
        }
        Ok(())
    }
}

/// Runs the hidden `__child` subcommand: reads its spec, then obeys commands until `stop` (or until its stdin
/// closes), writing progress in between.
pub fn run_child() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let spec: ChildSpec =
        serde_json::from_str(&line).map_err(|e| format!("bad child spec: {e}"))?;
    let mut engine =
        Engine::new(spec.engine_config()?, spec.channels).map_err(|e| e.to_string())?;
    let (to_main, commands) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Command>(&line) {
                Ok(command) => {
                    if to_main.send(command).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("spout-load child: bad command {line:?}: {e}"),
            }
        }
    });
    let mut out = std::io::stdout().lock();
    let mut say = |reply: &Reply| -> Result<(), String> {
        let line = serde_json::to_string(reply).map_err(|e| e.to_string())?;
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())
    };
    let mut measured: Option<(f64, Instant)> = None;
    let mut last = u64::MAX;
    loop {
        match commands.try_recv() {
            Ok(Command::Connect { plan, role }) => {
                let connected = connect_local(&mut engine, &plan, role, spec.channels, |_, _| {});
                measured.get_or_insert_with(|| {
                    (procfs::cpu_seconds("self").unwrap_or(0.0), Instant::now())
                });
                say(&Reply::Ready(connected))?;
            }
            Ok(Command::Mark) => say(&Reply::Mark {
                latency: encode_histogram(&engine.take_latency()),
            })?,
            Ok(Command::Drops { plan }) => engine.start_drops(&plan),
            Ok(Command::Stop { stop }) => {
                stop.run_probe(&mut engine);
                let from = measured.unwrap_or((0.0, Instant::now()));
                let side = side_result(&engine, &stop.acked, from);
                engine.close_all();
                return say(&Reply::Result {
                    side: Box::new(side),
                });
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                engine.close_all();
                return Ok(());
            }
        }
        engine.hold(Duration::from_millis(20), |_| false);
        if engine.counters.distinct != last {
            last = engine.counters.distinct;
            say(&Reply::Progress { distinct: last })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_round_robin_and_complete() {
        let plan: Vec<u32> = (0..10).collect();
        let parts: Vec<Vec<u32>> = (0..3).map(|i| share(&plan, i, 3)).collect();
        assert_eq!(parts, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        assert_eq!(share(&plan, 0, 1), plan);
    }

    /// Commands and replies survive their JSON line unchanged (both ends are this binary).
    #[test]
    fn protocol_lines_round_trip() {
        let mut acked = SeqSet::default();
        acked.insert(3);
        let commands = [
            Command::Connect {
                plan: vec![0, 1],
                role: Role::Slow { rcvbuf: 8192 },
            },
            Command::Connect {
                plan: vec![],
                role: Role::Resume {
                    limit: 100,
                    max_reconnects: 5,
                },
            },
            Command::Mark,
            Command::Drops {
                plan: DropPlan {
                    drops: 3,
                    within: Duration::from_secs(10),
                    reconnect_delay: Duration::from_millis(200),
                    seed: 7,
                },
            },
            Command::Stop {
                stop: Stop {
                    probe: Stop::probe(Duration::from_secs(5), Duration::from_secs(1)),
                    acked: vec![acked, SeqSet::default()],
                },
            },
        ];
        for command in &commands {
            let line = serde_json::to_string(command).unwrap();
            assert!(!line.contains('\n'));
            let back: Command = serde_json::from_str(&line).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), line);
        }
        let line = serde_json::to_string(&Reply::Progress { distinct: 42 }).unwrap();
        assert_eq!(line, r#"{"t":"progress","distinct":42}"#);
        let ready = Reply::Ready(Connected {
            subscribed: 2,
            receivers: vec![1, 1],
            ..Connected::default()
        });
        let back: Reply = serde_json::from_str(&serde_json::to_string(&ready).unwrap()).unwrap();
        let Reply::Ready(c) = back else {
            panic!("not ready: {back:?}");
        };
        assert_eq!((c.subscribed, c.receivers), (2, vec![1, 1]));
    }
}

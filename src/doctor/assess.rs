//! From a [`Machine`] and a [`Config`] to an [`Assessment`]: how many connections one spout process holds here,
//! what that costs in memory, and, for a target, each setting that must change with the exact line to change it.
//!
//! Pure: no file is read here, so every rule is unit-tested on made-up machines. The measured figures behind the
//! estimates are the `Figure` consts below, each carrying its source; `loadtest/doctor.sh` re-measures them and
//! checks the estimate against a real run.

use crate::config::Config;
use crate::net;

use super::machine::{Machine, Systemd, UNIT};

/// A measured figure and where it comes from, printed beside every estimate that uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    pub value: u64,
    pub source: &'static str,
}

/// spout's user-space memory per idle subscriber, in bytes, its channel not counted.
pub const USER_BYTES_PER_CONNECTION: Figure = Figure {
    value: 422,
    source: "VmRSS growth of spout (2 workers) holding 19,000 idle SSE subscribers of one channel, divided by \
             19,000 (423 and 422 B in two runs); loadtest/doctor.sh on a 2-vCPU VM, Linux 6.18 x86_64, \
             2026-12-03 (docs/BENCHMARKS.md: 412 B PSS with 1 worker, loadtest/hostile.sh idle)",
};

/// spout's user-space memory per channel that has a subscriber, in bytes: its entries in the channel table
/// and in a worker's hub.
pub const USER_BYTES_PER_CHANNEL: Figure = Figure {
    value: 475,
    source: "VmRSS growth of spout (2 workers) holding 19,000 idle SSE subscribers each on its own channel \
             (859 B each), less the per-connection figure; loadtest/doctor.sh, same machine and day",
};

/// The kernel's memory per idle TCP connection, in bytes.
pub const KERNEL_BYTES_PER_CONNECTION: Figure = Figure {
    value: 4_400,
    source: "slab growth (/proc/slabinfo: TCP socket 2.5 KB, socket inode 0.9 KB, dentry, file, epoll item, LSM \
             blobs) while 19,000 idle loopback connections were opened, divided by both ends; loadtest/doctor.sh, \
             same run; socket buffers hold nothing while idle",
};

/// spout's VmRSS with no connection: a fixed part (binary, allocator, main thread) in bytes ...
pub const BASE_RSS: Figure = Figure {
    value: 4_000 * 1024,
    source: "VmRSS 0.7 s after start with 1, 2 and 4 workers (6.6, 9.3 and 14.5 MiB, medians of 3): 4.0 MiB + \
             2.7 MiB per worker, most of it the worker's inbox (65,536 slots of 40 bytes, all touched at start); \
             same machine and day",
};

/// ... and a part per worker (thread stack, read buffer, poll, connection slab), in bytes.
pub const BASE_RSS_PER_WORKER: Figure = Figure {
    value: 2_700 * 1024,
    source: BASE_RSS.source,
};

/// Events one core delivers per second in a large fan-out.
pub const DELIVERIES_PER_CORE: Figure = Figure {
    value: 2_000_000,
    source: "0.48 µs of server CPU per delivery, 10,000 SSE subscribers, one worker, 8 publisher connections \
             (docs/BENCHMARKS.md, capacity and the number of publishers, 2026-12-03); with one publisher \
             connection and 1,000 subscribers, 0.97 µs",
};

/// Memory of one spout process holding `connections` idle connections on `channels` channels (`None`: each on
/// its own channel, as with one channel per user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub connections: u64,
    /// spout's RSS: its base and the connections' user-space part.
    pub rss: u64,
    /// The kernel's memory for the connections' sockets.
    pub kernel: u64,
}

impl MemoryEstimate {
    pub fn new(connections: u64, channels: Option<u64>, workers: usize) -> MemoryEstimate {
        let base = BASE_RSS.value + BASE_RSS_PER_WORKER.value * workers as u64;
        let channels = channels.map_or(connections, |c| c.min(connections));
        MemoryEstimate {
            connections,
            rss: base
                .saturating_add(connections.saturating_mul(USER_BYTES_PER_CONNECTION.value))
                .saturating_add(channels.saturating_mul(USER_BYTES_PER_CHANNEL.value)),
            kernel: connections.saturating_mul(KERNEL_BYTES_PER_CONNECTION.value),
        }
    }

    pub fn total(&self) -> u64 {
        self.rss.saturating_add(self.kernel)
    }
}

/// The idle connections `available` bytes hold: spout's base, and the channels when their count is fixed,
/// taken off first.
fn connections_in(available: u64, channels: Option<u64>, workers: usize) -> u64 {
    let mut per = USER_BYTES_PER_CONNECTION.value + KERNEL_BYTES_PER_CONNECTION.value;
    let mut fixed = MemoryEstimate::new(0, None, workers).total();
    match channels {
        None => per += USER_BYTES_PER_CHANNEL.value,
        Some(c) => fixed = fixed.saturating_add(c.saturating_mul(USER_BYTES_PER_CHANNEL.value)),
    }
    available.saturating_sub(fixed) / per
}

/// What bounds the connections of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The hard `RLIMIT_NOFILE` this process has (spout raises its soft limit to it at start).
    Rlimit,
    /// `LimitNOFILE` of the installed unit.
    UnitLimitNofile,
    /// `--max-connections`.
    MaxConnections,
    /// The available memory, by the estimate.
    Memory,
}

impl Limit {
    pub fn as_str(&self) -> &'static str {
        match self {
            Limit::Rlimit => "hard RLIMIT_NOFILE",
            Limit::UnitLimitNofile => "LimitNOFILE of spout.service",
            Limit::MaxConnections => "--max-connections",
            Limit::Memory => "available memory",
        }
    }
}

/// One setting to change, with the lines that change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The setting's name as the lines spell it (`fs.nr_open`, `LimitNOFILE`).
    pub setting: &'static str,
    pub current: String,
    pub needed: String,
    /// Why, in one sentence.
    pub why: String,
    /// Exact lines to apply, each a shell command or a line for the file it names.
    pub lines: Vec<String>,
}

/// The check of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetCheck {
    pub connections: u64,
    pub memory: MemoryEstimate,
    /// Settings that must change for one process to hold the target; empty when it can.
    pub changes: Vec<Change>,
    /// Settings that should change for the target to run well (a reconnect storm, a broadcast to all, the load
    /// balancer's ports); they do not decide the exit code.
    pub advice: Vec<Change>,
}

/// Everything `spout doctor` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub workers: usize,
    pub listeners: usize,
    /// The channels the connections spread over; `None`: one each.
    pub channels: Option<u64>,
    /// The descriptor limit that will apply to spout, and where it comes from.
    pub fd_limit: u64,
    pub fd_limit_from: Limit,
    /// Descriptors spout keeps for itself ([`net::reserved_descriptors`]).
    pub reserved: u64,
    /// The most connections one process holds, and what bounds it.
    pub capacity: u64,
    pub limited_by: Limit,
    /// The memory of `capacity` idle connections.
    pub at_capacity: MemoryEstimate,
    pub deliveries_per_second: u64,
    pub target: Option<TargetCheck>,
}

/// The backlog spout asks for, as the sysctl value that lets the kernel grant it.
fn backlog() -> u64 {
    u64::try_from(net::BACKLOG).unwrap_or(0)
}

/// `sysctl -w` now, and the line for `/etc/sysctl.d/` that keeps it after a reboot.
fn sysctl_lines(key: &str, value: &str) -> Vec<String> {
    vec![
        format!("sysctl -w {key}='{value}'"),
        format!("echo '{key} = {value}' >> /etc/sysctl.d/60-spout.conf"),
    ]
}

/// Assesses `config` on `machine` for connections on `channels` channels (`None`: one each), and `target`
/// connections when given.
pub fn assess(
    machine: &Machine,
    config: &Config,
    channels: Option<u64>,
    target: Option<u64>,
) -> Assessment {
    let workers = config.workers.get();
    let listeners = config.listen.len();
    let reserved = net::reserved_descriptors(workers, listeners);
    let (fd_limit, fd_limit_from) = match machine.systemd {
        Systemd::Unit {
            nofile: Some((_, hard)),
        } => (hard, Limit::UnitLimitNofile),
        _ => (machine.nofile.1, Limit::Rlimit),
    };
    let by_descriptors = fd_limit.saturating_sub(reserved).max(1);
    let mut capacity = by_descriptors;
    let mut limited_by = fd_limit_from;
    if let Some(max) = config.max_connections {
        let max = max as u64;
        if max < capacity {
            capacity = max;
            limited_by = Limit::MaxConnections;
        }
    }
    if let Some(available) = machine.mem_available {
        let by_memory = connections_in(available, channels, workers);
        if by_memory < capacity {
            capacity = by_memory;
            limited_by = Limit::Memory;
        }
    }
    Assessment {
        workers,
        listeners,
        channels,
        fd_limit,
        fd_limit_from,
        reserved,
        capacity,
        limited_by,
        at_capacity: MemoryEstimate::new(capacity, channels, workers),
        deliveries_per_second: DELIVERIES_PER_CORE.value * workers.min(machine.cores) as u64,
        target: target.map(|n| check_target(machine, config, channels, n, reserved, fd_limit_from)),
    }
}

fn check_target(
    machine: &Machine,
    config: &Config,
    channels: Option<u64>,
    n: u64,
    reserved: u64,
    fd_from: Limit,
) -> TargetCheck {
    let workers = config.workers.get();
    let memory = MemoryEstimate::new(n, channels, workers);
    let fds = n.saturating_add(reserved);
    let mut changes = Vec::new();
    let mut advice = Vec::new();

    // fs.nr_open first: no hard limit can be set above it, so LimitNOFILE is refused until it is raised.
    if let Some(nr_open) = machine.nr_open.filter(|&v| v < fds) {
        changes.push(Change {
            setting: "fs.nr_open",
            current: nr_open.to_string(),
            needed: fds.to_string(),
            why: "no process's descriptor limit may exceed it".into(),
            lines: sysctl_lines("fs.nr_open", &fds.to_string()),
        });
    }
    let hard = match (fd_from, &machine.systemd) {
        (
            Limit::UnitLimitNofile,
            Systemd::Unit {
                nofile: Some((_, hard)),
            },
        ) => *hard,
        _ => machine.nofile.1,
    };
    if hard < fds {
        let (setting, why) = match fd_from {
            Limit::UnitLimitNofile => (
                "LimitNOFILE",
                format!("{UNIT} gives spout this many descriptors; it needs one per connection and {reserved} of its own"),
            ),
            _ => (
                "RLIMIT_NOFILE",
                format!("the hard descriptor limit here; spout needs one per connection and {reserved} of its own"),
            ),
        };
        changes.push(Change {
            setting,
            current: hard.to_string(),
            needed: fds.to_string(),
            why,
            lines: vec![
                format!("systemctl edit {UNIT}, then under [Service]: LimitNOFILE={fds}"),
                format!("or, started from a shell: ulimit -Hn {fds} (as root, before starting spout)"),
                format!("or, for a login of user spout: echo 'spout - nofile {fds}' > /etc/security/limits.d/spout.conf"),
            ],
        });
    }
    if let Some(file_max) = machine.file_max {
        let needed = machine.files_open.unwrap_or(0).saturating_add(fds);
        if file_max < needed {
            changes.push(Change {
                setting: "fs.file-max",
                current: file_max.to_string(),
                needed: needed.to_string(),
                why: "open files of all processes together: those open now plus spout's".into(),
                lines: sysctl_lines("fs.file-max", &needed.to_string()),
            });
        }
    }
    if let Some(max) = config.max_connections.filter(|&max| (max as u64) < n) {
        changes.push(Change {
            setting: "--max-connections",
            current: max.to_string(),
            needed: n.to_string(),
            why: "spout refuses connections above it".into(),
            lines: vec![format!(
                "--max-connections {n}, or SPOUT_MAX_CONNECTIONS={n} in /etc/default/spout"
            )],
        });
    }
    if let Some(available) = machine.mem_available.filter(|&a| a < memory.total()) {
        changes.push(Change {
            setting: "memory",
            current: format!("{} available", show_bytes(available)),
            needed: show_bytes(memory.total()),
            why: "estimated memory of the target's idle connections, spout's and the kernel's"
                .into(),
            lines: vec![format!(
                "add memory, or spread the connections over {} boxes like this one",
                n.div_ceil(connections_in(available, channels, workers).max(1))
            )],
        });
    }

    if let Some(somaxconn) = machine.somaxconn.filter(|&s| s < backlog() && s < n) {
        advice.push(Change {
            setting: "net.core.somaxconn",
            current: somaxconn.to_string(),
            needed: backlog().to_string(),
            why: format!(
                "spout asks for a backlog of {}; the kernel caps it here, and after a restart every client \
                 reconnects at once: connections beyond the backlog are dropped and retried seconds later",
                net::BACKLOG
            ),
            lines: sysctl_lines("net.core.somaxconn", &backlog().to_string()),
        });
    }
    if let Some([low, pressure, high]) = machine.tcp_mem.filter(|m| m[2] < n) {
        // Scale all three marks, keeping their ratios, so that the high mark is one page per connection.
        let scale = |v: u64| (u128::from(v) * u128::from(n)).div_ceil(u128::from(high.max(1)));
        let value = format!("{} {} {n}", scale(low), scale(pressure));
        advice.push(Change {
            setting: "net.ipv4.tcp_mem",
            current: format!("{low} {pressure} {high}"),
            needed: value.clone(),
            why: format!(
                "a socket with anything queued is charged at least a page ({} B) of TCP memory until the peer \
                 acknowledges it, so an event to every connection at once needs one page each; past the high \
                 mark the kernel refuses socket memory and subscribers fall behind",
                machine.page_size
            ),
            lines: sysctl_lines("net.ipv4.tcp_mem", &value),
        });
    }
    if let Some((first, last)) = machine.port_range {
        let ports = last.saturating_sub(first) + 1;
        let per_listener = n.div_ceil(config.listen.len() as u64);
        if per_listener > ports {
            advice.push(Change {
                setting: "net.ipv4.ip_local_port_range",
                current: format!("{first} {last}"),
                needed: "1024 65535".into(),
                why: format!(
                    "one client address opens at most {ports} connections to one listener: a load balancer (or \
                     a test harness) in front of spout needs {} source addresses for {per_listener} connections \
                     per listener with the range below, or spout more --listen addresses; set this on the \
                     connecting side",
                    per_listener.div_ceil(64_512)
                ),
                lines: sysctl_lines("net.ipv4.ip_local_port_range", "1024 65535"),
            });
        }
    }
    TargetCheck {
        connections: n,
        memory,
        changes,
        advice,
    }
}

/// Bytes as an operator reads them: `15.4 MiB`.
pub fn show_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    /// The machine the figures were measured on: hard fd limit 20,000, 24 GiB, 2 cores.
    fn this_vm() -> Machine {
        Machine {
            nofile: (20_000, 20_000),
            nr_open: Some(1_048_576),
            file_max: Some(2_466_107),
            files_open: Some(1_408),
            somaxconn: Some(4_096),
            port_range: Some((32_768, 60_999)),
            tcp_mem: Some([287_889, 383_855, 575_778]),
            tcp_rmem: Some([4_096, 131_072, 33_554_432]),
            tcp_wmem: Some([4_096, 16_384, 4_194_304]),
            mem_total: Some(24_683_568 * 1024),
            mem_available: Some(24_262_796 * 1024),
            cores: 2,
            page_size: 4096,
            systemd: Systemd::Absent,
        }
    }

    fn two_workers() -> Config {
        Config {
            workers: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            ..Config::default()
        }
    }

    fn settings(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(|c| c.setting).collect()
    }

    #[test]
    fn the_hard_fd_limit_bounds_one_process_here() {
        let a = assess(&this_vm(), &two_workers(), None, None);
        assert_eq!(a.reserved, 42);
        assert_eq!(a.capacity, 19_958);
        assert_eq!(a.limited_by, Limit::Rlimit);
        assert_eq!(a.deliveries_per_second, 4_000_000);
        // 4,000 + 2 × 2,700 KiB of base, 19,958 × (422 + 475) B in spout, 19,958 × 4,400 B in the kernel.
        assert_eq!(a.at_capacity.rss, 9_400 * 1024 + 19_958 * (422 + 475));
        assert_eq!(a.at_capacity.kernel, 19_958 * 4_400);
        assert!(a.target.is_none());
    }

    #[test]
    fn connections_on_one_channel_cost_less_than_on_a_channel_each() {
        let one = MemoryEstimate::new(19_000, Some(1), 2);
        let each = MemoryEstimate::new(19_000, None, 2);
        assert_eq!(one.rss, 9_400 * 1024 + 19_000 * 422 + 475);
        assert_eq!(each.rss - one.rss, 18_999 * 475);
        assert_eq!(one.kernel, each.kernel);
        // More channels than connections: each connection has its own, no more.
        assert_eq!(
            MemoryEstimate::new(10, Some(1_000), 2),
            MemoryEstimate::new(10, None, 2)
        );
        let small = Machine {
            nofile: (1 << 20, 1 << 20),
            mem_available: Some(1 << 30),
            ..this_vm()
        };
        let shared = assess(&small, &two_workers(), Some(1), None);
        let own = assess(&small, &two_workers(), None, None);
        assert!(shared.capacity > own.capacity);
        assert!(shared.at_capacity.total() <= 1 << 30 && own.at_capacity.total() <= 1 << 30);
    }

    #[test]
    fn a_target_within_the_limits_needs_no_change() {
        let a = assess(&this_vm(), &two_workers(), None, Some(19_000));
        let t = a.target.expect("target");
        assert!(t.changes.is_empty(), "{:?}", t.changes);
        assert_eq!(settings(&t.advice), ["net.core.somaxconn"]);
    }

    #[test]
    fn a_million_needs_the_fd_limit_raised_and_advises_the_rest() {
        let a = assess(&this_vm(), &two_workers(), None, Some(1_000_000));
        let t = a.target.expect("target");
        assert_eq!(settings(&t.changes), ["RLIMIT_NOFILE"]);
        assert_eq!(t.changes[0].needed, "1000042");
        assert!(t.changes[0].lines[0].contains("LimitNOFILE=1000042"));
        assert_eq!(
            settings(&t.advice),
            [
                "net.core.somaxconn",
                "net.ipv4.tcp_mem",
                "net.ipv4.ip_local_port_range"
            ]
        );
        // The high mark becomes one page per connection, the others keep their ratio to it.
        assert_eq!(t.advice[1].needed, "500000 666672 1000000");
        assert_eq!(
            t.advice[1].lines[0],
            "sysctl -w net.ipv4.tcp_mem='500000 666672 1000000'"
        );
    }

    #[test]
    fn nr_open_file_max_memory_and_max_connections_are_named_when_short() {
        let machine = Machine {
            nr_open: Some(100_000),
            file_max: Some(150_000),
            files_open: Some(60_000),
            mem_available: Some(512 << 20),
            ..this_vm()
        };
        let config = Config {
            max_connections: Some(50_000),
            ..two_workers()
        };
        let a = assess(&machine, &config, None, Some(120_000));
        assert_eq!(a.limited_by, Limit::Rlimit);
        let t = a.target.expect("target");
        assert_eq!(
            settings(&t.changes),
            [
                "fs.nr_open",
                "RLIMIT_NOFILE",
                "fs.file-max",
                "--max-connections",
                "memory"
            ]
        );
        assert_eq!(t.changes[2].needed, "180042");
        assert_eq!(
            t.changes[0].lines,
            [
                "sysctl -w fs.nr_open='120042'",
                "echo 'fs.nr_open = 120042' >> /etc/sysctl.d/60-spout.conf"
            ]
        );
    }

    #[test]
    fn the_installed_units_limit_wins_over_the_shells() {
        let machine = Machine {
            systemd: Systemd::Unit {
                nofile: Some((1_048_576, 1_048_576)),
            },
            ..this_vm()
        };
        let a = assess(&machine, &two_workers(), None, Some(1_000_000));
        assert_eq!(a.fd_limit, 1_048_576);
        assert_eq!(a.fd_limit_from, Limit::UnitLimitNofile);
        let t = a.target.expect("target");
        assert!(t.changes.is_empty(), "{:?}", t.changes);
    }

    #[test]
    fn memory_bounds_a_small_box() {
        let machine = Machine {
            nofile: (1_048_576, 1_048_576),
            mem_available: Some(1 << 30),
            ..this_vm()
        };
        let a = assess(&machine, &two_workers(), None, None);
        assert_eq!(a.limited_by, Limit::Memory);
        assert!(a.at_capacity.total() <= 1 << 30);
        assert!(a.capacity > 200_000, "{}", a.capacity);
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(show_bytes(512), "512 B");
        assert_eq!(show_bytes(15_432 * 1024), "15.1 MiB");
        assert_eq!(show_bytes(24_683_568 * 1024), "23.5 GiB");
    }
}

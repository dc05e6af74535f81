//! What the tool reads from `/proc`: a process's CPU time and memory (the server's via `--server-pid`, and the
//! tool's own), one CPU's busy time from `/proc/stat` (`--server-cpu`, for a pinned server: it includes softirq
//! work the kernel does on that core for the server's sockets), the kernel's TCP memory, and machine facts.
//!
//! What it must not do: fail a run. Every reader returns `Option`: a missing or unreadable file is reported as
//! "not measured", never as zero.

use serde::Serialize;
use std::fs;
use std::process::Command;

/// Clock ticks per second used by `/proc/*/stat` (`sysconf(_SC_CLK_TCK)`; 100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) of a process, from `/proc/{pid}/stat` (`self` for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name (state is field 3 → 1).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A process's memory: VmRSS from `status`, Pss from `smaps_rollup`, in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Memory {
    pub rss: Option<u64>,
    pub pss: Option<u64>,
}

pub fn memory(pid: &str) -> Memory {
    let kib = |file: &str, key: &str| -> Option<u64> {
        let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        let value: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
        Some(value * 1024)
    };
    Memory {
        rss: kib("status", "VmRSS:"),
        pss: kib("smaps_rollup", "Pss:"),
    }
}

/// Busy jiffies of one CPU from `/proc/stat` (busy = everything but idle and iowait).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub busy: u64,
}

pub fn cpu_times(cpu: usize) -> Option<CpuTimes> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest fields are already inside user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
    })
}

/// Seconds of busy time between two readings of one CPU.
pub fn busy_seconds(before: CpuTimes, after: CpuTimes) -> f64 {
    after.busy.saturating_sub(before.busy) as f64 / clock_ticks()
}

/// Memory the kernel holds for TCP socket buffers, machine-wide, in bytes (`/proc/net/sockstat`, "TCP: ... mem
/// N" in pages). Both ends of every loopback connection count here: the tool's sockets as well as the server's.
pub fn tcp_kernel_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(word) = it.next() {
        if word == "mem" {
            let pages: u64 = it.next()?.parse().ok()?;
            return Some(pages * 4096);
        }
    }
    None
}

/// Machine facts printed with each result.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs of the machine (not of this process's affinity mask: the tool usually runs pinned).
    pub nproc: usize,
    /// CPUs this process may run on.
    pub tool_cpus: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub mem_total_bytes: Option<u64>,
    pub git_commit: Option<String>,
    /// The work tree had uncommitted changes: the binaries may not match `git_commit`.
    pub git_dirty: Option<bool>,
    pub nofile_limit: Option<u64>,
}

pub fn machine() -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_total_bytes = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|k| k * 1024);
    let git_commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    let git_dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    Machine {
        nproc: read("/proc/cpuinfo")
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        tool_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model,
        mem_total_bytes,
        git_commit,
        git_dirty,
        nofile_limit: rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(cpu_seconds("self").is_some());
        let m = memory("self");
        assert!(m.rss.unwrap_or(0) > 0);
        assert!(cpu_times(0).is_some_and(|t| t.busy > 0));
    }
}

//! What `spout doctor` reads from the machine: the process's `RLIMIT_NOFILE`, the kernel settings under
//! `/proc/sys`, `/proc/meminfo`, the cores, and systemd's view of `spout.service`.
//!
//! Reading is one function ([`Machine::read`]); the parsing of each file's text is sans-io and tested here. A
//! value that cannot be read (another kernel, a container hiding `/proc/sys`) is `None` and the report says it
//! is unknown: doctor never guesses a kernel setting.

use std::path::Path;
use std::process::Command;

/// The unit `spout doctor` asks systemd about (the one `packaging/` installs).
pub const UNIT: &str = "spout.service";

/// The machine's settings as read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `RLIMIT_NOFILE` of this process: (soft, hard).
    pub nofile: (u64, u64),
    /// `fs.nr_open`: the ceiling of any process's hard `RLIMIT_NOFILE`.
    pub nr_open: Option<u64>,
    /// `fs.file-max`: open files of all processes together.
    pub file_max: Option<u64>,
    /// Files open on the machine now (first field of `fs.file-nr`).
    pub files_open: Option<u64>,
    /// `net.core.somaxconn`: the cap on any listen backlog.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.ip_local_port_range`: (first, last) ephemeral port.
    pub port_range: Option<(u64, u64)>,
    /// `net.ipv4.tcp_mem`: low, pressure, high, in pages.
    pub tcp_mem: Option<[u64; 3]>,
    /// `net.ipv4.tcp_rmem`: min, default, max, in bytes.
    pub tcp_rmem: Option<[u64; 3]>,
    /// `net.ipv4.tcp_wmem`: min, default, max, in bytes.
    pub tcp_wmem: Option<[u64; 3]>,
    /// `MemTotal` in bytes.
    pub mem_total: Option<u64>,
    /// `MemAvailable` in bytes.
    pub mem_available: Option<u64>,
    /// Cores this process may run on.
    pub cores: usize,
    /// The page size the kernel counts `tcp_mem` in, in bytes.
    pub page_size: u64,
    pub systemd: Systemd,
}

/// What systemd says about the limits a service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Systemd {
    /// systemd is not the init system here: the limits are those of the shell or supervisor that starts spout.
    Absent,
    /// This process runs as a systemd service (`INVOCATION_ID` is set): its `RLIMIT_NOFILE` is the unit's
    /// `LimitNOFILE`.
    ThisService,
    /// systemd runs the machine and [`UNIT`] is installed, with this `LimitNOFILE` (soft, hard); `None` when
    /// systemd reports it as infinity or not at all.
    Unit { nofile: Option<(u64, u64)> },
    /// systemd runs the machine, but [`UNIT`] is not installed.
    NoUnit,
}

impl Machine {
    /// Reads everything once. Never fails: what cannot be read is `None`.
    pub fn read() -> Machine {
        let sys = |path: &str| std::fs::read_to_string(Path::new("/proc/sys").join(path)).ok();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            nofile: rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0)),
            nr_open: sys("fs/nr_open").and_then(|s| parse_number(&s)),
            file_max: sys("fs/file-max").and_then(|s| parse_number(&s)),
            files_open: sys("fs/file-nr").and_then(|s| parse_number(&s)),
            somaxconn: sys("net/core/somaxconn").and_then(|s| parse_number(&s)),
            port_range: sys("net/ipv4/ip_local_port_range")
                .and_then(|s| parse_numbers::<2>(&s))
                .map(|[first, last]| (first, last)),
            tcp_mem: sys("net/ipv4/tcp_mem").and_then(|s| parse_numbers(&s)),
            tcp_rmem: sys("net/ipv4/tcp_rmem").and_then(|s| parse_numbers(&s)),
            tcp_wmem: sys("net/ipv4/tcp_wmem").and_then(|s| parse_numbers(&s)),
            mem_total: meminfo_bytes(&meminfo, "MemTotal"),
            mem_available: meminfo_bytes(&meminfo, "MemAvailable"),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // tcp_mem is counted in pages; every Linux spout builds for (x86_64, aarch64 with 4 KiB pages in
            // Debian's kernels) uses 4 KiB pages, and std offers no sysconf without unsafe code.
            page_size: 4096,
            systemd: read_systemd(),
        }
    }
}

/// systemd's view, from `INVOCATION_ID` and `systemctl show`.
fn read_systemd() -> Systemd {
    if std::env::var_os("INVOCATION_ID").is_some() {
        return Systemd::ThisService;
    }
    // sd_booted(3): systemd is the init system when this directory exists.
    if !Path::new("/run/systemd/system").is_dir() {
        return Systemd::Absent;
    }
    let output = Command::new("systemctl")
        .args([
            "show",
            UNIT,
            "--property=LoadState,LimitNOFILESoft,LimitNOFILE",
        ])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            parse_systemctl_show(&String::from_utf8_lossy(&out.stdout))
        }
        _ => Systemd::NoUnit,
    }
}

/// Parses `systemctl show --property=LoadState,LimitNOFILESoft,LimitNOFILE` output (`KEY=VALUE` lines).
pub fn parse_systemctl_show(text: &str) -> Systemd {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    if value("LoadState") != Some("loaded") {
        return Systemd::NoUnit;
    }
    let number = |key: &str| value(key).and_then(|v| v.parse::<u64>().ok());
    let nofile = match (number("LimitNOFILESoft"), number("LimitNOFILE")) {
        (Some(soft), Some(hard)) => Some((soft, hard)),
        _ => None,
    };
    Systemd::Unit { nofile }
}

/// The first whole number in a `/proc/sys` file (`4096\n`, or the first field of `fs.file-nr`).
pub fn parse_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Exactly `N` whitespace-separated whole numbers (`32768\t60999\n`).
pub fn parse_numbers<const N: usize>(text: &str) -> Option<[u64; N]> {
    let mut out = [0; N];
    let mut fields = text.split_whitespace();
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    fields.next().is_none().then_some(out)
}

/// A `/proc/meminfo` line's value in bytes (`MemTotal:       24683568 kB`).
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?;
    let mut fields = line.split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_proc_sys() {
        assert_eq!(parse_number("1048576\n"), Some(1_048_576));
        assert_eq!(parse_number("1408\t0\t2466107\n"), Some(1408));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("x\n"), None);
        assert_eq!(parse_numbers::<2>("32768\t60999\n"), Some([32768, 60999]));
        assert_eq!(
            parse_numbers::<3>("287889\t383855\t575778\n"),
            Some([287_889, 383_855, 575_778])
        );
        assert_eq!(parse_numbers::<3>("1 2\n"), None);
        assert_eq!(parse_numbers::<2>("1 2 3\n"), None);
        assert_eq!(parse_numbers::<2>("1 -2\n"), None);
    }

    #[test]
    fn meminfo_lines_in_bytes() {
        let text = "MemTotal:       24683568 kB\nMemFree:        23996324 kB\nMemAvailable:   24262796 kB\n\
                    HugePages_Total:       0\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), Some(24_683_568 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable"), Some(24_262_796 * 1024));
        assert_eq!(meminfo_bytes(text, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_bytes(text, "Mem"), None);
        assert_eq!(meminfo_bytes(text, "SwapTotal"), None);
    }

    #[test]
    fn systemctl_show_of_an_installed_unit_and_of_a_missing_one() {
        assert_eq!(
            parse_systemctl_show(
                "LoadState=loaded\nLimitNOFILESoft=1048576\nLimitNOFILE=1048576\n"
            ),
            Systemd::Unit {
                nofile: Some((1_048_576, 1_048_576))
            }
        );
        assert_eq!(
            parse_systemctl_show(
                "LimitNOFILE=infinity\nLimitNOFILESoft=infinity\nLoadState=loaded\n"
            ),
            Systemd::Unit { nofile: None }
        );
        assert_eq!(
            parse_systemctl_show("LoadState=not-found\nLimitNOFILESoft=1024\nLimitNOFILE=524288\n"),
            Systemd::NoUnit
        );
        assert_eq!(parse_systemctl_show(""), Systemd::NoUnit);
    }
}

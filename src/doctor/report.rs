//! `spout doctor`'s output: plain text for people, one JSON object for scripts. Both say the same things; neither
//! computes anything ([`super::assess`] does).

use std::fmt::Write;

use serde_json::{json, Value};

use super::assess::{
    show_bytes, Assessment, Change, Figure, Limit, BASE_RSS, DELIVERIES_PER_CORE,
    KERNEL_BYTES_PER_CONNECTION, USER_BYTES_PER_CHANNEL, USER_BYTES_PER_CONNECTION,
};
use super::machine::{Machine, Systemd, UNIT};
use crate::net;

/// A count with thousands separators: `19,958`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 worker`, `2 workers`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

fn or_unknown<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "unknown".to_owned(), show)
}

fn triple(v: [u64; 3]) -> String {
    format!("{} {} {}", v[0], v[1], v[2])
}

fn systemd_text(systemd: &Systemd) -> String {
    match systemd {
        Systemd::Absent => "not the init system here: the limits are those of whatever starts spout".into(),
        Systemd::ThisService => "this runs as a systemd service: its limits are its unit's LimitNOFILE".into(),
        Systemd::Unit {
            nofile: Some((soft, hard)),
        } => format!("{UNIT} is installed with LimitNOFILE={soft}:{hard}; spout gets that, not this shell's limit"),
        Systemd::Unit { nofile: None } => format!("{UNIT} is installed, with no finite LimitNOFILE"),
        Systemd::NoUnit => format!("runs this machine; {UNIT} is not installed"),
    }
}

fn write_changes(out: &mut String, changes: &[Change]) {
    for c in changes {
        let _ = writeln!(
            out,
            "  {}: {} now, {} needed: {}",
            c.setting, c.current, c.needed, c.why
        );
        for line in &c.lines {
            let _ = writeln!(out, "      {line}");
        }
    }
}

fn figure_line(out: &mut String, what: &str, figure: Figure) {
    let _ = writeln!(out, "  {what}: {}", figure.source);
}

/// The report for people.
pub fn text(m: &Machine, a: &Assessment) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "spout doctor: one spout process with {} on this machine\n",
        counted(a.workers as u64, "worker", "workers")
            + " and "
            + &counted(a.listeners as u64, "listener", "listeners")
    );
    let _ = writeln!(out, "File descriptors (one per connection)");
    let _ = writeln!(
        out,
        "  RLIMIT_NOFILE         soft {}, hard {} (spout raises its soft limit to the hard one)",
        m.nofile.0, m.nofile.1
    );
    let _ = writeln!(
        out,
        "  fs.nr_open            {} (no hard limit may exceed it)",
        or_unknown(m.nr_open, |v| v.to_string())
    );
    let _ = writeln!(
        out,
        "  fs.file-max           {} ({} open now, all processes)",
        or_unknown(m.file_max, |v| v.to_string()),
        or_unknown(m.files_open, |v| v.to_string())
    );
    let _ = writeln!(out, "  systemd               {}", systemd_text(&m.systemd));

    let _ = writeln!(out, "\nNetwork");
    let _ = writeln!(
        out,
        "  net.core.somaxconn    {} (spout asks for a backlog of {}; the kernel grants the smaller)",
        or_unknown(m.somaxconn, |v| v.to_string()),
        net::BACKLOG
    );
    let _ = writeln!(
        out,
        "  net.ipv4.ip_local_port_range {} (ports one client address has for connections to one listener)",
        or_unknown(m.port_range, |(a, b)| format!("{a} {b}: {}", grouped(b.saturating_sub(a) + 1)))
    );
    let _ = writeln!(
        out,
        "  net.ipv4.tcp_mem      {} pages ({} at the high mark, all TCP sockets)",
        or_unknown(m.tcp_mem, triple),
        or_unknown(m.tcp_mem, |v| show_bytes(v[2].saturating_mul(m.page_size)))
    );
    let _ = writeln!(
        out,
        "  net.ipv4.tcp_rmem     {} bytes",
        or_unknown(m.tcp_rmem, triple)
    );
    let _ = writeln!(
        out,
        "  net.ipv4.tcp_wmem     {} bytes",
        or_unknown(m.tcp_wmem, triple)
    );

    let _ = writeln!(out, "\nMemory and CPU");
    let _ = writeln!(
        out,
        "  memory                {} total, {} available",
        or_unknown(m.mem_total, show_bytes),
        or_unknown(m.mem_available, show_bytes)
    );
    let _ = writeln!(
        out,
        "  cores                 {} ({} workers)",
        m.cores, a.workers
    );
    let _ = writeln!(
        out,
        "  per idle connection   {} B in spout + {} B in the kernel, and {} B in spout per channel ({})",
        USER_BYTES_PER_CONNECTION.value,
        KERNEL_BYTES_PER_CONNECTION.value,
        USER_BYTES_PER_CHANNEL.value,
        a.channels.map_or_else(
            || "one per connection; --channels N for fewer".to_owned(),
            |c| counted(c, "channel", "channels")
        )
    );
    let _ = writeln!(
        out,
        "  deliveries            about {} events/s to subscribers with {} busy cores ({} per core)",
        grouped(a.deliveries_per_second),
        a.workers.min(m.cores),
        grouped(DELIVERIES_PER_CORE.value)
    );

    let descriptors = format!(
        "{}, less {} descriptors spout keeps for its listeners, polls and itself",
        grouped(a.fd_limit),
        a.reserved
    );
    let _ = match a.limited_by {
        Limit::Rlimit | Limit::UnitLimitNofile => writeln!(
            out,
            "\nOne process holds at most {} connections here, limited by the {} ({descriptors}).",
            grouped(a.capacity),
            a.limited_by.as_str(),
        ),
        Limit::MaxConnections | Limit::Memory => writeln!(
            out,
            "\nOne process holds at most {} connections here, limited by {}; the {} allows more ({descriptors}).",
            grouped(a.capacity),
            a.limited_by.as_str(),
            a.fd_limit_from.as_str(),
        ),
    };
    let _ = writeln!(
        out,
        "At that many idle connections: spout's RSS about {}, the kernel's socket memory about {}.",
        show_bytes(a.at_capacity.rss),
        show_bytes(a.at_capacity.kernel)
    );
    if let Some(t) = &a.target {
        let _ = writeln!(
            out,
            "\nTarget: {} connections (spout's RSS about {}, the kernel's socket memory about {})",
            grouped(t.connections),
            show_bytes(t.memory.rss),
            show_bytes(t.memory.kernel)
        );
        if t.changes.is_empty() {
            let _ = writeln!(out, "  This machine holds it.");
        } else {
            let _ = writeln!(
                out,
                "  This machine does not hold it. Raise, in this order:"
            );
            write_changes(&mut out, &t.changes);
        }
        if !t.advice.is_empty() {
            let _ = writeln!(out, "  Also advised for a target this size:");
            write_changes(&mut out, &t.advice);
        }
    }
    let _ = writeln!(out, "\nWhere the figures come from");
    figure_line(&mut out, "spout per connection", USER_BYTES_PER_CONNECTION);
    figure_line(&mut out, "spout per channel", USER_BYTES_PER_CHANNEL);
    figure_line(
        &mut out,
        "kernel per connection",
        KERNEL_BYTES_PER_CONNECTION,
    );
    figure_line(&mut out, "spout with no connection", BASE_RSS);
    figure_line(&mut out, "deliveries per core", DELIVERIES_PER_CORE);
    out.truncate(out.trim_end().len());
    out
}

fn change_json(c: &Change) -> Value {
    json!({
        "setting": c.setting,
        "current": c.current,
        "needed": c.needed,
        "why": c.why,
        "lines": c.lines,
    })
}

fn figure_json(f: Figure) -> Value {
    json!({ "value": f.value, "source": f.source })
}

/// The report for scripts: one object, byte counts as numbers.
pub fn json(m: &Machine, a: &Assessment) -> Value {
    let systemd = match &m.systemd {
        Systemd::Absent => json!({ "state": "absent" }),
        Systemd::ThisService => json!({ "state": "this-service" }),
        Systemd::Unit { nofile } => json!({
            "state": "unit",
            "unit": UNIT,
            "limit_nofile": nofile.map(|(soft, hard)| json!({ "soft": soft, "hard": hard })),
        }),
        Systemd::NoUnit => json!({ "state": "no-unit", "unit": UNIT }),
    };
    let target = a.target.as_ref().map(|t| {
        json!({
            "connections": t.connections,
            "holds": t.changes.is_empty(),
            "memory": { "spout_rss_bytes": t.memory.rss, "kernel_bytes": t.memory.kernel },
            "changes": t.changes.iter().map(change_json).collect::<Vec<_>>(),
            "advice": t.advice.iter().map(change_json).collect::<Vec<_>>(),
        })
    });
    json!({
        "machine": {
            "rlimit_nofile": { "soft": m.nofile.0, "hard": m.nofile.1 },
            "fs_nr_open": m.nr_open,
            "fs_file_max": m.file_max,
            "files_open": m.files_open,
            "systemd": systemd,
            "somaxconn": m.somaxconn,
            "backlog": net::BACKLOG,
            "ip_local_port_range": m.port_range.map(|(a, b)| [a, b]),
            "tcp_mem_pages": m.tcp_mem,
            "tcp_rmem": m.tcp_rmem,
            "tcp_wmem": m.tcp_wmem,
            "page_size": m.page_size,
            "mem_total_bytes": m.mem_total,
            "mem_available_bytes": m.mem_available,
            "cores": m.cores,
        },
        "workers": a.workers,
        "listeners": a.listeners,
        "channels": a.channels,
        "fd_limit": a.fd_limit,
        "fd_limit_from": a.fd_limit_from.as_str(),
        "reserved_descriptors": a.reserved,
        "capacity": {
            "connections": a.capacity,
            "limited_by": a.limited_by.as_str(),
            "spout_rss_bytes": a.at_capacity.rss,
            "kernel_bytes": a.at_capacity.kernel,
        },
        "deliveries_per_second": a.deliveries_per_second,
        "figures": {
            "user_bytes_per_connection": figure_json(USER_BYTES_PER_CONNECTION),
            "user_bytes_per_channel": figure_json(USER_BYTES_PER_CHANNEL),
            "kernel_bytes_per_connection": figure_json(KERNEL_BYTES_PER_CONNECTION),
            "base_rss_bytes": figure_json(BASE_RSS),
            "base_rss_bytes_per_worker": figure_json(super::assess::BASE_RSS_PER_WORKER),
            "deliveries_per_core": figure_json(DELIVERIES_PER_CORE),
        },
        "target": target,
    })
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn counts_with_separators() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (19_958, "19,958"),
            (1_000_042, "1,000,042"),
        ] {
            assert_eq!(grouped(n), text);
        }
    }
}

//! `packaging/`: the systemd unit passes `systemd-analyze verify` and keeps its hardening (`systemd-analyze
//! security` rates its exposure), stops within its timeout, and the settings it reads are ones spout starts
//! with, and spout makes no system call the unit's filter refuses (traced with strace). The Debian package itself is built, inspected, installed and run by `scripts/package` (a release
//! build and root are more than a test should need).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{announced_addr, get, publish, require_program, signal, sse_subscribe, ws_connect};
use spout::config::{parse_duration, DEFAULT_DRAIN_TIMEOUT};

fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(packaging(file))
        .unwrap_or_else(|e| panic!("read packaging/{file}: {e}"))
}

/// The unit's `KEY=VALUE` settings, in order (a key may repeat), without comments and section headers.
fn unit_settings() -> Vec<(String, String)> {
    read("spout.service")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn unit_value(key: &str) -> Option<String> {
    unit_settings()
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The variables `packaging/default/spout` sets (uncommented `KEY=VALUE` lines).
fn default_file_variables() -> Vec<(String, String)> {
    read("default/spout")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !require_program("systemd-analyze") {
        return;
    }
    // verify also checks that ExecStart's program exists: point it at the binary under test, as installed it
    // is /usr/bin/spout (scripts/package verifies the installed unit as it is).
    let unit = read("spout.service");
    assert!(unit.contains("\nExecStart=/usr/bin/spout\n"), "{unit}");
    let dir = std::env::temp_dir().join(format!("spout-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("spout.service");
    std::fs::write(
        &path,
        unit.replace(
            "\nExecStart=/usr/bin/spout\n",
            &format!("\nExecStart={}\n", env!("CARGO_BIN_EXE_spout")),
        ),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are warnings with exit status 0: any output is a finding.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_unit_is_rated_ok_by_systemd_analyze_security() {
    if !require_program("systemd-analyze") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(packaging("spout.service"))
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for spout.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // 0 is fully locked down, 10 unprotected; systemd calls below 2.0 "OK". This unit: 1.4.
    assert!(level < 2.0, "exposure {level}:\n{text}");
}

#[test]
fn the_unit_has_the_limits_restart_and_hardening_a_push_server_needs() {
    for (key, value) in [
        ("Type", "exec"),
        ("ExecStart", "/usr/bin/spout"),
        ("EnvironmentFile", "-/etc/default/spout"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(unit_value(key).as_deref(), Some(value), "{key}");
    }
    let nofile: u64 = unit_value("LimitNOFILE")
        .and_then(|v| v.parse().ok())
        .expect("LimitNOFILE is a number");
    assert!(nofile >= 1_000_000, "LimitNOFILE={nofile}");
    // Linux's default fs.nr_open: a higher LimitNOFILE would fail to apply on a stock kernel.
    assert!(nofile <= 1_048_576, "LimitNOFILE={nofile}");

    // systemd kills spout when TimeoutStopSec passes: it must outlast the drain, by default and as configured.
    let stop =
        parse_duration(&unit_value("TimeoutStopSec").expect("TimeoutStopSec")).expect("a duration");
    let drain = read("spout.toml")
        .lines()
        .find_map(|l| l.strip_prefix("drain-timeout = "))
        .map_or(DEFAULT_DRAIN_TIMEOUT, |v| {
            parse_duration(v.trim_matches('"')).expect("a duration")
        });
    assert!(
        stop > drain + Duration::from_secs(5),
        "TimeoutStopSec {stop:?} must outlast --drain-timeout {drain:?}"
    );
}

/// spout started as the unit starts it, with `/etc/default/spout`'s variables and the `/etc/spout/spout.toml` they
/// name (here from `packaging/`; only the address replaced by a free loopback port, as a flag, which wins over the
/// file): it starts and answers.
#[test]
fn spout_starts_with_the_packaged_settings() {
    let mut variables = default_file_variables();
    assert!(
        variables.iter().all(|(k, _)| k.starts_with("SPOUT_")),
        "{variables:?}"
    );
    for (key, value) in &mut variables {
        if key == "SPOUT_CONFIG" {
            assert_eq!(value, "/etc/spout/spout.toml");
            *value = packaging("spout.toml").display().to_string();
        }
    }
    assert!(read("spout.toml").contains("\nlisten = [\"127.0.0.1:8080\"]\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(["--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(variables)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spout");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let addr = announced_addr(&line);
    let status = addr.map(|addr| get(addr, "/healthz").status);
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        status,
        Some(200),
        "first line {line:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The system calls a `systemd-analyze syscall-filter` set holds, its nested sets expanded.
fn syscall_set(name: &str) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", name])
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut calls = BTreeSet::new();
    for line in text.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            calls.extend(syscall_set(line));
        } else {
            calls.insert(line.to_owned());
        }
    }
    assert!(!calls.is_empty(), "{name} holds no system call: {text}");
    calls
}

/// What the unit's `SystemCallFilter=` lines allow: the sets of the first line, less those of `~` lines.
fn unit_allowed_syscalls() -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for (key, value) in unit_settings() {
        if key != "SystemCallFilter" {
            continue;
        }
        match value.strip_prefix('~') {
            Some(denied) => {
                for set in denied.split_whitespace() {
                    for call in syscall_set(set) {
                        allowed.remove(&call);
                    }
                }
            }
            None => {
                for set in value.split_whitespace() {
                    allowed.extend(syscall_set(set));
                }
            }
        }
    }
    allowed
}

/// spout under strace through start, SSE and WebSocket subscribes, publishes, metrics and a drained SIGTERM:
/// every system call it makes is one `SystemCallFilter=` allows, so the unit's filter never answers EPERM.
#[test]
fn spout_makes_only_system_calls_the_unit_allows() {
    if !require_program("systemd-analyze") || !require_program("strace") {
        return;
    }
    let allowed = unit_allowed_syscalls();
    let summary = std::env::temp_dir().join(format!("spout-strace-{}.txt", std::process::id()));
    let mut tracer = Command::new("strace")
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&summary)
        .arg(env!("CARGO_BIN_EXE_spout"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--drain-timeout",
            "1s",
        ])
        .env("SPOUT_LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run strace");
    let mut stdout = BufReader::new(tracer.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let addr = announced_addr(&line).unwrap_or_else(|| panic!("no address: {line:?}"));

    let mut sse = sse_subscribe(addr, "/sub/traced", "");
    let (mut ws, _) = ws_connect(addr, "/sub/traced", "");
    assert_eq!(publish(addr, "traced", "hello").status, 200);
    assert_eq!(sse.next_event().expect("event").data, "hello");
    assert_eq!(ws.next_json()["data"], "hello");
    assert_eq!(get(addr, "/metrics").status, 200);

    // strace's child is spout: SIGTERM it, so that it drains and exits and strace writes its summary.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", tracer.id()))
        .expect("strace's children");
    let spout: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("spout's pid");
    signal(spout, "TERM");
    let status = tracer.wait().expect("wait for strace");
    let text = std::fs::read_to_string(&summary).expect("strace summary");
    let _ = std::fs::remove_file(&summary);
    assert!(status.success(), "spout under strace: {status:?}\n{text}");
    // `strace -c`: a table whose rows end with the system call's name, between dashed lines, then a total.
    let used: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('%') && !l.starts_with('-') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| *name != "total")
        .map(str::to_owned)
        .collect();
    assert!(
        used.contains("epoll_wait") || used.contains("epoll_pwait"),
        "{text}"
    );
    let refused: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter refuses {refused:?} that spout calls:\n{text}"
    );
}

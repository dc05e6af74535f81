//! `spout doctor` against the real binary on this machine: the connection ceiling it derives from the hard
//! descriptor limit (20,000 here, so about 19,900), a target it cannot reach (exit 1, the lines to change), bad
//! arguments (exit 2), and its memory estimate against a real server holding idle subscribers.
//!
//! The full-size check (19,000 idle subscribers, the per-connection figures re-measured) is
//! `loadtest/doctor.sh`; here a smaller count keeps the test quick.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{rss_kib, sse_subscribe, start_server, wait_for};

/// The descriptor limit the doctor runs under: 20,000 (this machine's hard limit, the figure the sizing text is
/// checked on) unless the test process has less.
fn doctor_fd_limit() -> u64 {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    hard.min(20_000)
}

/// Runs `spout doctor ARGS` with the descriptor limit of [`doctor_fd_limit`] (set by the shell's `ulimit -n`,
/// soft and hard) and no `SPOUT_*` variable.
fn doctor(args: &[&str]) -> Output {
    let limit = doctor_fd_limit().to_string();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n "$0" && exec "$@""#)
        .arg(&limit)
        .arg(env!("CARGO_BIN_EXE_spout"))
        .arg("doctor")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    cmd.output().expect("run spout doctor")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn names_the_descriptor_limit_and_the_connections_it_allows() {
    let out = doctor(&["--workers", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let limit = doctor_fd_limit();
    // 2 workers, 1 listener: 32 + 2 × (4 + 1) descriptors kept back.
    let capacity = limit - 42;
    if limit == 20_000 {
        assert!(
            text.contains("One process holds at most 19,958 connections here, limited by the hard RLIMIT_NOFILE (20,000"),
            "{text}"
        );
    }
    let report = json(&doctor(&["--workers", "2", "--json"]));
    assert_eq!(report["capacity"]["connections"], capacity);
    assert_eq!(report["capacity"]["limited_by"], "hard RLIMIT_NOFILE");
    assert_eq!(report["machine"]["rlimit_nofile"]["hard"], limit);
    assert!(report["target"].is_null());
    for figure in [
        "user_bytes_per_connection",
        "kernel_bytes_per_connection",
        "deliveries_per_core",
    ] {
        let source = report["figures"][figure]["source"]
            .as_str()
            .unwrap_or_default();
        assert!(source.len() > 40, "{figure} states its source: {source:?}");
        assert!(
            text.contains(source),
            "the text report gives {figure}'s source"
        );
    }
    // Every kernel setting the report names is read from this machine.
    for key in [
        "fs_nr_open",
        "fs_file_max",
        "somaxconn",
        "ip_local_port_range",
        "tcp_mem_pages",
        "mem_available_bytes",
    ] {
        assert!(!report["machine"][key].is_null(), "{key} read: {report}");
    }
}

#[test]
fn a_million_connections_exits_1_and_lists_what_to_raise() {
    let out = doctor(&["--workers", "2", "--target-connections", "1000000"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("This machine does not hold it. Raise, in this order:"),
        "{text}"
    );
    assert!(
        text.contains("RLIMIT_NOFILE: 20000 now, 1000042 needed") || doctor_fd_limit() != 20_000,
        "{text}"
    );
    assert!(text.contains("LimitNOFILE=1000042"), "{text}");
    assert!(text.contains("ulimit -Hn 1000042"), "{text}");

    let report = json(&doctor(&[
        "--workers",
        "2",
        "--target-connections",
        "1000000",
        "--json",
    ]));
    let target = &report["target"];
    assert_eq!(target["holds"], false);
    assert_eq!(target["connections"], 1_000_000);
    let changes = target["changes"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["setting"] == "RLIMIT_NOFILE" && c["needed"] == "1000042"),
        "{changes:?}"
    );
    for change in changes
        .iter()
        .chain(target["advice"].as_array().expect("advice"))
    {
        assert!(
            !change["lines"].as_array().expect("lines").is_empty(),
            "{change}"
        );
    }
}

#[test]
fn a_target_within_the_limit_exits_0() {
    let out = doctor(&["--workers", "2", "--target-connections", "1000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("This machine holds it."));
}

#[test]
fn bad_arguments_exit_2_and_say_why() {
    for (args, says) in [
        (
            &["--target-connections", "many"][..],
            "invalid --target-connections: expected a whole number, got 'many'",
        ),
        (
            &["--target-connections", "-5"][..],
            "invalid --target-connections: expected a whole number, got '-5'",
        ),
        (
            &["--target-connections", "0"][..],
            "invalid --target-connections: expected at least 1",
        ),
        (
            &["--channels", "x"][..],
            "invalid --channels: expected a whole number, got 'x'",
        ),
        (&["--workers", "0"][..], "invalid --workers (SPOUT_WORKERS)"),
        (
            &["--no-such-flag"][..],
            "unexpected argument '--no-such-flag'",
        ),
    ] {
        let out = doctor(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} prints no report");
    }
}

#[test]
fn help_describes_the_doctor() {
    let out = doctor(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for needle in [
        "--target-connections <N>",
        "--json",
        "--workers <N>",
        "exit 0",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// The estimate against a real server: the growth of spout's RSS while it takes idle SSE subscribers, each on its
/// own channel, is within 25% of what `doctor` predicts for them. The growth, not the total: tests run a debug
/// build, whose code and start-up footprint are larger than those of the release build the base figure was
/// measured on, while its per-connection allocations are the same (this check gives 0.98× either way).
#[test]
fn the_memory_estimate_matches_a_server_holding_idle_subscribers() {
    const N: u64 = 5_000;
    let _ = rlimit::increase_nofile_limit(N + 200);
    let server = start_server(&["--workers", "2"]);
    // One subscriber first, so that what every connection shares (the first allocations of the channel table
    // and of a worker's slab) is in the baseline.
    let mut streams = vec![sse_subscribe(server.addr, "/sub/idle0", "")];
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(server.child.id()) * 1024;
    for i in 1..N {
        streams.push(sse_subscribe(server.addr, &format!("/sub/idle{i}"), ""));
    }
    wait_for("every subscriber counted", || {
        common::metric(server.addr, "spout_subscribers") >= N
    });
    std::thread::sleep(Duration::from_millis(200));
    let grown = (rss_kib(server.child.id()) * 1024).saturating_sub(before);

    let estimate = |n: u64| {
        let report = json(&doctor(&[
            "--workers",
            "2",
            "--json",
            "--target-connections",
            &n.to_string(),
        ]));
        report["target"]["memory"]["spout_rss_bytes"]
            .as_u64()
            .expect("estimate")
    };
    let predicted = estimate(N) - estimate(1);
    let ratio = grown as f64 / predicted as f64;
    assert!(
        (0.75..=1.25).contains(&ratio),
        "{} idle subscribers: spout's RSS grew {grown} B, doctor predicts {predicted} B ({ratio:.2}×)",
        N - 1
    );
    drop(streams);
}

#[test]
fn max_connections_below_the_descriptor_limit_is_named_as_the_bound() {
    let out = doctor(&[
        "--workers",
        "2",
        "--max-connections",
        "500",
        "--target-connections",
        "600",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("One process holds at most 500 connections here, limited by --max-connections; the hard RLIMIT_NOFILE allows more"),
        "{text}"
    );
    assert!(
        text.contains(
            "  --max-connections: 500 now, 600 needed: spout refuses connections above it"
        ),
        "{text}"
    );
}

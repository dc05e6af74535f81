//! `--config FILE` against the real binary: the file's keys and units are the flags', its values take effect,
//! flags and `SPOUT_*` variables win over it, and a bad file stops spout at start naming the file, the line and
//! the key (exit 2).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{announced_addr, get, publish, start_failure, start_server_env};

/// A file in a fresh temporary directory, removed with it on drop.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!(
            "spout-config-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        TempFile { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A body of `n` bytes.
fn body(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn the_files_listeners_and_limits_take_effect() {
    let file = TempFile::new(
        "spout.toml",
        "# two listeners, larger bodies\n\
         listen = [\"127.0.0.1:0\", \"127.0.0.1:0=pipely\"]\n\
         workers = 1\n\
         max-body = \"2KiB\"\n\
         max-queued-bytes = \"1MiB\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(["--config", file.path()])
        .env("SPOUT_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start spout");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut announced = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        announced.push(line.trim().to_owned());
    }
    let addr: SocketAddr = announced_addr(&announced[0]).unwrap_or_else(|| panic!("{announced:?}"));
    assert!(announced[0].ends_with("(native)"), "{announced:?}");
    assert!(announced[1].ends_with("(pipely)"), "{announced:?}");
    assert_eq!(publish(addr, "c", &body(2000)).status, 200);
    assert_eq!(publish(addr, "c", &body(2100)).status, 413);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn flags_win_over_variables_and_variables_over_the_file() {
    let file = TempFile::new(
        "spout.toml",
        "max-body = \"1KiB\"\nmax-queued-bytes = \"1MiB\"\n",
    );
    let config = file.path();

    let from_file = start_server_env(&["--config", config], &[]);
    assert_eq!(publish(from_file.addr, "c", &body(1500)).status, 413);

    let from_env = start_server_env(&["--config", config], &[("SPOUT_MAX_BODY", "2KiB")]);
    assert_eq!(publish(from_env.addr, "c", &body(1500)).status, 200);

    let from_flag = start_server_env(
        &["--config", config, "--max-body", "1KiB"],
        &[("SPOUT_MAX_BODY", "2KiB")],
    );
    assert_eq!(publish(from_flag.addr, "c", &body(1500)).status, 413);

    // The file named by the variable, as spout.service does through /etc/default/spout.
    let by_env = start_server_env(&[], &[("SPOUT_CONFIG", config)]);
    assert_eq!(publish(by_env.addr, "c", &body(1500)).status, 413);
    assert_eq!(get(by_env.addr, "/healthz").status, 200);
}

#[test]
fn a_bad_file_stops_spout_naming_file_line_and_key() {
    for (name, text, says) in [
        (
            "unknown.toml",
            "workers = 1\n\nmax-bodyy = \"1MiB\"\n",
            "invalid max-bodyy in {path} line 3: unknown key; the keys are the options of spout --help: listen, workers,",
        ),
        (
            "value.toml",
            "# limits\nheartbeat = \"15 seconds\"\n",
            "invalid heartbeat in {path} line 2: '15 seconds' has an unknown unit ' seconds'; use ms, s, m, h or d",
        ),
        (
            "type.toml",
            "max-body = 1.5\n",
            "invalid max-body in {path} line 1: expected a string, a whole number or a boolean, got float",
        ),
        (
            "syntax.toml",
            "workers = 1\nlisten = [\"127.0.0.1:0\"\n",
            "invalid {path} line 2: not valid TOML: ",
        ),
        (
            "nested.toml",
            "config = \"/etc/other.toml\"\n",
            "invalid config in {path} line 1: unknown key;",
        ),
    ] {
        let file = TempFile::new(name, text);
        let (code, stderr) = start_failure(&["--config", file.path()], &[]);
        let says = says.replace("{path}", file.path());
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.starts_with(&format!("spout: {says}")), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
    }
    let (code, stderr) = start_failure(&["--config", "/nonexistent/spout.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with(
            "spout: invalid --config (SPOUT_CONFIG): cannot read /nonexistent/spout.toml: "
        ),
        "{stderr}"
    );
}

#[test]
fn doctor_reads_the_same_file() {
    let file = TempFile::new("spout.toml", "workers = 1\nmax-connections = 500\n");
    let out = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(["doctor", "--json", "--config", file.path()])
        .output()
        .expect("run spout doctor");
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["workers"], 1);
    assert_eq!(report["capacity"]["connections"], 500);
    assert_eq!(report["capacity"]["limited_by"], "--max-connections");
}

/// Runs `spout ARGS` with `env` and no other `SPOUT_*` variable; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run spout");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8"),
        String::from_utf8(out.stderr).expect("UTF-8"),
    )
}

#[test]
fn print_config_prints_a_file_that_gives_the_same_configuration() {
    let (code, printed, stderr) = run(
        &[
            "--print-config",
            "--listen",
            "127.0.0.1:9000,[::1]:9001=keker",
            "--workers",
            "3",
            "--history-ttl",
            "90m",
            "--max-body",
            "2000",
            "--max-queued-bytes",
            "4MiB",
            "--drain-timeout",
            "0s",
            "--max-connections",
            "5000",
            "--cors-origin",
            "https://a.example,https://b.example:8443",
            "--log-level",
            "debug",
        ],
        &[("SPOUT_HEARTBEAT", "20s")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "listen = [\"127.0.0.1:9000=native\", \"[::1]:9001=keker\"]\n",
        "workers = 3\n",
        "history-ttl = \"90m\"\n",
        "heartbeat = \"20s\"\n",
        "max-body = 2000\n",
        "max-queued-bytes = \"4MiB\"\n",
        "drain-timeout = \"0ms\"\n",
        "max-connections = 5000\n",
        "cors-origin = \"https://a.example,https://b.example:8443\"\n",
        "log-level = \"debug\"\n",
        "# publish-key: none\n",
    ] {
        assert!(printed.contains(line), "{line}: {printed}");
    }
    // Every option of --help is in it, as a key or as a comment saying why it has no value.
    let (_, help, _) = run(&["--help"], &[]);
    for flag in help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
    {
        let name = flag.split_whitespace().next().unwrap_or_default();
        if ["config", "print-config"].contains(&name) {
            continue;
        }
        assert!(
            printed.contains(&format!("\n{name} = ")) || printed.contains(&format!("\n# {name}: ")),
            "--{name} missing from --print-config:\n{printed}"
        );
    }
    let file = TempFile::new("printed.toml", &printed);
    let (code, again, stderr) = run(&["--config", file.path(), "--print-config"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(again, printed);
}

#[test]
fn print_config_shows_the_files_values_under_flags_and_variables() {
    let file = TempFile::new("spout.toml", "workers = 1\nhistory = 10\nretry = \"5s\"\n");
    let (code, printed, stderr) = run(
        &["--config", file.path(), "--print-config", "--history", "20"],
        &[("SPOUT_RETRY", "7s")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(printed.contains("\nworkers = 1\n"), "{printed}");
    assert!(printed.contains("\nhistory = 20\n"), "{printed}");
    assert!(printed.contains("\nretry = \"7s\"\n"), "{printed}");
    assert!(printed.contains("\n# publish-key: none\n"), "{printed}");
    let (code, printed, _) = run(
        &["--print-config", "--publish-key", "a-long-secret-key-123"],
        &[],
    );
    assert_eq!(code, Some(0));
    assert!(!printed.contains("a-long-secret-key-123"), "{printed}");
    assert!(
        printed.contains("\n# publish-key: set, not printed\n"),
        "{printed}"
    );
}

#[test]
fn the_auth_hook_options_come_from_the_file_and_print_back_the_same() {
    let text = "auth = \"hook\"\nauth-hook = \"http://127.0.0.1:3000/spout-auth\"\n\
                auth-hook-headers = [\"X-Tenant\", \"X-Request-Id\"]\nauth-hook-timeout = \"500ms\"\n\
                auth-hook-max-pending = 100\nauth-hook-cache = \"30s\"\n";
    let file = TempFile::new("hook.toml", text);
    let (code, printed, stderr) = run(&["--config", file.path(), "--print-config"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "\nauth = \"hook\"\n",
        "\nauth-hook = \"http://127.0.0.1:3000/spout-auth\"\n",
        "\nauth-hook-headers = [\"x-tenant\", \"x-request-id\"]\n",
        "\nauth-hook-timeout = \"500ms\"\n",
        "\nauth-hook-max-pending = 100\n",
        "\nauth-hook-cache = \"30s\"\n",
    ] {
        assert!(printed.contains(line), "{line}: {printed}");
    }
    let again = TempFile::new("hook-printed.toml", &printed);
    let (code, reprinted, stderr) = run(&["--config", again.path(), "--print-config"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(reprinted, printed);
    // A hook URL the file gives without --auth hook is refused, naming the file's line.
    let stray = TempFile::new("stray.toml", "auth-hook = \"http://127.0.0.1:3000/\"\n");
    let (code, _, stderr) = run(&["--config", stray.path()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--auth-hook given, but --auth is none"),
        "{stderr}"
    );
}

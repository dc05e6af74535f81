//! The README's Quick start, run as printed: its commands are read from README.md when the test runs, not copied
//! here, so an edit that breaks them breaks this test.
//!
//! - The server line must be exactly `cargo run --release -- ARGS`. The test runs the binary cargo already built
//!   for it with those ARGS (a release build inside a test would take minutes in CI, whose `cargo test` builds
//!   debug), and checks with `cargo metadata` that `cargo run` in the repository root picks that binary: the root
//!   package names it as `default-run`, since the workspace also holds the `spout-load` binary.
//! - The `curl` lines run through `sh` exactly as printed, with only the README's port replaced by the one the
//!   server got (the server listens on port 0, so parallel tests never collide).
//! - What the README says they print is checked against what they print, up to the ids, which differ per run.
//! - Then `/healthz` answers, and SIGTERM ends the server with exit code 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// The address the README's commands use; the test swaps in the real port.
const README_ADDR: &str = "127.0.0.1:8080";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of one `## ` section of the README, heading excluded.
fn section(readme: &str, heading: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != heading);
    assert!(lines.next().is_some(), "README has no '{heading}' section");
    lines
        .take_while(|l| !l.starts_with("## "))
        .map(str::to_owned)
        .collect()
}

/// The fenced code blocks of `lines`: (info string, body lines), with the text just before each block.
struct Block {
    lang: String,
    lines: Vec<String>,
    preceded_by: String,
}

fn code_blocks(lines: &[String]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut prose = String::new();
    let mut open: Option<Block> = None;
    for line in lines {
        let trimmed = line.trim();
        match (&mut open, trimmed.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    lines: Vec::new(),
                    preceded_by: std::mem::take(&mut prose),
                })
            }
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => block.lines.push(line.clone()),
            (None, None) => {
                if !trimmed.is_empty() {
                    prose = trimmed.to_owned();
                }
            }
        }
    }
    assert!(open.is_none(), "unclosed code block in the Quick start");
    blocks
}

/// The Quick start's commands and the outputs it promises.
struct QuickStart {
    server_args: Vec<String>,
    subscribe: String,
    publish: String,
    /// The JSON the publish line's comment says it prints.
    publish_answer: serde_json::Value,
    /// The block the README says the subscriber prints.
    stream: String,
}

fn quick_start() -> QuickStart {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let blocks = code_blocks(&section(&readme, "## Quick start"));
    let commands: Vec<&String> = blocks
        .iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| &b.lines)
        .collect();

    let runs: Vec<&&String> = commands
        .iter()
        .filter(|l| l.starts_with("cargo run"))
        .collect();
    assert_eq!(runs.len(), 1, "one server command in the Quick start");
    let args = runs[0]
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| {
            panic!(
                "the server command is not `cargo run --release -- ARGS`: {}",
                runs[0]
            )
        });
    assert!(
        !args.contains(['\'', '"', '\\', '#', '$']),
        "the server ARGS are plain words: {args}"
    );
    let server_args: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    assert!(
        args.contains(README_ADDR),
        "the server listens on {README_ADDR}, where the curl lines go"
    );

    let curls: Vec<&&String> = commands.iter().filter(|l| l.starts_with("curl ")).collect();
    let find = |flag: &str| -> String {
        let found: Vec<&&&String> = curls.iter().filter(|l| l.contains(flag)).collect();
        assert_eq!(found.len(), 1, "one curl line with {flag}: {curls:?}");
        found[0].to_string()
    };
    let subscribe = find(" -N ");
    let publish = find(" -d ");
    for line in [&subscribe, &publish] {
        assert!(line.contains(README_ADDR), "{line}");
    }
    let comment = publish
        .split_once("# terminal 2: ")
        .unwrap_or_else(|| panic!("the publish line says what it prints: {publish}"))
        .1;
    let publish_answer = serde_json::from_str(comment.trim())
        .unwrap_or_else(|e| panic!("the publish line's answer is JSON ({e}): {comment}"));

    let printed: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.preceded_by.starts_with("Terminal 1 prints"))
        .collect();
    assert_eq!(printed.len(), 1, "one block of what terminal 1 prints");
    let stream = printed[0].lines.join("\n") + "\n";
    QuickStart {
        server_args,
        subscribe,
        publish,
        publish_answer,
        stream,
    }
}

/// The stream with its run-specific values (the client id, event ids) replaced by placeholders.
fn without_ids(stream: &str) -> String {
    stream
        .lines()
        .map(|line| {
            if let Some((head, id)) = line.split_once("client_id=") {
                assert!(
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "client id {id:?}"
                );
                format!("{head}client_id=CLIENT_ID")
            } else if let Some(id) = line.strip_prefix("id: ") {
                assert!(
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
                    "event id {id:?}"
                );
                "id: EVENT_ID".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `curl` is there; under `CI=true` its absence fails the test instead of skipping it.
fn have_curl() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "curl is required under CI=true but is not installed"
        );
        eprintln!("SKIPPING: curl is not installed (this would fail under CI=true)");
    }
    found
}

/// Runs a README line through `sh`; `exec` makes the child the command itself, so killing it ends the command.
fn shell(line: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec {line}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Forwards a child's stdout in pieces, so the test can wait for some bytes without blocking forever.
fn forward(mut out: ChildStdout) -> Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || send.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receive
}

/// Appends forwarded output to `got` until it contains `needle`.
fn read_until(from: &Receiver<Vec<u8>>, got: &mut Vec<u8>, needle: &str, what: &str) {
    read_until_after(from, got, "", needle, what);
}

/// Appends forwarded output to `got` until `needle` follows the first `after` in it.
fn read_until_after(
    from: &Receiver<Vec<u8>>,
    got: &mut Vec<u8>,
    after: &str,
    needle: &str,
    what: &str,
) {
    let deadline = Instant::now() + WAIT;
    let found = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        text.find(after)
            .is_some_and(|at| text[at + after.len()..].contains(needle))
    };
    while !found(got) {
        let left = deadline.saturating_duration_since(Instant::now());
        match from.recv_timeout(left) {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(_) => panic!(
                "{what}: no {needle:?} within {WAIT:?}; got {:?}",
                String::from_utf8_lossy(got)
            ),
        }
    }
}

fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running server, killed if the test fails before it exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with the README's ARGS, its address swapped for port 0; returns it and the real address.
fn start(args: &[String]) -> (Server, String) {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace(README_ADDR, "127.0.0.1:0"))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(&args)
        .env("SPOUT_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start spout");
    let announced = forward(child.stdout.take().expect("stdout"));
    let server = Server(child);
    let mut out = Vec::new();
    read_until(
        &announced,
        &mut out,
        " (native)\n",
        "spout's listening line",
    );
    let text = String::from_utf8_lossy(&out);
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("listening on ADDR")
        .to_owned();
    (server, addr)
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

#[test]
fn cargo_run_in_the_repository_root_runs_the_server() {
    let out = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let manifest = repo().join("Cargo.toml");
    let root = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .expect("the root package");
    assert_eq!(
        root["default_run"], "spout",
        "`cargo run` must not ask which binary: the workspace has more than one"
    );
    let bins: Vec<&str> = root["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(bins.contains(&"spout"), "{bins:?}");
}

#[test]
fn quick_start_commands_work_as_printed() {
    let quick = quick_start();
    if !have_curl() {
        return;
    }
    let (mut server, addr) = start(&quick.server_args);
    let here = |line: &str| line.replace(README_ADDR, &addr);

    let health = get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
    assert!(health.ends_with("{\"status\":\"ok\"}"), "{health}");

    let mut subscriber = shell(&here(&quick.subscribe)).spawn().expect("run curl -N");
    let stream = forward(subscriber.stdout.take().expect("stdout"));
    let mut received = Vec::new();
    // The opening comment and retry hint come at once, when the subscription is in place.
    read_until_after(
        &stream,
        &mut received,
        "retry: ",
        "\n\n",
        "the subscriber's opening",
    );
    let channel = quick.publish_answer["channel"].as_str().expect("channel");
    let info = get(&addr, &format!("/channels/{channel}"));
    assert!(info.contains("\"subscribers\":1"), "{info}");

    let publisher = shell(&here(&quick.publish)).spawn().expect("run curl -d");
    let answer = publisher.wait_with_output().expect("curl -d");
    assert!(
        answer.status.success(),
        "curl -d failed: {:?}",
        answer.status
    );
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).expect("JSON answer");
    let promised = &quick.publish_answer;
    assert_eq!(answer["channel"], promised["channel"], "{answer}");
    assert_eq!(answer["subscribers"], promised["subscribers"], "{answer}");
    let id = answer["id"].as_str().expect("the id is a string");
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(keys(&answer), keys(promised));

    let last_line = quick
        .stream
        .trim_end()
        .lines()
        .last()
        .expect("the printed stream is not empty")
        .to_owned();
    read_until(
        &stream,
        &mut received,
        &format!("{last_line}\n\n"),
        "the event",
    );
    let received = String::from_utf8(received).expect("UTF-8 stream");
    assert_eq!(without_ids(&received), without_ids(&quick.stream));
    assert!(received.contains(&format!("id: {id}\n")), "{received}");

    let _ = subscriber.kill();
    let _ = subscriber.wait();
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = wait_exit(&mut server.0, "spout after SIGTERM");
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM");
}

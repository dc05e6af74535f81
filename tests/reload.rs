//! `SIGHUP` against the real binary: the `--config` file is read again; a new publish key and log level take effect
//! at once without dropping a connection, other changes are named as needing a restart (and keep their start
//! values), and a bad file changes nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{announced_addr, request, signal, sse_subscribe, Response, WAIT};

/// spout started with `--config FILE`, its stderr lines arriving on a channel.
struct Spout {
    child: Child,
    addr: SocketAddr,
    log: Receiver<String>,
}

impl Spout {
    fn start(config: &str) -> Spout {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
            .args([
                "--config",
                config,
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "2",
            ])
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start spout");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read stdout");
        let addr = announced_addr(&line).unwrap_or_else(|| panic!("{line:?}"));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Spout { child, addr, log }
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?} within {WAIT:?}"),
            }
        }
    }

    fn publish(&self, key: &str, body: &str) -> Response {
        let auth = if key.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {key}\r\n")
        };
        request(self.addr, "POST", "/pub/news", &auth, body.as_bytes())
    }
}

impl Drop for Spout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const OLD_KEY: &str = "old-key-0123456789abcdef";
const NEW_KEY: &str = "new-key-fedcba9876543210";

#[test]
fn sighup_applies_the_new_key_keeps_connections_and_names_what_needs_a_restart() {
    let dir = std::env::temp_dir().join(format!("spout-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("spout.toml");
    let path = file.to_str().expect("UTF-8 path");
    std::fs::write(
        &file,
        format!("publish-key = \"{OLD_KEY}\"\nlog-level = \"info\"\n"),
    )
    .expect("write");
    let spout = Spout::start(path);
    spout.wait_log("started with 2 workers");

    let mut stream = sse_subscribe(spout.addr, "/sub/news", "");
    assert_eq!(spout.publish(OLD_KEY, "one").status, 200);
    assert_eq!(spout.publish("", "none").status, 401);
    assert_eq!(stream.next_event().expect("event").data, "one");

    // A new key and level, and two limits that cannot change under open connections.
    std::fs::write(
        &file,
        format!(
            "publish-key = \"{NEW_KEY}\"\nlog-level = \"debug\"\nmax-body = \"1KiB\"\nmax-queued-bytes = \"1MiB\"\n\
             heartbeat = \"5s\"\n"
        ),
    )
    .expect("write");
    signal(spout.child.id(), "HUP");
    let applied = spout.wait_log("reload: applied");
    assert!(
        applied.contains("INFO") && applied.ends_with("reload: applied log-level, publish-key"),
        "{applied}"
    );
    let restart = spout.wait_log("take effect only on a restart");
    assert!(
        restart.contains("WARN") && restart.contains("reload: heartbeat, max-body changed"),
        "{restart}"
    );
    assert_eq!(spout.publish(OLD_KEY, "old").status, 401);
    assert_eq!(spout.publish(NEW_KEY, "two").status, 200);
    // The subscriber of before the reload is still there and gets the event published with the new key.
    assert_eq!(stream.next_event().expect("event").data, "two");
    // max-body keeps its start value (1MiB): a 2 KiB body is still taken.
    assert_eq!(spout.publish(NEW_KEY, &"x".repeat(2048)).status, 200);
    // The new level is in force: debug records are written now.
    drop(stream);
    spout.wait_log("DEBUG");

    // A file spout would refuse at start changes nothing.
    std::fs::write(
        &file,
        "publish-key = \"third-key-0123456789\"\nmax-bodyy = 1\n",
    )
    .expect("write");
    signal(spout.child.id(), "HUP");
    let refused = spout.wait_log("reload refused");
    assert!(
        refused.contains("ERROR") && refused.contains("invalid max-bodyy in"),
        "{refused}"
    );
    assert_eq!(spout.publish(NEW_KEY, "three").status, 200);
    assert_eq!(spout.publish("third-key-0123456789", "four").status, 401);

    // An unchanged file is said to be so.
    std::fs::write(
        &file,
        format!(
            "publish-key = \"{NEW_KEY}\"\nlog-level = \"debug\"\nmax-body = \"1KiB\"\nmax-queued-bytes = \"1MiB\"\n\
             heartbeat = \"5s\"\n"
        ),
    )
    .expect("write");
    signal(spout.child.id(), "HUP");
    spout.wait_log("take effect only on a restart");
    std::fs::write(
        &file,
        format!("publish-key = \"{NEW_KEY}\"\nlog-level = \"debug\"\n"),
    )
    .expect("write");
    signal(spout.child.id(), "HUP");
    spout.wait_log("reload: no change");

    signal(spout.child.id(), "TERM");
    let deadline = Instant::now() + WAIT;
    let mut spout = spout;
    let status = loop {
        if let Some(status) = spout.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "spout did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

//! `--log-format json` on the real binary: every line spout writes to stderr, from start to a drained exit, is one
//! JSON object with `time`, `level`, `target` and `message`, and the lines about a connection carry its worker, its
//! key (`conn`), its client's address (`peer`) and why it closed or was refused (`reason`) as keys of their own.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn json_logs_are_one_object_per_line_with_the_connections_fields() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("json-logs.txt");
    let stderr = std::fs::File::create(&path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .args(["--log-format", "json", "--log-level", "trace"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn spout");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let addr = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("stdout") > 0,
            "spout exited"
        );
        if let Some(addr) = announced_addr(&line) {
            break addr;
        }
    };

    // A stream that its client ends, a native error, a malformed request and a publish.
    let mut sse = sse_subscribe(addr, "/sub/news", "");
    publish_id(addr, "news", "hello");
    sse.next_event().expect("the event");
    drop(sse);
    assert_eq!(get(addr, "/nowhere").status, 404);
    let mut garbage = connect(addr);
    garbage.write_all(b"NOT HTTP\r\n\r\n").expect("write");
    let _ = std::io::Read::read_to_end(&mut garbage, &mut Vec::new());
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "TERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "spout exited with {status}");
    drop(stdout);

    let text = std::fs::read_to_string(&path).expect("read the log");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect();
    assert!(lines.len() > 5, "{text}");
    for line in &lines {
        for key in ["time", "level", "target", "message"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
    }
    let closed = lines
        .iter()
        .find(|l| l["conn"].is_u64() && l["reason"] == "peer")
        .unwrap_or_else(|| panic!("no line about a closed connection with its fields:\n{text}"));
    assert!(closed["worker"].is_u64(), "{closed}");
    assert_eq!(closed["peer"], "127.0.0.1", "{closed}");
    let not_found = lines
        .iter()
        .find(|l| l["reason"] == "not_found")
        .unwrap_or_else(|| panic!("no line about the 404:\n{text}"));
    assert!(not_found["worker"].is_u64(), "{not_found}");
    assert_eq!(not_found["peer"], "127.0.0.1", "{not_found}");
    assert!(
        lines
            .iter()
            .any(|l| l["reason"] == "malformed_request" && l["peer"] == "127.0.0.1"),
        "no line about the malformed request:\n{text}"
    );
}

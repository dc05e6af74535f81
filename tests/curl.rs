//! The README's curl one-liners, run as written against the real binary, with exact output bytes.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A spawned curl, killed on drop.
struct Curl(Child);

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads curl's stdout on a thread and hands over each chunk as it arrives.
fn stdout_chunks(curl: &mut Curl) -> mpsc::Receiver<Vec<u8>> {
    let mut stdout = curl.0.stdout.take().expect("stdout");
    let (chunk_tx, chunks) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || chunk_tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    chunks
}

/// Collects output until it ends with `suffix`; fails after `WAIT`.
fn read_until(chunks: &mpsc::Receiver<Vec<u8>>, got: &mut Vec<u8>, suffix: &[u8]) {
    let deadline = Instant::now() + WAIT;
    while !got.ends_with(suffix) {
        let left = deadline.saturating_duration_since(Instant::now());
        match chunks.recv_timeout(left) {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(_) => panic!(
                "curl printed {:?}, waiting for {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(suffix)
            ),
        }
    }
}

#[test]
fn readme_curl_subscribe_and_publish_with_exact_output() {
    if !require_program("curl") {
        return;
    }
    let server = start_server(&[]);
    let base = format!("http://{}", server.addr);

    // Terminal 1: curl -N http://127.0.0.1:PORT/sub/news
    let mut sub = Curl(
        Command::new("curl")
            .args(["-N", &format!("{base}/sub/news")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn curl"),
    );
    let chunks = stdout_chunks(&mut sub);
    let mut got = Vec::new();
    read_until(&chunks, &mut got, b"retry: 3000\n\n");
    let opening = String::from_utf8(got.clone()).expect("utf8");
    let client_id = opening
        .strip_prefix(": spout client_id=")
        .and_then(|rest| rest.strip_suffix("\n\nretry: 3000\n\n"))
        .unwrap_or_else(|| panic!("unexpected opening {opening:?}"));
    assert!(
        !client_id.is_empty() && client_id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{client_id:?}"
    );
    wait_for("curl's subscription", || {
        subscribers(server.addr, "news") == 1
    });

    // Terminal 2: curl -d 'hello' http://127.0.0.1:PORT/pub/news
    let out = Command::new("curl")
        .args(["-s", "-d", "hello", &format!("{base}/pub/news")])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8(out.stdout).expect("utf8");
    let id = answer
        .strip_prefix("{\"id\":\"")
        .and_then(|rest| rest.strip_suffix("\",\"channel\":\"news\",\"subscribers\":1}"))
        .unwrap_or_else(|| panic!("unexpected publish answer {answer:?}"));
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{id:?}"
    );

    let expected = format!("{opening}id: {id}\ndata: hello\n\n");
    read_until(&chunks, &mut got, b"data: hello\n\n");
    assert_eq!(String::from_utf8(got.clone()).expect("utf8"), expected);

    // Nothing else is printed before the next event (a heartbeat would be a bare ":\n\n").
    assert!(
        chunks.recv_timeout(Duration::from_millis(200)).is_err(),
        "unexpected output after the event"
    );
    let second = Command::new("curl")
        .args([
            "-s",
            "-d",
            "line 1\nline 2",
            &format!("{base}/pub/news?event=update"),
        ])
        .output()
        .expect("run curl");
    assert!(second.status.success());
    let id2 = serde_json::from_slice::<serde_json::Value>(&second.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    read_until(&chunks, &mut got, b"line 2\n\n");
    assert_eq!(
        String::from_utf8(got).expect("utf8"),
        format!("{expected}id: {id2}\nevent: update\ndata: line 1\ndata: line 2\n\n")
    );
}

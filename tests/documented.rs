//! Behaviour the README states that a user could easily guess wrong, held to it against the real binary: the
//! answer to `DELETE /channels/{channel}`, which routes need the publish key, which names are percent-decoded,
//! heartbeats after each stream's silence, and the `lastEventId` spelling of EventSource polyfills.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A spout on a free port, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log-level",
            "error",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start spout");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
        .to_owned();
    Server { child, addr }
}

/// One request on its own connection: the status and the body.
fn request(addr: &str, method: &str, target: &str, headers: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn publish(addr: &str, target: &str, data: &str) -> serde_json::Value {
    let (status, body) = request(addr, "POST", target, "", data);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON answer")
}

/// An SSE stream, read up to what a test waits for.
struct Stream {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Stream {
    fn open(addr: &str, target: &str) -> Stream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(stream, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let mut sse = Stream {
            stream,
            got: Vec::new(),
        };
        // The head, then the opening comment and the retry hint, which mean the subscription is in place.
        sse.until("retry: ");
        sse.until("\n\n");
        sse
    }

    /// Reads until `needle` is in what came after the previous call's match; returns that text.
    fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(at) = String::from_utf8_lossy(&self.got).find(needle) {
                let end = at + needle.len();
                let text = String::from_utf8_lossy(&self.got[..end]).into_owned();
                self.got.drain(..end);
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                String::from_utf8_lossy(&self.got)
            );
            let n = self.stream.read(&mut buf).expect("read the stream");
            assert!(n > 0, "the stream ended before {needle:?}");
            self.got.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn delete_answers_the_channel_and_deleted_true() {
    let server = start(&[]);
    publish(&server.addr, "/pub/news", "hello");
    let (status, body) = request(&server.addr, "DELETE", "/channels/news", "", "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"channel":"news","deleted":true}"#)
    );
    let (status, body) = request(&server.addr, "DELETE", "/channels/news", "", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"channel_not_found\""), "{body}");
}

#[test]
fn channel_routes_need_the_publish_key_when_one_is_set() {
    let key = "0123456789abcdef-key";
    let server = start(&["--publish-key", key]);
    let addr = server.addr.as_str();
    let auth = format!("Authorization: Bearer {key}\r\n");
    assert_eq!(request(addr, "POST", "/pub/news", &auth, "hi").0, 200);
    for (method, target) in [
        ("GET", "/channels"),
        ("GET", "/channels/news"),
        ("DELETE", "/channels/news"),
        ("POST", "/pub/news"),
    ] {
        let (status, body) = request(addr, method, target, "", "");
        assert_eq!(status, 401, "{method} {target} without the key: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    assert_eq!(request(addr, "GET", "/channels", &auth, "").0, 200);
    assert_eq!(request(addr, "GET", "/channels/news", &auth, "").0, 200);
    assert_eq!(request(addr, "DELETE", "/channels/news", &auth, "").0, 200);
    // Subscribing and the operator's endpoints need none.
    assert_eq!(request(addr, "GET", "/healthz", "", "").0, 200);
    assert_eq!(request(addr, "GET", "/metrics", "", "").0, 200);
    let mut sse = Stream::open(addr, "/sub/news");
    assert_eq!(
        request(addr, "POST", "/pub/news?event=after", &auth, "x").0,
        200
    );
    sse.until("event: after\n");
}

#[test]
fn event_names_are_percent_decoded_channel_names_are_not() {
    let server = start(&[]);
    let addr = server.addr.as_str();
    let mut sse = Stream::open(addr, "/sub/news");
    publish(addr, "/pub/news?event=caf%C3%A9+au+lait", "x");
    sse.until("event: café au lait\ndata: x\n\n");

    let (status, body) = request(addr, "POST", "/pub/a%20b", "", "x");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"invalid_channel\""), "{body}");
    let (status, body) = request(addr, "POST", "/pub/%6Eews", "", "x");
    assert_eq!(status, 400, "a percent-encoded 'n' is not decoded: {body}");
}

#[test]
fn heartbeats_follow_a_silence_of_each_stream() {
    // Events every 50 ms never leave the stream silent for a 400 ms heartbeat: none comes between them. Once the
    // events stop, one comes after the silence.
    let server = start(&["--heartbeat", "400ms"]);
    let addr = server.addr.as_str();
    let mut sse = Stream::open(addr, "/sub/beat");
    let first = sse.until(":\n\n");
    let until = Instant::now() + Duration::from_millis(1500);
    let mut sent = 0;
    while Instant::now() < until {
        publish(addr, "/pub/beat", &format!("e{sent}"));
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = Instant::now();
    let text = sse.until(&format!("data: e{}\n\n", sent - 1));
    let beats = text.split("\n\n").filter(|block| *block == ":").count();
    assert_eq!(
        beats, 0,
        "a heartbeat among {sent} events 50 ms apart: {text:?} (after {first:?})"
    );
    let after = sse.until(":\n\n");
    assert!(!after.contains("data:"), "{after:?}");
    assert!(
        last.elapsed() >= Duration::from_millis(300),
        "the heartbeat came {:?} after the last event",
        last.elapsed()
    );
}

#[test]
fn a_polyfills_last_event_id_query_resumes_the_stream() {
    let server = start(&[]);
    let addr = server.addr.as_str();
    let first = publish(addr, "/pub/resume", "one");
    publish(addr, "/pub/resume", "two");
    let id = first["id"].as_str().expect("id");
    let mut sse = Stream::open(addr, &format!("/sub/resume?lastEventId={id}"));
    let text = sse.until("data: two\n\n");
    assert!(!text.contains("data: one"), "{text:?}");
}

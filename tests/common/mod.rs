//! Helpers for end-to-end tests: start the real binary on 127.0.0.1:0, speak raw bytes over `TcpStream`.
#![allow(dead_code)] // each test binary uses its own subset

pub mod cluster;
pub mod haproxy;
pub mod hook;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `spout` process, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every address announced (`listening on ...`), in `--listen` order.
    pub addrs: Vec<SocketAddr>,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts spout with `args` plus `--listen 127.0.0.1:0` (unless the args name a listener) and `--workers 2`
/// (unless given), and waits for its `listening on` lines.
pub fn start_server(args: &[&str]) -> Server {
    start_server_env(args, &[])
}

/// [`start_server`] with environment variables set for spout.
pub fn start_server_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spout"));
    cmd.envs(env.iter().copied());
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !args.contains(&"--workers") {
        cmd.args(["--workers", "2"]);
    }
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("SPOUT_LOG_LEVEL", "warn");
    let listeners = args.iter().filter(|a| **a == "--listen").count().max(1);
    let mut child = cmd.spawn().expect("spawn spout");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut addrs = Vec::new();
    while addrs.len() < listeners {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "spout exited before announcing its listeners");
        if let Some(addr) = announced_addr(&line) {
            addrs.push(addr);
        }
    }
    Server {
        child,
        addr: addrs[0],
        addrs,
        _stdout: stdout,
    }
}

/// The address of a `listening on ADDR (API)` line spout prints, `None` for any other line.
pub fn announced_addr(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A connection with a 4 KiB receive window (set before connecting, so the window never grows) that sends
/// `request` and then reads nothing: a subscriber that stops reading, as hostile-client tests need them.
pub fn non_reader(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.write_all(request).expect("request");
    stream
}

/// Runs spout with `args` expecting it to refuse to start; returns (exit code, stderr). A spout that is still
/// running after `WAIT` (it started after all) is killed and reported with no exit code.
pub fn start_failure(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spout");
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response with a `Content-Length` body (or none, for 1xx/204/304 or `head_only`) from `reader`.
pub fn read_response<R: BufRead>(reader: &mut R, head_only: bool) -> Response {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read response head");
        assert!(n > 0, "connection closed inside a response head: {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut resp = Response {
        status,
        head,
        headers,
        body: Vec::new(),
    };
    let length: usize = resp
        .header("content-length")
        .map_or(0, |v| v.parse().expect("content-length"));
    if !head_only && length > 0 {
        resp.body = vec![0; length];
        reader.read_exact(&mut resp.body).expect("read body");
    }
    resp
}

/// Sends raw request bytes on a new connection and reads one response.
pub fn roundtrip(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream.write_all(raw).expect("write request");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, raw.starts_with(b"HEAD "))
}

/// A request with a body and extra header lines (each ending in `\r\n`).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}").into_bytes();
    if !body.is_empty() || method == "POST" {
        raw.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    roundtrip(addr, &raw)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, "", b"")
}

/// Publishes `data` to `/pub/{path}` (path may carry a query) and returns the response.
pub fn publish(addr: SocketAddr, path: &str, data: &str) -> Response {
    request(addr, "POST", &format!("/pub/{path}"), "", data.as_bytes())
}

/// Publishes and returns the assigned id, asserting success.
pub fn publish_id(addr: SocketAddr, path: &str, data: &str) -> String {
    let resp = publish(addr, path, data);
    assert_eq!(resp.status, 200, "publish failed: {}", resp.text());
    resp.json()["id"].as_str().expect("id").to_string()
}

/// One SSE event as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// An open SSE stream.
pub struct Sse {
    pub reader: BufReader<TcpStream>,
    pub response: Response,
}

impl Sse {
    /// Reads raw bytes until `needle` has been seen; returns everything read.
    pub fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !got.windows(needle.len()).any(|w| w == needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got)
            );
            let mut byte = [0u8; 1];
            match self.reader.read(&mut byte) {
                Ok(0) => panic!(
                    "stream closed while waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&got)
                ),
                Ok(_) => got.push(byte[0]),
                Err(e) => panic!(
                    "read error {e} waiting for {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&got)
                ),
            }
        }
        got
    }

    /// Reads the next event with data (comments, `retry:` and empty blocks skipped). `None` when the stream ends.
    pub fn next_event(&mut self) -> Option<Event> {
        let mut event = Event::default();
        let mut has_data = false;
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => panic!("read error: {e}"),
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if has_data {
                    return Some(event);
                }
                event = Event::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "id" => event.id = Some(value.to_string()),
                "event" => event.event = Some(value.to_string()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// Reads `n` events.
    pub fn events(&mut self, n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                self.next_event()
                    .unwrap_or_else(|| panic!("stream ended after {i} of {n} events"))
            })
            .collect()
    }
}

/// Opens `GET path` with extra header lines and reads the response head plus the opening bytes (up to and
/// including the `retry:` block).
pub fn sse_subscribe(addr: SocketAddr, path: &str, headers: &str) -> Sse {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, true);
    assert_eq!(response.status, 200, "subscribe failed: {}", response.head);
    let mut sse = Sse { reader, response };
    sse.read_until(b"retry: ");
    sse.read_until(b"\n\n");
    sse
}

/// Waits until `check` holds, polling; fails after `WAIT`.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Subscribers the server reports on a channel (0 when it does not exist).
pub fn subscribers(addr: SocketAddr, channel: &str) -> u64 {
    let resp = get(addr, &format!("/channels/{channel}"));
    if resp.status == 404 {
        return 0;
    }
    resp.json()["subscribers"].as_u64().expect("subscribers")
}

/// Reads a metric's value summed over its series from `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    metric_samples(&get(addr, "/metrics").text(), name)
        .iter()
        .sum()
}

/// A metric's samples in a `/metrics` text, one per series in the order listed (per worker: worker 0 first).
pub fn metric_samples(text: &str, name: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
        })
        .map(|l| {
            l.rsplit_once(' ')
                .expect("sample")
                .1
                .parse::<u64>()
                .expect("value")
        })
        .collect()
}

/// Resident memory of a process, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Whether an external program is on PATH. A missing one skips the test (`skipped`); under `CI=true` it fails it.
pub fn require_program(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    found || skipped(name, "")
}

/// Reports that the running test cannot drive its real client `client` (a program or an npm package, not
/// installed) and returns false, for the test to return early: `SKIPPED: <test binary>::<test>: <client> missing`.
/// Under `CI=true` a missing real client is a failure, never a skip.
///
/// The line is written to the `io::stderr()` handle, not with `eprintln!`: libtest captures what `print!` and
/// `eprint!` write and shows it only for a failing test, so a skip reported that way would vanish behind an `ok`.
/// Writes to the handle are not captured: the line shows in a default `cargo test` run, just above the binary's
/// `test result:` summary (which counts the test as passed; libtest has no skipped outcome a test can choose at run
/// time), and in CI logs, where there is no terminal to write to.
fn skipped(client: &str, remedy: &str) -> bool {
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{client} is required under CI=true but is not installed{remedy}"
    );
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {}::{test}: {client} missing{remedy} (under CI=true this fails)",
        env!("CARGO_CRATE_NAME")
    );
    false
}

// ---- keep-alive clients, batch publish, signals, node packages (sse.rs, eventsource.rs, curl.rs) ----------------

/// One HTTP/1.1 connection that carries many requests (keep-alive), as a publisher that reuses its socket.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            reader: BufReader::new(connect(addr)),
        }
    }

    /// Sends one request (extra header lines each end in `\r\n`) and reads its response.
    pub fn request(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        self.reader
            .get_mut()
            .write_all(&raw)
            .expect("write request");
        read_response(&mut self.reader, method == "HEAD")
    }

    /// Publishes `data` to `/pub/{path}`; returns the assigned id, asserting success.
    pub fn publish_id(&mut self, path: &str, data: &str) -> String {
        let resp = self.request("POST", &format!("/pub/{path}"), "", data.as_bytes());
        assert_eq!(resp.status, 200, "publish failed: {}", resp.text());
        resp.json()["id"].as_str().expect("id").to_string()
    }

    /// Publishes a batch (`{"events": [...]}`); returns the assigned ids in order, asserting success.
    pub fn publish_batch(&mut self, events: &serde_json::Value) -> Vec<String> {
        let body = serde_json::json!({ "events": events }).to_string();
        let resp = self.request(
            "POST",
            "/pub",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        );
        assert_eq!(resp.status, 200, "batch publish failed: {}", resp.text());
        resp.json()["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| id.as_str().expect("id").to_string())
            .collect()
    }
}

/// Publishes a batch (`{"events": [...]}`) on a new connection; returns the assigned ids, asserting success.
pub fn publish_batch(addr: SocketAddr, events: &serde_json::Value) -> Vec<String> {
    KeepAlive::new(addr).publish_batch(events)
}

/// Sends a signal (`TERM`, `STOP`, `CONT`, ...) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Whether the npm package `name` is installed under `tests/js/node_modules` (`cd tests/js && npm ci`). Like
/// `require_program`: a missing package skips the test, visibly; under `CI=true` it fails it.
pub fn require_node_package(name: &str) -> bool {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js/node_modules")
        .join(name);
    let found = dir.join("package.json").is_file();
    found
        || skipped(
            &format!("npm package {name}"),
            ": run `cd tests/js && npm ci`",
        )
}

// ---- WebSocket (ws.rs) ------------------------------------------------------------------------------------------

/// The key of RFC 6455 §1.3, and the accept value that answers it.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A raw WebSocket client over a `TcpStream`: masked frames out, frames read exactly as sent.
pub struct Ws {
    pub stream: TcpStream,
}

/// One frame as received from the server: the first header byte (FIN, opcode) and the payload.
#[derive(Debug, PartialEq, Eq)]
pub struct WsFrame {
    pub b0: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl WsFrame {
    pub fn opcode(&self) -> u8 {
        self.b0 & 0x0F
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("UTF-8 text frame")
    }

    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode(), 0x8, "not a close frame: {self:?}");
        let code = self.payload.get(..2)?;
        Some(u16::from_be_bytes([code[0], code[1]]))
    }
}

/// A client frame: `b0` as given, masked with a fixed key, lengths in their minimal form.
pub fn ws_client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// Sends an upgrade request for `path` (with extra header lines, each ending in `\r\n`) and reads the response
/// head byte by byte, so that no frame behind it is consumed. Returns the socket and the head.
pub fn ws_upgrade(addr: SocketAddr, path: &str, headers: &str) -> (TcpStream, String) {
    let mut stream = connect(addr);
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(raw.as_bytes()).expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read upgrade answer");
        assert!(
            n > 0,
            "closed during the handshake: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).expect("ASCII head"))
}

/// Connects a WebSocket subscriber to `path`, asserts the 101 and the `open` message; returns it and its client id.
pub fn ws_connect(addr: SocketAddr, path: &str, headers: &str) -> (Ws, String) {
    let (stream, head) = ws_upgrade(addr, path, headers);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let mut ws = Ws { stream };
    let open: serde_json::Value = ws.next_json();
    assert_eq!(open["event"], "open", "{open}");
    let id = open["client_id"].as_str().expect("client_id").to_string();
    (ws, id)
}

impl Ws {
    pub fn send(&mut self, b0: u8, payload: &[u8]) {
        self.send_raw(&ws_client_frame(b0, payload));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write frame");
    }

    /// Reads one frame; panics on EOF or timeout.
    pub fn read_frame(&mut self) -> WsFrame {
        self.try_read_frame()
            .expect("a frame, not the end of the stream")
    }

    /// Reads one frame; `None` at EOF.
    pub fn try_read_frame(&mut self) -> Option<WsFrame> {
        let mut head = [0u8; 2];
        if let Err(e) = self.stream.read_exact(&mut head) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "{e}"
            );
            return None;
        }
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("length");
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).expect("payload");
        Some(WsFrame {
            b0: head[0],
            masked,
            payload,
        })
    }

    /// Reads one frame, or `None` when the read timeout passes first (the socket's timeout must be short).
    pub fn try_read_frame_timeout(&mut self) -> Option<WsFrame> {
        let mut first = [0u8; 1];
        match self.stream.peek(&mut first) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(_) => Some(self.read_frame()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// The next text frame (pings are answered on the way); panics on any other frame.
    pub fn next_text(&mut self) -> String {
        loop {
            let frame = self.read_frame();
            match frame.opcode() {
                0x9 => self.send(0x8A, &frame.payload),
                0x1 => {
                    assert_eq!(frame.b0, 0x81, "final, unfragmented text frame");
                    assert!(!frame.masked, "server frames are not masked");
                    return frame.text().to_string();
                }
                _ => panic!("expected a text frame, got {frame:?}"),
            }
        }
    }

    pub fn next_json(&mut self) -> serde_json::Value {
        let text = self.next_text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// Reads until EOF, returning the frames seen before it.
    pub fn read_to_end(&mut self) -> Vec<WsFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.try_read_frame() {
            frames.push(frame);
        }
        frames
    }
}

/// A node script from `tests/js/`, killed on drop. Its stdin stays open (closing it asks the script to finish);
/// every stdout line is parsed as JSON and arrives on `lines` (`next` reads one).
pub struct NodeScript {
    pub child: std::process::Child,
    pub stdin: Option<std::process::ChildStdin>,
    pub lines: std::sync::mpsc::Receiver<serde_json::Value>,
    script: String,
}

impl NodeScript {
    /// Starts `node tests/js/<script> <args>`, with `TMPDIR` under `target/`: what the script leaves in its
    /// temporary directory (Chromium's and playwright-core's files) stays there when a run is killed half-way.
    pub fn start(script: &str, args: &[&str]) -> NodeScript {
        let path = format!("{}/tests/js/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("node")
            .arg(path)
            .args(args)
            .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (line_tx, lines) = std::sync::mpsc::channel();
        let name = script.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{name} printed {line:?}: {e}"));
                if line_tx.send(value).is_err() {
                    break;
                }
            }
        });
        NodeScript {
            child,
            stdin,
            lines,
            script: script.to_string(),
        }
    }

    /// The next line the script prints, within `WAIT`.
    pub fn next(&self) -> serde_json::Value {
        self.next_by(Instant::now() + WAIT, "its next line")
    }

    /// The next line the script prints, before `deadline`; `waiting_for` says in a failure what did not come.
    pub fn next_by(&self, deadline: Instant, waiting_for: &str) -> serde_json::Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("{} printed nothing in time ({waiting_for})", self.script)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{} ended its output ({waiting_for})", self.script)
            }
        }
    }

    /// Writes one line to the script's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to node");
    }

    /// Closes the script's stdin, which asks it to finish.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits, until `deadline`, for the script to exit, and asserts that it succeeded.
    pub fn assert_exits_ok(&mut self, deadline: Instant) {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in time",
                self.script
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{} exited with {status}", self.script);
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- headless Chromium (browser.rs, flychat_browser.rs) ---------------------------------------------------------

/// Whether the browser tests can run: Node.js, Debian's Chromium and the npm `playwright-core` package that drives
/// it (`tests/js/chromium.mjs`). Like `require_program`: anything missing skips the test, visibly; under `CI=true`
/// it fails it.
pub fn require_browser() -> bool {
    require_program("node")
        && require_program("chromium")
        && require_node_package("playwright-core")
}

/// A browser test's files, both under `target/` so that a run killed half-way leaves nothing in `/tmp`: a fresh,
/// empty Chromium profile (the script removes it when it ends) and the screenshot, removed first so that one from
/// an earlier run never passes for this one's.
pub struct BrowserFiles {
    pub profile: std::path::PathBuf,
    pub screenshot: std::path::PathBuf,
}

impl BrowserFiles {
    /// `target/tmp/<profile>/` and `target/<screenshot>`.
    pub fn new(profile: &str, screenshot: &str) -> BrowserFiles {
        let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let files = BrowserFiles {
            profile: tmp.join(profile),
            screenshot: tmp.parent().expect("target dir").join(screenshot),
        };
        let _ = std::fs::remove_file(&files.screenshot);
        let _ = std::fs::remove_dir_all(&files.profile);
        std::fs::create_dir_all(&files.profile).expect("profile dir");
        files
    }

    pub fn profile_arg(&self) -> &str {
        self.profile.to_str().expect("UTF-8 path")
    }

    pub fn screenshot_arg(&self) -> &str {
        self.screenshot.to_str().expect("UTF-8 path")
    }

    /// The script wrote a screenshot that is not empty.
    pub fn assert_screenshot(&self) {
        let size = std::fs::metadata(&self.screenshot)
            .unwrap_or_else(|e| panic!("screenshot {}: {e}", self.screenshot.display()))
            .len();
        assert!(size > 0, "empty screenshot {}", self.screenshot.display());
    }
}

// ---- compatible APIs (pipely.rs, node_sse.rs) ------------------------------------------------------------------

/// Where a test reaches a compatible API: a listener and the API's path prefix on it.
#[derive(Clone, Copy, Debug)]
pub struct Way {
    pub addr: SocketAddr,
    pub prefix: &'static str,
}

impl Way {
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// Runs cases of a compatible API, each `fn case(a: &Server, b: &Server)`, as two tests: `$one` on one node (`a` and
/// `b` the same server, as `start_compat(api, extra)` starts it) and `$two` on the two nodes of a Redis Cluster
/// (`cluster::CompatCluster`), where the case makes its changes through `a` and checks them through `b`.
#[allow(unused_macros)]
macro_rules! on_one_and_two_nodes {
    ($api:expr, $extra:expr, $one:ident, $two:ident, $case:ident) => {
        #[test]
        fn $one() {
            let server = common::start_compat($api, $extra);
            $case(&server, &server);
        }

        #[test]
        fn $two() {
            let cluster = common::cluster::CompatCluster::start($api, $extra);
            $case(&cluster.nodes[0], &cluster.nodes[1]);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_one_and_two_nodes;

/// Starts spout with a native listener and one bound to `api` (`--listen 127.0.0.1:0=<api>`), plus `extra`.
pub fn start_compat(api: &str, extra: &[&str]) -> Server {
    let bound = format!("127.0.0.1:0={api}");
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", &bound];
    args.extend_from_slice(extra);
    start_server(&args)
}

/// Both ways to a compatible API on a server from `start_compat`: the root of its own listener, then `prefix` on
/// the native listener.
pub fn compat_ways(server: &Server, prefix: &'static str) -> [Way; 2] {
    [
        Way {
            addr: server.addrs[1],
            prefix: "",
        },
        Way {
            addr: server.addrs[0],
            prefix,
        },
    ]
}

/// A response head without its `Date` line (the only part that changes between runs), for byte comparisons.
pub fn without_date(head: &str) -> String {
    head.split_inclusive("\r\n")
        .filter(|line| !line.starts_with("Date: "))
        .collect()
}

/// JSON values equal as a JavaScript client sees them: numbers compare as float64 (`1.0` is `1`, and
/// `12345678901234567000` is `12345678901234567890`), object keys in any order.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Reads the next SSE block, up to and including its blank line, as sent; blocks that are only a `:` comment
/// (heartbeats) are skipped.
pub fn read_sse_block<R: BufRead>(reader: &mut R) -> String {
    loop {
        let mut block = String::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read an SSE block");
            assert!(n > 0, "the stream ended; got {block:?}");
            block.push_str(&line);
            if line == "\n" {
                break;
            }
        }
        if !block.starts_with(':') {
            return block;
        }
    }
}

//! Every HTTP-level rule of the native API, driven over real sockets against the real binary: routes, methods,
//! CORS, persistence, pipelining, body framing, `Expect: 100-continue`, request smuggling shapes, limits and
//! timeouts, publish auth, configuration errors, the publish answer, a garbage loop and `/metrics`.

mod common;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

// ---- helpers ---------------------------------------------------------------------------------------------------

/// One keep-alive connection: send raw bytes, read responses in order, check how it ends.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            reader: BufReader::new(connect(addr)),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.reader.get_mut().write_all(raw).expect("write");
    }

    fn read(&mut self) -> Response {
        read_response(&mut self.reader, false)
    }

    fn read_head_only(&mut self) -> Response {
        read_response(&mut self.reader, true)
    }

    fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read()
    }

    /// Asserts the server closes the connection within `within` without sending another byte.
    fn expect_closed(&mut self, within: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(within))
            .expect("timeout");
        let rest = read_rest(&mut self.reader, within);
        assert!(
            rest.is_empty(),
            "expected a close, got more bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Asserts the connection is still open `after` a pause (no bytes, no close).
    fn expect_open(&mut self, after: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(after))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected an open, quiet connection, got {other:?}"),
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(WAIT))
            .expect("timeout");
    }
}

/// Reads until EOF (or reset) and returns what came; fails if the peer is still open after `within`.
fn read_rest(reader: &mut impl Read, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "connection still open after {within:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        match reader.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read error: {e}"),
        }
    }
}

/// A raw HTTP/1.1 request with a Host header, the given header lines (each ending in CRLF) and a body framed by
/// `Content-Length` when `body` is given.
fn raw(method: &str, path: &str, headers: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}").into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Asserts a JSON error answer with `status` and `code`.
#[track_caller]
fn assert_error(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}{}", resp.head, resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.head
    );
    let json = resp.json();
    assert_eq!(json["error"], code, "{}", resp.text());
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        resp.text()
    );
}

/// Sends `raw` on a new connection, expects one error answer with `Connection: close`, then the close.
#[track_caller]
fn assert_refused(addr: SocketAddr, raw: &[u8], status: u16, code: &str) {
    let mut client = Client::new(addr);
    client.send(raw);
    let resp = client.read();
    assert_error(&resp, status, code);
    assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
    client.expect_closed(WAIT);
}

fn published(addr: SocketAddr) -> u64 {
    metric(addr, "spout_events_published_total")
}

/// Fixed-seed xorshift64 for reproducible garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// ---- routes, methods, CORS -------------------------------------------------------------------------------------

#[test]
fn routes_answer_with_their_status_and_content_type() {
    let server = start_server(&[]);
    let addr = server.addr;

    let health = get(addr, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert!(
        metrics
            .text()
            .contains("spout_requests_total{worker=\"0\"} "),
        "{}",
        metrics.text()
    );

    publish_id(addr, "news", "hello");
    let channels = get(addr, "/channels");
    assert_eq!(channels.status, 200);
    assert_eq!(channels.json()["channels"][0]["channel"], "news");

    let info = get(addr, "/channels/news");
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["channel"], "news");
    assert_eq!(info.json()["retained"], 1);

    let deleted = request(addr, "DELETE", "/channels/news", "", b"");
    assert_eq!(deleted.status, 200);
    assert_eq!(
        deleted.json(),
        serde_json::json!({"channel": "news", "deleted": true})
    );
    assert_error(&get(addr, "/channels/news"), 404, "channel_not_found");
    assert_error(
        &request(addr, "DELETE", "/channels/news", "", b""),
        404,
        "channel_not_found",
    );

    let batch = request(
        addr,
        "POST",
        "/pub",
        "Content-Type: application/json\r\n",
        br#"{"events":[{"channel":"a","data":"x"},{"channel":"b","data":{"k":1}}]}"#,
    );
    assert_eq!(batch.status, 200, "{}", batch.text());
    let ids = batch.json()["ids"].as_array().expect("ids").clone();
    assert_eq!(ids.len(), 2);

    for path in [
        "/",
        "/nope",
        "/healthz/",
        "/sub",
        "/channel",
        "/pubx/a",
        "/metrics.txt",
    ] {
        let resp = get(addr, path);
        assert_error(&resp, 404, "not_found");
        assert_eq!(
            resp.header("connection"),
            None,
            "a 404 keeps the connection: {path}"
        );
    }

    // One error answer byte for byte (the Date value aside).
    let resp = get(addr, "/nope");
    let date = resp.header("date").expect("date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    let body = r#"{"error":"not_found","message":"no such route"}"#;
    assert_eq!(
        resp.head,
        format!(
            "HTTP/1.1 404 Not Found\r\nDate: {date}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nAccess-Control-Allow-Origin: *\r\n\r\n",
            body.len()
        )
    );
    assert_eq!(resp.text(), body);
}

#[test]
fn wrong_method_gets_405_with_allow() {
    let server = start_server(&[]);
    let cases = [
        ("POST", "/sub/a", "GET, HEAD, OPTIONS"),
        ("DELETE", "/sub/a,b", "GET, HEAD, OPTIONS"),
        ("GET", "/pub/a", "POST, OPTIONS"),
        ("PUT", "/pub/a", "POST, OPTIONS"),
        ("GET", "/pub", "POST, OPTIONS"),
        ("POST", "/channels", "GET, HEAD, OPTIONS"),
        ("DELETE", "/channels", "GET, HEAD, OPTIONS"),
        ("POST", "/channels/a", "GET, HEAD, DELETE, OPTIONS"),
        ("PUT", "/healthz", "GET, HEAD, OPTIONS"),
        ("POST", "/metrics", "GET, HEAD, OPTIONS"),
        ("PATCH", "/healthz", "GET, HEAD, OPTIONS"),
        // Methods are case-sensitive (RFC 9110 §9.1).
        ("get", "/healthz", "GET, HEAD, OPTIONS"),
    ];
    for (method, path, allow) in cases {
        let body: Option<&[u8]> = if method == "GET" || method == "get" {
            None
        } else {
            Some(b"")
        };
        let resp = roundtrip(server.addr, &raw(method, path, "", body));
        assert_error(&resp, 405, "method_not_allowed");
        assert_eq!(resp.header("allow"), Some(allow), "{method} {path}");
    }
}

#[test]
fn options_is_a_cors_preflight() {
    let server = start_server(&[]);
    for (path, allow) in [
        ("/pub/a", "POST, OPTIONS"),
        ("/sub/a,b", "GET, HEAD, OPTIONS"),
        ("/channels/a", "GET, HEAD, DELETE, OPTIONS"),
    ] {
        let resp = roundtrip(
            server.addr,
            &raw("OPTIONS", path, "Origin: https://x.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, last-event-id\r\n", None),
        );
        assert_eq!(resp.status, 204, "{}", resp.head);
        assert_eq!(
            resp.header("content-length"),
            None,
            "204 has no Content-Length"
        );
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert_eq!(resp.header("access-control-allow-methods"), Some(allow));
        assert_eq!(resp.header("allow"), Some(allow));
        let allowed = resp
            .header("access-control-allow-headers")
            .expect("allow-headers")
            .to_ascii_lowercase();
        for needed in ["last-event-id", "authorization", "content-type"] {
            assert!(
                allowed.split(',').any(|h| h.trim() == needed),
                "{needed} missing from {allowed}"
            );
        }
        assert!(resp.header("access-control-max-age").is_some());
    }
    // CORS headers on ordinary answers too.
    let health = request(
        server.addr,
        "GET",
        "/healthz",
        "Origin: https://x.example\r\n",
        b"",
    );
    assert_eq!(health.header("access-control-allow-origin"), Some("*"));
    assert_error(
        &roundtrip(server.addr, &raw("OPTIONS", "/nope", "", None)),
        404,
        "not_found",
    );
}

#[test]
fn cors_origin_list_echoes_only_the_allowed_origin_with_vary() {
    let server = start_server(&["--cors-origin", "https://a.example"]);
    let preflight = |origin: &str| {
        roundtrip(
            server.addr,
            &raw(
                "OPTIONS",
                "/pub/a",
                &format!("Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n"),
                None,
            ),
        )
    };

    let ok = preflight("https://a.example");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert!(ok
        .header("access-control-allow-headers")
        .expect("allow-headers")
        .contains("Last-Event-ID"));

    let other = preflight("https://b.example");
    assert_eq!(other.status, 204);
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-methods"), None);
    assert_eq!(other.header("vary"), Some("Origin"));

    let publish_ok = request(
        server.addr,
        "POST",
        "/pub/a",
        "Origin: https://a.example\r\n",
        b"x",
    );
    assert_eq!(publish_ok.status, 200);
    assert_eq!(
        publish_ok.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(publish_ok.header("vary"), Some("Origin"));
    let publish_other = request(
        server.addr,
        "POST",
        "/pub/a",
        "Origin: https://b.example\r\n",
        b"x",
    );
    assert_eq!(publish_other.status, 200);
    assert_eq!(publish_other.header("access-control-allow-origin"), None);
    let no_origin = get(server.addr, "/healthz");
    assert_eq!(no_origin.header("access-control-allow-origin"), None);

    let sub = sse_subscribe(server.addr, "/sub/a", "Origin: https://a.example\r\n");
    assert_eq!(
        sub.response.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_eq!(
        sub.response.header("access-control-expose-headers"),
        Some("Spout-Client-Id")
    );
    let sub = sse_subscribe(server.addr, "/sub/a", "Origin: https://evil.example\r\n");
    assert_eq!(sub.response.header("access-control-allow-origin"), None);
}

#[test]
fn cors_origin_none_sends_no_cors_headers() {
    let server = start_server(&["--cors-origin", "none"]);
    let preflight = roundtrip(
        server.addr,
        &raw("OPTIONS", "/pub/a", "Origin: https://a.example\r\n", None),
    );
    let health = request(
        server.addr,
        "GET",
        "/healthz",
        "Origin: https://a.example\r\n",
        b"",
    );
    let sub = sse_subscribe(server.addr, "/sub/a", "Origin: https://a.example\r\n");
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("allow"), Some("POST, OPTIONS"));
    for resp in [&preflight, &health, &sub.response] {
        for (name, _) in &resp.headers {
            let name = name.to_ascii_lowercase();
            assert!(
                !name.starts_with("access-control-") && name != "vary",
                "CORS header {name} in {}",
                resp.head
            );
        }
    }
}

// ---- persistence, pipelining, HEAD -----------------------------------------------------------------------------

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    for i in 0..5 {
        let resp = client.request(&raw(
            "POST",
            "/pub/ka",
            "",
            Some(format!("event {i}").as_bytes()),
        ));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), None);
        let resp = client.request(&raw("GET", "/healthz", "", None));
        assert_eq!(resp.status, 200);
    }
    // An API error keeps the connection too.
    assert_error(
        &client.request(&raw("GET", "/nope", "", None)),
        404,
        "not_found",
    );
    assert_error(
        &client.request(&raw("POST", "/pub/a%20b", "", Some(b"x"))),
        400,
        "invalid_channel",
    );
    assert_eq!(
        client.request(&raw("GET", "/channels/ka", "", None)).json()["retained"],
        5
    );
}

#[test]
fn http10_closes_after_the_response_unless_keep_alive() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    client.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    let resp = client.read();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed(WAIT);

    let mut client = Client::new(server.addr);
    client.send(b"POST /pub/old HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(client.read().status, 200);
    client.expect_closed(WAIT);

    let mut client = Client::new(server.addr);
    for _ in 0..3 {
        let resp = client.request(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(resp.status, 200);
        assert_ne!(resp.header("connection"), Some("close"));
    }
    let resp = client.request(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("close"));
    client.expect_closed(WAIT);
}

/// RFC 9112 §9.3 / RFC 7230 §A.1.2: an HTTP/1.0 client keeps the connection only when the response says
/// `Connection: keep-alive`; without it (ab -k, old proxies) the client closes and the keep-alive is wasted.
#[test]
fn http10_keep_alive_response_says_keep_alive() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    let resp = client.request(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive"),
        "{}",
        resp.head
    );
    let resp = client
        .request(b"POST /pub/x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive"),
        "{}",
        resp.head
    );
    let resp = client.request(b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_error(&resp, 404, "not_found");
    assert_eq!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive"),
        "{}",
        resp.head
    );
    // HTTP/1.1 persists by default and needs no such header.
    let resp = client.request(&raw("GET", "/healthz", "", None));
    assert_eq!(resp.header("connection"), None);
}

#[test]
fn connection_close_closes_after_the_response() {
    let server = start_server(&[]);
    for req in [
        raw("GET", "/healthz", "Connection: close\r\n", None),
        raw("POST", "/pub/c", "Connection: close\r\n", Some(b"x")),
        raw("GET", "/nope", "Connection: keep-alive, close\r\n", None),
    ] {
        let mut client = Client::new(server.addr);
        client.send(&req);
        let resp = client.read();
        assert_eq!(resp.header("connection"), Some("close"), "{}", resp.head);
        client.expect_closed(WAIT);
    }
    // Requests pipelined behind a `Connection: close` one are not answered.
    let mut client = Client::new(server.addr);
    let mut bytes = raw("GET", "/healthz", "Connection: close\r\n", None);
    bytes.extend(raw("POST", "/pub/after-close", "", Some(b"x")));
    client.send(&bytes);
    assert_eq!(client.read().status, 200);
    client.expect_closed(WAIT);
    assert_eq!(get(server.addr, "/channels/after-close").status, 404);
}

#[test]
fn absolute_form_targets_queries_and_bodies_on_get_keep_the_connection_in_step() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    let resp =
        client.request(b"GET http://example.com/healthz HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(resp.status, 200);
    let resp = client.request(&raw(
        "POST",
        "HTTP://example.com/pub/abs?event=e",
        "",
        Some(b"x"),
    ));
    assert_eq!(resp.json()["channel"], "abs");
    assert_eq!(
        client
            .request(&raw("GET", "/healthz?probe=1", "", None))
            .status,
        200
    );
    // A GET may carry a body; it is read and ignored, and the next request is found after it.
    let resp = client.request(&raw("GET", "/healthz", "", Some(b"ignored body")));
    assert_eq!(resp.status, 200);
    assert_eq!(
        client
            .request(&raw("GET", "/channels/abs", "", None))
            .json()["retained"],
        1
    );
    // `OPTIONS *` names no route.
    assert_error(
        &client.request(&raw("OPTIONS", "*", "", None)),
        404,
        "not_found",
    );
    assert_error(
        &client.request(b"GET http://example.com HTTP/1.1\r\n\r\n"),
        400,
        "malformed_request",
    );
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    let mut bytes = Vec::new();
    bytes.extend(raw("POST", "/pub/pipe", "", Some(b"first")));
    bytes.extend(raw("GET", "/healthz", "", None));
    bytes.extend(raw(
        "POST",
        "/pub/pipe?event=second",
        "",
        Some(b"second body"),
    ));
    bytes.extend(b"POST /pub/pipe HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthird\r\n0\r\n\r\n");
    bytes.extend(raw("GET", "/nope", "", None));
    bytes.extend(raw("HEAD", "/healthz", "", None));
    bytes.extend(raw("GET", "/channels/pipe", "", None));
    client.send(&bytes);

    let first = client.read();
    let health = client.read();
    let second = client.read();
    let third = client.read();
    let missing = client.read();
    let head = client.read_head_only();
    let info = client.read();
    assert_eq!(first.json()["channel"], "pipe");
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(second.status, 200);
    assert_eq!(third.status, 200);
    let ids: Vec<u64> = [&first, &second, &third]
        .iter()
        .map(|r| {
            r.json()["id"]
                .as_str()
                .expect("id")
                .parse()
                .expect("digits")
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "published in order: {ids:?}"
    );
    assert_error(&missing, 404, "not_found");
    assert_eq!(head.status, 200);
    assert_eq!(info.json()["retained"], 3);
    assert_eq!(info.json()["last_id"], ids[2].to_string());
    // And the connection is still in step.
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
}

/// One `/metrics` reading, to watch a connection's pipelined requests being taken: the events published so far
/// (counted by the channel table as they happen, and not moved by these readings) and each worker's loop turns (from
/// the snapshot the worker publishes on each tick, so a change means that worker ticked since the last reading).
struct Progress {
    published: u64,
    turns: Vec<u64>,
}

impl Progress {
    fn read(addr: SocketAddr) -> Progress {
        let text = get(addr, "/metrics").text();
        let turns = metric_samples(&text, "spout_loop_turns_total");
        // Without it, "every worker ticked twice" would hold at once.
        assert!(!turns.is_empty(), "no spout_loop_turns_total: {text}");
        Progress {
            published: metric_samples(&text, "spout_events_published_total")
                .iter()
                .sum(),
            turns,
        }
    }
}

/// Writes as much of `bytes` as a non-blocking socket takes now; returns how much that was.
fn write_what_fits(stream: &mut TcpStream, bytes: &[u8]) -> usize {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("write pipelined requests: {e}"),
        }
    }
    sent
}

/// A client that pipelines requests but does not read the answers must not make the server queue answers
/// without bound: the server stops taking requests from it while its answers wait, and goes on as they are read.
///
/// Memory is measured once the server has read what it will, never after a guessed pause (after which a server
/// that had not read yet would pass): either it took every request, or requests it can read wait while every worker
/// ticks twice without taking one, so it holds them. Each pipelined pair is a publish and a `/metrics`; the publishes
/// count the pairs taken.
#[test]
fn pipelining_without_reading_answers_does_not_queue_without_bound() {
    const REQUESTS: usize = 10_000;
    let server = start_server(&[]);
    let pid = server.child.id();
    let mut client = Client::new(server.addr);
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
    let answer_len = client.request(&raw("GET", "/metrics", "", None)).body.len();
    let before = rss_kib(pid);
    let pair = [
        raw("POST", "/pub/pipelined", "", Some(b"x")),
        raw("GET", "/metrics", "", None),
    ]
    .concat();
    let all = pair.repeat(REQUESTS);
    let published_before = Progress::read(server.addr).published;
    let mut writer = client.reader.get_ref().try_clone().expect("clone");
    writer.set_nonblocking(true).expect("non-blocking");
    let mut sent = 0;
    // While the server has readable pairs and takes none: the count it stands at, and per worker its turns at the
    // last reading and the ticks seen since.
    let mut still: Option<(u64, Vec<u64>, Vec<u32>)> = None;
    let deadline = Instant::now() + WAIT;
    let taken = loop {
        sent += write_what_fits(&mut writer, &all[sent..]);
        let now = Progress::read(server.addr);
        let taken = now.published - published_before;
        if taken == REQUESTS as u64 {
            break taken;
        }
        // A whole pair beyond those taken has been sent: the server can read its publish.
        let readable = (sent / pair.len()) as u64 > taken;
        match &mut still {
            Some((published, turns, ticks)) if readable && *published == now.published => {
                for ((last, tick), turn) in turns.iter_mut().zip(ticks.iter_mut()).zip(&now.turns) {
                    if turn != last {
                        *last = *turn;
                        *tick += 1;
                    }
                }
                // Two ticks, not one: between them lies a whole tick interval of the worker, in which a connection
                // that is not holding reads its input (on the turn after its event, or the next, if it used its
                // read budget).
                if ticks.iter().all(|t| *t >= 2) {
                    break taken;
                }
            }
            _ => {
                still =
                    readable.then(|| (now.published, now.turns.clone(), vec![0; now.turns.len()]));
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server neither took all {REQUESTS} pipelined pairs nor held the rest: it took {taken} of the {} sent",
            sent / pair.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(taken > 0, "the server took none of the pipelined pairs");
    let grown = rss_kib(pid).saturating_sub(before);
    // Unbounded, the answers would take REQUESTS * answer_len (tens of MiB) minus what the socket buffers hold.
    assert!(
        grown < 16 * 1024,
        "server grew by {grown} KiB, having taken {taken} pipelined pairs (answers of {answer_len} bytes to the \
         /metrics of each) that nobody read"
    );
    writer.set_nonblocking(false).expect("blocking");
    let rest = all[sent..].to_vec();
    let writing = std::thread::spawn(move || {
        writer.write_all(&rest).expect("write pipelined requests");
    });
    for i in 0..REQUESTS {
        let published = client.read();
        assert_eq!(published.status, 200, "publish {i}: {}", published.text());
        let resp = client.read();
        assert_eq!(resp.status, 200, "answer {i}");
    }
    writing.join().expect("writer");
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
}

#[test]
fn pipelined_requests_split_at_odd_points_are_answered_in_order() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    let mut bytes = Vec::new();
    for i in 0..4 {
        bytes.extend(raw(
            "POST",
            "/pub/split",
            "",
            Some(format!("body number {i}").as_bytes()),
        ));
    }
    for piece in bytes.chunks(7) {
        client.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..4 {
        assert_eq!(client.read().status, 200);
    }
    assert_eq!(
        client
            .request(&raw("GET", "/channels/split", "", None))
            .json()["retained"],
        4
    );
}

#[test]
fn head_sends_headers_and_content_length_but_no_body() {
    let server = start_server(&[]);
    publish_id(server.addr, "h", "x");
    let mut client = Client::new(server.addr);
    for path in ["/healthz", "/metrics", "/channels", "/channels/h"] {
        let full = client.request(&raw("GET", path, "", None));
        client.send(&raw("HEAD", path, "", None));
        let head = client.read_head_only();
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(
            head.header("content-type"),
            full.header("content-type"),
            "{path}"
        );
        let length: usize = head
            .header("content-length")
            .expect("content-length")
            .parse()
            .expect("number");
        if path != "/metrics" {
            // /metrics moves between two requests; the others do not.
            assert_eq!(length, full.body.len(), "{path}");
        }
        assert!(length > 0, "{path}");
    }
    // No body followed the HEAD answers: the next response starts right away.
    let resp = client.request(&raw("GET", "/healthz", "", None));
    assert_eq!(resp.status, 200);
    // HEAD of an error carries the error's length and no body either.
    client.send(&raw("HEAD", "/channels/missing", "", None));
    let head = client.read_head_only();
    assert_eq!(head.status, 404);
    assert!(
        head.header("content-length")
            .expect("content-length")
            .parse::<usize>()
            .expect("number")
            > 0
    );
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
}

/// RFC 9110 §8.6: a HEAD response may carry `Content-Length` only with the length a GET would have sent. A GET of
/// `/sub/...` is an unbounded event stream without `Content-Length`, so `HEAD /sub/...` must not say 0.
#[test]
fn head_on_subscribe_claims_no_content_length() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    client.send(&raw("HEAD", "/sub/a,b", "", None));
    let head = client.read_head_only();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("content-length"), None, "{}", head.head);
    // No stream was opened and the connection is ready for the next request.
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
    assert_eq!(subscribers(server.addr, "a"), 0);
    // Validation still applies (the error's length, no body).
    let invalid = roundtrip(server.addr, &raw("HEAD", "/sub/a%20b", "", None));
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.header("content-type"), Some("application/json"));
    let length = invalid.header("content-length").expect("content-length");
    assert_eq!(
        length,
        get(server.addr, "/sub/a%20b").body.len().to_string()
    );
    // HTTP/1.0 without keep-alive: closes after the head.
    let mut old = Client::new(server.addr);
    old.send(b"HEAD /sub/a HTTP/1.0\r\n\r\n");
    let head = old.read_head_only();
    assert_eq!(head.header("connection"), Some("close"));
    assert_eq!(head.header("content-length"), None);
    old.expect_closed(WAIT);
}

// ---- bodies ----------------------------------------------------------------------------------------------------

#[test]
fn content_length_body_split_across_writes_with_pauses() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/slow", "");
    wait_for("subscription", || subscribers(server.addr, "slow") == 1);
    let mut client = Client::new(server.addr);
    client.send(b"POST /pub/slow HTTP/1.1\r\nHost: test\r\nContent-");
    std::thread::sleep(Duration::from_millis(50));
    client.send(b"Length: 11\r\n\r\nhel");
    std::thread::sleep(Duration::from_millis(50));
    client.send(b"lo ");
    std::thread::sleep(Duration::from_millis(50));
    client.send(b"world");
    let resp = client.read();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["subscribers"], 1);
    assert_eq!(sub.next_event().expect("event").data, "hello world");
}

#[test]
fn chunked_bodies_in_one_write_and_byte_by_byte() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/chunky", "");
    wait_for("subscription", || subscribers(server.addr, "chunky") == 1);
    let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
    let head = b"POST /pub/chunky HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";

    let mut client = Client::new(server.addr);
    client.send(&[&head[..], &body[..]].concat());
    assert_eq!(client.read().status, 200);
    assert_eq!(sub.next_event().expect("event").data, "hello 0123456789");

    client.send(head);
    for byte in body.iter() {
        client.send(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(client.read().status, 200);
    assert_eq!(sub.next_event().expect("event").data, "hello 0123456789");
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/ext", "");
    wait_for("subscription", || subscribers(server.addr, "ext") == 1);
    let mut client = Client::new(server.addr);
    let req = b"POST /pub/ext HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
        4;name=value;other=\"quoted\"\r\nWiki\r\n\
        5 ; spaced\r\npedia\r\n\
        0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let resp = client.request(req);
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The connection is in step after the trailers.
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
    assert_eq!(sub.next_event().expect("event").data, "Wikipedia");

    // Framing errors in the chunks are 400 bad_chunk and close.
    for bad in [
        &b"5\r\nhello\r\nX\r\n\r\n"[..],
        b"5\nhello\r\n0\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
        b"0\r\nbad trailer\r\n\r\n",
    ] {
        let mut req =
            b"POST /pub/ext HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(bad);
        assert_refused(server.addr, &req, 400, "bad_chunk");
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = start_server(&[]);
    let mut client = Client::new(server.addr);
    client.send(b"POST /pub/ask HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let mut interim = [0u8; 25];
    client
        .reader
        .read_exact(&mut interim)
        .expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"hello");
    let resp = client.read();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["channel"], "ask");

    // Chunked too.
    client.send(b"POST /pub/ask HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(client.read().status, 100);
    client.send(b"2\r\nhi\r\n0\r\n\r\n");
    assert_eq!(client.read().status, 200);

    // A client that sends the body without waiting gets no interim answer.
    let resp = client.request(b"POST /pub/ask HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(resp.status, 200);
    assert_eq!(
        client
            .request(&raw("GET", "/channels/ask", "", None))
            .json()["retained"],
        3
    );
}

#[test]
fn expect_100_continue_over_max_body_gets_413_at_once() {
    let server = start_server(&["--max-body", "1KiB", "--max-queued-bytes", "1MiB"]);
    let mut client = Client::new(server.addr);
    let started = Instant::now();
    client.send(b"POST /pub/big HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n");
    let resp = client.read();
    assert_error(&resp, 413, "body_too_large");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "413 without waiting for the body"
    );
    client.expect_closed(WAIT);

    // Exactly at the limit is fine.
    let mut client = Client::new(server.addr);
    client.send(b"POST /pub/big HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 1024\r\n\r\n");
    assert_eq!(client.read().status, 100);
    client.send(&[b'a'; 1024]);
    assert_eq!(client.read().status, 200);
}

#[test]
fn curl_with_expect_100_continue_and_a_large_body() {
    if !require_program("curl") {
        return;
    }
    let server = start_server(&[]);
    let path = std::env::temp_dir().join(format!("spout-http-test-{}.txt", std::process::id()));
    let body: String = (0..600 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(&path, &body).expect("write body file");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "10",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(server.url("/pub/upload"))
        .output()
        .expect("run curl");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert!(
        stderr.contains("HTTP/1.1 100 Continue"),
        "no interim answer: {stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(json["channel"], "upload");
    let info = get(server.addr, "/channels/upload").json();
    assert!(
        info["retained_bytes"].as_u64().expect("bytes") >= body.len() as u64,
        "{info}"
    );
}

// ---- request smuggling shapes ----------------------------------------------------------------------------------

#[test]
fn smuggling_shapes_are_refused_and_close() {
    let server = start_server(&[]);
    let before = published(server.addr);
    let cases: [(&str, &[u8], &str); 14] = [
        ("cl + te", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "conflicting_framing"),
        ("te + cl", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", "conflicting_framing"),
        ("two cl equal", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "bad_content_length"),
        ("two cl different", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "bad_content_length"),
        ("cl +5", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", "bad_content_length"),
        ("cl -1", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\nhello", "bad_content_length"),
        ("cl 5, 5", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello", "bad_content_length"),
        ("cl 0x5", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", "bad_content_length"),
        ("te gzip, chunked", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "bad_transfer_encoding"),
        ("te chunked, gzip", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "bad_transfer_encoding"),
        ("te identity", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\nhello", "bad_transfer_encoding"),
        ("two te", b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "bad_transfer_encoding"),
        ("te on 1.0", b"POST /pub/smuggle HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "bad_transfer_encoding"),
        (
            "cl + te hiding a second request",
            b"POST /pub/smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /pub/smuggled HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            "conflicting_framing",
        ),
    ];
    for (name, bytes, code) in cases {
        let mut client = Client::new(server.addr);
        client.send(bytes);
        let resp = client.read();
        assert_eq!(resp.status, 400, "{name}: {}", resp.head);
        assert_eq!(resp.json()["error"], code, "{name}");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        client.expect_closed(WAIT);
        // Other connections are still served.
        assert_eq!(get(server.addr, "/healthz").status, 200, "{name}");
    }
    assert_eq!(published(server.addr), before, "nothing was published");
    assert_eq!(get(server.addr, "/channels/smuggle").status, 404);
    assert_eq!(get(server.addr, "/channels/smuggled").status, 404);
    wait_for("bad requests counted", || {
        metric(server.addr, "spout_bad_requests_total") == cases.len() as u64
    });
}

// ---- limits ----------------------------------------------------------------------------------------------------

#[test]
fn head_over_8kib_gets_431() {
    let server = start_server(&[]);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    assert_refused(server.addr, big.as_bytes(), 431, "head_too_large");
    // An unfinished head that reaches the limit is refused without waiting for its end.
    let unfinished = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}",
        "a".repeat(9 * 1024)
    );
    assert_refused(server.addr, unfinished.as_bytes(), 431, "head_too_large");
    // The same across several writes.
    let mut client = Client::new(server.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nX-A: ");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(30));
        client.send(&[b'b'; 3000]);
    }
    assert_error(&client.read(), 431, "head_too_large");
    client.expect_closed(WAIT);
    // A head just under the limit is fine.
    let fits = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8 * 1024 - 100)
    );
    assert_eq!(roundtrip(server.addr, fits.as_bytes()).status, 200);
}

#[test]
fn too_many_headers_gets_431() {
    let server = start_server(&[]);
    let mut req = String::from("GET /healthz HTTP/1.1\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_refused(server.addr, req.as_bytes(), 431, "too_many_headers");
    let server = start_server(&["--max-headers", "4"]);
    assert_eq!(
        roundtrip(
            server.addr,
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"
        )
        .status,
        200
    );
    assert_refused(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
        431,
        "too_many_headers",
    );
}

#[test]
fn body_over_max_body_gets_413() {
    let server = start_server(&["--max-body", "1KiB", "--max-queued-bytes", "1MiB"]);
    let before = published(server.addr);
    assert_refused(
        server.addr,
        &raw("POST", "/pub/big", "", Some(&[b'a'; 1025])),
        413,
        "body_too_large",
    );
    // Announced but not sent: refused on the head alone.
    assert_refused(
        server.addr,
        b"POST /pub/big HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n",
        413,
        "body_too_large",
    );
    // Chunked: one chunk over the limit, and several that add up to more.
    assert_refused(
        server.addr,
        b"POST /pub/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n",
        413,
        "body_too_large",
    );
    let mut chunks =
        b"POST /pub/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunks.extend_from_slice(b"200\r\n");
        chunks.extend_from_slice(&[b'c'; 0x200]);
        chunks.extend_from_slice(b"\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    assert_refused(server.addr, &chunks, 413, "body_too_large");
    // Batches have the same limit.
    assert_refused(
        server.addr,
        &raw("POST", "/pub", "", Some(&[b' '; 2000])),
        413,
        "body_too_large",
    );
    assert_eq!(published(server.addr), before);
    // At the limit: accepted, both framings.
    assert_eq!(
        roundtrip(
            server.addr,
            &raw("POST", "/pub/big", "", Some(&[b'a'; 1024]))
        )
        .status,
        200
    );
    let mut at_limit =
        b"POST /pub/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n".to_vec();
    at_limit.extend_from_slice(&[b'a'; 1024]);
    at_limit.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(roundtrip(server.addr, &at_limit).status, 200);
}

#[test]
fn malformed_requests_and_garbage_get_400_and_close() {
    let server = start_server(&[]);
    let cases: [&[u8]; 9] = [
        b"GARBAGE\r\n\r\n",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz FOO/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nA: x\r\n folded\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz#frag HTTP/1.1\r\n\r\n",
    ];
    for bytes in cases {
        let mut client = Client::new(server.addr);
        client.send(bytes);
        let resp = client.read();
        assert_error(&resp, 400, "malformed_request");
        assert_eq!(resp.header("connection"), Some("close"));
        client.expect_closed(WAIT);
    }
    // A bad request behind a good one on the same connection: the good one is answered first.
    let mut client = Client::new(server.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nNONSENSE\x01\r\n\r\n");
    assert_eq!(client.read().status, 200);
    assert_error(&client.read(), 400, "malformed_request");
    client.expect_closed(WAIT);
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn http2_gets_505() {
    let server = start_server(&[]);
    assert_refused(
        server.addr,
        b"GET /healthz HTTP/2.0\r\n\r\n",
        505,
        "unsupported_version",
    );
    assert_refused(
        server.addr,
        b"GET /healthz HTTP/1.2\r\n\r\n",
        505,
        "unsupported_version",
    );
    assert_refused(
        server.addr,
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        505,
        "unsupported_version",
    );
}

#[test]
fn request_timeout_gives_408_for_an_unfinished_head_and_a_stalled_body() {
    let server = start_server(&["--request-timeout", "1s"]);
    let before = metric(server.addr, "spout_request_timeouts_total");

    let mut head = Client::new(server.addr);
    let started = Instant::now();
    head.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    let resp = head.read();
    assert_error(&resp, 408, "request_timeout");
    assert_eq!(resp.header("connection"), Some("close"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    head.expect_closed(WAIT);

    let mut body = Client::new(server.addr);
    body.send(b"POST /pub/stall HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_error(&body.read(), 408, "request_timeout");
    body.expect_closed(WAIT);

    let mut chunked = Client::new(server.addr);
    chunked
        .send(b"POST /pub/stall HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    assert_error(&chunked.read(), 408, "request_timeout");
    chunked.expect_closed(WAIT);

    // A body that keeps coming, a byte every 300 ms, is cut at the same deadline: progress does not restart it.
    let mut dribble = Client::new(server.addr);
    let started = Instant::now();
    dribble.send(b"POST /pub/stall HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    let writer = {
        let mut stream = dribble.reader.get_ref().try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(300));
                if stream.write_all(b"x").is_err() {
                    return;
                }
            }
        })
    };
    assert_error(&dribble.read(), 408, "request_timeout");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "a dribbled body held on for {waited:?}"
    );
    writer.join().expect("writer");

    // A connection that sends nothing at all has no complete head either.
    let mut silent = Client::new(server.addr);
    assert_error(&silent.read(), 408, "request_timeout");
    silent.expect_closed(WAIT);

    assert_eq!(get(server.addr, "/channels/stall").status, 404);
    wait_for("timeouts counted", || {
        metric(server.addr, "spout_request_timeouts_total") == before + 5
    });
}

/// A slow body is taken as long as the whole request arrives within `--request-timeout` of its start (a body
/// that takes longer is cut: `request_timeout_gives_408_for_an_unfinished_head_and_a_stalled_body`).
#[test]
fn a_slow_body_complete_within_the_request_timeout_is_taken() {
    let server = start_server(&["--request-timeout", "3s"]);
    let mut client = Client::new(server.addr);
    client.send(b"POST /pub/trickle HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n");
    for byte in b"abcdef" {
        std::thread::sleep(Duration::from_millis(200));
        client.send(std::slice::from_ref(byte));
    }
    assert_eq!(client.read().status, 200);
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let server = start_server(&["--keepalive-timeout", "1s", "--request-timeout", "5s"]);
    let mut client = Client::new(server.addr);
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
    let started = Instant::now();
    client.expect_closed(WAIT);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Activity before the deadline keeps it open.
    let mut client = Client::new(server.addr);
    for _ in 0..3 {
        assert_eq!(
            client.request(&raw("GET", "/healthz", "", None)).status,
            200
        );
        std::thread::sleep(Duration::from_millis(600));
    }
    assert_eq!(
        client.request(&raw("GET", "/healthz", "", None)).status,
        200
    );
    // A request under way is timed by --request-timeout, not by the keep-alive timeout.
    client.send(b"GET /healthz HTTP/1.1\r\n");
    client.expect_open(Duration::from_millis(1600));
    client.send(b"Host: t\r\n\r\n");
    assert_eq!(client.read().status, 200);
    assert_eq!(metric(server.addr, "spout_request_timeouts_total"), 0);
}

#[test]
fn max_connections_refuses_with_503_and_keeps_the_others() {
    let server = start_server(&["--max-connections", "3"]);
    let mut kept: Vec<Client> = (0..3).map(|_| Client::new(server.addr)).collect();
    for client in &mut kept {
        assert_eq!(
            client.request(&raw("GET", "/healthz", "", None)).status,
            200
        );
    }
    for _ in 0..2 {
        let mut refused = Client::new(server.addr);
        let resp = refused.read();
        assert_error(&resp, 503, "busy");
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert_eq!(resp.header("connection"), Some("close"));
        refused.expect_closed(WAIT);
    }
    for client in &mut kept {
        assert_eq!(
            client.request(&raw("GET", "/healthz", "", None)).status,
            200
        );
    }
    let refused_total = |client: &mut Client| {
        let text = client.request(&raw("GET", "/metrics", "", None)).text();
        text.lines()
            .filter(|l| l.starts_with("spout_connections_refused_total{"))
            .map(|l| {
                l.rsplit_once(' ')
                    .expect("sample")
                    .1
                    .parse::<u64>()
                    .expect("value")
            })
            .sum::<u64>()
    };
    wait_for("refusals counted", || refused_total(&mut kept[0]) == 2);
    // A slot frees when a client leaves.
    drop(kept.pop());
    wait_for("a free slot", || {
        let mut client = Client::new(server.addr);
        client.send(&raw("GET", "/healthz", "", None));
        client.read().status == 200
    });
}

#[test]
fn max_subscriptions_per_stream() {
    let server = start_server(&["--max-subscriptions", "2"]);
    let resp = get(server.addr, "/sub/a,b,c");
    assert_error(&resp, 400, "too_many_subscriptions");
    assert_eq!(subscribers(server.addr, "a"), 0);
    let _ok = sse_subscribe(server.addr, "/sub/a,b", "");
    // Repeated names count once.
    let _dup = sse_subscribe(server.addr, "/sub/a,b,a", "");
    wait_for("two streams on a", || subscribers(server.addr, "a") == 2);
}

#[test]
fn max_channels_refuses_a_new_channel_with_503() {
    let server = start_server(&["--max-channels", "2"]);
    publish_id(server.addr, "one", "x");
    let _sub = sse_subscribe(server.addr, "/sub/two", "");
    let resp = publish(server.addr, "three", "x");
    assert_error(&resp, 503, "too_many_channels");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_error(&get(server.addr, "/sub/four"), 503, "too_many_channels");
    // Existing channels still work.
    publish_id(server.addr, "one", "y");
    publish_id(server.addr, "two", "y");
    // Deleting one frees a slot.
    assert_eq!(
        request(server.addr, "DELETE", "/channels/one", "", b"").status,
        200
    );
    publish_id(server.addr, "three", "x");
}

#[test]
fn invalid_channels_bodies_and_batches_get_400() {
    let server = start_server(&[]);
    let long = "c".repeat(129);
    for path in [
        "/sub/a%20b",
        "/sub/a,,b",
        "/sub/",
        &format!("/sub/{long}"),
        "/sub/caf%C3%A9",
    ] {
        assert_error(&get(server.addr, path), 400, "invalid_channel");
    }
    for path in ["/pub/", "/pub/a%20b", "/pub/a,b", &format!("/pub/{long}")] {
        assert_error(
            &request(server.addr, "POST", path, "", b"x"),
            400,
            "invalid_channel",
        );
    }
    assert_eq!(publish(server.addr, &"c".repeat(128), "x").status, 200);

    let before = published(server.addr);
    assert_error(
        &request(
            server.addr,
            "POST",
            "/pub/bin",
            "",
            b"ok \xff\xfe not utf-8",
        ),
        400,
        "invalid_utf8",
    );
    assert_error(
        &publish(server.addr, "a?event=bad%0Aname", "x"),
        400,
        "invalid_event",
    );
    assert_error(
        &publish(server.addr, "a?event=%zz", "x"),
        400,
        "invalid_query",
    );
    assert_error(
        &publish(server.addr, "a?to=a%20b", "x"),
        400,
        "invalid_client_id",
    );
    for body in [
        &b"{"[..],
        b"",
        b"not json",
        b"[]",
        br#"{"events":"x"}"#,
        br#"{"events":[{"channel":"a"}]}"#,
        br#"{"events":[],"extra":1}"#,
    ] {
        assert_error(
            &request(server.addr, "POST", "/pub", "", body),
            400,
            "invalid_json",
        );
    }
    assert_error(
        &request(server.addr, "POST", "/pub", "", br#"{"events":[]}"#),
        400,
        "invalid_batch",
    );
    // The second event is invalid: nothing of the batch is published.
    let batch = br#"{"events":[{"channel":"x","data":"fine"},{"channel":"bad name","data":"no"}]}"#;
    let resp = request(server.addr, "POST", "/pub", "", batch);
    assert_error(&resp, 400, "invalid_channel");
    assert!(
        resp.json()["message"]
            .as_str()
            .expect("message")
            .contains("events[1]"),
        "{}",
        resp.text()
    );
    let batch =
        br#"{"events":[{"channel":"x","data":"fine"},{"channel":"y","event":"a\nb","data":"no"}]}"#;
    assert_error(
        &request(server.addr, "POST", "/pub", "", batch),
        400,
        "invalid_event",
    );
    assert_error(&get(server.addr, "/channels/x"), 404, "channel_not_found");
    assert_eq!(
        published(server.addr),
        before,
        "no event of a refused request was published"
    );
}

// ---- publish auth ----------------------------------------------------------------------------------------------

#[test]
fn publish_key_guards_publishing_and_channel_admin() {
    let server = start_server(&["--publish-key", "s3cret"]);
    let addr = server.addr;
    let good = "Authorization: Bearer s3cret\r\n";
    let denied: [&str; 5] = [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer s3cre\r\n",
        "Authorization: Basic czNjcmV0\r\n",
        "Authorization: s3cret\r\n",
    ];
    let batch = br#"{"events":[{"channel":"locked","data":"x"}]}"#;
    let before = published(addr);
    for auth in denied {
        for resp in [
            request(addr, "POST", "/pub/locked", auth, b"x"),
            request(addr, "POST", "/pub", auth, batch),
            request(addr, "GET", "/channels", auth, b""),
            request(addr, "GET", "/channels/locked", auth, b""),
            request(addr, "DELETE", "/channels/locked", auth, b""),
        ] {
            assert_error(&resp, 401, "unauthorized");
            assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{auth:?}");
        }
    }
    assert_eq!(published(addr), before);

    // Subscribing, health and metrics stay open.
    let mut sub = sse_subscribe(addr, "/sub/locked", "");
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/metrics").status, 200);

    let resp = request(addr, "POST", "/pub/locked", good, b"let in");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(sub.next_event().expect("event").data, "let in");
    assert_eq!(request(addr, "POST", "/pub", good, batch).status, 200);
    assert_eq!(request(addr, "GET", "/channels", good, b"").status, 200);
    assert_eq!(
        request(addr, "GET", "/channels/locked", good, b"").status,
        200
    );
    assert_eq!(
        request(addr, "DELETE", "/channels/locked", good, b"").status,
        200
    );
}

/// RFC 9110 §11.1: the authentication scheme is a case-insensitive token, so `bearer` is `Bearer`.
#[test]
fn bearer_scheme_is_case_insensitive() {
    let server = start_server(&["--publish-key", "s3cret"]);
    for auth in [
        "Authorization: bearer s3cret\r\n",
        "Authorization: BEARER s3cret\r\n",
    ] {
        let resp = request(server.addr, "POST", "/pub/x", auth, b"x");
        assert_eq!(resp.status, 200, "{auth:?}: {}", resp.text());
    }
    // The key itself is case-sensitive.
    assert_error(
        &request(
            server.addr,
            "POST",
            "/pub/x",
            "Authorization: Bearer S3CRET\r\n",
            b"x",
        ),
        401,
        "unauthorized",
    );
}

// ---- configuration errors --------------------------------------------------------------------------------------

/// Arguments, environment, and what stderr must name.
type ConfigCase = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn configuration_errors_name_the_key_and_exit_2() {
    let cases: [ConfigCase; 5] = [
        (&["--max-body", "3x"], &[], "--max-body"),
        (&[], &[("SPOUT_MAX_BODY", "3x")], "SPOUT_MAX_BODY"),
        (
            &["--max-queued-bytes", "1KiB", "--max-body", "1MiB"],
            &[],
            "--max-queued-bytes",
        ),
        (&["--request-timeout", "10"], &[], "--request-timeout"),
        (&["--max-body", "1.5MiB"], &[], "--max-body"),
    ];
    for (args, env, needle) in cases {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (code, stderr) = start_failure(&all, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} {env:?}: {needle} not in {stderr}"
        );
    }
    // An API spout does not know (which APIs a build serves grows, so none is named here as missing).
    let (code, stderr) = start_failure(&["--listen", "127.0.0.1:0=nope"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--listen") && stderr.contains("nope"),
        "{stderr}"
    );
}

#[test]
fn a_port_already_served_is_refused_not_shared() {
    // SO_REUSEPORT would let a second spout join the first one's port and take half of its new connections.
    let server = start_server(&["--workers", "1"]);
    let port = server.addr.port().to_string();
    for host in ["127.0.0.1", "0.0.0.0"] {
        let listen = format!("{host}:{port}");
        let (code, stderr) = start_failure(&["--listen", &listen], &[]);
        assert_eq!(code, Some(1), "{listen}: {stderr}");
        assert!(
            stderr.contains(&listen) && stderr.contains("already in use"),
            "{listen}: {stderr}"
        );
    }
    // Every new connection still reaches the first server.
    let mut streams: Vec<Sse> = (0..8)
        .map(|_| sse_subscribe(server.addr, "/sub/solo", ""))
        .collect();
    let answer = publish(server.addr, "solo", "one");
    assert_eq!(answer.json()["subscribers"], 8, "{}", answer.text());
    for stream in &mut streams {
        assert_eq!(stream.next_event().expect("event").data, "one");
    }
}

// ---- the publish answer ----------------------------------------------------------------------------------------

#[test]
fn publish_answer_counts_subscribers_and_ids_increase() {
    let server = start_server(&[]);
    let addr = server.addr;
    let first = publish(addr, "news", "nobody listens");
    assert_eq!(first.status, 200);
    let json = first.json();
    assert_eq!(json.as_object().expect("object").len(), 3, "{json}");
    assert_eq!(json["channel"], "news");
    assert_eq!(json["subscribers"], 0);
    let id = json["id"].as_str().expect("id is a string");
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );

    let _a = sse_subscribe(addr, "/sub/news?client_id=a", "");
    let _c = sse_subscribe(addr, "/sub/news,other?client_id=c", "");
    let _other = sse_subscribe(addr, "/sub/other", "");
    wait_for("subscriptions", || subscribers(addr, "news") == 2);
    assert_eq!(publish(addr, "news", "x").json()["subscribers"], 2);
    assert_eq!(publish(addr, "other", "x").json()["subscribers"], 2);
    assert_eq!(publish(addr, "news?to=a,b", "x").json()["subscribers"], 1);
    assert_eq!(publish(addr, "news?to=b", "x").json()["subscribers"], 0);
    assert_eq!(publish(addr, "news?to=a,c,a", "x").json()["subscribers"], 2);

    let mut last = 0u64;
    for i in 0..20 {
        let channel = if i % 2 == 0 { "news" } else { "other" };
        let id: u64 = publish_id(addr, channel, "x").parse().expect("digits");
        assert!(id > last, "{id} after {last}");
        last = id;
    }
}

// ---- garbage ---------------------------------------------------------------------------------------------------

#[test]
fn garbage_loop_leaves_every_worker_serving() {
    let server = start_server(&["--request-timeout", "1s"]);
    let addr = server.addr;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = XorShift(0x2545_F491_4F6C_DD1D ^ (t + 1));
                for i in 0..50 {
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        panic!("connect failed")
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let len = 1 + (rng.next() % 2048) as usize;
                    let garbage = rng.bytes(len);
                    let _ = stream.write_all(&garbage);
                    if i % 5 == 0 {
                        // Garbage then a valid request: whatever the answer, it comes and the connection ends.
                        let _ =
                            stream.write_all(b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
                        let mut reader = BufReader::new(stream);
                        let rest = read_rest(&mut reader, Duration::from_secs(5));
                        assert!(
                            rest.is_empty() || rest.starts_with(b"HTTP/1.1 "),
                            "{:?}",
                            String::from_utf8_lossy(&rest)
                        );
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("garbage thread");
    }
    // Every worker still answers: enough fresh connections land on both.
    for _ in 0..20 {
        assert_eq!(get(addr, "/healthz").status, 200);
    }
    let mut sub = sse_subscribe(addr, "/sub/after-garbage", "");
    wait_for("subscription", || subscribers(addr, "after-garbage") == 1);
    publish_id(addr, "after-garbage", "still alive");
    assert_eq!(sub.next_event().expect("event").data, "still alive");
    assert!(server_alive(&server));
}

fn server_alive(server: &Server) -> bool {
    Command::new("kill")
        .arg("-0")
        .arg(server.child.id().to_string())
        .status()
        .is_ok_and(|s| s.success())
}

// ---- /metrics --------------------------------------------------------------------------------------------------

/// Checks one exposition sample line: `name{labels} integer` or `name integer`.
fn check_sample(line: &str) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (
            name,
            Some(
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}")),
            ),
        ),
        None => (series, None),
    };
    // A histogram's sum is in seconds; every other sample counts something.
    if name.ends_with("_sum") {
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
    } else {
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("not an integer: {line:?}"));
    }
    let mut chars = name.chars();
    assert!(
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':'),
        "bad name: {line:?}"
    );
    assert!(
        chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad name: {line:?}"
    );
    if let Some(labels) = labels {
        for label in labels.split(',') {
            let (key, value) = label
                .split_once('=')
                .unwrap_or_else(|| panic!("bad label: {line:?}"));
            assert!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label: {line:?}"
            );
            assert!(
                value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
                "bad label value: {line:?}"
            );
        }
    }
}

#[test]
fn metrics_parse_and_counters_move() {
    let server = start_server(&["--request-timeout", "1s"]);
    let addr = server.addr;
    let text = get(addr, "/metrics").text();
    let mut samples = 0;
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type line");
            assert!(
                kind == "counter" || kind == "gauge" || kind == "histogram",
                "{line}"
            );
            typed.insert(name.to_string());
        } else if !line.starts_with("# HELP ") {
            check_sample(line);
            let name = line.split(['{', ' ']).next().expect("name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "sample before its TYPE: {line}");
            samples += 1;
        }
    }
    assert!(samples > 20, "{text}");
    for name in [
        "spout_requests_total",
        "spout_bad_requests_total",
        "spout_request_timeouts_total",
        "spout_connections_refused_total",
        "spout_events_published_total",
        "spout_table_lock_hold_seconds",
    ] {
        assert!(typed.contains(name), "{name} missing");
    }
    let lock_holds = |op: &str| {
        metric(
            addr,
            &format!("spout_table_lock_hold_seconds_count{{op=\"{op}\"}}"),
        )
    };
    let publish_holds = lock_holds("publish");

    let requests = metric(addr, "spout_requests_total");
    let bad = metric(addr, "spout_bad_requests_total");
    let timeouts = metric(addr, "spout_request_timeouts_total");
    let events = published(addr);
    for _ in 0..3 {
        publish_id(addr, "m", "x");
    }
    assert_refused(addr, b"BROKEN\r\n\r\n", 400, "malformed_request");
    assert_refused(addr, b"GET / HTTP/2.0\r\n\r\n", 505, "unsupported_version");
    let mut slow = Client::new(addr);
    slow.send(b"GET /healthz HTTP/1.1\r\n");
    assert_error(&slow.read(), 408, "request_timeout");

    assert_eq!(published(addr), events + 3);
    // Each publish held the table's lock once, and the histogram counts it at once (it is the table's own).
    assert_eq!(lock_holds("publish"), publish_holds + 3);
    wait_for("requests counted", || {
        metric(addr, "spout_requests_total") >= requests + 4
    });
    wait_for("bad requests counted", || {
        metric(addr, "spout_bad_requests_total") == bad + 2
    });
    wait_for("timeouts counted", || {
        metric(addr, "spout_request_timeouts_total") == timeouts + 1
    });
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with two, is answered 400 and the connection
/// closed, on every listener in its API's own refusal style; HTTP/1.0 may leave `Host` out.
#[test]
fn missing_or_repeated_host_gets_400_in_each_apis_style() {
    let apis = [
        "native", "pipely", "node-sse", "flychat", "ws-push", "keker",
    ];
    let listen: Vec<String> = apis
        .iter()
        .map(|api| format!("127.0.0.1:0={api}"))
        .collect();
    let mut args = Vec::new();
    for spec in &listen {
        args.extend(["--listen", spec.as_str()]);
    }
    let server = start_server(&args);
    let shapes: [(&str, &[u8]); 4] = [
        ("no Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        (
            "two Hosts in 1.0",
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
        ),
        ("a Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
    ];
    for (api, addr) in apis.iter().zip(&server.addrs) {
        for (shape, raw) in shapes {
            let mut client = Client::new(*addr);
            client.send(raw);
            let resp = client.read();
            assert_eq!(resp.status, 400, "{api}, {shape}: {}", resp.head);
            let body = resp.text();
            let styled = match *api {
                "native" => resp.json()["error"] == "bad_host",
                "pipely" | "keker" => body == "400 Bad Request",
                "node-sse" => resp.header("x-powered-by") == Some("Express"),
                "flychat" => body == "Bad Request\n",
                "ws-push" => body.starts_with("<h1>400 Bad Request</h1>"),
                _ => unreachable!(),
            };
            assert!(
                styled,
                "{api}, {shape}: not in its style: {}{body}",
                resp.head
            );
            client.expect_closed(WAIT);
        }
    }
    // HTTP/1.0 without Host is fine.
    let resp = roundtrip(server.addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.head);
    wait_for("the refusals counted", || {
        metric(server.addr, "spout_bad_requests_total") == 24
    });
}

/// `GET /channels` in pages: `?limit=` channels each, in name order, `next` the cursor of the following page until
/// the last; bad limits and cursors are `400 invalid_query`.
#[test]
fn channel_listing_comes_in_pages_with_a_cursor() {
    let server = start_server(&[]);
    for name in ["e", "a", "d", "b", "c"] {
        publish_id(server.addr, name, "x");
    }
    let mut names = Vec::new();
    let mut path = "/channels?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = get(server.addr, &path).json();
        pages += 1;
        for entry in page["channels"].as_array().expect("channels") {
            names.push(entry["channel"].as_str().expect("name").to_string());
        }
        match page["next"].as_str() {
            Some(cursor) => path = format!("/channels?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
    // The default page holds them all, and says nothing more.
    let all = get(server.addr, "/channels").json();
    assert_eq!(all["channels"].as_array().map(Vec::len), Some(5));
    assert!(all.get("next").is_none(), "{all}");
    for bad in [
        "limit=0",
        "limit=5001",
        "limit=-1",
        "limit=x",
        "cursor=zz",
        "cursor=6",
    ] {
        let resp = get(server.addr, &format!("/channels?{bad}"));
        assert_error(&resp, 400, "invalid_query");
    }
}

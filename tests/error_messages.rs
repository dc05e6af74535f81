//! The native API's error messages tell a client what was wrong and how to fix it: a body over the limit names
//! the limit in bytes and the option that sets it. Against the real binary over raw sockets.

mod common;

use std::io::{BufReader, Write};
use std::net::SocketAddr;

use common::*;

/// A spout with one worker.
fn start(args: &[&str]) -> Server {
    let mut all = vec!["--workers", "1"];
    all.extend_from_slice(args);
    start_server(&all)
}

/// Sends `raw` (which asks for `Connection: close`) and returns the status and the JSON body of the answer.
fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = connect(addr);
    // The server may answer and close before it has read everything sent; what it answered is what counts.
    let _ = stream.write_all(raw);
    let answer = read_response(&mut BufReader::new(stream), false);
    (answer.status, answer.json())
}

fn assert_names_the_body_limit(status: u16, body: &serde_json::Value, limit: usize) {
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "body_too_large", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(&format!("{limit} bytes")), "{message}");
    assert!(message.contains("--max-body"), "{message}");
}

#[test]
fn body_too_large_names_the_limit_and_the_option() {
    let server = start(&["--max-body", "1KiB"]);

    // Announced by Content-Length: refused before the body is read.
    let head =
        "POST /pub/news HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n";
    let (status, body) = exchange(server.addr, head.as_bytes());
    assert_names_the_body_limit(status, &body, 1024);

    // Found while decoding a chunked body.
    let mut raw =
        b"POST /pub/news HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b'x'; 0x200]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = exchange(server.addr, &raw);
    assert_names_the_body_limit(status, &body, 1024);

    // The default limit is named in bytes too.
    let server = start(&[]);
    let head = "POST /pub/news HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n";
    let (status, body) = exchange(server.addr, head.as_bytes());
    assert_names_the_body_limit(status, &body, 1 << 20);
}

/// Sends one request on its own connection and returns the status and JSON body.
fn request_json(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    exchange(addr, raw.as_bytes())
}

fn assert_invalid_query(answer: (u16, serde_json::Value), needles: &[&str]) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_query", "{body}");
    let message = body["message"].as_str().expect("message");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[test]
fn an_unknown_query_key_is_refused_with_the_keys_the_route_takes() {
    let server = start(&[]);
    let addr = server.addr;

    // A typo in a publish: refused, and nothing is published (the channel does not come to exist).
    assert_invalid_query(
        request_json(addr, "POST", "/pub/news?evnt=greet", "", "hello"),
        &["'evnt'", "POST /pub/{channel}", "event, to"],
    );
    let (status, body) = request_json(addr, "GET", "/channels/news", "", "");
    assert_eq!(status, 404, "nothing was published: {body}");

    // A typo in a subscribe, over SSE and as a WebSocket upgrade.
    assert_invalid_query(
        request_json(addr, "GET", "/sub/news?clientid=x", "", ""),
        &[
            "'clientid'",
            "GET /sub/{channels}",
            "client_id, last_event_id",
        ],
    );
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    assert_invalid_query(
        request_json(addr, "GET", "/sub/news?clientid=x", upgrade, ""),
        &["'clientid'", "client_id"],
    );

    // Routes that read no query say so; `GET /channels` takes `api`.
    assert_invalid_query(
        request_json(
            addr,
            "POST",
            "/pub?event=x",
            "",
            r#"{"events":[{"channel":"a","data":"b"}]}"#,
        ),
        &["'event'", "POST /pub takes no query keys"],
    );
    assert_invalid_query(
        request_json(addr, "GET", "/channels?chanel=news", "", ""),
        &["'chanel'", "GET /channels takes api"],
    );
    assert_invalid_query(
        request_json(addr, "DELETE", "/channels/news?force=1", "", ""),
        &["'force'", "DELETE /channels/{channel} takes no query keys"],
    );
    assert_invalid_query(
        request_json(addr, "GET", "/channels/news?verbose", "", ""),
        &["'verbose'", "GET /channels/{channel}"],
    );
    let (_, body) = request_json(addr, "GET", "/channels?api=native", "", "");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("unknown query key"),
        "api is a key of GET /channels: {body}"
    );

    // Health checks and scrapers may add what they like.
    let (status, body) = request_json(addr, "GET", "/healthz?probe=1", "", "");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_repeated_query_key_is_refused_instead_of_taking_the_first() {
    let server = start(&[]);
    let addr = server.addr;
    assert_invalid_query(
        request_json(addr, "POST", "/pub/news?event=a&event=b", "", "hello"),
        &["'event'", "more than once", "event, to"],
    );
    // Percent-encoding does not hide a repeat: keys are compared decoded.
    assert_invalid_query(
        request_json(addr, "GET", "/sub/news?client_id=a&client%5Fid=b", "", ""),
        &["'client_id'", "more than once"],
    );
    let (status, body) = request_json(addr, "GET", "/channels/news", "", "");
    assert_eq!(status, 404, "nothing was published: {body}");
}

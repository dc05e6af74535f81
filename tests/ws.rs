//! Native WebSocket subscribers over real sockets: the handshake byte for byte, events as JSON text frames,
//! resume, `reset`, deletion, targeted events, control frames and the close handshake, every protocol error with
//! its close code, the server's ping and timeout, drain, and a real client (the npm `ws` package).

mod common;

use std::io::{BufRead, BufReader};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The exact JSON of an event message, keys in the documented order.
fn event_json(id: &str, channel: &str, event: Option<&str>, data: &str) -> String {
    let mut v = serde_json::Map::new();
    v.insert("id".into(), json!(id));
    v.insert("channel".into(), json!(channel));
    if let Some(event) = event {
        v.insert("event".into(), json!(event));
    }
    v.insert("data".into(), json!(data));
    Value::Object(v).to_string()
}

#[test]
fn a_good_upgrade_is_answered_with_these_exact_bytes() {
    let server = start_server(&[]);
    let (stream, head) = ws_upgrade(server.addr, "/sub/news?client_id=c1", "");
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {WS_ACCEPT}\r\nSpout-Client-Id: c1\r\n\r\n"
        )
    );
    let mut ws = Ws { stream };
    let open = ws.read_frame();
    assert_eq!(open.b0, 0x81);
    assert!(!open.masked);
    assert_eq!(open.text(), r#"{"event":"open","client_id":"c1"}"#);
    wait_for("the subscription", || subscribers(server.addr, "news") == 1);
}

#[test]
fn tokens_are_case_insensitive_and_connection_may_list_several() {
    let server = start_server(&[]);
    // One line listing both tokens, or one line each (RFC 9110 §5.3: several lines of a field form one list).
    for connection in [
        "connection: keep-alive, UPGRADE\r\n",
        "Connection: keep-alive\r\nConnection: Upgrade\r\n",
    ] {
        let raw = format!(
            "GET /sub/a HTTP/1.1\r\nHost: t\r\nupgrade: WebSocket\r\n{connection}\
             sec-websocket-key: {WS_KEY}\r\nsec-websocket-version: 13\r\n\r\n"
        );
        let mut stream = connect(server.addr);
        std::io::Write::write_all(&mut stream, raw.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert_eq!(
            status, "HTTP/1.1 101 Switching Protocols\r\n",
            "{connection:?}"
        );
    }
}

#[test]
fn bad_upgrades_are_refused_with_400_and_the_version_we_speak() {
    let server = start_server(&[]);
    let base = |method: &str, version: &str, key: &str, connection: &str| {
        format!(
            "{method} /sub/a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n{connection}{version}{key}\r\n"
        )
    };
    let key = format!("Sec-WebSocket-Key: {WS_KEY}\r\n");
    let cases = [
        (
            "version 8",
            base(
                "GET",
                "Sec-WebSocket-Version: 8\r\n",
                &key,
                "Connection: Upgrade\r\n",
            ),
        ),
        (
            "no version",
            base("GET", "", &key, "Connection: Upgrade\r\n"),
        ),
        (
            "no key",
            base(
                "GET",
                "Sec-WebSocket-Version: 13\r\n",
                "",
                "Connection: Upgrade\r\n",
            ),
        ),
        (
            "short key",
            base(
                "GET",
                "Sec-WebSocket-Version: 13\r\n",
                "Sec-WebSocket-Key: abc=\r\n",
                "Connection: Upgrade\r\n",
            ),
        ),
        (
            "no Connection: Upgrade",
            base(
                "GET",
                "Sec-WebSocket-Version: 13\r\n",
                &key,
                "Connection: keep-alive\r\n",
            ),
        ),
        (
            "HEAD",
            base(
                "HEAD",
                "Sec-WebSocket-Version: 13\r\n",
                &key,
                "Connection: Upgrade\r\n",
            ),
        ),
    ];
    for (name, raw) in cases {
        let resp = roundtrip(server.addr, raw.as_bytes());
        assert_eq!(resp.status, 400, "{name}: {}", resp.head);
        assert_eq!(resp.header("sec-websocket-version"), Some("13"), "{name}");
        if name != "HEAD" {
            assert_eq!(resp.json()["error"], "bad_websocket_upgrade", "{name}");
        }
    }
    // Not GET on the subscribe route: the route's own answer.
    let resp = roundtrip(
        server.addr,
        format!("POST /sub/a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 405);
    // An upgrade to something else is not a WebSocket: plain SSE.
    let sse = sse_subscribe(
        server.addr,
        "/sub/a",
        "Upgrade: h2c\r\nConnection: Upgrade\r\n",
    );
    drop(sse);
}

#[test]
fn with_an_origin_list_a_foreign_page_cannot_upgrade() {
    let server = start_server(&["--cors-origin", "https://app.example"]);
    let (_ok, _) = ws_connect(server.addr, "/sub/o", "Origin: https://app.example\r\n");
    let (_no_origin, _) = ws_connect(server.addr, "/sub/o", "");
    let (stream, head) = ws_upgrade(server.addr, "/sub/o", "Origin: https://evil.example\r\n");
    drop(stream);
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
}

#[test]
fn garbage_after_the_upgrade_closes_that_stream_and_nothing_else() {
    let server = start_server(&[]);
    let (mut watcher, _) = ws_connect(server.addr, "/sub/g", "");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..50 {
        let (mut ws, _) = ws_connect(server.addr, "/sub/g", "");
        let len = 1 + round * 7;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        ws.send_raw(&garbage);
        drop(ws);
    }
    let id = publish_id(server.addr, "g", "still serving");
    assert_eq!(
        watcher.next_text(),
        event_json(&id, "g", None, "still serving")
    );
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn events_arrive_as_exact_json_text_frames() {
    let server = start_server(&[]);
    let (mut ws, _) = ws_connect(server.addr, "/sub/a,b", "");
    wait_for("the subscription", || subscribers(server.addr, "b") == 1);
    let id1 = publish_id(server.addr, "a?event=greet", "hello");
    let id2 = publish_id(
        server.addr,
        "b",
        "line 1\nline 2\r\n\"quoted\" \u{e9}\u{1F600}",
    );
    assert_eq!(
        ws.next_text(),
        event_json(&id1, "a", Some("greet"), "hello")
    );
    assert_eq!(
        ws.next_text(),
        event_json(
            &id2,
            "b",
            None,
            "line 1\nline 2\r\n\"quoted\" \u{e9}\u{1F600}"
        )
    );
    // A large event takes the 16-bit length form.
    let big = "x".repeat(70_000);
    let id3 = publish_id(server.addr, "a", &big);
    assert_eq!(ws.next_text(), event_json(&id3, "a", None, &big));
}

#[test]
fn targeted_events_reach_only_their_recipients() {
    let server = start_server(&[]);
    let (mut x, _) = ws_connect(server.addr, "/sub/t?client_id=x", "");
    let (mut y, _) = ws_connect(server.addr, "/sub/t?client_id=y", "");
    wait_for("both subscriptions", || subscribers(server.addr, "t") == 2);
    let private = publish_id(server.addr, "t?to=x", "for x");
    let all = publish_id(server.addr, "t", "for all");
    assert_eq!(x.next_text(), event_json(&private, "t", None, "for x"));
    assert_eq!(x.next_text(), event_json(&all, "t", None, "for all"));
    assert_eq!(y.next_text(), event_json(&all, "t", None, "for all"));
}

#[test]
fn resume_with_last_event_id_in_the_query_or_the_header() {
    let server = start_server(&[]);
    let (mut first, _) = ws_connect(server.addr, "/sub/r", "");
    wait_for("the subscription", || subscribers(server.addr, "r") == 1);
    let ids: Vec<String> = (1..=4)
        .map(|i| publish_id(server.addr, "r", &format!("e{i}")))
        .collect();
    assert_eq!(first.next_json()["id"], ids[0].as_str());
    drop(first);
    // Browsers cannot set headers on a WebSocket: the query carries the last id.
    let (mut again, _) = ws_connect(server.addr, &format!("/sub/r?last_event_id={}", ids[0]), "");
    for (i, id) in ids.iter().enumerate().skip(1) {
        assert_eq!(
            again.next_text(),
            event_json(id, "r", None, &format!("e{}", i + 1))
        );
    }
    // Live after the replay, with no gap and no duplicate.
    let live = publish_id(server.addr, "r", "live");
    assert_eq!(again.next_text(), event_json(&live, "r", None, "live"));
    // The header works too.
    let (mut by_header, _) = ws_connect(
        server.addr,
        "/sub/r",
        &format!("Last-Event-ID: {}\r\n", ids[2]),
    );
    assert_eq!(by_header.next_json()["id"], ids[3].as_str());
    assert_eq!(by_header.next_json()["id"], live.as_str());
}

#[test]
fn a_resume_past_the_history_gets_a_reset_message_first() {
    let server = start_server(&["--history", "2"]);
    let ids: Vec<String> = (1..=5)
        .map(|i| publish_id(server.addr, "h", &format!("e{i}")))
        .collect();
    let (mut ws, _) = ws_connect(server.addr, &format!("/sub/h?last_event_id={}", ids[0]), "");
    assert_eq!(
        ws.next_text(),
        r#"{"event":"reset","reason":"evicted","channels":["h"]}"#
    );
    assert_eq!(ws.next_text(), event_json(&ids[3], "h", None, "e4"));
    assert_eq!(ws.next_text(), event_json(&ids[4], "h", None, "e5"));
    // An id that cannot be parsed is a reset too.
    let (mut bad, _) = ws_connect(server.addr, "/sub/h?last_event_id=nope", "");
    let reset = bad.next_json();
    assert_eq!(reset["event"], "reset");
    assert_eq!(reset["reason"], "invalid");
}

#[test]
fn deleting_the_last_channel_sends_deleted_then_a_normal_close() {
    let server = start_server(&[]);
    let (mut one, _) = ws_connect(server.addr, "/sub/d", "");
    let (mut two, _) = ws_connect(server.addr, "/sub/d,keep", "");
    wait_for("the subscriptions", || subscribers(server.addr, "d") == 2);
    publish_id(server.addr, "d", "before");
    assert_eq!(one.next_json()["data"], "before");
    assert_eq!(two.next_json()["data"], "before");
    let resp = request(server.addr, "DELETE", "/channels/d", "", b"");
    assert_eq!(resp.status, 200);
    assert_eq!(one.next_text(), r#"{"event":"deleted","channel":"d"}"#);
    let rest = one.read_to_end();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].close_code(), Some(1000));
    // A stream with a channel left stays open.
    assert_eq!(two.next_text(), r#"{"event":"deleted","channel":"d"}"#);
    let id = publish_id(server.addr, "keep", "still here");
    assert_eq!(two.next_text(), event_json(&id, "keep", None, "still here"));
}

#[test]
fn ping_is_answered_with_pong_and_close_with_close() {
    let server = start_server(&[]);
    let (mut ws, _) = ws_connect(server.addr, "/sub/p", "");
    ws.send(0x89, b"are you there");
    let pong = ws.read_frame();
    assert_eq!(
        (pong.b0, pong.payload.as_slice()),
        (0x8A, &b"are you there"[..])
    );
    // RFC 6455 §5.5: 125 bytes is the most a control frame may carry (126 closes with 1002, see below).
    let longest = [b'p'; 125];
    ws.send(0x89, &longest);
    let pong = ws.read_frame();
    assert_eq!((pong.b0, pong.payload.as_slice()), (0x8A, &longest[..]));
    // Unsolicited pongs and client messages are ignored.
    ws.send(0x8A, b"");
    ws.send(0x81, b"hello server");
    ws.send(0x02, b"frag");
    ws.send(0x89, b"");
    ws.send(0x80, b"ment");
    let pong = ws.read_frame();
    assert_eq!(pong.b0, 0x8A);
    let mut close = vec![0x0F, 0xA0];
    close.extend_from_slice(b"bye");
    ws.send(0x88, &close);
    let rest = ws.read_to_end();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].b0, 0x88);
    assert_eq!(rest[0].close_code(), Some(4000));
    wait_for("the unsubscription", || subscribers(server.addr, "p") == 0);
}

/// Sends `bytes` and expects a close frame with `code`, then the end of the connection.
fn expect_close(server: &Server, bytes: &[u8], code: u16) {
    let (mut ws, _) = ws_connect(server.addr, "/sub/e", "");
    ws.send_raw(bytes);
    let rest = ws.read_to_end();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].close_code(), Some(code), "{bytes:?}");
}

#[test]
fn protocol_errors_close_with_their_codes() {
    let server = start_server(&["--ws-max-message", "1KiB"]);
    // RFC 6455 §5.1: a client frame must be masked.
    expect_close(&server, &[0x81, 0x02, b'h', b'i'], 1002);
    // Reserved bits, reserved opcode, a long ping, a fragmented ping.
    expect_close(&server, &ws_client_frame(0xC1, b"x"), 1002);
    expect_close(&server, &ws_client_frame(0x83, b"x"), 1002);
    expect_close(&server, &ws_client_frame(0x89, &[0; 126]), 1002);
    expect_close(&server, &ws_client_frame(0x09, b""), 1002);
    // A continuation with nothing to continue; a close with half a code (§5.5.1); a bad close code.
    expect_close(&server, &ws_client_frame(0x80, b"x"), 1002);
    expect_close(&server, &ws_client_frame(0x88, &[0x03]), 1002);
    // A new message while a fragmented one is unfinished (§5.4).
    let mut interleaved = ws_client_frame(0x01, b"first");
    interleaved.extend(ws_client_frame(0x81, b"second"));
    expect_close(&server, &interleaved, 1002);
    expect_close(
        &server,
        &ws_client_frame(0x88, &1005u16.to_be_bytes()),
        1002,
    );
    // Over --ws-max-message: refused from the header, before the payload arrives.
    expect_close(&server, &[0x82, 0xFE, 0x04, 0x01, 1, 2, 3, 4], 1009);
    let mut fragments = ws_client_frame(0x01, &[b'a'; 600]);
    fragments.extend(ws_client_frame(0x80, &[b'a'; 600]));
    expect_close(&server, &fragments, 1009);
    // Text that is not UTF-8, in one frame or across fragments.
    expect_close(&server, &ws_client_frame(0x81, b"ok \xC3\x28"), 1007);
    let mut split = ws_client_frame(0x01, b"\xE2\x82");
    split.extend(ws_client_frame(0x80, b"\x28"));
    expect_close(&server, &split, 1007);
    expect_close(&server, &ws_client_frame(0x88, b"\x03\xE8\xFF"), 1007);
    wait_for("the protocol errors counted", || {
        metric(server.addr, "spout_ws_protocol_errors_total") == 14
    });
}

#[test]
fn frames_split_across_reads_and_sent_with_the_upgrade_are_handled() {
    let server = start_server(&[]);
    let (mut ws, _) = ws_connect(server.addr, "/sub/s", "");
    let ping = ws_client_frame(0x89, b"split");
    for byte in &ping {
        ws.send_raw(&[*byte]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(ws.read_frame().payload, b"split");
    // A ping in the same packet as the upgrade request.
    let mut stream = connect(server.addr);
    let mut raw = format!(
        "GET /sub/s?client_id=eager HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    raw.extend(ws_client_frame(0x89, b"early"));
    std::io::Write::write_all(&mut stream, &raw).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut eager = Ws { stream };
    assert_eq!(eager.next_json()["event"], "open");
    let pong = eager.read_frame();
    assert_eq!((pong.b0, pong.payload.as_slice()), (0x8A, &b"early"[..]));
}

#[test]
fn a_silent_peer_is_pinged_then_dropped_and_an_answering_one_stays() {
    let server = start_server(&["--ws-ping", "200ms", "--ws-timeout", "700ms"]);
    let (mut silent, _) = ws_connect(server.addr, "/sub/q", "");
    let (mut lively, _) = ws_connect(server.addr, "/sub/q", "");
    // The lively peer answers each ping with a pong, in its own thread, for more than two timeouts.
    let lively = thread::spawn(move || {
        lively
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let until = Instant::now() + Duration::from_millis(1600);
        let mut pings = 0;
        while Instant::now() < until {
            match lively.try_read_frame_timeout() {
                Some(frame) if frame.b0 == 0x89 => {
                    pings += 1;
                    lively.send(0x8A, &frame.payload);
                }
                Some(frame) => panic!("unexpected {frame:?}"),
                None => {}
            }
        }
        assert!(pings >= 2, "{pings} pings");
        lively.stream.set_read_timeout(Some(WAIT)).unwrap();
        lively
    });
    let started = Instant::now();
    let ping = silent.read_frame();
    assert_eq!((ping.b0, ping.payload.len()), (0x89, 0));
    let rest = silent.read_to_end();
    assert!(rest.iter().all(|f| f.b0 == 0x89), "{rest:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "dropped after {waited:?}"
    );
    let mut lively = lively.join().expect("the lively peer");
    let id = publish_id(server.addr, "q", "alive");
    assert_eq!(lively.next_text(), event_json(&id, "q", None, "alive"));
    wait_for("the timeout counted", || {
        metric(server.addr, "spout_ws_ping_timeouts_total") == 1
    });
}

#[test]
fn a_drain_closes_websocket_streams_with_going_away() {
    let mut server = start_server(&["--drain-timeout", "1s", "--workers", "1"]);
    let (mut ws, _) = ws_connect(server.addr, "/sub/g", "");
    wait_for("the subscription", || subscribers(server.addr, "g") == 1);
    server.terminate();
    let rest = ws.read_to_end();
    let close = rest.last().expect("a close frame");
    assert_eq!(close.close_code(), Some(1001), "{rest:?}");
    assert_eq!(server.wait_exit(WAIT), Some(0));
}

#[test]
fn a_websocket_subscriber_that_does_not_read_is_closed_at_the_cap() {
    let server = start_server(&["--max-queued-bytes", "1MiB", "--workers", "1"]);
    let (ws, _) = ws_connect(server.addr, "/sub/slow", "");
    wait_for("the subscription", || subscribers(server.addr, "slow") == 1);
    let mut publisher = KeepAlive::new(server.addr);
    let chunk = "z".repeat(64 * 1024);
    let deadline = Instant::now() + WAIT;
    while metric(server.addr, "spout_dropped_slow_subscribers_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow subscriber was never closed"
        );
        for _ in 0..16 {
            publisher.publish_id("slow", &chunk);
        }
    }
    drop(ws);
}

// ---- a real client: the npm `ws` package ---------------------------------------------------------------------

#[test]
fn the_npm_ws_client_receives_events_resets_deletion_and_closes_cleanly() {
    if !require_program("node") || !require_node_package("ws") {
        return;
    }
    let server = start_server(&["--history", "3"]);
    let old: Vec<String> = (1..=5)
        .map(|i| publish_id(server.addr, "n", &format!("old {i}")))
        .collect();
    let url = format!(
        "ws://{}/sub/n,m?client_id=node&last_event_id={}",
        server.addr, old[0]
    );
    let client = NodeScript::start("ws_client.mjs", &[&url]);
    assert_eq!(client.next(), json!({"state": "open"}));
    assert_eq!(
        client.next(),
        json!({"message": {"event": "open", "client_id": "node"}})
    );
    assert_eq!(
        client.next(),
        json!({"message": {"event": "reset", "reason": "evicted", "channels": ["n"]}})
    );
    for (i, id) in old.iter().enumerate().skip(2) {
        assert_eq!(
            client.next(),
            json!({"message": {"id": id, "channel": "n", "data": format!("old {}", i + 1)}})
        );
    }
    let big = "b".repeat(100_000);
    let ids = [
        publish_id(server.addr, "m?event=named", "two\nlines"),
        publish_id(server.addr, "n?to=node", "just you"),
        publish_id(server.addr, "n?to=other", "not you"),
        publish_id(server.addr, "n", &big),
    ];
    assert_eq!(
        client.next(),
        json!({"message": {"id": ids[0], "channel": "m", "event": "named", "data": "two\nlines"}})
    );
    assert_eq!(
        client.next(),
        json!({"message": {"id": ids[1], "channel": "n", "data": "just you"}})
    );
    assert_eq!(
        client.next(),
        json!({"message": {"id": ids[3], "channel": "n", "data": big}})
    );
    assert_eq!(
        request(server.addr, "DELETE", "/channels/m", "", b"").status,
        200
    );
    assert_eq!(
        client.next(),
        json!({"message": {"event": "deleted", "channel": "m"}})
    );
    assert_eq!(
        request(server.addr, "DELETE", "/channels/n", "", b"").status,
        200
    );
    assert_eq!(
        client.next(),
        json!({"message": {"event": "deleted", "channel": "n"}})
    );
    assert_eq!(client.next(), json!({"state": "close", "code": 1000}));
}

#[test]
fn the_npm_ws_client_closes_with_1000_and_the_server_echoes_it() {
    if !require_program("node") || !require_node_package("ws") {
        return;
    }
    let server = start_server(&[]);
    let mut client =
        NodeScript::start("ws_client.mjs", &[&format!("ws://{}/sub/bye", server.addr)]);
    assert_eq!(client.next(), json!({"state": "open"}));
    assert_eq!(client.next()["message"]["event"], "open");
    wait_for("the subscription", || subscribers(server.addr, "bye") == 1);
    client.close_stdin();
    assert_eq!(client.next(), json!({"state": "close", "code": 1000}));
    wait_for("the unsubscription", || {
        subscribers(server.addr, "bye") == 0
    });
}

//! keker (docs/PROTOCOLS.md §5) over real sockets: the README's example and the observed transcript, every route with
//! its exact answer, `HELLO` and its variants, the timeout before `HELLO` (bare TCP close), the ping schedule after
//! it, the close handshake, several sessions per token, broadcasts, the cache for absent tokens (with the
//! original's TTL bug fixed), publish/`HELLO` atomicity under concurrency, the prefix on a native listener, and the
//! npm `ws` client.
//!
//! Every case that involves state runs twice: on one node (`a` and `b` are the same server), and on two nodes
//! sharing a Redis Cluster (`*_on_two_nodes`), with sessions and publishers on different nodes and the stats read
//! from the node that did not make the change. A node killed with its sessions on it, and one stopped cleanly, are
//! tested last.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::CompatCluster;
use common::*;
use serde_json::{json, Value};

/// A server with a native listener (`addrs[0]`, keker under `/keker`) and a keker one (`addrs[1]`), as each node
/// of a `CompatCluster` has.
fn start(extra: &[&str]) -> Server {
    start_compat("keker", extra)
}

/// Two nodes sharing a Redis Cluster, each as `start` makes one.
fn cluster(extra: &[&str]) -> CompatCluster {
    CompatCluster::start("keker", extra)
}

/// A server's keker listener.
fn kk(server: &Server) -> SocketAddr {
    server.addrs[1]
}

/// A server's native listener (keker under `/keker`).
fn native(server: &Server) -> SocketAddr {
    server.addrs[0]
}

/// The 101 answer keker's gorilla/websocket gives (observed), for the RFC's sample key.
fn upgrade_answer() -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
    )
}

/// Opens a session at `path` without saying anything.
fn connect_at(addr: SocketAddr, path: &str) -> Ws {
    let (stream, head) = ws_upgrade(addr, path, "");
    assert_eq!(head, upgrade_answer());
    Ws { stream }
}

fn connect_session(addr: SocketAddr) -> Ws {
    connect_at(addr, "/v1/subscribe")
}

/// Sends `HELLO token` and takes the ping that comes at once (answering it).
fn hello(ws: &mut Ws, token: &str) {
    ws.send(0x81, format!("HELLO {token}").as_bytes());
    expect_ping(ws);
}

fn session(addr: SocketAddr, token: &str) -> Ws {
    let mut ws = connect_session(addr);
    hello(&mut ws, token);
    ws
}

fn expect_ping(ws: &mut Ws) {
    let ping = ws.read_frame();
    assert_eq!((ping.b0, ping.payload.as_slice()), (0x89, &b"ping"[..]));
    ws.send(0x8A, b"ping");
}

/// The next text message (pings answered on the way).
fn text(ws: &mut Ws) -> String {
    ws.next_text()
}

/// Asserts that nothing arrives within `wait`.
fn quiet(ws: &mut Ws, wait: Duration) {
    ws.stream.set_read_timeout(Some(wait)).unwrap();
    if let Some(frame) = ws.try_read_frame_timeout() {
        panic!("expected nothing, got {frame:?}");
    }
    ws.stream.set_read_timeout(Some(WAIT)).unwrap();
}

fn publish_to(addr: SocketAddr, method: &str, token: Option<&str>, body: &[u8]) -> Response {
    let header = token.map_or(String::new(), |t| format!("Token: {t}\r\n"));
    let mut raw = format!(
        "{method} /v1/publish HTTP/1.1\r\nHost: t\r\n{header}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    roundtrip(addr, &raw)
}

fn broadcast(addr: SocketAddr, body: &str) -> Response {
    request(addr, "PUT", "/v1/broadcast", "", body.as_bytes())
}

/// Asserts a keker JSON answer: status, Content-Type, the trailing newline, and the value.
fn assert_json(resp: &Response, status: u16, expected: Value) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(resp.body.ends_with(b"}\n"), "{:?}", resp.text());
    assert_eq!(resp.json(), expected);
}

fn assert_not_found(resp: &Response) {
    assert_eq!(resp.status, 404, "{}", resp.head);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.body, b"404 page not found");
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

fn sessions(addr: SocketAddr) -> Value {
    get(addr, "/v1/stats/sessions").json()["data"]["subscribers_sessions"].clone()
}

/// The transcript with the session on `a` and the publisher on `b`.
fn the_observed_transcript(a: &Server, b: &Server) {
    let mut ws = session(kk(a), "user42");

    let body = r#"{"event":"friend_request","from":"bob"}"#;
    let resp = publish_to(kk(b), "PUT", Some("user42"), body.as_bytes());
    assert_json(
        &resp,
        200,
        json!({"message": "message published", "data": body}),
    );
    assert_eq!(resp.header("content-length"), Some("89"));
    assert_eq!(text(&mut ws), body);

    let resp = broadcast(kk(b), "to all");
    assert_json(
        &resp,
        200,
        json!({"message": "message sent to 1 recipients", "data": "to all"}),
    );
    assert_eq!(text(&mut ws), "to all");

    // The original answered POST with 404; spout publishes (docs/PROTOCOLS.md rule 3).
    let resp = publish_to(kk(b), "POST", Some("user42"), b"x");
    assert_json(
        &resp,
        200,
        json!({"message": "message published", "data": "x"}),
    );
    assert_eq!(text(&mut ws), "x");
}

on_one_and_two_nodes!(
    "keker",
    &[],
    the_observed_transcript_on_one_node,
    the_observed_transcript_on_two_nodes,
    the_observed_transcript
);

/// Sessions on `a` (and one on `b`), counted by `b`.
fn health_and_stats_answer_exactly(a: &Server, b: &Server) {
    assert_json(
        &get(kk(a), "/v1/health"),
        200,
        json!({"message": "/v1/health", "data": "OK"}),
    );
    assert_eq!(
        get(kk(a), "/v1/health").body,
        b"{\"message\":\"/v1/health\",\"data\":\"OK\"}\n"
    );
    assert_json(
        &get(kk(b), "/v1/stats?x=1"),
        200,
        json!({"message": "/v1/stats?x=1", "data": {"subscribers_count": 0}}),
    );
    assert_json(
        &get(kk(b), "/v1/stats/sessions"),
        200,
        json!({"message": "/v1/stats/sessions", "data": {"subscribers_sessions": {}}}),
    );

    let _b = session(kk(a), "bob");
    let a1 = session(kk(a), "alice");
    let _a2 = session(kk(b), "alice");
    let _unauthenticated = connect_session(kk(a));
    let resp = get(kk(b), "/v1/stats/sessions");
    assert_eq!(
        resp.body,
        b"{\"message\":\"/v1/stats/sessions\",\"data\":{\"subscribers_sessions\":{\"alice\":2,\"bob\":1}}}\n",
        "keys sorted, sessions counted"
    );
    assert_json(
        &get(kk(b), "/v1/stats"),
        200,
        json!({"message": "/v1/stats", "data": {"subscribers_count": 2}}),
    );
    // Closed sessions are not counted (the original kept counting their slots).
    drop(a1);
    wait_for("alice's closed session to go", || {
        sessions(kk(b)) == json!({"alice": 1, "bob": 1})
    });
}

on_one_and_two_nodes!(
    "keker",
    &[],
    health_and_stats_answer_exactly_on_one_node,
    health_and_stats_answer_exactly_on_two_nodes,
    health_and_stats_answer_exactly
);

#[test]
fn unknown_routes_wrong_methods_and_options_get_gins_404() {
    let server = start(&[]);
    let addr = kk(&server);
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v1/publish"),
        ("DELETE", "/v1/publish"),
        ("OPTIONS", "/v1/publish"),
        ("OPTIONS", "/v1/subscribe"),
        ("POST", "/v1/broadcast"),
        ("PUT", "/v1/stats"),
        ("POST", "/v1/subscribe"),
        ("GET", "/V1/health"),
    ] {
        let resp = request(addr, method, path, "Origin: http://page.example\r\n", b"");
        assert_not_found(&resp);
    }
    let resp = roundtrip(addr, b"HEAD /v1/health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 404);
}

#[test]
fn a_trailing_slash_redirects_301_for_get_and_307_otherwise() {
    let server = start(&[]);
    let addr = kk(&server);
    let resp = get(addr, "/v1/stats/?x=1");
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("/v1/stats?x=1"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        resp.text(),
        "<a href=\"/v1/stats?x=1\">Moved Permanently</a>.\n\n"
    );
    let resp = request(addr, "PUT", "/v1/publish/", "Token: t\r\n", b"x");
    assert_eq!(resp.status, 307);
    assert_eq!(resp.header("location"), Some("/v1/publish"));
    assert!(resp.body.is_empty());
    assert_eq!(get(addr, "/v1/stats/sessions/").status, 301);
    // No route for the method without the slash either: 404.
    assert_not_found(&request(addr, "DELETE", "/v1/stats/", "", b""));
    // Under the native listener's prefix the redirect stays under it.
    let resp = get(native(&server), "/keker/v1/health/");
    assert_eq!(resp.header("location"), Some("/keker/v1/health"));
}

#[test]
fn a_get_of_subscribe_that_is_not_an_upgrade_is_gorillas_400() {
    let server = start(&[]);
    let addr = kk(&server);
    let cases = [
        "GET /v1/subscribe HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        format!(
            "GET /v1/subscribe HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        ),
        format!(
            "GET /v1/subscribe HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    ];
    for raw in cases {
        let resp = roundtrip(addr, raw.as_bytes());
        assert_eq!(resp.status, 400, "{raw}");
        assert_eq!(resp.body, b"Bad Request\n");
        assert_eq!(resp.header("sec-websocket-version"), Some("13"));
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}

/// The session on `a`; stats and publishes on `b`.
fn hello_variants_only_a_first_valid_hello_authenticates(a: &Server, b: &Server) {
    let mut ws = connect_session(kk(a));
    for ignored in ["hello lower", "HELLO a b", "HELLO", "PING", " HELLO x"] {
        ws.send(0x81, ignored.as_bytes());
    }
    ws.send(0x82, b"HELLO binary");
    quiet(&mut ws, Duration::from_millis(300));
    assert_eq!(sessions(kk(b)), json!({}));
    // A prefix is enough: `HELLOfoo tok` is `tok` (observed).
    ws.send(0x81, b"HELLOfoo tok");
    expect_ping(&mut ws);
    // A second HELLO, and anything else after the first, is ignored.
    ws.send(0x81, b"HELLO other");
    ws.send(0x81, b"anything");
    quiet(&mut ws, Duration::from_millis(300));
    assert_eq!(sessions(kk(b)), json!({"tok": 1}));
    assert_eq!(publish_to(kk(b), "PUT", Some("other"), b"x").status, 404);
    assert_eq!(
        publish_to(kk(b), "PUT", Some(" tok  "), b"trimmed").status,
        200
    );
    assert_eq!(text(&mut ws), "trimmed");
}

on_one_and_two_nodes!(
    "keker",
    &[],
    hello_variants_only_a_first_valid_hello_authenticates_on_one_node,
    hello_variants_only_a_first_valid_hello_authenticates_on_two_nodes,
    hello_variants_only_a_first_valid_hello_authenticates
);
#[test]
fn without_hello_the_connection_ends_at_the_timeout_with_a_bare_tcp_close() {
    let server = start(&["--keker-timeout", "2s"]);
    let addr = kk(&server);
    let started = Instant::now();
    let mut ws = connect_session(addr);
    // Messages do not extend the deadline.
    thread::sleep(Duration::from_millis(1500));
    ws.send(0x81, b"not hello");
    ws.send(0x89, b"are you there");
    let pong = ws.read_frame();
    assert_eq!(
        (pong.b0, pong.payload.as_slice()),
        (0x8A, &b"are you there"[..])
    );
    let frames = ws.read_to_end();
    let elapsed = started.elapsed();
    assert!(
        frames.is_empty(),
        "no close frame, nothing at all: {frames:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_millis(3300),
        "closed after {elapsed:?}"
    );
}

#[test]
fn after_hello_pings_come_every_half_timeout_and_a_silent_peer_goes_at_one_and_a_half() {
    let server = start(&["--keker-timeout", "2s"]);
    let addr = kk(&server);
    let mut ws = connect_session(addr);
    ws.send(0x81, b"HELLO silent");
    let hello_at = Instant::now();
    // No pongs from here on.
    let mut pings = Vec::new();
    let frames = loop {
        match ws.try_read_frame() {
            Some(frame) if frame.b0 == 0x89 => {
                assert_eq!(frame.payload, b"ping");
                pings.push(hello_at.elapsed());
            }
            Some(frame) => panic!("unexpected {frame:?}"),
            None => break pings,
        }
    };
    let closed = hello_at.elapsed();
    // Observed with -t 4: pings at 0 s and 2 s, TCP closed at 6 s. Here: 0 s and 1 s, closed at 3 s.
    assert_eq!(frames.len(), 2, "pings at {frames:?}");
    assert!(frames[0] < Duration::from_millis(500), "{frames:?}");
    assert!(
        frames[1] >= Duration::from_millis(900) && frames[1] < Duration::from_millis(1800),
        "{frames:?}"
    );
    assert!(
        closed >= Duration::from_millis(2900) && closed < Duration::from_millis(4500),
        "closed after {closed:?}"
    );
}

/// A session on `a` that answers pings keeps getting what `b` publishes.
fn a_session_that_answers_pings_stays_and_keeps_receiving(a: &Server, b: &Server) {
    let mut ws = session(kk(a), "lively");
    ws.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let until = Instant::now() + Duration::from_millis(3000);
    let mut pings = 0;
    while Instant::now() < until {
        if let Some(frame) = ws.try_read_frame_timeout() {
            assert_eq!(frame.b0, 0x89, "{frame:?}");
            pings += 1;
            ws.send(0x8A, b"ping");
        }
    }
    assert!(pings >= 4, "{pings} pings in 3 s with a 1 s timeout");
    ws.stream.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        publish_to(kk(b), "PUT", Some("lively"), b"still here").status,
        200
    );
    assert_eq!(text(&mut ws), "still here");
}

on_one_and_two_nodes!(
    "keker",
    &["--keker-timeout", "1s"],
    a_session_that_answers_pings_stays_and_keeps_receiving_on_one_node,
    a_session_that_answers_pings_stays_and_keeps_receiving_on_two_nodes,
    a_session_that_answers_pings_stays_and_keeps_receiving
);

/// Sessions on `a` close; `b` stops counting them.
fn a_client_close_is_answered_with_1000_before_and_after_hello(a: &Server, b: &Server) {
    for authenticated in [false, true] {
        let mut ws = if authenticated {
            session(kk(a), "closer")
        } else {
            connect_session(kk(a))
        };
        ws.send(0x88, &[0x03, 0xE9]);
        let frames = ws.read_to_end();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].close_code(), Some(1000));
    }
    wait_for("the session to go", || sessions(kk(b)) == json!({}));
}

on_one_and_two_nodes!(
    "keker",
    &[],
    a_client_close_is_answered_with_1000_before_and_after_hello_on_one_node,
    a_client_close_is_answered_with_1000_before_and_after_hello_on_two_nodes,
    a_client_close_is_answered_with_1000_before_and_after_hello
);

/// One session of the token on each node, published to from `b`.
fn several_sessions_per_token_each_get_every_message(a: &Server, b: &Server) {
    let mut first = session(kk(a), "shared");
    let mut second = session(kk(b), "shared");
    let mut other = session(kk(a), "other");
    assert_eq!(
        publish_to(kk(b), "PUT", Some("shared"), b"both").status,
        200
    );
    assert_eq!(text(&mut first), "both");
    assert_eq!(text(&mut second), "both");
    drop(first);
    wait_for("one session left", || sessions(kk(b))["shared"] == 1);
    assert_eq!(
        publish_to(kk(b), "PUT", Some("shared"), b"second only").status,
        200
    );
    assert_eq!(text(&mut second), "second only");
    quiet(&mut other, Duration::from_millis(200));
}

on_one_and_two_nodes!(
    "keker",
    &[],
    several_sessions_per_token_each_get_every_message_on_one_node,
    several_sessions_per_token_each_get_every_message_on_two_nodes,
    several_sessions_per_token_each_get_every_message
);

/// Sessions on both nodes, broadcasts from `b`.
fn broadcast_reaches_every_session_once_and_counts_tokens(a: &Server, b: &Server) {
    assert_json(
        &broadcast(kk(b), "nobody"),
        200,
        json!({"message": "message sent to 0 recipients", "data": "nobody"}),
    );
    let mut a1 = session(kk(a), "a");
    let mut a2 = session(kk(b), "a");
    let mut b1 = session(kk(a), "b");
    let mut waiting = connect_session(kk(a));
    assert_json(
        &broadcast(kk(b), "all <&>"),
        200,
        json!({"message": "message sent to 2 recipients", "data": "all <&>"}),
    );
    for ws in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(text(ws), "all <&>");
    }
    // Go's encoder escapes HTML characters; the frame carries the text as sent.
    assert!(String::from_utf8_lossy(&broadcast(kk(b), "<&>").body).contains(r"\u003c\u0026\u003e"));
    for ws in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(text(ws), "<&>");
    }
    quiet(&mut waiting, Duration::from_millis(200));
    // Nothing is cached: a session that says HELLO now gets only its ping.
    hello(&mut waiting, "late");
    quiet(&mut waiting, Duration::from_millis(300));
    quiet(&mut a1, Duration::from_millis(1));
}

on_one_and_two_nodes!(
    "keker",
    &[],
    broadcast_reaches_every_session_once_and_counts_tokens_on_one_node,
    broadcast_reaches_every_session_once_and_counts_tokens_on_two_nodes,
    broadcast_reaches_every_session_once_and_counts_tokens
);

/// Published on `b` while nobody listens; the first session says HELLO on `a`, a second one on `b`.
fn a_message_to_an_absent_token_is_cached_for_the_first_session_to_say_hello(
    a: &Server,
    b: &Server,
) {
    assert_json(
        &publish_to(kk(b), "PUT", Some("later"), b"m1"),
        404,
        json!({"message": "recipient later not found", "data": "m1"}),
    );
    assert_eq!(publish_to(kk(b), "PUT", Some("later"), b"m2").status, 404);
    assert_eq!(
        publish_to(kk(b), "PUT", Some("someone-else"), b"not yours").status,
        404
    );
    assert_json(
        &publish_to(kk(b), "PUT", None, b"no token"),
        404,
        json!({"message": "recipient  not found", "data": "no token"}),
    );
    let mut first = connect_session(kk(a));
    first.send(0x81, b"HELLO later");
    // The ping comes at once, then the cached messages in publish order.
    expect_ping(&mut first);
    assert_eq!(text(&mut first), "m1");
    assert_eq!(text(&mut first), "m2");
    quiet(&mut first, Duration::from_millis(200));
    // They went to the first session only.
    let mut second = session(kk(b), "later");
    quiet(&mut second, Duration::from_millis(300));
    assert_eq!(publish_to(kk(a), "PUT", Some("later"), b"live").status, 200);
    assert_eq!(text(&mut first), "live");
    assert_eq!(text(&mut second), "live");
}

on_one_and_two_nodes!(
    "keker",
    &["--keker-cache-ttl", "30s"],
    a_message_to_an_absent_token_is_cached_for_the_first_session_to_say_hello_on_one_node,
    a_message_to_an_absent_token_is_cached_for_the_first_session_to_say_hello_on_two_nodes,
    a_message_to_an_absent_token_is_cached_for_the_first_session_to_say_hello
);

/// Cached from `b`, taken on `a`. The original dropped the token's whole entry when an older message expired, the
/// newer one with it.
fn each_cached_message_expires_on_its_own(a: &Server, b: &Server) {
    let started = Instant::now();
    assert_eq!(publish_to(kk(b), "PUT", Some("t"), b"old").status, 404);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(publish_to(kk(b), "PUT", Some("t"), b"new").status, 404);
    thread::sleep(Duration::from_millis(3500).saturating_sub(started.elapsed()));
    let mut ws = session(kk(a), "t");
    assert!(
        started.elapsed() < Duration::from_millis(4400),
        "too slow to test the window"
    );
    assert_eq!(text(&mut ws), "new");
    quiet(&mut ws, Duration::from_millis(200));
}

on_one_and_two_nodes!(
    "keker",
    &["--keker-cache-ttl", "3s"],
    each_cached_message_expires_on_its_own_on_one_node,
    each_cached_message_expires_on_its_own_on_two_nodes,
    each_cached_message_expires_on_its_own
);

fn a_zero_ttl_caches_nothing(a: &Server, b: &Server) {
    assert_eq!(publish_to(kk(b), "PUT", Some("z"), b"gone").status, 404);
    let mut ws = session(kk(a), "z");
    quiet(&mut ws, Duration::from_millis(300));
}

on_one_and_two_nodes!(
    "keker",
    &["--keker-cache-ttl", "0s"],
    a_zero_ttl_caches_nothing_on_one_node,
    a_zero_ttl_caches_nothing_on_two_nodes,
    a_zero_ttl_caches_nothing
);

fn a_body_that_is_not_utf8_goes_out_as_valid_text_with_replacements(a: &Server, b: &Server) {
    let mut ws = session(kk(a), "bin");
    let resp = publish_to(kk(b), "PUT", Some("bin"), b"a\xffb\xe2\x82");
    // One U+FFFD per invalid byte, as Go's JSON encoder writes it.
    assert_json(
        &resp,
        200,
        json!({"message": "message published", "data": "a\u{FFFD}b\u{FFFD}\u{FFFD}"}),
    );
    assert_eq!(text(&mut ws), "a\u{FFFD}b\u{FFFD}\u{FFFD}");
}

on_one_and_two_nodes!(
    "keker",
    &[],
    a_body_that_is_not_utf8_goes_out_as_valid_text_with_replacements_on_one_node,
    a_body_that_is_not_utf8_goes_out_as_valid_text_with_replacements_on_two_nodes,
    a_body_that_is_not_utf8_goes_out_as_valid_text_with_replacements
);

/// Publishing on `b` while the session says HELLO on `a`: messages answered 404 were cached and reach the session
/// on HELLO; those answered 200 reach it live; each exactly once and in publish order, whatever the interleaving.
fn publishing_and_hello_race_without_loss_or_duplicates(a: &Server, b: &Server) {
    let publish_at = kk(b);
    for round in 0..3 {
        let token = format!("race{round}");
        let publisher = {
            let token = token.clone();
            thread::spawn(move || {
                let mut conn = KeepAlive::new(publish_at);
                let mut statuses = Vec::new();
                for i in 0..150 {
                    let resp = conn.request(
                        "PUT",
                        "/v1/publish",
                        &format!("Token: {token}\r\n"),
                        format!("m{i}").as_bytes(),
                    );
                    statuses.push(resp.status);
                }
                statuses
            })
        };
        thread::sleep(Duration::from_millis(5 + 10 * round));
        let mut ws = session(kk(a), &token);
        let statuses = publisher.join().unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 404),
            "{statuses:?}"
        );
        let got: Vec<String> = (0..150).map(|_| text(&mut ws)).collect();
        let want: Vec<String> = (0..150).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want, "round {round}: statuses {statuses:?}");
        quiet(&mut ws, Duration::from_millis(100));
    }
}

on_one_and_two_nodes!(
    "keker",
    &["--keker-cache-ttl", "60s", "--workers", "2"],
    publishing_and_hello_race_without_loss_or_duplicates_on_one_node,
    publishing_and_hello_race_without_loss_or_duplicates_on_two_nodes,
    publishing_and_hello_race_without_loss_or_duplicates
);

#[test]
fn a_hello_beyond_max_channels_is_closed_with_try_again_later() {
    // Each session joins its token's channel and the broadcast channel.
    let server = start(&["--max-channels", "2"]);
    let addr = kk(&server);
    let _a = session(addr, "a");
    let mut b = connect_session(addr);
    b.send(0x81, b"HELLO b");
    let frames = b.read_to_end();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1013));
    assert_eq!(sessions(addr), json!({"a": 1}));
}

#[test]
fn spouts_own_limits_are_answered_as_go_answers_them() {
    let server = start(&["--max-body", "8"]);
    let addr = kk(&server);
    let resp = publish_to(addr, "PUT", Some("t"), b"123456789");
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.text(), "413 Content Too Large");
}

/// A session under the prefix of `a`'s native listener, published to under `b`'s.
fn keker_is_served_under_its_prefix_on_a_native_listener(a: &Server, b: &Server) {
    assert_json(
        &get(native(a), "/keker/v1/health"),
        200,
        json!({"message": "/v1/health", "data": "OK"}),
    );
    assert_not_found(&get(native(a), "/keker/nope"));
    let mut ws = connect_at(native(a), "/keker/v1/subscribe");
    hello(&mut ws, "prefixed");
    let resp = request(
        native(b),
        "PUT",
        "/keker/v1/publish",
        "Token: prefixed\r\n",
        b"hi",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(text(&mut ws), "hi");
    // Sessions are shared by both ways in.
    assert_eq!(sessions(kk(b)), json!({"prefixed": 1}));
    // The native API keeps its own routes.
    assert_eq!(get(native(a), "/healthz").status, 200);
}

on_one_and_two_nodes!(
    "keker",
    &[],
    keker_is_served_under_its_prefix_on_a_native_listener_on_one_node,
    keker_is_served_under_its_prefix_on_a_native_listener_on_two_nodes,
    keker_is_served_under_its_prefix_on_a_native_listener
);

#[test]
fn the_readmes_browser_code_works_with_the_npm_ws_client() {
    if !require_program("node") || !require_node_package("ws") {
        return;
    }
    let server = start(&["--keker-timeout", "1s"]);
    let addr = kk(&server);
    // The npm `ws` client, as the README's browser code: HELLO on open, messages as they come, pings answered by
    // the library itself.
    let mut client = NodeScript::start(
        "ws_text_client.mjs",
        &[&format!("ws://{addr}/v1/subscribe")],
    );
    client.send_line("HELLO browser");
    assert_eq!(client.next(), json!({"state": "open"}));
    wait_for("the session", || sessions(addr) == json!({"browser": 1}));
    assert_eq!(
        publish_to(addr, "PUT", Some("browser"), b"first").status,
        200
    );
    assert_eq!(client.next(), json!({"text": "first"}));
    // The library answers pings: the session outlives 1.5 timeouts.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        publish_to(addr, "PUT", Some("browser"), b"second").status,
        200
    );
    assert_eq!(client.next(), json!({"text": "second"}));
    // Closing: the library sends 1000 and gets 1000 back.
    client.close_stdin();
    assert_eq!(client.next(), json!({"state": "close", "code": 1000}));
    wait_for("the session to end", || sessions(addr) == json!({}));
}

/// The HELLOs on `a` (in the upgrade's write, and in fragments); stats and publishes on `b`.
fn a_hello_sent_with_the_upgrade_or_in_fragments_authenticates(a: &Server, b: &Server) {
    // In the same write as the upgrade request, as a client that does not wait for the 101 may send it.
    let mut stream = connect(kk(a));
    let mut raw = format!(
        "GET /v1/subscribe HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    raw.extend(ws_client_frame(0x81, b"HELLO eager"));
    stream.write_all(&raw).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_eq!(String::from_utf8(head).unwrap(), upgrade_answer());
    let mut eager = Ws { stream };
    expect_ping(&mut eager);
    // In two fragments (RFC 6455 §5.4), a ping of the client's between them.
    let mut split = connect_session(kk(a));
    let mut frames = ws_client_frame(0x01, b"HEL");
    frames.extend(ws_client_frame(0x89, b"x"));
    frames.extend(ws_client_frame(0x80, b"LO split"));
    split.send_raw(&frames);
    let pong = split.read_frame();
    assert_eq!((pong.b0, pong.payload.as_slice()), (0x8A, &b"x"[..]));
    expect_ping(&mut split);
    assert_eq!(sessions(kk(b)), json!({"eager": 1, "split": 1}));
    assert_eq!(publish_to(kk(b), "PUT", Some("eager"), b"e").status, 200);
    assert_eq!(publish_to(kk(b), "PUT", Some("split"), b"s").status, 200);
    assert_eq!(text(&mut eager), "e");
    assert_eq!(text(&mut split), "s");
    quiet(&mut eager, Duration::from_millis(200));
    drop(eager);
    wait_for("the eager session to go", || {
        sessions(kk(b)) == json!({"split": 1})
    });
}

on_one_and_two_nodes!(
    "keker",
    &[],
    a_hello_sent_with_the_upgrade_or_in_fragments_authenticates_on_one_node,
    a_hello_sent_with_the_upgrade_or_in_fragments_authenticates_on_two_nodes,
    a_hello_sent_with_the_upgrade_or_in_fragments_authenticates
);

/// `--broker-node-ttl` of the nodes in `a_killed_nodes_sessions_stop_counting_within_the_ttl`.
const NODE_TTL: Duration = Duration::from_secs(3);

#[test]
fn a_killed_nodes_sessions_stop_counting_within_the_ttl() {
    let mut cluster = cluster(&["--broker-node-ttl", "3s", "--keker-cache-ttl", "30s"]);
    let [survivor, doomed] = &mut cluster.nodes;
    let mut alive = session(kk(survivor), "alive");
    let mut gone = session(kk(doomed), "gone");
    let _also_gone = session(kk(doomed), "alive");
    assert_eq!(sessions(kk(survivor)), json!({"alive": 2, "gone": 1}));
    // Renewed while the node lives: still counted after two TTLs.
    thread::sleep(2 * NODE_TTL);
    assert_eq!(sessions(kk(survivor)), json!({"alive": 2, "gone": 1}));
    assert_eq!(
        publish_to(kk(survivor), "PUT", Some("gone"), b"before").status,
        200
    );
    assert_eq!(text(&mut gone), "before");

    signal(doomed.child.id(), "KILL");
    let _ = doomed.child.wait();
    let killed = Instant::now();
    wait_for("the dead node's sessions to stop counting", || {
        sessions(kk(survivor)) == json!({"alive": 1})
    });
    assert!(
        killed.elapsed() < NODE_TTL + Duration::from_secs(2),
        "took {:?}",
        killed.elapsed()
    );
    assert_json(
        &get(kk(survivor), "/v1/stats"),
        200,
        json!({"message": "/v1/stats", "data": {"subscribers_count": 1}}),
    );
    // With no session left, a message to the token is cached, as on one node; the client that reconnects to the
    // surviving node gets it, then live ones.
    assert_eq!(
        publish_to(kk(survivor), "PUT", Some("gone"), b"while away").status,
        404
    );
    let mut back = session(kk(survivor), "gone");
    assert_eq!(text(&mut back), "while away");
    assert_eq!(
        publish_to(kk(survivor), "PUT", Some("gone"), b"live").status,
        200
    );
    assert_eq!(text(&mut back), "live");
    assert_json(
        &broadcast(kk(survivor), "all"),
        200,
        json!({"message": "message sent to 2 recipients", "data": "all"}),
    );
    assert_eq!(text(&mut alive), "all");
    assert_eq!(text(&mut back), "all");
}

#[test]
fn a_node_that_stops_cleanly_takes_its_sessions_with_it_at_once() {
    // The default --broker-node-ttl (15 s) is longer than the wait: only the sessions' own ends can do it.
    let mut cluster = cluster(&["--drain-timeout", "1s"]);
    let [survivor, stopping] = &mut cluster.nodes;
    let _stays = session(kk(survivor), "stays");
    let _leaves = session(kk(stopping), "leaves");
    assert_eq!(sessions(kk(survivor)), json!({"leaves": 1, "stays": 1}));
    stopping.terminate();
    let _ = stopping.child.wait();
    wait_for("the stopped node's session to go", || {
        sessions(kk(survivor)) == json!({"stays": 1})
    });
}

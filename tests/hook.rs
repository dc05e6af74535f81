//! The auth hook (`--auth hook`) against the real binary and a hook server inside the test (a `std::net` thread
//! that answers by the request's bearer token): a subscribe allowed, narrowed, given a client id; refused with 401
//! and 403 in the JWT path's words; a hook that is slow, answers garbage or an unexpected status, or is down, is a
//! 503 naming why; the pending bound, the cache, a client gone while its check is pending; curl as a real client;
//! and a slow hook that never delays the fan-out to streams already open.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hook::HookServer;
use common::*;
use serde_json::{json, Value};

/// How the hook answers a request whose `Authorization` is `Bearer <token>`: a status, a body, after a delay.
fn behaviour(request: &Value) -> (u16, String, Duration) {
    let token = request["headers"]["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = |body: Value| (200, body.to_string(), Duration::ZERO);
    match token {
        "allow" => ok(json!({})),
        "narrow" => ok(json!({"channels": ["a", "not-asked"]})),
        "none-left" => ok(json!({"channels": ["not-asked"]})),
        "user-7" => ok(json!({"client_id": "user-7", "channels": request["channels"]})),
        "bad-id" => ok(json!({"client_id": "no spaces allowed"})),
        "deny-401" => (401, "{}".into(), Duration::ZERO),
        "deny-403" => (403, "{}".into(), Duration::ZERO),
        "garbage" => (200, "<html>not json".into(), Duration::ZERO),
        "broken" => (500, "oops".into(), Duration::ZERO),
        "slow" => (200, "{}".into(), Duration::from_secs(5)),
        "sluggish" => (200, "{}".into(), Duration::from_millis(700)),
        _ => (401, "{}".into(), Duration::ZERO),
    }
}

/// A spout asking `hook` with `extra`.
fn start(hook: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--workers", "2", "--auth", "hook", "--auth-hook", hook];
    args.extend_from_slice(extra);
    start_server(&args)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// An error answer read whole (the body has a `Content-Length`).
fn refusal(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, Response) {
    let mut stream = connect(addr);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .expect("write");
    let response = read_response(&mut BufReader::new(stream), false);
    let body: Value = serde_json::from_str(&response.text()).unwrap_or(Value::Null);
    let error = body["error"].as_str().unwrap_or_default().to_string();
    (response.status, error, response)
}

#[test]
fn an_allowed_subscribe_streams_and_the_hook_gets_the_documented_request() {
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &["--auth-hook-headers", "X-Tenant"]);
    let mut sse = sse_subscribe(
        server.addr,
        "/sub/news,sport?client_id=me",
        &format!(
            "{}Cookie: a=1\r\nCookie: b=2\r\nX-Tenant: acme\r\nX-Other: secret\r\n",
            bearer("allow")
        ),
    );
    assert_eq!(sse.response.header("spout-client-id"), Some("me"));
    publish(server.addr, "sport", "goal");
    assert_eq!(sse.next_event().expect("event").data, "goal");
    assert_eq!(
        hook.requests(),
        vec![json!({
            "channels": ["news", "sport"],
            "client_id": "me",
            "headers": {"authorization": "Bearer allow", "cookie": "a=1; b=2", "x-tenant": "acme"},
        })]
    );
    // The same over WebSocket.
    let (mut ws, _) = ws_connect(server.addr, "/sub/news", &bearer("allow"));
    publish(server.addr, "news", "hello");
    assert!(ws.read_frame().text().contains("hello"));
    assert_eq!(hook.requests().len(), 2);
}

#[test]
fn the_hook_narrows_the_channels_and_sets_the_client_id() {
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &[]);
    // Asked for a, b and c; allowed a (and a channel not asked for, which is not added).
    let mut sse = sse_subscribe(server.addr, "/sub/a,b,c", &bearer("narrow"));
    wait_for("the stream on a", || subscribers(server.addr, "a") == 1);
    for channel in ["b", "c", "not-asked"] {
        assert_eq!(subscribers(server.addr, channel), 0, "{channel}");
    }
    publish(server.addr, "b", "not for you");
    publish(server.addr, "a", "for you");
    assert_eq!(sse.next_event().expect("event").data, "for you");
    // Nothing asked for is left: 403, naming the first channel asked for.
    let (status, error, response) = refusal(server.addr, "/sub/b", &bearer("none-left"));
    assert_eq!((status, error.as_str()), (403, "forbidden_channel"));
    assert!(
        response.text().contains("\"channel\":\"b\""),
        "{}",
        response.text()
    );
    // The answer's client id is the stream's, also over a client_id the request asked for.
    let sse = sse_subscribe(server.addr, "/sub/x?client_id=other", &bearer("user-7"));
    assert_eq!(sse.response.header("spout-client-id"), Some("user-7"));
    // A client id spout refuses is a bad answer.
    let (status, error, _) = refusal(server.addr, "/sub/x", &bearer("bad-id"));
    assert_eq!((status, error.as_str()), (503, "auth_hook_bad_answer"));
}

#[test]
fn refusals_have_the_jwt_paths_answers_and_failures_are_503_naming_why() {
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &["--auth-hook-timeout", "300ms"]);
    let (status, error, response) = refusal(server.addr, "/sub/news", &bearer("deny-401"));
    assert_eq!((status, error.as_str()), (401, "invalid_token"));
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    let (status, error, response) = refusal(server.addr, "/sub/news", &bearer("deny-403"));
    assert_eq!((status, error.as_str()), (403, "forbidden_channel"));
    assert!(response.text().contains("\"channel\":\"news\""));
    // No credentials at all: the hook decides (here 401).
    assert_eq!(refusal(server.addr, "/sub/news", "").0, 401);
    for (token, code) in [
        ("garbage", "auth_hook_bad_answer"),
        ("broken", "auth_hook_failed"),
    ] {
        let (status, error, _) = refusal(server.addr, "/sub/news", &bearer(token));
        assert_eq!((status, error.as_str()), (503, code), "{token}");
    }
    let started = Instant::now();
    let (status, error, _) = refusal(server.addr, "/sub/news", &bearer("slow"));
    assert_eq!((status, error.as_str()), (503, "auth_hook_timeout"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    // Counted (the metrics are a snapshot taken each tick).
    wait_for("the refusals counted", || {
        metric(server.addr, "spout_auth_refused_total") == 3
            && metric(server.addr, "spout_auth_hook_failed_total") == 3
    });
}

#[test]
fn a_hook_that_is_down_is_503_unreachable() {
    // A port nothing listens on: bound, then closed.
    let free = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/check", free.local_addr().expect("address"));
    drop(free);
    let server = start(&url, &[]);
    let (status, error, response) = refusal(server.addr, "/sub/news", &bearer("allow"));
    assert_eq!((status, error.as_str()), (503, "auth_hook_unreachable"));
    assert!(
        response.text().contains("cannot be reached"),
        "{}",
        response.text()
    );
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

#[test]
fn past_max_pending_a_subscribe_is_503_busy_and_clients_gone_release_their_checks() {
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &["--auth-hook-max-pending", "4"]);
    let request = format!(
        "GET /sub/news HTTP/1.1\r\nHost: t\r\n{}\r\n",
        bearer("sluggish")
    );
    // Four clients ask and leave at once, while their checks are pending.
    let gone: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(request.as_bytes()).expect("write");
            s
        })
        .collect();
    wait_for("the four checks", || hook.requests().len() == 4);
    let (status, error, _) = refusal(server.addr, "/sub/news", &bearer("allow"));
    assert_eq!((status, error.as_str()), (503, "auth_hook_busy"));
    drop(gone);
    // Their late answers find no request (dropped, nothing left behind), and the bound is free again: a subscribe
    // the hook refuses gets its 401, not a 503.
    wait_for("the checks of the gone clients answered", || {
        refusal(server.addr, "/sub/news", &bearer("deny-401")).0 == 401
    });
    let sse = sse_subscribe(server.addr, "/sub/news", &bearer("allow"));
    assert_eq!(sse.response.status, 200);
    assert_eq!(subscribers(server.addr, "news"), 1);
    // Only the live stream and this request's connection are open.
    wait_for("the gone clients reaped", || {
        metric(server.addr, "spout_connections") <= 2
    });
}

#[test]
fn decisions_are_cached_per_credentials_when_asked() {
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &["--auth-hook-cache", "1m"]);
    for _ in 0..3 {
        sse_subscribe(server.addr, "/sub/news", &bearer("allow"));
        assert_eq!(
            refusal(server.addr, "/sub/news", &bearer("deny-401")).0,
            401
        );
    }
    assert_eq!(hook.requests().len(), 2, "{:?}", hook.requests());
    // Other channels are another request: asked again.
    sse_subscribe(server.addr, "/sub/sport", &bearer("allow"));
    assert_eq!(hook.requests().len(), 3);
    // Without the cache every subscribe asks.
    let uncached = HookServer::start(behaviour);
    let server = start(&uncached.url(), &[]);
    for _ in 0..3 {
        sse_subscribe(server.addr, "/sub/news", &bearer("allow"));
    }
    assert_eq!(uncached.requests().len(), 3);
}

#[test]
fn publishing_under_the_hook_takes_the_publish_key() {
    let hook = HookServer::start(behaviour);
    let key = "0123456789abcdef-key";
    let server = start(&hook.url(), &["--publish-key", key]);
    assert_eq!(publish(server.addr, "news", "x").status, 401);
    let auth = format!("Authorization: Bearer {key}\r\n");
    let answer = request(server.addr, "POST", "/pub/news", &auth, b"x");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        hook.requests().is_empty(),
        "a publish does not ask the hook"
    );
}

#[test]
fn curl_subscribes_through_the_hook() {
    if !require_program("curl") {
        return;
    }
    let hook = HookServer::start(behaviour);
    let server = start(&hook.url(), &[]);
    let child = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "3",
            "-H",
            "Authorization: Bearer allow",
        ])
        .arg(server.url("/sub/news"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    wait_for("curl's stream", || subscribers(server.addr, "news") == 1);
    publish(server.addr, "news", "through the hook");
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("data: through the hook"), "{text}");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-H",
            "Authorization: Bearer deny-403",
            "-w",
            "\n%{http_code}",
        ])
        .arg(server.url("/sub/news"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"forbidden_channel\"") && text.ends_with("\n403"),
        "{text}"
    );
}

/// Publishes `rounds` events to `news`, paced, and returns the slowest publish-to-receipt time of each, over all
/// `streams`.
fn paced_latencies(addr: SocketAddr, streams: &mut [Sse], rounds: usize) -> Vec<Duration> {
    let mut publisher = KeepAlive::new(addr);
    (0..rounds)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(20));
            let sent = Instant::now();
            publisher.publish_id("news", &format!("tick {i}"));
            for sse in streams.iter_mut() {
                let event = sse.next_event().expect("event");
                assert_eq!(event.data, format!("tick {i}"));
            }
            sent.elapsed()
        })
        .collect()
}

fn max(latencies: &[Duration]) -> Duration {
    latencies.iter().copied().max().unwrap_or_default()
}

#[test]
fn a_slow_hook_never_delays_the_fan_out_to_open_streams() {
    let hook = HookServer::start(behaviour);
    let server = start(
        &hook.url(),
        &[
            "--auth-hook-timeout",
            "10s",
            "--auth-hook-max-pending",
            "2000",
        ],
    );
    let mut streams: Vec<Sse> = (0..8)
        .map(|_| sse_subscribe(server.addr, "/sub/news", &bearer("allow")))
        .collect();
    let before = paced_latencies(server.addr, &mut streams, 20);
    // 1,000 subscribes wait on a hook that takes 5 s each (16 at a time): every worker has hundreds parked.
    let request = format!(
        "GET /sub/news HTTP/1.1\r\nHost: t\r\n{}\r\n",
        bearer("slow")
    );
    let waiting: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(request.as_bytes()).expect("write");
            s
        })
        .collect();
    wait_for("the hook busy with slow checks", || {
        hook.requests().len() >= 16
    });
    let during = paced_latencies(server.addr, &mut streams, 20);
    // A worker blocked on the hook would hold an event for seconds (5 s per check); 500 ms is generous for a loaded
    // CI machine.
    assert!(
        max(&during) < Duration::from_millis(500),
        "fan-out during 1,000 pending checks: {during:?} (before: {before:?})"
    );
    assert_eq!(subscribers(server.addr, "news"), 8);
    drop(waiting);
}

//! node-sse-server's API (docs/PROTOCOLS.md §2) against the real binary, reached both ways: at the root of a
//! `=node-sse` listener and under `/node-sse` on a native one. The transcript byte for byte (minus `Date`), the
//! opening frames, presence in JavaScript's key order and when it is re-sent, last values (the channel created by
//! a publish included), batch validation that publishes nothing on any error, JavaScript's `payload + ""`, the
//! fixed `?channels=d,d` crash, express's routing, CORS and error pages, spout's limits in express's style, and the
//! npm `eventsource` client.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::CompatCluster;
use common::*;
use serde_json::{json, Value};

/// A server with a native listener (node-sse under `/node-sse`) and a node-sse listener.
fn start(extra: &[&str]) -> Server {
    start_compat("node-sse", extra)
}

/// Both ways to reach node-sse on a server from `start`: the dedicated listener first.
fn ways(server: &Server) -> [Way; 2] {
    compat_ways(server, "/node-sse")
}

/// Two nodes on one Redis Cluster and a way into each: the first node's own listener, the second's native prefix.
fn two_nodes(extra: &[&str]) -> (CompatCluster, Way, Way) {
    let cluster = CompatCluster::start("node-sse", extra);
    let a = ways(&cluster.nodes[0])[0];
    let b = ways(&cluster.nodes[1])[1];
    (cluster, a, b)
}

/// A new server and its `i`th way in (0: the dedicated listener, 1: the native prefix). Tests that go both ways
/// take a server per way: presence is server-wide, and a stream closed at the end of one round would announce its
/// departure to the next.
fn fresh_way(i: usize) -> (Server, Way) {
    let server = start(&[]);
    let way = ways(&server)[i];
    (server, way)
}

const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nAccess-Control-Allow-Origin: *\r\n\
    Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n";

/// An open stream, after its head and the lone newline that opens it.
struct Sub {
    reader: BufReader<TcpStream>,
}

fn subscribe(way: Way, query: &str) -> Sub {
    let mut stream = connect(way.addr);
    let path = way.path(&format!("/subscribe?{query}"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, true);
    assert_eq!(response.status, 200, "subscribe {query}: {}", response.head);
    assert_eq!(without_date(&response.head), STREAM_HEAD);
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).expect("opening newline");
    assert_eq!(&first, b"\n");
    Sub { reader }
}

impl Sub {
    /// The next frame's bytes (a heartbeat comment is skipped).
    fn frame(&mut self) -> String {
        read_sse_block(&mut self.reader)
    }

    /// The next frame as (event name, data), asserting its shape: one `event:` and one `data:` line.
    fn event(&mut self) -> (String, Value) {
        let frame = self.frame();
        let mut lines = frame.lines();
        let (Some(name), Some(data), Some(""), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            panic!("not an event and a data line: {frame:?}");
        };
        let name = name
            .strip_prefix("event: ")
            .expect("event line")
            .to_string();
        let data = data.strip_prefix("data: ").expect("data line");
        (name, serde_json::from_str(data).expect("JSON data"))
    }

    /// Reads the `registered`, one `lastEvent` per channel and the `online-presence` frames of a new stream;
    /// returns the client id and the presence list.
    fn opening(&mut self, channels: usize) -> (Value, Vec<String>) {
        let (name, data) = self.event();
        assert_eq!(name, "registered");
        let registered: Value =
            serde_json::from_str(data["payload"].as_str().expect("payload")).expect("JSON");
        for _ in 0..channels {
            assert_eq!(self.event().0, "lastEvent");
        }
        (registered["clientId"].clone(), self.presence())
    }

    /// The next frame, which must be `online-presence`: its list.
    fn presence(&mut self) -> Vec<String> {
        let (name, data) = self.event();
        assert_eq!(name, "online-presence", "{data}");
        assert_eq!(data["type"], "online-presence");
        assert!(data.get("channelName").is_none());
        serde_json::from_str(data["payload"].as_str().expect("payload")).expect("JSON list")
    }
}

fn publish(way: Way, events: Value) -> Response {
    request(
        way.addr,
        "POST",
        &way.path("/publish"),
        "Content-Type: application/json\r\n",
        json!({ "events": events }).to_string().as_bytes(),
    )
}

fn publish_ok(way: Way, events: Value) {
    let resp = publish(way, events);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty());
}

fn event(channel: &str, kind: &str, payload: Value) -> Value {
    json!({"channelName": channel, "type": kind, "payload": payload})
}

fn last_event(way: Way, channel: &str) -> Value {
    let resp = get(
        way.addr,
        &way.path(&format!("/lastEvent?channel={channel}")),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    resp.json()
}

/// Asserts express's production error page: status, the message in `<pre>`, its fields, CORS only with `cors`.
fn assert_page(resp: &Response, status: u16, message: &str, cors: bool) {
    assert_eq!(resp.status, status, "{}{}", resp.head, resp.text());
    assert_eq!(
        resp.text(),
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n\
             <body>\n<pre>{message}</pre>\n</body>\n</html>\n"
        )
    );
    assert_eq!(resp.header("x-powered-by"), Some("Express"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        resp.header("content-security-policy"),
        Some("default-src 'none'")
    );
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        resp.header("access-control-allow-origin"),
        cors.then_some("*"),
        "{}",
        resp.head
    );
}

/// Asserts a plain `res.end(text)` answer: no content type, CORS.
fn assert_plain(resp: &Response, status: u16, text: &str) {
    assert_eq!(resp.status, status, "{}{}", resp.head, resp.text());
    assert_eq!(resp.text(), text);
    assert_eq!(resp.header("content-type"), None);
    assert_eq!(resp.header("x-powered-by"), Some("Express"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
}

// ---- the transcript --------------------------------------------------------------------------------------------

#[test]
fn transcript_byte_for_byte_both_ways() {
    if !require_program("curl") {
        return;
    }
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        let mut stream = connect(way.addr);
        let path = way.path("/subscribe/?channels=news,sports&clientId=alice");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, true);
        assert_eq!(without_date(&response.head), STREAM_HEAD);
        let opening = "\nevent: registered\ndata: {\"type\":\"registered\",\"payload\":\"{\\\"clientId\\\":\\\"alice\\\"}\"}\n\n\
            event: lastEvent\ndata: {\"channelName\":\"news\",\"type\":\"lastEvent\",\"payload\":\"{}\"}\n\n\
            event: lastEvent\ndata: {\"channelName\":\"sports\",\"type\":\"lastEvent\",\"payload\":\"{}\"}\n\n\
            event: online-presence\ndata: {\"type\":\"online-presence\",\"payload\":\"[\\\"alice\\\"]\"}\n\n";
        let mut got = vec![0u8; opening.len()];
        reader.read_exact(&mut got).expect("opening frames");
        assert_eq!(String::from_utf8_lossy(&got), opening);

        let out = Command::new("curl")
            .args(["-s", "-i", "-X", "POST"])
            .arg(format!("http://{}{}", way.addr, way.path("/publish")))
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", r#"{"events":[{"channelName":"news","type":"message","payload":"{\"headline\":\"hi\"}"},{"channelName":"sports","type":"score","payload":"3-1"}]}"#])
            .output()
            .expect("run curl");
        assert_eq!(
            without_date(&String::from_utf8_lossy(&out.stdout)),
            "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\n\r\n"
        );
        let delivered = "event: message\ndata: {\"channelName\":\"news\",\"type\":\"message\",\"payload\":\"{\\\"headline\\\":\\\"hi\\\"}\"}\n\n\
            event: score\ndata: {\"channelName\":\"sports\",\"type\":\"score\",\"payload\":\"3-1\"}\n\n";
        let mut got = vec![0u8; delivered.len()];
        reader.read_exact(&mut got).expect("delivered frames");
        assert_eq!(String::from_utf8_lossy(&got), delivered);
    }
}

#[test]
fn a_real_eventsource_client_gets_the_named_events() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        let channels = format!("es{i}a,es{i}b");
        let url = format!(
            "http://{}{}",
            way.addr,
            way.path(&format!(
                "/subscribe/?channels={channels}&clientId=browser{i}"
            ))
        );
        let names = [
            "registered",
            "lastEvent",
            "online-presence",
            "message",
            "foo",
        ];
        let mut args = vec![url.as_str()];
        args.extend_from_slice(&names);
        let client = NodeScript::start("eventsource_client.mjs", &args);
        let next = || client.next();
        assert_eq!(next(), json!({"state": "open"}));
        let data = |line: Value, name: &str| -> Value {
            assert_eq!(line["event"], name, "{line}");
            serde_json::from_str(line["data"].as_str().expect("data")).expect("JSON data")
        };
        let registered = data(next(), "registered");
        assert_eq!(
            registered["payload"],
            json!({"clientId": format!("browser{i}")}).to_string()
        );
        for channel in [format!("es{i}a"), format!("es{i}b")] {
            assert_eq!(
                data(next(), "lastEvent"),
                event(&channel, "lastEvent", json!("{}"))
            );
        }
        let presence = data(next(), "online-presence");
        let listed: Vec<String> =
            serde_json::from_str(presence["payload"].as_str().expect("list")).expect("JSON");
        assert!(listed.contains(&format!("browser{i}")), "{listed:?}");
        // The README's example: one request fires `message` and `foo` on the first channel.
        publish_ok(
            way,
            json!([
                event(
                    &format!("es{i}a"),
                    "message",
                    json!("{ \"location\": \"123.44,34.234234\"}")
                ),
                event(
                    &format!("es{i}a"),
                    "foo",
                    json!("{ \"message\": \"Hi fooo\"}")
                ),
                event(&format!("es{i}b"), "bar", json!("not listened to")),
                event(
                    &format!("es{i}b"),
                    "message",
                    json!("{ \"location\": \"123.44\"}")
                ),
            ]),
        );
        assert_eq!(
            data(next(), "message"),
            event(
                &format!("es{i}a"),
                "message",
                json!("{ \"location\": \"123.44,34.234234\"}")
            )
        );
        assert_eq!(
            data(next(), "foo"),
            event(
                &format!("es{i}a"),
                "foo",
                json!("{ \"message\": \"Hi fooo\"}")
            )
        );
        assert_eq!(
            data(next(), "message"),
            event(
                &format!("es{i}b"),
                "message",
                json!("{ \"location\": \"123.44\"}")
            )
        );
    }
}

// ---- subscribe, presence, last values --------------------------------------------------------------------------

#[test]
fn client_ids_and_presence_in_javascript_key_order() {
    let server = start(&[]);
    let [a, b] = ways(&server);
    presence_case(a, b);
}

/// The sockets of one id on different nodes are counted together: presence changes when the last one goes.
#[test]
fn client_ids_and_presence_in_javascript_key_order_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    presence_case(a, b);
}

fn presence_case(a: Way, b: Way) {
    let mut first = subscribe(a, "channels=p");
    let (id, presence) = first.opening(1);
    assert_eq!(id, json!(1), "a counted id is a number");
    assert_eq!(presence, ["1"]);

    let mut alice = subscribe(b, "channels=p&clientId=alice");
    assert_eq!(
        alice.opening(1),
        (json!("alice"), vec!["1".into(), "alice".into()])
    );
    assert_eq!(first.presence(), ["1", "alice"]);

    let mut second = subscribe(a, "channels=p&clientId=");
    assert_eq!(
        second.opening(1).0,
        json!(2),
        "an empty clientId counts as none"
    );
    // Array-index ids come first, in numeric order, whatever their insertion order.
    let mut ten = subscribe(b, "channels=p&clientId=10");
    let expected = ["1", "2", "10", "alice"];
    assert_eq!(ten.opening(1).1, expected);
    for sub in [&mut first, &mut alice] {
        assert_eq!(sub.presence(), ["1", "2", "alice"]);
    }
    for sub in [&mut first, &mut alice, &mut second] {
        assert_eq!(sub.presence(), expected);
    }

    // A second socket of alice: presence is sent on every connect, but not when one of two sockets goes.
    let mut alice_again = subscribe(a, "channels=q&clientId=alice");
    assert_eq!(alice_again.opening(1).1, expected);
    drop(alice_again);
    // An explicit `1` shares the key of the counted 1.
    let mut one = subscribe(b, "channels=p&clientId=1");
    assert_eq!(
        one.opening(1),
        (json!("1"), expected.map(String::from).to_vec())
    );
    for sub in [&mut first, &mut alice, &mut second, &mut ten] {
        assert_eq!(sub.presence(), expected, "alice's second socket connected");
        assert_eq!(
            sub.presence(),
            expected,
            "`1` connected, alice's socket left unannounced"
        );
    }
    // alice's last socket goes: everyone hears it. The counted 1 goes, but `1` stays.
    drop(alice);
    for sub in [&mut first, &mut second, &mut ten, &mut one] {
        assert_eq!(sub.presence(), ["1", "2", "10"]);
    }
    drop(first);
    let mut zed = subscribe(a, "channels=p&clientId=zed");
    assert_eq!(zed.opening(1).1, ["1", "2", "10", "zed"]);
    // An id that comes back goes last among the names.
    let mut alice = subscribe(b, "channels=p&clientId=alice");
    assert_eq!(alice.opening(1).1, ["1", "2", "10", "zed", "alice"]);
    assert_eq!(one.presence(), ["1", "2", "10", "zed"]);
    assert_eq!(one.presence(), ["1", "2", "10", "zed", "alice"]);
    // The counter is process-wide and never reused.
    let mut third = subscribe(a, "channels=p");
    assert_eq!(third.opening(1).0, json!(3));
}

#[test]
fn last_values_including_the_channel_a_publish_creates() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        last_values_including_the_channel_a_publish_creates_case(way, way, i);
    }
}

#[test]
fn last_values_including_the_channel_a_publish_creates_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    last_values_including_the_channel_a_publish_creates_case(a, b, 0);
}

fn last_values_including_the_channel_a_publish_creates_case(a: Way, b: Way, i: usize) {
    let ch = |name: &str| format!("{name}{i}");
    assert_plain(&get(a.addr, &a.path("/lastEvent")), 400, "Bad Request");
    assert_plain(
        &get(a.addr, &a.path("/lastEvent?channel=")),
        400,
        "Bad Request",
    );
    assert_eq!(last_event(a, &ch("unknown")), json!({}));

    // A publish to a channel nobody created makes it, keeps the raw payload and delivers nothing.
    publish_ok(
        b,
        json!([event(&ch("fresh"), "t", json!({"a": 1.0, "2": [true]}))]),
    );
    assert!(same_json(
        &last_event(a, &ch("fresh")),
        &json!({"response": {"2": [true], "a": 1}})
    ));
    let mut sub = subscribe(a, &format!("channels={},{}", ch("fresh"), ch("quiet")));
    let (name, data) = sub.event();
    assert_eq!(name, "registered", "{data}");
    // The frame carries the stored value as `payload + ""`, like every other event.
    assert_eq!(
        sub.event().1,
        event(&ch("fresh"), "lastEvent", json!("[object Object]"))
    );
    assert_eq!(sub.event().1, event(&ch("quiet"), "lastEvent", json!("{}")));
    sub.presence();
    assert_eq!(last_event(a, &ch("quiet")), json!({"response": "{}"}));

    // Now it exists: delivered as `payload + ""`, stored as JSON.stringify({type, payload}).
    publish_ok(
        b,
        json!([event(&ch("fresh"), "t", json!({"b": [1.0, "x", 1e21]}))]),
    );
    assert_eq!(
        sub.event(),
        (
            "t".to_string(),
            event(&ch("fresh"), "t", json!("[object Object]"))
        )
    );
    assert_eq!(
        last_event(a, &ch("fresh")),
        json!({"response": "{\"type\":\"t\",\"payload\":{\"b\":[1,\"x\",1e+21]}}"})
    );
    // Within one batch the first event creates the channel, the second is delivered and stored.
    publish_ok(
        b,
        json!([
            event(&ch("batch"), "a", json!("1")),
            event(&ch("batch"), "b", json!("2"))
        ]),
    );
    assert_eq!(
        last_event(a, &ch("batch")),
        json!({"response": "{\"type\":\"b\",\"payload\":\"2\"}"})
    );
    let mut later = subscribe(a, &format!("channels={}", ch("batch")));
    later.event();
    assert_eq!(
        later.event().1,
        event(
            &ch("batch"),
            "lastEvent",
            json!("{\"type\":\"b\",\"payload\":\"2\"}")
        )
    );
}

/// The original builds the `lastEvent` frames of a new stream with `payload + ""`, like every other event, so a
/// channel a publish created shows its raw payload there as JavaScript's string of it, while `GET /lastEvent`
/// answers the raw value.
#[test]
fn last_event_frames_carry_the_created_channels_payload_as_a_string() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        last_event_frames_carry_the_created_channels_payload_as_a_string_case(way, way, i);
    }
}

#[test]
fn last_event_frames_carry_the_created_channels_payload_as_a_string_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    last_event_frames_carry_the_created_channels_payload_as_a_string_case(a, b, 0);
}

fn last_event_frames_carry_the_created_channels_payload_as_a_string_case(a: Way, b: Way, i: usize) {
    let cases: [(Value, &str); 7] = [
        (json!({"a": 1}), "[object Object]"),
        (
            json!([1, [2, [3]], null, {"x": 1}, "s", true]),
            "1,2,3,,[object Object],s,true",
        ),
        (json!(2.5e3), "2500"),
        (json!(1e21), "1e+21"),
        (json!(true), "true"),
        (json!("as is"), "as is"),
        (json!([]), ""),
    ];
    let names: Vec<String> = (0..cases.len()).map(|n| format!("made{i}-{n}")).collect();
    for (name, (payload, _)) in names.iter().zip(&cases) {
        publish_ok(b, json!([event(name, "t", payload.clone())]));
        assert!(same_json(
            &last_event(a, name),
            &json!({ "response": payload })
        ));
    }
    let mut sub = subscribe(a, &format!("channels={}", names.join(",")));
    assert_eq!(sub.event().0, "registered");
    for (name, (_, want)) in names.iter().zip(&cases) {
        assert_eq!(
            sub.event(),
            (
                "lastEvent".to_string(),
                event(name, "lastEvent", json!(want))
            )
        );
    }
    sub.presence();
}

#[test]
fn payloads_and_types_go_out_as_javascript_prints_them() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        payloads_and_types_go_out_as_javascript_prints_them_case(way, way, i);
    }
}

#[test]
fn payloads_and_types_go_out_as_javascript_prints_them_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    payloads_and_types_go_out_as_javascript_prints_them_case(a, b, 0);
}

fn payloads_and_types_go_out_as_javascript_prints_them_case(a: Way, b: Way, i: usize) {
    let channel = format!("p{i}");
    let mut sub = subscribe(a, &format!("channels={channel},7"));
    sub.opening(2);
    let cases: [(Value, &str); 9] = [
        (json!("text\nwith \"quotes\""), "text\nwith \"quotes\""),
        (json!(42), "42"),
        (json!(1.0), "1"),
        (json!(2.5e3), "2500"),
        (json!(1e21), "1e+21"),
        (json!(0.0000001), "1e-7"),
        (
            json!([1, [2, 3], null, {}, "s"]),
            "1,2,3,,[object Object],s",
        ),
        (json!({"a": 1}), "[object Object]"),
        (json!(true), "true"),
    ];
    for (payload, want) in cases {
        publish_ok(b, json!([event(&channel, "kind", payload)]));
        assert_eq!(
            sub.event(),
            ("kind".to_string(), event(&channel, "kind", json!(want)))
        );
    }
    // Exact where JavaScript would round: an integer that fits 64 bits.
    publish_ok(
        b,
        json!([event(&channel, "kind", json!(12345678901234567890u64))]),
    );
    assert_eq!(sub.event().1["payload"], "12345678901234567890");
    // `type` and `channelName` go into the data as sent, and name the event and channel by their text.
    publish_ok(
        b,
        json!([{"channelName": 7, "type": ["a", 5], "payload": "x"}]),
    );
    let (name, data) = sub.event();
    assert_eq!(name, "a,5");
    assert_eq!(
        data,
        json!({"channelName": 7, "type": ["a", 5], "payload": "x"})
    );
}

/// A number past float64's range is `Infinity` to the original's `JSON.parse`: `payload + ""` sends `"Infinity"`
/// (`-Infinity`, joined into an array's text), and `JSON.stringify` writes `null` for it, in stored last values
/// and in the `data` JSON. Nothing is refused for it; a malformed number still is.
#[test]
fn numbers_past_float64_are_infinity_as_json_parse_reads_them() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        numbers_past_float64_are_infinity_as_json_parse_reads_them_case(way, way, i);
    }
}

#[test]
fn numbers_past_float64_are_infinity_as_json_parse_reads_them_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    numbers_past_float64_are_infinity_as_json_parse_reads_them_case(a, b, 0);
}

fn numbers_past_float64_are_infinity_as_json_parse_reads_them_case(a: Way, b: Way, i: usize) {
    let channel = format!("inf{i}");
    let publish_raw = |events: &str| {
        request(
            b.addr,
            "POST",
            &b.path("/publish"),
            "Content-Type: application/json\r\n",
            format!("{{\"events\":[{events}]}}").as_bytes(),
        )
    };
    let mut sub = subscribe(a, &format!("channels={channel},Infinity"));
    sub.opening(2);
    let huge = format!("1{}", "0".repeat(400));
    let cases: [(&str, &str, &str); 7] = [
        ("1e400", "Infinity", "null"),
        ("-1E+400", "-Infinity", "null"),
        (&huge, "Infinity", "null"),
        (
            "[1e400, 2, [-1e400, null]]",
            "Infinity,2,-Infinity,",
            "[null,2,[null,null]]",
        ),
        (
            r#"{"a":1e400,"b":[-1e400]}"#,
            "[object Object]",
            r#"{"a":null,"b":[null]}"#,
        ),
        (
            r#""1e400 \" 1e400""#,
            "1e400 \" 1e400",
            r#""1e400 \" 1e400""#,
        ),
        ("1e-400", "", ""),
    ];
    for (payload, text, stored) in cases {
        let resp = publish_raw(&format!(
            r#"{{"channelName":"{channel}","type":"t","payload":{payload}}}"#
        ));
        if text.is_empty() {
            // `1e-400` is 0, which is falsy: the missing-field 400, as in the original.
            assert_eq!(resp.status, 400, "{payload}: {}", resp.text());
            continue;
        }
        assert_eq!(resp.status, 200, "{payload}: {}", resp.text());
        assert_eq!(
            sub.event(),
            ("t".to_string(), event(&channel, "t", json!(text))),
            "{payload}"
        );
        assert_eq!(
            last_event(a, &channel),
            json!({ "response": format!(r#"{{"type":"t","payload":{stored}}}"#) }),
            "{payload}"
        );
    }
    // As a channel name and a type: the text `Infinity` names them, the data JSON holds null.
    let resp = publish_raw(r#"{"channelName":1e400,"type":-1e400,"payload":"x"}"#);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        sub.event(),
        (
            "-Infinity".to_string(),
            json!({"channelName": null, "type": null, "payload": "x"})
        )
    );

    // A channel a publish creates keeps the raw value: JSON.stringify'd by `GET /lastEvent`, `+ ""` on connect.
    let made = format!("made{i}");
    let made_list = format!("made-list{i}");
    assert_eq!(
        publish_raw(&format!(
            r#"{{"channelName":"{made}","type":"t","payload":-1e400}},
               {{"channelName":"{made_list}","type":"t","payload":[1e400,{{"a":1e400}},2]}}"#
        ))
        .status,
        200
    );
    assert_eq!(last_event(a, &made), json!({ "response": null }));
    assert_eq!(
        last_event(a, &made_list),
        json!({"response": [null, {"a": null}, 2]})
    );
    let mut later = subscribe(a, &format!("channels={made},{made_list}"));
    assert_eq!(later.event().0, "registered");
    assert_eq!(
        later.event().1,
        event(&made, "lastEvent", json!("-Infinity"))
    );
    assert_eq!(
        later.event().1,
        event(&made_list, "lastEvent", json!("Infinity,[object Object],2"))
    );

    // A malformed number is body-parser's 400, before CORS.
    for bad in ["1e400x", "01e400", "1e400e1", "-", "1.e400"] {
        let resp = publish_raw(&format!(
            r#"{{"channelName":"{channel}","type":"t","payload":{bad}}}"#
        ));
        assert_page(&resp, 400, "Bad Request", false);
    }
}

/// Text written into JSON (on several nodes, by the scripts in Redis: the presence list, stored last values) is
/// escaped exactly as `JSON.stringify` does: quotes, backslashes and control characters, and not `/`, DEL or
/// non-ASCII characters.
#[test]
fn json_text_is_escaped_as_json_stringify_does() {
    let server = start(&[]);
    let [a, b] = ways(&server);
    escaping_case(a, b);
}

#[test]
fn json_text_is_escaped_as_json_stringify_does_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    escaping_case(a, b);
}

fn escaping_case(a: Way, b: Way) {
    let id = "q\"\\/\u{1}\u{7f}\t\u{e9}<";
    let encoded: String = id.bytes().map(|byte| format!("%{byte:02X}")).collect();
    let mut sub = subscribe(a, &format!("channels=esc&clientId={encoded}"));
    assert_eq!(
        sub.event().1["payload"],
        json!({"clientId": id}).to_string()
    );
    assert_eq!(sub.event().0, "lastEvent");
    let list = serde_json::to_string(&[id]).expect("JSON");
    let data = json!({"type": "online-presence", "payload": list});
    assert_eq!(
        sub.frame(),
        format!("event: online-presence\ndata: {data}\n\n")
    );
    let payload = "x\u{1}\u{1f}\u{7f}/\"\\\u{e9}\n\r\u{8}\u{c}";
    publish_ok(b, json!([event("esc", "t", json!(payload))]));
    assert_eq!(sub.event().1["payload"], payload);
    let resp = get(a.addr, &a.path("/lastEvent?channel=esc"));
    let stored = json!({"type": "t", "payload": payload}).to_string();
    let stored = serde_json::to_string(&stored).expect("JSON");
    assert_eq!(resp.text(), format!("{{\"response\":{stored}}}"));
}

// ---- publish refusals ------------------------------------------------------------------------------------------

#[test]
fn a_refused_batch_publishes_and_stores_nothing() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        a_refused_batch_publishes_and_stores_nothing_case(way, way, i);
    }
}

#[test]
fn a_refused_batch_publishes_and_stores_nothing_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    a_refused_batch_publishes_and_stores_nothing_case(a, b, 0);
}

fn a_refused_batch_publishes_and_stores_nothing_case(a: Way, b: Way, i: usize) {
    let guard = format!("guard{i}");
    let mut sub = subscribe(a, &format!("channels={guard}"));
    sub.opening(1);
    let valid = event(&guard, "leak", json!("must not arrive"));
    let reserved = "Event type \"registered\" is reserved, can't fire!";
    let missing = "Bad Request: 'channelName', 'type', and 'payload' are three required json fields in an event.";
    let cases: [(Value, &str); 10] = [
        (
            json!([valid, event(&guard, "registered", json!("x"))]),
            reserved,
        ),
        (
            json!([valid, event(&guard, "online-presence", json!("x"))]),
            "Event type \"online-presence\" is reserved, can't fire!",
        ),
        (
            json!([valid, event(&guard, "lastEvent", json!("x"))]),
            "Event type \"lastEvent\" is reserved, can't fire!",
        ),
        (json!([valid, event(&guard, "t", json!(0))]), missing),
        (json!([valid, event(&guard, "t", json!(""))]), missing),
        (json!([valid, event(&guard, "t", json!(false))]), missing),
        (json!([valid, event(&guard, "t", json!(null))]), missing),
        (json!([valid, {"type": "t", "payload": "p"}]), missing),
        (
            json!([valid, event(&guard, "multi\nline", json!("p"))]),
            missing,
        ),
        (
            json!([valid, event(&guard, "carriage\rreturn", json!("p"))]),
            missing,
        ),
    ];
    for (events, text) in cases {
        assert_plain(&publish(b, events), 400, text);
    }
    for events in [json!({}), json!([valid, null]), json!(5)] {
        assert_page(&publish(b, events), 500, "Internal Server Error", true);
    }
    let post =
        |headers: &str, body: &[u8]| request(b.addr, "POST", &b.path("/publish"), headers, body);
    let json_type = "Content-Type: application/json\r\n";
    // body-parser's errors come before CORS.
    assert_page(&post(json_type, b"{\"events\":"), 400, "Bad Request", false);
    assert_page(&post(json_type, b"\"a string\""), 400, "Bad Request", false);
    let big = json!({"events": [event(&guard, "big", json!("x".repeat(100 * 1024)))]}).to_string();
    assert_page(
        &post(json_type, big.as_bytes()),
        413,
        "Payload Too Large",
        false,
    );
    assert_page(
        &post("Content-Type: application/json; charset=latin1\r\n", b"{}"),
        415,
        "Unsupported Media Type",
        false,
    );
    // Without a JSON content type the body is not read: 200, nothing published.
    let body = json!({"events": [valid]}).to_string();
    assert_plain(
        &post("Content-Type: text/plain\r\n", body.as_bytes()),
        200,
        "",
    );
    assert_plain(&post("", body.as_bytes()), 200, "");
    assert_plain(&post(json_type, b""), 200, "");

    let marker = event(&guard, "marker", json!("first to arrive"));
    publish_ok(b, json!([marker]));
    assert_eq!(sub.event(), ("marker".to_string(), marker.clone()));
    assert_eq!(
        last_event(a, &guard),
        json!({"response": "{\"type\":\"marker\",\"payload\":\"first to arrive\"}"})
    );
}

/// Only `type` is written outside the JSON (the `event:` line), so only its line breaks are refused; a channel
/// name with line breaks is subscribed, published to and stored as by the original, escaped inside the `data:` JSON.
#[test]
fn a_channel_name_with_line_breaks_stays_inside_the_json() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        a_channel_name_with_line_breaks_stays_inside_the_json_case(way, way, i);
    }
}

#[test]
fn a_channel_name_with_line_breaks_stays_inside_the_json_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    a_channel_name_with_line_breaks_stays_inside_the_json_case(a, b, 0);
}

fn a_channel_name_with_line_breaks_stays_inside_the_json_case(a: Way, b: Way, i: usize) {
    let channel = format!("line\nbreak\r{i}");
    let mut sub = subscribe(a, &format!("channels=line%0Abreak%0D{i}&clientId=nl"));
    let (_, data) = sub.event();
    assert_eq!(data["type"], "registered");
    assert_eq!(
        sub.frame(),
        format!(
            "event: lastEvent\ndata: {{\"channelName\":\"line\\nbreak\\r{i}\",\"type\":\"lastEvent\",\"payload\":\"{{}}\"}}\n\n"
        )
    );
    sub.presence();
    publish_ok(b, json!([event(&channel, "t", json!("p"))]));
    assert_eq!(
        sub.frame(),
        format!(
            "event: t\ndata: {{\"channelName\":\"line\\nbreak\\r{i}\",\"type\":\"t\",\"payload\":\"p\"}}\n\n"
        )
    );
    assert_eq!(
        last_event(a, &format!("line%0Abreak%0D{i}")),
        json!({"response": "{\"type\":\"t\",\"payload\":\"p\"}"})
    );
}

// ---- the fixed crash -------------------------------------------------------------------------------------------

#[test]
fn a_channel_listed_twice_delivers_once_and_leaving_crashes_nothing() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        a_channel_listed_twice_delivers_once_and_leaving_crashes_nothing_case(way, way, i);
    }
}

#[test]
fn a_channel_listed_twice_delivers_once_and_leaving_crashes_nothing_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    a_channel_listed_twice_delivers_once_and_leaving_crashes_nothing_case(a, b, 0);
}

fn a_channel_listed_twice_delivers_once_and_leaving_crashes_nothing_case(a: Way, b: Way, i: usize) {
    let (d, m) = (format!("d{i}"), format!("m{i}"));
    let mut watcher = subscribe(a, &format!("channels={m}&clientId=watcher{i}"));
    watcher.opening(1);
    let mut twice = subscribe(b, &format!("channels={d},{d},{m}&clientId=twice{i}"));
    let (_, data) = twice.event();
    assert_eq!(data["type"], "registered");
    // The original's two lastEvent frames for the listed duplicate are kept.
    assert_eq!(twice.event().1, event(&d, "lastEvent", json!("{}")));
    assert_eq!(twice.event().1, event(&d, "lastEvent", json!("{}")));
    assert_eq!(twice.event().1, event(&m, "lastEvent", json!("{}")));
    twice.presence();
    watcher.presence();
    publish_ok(
        b,
        json!([
            event(&d, "once", json!("1")),
            event(&m, "after", json!("2"))
        ]),
    );
    assert_eq!(twice.event().0, "once");
    assert_eq!(
        twice.event().0,
        "after",
        "the duplicate subscription delivered a second copy"
    );
    assert_eq!(watcher.event().0, "after");
    drop(twice);
    // The original died here; spout tells the others and goes on.
    assert!(!watcher.presence().contains(&format!("twice{i}")));
    assert_plain(&get(a.addr, &a.path("/")), 200, "ROOT");

    // A repeated `channels` key reads as a comma list; the query is decoded before it is split; empty names
    // are channels too.
    let mut repeated = subscribe(a, &format!("channels={d}&channels={m}%2Cx{i},"));
    repeated.event();
    for (channel, last) in [
        (d.clone(), "{\"type\":\"once\",\"payload\":\"1\"}"),
        (m.clone(), "{\"type\":\"after\",\"payload\":\"2\"}"),
        (format!("x{i}"), "{}"),
        (String::new(), "{}"),
    ] {
        assert_eq!(
            repeated.event().1,
            event(&channel, "lastEvent", json!(last))
        );
    }
    repeated.presence();
    watcher.presence();
    publish_ok(b, json!([event(&format!("x{i}"), "x", json!("3"))]));
    assert_eq!(repeated.event().0, "x");
}

// ---- express ---------------------------------------------------------------------------------------------------

#[test]
fn routing_cors_and_pages_are_expresss() {
    for i in 0..2 {
        let (_server, way) = fresh_way(i);
        let resp = get(way.addr, &way.path("/?x=1"));
        assert_eq!(
            without_date(&resp.head),
            "HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 4\r\n\r\n"
        );
        assert_eq!(resp.text(), "ROOT");
        let resp = request(way.addr, "HEAD", &way.path("/"), "", b"");
        assert_eq!(resp.header("content-length"), Some("4"));

        let resp = get(way.addr, &way.path("/subscribe"));
        assert_eq!(
            without_date(&resp.head),
            "HTTP/1.1 400 Bad Request\r\nX-Powered-By: Express\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 11\r\n\r\n"
        );
        assert_eq!(resp.text(), "Bad Request");
        assert_plain(
            &get(way.addr, &way.path("/subscribe?channels=")),
            400,
            "Bad Request",
        );

        // A preflight on any path, echoing the requested headers.
        let resp = request(
            way.addr,
            "OPTIONS",
            &way.path("/anything/at/all"),
            "Origin: http://page.test\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-y\r\n",
            b"",
        );
        assert_eq!(
            without_date(&resp.head),
            "HTTP/1.1 204 No Content\r\nX-Powered-By: Express\r\nAccess-Control-Allow-Origin: *\r\n\
             Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\nVary: Access-Control-Request-Headers\r\n\
             Access-Control-Allow-Headers: content-type,x-y\r\nContent-Length: 0\r\n\r\n"
        );
        let resp = request(way.addr, "OPTIONS", &way.path("/publish"), "", b"");
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("access-control-allow-headers"), None);
        assert_eq!(resp.header("vary"), Some("Access-Control-Request-Headers"));

        for (method, path, message) in [
            ("GET", "/nope", "Cannot GET /nope"),
            ("GET", "/publish", "Cannot GET /publish"),
            ("POST", "/subscribe", "Cannot POST /subscribe"),
            ("PUT", "/publish?x=1", "Cannot PUT /publish"),
            ("GET", "/subscribe//", "Cannot GET /subscribe//"),
            ("GET", "/a%zz/b'c", "Cannot GET /a%25zz/b&#39;c"),
        ] {
            let resp = request(way.addr, method, &way.path(path), "", b"");
            assert_page(&resp, 404, message, true);
        }
        // Case-insensitive, and not strict about one trailing slash.
        for path in ["/SUBSCRIBE?channels=r", "/Subscribe/?channels=r"] {
            let resp = get(way.addr, &way.path(path));
            assert_eq!(without_date(&resp.head), STREAM_HEAD, "{path}");
        }
        assert_eq!(
            get(way.addr, &way.path("/LASTEVENT/?channel=r")).json(),
            json!({"response": "{}"})
        );
        let resp = request(
            way.addr,
            "POST",
            &way.path("/Publish/"),
            "Content-Type: application/json\r\n",
            b"{}",
        );
        assert_plain(&resp, 200, "");
    }
}

#[test]
fn head_of_subscribe_registers_nobody() {
    let server = start(&[]);
    let [way, _] = ways(&server);
    head_case(way, way);
}

#[test]
fn head_of_subscribe_registers_nobody_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    head_case(a, b);
}

fn head_case(a: Way, b: Way) {
    let resp = request(
        a.addr,
        "HEAD",
        &a.path("/subscribe?channels=h&clientId=ghost"),
        "",
        b"",
    );
    assert_eq!(without_date(&resp.head), STREAM_HEAD);
    let mut sub = subscribe(b, "channels=h&clientId=real");
    assert_eq!(sub.opening(1).1, ["real"]);
}

const LIMITS: [&str; 8] = [
    "--max-head",
    "1KiB",
    "--max-subscriptions",
    "3",
    "--max-channels",
    "4",
    "--history-max-bytes",
    "2KiB",
];

#[test]
fn spouts_limits_are_refused_in_expresss_style() {
    let server = start(&LIMITS);
    let [way, _] = ways(&server);
    limits_case(way, way);
}

/// The bounds on last values count every node's channels together.
#[test]
fn spouts_limits_are_refused_in_expresss_style_on_two_nodes() {
    let (_cluster, a, b) = two_nodes(&LIMITS);
    limits_case(a, b);
}

fn limits_case(a: Way, b: Way) {
    let big = format!("X-Big: {}\r\n", "x".repeat(2048));
    let resp = request(a.addr, "GET", &a.path("/"), &big, b"");
    assert_page(&resp, 431, "Request Header Fields Too Large", false);
    assert_eq!(resp.header("connection"), Some("close"));
    // Three channels and the presence channel are more than three subscriptions.
    assert_page(
        &get(a.addr, &a.path("/subscribe?channels=a,b,c")),
        400,
        "Bad Request",
        true,
    );
    let mut sub = subscribe(a, "channels=a,b");
    sub.opening(2);
    // Core channels: a, b, presence; one more fits, two do not, and a refused subscribe leaves nothing behind.
    assert_page(
        &get(a.addr, &a.path("/subscribe?channels=c,d")),
        503,
        "Service Unavailable",
        true,
    );
    assert_eq!(last_event(b, "c"), json!({}));
    // Last values: a and b exist; a batch creating three more would pass four, and is refused whole.
    let resp = publish(
        b,
        json!([
            event("c", "t", json!("1")),
            event("d", "t", json!("1")),
            event("e", "t", json!("1"))
        ]),
    );
    assert_page(&resp, 503, "Service Unavailable", true);
    assert_eq!(last_event(a, "c"), json!({}));
    // Bytes: 2 KiB of names and values together.
    let resp = publish(b, json!([event("a", "t", json!("x".repeat(3000)))]));
    assert_page(&resp, 503, "Service Unavailable", true);
    assert_eq!(last_event(a, "a"), json!({"response": "{}"}));
    publish_ok(b, json!([event("a", "t", json!("x".repeat(1000)))]));
    assert_eq!(sub.event().0, "t");
}

#[test]
fn the_connection_limit_is_refused_with_expresss_page() {
    let server = start(&["--max-connections", "1"]);
    let [way, _] = ways(&server);
    let mut sub = subscribe(way, "channels=only");
    sub.opening(1);
    let mut reader = BufReader::new(connect(way.addr));
    let resp = read_response(&mut reader, false);
    assert_page(&resp, 503, "Service Unavailable", false);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("connection"), Some("close"));
}

// ---- several nodes ---------------------------------------------------------------------------------------------

/// Automatic ids come from one counter: subscribes racing on both nodes get each number once.
#[test]
fn counted_ids_are_unique_across_nodes() {
    let (_cluster, a, b) = two_nodes(&[]);
    let racers: Vec<_> = [a, b]
        .into_iter()
        .map(|way| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let mut sub = subscribe(way, "channels=race");
                        let (name, data) = sub.event();
                        assert_eq!(name, "registered");
                        let registered: Value =
                            serde_json::from_str(data["payload"].as_str().expect("payload"))
                                .expect("JSON");
                        (registered["clientId"].as_u64().expect("a number"), sub)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<u64> = racers
        .into_iter()
        .flat_map(|racer| racer.join().expect("racer"))
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
}

/// A node killed with its clients on it: within the TTL (and a refresh) the other node's streams hear each of
/// its client ids leave, except an id that still has a socket on the surviving node; clients that reconnect there
/// carry on, with the counter going on from where it was, and last values kept.
#[test]
fn a_killed_nodes_clients_leave_presence_within_the_ttl() {
    let (cluster, a, b) = two_nodes(&["--broker-node-ttl", "3s"]);
    let mut watcher = subscribe(a, "channels=k&clientId=watcher");
    assert_eq!(watcher.opening(1).1, ["watcher"]);
    let mut counted = subscribe(b, "channels=k");
    assert_eq!(
        counted.opening(1),
        (json!(1), vec!["1".into(), "watcher".into()])
    );
    let mut alice = subscribe(b, "channels=k&clientId=alice");
    alice.opening(1);
    let mut both = subscribe(b, "channels=k&clientId=both");
    both.opening(1);
    let mut both_here = subscribe(a, "channels=k&clientId=both");
    both_here.opening(1);
    let all = ["1", "watcher", "alice", "both"];
    assert_eq!(watcher.presence(), ["1", "watcher"]);
    assert_eq!(watcher.presence(), ["1", "watcher", "alice"]);
    assert_eq!(watcher.presence(), all);
    assert_eq!(watcher.presence(), all);
    publish_ok(b, json!([event("k", "t", json!("kept"))]));
    for sub in [&mut watcher, &mut both_here] {
        assert_eq!(sub.event().0, "t");
    }

    let killed = Instant::now();
    signal(cluster.nodes[1].child.id(), "KILL");
    // Each id goes once, in some order; `both` stays (its socket on the surviving node).
    let mut left = Vec::new();
    let mut list: Vec<String> = all.iter().map(|id| id.to_string()).collect();
    while left.len() < 2 {
        let now = watcher.presence();
        let gone: Vec<String> = list
            .iter()
            .filter(|id| !now.contains(id))
            .cloned()
            .collect();
        assert_eq!(gone.len(), 1, "{list:?} → {now:?}");
        left.extend(gone);
        list = now;
    }
    left.sort();
    assert_eq!(left, ["1", "alice"]);
    assert_eq!(list, ["watcher", "both"]);
    both_here.presence();
    assert_eq!(both_here.presence(), list);
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(8), "presence took {waited:?}");
    drop((counted, alice, both));

    // Reconnecting to the surviving node.
    let mut alice = subscribe(a, "channels=k&clientId=alice");
    let (name, data) = alice.event();
    assert_eq!(name, "registered", "{data}");
    assert_eq!(
        alice.event().1,
        event(
            "k",
            "lastEvent",
            json!("{\"type\":\"t\",\"payload\":\"kept\"}")
        )
    );
    assert_eq!(alice.presence(), ["watcher", "both", "alice"]);
    let mut counted = subscribe(a, "channels=k");
    assert_eq!(counted.opening(1).0, json!(2), "the counter goes on");
    assert_eq!(alice.presence(), ["2", "watcher", "both", "alice"]);
    for sub in [&mut watcher, &mut both_here] {
        assert_eq!(sub.presence(), ["watcher", "both", "alice"]);
        assert_eq!(sub.presence(), ["2", "watcher", "both", "alice"]);
    }
    publish_ok(a, json!([event("k", "t", json!("after"))]));
    for sub in [&mut watcher, &mut alice, &mut counted] {
        assert_eq!(sub.event().1, event("k", "t", json!("after")));
    }
}

/// The shard that holds node-sse's state away: subscribes, publishes and `GET /lastEvent` get express's 503 page
/// within `--broker-timeout`, and work again once it is back.
#[test]
fn redis_away_is_expresss_503() {
    let (mut cluster, a, b) = two_nodes(&["--broker-timeout", "1s"]);
    let mut sub = subscribe(a, "channels=r&clientId=before");
    sub.opening(1);
    let shard = cluster.redis.master_of("{node-sse/}");
    let index = cluster
        .redis
        .ports
        .iter()
        .position(|port| *port == shard)
        .expect("a master");
    cluster.redis.kill(index);
    // Asked of the node that follows nothing on that shard, which answers within `--broker-timeout`.
    let resp = get(b.addr, &b.path("/subscribe?channels=r&clientId=during"));
    assert_page(&resp, 503, "Service Unavailable", true);
    let resp = publish(b, json!([event("r", "t", json!("lost"))]));
    assert_page(&resp, 503, "Service Unavailable", true);
    let resp = get(b.addr, &b.path("/lastEvent?channel=r"));
    assert_page(&resp, 503, "Service Unavailable", true);

    cluster.redis.restart(index);
    cluster.redis.wait_ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while publish(b, json!([event("r", "t", json!("back"))])).status != 200 {
        assert!(Instant::now() < deadline, "publishing never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last_event(a, "r"),
        json!({"response": "{\"type\":\"t\",\"payload\":\"back\"}"})
    );
    assert_eq!(sub.event().1, event("r", "t", json!("back")));
}

/// A node that stalls (cut off, or stopped) for longer than the TTL is taken for dead: its clients leave. When it
/// comes back with their streams still open, they are present again, and leave as usual afterwards.
#[test]
fn a_stalled_node_that_comes_back_counts_its_clients_again() {
    let (cluster, a, b) = two_nodes(&["--broker-node-ttl", "3s"]);
    let mut watcher = subscribe(a, "channels=s&clientId=watcher");
    watcher.opening(1);
    let mut alice = subscribe(b, "channels=s&clientId=alice");
    assert_eq!(alice.opening(1).1, ["watcher", "alice"]);
    assert_eq!(watcher.presence(), ["watcher", "alice"]);

    let pid = cluster.nodes[1].child.id();
    signal(pid, "STOP");
    assert_eq!(watcher.presence(), ["watcher"]);
    signal(pid, "CONT");
    assert_eq!(watcher.presence(), ["watcher", "alice"]);
    assert_eq!(alice.presence(), ["watcher"]);
    assert_eq!(alice.presence(), ["watcher", "alice"]);

    drop(alice);
    assert_eq!(watcher.presence(), ["watcher"]);
}

/// A node shut down gracefully closes its streams: the other node's streams hear its clients leave at once, not
/// after the TTL.
#[test]
fn a_node_shut_down_gracefully_announces_its_clients_leaving() {
    let (cluster, a, b) = two_nodes(&["--broker-node-ttl", "30s", "--drain-timeout", "1s"]);
    let mut watcher = subscribe(a, "channels=g&clientId=watcher");
    watcher.opening(1);
    let mut gone = subscribe(b, "channels=g&clientId=gone");
    gone.opening(1);
    assert_eq!(watcher.presence(), ["watcher", "gone"]);
    signal(cluster.nodes[1].child.id(), "TERM");
    assert_eq!(watcher.presence(), ["watcher"]);
}

//! The native SSE API end to end: exact stream bytes, multi-line data, injection, multi-channel streams, resume,
//! every `reset` reason, targeted and batch publishes, the channel listing (native only unless another API's is
//! asked for), channel deletion, slow subscribers, heartbeats, graceful shutdown, and replay exactness under
//! concurrent publishers and resuming subscribers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The exact bytes of one event with an id.
fn frame(id: &str, event: Option<&str>, data_lines: &[&str]) -> String {
    let mut out = format!("id: {id}\n");
    if let Some(event) = event {
        out.push_str(&format!("event: {event}\n"));
    }
    for line in data_lines {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}

/// The exact bytes of a `reset` event (no id line).
fn reset_frame(reason: &str, channels: &[&str]) -> String {
    format!("event: reset\ndata: {}\n\n", reset_data(reason, channels))
}

/// The exact data of a `reset` event, keys in the documented order.
fn reset_data(reason: &str, channels: &[&str]) -> String {
    let quoted: Vec<String> = channels.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "{{\"reason\":\"{reason}\",\"channels\":[{}]}}",
        quoted.join(",")
    )
}

/// Reads exactly `expected.len()` bytes and compares them as text.
fn expect_bytes(sse: &mut Sse, expected: &str) {
    let mut got = vec![0; expected.len()];
    sse.reader.read_exact(&mut got).unwrap_or_else(|e| {
        panic!(
            "reading {} bytes: {e}; expected {:?}",
            expected.len(),
            trimmed(expected)
        )
    });
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// At most the first 300 characters of `text`, for messages.
fn trimmed(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Asserts the stream ends (EOF) with no further bytes.
fn expect_end(sse: &mut Sse) {
    let mut rest = Vec::new();
    sse.reader
        .read_to_end(&mut rest)
        .expect("read to the end of the stream");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "",
        "bytes after the expected end of the stream"
    );
}

/// Sends `raw` on a new connection; the returned stream has read nothing yet (its `response` is empty).
fn raw_stream(server: &Server, raw: &[u8]) -> Sse {
    let mut stream = connect(server.addr);
    stream.write_all(raw).expect("write request");
    let response = Response {
        status: 0,
        head: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    Sse {
        reader: std::io::BufReader::new(stream),
        response,
    }
}

fn event(id: &str, name: Option<&str>, data: &str) -> Event {
    Event {
        id: Some(id.to_string()),
        event: name.map(str::to_string),
        data: data.to_string(),
    }
}

fn reset_event(reason: &str, channels: &[&str]) -> Event {
    Event {
        id: None,
        event: Some("reset".to_string()),
        data: reset_data(reason, channels),
    }
}

// ---- stream head and data ------------------------------------------------------------------------------------

#[test]
fn stream_head_and_opening_are_exact() {
    let server = start_server(&["--retry", "2500ms"]);
    let mut sse = raw_stream(&server, b"GET /sub/news?client_id=alice HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
    let got = String::from_utf8(sse.read_until(b"retry: 2500\n\n")).expect("utf8");
    let (head, opening) = got.split_once("\r\n\r\n").expect("end of head");
    let mut lines: Vec<&str> = head.split("\r\n").collect();
    let date = lines.remove(1);
    assert!(
        date.starts_with("Date: ") && date.ends_with(" GMT"),
        "{date:?}"
    );
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream",
            "Cache-Control: no-cache",
            "X-Accel-Buffering: no",
            "Spout-Client-Id: alice",
            "Access-Control-Allow-Origin: *",
            "Access-Control-Expose-Headers: Spout-Client-Id",
        ]
    );
    assert_eq!(opening, ": spout client_id=alice\n\nretry: 2500\n\n");

    // Without a client id the server makes one, and the header and the opening comment agree.
    let sub = sse_subscribe(server.addr, "/sub/news", "");
    let id = sub
        .response
        .header("spout-client-id")
        .expect("client id header")
        .to_string();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()),
        "{id:?}"
    );
    let mut other = raw_stream(&server, b"GET /sub/news HTTP/1.1\r\nHost: test\r\n\r\n");
    let text = String::from_utf8(other.read_until(b"retry: 2500\n\n")).expect("utf8");
    let client = text
        .split("Spout-Client-Id: ")
        .nth(1)
        .and_then(|r| r.split("\r\n").next())
        .expect("header");
    assert!(
        text.ends_with(&format!(
            "\r\n\r\n: spout client_id={client}\n\nretry: 2500\n\n"
        )),
        "{text:?}"
    );
    assert_ne!(client, id, "generated client ids are unique");
}

#[test]
fn data_is_split_on_every_line_ending() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/lines", "");
    wait_for("subscription", || subscribers(server.addr, "lines") == 1);
    let cases: &[(&str, &[&str])] = &[
        ("one line", &["one line"]),
        ("a\nb", &["a", "b"]),
        ("a\r\nb", &["a", "b"]),
        ("a\rb", &["a", "b"]),
        ("a\r\n\r\nb\n\rc", &["a", "", "b", "", "c"]),
        ("trailing\n", &["trailing", ""]),
        ("trailing\r\n", &["trailing", ""]),
        ("", &[""]),
        ("\n", &["", ""]),
        (" leading space", &[" leading space"]),
        // Data cannot start a new event or forge fields: every line stays a `data:` line.
        (
            "x\n\nid: 999\nevent: evil\nretry: 1\n: comment",
            &["x", "", "id: 999", "event: evil", "retry: 1", ": comment"],
        ),
        ("caf\u{e9} \u{1f600}", &["caf\u{e9} \u{1f600}"]),
    ];
    let mut expected = String::new();
    for (data, lines) in cases {
        let id = publish_id(server.addr, "lines", data);
        expected.push_str(&frame(&id, None, lines));
    }
    expect_bytes(&mut sub, &expected);
}

#[test]
fn event_name_injection_is_refused() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/inj", "");
    wait_for("subscription", || subscribers(server.addr, "inj") == 1);
    let long = "e".repeat(65);
    for bad in [
        "a%0Adata:%20x",
        "a%0Db",
        "a%0D%0Aid:%201",
        "a%00b",
        "",
        long.as_str(),
    ] {
        let resp = publish(server.addr, &format!("inj?event={bad}"), "x");
        assert_eq!(resp.status, 400, "event={bad:?}: {}", resp.text());
        assert_eq!(resp.json()["error"], "invalid_event", "event={bad:?}");
    }
    for bad in ["a\nb", "a\rb", "a\u{0}b", ""] {
        let resp = request(
            server.addr,
            "POST",
            "/pub",
            "Content-Type: application/json\r\n",
            json!({"events": [{"channel": "inj", "data": "ok"}, {"channel": "inj", "event": bad, "data": "x"}]}).to_string().as_bytes(),
        );
        assert_eq!(resp.status, 400, "batch event={bad:?}: {}", resp.text());
        assert_eq!(resp.json()["error"], "invalid_event", "batch event={bad:?}");
    }
    // Nothing of the refused publishes (nor the valid first half of a refused batch) reached the stream.
    let id = publish_id(server.addr, "inj?event=ok%20name", "after");
    expect_bytes(&mut sub, &frame(&id, Some("ok name"), &["after"]));
}

#[test]
fn multi_channel_stream_gets_its_channels_in_id_order() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/a,b,a", "");
    wait_for("subscriptions", || {
        subscribers(server.addr, "a") == 1 && subscribers(server.addr, "b") == 1
    });
    let a1 = publish_id(server.addr, "a", "a1");
    let b1 = publish_id(server.addr, "b?event=bee", "b1");
    let _c1 = publish_id(server.addr, "c", "c1");
    let a2 = publish_id(server.addr, "a", "a2");
    assert!(a1 < b1 && b1 < a2, "ids increase across channels");
    assert_eq!(
        sub.events(3),
        [
            event(&a1, None, "a1"),
            event(&b1, Some("bee"), "b1"),
            event(&a2, None, "a2")
        ]
    );
}

// ---- resume --------------------------------------------------------------------------------------------------

/// Publishes `data` to channel `channel` for each item; returns the ids.
fn publish_all(server: &Server, channel: &str, data: &[&str]) -> Vec<String> {
    data.iter()
        .map(|d| publish_id(server.addr, channel, d))
        .collect()
}

#[test]
fn resume_with_last_event_id_header_replays_the_missed_events_then_live() {
    let server = start_server(&[]);
    let a = publish_all(&server, "ra", &["a0", "a1"]);
    let b = publish_all(&server, "rb", &["b0"]);
    let a2 = publish_id(server.addr, "ra?event=late", "a2\nsecond line");
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/ra,rb",
        &format!("Last-Event-ID: {}\r\n", a[0]),
    );
    let live = publish_id(server.addr, "rb", "live");
    assert_eq!(
        sub.events(4),
        [
            event(&a[1], None, "a1"),
            event(&b[0], None, "b0"),
            event(&a2, Some("late"), "a2\nsecond line"),
            event(&live, None, "live")
        ]
    );
}

#[test]
fn resume_with_last_event_id_query_replays_the_missed_events_then_live() {
    let server = start_server(&[]);
    let ids = publish_all(&server, "rq", &["0", "1", "2"]);
    let mut sub = sse_subscribe(
        server.addr,
        &format!("/sub/rq?last_event_id={}", ids[1]),
        "",
    );
    let live = publish_id(server.addr, "rq", "3");
    let mut expected = frame(&ids[2], None, &["2"]);
    expected.push_str(&frame(&live, None, &["3"]));
    expect_bytes(&mut sub, &expected);
}

#[test]
fn last_event_id_header_wins_over_the_query() {
    let server = start_server(&[]);
    let ids = publish_all(&server, "hq", &["0", "1", "2", "3"]);
    let mut sub = sse_subscribe(
        server.addr,
        &format!("/sub/hq?last_event_id={}", ids[0]),
        &format!("Last-Event-ID: {}\r\n", ids[2]),
    );
    let live = publish_id(server.addr, "hq", "4");
    assert_eq!(
        sub.events(2),
        [event(&ids[3], None, "3"), event(&live, None, "4")]
    );
}

#[test]
fn resume_from_the_last_id_replays_nothing_and_sends_no_reset() {
    let server = start_server(&["--history", "3"]);
    let ids = publish_all(&server, "quiet", &["0", "1", "2", "3", "4"]);
    // id 1 was the last one evicted; resuming after it loses nothing.
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/quiet",
        &format!("Last-Event-ID: {}\r\n", ids[1]),
    );
    let replayed: String = (2..5)
        .map(|i| frame(&ids[i], None, &[&i.to_string()]))
        .collect();
    expect_bytes(&mut sub, &replayed);
    // Published once the replay is read: with `--history 3` an earlier publish could evict event 2 before the
    // replay reaches it, which would rightly be a reset.
    let live = publish_id(server.addr, "quiet", "5");
    expect_bytes(&mut sub, &frame(&live, None, &["5"]));
}

// ---- reset, one test per reason ------------------------------------------------------------------------------

#[test]
fn reset_evicted_by_history_count() {
    let server = start_server(&["--history", "3"]);
    let ids = publish_all(&server, "ev", &["0", "1", "2", "3", "4"]);
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/ev",
        &format!("Last-Event-ID: {}\r\n", ids[0]),
    );
    let mut replayed = reset_frame("evicted", &["ev"]);
    for (i, id) in ids.iter().enumerate().skip(2) {
        replayed.push_str(&frame(id, None, &[&i.to_string()]));
    }
    expect_bytes(&mut sub, &replayed);
    // Published once the replay is read, so that it cannot evict event 2 before the replay reaches it.
    let live = publish_id(server.addr, "ev", "5");
    expect_bytes(&mut sub, &frame(&live, None, &["5"]));
}

#[test]
fn reset_evicted_by_history_bytes() {
    let server = start_server(&["--history-max-bytes", "4KiB"]);
    let payload = "p".repeat(500);
    let kept = publish_id(server.addr, "keep", "small");
    let ids: Vec<String> = (0..20)
        .map(|_| publish_id(server.addr, "big", &payload))
        .collect();
    let retained = get(server.addr, "/channels/big").json()["retained"]
        .as_u64()
        .expect("retained") as usize;
    assert!(
        (1..20).contains(&retained),
        "some but not all events are retained: {retained}"
    );
    // A multi-channel stream: only the channel that lost events is named.
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/big,other",
        &format!("Last-Event-ID: {kept}\r\n"),
    );
    let mut expected = vec![reset_event("evicted", &["big"])];
    expected.extend(
        ids[20 - retained..]
            .iter()
            .map(|id| event(id, None, &payload)),
    );
    assert_eq!(sub.events(expected.len()), expected);
}

#[test]
fn reset_expired() {
    let server = start_server(&["--history-ttl", "1s"]);
    let before = publish_id(server.addr, "elsewhere", "x");
    publish_id(server.addr, "ex", "old");
    wait_for("expiry of the old event", || {
        get(server.addr, "/channels/ex").status == 404
    });
    let fresh = publish_id(server.addr, "ex", "fresh");
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/ex",
        &format!("Last-Event-ID: {before}\r\n"),
    );
    assert_eq!(
        sub.events(2),
        [
            reset_event("expired", &["ex"]),
            event(&fresh, None, "fresh")
        ]
    );
}

#[test]
fn reset_deleted() {
    let server = start_server(&[]);
    let before = publish_id(server.addr, "elsewhere", "x");
    publish_all(&server, "del", &["gone 1", "gone 2"]);
    assert_eq!(
        request(server.addr, "DELETE", "/channels/del", "", b"").status,
        200
    );
    let after = publish_id(server.addr, "del", "new");
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/del",
        &format!("Last-Event-ID: {before}\r\n"),
    );
    assert_eq!(
        sub.events(2),
        [reset_event("deleted", &["del"]), event(&after, None, "new")]
    );
}

#[test]
fn reset_restart() {
    let server = start_server(&[]);
    let a = publish_id(server.addr, "rs1", "a");
    let b = publish_id(server.addr, "rs2", "b");
    let mut sub = sse_subscribe(server.addr, "/sub/rs1,rs2?last_event_id=5", "");
    let live = publish_id(server.addr, "rs1", "live");
    assert_eq!(
        sub.events(4),
        [
            reset_event("restart", &["rs1", "rs2"]),
            event(&a, None, "a"),
            event(&b, None, "b"),
            event(&live, None, "live")
        ]
    );
}

#[test]
fn reset_future() {
    let server = start_server(&[]);
    let a = publish_id(server.addr, "fu", "a");
    let future = (a.parse::<u64>().expect("numeric id") + 1_000_000).to_string();
    let mut sub = sse_subscribe(
        server.addr,
        "/sub/fu",
        &format!("Last-Event-ID: {future}\r\n"),
    );
    let live = publish_id(server.addr, "fu", "live");
    assert_eq!(
        sub.events(3),
        [
            reset_event("future", &["fu"]),
            event(&a, None, "a"),
            event(&live, None, "live")
        ]
    );
}

#[test]
fn reset_invalid() {
    let server = start_server(&[]);
    let a = publish_id(server.addr, "inv", "a");
    for bad in ["abc", "-1", "0", "1.5", "12a", "99999999999999999999999"] {
        let mut sub = sse_subscribe(
            server.addr,
            "/sub/inv",
            &format!("Last-Event-ID: {bad}\r\n"),
        );
        assert_eq!(
            sub.events(2),
            [reset_event("invalid", &["inv"]), event(&a, None, "a")],
            "Last-Event-ID: {bad:?}"
        );
    }
    let mut sub = sse_subscribe(server.addr, &format!("/sub/inv?last_event_id=%20{a}"), "");
    let live = publish_id(server.addr, "inv", "live");
    assert_eq!(
        sub.events(3),
        [
            reset_event("invalid", &["inv"]),
            event(&a, None, "a"),
            event(&live, None, "live")
        ]
    );
}

// ---- targeted and batch publishes ----------------------------------------------------------------------------

#[test]
fn targeted_events_reach_only_their_addressees_live_and_on_replay() {
    let server = start_server(&[]);
    let start = publish_id(server.addr, "tg", "before");
    let mut alice = sse_subscribe(server.addr, "/sub/tg?client_id=alice", "");
    let mut bob = sse_subscribe(server.addr, "/sub/tg?client_id=bob", "");
    let mut carol = sse_subscribe(server.addr, "/sub/tg?client_id=carol", "");
    wait_for("subscriptions", || subscribers(server.addr, "tg") == 3);
    let resp = publish(server.addr, "tg?to=alice&event=dm", "for alice");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["subscribers"], 1);
    let to_alice = resp.json()["id"].as_str().expect("id").to_string();
    let to_both = publish_id(server.addr, "tg?to=bob,carol,nobody", "for bob and carol");
    let all = publish_id(server.addr, "tg", "for all");
    assert_eq!(
        alice.events(2),
        [
            event(&to_alice, Some("dm"), "for alice"),
            event(&all, None, "for all")
        ]
    );
    assert_eq!(
        bob.events(2),
        [
            event(&to_both, None, "for bob and carol"),
            event(&all, None, "for all")
        ]
    );
    assert_eq!(
        carol.events(2),
        [
            event(&to_both, None, "for bob and carol"),
            event(&all, None, "for all")
        ]
    );

    // The same addressing holds on replay.
    let header = format!("Last-Event-ID: {start}\r\n");
    let mut alice = sse_subscribe(server.addr, "/sub/tg?client_id=alice", &header);
    let mut bob = sse_subscribe(server.addr, "/sub/tg?client_id=bob", &header);
    let mut dave = sse_subscribe(server.addr, "/sub/tg?client_id=dave", &header);
    let end = publish_id(server.addr, "tg", "end");
    assert_eq!(
        alice.events(3),
        [
            event(&to_alice, Some("dm"), "for alice"),
            event(&all, None, "for all"),
            event(&end, None, "end")
        ]
    );
    assert_eq!(
        bob.events(3),
        [
            event(&to_both, None, "for bob and carol"),
            event(&all, None, "for all"),
            event(&end, None, "end")
        ]
    );
    assert_eq!(
        dave.events(2),
        [event(&all, None, "for all"), event(&end, None, "end")]
    );
}

#[test]
fn batch_publish_sends_strings_as_is_and_other_json_compact() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/ba,bb?client_id=bob", "");
    wait_for("subscriptions", || {
        subscribers(server.addr, "ba") == 1 && subscribers(server.addr, "bb") == 1
    });
    let events = json!([
        {"channel": "ba", "data": "text\nwith \"quotes\""},
        {"channel": "bb", "event": "obj", "data": {"b": {"c": null}, "a": [1, 2.5, "x"]}},
        {"channel": "ba", "data": 42},
        {"channel": "bb", "data": null},
        {"channel": "ba", "data": true},
        {"channel": "bb", "data": [1, "two\nlines"]},
        {"channel": "ba", "data": "for alice only", "to": ["alice"]},
        {"channel": "ba", "data": "for bob only", "to": ["bob"]},
        {"channel": "elsewhere", "data": "not subscribed"},
        {"channel": "bb", "data": ""},
    ]);
    let ids = publish_batch(server.addr, &events);
    assert_eq!(ids.len(), 10);
    assert!(
        ids.windows(2)
            .all(|w| w[0].parse::<u64>().expect("id") < w[1].parse::<u64>().expect("id")),
        "{ids:?}"
    );
    let mut expected = String::new();
    expected.push_str(&frame(&ids[0], None, &["text", "with \"quotes\""]));
    expected.push_str(&frame(
        &ids[1],
        Some("obj"),
        &[r#"{"b":{"c":null},"a":[1,2.5,"x"]}"#],
    ));
    expected.push_str(&frame(&ids[2], None, &["42"]));
    expected.push_str(&frame(&ids[3], None, &["null"]));
    expected.push_str(&frame(&ids[4], None, &["true"]));
    // A JSON string inside a non-string value stays escaped, so it is one line.
    expected.push_str(&frame(&ids[5], None, &[r#"[1,"two\nlines"]"#]));
    expected.push_str(&frame(&ids[7], None, &["for bob only"]));
    expected.push_str(&frame(&ids[9], None, &[""]));
    expect_bytes(&mut sub, &expected);

    for (body, code) in [
        (json!({"events": []}), "invalid_batch"),
        (
            json!({"events": [{"channel": "bad name", "data": "x"}]}),
            "invalid_channel",
        ),
        (json!({"events": [{"channel": "ba"}]}), "invalid_json"),
        (
            json!({"events": [{"channel": "ba", "data": "x", "extra": 1}]}),
            "invalid_json",
        ),
        (
            json!({"events": [{"channel": "ba", "data": "x", "to": []}]}),
            "invalid_recipients",
        ),
    ] {
        let resp = request(
            server.addr,
            "POST",
            "/pub",
            "Content-Type: application/json\r\n",
            body.to_string().as_bytes(),
        );
        assert_eq!(
            (resp.status, resp.json()["error"].as_str().unwrap_or("")),
            (400, code),
            "{body}"
        );
    }
}

// ---- channel listing -----------------------------------------------------------------------------------------

/// A compatible API's stream reached under its prefix on the native listener: the request sent, the `200` head
/// read (the subscription is in the channel table by then), the socket kept open.
fn compat_stream(addr: SocketAddr, path: &str, headers: &str) -> TcpStream {
    let mut stream = connect(addr);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").expect("write");
    let mut reader = std::io::BufReader::new(stream);
    let head = read_response(&mut reader, true);
    assert_eq!(head.status, 200, "{path}: {}", head.head);
    reader.into_inner()
}

/// `(channel, api)` of each entry of a listing; `api` is empty when an entry has none.
fn listed(resp: &Response) -> Vec<(String, String)> {
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_string();
            (field("channel"), field("api"))
        })
        .collect()
}

/// `GET /channels` is the native operator view: native channels only. The compatible APIs' channels (keker's are
/// named by its tokens, which are credentials) are listed only when asked for with `?api=NAME` or `?api=all`, each
/// entry naming its API, and with the publish key as the plain listing needs it. `GET` and
/// `DELETE /channels/{channel}` take native names only.
#[test]
fn the_channel_list_shows_other_apis_channels_only_when_asked_for() {
    let server = start_server(&["--publish-key", "s3cret"]);
    let addr = server.addr;
    let key = "Authorization: Bearer s3cret\r\n";
    let list = |query: &str| request(addr, "GET", &format!("/channels{query}"), key, b"");

    // A channel or two of every API, each reached under its prefix on this native listener.
    assert_eq!(request(addr, "POST", "/pub/news", key, b"x").status, 200);
    let _pipely = compat_stream(
        addr,
        "/pipely/subscribe?channelId=abcdefghijkl&clientId=alice",
        "",
    );
    let _node_sse = compat_stream(addr, "/node-sse/subscribe?channels=room", "");
    let _flychat = compat_stream(
        addr,
        "/flychat/rooms/lobby/messages/",
        "Accept: text/event-stream\r\n",
    );
    let (stream, head) = ws_upgrade(addr, "/keker/v1/subscribe", "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut keker = Ws { stream };
    keker.send(0x81, b"HELLO secret-token");
    assert_eq!(keker.read_frame().b0, 0x89, "keker's ping after HELLO");
    let create = json!({"messageType": "SERVER_ACTION", "action": "CREATE_CHANNEL", "data": {"channel": "alerts"}});
    let resp = request(
        addr,
        "POST",
        "/ws-push/channel/create",
        "",
        create.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let (stream, head) = ws_upgrade(addr, "/ws-push/", "");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut ws_push = Ws { stream };
    let uuid = ws_push.next_json()["data"]["uuid"].clone();
    let subscribe = json!({"messageType": "CLIENT_ACTION", "uuid": uuid, "action": "SUBSCRIBE", "data": {"channel": "alerts"}});
    ws_push.send(0x81, subscribe.to_string().as_bytes());
    assert_eq!(ws_push.next_json()["message"], "Subscribed");

    // The plain listing: native channels only, as before (no `api` field).
    let plain = list("");
    assert_eq!(
        plain.json(),
        json!({"channels": [{"channel": "news", "subscribers": 0, "retained": 1}]})
    );

    let all: Vec<(String, String)> = [
        ("flychat/lobby", "flychat"),
        ("keker/", "keker"),
        ("keker/secret-token", "keker"),
        ("news", "native"),
        ("node-sse presence", "node-sse"),
        ("node-sse/room", "node-sse"),
        ("pipely/6162636465666768696a6b6c", "pipely"),
        ("ws-push/alerts", "ws-push"),
    ]
    .iter()
    .map(|(c, a)| (c.to_string(), a.to_string()))
    .collect();
    assert_eq!(listed(&list("?api=all")), all);
    for api in [
        "native", "pipely", "node-sse", "flychat", "ws-push", "keker",
    ] {
        let want: Vec<(String, String)> = all.iter().filter(|(_, a)| a == api).cloned().collect();
        assert_eq!(listed(&list(&format!("?api={api}"))), want, "{api}");
    }
    let keker_entry = &list("?api=keker").json()["channels"][1];
    assert_eq!(
        *keker_entry,
        json!({"channel": "keker/secret-token", "subscribers": 1, "retained": 0, "api": "keker"})
    );

    // Another API's listing needs the key, as the plain one does.
    for query in ["", "?api=keker", "?api=all", "?api=bogus"] {
        let resp = get(addr, &format!("/channels{query}"));
        assert_eq!(resp.status, 401, "{query}: {}", resp.text());
        assert_eq!(resp.json()["error"], "unauthorized");
    }
    // An unknown value names the known ones.
    for query in ["?api=bogus", "?api=", "?api=Keker", "?api=native,keker"] {
        let resp = list(query);
        assert_eq!(resp.status, 400, "{query}: {}", resp.text());
        let body = resp.json();
        assert_eq!(body["error"], "invalid_query", "{query}");
        let message = body["message"].as_str().expect("message");
        assert!(
            message.contains("native, pipely, node-sse, flychat, ws-push, keker, all"),
            "{message}"
        );
    }

    // One channel's view and deletion take native names only: a compatible API's name is not one.
    for path in [
        "/channels/keker/secret-token",
        "/channels/keker%2Fsecret-token",
        "/channels/ws-push/alerts",
        "/channels/node-sse%20presence",
    ] {
        for method in ["GET", "DELETE"] {
            let resp = request(addr, method, path, key, b"");
            assert_eq!(resp.status, 400, "{method} {path}: {}", resp.text());
            assert_eq!(resp.json()["error"], "invalid_channel", "{method} {path}");
        }
    }
    assert_eq!(listed(&list("?api=all")), all, "nothing was deleted");
}

// ---- channel deletion ----------------------------------------------------------------------------------------

#[test]
fn deleting_the_only_channel_of_a_stream_sends_deleted_and_closes_it() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/doomed", "");
    wait_for("subscription", || subscribers(server.addr, "doomed") == 1);
    let id = publish_id(server.addr, "doomed", "last words");
    let resp = request(server.addr, "DELETE", "/channels/doomed", "", b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json(), json!({"channel": "doomed", "deleted": true}));
    let mut expected = frame(&id, None, &["last words"]);
    expected.push_str("event: deleted\ndata: {\"channel\":\"doomed\"}\n\n");
    expect_bytes(&mut sub, &expected);
    expect_end(&mut sub);
    // History went with it; a second delete finds nothing.
    assert_eq!(get(server.addr, "/channels/doomed").status, 404);
    assert_eq!(
        request(server.addr, "DELETE", "/channels/doomed", "", b"").status,
        404
    );
}

#[test]
fn deleting_one_channel_of_a_multi_channel_stream_keeps_the_others() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/keep,drop", "");
    let mut other = sse_subscribe(server.addr, "/sub/drop", "");
    wait_for("subscriptions", || subscribers(server.addr, "drop") == 2);
    assert_eq!(
        request(server.addr, "DELETE", "/channels/drop", "", b"").status,
        200
    );
    let deleted = "event: deleted\ndata: {\"channel\":\"drop\"}\n\n";
    expect_bytes(&mut sub, deleted);
    expect_bytes(&mut other, deleted);
    expect_end(&mut other);
    wait_for("the deleted channel to go", || {
        get(server.addr, "/channels/drop").status == 404
    });
    // The stream no longer follows `drop`, even once it exists again.
    publish_id(server.addr, "drop", "not for the stream");
    let kept = publish_id(server.addr, "keep", "still here");
    expect_bytes(&mut sub, &frame(&kept, None, &["still here"]));
    assert_eq!(subscribers(server.addr, "keep"), 1);
    assert_eq!(subscribers(server.addr, "drop"), 0);
}

// ---- slow subscribers ----------------------------------------------------------------------------------------

/// A subscriber that never reads, with a small receive buffer so the server's queue fills quickly.
fn stalled_subscriber(server: &Server, path: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
    stream
}

#[test]
fn slow_subscriber_is_cut_off_while_a_fast_one_gets_everything() {
    let server = start_server(&[
        "--max-queued-bytes",
        "64KiB",
        "--max-body",
        "16KiB",
        "--history",
        "10",
    ]);
    let mut slow = stalled_subscriber(&server, "/sub/flood");
    let mut fast = sse_subscribe(server.addr, "/sub/flood", "");
    wait_for("subscriptions", || subscribers(server.addr, "flood") == 2);

    let (got_tx, got_rx) = mpsc::channel::<Event>();
    let reader = thread::spawn(move || {
        while let Some(e) = fast.next_event() {
            if got_tx.send(e).is_err() {
                break;
            }
        }
    });
    let payload = "f".repeat(15_000);
    let mut publisher = KeepAlive::new(server.addr);
    let mut ids = Vec::new();
    // Publish until the server has cut the stalled subscriber off, in bursts of 60 KB: under the 64 KiB cap plus
    // the fast subscriber's send buffer (--socket-send-buffer), so that a reader that keeps up is never cut.
    while metric(server.addr, "spout_dropped_slow_subscribers_total") == 0 {
        assert!(
            ids.len() < 4000,
            "the stalled subscriber was not cut off after {} MB",
            ids.len() * 15 / 1000
        );
        for _ in 0..4 {
            ids.push(publisher.publish_id("flood", &payload));
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(ids.len() * payload.len() > 64 * 1024);
    for _ in 0..10 {
        ids.push(publisher.publish_id("flood", "after"));
    }
    let mut left = 2;
    wait_for("the stalled subscriber to be gone", || {
        left = subscribers(server.addr, "flood");
        left < 2
    });
    assert_eq!(left, 1, "only the stalled subscriber is cut off");
    // The fast subscriber got every event, in order, promptly.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, id) in ids.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = got_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("fast subscriber is missing event {i} of {}", ids.len()));
        assert_eq!(got.id.as_deref(), Some(id.as_str()), "event {i}");
        assert_eq!(
            got.data.len(),
            if i + 10 >= ids.len() {
                5
            } else {
                payload.len()
            }
        );
    }
    // The stalled one's stream ends: the server closed it with a reset (its unsent bytes are discarded, not kept
    // in the kernel for a reader that does not read), so it sees the end of the stream or the reset, after at
    // most what its own buffers held.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.starts_with(b"HTTP/1.1 200 OK\r\n")),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the stalled subscriber's stream does not end: {e}"
        ),
    }
    drop(got_rx);
    drop(server);
    reader.join().expect("reader");
}

/// Regression: a worker takes many events from its inbox in one loop turn before it flushes, and closed every
/// subscriber whose queue passed `--max-queued-bytes` during that turn, even one that reads everything at once.
#[test]
fn a_burst_over_max_queued_bytes_in_one_turn_does_not_cut_off_a_reading_subscriber() {
    let server = start_server(&["--max-queued-bytes", "16KiB", "--max-body", "16KiB"]);
    let mut sub = sse_subscribe(server.addr, "/sub/burst", "");
    wait_for("subscription", || subscribers(server.addr, "burst") == 1);
    // One batch is sequenced and handed to the worker at once: 6 events of about 4.9 KB on the wire each (every
    // newline becomes a `data:` line), 29 KB in all, from a body of 8.6 KB.
    let data = "\n".repeat(700);
    let events: Vec<_> = (0..6)
        .map(|_| json!({"channel": "burst", "data": data}))
        .collect();
    let ids = publish_batch(server.addr, &json!(events));
    let lines = vec![""; 701];
    let expected: String = ids.iter().map(|id| frame(id, None, &lines)).collect();
    assert!(expected.len() > 16 * 1024 && expected.len() / 6 < 16 * 1024);
    expect_bytes(&mut sub, &expected);
    assert_eq!(
        metric(server.addr, "spout_dropped_slow_subscribers_total"),
        0
    );
}

// ---- heartbeat and shutdown ----------------------------------------------------------------------------------

#[test]
fn heartbeat_comments_keep_a_quiet_stream_alive() {
    // 100ms is the configured minimum; heartbeats go out on the worker's 250ms tick.
    let server = start_server(&["--heartbeat", "100ms"]);
    let mut sub = sse_subscribe(server.addr, "/sub/hb", "");
    let started = Instant::now();
    for _ in 0..3 {
        expect_bytes(&mut sub, ":\n\n");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "3 heartbeats took {:?}",
        started.elapsed()
    );
    let id = publish_id(server.addr, "hb", "event between heartbeats");
    let got = String::from_utf8(sub.read_until(b"heartbeats\n\n")).expect("utf8");
    assert_eq!(
        got.trim_start_matches(":\n\n"),
        frame(&id, None, &["event between heartbeats"])
    );
    expect_bytes(&mut sub, ":\n\n");

    let (code, stderr) = start_failure(&["--heartbeat", "99ms"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--heartbeat"), "{stderr}");
}

#[test]
fn graceful_shutdown_drains_streams_with_a_retry_hint_and_exits_zero() {
    let mut server = start_server(&["--drain-timeout", "1s", "--retry", "1s"]);
    let mut health = KeepAlive::new(server.addr);
    assert_eq!(health.request("GET", "/healthz", "", b"").status, 200);
    let mut subs: Vec<Sse> = (0..4)
        .map(|_| sse_subscribe(server.addr, "/sub/drain", ""))
        .collect();
    wait_for("subscriptions", || subscribers(server.addr, "drain") == 4);
    let id = publish_id(server.addr, "drain", "before shutdown");
    for sub in &mut subs {
        expect_bytes(sub, &frame(&id, None, &["before shutdown"]));
    }
    let started = Instant::now();
    server.terminate();
    // A load balancer's kept-alive health check learns that this node is going away (once the signal has reached
    // the workers; until then the same connection keeps answering 200).
    let mut resp = health.request("GET", "/healthz", "", b"");
    while resp.status == 200 && started.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
        resp = health.request("GET", "/healthz", "", b"");
    }
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"], "draining");
    // Each stream ends within the window, after a retry hint (1s plus jitter of up to the window).
    for sub in &mut subs {
        let mut rest = Vec::new();
        sub.reader.read_to_end(&mut rest).expect("stream ends");
        let rest = String::from_utf8(rest).expect("utf8");
        let millis: u64 = rest
            .strip_prefix("retry: ")
            .and_then(|r| r.strip_suffix("\n\n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("expected only a retry hint, got {rest:?}"));
        assert!((1001..=2000).contains(&millis), "retry {millis}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "streams ended after {:?}",
        started.elapsed()
    );
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(0));
}

// ---- replay exactness under concurrency ----------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so every run makes the same choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CHANNELS: [&str; 3] = ["a", "b", "c"];

/// One subscriber of the concurrency test: reads, drops its connection at random moments and resumes with the last
/// id it received, until it receives one of the final `end-*` events. Returns the received (id, data) list and the
/// number of connections it made.
fn resuming_subscriber(
    addr: SocketAddr,
    channels: &str,
    seed: u64,
    start_after: String,
    deadline: Instant,
) -> (Vec<(u64, String)>, usize) {
    let mut rng = Rng(seed);
    let mut received: Vec<(u64, String)> = Vec::new();
    let mut last_id = start_after;
    let mut connections = 0;
    loop {
        connections += 1;
        let mut sub = sse_subscribe(
            addr,
            &format!("/sub/{channels}"),
            &format!("Last-Event-ID: {last_id}\r\n"),
        );
        // Drop after this many events: sometimes at once, sometimes after a pause that lets the queue build up.
        let budget = match rng.below(4) {
            0 => 0,
            1 => rng.below(10),
            _ => 20 + rng.below(300),
        };
        if rng.below(3) == 0 {
            thread::sleep(Duration::from_millis(rng.below(50)));
        }
        for _ in 0..budget {
            assert!(
                Instant::now() < deadline,
                "{channels}: timed out after {} events",
                received.len()
            );
            let Some(e) = sub.next_event() else {
                panic!(
                    "{channels}: stream ended unexpectedly after {} events",
                    received.len()
                )
            };
            assert_ne!(
                e.event.as_deref(),
                Some("reset"),
                "{channels}: unexpected reset {} after {last_id}",
                e.data
            );
            let id =
                e.id.clone()
                    .unwrap_or_else(|| panic!("{channels}: event without id: {e:?}"));
            let end = e.data.starts_with("end-");
            received.push((id.parse().expect("numeric id"), e.data));
            last_id = id;
            if end {
                return (received, connections);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{channels}: timed out after {} events",
            received.len()
        );
        // Dropping `sub` closes the connection, often with unread events in flight.
    }
}

#[test]
fn replay_is_exact_under_concurrent_publishers_and_resuming_subscribers() {
    let server = start_server(&["--workers", "2", "--history", "100000"]);
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Every subscriber resumes from this id on its first connection too, so none can miss an early event.
    let origin = publish_id(addr, "origin", "start");

    const STREAMS: [&str; 8] = ["a,b", "b,c", "a,b,c", "c,a", "a", "b,c", "a,b,c", "c"];
    let subscribers: Vec<_> = STREAMS
        .iter()
        .enumerate()
        .map(|(i, channels)| {
            let origin = origin.clone();
            thread::spawn(move || {
                resuming_subscriber(
                    addr,
                    channels,
                    0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
                    origin,
                    deadline,
                )
            })
        })
        .collect();

    const PUBLISHERS: u64 = 3;
    const PER_PUBLISHER: usize = 1000;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            thread::spawn(move || {
                let mut rng = Rng(0x1234_5678_9abc_def1 ^ ((p + 1) * 0x1000_0001));
                let mut conn = KeepAlive::new(addr);
                // (id, channel, data)
                let mut published: Vec<(u64, &str, String)> = Vec::new();
                let mut n = 0;
                while n < PER_PUBLISHER {
                    if rng.below(5) == 0 {
                        // A batch spanning channels: its events are sequenced together.
                        let events: Vec<(&str, String)> = (0..2 + rng.below(4))
                            .map(|_| {
                                n += 1;
                                let channel = CHANNELS[rng.below(3) as usize];
                                (channel, format!("p{p}-{n}-{channel}"))
                            })
                            .collect();
                        let ids = conn.publish_batch(&json!(events
                            .iter()
                            .map(|(c, d)| json!({"channel": c, "data": d}))
                            .collect::<Vec<_>>()));
                        assert_eq!(ids.len(), events.len());
                        for ((channel, data), id) in events.into_iter().zip(ids) {
                            published.push((id.parse().expect("id"), channel, data));
                        }
                    } else {
                        n += 1;
                        let channel = CHANNELS[rng.below(3) as usize];
                        let data = format!("p{p}-{n}-{channel}");
                        let id = conn.publish_id(channel, &data);
                        published.push((id.parse().expect("id"), channel, data));
                    }
                    if rng.below(8) == 0 {
                        thread::sleep(Duration::from_millis(1 + rng.below(4)));
                    }
                }
                published
            })
        })
        .collect();
    let mut published: Vec<(u64, &str, String)> = Vec::new();
    for p in publishers {
        published.extend(p.join().expect("publisher"));
    }
    published.sort();
    assert!(published.len() >= 3000);
    assert!(
        published.windows(2).all(|w| w[0].0 < w[1].0),
        "ids are unique"
    );

    // Once every publisher is done: one final event per channel, which ends each subscriber.
    let finals: Vec<String> = CHANNELS.iter().map(|c| format!("end-{c}")).collect();
    let final_ids = publish_batch(
        addr,
        &json!(CHANNELS
            .iter()
            .zip(&finals)
            .map(|(c, d)| json!({"channel": c, "data": d}))
            .collect::<Vec<_>>()),
    );
    for (channel, (id, data)) in CHANNELS.iter().zip(final_ids.iter().zip(&finals)) {
        published.push((id.parse().expect("id"), channel, data.clone()));
    }

    let mut total_connections = 0;
    for (channels, handle) in STREAMS.iter().zip(subscribers) {
        let (received, connections) = handle
            .join()
            .unwrap_or_else(|_| panic!("subscriber {channels} failed"));
        total_connections += connections;
        // Every published event of the stream's channels, in id order, up to its first final event.
        let mine: Vec<(u64, String)> = published
            .iter()
            .filter(|(_, c, _)| channels.split(',').any(|x| x == *c))
            .map(|(id, _, data)| (*id, data.clone()))
            .collect();
        let end = mine
            .iter()
            .position(|(_, d)| d.starts_with("end-"))
            .expect("a final event");
        let expected = &mine[..=end];
        if let Some(i) = received.iter().zip(expected).position(|(g, e)| g != e) {
            panic!(
                "{channels}: event {i} differs: got {:?}, expected {:?} (previous {:?})",
                received[i],
                expected[i],
                i.checked_sub(1).map(|j| &received[j])
            );
        }
        assert_eq!(
            received.len(),
            expected.len(),
            "{channels}: received {} events, expected {}",
            received.len(),
            expected.len()
        );
        assert!(
            connections >= 3,
            "{channels}: only {connections} connections; the test should resume several times"
        );
    }
    assert!(
        total_connections >= 40,
        "only {total_connections} connections in all"
    );
    assert_eq!(metric(addr, "spout_resets_total"), 0);
}

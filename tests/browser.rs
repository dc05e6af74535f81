//! A real browser against spout: headless Chromium (Debian's `chromium`, driven by the npm `playwright-core`
//! package through `tests/js/browser.mjs`) opens a page served from another origin whose script uses the native
//! `EventSource` and `WebSocket` APIs and `fetch`. Every request crosses origins, so the browser's own CORS checks
//! (and, for the JSON publish, its preflight) must pass. The page then receives exactly the published events, with
//! their ids, names and multi-line data, on both kinds of stream; and after a channel deletion ends its streams,
//! the `EventSource` reconnects by itself with `Last-Event-ID` and the `WebSocket` with `?last_event_id=`, both get
//! `reset` and exactly the events they missed. Last, the page publishes an end marker to each stream: it must
//! arrive, and nothing (no duplicate) may arrive before it but what was expected.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// What the page publishes last, to every stream (`publishMarkers` in `tests/js/browser.mjs`).
const MARKER: &str = "end marker";

/// What an `EventSource` of the page records for an event: data lines joined with LF (so CRLF and CR arrive as
/// LF); an unnamed event is `message`.
fn sse_event(stream: &str, id: &str, event: Option<&str>, data: &str) -> Value {
    json!({
        "stream": stream,
        "id": id,
        "event": event.unwrap_or("message"),
        "data": data.replace("\r\n", "\n").replace('\r', "\n"),
    })
}

/// What a WebSocket of the page records for an event: the published text untouched; `event` left out when unnamed.
fn ws_event(stream: &str, id: &str, channel: &str, event: Option<&str>, data: &str) -> Value {
    let mut message = json!({"id": id, "channel": channel, "data": data});
    if let Some(event) = event {
        message["event"] = json!(event);
    }
    json!({"stream": stream, "message": message})
}

/// A state the page records (`open`, `hello`, `close` with its code, `error` with the `readyState`).
fn state(stream: &str, state: &str) -> Value {
    json!({"stream": stream, "state": state})
}

/// What each of the page's four streams records, in order.
#[derive(Default)]
struct Expected {
    sse: Vec<Value>,
    ws: Vec<Value>,
    sse_solo: Vec<Value>,
    ws_solo: Vec<Value>,
}

impl Expected {
    fn both(&mut self, id: &str, channel: &str, event: Option<&str>, data: &str) {
        self.sse.push(sse_event("sse", id, event, data));
        self.ws.push(ws_event("ws", id, channel, event, data));
    }

    fn solo(&mut self, id: &str, data: &str) {
        self.sse_solo.push(sse_event("sse-solo", id, None, data));
        self.ws_solo
            .push(ws_event("ws-solo", id, "solo", None, data));
    }

    /// The end markers the page published to `news` and to `solo`, after everything else: each stream's last entry.
    fn markers(&mut self, news: &str, solo: &str) {
        self.sse.push(sse_event("sse", news, None, MARKER));
        self.ws.push(ws_event("ws", news, "news", None, MARKER));
        self.solo(solo, MARKER);
    }

    fn total(&self) -> usize {
        self.sse.len() + self.ws.len() + self.sse_solo.len() + self.ws_solo.len()
    }
}

/// Publishes what the page expects, in the order of the returned lists; the page's streams must all be open.
/// `solo` goes through a deletion: both solo streams get `deleted`, spout ends them, they reconnect with the last
/// id they saw (the EventSource by itself with `Last-Event-ID`, the WebSocket with `?last_event_id=`), get `reset`
/// (reason `evicted`: of the three events published while they were away, `--history 2` kept two), the two
/// retained events, then a live one.
fn publish_all(addr: std::net::SocketAddr, page_id: &str) -> Expected {
    let mut e = Expected::default();
    e.sse.push(state("sse", "open"));
    e.ws.extend([state("ws", "open"), state("ws", "hello")]);
    e.sse_solo.push(state("sse-solo", "open"));
    e.ws_solo
        .extend([state("ws-solo", "open"), state("ws-solo", "hello")]);
    e.both(page_id, "sport", Some("greet"), "from the page");

    let mut publisher = KeepAlive::new(addr);
    let plain = "hello from the server";
    let id = publisher.publish_id("news", plain);
    e.both(&id, "news", None, plain);
    let multi = "line 1\nline 2\r\nline 3\rline 4\n\nafter an empty line";
    let id = publisher.publish_id("sport?event=greet", multi);
    e.both(&id, "sport", Some("greet"), multi);
    publisher.publish_id("elsewhere", "not subscribed");
    let text = "ünïcödé ✓ 🚀 <b>not markup</b> \"quoted\"";
    let id = publisher.publish_id("news", text);
    e.both(&id, "news", None, text);
    let ids = publisher.publish_batch(&json!([
        {"channel": "sport", "event": "greet", "data": {"score": [2, 1]}},
    ]));
    e.both(&ids[0], "sport", Some("greet"), r#"{"score":[2,1]}"#);

    let before = publisher.publish_id("solo", "before the deletion");
    e.solo(&before, "before the deletion");
    let resp = publisher.request("DELETE", "/channels/solo", "", b"");
    assert_eq!(resp.status, 200, "{}", resp.head);
    // An event without an id keeps the EventSource's last event id; the WebSocket closes (no channel left).
    e.sse_solo.extend([
        json!({"stream": "sse-solo", "id": before, "event": "deleted", "data": r#"{"channel":"solo"}"#}),
        json!({"stream": "sse-solo", "state": "error", "readyState": 0}),
        state("sse-solo", "open"),
        json!({"stream": "sse-solo", "id": before, "event": "reset", "data": r#"{"reason":"evicted","channels":["solo"]}"#}),
    ]);
    e.ws_solo.extend([
        json!({"stream": "ws-solo", "message": {"event": "deleted", "channel": "solo"}}),
        json!({"stream": "ws-solo", "state": "close", "code": 1000}),
        state("ws-solo", "open"),
        state("ws-solo", "hello"),
        json!({"stream": "ws-solo", "message": {"event": "reset", "reason": "evicted", "channels": ["solo"]}}),
    ]);
    // While they are away (their reconnect waits --retry, 3s): three events, of which --history 2 keeps two. They
    // must be gone before the first (the deletion ended them: the open streams gauge, which follows within a tick,
    // is down to news,sport's two) and still away after the last: a stream back among these publishes would replay
    // "lost" instead of a reset. The deletion forgot solo's subscribers, so any it has now came back.
    let still_away = |when: &str| {
        let back = subscribers(addr, "solo");
        assert_eq!(
            back, 0,
            "{back} solo stream(s) back (after --retry 3s) {when} the three events published while they were away: \
             this machine was too slow for the test's timing"
        );
    };
    wait_for("the deletion to end both solo streams", || {
        still_away("before");
        metric(addr, "spout_subscribers") == 2
    });
    publisher.publish_id("solo", "lost");
    for data in ["while away 1", "while away 2"] {
        let id = publisher.publish_id("solo", data);
        e.solo(&id, data);
    }
    still_away("by the end of");
    wait_for("both solo streams back", || subscribers(addr, "solo") == 2);
    let live = publisher.publish_id("solo", "live again");
    e.solo(&live, "live again");
    e
}

#[test]
fn chromium_receives_every_event_on_native_eventsource_and_websocket_across_origins() {
    if !require_browser() {
        return;
    }
    let server = start_server(&["--workers", "2", "--retry", "3s", "--history", "2"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let files = BrowserFiles::new("browser-chromium-profile", "browser-test.png");

    // 33 entries over the four streams before the end markers; publish_all checks it.
    let total = 33;
    let mut browser = NodeScript::start(
        "browser.mjs",
        &[
            &server.url(""),
            &total.to_string(),
            files.profile_arg(),
            files.screenshot_arg(),
        ],
    );
    let ready = browser.next_by(deadline, "all streams open");
    assert_eq!(ready["state"], "ready", "{ready}");
    let page_id = ready["published"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the page's publish: {ready}"))
        .to_string();
    for (channel, n) in [("news", 2), ("sport", 2), ("solo", 2)] {
        assert_eq!(subscribers(server.addr, channel), n, "{channel}");
    }
    let mut expected = publish_all(server.addr, &page_id);
    assert_eq!(expected.total(), total);

    let mut got = Expected::default();
    let mut markers = None;
    let done = loop {
        let line = browser.next_by(deadline, "the received events");
        match line["stream"].as_str() {
            Some("sse") => got.sse.push(line),
            Some("ws") => got.ws.push(line),
            Some("sse-solo") => got.sse_solo.push(line),
            Some("ws-solo") => got.ws_solo.push(line),
            _ if line["state"] == "marked" => markers = Some(line),
            _ => break line,
        }
    };
    assert_eq!(done["state"], "done", "{done}");
    if let Some(marked) = &markers {
        let id = |i: usize| {
            marked["published"][i]
                .as_str()
                .unwrap_or_else(|| panic!("the page's end markers: {marked}"))
                .to_string()
        };
        expected.markers(&id(0), &id(1));
    }
    assert_eq!(got.sse, expected.sse, "EventSource on news,sport");
    assert_eq!(got.ws, expected.ws, "WebSocket on news,sport");
    assert_eq!(got.sse_solo, expected.sse_solo, "EventSource on solo");
    assert_eq!(got.ws_solo, expected.ws_solo, "WebSocket on solo");
    assert!(
        markers.is_some(),
        "the page published no end markers: {done}"
    );
    assert_eq!(done["errors"], json!([]), "errors in the page");

    browser.assert_exits_ok(deadline);
    files.assert_screenshot();
}

//! A real `EventSource` (the npm `eventsource` package, run by Node.js) against spout: it receives every event
//! exactly once and in order, with its id, name and multi-line data, across a cut-off and the automatic reconnect
//! with `Last-Event-ID` that follows.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The node client (`tests/js/eventsource_client.mjs`).
struct Client(NodeScript);

impl Client {
    fn start(url: &str, event_names: &[&str]) -> Client {
        let args: Vec<&str> = std::iter::once(url)
            .chain(event_names.iter().copied())
            .collect();
        Client(NodeScript::start("eventsource_client.mjs", &args))
    }

    fn next(&self, deadline: Instant) -> Value {
        self.0.next_by(deadline, "the next event")
    }

    /// Like `next`, with what was seen so far in the failure message.
    fn next_or_report(&self, deadline: Instant, progress: impl FnOnce() -> String) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        self.0.lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "the EventSource client printed nothing in time; {}",
                progress()
            )
        })
    }

    fn expect_state(&self, state: &str, deadline: Instant) {
        let got = self.next(deadline);
        assert_eq!(got, json!({ "state": state }));
    }
}

/// An event as the client prints it.
fn received(id: &str, event: &str, data: &str) -> Value {
    json!({"id": id, "event": event, "data": data})
}

/// Publishes on `conn` and returns the event as the client should print it: SSE carries each line as a `data:`
/// line and the client joins them with LF, so CRLF and CR arrive as LF.
fn publish_expect(conn: &mut KeepAlive, channel: &str, event: Option<&str>, data: &str) -> Value {
    let path = match event {
        Some(name) => format!("{channel}?event={name}"),
        None => channel.to_string(),
    };
    let id = conn.publish_id(&path, data);
    received(
        &id,
        event.unwrap_or("message"),
        &data.replace("\r\n", "\n").replace('\r', "\n"),
    )
}

#[test]
fn eventsource_gets_every_event_once_in_order_across_a_cut_off_and_reconnect() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    let server = start_server(&[
        "--max-queued-bytes",
        "64KiB",
        "--max-body",
        "16KiB",
        "--retry",
        "200ms",
        "--history",
        "100000",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = Client::start(&server.url("/sub/es"), &["greet", "bulk"]);
    client.expect_state("open", deadline);
    wait_for("subscription", || subscribers(server.addr, "es") == 1);

    let mut publisher = KeepAlive::new(server.addr);
    let mut expected = vec![
        publish_expect(&mut publisher, "es", None, "hello"),
        publish_expect(
            &mut publisher,
            "es",
            Some("greet"),
            "line 1\nline 2\r\nline 3\rline 4",
        ),
        publish_expect(&mut publisher, "es", None, "trailing newline\n"),
    ];
    let mut got = Vec::new();
    for want in &expected {
        got.push(client.next(deadline));
        assert_eq!(got.last(), Some(want));
    }

    // Freeze the client: its buffers fill, then spout's queue for it passes --max-queued-bytes and spout cuts it off.
    signal(client.0.child.id(), "STOP");
    let bulk = "b".repeat(15_000);
    while metric(server.addr, "spout_dropped_slow_subscribers_total") == 0 {
        assert!(expected.len() < 5000, "the stopped client was not cut off");
        for _ in 0..16 {
            expected.push(publish_expect(&mut publisher, "es", Some("bulk"), &bulk));
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(subscribers(server.addr, "es"), 0);
    // Events published while it is away come from history when it resumes.
    expected.push(publish_expect(
        &mut publisher,
        "es",
        Some("greet"),
        "while away\nsecond line",
    ));
    expected.push(publish_expect(&mut publisher, "es", None, "while away too"));
    signal(client.0.child.id(), "CONT");

    // It reads what its socket still held, sees the end of the stream, reconnects with Last-Event-ID and replays.
    let mut states = Vec::new();
    let mut reconnected = false;
    let mut live_published = false;
    while got.len() < expected.len() {
        let line = client.next_or_report(deadline, || {
            let missing: Vec<usize> = (0..expected.len())
                .filter(|i| !got.iter().any(|g| g["id"] == expected[*i]["id"]))
                .take(5)
                .collect();
            format!(
                "got {} of {} events, states {states:?}, first missing {missing:?}",
                got.len(),
                expected.len()
            )
        });
        if let Some(state) = line.get("state") {
            states.push(state.as_str().unwrap_or("").to_string());
            reconnected |= state == "open";
        } else {
            got.push(line);
        }
        if reconnected && !live_published {
            // Back live: these reach it without history.
            wait_for("resubscription", || subscribers(server.addr, "es") == 1);
            expected.push(publish_expect(&mut publisher, "es", None, "live again"));
            expected.push(publish_expect(
                &mut publisher,
                "es",
                Some("greet"),
                "the end\n\nreally",
            ));
            live_published = true;
        }
    }
    assert_eq!(states, ["error", "open"], "one cut-off, one reconnect");
    assert_eq!(got.len(), expected.len());
    if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g != e) {
        let show = |v: &Value| json!({"id": v["id"], "event": v["event"], "data_len": v["data"].as_str().map(str::len)});
        panic!(
            "event {i} of {}: got {}, expected {}",
            expected.len(),
            show(&got[i]),
            show(&expected[i])
        );
    }
    // Nothing more arrives before an event published last: not the one published before it to a channel the client
    // is not on, nor a copy of an earlier one still on its way (the stream brings events in id order), where a quiet
    // pause could end before such a copy arrived.
    publish_expect(&mut publisher, "other", None, "not subscribed");
    let last = publish_expect(&mut publisher, "es", None, "the last");
    assert_eq!(client.next(deadline), last, "instead of the last event");
}

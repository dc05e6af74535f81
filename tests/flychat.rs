//! flychat (docs/PROTOCOLS.md §3) end to end, over real sockets against the binary: what a client of the original saw
//! through Pushpin. Every server runs a native listener (flychat under `/flychat`) and a flychat listener (flychat
//! at its root); the tests speak to both. Framing and text bodies are compared byte for byte, JSON as values.
//!
//! The tests that say something about a room's state run twice (`on_one_and_two_nodes!`): on one server, and on
//! two nodes sharing a Redis Cluster, posting through one node and reading and following the room through the
//! other. A node killed under its streams shows that clients resume on the surviving node.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const OPEN: &str = "event: stream-open\n\n";
const RESET: &str = "event: stream-reset\n\n";
const KEEP_ALIVE: &str = "event: keep-alive\ndata:\n\n";

/// One way to reach flychat: a listener and the mount below which flychat answers there.
#[derive(Clone, Copy, Debug)]
struct At {
    addr: SocketAddr,
    mount: &'static str,
}

impl At {
    fn path(&self, path: &str) -> String {
        format!("{}{path}", self.mount)
    }
}

/// spout with a native listener and a flychat listener, plus `args`. Keep-alives are off (an hour) unless `args`
/// set them, so that exact reads see only what the test caused.
fn start(args: &[&str]) -> Server {
    let mut all = vec!["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0=flychat"];
    if !args.contains(&"--flychat-keepalive") {
        all.extend(["--flychat-keepalive", "1h"]);
    }
    all.extend_from_slice(args);
    start_server(&all)
}

/// Both ways to reach flychat on `server`: the flychat listener's root, then `/flychat` on the native listener.
fn mounts(server: &Server) -> [At; 2] {
    [
        At {
            addr: server.addrs[1],
            mount: "",
        },
        At {
            addr: server.addrs[0],
            mount: "/flychat",
        },
    ]
}

/// flychat on two nodes sharing a Redis Cluster, with keep-alives off as `start` has them.
fn two_nodes() -> common::cluster::CompatCluster {
    common::cluster::CompatCluster::start("flychat", &["--flychat-keepalive", "1h"])
}

/// Two ways to reach flychat, as `mounts`: the flychat listener's root on `a`, then `/flychat` on `b`'s native
/// listener. With two nodes, whatever a test does through one it checks through the other.
fn pair(a: &Server, b: &Server) -> [At; 2] {
    let [root, _] = mounts(a);
    let [_, prefixed] = mounts(b);
    [root, prefixed]
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones escaped.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

const URLENCODED: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

fn post_raw(at: At, room: &str, headers: &str, body: &[u8]) -> Response {
    request(
        at.addr,
        "POST",
        &at.path(&format!("/rooms/{room}/messages/")),
        headers,
        body,
    )
}

/// Posts a message as a form; asserts the 200 answer and returns its exact JSON text (without the final LF).
fn post(at: At, room: &str, from: &str, text: &str) -> String {
    let body = form(&[("from", from), ("text", text)]);
    saved(post_raw(at, room, URLENCODED, body.as_bytes()))
}

/// The JSON text of a successful post's answer, its form checked.
fn saved(resp: Response) -> String {
    assert_eq!(resp.status, 200, "{}{}", resp.head, resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let text = resp.text();
    let json = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final LF: {text:?}"));
    assert!(!json.contains('\n'), "{json:?}");
    json.to_string()
}

fn value(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// The frame of a saved message on a stream.
fn frame_of(json: &str) -> String {
    format!(
        "event: message\nid: {}\ndata: {json}\n\n",
        value(json)["id"]
    )
}

/// The room read in JSON mode (no `Accept: text/event-stream`).
fn read_room(at: At, room: &str) -> Value {
    let resp = get(at.addr, &at.path(&format!("/rooms/{room}/messages/")));
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(resp.text().ends_with("}\n"), "{:?}", resp.text());
    resp.json()
}

/// An open flychat event stream, read frame by frame.
struct Stream {
    reader: BufReader<TcpStream>,
    response: Response,
}

impl Stream {
    /// `GET` (or `method`) of `path` below the mount with `Accept: text/event-stream` and extra header lines.
    fn open_with(at: At, method: &str, path: &str, headers: &str) -> Stream {
        let mut socket = connect(at.addr);
        write!(
            socket,
            "{method} {} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n",
            at.path(path)
        )
        .expect("write");
        let mut reader = BufReader::new(socket);
        let response = read_response(&mut reader, true);
        assert_eq!(response.status, 200, "{}", response.head);
        Stream { reader, response }
    }

    fn open(at: At, room: &str, headers: &str) -> Stream {
        Stream::open_with(at, "GET", &format!("/rooms/{room}/messages/"), headers)
    }

    /// The next frame, up to and including its blank line.
    fn frame(&mut self) -> String {
        let mut frame = Vec::new();
        while !frame.ends_with(b"\n\n") {
            let mut byte = [0u8; 1];
            match self.reader.read(&mut byte) {
                Ok(0) => panic!("stream ended; got {:?}", String::from_utf8_lossy(&frame)),
                Ok(_) => frame.push(byte[0]),
                Err(e) => panic!("{e}; got {:?}", String::from_utf8_lossy(&frame)),
            }
        }
        String::from_utf8(frame).expect("UTF-8 frame")
    }

    /// The next frame that is not a keep-alive.
    fn event(&mut self) -> String {
        loop {
            let frame = self.frame();
            if frame != KEEP_ALIVE {
                return frame;
            }
        }
    }

    /// Reads `stream-open`, a `stream-reset` when `reset`, then the frames of `messages`.
    fn expect_opening(&mut self, reset: bool, messages: &[String]) {
        assert_eq!(self.event(), OPEN);
        if reset {
            assert_eq!(self.event(), RESET);
        }
        for json in messages {
            assert_eq!(self.event(), frame_of(json));
        }
    }

    /// Nothing arrives for a while (the stream got no event).
    fn assert_quiet(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "{:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        let socket = self.reader.get_ref();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        match socket.peek(&mut byte) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("expected no event, got {other:?}"),
        }
        socket.set_read_timeout(Some(WAIT)).expect("timeout");
    }

    /// The id of the next message frame.
    fn next_id(&mut self) -> u64 {
        let frame = self.event();
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("not a message: {frame:?}"));
        let id = value(data)["id"].as_u64().expect("id");
        assert_eq!(frame, frame_of(data));
        id
    }
}

fn assert_uuid_v4(id: &str) {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
    assert!(
        id.bytes()
            .all(|b| b == b'-' || matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{id}"
    );
    assert!(groups[2].starts_with('4'), "{id}");
    assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{id}");
}

/// `new Date().toISOString()`: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn assert_iso_date(date: &str) {
    let shape: String = date
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999Z", "{date}");
}

// ---- the transcript, posting, reading -------------------------------------------------------------------------

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    transcript_through_the_root_and_the_prefix,
    the_transcript_on_two_nodes,
    transcript
);
fn transcript(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let mut stream = Stream::open(root, "lobby", "");
    assert_eq!(
        stream.response.headers,
        [
            (
                "Date".to_string(),
                stream
                    .response
                    .header("date")
                    .unwrap_or_default()
                    .to_string()
            ),
            ("Content-Type".to_string(), "text/event-stream".to_string()),
            ("Cache-Control".to_string(), "no-cache".to_string()),
        ]
    );
    assert_eq!(stream.event(), OPEN);

    let first = post(root, "lobby", "alice", "hello <world> & \"quotes\"");
    let message = value(&first);
    let keys: Vec<&str> = message
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["id", "provisionalId", "from", "text", "date"]);
    assert_eq!(message["id"], 1);
    assert_eq!(message["from"], "alice");
    assert_eq!(message["text"], "hello <world> & \"quotes\"");
    assert_uuid_v4(message["provisionalId"].as_str().expect("provisionalId"));
    assert_iso_date(message["date"].as_str().expect("date"));
    let second = post(prefixed, "lobby", "bob", "second");
    assert_eq!(value(&second)["id"], 2);
    assert_ne!(value(&second)["provisionalId"], message["provisionalId"]);

    // No provisional copies: each message arrives once, as its final copy.
    assert_eq!(stream.event(), frame_of(&first));
    assert_eq!(stream.event(), frame_of(&second));

    // The same room under the other mount: the same messages, then live ones from either mount.
    let mut other = Stream::open(prefixed, "lobby", "");
    other.expect_opening(false, &[first.clone(), second.clone()]);
    let third = post(root, "lobby", "carol", "ünïcödé ✓ 🚀\nline 2\r\nline 3");
    for s in [&mut stream, &mut other] {
        assert_eq!(s.event(), frame_of(&third));
    }
    let expected =
        json!({"messages": [value(&first), value(&second), value(&third)], "lastEventId": 3});
    for at in [root, prefixed] {
        assert_eq!(read_room(at, "lobby"), expected);
    }
}

#[test]
fn the_readme_transcript_with_curl() {
    if !require_program("curl") {
        return;
    }
    let server = start(&[]);
    let [root, _] = mounts(&server);
    let url = format!("http://{}/rooms/lobby/messages/", root.addr);
    let mut stream = Stream::open(root, "lobby", "");
    assert_eq!(stream.event(), OPEN);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "-X", "POST", &url])
            .args(args)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        body.strip_suffix('\n').expect("final LF").to_string()
    };
    let first = curl(&[
        "--data-urlencode",
        "from=alice",
        "--data-urlencode",
        "text=hello <world> & \"quotes\"",
    ]);
    assert_eq!(value(&first)["text"], "hello <world> & \"quotes\"");
    let second = curl(&["-d", "from=bob&text=second"]);
    let third = curl(&["-F", "from=carol", "-F", "text=multipart ✓"]);
    assert_eq!(value(&third)["text"], "multipart ✓");
    for json in [&first, &second, &third] {
        assert_eq!(stream.event(), frame_of(json));
    }
}

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    posts_need_form_fields_and_refused_posts_save_and_send_nothing,
    posts_need_form_fields_on_two_nodes,
    form_fields
);
fn form_fields(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let mut stream = Stream::open(prefixed, "r", "");
    assert_eq!(stream.event(), OPEN);
    let multipart = "Content-Type: multipart/form-data; boundary=XX\r\n";
    let cases: [(&str, &str); 14] = [
        (URLENCODED, "text=no+from"),
        (URLENCODED, "from=no+text"),
        (URLENCODED, "from=&text=x"),
        (URLENCODED, "from=x&text="),
        (URLENCODED, ""),
        (URLENCODED, r#"{"from":"a","text":"b"}"#),
        (
            "Content-Type: application/json\r\n",
            r#"{"from":"a","text":"b"}"#,
        ),
        ("Content-Type: text/plain\r\n", "from=a&text=b"),
        ("", "from=a&text=b"),
        ("Content-Type: multipart/form-data\r\n", "--XX--"),
        (multipart, "not multipart"),
        (
            multipart,
            "--XX\r\nContent-Disposition: form-data; name=from\r\n\r\na\r\n--XX--",
        ),
        (
            multipart,
            "--XX\r\nContent-Disposition: form-data; name=from\r\n\r\na\r\n--XX\r\nunterminated",
        ),
        (
            multipart,
            "--XX\r\nContent-Disposition: form-data; name=from\r\n\r\na\r\n--XX\r\n\
             Content-Disposition: form-data; name=text\r\n\r\n\r\n--XX--",
        ),
    ];
    for (headers, body) in cases {
        let resp = post_raw(root, "r", headers, body.as_bytes());
        assert_eq!(resp.status, 400, "{headers:?} {body:?}");
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(resp.text(), "Bad Request\n", "{headers:?} {body:?}");
    }
    assert_eq!(
        read_room(root, "r"),
        json!({"messages": [], "lastEventId": 0})
    );

    // What is accepted: the first value of each field, from either kind of form, any other fields ignored.
    let urlencoded = saved(post_raw(
        root,
        "r",
        "Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n",
        b"x=1&from=al+ice&text=%3Cb%3E&from=other",
    ));
    let body = "--XX\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nbob\r\n--XX\r\n\
                Content-Disposition: form-data; name=\"text\"\r\n\r\nline 1\r\nline 2\r\n--XX--\r\n";
    let multi = saved(post_raw(prefixed, "r", multipart, body.as_bytes()));
    assert_eq!(value(&urlencoded)["from"], "al ice");
    assert_eq!(value(&urlencoded)["text"], "<b>");
    assert_eq!(value(&multi)["text"], "line 1\r\nline 2");
    // The stream got nothing from the refused posts: its next events are these two, ids 1 and 2.
    assert_eq!(stream.event(), frame_of(&urlencoded));
    assert_eq!(stream.event(), frame_of(&multi));
    assert_eq!(value(&multi)["id"], 2);
}

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    json_mode_unless_accept_is_exactly_event_stream_and_any_method_but_post_reads,
    json_mode_and_streams_on_two_nodes,
    json_mode
);
fn json_mode(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let empty = get(root.addr, "/rooms/quiet/messages/");
    assert_eq!(empty.text(), "{\"messages\":[],\"lastEventId\":0}\n");
    let first = post(root, "room", "a", "one");
    let expected = json!({"messages": [value(&first)], "lastEventId": 1});
    for at in [root, prefixed] {
        let path = at.path("/rooms/room/messages/");
        for accept in [
            "",
            "Accept: text/event-stream, */*\r\n",
            "Accept: Text/Event-Stream\r\n",
            "Accept: application/json\r\n",
            "Accept: */*\r\n",
        ] {
            for method in ["GET", "PUT", "DELETE", "OPTIONS", "PATCH"] {
                let resp = request(at.addr, method, &path, accept, b"");
                assert_eq!(resp.status, 200, "{method} {accept:?}");
                assert_eq!(resp.json(), expected, "{method} {accept:?}");
            }
        }
        let head = request(at.addr, "HEAD", &path, "", b"");
        assert_eq!(head.header("content-type"), Some("application/json"));
        let length = format!("{expected}\n").len().to_string();
        assert_eq!(head.header("content-length"), Some(length.as_str()));
        // Every method but POST opens the stream when it asks for one.
        for method in ["GET", "PUT", "DELETE", "OPTIONS", "PATCH"] {
            let mut stream = Stream::open_with(at, method, "/rooms/room/messages/", "");
            stream.expect_opening(false, std::slice::from_ref(&first));
        }
    }
    // HEAD asks for the stream's head and gets it, with no body and no stream: the connection takes a next request.
    let mut conn = KeepAlive::new(root.addr);
    let head = conn.request(
        "HEAD",
        "/rooms/room/messages/",
        "Accept: text/event-stream\r\n",
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    let after = conn.request("GET", "/rooms/room/messages/", "", b"");
    assert_eq!(after.json(), expected);
}

// ---- resume ------------------------------------------------------------------------------------------------------

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    resume_by_header_or_query_as_parse_int_reads_them,
    resume_by_header_or_query_on_two_nodes,
    resume_points
);
fn resume_points(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let posted: Vec<String> = (1..=5)
        .map(|i| post(root, "resume", "a", &format!("message {i}")))
        .collect();
    let from = |first_id: usize| posted[first_id - 1..].to_vec();
    // (Last-Event-ID header, ?lastEventId=, stream-reset, first id sent; 6 = none)
    let cases: [(Option<&str>, Option<&str>, bool, usize); 17] = [
        (None, None, false, 1),
        (Some("3"), None, false, 4),
        (None, Some("3"), false, 4),
        (Some("4"), Some("1"), false, 5),
        (Some("abc"), Some("3"), false, 1),
        (Some(""), Some("3"), false, 4),
        (None, Some("abc"), false, 1),
        (None, Some(""), false, 1),
        (Some("2abc"), None, false, 3),
        (Some("0x3"), None, false, 4),
        (None, Some("%203"), false, 4),
        (Some("+1"), None, false, 2),
        (Some("0"), None, false, 1),
        (Some("-1"), None, true, 1),
        (Some("5"), None, false, 6),
        (Some("99"), None, false, 6),
        (Some("99999999999999999999999"), None, false, 6),
    ];
    let mut streams = Vec::new();
    for (i, (header, query, reset, first)) in cases.into_iter().enumerate() {
        let at = if i % 2 == 0 { root } else { prefixed };
        let headers = header.map_or(String::new(), |h| format!("Last-Event-ID: {h}\r\n"));
        let path = match query {
            Some(q) => format!("/rooms/resume/messages/?lastEventId={q}"),
            None => "/rooms/resume/messages/".to_string(),
        };
        let mut stream = Stream::open_with(at, "GET", &path, &headers);
        stream.expect_opening(reset, &from(first));
        streams.push((header, query, stream));
    }
    // Nothing more was in any opening: the next event of every stream is the next message.
    let sixth = post(prefixed, "resume", "a", "message 6");
    for (header, query, stream) in &mut streams {
        assert_eq!(stream.event(), frame_of(&sixth), "{header:?} {query:?}");
    }
}

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    fifty_messages_are_kept_and_stream_reset_marks_the_ones_lost,
    fifty_messages_are_kept_and_stream_reset_on_two_nodes,
    fifty_kept
);
fn fifty_kept(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let mut conn = KeepAlive::new(root.addr);
    let posted: Vec<String> = (1..=53)
        .map(|i| {
            let body = form(&[("from", "a"), ("text", &i.to_string())]);
            saved(conn.request("POST", "/rooms/cap/messages/", URLENCODED, body.as_bytes()))
        })
        .collect();
    let kept = &posted[3..];
    let room = read_room(prefixed, "cap");
    assert_eq!(room["lastEventId"], 53);
    let ids: Vec<u64> = room["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (4..=53).collect::<Vec<u64>>());
    assert_eq!(
        room["messages"],
        Value::Array(kept.iter().map(|j| value(j)).collect())
    );

    // Ids 4..53 are kept: a client that has 2 missed 3, one that has 3 missed nothing.
    let cases: [(&str, bool, &[String]); 6] = [
        ("Last-Event-ID: 2\r\n", true, kept),
        ("Last-Event-ID: 3\r\n", false, kept),
        ("Last-Event-ID: 1\r\n", true, kept),
        ("Last-Event-ID: 52\r\n", false, &posted[52..]),
        ("Last-Event-ID: 53\r\n", false, &[]),
        ("", false, kept),
    ];
    let mut streams = Vec::new();
    for (headers, reset, expected) in cases {
        let mut stream = Stream::open(prefixed, "cap", headers);
        stream.expect_opening(reset, expected);
        streams.push(stream);
    }
    let mut by_query = Stream::open_with(root, "GET", "/rooms/cap/messages/?lastEventId=2", "");
    by_query.expect_opening(true, kept);
    streams.push(by_query);
    let next = post(root, "cap", "a", "54");
    for stream in &mut streams {
        assert_eq!(stream.event(), frame_of(&next));
    }
    assert_eq!(read_room(root, "cap")["messages"][0]["id"], 5);
}

/// Pushpin sends `keep-alive` after `timeout=20` of silence on that stream: never sooner after its opening, a
/// message or the last keep-alive, and not at all while messages come more often.
#[test]
fn keep_alive_frames_after_a_silence_on_each_stream() {
    const EVERY: Duration = Duration::from_millis(1000);
    // The server arms a stream's timer a moment before the test has read what caused it.
    const SLACK: Duration = Duration::from_millis(50);
    let server = start(&["--flychat-keepalive", "1s"]);
    let [root, prefixed] = mounts(&server);
    for (at, room) in [(root, "quiet"), (prefixed, "still")] {
        let mut stream = Stream::open(at, room, "");
        let mut last = Instant::now();
        assert_eq!(stream.frame(), OPEN);
        let silent_for = |last: Instant| {
            let silence = last.elapsed();
            assert!(
                silence + SLACK >= EVERY,
                "keep-alive after only {silence:?}"
            );
            assert!(silence < EVERY + Duration::from_secs(2), "{silence:?}");
        };
        assert_eq!(stream.frame(), KEEP_ALIVE);
        silent_for(last);
        last = Instant::now();
        assert_eq!(stream.frame(), KEEP_ALIVE);
        silent_for(last);
        // Messages 400 ms apart: the stream is never silent for a second, so nothing but the messages arrives.
        for i in 0..6 {
            thread::sleep(Duration::from_millis(400));
            let json = post(at, room, "a", &format!("message {i}"));
            last = Instant::now();
            assert_eq!(stream.frame(), frame_of(&json), "message {i}");
        }
        assert_eq!(stream.frame(), KEEP_ALIVE);
        silent_for(last);
    }
}

// ---- the pages ---------------------------------------------------------------------------------------------------

#[test]
fn the_root_redirects_to_the_default_room_keeping_the_query() {
    let server = start(&[]);
    let [root, prefixed] = mounts(&server);
    let cases = [
        (root.addr, "/", "/default"),
        (root.addr, "/?user=al%20ice&x", "/default?user=al%20ice&x"),
        (prefixed.addr, "/flychat", "/flychat/default"),
        (prefixed.addr, "/flychat/", "/flychat/default"),
        (
            prefixed.addr,
            "/flychat?user=bob",
            "/flychat/default?user=bob",
        ),
    ];
    for (addr, path, location) in cases {
        let resp = get(addr, path);
        assert_eq!(resp.status, 301, "{path}");
        assert_eq!(resp.header("location"), Some(location), "{path}");
        assert_eq!(resp.header("content-length"), Some("0"), "{path}");
    }
}

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    join_and_chat_pages_render_the_history_escaped_with_every_url_under_the_mount,
    chat_pages_render_the_history_on_two_nodes,
    pages_render
);
fn pages_render(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let evil = post(
        root,
        "page",
        "<script>alert(1)</script>",
        "a & b <i>x</i> \"q\" 'z'",
    );
    let plain = post(root, "page", "bob", "second");
    for at in [root, prefixed] {
        for query in ["", "?user=", "?other=x"] {
            let join = get(at.addr, &at.path(&format!("/page{query}")));
            assert_eq!(join.status, 200);
            assert_eq!(join.header("content-type"), Some("text/html"));
            assert!(join.text().contains("<form method=\"get\""), "{query}");
        }
        let chat = get(at.addr, &at.path("/page?user=al%20ice%3Cb%3E"));
        assert_eq!(chat.status, 200);
        assert_eq!(chat.header("content-type"), Some("text/html"));
        assert_eq!(chat.header("cache-control"), Some("no-cache"));
        let html = chat.text();
        for json in [&evil, &plain] {
            let pid = value(json)["provisionalId"]
                .as_str()
                .expect("pid")
                .to_string();
            assert!(
                html.contains(&format!("data-provisional-id=\"{pid}\"")),
                "{pid}"
            );
        }
        assert!(html.contains(
            "<b class=\"from\">&lt;script&gt;alert(1)&lt;/script&gt;</b>: \
             <span class=\"text\">a &amp; b &lt;i&gt;x&lt;/i&gt; &quot;q&quot; &#39;z&#39;</span>"
        ));
        assert!(html.contains("<b class=\"from\">bob</b>: <span class=\"text\">second</span>"));
        assert!(!html.contains("<script>alert") && !html.contains("<i>x"));
        assert!(html.contains("data-user=\"al ice&lt;b&gt;\""));
        assert!(html.contains("data-last-event-id=\"2\""));
        // Every URL of the page is under the mount.
        let mut urls = 0;
        for attribute in ["src=\"", "action=\"", "href=\""] {
            for piece in html.split(attribute).skip(1) {
                let url = piece.split('"').next().unwrap_or_default();
                if url.starts_with("data:") {
                    continue;
                }
                assert!(url.starts_with(&format!("{}/", at.mount)), "{url}");
                assert_eq!(get(at.addr, url).status, 200, "{url}");
                urls += 1;
            }
        }
        assert_eq!(urls, 4, "three scripts and the form");
        // An empty room renders an empty list.
        let empty = get(at.addr, &at.path("/nobody?user=u")).text();
        assert!(empty.contains("data-last-event-id=\"0\"") && !empty.contains("<li class"));
    }
}

#[test]
fn scripts_are_served_and_everything_else_is_not_found() {
    let server = start(&[]);
    for at in mounts(&server) {
        for name in [
            "url-polyfill.min.js",
            "eventsource.min.js",
            "reconnecting-eventsource.js",
        ] {
            let resp = get(at.addr, &at.path(&format!("/js/{name}")));
            assert_eq!(resp.status, 200, "{name}");
            assert_eq!(resp.header("content-type"), Some("application/javascript"));
            assert!(resp.text().contains("(function (global)"), "{name}");
        }
        for path in [
            "/rooms/lobby/messages",
            "/rooms/lobby/messages/x",
            "/rooms/lobby",
            "/rooms/",
            "/lobby/",
            "/a/b",
            "/js/other.js",
            "/js/",
        ] {
            for method in ["GET", "POST"] {
                let resp = request(
                    at.addr,
                    method,
                    &at.path(path),
                    URLENCODED,
                    b"from=a&text=b",
                );
                assert_eq!(resp.status, 404, "{method} {path}");
                assert_eq!(resp.header("content-type"), Some("text/plain"), "{path}");
                assert_eq!(resp.text(), "Not Found\n", "{path}");
            }
        }
    }
}

#[test]
fn no_cors_headers_anywhere() {
    let server = start(&[]);
    let origin = "Origin: http://elsewhere.example\r\n";
    for at in mounts(&server) {
        let body = form(&[("from", "a"), ("text", "b")]);
        let answers = [
            post_raw(
                at,
                "cors",
                &format!("{origin}{URLENCODED}"),
                body.as_bytes(),
            ),
            request(
                at.addr,
                "GET",
                &at.path("/rooms/cors/messages/"),
                origin,
                b"",
            ),
            request(
                at.addr,
                "OPTIONS",
                &at.path("/rooms/cors/messages/"),
                &format!("{origin}Access-Control-Request-Method: POST\r\n"),
                b"",
            ),
            request(at.addr, "GET", &at.path("/cors?user=u"), origin, b""),
            request(at.addr, "GET", &at.path("/nowhere/at/all"), origin, b""),
        ];
        let stream = Stream::open(at, "cors", origin);
        for head in answers
            .iter()
            .map(|r| &r.head)
            .chain([&stream.response.head])
        {
            assert!(
                !head.to_ascii_lowercase().contains("access-control"),
                "{head}"
            );
        }
    }
}

// ---- rooms -------------------------------------------------------------------------------------------------------

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    rooms_are_raw_path_segments_and_kept_apart,
    rooms_are_kept_apart_on_two_nodes,
    raw_rooms
);
fn raw_rooms(a: &Server, b: &Server) {
    let [root, prefixed] = pair(a, b);
    let mut lobby = Stream::open(root, "lobby", "");
    assert_eq!(lobby.event(), OPEN);
    // The empty room is a room.
    let empty = post(root, "", "a", "in the empty room");
    assert_eq!(read_room(prefixed, "")["messages"][0], value(&empty));
    // Not percent-decoded: a%20b and a%2520b are two rooms; Lobby is not lobby.
    for room in ["a%20b", "a%2520b", "Lobby"] {
        let json = post(prefixed, room, "a", room);
        assert_eq!(value(&json)["id"], 1, "{room}");
    }
    // A raw é and %C3%A9 are the same room, as in the original's URL parser; %c3%a9 is another.
    let raw = post(root, "caf\u{e9}", "a", "raw");
    let escaped = post(root, "caf%C3%A9", "a", "escaped");
    assert_eq!(value(&raw)["id"], 1);
    assert_eq!(value(&escaped)["id"], 2);
    assert_eq!(value(&post(root, "caf%c3%a9", "a", "lower"))["id"], 1);
    // None of it reached the lobby's stream.
    let mine = post(prefixed, "lobby", "a", "lobby only");
    assert_eq!(lobby.event(), frame_of(&mine));
}

on_one_and_two_nodes!(
    "flychat",
    &["--flychat-keepalive", "1h"],
    concurrent_posters_and_subscribers_get_every_message_once_in_order,
    concurrent_posters_and_subscribers_on_two_nodes,
    concurrent_posts
);
fn concurrent_posts(a: &Server, b: &Server) {
    const POSTERS: usize = 4;
    const EACH: usize = 25;
    const TOTAL: u64 = (POSTERS * EACH) as u64;
    let ats = pair(a, b);
    let mut early: Vec<Stream> = (0..4)
        .map(|i| Stream::open(ats[i % 2], "busy", ""))
        .collect();
    for stream in &mut early {
        assert_eq!(stream.event(), OPEN);
    }
    let answers: Arc<Mutex<Vec<String>>> = Arc::default();
    let posters: Vec<_> = (0..POSTERS)
        .map(|p| {
            let at = ats[p % 2];
            let answers = Arc::clone(&answers);
            thread::spawn(move || {
                let mut conn = KeepAlive::new(at.addr);
                for i in 0..EACH {
                    let body = form(&[("from", &format!("poster {p}")), ("text", &format!("{i}"))]);
                    let json = saved(conn.request(
                        "POST",
                        &at.path("/rooms/busy/messages/"),
                        URLENCODED,
                        body.as_bytes(),
                    ));
                    answers.lock().expect("lock").push(json);
                }
            })
        })
        .collect();
    // Subscribers that join while the posts go on: whatever their opening held, live messages follow it with no
    // gap and no repeat.
    let mut late = Vec::new();
    for i in 0..6 {
        thread::sleep(Duration::from_millis(5));
        let headers = if i % 2 == 0 {
            "Last-Event-ID: 0\r\n"
        } else {
            ""
        };
        late.push(Stream::open(ats[i % 2], "busy", headers));
    }
    for poster in posters {
        poster.join().expect("poster");
    }
    let mut answers = answers.lock().expect("lock").clone();
    answers.sort_by_key(|json| value(json)["id"].as_u64());
    let ids: Vec<u64> = answers
        .iter()
        .map(|j| value(j)["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (1..=TOTAL).collect::<Vec<u64>>());
    for stream in &mut early {
        for json in &answers {
            assert_eq!(stream.event(), frame_of(json));
        }
    }
    for stream in &mut late {
        assert_eq!(stream.event(), OPEN);
        let mut frame = stream.event();
        if frame == RESET {
            frame = stream.event();
        }
        let data = frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data");
        let first = value(data)["id"].as_u64().expect("id");
        assert_eq!(frame, frame_of(&answers[first as usize - 1]));
        for id in first + 1..=TOTAL {
            assert_eq!(stream.next_id(), id);
        }
    }
    // Nothing more on any stream: the next event everywhere is the next message.
    let last = post(ats[0], "busy", "a", "last");
    for stream in early.iter_mut().chain(late.iter_mut()) {
        assert_eq!(stream.event(), frame_of(&last));
    }
}

// ---- limits ------------------------------------------------------------------------------------------------------

#[test]
fn refusals_of_spouts_limits_are_in_flychats_style() {
    let server = start(&["--max-body", "256", "--max-head", "1024"]);
    let [root, _] = mounts(&server);
    let big = form(&[("from", "a"), ("text", &"x".repeat(300))]);
    let cases = [
        (
            format!(
                "POST /rooms/r/messages/ HTTP/1.1\r\nHost: t\r\n{URLENCODED}Content-Length: {}\r\n\r\n{big}",
                big.len()
            ),
            413,
            "Content Too Large\n",
        ),
        (
            format!("GET /r HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "p".repeat(1100)),
            431,
            "Request Header Fields Too Large\n",
        ),
        ("GET /r HTTP/9.9\r\n\r\n".to_string(), 505, "HTTP Version Not Supported\n"),
        ("NOT A REQUEST\r\n\r\n".to_string(), 400, "Bad Request\n"),
    ];
    for (raw, status, body) in cases {
        let resp = roundtrip(root.addr, raw.as_bytes());
        assert_eq!(resp.status, status, "{raw:.60}");
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_eq!(resp.text(), body);
    }
    assert_eq!(read_room(root, "r")["lastEventId"], 0);
}

#[test]
fn rooms_and_their_bytes_are_bounded() {
    let server = start(&["--max-channels", "2", "--history-max-bytes", "4096"]);
    let [root, prefixed] = mounts(&server);
    let one = post(root, "one", "a", "1");
    post(prefixed, "two", "a", "1");
    let mut stream = Stream::open(root, "one", "");
    stream.expect_opening(false, &[one]);
    // A third room is refused; the first two go on.
    let refused = post_raw(root, "three", URLENCODED, b"from=a&text=1");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("content-type"), Some("text/plain"));
    assert_eq!(refused.text(), "Service Unavailable\n");
    assert_eq!(
        read_room(root, "three"),
        json!({"messages": [], "lastEventId": 0})
    );
    assert_eq!(value(&post(prefixed, "two", "a", "2"))["id"], 2);
    // Messages are taken until the rooms hold --history-max-bytes; past it a post is refused, its message
    // neither saved nor sent.
    let text = "y".repeat(500);
    let body = form(&[("from", "a"), ("text", &text)]);
    let mut accepted = 0;
    let refusal = loop {
        let resp = post_raw(prefixed, "one", URLENCODED, body.as_bytes());
        if resp.status != 200 {
            break resp;
        }
        accepted += 1;
        assert_eq!(stream.event(), frame_of(&saved(resp)));
        assert!(
            accepted < 10,
            "4096 bytes hold fewer than ten 500-byte messages"
        );
    };
    assert!(accepted >= 3, "{accepted}");
    assert_eq!(refusal.status, 503);
    assert_eq!(refusal.text(), "Service Unavailable\n");
    assert_eq!(read_room(root, "one")["lastEventId"], 1 + accepted);
    stream.assert_quiet();
}

// ---- a real EventSource through a connection that drops -----------------------------------------------------------

/// A TCP proxy in front of spout whose connections the test can cut, as when a network path drops; it keeps
/// accepting new ones. Each connection goes to the next of its upstreams that accepts it, in turn, as a load
/// balancer sends a reconnecting client to another node.
struct Proxy {
    addr: SocketAddr,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstreams: &[SocketAddr]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let conns = Arc::clone(&live);
        let upstreams = upstreams.to_vec();
        thread::spawn(move || {
            let mut turn = 0;
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = (0..upstreams.len()).find_map(|_| {
                    turn += 1;
                    TcpStream::connect(upstreams[(turn - 1) % upstreams.len()]).ok()
                });
                let Some(server) = server else {
                    continue;
                };
                let pairs = [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (
                        server.try_clone().expect("clone"),
                        client.try_clone().expect("clone"),
                    ),
                ];
                conns.lock().expect("lock").extend([client, server]);
                for (mut from, mut to) in pairs {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { addr, live }
    }

    /// Ends every connection through the proxy.
    fn cut(&self) {
        for conn in self.live.lock().expect("lock").drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// The node client printed nothing more before a message posted to `room` now, which must come next: the stream
/// brings a room's messages in order, so a copy of an earlier one still on its way would come before it (a quiet
/// pause could end before such a copy arrived).
fn assert_no_more(client: &NodeScript, at: At, room: &str) {
    let last = post(at, room, "a", "the last");
    assert_eq!(client.next(), event(&last), "instead of the last message");
}

/// How an EventSource client prints a saved message's event.
fn event(json: &str) -> Value {
    json!({"id": value(json)["id"].to_string(), "event": "message", "data": json})
}

#[test]
fn the_eventsource_client_resumes_across_a_reconnect() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    let server = start(&[]);
    eventsource_resume(&server, &server);
}

/// The client reconnects to the other node (through a proxy that takes turns) and resumes there as on one node.
#[test]
fn the_eventsource_client_resumes_on_the_other_node() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    let cluster = two_nodes();
    eventsource_resume(&cluster.nodes[0], &cluster.nodes[1]);
}

/// An EventSource client's first stream is on `a` and its second on `b`; messages are posted on `b`.
fn eventsource_resume(a: &Server, b: &Server) {
    let [first, _] = mounts(a);
    let [root, _] = mounts(b);
    let proxy = Proxy::start(&[first.addr, root.addr]);
    let mut posted: Vec<String> = (1..=2)
        .map(|i| post(root, "es", "a", &format!("{i}")))
        .collect();
    let url = format!("http://{}/rooms/es/messages/", proxy.addr);
    let client = NodeScript::start(
        "eventsource_client.mjs",
        &[&url, "message", "stream-open", "stream-reset", "keep-alive"],
    );
    let next = || client.next();
    // `stream-open` has no data: an EventSource never dispatches it.
    assert_eq!(next(), json!({"state": "open"}));
    for json in &posted {
        assert_eq!(next(), event(json));
    }
    posted.push(post(root, "es", "a", "3"));
    assert_eq!(next(), event(&posted[2]));

    proxy.cut();
    assert_eq!(next(), json!({"state": "error"}));
    // Posted while the client is away: it comes back with Last-Event-ID: 3 and gets exactly these.
    posted.push(post(root, "es", "a", "4"));
    posted.push(post(root, "es", "a", "5"));
    assert_eq!(next(), json!({"state": "open"}));
    assert_eq!(next(), event(&posted[3]));
    assert_eq!(next(), event(&posted[4]));
    posted.push(post(root, "es", "a", "6"));
    assert_eq!(next(), event(&posted[5]));
    assert_no_more(&client, root, "es");
}

/// flychat's channels in the core's table, from the native API.
fn channels(server: &Server) -> usize {
    let list = get(server.addrs[0], "/channels?api=flychat").json();
    list["channels"].as_array().expect("channels").len()
}

#[test]
fn reconnecting_eventsource_reopens_a_stream_the_eventsource_gave_up_on() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    // One channel at most: while another room's stream holds it, a stream is refused with 503.
    let server = start(&["--max-channels", "1"]);
    let [root, _] = mounts(&server);
    let proxy = Proxy::start(&[root.addr]);
    let mut posted: Vec<String> = (1..=2)
        .map(|i| post(root, "rec", "a", &format!("{i}")))
        .collect();
    let client = NodeScript::start(
        "flychat_reconnecting.mjs",
        &[
            &format!("http://{}", root.addr),
            &format!("http://{}/rooms/rec/messages/", proxy.addr),
        ],
    );
    let next = || client.next();
    assert_eq!(next(), json!({"state": "open"}));
    for json in &posted {
        assert_eq!(next(), event(json));
    }

    // The connection drops; while the EventSource waits to reconnect, another room's stream takes the only channel,
    // and two messages are posted (they create no channel: nobody listens).
    proxy.cut();
    assert_eq!(next(), json!({"state": "error", "readyState": 0}));
    wait_for("the dropped stream to be gone", || channels(&server) == 0);
    let mut blocker = Stream::open(root, "other", "");
    assert_eq!(blocker.event(), OPEN);
    posted.push(post(root, "rec", "a", "3"));
    posted.push(post(root, "rec", "a", "4"));
    // Its reconnect is answered 503: the EventSource gives up...
    assert_eq!(next(), json!({"state": "error", "readyState": 2}));
    drop(blocker);
    wait_for("the other stream to be gone", || channels(&server) == 0);
    // ...and the wrapper opens a new one with ?lastEventId=2, which gets exactly what was missed, then live ones.
    let reopened = loop {
        let line = next();
        if line != json!({"state": "error", "readyState": 2}) {
            break line;
        }
    };
    assert_eq!(reopened, json!({"state": "open"}));
    assert_eq!(next(), event(&posted[2]));
    assert_eq!(next(), event(&posted[3]));
    posted.push(post(root, "rec", "a", "5"));
    assert_eq!(next(), event(&posted[4]));
    assert_no_more(&client, root, "rec");
}

// ---- a node dies -------------------------------------------------------------------------------------------------

/// A stream's next frame, or `None` once the stream has ended (its node died).
fn frame_or_end(stream: &mut Stream) -> Option<String> {
    let mut frame = Vec::new();
    while !frame.ends_with(b"\n\n") {
        let mut byte = [0u8; 1];
        match stream.reader.read(&mut byte) {
            Ok(1) => frame.push(byte[0]),
            _ => return None,
        }
    }
    String::from_utf8(frame).ok()
}

/// A node is killed (SIGKILL) under its streams. Nothing of a room is that node's alone: its clients reconnect
/// to the surviving node and carry on from their Last-Event-ID as on one node, with the messages posted
/// meanwhile, and the room goes on there once the dead node's time (`--broker-node-ttl`) has passed.
#[test]
fn streams_of_a_killed_node_resume_on_the_surviving_node() {
    let cluster = common::cluster::CompatCluster::start(
        "flychat",
        &["--flychat-keepalive", "1h", "--broker-node-ttl", "3s"],
    );
    let [doomed, survivor] = &cluster.nodes;
    let [on_doomed, on_doomed_prefixed] = mounts(doomed);
    let [on_survivor, _] = mounts(survivor);
    let mut posted: Vec<String> = (1..=3)
        .map(|i| post(on_survivor, "kill", "a", &format!("{i}")))
        .collect();
    let mut fresh = Stream::open(on_doomed, "kill", "");
    fresh.expect_opening(false, &posted);
    let mut resumed = Stream::open(on_doomed_prefixed, "kill", "Last-Event-ID: 2\r\n");
    resumed.expect_opening(false, &posted[2..]);
    let client = (require_program("node") && require_node_package("eventsource")).then(|| {
        let proxy = Proxy::start(&[on_doomed.addr, on_survivor.addr]);
        let url = format!("http://{}/rooms/kill/messages/", proxy.addr);
        let client = NodeScript::start(
            "eventsource_client.mjs",
            &[&url, "message", "stream-open", "stream-reset", "keep-alive"],
        );
        assert_eq!(client.next(), json!({"state": "open"}));
        for json in &posted {
            assert_eq!(client.next(), event(json));
        }
        (proxy, client)
    });
    posted.push(post(on_survivor, "kill", "a", "4"));
    assert_eq!(fresh.event(), frame_of(&posted[3]));
    assert_eq!(resumed.event(), frame_of(&posted[3]));
    if let Some((_, client)) = &client {
        assert_eq!(client.next(), event(&posted[3]));
    }

    signal(doomed.child.id(), "KILL");
    assert_eq!(frame_or_end(&mut fresh), None);
    assert_eq!(frame_or_end(&mut resumed), None);
    posted.push(post(on_survivor, "kill", "a", "5"));
    posted.push(post(on_survivor, "kill", "a", "6"));
    // Each stream comes back on the surviving node with the last id it had, and gets exactly what it missed.
    let mut back = Stream::open(on_survivor, "kill", "Last-Event-ID: 4\r\n");
    back.expect_opening(false, &posted[4..]);
    if let Some((_, client)) = &client {
        assert_eq!(client.next(), json!({"state": "error"}));
        assert_eq!(client.next(), json!({"state": "open"}));
        assert_eq!(client.next(), event(&posted[4]));
        assert_eq!(client.next(), event(&posted[5]));
    }
    posted.push(post(on_survivor, "kill", "a", "7"));
    assert_eq!(back.event(), frame_of(&posted[6]));
    if let Some((_, client)) = &client {
        assert_eq!(client.next(), event(&posted[6]));
    }

    // Past the dead node's time, the room is whole and goes on on the survivor.
    thread::sleep(Duration::from_millis(3500));
    let expected = json!({
        "messages": posted.iter().map(|j| value(j)).collect::<Vec<_>>(),
        "lastEventId": 7,
    });
    assert_eq!(read_room(on_survivor, "kill"), expected);
    let mut late = Stream::open(on_survivor, "kill", "Last-Event-ID: 6\r\n");
    late.expect_opening(false, &posted[6..]);
    posted.push(post(on_survivor, "kill", "a", "8"));
    for stream in [&mut back, &mut late] {
        assert_eq!(stream.event(), frame_of(&posted[7]));
    }
    if let Some((_, client)) = &client {
        assert_eq!(client.next(), event(&posted[7]));
        assert_no_more(client, on_survivor, "kill");
    }
}

/// Redis is away: what needs a room (a post, a read, a chat page, a stream) is refused with flychat's 503, and the
/// room's messages are there again once Redis is back.
#[test]
fn without_redis_rooms_answer_503_in_flychats_style() {
    let mut cluster = common::cluster::CompatCluster::start(
        "flychat",
        &["--flychat-keepalive", "1h", "--broker-timeout", "500ms"],
    );
    let [root, prefixed] = pair(&cluster.nodes[0], &cluster.nodes[1]);
    let first = post(root, "away", "a", "before");
    for index in 0..cluster.redis.ports.len() {
        cluster.redis.kill(index);
    }
    let answers = [
        post_raw(root, "away", URLENCODED, b"from=a&text=lost"),
        get(prefixed.addr, &prefixed.path("/rooms/away/messages/")),
        get(root.addr, &root.path("/away?user=u")),
        request(
            prefixed.addr,
            "GET",
            &prefixed.path("/rooms/away/messages/"),
            "Accept: text/event-stream\r\n",
            b"",
        ),
    ];
    for resp in answers {
        assert_eq!(resp.status, 503, "{}", resp.head);
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(resp.text(), "Service Unavailable\n");
    }
    for index in 0..cluster.redis.ports.len() {
        cluster.redis.restart(index);
    }
    cluster.redis.wait_ok();
    wait_for("the room to be read again", || {
        get(prefixed.addr, &prefixed.path("/rooms/away/messages/")).status == 200
    });
    let mut stream = Stream::open(prefixed, "away", "");
    stream.expect_opening(false, &[first]);
    let second = post(root, "away", "a", "after");
    assert_eq!(value(&second)["id"], 2);
    assert_eq!(stream.event(), frame_of(&second));
}

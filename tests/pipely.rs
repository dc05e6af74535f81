//! Pipely's API (docs/PROTOCOLS.md §1) against the real binary, reached both ways: at the root of a `=pipely` listener
//! and under `/pipely` on a native one. The transcript byte for byte (minus `Date`), every rule and error text of
//! `/subscribe` and `/publish` in their order, mux's routing answers, the channel lifecycle with several members,
//! the original's deadlock scenario (joins and leaves racing with publishes), spout's refusals in Go's style, and
//! the npm `eventsource` client.
//!
//! The cases that depend on state run again on two nodes sharing a Redis Cluster (`on_two_nodes_…`): members join
//! through both, publishes and refusals come through the node that did not make the change. Beside them, what
//! only several nodes have: one id joined through both at once, a node killed with members on it, Redis away.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::CompatCluster;
use common::*;
use serde_json::{json, Value};

const CHANNEL: &str = "abcdefghijkl";
const TEXT: &str = "text/plain; charset=utf-8";

/// A server with a native listener (Pipely under `/pipely`) and a Pipely listener.
fn start(extra: &[&str]) -> Server {
    start_compat("pipely", extra)
}

/// Both ways to reach Pipely on a server from `start`: the dedicated listener first.
fn ways(server: &Server) -> [Way; 2] {
    compat_ways(server, "/pipely")
}

/// Two nodes sharing a Redis Cluster, whose members expire 3s after their node stops renewing them.
fn start_cluster() -> CompatCluster {
    CompatCluster::start("pipely", &["--broker-node-ttl", "3s"])
}

/// The ways a case runs on one server: each way in, as both of its nodes.
fn one_node(server: &Server) -> [(Way, Way); 2] {
    ways(server).map(|way| (way, way))
}

/// The ways a case runs on two nodes: each way in, on the first node and on the second.
fn two_nodes(cluster: &CompatCluster) -> [(Way, Way); 2] {
    let [a0, a1] = ways(&cluster.nodes[0]);
    let [b0, b1] = ways(&cluster.nodes[1]);
    [(a0, b0), (a1, b1)]
}

/// A member's open stream.
struct Member {
    reader: BufReader<TcpStream>,
    head: String,
}

/// Joins with `query` (extra header lines end in `\r\n`), asserting the 200 stream head.
fn join(way: Way, query: &str) -> Member {
    let mut stream = connect(way.addr);
    let path = way.path(&format!("/subscribe?{query}"));
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader, true);
    assert_eq!(response.status, 200, "join {query}: {}", response.head);
    Member {
        reader,
        head: response.head,
    }
}

impl Member {
    /// The next frame's bytes (a heartbeat comment is skipped).
    fn frame(&mut self) -> String {
        read_sse_block(&mut self.reader)
    }

    /// The next frame, which must be exactly one `data:` line, as JSON.
    fn event(&mut self) -> Value {
        let frame = self.frame();
        let json = frame
            .strip_prefix("data: ")
            .and_then(|f| f.strip_suffix("\n\n"))
            .filter(|j| !j.contains('\n'))
            .unwrap_or_else(|| panic!("not a single data line: {frame:?}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json:?}: {e}"))
    }
}

fn frame(kind: &str, origin: &str, payload: &str) -> String {
    format!("data: {{\"channel_id\":\"{CHANNEL}\",\"type\":\"{kind}\",\"origin_id\":\"{origin}\",\"payload\":{payload}}}\n\n")
}

fn publish(way: Way, headers: &str, body: &str) -> Response {
    request(
        way.addr,
        "POST",
        &way.path("/publish"),
        headers,
        body.as_bytes(),
    )
}

/// Publishes `body` with `Authorization: Password <password>` (none when empty), asserting the empty 200.
fn publish_ok(way: Way, password: &str, body: &Value) {
    let auth = if password.is_empty() {
        String::new()
    } else {
        format!("Authorization: Password {password}\r\n")
    };
    let resp = publish(way, &auth, &body.to_string());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty());
}

fn event(channel: &str, kind: &str, origin: &str, payload: Value) -> Value {
    json!({"channel_id": channel, "type": kind, "origin_id": origin, "payload": payload})
}

/// Asserts a Go `http.Error` answer: status, exact text plus newline, its two fields, and CORS only with `cors`.
fn assert_go_error(resp: &Response, status: u16, text: &str, cors: bool) {
    assert_eq!(resp.status, status, "{}{}", resp.head, resp.text());
    assert_eq!(resp.text(), format!("{text}\n"));
    assert_eq!(resp.header("content-type"), Some(TEXT));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        resp.header("access-control-allow-origin"),
        cors.then_some("*"),
        "{}",
        resp.head
    );
}

fn subscribe_answer(way: Way, query: &str, headers: &str) -> Response {
    request(
        way.addr,
        "GET",
        &way.path(&format!("/subscribe?{query}")),
        headers,
        b"",
    )
}

/// Waits until the last member's leave has reached the server: publishing to the channel says it does not exist.
fn wait_gone(way: Way, channel: &str) {
    let body = event(channel, "probe", "test", Value::Null).to_string();
    wait_for(&format!("channel {channel} to be forgotten"), || {
        publish(way, "", &body).status == 404
    });
}

// ---- the transcript --------------------------------------------------------------------------------------------

#[test]
fn transcript_byte_for_byte_both_ways() {
    if !require_program("curl") {
        return;
    }
    let server = start(&[]);
    for way in ways(&server) {
        let mut alice = join(
            way,
            &format!("channelId={CHANNEL}&clientId=alice&password=s3cret"),
        );
        // Go's fields in Go's order; the stream is delimited by the connection's end rather than chunked.
        assert_eq!(
            without_date(&alice.head),
            "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\n\
             Connection: keep-alive\r\nContent-Type: text/event-stream\r\n\r\n"
        );
        assert_eq!(alice.frame(), frame("CLIENT_LIST", "server", "[\"alice\"]"));
        assert_eq!(alice.frame(), frame("CONNECT", "alice", "null"));

        let mut bob = join(
            way,
            &format!("channelId={CHANNEL}&clientId=bob&password=s3cret"),
        );
        assert_eq!(
            bob.frame(),
            frame("CLIENT_LIST", "server", "[\"alice\",\"bob\"]")
        );
        assert_eq!(bob.frame(), frame("CONNECT", "bob", "null"));
        assert_eq!(alice.frame(), frame("CONNECT", "bob", "null"));

        let body = r#"{"channel_id":"abcdefghijkl","type":"chat","origin_id":"server","payload":{"z":1,"a":[1.0,2.5e3,12345678901234567890],"html":"<b>&"}}"#;
        let out = Command::new("curl")
            .args(["-s", "-i", "-X", "POST"])
            .arg(format!("http://{}{}", way.addr, way.path("/publish")))
            .args(["-H", "Authorization: Password s3cret"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", body])
            .output()
            .expect("run curl");
        assert_eq!(
            without_date(&String::from_utf8_lossy(&out.stdout)),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        );

        // What the original sent (keys sorted, numbers through float64, <>& escaped) is the same JSON value.
        let original: Value = serde_json::from_str(
            r#"{"channel_id":"abcdefghijkl","type":"chat","origin_id":"server","payload":{"a":[1,2500,12345678901234567000],"html":"\u003cb\u003e\u0026","z":1}}"#,
        )
        .expect("JSON");
        for member in [&mut alice, &mut bob] {
            let got = member.event();
            assert!(same_json(&got, &original), "{got}");
            assert_eq!(
                got["payload"]["a"][2].as_u64(),
                Some(12345678901234567890),
                "kept exact"
            );
        }
        drop(bob);
        assert_eq!(alice.frame(), frame("DISCONNECT", "bob", "null"));
        drop(alice);
        wait_gone(way, CHANNEL);
    }
}

#[test]
fn a_real_eventsource_client_receives_pipely_events() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    let server = start(&[]);
    for (a, b) in one_node(&server) {
        eventsource_client(a, b);
    }
}

#[test]
fn on_two_nodes_a_real_eventsource_client_receives_pipely_events() {
    if !require_program("node") || !require_node_package("eventsource") {
        return;
    }
    let cluster = start_cluster();
    for (a, b) in two_nodes(&cluster) {
        eventsource_client(a, b);
    }
}

/// The client joins through `a`; the event is published, and the channel seen gone, through `b`.
fn eventsource_client(a: Way, b: Way) {
    let url = format!(
        "http://{}{}",
        a.addr,
        a.path(&format!("/subscribe?channelId={CHANNEL}&clientId=browser"))
    );
    let client = NodeScript::start("eventsource_client.mjs", &[&url]);
    let next = || client.next();
    assert_eq!(next(), json!({"state": "open"}));
    let data = |line: Value| -> Value {
        assert_eq!(line["event"], "message", "{line}");
        serde_json::from_str(line["data"].as_str().expect("data")).expect("JSON data")
    };
    assert_eq!(
        data(next()),
        event(CHANNEL, "CLIENT_LIST", "server", json!(["browser"]))
    );
    assert_eq!(
        data(next()),
        event(CHANNEL, "CONNECT", "browser", Value::Null)
    );
    let sent = event(CHANNEL, "move", "browser", json!({"x": 1, "text": "é <b>"}));
    publish_ok(b, "", &sent);
    assert_eq!(data(next()), sent);
    drop(client);
    // The client's end reaches the server: the channel is forgotten.
    wait_gone(b, CHANNEL);
}

// ---- /subscribe ------------------------------------------------------------------------------------------------

#[test]
fn subscribe_checks_in_order_with_the_originals_texts() {
    let server = start(&[]);
    for way in ways(&server) {
        let channel = "channel id must be twelve characters long";
        let client = "client id must not be shorter than three characters";
        let cases: [(&str, &str); 10] = [
            ("", channel),
            ("clientId=alice", channel),
            ("channelId=abcdefghijk&clientId=alice", channel),
            ("channelId=abcdefghijklm&clientId=alice", channel),
            // `é` is two bytes: ten letters and `é` are twelve, eleven and `é` thirteen.
            ("channelId=abcdefghijk%C3%A9&clientId=alice", channel),
            ("channelId=abcdefghij%C3%A9", client),
            ("channelId=abcdefghijkl&clientId=ab", client),
            ("channelId=abcdefghijkl&clientId=", client),
            // The first of repeated parameters counts; a pair with a bad escape does not exist.
            ("channelId=abcdefghijkl&clientId=ab&clientId=alice", client),
            ("channelId=%zz&channelId=abcdefghijkl&clientId=al", client),
        ];
        for (query, text) in cases {
            assert_go_error(&subscribe_answer(way, query, ""), 400, text, false);
            // The handler's answers carry CORS for a browser's request.
            let resp = subscribe_answer(way, query, "Origin: http://page.test\r\n");
            assert_go_error(&resp, 400, text, true);
        }
        // A two-byte character makes a valid client id of three bytes.
        let mut member = join(way, "channelId=abcdefghij%C3%A9&clientId=%C3%A9x");
        let list = member.event();
        assert_eq!(list["channel_id"], "abcdefghij\u{e9}");
        assert_eq!(list["payload"], json!(["\u{e9}x"]));
        drop(member);
        wait_gone(way, "abcdefghij\u{e9}");
    }
}

#[test]
fn passwords_are_fixed_by_the_first_joiner_and_ids_are_unique_ignoring_case() {
    let server = start(&[]);
    for (a, b) in one_node(&server) {
        passwords_and_ids(a, b);
    }
}

#[test]
fn on_two_nodes_passwords_are_fixed_by_the_first_joiner_and_ids_are_unique_ignoring_case() {
    let cluster = start_cluster();
    for (a, b) in two_nodes(&cluster) {
        passwords_and_ids(a, b);
    }
}

/// The channels are created on `a`; the refusals and later joins come through `b`.
fn passwords_and_ids(a: Way, b: Way) {
    let base = "channelId=pw-channel-1";
    let mut owner = join(a, &format!("{base}&clientId=owner&password=p%20w"));
    owner.event();
    owner.event();
    // Missing, empty and wrong.
    for password in ["", "&password=", "&password=p+x"] {
        let resp = subscribe_answer(b, &format!("{base}&clientId=other{password}"), "");
        assert_go_error(&resp, 401, "invalid channel password", false);
    }
    // The password is checked before the client id.
    let resp = subscribe_answer(b, &format!("{base}&clientId=OWNER&password=nope"), "");
    assert_go_error(&resp, 401, "invalid channel password", false);
    for id in ["OWNER", "Owner", "owner"] {
        let resp = subscribe_answer(b, &format!("{base}&clientId={id}&password=p+w"), "");
        assert_go_error(&resp, 400, "client id already used in channel", false);
    }
    let mut other = join(b, &format!("{base}&clientId=other&password=p%20w"));
    assert_eq!(other.event()["payload"], json!(["owner", "other"]));
    assert_eq!(
        owner.event(),
        event("pw-channel-1", "CONNECT", "other", Value::Null)
    );

    // Unicode case folding, as Go's strings.EqualFold: the Kelvin sign is a K, the long s an S.
    let open = "channelId=open-channel&clientId";
    let mut kate = join(a, &format!("{open}=kate"));
    kate.event();
    let resp = subscribe_answer(b, &format!("{open}=%E2%84%AAATE"), "");
    assert_go_error(&resp, 400, "client id already used in channel", false);
    let mut sam = join(b, &format!("{open}=%C5%BFam&password=ignored"));
    assert_eq!(sam.event()["payload"], json!(["kate", "\u{17f}am"]));
    let resp = subscribe_answer(a, &format!("{open}=SAM"), "");
    assert_go_error(&resp, 400, "client id already used in channel", false);
    // The channel stays open: the later password was ignored and publishing needs none.
    let open_event = event("open-channel", "x", "kate", json!(1));
    publish_ok(a, "", &open_event);
    sam.event();
    assert_eq!(sam.event(), open_event);
    drop((owner, other, kate, sam));
    for way in [a, b] {
        wait_gone(way, "pw-channel-1");
        wait_gone(way, "open-channel");
    }
}

#[test]
fn the_last_member_to_leave_takes_the_channel_and_its_password_with_it() {
    let server = start(&[]);
    for (a, b) in one_node(&server) {
        last_member_leaves(a, b);
    }
}

#[test]
fn on_two_nodes_the_last_member_to_leave_takes_the_channel_and_its_password_with_it() {
    let cluster = start_cluster();
    for (a, b) in two_nodes(&cluster) {
        last_member_leaves(a, b);
    }
}

/// Members join on both `a` and `b`; leaves are seen, and publishes made, through the other.
fn last_member_leaves(a: Way, b: Way) {
    let query = |id: &str, pw: &str| format!("channelId={CHANNEL}&clientId={id}&password={pw}");
    let mut first = join(a, &query("first", "one"));
    let mut second = join(b, &query("second", "one"));
    first.event();
    first.event();
    first.event();
    let mut third = join(a, &query("third", "one"));
    assert_eq!(
        third.event()["payload"],
        json!(["first", "second", "third"])
    );
    third.event();
    drop(second.event());
    drop(second);
    for member in [&mut first, &mut third] {
        // second's own CONNECT and third's CONNECT precede the DISCONNECT for first; third saw only its own.
        let mut got = member.event();
        while got["type"] == "CONNECT" {
            got = member.event();
        }
        assert_eq!(got, event(CHANNEL, "DISCONNECT", "second", Value::Null));
    }
    drop(first);
    assert_eq!(
        third.event(),
        event(CHANNEL, "DISCONNECT", "first", Value::Null)
    );
    let sent = event(CHANNEL, "ping", "third", json!(null));
    publish_ok(b, "one", &sent);
    assert_eq!(third.event(), sent);
    drop(third);
    wait_for("the channel to be forgotten", || {
        let resp = publish(b, "Authorization: Password one\r\n", &sent.to_string());
        resp.status == 404
    });
    let resp = publish(b, "Authorization: Password one\r\n", &sent.to_string());
    assert_go_error(&resp, 404, "channel with given id does not exist", false);

    // Anyone may create it again, with a new password.
    let mut again = join(b, &query("newcomer", "two"));
    assert_eq!(again.event()["payload"], json!(["newcomer"]));
    again.event();
    let resp = publish(a, "Authorization: Password one\r\n", &sent.to_string());
    assert_go_error(&resp, 401, "invalid channel password", false);
    publish_ok(a, "two", &sent);
    assert_eq!(again.event(), sent);
    drop(again);
    wait_gone(a, CHANNEL);
}

// ---- /publish --------------------------------------------------------------------------------------------------

#[test]
fn publish_decodes_like_gos_encoding_json() {
    let server = start(&[]);
    for (a, b) in one_node(&server) {
        publish_decoding(a, b);
    }
}

#[test]
fn on_two_nodes_publish_decodes_like_gos_encoding_json() {
    let cluster = start_cluster();
    for (a, b) in two_nodes(&cluster) {
        publish_decoding(a, b);
    }
}

/// Members join on `a`; publishes come through `b`.
fn publish_decoding(a: Way, b: Way) {
    let mut member = join(a, &format!("channelId={CHANNEL}&clientId=reader"));
    member.event();
    member.event();
    let errors: [(&str, &str); 10] = [
        ("", "EOF"),
        ("   ", "EOF"),
        ("{\"channel_id\":\"abc", "unexpected EOF"),
        ("{b}", "invalid character 'b' looking for beginning of object key string"),
        ("{\"channel_id\":1}", "json: cannot unmarshal number into Go struct field Event.channel_id of type string"),
        ("{\"type\":[\"x\"]}", "json: cannot unmarshal array into Go struct field Event.type of type string"),
        ("[]", "json: cannot unmarshal array into Go value of type server.Event"),
        ("{\"a\":tru}", "invalid character '}' in literal true (expecting 'e')"),
        // Past float64's range the payload cannot be decoded: refused, not sent on to break subscribers' parsers.
        (
            r#"{"channel_id":"abcdefghijkl","type":"t","origin_id":"abc","payload":{"n":[1e400]}}"#,
            "json: cannot unmarshal number 1e400 into Go struct field Event.payload of type float64",
        ),
        (
            r#"{"channel_id":"abcdefghijkl","type":"t","origin_id":"abc","payload":-1E309}"#,
            "json: cannot unmarshal number -1E309 into Go struct field Event.payload of type float64",
        ),
    ];
    for (body, text) in errors {
        assert_go_error(&publish(b, "", body), 400, text, false);
    }
    assert_go_error(
        &publish(b, "Origin: http://page.test\r\n", ""),
        400,
        "EOF",
        true,
    );

    // Keys match case-insensitively, unknown keys are ignored, the Content-Type does not matter, only the
    // first value is read, and a missing payload is null.
    let body = r#"{"CHANNEL_ID":"abcdefghijkl","Type":"note","ORIGIN_ID":"nobody-here","extra":[1]} trailing garbage"#;
    let resp = publish(b, "Content-Type: text/plain\r\n", body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        member.event(),
        event(CHANNEL, "note", "nobody-here", Value::Null)
    );
    // Any JSON payload; publishers may fake the server's event types.
    for payload in [
        json!("text"),
        json!(-1.5e-3),
        json!([true, null, {"k": "v"}]),
        json!({}),
    ] {
        let sent = event(CHANNEL, "CONNECT", "server", payload);
        publish_ok(b, "", &sent);
        assert!(same_json(&member.event(), &sent));
    }
    drop(member);
    wait_gone(a, CHANNEL);
}

#[test]
fn publish_checks_in_order_and_the_authorization_rule() {
    let server = start(&[]);
    for (a, b) in one_node(&server) {
        publish_checks(a, b);
    }
}

#[test]
fn on_two_nodes_publish_checks_in_order_and_the_authorization_rule() {
    let cluster = start_cluster();
    for (a, b) in two_nodes(&cluster) {
        publish_checks(a, b);
    }
}

/// Members join on `a`; publishes come through `b`.
fn publish_checks(a: Way, b: Way) {
    let mut member = join(
        a,
        &format!("channelId={CHANNEL}&clientId=reader&password=se%20cret"),
    );
    member.event();
    member.event();
    let cases: [(Value, u16, &str); 6] = [
        (
            json!({"channel_id": "short", "type": "", "origin_id": ""}),
            400,
            "channel id must be twelve characters long",
        ),
        (
            json!({"channel_id": "abcdefghij\u{e9}", "type": ""}),
            400,
            "invalid event type, must not be shorter than one character",
        ),
        (
            json!({"channel_id": CHANNEL, "type": "", "origin_id": ""}),
            400,
            "invalid event type, must not be shorter than one character",
        ),
        (
            json!({"channel_id": CHANNEL, "type": "t", "origin_id": "ab"}),
            400,
            "origin id must not be shorter than three characters",
        ),
        (
            json!({"channel_id": "nosuchchanne", "type": "t", "origin_id": "abc"}),
            404,
            "channel with given id does not exist",
        ),
        (
            json!({"channel_id": CHANNEL, "type": "t", "origin_id": "abc"}),
            401,
            "invalid channel password",
        ),
    ];
    for (body, status, text) in cases {
        assert_go_error(&publish(b, "", &body.to_string()), status, text, false);
    }
    let body = json!({"channel_id": CHANNEL, "type": "t", "origin_id": "abc"}).to_string();
    // Split on single spaces into exactly `Password` and the password: a password with a space can join but
    // never publish.
    for auth in [
        "Authorization: password se cret\r\n",
        "Authorization: Password se cret\r\n",
        "Authorization: Password  se\r\n",
        "Authorization: Bearer se cret\r\n",
    ] {
        assert_go_error(
            &publish(b, auth, &body),
            401,
            "invalid channel password",
            false,
        );
    }
    let mut open = join(a, "channelId=open-channel&clientId=reader");
    open.event();
    open.event();
    let sent = event("open-channel", "t", "abc", Value::Null);
    // An open channel ignores Authorization whatever it says.
    let resp = publish(b, "Authorization: garbage\r\n", &sent.to_string());
    assert_eq!(resp.status, 200);
    assert_eq!(open.event(), sent);
    let mut spaced = join(a, "channelId=spaced-chann&clientId=reader&password=a");
    spaced.event();
    spaced.event();
    let sent = event("spaced-chann", "t", "abc", json!("ok"));
    publish_ok(b, "a", &sent);
    assert_eq!(spaced.event(), sent);
    drop((member, open, spaced));
    for channel in [CHANNEL, "open-channel", "spaced-chann"] {
        wait_gone(a, channel);
    }
}

// ---- routing ---------------------------------------------------------------------------------------------------

#[test]
fn routing_answers_as_gorilla_mux() {
    let server = start(&[]);
    for way in ways(&server) {
        let origin = "Origin: http://page.test\r\n";
        for path in [
            "/",
            "/nope",
            "/publish/",
            "/subscribe/",
            "/channel/",
            "/channel/a/b",
            "/PUBLISH",
        ] {
            let resp = request(way.addr, "GET", &way.path(path), origin, b"");
            assert_go_error(&resp, 404, "404 page not found", false);
        }
        for (method, path) in [
            ("GET", "/publish"),
            ("HEAD", "/subscribe"),
            ("POST", "/subscribe"),
            ("PUT", "/publish"),
            ("OPTIONS", "/publish"),
            ("DELETE", "/channels"),
            // Routes match the decoded path.
            ("GET", "/pub%6cish"),
        ] {
            let resp = request(way.addr, method, &way.path(path), origin, b"");
            assert_eq!(resp.status, 405, "{method} {path}");
            assert!(resp.body.is_empty());
            assert_eq!(
                without_date(&resp.head),
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
            );
        }
        for path in ["/channels", "/channel/anything", "/channels?x=1"] {
            let resp = get(way.addr, &way.path(path));
            assert_eq!(
                without_date(&resp.head),
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                "{path}"
            );
        }
        let resp = request(way.addr, "GET", &way.path("/channels"), origin, b"");
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        for (path, location) in [
            ("//publish?x=1&y", "/publish?x=1&y"),
            ("/a/../publish", "/publish"),
            ("/./subscribe?", "/subscribe?"),
            ("/x/%2e%2e/channels", "/channels"),
            ("/a%20b/./c", "/a%20b/c"),
        ] {
            let resp = request(way.addr, "POST", &way.path(path), "", b"");
            assert_eq!(resp.status, 301, "{path}");
            let want = format!("{}{location}", way.prefix);
            assert_eq!(resp.header("location"), Some(want.as_str()), "{path}");
            assert!(resp.body.is_empty());
        }
        // A preflight is answered (spout's extension); mux would have said 405.
        let resp = request(
            way.addr,
            "OPTIONS",
            &way.path("/publish"),
            "Origin: http://page.test\r\nAccess-Control-Request-Method: POST\r\n",
            b"",
        );
        assert_eq!(resp.status, 204);
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("Authorization, Content-Type")
        );
        // A request target Go cannot parse.
        let resp = get(way.addr, &way.path("/%zz"));
        assert_eq!(resp.status, 400);
        assert_eq!(resp.text(), "400 Bad Request");
        assert_eq!(resp.header("connection"), Some("close"));
    }
}

#[test]
fn spouts_own_limits_are_refused_in_gos_style() {
    let server = start(&[
        "--max-head",
        "1KiB",
        "--max-body",
        "1KiB",
        "--max-channels",
        "1",
    ]);
    let [pipely, _] = ways(&server);
    let big = format!("X-Big: {}\r\n", "x".repeat(2048));
    let resp = request(pipely.addr, "GET", "/channels", &big, b"");
    assert_eq!(resp.status, 431);
    assert_eq!(resp.text(), "431 Request Header Fields Too Large");
    assert_eq!(resp.header("content-type"), Some(TEXT));
    assert_eq!(resp.header("connection"), Some("close"));
    let resp = publish(pipely, "", &"x".repeat(2048));
    assert_eq!(resp.status, 413);
    assert_eq!(resp.text(), "413 Request Entity Too Large");
    // The channel limit: one channel exists, a second cannot be created.
    let mut member = join(pipely, "channelId=only-channel&clientId=abc");
    member.event();
    let resp = subscribe_answer(pipely, "channelId=other-channe&clientId=abc", "");
    assert_go_error(
        &resp,
        503,
        "the channel limit (--max-channels) is reached",
        false,
    );
    assert_eq!(resp.header("retry-after"), Some("1"));
    // Nothing of the refused join stayed: the first channel still works, the other does not exist.
    let resp = publish(
        pipely,
        "",
        &event("other-channe", "t", "abc", Value::Null).to_string(),
    );
    assert_eq!(resp.status, 404);
}

// ---- concurrency: the original's deadlock ----------------------------------------------------------------------

/// The original's broker deadlocked when about 150 joins and leaves raced with about 450 publishes. Here they run
/// at once on both ways in; every publish is answered, every observer gets every event exactly once and every
/// churner's CONNECT and DISCONNECT in order, every joiner sees its list then its own CONNECT, and the server still
/// answers afterwards.
#[test]
fn joins_and_leaves_racing_with_publishes_never_block_and_lose_nothing() {
    let server = start(&[]);
    racing(ways(&server));
}

/// The same race with half of every kind of client on each of two nodes.
#[test]
fn on_two_nodes_joins_and_leaves_racing_with_publishes_never_block_and_lose_nothing() {
    let cluster = start_cluster();
    let [(a, _), (_, b)] = two_nodes(&cluster);
    racing([a, b]);
}

fn racing(both: [Way; 2]) {
    const OBSERVERS: usize = 3;
    const CHURN_THREADS: usize = 10;
    const CHURNS: usize = 15;
    const PUBLISHERS: usize = 3;
    const PUBLISHES: usize = 150;
    let query = |id: &str| format!("channelId={CHANNEL}&clientId={id}&password=race");
    let mut observers: Vec<Member> = (0..OBSERVERS)
        .map(|i| join(both[i % 2], &query(&format!("observer-{i}"))))
        .collect();
    for observer in &mut observers {
        observer.event();
    }

    let start_line = Arc::new(Barrier::new(CHURN_THREADS + PUBLISHERS));
    let mut threads = Vec::new();
    for t in 0..CHURN_THREADS {
        let start_line = Arc::clone(&start_line);
        let way = both[t % 2];
        threads.push(thread::spawn(move || {
            start_line.wait();
            for i in 0..CHURNS {
                let id = format!("churn-{t}-{i}");
                let mut member = join(way, &query(&id));
                let list = member.event();
                let names: Vec<&str> = list["payload"]
                    .as_array()
                    .expect("list")
                    .iter()
                    .map(|v| v.as_str().expect("id"))
                    .collect();
                let observers: Vec<String> =
                    (0..OBSERVERS).map(|o| format!("observer-{o}")).collect();
                assert_eq!(names[..OBSERVERS], observers, "{list}");
                assert_eq!(names.last().copied(), Some(id.as_str()));
                assert_eq!(member.event(), event(CHANNEL, "CONNECT", &id, Value::Null));
            }
        }));
    }
    for p in 0..PUBLISHERS {
        let start_line = Arc::clone(&start_line);
        let way = both[p % 2];
        threads.push(thread::spawn(move || {
            let mut conn = KeepAlive::new(way.addr);
            start_line.wait();
            for seq in 0..PUBLISHES {
                let body = event(CHANNEL, "seq", "publisher", json!({"p": p, "seq": seq}));
                let resp = conn.request(
                    "POST",
                    &way.path("/publish"),
                    "Authorization: Password race\r\n",
                    body.to_string().as_bytes(),
                );
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
        }));
    }
    for t in threads {
        t.join().expect("a client thread failed");
    }

    let churned = CHURN_THREADS * CHURNS;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (o, observer) in observers.iter_mut().enumerate() {
        let mut next_seq = [0usize; PUBLISHERS];
        let mut connects = std::collections::HashSet::new();
        let mut disconnects = std::collections::HashSet::new();
        let mut later_observers = 0;
        while next_seq.iter().any(|n| *n < PUBLISHES) || disconnects.len() < churned {
            assert!(Instant::now() < deadline, "observer {o} stalled");
            let got = observer.event();
            let origin = got["origin_id"].as_str().expect("origin").to_string();
            match got["type"].as_str().expect("type") {
                "seq" => {
                    let p = got["payload"]["p"].as_u64().expect("p") as usize;
                    let seq = got["payload"]["seq"].as_u64().expect("seq") as usize;
                    assert_eq!(
                        seq, next_seq[p],
                        "publisher {p}'s events once each and in order"
                    );
                    next_seq[p] += 1;
                }
                "CONNECT" if origin.starts_with("observer-") => later_observers += 1,
                "CONNECT" => assert!(connects.insert(origin.clone()), "{origin} joined twice"),
                "DISCONNECT" => {
                    assert!(connects.contains(&origin), "{origin} left before it joined");
                    assert!(disconnects.insert(origin.clone()), "{origin} left twice");
                }
                other => panic!("unexpected {other}: {got}"),
            }
        }
        assert_eq!(connects.len(), churned);
        assert_eq!(
            later_observers,
            OBSERVERS - o,
            "its own CONNECT and those of the observers after it"
        );
    }
    // Still answering, on both ways.
    for way in both {
        let sent = event(CHANNEL, "after", "server", json!(1));
        publish_ok(way, "race", &sent);
        for observer in &mut observers {
            assert_eq!(observer.event(), sent);
        }
    }
}

// ---- several nodes: a node that dies ----------------------------------------------------------------------------

/// A node killed with members on it: within the TTL they are gone from what the other node answers, the members
/// on the other node get each one's DISCONNECT once, a channel whose members were all there is gone, and a member
/// that reconnects to the survivor carries on under its id.
/// A node stopped with SIGTERM closes its streams and tells Redis before it exits: its members leave at once, not
/// after the TTL (30s here).
#[test]
fn on_two_nodes_the_members_of_a_stopped_node_leave_at_once() {
    let cluster = CompatCluster::start(
        "pipely",
        &["--broker-node-ttl", "30s", "--drain-timeout", "1s"],
    );
    let [(a, b), _] = two_nodes(&cluster);
    let query = |id: &str| format!("channelId={CHANNEL}&clientId={id}");
    let mut stayer = join(b, &query("stayer"));
    stayer.event();
    stayer.event();
    let mut leaver = join(a, &query("leaver"));
    leaver.event();
    assert_eq!(
        stayer.event(),
        event(CHANNEL, "CONNECT", "leaver", Value::Null)
    );

    signal(cluster.nodes[0].child.id(), "TERM");
    let stopped = Instant::now();
    assert_eq!(
        stayer.event(),
        event(CHANNEL, "DISCONNECT", "leaver", Value::Null)
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    let mut newcomer = join(b, &query("newcomer"));
    assert_eq!(newcomer.event()["payload"], json!(["stayer", "newcomer"]));
}

#[test]
fn on_two_nodes_the_members_of_a_killed_node_leave_within_the_ttl() {
    let cluster = start_cluster();
    let [(a, b), _] = two_nodes(&cluster);
    let query = |id: &str| format!("channelId={CHANNEL}&clientId={id}&password=pw");
    let mut stayer = join(b, &query("stayer"));
    stayer.event();
    stayer.event();
    let mut doomed: Vec<Member> = ["doomed-1", "doomed-2"]
        .iter()
        .map(|id| join(a, &query(id)))
        .collect();
    for id in ["doomed-1", "doomed-2"] {
        assert_eq!(stayer.event(), event(CHANNEL, "CONNECT", id, Value::Null));
    }
    let mut alone = join(a, "channelId=lonely-chann&clientId=alone");
    alone.event();
    for member in &mut doomed {
        member.event();
    }

    signal(cluster.nodes[0].child.id(), "KILL");
    let killed = Instant::now();
    let mut left = std::collections::HashSet::new();
    while left.len() < 2 {
        let got = stayer.event();
        assert_eq!(got["type"], "DISCONNECT", "{got}");
        let origin = got["origin_id"].as_str().expect("origin").to_string();
        assert!(origin.starts_with("doomed-"), "{got}");
        assert!(left.insert(origin), "one DISCONNECT each: {got}");
    }
    // The TTL (3s), the survivor's sweep a second later at most, and slack for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(7),
        "{:?}",
        killed.elapsed()
    );
    let lonely = event("lonely-chann", "t", "abc", Value::Null).to_string();
    assert_go_error(
        &publish(b, "", &lonely),
        404,
        "channel with given id does not exist",
        false,
    );

    let mut newcomer = join(b, &query("newcomer"));
    assert_eq!(newcomer.event()["payload"], json!(["stayer", "newcomer"]));
    newcomer.event();
    // A member of the dead node reconnects to the survivor under its id.
    let mut back = join(b, &query("doomed-1"));
    assert_eq!(
        back.event()["payload"],
        json!(["stayer", "newcomer", "doomed-1"])
    );
    assert_eq!(
        back.event(),
        event(CHANNEL, "CONNECT", "doomed-1", Value::Null)
    );
    for id in ["newcomer", "doomed-1"] {
        assert_eq!(stayer.event(), event(CHANNEL, "CONNECT", id, Value::Null));
    }
    // Past another TTL nothing more was announced: the next event is the next publish.
    thread::sleep(Duration::from_secs(4));
    let sent = event(CHANNEL, "after", "server", json!(1));
    publish_ok(b, "pw", &sent);
    for member in [&mut stayer, &mut newcomer] {
        let mut got = member.event();
        if got["type"] == "CONNECT" {
            got = member.event();
        }
        assert_eq!(got, sent);
    }
    assert_eq!(back.event(), sent);
}

/// Two clients joining with one id (in different case) through two nodes at the same moment: exactly one gets in,
/// and the other is refused as on one server.
#[test]
fn on_two_nodes_an_id_joined_through_both_nodes_at_once_is_taken_once() {
    let cluster = start_cluster();
    let [(a, b), _] = two_nodes(&cluster);
    for round in 0..20 {
        let barrier = Arc::new(Barrier::new(2));
        let attempts: Vec<_> = [(a, format!("twin-{round}")), (b, format!("TWIN-{round}"))]
            .into_iter()
            .map(|(way, id)| {
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    let mut stream = connect(way.addr);
                    let path = way.path(&format!("/subscribe?channelId={CHANNEL}&clientId={id}"));
                    barrier.wait();
                    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
                    let mut reader = BufReader::new(stream);
                    let resp = read_response(&mut reader, true);
                    (resp.status, reader)
                })
            })
            .collect();
        let answers: Vec<(u16, BufReader<TcpStream>)> = attempts
            .into_iter()
            .map(|t| t.join().expect("join thread"))
            .collect();
        let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "round {round}");
        drop(answers);
        wait_gone(a, CHANNEL);
    }
}

/// With Redis away, joins and publishes are refused in `http.Error` style (after `--broker-timeout`).
#[test]
fn on_two_nodes_joins_and_publishes_are_refused_while_redis_is_away() {
    let mut cluster = start_cluster();
    let [(a, b), _] = two_nodes(&cluster);
    for i in 0..3 {
        cluster.redis.kill(i);
    }
    let text = "the shared state (Redis) is unavailable; retry shortly";
    let resp = subscribe_answer(a, &format!("channelId={CHANNEL}&clientId=alice"), "");
    assert_go_error(&resp, 503, text, false);
    assert_eq!(resp.header("retry-after"), Some("1"));
    let body = event(CHANNEL, "t", "abc", Value::Null).to_string();
    assert_go_error(&publish(b, "", &body), 503, text, false);
}

#[test]
fn the_connection_limit_is_refused_as_gos_server_would() {
    let server = start(&["--max-connections", "1"]);
    let [pipely, _] = ways(&server);
    let mut member = join(pipely, "channelId=abcdefghijkl&clientId=only");
    member.event();
    let mut reader = BufReader::new(connect(pipely.addr));
    let resp = read_response(&mut reader, false);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.text(), "503 Service Unavailable");
    assert_eq!(resp.header("content-type"), Some(TEXT));
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("connection"), Some("close"));
}

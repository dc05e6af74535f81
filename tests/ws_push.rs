//! WS-PushServer (docs/PROTOCOLS.md §4) over real sockets: the observed transcript, the HTTP routes (prefix contexts,
//! any method, `Content-length` in bytes, no Content-Type, the JDK's 404), every validation outcome in its order,
//! tokens, the WebSocket handshake and messages with every ERROR case, recipients, several clients, channel
//! deletion, the liveness schedule, the original's bugs shown fixed, the limits, the prefix on a native listener,
//! the npm `ws` client and the served `pushserver.js`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A server with a native listener (`addrs[0]`, ws-push under `/ws-push`) and a ws-push one (`addrs[1]`), as
/// `CompatCluster` starts each of its nodes.
fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0=ws-push"];
    args.extend_from_slice(extra);
    start_server(&args)
}

/// A node's ws-push listener.
fn ws(node: &Server) -> SocketAddr {
    node.addrs[1]
}

fn post(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(addr, "POST", path, "", body.as_bytes())
}

fn action(kind: &str, data: Value) -> String {
    json!({"messageType": "SERVER_ACTION", "action": kind, "data": data}).to_string()
}

/// Creates `channel`; returns its token.
fn create(addr: SocketAddr, channel: &str) -> String {
    let resp = post(
        addr,
        "/channel/create",
        &action("CREATE_CHANNEL", json!({ "channel": channel })),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["data"]["channelToken"]
        .as_str()
        .expect("token")
        .to_string()
}

fn push(
    addr: SocketAddr,
    channel: &str,
    token: &str,
    recipients: Value,
    message: &str,
) -> Response {
    let data = json!({"channel": channel, "channelToken": token, "recipients": recipients, "message": message});
    post(addr, "/push", &action("PUSH_MESSAGE", data))
}

fn error(code: u16, message: &str, details: &str) -> Value {
    json!({"messageType": "ERROR", "code": code, "message": message, "data": {"errorDetails": details}})
}

fn ack(message: &str, channel: &str) -> Value {
    json!({"messageType": "SERVER_ACK", "code": 200, "message": message,
           "data": {"channel": channel, "channelToken": null}})
}

fn client_ack(message: &str, uuid: &str, channels: &[&str]) -> Value {
    json!({"messageType": "CLIENT_ACK", "code": 200, "message": message,
           "data": {"uuid": uuid, "subscribedChannels": channels}})
}

fn client_push(uuid: &str, channels: &[&str], channel: &str, message: &str) -> Value {
    json!({"messageType": "CLIENT_PUSH", "code": 200, "message": "Push Message",
           "data": {"uuid": uuid, "subscribedChannels": channels,
                    "pushMessage": {"channel": channel, "message": message}}})
}

/// Asserts an answer of the original's handlers: status, `Content-length` (lower-case `l`, in bytes) as the
/// only header, and the JSON value.
fn assert_answer(resp: &Response, status: u16, expected: &Value) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Content-length"], "{}", resp.head);
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    assert_eq!(&resp.json(), expected);
}

/// A WebSocket client of the push server.
struct Client {
    ws: Ws,
    uuid: String,
}

impl Client {
    fn connect(addr: SocketAddr, path: &str) -> Client {
        let (stream, head) = ws_upgrade(addr, path, "");
        assert!(
            head.starts_with("HTTP/1.1 101 Web Socket Protocol Handshake\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nServer: TooTallNate Java-WebSocket\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Accept: {WS_ACCEPT}\r\n")),
            "{head}"
        );
        let mut ws = Ws { stream };
        let hello = ws.next_json();
        let uuid = hello["data"]["uuid"].as_str().expect("uuid").to_string();
        assert_eq!(hello, client_ack("Connected", &uuid, &[]));
        Client { ws, uuid }
    }

    fn send(&mut self, text: &str) {
        self.ws.send(0x81, text.as_bytes());
    }

    fn next(&mut self) -> Value {
        self.ws.next_json()
    }

    fn act(&mut self, action: &str, uuid: Option<&str>, channel: &str) -> Value {
        let mut msg =
            json!({"messageType": "CLIENT_ACTION", "action": action, "data": {"channel": channel}});
        if let Some(uuid) = uuid {
            msg["uuid"] = json!(uuid);
        }
        self.send(&msg.to_string());
        self.next()
    }

    fn subscribe(&mut self, channel: &str) -> Value {
        let uuid = self.uuid.clone();
        self.act("SUBSCRIBE", Some(&uuid), channel)
    }

    fn unsubscribe(&mut self, channel: &str) -> Value {
        let uuid = self.uuid.clone();
        self.act("UNSUBSCRIBE", Some(&uuid), channel)
    }

    /// Asserts that no message arrives within `wait`.
    fn quiet(&mut self, wait: Duration) {
        self.ws.stream.set_read_timeout(Some(wait)).unwrap();
        if let Some(frame) = self.ws.try_read_frame_timeout() {
            panic!("expected nothing, got {frame:?}");
        }
        self.ws.stream.set_read_timeout(Some(WAIT)).unwrap();
    }
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    the_observed_transcript,
    the_observed_transcript_on_two_nodes,
    the_observed_transcript_case
);

fn the_observed_transcript_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let resp = post(
        addr,
        "/channel/create",
        r#"{"messageType":"SERVER_ACTION","action":"CREATE_CHANNEL","data":{"channel":"news"}}"#,
    );
    let token = resp.json()["data"]["channelToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_answer(
        &resp,
        200,
        &json!({"messageType": "SERVER_ACK", "code": 200, "message": "Created",
                "data": {"channel": "news", "channelToken": token}}),
    );
    assert_eq!(resp.header("content-length"), Some("231"));
    assert!(resp.head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(token.len(), 128);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+-*#@:";
    assert!(token.chars().all(|c| alphabet.contains(c)), "{token}");

    let mut client = Client::connect(other, "/any/path");
    let uuid = client.uuid.clone();
    assert_eq!(uuid.len(), 36);
    assert_eq!(&uuid[14..15], "4", "a v4 uuid: {uuid}");
    assert_eq!(
        client.subscribe("news"),
        client_ack("Subscribed", &uuid, &["news"])
    );

    let resp = push(addr, "news", &token, json!([]), "hello <b>&'=");
    assert_answer(&resp, 200, &ack("Sent", "news"));
    assert_eq!(resp.header("content-length"), Some("102"));
    let frame = client.ws.read_frame();
    assert_eq!(frame.b0, 0x81);
    // Gson's HTML escaping, byte for byte.
    assert_eq!(
        frame.text(),
        format!(
            "{{\"messageType\":\"CLIENT_PUSH\",\"code\":200,\"message\":\"Push Message\",\"data\":{{\"uuid\":\"{uuid}\",\
             \"subscribedChannels\":[\"news\"],\"pushMessage\":{{\"channel\":\"news\",\
             \"message\":\"hello \\u003cb\\u003e\\u0026\\u0027\\u003d\"}}}}}}"
        )
    );
}

#[test]
fn the_upgrade_is_answered_as_java_websocket_does_on_any_path() {
    let server = start(&[]);
    let addr = server.addrs[1];
    for path in ["/", "/any/path", "/push", "/sysadmin?x=1"] {
        let (stream, head) = ws_upgrade(addr, path, "");
        let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 101 Web Socket Protocol Handshake");
        let mut names: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "Connection",
                "Date",
                "Sec-WebSocket-Accept",
                "Server",
                "Upgrade"
            ]
        );
        assert!(lines.contains(&"Server: TooTallNate Java-WebSocket"));
        let mut ws = Ws { stream };
        assert_eq!(ws.next_json()["message"], "Connected");
    }
    // A bad upgrade gets Java-WebSocket's failure page.
    let raw = format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let resp = roundtrip(addr, raw.as_bytes());
    assert_eq!(resp.status, 404);
    assert!(resp
        .head
        .starts_with("HTTP/1.1 404 WebSocket Upgrade Failure\r\n"));
    assert_eq!(resp.header("sec-websocket-version"), Some("13"));
    assert_eq!(
        resp.text(),
        "<html><head></head><body><h1>404 WebSocket Upgrade Failure</h1></body></html>"
    );
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    http_contexts_match_by_prefix_whatever_the_method,
    http_contexts_match_by_prefix_whatever_the_method_on_two_nodes,
    http_contexts_match_by_prefix_whatever_the_method_case
);

fn http_contexts_match_by_prefix_whatever_the_method_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let body = action("CREATE_CHANNEL", json!({"channel": "m"}));
    for (node, method, path) in [
        (addr, "PUT", "/channel/create"),
        (other, "GET", "/channel/createx"),
    ] {
        let resp = request(node, method, path, "", body.as_bytes());
        let expected = if method == "PUT" { 200 } else { 409 };
        assert_eq!(resp.status, expected, "{method} {path}: {}", resp.text());
    }
    let invalid = error(400, "Bad Request", "Invalid message");
    for path in [
        "/pushx",
        "/push/anything",
        "/channel/ping/",
        "/channel/delete?x",
    ] {
        assert_answer(&request(addr, "DELETE", path, "", b""), 400, &invalid);
    }
    // An unmatched path gets the JDK's own page, and the connection is closed.
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 50\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n\
         <h1>404 Not Found</h1>No context found for request"
    );
    // Answers keep the connection alive, as the JDK server does; a HEAD gets the head alone.
    let mut conn = KeepAlive::new(addr);
    for method in ["POST", "HEAD", "GET"] {
        let resp = conn.request(method, "/sysadmin", "", b"");
        assert_eq!(resp.status, 200, "{method}");
        assert!(resp.body.is_empty() == (method == "HEAD"), "{method}");
    }
}

#[test]
fn bodies_are_validated_before_anything_else() {
    let server = start(&[]);
    let addr = server.addrs[1];
    let token = create(addr, "v");
    let invalid = error(400, "Bad Request", "Invalid message");
    // Not JSON: the raw body comes back.
    for raw in ["{not json", "{\"a\":"] {
        assert_answer(
            &post(addr, "/push", raw),
            400,
            &error(400, "Bad Request", raw),
        );
    }
    let cases = [
        ("/channel/create", String::new()),
        ("/channel/create", "   ".to_string()),
        ("/channel/create", "null".to_string()),
        ("/channel/create", "[]".to_string()),
        ("/channel/create", action("CREATE_CHANNEL", json!({}))),
        (
            "/channel/create",
            action("CREATE_CHANNEL", json!({"channel": 5})),
        ),
        (
            "/channel/create",
            action(
                "PING_CHANNEL",
                json!({"channel": "x", "channelToken": null}),
            ),
        ),
        (
            "/channel/ping",
            action("PING_CHANNEL", json!({"channel": "v"})),
        ),
        (
            "/channel/delete",
            action("DELETE_CHANNEL", json!({"channel": "v"})),
        ),
        (
            "/push",
            action(
                "PUSH_MESSAGE",
                json!({"channel": "v", "channelToken": null, "recipients": [], "message": "m"}),
            ),
        ),
        (
            "/push",
            action(
                "PUSH_MESSAGE",
                json!({"channel": "v", "channelToken": token, "recipients": ["not-a-uuid"], "message": "m"}),
            ),
        ),
        (
            "/push",
            action(
                "PUSH_MESSAGE",
                json!({"channel": "v", "channelToken": token, "recipients": [], "message": 5}),
            ),
        ),
        (
            "/push",
            action(
                "PUSH_MESSAGE",
                json!({"channel": "v", "channelToken": token, "message": "m"}),
            ),
        ),
        (
            "/push",
            json!({"messageType": "SERVER_ACTIONS", "action": "PUSH_MESSAGE", "data": {}})
                .to_string(),
        ),
    ];
    for (path, body) in cases {
        assert_answer(&post(addr, path, &body), 400, &invalid);
    }
    // Extra properties are allowed, and so is an empty channel name.
    let mut extra: Value =
        serde_json::from_str(&action("CREATE_CHANNEL", json!({"channel": "", "x": 1}))).unwrap();
    extra["more"] = json!(true);
    assert_eq!(
        post(addr, "/channel/create", &extra.to_string()).status,
        200
    );
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    ping_tells_existence_then_checks_the_token,
    ping_tells_existence_then_checks_the_token_on_two_nodes,
    ping_tells_existence_then_checks_the_token_case
);

fn ping_tells_existence_then_checks_the_token_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "p");
    let ping = |channel: &str, token: Value| {
        post(
            other,
            "/channel/ping",
            &action(
                "PING_CHANNEL",
                json!({"channel": channel, "channelToken": token}),
            ),
        )
    };
    let missing = "Could not find a WebSocketChannel called \"nope\"";
    // The channel is looked up before the token is looked at.
    assert_answer(
        &ping("nope", json!("wrong")),
        404,
        &error(404, "Not found", missing),
    );
    assert_answer(
        &ping("nope", Value::Null),
        404,
        &error(404, "Not found", missing),
    );
    assert_answer(
        &ping("p", Value::Null),
        401,
        &error(401, "Unauthorized", "No channel token provided"),
    );
    assert_answer(
        &ping("p", json!("wrong")),
        403,
        &error(403, "Forbidden", "Channel token is invalid"),
    );
    assert_answer(&ping("p", json!(token)), 200, &ack("OK", "p"));
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    create_conflicts_and_delete_checks_then_silently_unsubscribes,
    create_conflicts_and_delete_checks_then_silently_unsubscribes_on_two_nodes,
    create_conflicts_and_delete_checks_then_silently_unsubscribes_case
);

fn create_conflicts_and_delete_checks_then_silently_unsubscribes_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "d");
    let again = post(
        other,
        "/channel/create",
        &action(
            "CREATE_CHANNEL",
            json!({"channel": "d", "channelToken": "ignored"}),
        ),
    );
    assert_answer(
        &again,
        409,
        &error(
            409,
            "Conflict",
            "A WebSocketChannel called \"d\" already exists",
        ),
    );
    let mut client = Client::connect(other, "/");
    client.subscribe("d");
    let delete = |channel: &str, token: Value| {
        post(
            addr,
            "/channel/delete",
            &action(
                "DELETE_CHANNEL",
                json!({"channel": channel, "channelToken": token}),
            ),
        )
    };
    assert_answer(
        &delete("other", json!(token)),
        404,
        &error(
            404,
            "Not found",
            "Could not find a WebSocketChannel called \"other\"",
        ),
    );
    // A null token gives 403 here, not 401.
    let forbidden = error(403, "Forbidden", "Channel token is invalid");
    assert_answer(&delete("d", Value::Null), 403, &forbidden);
    assert_answer(&delete("d", json!("wrong")), 403, &forbidden);
    assert_answer(&delete("d", json!(token)), 200, &ack("Deleted", "d"));
    // The subscriber is not told, and is no longer subscribed.
    client.quiet(Duration::from_millis(200));
    let uuid = client.uuid.clone();
    assert_eq!(
        post(other, "/sysadmin", "").json()["data"]["channels"],
        json!([])
    );
    create(addr, "e");
    assert_eq!(
        client.subscribe("e"),
        client_ack("Subscribed", &uuid, &["e"])
    );
    let new_token = create(addr, "d");
    assert_ne!(new_token, token);
    assert_eq!(push(addr, "d", &new_token, json!([]), "after").status, 200);
    client.quiet(Duration::from_millis(200));
    assert_eq!(
        client.subscribe("d"),
        client_ack("Subscribed", &uuid, &["e", "d"])
    );
    assert_eq!(push(other, "d", &new_token, json!([]), "again").status, 200);
    assert_eq!(client.next(), client_push(&uuid, &["e", "d"], "d", "again"));
    assert_eq!(push(other, "d", &token, json!([]), "old token").status, 403);
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    sysadmin_lists_names_and_counts_but_never_tokens,
    sysadmin_lists_names_and_counts_but_never_tokens_on_two_nodes,
    sysadmin_lists_names_and_counts_but_never_tokens_case
);

fn sysadmin_lists_names_and_counts_but_never_tokens_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let tokens = [create(addr, "b"), create(other, "a")];
    let first = Client::connect(addr, "/");
    let _second = Client::connect(other, "/");
    let resp = request(other, "DELETE", "/sysadmin/anything", "", b"ignored");
    assert_answer(
        &resp,
        200,
        &json!({"messageType": "SERVER_SYSADMIN", "code": 200, "message": "OK",
                "data": {"channels": ["a", "b"], "channelsAmount": 2, "clientsAmount": 2}}),
    );
    for token in &tokens {
        assert!(!resp.text().contains(token.as_str()));
    }
    // A closed client is forgotten (the original could keep counting it).
    drop(first);
    wait_for("the closed client to be forgotten", || {
        post(other, "/sysadmin", "").json()["data"]["clientsAmount"] == 1
    });
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    every_websocket_error_goes_to_the_sender,
    every_websocket_error_goes_to_the_sender_on_two_nodes,
    every_websocket_error_goes_to_the_sender_case
);

fn every_websocket_error_goes_to_the_sender_case(a: &Server, b: &Server) {
    let (addr, elsewhere) = (ws(a), ws(b));
    create(addr, "news");
    let mut client = Client::connect(addr, "/");
    let mut other = Client::connect(elsewhere, "/");
    let own = client.uuid.clone();
    for raw in ["not json", "{\"messageType\":", ""] {
        client.send(raw);
        assert_eq!(client.next(), error(400, "Bad JSON", raw));
    }
    let invalid = [
        json!({"messageType": "CLIENT_ACTION", "uuid": own, "action": "JUMP", "data": {"channel": "news"}}),
        json!({"messageType": "CLIENT_ACTION", "uuid": "f897e837", "action": "SUBSCRIBE", "data": {"channel": "news"}}),
        json!({"messageType": "CLIENT_ACTION", "uuid": own, "action": "SUBSCRIBE", "data": {}}),
        json!({"messageType": "CLIENT_ACTION", "uuid": own, "action": "SUBSCRIBE"}),
        json!(42),
        json!({}),
    ];
    for msg in invalid {
        let text = msg.to_string();
        client.send(&text);
        assert_eq!(client.next(), error(400, "Invalid message", &text));
    }
    assert_eq!(
        client.act("SUBSCRIBE", Some(&own), "nope"),
        error(
            404,
            "Not found",
            "Could not find a WebSocketChannel called \"nope\""
        )
    );
    assert_eq!(
        client.act(
            "SUBSCRIBE",
            Some("00000000-0000-4000-8000-000000000000"),
            "news"
        ),
        error(
            403,
            "Forbidden",
            "The given UUID does not belong to any WebSocket connection"
        )
    );
    let foreign = other.uuid.clone();
    assert_eq!(
        client.act("SUBSCRIBE", Some(&foreign), "news"),
        error(
            403,
            "Forbidden",
            "The given UUID does not belong to this WebSocket connection"
        )
    );
    // The original subscribed the other client anyway; here it hears nothing and stays unsubscribed.
    other.quiet(Duration::from_millis(200));
    let token_resp = post(elsewhere, "/sysadmin", "");
    assert_eq!(token_resp.json()["data"]["clientsAmount"], 2);
    assert_eq!(
        other.unsubscribe("news"),
        client_ack("Unsubscribed", &foreign, &[])
    );
    // Server-side and outgoing messages are ignored, and so are binary frames.
    let ignored = [
        json!({"messageType": "ERROR", "code": 1, "message": "m", "data": {"errorDetails": null}}),
        json!({"messageType": "CLIENT_ACK", "code": 200, "message": "m", "data": {"uuid": own, "subscribedChannels": []}}),
        json!({"messageType": "CLIENT_PUSH", "code": 200, "message": "m", "data": {"uuid": own, "subscribedChannels": [], "pushMessage": {"channel": "c", "message": "x"}}}),
        json!({"messageType": "SERVER_ACTION", "action": "CREATE_CHANNEL", "data": {"channel": "sneaky"}}),
        json!({"messageType": "SERVER_ACTION", "action": "DELETE_CHANNEL", "data": {"channel": "news", "channelToken": null}}),
        json!({"messageType": "SERVER_ACK", "code": 200, "message": "OK", "data": {"channel": "c", "channelToken": null}}),
        json!({"messageType": "SERVER_SYSADMIN", "code": 200, "message": "OK", "data": {"channels": [], "channelsAmount": 0, "clientsAmount": 0}}),
    ];
    for msg in ignored {
        client.send(&msg.to_string());
    }
    client.ws.send(0x82, b"{\"binary\":true}");
    client.quiet(Duration::from_millis(300));
    assert_eq!(
        post(addr, "/sysadmin", "").json()["data"]["channels"],
        json!(["news"])
    );
    // Still open and answering.
    assert_eq!(
        client.subscribe("news"),
        client_ack("Subscribed", &own, &["news"])
    );
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    a_subscribe_without_uuid_acts_for_the_sender_and_twice_changes_nothing,
    a_subscribe_without_uuid_acts_for_the_sender_and_twice_changes_nothing_on_two_nodes,
    a_subscribe_without_uuid_acts_for_the_sender_and_twice_changes_nothing_case
);

fn a_subscribe_without_uuid_acts_for_the_sender_and_twice_changes_nothing_case(
    a: &Server,
    b: &Server,
) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "news");
    let mut client = Client::connect(other, "/");
    let uuid = client.uuid.clone();
    // The README's own example, which has no uuid.
    client
        .send(r#"{"messageType":"CLIENT_ACTION","action":"SUBSCRIBE","data":{"channel":"news"}}"#);
    assert_eq!(client.next(), client_ack("Subscribed", &uuid, &["news"]));
    // The original listed the channel twice and delivered each push twice.
    assert_eq!(
        client.act("SUBSCRIBE", Some(&uuid.to_uppercase()), "news"),
        client_ack("Subscribed", &uuid, &["news"])
    );
    assert_eq!(push(addr, "news", &token, json!([]), "once").status, 200);
    assert_eq!(client.next(), client_push(&uuid, &["news"], "news", "once"));
    client.quiet(Duration::from_millis(300));
    assert_eq!(
        client.act("UNSUBSCRIBE", None, "news"),
        client_ack("Unsubscribed", &uuid, &[])
    );
    assert_eq!(
        client.unsubscribe("news"),
        client_ack("Unsubscribed", &uuid, &[]),
        "even when not subscribed"
    );
    assert_eq!(push(addr, "news", &token, json!([]), "gone").status, 200);
    client.quiet(Duration::from_millis(300));
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    recipients_narrow_a_push_to_listed_connected_subscribers,
    recipients_narrow_a_push_to_listed_connected_subscribers_on_two_nodes,
    recipients_narrow_a_push_to_listed_connected_subscribers_case
);

fn recipients_narrow_a_push_to_listed_connected_subscribers_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "r");
    create(addr, "elsewhere");
    // Subscribers on both nodes, the pushes through the first.
    let mut subs: Vec<Client> = [other, addr, other]
        .into_iter()
        .map(|node| Client::connect(node, "/"))
        .collect();
    for c in &mut subs {
        c.subscribe("r");
    }
    let mut outsider = Client::connect(other, "/");
    outsider.subscribe("elsewhere");
    let (first, second) = (subs[0].uuid.clone(), subs[1].uuid.clone());
    let recipients = json!([
        first,
        second.to_uppercase(),
        outsider.uuid,
        "00000000-0000-4000-8000-000000000000"
    ]);
    assert_answer(
        &push(addr, "r", &token, recipients, "private"),
        200,
        &ack("Sent", "r"),
    );
    assert_eq!(subs[0].next(), client_push(&first, &["r"], "r", "private"));
    assert_eq!(subs[1].next(), client_push(&second, &["r"], "r", "private"));
    subs[2].quiet(Duration::from_millis(200));
    outsider.quiet(Duration::from_millis(1));
    // An empty list is everyone subscribed.
    assert_eq!(push(addr, "r", &token, json!([]), "all").status, 200);
    for c in &mut subs {
        let uuid = c.uuid.clone();
        assert_eq!(c.next(), client_push(&uuid, &["r"], "r", "all"));
    }
    outsider.quiet(Duration::from_millis(200));
}

/// Pushes to one channel answered one after another through one node reach a subscriber, on that node or another,
/// in the order they were answered.
fn pushes_to_one_channel_keep_their_order_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "ordered");
    let mut near = Client::connect(addr, "/");
    let mut far = Client::connect(other, "/");
    near.subscribe("ordered");
    far.subscribe("ordered");
    for n in 0..100 {
        let answer = push(addr, "ordered", &token, json!([]), &n.to_string());
        assert_eq!(answer.status, 200);
    }
    for c in [&mut near, &mut far] {
        let uuid = c.uuid.clone();
        for n in 0..100 {
            assert_eq!(
                c.next(),
                client_push(&uuid, &["ordered"], "ordered", &n.to_string())
            );
        }
    }
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    pushes_to_one_channel_keep_their_order,
    pushes_to_one_channel_keep_their_order_on_two_nodes,
    pushes_to_one_channel_keep_their_order_case
);

on_one_and_two_nodes!(
    "ws-push",
    &["--workers", "2"],
    each_client_sees_its_own_channels_in_its_pushes,
    each_client_sees_its_own_channels_in_its_pushes_on_two_nodes,
    each_client_sees_its_own_channels_in_its_pushes_case
);

fn each_client_sees_its_own_channels_in_its_pushes_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let news = create(addr, "news");
    let sport = create(other, "sport");
    let mut both = Client::connect(other, "/");
    let mut one = Client::connect(addr, "/");
    let (u1, u2) = (both.uuid.clone(), one.uuid.clone());
    both.subscribe("news");
    assert_eq!(
        both.subscribe("sport"),
        client_ack("Subscribed", &u1, &["news", "sport"])
    );
    one.subscribe("sport");
    assert_eq!(push(addr, "sport", &sport, json!([]), "goal").status, 200);
    assert_eq!(
        both.next(),
        client_push(&u1, &["news", "sport"], "sport", "goal")
    );
    assert_eq!(one.next(), client_push(&u2, &["sport"], "sport", "goal"));
    assert_eq!(
        both.unsubscribe("news"),
        client_ack("Unsubscribed", &u1, &["sport"])
    );
    assert_eq!(push(addr, "news", &news, json!([]), "nobody").status, 200);
    assert_eq!(push(addr, "sport", &sport, json!([]), "second").status, 200);
    assert_eq!(both.next(), client_push(&u1, &["sport"], "sport", "second"));
    assert_eq!(one.next(), client_push(&u2, &["sport"], "sport", "second"));
    // A push larger than 64 KiB: the frame header grows, the prefix stays per client.
    let big = "x".repeat(70_000);
    assert_eq!(push(addr, "sport", &sport, json!([]), &big).status, 200);
    assert_eq!(both.next(), client_push(&u1, &["sport"], "sport", &big));
    assert_eq!(one.next(), client_push(&u2, &["sport"], "sport", &big));
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    non_ascii_names_are_neither_mangled_nor_truncated,
    non_ascii_names_are_neither_mangled_nor_truncated_on_two_nodes,
    non_ascii_names_are_neither_mangled_nor_truncated_case
);

fn non_ascii_names_are_neither_mangled_nor_truncated_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let name = "caf\u{e9} \u{2615} \u{1F680}";
    // The answer's Content-length counts bytes: reading exactly that many gives the whole JSON.
    let token = create(addr, name);
    let mut client = Client::connect(other, "/");
    let uuid = client.uuid.clone();
    assert_eq!(
        client.subscribe(name),
        client_ack("Subscribed", &uuid, &[name])
    );
    let resp = push(addr, name, &token, json!([]), "gr\u{fc}\u{df}e <\u{2028}>");
    assert_answer(&resp, 200, &ack("Sent", name));
    assert_eq!(
        client.next(),
        client_push(&uuid, &[name], name, "gr\u{fc}\u{df}e <\u{2028}>")
    );
    let list = post(other, "/sysadmin", "");
    assert_eq!(list.json()["data"]["channels"], json!([name]));
    // Invalid UTF-8 in a body is not JSON: the raw body comes back, made valid.
    let resp = request(addr, "POST", "/push", "", b"{\"a\":\"\xff\"}");
    assert_answer(
        &resp,
        400,
        &error(400, "Bad Request", "{\"a\":\"\u{FFFD}\"}"),
    );
}

#[test]
fn pings_come_on_schedule_and_a_client_without_pongs_is_dropped_without_a_close_frame() {
    let server = start(&["--ws-push-ping", "300ms", "--ws-push-timeout", "1200ms"]);
    let addr = server.addrs[1];
    let mut silent = Client::connect(addr, "/");
    let mut lively = Client::connect(addr, "/");
    let started = Instant::now();
    let lively = thread::spawn(move || {
        lively
            .ws
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut pings = 0;
        while started.elapsed() < Duration::from_millis(2500) {
            if let Some(frame) = lively.ws.try_read_frame_timeout() {
                assert_eq!((frame.b0, frame.payload.len()), (0x89, 0), "{frame:?}");
                pings += 1;
                lively.ws.send(0x8A, b"");
            }
        }
        assert!(pings >= 4, "{pings} pings");
        lively
    });
    // Messages are no pongs: they do not keep a client alive.
    silent.send("chatter");
    let mut frames = Vec::new();
    while let Some(frame) = silent.ws.try_read_frame() {
        frames.push(frame);
        if started.elapsed() < Duration::from_millis(700) {
            silent.send("more chatter");
        }
    }
    let dropped = started.elapsed();
    assert!(
        frames.first().is_some_and(|f| f.b0 == 0x81),
        "the Bad JSON answer first"
    );
    let pings: Vec<_> = frames.iter().filter(|f| f.b0 == 0x89).collect();
    assert!(
        frames
            .iter()
            .all(|f| f.b0 == 0x81 || (f.b0 == 0x89 && f.payload.is_empty())),
        "{frames:?}"
    );
    assert!(pings.len() >= 2, "{frames:?}");
    assert!(!frames.iter().any(|f| f.opcode() == 0x8), "no close frame");
    assert!(
        dropped >= Duration::from_millis(1100) && dropped < Duration::from_millis(2500),
        "dropped after {dropped:?}"
    );
    let mut lively = lively.join().unwrap();
    let uuid = lively.uuid.clone();
    create(addr, "alive");
    assert_eq!(
        lively.subscribe("alive"),
        client_ack("Subscribed", &uuid, &["alive"])
    );
}

#[test]
fn a_client_close_is_echoed() {
    let server = start(&[]);
    let mut client = Client::connect(server.addrs[1], "/");
    client.ws.send(0x88, &[0x03, 0xE9, b'b', b'y', b'e']);
    let frames = client.ws.read_to_end();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close_code(), Some(1001));
}

on_one_and_two_nodes!(
    "ws-push",
    &["--max-channels", "3", "--max-subscriptions", "2"],
    channels_and_subscriptions_are_bounded,
    channels_and_subscriptions_are_bounded_on_two_nodes,
    channels_and_subscriptions_are_bounded_case
);

fn channels_and_subscriptions_are_bounded_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    // The limit counts the channels created through either node.
    for (node, name) in [(addr, "a"), (other, "b"), (other, "c")] {
        create(node, name);
    }
    let resp = post(
        addr,
        "/channel/create",
        &action("CREATE_CHANNEL", json!({"channel": "d"})),
    );
    assert_answer(
        &resp,
        503,
        &error(
            503,
            "Service Unavailable",
            "The channel limit (--max-channels) is reached",
        ),
    );
    let mut client = Client::connect(other, "/");
    let uuid = client.uuid.clone();
    client.subscribe("a");
    client.subscribe("b");
    assert_eq!(
        client.subscribe("c"),
        error(
            400,
            "Bad Request",
            "A connection may subscribe to at most 2 channels (--max-subscriptions)"
        )
    );
    assert_eq!(
        client.unsubscribe("a"),
        client_ack("Unsubscribed", &uuid, &["b"])
    );
    assert_eq!(
        client.subscribe("c"),
        client_ack("Subscribed", &uuid, &["b", "c"])
    );
}

on_one_and_two_nodes!(
    "ws-push",
    &["--workers", "2"],
    many_subscribe_and_unsubscribe_rounds_keep_delivery_exact,
    many_subscribe_and_unsubscribe_rounds_keep_delivery_exact_on_two_nodes,
    many_subscribe_and_unsubscribe_rounds_keep_delivery_exact_case
);

fn many_subscribe_and_unsubscribe_rounds_keep_delivery_exact_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let names = ["n0", "n1", "n2", "n3"];
    let nodes = [addr, other];
    let tokens: Vec<String> = names.iter().map(|n| create(addr, n)).collect();
    let mut clients: Vec<Client> = (0..4).map(|i| Client::connect(nodes[i % 2], "/")).collect();
    for round in 0..6 {
        // Client i holds the channels whose index differs from (round + i) % 4.
        for (i, client) in clients.iter_mut().enumerate() {
            for (k, name) in names.iter().enumerate() {
                if k == (round + i) % 4 {
                    client.unsubscribe(name);
                } else {
                    client.subscribe(name);
                }
            }
        }
        for (k, name) in names.iter().enumerate() {
            assert_eq!(
                push(
                    nodes[k % 2],
                    name,
                    &tokens[k],
                    json!([]),
                    &format!("{round}-{k}")
                )
                .status,
                200
            );
        }
        for (i, client) in clients.iter_mut().enumerate() {
            // Pushes to different channels are not ordered between them on two nodes (each channel's are).
            let mut got: Vec<String> = (0..3)
                .map(|_| {
                    client.next()["data"]["pushMessage"]["message"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            got.sort_unstable();
            let want: Vec<String> = (0..4)
                .filter(|k| *k != (round + i) % 4)
                .map(|k| format!("{round}-{k}"))
                .collect();
            assert_eq!(got, want, "round {round}, client {i}");
        }
    }
    for client in &mut clients {
        client.quiet(Duration::from_millis(100));
    }
}

#[test]
fn ws_push_is_served_under_its_prefix_on_a_native_listener() {
    let server = start(&[]);
    let native = server.addrs[0];
    let resp = post(
        native,
        "/ws-push/channel/create",
        &action("CREATE_CHANNEL", json!({"channel": "p"})),
    );
    assert_eq!(resp.status, 200);
    let token = resp.json()["data"]["channelToken"]
        .as_str()
        .unwrap()
        .to_string();
    let mut client = Client::connect(native, "/ws-push/anything");
    let uuid = client.uuid.clone();
    assert_eq!(
        client.subscribe("p"),
        client_ack("Subscribed", &uuid, &["p"])
    );
    assert_eq!(
        push(server.addrs[1], "p", &token, json!([]), "both ways").status,
        200
    );
    assert_eq!(client.next(), client_push(&uuid, &["p"], "p", "both ways"));
    assert_eq!(get(native, "/ws-push/nope").status, 404);
    assert_eq!(get(native, "/healthz").status, 200);
}

#[test]
fn the_served_client_script_works_against_spout() {
    let server = start(&[]);
    let addr = server.addrs[1];
    let resp = get(addr, "/js/pushserver.js");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), None);
    assert!(resp.text().contains("class PushServer"));
    if !require_program("node") || !require_node_package("ws") {
        return;
    }
    let token = create(addr, "js");
    let mut script = NodeScript::start(
        "pushserver_client.mjs",
        &[&format!("http://{addr}"), &format!("ws://{addr}/"), "js"],
    );
    let uuid = script.next()["uuid"].as_str().expect("uuid").to_string();
    assert_eq!(script.next(), json!({"subscribed": ["js"]}));
    assert_eq!(
        push(addr, "js", &token, json!([uuid]), "to the page").status,
        200
    );
    assert_eq!(
        script.next(),
        json!({"push": {"channel": "js", "message": "to the page"}})
    );
    script.close_stdin();
    assert_eq!(script.next(), json!({"unsubscribed": []}));
    assert_eq!(script.next(), json!({"state": "closed"}));
}

#[test]
fn the_npm_ws_client_subscribes_and_receives() {
    if !require_program("node") || !require_node_package("ws") {
        return;
    }
    let server = start(&["--ws-push-ping", "200ms", "--ws-push-timeout", "700ms"]);
    let addr = server.addrs[1];
    let token = create(addr, "npm");
    let mut node = NodeScript::start("ws_text_client.mjs", &[&format!("ws://{addr}/socket")]);
    let text = |line: Value| -> Value {
        serde_json::from_str(line["text"].as_str().expect("text")).unwrap()
    };
    assert_eq!(node.next(), json!({"state": "open"}));
    let hello = text(node.next());
    let uuid = hello["data"]["uuid"].as_str().unwrap().to_string();
    node.send_line(&format!(
        r#"{{"messageType":"CLIENT_ACTION","uuid":"{uuid}","action":"SUBSCRIBE","data":{{"channel":"npm"}}}}"#
    ));
    assert_eq!(text(node.next()), client_ack("Subscribed", &uuid, &["npm"]));
    // The library answers pings, so it outlives the timeout.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(push(addr, "npm", &token, json!([]), "hi").status, 200);
    assert_eq!(text(node.next()), client_push(&uuid, &["npm"], "npm", "hi"));
    node.close_stdin();
    assert_eq!(node.next(), json!({"state": "close", "code": 1000}));
}

/// The original's two ports are one listener here: an HTTP answer and a WebSocket from the same address.
#[test]
fn one_listener_serves_both_of_the_originals_ports() {
    let server = start(&[]);
    let addr = server.addrs[1];
    let mut http = BufReader::new(connect(addr));
    http.get_mut()
        .write_all(b"POST /sysadmin HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    http.read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK\r\n");
    let client = Client::connect(addr, "/");
    assert_eq!(client.uuid.len(), 36);
}

/// Sends the upgrade request and `frames` in one write, as a client that does not wait for the 101 may; returns
/// the client once its CLIENT_ACK "Connected" is read.
fn connect_pipelined(addr: SocketAddr, frames: &[Vec<u8>]) -> Client {
    let mut stream = connect(addr);
    let mut raw = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    for frame in frames {
        raw.extend_from_slice(frame);
    }
    stream.write_all(&raw).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut ws = Ws { stream };
    let hello = ws.next_json();
    let uuid = hello["data"]["uuid"].as_str().expect("uuid").to_string();
    assert_eq!(hello, client_ack("Connected", &uuid, &[]));
    Client { ws, uuid }
}

fn action_frame(action: &str, channel: &str) -> Vec<u8> {
    let msg =
        json!({"messageType": "CLIENT_ACTION", "action": action, "data": {"channel": channel}});
    ws_client_frame(0x81, msg.to_string().as_bytes())
}

// One worker, so the next connection takes the closed one's slab key: a hub entry left behind would reach it.
on_one_and_two_nodes!(
    "ws-push",
    &["--workers", "1"],
    a_channel_left_in_the_frames_sent_with_the_upgrade_gets_no_pushes,
    a_channel_left_in_the_frames_sent_with_the_upgrade_gets_no_pushes_on_two_nodes,
    a_channel_left_in_the_frames_sent_with_the_upgrade_gets_no_pushes_case
);

fn a_channel_left_in_the_frames_sent_with_the_upgrade_gets_no_pushes_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let news = create(other, "news");
    create(other, "other");
    let mut watcher = Client::connect(other, "/");
    watcher.subscribe("news");
    let mut eager = connect_pipelined(
        addr,
        &[
            action_frame("SUBSCRIBE", "news"),
            action_frame("UNSUBSCRIBE", "news"),
        ],
    );
    let uuid = eager.uuid.clone();
    assert_eq!(eager.next(), client_ack("Subscribed", &uuid, &["news"]));
    assert_eq!(eager.next(), client_ack("Unsubscribed", &uuid, &[]));
    assert_eq!(push(addr, "news", &news, json!([]), "first").status, 200);
    let watcher_uuid = watcher.uuid.clone();
    assert_eq!(
        watcher.next(),
        client_push(&watcher_uuid, &["news"], "news", "first")
    );
    eager.quiet(Duration::from_millis(300));
    drop(eager);
    wait_for("the eager client to be forgotten", || {
        post(other, "/sysadmin", "").json()["data"]["clientsAmount"] == 1
    });
    let mut next = Client::connect(addr, "/");
    let next_uuid = next.uuid.clone();
    assert_eq!(
        next.subscribe("other"),
        client_ack("Subscribed", &next_uuid, &["other"])
    );
    assert_eq!(push(addr, "news", &news, json!([]), "second").status, 200);
    assert_eq!(
        watcher.next(),
        client_push(&watcher_uuid, &["news"], "news", "second")
    );
    next.quiet(Duration::from_millis(300));
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    a_channel_joined_in_the_frames_sent_with_the_upgrade_gets_pushes,
    a_channel_joined_in_the_frames_sent_with_the_upgrade_gets_pushes_on_two_nodes,
    a_channel_joined_in_the_frames_sent_with_the_upgrade_gets_pushes_case
);

fn a_channel_joined_in_the_frames_sent_with_the_upgrade_gets_pushes_case(a: &Server, b: &Server) {
    let (addr, other) = (ws(a), ws(b));
    let news = create(addr, "news");
    let mut eager = connect_pipelined(addr, &[action_frame("SUBSCRIBE", "news")]);
    let uuid = eager.uuid.clone();
    assert_eq!(eager.next(), client_ack("Subscribed", &uuid, &["news"]));
    assert_eq!(push(other, "news", &news, json!([]), "hi").status, 200);
    assert_eq!(eager.next(), client_push(&uuid, &["news"], "news", "hi"));
    eager.quiet(Duration::from_millis(200));
}

#[test]
fn a_subscribe_sent_in_fragments_with_a_ping_between_them_is_reassembled() {
    let server = start(&[]);
    let addr = server.addrs[1];
    let name = "caf\u{e9}";
    let token = create(addr, name);
    let mut client = Client::connect(addr, "/");
    let uuid = client.uuid.clone();
    let msg = json!({"messageType": "CLIENT_ACTION", "uuid": uuid, "action": "SUBSCRIBE", "data": {"channel": name}})
        .to_string();
    // RFC 6455 §5.4: text, continuation, final continuation; a control frame may come between fragments, and
    // the two bytes of "é" are split between the second and the third (§5.6: UTF-8 is checked across them).
    let bytes = msg.as_bytes();
    let split = msg.find('\u{e9}').expect("the é") + 1;
    let mut frames = ws_client_frame(0x01, &bytes[..10]);
    frames.extend(ws_client_frame(0x89, b"mid"));
    frames.extend(ws_client_frame(0x00, &bytes[10..split]));
    frames.extend(ws_client_frame(0x80, &bytes[split..]));
    client.ws.send_raw(&frames);
    let pong = client.ws.read_frame();
    assert_eq!((pong.b0, pong.payload.as_slice()), (0x8A, &b"mid"[..]));
    assert_eq!(client.next(), client_ack("Subscribed", &uuid, &[name]));
    assert_eq!(push(addr, name, &token, json!([]), "whole").status, 200);
    assert_eq!(client.next(), client_push(&uuid, &[name], name, "whole"));
}

on_one_and_two_nodes!(
    "ws-push",
    &[],
    a_push_looks_the_channel_up_then_checks_the_token_and_an_error_sends_nothing,
    a_push_looks_the_channel_up_then_checks_the_token_and_an_error_sends_nothing_on_two_nodes,
    a_push_looks_the_channel_up_then_checks_the_token_and_an_error_sends_nothing_case
);

fn a_push_looks_the_channel_up_then_checks_the_token_and_an_error_sends_nothing_case(
    a: &Server,
    b: &Server,
) {
    let (addr, other) = (ws(a), ws(b));
    let token = create(addr, "p");
    let mut client = Client::connect(other, "/");
    let uuid = client.uuid.clone();
    client.subscribe("p");
    // The channel is looked up (404) before the token is checked (403).
    assert_answer(
        &push(addr, "nope", &token, json!([]), "lost"),
        404,
        &error(
            404,
            "Not found",
            "Could not find a WebSocketChannel called \"nope\"",
        ),
    );
    assert_answer(
        &push(addr, "nope", "wrong", json!([]), "lost"),
        404,
        &error(
            404,
            "Not found",
            "Could not find a WebSocketChannel called \"nope\"",
        ),
    );
    assert_answer(
        &push(addr, "p", "wrong", json!([uuid]), "refused"),
        403,
        &error(403, "Forbidden", "Channel token is invalid"),
    );
    let mut prefix = token.clone();
    prefix.pop();
    assert_answer(
        &push(addr, "p", &prefix, json!([]), "refused"),
        403,
        &error(403, "Forbidden", "Channel token is invalid"),
    );
    // Rule 2: a push answered with an error publishes nothing.
    client.quiet(Duration::from_millis(300));
    assert_answer(
        &push(addr, "p", &token, json!([]), "accepted"),
        200,
        &ack("Sent", "p"),
    );
    assert_eq!(client.next(), client_push(&uuid, &["p"], "p", "accepted"));
}

#[test]
fn a_client_closed_over_the_cap_in_the_read_that_subscribed_it_takes_no_one_elses_subscription() {
    // One worker, so that every client shares one hub; a cap that pongs to one read's pings exceed.
    let server = start(&[
        "--workers",
        "1",
        "--max-body",
        "1KiB",
        "--max-queued-bytes",
        "4KiB",
    ]);
    let addr = server.addrs[1];
    let news = create(addr, "news");
    create(addr, "other");
    let mut watcher = Client::connect(addr, "/");
    let watcher_uuid = watcher.uuid.clone();
    watcher.subscribe("news");
    for reuse_a_slot in [true, false] {
        let mut flooder = Client::connect(addr, "/");
        if reuse_a_slot {
            // A slot freed by an unsubscribe is the one the next subscribe takes.
            flooder.subscribe("other");
            flooder.unsubscribe("other");
        }
        // A subscribe, then more pings than the cap has room for pongs, in one write the client never reads after.
        let mut flood = action_frame("SUBSCRIBE", "news");
        for _ in 0..40 {
            flood.extend(ws_client_frame(0x89, &[b'p'; 125]));
        }
        flooder.ws.send_raw(&flood);
        let frames = flooder.ws.read_to_end();
        assert!(
            frames.iter().all(|f| f.opcode() != 0xA),
            "closed before its pongs went out: {frames:?}"
        );
        wait_for("the flooder to be closed", || {
            post(addr, "/sysadmin", "").json()["data"]["clientsAmount"] == 1
        });
        let message = format!("after the flood, reusing a slot: {reuse_a_slot}");
        assert_eq!(push(addr, "news", &news, json!([]), &message).status, 200);
        assert_eq!(
            watcher.next(),
            client_push(&watcher_uuid, &["news"], "news", &message)
        );
    }
    // Counters reach /metrics with the worker's next tick.
    wait_for("both flooders counted as slow", || {
        metric(server.addrs[0], "spout_dropped_slow_subscribers_total") >= 2
    });
}

/// A node killed with its clients on it: within `--broker-node-ttl` its clients are gone from the counts and
/// from the uuids a subscribe may name, and the channels created through it from every answer; a client that
/// reconnects to the surviving node, and a channel created again there, carry on as after a restart of the
/// original.
#[test]
fn a_killed_nodes_clients_and_channels_are_gone_within_its_ttl() {
    let cluster = cluster::CompatCluster::start("ws-push", &["--broker-node-ttl", "3s"]);
    let [doomed, survivor] = &cluster.nodes;
    let (dead, alive) = (ws(doomed), ws(survivor));
    let lost = create(dead, "lost");
    let kept = create(alive, "kept");
    let mut on_dead = Client::connect(dead, "/");
    on_dead.subscribe("kept");
    let dead_uuid = on_dead.uuid.clone();
    let mut watcher = Client::connect(alive, "/");
    let watcher_uuid = watcher.uuid.clone();
    watcher.subscribe("lost");
    assert_eq!(
        watcher.subscribe("kept"),
        client_ack("Subscribed", &watcher_uuid, &["lost", "kept"])
    );
    let sysadmin = |addr| post(addr, "/sysadmin", "").json()["data"].clone();
    assert_eq!(
        sysadmin(alive),
        json!({"channels": ["kept", "lost"], "channelsAmount": 2, "clientsAmount": 2})
    );
    assert_eq!(push(alive, "lost", &lost, json!([]), "before").status, 200);
    assert_eq!(
        watcher.next(),
        client_push(&watcher_uuid, &["lost", "kept"], "lost", "before")
    );

    signal(doomed.child.id(), "KILL");
    let killed = Instant::now();
    wait_for("the dead node's client and channel to be gone", || {
        sysadmin(alive) == json!({"channels": ["kept"], "channelsAmount": 1, "clientsAmount": 1})
    });
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "{:?}",
        killed.elapsed()
    );
    // Its token answers no more, and its client's uuid belongs to no connection.
    assert_answer(
        &push(alive, "lost", &lost, json!([]), "after"),
        404,
        &error(
            404,
            "Not found",
            "Could not find a WebSocketChannel called \"lost\"",
        ),
    );
    assert_eq!(
        watcher.act("SUBSCRIBE", Some(&dead_uuid), "kept"),
        error(
            403,
            "Forbidden",
            "The given UUID does not belong to any WebSocket connection"
        )
    );

    // The dead node's client reconnects to the survivor, as it would to a restarted original.
    let mut back = Client::connect(alive, "/");
    let back_uuid = back.uuid.clone();
    assert_ne!(back_uuid, dead_uuid);
    assert_eq!(
        back.subscribe("kept"),
        client_ack("Subscribed", &back_uuid, &["kept"])
    );
    assert_eq!(
        push(alive, "kept", &kept, json!([]), "still here").status,
        200
    );
    assert_eq!(
        back.next(),
        client_push(&back_uuid, &["kept"], "kept", "still here")
    );
    // The lost channel left the watcher's list, as a deleted one would.
    assert_eq!(
        watcher.next(),
        client_push(&watcher_uuid, &["kept"], "kept", "still here")
    );
    // The lost channel, created again, is a new channel: its pushes reach those who subscribe to it again.
    let again = create(alive, "lost");
    assert_ne!(again, lost);
    assert_eq!(
        push(alive, "lost", &again, json!([]), "unheard").status,
        200
    );
    watcher.quiet(Duration::from_millis(300));
    assert_eq!(
        back.subscribe("lost"),
        client_ack("Subscribed", &back_uuid, &["kept", "lost"])
    );
    assert_eq!(
        watcher.subscribe("lost"),
        client_ack("Subscribed", &watcher_uuid, &["kept", "lost"])
    );
    assert_eq!(push(alive, "lost", &again, json!([]), "anew").status, 200);
    assert_eq!(
        back.next(),
        client_push(&back_uuid, &["kept", "lost"], "lost", "anew")
    );
    assert_eq!(
        watcher.next(),
        client_push(&watcher_uuid, &["kept", "lost"], "lost", "anew")
    );
    assert_eq!(sysadmin(alive)["clientsAmount"], 2);
}

/// With Redis gone, whatever needs it is refused in the original's style, and the node keeps serving the rest.
#[test]
fn without_redis_what_needs_it_gets_a_503_in_the_originals_style() {
    let mut cluster = cluster::CompatCluster::start("ws-push", &["--broker-timeout", "500ms"]);
    let addr = ws(&cluster.nodes[0]);
    let token = create(addr, "news");
    let mut client = Client::connect(addr, "/");
    for index in 0..cluster.redis.ports.len() {
        cluster.redis.kill(index);
    }
    let unavailable = error(
        503,
        "Service Unavailable",
        "The shared state did not answer in time; retry shortly",
    );
    let create_again = action("CREATE_CHANNEL", json!({"channel": "other"}));
    assert_answer(
        &post(addr, "/channel/create", &create_again),
        503,
        &unavailable,
    );
    assert_answer(
        &push(addr, "news", &token, json!([]), "lost"),
        503,
        &unavailable,
    );
    assert_answer(&post(addr, "/sysadmin", ""), 503, &unavailable);
    assert_eq!(client.subscribe("news"), unavailable);
    let (_, head) = ws_upgrade(addr, "/", "");
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    // What needs no Redis is still served.
    assert_eq!(get(addr, "/js/pushserver.js").status, 200);
    let bad = post(addr, "/push", "{not json");
    assert_answer(&bad, 400, &error(400, "Bad Request", "{not json"));
}

/// Two nodes sharing one Redis that is not a cluster: the same answers.
#[test]
fn recipients_narrow_a_push_on_two_nodes_sharing_one_redis() {
    let redis = cluster::RedisCluster::standalone();
    let args = ["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0=ws-push"];
    let first = cluster::start_node(&redis, &args);
    let second = cluster::start_node(&redis, &args);
    recipients_narrow_a_push_to_listed_connected_subscribers_case(&first, &second);
}

/// Redis out of reach for longer than the TTL (the master of WS-PushServer's state down, then back with its data):
/// every node's run was forgotten meanwhile, and once Redis is back each registers its open clients again.
#[test]
fn clients_are_registered_again_after_redis_was_out_of_reach_longer_than_the_ttl() {
    let mut cluster = cluster::CompatCluster::start("ws-push", &["--broker-node-ttl", "1s"]);
    let (addr, other) = (ws(&cluster.nodes[0]), ws(&cluster.nodes[1]));
    let mut first = Client::connect(addr, "/");
    let second = Client::connect(other, "/");
    assert_eq!(
        post(other, "/sysadmin", "").json()["data"]["clientsAmount"],
        2
    );
    let master = cluster.redis.master_of("spout:{ws_push}:owners");
    let index = cluster
        .redis
        .ports
        .iter()
        .position(|port| *port == master)
        .expect("the master's index");
    cluster.redis.kill(index);
    thread::sleep(Duration::from_millis(2500));
    cluster.redis.restart(index);
    cluster.redis.wait_ok();
    wait_for("both clients to be registered again", || {
        let resp = post(other, "/sysadmin", "");
        resp.status == 200 && resp.json()["data"]["clientsAmount"] == 2
    });
    // Each uuid belongs to a connection again.
    create(addr, "back");
    let uuid = second.uuid.clone();
    assert_eq!(
        first.act("SUBSCRIBE", Some(&uuid), "back"),
        error(
            403,
            "Forbidden",
            "The given UUID does not belong to this WebSocket connection"
        )
    );
}

/// A node stopped gracefully takes its clients out of Redis as it closes them: the other node stops counting
/// them at once, not a TTL later.
#[test]
fn a_stopped_nodes_clients_leave_the_counts_as_it_closes_them() {
    let cluster = cluster::CompatCluster::start("ws-push", &["--broker-node-ttl", "60s"]);
    let [stopping, staying] = &cluster.nodes;
    let _leaving = Client::connect(ws(stopping), "/");
    let _staying = Client::connect(ws(staying), "/");
    let clients = || post(ws(staying), "/sysadmin", "").json()["data"]["clientsAmount"].clone();
    assert_eq!(clients(), 2);
    stopping.terminate();
    wait_for("the stopped node's client to leave the count", || {
        clients() == 1
    });
}

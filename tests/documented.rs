//! Behaviour the README states that a user could easily guess wrong, held to it against the real binary: the
//! answer to `DELETE /channels/{channel}`, which routes need the publish key, which names are percent-decoded,
//! heartbeats after each stream's silence, the `lastEventId` spelling of EventSource polyfills, and the minimal
//! auth hook the README prints, run as printed (its port swapped for a free one).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// A spout with one worker.
fn start(args: &[&str]) -> Server {
    let mut all = vec!["--workers", "1"];
    all.extend_from_slice(args);
    start_server(&all)
}

/// One request on its own connection: the status and the body.
fn send(addr: SocketAddr, method: &str, target: &str, headers: &str, body: &str) -> (u16, String) {
    let answer = request(addr, method, target, headers, body.as_bytes());
    (answer.status, answer.text())
}

/// Publishes `data` to `/pub/{target}` and returns the answer.
fn publish_json(addr: SocketAddr, target: &str, data: &str) -> serde_json::Value {
    let answer = publish(addr, target, data);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

/// Reads a stream until `needle`; returns what came since the previous read.
fn read_to(sse: &mut Sse, needle: &str) -> String {
    String::from_utf8_lossy(&sse.read_until(needle.as_bytes())).into_owned()
}

#[test]
fn delete_answers_the_channel_and_deleted_true() {
    let server = start(&[]);
    publish_json(server.addr, "news", "hello");
    let (status, body) = send(server.addr, "DELETE", "/channels/news", "", "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"channel":"news","deleted":true}"#)
    );
    let (status, body) = send(server.addr, "DELETE", "/channels/news", "", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"channel_not_found\""), "{body}");
}

#[test]
fn channel_routes_need_the_publish_key_when_one_is_set() {
    let key = "0123456789abcdef-key";
    let server = start(&["--publish-key", key]);
    let addr = server.addr;
    let auth = format!("Authorization: Bearer {key}\r\n");
    assert_eq!(send(addr, "POST", "/pub/news", &auth, "hi").0, 200);
    for (method, target) in [
        ("GET", "/channels"),
        ("GET", "/channels/news"),
        ("DELETE", "/channels/news"),
        ("POST", "/pub/news"),
    ] {
        let (status, body) = send(addr, method, target, "", "");
        assert_eq!(status, 401, "{method} {target} without the key: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    assert_eq!(send(addr, "GET", "/channels", &auth, "").0, 200);
    assert_eq!(send(addr, "GET", "/channels/news", &auth, "").0, 200);
    assert_eq!(send(addr, "DELETE", "/channels/news", &auth, "").0, 200);
    // Subscribing and the operator's endpoints need none.
    assert_eq!(send(addr, "GET", "/healthz", "", "").0, 200);
    assert_eq!(send(addr, "GET", "/metrics", "", "").0, 200);
    let mut sse = sse_subscribe(addr, "/sub/news", "");
    assert_eq!(
        send(addr, "POST", "/pub/news?event=after", &auth, "x").0,
        200
    );
    read_to(&mut sse, "event: after\n");
}

#[test]
fn event_names_are_percent_decoded_channel_names_are_not() {
    let server = start(&[]);
    let addr = server.addr;
    let mut sse = sse_subscribe(addr, "/sub/news", "");
    publish_json(addr, "news?event=caf%C3%A9+au+lait", "x");
    read_to(&mut sse, "event: café au lait\ndata: x\n\n");

    let (status, body) = send(addr, "POST", "/pub/a%20b", "", "x");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"invalid_channel\""), "{body}");
    let (status, body) = send(addr, "POST", "/pub/%6Eews", "", "x");
    assert_eq!(status, 400, "a percent-encoded 'n' is not decoded: {body}");
}

#[test]
fn heartbeats_follow_a_silence_of_each_stream() {
    // Events every 50 ms never leave the stream silent for a 400 ms heartbeat: none comes between them. Once the
    // events stop, one comes after the silence.
    let server = start(&["--heartbeat", "400ms"]);
    let addr = server.addr;
    let mut sse = sse_subscribe(addr, "/sub/beat", "");
    let first = read_to(&mut sse, ":\n\n");
    let until = Instant::now() + Duration::from_millis(1500);
    let mut sent = 0;
    while Instant::now() < until {
        publish_json(addr, "beat", &format!("e{sent}"));
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = Instant::now();
    let text = read_to(&mut sse, &format!("data: e{}\n\n", sent - 1));
    let beats = text.split("\n\n").filter(|block| *block == ":").count();
    assert_eq!(
        beats, 0,
        "a heartbeat among {sent} events 50 ms apart: {text:?} (after {first:?})"
    );
    let after = read_to(&mut sse, ":\n\n");
    assert!(!after.contains("data:"), "{after:?}");
    assert!(
        last.elapsed() >= Duration::from_millis(300),
        "the heartbeat came {:?} after the last event",
        last.elapsed()
    );
}

#[test]
fn a_polyfills_last_event_id_query_resumes_the_stream() {
    let server = start(&[]);
    let addr = server.addr;
    let first = publish_json(addr, "resume", "one");
    publish_json(addr, "resume", "two");
    let id = first["id"].as_str().expect("id");
    let mut sse = sse_subscribe(addr, &format!("/sub/resume?lastEventId={id}"), "");
    let text = read_to(&mut sse, "data: two\n\n");
    assert!(!text.contains("data: one"), "{text:?}");
}

/// The README's minimal auth hook: the `js` block after "A minimal hook".
fn readme_hook() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let after = readme
        .split_once("A minimal hook")
        .expect("README has 'A minimal hook'")
        .1;
    let block = after.split_once("```js\n").expect("a js block").1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_string()
}

#[test]
fn the_readmes_minimal_auth_hook_works_as_printed() {
    if !require_program("node") {
        return;
    }
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("address").port();
    drop(free);
    let script = readme_hook();
    assert!(script.contains(".listen(3000, '127.0.0.1')"), "{script}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-hook.js");
    std::fs::write(&path, script.replace("3000", &port.to_string())).expect("write the hook");
    let mut hook = std::process::Command::new("node")
        .arg(&path)
        .spawn()
        .expect("run node");
    wait_for("the hook listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/spout-auth");
    let server = start(&["--auth", "hook", "--auth-hook", &url]);
    // The session's user gets their own channel and the rooms, and is the stream's client id.
    let session = "Cookie: theme=dark; session=s3cret\r\n";
    let mut sse = sse_subscribe(server.addr, "/sub/user.42,room.7,user.43", session);
    assert_eq!(sse.response.header("spout-client-id"), Some("user-42"));
    publish_json(server.addr, "user.43", "not yours");
    publish_json(server.addr, "room.7", "hello room");
    assert!(!read_to(&mut sse, "hello room").contains("not yours"));
    // No session: 401.
    let (status, body) = send(server.addr, "GET", "/sub/user.42", "", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"invalid_token\""), "{body}");
    let _ = hook.kill();
    let _ = hook.wait();
}

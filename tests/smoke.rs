//! The README's quick start, end to end: subscribe, publish, receive exact bytes.

mod common;

use common::*;

#[test]
fn publish_reaches_a_subscriber_with_exact_bytes() {
    let server = start_server(&[]);
    let mut sub = sse_subscribe(server.addr, "/sub/news", "");
    assert_eq!(
        sub.response.header("content-type"),
        Some("text/event-stream")
    );
    wait_for("subscription", || subscribers(server.addr, "news") == 1);
    let id = publish_id(server.addr, "news?event=greet", "hello\nworld");
    let got = sub.read_until(b"world\n\n");
    assert_eq!(
        String::from_utf8(got).expect("utf8"),
        format!("id: {id}\nevent: greet\ndata: hello\ndata: world\n\n")
    );
}

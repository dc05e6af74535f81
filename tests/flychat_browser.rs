//! flychat's chat pages in a real browser: headless Chromium (Debian's `chromium`, driven by the npm
//! `playwright-core` package through `tests/js/flychat_browser.mjs`). Two people join one room through the join
//! page, one under `/flychat` on a native listener and one at the root of a flychat listener (two origins, one
//! server); each message sent through a page's form shows, once, on the other page without a reload; a reload
//! shows the history rendered by the server; a third page whose browser lacks `EventSource` and `URLSearchParams`
//! chats through spout's `eventsource.min.js` and `url-polyfill.min.js`. What the pages show is compared with what
//! the server saved; before each look, a marker message posted after must show on every page looked at, so that a
//! copy still on its way would be seen. A screenshot of a page goes to `target/flychat-browser.png`. Under
//! `CI=true` a missing Chromium, Node.js or `playwright-core` fails the test. The same chat runs again with the
//! first person's page on one node and the others' on a second node, the two sharing a Redis Cluster
//! (`target/flychat-nodes-browser.png`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ROOM: &str = "tea%20room";
const FIRST: &str = "hello <b>bob</b> & \"co\"";
const ANSWER: &str = "hi alice ✓ <script>alert(1)</script>";
const THIRD: &str = "carol, are you there?";
const FOURTH: &str = "yes, on the polyfill";
/// Who the script's marker messages are from (`MARKER` in `tests/js/flychat_browser.mjs`).
const MARKER: &str = "marker";

/// A message as a page lists it, from what the server saved.
fn listed(saved: &Value) -> Value {
    json!({"from": saved["from"], "text": saved["text"], "pid": saved["provisionalId"], "markup": 0})
}

#[test]
fn two_pages_chat_through_the_forms_and_a_reload_shows_the_history() {
    if !require_browser() {
        return;
    }
    let server = start_server(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0=flychat"]);
    chat(&server, &server, "flychat");
}

/// The same chat with alice's page on one node and bob's and carol's on another, the nodes sharing a Redis
/// Cluster: each page sees the others' messages in order.
#[test]
fn two_pages_on_two_nodes_chat_through_the_forms() {
    if !require_browser() {
        return;
    }
    let cluster = cluster::CompatCluster::start("flychat", &[]);
    chat(&cluster.nodes[0], &cluster.nodes[1], "flychat-nodes");
}

/// alice's page under `/flychat` on `a`'s native listener, bob's and carol's at the root of `b`'s flychat listener;
/// the browser's profile and screenshot are named after `name`.
fn chat(a: &Server, b: &Server, name: &str) {
    let prefixed = format!("http://{}/flychat", a.addrs[0]);
    let root = format!("http://{}", b.addrs[1]);
    let files = BrowserFiles::new(
        &format!("{name}-chromium-profile"),
        &format!("{name}-browser.png"),
    );

    let mut browser = NodeScript::start(
        "flychat_browser.mjs",
        &[
            &prefixed,
            &root,
            ROOM,
            files.profile_arg(),
            files.screenshot_arg(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut steps: HashMap<String, Value> = HashMap::new();
    let done = loop {
        let line = browser.next_by(deadline, "the next step");
        match line["step"].as_str() {
            Some(step) => {
                steps.insert(step.to_string(), line);
            }
            None => break line,
        }
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["errors"], json!([]), "errors in the browser");

    // What the server saved is what the pages sent, and the script's markers, in the order posted.
    let saved = get(b.addrs[1], &format!("/rooms/{ROOM}/messages/")).json();
    assert_eq!(
        get(a.addrs[0], &format!("/flychat/rooms/{ROOM}/messages/")).json(),
        saved
    );
    let (markers, messages): (Vec<Value>, Vec<Value>) = saved["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .cloned()
        .partition(|m| m["from"] == MARKER);
    let marker_texts: Vec<&str> = markers.iter().filter_map(|m| m["text"].as_str()).collect();
    let posted = done["markers"].as_u64().expect("markers posted");
    assert!(posted > 0, "{done}");
    let want: Vec<String> = (1..=posted).map(|n| format!("marker {n}")).collect();
    assert_eq!(marker_texts, want);
    let sent: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap_or(""),
                m["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("alice", FIRST),
            ("bob", ANSWER),
            ("alice", THIRD),
            ("carol", FOURTH)
        ]
    );
    let shown: Vec<Value> = messages.iter().map(listed).collect();
    let upto = |n: usize| Value::Array(shown[..n].to_vec());

    let joined = &steps["joined"];
    assert_eq!(joined["alice"]["roomShown"], "tea room");
    assert_eq!(joined["bob"]["roomShown"], "tea room");
    assert_eq!(
        joined["alice"]["url"],
        format!("{prefixed}/{ROOM}?user=alice")
    );
    assert_eq!(joined["bob"]["url"], format!("{root}/{ROOM}?user=bob"));

    // Each message shows once on every page, as text (no markup got through), without leaving the page.
    let first = &steps["first"];
    assert_eq!(first["bob"], upto(1));
    assert_eq!(first["alice"], upto(1));
    assert_eq!(first["aliceStayed"], true);
    let answer = &steps["answer"];
    assert_eq!(answer["alice"], upto(2));
    assert_eq!(answer["bob"], upto(2));
    assert_eq!(answer["bobStayed"], true);

    // The reloaded page came with the history in its HTML, escaped; the stream then added nothing twice.
    let reloaded = &steps["reloaded"];
    assert_eq!(reloaded["status"], 200);
    assert_eq!(reloaded["cacheControl"], "no-cache");
    let html = reloaded["html"].as_str().expect("html");
    for message in &messages[..2] {
        let pid = message["provisionalId"].as_str().expect("pid");
        assert!(
            html.contains(&format!("data-provisional-id=\"{pid}\"")),
            "{pid}"
        );
    }
    assert!(html.contains("hello &lt;b&gt;bob&lt;/b&gt; &amp; &quot;co&quot;"));
    assert!(html.contains("hi alice ✓ &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(reloaded["bob"], upto(2));

    // Without the browser's EventSource and URLSearchParams, spout's own carry the chat.
    let polyfill = &steps["polyfill"];
    assert_eq!(
        polyfill["polyfill"],
        json!({"EventSource": true, "URLSearchParams": true})
    );
    assert_eq!(polyfill["history"], upto(2));
    assert_eq!(polyfill["carol"], upto(3));
    assert_eq!(polyfill["carolAfter"], upto(4));
    assert_eq!(polyfill["alice"], upto(4));
    assert_eq!(polyfill["carolStayed"], true);

    browser.assert_exits_ok(deadline);
    files.assert_screenshot();
}

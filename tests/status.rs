//! The status page (`--status`) against the real binary: `/status/stream` sends one JSON sample per second, built
//! from the counters `/metrics` shows; the routes do not exist without the option; the page and the stream need the
//! publish key like the channel routes (as a bearer header or as `?key=`); and headless Chromium, reaching the page
//! by host and port only, shows figures that rise under a running load.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The next sample of a status stream, as JSON.
fn sample(stream: &mut Sse) -> Value {
    let event = stream.next_event().expect("the status stream ended");
    assert_eq!(event.id, None, "a sample has no id");
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("{}: {e}", event.data))
}

#[test]
fn the_status_stream_sends_a_sample_a_second_from_the_metrics_counters() {
    let server = start_server(&["--workers", "2", "--status"]);
    let addr = server.addr;
    let mut news = sse_subscribe(addr, "/sub/news", "");
    let mut status = sse_subscribe(addr, "/status/stream", "");
    assert_eq!(
        status.response.header("content-type"),
        Some("text/event-stream")
    );
    let first = sample(&mut status);
    for key in [
        "time",
        "connections",
        "subscribers",
        "workers",
        "apis",
        "rates",
        "queued_bytes",
        "slow_closes",
        "errors",
        "history",
        "broker",
    ] {
        assert!(first.get(key).is_some(), "no {key} in {first}");
    }
    assert_eq!(first["workers"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["broker"]["kind"], "local");
    for _ in 0..3 {
        publish_id(addr, "news", "hello");
        news.next_event().expect("the event");
    }
    // Within a few samples the figures show the three deliveries, the two streams (news and this one), and
    // /metrics says the same.
    let started = Instant::now();
    let seen = loop {
        let s = sample(&mut status);
        if s["delivered"].as_u64() >= Some(3) && s["subscribers"] == 2 {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no sample showed the deliveries: {s}"
        );
    };
    assert_eq!(seen["apis"]["native"], 2, "{seen}");
    assert_eq!(seen["history"]["events"], 3, "{seen}");
    let next = sample(&mut status);
    let gap = next["time"].as_u64().unwrap_or(0) - seen["time"].as_u64().unwrap_or(0);
    assert!((800..=1500).contains(&gap), "samples {gap} ms apart");
    assert!(next["rates"]["delivered"].is_number(), "{next}");
    // The viewer's own samples count as deliveries too.
    assert!(metric(addr, "spout_delivered_total") >= next["delivered"].as_u64().unwrap_or(0));
    let metrics = get(addr, "/metrics").text();
    assert!(
        metrics.contains("spout_subscribers_by_api{worker=\"0\",api=\"native\"}")
            && metrics.contains("spout_connections_by_api{worker=\"0\",api=\"native\"}"),
        "{metrics}"
    );

    // Connections per API come from the sweep of the connections: the two streams, and this test's publishes on
    // keep-alive connections that may still be open.
    let started = Instant::now();
    loop {
        let s = sample(&mut status);
        if s["connections_by_api"]["native"].as_u64() >= Some(2) {
            assert_eq!(s["connections_by_api"]["keker"], 0, "{s}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no connections per API: {s}"
        );
    }
    // The status stream's channel is spout's own: no listing shows it.
    for listing in ["/channels", "/channels?api=all"] {
        let text = get(addr, listing).text();
        assert!(!text.contains("spout status"), "{listing}: {text}");
    }

    // A second viewer's opening holds the samples sent so far, oldest first.
    let mut second = sse_subscribe(addr, "/status/stream", "");
    let opening = sample(&mut second);
    assert_eq!(opening["time"], first["time"], "{opening}");
}

#[test]
fn without_the_option_the_status_routes_do_not_exist() {
    let server = start_server(&["--workers", "1"]);
    for path in ["/status", "/status/stream", "/status/page.js"] {
        let answer = get(server.addr, path);
        assert_eq!(answer.status, 404, "{path}: {}", answer.text());
        assert!(answer.text().contains("\"not_found\""), "{}", answer.text());
    }
}

#[test]
fn the_status_page_and_stream_need_the_publish_key_like_channel_admin() {
    let key = "0123456789abcdef-key";
    let server = start_server(&["--workers", "1", "--status", "--publish-key", key]);
    let addr = server.addr;
    for path in [
        "/status",
        "/status/stream",
        "/status?key=wrong",
        "/channels",
    ] {
        let answer = get(addr, path);
        assert_eq!(answer.status, 401, "{path}: {}", answer.text());
        assert!(
            answer.text().contains("\"unauthorized\""),
            "{}",
            answer.text()
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{path}");
    }
    let auth = format!("Authorization: Bearer {key}\r\n");
    let page = request(addr, "GET", "/status", &auth, b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/status/page.js"), "{}", page.text());
    assert_eq!(get(addr, &format!("/status?key={key}")).status, 200);
    let mut by_header = sse_subscribe(addr, "/status/stream", &auth);
    sample(&mut by_header);
    let mut by_query = sse_subscribe(addr, &format!("/status/stream?key={key}"), "");
    sample(&mut by_query);
    // The page's files hold nothing of the server's.
    for file in ["page.js", "page.css", "uPlot.iife.min.js", "uPlot.min.css"] {
        assert_eq!(get(addr, &format!("/status/{file}")).status, 200, "{file}");
    }
    assert_eq!(get(addr, "/status/nothing.js").status, 404);
    assert_eq!(
        get(addr, &format!("/status/stream?key={key}&x=1")).status,
        400
    );
}

#[test]
fn chromium_shows_the_status_page_with_figures_rising_under_load() {
    if !require_browser() {
        return;
    }
    let key = "0123456789abcdef-key";
    let server = start_server(&["--workers", "2", "--status", "--publish-key", key]);
    let addr = server.addr;
    let deadline = Instant::now() + Duration::from_secs(60);
    let files = BrowserFiles::new("status-chromium-profile", "status-page.png");

    // The load: a subscriber that reads everything, and a publisher loop, bounded in time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = sse_subscribe(addr, "/sub/load", "");
    let reading = std::thread::spawn(move || while reader.next_event().is_some() {});
    let publishing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut publisher = KeepAlive::new(addr);
            let auth = format!("Authorization: Bearer {key}\r\n");
            let until = Instant::now() + Duration::from_secs(30);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let answer = publisher.request("POST", "/pub/load", &auth, b"tick");
                assert_eq!(answer.status, 200, "{}", answer.text());
                sent += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };

    let url = server.url(&format!("/status?key={key}"));
    // Live samples the page must take after the first figures it shows.
    let samples = 4;
    let mut browser = NodeScript::start(
        "status_browser.mjs",
        &[
            &url,
            files.profile_arg(),
            files.screenshot_arg(),
            &samples.to_string(),
        ],
    );
    let mut seen: Vec<Value> = Vec::new();
    let done = loop {
        let line = browser.next_by(deadline, "the page's figures");
        if line["state"] == "done" {
            break line;
        }
        seen.push(line);
    };
    stop.store(true, Ordering::Relaxed);
    let sent = publishing.join().expect("publisher");
    assert_eq!(done["errors"], serde_json::json!([]), "errors in the page");
    let with_data: Vec<&Value> = seen
        .iter()
        .filter(|f| f["samples"].as_u64() > Some(0))
        .collect();
    let (Some(first), Some(last)) = (with_data.first(), with_data.last()) else {
        panic!("the page showed no sample: {seen:?}");
    };
    assert_eq!(last["state"], "live", "{last}");
    assert_eq!(last["workers"], 2, "{last}");
    assert_eq!(last["charts"], 3, "{last}");
    assert!(
        last["delivered"].as_u64() > first["delivered"].as_u64(),
        "deliveries did not rise on the page: {seen:?}"
    );
    assert!(
        last["published"].as_u64() > first["published"].as_u64(),
        "publishes did not rise on the page: {seen:?}"
    );
    assert!(
        last["deliveredRate"].as_f64() > Some(0.0),
        "no deliveries per second on the page: {last}"
    );
    assert!(sent > 0);
    browser.close_stdin();
    browser.assert_exits_ok(deadline);
    files.assert_screenshot();
    drop(server);
    let _ = reading.join();
}

#[test]
fn a_viewers_opening_holds_only_the_newest_samples_that_fit_half_the_queue_cap() {
    let server = start_server(&[
        "--workers",
        "1",
        "--status",
        "--max-body",
        "1KiB",
        "--max-queued-bytes",
        "2KiB",
    ]);
    let mut first = sse_subscribe(server.addr, "/status/stream", "");
    let third = (0..3).map(|_| sample(&mut first)).last().expect("samples");
    // A sample of one worker is some 700 bytes: half of 2 KiB holds one.
    let mut second = sse_subscribe(server.addr, "/status/stream", "");
    let opening = sample(&mut second);
    assert!(
        opening["time"].as_u64() >= third["time"].as_u64(),
        "the opening began with an older sample: {opening} (the third was {third})"
    );
}

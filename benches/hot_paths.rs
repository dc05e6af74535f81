//! Micro-benchmarks of spout's pure hot-path functions, each reported as throughput (criterion).
//!
//! What this file owns: one bench binary (`cargo bench --bench hot_paths`) covering request-head parsing,
//! chunked body decoding, SSE encoding, the encode-once `Message::sse_frame` and `Message::ws_frame`, fan-out (queueing one shared frame
//! on 10,000 `OutQueue`s, and a per-recipient prefixed WebSocket frame on as many), the vectored write of a 64-frame queue, the history lookup behind `Last-Event-ID`, the channel table's side of a publish, a hub's joins and leaves,
//! and the check of a subscriber's signed token (`auth/verify`: HS256, RS256, ES256, EdDSA; keys in `benches/keys`,
//! made for this bench with `openssl genpkey`).
//!
//! What it must not do: touch sockets or threads, or benchmark anything that depends on the machine's network
//! stack; those costs belong to `loadtest/`. Inputs are built outside the timed closures, so each figure is the
//! cost of the named function alone.
//!
//! Quick run: `cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2` (a couple of minutes).

use std::hint::black_box;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mio::{Poll, Token, Waker};

use spout::auth::Auth;
use spout::bus::Bus;
use spout::channels::{ChannelTable, NewEvent, Resume, TableLimits};
use spout::config::{AuthMode, Config};
use spout::conn::outq::{Chunk, OutQueue};
use spout::http::chunked::ChunkedDecoder;
use spout::http::request::{parse_head, Limits};
use spout::http::Parsed;
use spout::hub::{Hub, Member};
use spout::message::{EventId, Frame, Message};
use spout::sse::encode_event;

/// Subscribers in the fan-out benchmark: 10,000 in-memory subscribers, the size of the largest fan-out load test.
const FANOUT_SUBSCRIBERS: usize = 10_000;
/// Frames queued for the vectored-write benchmark: exactly `outq::MAX_IOV`, so one call writes them all.
const QUEUED_FRAMES: usize = 64;
/// Events in each channel's history for the replay benchmark.
const HISTORY: usize = 1000;

const HEAD_LIMITS: Limits = Limits {
    max_head: 16 * 1024,
    max_headers: 64,
    max_body: 1024 * 1024,
};

/// A publish as curl sends it, with a 100-byte body following the head.
fn publish_request() -> Vec<u8> {
    let body = payload(100);
    let mut req = format!(
        "POST /pub/news HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// `len` bytes of printable single-line text.
fn payload(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// About `len` bytes split into lines of ~60 bytes with mixed line endings (LF, CRLF, CR).
fn multiline_payload(len: usize) -> String {
    let mut s = String::with_capacity(len + 8);
    let mut i = 0;
    while s.len() < len {
        s.push_str(&payload(58));
        s.push_str(["\n", "\r\n", "\r"][i % 3]);
        i += 1;
    }
    s.truncate(len);
    s
}

/// `body` in chunks of `chunk` bytes, then the last chunk.
fn chunked_body(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn message(data: &str) -> Message {
    let id = EventId::seed_at(SystemTime::now());
    Message::new(id, Arc::from("news"), None, data.into(), None)
}

fn bench_parse_head(c: &mut Criterion) {
    let req = publish_request();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(req.len() as u64));
    group.bench_function("parse_head/publish", |b| {
        b.iter(|| match parse_head(black_box(&req), &HEAD_LIMITS) {
            Ok(Parsed::Complete(head, used)) => black_box((head.framing, used)),
            other => panic!("publish head did not parse: {other:?}"),
        })
    });
    group.finish();
}

fn bench_chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("http");
    for (name, len, chunk) in [
        ("chunked/100B_1chunk", 100, 100),
        ("chunked/1KiB_4chunks", 1024, 256),
        ("chunked/16KiB_1KiBchunks", 16 * 1024, 1024),
    ] {
        let body = payload(len);
        let wire = chunked_body(body.as_bytes(), chunk);
        let mut out = Vec::with_capacity(len);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut decoder = ChunkedDecoder::new(1024 * 1024);
                let progress = decoder
                    .feed(black_box(&wire), &mut out)
                    .expect("valid chunked body");
                assert!(progress.done);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn bench_sse_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse");
    let id = "1700000000000001";
    for (name, data) in [
        ("encode_event/1line_100B", payload(100)),
        ("encode_event/1line_1KiB", payload(1024)),
        ("encode_event/multiline_100B", multiline_payload(100)),
        ("encode_event/multiline_1KiB", multiline_payload(1024)),
    ] {
        let mut out = Vec::with_capacity(2 * data.len() + 64);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_event(&mut out, Some(id), None, black_box(&data));
                black_box(out.len())
            })
        });
    }
    // Message::sse_frame: the first call encodes (id formatting, allocation, Arc); later calls are a OnceLock read.
    for (name, data) in [
        ("sse_frame/first_100B", payload(100)),
        ("sse_frame/first_1KiB", payload(1024)),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || message(&data),
                |msg| black_box(msg.sse_frame().len()),
                BatchSize::SmallInput,
            )
        });
    }
    let msg = message(&payload(100));
    msg.sse_frame();
    group.throughput(Throughput::Elements(1));
    group.bench_function("sse_frame/cached", |b| {
        b.iter(|| black_box(black_box(&msg).sse_frame().len()))
    });
    group.finish();
}

/// WebSocket encoding: the encode-once `Message::ws_frame` (JSON escaping + frame header), the per-recipient
/// queueing of a prefixed frame (WS-PushServer), and the bare header builder used for the server's own frames.
fn bench_ws_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_encode");
    for (name, data) in [
        ("ws_frame/first_100B", payload(100)),
        ("ws_frame/first_1KiB", multiline_payload(1024)),
    ] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || message(&data),
                |msg| black_box(msg.ws_frame().len()),
                BatchSize::SmallInput,
            )
        });
    }
    // WS-PushServer's CLIENT_PUSH: per recipient, a header held inline, the recipient's own prefix and the shared
    // tail, all queued without copying a payload byte (compare with `fanout/push_shared/10k_empty_queues`).
    let prefix: Frame = Frame::from(
        &br#"{"messageType":"CLIENT_PUSH","code":200,"message":"Push Message","data":{"uuid":"f897e837-0b5c-4f3a-9d2e-1a2b3c4d5e6f","subscribedChannels":["news"],"#[..],
    );
    let tail: Frame = Frame::from(
        format!(
            r#""pushMessage":{{"channel":"news","message":"{}"}}}}}}"#,
            payload(100)
        )
        .as_bytes(),
    );
    group.throughput(Throughput::Elements(FANOUT_SUBSCRIBERS as u64));
    group.bench_function("queue_with_prefix/10k_empty_queues", |b| {
        b.iter_batched_ref(
            || {
                (0..FANOUT_SUBSCRIBERS)
                    .map(|_| OutQueue::default())
                    .collect::<Vec<_>>()
            },
            |queues| {
                for q in queues.iter_mut() {
                    spout::conn::ws::queue_with_prefix(q, &prefix, &tail);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(16);
    group.bench_function("encode_header", |b| {
        b.iter(|| {
            out.clear();
            spout::ws::frame::encode_header(
                spout::ws::frame::Opcode::Text,
                black_box(70_000),
                &mut out,
            );
            black_box(out.len())
        })
    });
    group.finish();
}

fn bench_fanout(c: &mut Criterion) {
    let frame: Frame = message(&payload(100)).sse_frame().clone();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(FANOUT_SUBSCRIBERS as u64));
    // Queues start empty each iteration, as after a flush: the cost includes the VecDeque allocation a queue
    // makes for its first chunk (an emptied queue gives its memory back, see outq.rs).
    group.bench_function("push_shared/10k_empty_queues", |b| {
        b.iter_batched_ref(
            || {
                (0..FANOUT_SUBSCRIBERS)
                    .map(|_| OutQueue::default())
                    .collect::<Vec<_>>()
            },
            |queues| {
                for q in queues.iter_mut() {
                    q.push(Chunk::Shared(Arc::clone(&frame)));
                }
            },
            BatchSize::LargeInput,
        )
    });
    // Queues already holding 4 frames (a subscriber behind by a few events). A VecDeque's first allocation holds
    // 4 chunks, so this push is the one that grows it to 8: the cost of a subscriber falling behind.
    group.bench_function("push_shared/10k_busy_queues", |b| {
        b.iter_batched_ref(
            || {
                (0..FANOUT_SUBSCRIBERS)
                    .map(|_| {
                        let mut q = OutQueue::default();
                        for _ in 0..4 {
                            q.push(Chunk::Shared(Arc::clone(&frame)));
                        }
                        q
                    })
                    .collect::<Vec<_>>()
            },
            |queues| {
                for q in queues.iter_mut() {
                    q.push(Chunk::Shared(Arc::clone(&frame)));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench_write_vectored(c: &mut Criterion) {
    let frame: Frame = message(&payload(100)).sse_frame().clone();
    let mut group = c.benchmark_group("outq");
    // One frame: a paced subscriber's usual write; QUEUED_FRAMES: a subscriber that fell behind.
    for frames in [1, QUEUED_FRAMES] {
        group.throughput(Throughput::Elements(frames as u64));
        let name = if frames == 1 {
            "write_to/1_frame_sink".to_string()
        } else {
            format!("write_to/{frames}_frames_sink")
        };
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut q = OutQueue::default();
                    for _ in 0..frames {
                        q.push(Chunk::Shared(Arc::clone(&frame)));
                    }
                    q
                },
                |q| {
                    let written = q.write_to(&mut io::sink()).expect("sink never fails");
                    assert_eq!(written.chunks, frames);
                    black_box(written)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A table holding `HISTORY` events on each of `channels` channels (published round-robin, so the channels'
/// histories interleave in id order), and the id of the middle event.
fn table_with_history(channels: usize, bus: &Bus) -> (ChannelTable, Vec<String>, EventId) {
    let limits = TableLimits {
        history: HISTORY,
        history_ttl: Duration::from_secs(3600),
        history_max_bytes: 1 << 30,
        max_channels: 1000,
        max_channels_per_client: None,
        workers: 1,
    };
    let table = ChannelTable::new(limits, SystemTime::now());
    let names: Vec<String> = (0..channels).map(|i| format!("ch{i}")).collect();
    let mut ids = Vec::with_capacity(HISTORY * channels);
    for _ in 0..HISTORY {
        for name in &names {
            let event = NewEvent {
                channel: name.as_str().into(),
                event: None,
                data: payload(100).into(),
                to: None,
                ..Default::default()
            };
            let receipts = table
                .publish(vec![event], bus, SystemTime::now(), Instant::now())
                .expect("publish into the bench table");
            ids.extend(receipts.iter().map(|r| r.id));
        }
    }
    let middle = ids[ids.len() / 2];
    (table, names, middle)
}

fn bench_replay(c: &mut Criterion) {
    // The Bus needs one Waker per worker; the Poll must outlive it.
    let poll = Poll::new().expect("mio poll");
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("mio waker"));
    let (bus, _inboxes) = Bus::new(vec![waker], 1 << 16);

    let mut group = c.benchmark_group("history");
    for channels in [1, 3] {
        let (table, names, middle) = table_with_history(channels, &bus);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Subscribing after the publishes, so no event went to the (never drained) inbox.
        let sub = table
            .subscribe(0, &refs, "bench", Resume::After(middle), None)
            .expect("subscribe");
        let cursor = sub.replay.expect("a resume has a replay cursor");
        let expected = HISTORY * channels / 2 - 1;
        let mut out = Vec::with_capacity(HISTORY * channels);
        group.throughput(Throughput::Elements(expected as u64));
        group.bench_function(format!("replay/middle_of_1000/{channels}ch"), |b| {
            b.iter(|| {
                out.clear();
                let mut cursor = cursor.clone();
                let step = table.replay(&sub.channels, "bench", &mut cursor, usize::MAX, &mut out);
                assert!(step.done);
                debug_assert_eq!(out.len(), expected);
                black_box(out.len())
            })
        });
        // The first page only, as the server pages replay by the socket's progress (64 KiB budget).
        let page = {
            let mut cursor = cursor.clone();
            out.clear();
            table.replay(&sub.channels, "bench", &mut cursor, 64 * 1024, &mut out);
            out.len()
        };
        group.throughput(Throughput::Elements(page as u64));
        group.bench_function(format!("replay/first_64KiB_page/{channels}ch"), |b| {
            b.iter(|| {
                out.clear();
                let mut cursor = cursor.clone();
                table.replay(&sub.channels, "bench", &mut cursor, 64 * 1024, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// The table's side of a publish (lock, name lookup, id, the shared `Message`, the hand-off into an inbox,
/// history) for one event to one of 10,000 channels that each have a subscriber: the publish path's share that
/// is not parsing or answering. The inbox is emptied after each publish, as its worker would.
fn bench_publish(c: &mut Criterion) {
    let poll = Poll::new().expect("mio poll");
    let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("mio waker"));
    let (bus, inboxes) = Bus::new(vec![waker], 1 << 16);
    let limits = TableLimits {
        history: 100,
        history_ttl: Duration::from_secs(3600),
        history_max_bytes: 1 << 30,
        max_channels: 100_000,
        max_channels_per_client: None,
        workers: 1,
    };
    let table = ChannelTable::new(limits, SystemTime::now());
    let names: Vec<String> = (0..FANOUT_SUBSCRIBERS)
        .map(|i| format!("user.{i}"))
        .collect();
    for name in &names {
        table
            .subscribe(0, &[name.as_str()], "bench", Resume::Fresh, None)
            .expect("subscribe");
    }
    let data = payload(100);
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("publish/1_event_of_10k_channels", |b| {
        b.iter(|| {
            next = (next + 1) % names.len();
            let event = NewEvent {
                channel: names[next].as_str().into(),
                data: data.as_str().into(),
                ..Default::default()
            };
            let receipts = table
                .publish(vec![event], &bus, SystemTime::now(), Instant::now())
                .expect("publish");
            while inboxes[0].try_recv().is_ok() {}
            black_box(receipts)
        })
    });
    group.finish();
}

/// A worker's hub under churn: 10,000 streams join 100 channels, then leave oldest first (so nearly every leave
/// moves the channel's last member into the hole and fixes its position).
fn bench_hub(c: &mut Criterion) {
    let channels: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("room.{i}"))).collect();
    let names: Vec<&Arc<str>> = (0..FANOUT_SUBSCRIBERS)
        .map(|i| &channels[i % channels.len()])
        .collect();
    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Elements(FANOUT_SUBSCRIBERS as u64));
    group.bench_function("join_then_leave/10k_streams", |b| {
        b.iter_batched_ref(
            Hub::default,
            |hub| {
                for (key, name) in names.iter().enumerate() {
                    hub.join(name, Member { key, slot: 0 });
                }
                for (key, name) in names.iter().enumerate() {
                    hub.leave(name, Member { key, slot: 0 });
                }
                black_box(hub.subscriptions())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// `Auth::verify` on a subscriber's token (a `sub`, an `exp` and two subscribe patterns), per algorithm: the whole
/// check a subscribe with a token adds (header, key choice, signature, time claims, the claims spout reads).
fn bench_auth(c: &mut Criterion) {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/keys");
    let read = |name: &str| std::fs::read(format!("{keys}/{name}")).expect("bench key");
    let config = Config {
        auth: AuthMode::Jwt,
        jwt_secrets: vec!["bench-secret-0123456789abcdef".into()],
        jwt_public_keys: ["rsa.pub", "p256.pub", "ed.pub"]
            .iter()
            .map(|name| format!("{keys}/{name}").into())
            .collect(),
        ..Config::default()
    };
    let auth = Auth::load(&config).expect("bench keys load");
    let claims = serde_json::json!({
        "sub": "user-42",
        "exp": jsonwebtoken::get_current_timestamp() + 3600,
        "spout": {"subscribe": ["user.42", "room.*"]}
    });
    let signers = [
        (
            "hs256",
            Algorithm::HS256,
            EncodingKey::from_secret(b"bench-secret-0123456789abcdef"),
        ),
        (
            "rs256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("rsa"),
        ),
        (
            "es256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&read("p256.pem")).expect("p256"),
        ),
        (
            "eddsa",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&read("ed.pem")).expect("ed"),
        ),
    ];
    let mut group = c.benchmark_group("auth/verify");
    group.throughput(Throughput::Elements(1));
    for (name, alg, key) in signers {
        let token = encode(&Header::new(alg), &claims, &key).expect("sign");
        assert!(auth.verify(token.as_bytes()).is_ok(), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(auth.verify(black_box(token.as_bytes()))).is_ok())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_auth,
    bench_publish,
    bench_hub,
    bench_parse_head,
    bench_chunked,
    bench_sse_encode,
    bench_ws_encode,
    bench_fanout,
    bench_write_vectored,
    bench_replay
);
criterion_main!(benches);

//! Hostile clients against the real binary: what a client can make the server hold in memory stays within the
//! limits it is given.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Clients in the ping flood.
const FLOODERS: usize = 20;
/// Each flooder's output cap (`--max-queued-bytes`).
const CAP_KIB: u64 = 64;

/// A client that sends empty pings as fast as it can and never reads the pongs. An empty pong is 2 bytes on the
/// wire, so under a cap counted in bytes alone one connection could queue some 30,000 of them (each a queue slot
/// and an allocation) before it was closed; counted by what they hold, it is closed after a few thousand.
#[test]
fn empty_ping_floods_are_held_to_the_output_cap_and_closed() {
    let cap = format!("{CAP_KIB}KiB");
    let server = start_server(&[
        "--workers",
        "1",
        "--max-queued-bytes",
        &cap,
        "--max-body",
        &cap,
    ]);
    let addr = server.addr;
    let pid = server.child.id();
    // One stream first, so the worker's own buffers are in the baseline.
    let (mut warm, _) = ws_connect(addr, "/sub/warm", "");
    warm.send(0x89, b"");
    assert_eq!(warm.read_frame().opcode(), 0xA);
    let before = rss_kib(pid);

    let ping = ws_client_frame(0x89, b"");
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 200_000)
        .collect();
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|i| {
            let (stream, head) = ws_upgrade(addr, &format!("/sub/flood{i}"), "");
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            // A small receive window, so the pongs back up in the server, not in this client's kernel buffer.
            socket2::SockRef::from(&stream)
                .set_recv_buffer_size(4096)
                .expect("SO_RCVBUF");
            let flood = flood.clone();
            thread::spawn(move || {
                let mut stream = stream;
                stream
                    .set_write_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                // The server closes the connection once the pongs pass the cap: the write then fails.
                stream.write_all(&flood).is_err() || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .expect("timeout");
                    // An end of stream or a reset is the close; a read timeout is not.
                    let mut sink = Vec::new();
                    match stream.read_to_end(&mut sink) {
                        Ok(_) => true,
                        Err(e) => !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak = 0;
    while !flooders.iter().all(|f| f.is_finished()) && Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        thread::sleep(Duration::from_millis(20));
    }
    for flooder in flooders {
        assert!(
            flooder.join().expect("flooder"),
            "a flooder was never closed"
        );
    }
    peak = peak.max(rss_kib(pid));
    let grown = peak.saturating_sub(before);
    // At most each flooder's cap, plus a small constant (allocator slack). Counted in bytes alone, the pongs
    // grew the server by about 2.1 MiB here (each of them a queue slot and an allocation); held to the cap by
    // what they occupy, by about 70 KiB.
    let bound = FLOODERS as u64 * CAP_KIB + 512;
    assert!(
        grown <= bound,
        "server grew by {grown} KiB with {FLOODERS} ping flooders (bound {bound} KiB)"
    );
    wait_for("the flooders counted as slow", || {
        metric(server.addrs[0], "spout_dropped_slow_subscribers_total") >= FLOODERS as u64
    });
    // Others are served as before.
    warm.send(0x89, b"still");
    assert_eq!(warm.read_frame().opcode(), 0xA);
}

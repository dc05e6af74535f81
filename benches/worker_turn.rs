//! The worker's turn as one piece: events published to one channel, fanned out in slices of subscriber queues and
//! written in bounded write phases, measured from the first publish byte to the last delivery (criterion).
//!
//! What this file owns: a second bench binary (`cargo bench --bench worker_turn`) that drives the real server. Unlike
//! `hot_paths`, which times pure functions without sockets, this one needs the event loop itself: the slicing is
//! only visible when a turn's fan-out (`FANOUT_SLICE` queues) and write phase (`FLUSH_SLICE`) are cut short and
//! new publishes are read between slices. So it starts the `spout` binary (`--workers 1`) and connects real SSE
//! subscribers over loopback, then each iteration sends a window of events on one or two keep-alive publisher
//! connections, all at once (pipelined), and waits until every subscriber has every event. With 10,000
//! subscribers one event's fan-out takes about three slices; with 1,000, one slice covers four events.
//!
//! What it must not do: reach past loopback, or run unbounded: every wait has a deadline, and a lost event fails the
//! bench instead of hanging it. The figure includes this process's own reading of the subscribers (on the same
//! machine, maybe the same core), so it is a throughput to compare between builds, not a server cost; the server's
//! CPU per delivery is `loadtest/`'s.
//!
//! Quick run: `cargo bench --bench worker_turn -- --warm-up-time 1 --measurement-time 3`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mio::{Events, Interest, Poll, Token};

/// Events published per iteration: the window of the load tool's closed loop (`spout-load --window`).
const WINDOW: usize = 32;
/// The body of every event.
const BODY: [u8; 100] = [b'x'; 100];
/// Longest wait for a subscriber's opening, a publish answer or the last delivery of an iteration.
const WAIT: Duration = Duration::from_secs(30);

/// A `spout --workers 1` child process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Kept open: spout's later lines on stdout must not meet a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spout"))
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            // No heartbeat inside a measurement; room for a window of events on every queue.
            .args(["--heartbeat", "1h", "--max-queued-bytes", "4MiB"])
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start spout");
        let mut stdout = BufReader::new(child.stdout.take().expect("spout's stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("spout's stdout");
            assert!(n > 0, "spout exited before listening");
            let announced = line
                .strip_prefix("listening on ")
                .and_then(|rest| rest.split(' ').next());
            if let Some(addr) = announced.and_then(|a| a.trim().parse().ok()) {
                break addr;
            }
        };
        Server {
            child,
            addr,
            _stdout: stdout,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SSE subscribers of one channel, read through one poll; counts the events they receive.
struct Subscribers {
    poll: Poll,
    events: Events,
    sockets: Vec<mio::net::TcpStream>,
    /// Per subscriber: whether the last byte read was a line feed (an event ends with an empty line, whose two line
    /// feeds may arrive in different reads).
    after_lf: Vec<bool>,
    buf: Vec<u8>,
}

impl Subscribers {
    fn connect(addr: SocketAddr, n: usize) -> Subscribers {
        let poll = Poll::new().expect("poll");
        let mut sockets = Vec::with_capacity(n);
        let request = b"GET /sub/turn HTTP/1.1\r\nHost: bench\r\n\r\n";
        for key in 0..n {
            let mut socket = TcpStream::connect(addr).expect("connect a subscriber");
            socket.write_all(request).expect("subscribe");
            socket.set_read_timeout(Some(WAIT)).expect("timeout");
            // The opening ends with its `retry:` field and an empty line.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\n\n") {
                socket.read_exact(&mut byte).expect("the stream's opening");
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 200"), "subscribe refused");
            socket.set_nonblocking(true).expect("nonblocking");
            let mut socket = mio::net::TcpStream::from_std(socket);
            poll.registry()
                .register(&mut socket, Token(key), Interest::READABLE)
                .expect("register");
            sockets.push(socket);
        }
        Subscribers {
            poll,
            events: Events::with_capacity(1024),
            after_lf: vec![false; n],
            sockets,
            buf: vec![0; 256 * 1024],
        }
    }

    /// Reads until `expected` events have arrived over all subscribers.
    fn receive(&mut self, expected: usize) {
        let deadline = Instant::now() + WAIT;
        let mut received = 0;
        while received < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{received} of {expected} deliveries");
            self.poll.poll(&mut self.events, Some(left)).expect("poll");
            for event in self.events.iter() {
                let key = event.token().0;
                let (Some(socket), Some(after_lf)) =
                    (self.sockets.get_mut(key), self.after_lf.get_mut(key))
                else {
                    continue;
                };
                loop {
                    match socket.read(&mut self.buf) {
                        Ok(0) => panic!("subscriber {key} closed"),
                        Ok(n) => {
                            for &b in &self.buf[..n] {
                                received += usize::from(b == b'\n' && *after_lf);
                                *after_lf = b == b'\n';
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => panic!("subscriber {key}: {e}"),
                    }
                }
            }
        }
    }
}

/// Keep-alive publisher connections; each iteration's window is split between them.
struct Publishers {
    sockets: Vec<TcpStream>,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Publishers {
    fn connect(addr: SocketAddr, n: usize) -> Publishers {
        let sockets = (0..n)
            .map(|_| {
                let socket = TcpStream::connect(addr).expect("connect a publisher");
                socket.set_read_timeout(Some(WAIT)).expect("timeout");
                socket.set_nodelay(true).expect("nodelay");
                socket
            })
            .collect();
        let mut request = format!(
            "POST /pub/turn HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            BODY.len()
        )
        .into_bytes();
        request.extend_from_slice(&BODY);
        Publishers {
            sockets,
            request,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Sends the window's publishes, each connection its share in one write (pipelined).
    fn send(&mut self) {
        let connections = self.sockets.len();
        for (i, socket) in self.sockets.iter_mut().enumerate() {
            let share = WINDOW / connections + usize::from(i < WINDOW % connections);
            socket
                .write_all(&self.request.repeat(share))
                .expect("publish");
        }
    }

    /// Reads every answer of the window, and fails on any but 200.
    fn answers(&mut self) {
        let connections = self.sockets.len();
        for (i, socket) in self.sockets.iter_mut().enumerate() {
            let share = WINDOW / connections + usize::from(i < WINDOW % connections);
            let mut got = Vec::new();
            let mut answered = 0;
            while answered < share {
                match take_answer(&got) {
                    Some((200, used)) => {
                        got.drain(..used);
                        answered += 1;
                    }
                    Some((status, _)) => panic!("publish answered {status}"),
                    None => {
                        let n = socket.read(&mut self.buf).expect("publish answers");
                        assert!(n > 0, "publisher closed");
                        got.extend_from_slice(&self.buf[..n]);
                    }
                }
            }
        }
    }
}

/// The status and length of the complete answer at the start of `buf`, if there is one.
fn take_answer(buf: &[u8]) -> Option<(u16, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = answer.parse(buf).expect("an HTTP answer") else {
        return None;
    };
    let length: usize = answer
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
        .expect("a publish answer has a Content-Length");
    let end = head + length;
    (buf.len() >= end).then(|| (answer.code.unwrap_or(0), end))
}

fn bench_turn(c: &mut Criterion) {
    if let Err(e) = rlimit::increase_nofile_limit(20_000) {
        eprintln!("cannot raise the descriptor limit: {e}");
    }
    let mut group = c.benchmark_group("turn");
    group.sample_size(10);
    for subscribers in [1_000usize, 10_000] {
        let server = Server::start();
        let mut subs = Subscribers::connect(server.addr, subscribers);
        group.throughput(Throughput::Elements((subscribers * WINDOW) as u64));
        for publishers in [1usize, 2] {
            let mut pubs = Publishers::connect(server.addr, publishers);
            let name =
                format!("sse/{subscribers}_subscribers/{publishers}_publishers/{WINDOW}_events");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        pubs.send();
                        subs.receive(subscribers * WINDOW);
                        pubs.answers();
                    }
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_turn);
criterion_main!(benches);

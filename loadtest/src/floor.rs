//! The physical-limit baseline (`spout-load floor`): the least work any SSE server must do on this kernel.
//!
//! One thread, one `mio::Poll`. It accepts subscribers (`GET /sub/{ch}`: answers a fixed SSE response head and
//! keeps the socket) and publishers (`POST /pub/{ch}` on keep-alive connections: answers `202` at once). For each
//! published event it builds one frame, `data: <body>\n\n`, and writes that same buffer to every subscriber of the
//! channel: with `--batch 1` one plain `write` per event per subscriber; with `--batch K` it holds a channel's
//! frames until K are queued (or nothing more arrived within `--linger`) and writes them with one `writev` per
//! subscriber. There is no history, no ids, no limits, no timers, no metrics and no per-subscriber formatting:
//! what remains is the syscall, the loopback TCP path and the wake-ups, the cost no server can beat.
//!
//! The same `spout-load fanout`/`many-channels` client drives it as any server, so its figures compare.
//!
//! What it must not do: buffer without bound for a subscriber that stops reading (it is closed at
//! `MAX_PENDING`), or listen on anything but loopback (the caller's address is checked like a target URL).

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX - 1);
/// A subscriber more than this far behind is closed (the harness reports it as a disconnect).
const MAX_PENDING: usize = 16 << 20;
/// A request head larger than this is refused (the harness sends ~150 bytes).
const MAX_HEAD: usize = 8192;
const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
Connection: keep-alive\r\n\r\n";
const PUB_OK: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

#[derive(Clone, Debug)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    /// Frames per `writev`: 1 is a plain `write` per event per subscriber.
    pub batch: usize,
    /// With `batch > 1`: flush a channel's partial batch when no publish arrived for this long.
    pub linger: Duration,
    /// Exit after this long (every run is bounded).
    pub duration: Duration,
}

enum Role {
    /// Reading a request head (and a publish body).
    Request,
    Subscriber {
        channel: String,
        pending: Vec<u8>,
    },
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    role: Role,
    closed: bool,
}

/// What one parsed request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Subscribe(String),
    /// Channel, body range in the input buffer, bytes consumed.
    Publish(String, std::ops::Range<usize>, usize),
    Partial,
    Bad,
}

/// Parses one request at the start of `buf` (sans-io).
fn parse(buf: &[u8]) -> Request {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Request::Bad
        } else {
            Request::Partial
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Request::Bad;
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let channel = path.rsplit('/').next().unwrap_or("").to_string();
    match method {
        "GET" => Request::Subscribe(channel),
        "POST" => {
            let length = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let start = end + 4;
            match start.checked_add(length) {
                Some(stop) if stop <= buf.len() => Request::Publish(channel, start..stop, stop),
                Some(stop) if stop <= MAX_HEAD + (1 << 20) => Request::Partial,
                _ => Request::Bad,
            }
        }
        _ => Request::Bad,
    }
}

struct Floor {
    cfg: FloorConfig,
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    /// Channel → subscriber keys.
    channels: HashMap<String, Vec<usize>>,
    /// `batch > 1`: frames held per channel until the batch is full.
    held: HashMap<String, Vec<Arc<[u8]>>>,
    last_publish: Instant,
    to_close: Vec<usize>,
}

pub fn run(cfg: FloorConfig) -> io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(cfg.listen)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!(
        "spout-load floor listening on {} (batch {}, exits after {:?})",
        listener.local_addr()?,
        cfg.batch,
        cfg.duration
    );
    let mut floor = Floor {
        cfg,
        poll,
        listener,
        conns: Slab::new(),
        channels: HashMap::new(),
        held: HashMap::new(),
        last_publish: Instant::now(),
        to_close: Vec::new(),
    };
    floor.run()
}

impl Floor {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        let end = Instant::now() + self.cfg.duration;
        while Instant::now() < end {
            let timeout = if self.held.values().any(|v| !v.is_empty()) {
                self.cfg.linger
            } else {
                Duration::from_millis(200)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all()?,
                    Token(key) => {
                        if ev.is_writable() {
                            self.write_pending(key);
                        }
                        if ev.is_readable() || ev.is_read_closed() {
                            self.on_readable(key, &mut buf);
                        }
                    }
                }
            }
            if self.cfg.batch > 1 && self.last_publish.elapsed() >= self.cfg.linger {
                let names: Vec<String> = self
                    .held
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, _)| k.clone())
                    .collect();
                for name in names {
                    self.flush_held(&name);
                }
            }
            self.reap();
        }
        Ok(())
    }

    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    self.poll.registry().register(
                        &mut stream,
                        Token(key),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    entry.insert(Conn {
                        stream,
                        input: Vec::new(),
                        role: Role::Request,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors or a reset in the backlog: keep serving the others.
                Err(_) => return Ok(()),
            }
        }
    }

    fn on_readable(&mut self, key: usize, buf: &mut [u8]) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.closed {
                return;
            }
            match conn.stream.read(buf) {
                Ok(0) => return self.close(key),
                Ok(n) => {
                    if matches!(conn.role, Role::Request) {
                        conn.input.extend_from_slice(&buf[..n]);
                        self.handle_requests(key);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key),
            }
        }
    }

    fn handle_requests(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            match parse(&conn.input) {
                Request::Partial => return,
                Request::Bad => return self.close(key),
                Request::Subscribe(channel) => {
                    conn.input = Vec::new();
                    conn.role = Role::Subscriber {
                        channel: channel.clone(),
                        pending: Vec::new(),
                    };
                    self.channels.entry(channel).or_default().push(key);
                    self.send(key, &[SSE_HEAD]);
                    return;
                }
                Request::Publish(channel, body, used) => {
                    let mut frame = Vec::with_capacity(body.len() + 8);
                    frame.extend_from_slice(b"data: ");
                    frame.extend_from_slice(&conn.input[body]);
                    frame.extend_from_slice(b"\n\n");
                    conn.input.drain(..used);
                    let _ = conn.stream.write_all(PUB_OK);
                    self.last_publish = Instant::now();
                    self.publish(&channel, frame.into());
                }
            }
        }
    }

    fn publish(&mut self, channel: &str, frame: Arc<[u8]>) {
        if self.cfg.batch <= 1 {
            let keys = self.channels.get(channel).cloned().unwrap_or_default();
            for key in keys {
                self.send(key, &[&frame]);
            }
            return;
        }
        let held = self.held.entry(channel.to_string()).or_default();
        held.push(frame);
        if held.len() >= self.cfg.batch {
            self.flush_held(channel);
        }
    }

    fn flush_held(&mut self, channel: &str) {
        let frames = self.held.remove(channel).unwrap_or_default();
        if frames.is_empty() {
            return;
        }
        let slices: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        let keys = self.channels.get(channel).cloned().unwrap_or_default();
        for key in keys {
            self.send(key, &slices);
        }
    }

    /// Writes `parts` to subscriber `key` in one `write`/`writev`, or queues them behind what is pending.
    fn send(&mut self, key: usize, parts: &[&[u8]]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Role::Subscriber { pending, .. } = &mut conn.role else {
            return;
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        if pending.is_empty() {
            let result = if parts.len() == 1 {
                conn.stream.write(parts[0])
            } else {
                let slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
                conn.stream.write_vectored(&slices)
            };
            match result {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return self.close(key),
            }
        }
        if written < total {
            let mut skip = written;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                pending.extend_from_slice(&p[skip..]);
                skip = 0;
            }
            if pending.len() > MAX_PENDING {
                self.close(key);
            }
        }
    }

    fn write_pending(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Role::Subscriber { pending, .. } = &mut conn.role else {
            return;
        };
        while !pending.is_empty() {
            match conn.stream.write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key),
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.closed {
                conn.closed = true;
                self.to_close.push(key);
            }
        }
    }

    fn reap(&mut self) {
        for key in std::mem::take(&mut self.to_close) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Role::Subscriber { channel, .. } = conn.role {
                if let Some(keys) = self.channels.get_mut(&channel) {
                    if let Some(i) = keys.iter().position(|k| *k == key) {
                        keys.swap_remove(i);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let sub = b"GET /sub/c7 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(sub), Request::Subscribe("c7".into()));
        let publ = b"POST /pub/c1 HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET";
        let head = publ.len() - 6;
        assert_eq!(
            parse(publ),
            Request::Publish("c1".into(), head..head + 3, head + 3)
        );
        assert_eq!(
            parse(b"POST /pub/c1 HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
            Request::Partial
        );
        assert_eq!(parse(b"GET /sub/c7 HTTP/1.1\r\n"), Request::Partial);
        assert_eq!(parse(b"BREW /x HTTP/1.1\r\n\r\n"), Request::Bad);
        assert_eq!(parse(&[b'a'; MAX_HEAD + 1]), Request::Bad);
    }
}

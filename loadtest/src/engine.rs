//! The client event loop: subscribers and publishers as non-blocking sockets in one `mio::Poll` (edge-triggered,
//! read and write until `WouldBlock`), kept in a `Slab` whose key is the token.
//!
//! What this file owns: connecting (bind to a source address, then connect, ramped and with a cap on connects in
//! flight), the subscribe request and response head, streaming receipt (chunked framing → SSE → sequence number and
//! timestamp → latency histogram and per-subscriber accounting), and keep-alive publishing (one request in flight
//! per publisher connection).
//!
//! What it must not do: decide a scenario. Scenarios (`scenario.rs`) call `connect_subscribers`, `publish`,
//! `hold` and read the counters; this file never prints except through the progress callback.
//!
//! Invariants: no allocation per received event (one clock read per socket read, not per event); a subscriber's
//! events are accounted in arrival order. A sequence number below the highest seen so far is a duplicate unless
//! it is one of the 64 below the highest and not yet seen: then it is a late arrival, not a duplicate. With
//! several publisher connections the server may order concurrent publishes differently from the order in which
//! the tool numbered them; that is not loss and must not be reported as duplicates.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::stream::{parse_response_head, ChunkDecoder, EventSink, SseParser};
use crate::target::{BodyTemplate, UrlTemplate};

/// Bytes read per `read` call; shared by every connection of the loop.
const READ_BUF: usize = 256 * 1024;
/// Latency histogram range: 1 ns to 100 s, 3 significant digits.
const HIST_MAX_NS: u64 = 100_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid")
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Everything the engine needs to know about the target.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub sub_url: UrlTemplate,
    pub pub_url: Option<UrlTemplate>,
    pub template: BodyTemplate,
    /// Extra request header lines (`Name: value`) for subscribe requests.
    pub sub_headers: Vec<String>,
    /// Source addresses to spread subscriber sockets over; empty: let the kernel pick.
    pub source_addrs: Vec<IpAddr>,
    /// New connections per second.
    pub ramp: f64,
    /// Connects in flight (not yet subscribed) at most.
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
}

/// Why a subscriber did not get to streaming.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectFailures {
    /// `connect` itself failed (refused, no ports, EMFILE...).
    pub connect_error: u64,
    /// No response head within `--connect-timeout`.
    pub timeout: u64,
    /// A response other than 200.
    pub bad_status: u64,
    /// Closed or reset before the response head.
    pub closed: u64,
    /// A response head that does not parse.
    pub malformed: u64,
}

impl ConnectFailures {
    pub fn total(&self) -> u64 {
        self.connect_error + self.timeout + self.bad_status + self.closed + self.malformed
    }

    pub fn add(&mut self, o: &ConnectFailures) {
        self.connect_error += o.connect_error;
        self.timeout += o.timeout;
        self.bad_status += o.bad_status;
        self.closed += o.closed;
        self.malformed += o.malformed;
    }
}

/// Receipt bookkeeping of one subscriber.
#[derive(Clone, Copy, Debug, Default)]
struct Account {
    /// One above the highest sequence number received.
    next: u64,
    /// Distinct events received (in order).
    unique: u64,
    duplicates: u64,
    /// Sequence numbers skipped over (a later one arrived first); `missing` at the end is computed from `unique`.
    gaps: u64,
    /// Bit i set: sequence number `next - 1 - i` was received (late arrivals within 64 are not duplicates).
    recent: u64,
    /// Fields of the event being parsed.
    seq: Option<u64>,
    ts: Option<u64>,
}

/// Per-subscriber result sent to the parent: channel index, distinct events, duplicates, gaps, still connected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubResult {
    pub channel: u32,
    pub unique: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub connected: bool,
}

/// Counters of the engine, readable at any time.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub subscribed: u64,
    pub failures: ConnectFailures,
    /// Subscribers that were streaming and then lost their connection.
    pub disconnects: u64,
    /// Events with a sequence number received by subscribers (duplicates included).
    pub delivered: u64,
    /// Events whose data had no sequence number (not ours, or an unexpected format).
    pub foreign_events: u64,
    /// Publish requests answered 2xx / otherwise / connection failures.
    pub published_ok: u64,
    pub published_failed: u64,
    pub publish_errors: u64,
    pub first_delivery: Option<Instant>,
    pub last_delivery: Option<Instant>,
}

enum SubPhase {
    Connecting,
    /// Request bytes written so far.
    Requesting(usize),
    Head(Vec<u8>),
    Streaming {
        chunked: Option<ChunkDecoder>,
    },
}

struct Subscriber {
    stream: TcpStream,
    channel: u32,
    started: Instant,
    phase: SubPhase,
    sse: SseParser,
    account: Account,
}

enum PubPhase {
    Connecting,
    Idle,
    /// Request bytes written so far.
    Sending(usize),
    Awaiting,
    Closed,
}

struct Publisher {
    stream: TcpStream,
    phase: PubPhase,
    request: Vec<u8>,
    response: Vec<u8>,
    sent_at: Instant,
    channel: u32,
}

enum Conn {
    Sub(Subscriber),
    Pub(Publisher),
}

/// What to publish and when to stop.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    pub channels: u32,
    /// `None`: closed loop (as fast as responses and the window allow).
    pub rate: Option<f64>,
    pub events: u64,
    pub duration: Duration,
    pub publishers: usize,
    /// Closed loop: events published but not yet delivered to all their subscribers, at most.
    pub window: u64,
    /// After the last publish, wait at most this long for deliveries to complete.
    pub drain: Duration,
    /// Stop when no delivery and no response for this long (a stuck server).
    pub stall: Duration,
}

pub struct Engine {
    cfg: EngineConfig,
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    buf: Vec<u8>,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub connect_time: Histogram<u64>,
    pub publish_rtt: Histogram<u64>,
    /// Subscribers that ended (closed), kept for the final accounting.
    finished: Vec<SubResult>,
    sub_requests: Vec<Vec<u8>>,
    next_source: usize,
    /// Per channel: publish requests answered 2xx.
    pub published_per_channel: Vec<u64>,
    /// Per channel: next sequence number to send.
    next_seq: Vec<u64>,
    body: Vec<u8>,
    rng: u64,
}

impl Engine {
    pub fn new(cfg: EngineConfig, channels: u32) -> io::Result<Engine> {
        Ok(Engine {
            cfg,
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Slab::new(),
            buf: vec![0; READ_BUF],
            counters: Counters::default(),
            latency: new_histogram(),
            connect_time: new_histogram(),
            publish_rtt: new_histogram(),
            finished: Vec::new(),
            sub_requests: Vec::new(),
            next_source: 0,
            published_per_channel: vec![0; channels as usize],
            next_seq: vec![0; channels as usize],
            body: Vec::new(),
            rng: 0x2545_F491_4F6C_DD1D,
        })
    }

    /// The subscribe request for `channel` (built once per channel and cached: many-channels runs reuse them).
    fn sub_request(&mut self, channel: u32) -> Vec<u8> {
        let i = channel as usize;
        if self.sub_requests.len() <= i {
            self.sub_requests.resize(i + 1, Vec::new());
        }
        if self.sub_requests[i].is_empty() {
            let mut req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
                self.cfg.sub_url.path_for(&channel_name(channel)),
                self.cfg.sub_url.host_header
            );
            for h in &self.cfg.sub_headers {
                req.push_str(h);
                req.push_str("\r\n");
            }
            req.push_str("\r\n");
            self.sub_requests[i] = req.into_bytes();
        }
        self.sub_requests[i].clone()
    }

    fn open_socket(&mut self, addr: SocketAddr, spread: bool) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if spread && !self.cfg.source_addrs.is_empty() {
            let src = self.cfg.source_addrs[self.next_source % self.cfg.source_addrs.len()];
            self.next_source += 1;
            socket.bind(&SocketAddr::new(src, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    fn start_subscriber(&mut self, channel: u32) -> bool {
        let mut stream = match self.open_socket(self.cfg.sub_url.addr, true) {
            Ok(s) => s,
            Err(_) => {
                self.counters.failures.connect_error += 1;
                return false;
            }
        };
        let entry = self.conns.vacant_entry();
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.counters.failures.connect_error += 1;
            return false;
        }
        entry.insert(Conn::Sub(Subscriber {
            stream,
            channel,
            started: Instant::now(),
            phase: SubPhase::Connecting,
            sse: SseParser::default(),
            account: Account::default(),
        }));
        true
    }

    /// Opens one subscriber per entry of `plan` at `ramp` per second with at most `connect_concurrency` pending,
    /// until all are streaming or have failed or `deadline` passes. `progress` is called about every 200 ms.
    pub fn connect_subscribers(
        &mut self,
        plan: &[u32],
        deadline: Instant,
        mut progress: impl FnMut(&Counters, usize),
    ) {
        let start = Instant::now();
        let mut next = 0;
        let mut last_progress = Instant::now();
        let base_subscribed = self.counters.subscribed;
        let base_failed = self.counters.failures.total();
        loop {
            let now = Instant::now();
            let done = (self.counters.subscribed - base_subscribed)
                + (self.counters.failures.total() - base_failed);
            let mut pending = (next as u64).saturating_sub(done);
            let allowed = ((now - start).as_secs_f64() * self.cfg.ramp).ceil() as usize + 1;
            while next < plan.len()
                && next < allowed
                && pending < self.cfg.connect_concurrency as u64
            {
                self.start_subscriber(plan[next]);
                next += 1;
                pending += 1;
            }
            let done = (self.counters.subscribed - base_subscribed)
                + (self.counters.failures.total() - base_failed);
            if next == plan.len() && done >= plan.len() as u64 {
                break;
            }
            if now >= deadline {
                break;
            }
            let timeout = if next < plan.len() {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(20)
            };
            self.turn(Some(timeout));
            self.expire_connects();
            if last_progress.elapsed() >= Duration::from_millis(200) {
                progress(&self.counters, next);
                last_progress = Instant::now();
            }
        }
        self.expire_connects();
        progress(&self.counters, next);
    }

    /// Fails subscribers still connecting after `connect_timeout`.
    fn expire_connects(&mut self) {
        let timeout = self.cfg.connect_timeout;
        let mut expired = Vec::new();
        for (key, conn) in self.conns.iter() {
            if let Conn::Sub(s) = conn {
                if !matches!(s.phase, SubPhase::Streaming { .. }) && s.started.elapsed() > timeout {
                    expired.push(key);
                }
            }
        }
        for key in expired {
            self.counters.failures.timeout += 1;
            self.remove(key, false);
        }
    }

    /// Runs the loop for `duration` (subscribers keep receiving; idle holds and drains).
    pub fn hold(&mut self, duration: Duration, mut tick: impl FnMut(&Counters) -> bool) {
        let end = Instant::now() + duration;
        let mut last = Instant::now();
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            self.turn(Some(left.min(Duration::from_millis(20))));
            if last.elapsed() >= Duration::from_millis(20) {
                last = Instant::now();
                if !tick(&self.counters) {
                    break;
                }
            }
        }
    }

    /// Opens `n` publisher connections (not spread over source addresses).
    fn open_publishers(&mut self, n: usize) -> io::Result<()> {
        let url = self
            .cfg
            .pub_url
            .clone()
            .ok_or_else(|| io::Error::other("no --pub-url"))?;
        for _ in 0..n {
            let mut stream = self.open_socket(url.addr, false)?;
            let entry = self.conns.vacant_entry();
            self.poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            entry.insert(Conn::Pub(Publisher {
                stream,
                phase: PubPhase::Connecting,
                request: Vec::new(),
                response: Vec::new(),
                sent_at: Instant::now(),
                channel: 0,
            }));
        }
        Ok(())
    }

    fn pick_channel(&mut self, channels: u32) -> u32 {
        if channels <= 1 {
            return 0;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % u64::from(channels)) as u32
    }

    /// Publishes by `plan`. `subs_per_channel[c]` is how many subscribers (in all processes) receive channel `c`;
    /// `external` returns deliveries counted elsewhere (child processes). Returns when the plan is done and
    /// deliveries are complete, or drain/stall time is up.
    pub fn publish(
        &mut self,
        plan: &PublishPlan,
        subs_per_channel: &[u64],
        external: &dyn Fn() -> u64,
        mut progress: impl FnMut(&Counters, u64, u64),
    ) -> io::Result<PublishOutcome> {
        self.open_publishers(plan.publishers)?;
        let start = Instant::now();
        let mut sent: u64 = 0;
        // Deliveries expected once the first k sent events are delivered everywhere (index k).
        let mut cumulative: VecDeque<u64> = VecDeque::new();
        cumulative.push_back(0);
        let mut cumulative_base: u64 = 0; // index of cumulative[0]
        let mut expected_total: u64 = 0;
        let mut publishing_ended: Option<Instant> = None;
        let mut last_activity = Instant::now();
        let mut last_seen = (0u64, 0u64);
        let mut last_progress = Instant::now();
        let mut end_reason = "complete";
        loop {
            let now = Instant::now();
            let delivered = self.counters.delivered + external();
            let ok_and_failed = self.counters.published_ok
                + self.counters.published_failed
                + self.counters.publish_errors;
            if (delivered, ok_and_failed) != last_seen {
                last_seen = (delivered, ok_and_failed);
                last_activity = now;
            }
            let time_up = now - start >= plan.duration;
            if publishing_ended.is_none() && (sent >= plan.events || time_up) {
                publishing_ended = Some(now);
            }
            if publishing_ended.is_none() {
                let target = match plan.rate {
                    Some(rate) => ((now - start).as_secs_f64() * rate) as u64 + 1,
                    None => u64::MAX,
                };
                while sent < plan.events.min(target) {
                    if plan.rate.is_none() && sent >= plan.window {
                        // Event `sent - window` (0-based) must be delivered everywhere before event `sent` goes.
                        let idx = sent - plan.window + 1;
                        while cumulative_base < idx && cumulative.len() > 1 {
                            cumulative.pop_front();
                            cumulative_base += 1;
                        }
                        if delivered < cumulative.front().copied().unwrap_or(0) {
                            break;
                        }
                    }
                    let channel = self.pick_channel(plan.channels);
                    if !self.send_publish(channel) {
                        break;
                    }
                    sent += 1;
                    expected_total += subs_per_channel.get(channel as usize).copied().unwrap_or(0);
                    cumulative.push_back(expected_total);
                }
            }
            if let Some(ended) = publishing_ended {
                let answered = self.counters.published_ok
                    + self.counters.published_failed
                    + self.counters.publish_errors;
                let expected: u64 = self
                    .published_per_channel
                    .iter()
                    .zip(subs_per_channel)
                    .map(|(p, s)| p * s)
                    .sum();
                if answered >= sent && delivered >= expected {
                    break;
                }
                if now - ended >= plan.drain {
                    end_reason = "drain timeout";
                    break;
                }
            }
            if now - last_activity >= plan.stall {
                end_reason = "stalled";
                break;
            }
            if last_progress.elapsed() >= Duration::from_millis(500) {
                progress(&self.counters, sent, delivered);
                last_progress = Instant::now();
            }
            let timeout = match (publishing_ended, plan.rate) {
                (None, Some(rate)) => Duration::from_secs_f64((1.0 / rate).min(0.02)),
                (None, None) if external_is_remote(subs_per_channel, &self.counters) => {
                    Duration::from_millis(1)
                }
                _ => Duration::from_millis(10),
            };
            self.turn(Some(timeout));
        }
        let elapsed = start.elapsed();
        Ok(PublishOutcome {
            sent,
            publishing_time: publishing_ended.map_or(elapsed, |e| e - start),
            elapsed,
            end_reason,
        })
    }

    /// Queues one publish on an idle publisher; false when none is idle.
    fn send_publish(&mut self, channel: u32) -> bool {
        let Some(url) = self.cfg.pub_url.as_ref() else {
            return false;
        };
        let Some(key) = self
            .conns
            .iter()
            .find(|(_, c)| matches!(c, Conn::Pub(p) if matches!(p.phase, PubPhase::Idle)))
            .map(|(k, _)| k)
        else {
            return false;
        };
        let name = channel_name(channel);
        let seq = self.next_seq[channel as usize];
        self.next_seq[channel as usize] += 1;
        self.body.clear();
        self.cfg
            .template
            .render(&mut self.body, seq, unix_nanos(), &name);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            url.path_for(&name),
            url.host_header,
            self.body.len()
        );
        let Some(Conn::Pub(p)) = self.conns.get_mut(key) else {
            return false;
        };
        p.request.clear();
        p.request.extend_from_slice(head.as_bytes());
        p.request.extend_from_slice(&self.body);
        p.phase = PubPhase::Sending(0);
        p.sent_at = Instant::now();
        p.channel = channel;
        self.write_publisher(key);
        true
    }

    /// One poll and the handling of its events.
    fn turn(&mut self, timeout: Option<Duration>) {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("poll failed: {e}");
            }
            return;
        }
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable(),
                    e.is_writable(),
                    e.is_error() || e.is_read_closed(),
                )
            })
            .collect();
        for (key, readable, writable, trouble) in ready {
            match self.conns.get(key) {
                Some(Conn::Sub(_)) => {
                    self.on_sub_event(key, readable || trouble, writable || trouble)
                }
                Some(Conn::Pub(_)) => {
                    if writable || trouble {
                        self.write_publisher(key);
                    }
                    if readable || trouble {
                        self.read_publisher(key);
                    }
                }
                None => {}
            }
        }
    }

    fn on_sub_event(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(s.phase, SubPhase::Connecting) && writable {
            match connected(&s.stream) {
                Some(true) => s.phase = SubPhase::Requesting(0),
                Some(false) => return,
                None => {
                    self.counters.failures.connect_error += 1;
                    self.remove(key, false);
                    return;
                }
            }
        }
        if let SubPhase::Requesting(done) = s.phase {
            let channel = s.channel;
            let req = self.sub_request(channel);
            let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
                return;
            };
            let mut done = done;
            while done < req.len() {
                match s.stream.write(&req[done..]) {
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.counters.failures.closed += 1;
                        self.remove(key, false);
                        return;
                    }
                }
            }
            s.phase = if done == req.len() {
                SubPhase::Head(Vec::new())
            } else {
                SubPhase::Requesting(done)
            };
        }
        if readable
            || matches!(self.conns.get(key), Some(Conn::Sub(s)) if matches!(s.phase, SubPhase::Head(_)))
        {
            self.read_subscriber(key);
        }
    }

    fn read_subscriber(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(Conn::Sub(s)) = self.conns.get_mut(key) {
            if !matches!(s.phase, SubPhase::Head(_) | SubPhase::Streaming { .. }) {
                break;
            }
            match s.stream.read(&mut buf) {
                Ok(0) => {
                    self.sub_closed(key);
                    break;
                }
                Ok(n) => self.on_sub_bytes(key, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.sub_closed(key);
                    break;
                }
            }
        }
        self.buf = buf;
    }

    fn sub_closed(&mut self, key: usize) {
        let Some(Conn::Sub(s)) = self.conns.get(key) else {
            return;
        };
        if matches!(s.phase, SubPhase::Streaming { .. }) {
            self.counters.disconnects += 1;
            self.remove(key, true);
        } else {
            self.counters.failures.closed += 1;
            self.remove(key, false);
        }
    }

    fn on_sub_bytes(&mut self, key: usize, bytes: &[u8]) {
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        let mut body = bytes;
        let owned_rest: Vec<u8>;
        if let SubPhase::Head(head) = &mut s.phase {
            head.extend_from_slice(bytes);
            match parse_response_head(head) {
                Ok(None) => return,
                Ok(Some(h)) if h.status == 200 => {
                    owned_rest = head[h.len..].to_vec();
                    let micros = s.started.elapsed().as_nanos() as u64;
                    self.connect_time.saturating_record(micros.max(1));
                    self.counters.subscribed += 1;
                    s.phase = SubPhase::Streaming {
                        chunked: h.chunked.then(ChunkDecoder::default),
                    };
                    body = &owned_rest;
                }
                Ok(Some(_)) => {
                    self.counters.failures.bad_status += 1;
                    self.remove(key, false);
                    return;
                }
                Err(_) => {
                    self.counters.failures.malformed += 1;
                    self.remove(key, false);
                    return;
                }
            }
        }
        if body.is_empty() {
            return;
        }
        let SubPhase::Streaming { chunked } = &mut s.phase else {
            return;
        };
        let mut sink = Receipt {
            template: &self.cfg.template,
            account: &mut s.account,
            latency: &mut self.latency,
            now_ns: unix_nanos(),
            delivered: 0,
            foreign: 0,
        };
        let sse = &mut s.sse;
        let ok = match chunked {
            Some(decoder) => decoder.feed(body, |data| sse.feed(data, &mut sink)).is_ok(),
            None => {
                sse.feed(body, &mut sink);
                true
            }
        };
        let (delivered, foreign) = (sink.delivered, sink.foreign);
        self.counters.delivered += delivered;
        self.counters.foreign_events += foreign;
        if delivered > 0 {
            let now = Instant::now();
            self.counters.first_delivery.get_or_insert(now);
            self.counters.last_delivery = Some(now);
        }
        if !ok {
            self.counters.disconnects += 1;
            self.remove(key, true);
        }
    }

    fn write_publisher(&mut self, key: usize) {
        let Some(Conn::Pub(p)) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(p.phase, PubPhase::Connecting) {
            match connected(&p.stream) {
                Some(true) => p.phase = PubPhase::Idle,
                Some(false) => return,
                None => {
                    self.counters.publish_errors += 1;
                    p.phase = PubPhase::Closed;
                    return;
                }
            }
        }
        let PubPhase::Sending(mut done) = p.phase else {
            return;
        };
        while done < p.request.len() {
            match p.stream.write(&p.request[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.publisher_failed(key);
                    return;
                }
            }
        }
        p.phase = if done == p.request.len() {
            p.response.clear();
            PubPhase::Awaiting
        } else {
            PubPhase::Sending(done)
        };
    }

    fn read_publisher(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(Conn::Pub(p)) = self.conns.get_mut(key) {
            if matches!(p.phase, PubPhase::Connecting | PubPhase::Closed) {
                break;
            }
            match p.stream.read(&mut buf) {
                Ok(0) => {
                    self.publisher_failed(key);
                    break;
                }
                Ok(n) => {
                    if !matches!(p.phase, PubPhase::Awaiting) {
                        continue;
                    }
                    p.response.extend_from_slice(&buf[..n]);
                    match parse_response_head(&p.response) {
                        Ok(None) => {}
                        Ok(Some(h)) => {
                            let body = p.response.len() - h.len;
                            let complete = match (h.chunked, h.content_length) {
                                (true, _) => p.response.ends_with(b"0\r\n\r\n"),
                                (false, Some(len)) => body >= len,
                                (false, None) => true,
                            };
                            if complete {
                                let rtt = p.sent_at.elapsed().as_nanos() as u64;
                                self.publish_rtt.saturating_record(rtt.max(1));
                                if (200..300).contains(&h.status) {
                                    self.counters.published_ok += 1;
                                    if let Some(n) =
                                        self.published_per_channel.get_mut(p.channel as usize)
                                    {
                                        *n += 1;
                                    }
                                } else {
                                    self.counters.published_failed += 1;
                                }
                                p.phase = PubPhase::Idle;
                            }
                        }
                        Err(_) => {
                            self.publisher_failed(key);
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.publisher_failed(key);
                    break;
                }
            }
        }
        self.buf = buf;
    }

    /// A publisher connection broke: count the request in flight as an error and open a replacement.
    fn publisher_failed(&mut self, key: usize) {
        if let Some(Conn::Pub(p)) = self.conns.get_mut(key) {
            if matches!(p.phase, PubPhase::Sending(_) | PubPhase::Awaiting) {
                self.counters.publish_errors += 1;
            }
            p.phase = PubPhase::Closed;
        }
        if let Some(Conn::Pub(mut p)) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut p.stream);
        }
        if self.open_publishers(1).is_err() {
            self.counters.publish_errors += 1;
        }
    }

    fn remove(&mut self, key: usize, was_streaming: bool) {
        if let Some(conn) = self.conns.try_remove(key) {
            match conn {
                Conn::Sub(mut s) => {
                    let _ = self.poll.registry().deregister(&mut s.stream);
                    if was_streaming {
                        self.finished.push(s.result(false));
                    }
                }
                Conn::Pub(mut p) => {
                    let _ = self.poll.registry().deregister(&mut p.stream);
                }
            }
        }
    }

    /// Per-subscriber results: every subscriber that streamed, still connected or not.
    pub fn sub_results(&self) -> Vec<SubResult> {
        let mut out = self.finished.clone();
        out.extend(self.conns.iter().filter_map(|(_, c)| match c {
            Conn::Sub(s) if matches!(s.phase, SubPhase::Streaming { .. }) => Some(s.result(true)),
            _ => None,
        }));
        out
    }

    /// Closes every connection (end of run).
    pub fn close_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(Conn::Sub(s)) = self.conns.get(key) {
                if matches!(s.phase, SubPhase::Streaming { .. }) {
                    let r = s.result(true);
                    self.finished.push(r);
                }
            }
            self.remove(key, false);
        }
    }
}

/// In multi-process runs the parent has no subscribers of its own, and child progress arrives every ~20 ms, so
/// the closed loop polls more often to notice it.
fn external_is_remote(subs_per_channel: &[u64], counters: &Counters) -> bool {
    counters.subscribed == 0 && subs_per_channel.iter().any(|&n| n > 0)
}

#[derive(Clone, Debug)]
pub struct PublishOutcome {
    pub sent: u64,
    pub publishing_time: Duration,
    pub elapsed: Duration,
    pub end_reason: &'static str,
}

impl Subscriber {
    fn result(&self, connected: bool) -> SubResult {
        SubResult {
            channel: self.channel,
            unique: self.account.unique,
            duplicates: self.account.duplicates,
            gaps: self.account.gaps,
            connected,
        }
    }
}

/// `Some(true)` once a non-blocking connect has completed, `Some(false)` while pending, `None` when it failed.
fn connected(stream: &TcpStream) -> Option<bool> {
    match stream.take_error() {
        Ok(Some(_)) | Err(_) => return None,
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Some(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Some(false),
        Err(_) => None,
    }
}

/// The name of channel `i` in URLs and bodies.
pub fn channel_name(i: u32) -> String {
    format!("c{i}")
}

/// The IPv4 source addresses `127.0.0.2 ..= 127.0.0.(n+1)`.
pub fn source_addresses(n: u8) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
        .collect()
}

/// The SSE sink of one subscriber's read: accounting and latency.
struct Receipt<'a> {
    template: &'a BodyTemplate,
    account: &'a mut Account,
    latency: &'a mut Histogram<u64>,
    now_ns: u64,
    delivered: u64,
    foreign: u64,
}

impl EventSink for Receipt<'_> {
    fn data_line(&mut self, value: &[u8]) {
        let (seq, ts) = self.template.extract(value);
        if seq.is_some() {
            self.account.seq = seq;
        }
        if ts.is_some() {
            self.account.ts = ts;
        }
    }

    fn dispatch(&mut self, had_data: bool) {
        let (seq, ts) = (self.account.seq.take(), self.account.ts.take());
        if !had_data {
            return;
        }
        let Some(seq) = seq else {
            self.foreign += 1;
            return;
        };
        self.delivered += 1;
        let a = &mut *self.account;
        if seq < a.next {
            let behind = a.next - 1 - seq;
            if behind < 64 && a.recent & (1 << behind) == 0 {
                // Reordered by concurrent publishers: it fills a gap counted when a later one came first.
                a.recent |= 1 << behind;
                a.gaps = a.gaps.saturating_sub(1);
                a.unique += 1;
            } else {
                a.duplicates += 1;
            }
        } else {
            let shift = seq + 1 - a.next;
            a.recent = if shift >= 64 { 0 } else { a.recent << shift };
            a.recent |= 1;
            a.gaps += seq - a.next;
            a.next = seq + 1;
            a.unique += 1;
        }
        if let Some(ts) = ts {
            self.latency
                .saturating_record(self.now_ns.saturating_sub(ts).max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> BodyTemplate {
        BodyTemplate::parse(BodyTemplate::DEFAULT, 100, None, None).unwrap()
    }

    #[test]
    fn accounting_counts_gaps_and_duplicates() {
        let t = template();
        let mut account = Account::default();
        let mut latency = new_histogram();
        let mut sink = Receipt {
            template: &t,
            account: &mut account,
            latency: &mut latency,
            now_ns: 1_000_000,
            delivered: 0,
            foreign: 0,
        };
        let mut parser = SseParser::default();
        let mut stream = Vec::new();
        for seq in [0u64, 1, 1, 3, 2, 4, 2, 100, 5] {
            stream
                .extend_from_slice(format!("id: {seq}\ndata: seq={seq} ts=999000\n\n").as_bytes());
        }
        stream.extend_from_slice(b"data: not ours\n\n: heartbeat\n\n");
        parser.feed(&stream, &mut sink);
        assert_eq!((sink.delivered, sink.foreign), (9, 1));
        assert_eq!(account.unique, 6); // 0 1 3 2 4 100: 2 arrived late (reordered publishers), not a duplicate
        assert_eq!(account.duplicates, 3); // the second 1, the second 2, and 5 (more than 64 below 100)
        assert_eq!(account.gaps, 95); // 5..=99 skipped when 100 arrived
        assert_eq!(latency.len(), 9);
        assert_eq!(latency.max(), latency.highest_equivalent(1000));
    }

    #[test]
    fn source_addresses_start_at_two() {
        assert_eq!(
            source_addresses(2),
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
            ]
        );
    }
}

//! The client event loop: subscribers and publishers as non-blocking sockets in one `mio::Poll` (edge-triggered,
//! read and write until `WouldBlock`), kept in a `Slab` whose key is the token.
//!
//! What this file owns: connecting subscribers (bind to a source address, then connect, ramped and with a cap on
//! connects in flight), the subscribe request (SSE, or a WebSocket handshake with a random key) and its response
//! head, handing streamed bytes to the subscriber's `Wire` (`receive.rs`), and the three roles a subscriber can
//! play:
//! - `Measure` reads and accounts every event (fanout, many-channels, idle, connect-storm, and the fast
//!   subscribers of `slow`);
//! - `Slow` reads its response head and then nothing, so its receive buffer and the server's queue for it fill;
//!   at the end `probe_slow` reads what is left to learn whether the server closed it;
//! - `Resume` keeps an exact `Ledger`, drops its connection at planned moments and reconnects with
//!   `Last-Event-ID` (and after any loss the server causes), with a bounded number of reconnects.
//!
//! Publishing (keep-alive publisher connections) is in `publish.rs`, which extends `Engine`.
//!
//! What it must not do: decide a scenario. The scenarios call `connect_subscribers`, `publish`, `hold`,
//! `start_drops`, `probe_slow` and read the counters; this file never prints except through the progress
//! callback, and never removes a connection while `turn` still walks the events of the same poll (drops and
//! reconnect retries run after the events, in `maintain`).
//!
//! Invariants: no allocation per received event (one clock read per socket read, not per event); a subscriber's
//! events are accounted in arrival order; a subscriber is accounted in exactly one book for the whole run (a
//! resuming client's `Ledger` moves with it from connection to connection).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::ledger::{Ledger, SeqSet, Tally};
use crate::publish::Publisher;
use crate::receive::{next_random, Account, Book, Receipt, Wire};
use crate::stream::parse_response_head;
use crate::target::{BodyTemplate, UrlTemplate};
use crate::ws;

/// Bytes read per `read` call; shared by every connection of the loop.
const READ_BUF: usize = 256 * 1024;
/// Latency histogram range: 1 ns to 100 s, 3 significant digits.
const HIST_MAX_NS: u64 = 100_000_000_000;
/// How often drops, reconnect retries and reconnect timeouts are looked at while clients resume.
const MAINTAIN_EVERY: Duration = Duration::from_millis(10);
/// A reconnect that could not start (no socket, refused, timed out) is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_millis(100);

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid")
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How subscribers receive: an SSE stream, or a WebSocket (RFC 6455) with one JSON text message per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Sse,
    Ws,
}

/// Everything the engine needs to know about the target.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub sub_url: UrlTemplate,
    pub pub_url: Option<UrlTemplate>,
    pub template: BodyTemplate,
    pub transport: Transport,
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

/// What the subscribers of one `connect_subscribers` call do once subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and account every event.
    Measure,
    /// Read the response head, then nothing. `rcvbuf`: the socket's receive buffer in bytes (0: the kernel's
    /// default and autotuning), so that the backlog reaches the server's queue soon.
    Slow { rcvbuf: usize },
    /// Keep an exact ledger of sequence numbers below `limit`; drop (see `DropPlan`) and reconnect with
    /// `Last-Event-ID`, at most `max_reconnects` times (planned drops, losses and failed attempts together).
    Resume { limit: u64, max_reconnects: u32 },
}

/// Why a subscriber did not get to streaming.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectFailures {
    /// `connect` itself failed (refused, no ports, EMFILE...).
    pub connect_error: u64,
    /// No response head within `--connect-timeout`.
    pub timeout: u64,
    /// A response other than 200 (SSE) or 101 (WebSocket).
    pub bad_status: u64,
    /// Closed or reset before the response head.
    pub closed: u64,
    /// A response head that does not parse, or a 101 without the right `Sec-WebSocket-Accept`.
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

/// Subscribers that neither subscribed nor failed because the connect phase ended (its deadline passed) first.
/// Without them a slow connect phase (SYNs dropped and retransmitted, a server that accepts slowly) would look like
/// a smaller run with no failures: subscribed + failed + not connected is always the number asked for.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotConnected {
    /// Never started: the ramp or the cap on connects in flight held them back until the deadline.
    pub never_started: u64,
    /// Started but without a response head at the deadline; their sockets are closed then.
    pub still_connecting: u64,
}

impl NotConnected {
    pub fn total(&self) -> u64 {
        self.never_started + self.still_connecting
    }

    pub fn add(&mut self, o: &NotConnected) {
        self.never_started += o.never_started;
        self.still_connecting += o.still_connecting;
    }
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    ConnectError,
    Timeout,
    BadStatus,
    Closed,
    Malformed,
}

/// Per-subscriber result of a `Measure` subscriber: channel, distinct events, duplicates, gaps, still connected.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubResult {
    pub channel: u32,
    pub unique: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub connected: bool,
}

/// What happened to the `Slow` subscribers.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlowCounts {
    /// Closed or reset by the server while they read nothing (seen without reading: a reset, or a FIN that
    /// reached the socket).
    pub closed_while_stalled: u64,
    /// Found closed by `probe_slow`: reading what was left ended in end-of-stream or a reset.
    pub closed_in_probe: u64,
    /// Still open when `probe_slow` ended: the server kept them.
    pub open_at_end: u64,
    /// Bytes `probe_slow` read (the backlog the kernel and the server still held for them).
    pub probe_bytes: u64,
}

impl SlowCounts {
    pub fn add(&mut self, o: &SlowCounts) {
        self.closed_while_stalled += o.closed_while_stalled;
        self.closed_in_probe += o.closed_in_probe;
        self.open_at_end += o.open_at_end;
        self.probe_bytes += o.probe_bytes;
    }
}

/// Connection events of resuming clients, over all of them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeCounts {
    /// Connections the tool dropped on purpose.
    pub drops: u64,
    /// Connections the server closed (or that broke) while streaming.
    pub lost: u64,
    /// Reconnects that got their response head.
    pub reconnected: u64,
    /// Reconnect attempts that failed (and were tried again).
    pub failed_reconnects: u64,
    /// Clients that used up their reconnects and stayed disconnected.
    pub gave_up: u64,
}

impl ResumeCounts {
    pub fn add(&mut self, o: &ResumeCounts) {
        self.drops += o.drops;
        self.lost += o.lost;
        self.reconnected += o.reconnected;
        self.failed_reconnects += o.failed_reconnects;
        self.gave_up += o.gave_up;
    }
}

/// One resuming client at the end: how it compares with what was published on its channel.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientResult {
    pub channel: u32,
    #[serde(flatten)]
    pub tally: Tally,
    pub drops: u32,
    pub reconnects: u32,
    pub gave_up: bool,
    /// Streaming when the run ended (not between a drop and its reconnect).
    pub connected_at_end: bool,
}

/// When resuming clients drop their connections.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DropPlan {
    /// Drops per client, at moments drawn uniformly over `within`.
    pub drops: u32,
    #[serde(with = "millis")]
    pub within: Duration,
    /// A client waits this long before it reconnects, so that it misses events the server must replay.
    #[serde(with = "millis")]
    pub reconnect_delay: Duration,
    pub seed: u64,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

/// Counters of the engine, readable at any time.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// First subscribes that got their response head (reconnects are in `resume`).
    pub subscribed: u64,
    pub failures: ConnectFailures,
    /// First subscribes cut off by the end of their connect phase.
    pub not_connected: NotConnected,
    /// `Measure` subscribers that were streaming and then lost their connection.
    pub disconnects: u64,
    /// Events with a sequence number received by subscribers (duplicates included).
    pub delivered: u64,
    /// Events received for the first time by their subscriber: what the publisher's drain waits for.
    pub distinct: u64,
    /// Events whose data had no sequence number (not ours, or an unexpected format).
    pub foreign_events: u64,
    /// Publish requests answered 2xx / otherwise / connection failures.
    pub published_ok: u64,
    pub published_failed: u64,
    pub publish_errors: u64,
    pub first_delivery: Option<Instant>,
    pub last_delivery: Option<Instant>,
    pub slow: SlowCounts,
    pub resume: ResumeCounts,
}

impl Counters {
    fn fail(&mut self, cause: Failure) {
        let f = &mut self.failures;
        match cause {
            Failure::ConnectError => f.connect_error += 1,
            Failure::Timeout => f.timeout += 1,
            Failure::BadStatus => f.bad_status += 1,
            Failure::Closed => f.closed += 1,
            Failure::Malformed => f.malformed += 1,
        }
    }
}

enum SubPhase {
    Connecting,
    /// The request (built for this connection: it may carry a WebSocket key or a `Last-Event-ID`), bytes written.
    Requesting {
        request: Vec<u8>,
        written: usize,
        key: Option<ws::Key>,
    },
    Head {
        buf: Vec<u8>,
        key: Option<ws::Key>,
    },
    Streaming(Wire),
    /// `Slow`: subscribed, reads nothing more.
    Stalled,
    /// `Slow`, in `probe_slow`: reading and discarding, to see whether the stream ends.
    Probing {
        last_bytes: Instant,
    },
}

impl SubPhase {
    fn subscribed(&self) -> bool {
        matches!(
            self,
            SubPhase::Streaming(_) | SubPhase::Stalled | SubPhase::Probing { .. }
        )
    }
}

/// A resuming client: its ledger and its connection history, which outlive each connection.
pub(crate) struct Resumer {
    ledger: Ledger,
    /// Planned drop moments still ahead, latest first.
    drops_ahead: Vec<Instant>,
    drops: u32,
    reconnects: u32,
    max_reconnects: u32,
    /// When the first attempt of the current reconnect started (after the reconnect delay): the reconnect time
    /// runs from here, failed attempts included.
    reconnect_from: Option<Instant>,
    /// Subscribed at least once: a failure after that is a failed reconnect, not a failed subscribe.
    streamed: bool,
}

impl Resumer {
    fn result(
        &self,
        channel: u32,
        acked: &[SeqSet],
        gave_up: bool,
        connected: bool,
    ) -> ClientResult {
        let empty = SeqSet::default();
        ClientResult {
            channel,
            tally: self
                .ledger
                .tally(acked.get(channel as usize).unwrap_or(&empty)),
            drops: self.drops,
            reconnects: self.reconnects,
            gave_up,
            connected_at_end: connected,
        }
    }
}

/// What a subscriber accounts its events in.
enum SubBook {
    Measure(Account),
    Slow,
    Resume(Box<Resumer>),
}

pub(crate) struct Subscriber {
    stream: TcpStream,
    channel: u32,
    started: Instant,
    phase: SubPhase,
    book: SubBook,
}

impl Subscriber {
    fn result(&self, account: &Account, connected: bool) -> SubResult {
        SubResult {
            channel: self.channel,
            unique: account.unique,
            duplicates: account.duplicates,
            gaps: account.gaps,
            connected,
        }
    }
}

pub(crate) enum Conn {
    Sub(Subscriber),
    Pub(Publisher),
}

pub struct Engine {
    pub(crate) cfg: EngineConfig,
    poll: Poll,
    events: Events,
    pub(crate) conns: Slab<Conn>,
    pub(crate) buf: Vec<u8>,
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub connect_time: Histogram<u64>,
    /// From losing a connection to the response head of the next one (resuming clients).
    pub reconnect_time: Histogram<u64>,
    pub publish_rtt: Histogram<u64>,
    /// `Measure` subscribers that ended (closed), kept for the final accounting.
    finished: Vec<SubResult>,
    /// Resuming clients without a connection: waiting to retry (`Some(when)`) or given up (`None`).
    parked: Vec<(Option<Instant>, u32, Box<Resumer>)>,
    /// Per channel: the start of the subscribe request (all but the per-connection lines and the final CRLF).
    sub_heads: Vec<Vec<u8>>,
    next_source: usize,
    /// Per channel: publish requests answered 2xx.
    pub published_per_channel: Vec<u64>,
    /// Per channel: the sequence numbers of those publishes.
    pub acked: Vec<SeqSet>,
    /// Per channel: next sequence number to send.
    pub(crate) next_seq: Vec<u64>,
    /// Per channel: a publish is in flight (for ordered publishing).
    pub(crate) in_flight: Vec<bool>,
    pub(crate) body: Vec<u8>,
    pub(crate) rng: u64,
    /// Unescaped WebSocket data (rare: only data with JSON escapes).
    scratch: Vec<u8>,
    /// Resuming clients exist: `maintain` runs their drops and retries.
    resuming: bool,
    /// Receive buffer of `Slow` subscribers' sockets (0: the kernel's default).
    slow_rcvbuf: usize,
    /// How long a resuming client waits before it reconnects (`DropPlan::reconnect_delay`).
    reconnect_delay: Duration,
    last_maintain: Instant,
}

impl Engine {
    pub fn new(cfg: EngineConfig, channels: u32) -> io::Result<Engine> {
        // The seed only needs to differ between processes and runs (WebSocket keys and masks, drop moments).
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Engine {
            cfg,
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Slab::new(),
            buf: vec![0; READ_BUF],
            counters: Counters::default(),
            latency: new_histogram(),
            connect_time: new_histogram(),
            reconnect_time: new_histogram(),
            publish_rtt: new_histogram(),
            finished: Vec::new(),
            parked: Vec::new(),
            sub_heads: Vec::new(),
            next_source: 0,
            published_per_channel: vec![0; channels as usize],
            acked: vec![SeqSet::default(); channels as usize],
            next_seq: vec![0; channels as usize],
            in_flight: vec![false; channels as usize],
            body: Vec::new(),
            rng: u64::from_le_bytes(seed) | 1,
            scratch: Vec::new(),
            resuming: false,
            slow_rcvbuf: 0,
            reconnect_delay: Duration::ZERO,
            last_maintain: Instant::now(),
        })
    }

    /// The subscribe request for `channel` on this connection. The per-channel start is built once and cached
    /// (many-channels runs reuse it); a WebSocket key and a `Last-Event-ID` are added per connection.
    fn sub_request(
        &mut self,
        channel: u32,
        key: Option<&ws::Key>,
        last_id: Option<&[u8]>,
    ) -> Vec<u8> {
        let i = channel as usize;
        if self.sub_heads.len() <= i {
            self.sub_heads.resize(i + 1, Vec::new());
        }
        if self.sub_heads[i].is_empty() {
            let transport = match self.cfg.transport {
                Transport::Sse => "Accept: text/event-stream\r\nCache-Control: no-cache\r\n",
                Transport::Ws => {
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                }
            };
            let mut head = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\n{transport}",
                self.cfg.sub_url.path_for(&channel_name(channel)),
                self.cfg.sub_url.host_header
            );
            for h in &self.cfg.sub_headers {
                head.push_str(h);
                head.push_str("\r\n");
            }
            self.sub_heads[i] = head.into_bytes();
        }
        let mut req = self.sub_heads[i].clone();
        if let Some(key) = key {
            req.extend_from_slice(b"Sec-WebSocket-Key: ");
            req.extend_from_slice(key);
            req.extend_from_slice(b"\r\n");
        }
        if let Some(id) = last_id {
            req.extend_from_slice(b"Last-Event-ID: ");
            req.extend_from_slice(id);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req
    }

    pub(crate) fn open_socket(
        &mut self,
        addr: SocketAddr,
        spread: bool,
        rcvbuf: usize,
    ) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if rcvbuf > 0 {
            // Before connect, so that the window the kernel announces is small from the start.
            socket.set_recv_buffer_size(rcvbuf)?;
        }
        if spread && !self.cfg.source_addrs.is_empty() {
            let src = self.cfg.source_addrs[self.next_source % self.cfg.source_addrs.len()];
            self.next_source += 1;
            bind_address_no_port(&socket)?;
            socket.bind(&SocketAddr::new(src, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    pub(crate) fn register(&mut self, stream: &mut TcpStream, key: usize) -> io::Result<()> {
        self.poll
            .registry()
            .register(stream, Token(key), Interest::READABLE | Interest::WRITABLE)
    }

    pub(crate) fn deregister(&mut self, stream: &mut TcpStream) {
        let _ = self.poll.registry().deregister(stream);
    }

    /// Starts connecting a subscriber that will account in `book`; gives the book back when no socket could be
    /// opened.
    fn start_subscriber(&mut self, channel: u32, book: SubBook) -> Result<(), SubBook> {
        let rcvbuf = match book {
            SubBook::Slow => self.slow_rcvbuf,
            _ => 0,
        };
        let Ok(mut stream) = self.open_socket(self.cfg.sub_url.addr, true, rcvbuf) else {
            return Err(book);
        };
        let key = self.conns.vacant_key();
        if self.register(&mut stream, key).is_err() {
            return Err(book);
        }
        self.conns.insert(Conn::Sub(Subscriber {
            stream,
            channel,
            started: Instant::now(),
            phase: SubPhase::Connecting,
            book,
        }));
        Ok(())
    }

    /// Opens one subscriber per entry of `plan` (its channel) playing `role`, at `ramp` per second with at most
    /// `connect_concurrency` pending, until all are subscribed or have failed or `deadline` passes. What the
    /// deadline cuts off is counted in `not_connected` (and the pending connections are closed), so that every
    /// entry of `plan` ends subscribed, failed or not connected. `progress` is called about every 200 ms.
    pub fn connect_subscribers(
        &mut self,
        plan: &[u32],
        role: Role,
        deadline: Instant,
        mut progress: impl FnMut(&Counters, usize),
    ) {
        if let Role::Slow { rcvbuf } = role {
            self.slow_rcvbuf = rcvbuf;
        }
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
                let book = match role {
                    Role::Measure => SubBook::Measure(Account::default()),
                    Role::Slow { .. } => SubBook::Slow,
                    Role::Resume {
                        limit,
                        max_reconnects,
                    } => SubBook::Resume(Box::new(Resumer {
                        ledger: Ledger::new(limit),
                        drops_ahead: Vec::new(),
                        drops: 0,
                        reconnects: 0,
                        max_reconnects,
                        reconnect_from: None,
                        streamed: false,
                    })),
                };
                if self.start_subscriber(plan[next], book).is_err() {
                    self.counters.fail(Failure::ConnectError);
                }
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
        self.abandon_pending();
        self.counters.not_connected.never_started += (plan.len() - next) as u64;
        self.resuming |= matches!(role, Role::Resume { .. });
        progress(&self.counters, next);
    }

    /// Closes the first subscribes still in progress at the end of a connect phase and counts them as not
    /// connected (a resuming client's reconnect is not one: it goes on).
    fn abandon_pending(&mut self) {
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(key, conn)| match conn {
                Conn::Sub(s) if !s.phase.subscribed() => match &s.book {
                    SubBook::Resume(r) if r.streamed => None,
                    _ => Some(key),
                },
                _ => None,
            })
            .collect();
        for key in pending {
            self.counters.not_connected.still_connecting += 1;
            self.remove(key);
        }
    }

    /// Subscribers per channel that are subscribed now (`Measure` and `Resume`: the ones that receive).
    pub fn receivers_per_channel(&self, channels: u32) -> Vec<u64> {
        let mut per = vec![0u64; channels as usize];
        for (_, conn) in self.conns.iter() {
            if let Conn::Sub(s) = conn {
                if s.phase.subscribed() && !matches!(s.book, SubBook::Slow) {
                    if let Some(n) = per.get_mut(s.channel as usize) {
                        *n += 1;
                    }
                }
            }
        }
        per
    }

    /// Fails subscribers still connecting after `connect_timeout`.
    fn expire_connects(&mut self) {
        let timeout = self.cfg.connect_timeout;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(key, conn)| match conn {
                Conn::Sub(s) if !s.phase.subscribed() && s.started.elapsed() > timeout => Some(key),
                _ => None,
            })
            .collect();
        for key in expired {
            self.connect_failed(key, Failure::Timeout);
        }
    }

    /// Runs the loop for `duration` (subscribers keep receiving; idle holds and drains). `tick` is called about
    /// every 20 ms; returning false ends the hold.
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

    /// The latency recorded since the last call (or the start), and a fresh histogram for what follows.
    pub fn take_latency(&mut self) -> Histogram<u64> {
        std::mem::replace(&mut self.latency, new_histogram())
    }

    /// Gives every resuming client `plan.drops` drop moments, drawn uniformly over the next `plan.within`.
    pub fn start_drops(&mut self, plan: &DropPlan) {
        let now = Instant::now();
        self.reconnect_delay = plan.reconnect_delay;
        let mut rng = plan.seed | 1;
        let within = plan.within.as_secs_f64();
        for (_, conn) in self.conns.iter_mut() {
            let Conn::Sub(Subscriber {
                book: SubBook::Resume(r),
                ..
            }) = conn
            else {
                continue;
            };
            r.drops_ahead = (0..plan.drops)
                .map(|_| {
                    let unit = (next_random(&mut rng) >> 11) as f64 / (1u64 << 53) as f64;
                    now + Duration::from_secs_f64(unit * within)
                })
                .collect();
            r.drops_ahead.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    /// Reads the `Slow` subscribers until each ends (the server closed it) or has had nothing new for `quiet`,
    /// for at most `max`. What is still open then is counted in `open_at_end`.
    pub fn probe_slow(&mut self, max: Duration, quiet: Duration) {
        let now = Instant::now();
        let stalled: Vec<usize> = self
            .conns
            .iter_mut()
            .filter_map(|(key, conn)| match conn {
                Conn::Sub(s) if matches!(s.phase, SubPhase::Stalled) => {
                    s.phase = SubPhase::Probing { last_bytes: now };
                    Some(key)
                }
                _ => None,
            })
            .collect();
        // Edge-triggered: what arrived while they stalled produces no new event, so read once by hand.
        for key in stalled {
            self.read_subscriber(key);
        }
        let end = now + max;
        loop {
            let now = Instant::now();
            let busy = self.conns.iter().any(|(_, c)| {
                matches!(c, Conn::Sub(Subscriber { phase: SubPhase::Probing { last_bytes }, .. })
                    if now.duration_since(*last_bytes) < quiet)
            });
            if !busy || now >= end {
                break;
            }
            self.turn(Some(Duration::from_millis(10)));
        }
        let open = self
            .conns
            .iter()
            .filter(
                |(_, c)| matches!(c, Conn::Sub(s) if matches!(s.phase, SubPhase::Probing { .. })),
            )
            .count();
        self.counters.slow.open_at_end += open as u64;
    }

    /// One poll and the handling of its events, then (when clients resume) their drops and retries.
    pub(crate) fn turn(&mut self, timeout: Option<Duration>) {
        let timeout = if self.resuming {
            timeout.map(|t| t.min(MAINTAIN_EVERY))
        } else {
            timeout
        };
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
                Some(Conn::Sub(_)) => self.on_sub_event(key, readable, writable, trouble),
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
        if self.resuming && self.last_maintain.elapsed() >= MAINTAIN_EVERY {
            self.last_maintain = Instant::now();
            self.maintain();
        }
    }

    fn on_sub_event(&mut self, key: usize, readable: bool, writable: bool, trouble: bool) {
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        match &mut s.phase {
            SubPhase::Stalled => {
                // It reads nothing; only an error or the server's FIN tells that the server closed it.
                if trouble {
                    self.counters.slow.closed_while_stalled += 1;
                    self.remove(key);
                }
                return;
            }
            SubPhase::Connecting if writable || trouble => match connected(&s.stream) {
                Some(true) => {
                    let (channel, transport) = (s.channel, self.cfg.transport);
                    let last_id = match &s.book {
                        SubBook::Resume(r) => r.ledger.last_id().map(<[u8]>::to_vec),
                        _ => None,
                    };
                    let key_bytes = (transport == Transport::Ws).then(|| {
                        let mut random = [0u8; 16];
                        random[..8].copy_from_slice(&next_random(&mut self.rng).to_le_bytes());
                        random[8..].copy_from_slice(&next_random(&mut self.rng).to_le_bytes());
                        ws::key_from(random)
                    });
                    let request = self.sub_request(channel, key_bytes.as_ref(), last_id.as_deref());
                    if let Some(Conn::Sub(s)) = self.conns.get_mut(key) {
                        s.phase = SubPhase::Requesting {
                            request,
                            written: 0,
                            key: key_bytes,
                        };
                    }
                }
                Some(false) => return,
                None => {
                    self.connect_failed(key, Failure::ConnectError);
                    return;
                }
            },
            _ => {}
        }
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        match &mut s.phase {
            SubPhase::Requesting {
                request,
                written,
                key: ws_key,
            } => {
                while *written < request.len() {
                    match s.stream.write(&request[*written..]) {
                        Ok(n) => *written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.connect_failed(key, Failure::Closed);
                            return;
                        }
                    }
                }
                s.phase = SubPhase::Head {
                    buf: Vec::new(),
                    key: *ws_key,
                };
                // The answer may already be there, and edge-triggered polling would not say so again.
                self.read_subscriber(key);
            }
            SubPhase::Streaming(Wire::Ws(w)) if writable && !w.outbox.is_empty() => {
                self.flush_outbox(key);
                if readable || trouble {
                    self.read_subscriber(key);
                }
            }
            SubPhase::Head { .. } | SubPhase::Streaming(_) | SubPhase::Probing { .. }
                if readable || trouble =>
            {
                self.read_subscriber(key)
            }
            _ => {}
        }
    }

    fn read_subscriber(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(Conn::Sub(s)) = self.conns.get_mut(key) {
            if !matches!(
                s.phase,
                SubPhase::Head { .. } | SubPhase::Streaming(_) | SubPhase::Probing { .. }
            ) {
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

    /// The connection ended (end of stream, reset, or a stream that cannot be read on).
    fn sub_closed(&mut self, key: usize) {
        let Some(Conn::Sub(s)) = self.conns.get(key) else {
            return;
        };
        match (&s.phase, &s.book) {
            (SubPhase::Probing { .. }, _) => {
                self.counters.slow.closed_in_probe += 1;
                self.remove(key);
            }
            (SubPhase::Stalled, _) => {
                self.counters.slow.closed_while_stalled += 1;
                self.remove(key);
            }
            (SubPhase::Streaming(_), SubBook::Resume(_)) => {
                self.counters.resume.lost += 1;
                self.lose_resumer(key);
            }
            (SubPhase::Streaming(_), _) => {
                self.counters.disconnects += 1;
                self.remove(key);
            }
            _ => self.connect_failed(key, Failure::Closed),
        }
    }

    /// A subscriber did not get to streaming. A resuming client that streamed before tries again later; any
    /// other counts as a failed subscribe.
    fn connect_failed(&mut self, key: usize, cause: Failure) {
        let Some(Conn::Sub(mut s)) = self.conns.try_remove(key) else {
            return;
        };
        self.deregister(&mut s.stream);
        match s.book {
            SubBook::Resume(r) if r.streamed => {
                self.counters.resume.failed_reconnects += 1;
                self.reconnect(s.channel, r, Some(Instant::now() + RETRY_AFTER));
            }
            _ => self.counters.fail(cause),
        }
    }

    fn on_sub_bytes(&mut self, key: usize, bytes: &[u8]) {
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        let mut body = bytes;
        let owned_rest: Vec<u8>;
        match &mut s.phase {
            SubPhase::Probing { last_bytes } => {
                *last_bytes = Instant::now();
                self.counters.slow.probe_bytes += bytes.len() as u64;
                return;
            }
            SubPhase::Head { buf, key: ws_key } => {
                buf.extend_from_slice(bytes);
                let head = match parse_response_head(buf) {
                    Ok(None) => return,
                    Ok(Some(h)) => h,
                    Err(_) => return self.connect_failed(key, Failure::Malformed),
                };
                let wire = match (self.cfg.transport, ws_key) {
                    (Transport::Sse, _) if head.status == 200 => Wire::sse(head.chunked),
                    (Transport::Ws, Some(k)) if head.status == 101 => {
                        if head.ws_accept != Some(ws::expected_accept(k)) {
                            return self.connect_failed(key, Failure::Malformed);
                        }
                        Wire::ws()
                    }
                    _ => return self.connect_failed(key, Failure::BadStatus),
                };
                owned_rest = buf.get(head.len..).unwrap_or_default().to_vec();
                body = &owned_rest;
                let elapsed = s.started.elapsed().as_nanos() as u64;
                match &mut s.book {
                    SubBook::Resume(r) if r.streamed => {
                        let since = r
                            .reconnect_from
                            .take()
                            .map_or(elapsed, |t| t.elapsed().as_nanos() as u64);
                        self.reconnect_time.saturating_record(since.max(1));
                        self.counters.resume.reconnected += 1;
                    }
                    book => {
                        if let SubBook::Resume(r) = book {
                            r.streamed = true;
                        }
                        self.connect_time.saturating_record(elapsed.max(1));
                        self.counters.subscribed += 1;
                    }
                }
                if matches!(s.book, SubBook::Slow) {
                    // What came with the head is dropped: from here on it reads nothing.
                    s.phase = SubPhase::Stalled;
                    return;
                }
                s.phase = SubPhase::Streaming(wire);
            }
            _ => {}
        }
        if body.is_empty() {
            return;
        }
        let SubPhase::Streaming(wire) = &mut s.phase else {
            return;
        };
        let now_ns = unix_nanos();
        let (template, latency, scratch, rng) = (
            &self.cfg.template,
            &mut self.latency,
            &mut self.scratch,
            &mut self.rng,
        );
        let (fed, delivered, distinct, foreign) = match &mut s.book {
            SubBook::Measure(account) => {
                feed_book(wire, body, account, template, latency, now_ns, scratch, rng)
            }
            SubBook::Resume(r) => feed_book(
                wire,
                body,
                &mut r.ledger,
                template,
                latency,
                now_ns,
                scratch,
                rng,
            ),
            SubBook::Slow => return,
        };
        let (outbox, closed) = match wire {
            Wire::Ws(w) => (!w.outbox.is_empty(), w.closed.is_some()),
            Wire::Sse { .. } => (false, false),
        };
        self.counters.delivered += delivered;
        self.counters.distinct += distinct;
        self.counters.foreign_events += foreign;
        if delivered > 0 {
            let now = Instant::now();
            self.counters.first_delivery.get_or_insert(now);
            self.counters.last_delivery = Some(now);
        }
        if outbox {
            self.flush_outbox(key);
        }
        if fed.is_err() || closed {
            self.sub_closed(key);
        }
    }

    /// Writes a WebSocket subscriber's pending control frames (pongs, the close answer), as far as the socket
    /// takes them.
    fn flush_outbox(&mut self, key: usize) {
        let Some(Conn::Sub(s)) = self.conns.get_mut(key) else {
            return;
        };
        let SubPhase::Streaming(Wire::Ws(w)) = &mut s.phase else {
            return;
        };
        while !w.outbox.is_empty() {
            match s.stream.write(&w.outbox) {
                Ok(0) => break,
                Ok(n) => {
                    w.outbox.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: the writable event writes the rest; an error shows up as a failed read.
                Err(_) => break,
            }
        }
    }

    /// A resuming client's connection is gone (dropped on purpose or lost): reconnect it after the reconnect
    /// delay (at once without one).
    fn lose_resumer(&mut self, key: usize) {
        let Some(Conn::Sub(mut s)) = self.conns.try_remove(key) else {
            return;
        };
        self.deregister(&mut s.stream);
        // Dropping the stream closes the socket.
        let SubBook::Resume(r) = s.book else {
            return;
        };
        let at = (!self.reconnect_delay.is_zero()).then(|| Instant::now() + self.reconnect_delay);
        self.reconnect(s.channel, r, at);
    }

    /// Starts the next connection of a resuming client now (`at: None`) or parks it until `at`. A client out of
    /// reconnects is parked for good.
    fn reconnect(&mut self, channel: u32, mut r: Box<Resumer>, at: Option<Instant>) {
        if r.reconnects >= r.max_reconnects {
            self.counters.resume.gave_up += 1;
            self.parked.push((None, channel, r));
            return;
        }
        if let Some(at) = at {
            self.parked.push((Some(at), channel, r));
            return;
        }
        r.reconnects += 1;
        r.reconnect_from.get_or_insert_with(Instant::now);
        if let Err(SubBook::Resume(r)) = self.start_subscriber(channel, SubBook::Resume(r)) {
            self.counters.resume.failed_reconnects += 1;
            self.parked
                .push((Some(Instant::now() + RETRY_AFTER), channel, r));
        }
    }

    /// Resuming clients: planned drops that are due, parked reconnects whose time has come, reconnects that
    /// time out.
    fn maintain(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(key, conn)| match conn {
                Conn::Sub(Subscriber {
                    phase: SubPhase::Streaming(_),
                    book: SubBook::Resume(r),
                    ..
                }) if r.drops_ahead.last().is_some_and(|t| *t <= now)
                    // It must have an id to resume from; until then the drop waits.
                    && r.ledger.last_id().is_some() =>
                {
                    Some(key)
                }
                _ => None,
            })
            .collect();
        for key in due {
            if let Some(Conn::Sub(Subscriber {
                book: SubBook::Resume(r),
                ..
            })) = self.conns.get_mut(key)
            {
                r.drops_ahead.pop();
                r.drops += 1;
            }
            self.counters.resume.drops += 1;
            self.lose_resumer(key);
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(at, _, _)| at.is_some_and(|t| t <= now));
        self.parked = waiting;
        for (_, channel, r) in ready {
            self.reconnect(channel, r, None);
        }
        self.expire_connects();
    }

    /// Removes a subscriber, keeping what the final accounting needs.
    pub(crate) fn remove(&mut self, key: usize) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        match conn {
            Conn::Sub(mut s) => {
                self.deregister(&mut s.stream);
                // A resuming client is removed only at the end (`close_all`), after its result was taken.
                if let SubBook::Measure(account) = &s.book {
                    if s.phase.subscribed() {
                        let r = s.result(account, false);
                        self.finished.push(r);
                    }
                }
            }
            Conn::Pub(mut p) => self.deregister(&mut p.stream),
        }
    }

    /// Per-subscriber results of the `Measure` subscribers that streamed, still connected or not.
    pub fn sub_results(&self) -> Vec<SubResult> {
        let mut out = self.finished.clone();
        out.extend(self.conns.iter().filter_map(|(_, c)| match c {
            Conn::Sub(s) if s.phase.subscribed() => match &s.book {
                SubBook::Measure(account) => Some(s.result(account, true)),
                _ => None,
            },
            _ => None,
        }));
        out
    }

    /// Every resuming client that subscribed, compared with `acked` (per channel, the acknowledged publishes).
    pub fn client_results(&self, acked: &[SeqSet]) -> Vec<ClientResult> {
        let live = self.conns.iter().filter_map(|(_, c)| match c {
            Conn::Sub(Subscriber {
                book: SubBook::Resume(r),
                channel,
                phase,
                ..
            }) if r.streamed => Some(r.result(*channel, acked, false, phase.subscribed())),
            _ => None,
        });
        let parked = self
            .parked
            .iter()
            .map(|(at, channel, r)| r.result(*channel, acked, at.is_none(), false));
        live.chain(parked).collect()
    }

    /// Closes every connection (end of run). WebSocket subscribers send a masked close frame (1000) first.
    pub fn close_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(Conn::Sub(s)) = self.conns.get_mut(key) {
                if let SubPhase::Streaming(Wire::Ws(w)) = &mut s.phase {
                    let [a, b, c, d, ..] = next_random(&mut self.rng).to_le_bytes();
                    ws::push_close(&mut w.outbox, 1000, [a, b, c, d]);
                    self.flush_outbox(key);
                }
            }
            self.remove(key);
        }
    }
}

/// Feeds `bytes` to `wire`, accounting in `book`: (fed without error, delivered, distinct, foreign).
#[allow(clippy::too_many_arguments)]
fn feed_book<B: Book>(
    wire: &mut Wire,
    bytes: &[u8],
    book: &mut B,
    template: &BodyTemplate,
    latency: &mut Histogram<u64>,
    now_ns: u64,
    scratch: &mut Vec<u8>,
    rng: &mut u64,
) -> (Result<(), ()>, u64, u64, u64) {
    let mut receipt = Receipt::new(template, book, latency, now_ns);
    let fed = wire.feed(bytes, &mut receipt, scratch, rng);
    (fed, receipt.delivered, receipt.distinct, receipt.foreign)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: `bind` to a source address then only records the address, and `connect` picks
/// the source port knowing the whole 4-tuple.
///
/// Why: `bind(addr, 0)` alone must choose a port usable towards any destination, so it skips every port held by
/// any socket on that address, TIME_WAIT ones included, scanning the port range under a lock. After one idle run
/// of 19,000 SSE subscribers (the tool closes first: 19,000 TIME_WAIT sockets for 60 s), a `bind` on a source
/// address with ~14,000 of them took ~1 ms instead of ~3 µs, so the tool spent its core in `bind` and connected
/// ~340 subscribers/s instead of the ramp's 5,000. `connect` instead only needs the 4-tuple to be free and
/// reuses TIME_WAIT ports when `net.ipv4.tcp_tw_reuse` allows (its default, 2, does on loopback).
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the fd is an open socket owned by `socket` for the whole call, and the option value is a c_int
    // that lives across the call, passed with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// `Some(true)` once a non-blocking connect has completed, `Some(false)` while pending, `None` when it failed.
pub(crate) fn connected(stream: &TcpStream) -> Option<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect phase cut off by its deadline accounts for every planned subscriber: 2 subscribe (the server
    /// answers its first 2 connections), 3 are still waiting for a head (the cap of 3 in flight), 5 never start.
    #[test]
    fn deadline_counts_the_subscribers_it_cuts_off() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let mut held = Vec::new();
            for i in 0..5 {
                let (mut conn, _) = listener.accept().unwrap();
                if i < 2 {
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                        .unwrap();
                }
                held.push(conn);
            }
            let _ = stopped.recv_timeout(Duration::from_secs(30));
        });
        let cfg = EngineConfig {
            sub_url: UrlTemplate::parse(&format!("http://127.0.0.1:{port}/sub/{{channel}}"))
                .unwrap(),
            pub_url: None,
            template: BodyTemplate::parse(BodyTemplate::DEFAULT, 100, None, None).unwrap(),
            transport: Transport::Sse,
            sub_headers: Vec::new(),
            // Bound to a source address: IP_BIND_ADDRESS_NO_PORT must leave connects working.
            source_addrs: source_addresses(1),
            ramp: 1e6,
            connect_concurrency: 3,
            connect_timeout: Duration::from_secs(30),
        };
        let mut engine = Engine::new(cfg, 1).unwrap();
        let plan = [0u32; 10];
        engine.connect_subscribers(
            &plan,
            Role::Measure,
            Instant::now() + Duration::from_secs(2),
            |_, _| {},
        );
        let c = &engine.counters;
        assert_eq!(c.subscribed, 2);
        assert_eq!(c.failures.total(), 0);
        assert_eq!(
            c.not_connected,
            NotConnected {
                never_started: 5,
                still_connecting: 3
            }
        );
        assert_eq!(
            c.subscribed + c.failures.total() + c.not_connected.total(),
            plan.len() as u64
        );
        // The cut-off connections are closed: only the two subscribers remain.
        assert_eq!(engine.conns.len(), 2);
        stop.send(()).unwrap();
        server.join().unwrap();
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

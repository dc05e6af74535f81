//! A worker: one thread, one `mio::Poll`, its own listeners, connections, hub and inbox.
//!
//! Every loop turn runs the same steps in the same order:
//! 1. `poll`, with a timeout until the next tick (zero while work is pending);
//! 2. dispatch events: listeners → `accept_all`, the waker → `drain_inbox` (which fans each event out to the
//!    local subscribers as it is taken, so inbox order is delivery order), a slab key → that connection;
//! 3. `flush_dirty`: write each connection with queued output once, with vectored writes;
//! 4. `tick` when due: starts a sweep of the connections, heartbeats, drain progress, history expiry, metrics
//!    snapshot; `sweep` then checks deadlines and sends heartbeats over a bounded slice of the slab per turn
//!    (as redis's `clientsCron`), so that a million connections never make one long turn;
//! 5. `reap`: apply the hub changes a closing stream carried, deregister, unsubscribe and remove every connection
//!    closed during the turn.
//!
//! Connections are never removed mid-turn, so a slab key in this turn's event batch always means the same
//! connection. The worker adds a connection to the hub when it sees it become a stream, and applies the changes
//! a stream reports (`Next::Resubscribed`, or those carried by `Next::Close`) before it drains its inbox again or
//! reaps; the hub keeps the positions itself. Nothing here blocks: the only lock taken is the channel table's,
//! briefly, on subscribe, unsubscribe, replay and publish.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::api::{self, Apps, ChannelLoss, Ctx};
use crate::broker::Broker;
use crate::bus::{self, WorkerMsg};
use crate::channels::ChannelTable;
use crate::config::{Api, Config};
use crate::conn::outq::Chunk;
use crate::conn::{self, CloseReason, Conn, Delivery, HubChange, Next};
use crate::http::response::DateCache;
use crate::hub::{Hub, Member};
use crate::ids::IdSource;
use crate::message::Message;
use crate::metrics::{Counters, Registry};
use crate::net::{self, BoundListener};
use crate::sse;
use crate::ws::frame as ws_frame;

/// The waker's token: the top of the token range, above every slab key.
pub const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
/// The largest slab key; keys above it would collide with reserved tokens.
const MAX_KEY: usize = usize::MAX - 1024;

/// How often `tick` runs and starts a sweep: deadlines are checked at this granularity.
const TICK: Duration = Duration::from_millis(250);
/// Connections a sweep visits per loop turn: a turn spends at most about this many deadline checks (tens of
/// microseconds), and a sweep of a million connections spreads over some 250 turns instead of one long one.
const SWEEP_SLICE: usize = 4096;
/// How often history expiry runs (on worker 0 only).
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// Inbox messages taken per turn before connections get a turn again.
const INBOX_BATCH: usize = 4096;
/// Frames queued to subscribers per turn before the turn moves on to writing them: bounds how long one turn runs
/// when events with many local subscribers arrive in a burst, so publishers' answers and other connections are
/// not held behind it. It is also how many events one subscriber's `writev` can carry when the server is behind:
/// a `writev` costs about 3.5 µs plus 0.12 µs per frame on loopback, so at 10,000 subscribers 64k frames (6 per
/// write) cost 0.7 µs per delivery and 256k frames (25 per write) about 0.26 µs (docs/BENCHMARKS.md). Queueing
/// 256k frames takes about 4 ms of a turn.
const FANOUT_BUDGET: u64 = 256 * 1024;
/// Shared read buffer of a worker: large enough for a full request head and a good share of a body.
const READ_BUF: usize = 64 * 1024;
/// A drain past its window closes what is left after this grace.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// State every worker shares (read-mostly).
pub struct Shared {
    pub config: Config,
    pub table: Arc<ChannelTable>,
    pub broker: Arc<dyn Broker>,
    pub registry: Registry,
    pub apps: Apps,
    pub draining: AtomicBool,
    pub open_connections: AtomicUsize,
    /// Open event streams over all workers: a draining worker left with only idle keep-alive connections keeps
    /// them (and answers their health checks with 503) until every worker's streams have ended.
    pub open_streams: AtomicUsize,
    pub max_connections: usize,
}

struct Drain {
    started: Instant,
    window: Duration,
}

pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<BoundListener>,
    conns: Slab<Conn>,
    hub: Hub,
    inbox: Receiver<WorkerMsg>,
    shared: Arc<Shared>,
    read_buf: Box<[u8]>,
    dirty: Vec<usize>,
    pending_reads: Vec<usize>,
    to_reap: Vec<(usize, CloseReason)>,
    counters: Counters,
    streams: u64,
    date: DateCache,
    ids: IdSource,
    /// Kept open so `accept` still works when the process is out of descriptors (see `accept_all`).
    spare_fd: Option<File>,
    drain: Option<Drain>,
    next_tick: Instant,
    /// Per API (indexed by `Api as usize`), when its quiet SSE streams next get a heartbeat (unused for an API
    /// whose heartbeat comes after a silence: each of its streams times its own).
    next_heartbeat: [Instant; Api::ALL.len()],
    next_expire: Instant,
    /// The sweep under way, if any.
    sweep: Option<Sweep>,
}

/// A pass over the slab, a slice per turn: deadlines due at `now`, and the heartbeats of the APIs in `beat`.
struct Sweep {
    now: Instant,
    next_key: usize,
    beat: [Option<&'static [u8]>; Api::ALL.len()],
}

/// Builds a `Ctx` from the worker's fields (a macro so the borrows stay per field).
macro_rules! ctx {
    ($w:ident, $now:expr) => {
        Ctx {
            now: $now,
            wall: SystemTime::now(),
            worker: $w.id,
            config: &$w.shared.config,
            table: &$w.shared.table,
            broker: &*$w.shared.broker,
            registry: &$w.shared.registry,
            apps: &$w.shared.apps,
            date: &$w.date,
            draining: $w.drain.is_some(),
            counters: &mut $w.counters,
            ids: &mut $w.ids,
        }
    };
}

fn open_spare() -> Option<File> {
    File::open("/dev/null")
        .map_err(|e| log::warn!("cannot open the spare descriptor: {e}"))
        .ok()
}

fn key_of(token: Token) -> usize {
    token.0
}

fn token_of(key: usize) -> Token {
    Token(key)
}

impl Worker {
    pub fn new(
        id: usize,
        poll: Poll,
        listeners: Vec<BoundListener>,
        inbox: Receiver<WorkerMsg>,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        let mut listeners = listeners;
        for (i, bound) in listeners.iter_mut().enumerate() {
            poll.registry().register(
                &mut bound.listener,
                Token(LISTENER_BASE - i),
                Interest::READABLE,
            )?;
        }
        let now = Instant::now();
        let next_heartbeat = Api::ALL.map(|api| now + api::heartbeat(api, &shared.config).every);
        Ok(Worker {
            id,
            poll,
            listeners,
            conns: Slab::new(),
            hub: Hub::default(),
            inbox,
            shared,
            read_buf: vec![0; READ_BUF].into(),
            dirty: Vec::new(),
            pending_reads: Vec::new(),
            to_reap: Vec::new(),
            counters: Counters::default(),
            streams: 0,
            date: DateCache::new(SystemTime::now()),
            ids: IdSource::new(),
            spare_fd: open_spare(),
            drain: None,
            next_tick: now + TICK,
            next_heartbeat,
            next_expire: now + EXPIRE_EVERY,
            sweep: None,
        })
    }

    /// The event loop; returns when a drain has finished.
    pub fn run(mut self) {
        bus::set_current_worker(self.id);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if self.has_pending_work() {
                Duration::ZERO
            } else {
                self.next_tick.saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("worker {}: poll failed: {e}", self.id);
                    return;
                }
            }
            let started = Instant::now();
            self.counters.loop_turns += 1;
            for event in events.iter() {
                self.dispatch(event, started);
            }
            self.retry_pending(started);
            if !self.inbox.is_empty() {
                // Filled by this worker's own publishes (no wake) or left over from a budget-limited drain.
                self.drain_inbox(started);
            }
            self.flush_dirty();
            if started >= self.next_tick {
                self.tick(started);
            }
            self.sweep();
            self.reap();
            self.counters.busy_ns += started.elapsed().as_nanos() as u64;
            if self.drain_finished(started) {
                self.close_all();
                self.shared.registry.publish(self.id, &self.counters);
                log::debug!("worker {} finished draining", self.id);
                return;
            }
        }
    }

    /// Work that must not wait for a poll: a non-empty inbox (which this worker's own publishes fill without a
    /// wake), dirty connections, reads cut short by their budget, and a sweep under way.
    fn has_pending_work(&self) -> bool {
        !self.inbox.is_empty()
            || !self.dirty.is_empty()
            || !self.pending_reads.is_empty()
            || self.sweep.is_some()
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        match event.token() {
            WAKER => self.drain_inbox(now),
            token if token.0 > MAX_KEY => self.accept_all(LISTENER_BASE - token.0, now),
            token => {
                let key = key_of(token);
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.readable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    conn.peer_closed = true;
                }
                if event.is_writable() || event.is_error() {
                    conn.writable = true;
                    if conn.wants_flush() {
                        mark_dirty(&mut self.dirty, key, conn);
                    }
                }
                if conn.wants_read() {
                    self.read(key, now);
                }
            }
        }
    }

    /// Connections that hit their read budget last turn, and inbox messages left over, get another turn.
    fn retry_pending(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.pending_reads) {
            if self.conns.get(key).is_some_and(Conn::wants_read) {
                self.read(key, now);
            }
        }
    }

    fn read(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let was_stream = conn.stream().is_some();
        let mut ctx = ctx!(self, now);
        let next = conn.on_readable(&mut ctx, &mut self.read_buf);
        if !was_stream && conn.stream().is_some() {
            self.join_hub(key);
        }
        if self.apply(key, next) {
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.wants_flush() {
            mark_dirty(&mut self.dirty, key, conn);
        }
        if conn.wants_read() {
            self.pending_reads.push(key);
        }
    }

    /// Carries out what a connection's handler returned; true when the connection is to be reaped.
    fn apply(&mut self, key: usize, next: Next) -> bool {
        match next {
            Next::Continue => false,
            Next::Resubscribed(changes) => {
                self.rejoin_hub(key, changes);
                false
            }
            Next::Close(reason, changes) => {
                self.rejoin_hub(key, changes);
                self.to_reap.push((key, reason));
                true
            }
        }
    }

    /// Adds a new stream's live channels to the hub. Frames a WebSocket client sent behind its upgrade request
    /// were handled before this (`Conn::on_readable`), so a channel may already have been joined over the socket
    /// (it is in the list: added here) or left (its slot is gone: skipped).
    fn join_hub(&mut self, key: usize) {
        let Some(stream) = self.conns.get(key).and_then(Conn::stream) else {
            return;
        };
        for (slot, channel) in stream.live_slots() {
            self.hub.join(&channel.name, Member { key, slot });
        }
        self.streams += 1;
        self.shared.open_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies, in order, the hub changes of a stream whose client subscribed or unsubscribed over its socket. Runs
    /// before the inbox is drained again, so an event published after a join's table subscription reaches it, and
    /// none reaches a channel it left.
    fn rejoin_hub(&mut self, key: usize, changes: Vec<HubChange>) {
        for change in changes {
            match change {
                HubChange::Leave { channel, slot } => {
                    self.hub.leave(&channel, Member { key, slot })
                }
                HubChange::Join { slot } => {
                    let Some(stream) = self.conns.get(key).and_then(Conn::stream) else {
                        return;
                    };
                    if let Some(channel) = stream.channels.get(slot as usize) {
                        self.hub.join(&channel.name, Member { key, slot });
                    }
                }
            }
        }
    }

    fn accept_all(&mut self, index: usize, now: Instant) {
        loop {
            let Some(bound) = self.listeners.get(index) else {
                return;
            };
            let api = bound.api;
            match bound.listener.accept() {
                Ok((mut stream, _peer)) => {
                    self.counters.accepted += 1;
                    let open = self.shared.open_connections.load(Ordering::Relaxed);
                    if open >= self.shared.max_connections || self.conns.len() >= MAX_KEY {
                        self.counters.refused += 1;
                        conn::refuse_at_accept(&mut stream, api, &self.date);
                        continue;
                    }
                    net::prepare_accepted(&stream);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token_of(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("worker {}: cannot register a connection: {e}", self.id);
                        continue;
                    }
                    self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
                    entry.insert(Conn::new(
                        stream,
                        api,
                        now,
                        self.shared.config.request_timeout,
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if conn::io::is_out_of_descriptors(&e) => {
                    self.refuse_without_descriptors(index)
                }
                Err(e) => {
                    log::warn!("worker {}: accept failed: {e}", self.id);
                    return;
                }
            }
        }
    }

    /// Out of descriptors (EMFILE/ENFILE): free the spare, accept one client, answer 503, close it, take the
    /// spare back. Without this the client would hang in the backlog and the listener would stay readable.
    fn refuse_without_descriptors(&mut self, index: usize) {
        self.spare_fd = None;
        if let Some(bound) = self.listeners.get(index) {
            if let Ok((mut stream, _)) = bound.listener.accept() {
                self.counters.refused += 1;
                conn::refuse_at_accept(&mut stream, bound.api, &self.date);
            }
        }
        self.spare_fd = open_spare();
        if self.spare_fd.is_none() {
            log::warn!("worker {}: out of file descriptors", self.id);
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        let delivered_before = self.counters.delivered;
        for _ in 0..INBOX_BATCH {
            if self.counters.delivered - delivered_before >= FANOUT_BUDGET {
                break;
            }
            let Ok(msg) = self.inbox.try_recv() else {
                return;
            };
            self.counters.inbox_events += 1;
            match msg {
                WorkerMsg::Publish(message) => self.fan_out(&message, now),
                WorkerMsg::ChannelDeleted {
                    channel,
                    incarnation,
                } => self.close_channel(&channel, incarnation, now),
                WorkerMsg::Drain => self.start_drain(now),
            }
        }
    }

    /// Queues one shared frame on every local subscriber of the event's channel: no copy, no format. Each wire
    /// format's frame is built once, by the first subscriber of that format (`Message::sse_frame`, `ws_frame`).
    fn fan_out(&mut self, message: &Message, now: Instant) {
        let members = self.hub.members(&message.channel);
        if members.is_empty() {
            return;
        }
        let max_queued = self.shared.config.max_queued_bytes;
        for member in members {
            let Some(conn) = self.conns.get_mut(member.key) else {
                continue;
            };
            match conn.deliver(message, member.slot, max_queued) {
                Delivery::Skipped => {}
                Delivery::Queued => {
                    self.counters.delivered += 1;
                    conn.push_back_heartbeat(now, &self.shared.config);
                    mark_dirty(&mut self.dirty, member.key, conn);
                }
                Delivery::Overflow => {
                    // Over the cap before this turn's flush. Several events taken from the inbox in one turn can
                    // pass it for a subscriber that reads everything, so write what its socket takes now, and
                    // close it only if it really is behind: its socket refuses and the queue stays over the cap.
                    let mut next = Next::Continue;
                    while conn.writable && conn.out.bytes() > max_queued {
                        let before = conn.out.bytes();
                        next = conn.flush(&self.shared.table, &mut self.counters);
                        if next != Next::Continue || conn.out.bytes() == before {
                            break;
                        }
                    }
                    match next {
                        Next::Close(reason, _) => self.to_reap.push((member.key, reason)),
                        _ if conn.out.bytes() > max_queued => {
                            conn.out.clear();
                            conn.closing = true;
                            self.to_reap.push((member.key, CloseReason::Slow));
                        }
                        _ => {
                            self.counters.delivered += 1;
                            conn.push_back_heartbeat(now, &self.shared.config);
                            mark_dirty(&mut self.dirty, member.key, conn);
                        }
                    }
                }
            }
        }
    }

    /// A channel was deleted: each local subscriber of that incarnation loses the subscription and gets what its
    /// API sends then (`api::channel_deleted`: a final event, or nothing), built once per API.
    fn close_channel(&mut self, channel: &str, incarnation: u64, now: Instant) {
        let mut losses: [Option<ChannelLoss>; Api::ALL.len()] = Default::default();
        let members: Vec<Member> = self.hub.members(channel).to_vec();
        let ctx = ctx!(self, now);
        for member in members {
            let Some(conn) = self.conns.get_mut(member.key) else {
                continue;
            };
            let Some(loss) = losses.get_mut(conn.api as usize) else {
                continue;
            };
            let loss = loss.get_or_insert_with(|| api::channel_deleted(conn.api, channel));
            if conn.lose_channel(member.slot, incarnation, loss, &ctx) {
                self.hub.leave(channel, member);
                if conn.wants_flush() {
                    mark_dirty(&mut self.dirty, member.key, conn);
                }
            }
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            let held = conn.holding();
            match conn.flush(&self.shared.table, &mut self.counters) {
                Next::Close(reason, _) => self.to_reap.push((key, reason)),
                _ => {
                    if conn.writable && conn.wants_flush() {
                        // Budget used up: go on next turn (the poll will not wait).
                        mark_dirty(&mut self.dirty, key, conn);
                    }
                    if held && conn.wants_read() {
                        // Its answers drained: take its held-back requests next turn.
                        self.pending_reads.push(key);
                    }
                }
            }
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        self.date.update(SystemTime::now());
        self.start_sweep(now);
        if self.drain.is_some() {
            self.drain_streams(now);
        }
        if self.id == 0 && now >= self.next_expire {
            self.next_expire = now + EXPIRE_EVERY;
            self.shared.table.expire(now);
        }
        self.counters.connections = self.conns.len() as u64;
        self.counters.subscribers = self.streams;
        self.counters.subscriptions = self.hub.subscriptions() as u64;
        self.shared.registry.publish(self.id, &self.counters);
    }

    /// Starts a pass over the connections: deadlines due by `now`, and the heartbeats of the APIs whose schedule is
    /// due (heartbeats after a silence are timed per stream, by its deadline). A sweep still under way (more than
    /// a tick's worth of slices) goes on, and takes up the heartbeats that fall due meanwhile.
    fn start_sweep(&mut self, now: Instant) {
        let mut sweep = self.sweep.take().unwrap_or(Sweep {
            now,
            next_key: 0,
            beat: [None; Api::ALL.len()],
        });
        sweep.now = now;
        for api in Api::ALL {
            let beat = api::heartbeat(api, &self.shared.config);
            if beat.after_silence {
                continue;
            }
            let (Some(due), Some(frame)) = (
                self.next_heartbeat.get_mut(api as usize),
                sweep.beat.get_mut(api as usize),
            ) else {
                continue;
            };
            if now >= *due {
                *due = now + beat.every;
                *frame = Some(beat.frame);
            }
        }
        self.sweep = Some(sweep);
    }

    /// Visits the next `SWEEP_SLICE` slab keys of the sweep under way: a connection whose deadline has passed is
    /// handled (`Conn::on_deadline`); an SSE stream of an API whose heartbeat is due gets it when nothing is
    /// queued on it (a stream with output queued is not silent).
    fn sweep(&mut self) {
        let Some(sweep) = self.sweep.take() else {
            return;
        };
        let now = sweep.now;
        let end = sweep
            .next_key
            .saturating_add(SWEEP_SLICE)
            .min(self.conns.capacity());
        let mut ctx = ctx!(self, now);
        for key in sweep.next_key..end {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.deadline.is_due(now) {
                let next = conn.on_deadline(now, &mut ctx);
                if let Next::Close(reason, _) = next {
                    self.to_reap.push((key, reason));
                    continue;
                }
            }
            let beat = sweep.beat.get(conn.api as usize).copied().flatten();
            if let Some(frame) = beat {
                let quiet = conn.out.is_empty() && !conn.closing;
                if quiet && conn.stream().is_some_and(|s| s.is_sse()) {
                    conn.queue(Chunk::Static(frame));
                }
            }
            if conn.wants_flush() {
                mark_dirty(&mut self.dirty, key, conn);
            }
        }
        if end < self.conns.capacity() {
            self.sweep = Some(Sweep {
                next_key: end,
                ..sweep
            });
        }
    }

    /// Graceful shutdown begins: stop accepting and spread the end of the streams over the drain window
    /// (`drain_streams`). Keep-alive connections stay, so a load balancer's health check on one sees the 503;
    /// each closes after its next answer, and whatever is idle goes when the streams are gone.
    fn start_drain(&mut self, now: Instant) {
        if self.drain.is_some() {
            return;
        }
        for bound in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut bound.listener);
        }
        self.listeners.clear();
        self.drain = Some(Drain {
            started: now,
            window: self.shared.config.drain_timeout,
        });
        self.drain_streams(now);
    }

    /// Ends each stream at its own moment of the window (spread by slab key), after a `retry:` hint jittered over
    /// the window, so clients do not all reconnect to the remaining nodes at once. A WebSocket stream gets a close
    /// frame with 1001 "going away" instead (RFC 6455 §7.4.1); the spread by key is its jitter.
    fn drain_streams(&mut self, now: Instant) {
        let Some(drain) = &self.drain else { return };
        let elapsed = now.saturating_duration_since(drain.started).as_secs_f64();
        let window = drain.window.as_secs_f64();
        let base_retry = self.shared.config.retry.as_millis() as u64;
        for (key, conn) in self.conns.iter_mut() {
            let Some(stream) = conn.stream().filter(|_| !conn.closing) else {
                continue;
            };
            // Golden-ratio spread of keys over [0, 0.9) of the window: deterministic, even, no state per stream.
            let share = ((key as f64) * 0.618_033_988_75).fract() * 0.9;
            if elapsed < share * window {
                continue;
            }
            if stream.is_sse() {
                let jitter = (self.ids.next_u64() % (drain.window.as_millis() as u64 + 1)).max(1);
                let mut hint = Vec::with_capacity(24);
                sse::encode_retry(&mut hint, base_retry + jitter);
                conn.queue(Chunk::Owned(hint.into()));
            } else {
                conn.queue(Chunk::Static(ws_frame::CLOSE_GOING_AWAY));
            }
            conn.start_closing(now, DRAIN_GRACE);
            mark_dirty(&mut self.dirty, key, conn);
        }
    }

    /// A drain is over when its window (plus grace) has passed, when this worker has no connection left, or when it
    /// has only idle keep-alive connections and no worker has a stream open (so health checks on them see 503
    /// for as long as the node is still draining).
    fn drain_finished(&self, now: Instant) -> bool {
        let Some(drain) = &self.drain else {
            return false;
        };
        let only_idle_left = self.conns.iter().all(|(_, c)| c.is_idle());
        now >= drain.started + drain.window + DRAIN_GRACE
            || self.conns.is_empty()
            || (only_idle_left && self.shared.open_streams.load(Ordering::Relaxed) == 0)
    }

    fn close_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        self.to_reap
            .extend(keys.into_iter().map(|key| (key, CloseReason::Drained)));
        self.reap();
    }

    fn reap(&mut self) {
        for (key, reason) in std::mem::take(&mut self.to_reap) {
            let Some(mut conn) = self.conns.try_remove(key) else {
                continue;
            };
            let _ = self.poll.registry().deregister(conn.socket_mut());
            self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            match reason {
                CloseReason::Slow => {
                    self.counters.dropped_slow += 1;
                    log::debug!(
                        "worker {} conn {key}: closed, over --max-queued-bytes",
                        self.id
                    );
                }
                CloseReason::Error => {
                    log::debug!("worker {} conn {key}: closed after a socket error", self.id)
                }
                _ => log::trace!("worker {} conn {key}: closed ({reason:?})", self.id),
            }
            if let Some(stream) = conn.stream() {
                self.shared
                    .table
                    .unsubscribe(self.id, &stream.channels, &stream.client_id);
                let mut ctx = ctx!(self, Instant::now());
                api::stream_closed(conn.api, &stream.client_id, &stream.channels, &mut ctx);
                for (slot, channel) in stream.live_slots() {
                    self.hub.leave(&channel.name, Member { key, slot });
                }
                self.streams -= 1;
                self.shared.open_streams.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn mark_dirty(dirty: &mut Vec<usize>, key: usize, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

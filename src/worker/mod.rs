//! A worker: one thread, one `mio::Poll`, its own listeners, connections, hub and inbox.
//!
//! Every loop turn runs the same steps in the same order:
//! 1. `poll`, with a timeout until the next tick (zero while work is pending); before a poll that may block, the
//!    inbox's asleep flag goes up (`bus::Inbox::sleep`), so that senders wake this worker only then;
//! 2. dispatch events: listeners → `accept_all`, a slab key → that connection (reads, and the requests they
//!    complete: a publish is sequenced and handed to the inboxes at once);
//! 3. `flush_answers`: write the answers this turn queued (publishers first, not after a fan-out);
//! 4. `fan_out_slice`: queue the inbox's events on local subscribers, a bounded slice per turn, in inbox order;
//! 5. `flush_streams`: write dirty subscribers, each once with a vectored write, for a bounded slice of time;
//! 6. `tick` when due (starts a sweep, drain progress, closes the lingering sockets whose peers are done or
//!    whose linger is over (`linger`), history expiry, metrics snapshot), and `sweep`: deadlines over a bounded
//!    slice of the slab;
//! 7. `reap`: unsubscribe, remove and close every connection closed during the turn (a socket kept to linger is
//!    deregistered; closing one takes it out of the poll).
//!
//! Steps 4 and 5 work in slices so that new input is read between them (`delivery`): under load, events that
//! arrive during a long fan-out join the queues of subscribers not yet written, and one write carries several.
//!
//! Connections are never removed mid-turn, so a slab key in this turn's event batch always means the same
//! connection. The worker adds a connection to the hub when it sees it become a stream, and applies the changes
//! a stream reports (`Next::Resubscribed`, or those carried by `Next::Close`) before it takes from its inbox again
//! or reaps; the hub keeps the positions itself. Nothing here blocks: the only lock taken is the channel table's,
//! briefly, on subscribe, unsubscribe, replay and publish.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::api::{self, Apps, Refusal};
use crate::auth::Auth;
use crate::broker::local::LocalBroker;
use crate::broker::{Broker, Waiter};
use crate::bus::{self, Answer, Inbox};
use crate::channels::ChannelTable;
use crate::config::Config;
use crate::conn::body_budget::BodyBudget;
use crate::conn::outq::Chunk;
use crate::conn::{self, CloseReason, Conn, HubChange, Next};
use crate::http::response::DateCache;
use crate::hub::{Hub, Member};
use crate::ids::IdSource;
use crate::metrics::{Counters, Registry};
use crate::net::{self, BoundListener};
use crate::peers::{Admission, Peers};
use crate::reload::Live;
use crate::sse;
use crate::status::Status;
use crate::ws::frame as ws_frame;

/// The waker's token: the top of the token range, above every slab key.
pub const WAKER: Token = Token(usize::MAX);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 1;
/// The largest slab key; keys above it would collide with reserved tokens.
const MAX_KEY: usize = usize::MAX - 1024;

/// How often `tick` runs and starts a sweep: deadlines are checked at this granularity.
const TICK: Duration = Duration::from_millis(250);
/// How often history expiry runs (on worker 0 only).
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// How often the compatible APIs renew the shared state this node owns (on worker 0 only, with the Redis broker).
const SHARED_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Shared read buffer of a worker: large enough for a full request head and a good share of a body.
const READ_BUF: usize = 64 * 1024;
/// A drain past its window closes what is left after this grace.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// State every worker shares (read-mostly).
pub struct Shared {
    pub config: Config,
    /// The values a reload changes (the publish key); read them here, not in `config`.
    pub live: Live,
    /// Token keys and public channels (`--auth`), loaded once at startup.
    pub auth: Auth,
    pub table: Arc<ChannelTable>,
    /// The native API's channels: this node's (`--broker local`) or every node's through Redis.
    pub broker: Arc<dyn Broker>,
    /// This node's channels: the compatible APIs' and spout's own (the status stream's).
    pub local: Arc<LocalBroker>,
    pub registry: Registry,
    /// The status stream's recent samples (`--status`).
    pub status: Status,
    pub apps: Apps,
    /// `--max-pending-body-bytes`, shared by every connection of every worker.
    pub bodies: Arc<BodyBudget>,
    /// `--max-connections-per-ip`: open connections per client address.
    pub peers: Peers,
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
    inbox: Inbox,
    shared: Arc<Shared>,
    read_buf: Box<[u8]>,
    dirty: Dirty,
    /// An event whose fan-out the last turn's slice cut short.
    partial: Option<PartialFanout>,
    pending_reads: Vec<usize>,
    to_reap: Vec<(usize, CloseReason)>,
    /// Sockets of closed connections whose peers may not have taken their last answer yet.
    linger: Linger,
    counters: Counters,
    streams: u64,
    date: DateCache,
    ids: IdSource,
    /// Kept open so `accept` still works when the process is out of descriptors (see `accept_all`).
    spare_fd: Option<File>,
    drain: Option<Drain>,
    next_tick: Instant,
    next_expire: Instant,
    /// When worker 0 next has the compatible APIs renew their shared state (`api::refresh_shared`).
    next_shared_refresh: Instant,
    /// The sweep under way, if any.
    sweep: Option<Sweep>,
}

/// Builds a `Ctx` from the worker's fields (a macro so the borrows stay per field).
macro_rules! ctx {
    ($w:ident, $now:expr) => {
        $crate::api::Ctx {
            now: $now,
            wall: std::time::SystemTime::now(),
            worker: $w.id,
            config: &$w.shared.config,
            live: &$w.shared.live,
            auth: &$w.shared.auth,
            table: &$w.shared.table,
            broker: &*$w.shared.broker,
            local: &$w.shared.local,
            registry: &$w.shared.registry,
            status: &$w.shared.status,
            apps: &$w.shared.apps,
            bodies: &$w.shared.bodies,
            peers: &$w.shared.peers,
            peer: None,
            date: &$w.date,
            draining: $w.drain.is_some(),
            counters: &mut $w.counters,
            ids: &mut $w.ids,
            waiter: $crate::broker::Waiter {
                worker: $w.id,
                conn: usize::MAX,
                ticket: 0,
            },
            answer: None,
            verdict: None,
        }
    };
}

mod delivery;
mod linger;
mod timers;

use delivery::{Dirty, PartialFanout};
use linger::Linger;
use timers::Sweep;

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
        inbox: Inbox,
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
        Ok(Worker {
            id,
            poll,
            listeners,
            conns: Slab::new(),
            hub: Hub::default(),
            inbox,
            shared,
            read_buf: vec![0; READ_BUF].into(),
            dirty: Dirty::default(),
            partial: None,
            pending_reads: Vec::new(),
            to_reap: Vec::new(),
            linger: Linger::default(),
            counters: Counters::default(),
            streams: 0,
            date: DateCache::new(SystemTime::now()),
            ids: IdSource::new(),
            spare_fd: open_spare(),
            drain: None,
            next_tick: now + TICK,
            next_expire: now + EXPIRE_EVERY,
            next_shared_refresh: now + SHARED_REFRESH_EVERY,
            sweep: None,
        })
    }

    /// The event loop; returns when a drain has finished.
    pub fn run(mut self) {
        bus::set_current_worker(self.id);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = if self.has_pending_work() || !self.inbox.sleep() {
                Duration::ZERO
            } else {
                self.next_tick.saturating_duration_since(now)
            };
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.inbox.awake();
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!(worker = self.id; "worker {}: poll failed: {e}", self.id);
                    return;
                }
            }
            let started = Instant::now();
            self.counters.loop_turns += 1;
            for event in events.iter() {
                self.dispatch(event, started);
            }
            self.retry_pending(started);
            self.flush_answers();
            self.fan_out_slice(started);
            self.flush_streams();
            if started >= self.next_tick {
                self.tick(started);
            }
            self.sweep();
            self.reap();
            self.counters.busy_ns += started.elapsed().as_nanos() as u64;
            if self.drain_finished(started) {
                self.close_all();
                self.shared.registry.publish(self.id, &self.counters);
                log::debug!(worker = self.id; "worker {} finished draining", self.id);
                return;
            }
        }
    }

    /// Work that must not wait for a poll: a non-empty inbox (which this worker's own publishes fill without a
    /// wake) or a fan-out cut short, dirty connections, reads cut short by their budget, and a sweep under way.
    fn has_pending_work(&self) -> bool {
        !self.inbox.is_empty()
            || self.partial.is_some()
            || !self.dirty.is_empty()
            || !self.pending_reads.is_empty()
            || self.sweep.is_some()
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        match event.token() {
            // The inbox is taken in the turn's fan-out step; the wake only ended the poll.
            WAKER => {}
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
                        self.dirty.mark(key, conn);
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
        self.handle_conn(key, now, None, |conn, ctx, buf| conn.on_readable(ctx, buf));
    }

    /// The broker or the auth hook answered a request parked on one of this worker's connections: it is handled
    /// again with the answer, and the connection reads on (input that came meanwhile waits in the socket). An
    /// answer whose ticket the connection does not hold is for a request gone with its connection: dropped.
    fn on_answer(&mut self, waiter: Waiter, answer: Answer, now: Instant) {
        let key = waiter.conn;
        if !self
            .conns
            .get(key)
            .is_some_and(|c| c.parked_with(waiter.ticket))
        {
            return;
        }
        self.handle_conn(key, now, Some(answer), |conn, ctx, _| conn.resume(ctx));
    }

    /// Runs a handler of the connection at `key` with a fresh `Ctx`, then does what it asks: join the hub if it
    /// became a stream, close it, or list it for a flush and a further read.
    fn handle_conn(
        &mut self,
        key: usize,
        now: Instant,
        answer: Option<Answer>,
        handler: impl FnOnce(&mut Conn, &mut api::Ctx, &mut [u8]) -> Next,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let was_stream = conn.stream().is_some();
        let mut ctx = ctx!(self, now);
        ctx.peer = Some(conn.peer);
        ctx.waiter.conn = key;
        ctx.waiter.ticket = ctx.ids.next_u64();
        match answer {
            Some(Answer::Broker(answer)) => ctx.answer = Some(answer),
            Some(Answer::Hook(verdict)) => ctx.verdict = Some(verdict),
            None => {}
        }
        let next = handler(conn, &mut ctx, &mut self.read_buf);
        if !was_stream && conn.stream().is_some() {
            net::size_stream_send_buffer(conn.socket_mut(), self.shared.config.socket_send_buffer);
            self.join_hub(key);
        }
        if self.apply(key, next) {
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.wants_flush() {
            self.dirty.mark(key, conn);
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
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let conn_api = conn.api as usize;
        let Some(stream) = conn.stream() else {
            return;
        };
        for (slot, channel) in stream.live_slots() {
            self.hub.join(&channel.name, Member { key, slot });
        }
        self.streams += 1;
        if let Some(count) = self.counters.streams_by_api.get_mut(conn_api) {
            *count += 1;
        }
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
            let (api, proxy) = (bound.api, bound.proxy);
            match bound.listener.accept() {
                Ok((mut stream, peer)) => {
                    self.counters.accepted += 1;
                    let open = self.shared.open_connections.load(Ordering::Relaxed);
                    if open >= self.shared.max_connections || self.conns.len() >= MAX_KEY {
                        self.counters.refused += 1;
                        conn::refuse_at_accept(&mut stream, api, Refusal::Busy, &self.date);
                        continue;
                    }
                    // Behind a +proxy listener the socket's peer is the balancer: the client is counted once its
                    // PROXY header names it (`Conn::ingest`).
                    let counted = !proxy
                        && match self.shared.peers.admit(peer.ip()) {
                            Admission::Refused => {
                                self.counters.peer_refused += 1;
                                conn::refuse_at_accept(
                                    &mut stream,
                                    api,
                                    Refusal::PeerLimit,
                                    &self.date,
                                );
                                continue;
                            }
                            Admission::Counted => true,
                            Admission::Unlimited => false,
                        };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token_of(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!(
                            worker = self.id, peer:% = peer.ip();
                            "worker {}: cannot register a connection: {e}", self.id
                        );
                        if counted {
                            self.shared.peers.release(peer.ip());
                        }
                        continue;
                    }
                    self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
                    let origin = conn::Origin {
                        api,
                        peer: peer.ip(),
                        proxy,
                        counted,
                    };
                    entry.insert(Conn::new(
                        stream,
                        origin,
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
                    log::warn!(worker = self.id; "worker {}: accept failed: {e}", self.id);
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
                conn::refuse_at_accept(&mut stream, bound.api, Refusal::Busy, &self.date);
            }
        }
        self.spare_fd = open_spare();
        if self.spare_fd.is_none() {
            log::warn!(worker = self.id; "worker {}: out of file descriptors", self.id);
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
            self.dirty.mark(key, conn);
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
        let lingering = self.linger.close_all();
        self.shared
            .open_connections
            .fetch_sub(lingering, Ordering::Relaxed);
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
            if conn.peer_counted {
                self.shared.peers.release(conn.peer);
            }
            if matches!(reason, CloseReason::Slow | CloseReason::Abandoned) {
                // An abortive close (RFC 9293 §3.6's reset): the kernel drops what is still unsent at once. A
                // normal close would keep it in FIN-WAIT-1, in kernel memory, for as long as the peer keeps its
                // socket open without reading (or, for a dead peer, until retransmissions give up, minutes
                // later): the very peer this close is for.
                conn::io::discard_unsent(conn.socket_mut());
            }
            match reason {
                CloseReason::Slow => {
                    self.counters.dropped_slow += 1;
                    log::debug!(
                        worker = self.id, conn = key, peer:% = conn.peer, reason = reason.as_str();
                        "worker {} conn {key} from {}: closed, over --max-queued-bytes",
                        self.id,
                        conn.peer
                    );
                }
                CloseReason::Abandoned => log::debug!(
                    worker = self.id, conn = key, peer:% = conn.peer, reason = reason.as_str();
                    "worker {} conn {key} from {}: closed with output its peer did not take",
                    self.id,
                    conn.peer
                ),
                CloseReason::Error => {
                    log::debug!(
                        worker = self.id, conn = key, peer:% = conn.peer, reason = reason.as_str();
                        "worker {} conn {key}: closed after a socket error", self.id
                    )
                }
                _ => log::trace!(
                    worker = self.id, conn = key, peer:% = conn.peer, reason = reason.as_str();
                    "worker {} conn {key}: closed ({reason:?})", self.id
                ),
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
                if let Some(count) = self.counters.streams_by_api.get_mut(conn.api as usize) {
                    *count -= 1;
                }
                self.shared.open_streams.fetch_sub(1, Ordering::Relaxed);
            }
            // A last answer written but perhaps not taken: the socket lingers until its peer takes it (`linger`).
            let linger_until = match conn.deadline {
                conn::Deadline::Linger(at) => at,
                _ => Instant::now() + self.shared.config.request_timeout,
            };
            // Closing a descriptor takes it out of the poll (the kernel drops a closed file from every epoll set),
            // so only a socket that stays open to linger is deregistered: one `epoll_ctl` less per connection.
            let lingers =
                reason == CloseReason::Done && !conn.peer_closed && self.drain.is_none() && {
                    let mut socket = conn.into_socket();
                    let _ = self.poll.registry().deregister(&mut socket);
                    self.linger.keep(socket, linger_until)
                };
            if !lingers {
                self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}
